//! Operational endpoints: `/healthz` (the process answers), `/readyz` (the store can commit) and
//! `/metrics` (Prometheus).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;

/// The last readiness probe, so that a load balancer polling `/readyz` often does not turn every
/// poll into a commit.
#[derive(Debug, Default)]
pub(super) struct Readiness {
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

const PROBE_CACHE: Duration = Duration::from_secs(1);

pub(super) async fn healthz() -> Response {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})).into_response()
}

pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let cached = state
        .readiness
        .last
        .lock()
        .ok()
        .and_then(|last| last.clone())
        .filter(|(at, _)| at.elapsed() < PROBE_CACHE)
        .map(|(_, result)| result);
    let result = match cached {
        Some(result) => result,
        None => {
            let result = state
                .store
                .check_writable()
                .await
                .map_err(|err| err.to_string());
            if let Ok(mut last) = state.readiness.last.lock() {
                *last = Some((Instant::now(), result.clone()));
            }
            result
        }
    };
    match result {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(error) => {
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "error": error})),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
    }
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok(size) = state.store.size_bytes().await {
        state
            .metrics
            .store_size_bytes
            .set(i64::try_from(size).unwrap_or(i64::MAX));
    }
    let kib = |n: usize| i64::try_from(n.saturating_mul(1024)).unwrap_or(i64::MAX);
    let total = state.body_memory_kib;
    let free = state.body_memory.available_permits().min(total);
    state.metrics.body_memory_bytes.set(kib(total - free));
    state.metrics.body_memory_limit_bytes.set(kib(total));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
