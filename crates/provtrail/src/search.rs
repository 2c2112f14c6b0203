//! Searching with a Jayway filter on top of the store's indexed filters, and testing a filter on
//! stored events: the one implementation behind the read API, the CLI and the web UI.
//!
//! The store narrows the candidates with its index (tracking number, identity, source, time, …);
//! the filter is then evaluated on each candidate's body, exactly as ISC would evaluate a
//! subscription filter. A scan stops at a budget and says where to continue, so that a filter that
//! matches nothing cannot make one request read the whole store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use provtrail_jsonpath::Path;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::store::{EventQuery, EventSummary, Millis, Store, StoreError};

/// Why a search could not run.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The filter does not compile.
    #[error("the filter does not compile: {0}")]
    InvalidFilter(#[from] provtrail_jsonpath::ParseError),
    /// The filter did not finish on one event within [`FIRST_EVENT_LIMIT`]: no page can be
    /// made of it (every request must evaluate at least one event to move on).
    #[error(
        "the filter did not finish on event {event_id} within {}s; it compares too much (deep \
         scans `..` compared with each other take time quadratic in an event's size): narrow \
         it",
        FIRST_EVENT_LIMIT.as_secs()
    )]
    TooSlow {
        /// The event it was evaluated on.
        event_id: i64,
    },
    /// Every evaluation slot stayed taken by other searches for as long as this one could
    /// wait for its first event (see [`evaluation_slots`]).
    #[error(
        "the server is busy evaluating other filters ({} at a time); try again shortly",
        evaluation_slots().1
    )]
    Busy,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Longest one event's evaluation may take when it is the first of a request (evaluated
/// whatever the budget, so that a search continued from its cursor always moves on).
pub const FIRST_EVENT_LIMIT: Duration = Duration::from_secs(10);

/// How much a filtered search may read before it returns what it has.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Most candidate events to evaluate.
    pub events: u64,
    /// Longest time to spend.
    pub time: Duration,
}

impl Budget {
    /// For interactive searches: a page must come back quickly.
    pub const INTERACTIVE: Budget = Budget {
        events: 20_000,
        time: Duration::from_secs(3),
    };
    /// For an explicit filter test over a time range.
    pub const FILTER_TEST: Budget = Budget {
        events: 200_000,
        time: Duration::from_secs(20),
    };
}

/// A page of a search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchPage {
    /// Matching events, newest first.
    pub items: Vec<EventSummary>,
    /// Pass as `before_id` to continue; `None` when nothing is left.
    pub next_cursor: Option<i64>,
    /// Candidate events the filter was evaluated on (0 without a filter).
    pub scanned: u64,
    /// False when the budget ran out before the page was full: continue from `next_cursor`.
    pub complete: bool,
}

/// Compiles a filter, or none for an empty one, on a blocking thread: an expression at the
/// parser's bounds (32 regular expressions of up to 1 MiB compiled each) takes a good part of a
/// second to compile, and an async worker held that long holds up health probes and ingest with
/// it, as a long evaluation would (see [`evaluate`]).
pub async fn compile_filter(filter: Option<&str>) -> Result<Option<Path>, SearchError> {
    let Some(text) = filter.map(str::trim).filter(|f| !f.is_empty()) else {
        return Ok(None);
    };
    let text = text.to_owned();
    match tokio::task::spawn_blocking(move || provtrail_jsonpath::compile(&text)).await {
        Ok(compiled) => Ok(Some(compiled?)),
        Err(err) => Err(SearchError::Store(StoreError::Internal(format!(
            "compiling the filter failed: {err}"
        )))),
    }
}

/// The filter evaluations that may run at once across the process, and how many that is: half
/// the cores, at least one. An evaluation is work for one core for as long as its budget allows
/// (up to [`FIRST_EVENT_LIMIT`] for a request's first event), and without a bound a few holders
/// of a read token (or one browser tab per playground keystroke) would keep every core busy, with
/// ingest, which ISC does not send twice, waiting behind them. A request holds a slot for a turn
/// of at most [`TURN`] (and the event under way), then waits for its next turn behind those
/// already waiting: searches running together share the slots rather than queue behind each
/// other whole.
fn evaluation_slots() -> &'static (Arc<Semaphore>, usize) {
    static SLOTS: OnceLock<(Arc<Semaphore>, usize)> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let slots = (cores / 2).max(1);
        (Arc::new(Semaphore::new(slots)), slots)
    })
}

/// One of the [`evaluation_slots`], for work that evaluates filters outside a search (a
/// replay), waited for as long as it takes.
pub(crate) async fn evaluation_slot() -> tokio::sync::OwnedSemaphorePermit {
    let slots = evaluation_slots().0.clone();
    loop {
        // Never closed.
        if let Ok(slot) = slots.clone().acquire_owned().await {
            return slot;
        }
    }
}

/// Tells an evaluation on a blocking thread to stop when the work that waits for it is dropped
/// (its client left): the thread would otherwise evaluate on, up to its budget, for nobody.
pub(crate) struct StopOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Longest a request evaluates in one turn on an evaluation slot before it lets the next
/// request waiting for a slot have its turn; an event under way is finished first.
pub(crate) const TURN: Duration = Duration::from_millis(200);

/// Longest a request's first turn may be waited for: longer than one request's first event may
/// hold a slot ([`FIRST_EVENT_LIMIT`]), so that one slow filter alone never makes another
/// request busy.
const FIRST_TURN_WAIT: Duration = Duration::from_secs(15);

/// Why [`evaluate`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// Every event was evaluated, or `wanted` matched.
    Done,
    /// The turn ended: `rest` is to be evaluated in the next.
    TurnOver,
    /// The deadline passed (or no turn came before it), or the request was dropped.
    OutOfTime,
}

/// What [`evaluate`] came to.
struct Evaluated {
    /// The events evaluated, in order, bodies taken out, each with whether it matched.
    events: Vec<(EventSummary, bool)>,
    /// With [`Stopped::TurnOver`], the events not evaluated yet, in order, bodies kept.
    rest: Vec<EventSummary>,
    stopped: Stopped,
    /// The first event of the request did not finish within [`FIRST_EVENT_LIMIT`].
    too_slow: Option<i64>,
    /// The request's first turn did not come within [`FIRST_TURN_WAIT`].
    busy: bool,
}

impl Evaluated {
    fn nothing(stopped: Stopped) -> Self {
        Evaluated {
            events: Vec::new(),
            rest: Vec::new(),
            stopped,
            too_slow: None,
            busy: false,
        }
    }
}

/// Evaluates `filter` on `events` in order, in turns on the [`evaluation_slots`] (see
/// [`evaluate_turn`]), until every event is evaluated, `wanted` have matched, or `deadline` has
/// passed (also during an evaluation, whose event is then left for the next request). With
/// `first_of_all` (the request's first event) the first event is given up to
/// [`FIRST_EVENT_LIMIT`] whatever the deadline, so that a search continued from its cursor
/// always moves on, and its turn is waited for up to [`FIRST_TURN_WAIT`] (`busy` past it).
async fn evaluate(
    filter: &Path,
    events: Vec<EventSummary>,
    wanted: usize,
    deadline: Instant,
    first_of_all: bool,
) -> Evaluated {
    let mut turn = evaluate_turn(filter, events, wanted, deadline, first_of_all).await;
    let mut evaluated = std::mem::take(&mut turn.events);
    while turn.stopped == Stopped::TurnOver {
        let matched = evaluated.iter().filter(|(_, hit)| *hit).count();
        let rest = std::mem::take(&mut turn.rest);
        turn = evaluate_turn(filter, rest, wanted - matched, deadline, false).await;
        evaluated.append(&mut turn.events);
    }
    turn.events = evaluated;
    turn
}

/// One turn of [`evaluate`], on a blocking thread: one evaluation can take long (a deep scan
/// with many patterns over a large event), and an async worker held that long holds up health
/// probes and ingest with it. Waits for one of the [`evaluation_slots`] first: until `deadline`
/// (nothing is evaluated if none comes), or with `first_of_all` for up to [`FIRST_TURN_WAIT`]
/// (`busy`). Gives the slot back once its [`TURN`] is over, returning the events left.
async fn evaluate_turn(
    filter: &Path,
    events: Vec<EventSummary>,
    wanted: usize,
    deadline: Instant,
    first_of_all: bool,
) -> Evaluated {
    let wait = if first_of_all {
        FIRST_TURN_WAIT
    } else {
        deadline.saturating_duration_since(Instant::now())
    };
    let slots = evaluation_slots().0.clone();
    let slot = match tokio::time::timeout(wait, slots.acquire_owned()).await {
        Ok(Ok(slot)) => slot,
        // Never closed; out of time waiting.
        _ => {
            return Evaluated {
                busy: first_of_all,
                ..Evaluated::nothing(Stopped::OutOfTime)
            };
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let filter = filter.clone();
    let work = move || {
        // Held until this turn ends, also when its request was dropped (it then stops within a
        // few hundred steps).
        let _slot = slot;
        let turn_ends = Instant::now() + TURN;
        let mut evaluated = Vec::with_capacity(events.len());
        let mut matched = 0;
        let mut events = events.into_iter();
        while let Some(mut event) = events.next() {
            if stop.load(Ordering::Relaxed) {
                return Evaluated {
                    events: evaluated,
                    ..Evaluated::nothing(Stopped::OutOfTime)
                };
            }
            if !evaluated.is_empty() && Instant::now() >= turn_ends {
                let mut rest = vec![event];
                rest.extend(events);
                return Evaluated {
                    events: evaluated,
                    rest,
                    ..Evaluated::nothing(Stopped::TurnOver)
                };
            }
            let raw = event.raw.take().unwrap_or_default();
            let first = first_of_all && evaluated.is_empty();
            let within = if first {
                Instant::now() + FIRST_EVENT_LIMIT
            } else {
                deadline
            };
            let hit = match matches_within(&filter, &raw, within, &stop) {
                Some(hit) => hit,
                None if first => {
                    return Evaluated {
                        events: evaluated,
                        too_slow: Some(event.id),
                        ..Evaluated::nothing(Stopped::OutOfTime)
                    };
                }
                None => {
                    return Evaluated {
                        events: evaluated,
                        ..Evaluated::nothing(Stopped::OutOfTime)
                    };
                }
            };
            evaluated.push((event, hit));
            if hit {
                matched += 1;
                if matched >= wanted {
                    break;
                }
            }
        }
        Evaluated {
            events: evaluated,
            ..Evaluated::nothing(Stopped::Done)
        }
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(evaluated) => evaluated,
        // A panic in the evaluator goes on as a panic of the request (answered 500).
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Evaluated::nothing(Stopped::OutOfTime),
    }
}

/// [`matches`] that gives up once `deadline` has passed, or once `stop` is set: `None` then.
fn matches_within(
    filter: &Path,
    raw: &[u8],
    deadline: Instant,
    stop: &Arc<AtomicBool>,
) -> Option<bool> {
    if Instant::now() >= deadline || stop.load(Ordering::Relaxed) {
        return None;
    }
    match serde_json::from_slice::<serde_json::Value>(raw) {
        Ok(value) => filter.matches_within_unless(&value, deadline, stop),
        Err(_) => Some(false),
    }
}

/// Does the filter match this stored body, as ISC decides it (a non-empty answer; an error or a
/// body that is not JSON is no match)?
pub fn matches(filter: &Path, raw: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Value>(raw) {
        Ok(value) => filter.matches(&value),
        Err(_) => false,
    }
}

/// Events matching `query` and, when given, `filter`; newest first.
pub async fn search(
    store: &dyn Store,
    query: &EventQuery,
    filter: Option<&Path>,
    budget: Budget,
) -> Result<SearchPage, SearchError> {
    let Some(filter) = filter else {
        let page = store.search_events(query, false).await?;
        return Ok(SearchPage {
            items: page.items,
            next_cursor: page.next_cursor,
            scanned: 0,
            complete: true,
        });
    };
    let started = Instant::now();
    let limit = query.limit.max(1);
    let mut candidates = query.clone();
    candidates.limit = 200;
    // One match past the page is looked for, so that a page whose last match is the last of
    // all has no cursor (it would lead to an empty page) unless the budget ran out first.
    let mut items = Vec::with_capacity(limit + 1);
    let mut scanned = 0u64;
    let deadline = started + budget.time;
    loop {
        let page = store.search_events(&candidates, true).await?;
        let fetched = page.items.len();
        let evaluated = evaluate(
            filter,
            page.items,
            limit + 1 - items.len(),
            deadline,
            scanned == 0,
        )
        .await;
        if let Some(event_id) = evaluated.too_slow {
            return Err(SearchError::TooSlow { event_id });
        }
        if evaluated.busy {
            return Err(SearchError::Busy);
        }
        let out_of_time = evaluated.events.len() < fetched;
        let mut last_seen = None;
        for (event, matched) in evaluated.events {
            last_seen = Some(event.id);
            scanned += 1;
            if matched {
                items.push(event);
                if items.len() > limit {
                    items.truncate(limit);
                    return Ok(SearchPage {
                        next_cursor: items.last().map(|e| e.id),
                        items,
                        scanned,
                        complete: true,
                    });
                }
            }
        }
        // A full page is complete however the search ends; only whether more match is open.
        let full = items.len() == limit;
        if out_of_time {
            // Continue after the last event evaluated, or, when none of this page was, where
            // this page began: its events were not looked at.
            return Ok(SearchPage {
                items,
                next_cursor: last_seen.or(candidates.before_id),
                scanned,
                complete: full,
            });
        }
        match page.next_cursor {
            None => {
                return Ok(SearchPage {
                    items,
                    next_cursor: None,
                    scanned,
                    complete: true,
                });
            }
            Some(cursor) => {
                candidates.before_id = Some(cursor);
                if scanned >= budget.events || started.elapsed() >= budget.time {
                    return Ok(SearchPage {
                        items,
                        next_cursor: last_seen.or(Some(cursor)),
                        scanned,
                        complete: full,
                    });
                }
            }
        }
    }
}

/// What a filter would have matched among stored events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilterTest {
    /// Events the filter matched.
    pub matched: u64,
    /// Events evaluated.
    pub scanned: u64,
    /// The newest matches (at most the requested number).
    pub examples: Vec<EventSummary>,
    /// False when the budget ran out before every event since `since` was evaluated.
    pub complete: bool,
    /// Start of the range tested.
    pub since: Option<Millis>,
}

/// Evaluates `filter` on every stored event received in `(since, until)` (newest first; either
/// bound may be open), counting the matches and keeping the first `examples`.
pub async fn test_filter(
    store: &dyn Store,
    filter: &Path,
    (since, until): (Option<Millis>, Option<Millis>),
    examples: usize,
    budget: Budget,
) -> Result<FilterTest, SearchError> {
    let started = Instant::now();
    let mut query = EventQuery {
        since,
        until,
        limit: 500,
        ..EventQuery::default()
    };
    let mut result = FilterTest {
        matched: 0,
        scanned: 0,
        examples: Vec::new(),
        complete: true,
        since,
    };
    let deadline = started + budget.time;
    loop {
        let page = store.search_events(&query, true).await?;
        let fetched = page.items.len();
        let first = result.scanned == 0;
        let evaluated = evaluate(filter, page.items, usize::MAX, deadline, first).await;
        if let Some(event_id) = evaluated.too_slow {
            return Err(SearchError::TooSlow { event_id });
        }
        if evaluated.busy {
            return Err(SearchError::Busy);
        }
        let out_of_time = evaluated.events.len() < fetched;
        for (event, matched) in evaluated.events {
            result.scanned += 1;
            if matched {
                result.matched += 1;
                if result.examples.len() < examples {
                    result.examples.push(event);
                }
            }
        }
        if out_of_time {
            result.complete = false;
            return Ok(result);
        }
        match page.next_cursor {
            None => return Ok(result),
            Some(cursor) => {
                if result.scanned >= budget.events || started.elapsed() >= budget.time {
                    result.complete = false;
                    return Ok(result);
                }
                query.before_id = Some(cursor);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by each test here for its whole run: they take the process's evaluation slots, and
    /// one that holds them would make another wait (with paused time, wait out its limit).
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn events(count: i64) -> Vec<EventSummary> {
        (1..=count)
            .rev()
            .map(|id| EventSummary {
                id,
                received_at: 0,
                tracking_number: format!("t{id}"),
                invocation_id: None,
                action: Some("Grant".to_owned()),
                recipient_id: String::new(),
                recipient_name: String::new(),
                requester_id: None,
                requester_name: None,
                sources: String::new(),
                outcome: "success".to_owned(),
                account_count: 0,
                failed_count: 0,
                errors: Vec::new(),
                channel: None,
                raw: Some(bytes::Bytes::from_static(br#"{"action":"Grant"}"#)),
            })
            .collect()
    }

    /// Takes every evaluation slot, as that many long evaluations of other requests would.
    async fn take_every_slot() -> tokio::sync::OwnedSemaphorePermit {
        let (slots, count) = evaluation_slots();
        slots
            .clone()
            .acquire_many_owned(u32::try_from(*count).unwrap())
            .await
            .unwrap()
    }

    /// Events whose evaluation by [`QUADRATIC`] takes a while each.
    fn slow_events(count: i64) -> Vec<EventSummary> {
        let extra: Vec<serde_json::Value> = (0..150)
            .map(|n| serde_json::json!({"n": n, "s": format!("v{n}")}))
            .collect();
        let raw =
            bytes::Bytes::from(serde_json::to_vec(&serde_json::json!({"extra": extra})).unwrap());
        let mut slow = events(count);
        for event in &mut slow {
            event.raw = Some(raw.clone());
        }
        slow
    }

    const QUADRATIC: &str = "$[?($..*[?(@ == $..*)])]";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_evaluation_lets_others_take_their_turn() {
        let _alone = ONE_AT_A_TIME.lock().await;
        let slow = provtrail_jsonpath::compile(QUADRATIC).unwrap();
        let started = Instant::now();
        let mut one = evaluate(
            &slow,
            slow_events(1),
            10,
            Instant::now() + Duration::from_secs(60),
            true,
        )
        .await;
        let each = started.elapsed();
        assert_eq!(one.events.pop().map(|(_, hit)| hit), Some(true));
        // Enough events for several turns, with the slots all taken by long evaluations.
        let count = (TURN.as_millis() * 6 / each.as_millis().max(1)).max(4) as i64;
        let (_, slots) = evaluation_slots();
        let long: Vec<_> = (0..*slots)
            .map(|_| {
                let slow = slow.clone();
                tokio::spawn(async move {
                    let deadline = Instant::now() + Duration::from_secs(120);
                    evaluate(&slow, slow_events(count), usize::MAX, deadline, true).await
                })
            })
            .collect();
        tokio::time::sleep(TURN / 2).await;
        // A quick one started meanwhile is evaluated in the next turn, long before they end.
        let quick = provtrail_jsonpath::compile("$[?(@.action == 'Grant')]").unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let evaluated = evaluate(&quick, events(3), 10, deadline, true).await;
        assert_eq!(evaluated.events.len(), 3);
        assert!(
            long.iter().all(|long| !long.is_finished()),
            "the long ones ended first"
        );
        for long in long {
            let long = long.await.unwrap();
            assert_eq!(long.stopped, Stopped::Done);
            assert_eq!(long.events.len(), count as usize);
            assert!(long.events.iter().all(|(_, hit)| *hit));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waits_for_a_slot_no_longer_than_it_may_take() {
        let _alone = ONE_AT_A_TIME.lock().await;
        let filter = provtrail_jsonpath::compile("$[?(@.action == 'Grant')]").unwrap();
        let taken = take_every_slot().await;
        // A later batch waits until its request's deadline, then leaves its events for the
        // next request, evaluated by none.
        let later = evaluate(
            &filter,
            events(3),
            10,
            Instant::now() + Duration::from_millis(200),
            false,
        )
        .await;
        assert!(later.events.is_empty() && !later.busy && later.too_slow.is_none());
        // A request's first batch waits as long as its first event may take, then is busy.
        let first = evaluate(&filter, events(3), 10, Instant::now(), true).await;
        assert!(first.events.is_empty() && first.busy);
        // A slot given back while a request waits is taken at once.
        let waiting = tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            evaluate(&filter, events(3), 10, deadline, true).await
        });
        tokio::task::yield_now().await;
        drop(taken);
        let evaluated = waiting.await.unwrap();
        assert!(!evaluated.busy);
        assert_eq!(evaluated.events.len(), 3);
        assert!(evaluated.events.iter().all(|(_, matched)| *matched));
    }
}
