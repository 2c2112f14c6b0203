//! Replay: new deliveries of stored events to a route, for a time range and an optional extra
//! filter. Shared by `provtrail replay` and `POST /api/v1/routes/{name}/replay`.
//!
//! Replayed deliveries carry the same `Idempotency-Key` / `Nats-Msg-Id` as the original ones, so
//! a receiver that deduplicates does not act twice; one that does not gets them again, which is
//! what a replay is for.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

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
    /// A filter (the route's or the extra one) did not finish on one event within
    /// [`EVENT_LIMIT`].
    #[error(
        "{} did not finish on event {event_id} within {}s; it compares too much (deep scans \
         `..` compared with each other take time quadratic in an event's size): narrow it",
        if *route_filter { "the route's filter" } else { "the filter" },
        EVENT_LIMIT.as_secs()
    )]
    TooSlow {
        /// The event it was evaluated on.
        event_id: i64,
        /// Whether it was the route's own filter rather than the replay's.
        route_filter: bool,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Longest the filters may take on one event. A replay evaluates them on a blocking thread, one
/// of the search's evaluation slots (half the cores), so that ingest and health probes go on
/// beside it; a filter slower than this on one event stops the replay rather than hold the slot
/// for as long as the store is large.
pub const EVENT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Which events of a page match, evaluated with the filters on a blocking thread (see
/// [`EVENT_LIMIT`]), in turns on the search's evaluation slots (a turn ends after an event
/// once [`crate::search::TURN`] has passed, and the next waits behind the searches waiting for
/// a slot), so that a long replay shares the slots with searches; stops early when the replay
/// is dropped (its client left).
async fn matching(
    events: Vec<(i64, bytes::Bytes)>,
    route_filter: Option<Path>,
    extra: Option<Path>,
) -> Result<Vec<i64>, ReplayError> {
    use crate::search::StopOnDrop;
    let filters: Arc<Vec<(Path, bool)>> = Arc::new(
        route_filter
            .into_iter()
            .map(|filter| (filter, true))
            .chain(extra.into_iter().map(|filter| (filter, false)))
            .collect(),
    );
    let mut ids = Vec::new();
    let mut rest = events;
    while !rest.is_empty() {
        let slot = crate::search::evaluation_slot().await;
        let stop = Arc::new(AtomicBool::new(false));
        let _stop_on_drop = StopOnDrop(stop.clone());
        let filters = filters.clone();
        let events = std::mem::take(&mut rest);
        let turn = move || {
            let _slot = slot;
            let turn_ends = std::time::Instant::now() + crate::search::TURN;
            let mut ids = Vec::new();
            let mut events = events.into_iter();
            while let Some((id, raw)) = events.next() {
                if std::time::Instant::now() >= turn_ends {
                    let mut left = vec![(id, raw)];
                    left.extend(events);
                    return Ok((ids, left));
                }
                let Ok(value) = serde_json::from_slice::<Value>(&raw) else {
                    continue;
                };
                let deadline = std::time::Instant::now() + EVENT_LIMIT;
                let mut matched = true;
                for (filter, of_route) in filters.iter() {
                    match filter.matches_within_unless(&value, deadline, &stop) {
                        Some(true) => {}
                        Some(false) => {
                            matched = false;
                            break;
                        }
                        None => {
                            return Err(ReplayError::TooSlow {
                                event_id: id,
                                route_filter: *of_route,
                            });
                        }
                    }
                }
                if matched {
                    ids.push(id);
                }
            }
            Ok((ids, Vec::new()))
        };
        let (found, left) = match tokio::task::spawn_blocking(turn).await {
            Ok(turn) => turn?,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => {
                return Err(ReplayError::Store(StoreError::Internal(format!(
                    "evaluating the filters failed: {err}"
                ))));
            }
        };
        ids.extend(found);
        rest = left;
    }
    Ok(ids)
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
    let route_filter = match request.ignore_route_filter {
        true => None,
        false => route.compiled_filter().cloned(),
    };
    let mut done = ReplayProgress::default();
    let mut after = 0;
    loop {
        let fetch = |after, limit| store.export_events(&range, after, limit);
        let page = read_back_page(fetch, after, PAGE).await?;
        let Some(last) = page.last_id else { break };
        let page_events = page.events.len() as u64;
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
        let events: Vec<_> = page
            .events
            .into_iter()
            .map(|event| (event.id, event.raw))
            .collect();
        let ids = matching(events, route_filter.clone(), extra.clone()).await?;
        done.scanned += page_events;
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
