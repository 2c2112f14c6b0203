//! The routes' outbox: deliveries of events to routes, their attempts and per-route totals.
//!
//! Writes happen on the single writer, inside its group commits: outbox rows of a new event in
//! the event's own transaction ([`enqueue_event`]), and the workers' attempt results batched as
//! [`OutboxWrite`] jobs. Why not a second write connection for the workers: SQLite has one write
//! lock per database; a second writer would wait for it (and make ingest commits wait for it),
//! and each of its transactions would pay its own fsync. Through the writer, attempt results ride
//! along in the group commits ingest makes anyway.
//!
//! Reads (due deliveries, counts, lists) run on the read-only connections.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use std::sync::atomic::Ordering;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{Shared, codec, read_error};
use crate::store::{
    AttemptResult, DeliveryAttempt, DeliveryState, Millis, NextStep, OutboxFeed, OutboxItem,
    OutboxWrite, Page, RouteCounts, RouteDelivery, RouteDeliveryQuery, StoreError,
};

/// Per-route totals counted over one batch and written once per route.
#[derive(Debug, Default)]
pub(super) struct Counters {
    routes: HashMap<String, RouteDelta>,
    /// Deliveries became pending in this batch: workers should look.
    woke: bool,
}

#[derive(Debug, Default)]
struct RouteDelta {
    matched: u64,
    delivered: u64,
    failed: u64,
    dead: u64,
    last_error: Option<(String, Millis)>,
    last_delivered_at: Option<Millis>,
}

impl Counters {
    fn route(&mut self, route: &str) -> &mut RouteDelta {
        self.routes.entry(route.to_owned()).or_default()
    }

    /// Writes the totals of the batch.
    pub(super) fn write(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        if self.routes.is_empty() {
            return Ok(());
        }
        let mut statement = tx.prepare_cached(
            "INSERT INTO route_stats (route, matched, delivered, failed_attempts, dead, last_error,
                last_error_at, last_delivered_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (route) DO UPDATE SET
                matched = matched + excluded.matched,
                delivered = delivered + excluded.delivered,
                failed_attempts = failed_attempts + excluded.failed_attempts,
                dead = dead + excluded.dead,
                last_error = coalesce(excluded.last_error, last_error),
                last_error_at = coalesce(excluded.last_error_at, last_error_at),
                last_delivered_at = coalesce(excluded.last_delivered_at, last_delivered_at)",
        )?;
        for (route, delta) in &self.routes {
            statement.execute(params![
                route,
                delta.matched as i64,
                delta.delivered as i64,
                delta.failed as i64,
                delta.dead as i64,
                delta.last_error.as_ref().map(|(error, _)| error),
                delta.last_error.as_ref().map(|(_, at)| at),
                delta.last_delivered_at,
            ])?;
        }
        Ok(())
    }

    /// After the commit: count matches in the metrics and wake the workers.
    pub(super) fn committed(&self, shared: &Arc<Shared>) {
        for (route, delta) in &self.routes {
            if delta.matched > 0 {
                shared.metrics.count_route_matched(route, delta.matched);
            }
        }
        if self.woke {
            shared
                .outbox_changed
                .send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// Puts the deliveries of a newly stored event in the outbox: called in the event's transaction.
/// Returns their ids, one per route in order; the writer hands them to the routes' workers once
/// they are committed (see [`hand_over`]).
pub(super) fn enqueue_event(
    tx: &Transaction<'_>,
    event_id: i64,
    routes: &[String],
    at: Millis,
    counters: &mut Counters,
) -> rusqlite::Result<Vec<i64>> {
    if routes.is_empty() {
        return Ok(Vec::new());
    }
    let mut statement = tx.prepare_cached(
        "INSERT INTO route_deliveries (event_id, route, origin, created_at, due_since,
            next_attempt_at, updated_at)
         VALUES (?1, ?2, 'ingest', ?3, ?3, ?3, ?3)",
    )?;
    let mut ids = Vec::with_capacity(routes.len());
    for route in routes {
        statement.execute(params![event_id, route, at])?;
        ids.push(tx.last_insert_rowid());
        counters.route(route).matched += 1;
    }
    Ok(ids)
}

/// New deliveries of one commit, on their way to the routes' workers, grouped by route so that
/// the single writer looks up each route's feed and locks its `handed` set once per commit rather
/// than once per delivery. Dropped without [`Handover::hand_over`] (the transaction failed or was
/// abandoned), it takes back its reservations: those deliveries do not exist, and their ids may
/// be given to other rows.
#[derive(Debug, Default)]
pub(super) struct Handover {
    routes: Vec<RouteHandover>,
    /// The deliveries are in their feeds' `handed` sets.
    reserved: bool,
}

#[derive(Debug)]
struct RouteHandover {
    route: String,
    /// None: the route has no worker taking deliveries from the writer; they must be read.
    feed: Option<OutboxFeed>,
    items: Vec<OutboxItem>,
}

impl RouteHandover {
    fn unmark(&self, ids: impl Iterator<Item = i64>) {
        if let Some(feed) = &self.feed {
            if let Ok(mut handed) = feed.handed.lock() {
                for id in ids {
                    handed.remove(&id);
                }
            }
        }
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        if self.reserved {
            for route in &self.routes {
                route.unmark(route.items.iter().map(|item| item.id));
            }
        }
    }
}

impl Handover {
    /// Adds a new delivery of this commit.
    pub(super) fn add(&mut self, shared: &Shared, item: OutboxItem) {
        let index = match self.routes.iter().position(|r| r.route == item.route) {
            Some(index) => index,
            None => {
                let feed = shared
                    .feeds
                    .read()
                    .ok()
                    .and_then(|feeds| feeds.get(&item.route).cloned());
                self.routes.push(RouteHandover {
                    route: item.route.clone(),
                    feed,
                    items: Vec::new(),
                });
                self.routes.len() - 1
            }
        };
        self.routes[index].items.push(item);
    }

    /// Reserves the deliveries for their feeds: called before the commit that makes them
    /// visible (see [`OutboxFeed::handed`]).
    pub(super) fn reserve(&mut self) {
        for route in &self.routes {
            if let Some(feed) = &route.feed {
                if let Ok(mut handed) = feed.handed.lock() {
                    handed.extend(route.items.iter().map(|item| item.id));
                }
            }
        }
        self.reserved = true;
    }

    /// The commit succeeded: hands the deliveries over; those a worker has no room for (and
    /// those of routes without a feed) are left to the workers' next read, which they are woken
    /// for.
    pub(super) fn hand_over(mut self, shared: &Shared) {
        self.reserved = false;
        let mut wake = false;
        for mut route in std::mem::take(&mut self.routes) {
            let Some(feed) = &route.feed else {
                wake |= !route.items.is_empty();
                continue;
            };
            let mut refused = Vec::new();
            for item in route.items.drain(..) {
                let id = item.id;
                let size = item.raw.len();
                let held = feed.held_bytes.fetch_add(size, Ordering::AcqRel);
                let fits = held.saturating_add(size) <= feed.max_bytes;
                if !fits || feed.sender.try_send(item).is_err() {
                    feed.held_bytes.fetch_sub(size, Ordering::AcqRel);
                    refused.push(id);
                }
            }
            if !refused.is_empty() {
                route.unmark(refused.into_iter());
                feed.overflowed.notify_one();
            }
        }
        if wake {
            shared
                .outbox_changed
                .send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// Applies a change from the workers or the operator; returns the deliveries touched.
pub(super) fn apply(
    tx: &Transaction<'_>,
    write: &OutboxWrite,
    counters: &mut Counters,
) -> rusqlite::Result<u64> {
    match write {
        OutboxWrite::Results(results) => {
            let mut touched = 0;
            for result in results {
                touched += record(tx, result, counters)?;
            }
            Ok(touched)
        }
        OutboxWrite::Enqueue {
            route,
            event_ids,
            origin,
            at,
        } => {
            let mut statement = tx.prepare_cached(
                "INSERT INTO route_deliveries (event_id, route, origin, created_at, due_since,
                    next_attempt_at, updated_at)
                 SELECT ?1, ?2, ?3, ?4, ?4, ?4, ?4
                 WHERE EXISTS (SELECT 1 FROM events WHERE id = ?1)
                   AND NOT EXISTS (SELECT 1 FROM route_deliveries
                                   WHERE event_id = ?1 AND route = ?2 AND state = 0)",
            )?;
            let mut inserted = 0u64;
            for event_id in event_ids {
                inserted += statement.execute(params![event_id, route, origin, at])? as u64;
            }
            if inserted > 0 {
                counters.route(route).matched += inserted;
                counters.woke = true;
            }
            Ok(inserted)
        }
        OutboxWrite::RetryDead { route, ids, at } => {
            // One dead letter at a time, so that each sees the ones made pending before it: an
            // event that has a pending delivery to the route (from a replay, or another of its
            // dead letters retried just now) gets no second one, as a replay gives none.
            let candidates: Vec<i64> = if ids.is_empty() {
                tx.prepare_cached(
                    "SELECT id FROM route_deliveries
                     WHERE state = 2 AND (?1 IS NULL OR route = ?1) ORDER BY id",
                )?
                .query_map(params![route], |row| row.get(0))?
                .collect::<Result<_, _>>()?
            } else {
                ids.clone()
            };
            let mut statement = tx.prepare_cached(
                "UPDATE route_deliveries
                 SET state = 0, attempts_base = attempts, backoff_base = attempts, due_since = ?1,
                     next_attempt_at = ?1, updated_at = ?1
                 WHERE id = ?2 AND state = 2 AND (?3 IS NULL OR route = ?3)
                   AND NOT EXISTS (SELECT 1 FROM route_deliveries AS pending
                                   WHERE pending.event_id = route_deliveries.event_id
                                     AND pending.route = route_deliveries.route
                                     AND pending.state = 0)",
            )?;
            let mut retried = 0u64;
            for id in candidates {
                retried += statement.execute(params![at, id, route])? as u64;
            }
            if retried > 0 {
                counters.woke = true;
            }
            Ok(retried)
        }
        OutboxWrite::Expire {
            route,
            due_before,
            exclude,
            reason,
            at,
        } => {
            let expired: Vec<i64> = tx
                .prepare_cached(
                    "SELECT id FROM route_deliveries
                     WHERE state = 0 AND route = ?1 AND due_since < ?2",
                )?
                .query_map(params![route, due_before], |row| row.get(0))?
                .filter(|id| id.as_ref().map_or(true, |id| !exclude.contains(id)))
                .collect::<Result<_, _>>()?;
            let mut statement = tx.prepare_cached(
                "UPDATE route_deliveries
                 SET state = 2, updated_at = ?2,
                     last_error = ?3 || COALESCE('; last error: ' || last_error, '')
                 WHERE id = ?1 AND state = 0",
            )?;
            let mut dead = 0u64;
            for id in expired {
                dead += statement.execute(params![id, at, reason])? as u64;
            }
            if dead > 0 {
                counters.route(route).dead += dead;
            }
            Ok(dead)
        }
    }
}

fn record(
    tx: &Transaction<'_>,
    result: &AttemptResult,
    counters: &mut Counters,
) -> rusqlite::Result<u64> {
    let now = result.started_at + result.latency_us / 1000;
    // Only a pending delivery changes: one retried or replayed meanwhile is left alone.
    let changed = match result.next {
        NextStep::Delivered => tx
            .prepare_cached(
                // `last_error` is the last attempt's, as `last_status` is: none when it worked.
                "UPDATE route_deliveries SET state = 1, attempts = ?2, updated_at = ?3,
                    delivered_at = ?3, last_status = ?4, last_error = NULL
                 WHERE id = ?1 AND state = 0",
            )?
            .execute(params![
                result.delivery_id,
                result.attempt,
                now,
                result.status
            ])?,
        NextStep::RetryAt(at) => tx
            .prepare_cached(
                // `attempts < ?2`: the same result written again (its commit was reported
                // failed although it had happened, and the recorder sent it once more) must not
                // give the delivery a second uncharged attempt.
                "UPDATE route_deliveries SET attempts = ?2, updated_at = ?3, next_attempt_at = ?4,
                    last_status = ?5, last_error = ?6, attempts_base = attempts_base + ?7
                 WHERE id = ?1 AND state = 0 AND attempts < ?2",
            )?
            .execute(params![
                result.delivery_id,
                result.attempt,
                now,
                at,
                result.status,
                result.error,
                i64::from(result.uncharged)
            ])?,
        NextStep::Dead => tx
            .prepare_cached(
                "UPDATE route_deliveries SET state = 2, attempts = ?2, updated_at = ?3,
                    last_status = ?4, last_error = ?5
                 WHERE id = ?1 AND state = 0",
            )?
            .execute(params![
                result.delivery_id,
                result.attempt,
                now,
                result.status,
                result.error
            ])?,
    };
    let outcome = match result.next {
        NextStep::Delivered => "delivered",
        NextStep::RetryAt(_) => "failed",
        NextStep::Dead => "dead",
    };
    // An attempt is counted once: by its row, which a result written again does not add.
    let new_attempt = tx
        .prepare_cached(
            "INSERT INTO route_attempts (delivery_id, attempt, started_at, latency_us, outcome,
                status, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            result.delivery_id,
            result.attempt,
            result.started_at,
            result.latency_us,
            outcome,
            result.status,
            result.error
        ])?;
    let delta = counters.route(&result.route);
    match result.next {
        NextStep::Delivered => {
            if changed > 0 {
                delta.delivered += 1;
            }
            delta.last_delivered_at = Some(now);
        }
        NextStep::RetryAt(_) | NextStep::Dead => {
            if new_attempt > 0 {
                delta.failed += 1;
            }
            if result.next == NextStep::Dead && changed > 0 {
                delta.dead += 1;
            }
            if let Some(error) = &result.error {
                delta.last_error = Some((error.clone(), now));
            }
        }
    }
    Ok(changed as u64)
}

// ---------------------------------------------------------------------------------------------
// Reads.

pub(super) fn due(
    conn: &Connection,
    route: &str,
    now: Millis,
    limit: usize,
    exclude: &HashSet<i64>,
) -> Result<Vec<OutboxItem>, StoreError> {
    // No `LIMIT ?`: SQLite recompiles a statement whenever a parameter of its LIMIT is bound
    // (the value may change the plan), and this read runs often. The index walk is in
    // `next_attempt_at` order, so stopping after enough rows costs the same.
    let mut ids: Vec<i64> = Vec::with_capacity(limit);
    {
        let mut statement = conn
            .prepare_cached(
                "SELECT id FROM route_deliveries
                 WHERE state = 0 AND route = ?1 AND next_attempt_at <= ?2
                 ORDER BY next_attempt_at",
            )
            .map_err(read_error)?;
        let mut rows = statement.query(params![route, now]).map_err(read_error)?;
        while ids.len() < limit {
            let Some(row) = rows.next().map_err(read_error)? else {
                break;
            };
            let id: i64 = row.get(0).map_err(read_error)?;
            if !exclude.contains(&id) {
                ids.push(id);
            }
        }
    }
    let mut statement = conn
        .prepare_cached(
            "SELECT d.id, d.event_id, d.route, d.attempts, d.attempts_base, d.due_since,
                e.received_at, e.invocation_id, e.raw_codec, e.raw_size, e.raw, d.backoff_base
             FROM route_deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.id = ?1 AND d.state = 0",
        )
        .map_err(read_error)?;
    let mut items = Vec::with_capacity(limit);
    for id in ids {
        let row = statement
            .query_row(params![id], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, u32>(3)?,
                    row.get::<_, u32>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, Option<String>>(7)?,
                    row.get::<_, i64>(8)?,
                    row.get::<_, i64>(9)?,
                    row.get::<_, Vec<u8>>(10)?,
                    row.get::<_, u32>(11)?,
                ))
            })
            .optional();
        let row = match row {
            Ok(row) => row,
            // The event's row cannot be read whole (damaged on disk): the delivery is given
            // from its own row, marked unreadable, so that it goes to the dead letters rather
            // than keep the route's other deliveries from being read.
            Err(err) if super::row_damaged(&err) => {
                if let Some(item) = unreadable_delivery(conn, id, &err) {
                    items.push(item);
                }
                continue;
            }
            Err(err) => return Err(read_error(err)),
        };
        let Some((
            id,
            event_id,
            route,
            attempts,
            base,
            due_since,
            received_at,
            invocation,
            c,
            size,
            raw,
            backoff_base,
        )) = row
        else {
            continue;
        };
        let (raw, unreadable) = match codec::decode_event(conn, event_id, c, raw, size) {
            Ok(raw) => (raw, None),
            // Not readable just now (the dictionaries could not be read): tried again later,
            // not failed for good.
            Err(err @ StoreError::Unavailable(_)) => return Err(err),
            Err(err) => (bytes::Bytes::new(), Some(err.to_string())),
        };
        items.push(OutboxItem {
            id,
            event_id,
            route,
            attempts,
            attempts_base: base,
            backoff_base,
            due_since,
            received_at,
            invocation_id: invocation,
            raw,
            unreadable,
        });
    }
    Ok(items)
}

/// Pending delivery `id`, read from its own row, for an event whose row cannot be read (`err`).
/// None when the delivery's row cannot be read either: it is left out of this read.
fn unreadable_delivery(conn: &Connection, id: i64, err: &rusqlite::Error) -> Option<OutboxItem> {
    let read = conn.query_row(
        "SELECT event_id, route, attempts, attempts_base, due_since, backoff_base
         FROM route_deliveries WHERE id = ?1 AND state = 0",
        params![id],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, u32>(2)?,
                row.get::<_, u32>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, u32>(5)?,
            ))
        },
    );
    match read {
        Ok((event_id, route, attempts, attempts_base, due_since, backoff_base)) => {
            Some(OutboxItem {
                id,
                event_id,
                route,
                attempts,
                attempts_base,
                backoff_base,
                due_since,
                received_at: due_since,
                invocation_id: None,
                raw: bytes::Bytes::new(),
                unreadable: Some(format!(
                    "the stored event {event_id} cannot be read back: SQLite cannot read its \
                     row: {err}"
                )),
            })
        }
        Err(again) => {
            tracing::error!(delivery_id = id, error = %again,
                "a pending delivery cannot be read (the database is damaged); left aside");
            None
        }
    }
}

pub(super) fn counts(conn: &Connection) -> Result<Vec<RouteCounts>, StoreError> {
    let mut by_route: HashMap<String, RouteCounts> = HashMap::new();
    {
        let mut statement = conn
            .prepare_cached(
                "SELECT route, matched, delivered, failed_attempts, last_error, last_error_at,
                    last_delivered_at, dead
                 FROM route_stats",
            )
            .map_err(read_error)?;
        let rows = statement
            .query_map([], |row| {
                Ok(RouteCounts {
                    route: row.get(0)?,
                    matched: row.get::<_, i64>(1)? as u64,
                    delivered: row.get::<_, i64>(2)? as u64,
                    failed_attempts: row.get::<_, i64>(3)? as u64,
                    last_error: row.get(4)?,
                    last_error_at: row.get(5)?,
                    last_delivered_at: row.get(6)?,
                    dead_ever: row.get::<_, i64>(7)? as u64,
                    ..RouteCounts::default()
                })
            })
            .map_err(read_error)?;
        for row in rows {
            let counts = row.map_err(read_error)?;
            by_route.insert(counts.route.clone(), counts);
        }
    }
    let mut pending = conn
        .prepare_cached(
            // How long deliveries have waited: since they last became pending (created, or
            // sent back from the dead letters), not since they were first made, so that a
            // retry of old dead letters does not read as a sink that has been behind for days.
            "SELECT route, count(*), min(due_since) FROM route_deliveries WHERE state = 0
             GROUP BY route",
        )
        .map_err(read_error)?;
    let rows = pending
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Option<i64>>(2)?,
            ))
        })
        .map_err(read_error)?;
    for row in rows {
        let (route, n, oldest) = row.map_err(read_error)?;
        let entry = by_route
            .entry(route.clone())
            .or_insert_with(|| RouteCounts {
                route,
                ..RouteCounts::default()
            });
        entry.pending = n as u64;
        entry.oldest_pending_at = oldest;
    }
    let mut dead = conn
        .prepare_cached(
            "SELECT route, count(*) FROM route_deliveries WHERE state = 2 GROUP BY route",
        )
        .map_err(read_error)?;
    let rows = dead
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })
        .map_err(read_error)?;
    for row in rows {
        let (route, n) = row.map_err(read_error)?;
        let entry = by_route
            .entry(route.clone())
            .or_insert_with(|| RouteCounts {
                route,
                ..RouteCounts::default()
            });
        entry.dead = n as u64;
    }
    let mut list: Vec<RouteCounts> = by_route.into_values().collect();
    list.sort_by(|a, b| a.route.cmp(&b.route));
    Ok(list)
}

/// Largest page of deliveries.
const MAX_LIMIT: usize = 1_000;

/// The statement that lists deliveries. The state is written into it so that the partial
/// indexes can serve it, and so are the event and the route: `?3 IS NULL OR d.event_id = ?3`
/// would walk every delivery below the cursor, where `route_deliveries_event` finds an event's
/// few directly, and `route_deliveries_route` a route's, newest first. With an event, the route
/// is only checked (`+`: no index on it), the event's index having found its few deliveries;
/// a route's dead letters are read from their own partial index, which the planner (with no
/// statistics) would pass over for the route's whole list.
fn list_sql(query: &RouteDeliveryQuery) -> String {
    let state = match query.state {
        Some(state) => format!("d.state = {}", state.code()),
        None => "1".to_owned(),
    };
    let route = match (&query.route, query.event_id) {
        (None, _) => "?2 IS NULL",
        (Some(_), Some(_)) => "+d.route = ?2",
        (Some(_), None) => "d.route = ?2",
    };
    let index = match (&query.route, query.event_id, query.state) {
        (Some(_), None, Some(DeliveryState::Dead)) => " INDEXED BY route_deliveries_dead",
        _ => "",
    };
    let event = if query.event_id.is_some() {
        "d.event_id = ?3"
    } else {
        "?3 IS NULL"
    };
    format!(
        "SELECT d.id, d.event_id, e.tracking_number, d.route, d.state, d.attempts, d.origin,
            d.created_at, d.updated_at, d.next_attempt_at, d.delivered_at, d.last_status,
            d.last_error,
            (SELECT a.latency_us FROM route_attempts a WHERE a.delivery_id = d.id
             ORDER BY a.attempt DESC LIMIT 1)
         FROM route_deliveries d{index} LEFT JOIN events e ON e.id = d.event_id
         WHERE {state} AND d.id < ?1
           AND {route}
           AND {event}
         ORDER BY d.id DESC LIMIT ?4"
    )
}

pub(super) fn list(
    conn: &Connection,
    query: &RouteDeliveryQuery,
) -> Result<Page<RouteDelivery>, StoreError> {
    let limit = query.limit.clamp(1, MAX_LIMIT);
    let mut items: Vec<RouteDelivery> = conn
        .prepare_cached(&list_sql(query))
        .map_err(read_error)?
        .query_map(
            params![
                query.before_id.unwrap_or(i64::MAX),
                query.route,
                query.event_id,
                (limit + 1) as i64
            ],
            |row| {
                let state = DeliveryState::from_code(row.get(4)?);
                Ok(RouteDelivery {
                    id: row.get(0)?,
                    event_id: row.get(1)?,
                    tracking_number: row.get(2)?,
                    route: row.get(3)?,
                    state,
                    attempts: row.get(5)?,
                    origin: row.get(6)?,
                    created_at: row.get(7)?,
                    updated_at: row.get(8)?,
                    next_attempt_at: (state == DeliveryState::Pending)
                        .then(|| row.get(9))
                        .transpose()?,
                    delivered_at: row.get(10)?,
                    last_status: row.get(11)?,
                    last_error: row.get(12)?,
                    last_latency_us: row.get(13)?,
                })
            },
        )
        .map_err(read_error)?
        .collect::<Result<_, _>>()
        .map_err(read_error)?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|delivery| delivery.id)
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

pub(super) fn attempts(
    conn: &Connection,
    delivery_id: i64,
) -> Result<Vec<DeliveryAttempt>, StoreError> {
    conn.prepare_cached(
        "SELECT attempt, started_at, latency_us, outcome, status, error FROM route_attempts
         WHERE delivery_id = ?1 ORDER BY attempt",
    )
    .map_err(read_error)?
    .query_map(params![delivery_id], |row| {
        Ok(DeliveryAttempt {
            attempt: row.get(0)?,
            started_at: row.get(1)?,
            latency_ms: row.get::<_, i64>(2)? as f64 / 1000.0,
            outcome: row.get(3)?,
            status: row.get(4)?,
            error: row.get(5)?,
        })
    })
    .map_err(read_error)?
    .collect::<Result<_, _>>()
    .map_err(read_error)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::sqlite::schema;

    fn plan(conn: &Connection, query: &RouteDeliveryQuery) -> String {
        let mut statement = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", list_sql(query)))
            .unwrap();
        let rows = statement
            .query_map(params![i64::MAX, query.route, query.event_id, 51], |row| {
                row.get::<_, String>(3)
            })
            .unwrap();
        rows.collect::<Result<Vec<_>, _>>().unwrap().join("\n")
    }

    /// A result written twice (its commit reported failed although it had happened, and the
    /// recorder sending it again) changes the delivery and the route's totals once.
    #[test]
    fn an_attempt_result_written_twice_counts_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO route_deliveries (id, event_id, route, state, origin, created_at,
                 due_since, next_attempt_at, updated_at)
             VALUES (1, 1, 'hook', 0, 'ingest', 5, 5, 5, 5);",
        )
        .unwrap();
        let write = OutboxWrite::Results(vec![AttemptResult {
            delivery_id: 1,
            route: "hook".into(),
            attempt: 1,
            started_at: 10,
            latency_us: 1_000,
            status: None,
            error: Some("connection refused".into()),
            next: NextStep::RetryAt(100),
            uncharged: true,
        }]);
        let mut counters = Counters::default();
        for _ in 0..2 {
            let tx = conn.transaction().unwrap();
            apply(&tx, &write, &mut counters).unwrap();
            tx.commit().unwrap();
        }
        let (attempts, base): (i64, i64) = conn
            .query_row(
                "SELECT attempts, attempts_base FROM route_deliveries WHERE id = 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((attempts, base), (1, 1));
        assert_eq!(counters.route("hook").failed, 1);
    }

    #[test]
    fn pending_deliveries_have_waited_since_they_last_became_pending() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        // Made a day ago and sent back from the dead letters a minute ago; made an hour ago;
        // on another route, dead.
        conn.execute_batch(
            "INSERT INTO route_deliveries (event_id, route, state, origin, created_at, due_since,
                 next_attempt_at, updated_at)
             VALUES (1, 'hook', 0, 'ingest', 1000, 86340000, 86340000, 86340000),
                    (2, 'hook', 0, 'ingest', 82800000, 82800000, 82800000, 82800000),
                    (3, 'file', 2, 'ingest', 5, 5, 5, 5);",
        )
        .unwrap();
        let counts = counts(&conn).unwrap();
        let hook = counts.iter().find(|c| c.route == "hook").unwrap();
        assert_eq!(
            (hook.pending, hook.oldest_pending_at),
            (2, Some(82_800_000))
        );
        let file = counts.iter().find(|c| c.route == "file").unwrap();
        assert_eq!((file.pending, file.oldest_pending_at), (0, None));
    }

    #[test]
    fn a_dead_letter_whose_event_is_pending_again_is_not_retried_a_second_time() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        // Event 1: dead on `hook`, and pending there again (a replay). Event 2: dead twice on
        // `hook` (replayed, and dead again), and dead on `file`. Event 3: dead on `hook`.
        conn.execute_batch(
            "INSERT INTO route_deliveries (id, event_id, route, state, origin, created_at,
                 due_since, next_attempt_at, updated_at)
             VALUES (1, 1, 'hook', 2, 'ingest', 5, 5, 5, 5),
                    (2, 1, 'hook', 0, 'replay', 6, 6, 6, 6),
                    (3, 2, 'hook', 2, 'ingest', 5, 5, 5, 5),
                    (4, 2, 'hook', 2, 'replay', 6, 6, 6, 6),
                    (5, 2, 'file', 2, 'ingest', 5, 5, 5, 5),
                    (6, 3, 'hook', 2, 'ingest', 5, 5, 5, 5);",
        )
        .unwrap();
        let retry = |conn: &mut Connection, route: Option<&str>, ids: Vec<i64>| {
            let tx = conn.transaction().unwrap();
            let write = OutboxWrite::RetryDead {
                route: route.map(str::to_owned),
                ids,
                at: 10,
            };
            let retried = apply(&tx, &write, &mut Counters::default()).unwrap();
            tx.commit().unwrap();
            retried
        };
        let pending = |conn: &Connection| -> Vec<i64> {
            conn.prepare("SELECT id FROM route_deliveries WHERE state = 0 ORDER BY id")
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        // By id: the dead letter of event 1 is left dead.
        assert_eq!(retry(&mut conn, None, vec![1]), 0);
        assert_eq!(pending(&conn), [2]);
        // The whole route: one delivery per event (the oldest dead letter of event 2).
        assert_eq!(retry(&mut conn, Some("hook"), vec![]), 2);
        assert_eq!(pending(&conn), [2, 3, 6]);
        // Every route: event 2 is pending on `hook`, not on `file`.
        assert_eq!(retry(&mut conn, None, vec![]), 1);
        assert_eq!(pending(&conn), [2, 3, 5, 6]);
    }

    #[test]
    fn an_events_deliveries_are_found_through_its_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        let by_event = RouteDeliveryQuery {
            event_id: Some(7),
            limit: 50,
            ..RouteDeliveryQuery::default()
        };
        let found = plan(&conn, &by_event);
        assert!(
            found.contains("USING INDEX route_deliveries_event"),
            "{found}"
        );
        assert!(!found.contains("TEMP B-TREE"), "no sort: {found}");
        let all = RouteDeliveryQuery {
            limit: 50,
            ..RouteDeliveryQuery::default()
        };
        assert!(!plan(&conn, &all).contains("route_deliveries_event"));
    }

    /// A quiet route's list beside a busy route reads the quiet route's deliveries only.
    #[test]
    fn a_routes_deliveries_are_found_through_its_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        let by_route = RouteDeliveryQuery {
            route: Some("quiet".into()),
            limit: 50,
            ..RouteDeliveryQuery::default()
        };
        let found = plan(&conn, &by_route);
        assert!(
            found.contains("USING INDEX route_deliveries_route")
                || found.contains("USING COVERING INDEX route_deliveries_route"),
            "{found}"
        );
        assert!(!found.contains("TEMP B-TREE"), "no sort: {found}");
        let dead = RouteDeliveryQuery {
            state: Some(DeliveryState::Dead),
            ..by_route.clone()
        };
        let found = plan(&conn, &dead);
        assert!(found.contains("route_deliveries_dead"), "{found}");
        assert!(!found.contains("TEMP B-TREE"), "no sort: {found}");
        // With an event too, its few deliveries, not all of the route's.
        let of_event = RouteDeliveryQuery {
            event_id: Some(7),
            ..by_route.clone()
        };
        let found = plan(&conn, &of_event);
        assert!(found.contains("route_deliveries_event"), "{found}");
    }
}
