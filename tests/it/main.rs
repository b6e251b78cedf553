//! Integration tests: one test binary (one link of the heavy dependencies) with a module per
//! area. They need the test bed (tansu broker and LocalStack): run them with `scripts/test.sh`,
//! which starts it and exports its environment, or start it with `localstack/testbed.sh up`
//! and `set -a; . .testbed/env; set +a` before `cargo test`.

// The fault suite prints the oracle's tables from its helpers, not only from test functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod amqp_source;
mod architecture;
mod auth;
mod cli;
mod common;
mod concurrency;
mod decoding;
mod faults;
mod gateway;
mod guarantees;
mod iam;
mod infra_policy;
mod observability;
mod offsets_cli;
mod otel;
mod pipeline;
mod records;
mod redis_source;
mod redrive;
mod registries;
mod routes;
mod smoke;
mod sqs;
mod sqs_only;
mod sqs_source;
mod tls_sources;
