//! Logging set-up: to the journal when running under systemd (`JOURNAL_STREAM` set), with
//! structured fields as journal fields (`journalctl -u machine-config-daemon CONFIG=…`), else
//! human-readable to stderr. The level comes from `--log-level`, else `RUST_LOG`, else `info`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// Installs the global subscriber.
pub fn init(level: Option<&str>) {
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(layer) = tracing_journald::layer()
    {
        let layer = layer
            .with_field_prefix(None)
            .with_syslog_identifier("machine-config-daemon".to_string());
        tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .init();
        return;
    }
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
