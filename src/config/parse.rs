//! Parsers for single configuration values: durations, lists, names, URLs and enums.
//!
//! Each parser takes the raw text and returns the typed value or a one-line reason that the
//! caller prefixes with the variable name and the bad value.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

/// Parses `250ms`, `30s`, `5m`, `1h`, or combinations such as `1m 30s`.
pub fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|err| format!("expected a duration such as 250ms, 30s or 5m ({err})"))
}

/// Parses a duration that must be greater than zero.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    let value = duration(text)?;
    if value.is_zero() {
        return Err("must be greater than zero".to_string());
    }
    Ok(value)
}

/// Parses a whole number within `min..=max`.
pub fn bounded_int(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let value: u64 =
        text.trim().parse().map_err(|_| format!("expected a whole number from {min} to {max}"))?;
    if !(min..=max).contains(&value) {
        return Err(format!("expected a whole number from {min} to {max}"));
    }
    Ok(value)
}

/// Parses `true`/`false` (also `1`/`0`, `yes`/`no`).
pub fn boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err("expected true or false".to_string()),
    }
}

/// Splits a comma-separated list, trimming entries; empty entries are an error.
pub fn list(text: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = text.split(',').map(|s| s.trim().to_string()).collect();
    if items.iter().any(String::is_empty) {
        return Err("empty entry in comma-separated list".to_string());
    }
    Ok(items)
}

/// Checks a `host:port` bootstrap server.
pub fn broker(entry: &str) -> Result<(), String> {
    let (host, port) = entry.rsplit_once(':').ok_or_else(|| format!("broker {entry:?} must be host:port"))?;
    if host.is_empty() || host.contains('/') {
        return Err(format!("broker {entry:?} must be host:port without a scheme"));
    }
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("broker {entry:?} has an invalid port"))?;
    Ok(())
}

/// Checks a Kafka topic name (or a `^regex` subscription pattern, passed to librdkafka as is).
pub fn topic(name: &str) -> Result<(), String> {
    if name.starts_with('^') {
        return Ok(());
    }
    let legal = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > 249 || name == "." || name == ".." || !legal {
        return Err(format!("topic {name:?} is not a legal Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"));
    }
    Ok(())
}

/// Parses an `http://` or `https://` URL with a host.
pub fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|err| format!("not a URL ({err})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("expected an http:// or https:// URL with a host".to_string());
    }
    Ok(url)
}

/// Parses what follows `null://`: nothing, or `?fail_permille=N` (0..=1000).
pub fn null_target(rest: &str) -> Result<super::DeliveryTarget, String> {
    const USAGE: &str = "expected null:// with optional ?fail_permille=N&panic_permille=N (0 to 1000)";
    let (mut fail_permille, mut panic_permille) = (0, 0);
    let query = rest.trim_start_matches('/');
    if !query.is_empty() {
        let pairs = query.strip_prefix('?').ok_or_else(|| USAGE.to_string())?;
        for pair in pairs.split('&') {
            let (name, value) = pair.split_once('=').ok_or_else(|| USAGE.to_string())?;
            let value = value.parse::<u32>().ok().filter(|n| *n <= 1000).ok_or_else(|| USAGE.to_string())?;
            match name {
                "fail_permille" => fail_permille = value,
                "panic_permille" => panic_permille = value,
                _ => return Err(USAGE.to_string()),
            }
        }
    }
    Ok(super::DeliveryTarget::Null { fail_permille, panic_permille })
}

/// Checks an AWS region name such as `eu-west-1` or `us-gov-west-1`.
pub fn region(text: &str) -> Result<String, String> {
    let text = text.trim();
    let parts: Vec<&str> = text.split('-').collect();
    let well_formed = parts.len() >= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()));
    if !well_formed {
        return Err("expected an AWS region such as eu-west-1".to_string());
    }
    Ok(text.to_string())
}

/// The region in an MSK broker host name (`b-1.c.x.c2.kafka.eu-west-1.amazonaws.com`,
/// `boot-x.c1.kafka-serverless.us-east-1.amazonaws.com`, public `b-1-public...`, China
/// `...amazonaws.com.cn`), if the host is one.
pub fn region_from_msk_host(broker: &str) -> Option<String> {
    let host = broker.rsplit_once(':').map_or(broker, |(host, _)| host);
    let labels: Vec<&str> = host.split('.').collect();
    labels.windows(3).find_map(|w| {
        let is_kafka = w[0] == "kafka" || w[0] == "kafka-serverless";
        (is_kafka && w[2] == "amazonaws").then(|| region(w[1]).ok()).flatten()
    })
}

/// Checks an MSK cluster ARN: `arn:<partition>:kafka:<region>:<account>:cluster/<name>/<uuid>`.
pub fn cluster_arn(text: &str) -> Result<String, String> {
    let text = text.trim();
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    let resource: Vec<&str> = parts.get(5).map(|r| r.split('/').collect()).unwrap_or_default();
    let valid = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "kafka"
        && region(parts[3]).is_ok()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && resource.len() == 3
        && resource[0] == "cluster"
        && !resource[1].is_empty()
        && !resource[2].is_empty();
    if !valid {
        return Err("expected arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>".to_string());
    }
    Ok(text.to_string())
}

/// Parses a socket address such as `127.0.0.1:9464`.
pub fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| "expected ip:port such as 127.0.0.1:9464".to_string())
}

/// Checks an S3 bucket name (the common rules; AWS enforces the rest).
pub fn bucket(name: &str) -> Result<(), String> {
    let chars_ok = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ends_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !(3..=63).contains(&name.len()) || !chars_ok || !ends_ok {
        return Err(format!("bucket {name:?} is not a valid S3 bucket name"));
    }
    Ok(())
}

/// A dead-letter archive destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveTarget {
    /// No archive: dead letters go to the DLQ topic only.
    None,
    /// An S3 bucket and key prefix (without trailing slash, may be empty).
    S3 {
        /// The bucket name.
        bucket: String,
        /// The key prefix, without leading or trailing `/`.
        prefix: String,
    },
    /// A local directory (for the demo, tests and hosts without S3).
    File(PathBuf),
}

impl ArchiveTarget {
    /// Parses `s3://bucket/prefix`, `file:///path` or `none`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("none") {
            return Ok(ArchiveTarget::None);
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket_name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            bucket(bucket_name)?;
            return Ok(ArchiveTarget::S3 {
                bucket: bucket_name.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err("file:// archive needs an absolute path, e.g. file:///var/dlq".to_string());
            }
            return Ok(ArchiveTarget::File(PathBuf::from(path)));
        }
        Err("expected s3://bucket/prefix, file:///path or none".to_string())
    }
}

impl std::fmt::Display for ArchiveTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArchiveTarget::None => f.write_str("none"),
            ArchiveTarget::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            ArchiveTarget::File(path) => write!(f, "file://{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_the_documented_forms() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert!(duration("30").is_err());
        assert!(duration("fast").is_err());
        assert!(positive_duration("0s").is_err());
    }

    #[test]
    fn integers_are_bounded() {
        assert_eq!(bounded_int("256", 1, 65536), Ok(256));
        assert!(bounded_int("0", 1, 65536).is_err());
        assert!(bounded_int("-3", 1, 65536).is_err());
        assert!(bounded_int("1e3", 1, 65536).is_err());
    }

    #[test]
    fn brokers_need_host_and_port() {
        assert!(broker("b-1.x.kafka.eu-west-1.amazonaws.com:9098").is_ok());
        assert!(broker("localhost").is_err());
        assert!(broker("localhost:0").is_err());
        assert!(broker("tcp://localhost:9092").is_err());
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(topic("orders.v1_x-y").is_ok());
        assert!(topic("^orders\\..*").is_ok());
        assert!(topic("orders/v1").is_err());
        assert!(topic("..").is_err());
        assert!(topic(&"a".repeat(250)).is_err());
    }

    #[test]
    fn msk_host_names_give_their_region() {
        let cases = [
            ("b-1.demo.abc123.c2.kafka.eu-west-1.amazonaws.com:9098", Some("eu-west-1")),
            ("b-2-public.demo.abc123.c2.kafka.us-east-1.amazonaws.com:9198", Some("us-east-1")),
            ("boot-abc.c1.kafka-serverless.ap-southeast-2.amazonaws.com:9098", Some("ap-southeast-2")),
            ("b-1.demo.x.c3.kafka.cn-north-1.amazonaws.com.cn:9098", Some("cn-north-1")),
            ("localhost:9092", None),
            ("kafka.example.com:9092", None),
        ];
        for (host, region) in cases {
            assert_eq!(region_from_msk_host(host).as_deref(), region, "{host}");
        }
    }

    #[test]
    fn archive_targets_parse() {
        assert_eq!(ArchiveTarget::parse("none"), Ok(ArchiveTarget::None));
        assert_eq!(
            ArchiveTarget::parse("s3://my-bucket/dlq/prod/"),
            Ok(ArchiveTarget::S3 { bucket: "my-bucket".into(), prefix: "dlq/prod".into() })
        );
        assert_eq!(
            ArchiveTarget::parse("s3://my-bucket"),
            Ok(ArchiveTarget::S3 { bucket: "my-bucket".into(), prefix: String::new() })
        );
        assert_eq!(ArchiveTarget::parse("file:///tmp/dlq"), Ok(ArchiveTarget::File("/tmp/dlq".into())));
        assert!(ArchiveTarget::parse("s3://My_Bucket/x").is_err());
        assert!(ArchiveTarget::parse("file://relative").is_err());
        assert!(ArchiveTarget::parse("gs://bucket").is_err());
    }

    #[test]
    fn urls_must_be_http() {
        assert!(http_url("http://127.0.0.1:8080/events").is_ok());
        assert!(http_url("ftp://x/y").is_err());
        assert!(http_url("not a url").is_err());
    }

    #[test]
    fn regions_are_checked() {
        assert!(region("eu-west-1").is_ok());
        assert!(region("us-gov-west-1").is_ok());
        assert!(region("Europe").is_err());
        assert!(region("eu-west").is_err());
    }
}

/// The consumer group the sidecar joins (seed 001's rule): `<prefix><group><suffix>`, with
/// `<environment>-` in front when an environment is set and the name does not already hold it
/// as one of its `-`, `.` or `_` separated parts (so `prod` is not taken as present in
/// `product-sync`, as a substring test would).
pub fn effective_group(group: &str, environment: &str, prefix: &str, suffix: &str) -> String {
    let named = format!("{prefix}{group}{suffix}");
    // The environment's own parts, in a row among the name's (`eu-prod` in `eu-prod-orders`).
    let separators = ['-', '.', '_'];
    let parts: Vec<&str> = named.split(separators).collect();
    let wanted: Vec<&str> = environment.split(separators).collect();
    let holds = parts.windows(wanted.len()).any(|window| window == wanted.as_slice());
    if environment.is_empty() || holds { named } else { format!("{environment}-{named}") }
}

#[cfg(test)]
mod group_tests {
    use super::effective_group;

    #[test]
    fn the_environment_goes_in_front_once_after_prefix_and_suffix() {
        assert_eq!(effective_group("orders", "", "", ""), "orders");
        assert_eq!(effective_group("orders", "staging", "", ""), "staging-orders");
        assert_eq!(effective_group("orders", "staging", "team-", "-v2"), "staging-team-orders-v2");
        assert_eq!(effective_group("staging-orders", "staging", "", ""), "staging-orders");
        assert_eq!(effective_group("orders", "staging", "", ".staging"), "orders.staging");
        assert_eq!(
            effective_group("product-sync", "prod", "", ""),
            "prod-product-sync",
            "a part, not a substring"
        );
        assert_eq!(effective_group("eu-prod-orders", "eu-prod", "", ""), "eu-prod-orders", "parts in a row");
        assert_eq!(effective_group("eu.prod.orders", "eu-prod", "", ""), "eu.prod.orders", "any separator");
        assert_eq!(effective_group("prod-eu-orders", "eu-prod", "", ""), "eu-prod-prod-eu-orders");
    }
}
