//! `msk-sidecar offsets describe` and `offsets reset`: the group's committed offsets, ends, lag
//! and members, and moving the offsets of a group nobody consumes in (kafka-consumer-groups'
//! semantics, with the sidecar's own configuration and MSK IAM auth).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};

use super::{load_config, output};
use crate::groups::{Group, ResetTo};

/// Arguments of `offsets`.
#[derive(Debug, Args)]
pub struct OffsetsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: OffsetsCommand,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    pub output: Format,
}

/// `text` for a person, `json` for a script.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table.
    Text,
    /// One JSON document.
    Json,
}

/// The subcommands of `offsets`.
#[derive(Debug, Subcommand)]
pub enum OffsetsCommand {
    /// Per partition of the group's topics: committed offset, end offset, lag; and the group's
    /// members.
    Describe,
    /// Move the group's committed offsets; refused while the group has members.
    Reset {
        /// `earliest`, `latest`, an RFC 3339 time (the first record at or after it) or an offset.
        #[arg(long, value_name = "TARGET")]
        to: String,
        /// Only these: `topic` or `topic:0,3` (repeatable); default every partition of the
        /// group's topics.
        #[arg(long = "topic", value_name = "TOPIC[:P,...]")]
        topics: Vec<String>,
        /// Print the old and new offsets without committing anything.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs `offsets`.
pub fn main(env: &BTreeMap<String, String>, file: Option<&Path>, args: &OffsetsArgs) -> ExitCode {
    let config = match load_config(env, file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let Some(kafka) = config.kafka.clone() else {
        eprintln!(
            "msk-sidecar offsets: there is no Kafka source (set KAFKA_BROKERS, KAFKA_TOPICS and KAFKA_CONSUMER_GROUP)"
        );
        return ExitCode::from(super::EXIT_CONFIG);
    };
    crate::telemetry::init_logging_with(crate::config::LogFormat::Text, "error");
    let target = match &args.command {
        OffsetsCommand::Reset { to, .. } => match ResetTo::parse(to) {
            Ok(target) => Some(target),
            Err(err) => {
                eprintln!("msk-sidecar offsets reset: --to {to:?}: {err}");
                return ExitCode::from(super::EXIT_CONFIG);
            }
        },
        OffsetsCommand::Describe => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("msk-sidecar offsets: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let group = connect(&config, &kafka).await?;
        let (command, format) = (args_command(args), args.output);
        tokio::task::spawn_blocking(move || -> anyhow::Result<ExitCode> {
            match (&command, target) {
                (Cmd::Describe, _) => describe(&group, format),
                (Cmd::Reset { topics, dry_run }, Some(target)) => {
                    reset(&group, target, topics, *dry_run, format)
                }
                (Cmd::Reset { .. }, None) => Ok(ExitCode::FAILURE),
            }
        })
        .await?
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("msk-sidecar offsets: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The command, owned (it moves to the blocking thread).
enum Cmd {
    Describe,
    Reset { topics: Vec<String>, dry_run: bool },
}

fn args_command(args: &OffsetsArgs) -> Cmd {
    match &args.command {
        OffsetsCommand::Describe => Cmd::Describe,
        OffsetsCommand::Reset { topics, dry_run, .. } => {
            Cmd::Reset { topics: topics.clone(), dry_run: *dry_run }
        }
    }
}

/// The group client, with MSK IAM tokens when configured.
async fn connect(
    config: &crate::config::Config,
    kafka: &crate::config::KafkaConfig,
) -> anyhow::Result<Group> {
    Ok(Group::connect(kafka, context(config).await?)?)
}

/// A client context for a command-line tool: MSK IAM tokens when configured.
pub(super) async fn context(config: &crate::config::Config) -> anyhow::Result<crate::kafka::KafkaContext> {
    let health = Arc::new(crate::health::Health::new());
    let metrics = crate::telemetry::metrics::Metrics::new()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let auth = crate::auth::start(config, &health, &metrics, stop.clone()).await;
    let shared = crate::kafka::Shared {
        auth,
        authentication: Arc::new(crate::health::Problem::new(
            &health,
            crate::health::Component::Authentication,
            "offsets",
        )),
        token_failed: Arc::default(),
        fatal: Arc::new(crate::kafka::Fatal::new(&health, stop)),
        metrics,
    };
    Ok(crate::kafka::KafkaContext { shared })
}

fn describe(group: &Group, format: Format) -> anyhow::Result<ExitCode> {
    let members = group.members()?;
    let partitions = group.describe()?;
    if format == Format::Json {
        let doc = serde_json::json!({ "members": members, "partitions": partitions.iter().map(|p| {
            serde_json::json!({"topic": p.topic, "partition": p.partition, "committed": p.committed, "start": p.start, "end": p.end, "lag": p.lag()})
        }).collect::<Vec<_>>() });
        output::line(&doc.to_string());
        return Ok(ExitCode::SUCCESS);
    }
    output::line(&format!(
        "{:<40} {:>9} {:>12} {:>12} {:>10}",
        "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"
    ));
    for p in &partitions {
        let committed = p.committed.map_or_else(|| "-".to_string(), |o| o.to_string());
        output::line(&format!(
            "{:<40} {:>9} {:>12} {:>12} {:>10}",
            p.topic,
            p.partition,
            committed,
            p.end,
            p.lag()
        ));
    }
    output::line(&format!(
        "total lag: {}",
        partitions.iter().map(crate::groups::PartitionState::lag).sum::<i64>()
    ));
    if members.is_empty() {
        output::line("members: none (the group is empty: its offsets can be reset)");
    } else {
        output::line(&format!("members ({}): {}", members.len(), members.join(", ")));
    }
    Ok(ExitCode::SUCCESS)
}

fn reset(
    group: &Group,
    target: ResetTo,
    topics: &[String],
    dry_run: bool,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let moves = group.plan(target, topics)?;
    let applied = if dry_run {
        false
    } else {
        if let Err(err) = group.apply(&moves) {
            eprintln!("msk-sidecar offsets reset: refused: {err}");
            return Ok(ExitCode::FAILURE);
        }
        true
    };
    if format == Format::Json {
        output::line(
            &serde_json::json!({ "dry_run": dry_run, "applied": applied, "moves": moves }).to_string(),
        );
        return Ok(ExitCode::SUCCESS);
    }
    output::line(&format!("{:<40} {:>9} {:>12} {:>12}", "TOPIC", "PARTITION", "OLD", "NEW"));
    for m in &moves {
        let old = m.old.map_or_else(|| "-".to_string(), |o| o.to_string());
        output::line(&format!("{:<40} {:>9} {:>12} {:>12}", m.topic, m.partition, old, m.new));
    }
    output::line(if applied {
        "committed: the group starts from the new offsets"
    } else {
        "dry run: nothing committed"
    });
    Ok(ExitCode::SUCCESS)
}
