//! Shared by the route tests: a webhook receiver on loopback that the test controls (fails,
//! hangs, recovers), and configuration text for routes.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::Notify;

/// How the receiver answers requests that are not told to fail or hang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200, and the delivery is counted.
    Up,
    /// This status, not counted.
    Down(u16),
    /// Holds the request until released, then answers 503 (not counted).
    Hang,
    /// This status for events whose body holds [`REFUSED_MARK`], 200 (counted) for the others:
    /// a sink that answers but refuses some deliveries.
    RefuseMarked(u16),
}

/// What a [`Mode::RefuseMarked`] receiver refuses.
pub const REFUSED_MARK: &str = "refuse-me";

/// What the receiver saw.
#[derive(Debug)]
pub struct ReceiverState {
    pub mode: Mutex<Mode>,
    /// The next this-many requests are answered 500.
    pub fail_next: AtomicU32,
    /// The next this-many requests hang until released (or 30 s), then get 503.
    pub hang_next: AtomicU32,
    /// The next this-many requests get 429 with `Retry-After: 2`.
    pub throttle_next: AtomicU32,
    /// When each request came.
    pub request_times: Mutex<Vec<Instant>>,
    /// `Idempotency-Key` → times answered 200.
    pub delivered: Mutex<HashMap<String, u32>>,
    /// Bodies answered 200, in order.
    pub bodies: Mutex<Vec<Vec<u8>>>,
    /// Every request, whatever the answer.
    pub requests: AtomicU32,
    /// Requests answered with an error (or held).
    pub refused: AtomicU32,
    /// The last `Authorization` header.
    pub last_authorization: Mutex<Option<String>>,
    /// Milliseconds each request takes before it is answered (a slow receiver).
    pub delay_ms: std::sync::atomic::AtomicU64,
    release: Notify,
}

/// A webhook receiver on 127.0.0.1.
pub struct Receiver {
    pub addr: SocketAddr,
    pub state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// A receiver on `addr` (a port a route already points at).
    pub async fn start_on(addr: SocketAddr) -> Receiver {
        let state = Arc::new(ReceiverState {
            mode: Mutex::new(Mode::Up),
            fail_next: AtomicU32::new(0),
            hang_next: AtomicU32::new(0),
            throttle_next: AtomicU32::new(0),
            request_times: Mutex::default(),
            delivered: Mutex::default(),
            bodies: Mutex::default(),
            requests: AtomicU32::new(0),
            refused: AtomicU32::new(0),
            last_authorization: Mutex::default(),
            delay_ms: std::sync::atomic::AtomicU64::new(0),
            release: Notify::new(),
        });
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
        if mode != Mode::Hang {
            self.state.release.notify_waiters();
        }
    }

    /// Releases every held request (they get 503).
    pub fn release(&self) {
        self.state.release.notify_waiters();
    }

    /// `Idempotency-Key` → times answered 200.
    pub fn delivered(&self) -> HashMap<String, u32> {
        self.state.delivered.lock().unwrap().clone()
    }

    pub fn requests(&self) -> u32 {
        self.state.requests.load(Ordering::SeqCst)
    }
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if take_one(&state.throttle_next) {
        state.requests.fetch_add(1, Ordering::SeqCst);
        state.request_times.lock().unwrap().push(Instant::now());
        state.refused.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(axum::http::header::RETRY_AFTER, "2")],
            "slow down",
        )
            .into_response();
    }
    answer(state, headers, body).await.into_response()
}

async fn answer(
    state: Arc<ReceiverState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    state.requests.fetch_add(1, Ordering::SeqCst);
    state.request_times.lock().unwrap().push(Instant::now());
    let authorization = headers
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    *state.last_authorization.lock().unwrap() = authorization.clone();
    let key = headers
        .get("idempotency-key")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mode = *state.mode.lock().unwrap();
    if take_one(&state.hang_next) || mode == Mode::Hang {
        state.refused.fetch_add(1, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(30), state.release.notified()).await;
        return (StatusCode::SERVICE_UNAVAILABLE, "was held".into());
    }
    if take_one(&state.fail_next) {
        state.refused.fetch_add(1, Ordering::SeqCst);
        // Echoes the credential, as careless servers do: provtrail must not store it.
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "failing on purpose; you sent {}",
                authorization.unwrap_or_default()
            ),
        );
    }
    let refused_status = match mode {
        Mode::Down(status) => Some(status),
        Mode::RefuseMarked(status)
            if body
                .windows(REFUSED_MARK.len())
                .any(|window| window == REFUSED_MARK.as_bytes()) =>
        {
            Some(status)
        }
        _ => None,
    };
    if let Some(status) = refused_status {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::from_u16(status).unwrap(),
            format!("down; you sent {}", authorization.unwrap_or_default()),
        );
    }
    *state.delivered.lock().unwrap().entry(key).or_insert(0) += 1;
    state.bodies.lock().unwrap().push(body.to_vec());
    (StatusCode::OK, "ok".into())
}

/// A `[[routes]]` entry delivering to a webhook with fast retries, for tests.
pub fn webhook_route(name: &str, url: &str, extra: &str) -> String {
    format!(
        r#"
[[routes]]
name = "{name}"
allow_private = true
timeout = "500ms"
concurrency = 4
[routes.retry]
initial_delay = "20ms"
max_delay = "200ms"
max_attempts = 1000
[routes.sink]
type = "webhook"
url = "{url}"
{extra}
"#
    )
}

/// The whole configuration file of a test server.
pub fn config_text(db: &Path, routes: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[ingest]
tokens = ["{token}"]
[read]
tokens = ["{READ_TOKEN}"]
[admin]
tokens = ["{ADMIN_TOKEN}"]
[store]
path = "{db}"
{routes}
"#,
        token = crate::common::TOKEN,
        db = db.display()
    )
}

pub const READ_TOKEN: &str = "read-token-for-route-tests";
pub const ADMIN_TOKEN: &str = "admin-token-for-route-tests";

/// Route counts read from the database file, `(route, state) -> n`.
pub fn states(db: &Path) -> HashMap<(String, i64), i64> {
    let conn = crate::common::open_db(db);
    let mut statement = conn
        .prepare("SELECT route, state, count(*) FROM route_deliveries GROUP BY route, state")
        .unwrap();
    statement
        .query_map([], |row| Ok(((row.get(0)?, row.get(1)?), row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// True when `route` has no pending delivery in the database file: every attempt made so far is
/// recorded.
pub fn none_pending(db: &Path, route: &str) -> bool {
    !states(db).contains_key(&(route.to_owned(), 0))
}

/// Waits up to `limit` for `condition`, polling; fails the test with `what`.
pub async fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
