//! The application: wires configuration, consumer, dispatcher, pipeline, delivery, dead
//! letters, offsets and the admin server for `msk-sidecar run`.

use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Why the application stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The pipeline is not built yet (the pipeline issue).
    #[error("`run` is not implemented yet")]
    NotImplemented,
}

/// Runs the sidecar until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AppError> {
    let _ = (config, shutdown);
    Err(AppError::NotImplemented)
}
