//! msk-sidecar: consumes Kafka topics on Amazon MSK with IAM auth, and SQS queues, next to or
//! instead of them, and hands every record to an application next to it (HTTP POST per record,
//! or an SQS queue), with retries, dead letters and at-least-once acknowledgements (offset
//! commits, message deletes).
//!
//! Module map, in the direction data flows (no module reaches back up):
//! - [`config`]: typed, validated configuration from the environment and a TOML file.
//! - [`auth`]: MSK IAM tokens (SigV4 OAUTHBEARER), credentials refresh, the IAM policy.
//! - [`kafka`]: librdkafka settings and context shared by consumer and DLQ producer.
//! - [`consumer`]: the Kafka source: the group consumer and its poll loop (pause/resume,
//!   rebalance, commits).
//! - [`sqs_source`]: the SQS source: receivers, message leases (extended, deleted, released),
//!   its own dispatcher, dead letters to the queue's dead-letter queue.
//! - [`amqp_source`]: the RabbitMQ source: a consumer per queue (prefetch as the in-flight
//!   bound), acknowledgements on the receiving channel, dead letters by reject to the queue's
//!   dead-letter exchange.
//! - [`redis_source`]: the Redis Streams source: group readers (own pending, claims of dead
//!   consumers' entries, new entries), acknowledgements, dead letters to `<stream>.dlq`.
//! - [`offsets`]: the Kafka source's ledger: per-partition contiguous watermark of finished
//!   records, and the offset map of records finished above it that travels in the commit.
//! - [`source`]: the boundary every source meets: records handed over, tracked and completed
//!   in the source's ledger.
//! - [`dispatch`]: ordering lanes, the in-flight bound, back-pressure, drains.
//! - [`pipeline`]: one record from first attempt to terminal outcome (retries, breaker).
//! - [`prepare`]: what a route does to a record before its first attempt: expiry, decoding,
//!   filtering.
//! - [`delivery`]: one attempt to the application (HTTP, SQS).
//! - [`dlq`]: dead-letter topic record and archive document.
//! - [`archive`]: objects in S3 or a directory, for dead letters and SQS claim checks.
//!
//! Shared below all of them: [`record`] (the record every stage shares), [`attempt`] (one
//! attempt and its outcome), [`health`] (readiness latches), [`telemetry`] (logs, metrics,
//! traces), [`panics`] (the panic hook and containment of panics in libraries reading hostile
//! bytes), [`shutdown`] (the SIGTERM/SIGINT token). At the edge: [`app`] wires the sources
//! that are configured (at least one),
//! [`admin`] serves `/live` `/ready` `/metrics`, [`cli`] parses the subcommands.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admin;
pub mod amqp_source;
pub mod app;
pub mod archive;
pub mod attempt;
pub mod auth;
pub mod cli;
pub mod codec;
pub mod config;
pub mod consumer;
pub mod delivery;
pub mod dispatch;
pub mod dlq;
pub mod groups;
pub mod health;
pub mod kafka;
pub mod offsets;
pub mod panics;
pub mod pipeline;
pub mod prepare;
pub mod record;
pub mod redis_source;
pub mod redrive;
pub mod shutdown;
pub mod source;
pub mod sqs_source;
pub mod telemetry;
