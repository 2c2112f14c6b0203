//! Replay: new deliveries of stored events to a route, for a time range and an optional extra
//! filter. Shared by `provtrail replay` and `POST /api/v1/routes/{name}/replay`.
//!
//! Replayed deliveries carry the same `Idempotency-Key` / `Nats-Msg-Id` as the original ones, so
//! a receiver that deduplicates does not act twice; one that does not gets them again, which is
//! what a replay is for.

use provtrail_jsonpath::Path;
use serde::Serialize;
use serde_json::Value;

use super::Route;
use crate::store::{ExportRange, Millis, OutboxWrite, SharedStore, StoreError, read_back_page};

/// Events read from the store at a time.
const PAGE: usize = 500;

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayRequest {
    /// Received at or after.
    pub since: Option<Millis>,
    /// Received before.
    pub until: Option<Millis>,
    /// An extra Jayway filter; both it and the route's must match.
    pub filter: Option<String>,
    /// Ignore the route's own filter (re-deliver every event of the range that matches `filter`).
    pub ignore_route_filter: bool,
}

/// How far a replay got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReplayProgress {
    /// Events read.
    pub scanned: u64,
    /// Events that matched.
    pub matched: u64,
    /// Deliveries created (an event with a delivery to the route still pending gets none).
    pub enqueued: u64,
    /// Events passed over because their stored body cannot be read back (a damaged store).
    pub unreadable: u64,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The extra filter does not compile.
    #[error("the filter does not compile: {0}")]
    Filter(#[from] provtrail_jsonpath::ParseError),
    /// The extra filter calls functions Jayway does not have (named, with their `()`): it
    /// compiles, as in Jayway, but every evaluation that reaches such a call fails, so the
    /// replay would quietly match nothing, or less than meant.
    #[error(
        "the filter calls {}, which Jayway does not have: every evaluation that reaches the call \
         fails, so the replay would match nothing (the functions are {})",
        .0.join(", "),
        Path::FUNCTIONS.join(", ")
    )]
    UnknownFunctions(Vec<String>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates deliveries of the stored events of the range that match to `route`; `progress` is
/// called after every page.
pub async fn replay(
    store: &SharedStore,
    route: &Route,
    request: &ReplayRequest,
    mut progress: impl FnMut(&ReplayProgress),
) -> Result<ReplayProgress, ReplayError> {
    let extra: Option<Path> = match request.filter.as_deref().map(str::trim) {
        Some(text) if !text.is_empty() => Some(provtrail_jsonpath::compile(text)?),
        _ => None,
    };
    if let Some(unknown) = extra.as_ref().map(Path::unknown_functions) {
        if !unknown.is_empty() {
            let called = unknown.iter().map(|name| format!("{name}()")).collect();
            return Err(ReplayError::UnknownFunctions(called));
        }
    }
    let range = ExportRange {
        since: request.since,
        until: request.until,
    };
    let mut done = ReplayProgress::default();
    let mut after = 0;
    loop {
        let fetch = |after, limit| store.export_events(&range, after, limit);
        let page = read_back_page(fetch, after, PAGE).await?;
        let Some(last) = page.last_id else { break };
        after = last;
        done.scanned += page.unreadable.len() as u64;
        done.unreadable += page.unreadable.len() as u64;
        for (id, reason) in &page.unreadable {
            tracing::error!(
                event_id = id,
                reason,
                "replay passes over an event it cannot read back"
            );
        }
        let mut ids = Vec::new();
        for event in &page.events {
            done.scanned += 1;
            let Ok(value) = serde_json::from_slice::<Value>(&event.raw) else {
                continue;
            };
            let route_ok = request.ignore_route_filter || route.matches(&value);
            if route_ok && extra.as_ref().is_none_or(|filter| filter.matches(&value)) {
                ids.push(event.id);
            }
        }
        done.matched += ids.len() as u64;
        if !ids.is_empty() {
            done.enqueued += store
                .outbox_write(OutboxWrite::Enqueue {
                    route: route.name.clone(),
                    event_ids: ids,
                    origin: "replay".to_owned(),
                    at: chrono::Utc::now().timestamp_millis(),
                })
                .await?;
        }
        progress(&done);
    }
    Ok(done)
}
