//! The HTTP server: routes, the layers around them, and the accept loop.
//!
//! Architecture invariant: handlers are thin. They read the request, call the ingest core or the
//! store, and turn the outcome into a response; no storage or validation logic lives here.

pub mod api;
pub mod forwarded;
pub(crate) mod guesses;
mod ingest;
mod listener;
mod ops;
pub mod routes_api;
pub mod ui;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::Semaphore;

pub use listener::{MalformedRequest, MalformedRequestHook, RunningServer, ServerError, Tls};

use crate::auth::Credentials;
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::store::SharedStore;

/// Everything the server needs to know, resolved from file, environment and flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Certificate chain and key files, to serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Whole-request timeout (headers and body).
    pub request_timeout: Duration,
    /// Time for a new connection's first request headers to arrive. On a kept-alive connection
    /// the idle timeout bounds the wait for the next request, headers included.
    pub header_timeout: Duration,
    /// How long a connection may stay open with no request in flight, once it has made one,
    /// HTTP/1.1 keep-alive and HTTP/2 alike: an HTTP/2 client that answers the server's pings
    /// could otherwise hold its connection, and its place under the connection cap, for ever.
    pub idle_timeout: Duration,
    /// Requests handled at once before answering 503.
    pub max_concurrent_requests: usize,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections one remote address may hold open at once; `None` is half of
    /// `max_connections`, so that one client cannot lock out every other.
    pub max_connections_per_address: Option<usize>,
    /// Time given to in-flight requests on shutdown.
    pub shutdown_grace: Duration,
    /// Wrong read or admin tokens one client address may send a minute (0: no limit).
    pub max_wrong_tokens: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client (see [`forwarded`]).
    pub trusted_proxies: forwarded::TrustedProxies,
    /// Largest request body.
    pub max_body: usize,
    /// Most memory the bodies of ingest requests over 64 KiB may take at once, while they are
    /// read and until their events are committed; a request waits for room (503 once its time
    /// is up). Raised to `max_body` when smaller.
    pub max_body_memory: usize,
    /// Who may post events.
    pub ingest_credentials: Credentials,
    /// Who may read (API and web UI).
    pub read_credentials: Credentials,
}

/// Default of [`ServerConfig::max_body_memory`]: 256 of the largest bodies by default, about
/// 250,000 events of ordinary size.
pub const DEFAULT_MAX_BODY_MEMORY: usize = 256 * 1024 * 1024;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            tls: None,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_concurrent_requests: 1024,
            max_connections: 4096,
            max_connections_per_address: None,
            shutdown_grace: Duration::from_secs(30),
            max_wrong_tokens: guesses::MAX_FAILURES,
            trusted_proxies: forwarded::TrustedProxies::default(),
            max_body: 1024 * 1024,
            max_body_memory: DEFAULT_MAX_BODY_MEMORY,
            ingest_credentials: Credentials::default(),
            read_credentials: Credentials::default(),
        }
    }
}

/// The memory budget of ingest bodies, in kibibytes: room for one body of the largest size at
/// least.
fn body_memory_kib(config: &ServerConfig) -> usize {
    config.max_body_memory.max(config.max_body).div_ceil(1024)
}

/// What handlers share: one allocation behind an `Arc`, because every request clones the state
/// (for its handler and its middleware), and cloning ten `Arc`s one by one showed in profiles.
#[derive(Debug, Clone)]
pub struct AppState(Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The state behind [`AppState`].
#[derive(Debug, Clone)]
pub struct SharedState {
    /// The store.
    pub store: SharedStore,
    /// The ingest core.
    pub ingestor: Arc<Ingestor>,
    /// Who may post events.
    pub ingest_credentials: Arc<Credentials>,
    /// Who may read: the API and the web UI.
    pub read_credentials: Arc<Credentials>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Largest request body.
    pub max_body: usize,
    /// Time allowed for a request body to arrive.
    pub body_timeout: Duration,
    /// The configured routes (empty unless set with [`AppState::with_routes`]).
    pub routes: Arc<crate::routes::Routes>,
    /// Who may retry dead letters and replay through the API.
    pub admin_credentials: Arc<Credentials>,
    readiness: Arc<ops::Readiness>,
    /// How many refused requests are recorded one by one.
    rejection_budget: Arc<ingest::RejectionBudget>,
    /// Places for reading sign-in and sign-out forms.
    form_permits: Arc<Semaphore>,
    /// Kibibytes of large bodies being parsed at once ([`ingest::PARSE_BUDGET_KIB`]).
    pub(crate) parse_budget: Arc<Semaphore>,
    /// Kibibytes of ingest bodies held at once ([`ServerConfig::max_body_memory`]).
    pub(crate) body_memory: Arc<Semaphore>,
    /// The kibibytes `body_memory` started with.
    pub(crate) body_memory_kib: usize,
    /// The server itself serves HTTPS: the UI's cookie is `Secure` whatever a request says.
    pub serves_tls: bool,
    /// Wrong read and admin tokens per client address.
    pub(crate) token_guesses: Arc<guesses::TokenGuesses>,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub(crate) trusted_proxies: forwarded::TrustedProxies,
    /// The tasks keeping bodies that arrived whole (`ingest::keep`), which outlive a handler
    /// whose client left: the store closes only once they are done.
    pub(crate) keeping: tokio_util::task::TaskTracker,
}

impl AppState {
    /// State for a server over `store`.
    pub fn new(
        store: SharedStore,
        ingestor: Arc<Ingestor>,
        metrics: Arc<Metrics>,
        config: &ServerConfig,
    ) -> Self {
        AppState(Arc::new(SharedState {
            store,
            ingestor,
            ingest_credentials: Arc::new(config.ingest_credentials.clone()),
            read_credentials: Arc::new(config.read_credentials.clone()),
            metrics,
            max_body: config.max_body,
            body_timeout: config.request_timeout,
            routes: Arc::default(),
            admin_credentials: Arc::default(),
            readiness: Arc::default(),
            rejection_budget: Arc::default(),
            form_permits: Arc::new(Semaphore::new(MAX_FORMS_READ_AT_ONCE)),
            parse_budget: Arc::new(Semaphore::new(ingest::PARSE_BUDGET_KIB as usize)),
            body_memory: Arc::new(Semaphore::new(body_memory_kib(config))),
            body_memory_kib: body_memory_kib(config),
            keeping: tokio_util::task::TaskTracker::new(),
            serves_tls: config.tls.is_some(),
            token_guesses: Arc::new(guesses::TokenGuesses::with_limit(config.max_wrong_tokens)),
            trusted_proxies: config.trusted_proxies.clone(),
        }))
    }

    /// The tasks keeping bodies that arrived whole, to wait for before the store closes.
    pub fn keeping(&self) -> tokio_util::task::TaskTracker {
        self.keeping.clone()
    }

    /// Adds the routes shown and operated through `/api/v1/routes`.
    pub fn with_routes(
        self,
        routes: Arc<crate::routes::Routes>,
        admin_credentials: Credentials,
    ) -> Self {
        let mut state = Arc::unwrap_or_clone(self.0);
        state.routes = routes;
        state.admin_credentials = Arc::new(admin_credentials);
        AppState(Arc::new(state))
    }
}

/// The application's routes with every layer.
pub fn router(state: AppState, config: &ServerConfig) -> Router {
    let max = config.max_concurrent_requests.max(1);
    let limiter = Limiter {
        permits: Arc::new(Semaphore::new(max)),
        others: Arc::new(Semaphore::new(others_share(max))),
        state: state.clone(),
    };
    // The read API and the web UI: their bodies are read before their handlers run. Ingest reads
    // its own (and records what it refuses); the operations endpoints and the fallbacks read none.
    // Inside the concurrency limit, so that a body slow to arrive gives its place back when the
    // request timeout ends it.
    let api = api::router()
        .merge(routes_api::router())
        .layer(axum::middleware::map_response(not_for_caches));
    let bounded = api
        .merge(ui::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            bound_request_body,
        ));
    let app = Router::new()
        .route("/events", post(ingest::post_event))
        // A subscription URL ending in a slash is the default channel; one with more segments
        // is a channel name that is refused, with an authenticated body kept in quarantine
        // (ISC does not send an event twice).
        .route("/events/", post(ingest::post_event))
        .route("/events/{*channel}", post(ingest::post_event_to_channel))
        .merge(
            Router::new()
                .route("/healthz", get(ops::healthz))
                .route("/readyz", get(ops::readyz))
                .route("/metrics", get(ops::metrics))
                .layer(axum::middleware::map_response(not_for_caches)),
        )
        .merge(bounded)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            limiter,
            limit_concurrency,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http1_rules,
        ))
        // Outside the limit and the HTTP/1.1 rules, so that requests refused for them are
        // counted too.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ));
    let app = if config.tls.is_some() {
        app.layer(axum::middleware::map_response(strict_transport_security))
    } else {
        app
    };
    app.with_state(state)
}

/// Served over TLS, every answer tells browsers to reach this host over HTTPS only for a year,
/// so that a sign-in cannot be downgraded to plain HTTP on the way (RFC 6797). Subdomains are
/// left out: the server does not know what else runs under its name.
async fn strict_transport_security(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    response
}

/// Two rules of HTTP/1 that hyper leaves to the application (HTTP/2 has neither):
///
/// - An HTTP/1.1 request needs exactly one `Host` header, with a valid value, and a server must
///   answer 400 to one without (RFC 9112, 3.2); a refused delivery is recorded, as every request
///   to `/events` is. Probes are answered whatever they send: a hand-rolled liveness check that
///   leaves out the Host would otherwise have a healthy server restarted.
/// - An answer given before the request's body was read to its end (refused credentials, a body
///   over the limit or past the timeout) says `Connection: close`: hyper ends the connection,
///   since the next request cannot be found behind what is left of this one, and a client that
///   would send its next request on it learns so from the answer rather than from a closed
///   socket.
async fn http1_rules(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let version = request.version();
    if version > axum::http::Version::HTTP_11 {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let has_body = !axum::body::HttpBody::is_end_stream(&body);
    let with_close = |mut response: Response| {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    };
    if version == axum::http::Version::HTTP_11 && !is_operations_path(parts.uri.path()) {
        if let Some(problem) = host_problem(&parts.headers) {
            let request = Request::from_parts(parts, body);
            let refused = if is_ingest_path(request.uri().path()) {
                ingest::refuse(&state, request, StatusCode::BAD_REQUEST, problem)
            } else {
                error_response(StatusCode::BAD_REQUEST, problem)
            };
            return if has_body {
                with_close(refused)
            } else {
                refused
            };
        }
    }
    // Only `100-continue` is an expectation HTTP/1.1 defines; hyper answers that one itself.
    if let Some(expect) = parts.headers.get(header::EXPECT) {
        if !expect.as_bytes().eq_ignore_ascii_case(b"100-continue") {
            const PROBLEM: &str = "the only expectation this server meets is Expect: 100-continue";
            let request = Request::from_parts(parts, body);
            // Every request to `/events` is in the delivery log, this one too.
            let refused = if is_ingest_path(request.uri().path()) {
                ingest::refuse(&state, request, StatusCode::EXPECTATION_FAILED, PROBLEM)
            } else {
                error_response(StatusCode::EXPECTATION_FAILED, PROBLEM)
            };
            return if has_body {
                with_close(refused)
            } else {
                refused
            };
        }
    }
    if !has_body {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let body = EndTracked::new(body);
    let drained = body.drained.clone();
    let response = next
        .run(Request::from_parts(parts, axum::body::Body::new(body)))
        .await;
    if drained.load(std::sync::atomic::Ordering::Relaxed) {
        response
    } else {
        with_close(response)
    }
}

/// Whether the port of `host[:port]` (or `[v6]:port`), if it has one, is a number that fits.
fn port_is_valid(authority: &str) -> bool {
    let after_host = match authority.rfind(']') {
        Some(end) => &authority[end + 1..],
        None => authority.rfind(':').map_or("", |colon| &authority[colon..]),
    };
    match after_host.strip_prefix(':') {
        None => after_host.is_empty(),
        Some(port) => port.is_empty() || port.parse::<u16>().is_ok(),
    }
}

/// What is wrong with the `Host` headers of an HTTP/1.1 request, if anything.
fn host_problem(headers: &axum::http::HeaderMap) -> Option<&'static str> {
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => Some("an HTTP/1.1 request needs a Host header"),
        (Some(_), Some(_)) => Some("an HTTP/1.1 request has one Host header, not several"),
        // Empty is allowed (for a target without an authority); userinfo is not, nor a port
        // that is not a number from 0 to 65535.
        (Some(host), None)
            if !host.is_empty()
                && host
                    .to_str()
                    .ok()
                    .and_then(|text| text.parse::<axum::http::uri::Authority>().ok())
                    .is_none_or(|authority| {
                        authority.as_str().contains('@') || !port_is_valid(authority.as_str())
                    }) =>
        {
            Some("the Host header is not a host name or address with an optional port")
        }
        _ => None,
    }
}

/// A request body that notes when it has been read to its end (at once when it is empty).
struct EndTracked {
    inner: axum::body::Body,
    drained: Arc<std::sync::atomic::AtomicBool>,
}

impl EndTracked {
    fn new(inner: axum::body::Body) -> Self {
        let empty = axum::body::HttpBody::is_end_stream(&inner);
        EndTracked {
            inner,
            drained: Arc::new(std::sync::atomic::AtomicBool::new(empty)),
        }
    }

    fn note_end(&self) {
        if axum::body::HttpBody::is_end_stream(&self.inner) {
            self.drained
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl axum::body::HttpBody for EndTracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &frame {
            std::task::Poll::Ready(None) => self
                .drained
                .store(true, std::sync::atomic::Ordering::Relaxed),
            std::task::Poll::Ready(Some(Ok(_))) => self.note_end(),
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.note_end();
        axum::body::HttpBody::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

async fn not_found(State(state): State<AppState>, request: Request) -> Response {
    const MESSAGE: &str = "no such resource; events are posted to /events or /events/{channel}";
    if is_ingest_path(request.uri().path()) {
        // A mistyped subscription URL should leave a trace in the delivery log.
        return ingest::refuse(&state, request, StatusCode::NOT_FOUND, MESSAGE);
    }
    if is_browsing(&request) {
        return ui::browser_error_page(StatusCode::NOT_FOUND, "there is no page at this address");
    }
    error_response(StatusCode::NOT_FOUND, MESSAGE)
}

/// A browser asking for a page outside the API: it gets a page, not JSON.
fn is_browsing(request: &Request) -> bool {
    let path = request.uri().path();
    path != "/api" && !path.starts_with("/api/") && ui::wants_a_page(request.headers())
}

async fn method_not_allowed(State(state): State<AppState>, request: Request) -> Response {
    const MESSAGE: &str = "method not allowed on this resource";
    if is_ingest_path(request.uri().path()) {
        return ingest::refuse(&state, request, StatusCode::METHOD_NOT_ALLOWED, MESSAGE);
    }
    if is_browsing(&request) {
        return ui::browser_error_page(
            StatusCode::METHOD_NOT_ALLOWED,
            "this page cannot be sent that way",
        );
    }
    error_response(StatusCode::METHOD_NOT_ALLOWED, MESSAGE)
}

/// `/events` and everything under it: requests there are deliveries (or attempts at one), and
/// every one of them leaves a delivery record, whatever its answer.
fn is_ingest_path(path: &str) -> bool {
    path == "/events" || path.starts_with("/events/")
}

/// Whether a path is one of the operations endpoints, which answer whatever the load: a
/// liveness probe or a metrics scrape refused under load would report the server dead exactly
/// when it is busiest.
fn is_operations_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Counts and records the requests that HTTP itself refused as malformed, as refused requests
/// of the delivery log (pass to [`RunningServer::start_with_hook`]).
pub fn malformed_request_recorder(state: AppState) -> MalformedRequestHook {
    Arc::new(move |malformed| ingest::record_malformed(&state, malformed))
}

/// A JSON error body `{"status": "rejected", "error": …}`.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    let mut response = (
        status,
        axum::Json(json!({"status": "rejected", "error": message})),
    )
        .into_response();
    mark_not_for_caches(&mut response);
    response
}

/// Answers that hold stored data (or say why not) are kept by no cache on the way, and read by
/// no browser as anything but what they say they are.
async fn not_for_caches(mut response: Response) -> Response {
    mark_not_for_caches(&mut response);
    response
}

fn mark_not_for_caches(response: &mut Response) {
    let headers = response.headers_mut();
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
}

/// Counts requests by route and status, and times ingest requests.
/// One request counted in `provtrail_http_requests_in_flight` while it lives.
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn enter(metrics: &'a Metrics) -> Self {
        metrics.requests_in_flight.inc();
        InFlight(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.requests_in_flight.dec();
    }
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    // Given back when the request ends however it ends: a client that goes away before its
    // answer drops this future at the `await`, and the gauge would keep it for good.
    let in_flight = InFlight::enter(&state.metrics);
    let response = next.run(request).await;
    drop(in_flight);
    state
        .metrics
        .count_request(&route, response.status().as_u16());
    if route.starts_with("/events") {
        state
            .metrics
            .ingest_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    response
}

/// Largest body of the sign-in and sign-out forms.
const MAX_FORM_BODY: usize = 16 * 1024;

/// Sign-in and sign-out forms whose bodies are being read at once: a small share of the
/// concurrency cap, since anyone may send one.
const MAX_FORMS_READ_AT_ONCE: usize = 32;

/// Room beside an event in the bodies the API takes (a filter, route names, delivery ids).
const API_BODY_SLACK: usize = 64 * 1024;

/// Bounds the body of a request to the read API or the web UI in time (the request timeout)
/// and size, so that no request holds a place under the concurrency cap, or the memory of what
/// it sent, for longer than the timeout. Without it a client that starts a body and never
/// finishes it keeps its place for as long as it keeps the connection open, and since signing in
/// takes no credential, anyone could fill the cap that way and have every event answered 503.
///
/// The sign-in and sign-out forms, which take no credential, are read here, at most
/// [`MAX_FORMS_READ_AT_ONCE`] at a time, within a small limit (408, 413 or 503 otherwise). Other
/// bodies are only wrapped: their handlers check credentials before they read, so an outsider's
/// body is never read at all.
async fn bound_request_body(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if !matches!(path, "/sign-in" | "/sign-out") {
        let limit = state.max_body.saturating_add(API_BODY_SLACK);
        let (parts, body) = request.into_parts();
        let body = http_body_util::Limited::new(DeadlineBody::new(body, state.body_timeout), limit);
        return next
            .run(Request::from_parts(parts, axum::body::Body::new(body)))
            .await;
    }
    let (parts, body) = request.into_parts();
    // Answered as the other errors of the form are: a page for a browser.
    let refuse = |status: StatusCode, message: &str| {
        if ui::wants_a_page(&parts.headers) {
            ui::browser_error_page(status, message)
        } else {
            error_response(status, message)
        }
    };
    let too_large = format!("the form is larger than the limit of {MAX_FORM_BODY} bytes");
    // A declared length over the limit is refused before anything is read.
    if axum::body::HttpBody::size_hint(&body).lower() > MAX_FORM_BODY as u64 {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, &too_large);
    }
    let Ok(reading) = state.form_permits.try_acquire() else {
        return busy_refusal(
            &Request::from_parts(parts, axum::body::Body::empty()),
            "too many sign-ins in progress; try again shortly",
        );
    };
    match ingest::read_body(body, MAX_FORM_BODY, state.body_timeout, None).await {
        Ok(bytes) => {
            drop(reading);
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Err(ingest::BodyError::TooLarge) => refuse(StatusCode::PAYLOAD_TOO_LARGE, &too_large),
        // Forms are read without a share of the ingest bodies' room: no `NoRoom`.
        Err(ingest::BodyError::Timeout { .. } | ingest::BodyError::NoRoom { .. }) => refuse(
            StatusCode::REQUEST_TIMEOUT,
            "the form did not arrive within the request timeout",
        ),
        Err(ingest::BodyError::Broken { reason: err, .. }) => refuse(
            StatusCode::BAD_REQUEST,
            &format!("the form could not be read: {err}"),
        ),
    }
}

/// The error of a [`DeadlineBody`] read past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the request timeout")]
pub(crate) struct BodyDeadline;

impl BodyDeadline {
    /// Whether `err` (or what caused it) is a body that did not arrive in time: a 408, not a
    /// malformed request.
    pub(crate) fn caused(err: &(dyn std::error::Error + 'static)) -> bool {
        std::iter::successors(Some(err), |err| err.source()).any(|err| err.is::<BodyDeadline>())
    }
}

/// A request body that fails once its deadline has passed: whoever reads it gets an error
/// rather than waiting for a client that stopped sending.
struct DeadlineBody {
    inner: axum::body::Body,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    fn new(inner: axum::body::Body, timeout: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl axum::body::HttpBody for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Some(Err(axum::Error::new(BodyDeadline))));
        }
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// How many of `max` requests in progress may be other than ingest (the read API, the web UI,
/// sign-in): a quarter, at least one. The rest is ingest's alone: ISC does not send an event
/// again, so a reader holding requests open (or anyone posting sign-in forms slowly) must not be
/// able to turn deliveries away. (A cap of 1 has no rest: its one place is shared.)
fn others_share(max: usize) -> usize {
    (max / 4).max(1)
}

/// Refuses work beyond the concurrency cap at once (503) rather than queueing it: a queue would
/// only turn overload into timeouts. Requests other than ingest also need a place of their own
/// share ([`others_share`]).
async fn limit_concurrency(
    State(limiter): State<Limiter>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if is_operations_path(path) {
        return next.run(request).await;
    }
    let other = if is_ingest_path(path) {
        None
    } else {
        match limiter.others.try_acquire() {
            Ok(permit) => Some(permit),
            Err(_) => {
                return busy_refusal(
                    &request,
                    "too many read and web requests in progress; try again shortly",
                );
            }
        }
    };
    match limiter.permits.clone().try_acquire_owned() {
        Ok(permit) => {
            let place = HeldPlace(Arc::new(std::sync::Mutex::new(Some(permit))));
            let mut request = request;
            request.extensions_mut().insert(place.clone());
            let response = next.run(request).await;
            drop((other, place));
            response
        }
        Err(_) => {
            const MESSAGE: &str = "too many requests in progress; try again shortly";
            if is_ingest_path(request.uri().path()) {
                busy(ingest::refuse(
                    &limiter.state,
                    request,
                    StatusCode::SERVICE_UNAVAILABLE,
                    MESSAGE,
                ))
            } else {
                busy_refusal(&request, MESSAGE)
            }
        }
    }
}

/// A request's place under the concurrency cap, in its extensions: held until the request is
/// answered, or taken by a handler whose work outlives it (the ingest handler's task, which
/// keeps an event whose client left), so that the cap bounds that work too.
#[derive(Clone)]
pub(crate) struct HeldPlace(Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>);

impl HeldPlace {
    /// The place, for as long as the taker holds it.
    pub(crate) fn take(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.0.lock().ok()?.take()
    }
}

/// A busy server's 503 to a request other than ingest, in the shape its client reads: the read
/// API's error object, a page for a browser, the plain JSON error otherwise.
fn busy_refusal(request: &Request, message: &str) -> Response {
    let path = request.uri().path();
    busy(if path == "/api" || path.starts_with("/api/") {
        api::error::ApiError::unavailable(message).into_response()
    } else if is_browsing(request) {
        ui::browser_error_page(StatusCode::SERVICE_UNAVAILABLE, message)
    } else {
        error_response(StatusCode::SERVICE_UNAVAILABLE, message)
    })
}

/// A 503 for a server that is busy right now: worth trying again in a second.
fn busy(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The concurrency cap, and the state to record the ingest requests it refuses.
#[derive(Clone)]
struct Limiter {
    permits: Arc<Semaphore>,
    /// The share of `permits` that requests other than ingest may hold.
    others: Arc<Semaphore>,
    state: AppState,
}

/// Stored bodies turned into JSON trees (an event's or a quarantine entry's detail, its page)
/// at once at most. Such a tree of a body at the ingest limit can take tens of MB (a long array
/// of small numbers), and an async worker building it holds up ingest and health probes.
const DETAILS_AT_ONCE: usize = 4;

/// Runs `make` (which reads a stored body into a tree) on a blocking thread, in one of the
/// [`DETAILS_AT_ONCE`] places, waited for.
pub(crate) async fn made_apart<T: Send + 'static>(
    make: impl FnOnce() -> T + Send + 'static,
) -> Result<T, crate::store::StoreError> {
    static PLACES: Semaphore = Semaphore::const_new(DETAILS_AT_ONCE);
    let place = PLACES
        .acquire()
        .await
        .map_err(|_| crate::store::StoreError::Internal("the server is closing".into()))?;
    // Held by the work itself: a client that leaves does not free the place while its tree is
    // still being built.
    let work = move || {
        let _place = place;
        make()
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(made) => Ok(made),
        // A panic goes on as a panic of the request (answered 500).
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => Err(crate::store::StoreError::Internal(format!(
            "reading the stored body failed: {err}"
        ))),
    }
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked; the request was answered 500");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error while handling this request",
    )
}
