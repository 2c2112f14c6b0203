//! The routes' JSON API, for scripts and the web UI's pages.
//!
//! | method and path | what | who |
//! |---|---|---|
//! | `GET /api/v1/routes` | every route: settings (no secrets) and counts | read token |
//! | `GET /api/v1/routes/{name}` | one route | read token |
//! | `GET /api/v1/routes/{name}/test?event_id=N` | does stored event N match, what would be sent | read token |
//! | `GET /api/v1/route-deliveries?route=&state=&event_id=&before_id=&limit=` | deliveries, newest first | read token |
//! | `GET /api/v1/route-deliveries/{id}` | one delivery with every attempt | read token |
//! | `GET /api/v1/deadletters?route=&event_id=&before_id=&limit=` | the dead letters | read token |
//! | `POST /api/v1/deadletters/retry` `{"ids"?, "route"?, "all"?}` (one of them) | dead letters back to pending | admin token |
//! | `POST /api/v1/routes/{name}/replay` `{"since"?, "until"?, "filter"?, "ignore_route_filter"?}` | re-deliver stored events | admin token |
//!
//! The handlers are thin and belong to the read API in all but their place: the documents and the
//! reads behind them are `api/routes.rs` (shared with the web UI), parameters are checked as the
//! read API checks its own (`api/params.rs`), errors have its one shape, and the
//! `#[utoipa::path]` attributes put these endpoints in its OpenAPI document.
//!
//! Why a separate admin token for the two POSTs: read tokens are handed to everyone who looks at
//! the trail, and a retry or a replay sends traffic to third-party systems (tickets reopened,
//! people notified again). An admin token reads the routes too. A request without a valid read or
//! admin token is answered 401; a read token asking for a change, 403 (also when no admin token
//! is configured: the same operations stay available on the command line, to whoever can open
//! the database).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate};

use super::AppState;
use super::api::endpoint;
use super::api::error::ApiError;
use super::api::handlers::{Pairs, json_body, no_parameters, pairs, path_id};
use super::api::model::{ErrorBody, rfc3339};
use super::api::params::{
    DeadLettersParams, Params, RouteDeliveriesParams, RouteTestParams, TIME_FORMS,
    dead_letters_accepted, parse_time, route_deliveries_accepted, route_test_accepted,
};
use super::api::routes::{
    self, ReplayRequestBody, ReplayResult, RetryRequest, RetryResult, RouteDeliveryDetail,
    RouteDeliveryList, RouteList, RouteTestResult, RouteView, TestMissing,
};
use crate::auth::AuthError;
use crate::routes::replay::{ReplayError, ReplayProgress, ReplayRequest, replay};
use crate::store::{DeliveryState, Millis, OutboxWrite, RouteDeliveryQuery};

/// The routes' endpoints.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/routes", endpoint(get(list_routes)))
        .route("/api/v1/routes/{name}", endpoint(get(get_route)))
        .route("/api/v1/routes/{name}/test", endpoint(get(test_route)))
        .route("/api/v1/routes/{name}/replay", endpoint(post(replay_route)))
        .route("/api/v1/route-deliveries", endpoint(get(list_deliveries)))
        .route("/api/v1/route-deliveries/{id}", endpoint(get(get_delivery)))
        .route("/api/v1/deadletters", endpoint(get(list_dead)))
        .route("/api/v1/deadletters/retry", endpoint(post(retry_dead)))
}

/// Who the request's `Authorization` header says is asking.
enum Access {
    Admin,
    Read,
    Nobody(AuthError),
    /// Too many wrong tokens from this client: none is checked for this long.
    Throttled(std::time::Duration),
}

fn access(parts: &Parts, state: &AppState) -> Access {
    if let Some(wait) = state.token_guesses.refusal(parts, &state.trusted_proxies) {
        return Access::Throttled(wait);
    }
    if state
        .admin_credentials
        .check_headers(&parts.headers)
        .is_ok()
    {
        return Access::Admin;
    }
    match state.read_credentials.check_headers(&parts.headers) {
        Ok(()) => Access::Read,
        Err(err) => {
            crate::server::guesses::note_refused(state, parts, &err);
            Access::Nobody(err)
        }
    }
}

fn unauthorized(err: AuthError) -> ApiError {
    ApiError::unauthorized(format!(
        "{}: the routes API needs a read token (or an admin token) as Authorization: Bearer \
         <token>; ingest credentials are not accepted",
        err.without_ingest_hint()
    ))
}

/// Proof that the request carries a read token or an admin token; checked before anything else
/// is read.
#[derive(Debug, Clone, Copy)]
pub struct RouteReadAccess;

impl FromRequestParts<AppState> for RouteReadAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match access(parts, state) {
            Access::Admin | Access::Read => Ok(RouteReadAccess),
            Access::Nobody(err) => Err(unauthorized(err)),
            Access::Throttled(wait) => Err(ApiError::too_many_requests(wait)),
        }
    }
}

/// Proof that the request carries an admin token; checked before anything else is read, the
/// body included.
#[derive(Debug, Clone, Copy)]
pub struct AdminAccess;

impl FromRequestParts<AppState> for AdminAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match access(parts, state) {
            Access::Admin => Ok(AdminAccess),
            Access::Read if state.admin_credentials.is_empty() => Err(ApiError::forbidden(
                "retries and replays through the API need an admin token, and none is \
                 configured: give provtrail serve --admin-token or set [admin] tokens (or use \
                 provtrail deadletter retry / provtrail replay)",
            )),
            Access::Read => Err(ApiError::forbidden(
                "a read token cannot retry or replay: this needs an admin token",
            )),
            Access::Nobody(err) => Err(unauthorized(err)),
            Access::Throttled(wait) => Err(ApiError::too_many_requests(wait)),
        }
    }
}

/// A route name from the path, or a 400 in the API's shape.
fn path_name(name: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    name.map(|Path(name)| name)
        .map_err(|err| ApiError::invalid("name", format!("`name` cannot be read: {err}")))
}

fn no_route(name: &str) -> ApiError {
    ApiError::not_found(format!("there is no route {name:?}"))
}

/// A JSON object body, or the default for an empty body or `null` (the document declares the
/// body optional, which some clients send as `null`).
fn parse_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    shape: &str,
) -> Result<T, ApiError> {
    let invalid = |why: String| ApiError::invalid_body(format!("the body must be {shape}: {why}"));
    match body.iter().find(|byte| !byte.is_ascii_whitespace()) {
        None => Ok(T::default()),
        // serde reads a struct from an array of its fields too; the document says object.
        Some(b'{' | b'n') => serde_json::from_slice::<Option<T>>(body)
            .map(Option::unwrap_or_default)
            .map_err(|err| invalid(err.to_string())),
        Some(_) => Err(invalid("it is not an object".to_owned())),
    }
}

/// List the routes.
///
/// Every configured route in configuration order, then the routes no longer configured that still
/// have deliveries: settings with secrets removed, and counts.
#[utoipa::path(
    get,
    path = "/api/v1/routes",
    tag = "routes",
    operation_id = "listRoutes",
    security(("read_token" = []), ("admin_token" = [])),
    responses(
        (status = 200, description = "Every route", body = RouteList),
        (status = 400, description = "A query parameter was given (this endpoint takes none)", body = ErrorBody),
        (status = 401, description = "No read or admin token, or not a valid one", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"provtrail\"`"))),
        (status = 429, description = "Ten wrong tokens from this address within a minute: no token from it is checked until the minute ends", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before sending a token again"))),
        (status = 414, description = "The request line is longer than the HTTP server accepts (no body)"),
        (status = 503, description = "The store is unavailable; try again", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn list_routes(
    _: RouteReadAccess,
    State(state): State<AppState>,
    query: Pairs,
) -> Result<Json<RouteList>, ApiError> {
    no_parameters(query)?;
    Ok(Json(
        routes::list(state.store.as_ref(), &state.routes).await?,
    ))
}

/// One route.
///
/// A configured route, or one no longer configured that still has deliveries.
#[utoipa::path(
    get,
    path = "/api/v1/routes/{name}",
    tag = "routes",
    operation_id = "getRoute",
    params(("name" = String, Path, description = "The route's name", pattern = "^[A-Za-z0-9._-]{1,64}$")),
    security(("read_token" = []), ("admin_token" = [])),
    responses(
        (status = 200, description = "The route", body = RouteView),
        (status = 400, description = "The name cannot be read, or a query parameter was given (this endpoint takes none)", body = ErrorBody),
        (status = 401, description = "No read or admin token, or not a valid one", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"provtrail\"`"))),
        (status = 429, description = "Ten wrong tokens from this address within a minute: no token from it is checked until the minute ends", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before sending a token again"))),
        (status = 404, description = "No route has this name", body = ErrorBody),
        (status = 414, description = "The request line is longer than the HTTP server accepts (no body)"),
        (status = 503, description = "The store is unavailable; try again", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn get_route(
    _: RouteReadAccess,
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    query: Pairs,
) -> Result<Json<RouteView>, ApiError> {
    let name = path_name(name)?;
    no_parameters(query)?;
    routes::route(state.store.as_ref(), &state.routes, &name)
        .await?
        .map(Json)
        .ok_or_else(|| no_route(&name))
}

/// Test a route on a stored event.
///
/// Whether the route's filter matches the event, and what the route would send for it (secrets
/// removed). Nothing is sent.
#[utoipa::path(
    get,
    path = "/api/v1/routes/{name}/test",
    tag = "routes",
    operation_id = "testRoute",
    params(
        ("name" = String, Path, description = "The route's name", pattern = "^[A-Za-z0-9._-]{1,64}$"),
        RouteTestParams,
    ),
    security(("read_token" = []), ("admin_token" = [])),
    responses(
        (status = 200, description = "Whether it matches, and what would be sent", body = RouteTestResult),
        (status = 400, description = "A parameter is not acceptable (named in `error.parameter`)", body = ErrorBody),
        (status = 401, description = "No read or admin token, or not a valid one", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"provtrail\"`"))),
        (status = 429, description = "Ten wrong tokens from this address within a minute: no token from it is checked until the minute ends", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before sending a token again"))),
        (status = 404, description = "No configured route has this name, or no event this id", body = ErrorBody),
        (status = 414, description = "The request line is longer than the HTTP server accepts (no body)"),
        (status = 503, description = "The store is unavailable; try again", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn test_route(
    _: RouteReadAccess,
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    query: Pairs,
) -> Result<Json<RouteTestResult>, ApiError> {
    let name = path_name(name)?;
    let params = Params::parse(pairs(query)?, route_test_accepted())?;
    let event_id = params.integer("event_id", 1, i64::MAX)?.ok_or_else(|| {
        ApiError::invalid("event_id", "`event_id` is required: a stored event's id")
    })?;
    match routes::test(state.store.as_ref(), &state.routes, &name, event_id).await? {
        Ok(result) => Ok(Json(result)),
        Err(TestMissing::Route) => Err(no_route(&name)),
        Err(TestMissing::Event) => {
            Err(ApiError::not_found(format!("there is no event {event_id}")))
        }
    }
}

/// List deliveries.
///
/// Deliveries of stored events to routes, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/route-deliveries",
    tag = "routes",
    operation_id = "listRouteDeliveries",
    params(RouteDeliveriesParams),
    security(("read_token" = []), ("admin_token" = [])),
    responses(
        (status = 200, description = "A page of deliveries, newest first", body = RouteDeliveryList),
        (status = 400, description = "A parameter is not acceptable (named in `error.parameter`)", body = ErrorBody),
        (status = 401, description = "No read or admin token, or not a valid one", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"provtrail\"`"))),
        (status = 429, description = "Ten wrong tokens from this address within a minute: no token from it is checked until the minute ends", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before sending a token again"))),
        (status = 404, description = "No route has this `route` name (none configured, no deliveries)", body = ErrorBody),
        (status = 414, description = "The request line is longer than the HTTP server accepts (no body)"),
        (status = 503, description = "The store is unavailable; try again", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn list_deliveries(
    _: RouteReadAccess,
    State(state): State<AppState>,
    query: Pairs,
) -> Result<Json<RouteDeliveryList>, ApiError> {
    let params = Params::parse(pairs(query)?, route_deliveries_accepted())?;
    let state_filter = params
        .choice("state", &["pending", "delivered", "dead"])?
        .and_then(DeliveryState::parse);
    let query = delivery_query(&params, state_filter)?;
    known_route(&state, query.route.as_deref()).await?;
    Ok(Json(
        routes::deliveries(state.store.as_ref(), &state.routes, &query).await?,
    ))
}

/// A 404 for a route that is neither configured nor has deliveries: a misspelt name would
/// otherwise list nothing and look like "no dead letters".
async fn known_route(state: &AppState, name: Option<&str>) -> Result<(), ApiError> {
    match name {
        Some(name)
            if routes::route(state.store.as_ref(), &state.routes, name)
                .await?
                .is_none() =>
        {
            Err(no_route(name))
        }
        _ => Ok(()),
    }
}

/// The parameters the delivery lists share, with the state to list.
fn delivery_query(
    params: &Params,
    state: Option<DeliveryState>,
) -> Result<RouteDeliveryQuery, ApiError> {
    Ok(RouteDeliveryQuery {
        route: params.text("route")?,
        state,
        event_id: params.integer("event_id", 1, i64::MAX)?,
        before_id: params.integer("before_id", 1, i64::MAX)?,
        limit: params.limit()?,
    })
}

/// List the dead letters.
///
/// Deliveries given up on after the retry policy's last attempt, or refused for good by the
/// sink, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/deadletters",
    tag = "routes",
    operation_id = "listDeadLetters",
    params(DeadLettersParams),
    security(("read_token" = []), ("admin_token" = [])),
    responses(
        (status = 200, description = "A page of dead letters, newest first", body = RouteDeliveryList),
        (status = 400, description = "A parameter is not acceptable (named in `error.parameter`)", body = ErrorBody),
        (status = 401, description = "No read or admin token, or not a valid one", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"provtrail\"`"))),
        (status = 429, description = "Ten wrong tokens from this address within a minute: no token from it is checked until the minute ends", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before sending a token again"))),
        (status = 404, description = "No route has this `route` name (none configured, no deliveries)", body = ErrorBody),
        (status = 414, description = "The request line is longer than the HTTP server accepts (no body)"),
        (status = 503, description = "The store is unavailable; try again", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn list_dead(
    _: RouteReadAccess,
    State(state): State<AppState>,
    query: Pairs,
) -> Result<Json<RouteDeliveryList>, ApiError> {
    let params = Params::parse(pairs(query)?, dead_letters_accepted())?;
    let query = delivery_query(&params, Some(DeliveryState::Dead))?;
    known_route(&state, query.route.as_deref()).await?;
    Ok(Json(
        routes::deliveries(state.store.as_ref(), &state.routes, &query).await?,
    ))
}

/// One delivery, with every attempt.
#[utoipa::path(
    get,
    path = "/api/v1/route-deliveries/{id}",
    tag = "routes",
    operation_id = "getRouteDelivery",
    params(("id" = i64, Path, description = "The delivery's id", minimum = 1)),
    security(("read_token" = []), ("admin_token" = [])),
    responses(
        (status = 200, description = "The delivery and its attempts", body = RouteDeliveryDetail),
        (status = 400, description = "The id is not a positive integer, or a query parameter was given (this endpoint takes none)", body = ErrorBody),
        (status = 401, description = "No read or admin token, or not a valid one", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"provtrail\"`"))),
        (status = 429, description = "Ten wrong tokens from this address within a minute: no token from it is checked until the minute ends", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before sending a token again"))),
        (status = 404, description = "No delivery has this id", body = ErrorBody),
        (status = 414, description = "The request line is longer than the HTTP server accepts (no body)"),
        (status = 503, description = "The store is unavailable; try again", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn get_delivery(
    _: RouteReadAccess,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    query: Pairs,
) -> Result<Json<RouteDeliveryDetail>, ApiError> {
    let id = path_id(id)?;
    no_parameters(query)?;
    routes::delivery(state.store.as_ref(), &state.routes, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("there is no route delivery {id}")))
}

/// Retry dead letters.
///
/// Puts dead letters back to pending with a fresh retry budget: those with the given `ids`, or
/// those of `route`, or with `"all": true` every one (of `route`, when given). A body that names
/// none of these is refused. Needs an admin token: the deliveries are sent again to other
/// systems.
#[utoipa::path(
    post,
    path = "/api/v1/deadletters/retry",
    tag = "routes",
    operation_id = "retryDeadLetters",
    request_body(content = RetryRequest, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "How many went back to pending", body = RetryResult),
        (status = 400, description = "A query parameter was given (this endpoint takes none), or the body is not acceptable, or names no dead letters (none of `ids`, `route`, `\"all\": true`)", body = ErrorBody),
        (status = 401, description = "No read or admin token, or not a valid one", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"provtrail\"`"))),
        (status = 429, description = "Ten wrong tokens from this address within a minute: no token from it is checked until the minute ends", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before sending a token again"))),
        (status = 403, description = "Not an admin token (or no admin token is configured)", body = ErrorBody),
        (status = 404, description = "No route has this `route` name (none configured, no deliveries), or none of the `ids` names a dead letter (of `route`, when given)", body = ErrorBody),
        (status = 408, description = "The body did not arrive within the request timeout", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 414, description = "The request line is longer than the HTTP server accepts (no body)"),
        (status = 415, description = "The body is not sent as JSON", body = ErrorBody),
        (status = 503, description = "The store is unavailable; try again", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn retry_dead(
    _: AdminAccess,
    State(state): State<AppState>,
    query: Pairs,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RetryResult>, ApiError> {
    no_parameters(query)?;
    let body = json_body(&headers, body)?;
    let request: RetryRequest = parse_body(
        &body,
        "a JSON object {\"ids\"?: [integer], \"route\"?: string, \"all\"?: boolean}",
    )?;
    if request.all && !request.ids.is_empty() {
        return Err(ApiError::invalid_body(
            "give either \"ids\" or \"all\": true, not both",
        ));
    }
    if !request.all && request.ids.is_empty() && request.route.is_none() {
        return Err(ApiError::invalid_body(
            "say which dead letters to retry: \"ids\" (a non-empty list of delivery ids), \
             \"route\" (every one of that route), or \"all\": true (every one of every route)",
        ));
    }
    // A misspelt name would otherwise retry nothing and answer success.
    known_route(&state, request.route.as_deref()).await?;
    let asked = request
        .ids
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len() as u64;
    let route = request.route.clone();
    let retried = state
        .store
        .outbox_write(OutboxWrite::RetryDead {
            route: request.route,
            ids: request.ids,
            at: chrono::Utc::now().timestamp_millis(),
        })
        .await?;
    if asked == 0 {
        return Ok(Json(RetryResult {
            retried,
            not_dead: None,
        }));
    }
    // Ids that name no dead letter (a typo, or one delivered since) retried nothing: when none
    // did, that is no success.
    if retried == 0 {
        let of_route = route
            .map(|route| format!(" of route {route:?}"))
            .unwrap_or_default();
        return Err(ApiError::not_found(format!(
            "none of the {asked} ids given names a dead letter{of_route} that could be retried: \
             each is unknown, not dead, or a dead letter whose event already has a pending \
             delivery to the route (see GET /api/v1/deadletters)"
        )));
    }
    Ok(Json(RetryResult {
        retried,
        not_dead: Some(asked.saturating_sub(retried)),
    }))
}

/// Why the time range of a replay cannot be used. Shared by the API and `provtrail replay`, which
/// name the bounds differently (`since`, `--since`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayRangeError {
    /// A bound written as a date or a time, but not a valid one (`2026-13-45`).
    #[error(
        "{name} {text:?} is not a valid {form} ({reason}): use a date like 2026-11-01 or a time \
         like 2026-11-01T10:00:00Z"
    )]
    InvalidDate {
        /// The bound's name.
        name: String,
        /// What was given.
        text: String,
        /// What it was meant as: `date`, or `time` (with a time of day).
        form: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A bound in none of the accepted forms.
    #[error("{name} {text:?} is not a time: use {TIME_FORMS}")]
    NotATime {
        /// The bound's name.
        name: String,
        /// What was given.
        text: String,
    },
    /// A range that ends where or before it starts: no event can be in it.
    #[error(
        "{since_name} {since} is not before {until_name} {until}: no event is received in that \
         range (swap them?)"
    )]
    Reversed {
        /// The lower bound's name.
        since_name: String,
        /// The lower bound, as given and as a time.
        since: String,
        /// The upper bound's name.
        until_name: String,
        /// The upper bound, as given and as a time.
        until: String,
    },
}

impl ReplayRangeError {
    /// The bound at fault (for the reversed range, the upper one).
    pub fn bound(&self) -> &str {
        match self {
            ReplayRangeError::InvalidDate { name, .. }
            | ReplayRangeError::NotATime { name, .. } => name,
            ReplayRangeError::Reversed { until_name, .. } => until_name,
        }
    }
}

/// One bound of a replay, in Unix milliseconds: the forms of the read API's time parameters.
fn replay_time(name: &str, text: &str) -> Result<Millis, ReplayRangeError> {
    if let Ok(time) = parse_time(text) {
        return Ok(time);
    }
    let text = text.trim();
    // `2026-…` is meant as a date or a time (a span has no dash): say what is wrong with it
    // rather than that it is none of the forms.
    let bytes = text.as_bytes();
    let looks_like_a_date =
        bytes.len() >= 5 && bytes[..4].iter().all(u8::is_ascii_digit) && bytes[4] == b'-';
    if looks_like_a_date {
        let (form, reason) = if text.len() > "2026-11-01".len() {
            ("time", DateTime::parse_from_rfc3339(text).err())
        } else {
            ("date", NaiveDate::parse_from_str(text, "%Y-%m-%d").err())
        };
        return Err(ReplayRangeError::InvalidDate {
            name: name.to_owned(),
            text: text.to_owned(),
            form,
            reason: reason.map_or_else(|| "out of range".to_owned(), |err| err.to_string()),
        });
    }
    Err(ReplayRangeError::NotATime {
        name: name.to_owned(),
        text: text.to_owned(),
    })
}

/// A replay's range `[since, until)` in Unix milliseconds, from the bounds as given: each in the
/// forms of the read API's time parameters (RFC 3339, a date, or a span back from now), and
/// `since` before `until` when both are given. `names` are what the bounds are called where they
/// were given (`["since", "until"]`, `["--since", "--until"]`).
pub fn replay_range(
    since: Option<&str>,
    until: Option<&str>,
    names: [&str; 2],
) -> Result<(Option<Millis>, Option<Millis>), ReplayRangeError> {
    let [since_name, until_name] = names;
    let since_time = since
        .map(|text| replay_time(since_name, text))
        .transpose()?;
    let until_time = until
        .map(|text| replay_time(until_name, text))
        .transpose()?;
    if let (Some(start), Some(end), Some(since), Some(until)) =
        (since_time, until_time, since, until)
    {
        if start >= end {
            let shown = |text: &str, time: Millis| format!("{} ({})", text.trim(), rfc3339(time));
            return Err(ReplayRangeError::Reversed {
                since_name: since_name.to_owned(),
                since: shown(since, start),
                until_name: until_name.to_owned(),
                until: shown(until, end),
            });
        }
    }
    Ok((since_time, until_time))
}

/// Replay stored events to a route.
///
/// Creates deliveries to the route for the stored events received in `[since, until)` that
/// match the route's filter (unless `ignore_route_filter`) and `filter`, within the request; an
/// event with a delivery to the route still pending gets none. Needs an admin token: the events
/// are sent again to other systems. For ranges of many thousands of events, `provtrail replay`
/// shows its progress.
#[utoipa::path(
    post,
    path = "/api/v1/routes/{name}/replay",
    tag = "routes",
    operation_id = "replayRoute",
    params(("name" = String, Path, description = "The route's name", pattern = "^[A-Za-z0-9._-]{1,64}$")),
    request_body(content = Option<ReplayRequestBody>, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "What the replay did", body = ReplayResult),
        (status = 400, description = "A query parameter was given (this endpoint takes none), or the body is not acceptable: a time that cannot be read, `since` not before `until`, or a filter that does not compile (with the position) or calls a function Jayway does not have; or the filters did not finish on one event within 10 s (the replay stops there, and its message says how many deliveries it created before: they stay, and are delivered)", body = ErrorBody),
        (status = 401, description = "No read or admin token, or not a valid one", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"provtrail\"`"))),
        (status = 429, description = "Ten wrong tokens from this address within a minute: no token from it is checked until the minute ends", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before sending a token again"))),
        (status = 403, description = "Not an admin token (or no admin token is configured)", body = ErrorBody),
        (status = 404, description = "No configured route has this name", body = ErrorBody),
        (status = 408, description = "The body did not arrive within the request timeout", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 414, description = "The request line is longer than the HTTP server accepts (no body)"),
        (status = 415, description = "The body is not sent as JSON", body = ErrorBody),
        (status = 503, description = "The store is unavailable; try again. A replay stopped part way says in its message how many deliveries it created before (they stay, and are delivered)", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn replay_route(
    _: AdminAccess,
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    query: Pairs,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ReplayResult>, ApiError> {
    let name = path_name(name)?;
    no_parameters(query)?;
    let body = json_body(&headers, body)?;
    let request: ReplayRequestBody = parse_body(
        &body,
        "a JSON object {\"since\"?: string, \"until\"?: string, \"filter\"?: string, \
         \"ignore_route_filter\"?: boolean}",
    )?;
    let route = state
        .routes
        .get(&name)
        .cloned()
        .ok_or_else(|| no_route(&name))?;
    let (since, until) = replay_range(
        request.since.as_deref(),
        request.until.as_deref(),
        ["since", "until"],
    )
    .map_err(|err| ApiError::invalid(err.bound(), err.to_string()))?;
    // Given blank, it would replay every event of the range: most likely a mistake, refused as
    // `provtrail replay` refuses it.
    if request
        .filter
        .as_deref()
        .is_some_and(|text| text.trim().is_empty())
    {
        return Err(ApiError::invalid(
            "filter",
            "filter is empty; leave it out to replay every event the route matches",
        ));
    }
    let request = ReplayRequest {
        since,
        until,
        filter: request.filter,
        ignore_route_filter: request.ignore_route_filter,
    };
    let mut reached = ReplayProgress::default();
    match replay(&state.store, &route, &request, |progress| {
        reached = *progress
    })
    .await
    {
        Ok(progress) => Ok(Json(progress.into())),
        Err(ReplayError::Filter(err)) => Err(ApiError::invalid_filter("filter", &err)),
        Err(err @ ReplayError::UnknownFunctions(_)) => {
            Err(ApiError::invalid("filter", err.to_string()))
        }
        Err(err @ ReplayError::TooSlow { route_filter, .. }) => {
            let mut message = err.to_string();
            if reached.enqueued > 0 {
                message = format!(
                    "{message}; the replay stopped after {} events read: the {} deliveries \
                     created before stay pending, and are delivered",
                    reached.scanned, reached.enqueued
                );
            }
            // The route's own filter is no field of the request: named by the message alone.
            let field = if route_filter { "name" } else { "filter" };
            Err(ApiError::invalid(field, message))
        }
        Err(ReplayError::Store(err)) => {
            let mut refused = ApiError::from(err);
            // What pages before the failure created stays, and is delivered: said, so that the
            // replay is not simply sent again in full.
            if reached.enqueued > 0 {
                refused.message = format!(
                    "{}; the replay stopped after {} events read: the {} deliveries created \
                     before stay pending, and are delivered",
                    refused.message, reached.scanned, reached.enqueued
                );
            }
            Err(refused)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 2] = ["since", "until"];

    #[test]
    fn a_replay_range_takes_the_read_apis_time_forms() {
        assert_eq!(replay_range(None, None, NAMES), Ok((None, None)));
        let (since, until) =
            replay_range(Some("2026-11-01"), Some("2026-11-01T10:00:00Z"), NAMES).unwrap();
        assert_eq!(since, Some(1_793_491_200_000));
        assert_eq!(until, Some(1_793_491_200_000 + 10 * 3_600_000));
        let (since, until) = replay_range(Some("24h"), Some("1h"), NAMES).unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        assert!((now - since.unwrap() - 86_400_000).abs() < 5_000);
        assert!(until.unwrap() > since.unwrap());
    }

    #[test]
    fn a_replay_range_refuses_empty_ranges_and_says_what_is_wrong_with_a_bound() {
        for (since, until) in [("2027-01-01", "2026-01-01"), ("2026-01-01", "2026-01-01")] {
            let err = replay_range(Some(since), Some(until), ["--since", "--until"]).unwrap_err();
            assert!(matches!(err, ReplayRangeError::Reversed { .. }), "{err:?}");
            let message = err.to_string();
            assert!(
                message.contains(&format!("--since {since}"))
                    && message.contains(&format!("--until {until}")),
                "{message}"
            );
            assert_eq!(err.bound(), "--until");
        }

        let err = replay_range(Some("2026-13-45"), None, NAMES).unwrap_err();
        assert_eq!(err.bound(), "since");
        assert!(err.to_string().contains("is not a valid date"), "{err}");
        let err = replay_range(None, Some("2026-11-01T25:00:00Z"), NAMES).unwrap_err();
        assert_eq!(err.bound(), "until");
        assert!(err.to_string().contains("is not a valid time"), "{err}");
        for bad in ["yesterday", "", "h"] {
            let err = replay_range(Some(bad), None, NAMES).unwrap_err();
            assert!(
                matches!(err, ReplayRangeError::NotATime { .. }),
                "{bad:?}: {err:?}"
            );
            assert!(err.to_string().contains("RFC 3339"), "{err}");
        }
    }
}
