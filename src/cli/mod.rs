//! The command line: subcommands, exit codes and everything printed for a person.
//!
//! `main.rs` calls [`main`]; each subcommand lives in its own module and returns an
//! [`ExitCode`]. Configuration problems exit with [`EXIT_CONFIG`] (64, `EX_USAGE`) and one line
//! per problem on stderr.

mod check_config;
mod demo;
mod demo_rules;
mod demo_sources;
mod healthcheck;
mod offsets;
pub mod output;
mod redrive;
mod token;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError};

/// Exit status for invalid configuration (`EX_USAGE` from sysexits.h).
pub const EXIT_CONFIG: u8 = 64;

/// Consumes Kafka topics on Amazon MSK (IAM auth) and hands every record to the application
/// next to it: an HTTP POST per record, or an SQS queue. Retries with backoff, dead-letters to a
/// topic and S3, commits an offset only when every record before it is done.
///
/// Configuration comes from environment variables (KAFKA_BROKERS, KAFKA_TOPICS,
/// KAFKA_CONSUMER_GROUP, SIDECAR_DELIVERY_URL, ...) and an optional TOML file with the same keys;
/// the environment wins. `msk-sidecar check-config` shows the effective values.
#[derive(Debug, Parser)]
#[command(name = "msk-sidecar", version, about, long_about)]
pub struct Cli {
    /// TOML configuration file; keys are the variable names (any case). Environment variables
    /// override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the consumer with configuration from the environment (the default).
    Run,
    /// Run the whole pipeline on an embedded Kafka cluster with a demo application that fails
    /// some records; prints a live summary and exits 0. Needs no network, Docker or AWS.
    Demo(demo::DemoArgs),
    /// Print one MSK IAM auth token for the current AWS credentials.
    Token(TokenArgs),
    /// Validate the configuration and print the effective values (secrets redacted) and the
    /// least-privilege IAM policy it needs.
    CheckConfig(check_config::CheckConfigArgs),
    /// Exit 0 if the running sidecar's /ready answers 200 (for container health checks).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// The consumer group's offsets: `describe` (committed, end, lag, members) and `reset`
    /// (only while the group has no member).
    Offsets(offsets::OffsetsArgs),
    /// Send dead letters from the dead-letter topic back to their source topic and partition
    /// (or --to): filters, --dry-run, --rate, --limit, the loop guard (--max-redrives).
    Redrive(redrive::RedriveArgs),
}

/// Arguments of `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Region to sign for; default: AWS_REGION, else the region in KAFKA_BROKERS.
    #[arg(long)]
    pub region: Option<String>,
    /// Fixed signing time (RFC 3339), to compare the output with the AWS signer libraries.
    #[arg(long, value_name = "RFC3339")]
    pub signing_time: Option<String>,
    /// Print the presigned URL and the expiry instead of the token.
    #[arg(long)]
    pub decode: bool,
    /// Print the ElastiCache IAM token of this cache (replication group or serverless cache)
    /// instead of an MSK token (REDIS_AUTH=iam).
    #[arg(long, value_name = "CACHE", requires = "user")]
    pub elasticache: Option<String>,
    /// The same for a MemoryDB cluster.
    #[arg(long, value_name = "CLUSTER", requires = "user", conflicts_with = "elasticache")]
    pub memorydb: Option<String>,
    /// The Redis user of the ElastiCache/MemoryDB token.
    #[arg(long)]
    pub user: Option<String>,
    /// The cache is ElastiCache Serverless.
    #[arg(long, requires = "elasticache")]
    pub serverless: bool,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = process_env();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&env, cli.config.as_deref()),
        Command::CheckConfig(args) => check_config::main(&env, cli.config.as_deref(), &args),
        Command::Healthcheck(args) => healthcheck::main(&env, &args),
        Command::Demo(args) => demo::main(&args),
        Command::Token(args) => token::main(&env, &args),
        Command::Offsets(args) => offsets::main(&env, cli.config.as_deref(), &args),
        Command::Redrive(args) => redrive::main(&env, cli.config.as_deref(), &args),
    }
}

/// The process environment as a map (variables that are not UTF-8 are skipped).
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

/// Loads the configuration or prints every problem and returns the exit code 64.
pub fn load_config(
    env: &BTreeMap<String, String>,
    file: Option<&std::path::Path>,
) -> Result<Config, ExitCode> {
    Config::load(env, file).map_err(|err: ConfigError| {
        for problem in &err.0 {
            eprintln!("msk-sidecar: invalid configuration: {problem}");
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

fn run(env: &BTreeMap<String, String>, file: Option<&std::path::Path>) -> ExitCode {
    let config = match load_config(env, file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    crate::telemetry::init_logging(config.log_format);
    crate::panics::install_hook();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "Cannot start the async runtime.");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = crate::shutdown::on_signals()?;
        crate::app::run(config, shutdown).await.map_err(anyhow::Error::from)
    });
    // Everything is committed and flushed (or gave up) by now: a blocking export still waiting
    // on a collector that answers nothing must not hold the exit (dropping the runtime would
    // wait for it).
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "The sidecar stopped on an error.");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_subcommand_means_run() {
        let cli = Cli::try_parse_from(["msk-sidecar"]).expect("parses");
        assert!(cli.command.is_none());
        let cli = Cli::try_parse_from(["msk-sidecar", "--config", "x.toml", "check-config"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::CheckConfig(_))));
        assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("x.toml")));
    }

    #[test]
    fn help_describes_every_subcommand() {
        let help = Cli::command().render_long_help().to_string();
        for name in ["run", "demo", "token", "check-config", "healthcheck"] {
            assert!(help.contains(name), "{name} missing from --help");
        }
    }
}
