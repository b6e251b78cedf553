//! Shutdown signal: one [`CancellationToken`] cancelled by SIGTERM or SIGINT.
//!
//! Every long-lived task takes a child of this token; `main` creates it once and the
//! integration tests create their own, so the same `app::run` serves both.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long records in flight may take to finish after SIGTERM: the grace minus two seconds
/// kept for the final commit and leaving the group (at least half a second).
pub fn drain_deadline(grace: Duration) -> Duration {
    grace.saturating_sub(Duration::from_secs(2)).max(Duration::from_millis(500))
}

/// Returns a token that is cancelled when the process receives SIGTERM or SIGINT.
///
/// Must be called inside a tokio runtime. A second signal is not special-cased: the drain
/// deadline (`SIDECAR_SHUTDOWN_GRACE`) bounds the shutdown.
pub fn on_signals() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = which, "Shutdown requested.");
        cancel.cancel();
    });
    Ok(token)
}
