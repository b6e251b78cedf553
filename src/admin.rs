//! The admin server: `/live`, `/ready`, `/metrics` on `SIDECAR_ADMIN_ADDR` (loopback by default).
//!
//! It runs on its own thread and runtime, so a busy data path can never starve the probes.
//! `/ready` answers 503 with a JSON list of reasons while the sidecar cannot do its job.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::telemetry::metrics::Metrics;

/// Why the admin server could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr} (SIDECAR_ADMIN_ADDR): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server thread could not be started.
    #[error("cannot start the admin thread: {0}")]
    Thread(std::io::Error),
}

/// What the handlers read.
#[derive(Clone)]
struct AdminState {
    /// Readiness.
    health: Arc<Health>,
    /// Metrics.
    metrics: Metrics,
}

/// A running admin server.
pub struct AdminServer {
    /// The bound address (the port is known even when 0 was asked for).
    pub addr: SocketAddr,
    /// Stops the server.
    stop: CancellationToken,
    /// The server thread.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AdminServer {
    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            drop(thread.join());
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Binds `addr` and serves on a new thread.
pub fn spawn(addr: SocketAddr, health: Arc<Health>, metrics: Metrics) -> Result<AdminServer, AdminError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|source| AdminError::Bind { addr, source })?;
    listener.set_nonblocking(true).map_err(|source| AdminError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| AdminError::Bind { addr, source })?;
    let stop = CancellationToken::new();
    let router = Router::new()
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_page))
        .with_state(AdminState { health, metrics });
    let stopped = stop.clone();
    let thread = std::thread::Builder::new()
        .name("msk-sidecar-admin".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(err) => {
                    tracing::error!(error = %err, "Cannot start the admin runtime.");
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(err) => {
                        tracing::error!(error = %err, "Cannot use the admin listener.");
                        return;
                    }
                };
                let serve = axum::serve(listener, router).with_graceful_shutdown(stopped.cancelled_owned());
                if let Err(err) = serve.await {
                    tracing::error!(error = %err, "Admin server failed.");
                }
            });
        })
        .map_err(AdminError::Thread)?;
    tracing::info!(addr = %bound, "Admin server listening.");
    Ok(AdminServer { addr: bound, stop, thread: Some(thread) })
}

async fn live() -> Response {
    json(StatusCode::OK, serde_json::json!({ "status": "live" }))
}

async fn ready(State(state): State<AdminState>) -> Response {
    match state.health.readiness() {
        Ok(warnings) if warnings.is_empty() => json(StatusCode::OK, serde_json::json!({ "status": "ready" })),
        Ok(warnings) => json(StatusCode::OK, serde_json::json!({ "status": "ready", "warnings": warnings })),
        Err(reasons) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "not ready", "reasons": reasons }),
        ),
    }
}

async fn metrics_page(State(state): State<AdminState>) -> Response {
    let mut page = state.metrics.render_prometheus();
    // What `/ready` answers, for alerting: 1 ready, 0 not ready (as of this scrape).
    let ready = u8::from(state.health.readiness().is_ok());
    page.push_str(&format!(
        "# HELP msk_sidecar_ready 1 while /ready answers 200\n# TYPE msk_sidecar_ready gauge\nmsk_sidecar_ready {ready}\n"
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], page).into_response()
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Component;

    #[tokio::test]
    async fn probes_answer_with_status_and_reasons() {
        let health = Arc::new(Health::new());
        let metrics = Metrics::new().expect("metrics");
        let server = spawn("127.0.0.1:0".parse().expect("addr"), health.clone(), metrics).expect("spawn");
        let base = format!("http://{}", server.addr);
        let client = reqwest::Client::new();
        let live = client.get(format!("{base}/live")).send().await.expect("live");
        assert_eq!(live.status(), 200);
        let not_ready = client.get(format!("{base}/ready")).send().await.expect("ready");
        assert_eq!(not_ready.status(), 503);
        health.mark_joined();
        let latch = health.latch(Component::Application, "", "unreachable at http://127.0.0.1:1/: refused");
        let text =
            client.get(format!("{base}/ready")).send().await.expect("ready").text().await.expect("body");
        let body: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(body["reasons"][0], "application: unreachable at http://127.0.0.1:1/: refused");
        drop(latch);
        assert_eq!(client.get(format!("{base}/ready")).send().await.expect("ready").status(), 200);
        let metrics = client.get(format!("{base}/metrics")).send().await.expect("metrics");
        assert_eq!(metrics.status(), 200);
        server.stop();
    }

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err =
            spawn(addr, Arc::new(Health::new()), Metrics::new().expect("metrics")).err().expect("error");
        assert!(err.to_string().contains("SIDECAR_ADMIN_ADDR"), "{err}");
    }
}
