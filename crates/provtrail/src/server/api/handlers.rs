//! The read API's handlers: each reads the request, calls [`super::service`], and answers JSON.
//! The `#[utoipa::path]` attributes on them are the OpenAPI document's paths.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};

use super::error::ApiError;
use super::model::{
    DeliveryList, ErrorBody, EventDetail, EventList, FilterTestRequest, FilterTestResult,
    QuarantineDetail, QuarantineList, Stats,
};
use super::params::{DeliveriesParams, EventsParams, QuarantineParams, StatsParams};
use super::{ReadAccess, service};
use crate::server::AppState;

/// A query string as decoded pairs, or why it could not be decoded.
pub(crate) type Pairs = Result<QueryPairs, ApiError>;

/// The decoded query pairs, or a 400 in the API's shape.
pub(crate) fn pairs(query: Pairs) -> Result<Vec<(String, String)>, ApiError> {
    query.map(|QueryPairs(pairs)| pairs)
}

/// The pairs of a query string (`+` a space, percent-escapes decoded), read strictly: escapes
/// that do not decode to UTF-8 are refused, naming their parameter, rather than replaced with
/// U+FFFD as the form decoding does (`identity=%FF` would search for that character and say,
/// wrongly, that nothing matches).
#[derive(Debug)]
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(&text.replace('+', " "))
                .decode_utf8()
                .map(std::borrow::Cow::into_owned)
                .ok()
        };
        let mut pairs = Vec::new();
        for piece in parts.uri.query().unwrap_or_default().split('&') {
            if piece.is_empty() {
                continue;
            }
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            let name = decode(name).ok_or_else(|| {
                let shown = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
                ApiError::invalid(
                    &shown,
                    format!("the parameter name `{shown}` is not UTF-8 once its percent-escapes are decoded"),
                )
            })?;
            let value = decode(value).ok_or_else(|| {
                ApiError::invalid(
                    &name,
                    format!("`{name}` is not UTF-8 once its percent-escapes are decoded"),
                )
            })?;
            pairs.push((name, value));
        }
        Ok(QueryPairs(pairs))
    }
}

/// For an endpoint without query parameters: a 400 for any, as an endpoint with parameters
/// refuses one it does not have (a misspelt parameter silently ignored looks like success).
pub(crate) fn no_parameters(query: Pairs) -> Result<(), ApiError> {
    match pairs(query)?.into_iter().next() {
        Some((name, _)) => Err(ApiError::unknown(&name, &[])),
        None => Ok(()),
    }
}

/// An id from the path, or a 400 in the API's shape.
pub(crate) fn path_id(id: Result<Path<String>, PathRejection>) -> Result<i64, ApiError> {
    match id {
        Ok(Path(text)) => service::parse_id(&text),
        Err(err) => Err(ApiError::invalid(
            "id",
            format!("`id` cannot be read: {err}"),
        )),
    }
}

/// Search events.
///
/// Every filter given must hold; newest first. Index filters (tracking number, identity,
/// source, …) narrow the candidates; `filter` is then evaluated on each candidate's body.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    operation_id = "searchEvents",
    params(EventsParams),
    security(("read_token" = [])),
    responses(
        (status = 200, description = "A page of events, newest first", body = EventList),
        (status = 400, description = "A parameter is not acceptable (named in `error.parameter`)", body = ErrorBody),
        (status = 401, description = "No read token, or not a valid one", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"provtrail\"`"))),
        (status = 429, description = "Ten wrong tokens from this address within a minute: no token from it is checked until the minute ends", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before sending a token again"))),
        (status = 414, description = "The request line is longer than the HTTP server accepts (no body)"),
        (status = 503, description = "The store is unavailable; try again", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn search_events(
    _: ReadAccess,
    State(state): State<AppState>,
    query: Pairs,
) -> Result<Json<EventList>, ApiError> {
    Ok(Json(
        service::search_events(state.store.as_ref(), pairs(query)?).await?,
    ))
}

/// One event.
///
/// The list fields, the parsed event, its body exactly as received, its receipt, its warnings
/// and errors, validation warnings, and every delivery of it.
#[utoipa::path(
    get,
    path = "/api/v1/events/{id}",
    tag = "events",
    operation_id = "getEvent",
    params(("id" = i64, Path, description = "The event's id", minimum = 1)),
    security(("read_token" = [])),
    responses(
        (status = 200, description = "The event", body = EventDetail),
        (status = 400, description = "The id is not a positive integer, or a query parameter was given (this endpoint takes none)", body = ErrorBody),
        (status = 401, description = "No read token, or not a valid one", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"provtrail\"`"))),
        (status = 429, description = "Ten wrong tokens from this address within a minute: no token from it is checked until the minute ends", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before sending a token again"))),
        (status = 414, description = "The request line is longer than the HTTP server accepts (no body)"),
        (status = 404, description = "No event has this id", body = ErrorBody),
        (status = 503, description = "The store is unavailable; try again", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn get_event(
    _: ReadAccess,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    query: Pairs,
) -> Result<Json<EventDetail>, ApiError> {
    no_parameters(query)?;
    Ok(Json(
        service::event(state.store.as_ref(), path_id(id)?).await?,
    ))
}

/// Statistics.
///
/// Account requests by result, per source and per time bucket, events by outcome, and the most
/// frequent error messages, over a range (default: the last 30 days).
#[utoipa::path(
    get,
    path = "/api/v1/stats",
    tag = "stats",
    operation_id = "getStats",
    params(StatsParams),
    security(("read_token" = [])),
    responses(
        (status = 200, description = "Statistics over the range", body = Stats),
        (status = 400, description = "A parameter is not acceptable (named in `error.parameter`)", body = ErrorBody),
        (status = 401, description = "No read token, or not a valid one", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"provtrail\"`"))),
        (status = 429, description = "Ten wrong tokens from this address within a minute: no token from it is checked until the minute ends", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before sending a token again"))),
        (status = 414, description = "The request line is longer than the HTTP server accepts (no body)"),
        (status = 503, description = "The store is unavailable; try again", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn stats(
    _: ReadAccess,
    State(state): State<AppState>,
    query: Pairs,
) -> Result<Json<Stats>, ApiError> {
    Ok(Json(
        service::stats(state.store.as_ref(), pairs(query)?).await?,
    ))
}

/// The delivery log.
///
/// Every request to the ingest endpoint, newest first, refused ones included.
#[utoipa::path(
    get,
    path = "/api/v1/deliveries",
    tag = "deliveries",
    operation_id = "listDeliveries",
    params(DeliveriesParams),
    security(("read_token" = [])),
    responses(
        (status = 200, description = "A page of the delivery log, newest first", body = DeliveryList),
        (status = 400, description = "A parameter is not acceptable (named in `error.parameter`)", body = ErrorBody),
        (status = 401, description = "No read token, or not a valid one", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"provtrail\"`"))),
        (status = 429, description = "Ten wrong tokens from this address within a minute: no token from it is checked until the minute ends", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before sending a token again"))),
        (status = 414, description = "The request line is longer than the HTTP server accepts (no body)"),
        (status = 503, description = "The store is unavailable; try again", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn deliveries(
    _: ReadAccess,
    State(state): State<AppState>,
    query: Pairs,
) -> Result<Json<DeliveryList>, ApiError> {
    Ok(Json(
        service::deliveries(state.store.as_ref(), pairs(query)?).await?,
    ))
}

/// The quarantine.
///
/// Documents that were kept but are not valid events, newest first (bodies not included).
#[utoipa::path(
    get,
    path = "/api/v1/quarantine",
    tag = "quarantine",
    operation_id = "listQuarantine",
    params(QuarantineParams),
    security(("read_token" = [])),
    responses(
        (status = 200, description = "A page of the quarantine, newest first", body = QuarantineList),
        (status = 400, description = "A parameter is not acceptable (named in `error.parameter`)", body = ErrorBody),
        (status = 401, description = "No read token, or not a valid one", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"provtrail\"`"))),
        (status = 429, description = "Ten wrong tokens from this address within a minute: no token from it is checked until the minute ends", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before sending a token again"))),
        (status = 414, description = "The request line is longer than the HTTP server accepts (no body)"),
        (status = 503, description = "The store is unavailable; try again", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn quarantine(
    _: ReadAccess,
    State(state): State<AppState>,
    query: Pairs,
) -> Result<Json<QuarantineList>, ApiError> {
    Ok(Json(
        service::quarantine(state.store.as_ref(), pairs(query)?).await?,
    ))
}

/// One quarantine entry, with its body.
#[utoipa::path(
    get,
    path = "/api/v1/quarantine/{id}",
    tag = "quarantine",
    operation_id = "getQuarantineEntry",
    params(("id" = i64, Path, description = "The entry's id", minimum = 1)),
    security(("read_token" = [])),
    responses(
        (status = 200, description = "The entry and its body", body = QuarantineDetail),
        (status = 400, description = "The id is not a positive integer, or a query parameter was given (this endpoint takes none)", body = ErrorBody),
        (status = 401, description = "No read token, or not a valid one", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"provtrail\"`"))),
        (status = 429, description = "Ten wrong tokens from this address within a minute: no token from it is checked until the minute ends", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before sending a token again"))),
        (status = 414, description = "The request line is longer than the HTTP server accepts (no body)"),
        (status = 404, description = "No entry has this id", body = ErrorBody),
        (status = 503, description = "The store is unavailable; try again", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn quarantine_entry(
    _: ReadAccess,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    query: Pairs,
) -> Result<Json<QuarantineDetail>, ApiError> {
    no_parameters(query)?;
    Ok(Json(
        service::quarantine_entry(state.store.as_ref(), path_id(id)?).await?,
    ))
}

/// Test a filter on stored events.
///
/// Evaluates a Jayway filter on every stored event received since `since`, as ISC would
/// evaluate a subscription filter, and answers how many matched and the newest matches. The scan
/// stops at a budget (`complete: false`).
#[utoipa::path(
    post,
    path = "/api/v1/filter/test",
    tag = "filters",
    operation_id = "testFilter",
    request_body(content = FilterTestRequest, content_type = "application/json"),
    security(("read_token" = [])),
    responses(
        (status = 200, description = "What the filter matched", body = FilterTestResult),
        (status = 400, description = "A query parameter was given (this endpoint takes none), the body is not acceptable, or the filter does not compile (with the position)", body = ErrorBody),
        (status = 401, description = "No read token, or not a valid one", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"provtrail\"`"))),
        (status = 429, description = "Ten wrong tokens from this address within a minute: no token from it is checked until the minute ends", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before sending a token again"))),
        (status = 414, description = "The request line is longer than the HTTP server accepts (no body)"),
        (status = 408, description = "The body did not arrive within the request timeout", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not sent as JSON", body = ErrorBody),
        (status = 503, description = "The store is unavailable; try again", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn filter_test(
    _: ReadAccess,
    State(state): State<AppState>,
    query: Pairs,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<FilterTestResult>, ApiError> {
    no_parameters(query)?;
    let body = json_body(&headers, body)?;
    let request = service::parse_filter_test(&body)?;
    Ok(Json(
        service::filter_test(state.store.as_ref(), request).await?,
    ))
}

/// A request body sent as JSON (or without a content type), or a 415, 413 or 400 in the API's
/// shape.
pub(crate) fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let essence = String::from_utf8_lossy(content_type.as_bytes())
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::unsupported_media_type());
        }
    }
    // A compressed body would be read as the JSON it is not (or, labelled so but sent plain,
    // taken for what the label denies): no content coding is taken, as ingest takes none.
    let coded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii)
        .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity"));
    if coded {
        return Err(ApiError::content_coded());
    }
    body.map_err(|err| {
        if err.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!("the body is too large: {err}"))
        } else if crate::server::BodyDeadline::caused(&err) {
            ApiError::request_timeout()
        } else {
            ApiError::invalid_body(format!("the body cannot be read: {err}"))
        }
    })
}
