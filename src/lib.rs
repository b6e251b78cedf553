//! msk-sidecar: consumes Kafka topics on Amazon MSK with IAM auth and hands every record to an
//! application next to it (HTTP POST per record, or an SQS queue), with retries, dead letters
//! and at-least-once offset commits.
//!
//! Module map (data flows down; no module reaches back up):
//! - [`cli`]: the subcommands and their output; the only place that prints to stdout.
//! - [`config`]: typed, validated configuration from the environment and a TOML file.
//! - [`app`]: wires the modules together for `run`; `app::run(config, shutdown)` is what the
//!   binary and the integration tests call.
//! - [`shutdown`]: the cancellation token fired by SIGTERM/SIGINT.
//! - [`telemetry`]: logging (and later traces and metrics).

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod app;
pub mod cli;
pub mod config;
pub mod shutdown;
pub mod telemetry;
