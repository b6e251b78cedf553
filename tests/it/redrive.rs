//! `msk-sidecar redrive` from the dead-letter topic against the real broker: a dry run sends and
//! commits nothing, a run sends the dead letters back to their source partitions (the running
//! sidecar delivers them again, in order, carrying `dlq-redrive-count`), a rerun sends nothing
//! twice, and a record that fails again is stopped by the loop guard.

use std::process::Output;
use std::time::Duration;

use crate::common::app::{Reply, TestApp};
use crate::common::sidecar::{self, Sidecar};
use crate::common::{self, Produce};

fn redrive(topic: &str, group: &str, args: &[&str]) -> (Output, serde_json::Value) {
    let args: Vec<&str> =
        ["redrive"].into_iter().chain(args.iter().copied()).chain(["--output", "json"]).collect();
    let out = crate::common::process::tool(&args, topic, group, &[]);
    let summary = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "redrive {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_go_back_to_their_partitions_once_and_the_loop_guard_stops_a_repeat_failure() {
    let topic = common::random_name("rdv");
    let dlq = format!("{topic}.dlq");
    let group = common::random_name("g");
    common::create_topic(&topic, 2).await;
    common::create_topic(&dlq, 1).await;
    common::produce(
        &topic,
        vec![
            Produce::text(0, "a", "ok-1"),
            Produce::text(0, "a", "bad-1"),
            Produce::text(0, "a", "bad-2"),
            Produce::text(1, "b", "bad-3"),
            Produce::text(1, "b", "ok-2"),
        ],
    )
    .await;
    let app = TestApp::start().await;
    // bad-1 and bad-2 are refused until they come back from a redrive; bad-3 always.
    app.behave(|r| {
        let text = r.text();
        let redriven = r.header("x-kafka-header-dlq-redrive-count").is_some();
        if text == "bad-3" || (text.starts_with("bad") && !redriven) {
            Reply::Status(400)
        } else {
            Reply::Status(200)
        }
    });
    let sidecar = Sidecar::start(&sidecar::env(&topic, &group, &app.url())).await;
    common::wait_committed(&group, &topic, &[3, 2]).await;
    assert_eq!(common::consume(&dlq, 3).await.len(), 3);

    // A dry run: counted by class and source, nothing sent, nothing committed (twice the same).
    for _ in 0..2 {
        let (out, dry) = redrive(&topic, &group, &["--dry-run"]);
        assert!(out.status.success());
        assert_eq!(
            (dry["read"].as_u64(), dry["matched"].as_u64(), dry["sent"].as_u64()),
            (Some(3), Some(3), Some(3))
        );
        assert_eq!(dry["by_class"]["permanent"], 3);
        assert_eq!(dry["by_source"][topic.as_str()], 3);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.received().iter().filter(|r| r.text().starts_with("bad")).count(),
        3,
        "a dry run sent nothing"
    );

    // The run: back to their partitions, at a capped rate.
    let (out, run) = redrive(&topic, &group, &["--rate", "20"]);
    assert!(out.status.success());
    assert_eq!(
        (run["matched"].as_u64(), run["sent"].as_u64(), run["failed"].as_u64()),
        (Some(3), Some(3), Some(0))
    );
    eprintln!("redrive rate: {} records/s (cap 20)", run["rate_per_s"]);
    common::wait_committed(&group, &topic, &[5, 3]).await;
    let again: Vec<(i32, String, Option<String>)> = app
        .received()
        .into_iter()
        .filter(|r| r.header("x-kafka-header-dlq-redrive-count").is_some())
        .map(|r| {
            (r.coordinates().0, r.text(), r.header("x-kafka-header-dlq-redrive-count").map(str::to_string))
        })
        .collect();
    let one = Some("MQ==".to_string()); // base64 of "1"
    let in_partition =
        |p: i32| again.iter().filter(|r| r.0 == p).map(|r| (r.1.clone(), r.2.clone())).collect::<Vec<_>>();
    assert_eq!(
        in_partition(0),
        [("bad-1".to_string(), one.clone()), ("bad-2".to_string(), one.clone())],
        "partition 0, in order"
    );
    assert_eq!(in_partition(1), [("bad-3".to_string(), one)], "back in its source partition");
    assert_eq!(again.len(), 3);

    // bad-3 failed again: its new dead letter keeps the count; the loop guard stops it.
    let letters = common::consume(&dlq, 4).await;
    assert_eq!(common::header_text(&letters[3], "dlq-redrive-count").as_deref(), Some("1"));
    let (out, guarded) = redrive(&topic, &group, &["--max-redrives", "1"]);
    assert!(out.status.success());
    assert_eq!(
        (guarded["read"].as_u64(), guarded["skipped_loop_guard"].as_u64(), guarded["sent"].as_u64()),
        (Some(1), Some(1), Some(0))
    );
    // A rerun sends nothing twice.
    let (_, rerun) = redrive(&topic, &group, &[]);
    assert_eq!((rerun["read"].as_u64(), rerun["sent"].as_u64()), (Some(0), Some(0)));
    sidecar.stop().await;
}
