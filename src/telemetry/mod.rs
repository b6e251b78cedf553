//! Telemetry: structured logs through `tracing`, metrics, and OTLP traces.
//!
//! `SIDECAR_LOG_FORMAT` picks JSON (default, for log shippers) or text; `RUST_LOG` filters
//! (default `info`). Logs go to stderr so that the CLI's own output on stdout stays clean.
//! When a traces endpoint is configured, `tracing` spans (rebalances, shutdown) are exported
//! through `tracing-opentelemetry` too; per-record spans are made by [`spans`] directly.

pub mod metrics;
mod observers;
pub mod otlp;
pub mod spans;

use std::sync::OnceLock;

use opentelemetry_sdk::trace::SdkTracer;
use tracing_subscriber::layer::{Layered, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::LogFormat;

/// The subscriber below the OpenTelemetry layer.
type Base = Layered<EnvFilter, Registry>;
/// The OpenTelemetry layer, absent until a tracer exists.
type OtelLayer = Option<tracing_opentelemetry::OpenTelemetryLayer<Base, SdkTracer>>;

/// Installs the tracer into the log subscriber once the OTLP exporter exists.
static OTEL: OnceLock<reload::Handle<OtelLayer, Base>> = OnceLock::new();

/// Log filter when `RUST_LOG` is unset. The OpenTelemetry SDK's own diagnostics are off: an
/// unreachable collector would log an error per export; the sidecar reports dropped spans
/// itself (a metric and a rate-limited warning).
pub const DEFAULT_FILTER: &str = "info,opentelemetry_sdk=off,opentelemetry_otlp=off,opentelemetry=off";

/// Installs the global log subscriber. Safe to call more than once (later calls are no-ops),
/// which the integration tests rely on.
pub fn init_logging(format: LogFormat) {
    init_logging_with(format, DEFAULT_FILTER);
}

/// Like [`init_logging`] with another filter when `RUST_LOG` is unset (the demo and the tests
/// keep the terminal quiet with `warn`).
pub fn init_logging_with(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let (otel, handle) = reload::Layer::new(OtelLayer::None);
    let subscriber = tracing_subscriber::registry().with(filter).with(otel);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => {
            subscriber.with(fmt.json().flatten_event(true).with_current_span(false)).try_init()
        }
        LogFormat::Text => subscriber.with(fmt).try_init(),
    };
    // An error only means a subscriber is already installed (tests, or a second call).
    if result.is_ok() {
        let _ = OTEL.set(handle);
    }
}

/// Exports `tracing` spans with `tracer` from now on.
pub fn attach_tracer(tracer: SdkTracer) {
    if let Some(handle) = OTEL.get() {
        let _ = handle.reload(Some(tracing_opentelemetry::layer().with_tracer(tracer)));
    }
}
