//! `msk-sidecar offsets describe` / `offsets reset` and `KAFKA_RESET_OFFSETS_ON_START` against
//! the real broker, with kafka-consumer-groups' rules: a reset is refused while the group has a
//! member (named), a dry run changes nothing, a reset can be limited to partitions or go by time,
//! and a sidecar that joins an empty group with the variable set starts from the reset offsets.

use std::process::Output;
use std::time::Duration;

use crate::common::app::TestApp;
use crate::common::sidecar::{self, Sidecar};
use crate::common::{self, Produce};

fn offsets(topic: &str, group: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let args: Vec<&str> = std::iter::once("offsets").chain(args.iter().copied()).collect();
    crate::common::process::tool(&args, topic, group, extra)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_and_reset_refuse_a_live_group_and_move_an_empty_one() {
    let topic = common::random_name("ofs");
    let group = common::random_name("g");
    common::create_topic(&topic, 2).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    let records = |from: usize| -> Vec<Produce> {
        (from..from + 3).flat_map(|i| [0, 1].map(|p| Produce::text(p, "k", &format!("v{i}")))).collect()
    };
    common::produce(&topic, records(0)).await;
    let between = std::time::SystemTime::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    common::produce(&topic, records(3)).await;

    let app = TestApp::start().await;
    let sidecar = Sidecar::start(&sidecar::env(&topic, &group, &app.url())).await;
    common::wait_committed(&group, &topic, &[6, 6]).await;

    // A live member: described, and the reset refused naming it.
    let live = offsets(&topic, &group, &["describe"], &[]);
    assert!(live.status.success(), "{}", text(&live));
    assert!(text(&live).contains("members (1)"), "{}", text(&live));
    let refused = offsets(&topic, &group, &["reset", "--to", "earliest"], &[]);
    assert!(!refused.status.success(), "a reset under a live member: {}", text(&refused));
    assert!(
        text(&refused).contains("has 1 member(s)") && text(&refused).contains("msk-sidecar"),
        "{}",
        text(&refused)
    );
    sidecar.stop().await;
    assert_eq!(common::committed(&group, &topic, 2), [6, 6], "nothing moved");

    // Empty now: describe shows the lag, a dry run changes nothing.
    let described = offsets(&topic, &group, &["describe", "--output", "json"], &[]);
    let doc: serde_json::Value =
        serde_json::from_slice(&described.stdout).unwrap_or_else(|_| panic!("{}", text(&described)));
    assert_eq!(doc["members"], serde_json::json!([]));
    assert_eq!(doc["partitions"][0]["committed"], 6);
    assert_eq!(doc["partitions"][0]["lag"], 0);
    let dry = offsets(&topic, &group, &["reset", "--to", "earliest", "--dry-run"], &[]);
    assert!(dry.status.success() && text(&dry).contains("dry run: nothing committed"), "{}", text(&dry));
    assert_eq!(common::committed(&group, &topic, 2), [6, 6], "a dry run commits nothing");

    // One partition to its start; the other by time (the first record at or after `between`).
    let one = offsets(&topic, &group, &["reset", "--to", "earliest", "--topic", &format!("{topic}:1")], &[]);
    assert!(one.status.success(), "{}", text(&one));
    assert_eq!(common::committed(&group, &topic, 2), [6, 0]);
    let at = time::OffsetDateTime::from(between)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    let by_time = offsets(
        &topic,
        &group,
        &["reset", "--to", &at, "--topic", &format!("{topic}:0"), "--output", "json"],
        &[],
    );
    assert!(by_time.status.success(), "{}", text(&by_time));
    assert_eq!(
        common::committed(&group, &topic, 2),
        [3, 0],
        "partition 0 from its first record after the pause"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_joining_an_empty_group_with_reset_on_start_begins_at_the_reset() {
    let topic = common::random_name("ros");
    let group = common::random_name("g");
    common::create_topic(&topic, 1).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    common::produce(&topic, (0..4).map(|i| Produce::text(0, "k", &format!("r{i}"))).collect()).await;
    let app = TestApp::start().await;
    let first = Sidecar::start(&sidecar::env(&topic, &group, &app.url())).await;
    common::wait_committed(&group, &topic, &[4]).await;
    first.stop().await;
    assert_eq!(app.received().len(), 4);
    // Restarted with the reset: every record again, from the start.
    let mut env = sidecar::env(&topic, &group, &app.url());
    env.insert("KAFKA_RESET_OFFSETS_ON_START".into(), "earliest".into());
    let second = Sidecar::start(&env).await;
    common::eventually(Duration::from_secs(30), "the 4 records again", || {
        std::future::ready((app.received().len() == 8).then_some(()))
    })
    .await;
    common::wait_committed(&group, &topic, &[4]).await;
    second.stop().await;
    let bad = offsets(&topic, &group, &["describe"], &[("KAFKA_RESET_OFFSETS_ON_START", "42")]);
    assert_eq!(bad.status.code(), Some(64), "an offset is not a start position: {}", text(&bad));
}
