//! Running the `msk-sidecar` binary as a child process (for SIGTERM and SIGKILL tests).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Starts `msk-sidecar run` with exactly `env` (plus PATH), logging to `log`. Nothing else is
/// inherited: a child that needs the test bed's AWS variables gets them from [`testbed_aws`], so
/// tests of the credential chain are not shadowed by the test bed's static keys.
pub fn spawn(env: &BTreeMap<String, String>, log: &Path) -> Sidecar {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    let err = file.try_clone().expect("log file");
    Command::new(env!("CARGO_BIN_EXE_msk-sidecar"))
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map(Sidecar)
        .expect("start msk-sidecar")
}

/// A running `msk-sidecar` child, killed when dropped: a test that fails half-way does not
/// leave it running (and consuming its topics) until the test binary exits.
pub struct Sidecar(Child);

impl std::ops::Deref for Sidecar {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Sidecar {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        // Already exited (the usual case): nothing to kill, and the error says so.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test bed's AWS variables (LocalStack endpoint, static keys, region), for a child that
/// talks to S3 or SQS.
pub fn testbed_aws() -> impl Iterator<Item = (String, String)> {
    ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]
        .into_iter()
        .filter_map(|name| Some((name.to_string(), std::env::var(name).ok()?)))
}

/// Sends a signal (`TERM`, `KILL`) to a child.
pub fn signal(child: &Child, name: &str) {
    let status =
        Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status().expect("kill");
    assert!(status.success(), "kill -{name} failed");
}

/// Waits for a child to exit, up to `limit`; returns its status and how long it took.
pub async fn wait(child: &mut Child, limit: Duration) -> (ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return (status, started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("msk-sidecar did not exit within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Like [`wait`], but a child that does not exit in time fails the test with its log.
pub async fn wait_logged(child: &mut Child, limit: Duration, log: &Path) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("msk-sidecar did not exit within {limit:?}; log:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The peak resident set of a running child (`VmHWM`, KiB); 0 when it cannot be read.
pub fn peak_rss_kib(child: &Child) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs an `msk-sidecar` command (`offsets`, `redrive`) against the test bed's broker for
/// `topic` and `group`, with exactly these variables (plus `extra`).
pub fn tool(args: &[&str], topic: &str, group: &str, extra: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_msk-sidecar"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs([
            ("KAFKA_BROKERS", super::bootstrap().as_str()),
            ("KAFKA_TOPICS", topic),
            ("KAFKA_CONSUMER_GROUP", group),
            ("KAFKA_AUTH", "none"),
            ("SIDECAR_DELIVERY_URL", "http://127.0.0.1:9/events"),
        ])
        .envs(extra.iter().copied())
        .output()
        .expect("run msk-sidecar")
}
