//! Telemetry: structured logs through `tracing`.
//!
//! `SIDECAR_LOG_FORMAT` picks JSON (default, for log shippers) or text; `RUST_LOG` filters
//! (default `info`). Logs go to stderr so that the CLI's own output on stdout stays clean.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global log subscriber. Safe to call more than once (later calls are no-ops),
/// which the integration tests rely on.
pub fn init_logging(format: LogFormat) {
    init_logging_with(format, "info,opentelemetry_sdk=warn");
}

/// Like [`init_logging`] with another filter when `RUST_LOG` is unset (the demo and the tests
/// keep the terminal quiet with `warn`).
pub fn init_logging_with(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // An error only means a subscriber is already installed (tests, or a second call).
    drop(result);
}
pub mod metrics;
