//! Benchmark helper: the application at the end of the pipe.
//!
//! `bench-sink --port P [--latency-ms L] [--fail-permille F]` answers every POST after L ms with
//! 200, or 400 when `x-kafka-offset` mod 1000 < F. Batch requests count `x-delivery-batch-size`
//! records. `GET /count` reports `{"requests","records","first_ms","last_ms"}`. `POST /v1/traces`
//! and `/v1/metrics` answer 200 (an OTLP/HTTP sink).

#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    port: u16,
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    #[arg(long, default_value_t = 0)]
    fail_permille: i64,
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    records: AtomicU64,
    first_ms: AtomicI64,
    last_ms: AtomicI64,
}

struct Sink {
    latency: Duration,
    fail_permille: i64,
    counts: Counts,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
}

async fn deliver(State(sink): State<Arc<Sink>>, headers: HeaderMap) -> StatusCode {
    if !sink.latency.is_zero() {
        tokio::time::sleep(sink.latency).await;
    }
    let header =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i64>().ok());
    let records = header("x-delivery-batch-size").unwrap_or(1);
    let now = now_ms();
    let _ = sink.counts.first_ms.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
    sink.counts.last_ms.store(now, Ordering::SeqCst);
    sink.counts.requests.fetch_add(1, Ordering::Relaxed);
    sink.counts.records.fetch_add(u64::try_from(records).unwrap_or(0), Ordering::Relaxed);
    match header("x-kafka-offset") {
        Some(offset) if offset.rem_euclid(1000) < sink.fail_permille => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

async fn count(State(sink): State<Arc<Sink>>) -> String {
    let c = &sink.counts;
    let optional = |v: i64| if v == 0 { "null".to_string() } else { v.to_string() };
    format!(
        "{{\"requests\": {}, \"records\": {}, \"first_ms\": {}, \"last_ms\": {}}}",
        c.requests.load(Ordering::SeqCst),
        c.records.load(Ordering::SeqCst),
        optional(c.first_ms.load(Ordering::SeqCst)),
        optional(c.last_ms.load(Ordering::SeqCst))
    )
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let sink = Arc::new(Sink {
        latency: Duration::from_millis(args.latency_ms),
        fail_permille: args.fail_permille,
        counts: Counts::default(),
    });
    let router = Router::new()
        .route("/count", get(count))
        .route("/v1/traces", post(|| async { StatusCode::OK }))
        .route("/v1/metrics", post(|| async { StatusCode::OK }))
        .fallback(post(deliver))
        .with_state(sink);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await.expect("bind");
    println!("READY");
    std::io::stdout().flush().expect("stdout");
    axum::serve(listener, router).await.expect("serve");
}
