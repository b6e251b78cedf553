//! `msk-sidecar check-config`: validates the configuration and prints the effective values and
//! the least-privilege IAM policy it needs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use super::{load_config, output};
use crate::auth::policy;

/// Arguments of `check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Print only the IAM policy JSON (for scripts and policy reviews).
    #[arg(long)]
    pub iam_policy: bool,
}

/// Prints the effective configuration as TOML-compatible `VARIABLE = "value"` lines, then the
/// IAM policy.
pub fn main(env: &BTreeMap<String, String>, file: Option<&Path>, args: &CheckConfigArgs) -> ExitCode {
    let config = match load_config(env, file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let policy = serde_json::to_string_pretty(&policy::iam_policy(&config)).unwrap_or_default();
    if args.iam_policy {
        output::line(&policy);
        return ExitCode::SUCCESS;
    }
    output::line("# msk-sidecar effective configuration (secrets redacted)");
    for (variable, value) in config.effective() {
        output::line(&format!("{variable} = {value:?}"));
    }
    for line in config.effective_routes() {
        output::line(&line);
    }
    output::line("");
    output::line(
        "# Least-privilege IAM policy for this configuration (check-config --iam-policy prints only this)",
    );
    if let Some((_, true)) = policy::cluster_arn(&config) {
        output::line(
            "# MSK_CLUSTER_ARN is not set: ACCOUNT_ID and CLUSTER_NAME/CLUSTER_UUID are placeholders",
        );
    }
    for line in policy.lines() {
        output::line(&format!("# {line}"));
    }
    ExitCode::SUCCESS
}
