//! msk-sidecar: consumes Kafka topics on Amazon MSK with IAM auth and hands every record to an
//! application next to it (HTTP POST per record, or an SQS queue), with retries, dead letters
//! and at-least-once offset commits.
//!
//! Module map, in the direction data flows (no module reaches back up):
//! - [`config`]: typed, validated configuration from the environment and a TOML file.
//! - [`auth`]: MSK IAM tokens (SigV4 OAUTHBEARER), credentials refresh, the IAM policy.
//! - [`kafka`]: librdkafka settings and context shared by consumer and DLQ producer.
//! - [`consumer`]: the group consumer and its poll loop (pause/resume, rebalance, commits).
//! - [`dispatch`]: ordering lanes, the in-flight bound, back-pressure, drains.
//! - [`pipeline`]: one record from first attempt to terminal outcome (retries, breaker).
//! - [`delivery`]: one attempt to the application (HTTP).
//! - [`dlq`]: dead-letter topic record and archive object.
//! - [`offsets`]: per-partition contiguous watermark of finished records, and the offset map of
//!   records finished above it that travels in the commit's metadata.
//! - [`record`]: the record type every stage shares.
//! - [`health`], [`admin`]: readiness state and the `/live` `/ready` `/metrics` server.
//! - [`telemetry`]: logs and metrics.
//! - [`app`]: wires it all; [`shutdown`]: the SIGTERM/SIGINT token; [`cli`]: subcommands.
//! - [`panics`]: the panic hook and the containment of panics in libraries reading hostile bytes.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod consumer;
pub mod delivery;
pub mod dispatch;
pub mod dlq;
pub mod health;
pub mod kafka;
pub mod offsets;
pub mod panics;
pub mod pipeline;
pub mod record;
pub mod shutdown;
pub mod telemetry;
