//! Per-record spans: `process <topic>` (consumer), one `POST` per delivery attempt (client) and
//! `publish <dlq topic>` for dead-lettering (producer), with OpenTelemetry semantic conventions.
//!
//! The record span is parented on the W3C `traceparent` found in the record's headers (else a
//! new root); the attempt span's context travels to the application as `traceparent` and
//! `tracestate`, the dead-letter span's into the DLQ record and the archive. Spans are made with
//! the OpenTelemetry API directly, not through `tracing`, so a span the sampler drops costs an
//! id, a context and no attributes. With tracing off (no endpoint), the record's own trace
//! context is passed through to the application unchanged.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;

use crate::attempt::{AttemptOutcome, FailureKind};
use crate::record::{Origin, Record};

/// What the attempt spans say about the target.
#[derive(Clone, Debug, Default)]
pub struct TargetInfo {
    /// `url.full` (credentials redacted).
    pub url: String,
    /// `server.address`.
    pub address: String,
    /// `server.port`.
    pub port: i64,
}

struct Inner {
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    group: String,
    target: TargetInfo,
    /// Whether record keys go into spans (`SIDECAR_TRACE_RECORD_KEYS`; keys may be personal
    /// data, so they are left out unless asked for).
    record_keys: bool,
}

/// Makes the spans of records. Cheap to clone; disabled when no endpoint is configured.
#[derive(Clone, Default)]
pub struct Tracing {
    /// `None` when tracing is off.
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tracing(enabled={})", self.inner.is_some())
    }
}

/// Record headers as a propagation carrier.
struct Headers<'a>(&'a Record);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .headers
            .iter()
            .find(|h| h.name == key)
            .and_then(|h| std::str::from_utf8(h.value.as_deref()?).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.headers.iter().map(|h| h.name.as_str()).collect()
    }
}

/// Collects `traceparent` and `tracestate` for an outgoing request or record.
#[derive(Default)]
struct Carrier {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => self.traceparent = Some(value),
            "tracestate" if !value.is_empty() => self.tracestate = Some(value),
            _ => {}
        }
    }
}

/// The trace state of one record.
pub struct RecordTrace {
    /// Context holding the record span (tracing on).
    cx: Option<Context>,
    /// The record's own trace context, passed through when tracing is off.
    passthrough: Carrier,
}

/// An attempt span and the context the request carries.
pub struct AttemptTrace {
    /// The attempt span's context.
    cx: Option<Context>,
    /// `traceparent` for the request.
    pub traceparent: Option<String>,
    /// `tracestate` for the request.
    pub tracestate: Option<String>,
}

/// A dead-letter span and the context the DLQ record carries.
pub struct DeadLetterTrace {
    /// The span's context.
    cx: Option<Context>,
    /// `traceparent` of the dead-lettering span.
    pub traceparent: Option<String>,
}

impl Tracing {
    /// Tracing off.
    pub fn disabled() -> Self {
        Tracing { inner: None }
    }

    /// Tracing with `tracer`; spans carry record keys only with `record_keys`.
    pub fn new(tracer: SdkTracer, group: String, target: TargetInfo, record_keys: bool) -> Self {
        let propagator = TraceContextPropagator::new();
        Tracing { inner: Some(Arc::new(Inner { tracer, propagator, group, target, record_keys })) }
    }

    /// The same tracing for another delivery target (a route's).
    pub fn for_target(&self, target: TargetInfo) -> Tracing {
        match &self.inner {
            None => Tracing::disabled(),
            Some(inner) => Tracing {
                inner: Some(Arc::new(Inner {
                    tracer: inner.tracer.clone(),
                    propagator: TraceContextPropagator::new(),
                    group: inner.group.clone(),
                    target,
                    record_keys: inner.record_keys,
                })),
            },
        }
    }

    /// Whether spans are made.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Starts the `process <topic>` span of a record.
    pub fn record(&self, record: &Record) -> RecordTrace {
        let Some(inner) = &self.inner else {
            let headers = Headers(record);
            let passthrough = Carrier {
                traceparent: headers.get("traceparent").map(str::to_string),
                tracestate: headers.get("tracestate").map(str::to_string),
            };
            return RecordTrace { cx: None, passthrough };
        };
        let parent = inner.propagator.extract(&Headers(record));
        let mut span = inner
            .tracer
            .span_builder(format!("process {}", record.tp.topic))
            .with_kind(SpanKind::Consumer)
            .start_with_context(&inner.tracer, &parent);
        if span.is_recording() {
            let mut attributes = vec![
                KeyValue::new("messaging.system", record.origin.messaging_system()),
                KeyValue::new("messaging.operation.type", "process"),
                KeyValue::new("messaging.operation.name", "process"),
                KeyValue::new("messaging.destination.name", record.tp.topic.to_string()),
                KeyValue::new(
                    "messaging.message.body.size",
                    record.value.as_ref().map_or(0, |v| v.len() as i64),
                ),
            ];
            match record.origin {
                Origin::Kafka => attributes.extend([
                    KeyValue::new("messaging.destination.partition.id", record.tp.partition.to_string()),
                    KeyValue::new("messaging.kafka.offset", record.offset),
                    KeyValue::new("messaging.consumer.group.name", inner.group.clone()),
                ]),
                Origin::Amqp => {
                    if let Some(id) = record.header_text("x-amqp-message-id") {
                        attributes.push(KeyValue::new("messaging.message.id", id.to_string()));
                    }
                }
                Origin::Redis => {
                    if let Some(id) = record.header_text("x-redis-id") {
                        attributes.push(KeyValue::new("messaging.message.id", id.to_string()));
                    }
                }
                // An SQS message's offset is the receiver's sequence number: not a fact of SQS.
                Origin::Sqs => {
                    if let Some(id) = record.header_text("x-sqs-message-id") {
                        attributes.push(KeyValue::new("messaging.message.id", id.to_string()));
                    }
                    if let Some(group) = record.header_text("x-sqs-message-group-id") {
                        attributes.push(KeyValue::new("msk_sidecar.sqs.message_group_id", group.to_string()));
                    }
                }
            }
            if record.origin == Origin::Kafka
                && inner.record_keys
                && let Some(key) = record.key.as_ref().and_then(|k| std::str::from_utf8(k).ok())
            {
                attributes.push(KeyValue::new("messaging.kafka.message.key", key.to_string()));
            }
            if record.origin == Origin::Kafka && record.value.is_none() {
                attributes.push(KeyValue::new("messaging.kafka.message.tombstone", true));
            }
            span.set_attributes(attributes);
        }
        RecordTrace { cx: Some(parent.with_span(span)), passthrough: Carrier::default() }
    }

    /// Starts the span of delivery attempt `number`.
    pub fn attempt(&self, record: &RecordTrace, number: u32) -> AttemptTrace {
        let (Some(inner), Some(parent)) = (&self.inner, &record.cx) else {
            return AttemptTrace {
                cx: None,
                traceparent: record.passthrough.traceparent.clone(),
                tracestate: record.passthrough.tracestate.clone(),
            };
        };
        let mut span = inner
            .tracer
            .span_builder("POST")
            .with_kind(SpanKind::Client)
            .start_with_context(&inner.tracer, parent);
        if span.is_recording() {
            span.set_attributes([
                KeyValue::new("http.request.method", "POST"),
                KeyValue::new("url.full", inner.target.url.clone()),
                KeyValue::new("server.address", inner.target.address.clone()),
                KeyValue::new("server.port", inner.target.port),
                KeyValue::new("http.request.resend_count", i64::from(number.saturating_sub(1))),
                KeyValue::new("msk_sidecar.attempt", i64::from(number)),
            ]);
        }
        let cx = parent.with_span(span);
        let mut carrier = Carrier::default();
        inner.propagator.inject_context(&cx, &mut carrier);
        AttemptTrace { cx: Some(cx), traceparent: carrier.traceparent, tracestate: carrier.tracestate }
    }

    /// Starts the span of writing a dead letter of a record from a source of kind `origin` to
    /// `topic` (its dead-letter topic or queue).
    pub fn dead_letter(
        &self,
        record: &RecordTrace,
        origin: Origin,
        topic: &str,
        class: &'static str,
    ) -> DeadLetterTrace {
        let (Some(inner), Some(parent)) = (&self.inner, &record.cx) else {
            return DeadLetterTrace { cx: None, traceparent: None };
        };
        let mut span = inner
            .tracer
            .span_builder(format!("publish {topic}"))
            .with_kind(SpanKind::Producer)
            .start_with_context(&inner.tracer, parent);
        if span.is_recording() {
            span.set_attributes([
                KeyValue::new("messaging.system", origin.messaging_system()),
                KeyValue::new("messaging.operation.type", "send"),
                KeyValue::new("messaging.destination.name", topic.to_string()),
                KeyValue::new("msk_sidecar.error_class", class),
            ]);
        }
        let cx = parent.with_span(span);
        let mut carrier = Carrier::default();
        inner.propagator.inject_context(&cx, &mut carrier);
        DeadLetterTrace { cx: Some(cx), traceparent: carrier.traceparent }
    }
}

/// Trace and span ids of a context, for log lines.
fn ids(cx: Option<&Context>) -> (Option<String>, Option<String>) {
    match cx {
        Some(cx) => {
            let span = cx.span();
            let context = span.span_context();
            if context.is_valid() {
                return (Some(context.trace_id().to_string()), Some(context.span_id().to_string()));
            }
            (None, None)
        }
        None => (None, None),
    }
}

impl RecordTrace {
    /// Trace and span id of the record span, for logs.
    pub fn ids(&self) -> (Option<String>, Option<String>) {
        ids(self.cx.as_ref())
    }

    /// Ends the record span with its outcome.
    pub fn finish(self, outcome: &'static str, error: Option<&str>) {
        if let Some(cx) = self.cx {
            let span = cx.span();
            span.set_attribute(KeyValue::new("msk_sidecar.outcome", outcome));
            if let Some(error) = error {
                span.set_status(Status::error(Cow::Owned(error.to_string())));
            }
            span.end();
        }
    }
}

impl AttemptTrace {
    /// Ends the attempt span with what happened and the backoff chosen after it.
    pub fn finish(self, outcome: &AttemptOutcome, backoff: Option<Duration>) {
        let Some(cx) = self.cx else { return };
        let span = cx.span();
        match outcome {
            AttemptOutcome::Delivered => {
                span.set_attribute(KeyValue::new("msk_sidecar.attempt.outcome", "delivered"))
            }
            AttemptOutcome::Failed(failure) => {
                let kind = match failure.kind {
                    FailureKind::Retryable => "retryable",
                    FailureKind::Unreachable => "unreachable",
                    FailureKind::Permanent => "permanent",
                    FailureKind::Oversized => "oversized",
                    FailureKind::Blocked => "blocked",
                    FailureKind::BatchFailed => "batch-failed",
                };
                span.set_attribute(KeyValue::new("msk_sidecar.attempt.outcome", kind));
                if let Some(status) =
                    failure.error.strip_prefix("HTTP ").and_then(|s| s.split(' ').next()?.parse::<i64>().ok())
                {
                    span.set_attribute(KeyValue::new("http.response.status_code", status));
                }
                span.set_attribute(KeyValue::new("error.type", failure.error.clone()));
                span.set_status(Status::error(Cow::Owned(failure.error.clone())));
            }
        }
        if let Some(backoff) = backoff {
            span.set_attribute(KeyValue::new(
                "msk_sidecar.backoff_ms",
                i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX),
            ));
        }
        span.end();
    }
}

impl DeadLetterTrace {
    /// Ends the dead-letter span.
    pub fn finish(self, error: Option<&str>) {
        if let Some(cx) = self.cx {
            let span = cx.span();
            if let Some(error) = error {
                span.set_status(Status::error(Cow::Owned(error.to_string())));
            }
            span.end();
        }
    }
}
