//! Redis helpers for the Redis Streams tests: the test bed's server, entries added and read
//! back, and the group's pending count.

use std::collections::BTreeMap;

use redis::Value;

/// The test bed's Redis (`TESTBED_REDIS_URL`); fails loudly without it.
pub fn url() -> String {
    std::env::var("TESTBED_REDIS_URL").expect(
        "TESTBED_REDIS_URL is not set: start the test bed (localstack/testbed.sh up) and source .testbed/env",
    )
}

/// A connection to the test bed's Redis.
pub async fn connect() -> redis::aio::MultiplexedConnection {
    redis::Client::open(url())
        .expect("redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis")
}

/// Adds entries with `data` = each body and a `kind` field; their ids.
pub async fn add(
    connection: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    bodies: &[String],
) -> Vec<String> {
    let mut ids = Vec::new();
    for body in bodies {
        let id: String = redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("data")
            .arg(body)
            .arg("kind")
            .arg("order")
            .query_async(connection)
            .await
            .expect("XADD");
        ids.push(id);
    }
    ids
}

/// The entries of `stream`: (id, fields).
pub async fn entries(
    connection: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> Vec<(String, BTreeMap<String, String>)> {
    let reply: Value =
        redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query_async(connection).await.expect("XRANGE");
    let Value::Array(entries) = reply else { return Vec::new() };
    entries
        .into_iter()
        .filter_map(|entry| {
            let Value::Array(parts) = entry else { return None };
            let id = redis::from_redis_value::<String>(parts.first()?.clone()).ok()?;
            let flat: Vec<String> = redis::from_redis_value(parts.get(1)?.clone()).ok()?;
            let fields =
                flat.chunks(2).map(|p| (p[0].clone(), p.get(1).cloned().unwrap_or_default())).collect();
            Some((id, fields))
        })
        .collect()
}

/// Entries of `group` on `stream` delivered and not acknowledged.
pub async fn pending(connection: &mut redis::aio::MultiplexedConnection, stream: &str, group: &str) -> u64 {
    let reply: Value =
        redis::cmd("XPENDING").arg(stream).arg(group).query_async(connection).await.expect("XPENDING");
    match reply {
        Value::Array(parts) => match parts.first() {
            Some(Value::Int(count)) => u64::try_from(*count).unwrap_or(u64::MAX),
            _ => u64::MAX,
        },
        _ => u64::MAX,
    }
}
