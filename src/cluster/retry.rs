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

/// True when a watch error is `410 Gone` (the resourceVersion it resumed from is too old: the
/// API server restarted or compacted its history), as an error event or as the watch's answer.
pub(crate) fn is_gone(err: &kube::runtime::watcher::Error) -> bool {
    use kube::runtime::watcher::Error as E;
    match err {
        E::WatchError(s) => s.code == 410,
        E::WatchStartFailed(e) | E::InitialListFailed(e) | E::WatchFailed(e) => is_code(e, 410),
        _ => false,
    }
}

type WatchStream<K> = futures::stream::BoxStream<
    'static,
    Result<kube::runtime::watcher::Event<K>, kube::runtime::watcher::Error>,
>;

/// A kube-runtime watcher with the daemon's pacing: after an error the next attempt waits for
/// [`WatchBackoff`] (reset by any event), except that a `410 Gone` relists at once, with the
/// backoff reset: it is the normal answer to a watch resumed after an API server restart, and
/// the backoff built up while the server was away must not delay the relist. A second 410 in
/// a row (a server that keeps answering so) waits for the backoff like any other error.
/// 410s are logged here and not handed to the caller.
pub(crate) struct PacedWatch<K: 'static> {
    start: Box<dyn Fn() -> WatchStream<K> + Send>,
    stream: WatchStream<K>,
    backoff: WatchBackoff,
    pause: Option<Duration>,
    gone_in_a_row: u32,
    what: String,
}

impl<K> PacedWatch<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    pub(crate) fn new(
        api: kube::Api<K>,
        config: kube::runtime::watcher::Config,
        opts: &Options,
        what: &str,
    ) -> Self {
        use futures::StreamExt;
        let start = move || kube::runtime::watcher(api.clone(), config.clone()).boxed();
        PacedWatch {
            stream: start(),
            start: Box::new(start),
            backoff: WatchBackoff::new(opts),
            pause: None,
            gone_in_a_row: 0,
            what: what.to_string(),
        }
    }

    /// The next event or error (never a 410); None when the stream ends.
    pub(crate) async fn next(
        &mut self,
    ) -> Option<Result<kube::runtime::watcher::Event<K>, kube::runtime::watcher::Error>> {
        use futures::StreamExt;
        use kube::runtime::utils::Backoff;
        loop {
            if let Some(d) = self.pause.take() {
                tokio::time::sleep(d).await;
            }
            let item = self.stream.next().await?;
            match &item {
                Ok(_) => {
                    self.backoff.reset();
                    self.gone_in_a_row = 0;
                }
                Err(e) if is_gone(e) => {
                    self.gone_in_a_row += 1;
                    if self.gone_in_a_row == 1 {
                        self.backoff.reset();
                        tracing::info!(watch = %self.what, error = %e, "watch expired (410 Gone): relisting now");
                    } else {
                        self.pause = self.backoff.next();
                        tracing::warn!(watch = %self.what, error = %e, delay = ?self.pause, "watch expired again (410 Gone): relisting after a backoff");
                    }
                    // A fresh watcher lists from scratch (one resumed with the old
                    // resourceVersion would get the same answer).
                    self.stream = (self.start)();
                    continue;
                }
                Err(_) => self.pause = self.backoff.next(),
            }
            return Some(item);
        }
    }
}
