//! `msk-sidecar redrive`: sends dead letters from the dead-letter topic back to their source
//! topic and partition (or `--to`), with filters, a rate cap, a dry run, the loop guard, a
//! progress bar on a terminal and a summary (text or JSON). Ctrl-C stops after the record in
//! flight and still prints the summary.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Args;

use super::offsets::Format;
use super::{load_config, output};
use crate::redrive::topic::{self, Options};
use crate::redrive::{Filters, Summary};

/// Arguments of `redrive`.
#[derive(Debug, Args)]
pub struct RedriveArgs {
    /// The dead-letter topic to read (default: the configured SIDECAR_DLQ_TOPIC).
    #[arg(long)]
    pub from: Option<String>,
    /// Send every record to this topic instead of its source topic and partition.
    #[arg(long)]
    pub to: Option<String>,
    /// Only these error classes (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub error_class: Vec<String>,
    /// Only records from this source topic.
    #[arg(long)]
    pub source: Option<String>,
    /// Only records from this source partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Only records whose last failure is at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub since: Option<String>,
    /// Only records whose last failure is before this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub until: Option<String>,
    /// Stop after this many matched records.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Send at most this many records a second.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Skip records already redriven this many times (the loop guard).
    #[arg(long, default_value_t = 3)]
    pub max_redrives: u32,
    /// Print what would be sent, counted by class and source; send and commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

fn time(text: &Option<String>, flag: &str) -> Result<Option<SystemTime>, String> {
    text.as_ref()
        .map(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map(SystemTime::from)
                .map_err(|_| format!("{flag} {t:?}: expected an RFC 3339 time"))
        })
        .transpose()
}

/// Runs `redrive`.
pub fn main(env: &BTreeMap<String, String>, file: Option<&Path>, args: &RedriveArgs) -> ExitCode {
    let config = match load_config(env, file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let Some(kafka) = config.kafka.clone() else {
        eprintln!(
            "msk-sidecar redrive: there is no Kafka source (set KAFKA_BROKERS, KAFKA_TOPICS and KAFKA_CONSUMER_GROUP)"
        );
        return ExitCode::from(super::EXIT_CONFIG);
    };
    crate::telemetry::init_logging_with(crate::config::LogFormat::Text, "error");
    let (since, until) = match (time(&args.since, "--since"), time(&args.until, "--until")) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(err), _) | (_, Err(err)) => {
            eprintln!("msk-sidecar redrive: {err}");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    let Some(from) = args.from.clone().or_else(|| config.dlq.topic.clone()) else {
        eprintln!("msk-sidecar redrive: no dead-letter topic: give --from or set SIDECAR_DLQ_TOPIC");
        return ExitCode::from(super::EXIT_CONFIG);
    };
    let options = Options {
        from,
        to: args.to.clone(),
        filters: Filters {
            classes: args.error_class.clone(),
            source: args.source.clone(),
            partition: args.partition,
            since,
            until,
        },
        limit: args.limit,
        rate: args.rate,
        max_redrives: args.max_redrives,
        dry_run: args.dry_run,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("msk-sidecar redrive: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let result = runtime.block_on(async {
        let stop = tokio_util::sync::CancellationToken::new();
        let on_ctrl_c = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_ctrl_c.cancel();
            }
        });
        let context = super::offsets::context(&config).await?;
        let progress = |s: &Summary| {
            if let Some(bar) = &bar {
                bar.set_message(format!(
                    "read {} | matched {} | sent {} | skipped {}",
                    s.read, s.matched, s.sent, s.skipped_loop_guard
                ));
                bar.tick();
            }
        };
        topic::run(&kafka, context, &options, stop, &progress).await.map_err(anyhow::Error::from)
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = match result {
        Ok(summary) => summary,
        Err(err) => {
            eprintln!("msk-sidecar redrive: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    print(&summary, &options, args.output);
    if summary.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn print(summary: &Summary, options: &Options, format: Format) {
    if format == Format::Json {
        output::line(&serde_json::to_string(summary).unwrap_or_default());
        return;
    }
    let mode = if summary.dry_run { " (dry run: nothing sent, nothing committed)" } else { "" };
    output::line(&format!("redrive {} from {}{mode}", summary.run, options.from));
    output::line(&format!("read                 {:>10}", summary.read));
    output::line(&format!("matched              {:>10}", summary.matched));
    output::line(&format!(
        "{:<21}{:>10}",
        if summary.dry_run { "would be sent" } else { "sent" },
        summary.sent
    ));
    output::line(&format!(
        "skipped (loop guard) {:>10}   (redriven {} times already)",
        summary.skipped_loop_guard, options.max_redrives
    ));
    output::line(&format!("failed               {:>10}", summary.failed));
    output::line(&format!("rate                 {:>10.1} records/s", summary.rate_per_s));
    for (class, n) in &summary.by_class {
        output::line(&format!("  class {class:<24} {n:>8}"));
    }
    for (source, n) in &summary.by_source {
        output::line(&format!("  source {source:<23} {n:>8}"));
    }
    if summary.stopped_early {
        output::line("stopped early (--limit or Ctrl-C): the next run continues from here");
    }
}
