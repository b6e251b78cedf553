//! The demo's record rules: the orders are decoded as JSON, a filter turns test orders away,
//! and records older than a day expire. The demo adds the records that show each rule at work
//! (test orders, an order that is not JSON, one produced two days ago) and the report counts
//! them: filtered (committed, never delivered), `undecodable` and `expired` dead letters.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The filter the demo runs with.
pub const FILTER: &str = "record.value.kind != \"test\"";

/// The variables that switch the rules on.
pub const ENV: [(&str, &str); 3] =
    [("SIDECAR_VALUE_FORMAT", "json"), ("SIDECAR_FILTER", FILTER), ("SIDECAR_MAX_RECORD_AGE", "1d")];

/// The records added to show the rules.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras {
    /// Test orders: the filter turns them away.
    pub filtered: u32,
    /// Orders that are not JSON: dead-lettered `undecodable`.
    pub undecodable: u32,
    /// Orders two days old: dead-lettered `expired`.
    pub expired: u32,
}

impl Extras {
    /// Records added.
    pub fn total(self) -> u64 {
        u64::from(self.filtered + self.undecodable + self.expired)
    }

    /// Dead letters they make.
    pub fn dead(self) -> u32 {
        self.undecodable + self.expired
    }
}

/// Produces the extra records to `topic`.
pub async fn produce(producer: &FutureProducer, topic: &str) -> anyhow::Result<Extras> {
    let two_days_ago = SystemTime::now()
        .checked_sub(Duration::from_secs(2 * 86_400))
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0);
    let records: [(&str, &str, Option<i64>); 5] = [
        ("test-1", "{\"order\":-1,\"kind\":\"test\",\"amount\":1}", None),
        ("test-2", "{\"order\":-2,\"kind\":\"test\",\"amount\":1}", None),
        ("test-3", "{\"order\":-3,\"kind\":\"test\",\"amount\":1}", None),
        ("garbled", "order=7;kind=ok", None),
        ("old", "{\"order\":-4,\"kind\":\"ok\",\"amount\":5}", Some(two_days_ago)),
    ];
    for (key, value, timestamp) in records {
        let mut record = FutureRecord::to(topic).partition(0).key(key).payload(value);
        if let Some(timestamp) = timestamp {
            record = record.timestamp(timestamp);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(err, _)| anyhow::anyhow!("producing: {err}"))
            .context("producing the records that show the rules")?;
    }
    Ok(Extras { filtered: 3, undecodable: 1, expired: 1 })
}
