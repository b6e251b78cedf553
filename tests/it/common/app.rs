//! A test application: an HTTP server that records every request and answers as the test says.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// One request as the application saw it.
#[derive(Clone, Debug)]
pub struct Received {
    /// Header name → value (lossy text), in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
    /// The status the application answered.
    pub status: u16,
}

impl Received {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// `x-kafka-partition` and `x-kafka-offset`.
    pub fn coordinates(&self) -> (i32, i64) {
        let partition =
            self.header("x-kafka-partition").and_then(|v| v.parse().ok()).expect("partition header");
        let offset = self.header("x-kafka-offset").and_then(|v| v.parse().ok()).expect("offset header");
        (partition, offset)
    }

    /// `x-delivery-attempt`.
    pub fn attempt(&self) -> u32 {
        self.header("x-delivery-attempt").and_then(|v| v.parse().ok()).expect("attempt header")
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// What the application answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// This status.
    Status(u16),
    /// This status with `Retry-After: seconds`.
    RetryAfter(u16, u64),
    /// Wait, then answer with this status.
    Slow(Duration, u16),
    /// This status with a JSON body.
    Json(u16, String),
}

type Behaviour = Box<dyn Fn(&Received) -> Reply + Send + Sync>;

struct AppState {
    received: Mutex<Vec<Received>>,
    behaviour: Mutex<Behaviour>,
    /// Requests being handled now.
    current: std::sync::atomic::AtomicUsize,
    /// The most requests handled at once.
    peak: std::sync::atomic::AtomicUsize,
}

/// A running test application.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<AppState>,
    stop: tokio_util::sync::CancellationToken,
}

impl TestApp {
    /// Starts on a free loopback port; answers 200 to everything.
    pub async fn start() -> TestApp {
        Self::start_on("127.0.0.1:0".parse().expect("addr")).await
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr) -> TestApp {
        let state = Arc::new(AppState {
            received: Mutex::default(),
            behaviour: Mutex::new(Box::new(|_| Reply::Status(200))),
            current: 0.into(),
            peak: 0.into(),
        });
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind test app");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().route("/events", post(handle)).with_state(state.clone());
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await
                .expect("serve");
        });
        TestApp { addr, state, stop }
    }

    /// The delivery URL.
    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    /// Sets how the application answers.
    pub fn behave(&self, behaviour: impl Fn(&Received) -> Reply + Send + Sync + 'static) {
        *self.state.behaviour.lock().unwrap() = Box::new(behaviour);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Requests answered with 2xx so far: (partition, offset) pairs.
    pub fn accepted(&self) -> Vec<(i32, i64)> {
        self.received().iter().filter(|r| (200..300).contains(&r.status)).map(Received::coordinates).collect()
    }

    /// Requests being handled right now (not answered yet).
    pub fn in_flight(&self) -> usize {
        self.state.current.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The most requests the application handled at once.
    pub fn peak_concurrency(&self) -> usize {
        self.state.peak.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops listening.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn handle(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut received = Received {
        headers: headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).to_string()))
            .collect(),
        body,
        at: Instant::now(),
        status: 0,
    };
    use std::sync::atomic::Ordering::SeqCst;
    let now = state.current.fetch_add(1, SeqCst) + 1;
    state.peak.fetch_max(now, SeqCst);
    let reply = (state.behaviour.lock().unwrap())(&received);
    received.status = match &reply {
        Reply::Status(s) | Reply::Slow(_, s) | Reply::RetryAfter(s, _) | Reply::Json(s, _) => *s,
    };
    let response = respond(reply).await;
    state.received.lock().unwrap().push(received);
    state.current.fetch_sub(1, SeqCst);
    response
}

async fn respond(reply: Reply) -> Response {
    match reply {
        Reply::Status(status) => status_of(status).into_response(),
        Reply::RetryAfter(status, seconds) => {
            (status_of(status), [("retry-after", seconds.to_string())]).into_response()
        }
        Reply::Slow(delay, status) => {
            tokio::time::sleep(delay).await;
            status_of(status).into_response()
        }
        Reply::Json(status, body) => {
            (status_of(status), [("content-type", "application/json")], body).into_response()
        }
    }
}

fn status_of(code: u16) -> StatusCode {
    StatusCode::from_u16(code).expect("status code")
}
