//! `[[routes]]`: per-topic delivery settings from the TOML file.
//!
//! A route matches a topic (`topic`) or a regular expression over topic names (`topic_pattern`),
//! or an SQS queue of `SQS_QUEUE_URLS` by name (`queue`, `queue_pattern`), and may set its own
//! target (`delivery_url` or `sqs_queue_url`), timeout, ordering, retry policy, batching and
//! dead-letter topic (topics only: a queue's dead letters go to its own dead-letter queue);
//! whatever it leaves out comes from the top-level settings. The first route that matches wins;
//! topics and queues no route matches (including topics a `^regex` subscription finds later) use
//! the top-level settings. Every problem names the route and the field.

use serde::Deserialize;

use super::validate::Reader;
use super::{
    BatchConfig, Config, DeliveryConfig, DeliveryTarget, Ordering, RetryPolicy, Route, Selects, TopicMatcher,
    parse,
};

/// A route as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    topic: Option<String>,
    topic_pattern: Option<String>,
    queue: Option<String>,
    queue_pattern: Option<String>,
    stream: Option<String>,
    stream_pattern: Option<String>,
    delivery_url: Option<String>,
    sqs_queue_url: Option<String>,
    delivery_timeout: Option<String>,
    ordering: Option<String>,
    retry_max_attempts: Option<u64>,
    retry_initial_backoff: Option<String>,
    retry_max_backoff: Option<String>,
    dlq_topic: Option<String>,
    batch_max_records: Option<u64>,
    batch_max_bytes: Option<u64>,
    batch_linger: Option<String>,
    value_format: Option<String>,
    key_format: Option<String>,
    protobuf_message: Option<String>,
    filter: Option<String>,
    max_record_age: Option<String>,
}

/// Collects the problems of one route.
struct Checker<'r, 'a> {
    reader: &'r mut Reader<'a>,
    name: String,
    ok: bool,
}

impl Checker<'_, '_> {
    fn fail(&mut self, field: &str, value: &dyn std::fmt::Debug, message: impl std::fmt::Display) {
        // A URL may carry a secret (user info, a query value): shown redacted.
        let shown = format!("{value:?}");
        let shown = if field.ends_with("url") {
            format!("{:?}", super::redact_text_url(shown.trim_matches('"')))
        } else {
            shown
        };
        self.reader.problem(&format!("{}.{field}", self.name), format!("{shown}: {message}"));
        self.ok = false;
    }

    fn value<T, V: std::fmt::Debug>(
        &mut self,
        field: &str,
        value: Option<V>,
        parser: impl Fn(&V) -> Result<T, String>,
    ) -> Option<T> {
        let value = value?;
        match parser(&value) {
            Ok(parsed) => Some(parsed),
            Err(message) => {
                self.fail(field, &value, message);
                None
            }
        }
    }
}

/// Parses every `[[routes]]` table against the top-level `config`.
pub(super) fn parse(reader: &mut Reader<'_>, config: &Config) -> Vec<Route> {
    let tables = reader.raw.routes.clone();
    let mut routes = Vec::new();
    for (index, (table, path)) in tables.into_iter().enumerate() {
        let name = format!("routes[{index}] in {}", path.display());
        let raw: RawRoute = match toml::Value::Table(table).try_into() {
            Ok(raw) => raw,
            Err(err) => {
                reader.problem(&name, super::raw::one_line(&err.to_string()));
                continue;
            }
        };
        let mut checker = Checker { reader, name: format!("routes[{index}]"), ok: true };
        if let Some(route) = route(&mut checker, raw, config, index) {
            routes.push(route);
        }
    }
    routes
}

fn route(c: &mut Checker<'_, '_>, raw: RawRoute, config: &Config, index: usize) -> Option<Route> {
    let pattern = |p: &&String| {
        regex::Regex::new(p).map(TopicMatcher::Pattern).map_err(|e| super::raw::one_line(&e.to_string()))
    };
    let selectors =
        [&raw.topic, &raw.topic_pattern, &raw.queue, &raw.queue_pattern, &raw.stream, &raw.stream_pattern];
    let (matcher, selects) = match selectors {
        [Some(topic), None, None, None, None, None] => (
            c.value("topic", Some(topic), |t| parse::topic(t).map(|()| TopicMatcher::Exact(t.to_string()))),
            Selects::Topics,
        ),
        [None, Some(p), None, None, None, None] => {
            (c.value("topic_pattern", Some(p), pattern), Selects::Topics)
        }
        [None, None, Some(queue), None, None, None] => {
            (Some(TopicMatcher::Exact(queue.clone())), Selects::Queues)
        }
        [None, None, None, Some(p), None, None] => {
            (c.value("queue_pattern", Some(p), pattern), Selects::Queues)
        }
        [None, None, None, None, Some(stream), None] => {
            (Some(TopicMatcher::Exact(stream.clone())), Selects::Streams)
        }
        [None, None, None, None, None, Some(p)] => {
            (c.value("stream_pattern", Some(p), pattern), Selects::Streams)
        }
        _ => {
            c.fail(
                "topic",
                &raw.topic,
                "set exactly one of topic, topic_pattern, queue, queue_pattern, stream and stream_pattern",
            );
            (None, Selects::Topics)
        }
    };
    if selects == Selects::Topics && matcher.is_some() && config.kafka.is_none() {
        let field = if raw.topic.is_some() { "topic" } else { "topic_pattern" };
        // Only shown: one of the two is set, as the matcher is.
        let value = raw.topic.as_deref().or(raw.topic_pattern.as_deref()).unwrap_or_default();
        c.fail(
            field,
            &value,
            "there is no Kafka source (set KAFKA_BROKERS, KAFKA_TOPICS and KAFKA_CONSUMER_GROUP)",
        );
    } else if let (Some(TopicMatcher::Exact(topic)), Selects::Topics, Some(kafka)) =
        (&matcher, selects, &config.kafka)
    {
        let subscribed = kafka.topics.iter().any(|t| {
            t == topic
                || (t.starts_with('^')
                    && regex::Regex::new(t).map_or(true, |pattern| pattern.is_match(topic)))
        });
        if !subscribed {
            c.fail("topic", topic, "is not in KAFKA_TOPICS");
        }
    }
    if let (Some(TopicMatcher::Exact(queue)), Selects::Queues) = (&matcher, selects) {
        let sqs = config
            .sqs_source
            .as_ref()
            .is_some_and(|s| s.queues.iter().any(|url| super::sources::queue_name(url) == *queue));
        let amqp = config.amqp_source.as_ref().is_some_and(|a| a.queues.contains(queue));
        if !sqs && !amqp {
            c.fail("queue", queue, "is not a queue of SQS_QUEUE_URLS or AMQP_QUEUES");
        } else if sqs && amqp {
            c.fail(
                "queue",
                queue,
                "is a queue of both SQS_QUEUE_URLS and AMQP_QUEUES: the route cannot tell them apart",
            );
        }
    }
    if let (Some(TopicMatcher::Exact(stream)), Selects::Streams) = (&matcher, selects)
        && !config.redis_source.as_ref().is_some_and(|r| r.streams.contains(stream))
    {
        c.fail("stream", stream, "is not a stream of REDIS_STREAMS");
    }
    if selects != Selects::Topics && raw.dlq_topic.is_some() {
        c.fail(
            "dlq_topic",
            &raw.dlq_topic,
            "a queue's or stream's dead letters go to its own dead-letter place and the archive",
        );
    }
    let rules = route_rules(c, &raw, config);
    let target = match (&raw.delivery_url, &raw.sqs_queue_url) {
        (Some(_), Some(_)) => {
            c.fail("delivery_url", &raw.delivery_url, "set either delivery_url or sqs_queue_url, not both");
            None
        }
        (Some(url), None) => {
            c.value("delivery_url", Some(url), |u| parse::http_url(u).map(DeliveryTarget::Http))
        }
        (None, Some(url)) => {
            c.value("sqs_queue_url", Some(url), |u| parse::http_url(u).map(DeliveryTarget::Sqs))
        }
        (None, None) => Some(config.delivery.target.clone()),
    };
    let timeout = match raw.delivery_timeout {
        Some(t) => c.value("delivery_timeout", Some(t), |t| {
            let timeout = parse::positive_duration(t)?;
            let drain = crate::shutdown::drain_deadline(config.shutdown_grace);
            if timeout >= drain {
                return Err(format!(
                    "must be shorter than the shutdown drain ({}: SIDECAR_SHUTDOWN_GRACE minus 2s)",
                    humantime::format_duration(drain)
                ));
            }
            Ok(timeout)
        }),
        None => Some(config.delivery.timeout),
    };
    let ordering = match raw.ordering {
        Some(o) => c.value("ordering", Some(o), |o| match o.as_str() {
            "partition" => Ok(Ordering::Partition),
            "key" => Ok(Ordering::Key),
            "none" => Ok(Ordering::None),
            _ => Err("expected partition, key or none".to_string()),
        }),
        None => Some(config.ordering),
    };
    let base = config.retry;
    let max_attempts =
        c.value("retry_max_attempts", raw.retry_max_attempts.or(Some(u64::from(base.max_attempts))), |n| {
            u32::try_from(*n)
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| "expected 1 to 1000".to_string())
        });
    let initial = match raw.retry_initial_backoff {
        Some(t) => c.value("retry_initial_backoff", Some(t), |t| parse::positive_duration(t)),
        None => Some(base.initial_backoff),
    };
    let max = match raw.retry_max_backoff {
        Some(t) => c.value("retry_max_backoff", Some(t), |t| parse::positive_duration(t)),
        None => Some(base.max_backoff),
    };
    if let (Some(initial), Some(max)) = (initial, max)
        && max < initial
    {
        c.fail("retry_max_backoff", &max, "must be at least retry_initial_backoff");
    }
    let dlq_topic = match raw.dlq_topic {
        Some(t) => c.value("dlq_topic", Some(t), |t| {
            parse::topic(t)?;
            if let Some(consumer) = config.kafka.as_ref().and_then(|k| k.consumed_by(t)) {
                return Err(format!(
                    "is consumed by KAFKA_TOPICS ({consumer:?}): dead letters would be consumed again"
                ));
            }
            Ok(Some(t.clone()))
        }),
        None => Some(config.dlq.topic.clone()),
    };
    let batch = config.delivery.batch;
    let max_records =
        c.value("batch_max_records", raw.batch_max_records.or(Some(batch.max_records as u64)), |n| {
            usize::try_from(*n)
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| "expected 1 to 10000".to_string())
        });
    let max_bytes = c.value("batch_max_bytes", raw.batch_max_bytes.or(Some(batch.max_bytes as u64)), |n| {
        usize::try_from(*n).ok().filter(|n| *n >= 1024).ok_or_else(|| "expected at least 1024".to_string())
    });
    let linger = match raw.batch_linger {
        Some(t) => c.value("batch_linger", Some(t), |t| parse::duration(t)),
        None => Some(batch.linger),
    };
    if !c.ok {
        return None;
    }
    Some(Route {
        name: format!("routes[{index}]"),
        matcher,
        selects,
        delivery: DeliveryConfig {
            target: target?,
            timeout: timeout?,
            batch: BatchConfig { max_records: max_records?, max_bytes: max_bytes?, linger: linger? },
        },
        ordering: ordering?,
        retry: RetryPolicy { max_attempts: max_attempts?, initial_backoff: initial?, max_backoff: max? },
        dlq_topic: dlq_topic?,
        rules: rules?,
    })
}

/// The route's record rules: its own `value_format`, `key_format` (with `protobuf_message` of
/// the shared descriptor), `filter` (`""`: none) and `max_record_age` (`"none"`), the top-level
/// ones for what it leaves out.
fn route_rules(c: &mut Checker<'_, '_>, raw: &RawRoute, config: &Config) -> Option<crate::codec::Rules> {
    use super::rules;
    use crate::codec::decode::Format;
    let base = &config.rules;
    let message = raw.protobuf_message.as_deref();
    if message.is_some() && raw.value_format.as_deref().map(str::trim) != Some("protobuf") {
        c.fail("protobuf_message", &message, "needs value_format = \"protobuf\" in the same route");
    }
    let value = match &raw.value_format {
        Some(f) => {
            c.value("value_format", Some(f), |f| rules::decoder(Format::parse(f)?, &config.schemas, message))
        }
        None => Some(base.value.clone()),
    };
    let key = match &raw.key_format {
        Some(f) => {
            c.value("key_format", Some(f), |f| rules::decoder(Format::parse(f)?, &config.schemas, None))
        }
        None => Some(base.key.clone()),
    };
    let filter = match raw.filter.as_deref().map(str::trim) {
        Some("") => Some(None),
        Some(text) => c.value("filter", Some(text), |t| rules::filter(t).map(Some)),
        None => Some(base.filter.clone()),
    };
    let max_age = match raw.max_record_age.as_deref().map(str::trim) {
        Some("none") => Some(None),
        Some(text) => c.value("max_record_age", Some(text), |t| rules::max_age(t).map(Some)),
        None => Some(base.max_age),
    };
    Some(crate::codec::Rules { value: value?, key: key?, filter: filter?, max_age: max_age? })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    fn env() -> BTreeMap<String, String> {
        [
            ("KAFKA_BROKERS", "localhost:9092"),
            ("KAFKA_TOPICS", "orders,payments,^audit\\..*"),
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("KAFKA_AUTH", "none"),
            ("SIDECAR_DELIVERY_URL", "http://127.0.0.1:8080/events"),
            ("SIDECAR_DLQ_TOPIC", "dead"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn load(toml: &str) -> Result<Config, super::super::ConfigError> {
        Config::from_sources(&env(), Some((Path::new("r.toml"), toml)))
    }

    #[test]
    fn routes_override_the_defaults_and_the_first_match_wins() {
        let config = load(
            r#"
            [[routes]]
            topic = "payments"
            sqs_queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/payments"
            ordering = "key"
            retry_max_attempts = 2
            dlq_topic = "payments.dlq"

            [[routes]]
            topic_pattern = "^audit\\."
            delivery_url = "http://127.0.0.1:9090/audit"
            retry_initial_backoff = "1s"
            retry_max_backoff = "2s"
            batch_max_records = 50

            [[routes]]
            topic_pattern = ".*"
            ordering = "none"
            "#,
        )
        .expect("valid");
        let payments = config.route_for("payments");
        assert!(matches!(payments.delivery.target, DeliveryTarget::Sqs(_)));
        assert_eq!(payments.ordering, Ordering::Key);
        assert_eq!(payments.retry.max_attempts, 2);
        assert_eq!(payments.retry.initial_backoff, Duration::from_millis(200), "inherited");
        assert_eq!(payments.dlq_topic.as_deref(), Some("payments.dlq"));
        let audit = config.route_for("audit.logins");
        assert_eq!(audit.retry.max_backoff, Duration::from_secs(2));
        assert_eq!(audit.delivery.batch.max_records, 50);
        assert_eq!(audit.dlq_topic.as_deref(), Some("dead"), "inherited");
        assert_eq!(
            config.route_for("orders").ordering,
            Ordering::None,
            "third route matches everything else"
        );
        assert_eq!(config.all_routes().len(), 4);
    }

    #[test]
    fn queue_routes_apply_to_queues_and_topic_routes_to_topics() {
        let mut env = env();
        env.insert(
            "SQS_QUEUE_URLS".into(),
            "http://localhost:4566/000000000000/tasks,http://localhost:4566/000000000000/jobs.fifo".into(),
        );
        let toml = r#"
            [[routes]]
            queue = "tasks"
            delivery_url = "http://127.0.0.1:9191/tasks"
            retry_max_attempts = 9

            [[routes]]
            queue_pattern = "^jobs"
            ordering = "none"

            [[routes]]
            topic_pattern = ".*"
            retry_max_attempts = 2
            "#;
        let config = Config::from_sources(&env, Some((Path::new("r.toml"), toml))).expect("valid");
        let tasks = config.queue_route_for("tasks");
        assert_eq!((tasks.name.as_str(), tasks.retry.max_attempts), ("routes[0]", 9));
        assert!(matches!(&tasks.delivery.target, DeliveryTarget::Http(url) if url.port() == Some(9191)));
        assert_eq!(config.queue_route_for("jobs.fifo").name, "routes[1]");
        assert_eq!(config.queue_route_for("other").name, "default", "topic routes never apply to queues");
        assert_eq!(config.route_for("tasks").name, "routes[2]", "queue routes never apply to topics");
        assert_eq!(config.route_for("orders").retry.max_attempts, 2);

        let bad = [
            ("[[routes]]\nqueue = \"nope\"\n", "routes[0].queue"),
            ("[[routes]]\nqueue = \"tasks\"\ndlq_topic = \"x\"\n", "routes[0].dlq_topic"),
            ("[[routes]]\nqueue = \"tasks\"\ntopic = \"orders\"\n", "routes[0].topic"),
            ("[[routes]]\nqueue_pattern = \"(\"\n", "routes[0].queue_pattern"),
        ];
        for (toml, variable) in bad {
            let err = Config::from_sources(&env, Some((Path::new("r.toml"), toml))).expect_err(toml);
            assert!(err.names(variable), "{toml}: {variable} not named in {err}");
        }
        let no_source = load("[[routes]]\nqueue = \"tasks\"\n").expect_err("no SQS source");
        assert!(no_source.names("routes[0].queue"), "{no_source}");
    }

    #[test]
    fn topics_without_a_route_use_the_defaults() {
        let config = load("[[routes]]\ntopic = \"payments\"\nordering = \"key\"\n").expect("valid");
        let orders = config.route_for("orders");
        assert_eq!(orders.name, "default");
        assert_eq!(orders.ordering, Ordering::Partition);
        assert_eq!(config.route_for("audit.new-topic").name, "default");
    }

    #[test]
    fn route_problems_name_the_route_and_field() {
        let cases = [
            ("[[routes]]\nordering = \"key\"\n", "routes[0].topic"),
            ("[[routes]]\ntopic = \"a\"\ntopic_pattern = \"b\"\n", "routes[0].topic"),
            ("[[routes]]\ntopic = \"unknown\"\n", "routes[0].topic"),
            ("[[routes]]\ntopic_pattern = \"(\"\n", "routes[0].topic_pattern"),
            ("[[routes]]\ntopic = \"orders\"\ndelivery_url = \"ftp://x\"\n", "routes[0].delivery_url"),
            (
                "[[routes]]\ntopic = \"orders\"\ndelivery_url = \"http://a/\"\nsqs_queue_url = \"http://b/\"\n",
                "routes[0].delivery_url",
            ),
            ("[[routes]]\ntopic = \"orders\"\nordering = \"random\"\n", "routes[0].ordering"),
            ("[[routes]]\ntopic = \"orders\"\nretry_max_attempts = 0\n", "routes[0].retry_max_attempts"),
            ("[[routes]]\ntopic = \"orders\"\nretry_max_backoff = \"1ms\"\n", "routes[0].retry_max_backoff"),
            ("[[routes]]\ntopic = \"orders\"\ndlq_topic = \"payments\"\n", "routes[0].dlq_topic"),
            ("[[routes]]\ntopic = \"orders\"\nbatch_max_records = 0\n", "routes[0].batch_max_records"),
            ("[[routes]]\ntopic = \"orders\"\ndelivery_timeout = \"soon\"\n", "routes[0].delivery_timeout"),
            ("[[routes]]\ntopic = \"orders\"\ncolour = \"blue\"\n", "routes[0] in r.toml"),
            ("[[routes]]\ntopic = \"orders\"\n\n[[routes]]\ntopic = \"x y\"\n", "routes[1].topic"),
            ("routes = 3\n", "routes in r.toml"),
        ];
        for (toml, variable) in cases {
            let err = load(toml).expect_err(toml);
            assert!(err.names(variable), "{toml}: {variable} not named in {err}");
        }
    }
}
