//! The routes' answer documents (`/api/v1/routes`, `/api/v1/route-deliveries`,
//! `/api/v1/deadletters`, a route tried on an event) and the reads that build them. The JSON
//! endpoints (`server/routes_api.rs`) and the web UI's routes pages both call these, so that both
//! show the same thing with the same secrets removed: the configured secrets are redacted from
//! every error text here, once, rather than by each caller.
//!
//! Times are Unix milliseconds, as `provtrail routes list --format json` gives them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::routes::replay::ReplayProgress;
use crate::routes::{Preview, RetryInfo, Routes, TestOutcome};
use crate::store::{
    DeliveryAttempt, DeliveryState, RouteCounts, RouteDelivery, RouteDeliveryQuery, Store,
    StoreError,
};

/// Every route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RouteList {
    /// The configured routes in configuration order, then routes no longer configured that still
    /// have deliveries.
    pub routes: Vec<RouteView>,
}

/// A route: its settings (no secrets) and its counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RouteView {
    /// The route's name.
    pub name: String,
    /// False for a route that has deliveries but is no longer in the configuration; its settings
    /// are then null.
    pub configured: bool,
    /// The Jayway filter as written; null when every event matches (or not configured).
    #[schema(required = true)]
    pub filter: Option<String>,
    /// The sink kind: `webhook`, `nats` or `file`.
    #[schema(required = true)]
    pub sink: Option<String>,
    /// Where it delivers, secrets removed (`POST https://hooks.example.com/…`).
    #[schema(required = true)]
    pub target: Option<String>,
    /// Deliveries in flight at once.
    #[schema(required = true)]
    pub concurrency: Option<u32>,
    /// Time one attempt may take (`10s`).
    #[schema(required = true)]
    pub timeout: Option<String>,
    /// Whether private, loopback and link-local webhook targets are allowed.
    #[schema(required = true)]
    pub allow_private: Option<bool>,
    /// The retry policy.
    #[schema(required = true)]
    pub retry: Option<RetryView>,
    /// Since when the route has been paused (Unix milliseconds) because its sink keeps failing
    /// or asked to wait: it probes with one delivery at a time, and the deliveries waiting behind
    /// the pause use none of their attempts (a probe that found the sink down is recorded but
    /// does not count toward `max_attempts`; one it answered with another error does). Null
    /// while it delivers, and from a process that does not deliver (`provtrail routes list`).
    #[schema(required = true)]
    #[serde(default)]
    pub paused_since: Option<i64>,
    /// What happened to its deliveries.
    pub counts: RouteCountsView,
}

/// A retry policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetryView {
    /// Attempts before the dead letters; null: no limit (then `max_age` is set).
    #[schema(required = true)]
    pub max_attempts: Option<u32>,
    /// Age after which a failure is the last (`3days`); null: no limit.
    #[schema(required = true)]
    pub max_age: Option<String>,
    /// Cap of the first retry delay (`1s`).
    pub initial_delay: String,
    /// Largest retry delay (`5m`).
    pub max_delay: String,
}

impl From<RetryInfo> for RetryView {
    fn from(retry: RetryInfo) -> Self {
        RetryView {
            max_attempts: retry.max_attempts,
            max_age: retry.max_age,
            initial_delay: retry.initial_delay,
            max_delay: retry.max_delay,
        }
    }
}

/// Counts and the latest trouble of a route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteCountsView {
    /// Deliveries created: matching events, and replays.
    pub matched: u64,
    /// Deliveries the sink took.
    pub delivered: u64,
    /// Deliveries waiting for an attempt.
    pub pending: u64,
    /// Deliveries in the dead letters now.
    pub dead: u64,
    /// Failed attempts, ever.
    pub failed_attempts: u64,
    /// Since when the pending delivery that has waited longest has waited: since it was made,
    /// or since it was last sent back from the dead letters.
    #[schema(required = true)]
    pub oldest_pending_at: Option<i64>,
    /// The last failure, secrets removed.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// When it happened.
    #[schema(required = true)]
    pub last_error_at: Option<i64>,
    /// When the last delivery succeeded.
    #[schema(required = true)]
    pub last_delivered_at: Option<i64>,
}

impl RouteView {
    /// The route `name` as configured in `routes` (if it is) with its `counts` (if any).
    pub fn new(routes: &Routes, name: &str, counts: Option<&RouteCounts>) -> RouteView {
        let counts = counts.map_or_else(RouteCountsView::default, |counts| RouteCountsView {
            matched: counts.matched,
            delivered: counts.delivered,
            pending: counts.pending,
            dead: counts.dead,
            failed_attempts: counts.failed_attempts,
            oldest_pending_at: counts.oldest_pending_at,
            last_error: counts.last_error.as_deref().map(|e| routes.redact(e)),
            last_error_at: counts.last_error_at,
            last_delivered_at: counts.last_delivered_at,
        });
        match routes.get(name) {
            Some(route) => {
                let info = route.info();
                RouteView {
                    name: info.name,
                    configured: true,
                    filter: info.filter,
                    sink: Some(info.sink),
                    target: Some(info.target),
                    concurrency: Some(u32::try_from(info.concurrency).unwrap_or(u32::MAX)),
                    timeout: Some(info.timeout),
                    allow_private: Some(info.allow_private),
                    retry: Some(info.retry.into()),
                    paused_since: route.status.paused_since(),
                    counts,
                }
            }
            None => RouteView {
                name: name.to_owned(),
                configured: false,
                filter: None,
                sink: None,
                target: None,
                concurrency: None,
                timeout: None,
                allow_private: None,
                retry: None,
                paused_since: None,
                counts,
            },
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStateValue {
    /// Waiting for its next attempt (or being attempted now).
    Pending,
    /// The sink took it.
    Delivered,
    /// Given up on after the retry policy's last attempt, or refused for good by the sink.
    Dead,
}

impl From<DeliveryState> for DeliveryStateValue {
    fn from(state: DeliveryState) -> Self {
        match state {
            DeliveryState::Pending => DeliveryStateValue::Pending,
            DeliveryState::Delivered => DeliveryStateValue::Delivered,
            DeliveryState::Dead => DeliveryStateValue::Dead,
        }
    }
}

impl DeliveryStateValue {
    /// The name, as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStateValue::Pending => "pending",
            DeliveryStateValue::Delivered => "delivered",
            DeliveryStateValue::Dead => "dead",
        }
    }
}

/// One delivery of a stored event to a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RouteDeliveryView {
    /// The delivery's id.
    pub id: i64,
    /// The event's id (`/api/v1/events/{id}`).
    pub event_id: i64,
    /// The event's tracking number; null when the event is no longer stored.
    #[schema(required = true)]
    pub tracking_number: Option<String>,
    /// The route.
    pub route: String,
    /// Where it stands.
    pub state: DeliveryStateValue,
    /// Attempts made.
    pub attempts: u32,
    /// `ingest` (a matching event arrived) or `replay`.
    pub origin: String,
    /// Created.
    pub created_at: i64,
    /// Last changed.
    pub updated_at: i64,
    /// When the next attempt is due, while pending.
    #[schema(required = true)]
    pub next_attempt_at: Option<i64>,
    /// When the sink took it.
    #[schema(required = true)]
    pub delivered_at: Option<i64>,
    /// The status the target answered on the last attempt (HTTP status), when it answered.
    #[schema(required = true)]
    pub last_status: Option<u16>,
    /// The last failure, secrets removed.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// How long the last attempt took, in milliseconds; null before the first attempt.
    #[schema(required = true)]
    pub last_latency_ms: Option<f64>,
}

impl RouteDeliveryView {
    fn new(routes: &Routes, delivery: RouteDelivery) -> RouteDeliveryView {
        RouteDeliveryView {
            id: delivery.id,
            event_id: delivery.event_id,
            tracking_number: delivery.tracking_number,
            route: delivery.route,
            state: delivery.state.into(),
            attempts: delivery.attempts,
            origin: delivery.origin,
            created_at: delivery.created_at,
            updated_at: delivery.updated_at,
            next_attempt_at: delivery.next_attempt_at,
            delivered_at: delivery.delivered_at,
            last_status: delivery.last_status,
            last_error: delivery.last_error.as_deref().map(|e| routes.redact(e)),
            last_latency_ms: delivery.last_latency_us.map(|us| us as f64 / 1000.0),
        }
    }
}

/// A page of deliveries, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RouteDeliveryList {
    /// The deliveries.
    pub items: Vec<RouteDeliveryView>,
    /// Pass as `before_id` to get the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<i64>,
}

/// One delivery with every attempt: the fields of a delivery in a list, but with `attempts`
/// listing the attempts rather than counting them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RouteDeliveryDetail {
    /// The delivery's id.
    pub id: i64,
    /// The event's id (`/api/v1/events/{id}`).
    pub event_id: i64,
    /// The event's tracking number; null when the event is no longer stored.
    #[schema(required = true)]
    pub tracking_number: Option<String>,
    /// The route.
    pub route: String,
    /// Where it stands.
    pub state: DeliveryStateValue,
    /// `ingest` (a matching event arrived) or `replay`.
    pub origin: String,
    /// Created.
    pub created_at: i64,
    /// Last changed.
    pub updated_at: i64,
    /// When the next attempt is due, while pending.
    #[schema(required = true)]
    pub next_attempt_at: Option<i64>,
    /// When the sink took it.
    #[schema(required = true)]
    pub delivered_at: Option<i64>,
    /// The status the target answered on the last attempt (HTTP status), when it answered.
    #[schema(required = true)]
    pub last_status: Option<u16>,
    /// The last failure, secrets removed.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// How long the last attempt took, in milliseconds; null before the first attempt.
    #[schema(required = true)]
    pub last_latency_ms: Option<f64>,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptView>,
}

impl RouteDeliveryDetail {
    fn new(delivery: RouteDeliveryView, attempts: Vec<AttemptView>) -> RouteDeliveryDetail {
        RouteDeliveryDetail {
            id: delivery.id,
            event_id: delivery.event_id,
            tracking_number: delivery.tracking_number,
            route: delivery.route,
            state: delivery.state,
            origin: delivery.origin,
            created_at: delivery.created_at,
            updated_at: delivery.updated_at,
            next_attempt_at: delivery.next_attempt_at,
            delivered_at: delivery.delivered_at,
            last_status: delivery.last_status,
            last_error: delivery.last_error,
            last_latency_ms: delivery.last_latency_ms,
            attempts,
        }
    }
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    /// Its number (1 for the first).
    pub attempt: u32,
    /// When it started.
    pub started_at: i64,
    /// How long it took, in milliseconds.
    pub latency_ms: f64,
    /// `delivered`, `failed` (to be retried) or `dead` (the last).
    pub outcome: String,
    /// The status the target answered (HTTP status), when it answered.
    #[schema(required = true)]
    pub status: Option<u16>,
    /// Why it failed, secrets removed.
    #[schema(required = true)]
    pub error: Option<String>,
}

impl AttemptView {
    fn new(routes: &Routes, attempt: DeliveryAttempt) -> AttemptView {
        AttemptView {
            attempt: attempt.attempt,
            started_at: attempt.started_at,
            latency_ms: attempt.latency_ms,
            outcome: attempt.outcome,
            status: attempt.status,
            error: attempt.error.as_deref().map(|e| routes.redact(e)),
        }
    }
}

/// Does a stored event match a route, and what would be sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteTestResult {
    /// The route.
    pub route: String,
    /// Does the route's filter match the event?
    pub matched: bool,
    /// The sink kind.
    pub sink: String,
    /// What would be sent (secrets removed), whether or not the event matches; null when it
    /// cannot be rendered (see `error`).
    #[schema(required = true)]
    pub preview: Option<PreviewView>,
    /// Why nothing could be rendered (a template error, an event that is not JSON).
    #[schema(required = true)]
    pub error: Option<String>,
}

/// What a delivery would send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreviewView {
    /// Where it would go (`POST https://…`, a subject, a file), secrets removed.
    pub target: String,
    /// Headers (or message headers) as `[name, value]` pairs, secret values removed.
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl From<Preview> for PreviewView {
    fn from(preview: Preview) -> Self {
        PreviewView {
            target: preview.target,
            headers: preview.headers,
            body: preview.body,
        }
    }
}

impl From<TestOutcome> for RouteTestResult {
    fn from(outcome: TestOutcome) -> Self {
        RouteTestResult {
            route: outcome.route,
            matched: outcome.matched,
            sink: outcome.sink,
            preview: outcome.preview.map(PreviewView::from),
            error: outcome.error,
        }
    }
}

/// Which dead letters to retry. One of `ids`, `route` or `"all": true` is required, so that a
/// request that names nothing (an empty body, `{}`, `{"ids": []}`) does not resend every dead
/// letter of every route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Only these deliveries (ids); not empty when given.
    #[serde(default)]
    pub ids: Vec<i64>,
    /// Only this route's dead letters (every one of them, without `ids`). The route must be
    /// configured or have deliveries.
    #[serde(default)]
    pub route: Option<String>,
    /// Every dead letter (of `route`, when given). Cannot be combined with `ids`.
    #[serde(default)]
    pub all: bool,
}

/// How many dead letters went back to pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetryResult {
    /// Deliveries put back to pending.
    pub retried: u64,
    /// With `ids`: how many of the ids given (each counted once) name no dead letter (of
    /// `route`, when given): unknown, or not dead (delivered, or pending again). Absent without
    /// `ids`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_dead: Option<u64>,
}

/// Which stored events to deliver to a route again. An empty body replays every stored event
/// that matches the route's filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequestBody {
    /// Events received at or after this time: RFC 3339 (2026-11-01T10:00:00Z), a date
    /// (2026-11-01, midnight UTC), or a span back from now (90m, 24h, 7d).
    #[serde(default)]
    pub since: Option<String>,
    /// Events received before this time, in the forms of `since`; later than `since`.
    #[serde(default)]
    pub until: Option<String>,
    /// An extra Jayway filter: both it and the route's own must match.
    #[serde(default)]
    pub filter: Option<String>,
    /// Replay every event of the range that matches `filter`, whatever the route's own filter.
    #[serde(default)]
    pub ignore_route_filter: bool,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReplayResult {
    /// Events read.
    pub scanned: u64,
    /// Events that matched.
    pub matched: u64,
    /// Deliveries created (an event with a delivery to the route still pending gets none).
    pub enqueued: u64,
    /// Events passed over because their stored body cannot be read back (a damaged store;
    /// `provtrail verify` checks it).
    #[serde(default)]
    pub unreadable: u64,
}

impl From<ReplayProgress> for ReplayResult {
    fn from(progress: ReplayProgress) -> Self {
        ReplayResult {
            scanned: progress.scanned,
            matched: progress.matched,
            enqueued: progress.enqueued,
            unreadable: progress.unreadable,
        }
    }
}

/// Every configured route, then the routes no longer configured that still have deliveries.
pub async fn list(store: &dyn Store, routes: &Routes) -> Result<RouteList, StoreError> {
    Ok(list_with_counts(routes, &store.route_counts().await?))
}

/// [`list`] with the store's counts already read (none for a store not made yet).
pub fn list_with_counts(routes: &Routes, counts: &[RouteCounts]) -> RouteList {
    let mut list: Vec<RouteView> = routes
        .iter()
        .map(|route| {
            let found = counts.iter().find(|c| c.route == route.name);
            RouteView::new(routes, &route.name, found)
        })
        .collect();
    for found in counts.iter().filter(|c| routes.get(&c.route).is_none()) {
        list.push(RouteView::new(routes, &found.route, Some(found)));
    }
    RouteList { routes: list }
}

/// One route, configured or with deliveries; `None` when neither.
pub async fn route(
    store: &dyn Store,
    routes: &Routes,
    name: &str,
) -> Result<Option<RouteView>, StoreError> {
    let counts = store.route_counts().await?;
    let found = counts.iter().find(|c| c.route == name);
    if routes.get(name).is_none() && found.is_none() {
        return Ok(None);
    }
    Ok(Some(RouteView::new(routes, name, found)))
}

/// A page of deliveries, newest first.
pub async fn deliveries(
    store: &dyn Store,
    routes: &Routes,
    query: &RouteDeliveryQuery,
) -> Result<RouteDeliveryList, StoreError> {
    let page = store.route_deliveries(query).await?;
    Ok(RouteDeliveryList {
        items: page
            .items
            .into_iter()
            .map(|delivery| RouteDeliveryView::new(routes, delivery))
            .collect(),
        next_cursor: page.next_cursor,
    })
}

/// What is missing when a route cannot be tried on an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestMissing {
    /// No configured route has the name (a route no longer configured cannot be tried).
    Route,
    /// No stored event has the id.
    Event,
}

/// Tries a configured route on a stored event: does its filter match, and what would be sent.
/// Nothing is sent.
pub async fn test(
    store: &dyn Store,
    routes: &Routes,
    name: &str,
    event_id: i64,
) -> Result<Result<RouteTestResult, TestMissing>, StoreError> {
    let Some(route) = routes.get(name) else {
        return Ok(Err(TestMissing::Route));
    };
    let Some(event) = store.get_event(event_id).await? else {
        return Ok(Err(TestMissing::Event));
    };
    // On a blocking thread, in one of the evaluation slots replays and searches share: a filter
    // can take long on a large event, and an async worker held that long holds up ingest and
    // health probes with it.
    let route = route.clone();
    let slot = crate::search::evaluation_slot().await;
    let tried = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        route.test(&event.raw, event.summary.id, event.summary.received_at)
    })
    .await;
    let outcome = match tried {
        Ok(outcome) => outcome,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => {
            return Err(StoreError::Internal(format!(
                "trying the route failed: {err}"
            )));
        }
    };
    Ok(Ok(outcome.into()))
}

/// One delivery with its attempts; `None` when there is no delivery with this id.
pub async fn delivery(
    store: &dyn Store,
    routes: &Routes,
    id: i64,
) -> Result<Option<RouteDeliveryDetail>, StoreError> {
    // The list walks ids downwards from its cursor: the first below `id + 1` is `id` if it exists.
    let query = RouteDeliveryQuery {
        before_id: Some(id.saturating_add(1)),
        limit: 1,
        ..RouteDeliveryQuery::default()
    };
    let found = store
        .route_deliveries(&query)
        .await?
        .items
        .into_iter()
        .find(|delivery| delivery.id == id);
    let Some(delivery) = found else {
        return Ok(None);
    };
    let attempts = store.delivery_attempts(id).await?;
    Ok(Some(RouteDeliveryDetail::new(
        RouteDeliveryView::new(routes, delivery),
        attempts
            .into_iter()
            .map(|attempt| AttemptView::new(routes, attempt))
            .collect(),
    )))
}
