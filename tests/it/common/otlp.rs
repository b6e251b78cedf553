//! A test OTLP receiver: the generated gRPC trace and metrics services (opentelemetry-proto,
//! tonic) and the HTTP/protobuf endpoints, collecting what the sidecar exports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;

/// One received span, flattened for assertions.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// Span name.
    pub name: String,
    /// Trace id, hex.
    pub trace_id: String,
    /// Span id, hex.
    pub span_id: String,
    /// Parent span id, hex (empty for a root).
    pub parent_span_id: String,
    /// Span kind (OTLP enum: 3 client, 4 producer, 5 consumer).
    pub kind: i32,
    /// Attributes as text.
    pub attributes: BTreeMap<String, String>,
    /// Resource attributes as text.
    pub resource: BTreeMap<String, String>,
}

impl ReceivedSpan {
    /// An attribute's text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Default)]
struct Collected {
    spans: Mutex<Vec<ReceivedSpan>>,
    metric_names: Mutex<Vec<String>>,
    grpc_requests: Mutex<usize>,
    http_requests: Mutex<usize>,
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter().map(|kv| (kv.key.clone(), text(kv.value.as_ref()))).collect()
}

impl Collected {
    fn traces(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let resource = resource_spans.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(ReceivedSpan {
                        name: span.name,
                        trace_id: hex::encode(&span.trace_id),
                        span_id: hex::encode(&span.span_id),
                        parent_span_id: hex::encode(&span.parent_span_id),
                        kind: span.kind,
                        attributes: attributes(&span.attributes),
                        resource: resource.clone(),
                    });
                }
            }
        }
    }

    fn metrics(&self, request: ExportMetricsServiceRequest) {
        let mut names = self.metric_names.lock().unwrap();
        for resource_metrics in request.resource_metrics {
            for scope in resource_metrics.scope_metrics {
                names.extend(scope.metrics.into_iter().map(|m| m.name));
            }
        }
    }
}

#[derive(Clone)]
struct Grpc(Arc<Collected>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        *self.0.grpc_requests.lock().unwrap() += 1;
        self.0.traces(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        *self.0.grpc_requests.lock().unwrap() += 1;
        self.0.metrics(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A running receiver with a gRPC and an HTTP listener.
pub struct OtlpReceiver {
    /// gRPC listener (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`).
    pub grpc: SocketAddr,
    /// HTTP listener (`http/protobuf`).
    pub http: SocketAddr,
    collected: Arc<Collected>,
}

impl OtlpReceiver {
    /// Starts both listeners on free loopback ports.
    pub async fn start() -> OtlpReceiver {
        let collected = Arc::new(Collected::default());
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
        let grpc = grpc_listener.local_addr().expect("addr");
        let service = Grpc(collected.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(service.clone()))
                .add_service(MetricsServiceServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(grpc_listener))
                .await
                .expect("grpc receiver");
        });
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let http = http_listener.local_addr().expect("addr");
        let (traces, metrics) = (collected.clone(), collected.clone());
        let router = axum::Router::new()
            .route(
                "/v1/traces",
                post(move |body: Bytes| async move {
                    *traces.http_requests.lock().unwrap() += 1;
                    traces.traces(ExportTraceServiceRequest::decode(body).expect("protobuf traces"));
                    ExportTraceServiceResponse::default().encode_to_vec()
                }),
            )
            .route(
                "/v1/metrics",
                post(move |body: Bytes| async move {
                    *metrics.http_requests.lock().unwrap() += 1;
                    metrics.metrics(ExportMetricsServiceRequest::decode(body).expect("protobuf metrics"));
                    ExportMetricsServiceResponse::default().encode_to_vec()
                }),
            );
        tokio::spawn(async move { axum::serve(http_listener, router).await });
        OtlpReceiver { grpc, http, collected }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.collected.spans.lock().unwrap().clone()
    }

    /// Names of every metric received so far.
    pub fn metric_names(&self) -> Vec<String> {
        self.collected.metric_names.lock().unwrap().clone()
    }

    /// Export requests received over gRPC and over HTTP.
    pub fn requests(&self) -> (usize, usize) {
        (*self.collected.grpc_requests.lock().unwrap(), *self.collected.http_requests.lock().unwrap())
    }
}
