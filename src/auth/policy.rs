//! The least-privilege IAM policy a configuration needs, as `msk-sidecar check-config` prints it.
//!
//! `kafka-cluster:Connect` on the cluster, `DescribeTopic` + `ReadData` on the source topics,
//! `DescribeTopic` + `WriteData` on the dead-letter topic, `DescribeGroup` + `AlterGroup` on the
//! group, `s3:PutObject` on the archive prefix, `sqs:SendMessage` on a delivery queue, the
//! consumer actions on the SQS source's queues and `sqs:SendMessage` on their dead-letter queues
//! (named by placeholders: only their RedrivePolicy knows them) and, for a queue encrypted with
//! a KMS key, `kms:GenerateDataKey` + `kms:Decrypt` on the keys of the queues' accounts, only
//! through SQS. The Terraform modules in `infra/` render the same document
//! from the same inputs.

use serde::Serialize;

use crate::config::{ArchiveTarget, Config, DeliveryTarget, KafkaConfig, Selects};

/// Placeholder parts used when `MSK_CLUSTER_ARN` is not set.
pub const PLACEHOLDER_ACCOUNT: &str = "ACCOUNT_ID";
/// Placeholder cluster name and id.
pub const PLACEHOLDER_CLUSTER: &str = "CLUSTER_NAME/CLUSTER_UUID";

/// An IAM policy document.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Policy {
    /// Policy language version.
    #[serde(rename = "Version")]
    pub version: &'static str,
    /// The statements.
    #[serde(rename = "Statement")]
    pub statement: Vec<Statement>,
}

/// One Allow statement.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Statement {
    /// Statement id.
    #[serde(rename = "Sid")]
    pub sid: &'static str,
    /// Always `Allow`.
    #[serde(rename = "Effect")]
    pub effect: &'static str,
    /// Actions, sorted.
    #[serde(rename = "Action")]
    pub action: Vec<&'static str>,
    /// Resource ARNs.
    #[serde(rename = "Resource")]
    pub resource: Vec<String>,
    /// Conditions (`StringEquals` → key → values), when the statement has any.
    #[serde(rename = "Condition", skip_serializing_if = "Option::is_none")]
    pub condition: Option<serde_json::Value>,
}

fn allow(sid: &'static str, action: &[&'static str], resource: Vec<String>) -> Statement {
    Statement { sid, effect: "Allow", action: action.to_vec(), resource, condition: None }
}

/// The cluster ARN to use: `MSK_CLUSTER_ARN`, or a placeholder in the configured region
/// (`true`: a placeholder); `None` without a Kafka source.
pub fn cluster_arn(config: &Config) -> Option<(String, bool)> {
    let kafka = config.kafka.as_ref()?;
    Some(match &kafka.cluster_arn {
        Some(arn) => (arn.clone(), false),
        None => {
            let region = kafka.region.as_deref().unwrap_or("REGION");
            (format!("arn:aws:kafka:{region}:{PLACEHOLDER_ACCOUNT}:cluster/{PLACEHOLDER_CLUSTER}"), true)
        }
    })
}

/// The AWS partition of the resources: the cluster's, else the queues' (`aws-cn` for hosts in
/// `amazonaws.com.cn`), else `aws`.
fn partition(config: &Config, cluster: Option<&str>) -> String {
    if let Some(cluster) = cluster {
        return cluster.split(':').nth(1).unwrap_or("aws").to_string();
    }
    let china = config
        .sqs_source
        .iter()
        .flat_map(|s| &s.queues)
        .any(|url| url.host_str().is_some_and(|h| h.ends_with(".amazonaws.com.cn")));
    if china { "aws-cn" } else { "aws" }.to_string()
}

/// The Kafka statements: connect, read the topics, write the dead-letter topics, use the group.
fn kafka_statements(config: &Config, kafka: &KafkaConfig, cluster: &str) -> Vec<Statement> {
    let child =
        |kind: &str, name: &str| format!("{}/{name}", cluster.replacen(":cluster/", &format!(":{kind}/"), 1));
    let mut topics: Vec<String> = Vec::new();
    for topic in &kafka.topics {
        let arn = child("topic", if topic.starts_with('^') { "*" } else { topic });
        if !topics.contains(&arn) {
            topics.push(arn);
        }
    }
    // Routes may dead-letter to their own topics; a queue route's dead letters go to the
    // queue's own dead-letter queue.
    let mut dlq_topics: Vec<String> = Vec::new();
    for route in config.all_routes().into_iter().rev() {
        if let (Selects::Topics, Some(topic)) = (route.selects, &route.dlq_topic) {
            let arn = child("topic", topic);
            if !dlq_topics.contains(&arn) {
                dlq_topics.push(arn);
            }
        }
    }
    vec![
        allow("ConnectToCluster", &["kafka-cluster:Connect"], vec![cluster.to_string()]),
        allow("ReadSourceTopics", &["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"], topics),
        allow(
            "WriteDeadLetterTopic",
            &["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
            dlq_topics,
        ),
        allow(
            "UseConsumerGroup",
            &["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"],
            vec![child("group", &kafka.group)],
        ),
    ]
}

/// The ARN of a queue from its URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`; also
/// LocalStack's `.../queue/<region>/<account>/<name>`).
pub fn queue_arn(url: &url::Url, partition: &str, default_region: &str) -> String {
    let segments: Vec<&str> =
        url.path_segments().map(|s| s.filter(|p| !p.is_empty()).collect()).unwrap_or_default();
    let (account, name) = match segments.as_slice() {
        [.., account, name] => (*account, *name),
        _ => ("ACCOUNT_ID", "QUEUE_NAME"),
    };
    let host = url.host_str().unwrap_or_default();
    let region = host
        .strip_prefix("sqs.")
        .and_then(|rest| rest.split('.').next())
        .or(match segments.as_slice() {
            ["queue", region, ..] => Some(*region),
            _ => None,
        })
        .unwrap_or(default_region);
    format!("arn:{partition}:sqs:{region}:{account}:{name}")
}

/// A queue encrypted with a KMS key (SSE-KMS) needs the key to send: `kms:GenerateDataKey` and
/// `kms:Decrypt` on the keys of the queues' accounts and regions, and only through SQS.
fn queue_keys(queue_arns: &[String]) -> Statement {
    let mut keys = Vec::new();
    let mut services = Vec::new();
    for arn in queue_arns {
        let parts: Vec<&str> = arn.split(':').collect();
        let [_, partition, _, region, account, ..] = parts.as_slice() else { continue };
        let key = format!("arn:{partition}:kms:{region}:{account}:key/*");
        let domain = if *partition == "aws-cn" { "amazonaws.com.cn" } else { "amazonaws.com" };
        let service = format!("sqs.{region}.{domain}");
        if !keys.contains(&key) {
            keys.push(key);
        }
        if !services.contains(&service) {
            services.push(service);
        }
    }
    let mut statement = allow("UseQueueKmsKey", &["kms:Decrypt", "kms:GenerateDataKey"], keys);
    statement.condition = Some(serde_json::json!({ "StringEquals": { "kms:ViaService": services } }));
    statement
}

/// The policy for `config`.
pub fn iam_policy(config: &Config) -> Policy {
    let cluster = cluster_arn(config).map(|(arn, _)| arn);
    let partition = partition(config, cluster.as_deref());
    let mut statement = match (&config.kafka, &cluster) {
        (Some(kafka), Some(cluster)) => kafka_statements(config, kafka, cluster),
        _ => Vec::new(),
    };
    // Routes may deliver to their own queues.
    let mut queues: Vec<url::Url> = Vec::new();
    for route in config.all_routes().into_iter().rev() {
        if let DeliveryTarget::Sqs(url) = route.delivery.target
            && !queues.contains(&url)
        {
            queues.push(url);
        }
    }
    if let ArchiveTarget::S3 { bucket, prefix } = &config.dlq.archive {
        let objects = if prefix.is_empty() { format!("{bucket}/*") } else { format!("{bucket}/{prefix}/*") };
        statement.push(allow(
            "ArchiveDeadLetters",
            &["s3:PutObject"],
            vec![format!("arn:{partition}:s3:::{objects}")],
        ));
    }
    if config.schemas.registry.as_ref().is_some_and(|r| r.is_glue()) {
        // A record names a schema version by id alone, which says nothing of its registry: the
        // read has to be allowed on the registries and schemas of the account and region.
        let region = config.kafka.as_ref().and_then(|k| k.region.as_deref()).unwrap_or("REGION");
        let account = cluster.as_deref().and_then(|arn| arn.split(':').nth(4)).unwrap_or(PLACEHOLDER_ACCOUNT);
        statement.push(allow(
            "ReadGlueSchemas",
            &["glue:GetSchemaVersion"],
            vec![
                format!("arn:{partition}:glue:{region}:{account}:registry/*"),
                format!("arn:{partition}:glue:{region}:{account}:schema/*"),
            ],
        ));
    }
    let region = config.kafka.as_ref().and_then(|k| k.region.as_deref()).unwrap_or("REGION");
    let mut keyed: Vec<String> = Vec::new();
    if !queues.is_empty() {
        let arns: Vec<String> = queues.iter().map(|url| queue_arn(url, &partition, region)).collect();
        statement.push(allow("DeliverToQueue", &["sqs:SendMessage"], arns.clone()));
        keyed.extend(arns);
    }
    if let Some(source) = &config.sqs_source {
        let arns: Vec<String> = source.queues.iter().map(|url| queue_arn(url, &partition, region)).collect();
        statement.push(allow(
            "ConsumeQueues",
            &[
                "sqs:ChangeMessageVisibility",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
            ],
            arns.clone(),
        ));
        // Each queue's dead-letter queue is named by its RedrivePolicy, which only AWS knows.
        let dead: Vec<String> = arns
            .iter()
            .map(|arn| match arn.rsplit_once(':') {
                Some((account, name)) => format!("{account}:DEAD_LETTER_QUEUE_OF_{name}"),
                None => arn.clone(),
            })
            .collect();
        statement.push(allow("SendToDeadLetterQueues", &["sqs:SendMessage"], dead.clone()));
        keyed.extend(arns);
        keyed.extend(dead);
    }
    if !keyed.is_empty() {
        statement.push(queue_keys(&keyed));
    }
    if let Some(iam) = config.redis_source.as_ref().and_then(|r| r.iam.as_ref()) {
        // The user ARN names the user id; the Redis user name is usually the same.
        // ElastiCache ARNs separate the kind with `:`, MemoryDB's with `/`.
        let separator = if iam.service == "memorydb" { '/' } else { ':' };
        let arn = |kind: &str, name: &str| {
            format!(
                "arn:{partition}:{}:{}:{PLACEHOLDER_ACCOUNT}:{kind}{separator}{name}",
                iam.service, iam.region
            )
        };
        let (action, cache) = match (iam.service, iam.serverless) {
            ("memorydb", _) => ("memorydb:Connect", arn("cluster", &iam.name)),
            (_, true) => ("elasticache:Connect", arn("serverlesscache", &iam.name)),
            _ => ("elasticache:Connect", arn("replicationgroup", &iam.name)),
        };
        statement.push(allow("ConnectToRedis", &[action], vec![cache, arn("user", &iam.user)]));
    }
    Policy { version: "2012-10-17", statement }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let mut env: BTreeMap<String, String> = [
            ("KAFKA_BROKERS", "b-1.demo.abc.c2.kafka.eu-west-1.amazonaws.com:9098"),
            ("KAFKA_TOPICS", "orders,^audit\\..*"),
            ("KAFKA_CONSUMER_GROUP", "orders-sidecar"),
            ("SIDECAR_DELIVERY_URL", "http://127.0.0.1:8080/events"),
            ("SIDECAR_DLQ_TOPIC", "orders.dlq"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in pairs {
            env.insert(k.to_string(), v.to_string());
        }
        Config::from_sources(&env, None).expect("valid")
    }

    #[test]
    fn an_sqs_source_needs_the_consumer_actions_and_its_dead_letter_queues() {
        let config = config(&[(
            "SQS_QUEUE_URLS",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks,https://sqs.eu-west-1.amazonaws.com/123456789012/jobs.fifo",
        )]);
        let policy = iam_policy(&config);
        let find = |sid: &str| policy.statement.iter().find(|s| s.sid == sid).expect(sid);
        let consume = find("ConsumeQueues");
        assert_eq!(
            consume.action,
            vec![
                "sqs:ChangeMessageVisibility",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage"
            ]
        );
        assert_eq!(
            consume.resource,
            vec!["arn:aws:sqs:eu-west-1:123456789012:tasks", "arn:aws:sqs:eu-west-1:123456789012:jobs.fifo"]
        );
        assert_eq!(
            find("SendToDeadLetterQueues").resource,
            vec![
                "arn:aws:sqs:eu-west-1:123456789012:DEAD_LETTER_QUEUE_OF_tasks",
                "arn:aws:sqs:eu-west-1:123456789012:DEAD_LETTER_QUEUE_OF_jobs.fifo"
            ]
        );
        assert_eq!(find("UseQueueKmsKey").resource, vec!["arn:aws:kms:eu-west-1:123456789012:key/*"]);
        assert!(policy.statement.iter().all(|s| s.sid != "DeliverToQueue"), "no delivery queue configured");
    }

    #[test]
    fn policy_names_every_resource_the_sidecar_touches() {
        let config = config(&[
            ("MSK_CLUSTER_ARN", "arn:aws:kafka:eu-west-1:123456789012:cluster/demo/abc-1"),
            ("SIDECAR_DLQ_ARCHIVE", "s3://dlq-bucket/dead"),
        ]);
        let json = serde_json::to_value(iam_policy(&config)).expect("json");
        let expected = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "ConnectToCluster", "Effect": "Allow", "Action": ["kafka-cluster:Connect"],
                 "Resource": ["arn:aws:kafka:eu-west-1:123456789012:cluster/demo/abc-1"]},
                {"Sid": "ReadSourceTopics", "Effect": "Allow", "Action": ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
                 "Resource": ["arn:aws:kafka:eu-west-1:123456789012:topic/demo/abc-1/orders",
                              "arn:aws:kafka:eu-west-1:123456789012:topic/demo/abc-1/*"]},
                {"Sid": "WriteDeadLetterTopic", "Effect": "Allow", "Action": ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
                 "Resource": ["arn:aws:kafka:eu-west-1:123456789012:topic/demo/abc-1/orders.dlq"]},
                {"Sid": "UseConsumerGroup", "Effect": "Allow", "Action": ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"],
                 "Resource": ["arn:aws:kafka:eu-west-1:123456789012:group/demo/abc-1/orders-sidecar"]},
                {"Sid": "ArchiveDeadLetters", "Effect": "Allow", "Action": ["s3:PutObject"],
                 "Resource": ["arn:aws:s3:::dlq-bucket/dead/*"]}
            ]
        });
        assert_eq!(json, expected);
    }

    #[test]
    fn placeholder_cluster_and_sqs_queue() {
        let config = config(&[
            ("SIDECAR_DELIVERY_URL", ""),
            ("SIDECAR_DELIVERY_SQS_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/123456789012/work"),
        ]);
        let (arn, placeholder) = cluster_arn(&config).expect("a Kafka source");
        assert!(placeholder);
        assert_eq!(arn, "arn:aws:kafka:eu-west-1:ACCOUNT_ID:cluster/CLUSTER_NAME/CLUSTER_UUID");
        let policy = iam_policy(&config);
        let queue = &policy.statement[4];
        assert_eq!(queue.sid, "DeliverToQueue");
        assert_eq!(queue.resource, vec!["arn:aws:sqs:eu-west-1:123456789012:work".to_string()]);
        // A queue encrypted with a KMS key needs the key to send: through SQS only.
        let keys = serde_json::to_value(&policy.statement[5]).expect("json");
        assert_eq!(
            keys,
            serde_json::json!({"Sid": "UseQueueKmsKey", "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": ["arn:aws:kms:eu-west-1:123456789012:key/*"],
                "Condition": {"StringEquals": {"kms:ViaService": ["sqs.eu-west-1.amazonaws.com"]}}})
        );
        assert_eq!(policy.statement.len(), 6, "no archive statement without an S3 archive");
    }

    #[test]
    fn localstack_queue_urls_give_an_arn() {
        let url = url::Url::parse("http://127.0.0.1:4566/queue/us-east-1/000000000000/jobs").expect("url");
        assert_eq!(queue_arn(&url, "aws", "eu-west-1"), "arn:aws:sqs:us-east-1:000000000000:jobs");
    }
}

#[cfg(test)]
mod route_tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    #[test]
    fn routes_add_their_dead_letter_topics_and_queues() {
        let env: BTreeMap<String, String> = [
            ("KAFKA_BROKERS", "b-1.demo.abc.c2.kafka.eu-west-1.amazonaws.com:9098"),
            ("KAFKA_TOPICS", "orders,payments"),
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("SIDECAR_DELIVERY_URL", "http://127.0.0.1:8080/events"),
            ("MSK_CLUSTER_ARN", "arn:aws:kafka:eu-west-1:123456789012:cluster/demo/abc-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let toml = "[[routes]]\ntopic = \"payments\"\nsqs_queue_url = \"https://sqs.eu-west-1.amazonaws.com/123456789012/pay\"\ndlq_topic = \"payments.dlq\"\n";
        let config = Config::from_sources(&env, Some((Path::new("r.toml"), toml))).expect("valid");
        let policy = iam_policy(&config);
        let dlq = policy.statement.iter().find(|s| s.sid == "WriteDeadLetterTopic").expect("dlq statement");
        assert_eq!(
            dlq.resource,
            vec![
                "arn:aws:kafka:eu-west-1:123456789012:topic/demo/abc-1/orders.dlq".to_string(),
                "arn:aws:kafka:eu-west-1:123456789012:topic/demo/abc-1/payments.dlq".to_string(),
            ]
        );
        let sqs = policy.statement.iter().find(|s| s.sid == "DeliverToQueue").expect("sqs statement");
        assert_eq!(sqs.resource, vec!["arn:aws:sqs:eu-west-1:123456789012:pay".to_string()]);
    }
}
