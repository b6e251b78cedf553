//! `msk-sidecar healthcheck`: asks the running sidecar's `/ready` (or `/live`) and exits 0 on 200.
//!
//! Made for distroless images, where a container health check cannot run curl. It reads only
//! `SIDECAR_ADMIN_ADDR` (not the full configuration), so it works in any container that runs
//! the sidecar.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::output;
use crate::config::{keys, parse};

/// Arguments of `healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Admin address to ask; default: SIDECAR_ADMIN_ADDR (an unspecified address such as
    /// 0.0.0.0 is asked on loopback).
    #[arg(long, value_name = "IP:PORT")]
    pub addr: Option<SocketAddr>,
    /// Ask `/live` instead of `/ready`: the process runs, whether or not it can deliver. For
    /// container health checks that gate the application's start (ECS `dependsOn: HEALTHY`),
    /// since `/ready` waits for the application.
    #[arg(long)]
    pub live: bool,
    /// How long to wait for the answer.
    #[arg(long, default_value = "3s", value_parser = parse::positive_duration)]
    pub timeout: Duration,
}

/// The address a local probe should connect to for a listener bound on `addr`.
pub fn probe_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => SocketAddr::from((Ipv4Addr::LOCALHOST, v4.port())),
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => SocketAddr::from((Ipv6Addr::LOCALHOST, v6.port())),
        other => other,
    }
}

/// Runs the health check.
pub fn main(env: &BTreeMap<String, String>, args: &HealthcheckArgs) -> ExitCode {
    let addr = match args.addr {
        Some(addr) => addr,
        None => {
            let text = env
                .get(keys::SIDECAR_ADMIN_ADDR)
                .map(String::as_str)
                .or(keys::default_of(keys::SIDECAR_ADMIN_ADDR))
                .unwrap_or("127.0.0.1:9464");
            match parse::socket_addr(text) {
                Ok(addr) => addr,
                Err(message) => {
                    eprintln!("msk-sidecar: invalid configuration: SIDECAR_ADMIN_ADDR={text:?}: {message}");
                    return ExitCode::from(super::EXIT_CONFIG);
                }
            }
        }
    };
    let path = if args.live { "live" } else { "ready" };
    let url = format!("http://{}/{path}", probe_addr(addr));
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("msk-sidecar: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let client = reqwest::Client::builder().timeout(args.timeout).build()?;
        let response = client.get(&url).send().await?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Ok::<_, reqwest::Error>((status, body))
    });
    match result {
        Ok((status, body)) if status.is_success() => {
            output::line(&format!("{path}: {}", body.trim()));
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("msk-sidecar: not {path} ({status}): {}", body.trim());
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("msk-sidecar: cannot reach {url}: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_probed_on_loopback() {
        let probe = probe_addr("0.0.0.0:9464".parse().expect("addr"));
        assert_eq!(probe.to_string(), "127.0.0.1:9464");
        let probe = probe_addr("[::]:9464".parse().expect("addr"));
        assert_eq!(probe.to_string(), "[::1]:9464");
        let probe = probe_addr("10.0.0.5:9464".parse().expect("addr"));
        assert_eq!(probe.to_string(), "10.0.0.5:9464");
    }
}
