//! The soak: random fault schedules over every scenario of the suite, for `SOAK_MINUTES` minutes
//! (`scripts/soak.sh --minutes N`; without it, one short random round, so the soak itself runs in
//! CI too). Prints what was injected and what the oracle found, then fails on any anomaly.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::{Report, network, outages, peers, storms};
use crate::common::oracle::Cause;

/// A random duration between `low` and `high` seconds.
fn seconds(low: u64, high: u64) -> Duration {
    Duration::from_secs(rand::random_range(low..=high))
}

/// The scenarios `random_round` picks from, in its order.
const SCENARIOS: [&str; 12] = [
    "broker black hole",
    "broker resets",
    "application resets",
    "application black hole",
    "S3 down",
    "dead-letter topic refusing",
    "panics",
    "rebalance storm",
    "coordinator errors and a broker restart",
    "SIGKILL in key order",
    "SQS target black hole",
    "OTLP collector black hole",
];

/// Run `run`: one scenario with random parameters (shorter ones when `short`), announced before
/// it starts so a hang shows which one.
async fn random_round(run: usize, short: bool) -> Report {
    let scale = if short { 2 } else { 1 };
    let scenario = rand::random_range(0..SCENARIOS.len());
    println!("soak run {run}: starting {}", SCENARIOS[scenario]);
    match scenario {
        0 => network::broker_black_hole(seconds(3, 20 / scale)).await,
        1 => network::broker_resets(rand::random_range(3..12)).await,
        2 => network::application_resets(rand::random_range(4..16)).await,
        3 => network::application_black_hole(seconds(3, 12 / scale)).await,
        4 => outages::s3_down(seconds(2, 10 / scale)).await,
        5 => outages::dlq_refusing(rand::random_range(5..40)).await,
        // At most 8 records: more than 10 a minute would hold the lanes (a systemic bug).
        6 => outages::panics(rand::random_range(1..=4)).await,
        7 => {
            let length = seconds(20, 60 / scale);
            storms::rebalance_storm(length, length / 2, 200).await
        }
        8 => outages::coordinator_errors_and_a_broker_restart(seconds(1, 8 / scale)).await,
        9 => storms::sigkill_in_key_order(rand::random_range(2..7)).await,
        10 => peers::sqs_black_hole(seconds(2, 12 / scale)).await,
        _ => peers::otlp_black_hole(seconds(2, 10 / scale)).await,
    }
}

/// The soak's table: faults injected by kind, then per run and in all.
fn table(reports: &[Report], elapsed: Duration) -> String {
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let mut duplicates: BTreeMap<String, usize> = BTreeMap::new();
    let (mut records, mut lost, mut reordered, mut half, mut pending) = (0, 0, 0, 0, 0);
    let mut longest = Duration::ZERO;
    let mut stalls = 0;
    let mut peak = 0;
    for report in reports {
        for (kind, count) in &report.faults {
            *faults.entry(kind).or_default() += count;
        }
        let verdict = &report.verdict;
        records += verdict.records;
        lost += verdict.lost.len();
        reordered += verdict.reordered.len();
        half += verdict.half_dead_lettered.len();
        pending += verdict.pending.len();
        let cause = match report.causes.as_slice() {
            [] => "unjustified".to_string(),
            causes => causes.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join("+"),
        };
        *duplicates.entry(cause).or_default() += verdict.extra_deliveries();
        match report.settled {
            Some(settled) => longest = longest.max(settled),
            None => stalls += 1,
        }
        peak = peak.max(report.peak_rss_kib);
    }
    let mut out = String::new();
    let _ = writeln!(out, "soak: {} runs in {:.1} min", reports.len(), elapsed.as_secs_f64() / 60.0);
    let _ = writeln!(out, "\n| fault | injected |\n|---|---:|");
    for (kind, count) in &faults {
        let _ = writeln!(out, "| {kind} | {count} |");
    }
    let _ = writeln!(
        out,
        "\n| records | lost | duplicates by cause (extra deliveries) | reordered | half dead-lettered | stalls (pending at the bound) | longest settle after a fault | peak RSS of a sidecar process |"
    );
    let _ = writeln!(out, "|---:|---:|---|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| {records} | {lost} | {duplicates:?} | {reordered} | {half} | {stalls} ({pending} records) | {:.1} s | {:.1} MiB |",
        longest.as_secs_f64(),
        peak as f64 / 1024.0
    );
    let _ = writeln!(
        out,
        "\n| run | records | delivered | dead-lettered | duplicated | settled |\n|---|---:|---:|---:|---:|---:|"
    );
    for report in reports {
        let v = &report.verdict;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            report.name,
            v.records,
            v.delivered,
            v.dead_lettered,
            v.extra_deliveries(),
            report.settled.map_or("stalled".to_string(), |s| format!("{:.1} s", s.as_secs_f64()))
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_fault_schedules() {
    let minutes: f64 = std::env::var("SOAK_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(0.0);
    let started = Instant::now();
    let deadline = Duration::from_secs_f64(minutes * 60.0);
    let mut reports = Vec::new();
    loop {
        let report = random_round(reports.len() + 1, minutes == 0.0).await;
        println!("soak run {}: {} ({:?})", reports.len() + 1, report.name, report.settled);
        reports.push(report);
        if started.elapsed() >= deadline {
            break;
        }
    }
    let table = table(&reports, started.elapsed());
    println!("{table}");
    if let Ok(path) = std::env::var("SOAK_TABLE") {
        std::fs::write(&path, &table).unwrap_or_else(|err| panic!("writing {path}: {err}"));
    }
    let causes_seen: Vec<Cause> = reports.iter().flat_map(|r| r.causes.clone()).collect();
    println!("causes that justified duplicates: {causes_seen:?}");
    for report in &reports {
        report.check();
    }
}
