//! `msk-sidecar check-config`: validates the configuration and prints the effective values.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use super::{load_config, output};

/// Prints the effective configuration as TOML-compatible `VARIABLE = "value"` lines.
pub fn main(env: &BTreeMap<String, String>, file: Option<&Path>) -> ExitCode {
    let config = match load_config(env, file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    output::line("# msk-sidecar effective configuration (secrets redacted)");
    for (variable, value) in config.effective() {
        output::line(&format!("{variable} = {value:?}"));
    }
    ExitCode::SUCCESS
}
