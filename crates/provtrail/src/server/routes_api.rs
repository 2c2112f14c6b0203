//! The routes' JSON API, for the web UI and scripts.
//!
//! | method and path | what | who |
//! |---|---|---|
//! | `GET /api/v1/routes` | every route: settings (no secrets) and counts | read token |
//! | `GET /api/v1/routes/{name}` | one route | read token |
//! | `GET /api/v1/routes/{name}/test?event_id=N` | does stored event N match, what would be sent | read token |
//! | `GET /api/v1/route-deliveries?route=&state=&event_id=&before_id=&limit=` | deliveries, newest first | read token |
//! | `GET /api/v1/route-deliveries/{id}` | one delivery with every attempt | read token |
//! | `GET /api/v1/deadletters?route=&before_id=&limit=` | the dead letters | read token |
//! | `POST /api/v1/deadletters/retry` `{"route"?, "ids"?}` | dead letters back to pending | admin token |
//! | `POST /api/v1/routes/{name}/replay` `{"since"?, "until"?, "filter"?}` | re-deliver stored events | admin token |
//!
//! Why a separate admin token for the two POSTs: read tokens are handed to everyone who looks at
//! the trail, and a retry or a replay sends traffic to third-party systems (tickets reopened,
//! people notified again). Without `[admin] tokens` in the configuration the POSTs answer 403;
//! the same operations stay available on the command line, to whoever can open the database.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::api::routes::{
    self, ReplayRequestBody, ReplayResult, RetryRequest, RetryResult, RouteTestResult,
};
use super::{AppState, error_response};
use crate::routes::replay::{ReplayError, ReplayRequest, replay};
use crate::store::{DeliveryState, RouteDeliveryQuery, StoreError};

/// The routes' endpoints.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/routes", get(list_routes))
        .route("/api/v1/routes/{name}", get(get_route))
        .route("/api/v1/routes/{name}/test", get(test_route))
        .route("/api/v1/routes/{name}/replay", post(replay_route))
        .route("/api/v1/route-deliveries", get(list_deliveries))
        .route("/api/v1/route-deliveries/{id}", get(get_delivery))
        .route("/api/v1/deadletters", get(list_dead))
        .route("/api/v1/deadletters/retry", post(retry_dead))
}

fn authorization(headers: &HeaderMap) -> Option<&[u8]> {
    headers
        .get(header::AUTHORIZATION)
        .map(|value| value.as_bytes())
}

/// Reads need a read token (an admin token also reads); the refusal when not.
fn deny_read(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let presented = authorization(headers);
    if state.read_credentials.check(presented).is_ok()
        || (!state.admin_credentials.is_empty() && state.admin_credentials.check(presented).is_ok())
    {
        return None;
    }
    let mut response = error_response(StatusCode::UNAUTHORIZED, "a read token is required");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    Some(response)
}

/// Changes need an admin token; the refusal when not.
fn deny_change(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    if state.admin_credentials.is_empty() {
        return Some(error_response(
            StatusCode::FORBIDDEN,
            "retries and replays through the API need an admin token: set [admin] tokens in the \
             configuration (or use provtrail deadletter retry / provtrail replay)",
        ));
    }
    state
        .admin_credentials
        .check(authorization(headers))
        .err()
        .map(|_| error_response(StatusCode::FORBIDDEN, "an admin token is required"))
}

/// A JSON body, or the default for an empty one; the error says what is wrong.
fn json_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|err| format!("the body is not valid: {err}"))
}

fn store_error(err: &StoreError) -> Response {
    let status = match err {
        StoreError::Unavailable(_) | StoreError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
        StoreError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_response(status, &err.to_string())
}

async fn list_routes(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(response) = deny_read(&state, &headers) {
        return response;
    }
    match routes::list(state.store.as_ref(), &state.routes).await {
        Ok(list) => Json(list).into_response(),
        Err(err) => store_error(&err),
    }
}

async fn get_route(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(response) = deny_read(&state, &headers) {
        return response;
    }
    match routes::route(state.store.as_ref(), &state.routes, &name).await {
        Ok(Some(route)) => Json(route).into_response(),
        Ok(None) => error_response(StatusCode::NOT_FOUND, "no such route"),
        Err(err) => store_error(&err),
    }
}

#[derive(Debug, Deserialize)]
struct TestParams {
    event_id: i64,
}

async fn test_route(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(params): Query<TestParams>,
) -> Response {
    if let Some(response) = deny_read(&state, &headers) {
        return response;
    }
    let Some(route) = state.routes.get(&name).cloned() else {
        return error_response(StatusCode::NOT_FOUND, "no such route");
    };
    match state.store.get_event(params.event_id).await {
        Ok(Some(event)) => {
            let outcome = route.test(&event.raw, event.summary.id, event.summary.received_at);
            Json(RouteTestResult::from(outcome)).into_response()
        }
        Ok(None) => error_response(StatusCode::NOT_FOUND, "no such event"),
        Err(err) => store_error(&err),
    }
}

#[derive(Debug, Default, Deserialize)]
struct DeliveryParams {
    route: Option<String>,
    state: Option<String>,
    event_id: Option<i64>,
    before_id: Option<i64>,
    limit: Option<usize>,
}

async fn deliveries_page(state: &AppState, query: RouteDeliveryQuery) -> Response {
    match routes::deliveries(state.store.as_ref(), &state.routes, &query).await {
        Ok(page) => Json(page).into_response(),
        Err(err) => store_error(&err),
    }
}

async fn list_deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<DeliveryParams>,
) -> Response {
    if let Some(response) = deny_read(&state, &headers) {
        return response;
    }
    let delivery_state = match params.state.as_deref() {
        None | Some("") => None,
        Some(name) => match DeliveryState::parse(name) {
            Some(state) => Some(state),
            None => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "state is pending, delivered or dead",
                );
            }
        },
    };
    let query = RouteDeliveryQuery {
        route: params.route,
        state: delivery_state,
        event_id: params.event_id,
        before_id: params.before_id,
        limit: params.limit.unwrap_or(50),
    };
    deliveries_page(&state, query).await
}

async fn list_dead(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<DeliveryParams>,
) -> Response {
    if let Some(response) = deny_read(&state, &headers) {
        return response;
    }
    let query = RouteDeliveryQuery {
        route: params.route,
        state: Some(DeliveryState::Dead),
        event_id: params.event_id,
        before_id: params.before_id,
        limit: params.limit.unwrap_or(50),
    };
    deliveries_page(&state, query).await
}

async fn get_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    if let Some(response) = deny_read(&state, &headers) {
        return response;
    }
    match routes::delivery(state.store.as_ref(), &state.routes, id).await {
        Ok(Some(delivery)) => Json(delivery).into_response(),
        Ok(None) => error_response(StatusCode::NOT_FOUND, "no such delivery"),
        Err(err) => store_error(&err),
    }
}

async fn retry_dead(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(response) = deny_change(&state, &headers) {
        return response;
    }
    let body: RetryRequest = match json_body(&body) {
        Ok(body) => body,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    let write = crate::store::OutboxWrite::RetryDead {
        route: body.route,
        ids: body.ids,
        at: chrono::Utc::now().timestamp_millis(),
    };
    match state.store.outbox_write(write).await {
        Ok(retried) => Json(RetryResult { retried }).into_response(),
        Err(err) => store_error(&err),
    }
}

fn parse_time(text: Option<&str>, name: &str) -> Result<Option<i64>, String> {
    text.map(|text| {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|time| time.timestamp_millis())
            .map_err(|_| format!("{name} is an RFC 3339 time like 2026-11-01T10:00:00Z"))
    })
    .transpose()
}

async fn replay_route(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(response) = deny_change(&state, &headers) {
        return response;
    }
    let Some(route) = state.routes.get(&name).cloned() else {
        return error_response(StatusCode::NOT_FOUND, "no such route");
    };
    let body: ReplayRequestBody = match json_body(&body) {
        Ok(body) => body,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    let request = match (
        parse_time(body.since.as_deref(), "since"),
        parse_time(body.until.as_deref(), "until"),
    ) {
        (Ok(since), Ok(until)) => ReplayRequest {
            since,
            until,
            filter: body.filter,
            ignore_route_filter: body.ignore_route_filter,
        },
        (Err(message), _) | (_, Err(message)) => {
            return error_response(StatusCode::BAD_REQUEST, &message);
        }
    };
    match replay(&state.store, &route, &request, |_| {}).await {
        Ok(progress) => Json(ReplayResult::from(progress)).into_response(),
        Err(ReplayError::Filter(err)) => error_response(
            StatusCode::BAD_REQUEST,
            &format!("the filter does not compile: {err}"),
        ),
        Err(ReplayError::Store(err)) => store_error(&err),
    }
}
