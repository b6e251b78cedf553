//! Micro-benchmark: CPU time to sign one MSK IAM token (what librdkafka's refresh callback
//! costs), with and without a session token. Prints figures; asserts nothing.
//!
//! cargo bench --bench token

#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Instant, SystemTime};

use aws_credential_types::Credentials;
use msk_sidecar::auth::token::{sign_token, user_agent};

fn measure(name: &str, credentials: &Credentials) {
    let agent = user_agent();
    // Warm up, then time enough signatures for a stable mean.
    for _ in 0..1_000 {
        black_box(sign_token(credentials, "eu-west-1", SystemTime::now(), &agent).ok());
    }
    let rounds = 20_000u32;
    let started = Instant::now();
    for _ in 0..rounds {
        black_box(sign_token(black_box(credentials), "eu-west-1", SystemTime::now(), &agent).ok());
    }
    let per_token = started.elapsed() / rounds;
    println!("{name:<28} {:>8.2} µs/token ({rounds} tokens)", per_token.as_secs_f64() * 1e6);
}

fn main() {
    let long_term = Credentials::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
        None,
        "bench",
    );
    let session = Credentials::new(
        "ASIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ".repeat(12)),
        None,
        "bench",
    );
    measure("long-term credentials", &long_term);
    measure("with a session token", &session);
}
