//! The sources other than Kafka: their variables, read like the rest (every problem at once).
//!
//! `SQS_QUEUE_URLS` turns the SQS source on, `REDIS_URL` the Redis Streams source; their other
//! variables only matter then, but a bad value is reported either way, so a typo never waits
//! for the day the source is turned on.

use std::time::Duration;

use url::Url;

use super::validate::Reader;
use super::{AmqpSourceConfig, RedisIamConfig, RedisSourceConfig, SqsSourceConfig, StartFrom, keys, parse};

/// The longest long-poll wait SQS accepts.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// The visibility timeout bounds of SQS (0 s to 12 h); below 2 s the lease cannot be extended in
/// time.
const VISIBILITY: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(12 * 3600));

/// Parses an SQS queue URL: `http(s)://host/<account>/<queue name>` (also the path form
/// `.../queue/<region>/<account>/<queue name>` that LocalStack and some endpoints use).
pub fn queue_url(text: &str) -> Result<Url, String> {
    let url = parse::http_url(text)?;
    // The queue's name is the URL's last segment everywhere (headers, metrics, logs, archive
    // keys): a query, fragment or user info would carry a secret there, and hide `.fifo`.
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(format!(
            "{} has a query, fragment or user info: an SQS queue URL has none (credentials come from the AWS SDK)",
            super::redact_url(&url)
        ));
    }
    let segments: Vec<&str> = url.path_segments().map(Iterator::collect).unwrap_or_default();
    let legal = |name: &str| {
        let stem = name.strip_suffix(".fifo").unwrap_or(name);
        !stem.is_empty()
            && stem.len() <= 80
            && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    match segments.as_slice() {
        [account, name] | ["queue", _, account, name] if !account.is_empty() && legal(name) => Ok(url),
        _ => Err(format!(
            "{} is not an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<queue name>)",
            super::redact_url(&url)
        )),
    }
}

/// The queue's name: the last path segment of its URL.
pub fn queue_name(url: &Url) -> String {
    url.path_segments().and_then(|mut s| s.next_back()).unwrap_or_default().to_string()
}

impl Reader<'_> {
    /// The SQS source, `Some(None)` when it is off, `None` when a value is bad.
    pub(super) fn sqs_source(&mut self) -> Option<Option<SqsSourceConfig>> {
        let queues = self.parse(keys::SQS_QUEUE_URLS, |t| {
            let urls = parse::list(t)?.iter().map(|u| queue_url(u)).collect::<Result<Vec<_>, _>>()?;
            let mut names: Vec<String> = urls.iter().map(queue_name).collect();
            names.sort();
            if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
                return Err(format!("queue {} is listed twice", pair[0]));
            }
            Ok(urls)
        });
        let max_messages = self.parse(keys::SQS_MAX_MESSAGES, |t| parse::bounded_int(t, 1, 10));
        let wait_time = self.parse(keys::SQS_WAIT_TIME, |t| {
            let wait = parse::duration(t)?;
            if wait > MAX_WAIT {
                return Err("SQS waits at most 20s".to_string());
            }
            Ok(wait)
        });
        let visibility_timeout = self.parse(keys::SQS_VISIBILITY_TIMEOUT, |t| {
            let lease = parse::duration(t)?;
            if lease < VISIBILITY.0 || lease > VISIBILITY.1 {
                return Err("expected 2s to 12h".to_string());
            }
            Ok(lease)
        });
        let (max_messages, wait_time, visibility_timeout) = (max_messages?, wait_time?, visibility_timeout?);
        let Some(queues) = queues else {
            // Unset: the source is off. Set but bad: the problem is recorded.
            return self.raw.get(keys::SQS_QUEUE_URLS).is_none().then_some(None);
        };
        Some(Some(SqsSourceConfig {
            queues,
            max_messages: i32::try_from(max_messages).ok()?,
            wait_time,
            visibility_timeout,
        }))
    }
}

/// A Redis stream key the sidecar also writes `<stream>.dlq` next to: printable, no spaces or
/// commas (the list separator).
fn stream_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 512 || !name.chars().all(|c| c.is_ascii_graphic() && c != ',') {
        return Err(format!(
            "{name:?} is not a stream name the sidecar accepts (printable ASCII, no commas)"
        ));
    }
    if name.ends_with(".dlq") {
        return Err(format!("{name} is a dead-letter stream: its entries would be dead-lettered again"));
    }
    Ok(())
}

/// The cache an IAM token is for, from `REDIS_IAM_CACHE` (`<name>`, `serverless:<name>`,
/// `memorydb:<name>`) or an ElastiCache / MemoryDB endpoint host: (service, name, serverless,
/// the region when the host names it).
pub fn iam_cache(
    explicit: Option<&str>,
    host: &str,
) -> Result<(&'static str, String, bool, Option<String>), String> {
    if let Some(text) = explicit {
        let (service, name, serverless) = match text.split_once(':') {
            Some(("serverless", name)) => ("elasticache", name, true),
            Some(("memorydb", name)) => ("memorydb", name, false),
            Some((kind, _)) => {
                return Err(format!("{kind:?}: expected <name>, serverless:<name> or memorydb:<name>"));
            }
            None => ("elasticache", text, false),
        };
        if name.is_empty() {
            return Err("the cache name is empty".to_string());
        }
        // AWS keeps cache names in lower case, and the token must name it so.
        return Ok((service, name.to_ascii_lowercase(), serverless, None));
    }
    let host = host.to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    // The group or cluster: the label after master./clustercfg./replica.; a cluster-mode node's
    // second label (`<group>-0001-001.<group>.`); a reader's first label without `-ro`
    // (`<group>-ro.<id>.ng.`); a node's without its `-001` (`<group>-001.<id>.0001.`); else the
    // first label (`<group>.<id>.ng.`).
    let name = || match labels.as_slice() {
        [kind, name, ..] if ["master", "clustercfg", "replica"].contains(kind) => (*name).to_string(),
        [node, group, ..] if node.starts_with(&format!("{group}-")) => (*group).to_string(),
        [reader, _, "ng", ..] if reader.ends_with("-ro") => reader.trim_end_matches("-ro").to_string(),
        [node, _, number, ..] if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
            node.rsplit_once('-').map_or(*node, |(group, _)| group).to_string()
        }
        [first, ..] => (*first).to_string(),
        [] => String::new(),
    };
    let memorydb = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
        .and_then(|h| h.split_once(".memorydb."));
    if let Some((_, region)) = memorydb {
        // clustercfg.<cluster>.<id>.memorydb.<region>.amazonaws.com
        return Ok(("memorydb", name(), false, Some(region.to_string())));
    }
    if host.ends_with(".cache.amazonaws.com") || host.ends_with(".cache.amazonaws.com.cn") {
        if host.contains(".serverless.") {
            // <name>-<id>.serverless.<region code>.cache.amazonaws.com
            let label = labels.first().copied().unwrap_or_default();
            let name = label.rsplit_once('-').map_or(label, |(name, _)| name).to_string();
            return Ok(("elasticache", name, true, None));
        }
        return Ok(("elasticache", name(), false, None));
    }
    Err(format!(
        "cannot tell the cache from the host {host}: set REDIS_IAM_CACHE (<name>, serverless:<name> or memorydb:<name>)"
    ))
}

/// A URL's user name as text (`%40` back to `@`).
fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("u={text}").as_bytes())
        .next()
        .map_or_else(|| text.to_string(), |(_, v)| v.into_owned())
}

/// A name that must not be empty.
fn non_empty(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() { Err("must not be empty".to_string()) } else { Ok(text.to_string()) }
}

impl Reader<'_> {
    /// The Redis Streams source, `Some(None)` when it is off, `None` when a value is bad.
    pub(super) fn redis_source(&mut self) -> Option<Option<RedisSourceConfig>> {
        let url = self.parse(keys::REDIS_URL, |t| {
            let url = url::Url::parse(t.trim()).map_err(|e| format!("not a URL: {e}"))?;
            match url.scheme() {
                "redis" | "rediss" if url.host_str().is_some() => Ok(url),
                _ => Err("expected redis://host:port or rediss://host:port".to_string()),
            }
        });
        let iam = self.parse(keys::REDIS_AUTH, |t| match t.trim() {
            "password" => Ok(false),
            "iam" => Ok(true),
            _ => Err("expected password or iam".to_string()),
        });
        let streams = self.parse(keys::REDIS_STREAMS, |t| {
            let streams = parse::list(t)?;
            streams.iter().try_for_each(|s| stream_name(s))?;
            let mut sorted = streams.clone();
            sorted.sort();
            if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
                return Err(format!("stream {} is listed twice", pair[0]));
            }
            Ok(streams)
        });
        let group = self.parse(keys::REDIS_CONSUMER_GROUP, non_empty);
        let consumer = self.parse(keys::REDIS_CONSUMER_NAME, non_empty);
        let claim_min_idle = self.parse(keys::REDIS_CLAIM_MIN_IDLE, |t| {
            let idle = parse::positive_duration(t)?;
            if idle < Duration::from_secs(3) {
                return Err(
                    "at least 3s: the sidecar refreshes its own entries every third of it".to_string()
                );
            }
            Ok(idle)
        });
        let start_from = self.parse(keys::KAFKA_START_FROM, |t| match t.trim() {
            "earliest" => Ok(StartFrom::Earliest),
            "latest" => Ok(StartFrom::Latest),
            _ => Err("expected earliest or latest".to_string()),
        });
        let (iam, claim_min_idle, start_from) = (iam?, claim_min_idle?, start_from?);
        let Some(url) = url else {
            // Unset: the source is off. Set but bad: the problem is recorded.
            return self.raw.get(keys::REDIS_URL).is_none().then_some(None);
        };
        let iam = if iam { Some(self.redis_iam(&url)?) } else { None };
        for (name, missing) in
            [(keys::REDIS_STREAMS, streams.is_none()), (keys::REDIS_CONSUMER_GROUP, group.is_none())]
        {
            if missing && self.raw.get(name).is_none() {
                self.problem(name, "required with REDIS_URL");
            }
        }
        Some(Some(RedisSourceConfig {
            url,
            streams: streams?,
            group: group?,
            consumer,
            claim_min_idle,
            start_from,
            iam,
        }))
    }

    /// What `REDIS_AUTH=iam` signs for: the user of `REDIS_URL` (which holds no password), the
    /// cache (`REDIS_IAM_CACHE`, else the endpoint host) and the region (`AWS_REGION`, else a
    /// MemoryDB host's).
    fn redis_iam(&mut self, url: &url::Url) -> Option<RedisIamConfig> {
        let mut ok = true;
        if url.username().is_empty() {
            self.problem(
                keys::REDIS_AUTH,
                "iam needs the IAM-enabled Redis user in REDIS_URL (redis://<user>@host:port)",
            );
            ok = false;
        }
        // The token is a bearer credential for 15 minutes: it travels over TLS only (ElastiCache
        // takes IAM only with in-transit encryption), or to a server on this host.
        let local = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        if url.scheme() != "rediss" && !local {
            self.problem(
                keys::REDIS_URL,
                "with REDIS_AUTH=iam use rediss:// (TLS): the token must not travel in clear text",
            );
            ok = false;
        }
        if url.password().is_some() {
            self.problem(
                keys::REDIS_URL,
                "with REDIS_AUTH=iam the URL holds no password: the IAM token is the password",
            );
            ok = false;
        }
        let explicit = self.raw.get(keys::REDIS_IAM_CACHE).map(|v| v.text.trim().to_string());
        let cache = match iam_cache(explicit.as_deref(), url.host_str().unwrap_or_default()) {
            Ok(cache) => Some(cache),
            Err(message) => {
                self.problem(keys::REDIS_IAM_CACHE, message);
                None
            }
        };
        // A MemoryDB host names its region: the token is signed for the cache's region, whatever
        // region the task or pod runs in (AWS_REGION).
        let region = match (cache.as_ref().and_then(|c| c.3.clone()), self.raw.get(keys::AWS_REGION)) {
            (Some(region), _) => Some(region),
            (None, Some(_)) => self.parse(keys::AWS_REGION, parse::region),
            (None, None) => None,
        };
        if region.is_none() && self.raw.get(keys::AWS_REGION).is_none() {
            self.problem(
                keys::AWS_REGION,
                "required with REDIS_AUTH=iam (the region the token is signed for)",
            );
        }
        let (service, name, serverless, _) = cache?;
        let user = percent_decode(url.username());
        ok.then_some(RedisIamConfig { service, name, serverless, user, region: region? })
    }
}

impl Reader<'_> {
    /// The RabbitMQ source, `Some(None)` when it is off, `None` when a value is bad.
    pub(super) fn amqp_source(&mut self, max_in_flight: Option<u64>) -> Option<Option<AmqpSourceConfig>> {
        let url = self.parse(keys::AMQP_URL, |t| {
            let url = url::Url::parse(t.trim()).map_err(|e| format!("not a URL: {e}"))?;
            match url.scheme() {
                "amqp" | "amqps" if url.host_str().is_some() => Ok(url),
                _ => Err("expected amqp://host:port or amqps://host:port".to_string()),
            }
        });
        let queues = self.parse(keys::AMQP_QUEUES, |t| {
            let queues = parse::list(t)?;
            if let Some(bad) = queues.iter().find(|q| q.len() > 255 || q.chars().any(char::is_control)) {
                return Err(format!(
                    "{bad:?} is not a queue name (at most 255 bytes, no control characters)"
                ));
            }
            let mut sorted = queues.clone();
            sorted.sort();
            if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
                return Err(format!("queue {} is listed twice", pair[0]));
            }
            Ok(queues)
        });
        let prefetch = match self.raw.get(keys::AMQP_PREFETCH) {
            Some(_) => self.parse(keys::AMQP_PREFETCH, |t| parse::bounded_int(t, 1, 65_535)),
            // SIDECAR_MAX_IN_FLIGHT, within what basic.qos takes.
            None => max_in_flight.map(|n| n.min(65_535)),
        };
        let Some(url) = url else {
            return self.raw.get(keys::AMQP_URL).is_none().then_some(None);
        };
        if queues.is_none() && self.raw.get(keys::AMQP_QUEUES).is_none() {
            self.problem(keys::AMQP_QUEUES, "required with AMQP_URL");
        }
        Some(Some(AmqpSourceConfig { url, queues: queues?, prefetch: u16::try_from(prefetch?).ok()? }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::Config;

    fn load(extra: &[(&str, &str)]) -> Result<Config, crate::config::ConfigError> {
        let env: BTreeMap<String, String> = [
            ("KAFKA_BROKERS", "localhost:9092"),
            ("KAFKA_TOPICS", "orders"),
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("KAFKA_AUTH", "none"),
            ("SIDECAR_DELIVERY_URL", "http://127.0.0.1:8080/events"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Config::from_sources(&env, None)
    }

    #[test]
    fn the_sqs_source_is_off_until_queues_are_named() {
        assert!(load(&[]).expect("valid").sqs_source.is_none());
        let config = load(&[
            (
                "SQS_QUEUE_URLS",
                "http://localhost:4566/000000000000/a, http://localhost:4566/000000000000/b.fifo",
            ),
            ("SQS_VISIBILITY_TIMEOUT", "45s"),
        ])
        .expect("valid");
        let source = config.sqs_source.clone().expect("on");
        assert_eq!(source.queues.len(), 2);
        assert_eq!(
            (source.max_messages, source.wait_time, source.visibility_timeout),
            (10, Duration::from_secs(20), Duration::from_secs(45))
        );
        let shown: Vec<(String, String)> = config.effective();
        assert!(shown.iter().any(|(k, v)| k == "SQS_VISIBILITY_TIMEOUT" && v == "45s"), "{shown:?}");
    }

    #[test]
    fn bad_sqs_values_name_their_variable() {
        let queue = ("SQS_QUEUE_URLS", "http://localhost:4566/000000000000/a");
        for (bad, variable) in [
            (("SQS_MAX_MESSAGES", "11"), "SQS_MAX_MESSAGES"),
            (("SQS_WAIT_TIME", "21s"), "SQS_WAIT_TIME"),
            (("SQS_VISIBILITY_TIMEOUT", "1s"), "SQS_VISIBILITY_TIMEOUT"),
            (("SQS_QUEUE_URLS", "http://localhost:4566/just-a-name"), "SQS_QUEUE_URLS"),
            (("SQS_QUEUE_URLS", "http://h/1/a,http://h/2/a"), "SQS_QUEUE_URLS"),
        ] {
            let err = load(&[queue, bad]).expect_err("invalid");
            assert!(err.names(variable), "{bad:?}: {err}");
        }
        // A bad value is reported even while the source is off.
        assert!(load(&[("SQS_WAIT_TIME", "1h")]).expect_err("invalid").names("SQS_WAIT_TIME"));
    }

    fn load_without_kafka(extra: &[(&str, &str)]) -> Result<Config, crate::config::ConfigError> {
        let env: BTreeMap<String, String> = [
            ("SQS_QUEUE_URLS", "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks"),
            ("SIDECAR_DELIVERY_URL", "http://127.0.0.1:8080/events"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Config::from_sources(&env, None)
    }

    #[test]
    fn an_sqs_only_sidecar_needs_no_kafka_variables() {
        let config = load_without_kafka(&[]).expect("valid without KAFKA_*");
        assert!(config.kafka.is_none());
        assert_eq!(config.dlq.topic, None, "no dead-letter topic without Kafka");
        assert_eq!(config.group(), "");
        assert!(config.default_route().dlq_topic.is_none());
        let policy = serde_json::to_string(&crate::auth::policy::iam_policy(&config)).expect("json");
        assert!(!policy.contains("kafka-cluster"), "no Kafka statements: {policy}");
        assert!(policy.contains("sqs:ReceiveMessage"), "{policy}");
        let shown = config.effective();
        assert!(shown.iter().any(|(k, v)| k == "KAFKA_BROKERS" && v.is_empty()), "{shown:?}");
    }

    #[test]
    fn at_least_one_source_must_be_configured() {
        let env: BTreeMap<String, String> = [("SIDECAR_DELIVERY_URL", "http://127.0.0.1:8080/events")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let err = Config::from_sources(&env, None).expect_err("no source");
        for variable in ["KAFKA_BROKERS", "KAFKA_TOPICS", "KAFKA_CONSUMER_GROUP"] {
            assert!(err.names(variable), "{err}");
        }
        // Naming one Kafka variable next to the queues turns the Kafka source on: the other
        // two are then required, not silently ignored.
        let err = load_without_kafka(&[("KAFKA_TOPICS", "orders")]).expect_err("half a Kafka source");
        assert!(err.names("KAFKA_BROKERS") && err.names("KAFKA_CONSUMER_GROUP"), "{err}");
    }

    #[test]
    fn kafka_settings_without_a_kafka_source_are_refused() {
        for (variable, value) in [
            ("SIDECAR_DLQ_TOPIC", "dead"),
            ("KAFKA_AUTH", "none"),
            ("MSK_CLUSTER_ARN", "arn:aws:kafka:eu-west-1:123456789012:cluster/demo/abc"),
            ("SIDECAR_LIBRDKAFKA_FETCH_WAIT_MAX_MS", "10"),
        ] {
            let err = load_without_kafka(&[(variable, value)]).expect_err("refused");
            assert!(err.names(variable), "{variable}: {err}");
            assert!(err.to_string().contains("no Kafka source"), "{err}");
        }
    }

    #[test]
    fn a_topic_route_without_a_kafka_source_is_refused() {
        for (route, field) in [
            ("topic = \"orders\"", "routes[0].topic"),
            ("topic_pattern = \"^o.*\"", "routes[0].topic_pattern"),
        ] {
            let text = format!("[[routes]]\n{route}\n");
            let env: BTreeMap<String, String> = [
                ("SQS_QUEUE_URLS", "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks"),
                ("SIDECAR_DELIVERY_URL", "http://127.0.0.1:8080/events"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            let err = Config::from_sources(&env, Some((std::path::Path::new("routes.toml"), &text)))
                .expect_err("refused");
            assert!(err.names(field), "{field}: {err}");
            assert!(err.to_string().contains("no Kafka source"), "{err}");
        }
    }

    #[test]
    fn stream_and_rabbitmq_queue_routes_name_what_is_consumed() {
        let env: BTreeMap<String, String> = [
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("REDIS_STREAMS", "orders"),
            ("REDIS_CONSUMER_GROUP", "g"),
            ("AMQP_URL", "amqp://u:p@127.0.0.1:5672/%2f"),
            ("AMQP_QUEUES", "jobs"),
            ("SIDECAR_DELIVERY_URL", "http://127.0.0.1:8080/events"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let load = |text: &str| Config::from_sources(&env, Some((std::path::Path::new("r.toml"), text)));
        let config = load("[[routes]]\nstream = \"orders\"\n[[routes]]\nqueue = \"jobs\"\n").expect("valid");
        assert_eq!(config.routes.len(), 2);
        assert!(config.kafka.is_none() && config.amqp_source.is_some() && config.redis_source.is_some());
        for (text, field) in [
            ("[[routes]]\nstream = \"payments\"\n", "routes[0].stream"),
            ("[[routes]]\nqueue = \"other\"\n", "routes[0].queue"),
            ("[[routes]]\nstream = \"orders\"\ndlq_topic = \"x\"\n", "routes[0].dlq_topic"),
            ("[[routes]]\nstream = \"orders\"\nqueue = \"jobs\"\n", "routes[0].topic"),
        ] {
            let err = load(text).expect_err(text);
            assert!(err.names(field), "{text}: {err}");
        }
        // A queue of both sources: a route naming it cannot tell them apart.
        let mut both = env.clone();
        both.insert("SQS_QUEUE_URLS".into(), "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs".into());
        let err = Config::from_sources(
            &both,
            Some((std::path::Path::new("r.toml"), "[[routes]]\nqueue = \"jobs\"\n")),
        )
        .expect_err("ambiguous");
        assert!(err.to_string().contains("both"), "{err}");
    }

    #[test]
    fn the_iam_cache_is_read_from_the_endpoint_or_given() {
        let cases = [
            ("master.orders.abc123.use1.cache.amazonaws.com", ("elasticache", "orders", false, None)),
            ("clustercfg.orders.abc123.use1.cache.amazonaws.com", ("elasticache", "orders", false, None)),
            ("orders-x1y2z3.serverless.use1.cache.amazonaws.com", ("elasticache", "orders", true, None)),
            ("orders-001.abc123.0001.use1.cache.amazonaws.com", ("elasticache", "orders", false, None)),
            (
                "orders-0001-001.orders.abc123.use1.cache.amazonaws.com",
                ("elasticache", "orders", false, None),
            ),
            ("orders-ro.abc.ng.0001.use1.cache.amazonaws.com", ("elasticache", "orders", false, None)),
            ("orders-2024.abc.ng.0001.use1.cache.amazonaws.com", ("elasticache", "orders-2024", false, None)),
            (
                "streams-0001-001.streams.abc.memorydb.eu-west-1.amazonaws.com",
                ("memorydb", "streams", false, Some("eu-west-1")),
            ),
            (
                "clustercfg.streams.abc.memorydb.eu-west-1.amazonaws.com",
                ("memorydb", "streams", false, Some("eu-west-1")),
            ),
        ];
        for (host, (service, name, serverless, region)) in cases {
            let found = iam_cache(None, host).expect(host);
            assert_eq!(found, (service, name.to_string(), serverless, region.map(str::to_string)), "{host}");
        }
        assert_eq!(
            iam_cache(Some("serverless:c"), "localhost").unwrap(),
            ("elasticache", "c".into(), true, None)
        );
        assert_eq!(iam_cache(Some("memorydb:m"), "localhost").unwrap().0, "memorydb");
        assert_eq!(iam_cache(Some("Orders"), "localhost").unwrap().1, "orders", "names are lower case");
        assert!(iam_cache(None, "redis.internal").unwrap_err().contains("REDIS_IAM_CACHE"));
        assert!(iam_cache(Some("other:x"), "h").is_err());
    }

    #[test]
    fn redis_iam_needs_a_user_no_password_and_a_region() {
        let base = [
            ("REDIS_STREAMS", "orders"),
            ("REDIS_CONSUMER_GROUP", "g"),
            ("REDIS_AUTH", "iam"),
            ("SIDECAR_DELIVERY_URL", "http://127.0.0.1:8080/events"),
        ];
        let load = |extra: &[(&str, &str)]| {
            let env: BTreeMap<String, String> =
                base.iter().chain(extra).map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Config::from_sources(&env, None)
        };
        let ok = load(&[
            ("REDIS_URL", "rediss://app%40team@master.orders.abc.use1.cache.amazonaws.com:6379"),
            ("AWS_REGION", "us-east-1"),
        ])
        .expect("valid");
        let iam = ok.redis_source.clone().and_then(|r| r.iam).expect("iam");
        assert_eq!(
            (iam.user.as_str(), iam.name.as_str(), iam.region.as_str()),
            ("app@team", "orders", "us-east-1")
        );
        for (url, variable) in [
            ("rediss://master.orders.abc.use1.cache.amazonaws.com:6379", "REDIS_AUTH"),
            ("rediss://u:pw@master.orders.abc.use1.cache.amazonaws.com:6379", "REDIS_URL"),
            ("redis://u@10.0.0.1:6379", "REDIS_IAM_CACHE"),
        ] {
            let err = load(&[("REDIS_URL", url), ("AWS_REGION", "us-east-1")]).expect_err(url);
            assert!(err.names(variable), "{url}: {err}");
            assert!(!err.to_string().contains("pw@"), "no password shown: {err}");
        }
        let err = load(&[("REDIS_URL", "rediss://u@master.orders.abc.use1.cache.amazonaws.com:6379")])
            .expect_err("no region");
        assert!(err.names("AWS_REGION"), "{err}");
        let policy = serde_json::to_string(&crate::auth::policy::iam_policy(
            &load(&[(
                "REDIS_URL",
                "rediss://reader@clustercfg.streams.abc.memorydb.eu-west-1.amazonaws.com:6379",
            )])
            .expect("valid"),
        ))
        .expect("json");
        assert!(policy.contains("memorydb:Connect"), "{policy}");
        assert!(policy.contains(":memorydb:eu-west-1:ACCOUNT_ID:cluster/streams"), "{policy}");
        assert!(policy.contains(":memorydb:eu-west-1:ACCOUNT_ID:user/reader"), "{policy}");
        let elasticache = serde_json::to_string(&crate::auth::policy::iam_policy(&ok)).expect("json");
        assert!(
            elasticache.contains(":elasticache:us-east-1:ACCOUNT_ID:replicationgroup:orders"),
            "{elasticache}"
        );
        let err = load(&[
            ("REDIS_URL", "redis://u@master.orders.abc.use1.cache.amazonaws.com:6379"),
            ("AWS_REGION", "us-east-1"),
        ])
        .expect_err("clear text");
        assert!(err.names("REDIS_URL"), "{err}");
        let memorydb = load(&[
            ("REDIS_URL", "rediss://u@clustercfg.streams.abc.memorydb.eu-west-1.amazonaws.com:6379"),
            ("AWS_REGION", "us-east-1"),
        ])
        .expect("valid");
        let iam = memorydb.redis_source.and_then(|r| r.iam).expect("iam");
        assert_eq!(iam.region, "eu-west-1", "the cache's region, not the pod's");
    }

    #[test]
    fn queue_urls_name_an_account_and_a_queue() {
        let url = queue_url("https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo").expect("valid");
        assert_eq!(queue_name(&url), "orders.fifo");
        assert!(queue_url("http://localhost:4566/000000000000/tasks").is_ok());
        let path_form =
            queue_url("http://127.0.0.1:4566/queue/us-east-1/000000000000/tasks").expect("path form");
        assert_eq!(queue_name(&path_form), "tasks");
        for bad in [
            "https://sqs.eu-west-1.amazonaws.com/orders",
            "https://sqs.eu-west-1.amazonaws.com/123/",
            "https://sqs.eu-west-1.amazonaws.com/123/or ders",
            "sqs://x/123/orders",
            "https://sqs.eu-west-1.amazonaws.com/123/a/b",
            "https://sqs.eu-west-1.amazonaws.com/123/t.fifo?X-Amz-Security-Token=s3cret",
            "https://sqs.eu-west-1.amazonaws.com/123/t.fifo#x",
            "https://user:s3cret@sqs.eu-west-1.amazonaws.com/123/t",
        ] {
            let err = queue_url(bad).expect_err(bad);
            assert!(!err.contains("s3cret"), "the refusal shows no secret: {err}");
        }
    }
}
