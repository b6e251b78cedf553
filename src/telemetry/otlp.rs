//! OTLP export: the tracer provider, the metrics reader, and the resource describing this process.
//!
//! The protocol (`grpc` or `http/protobuf`) and endpoints come from the standard `OTEL_*`
//! variables (see [`TelemetryConfig`]); no endpoint means no export. Spans go through a batch
//! processor on the tokio runtime with a bounded queue: when the collector is slow or down,
//! spans are dropped and counted, and the data path never waits for the exporter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, Sampler, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};

use crate::config::{OtlpProtocol, RootSampler, SamplerConfig, TelemetryConfig};

/// Spans waiting for export at most; more are dropped (and counted).
pub const MAX_QUEUED_SPANS: usize = 2048;

/// Why an exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The OTLP exporter rejected its settings.
    #[error("cannot build the OTLP {signal} exporter for {endpoint}: {message}")]
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// The endpoint.
        endpoint: String,
        /// The exporter's error.
        message: String,
    },
}

/// Span export counters, shown as metrics.
#[derive(Debug, Default)]
pub struct SpanCounters {
    /// Spans handed to the exporter and accepted by the collector.
    pub exported: AtomicU64,
    /// Spans lost: queue full, or the export failed.
    pub dropped: AtomicU64,
    /// Spans waiting in the queue or in an export.
    queued: AtomicUsize,
    /// When the last export-failure warning was logged (seconds since the epoch).
    last_warning: AtomicU64,
}

impl SpanCounters {
    /// Logs a warning about lost spans at most once a minute.
    fn warn(&self, error: &str) {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + 60
            && self.last_warning.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(
                error,
                dropped = self.dropped.load(Ordering::Relaxed),
                "Spans are being dropped: the OTLP collector does not accept them (msk_sidecar_spans_dropped_total)."
            );
        }
    }
}

/// The resource: service name and version, `OTEL_RESOURCE_ATTRIBUTES`, and where the process runs
/// (ECS task metadata, Kubernetes pod from the downward API variables).
pub async fn resource(config: &TelemetryConfig) -> Resource {
    let mut attributes = vec![KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))];
    attributes.extend(kubernetes_attributes());
    attributes.extend(ecs_attributes().await);
    Resource::builder().with_service_name(config.service_name.clone()).with_attributes(attributes).build()
}

fn kubernetes_attributes() -> Vec<KeyValue> {
    let pairs = [
        ("k8s.pod.name", ["K8S_POD_NAME", "POD_NAME"]),
        ("k8s.namespace.name", ["K8S_NAMESPACE_NAME", "POD_NAMESPACE"]),
        ("k8s.node.name", ["K8S_NODE_NAME", "NODE_NAME"]),
        ("k8s.pod.uid", ["K8S_POD_UID", "POD_UID"]),
    ];
    pairs
        .iter()
        .filter_map(|(attribute, names)| {
            let value = names.iter().find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))?;
            Some(KeyValue::new(*attribute, value))
        })
        .collect()
}

/// Task and container attributes from the ECS task metadata endpoint (v4), best effort.
async fn ecs_attributes() -> Vec<KeyValue> {
    let Ok(base) = std::env::var("ECS_CONTAINER_METADATA_URI_V4") else { return Vec::new() };
    let Ok(client) = reqwest::Client::builder().timeout(Duration::from_secs(2)).build() else {
        return Vec::new();
    };
    let fetch = |url: String| {
        let client = client.clone();
        async move {
            let text = client.get(url).send().await.ok()?.text().await.ok()?;
            serde_json::from_str::<serde_json::Value>(&text).ok()
        }
    };
    let mut attributes =
        vec![KeyValue::new("cloud.provider", "aws"), KeyValue::new("cloud.platform", "aws_ecs")];
    let text = |v: &serde_json::Value, key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_string);
    if let Some(task) = fetch(format!("{base}/task")).await {
        for (attribute, key) in [
            ("aws.ecs.cluster.arn", "Cluster"),
            ("aws.ecs.task.arn", "TaskARN"),
            ("aws.ecs.task.family", "Family"),
            ("aws.ecs.task.revision", "Revision"),
            ("aws.ecs.launchtype", "LaunchType"),
            ("cloud.availability_zone", "AvailabilityZone"),
        ] {
            if let Some(value) = text(&task, key) {
                attributes.push(KeyValue::new(attribute, value));
            }
        }
    }
    if let Some(container) = fetch(base).await {
        for (attribute, key) in [
            ("container.name", "Name"),
            ("container.id", "DockerId"),
            ("aws.ecs.container.arn", "ContainerARN"),
        ] {
            if let Some(value) = text(&container, key) {
                attributes.push(KeyValue::new(attribute, value));
            }
        }
    }
    attributes
}

fn sampler(config: &SamplerConfig) -> Sampler {
    let root = |root: &RootSampler| match root {
        RootSampler::AlwaysOn => Sampler::AlwaysOn,
        RootSampler::AlwaysOff => Sampler::AlwaysOff,
        RootSampler::TraceIdRatio(r) => Sampler::TraceIdRatioBased(*r),
    };
    match config {
        SamplerConfig::AlwaysOn => Sampler::AlwaysOn,
        SamplerConfig::AlwaysOff => Sampler::AlwaysOff,
        SamplerConfig::TraceIdRatio(r) => Sampler::TraceIdRatioBased(*r),
        SamplerConfig::ParentBased(inner) => Sampler::ParentBased(Box::new(root(inner))),
    }
}

/// The tracer provider, or `None` without a traces endpoint. Must run inside the tokio runtime.
pub fn tracer_provider(
    config: &TelemetryConfig,
    resource: Resource,
    counters: Arc<SpanCounters>,
) -> Result<Option<SdkTracerProvider>, OtlpError> {
    let Some(endpoint) = &config.traces_endpoint else { return Ok(None) };
    let built = match config.protocol {
        OtlpProtocol::Grpc => {
            opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).build()
        }
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .build(),
    };
    let exporter = built.map_err(|e| OtlpError::Exporter {
        signal: "traces",
        endpoint: crate::config::redact_text_url(endpoint),
        message: crate::config::redact_urls_in(&e.to_string()),
    })?;
    let batch = BatchConfigBuilder::default().with_max_queue_size(MAX_QUEUED_SPANS * 2).build();
    let processor =
        BatchSpanProcessor::builder(CountingExporter { inner: exporter, counters: counters.clone() }, Tokio)
            .with_batch_config(batch)
            .build();
    let bounded = BoundedProcessor { inner: processor, counters };
    Ok(Some(
        SdkTracerProvider::builder()
            .with_span_processor(bounded)
            .with_sampler(sampler(&config.sampler))
            .with_resource(resource)
            .build(),
    ))
}

/// The periodic OTLP metrics reader, or `None` without a metrics endpoint.
pub fn metrics_reader(
    config: &TelemetryConfig,
) -> Result<Option<PeriodicReader<opentelemetry_otlp::MetricExporter>>, OtlpError> {
    let Some(endpoint) = &config.metrics_endpoint else { return Ok(None) };
    let built = match config.protocol {
        OtlpProtocol::Grpc => {
            opentelemetry_otlp::MetricExporter::builder().with_tonic().with_endpoint(endpoint).build()
        }
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .build(),
    };
    let exporter = built.map_err(|e| OtlpError::Exporter {
        signal: "metrics",
        endpoint: crate::config::redact_text_url(endpoint),
        message: crate::config::redact_urls_in(&e.to_string()),
    })?;
    Ok(Some(PeriodicReader::builder(exporter, Tokio).with_interval(Duration::from_secs(10)).build()))
}

/// Counts what the exporter accepted and lost.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    counters: Arc<SpanCounters>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let count = batch.len();
        let result = self.inner.export(batch).await;
        let counter = if result.is_ok() { &self.counters.exported } else { &self.counters.dropped };
        counter.fetch_add(count as u64, Ordering::Relaxed);
        if let Err(err) = &result {
            self.counters.warn(&crate::config::redact_urls_in(&err.to_string()));
        }
        self.counters
            .queued
            .fetch_sub(count.min(self.counters.queued.load(Ordering::Relaxed)), Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Drops (and counts) spans beyond [`MAX_QUEUED_SPANS`] before they reach the batch processor,
/// whose own queue is larger and so never drops silently.
#[derive(Debug)]
struct BoundedProcessor<P> {
    inner: P,
    counters: Arc<SpanCounters>,
}

impl<P: SpanProcessor> SpanProcessor for BoundedProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.counters.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED_SPANS {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            self.counters.warn("the export queue is full");
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
