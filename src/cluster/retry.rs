//! Retrying one request through transient failures (5xx, 429, dropped connections) with
//! exponential backoff. Watches have their own backoff (kube-runtime's); this is for the
//! one-shot GET/PATCH/POST calls.

use std::future::Future;
use std::time::Duration;

use super::{ClusterError, Options};

/// Whether a failed request is worth repeating unchanged.
pub(crate) fn is_transient(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// The delay before retry number `attempt` (0-based).
pub(crate) fn backoff(opts: &Options, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.min(16);
    opts.backoff_base
        .saturating_mul(factor)
        .min(opts.backoff_max)
}

/// Runs `op` until it succeeds, fails permanently, or `opts.request_attempts` are used up.
pub(crate) async fn with_retries<T, F, Fut>(
    opts: &Options,
    what: &str,
    mut op: F,
) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if is_transient(&e) && attempt + 1 < opts.request_attempts => {
                let delay = backoff(opts, attempt);
                tracing::warn!(what, error = %e, attempt, ?delay, "transient API error, retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(ClusterError::api(what, e)),
        }
    }
}

/// True when `err` is an API error with HTTP status `code`.
pub(crate) fn is_code(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == code)
}

/// Backoff of a watch that fails to (re)start: exponential from `backoff_base` to `backoff_max`
/// with jitter (so thousands of daemons do not reconnect in step after an API server restart);
/// reset once events flow again.
pub(crate) struct WatchBackoff {
    opts: Options,
    attempt: u32,
}

impl WatchBackoff {
    pub(crate) fn new(opts: &Options) -> Self {
        WatchBackoff {
            opts: opts.clone(),
            attempt: 0,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        use std::hash::{BuildHasher, Hasher};
        let full = backoff(&self.opts, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        // 50–100 % of the delay, from the process's random hasher keys.
        let r = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            % 1000;
        Some(full.mul_f64(0.5 + r as f64 / 2000.0))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.attempt = 0;
    }
}
