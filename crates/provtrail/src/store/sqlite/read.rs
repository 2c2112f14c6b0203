//! Queries: search, event details, statistics, the delivery log and the quarantine. Each runs on a
//! read-only connection; none blocks the writer (WAL readers see the last commit).
//!
//! Ids grow in commit order, and an event is committed within the request timeout of being
//! received, so a time range maps to an id range give or take [`ORDER_SLACK_MS`]: lists walk ids
//! newest first inside that range and check the exact time on each row. Rows restored from an
//! export keep their first receipt time at a new id; once the store holds such a row out of
//! order (`TIME_ORDER_MIXED`), a range's ids are found through the time index instead.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{codec, keys, parse_issues, read_error};
use crate::store::{
    BucketStats, DeliveryQuery, DeliveryRecord, ErrorCount, EventDetail, EventQuery, EventSummary,
    Millis, ORDER_SLACK_MS, Page, QuarantineEntry, QuarantineQuery, RequestCounts, SourceStats,
    Stats, StatsQuery, StoreError,
};

/// Largest page.
pub const MAX_LIMIT: usize = 1_000;

const SUMMARY_COLUMNS: &str = "id, received_at, tracking_number, invocation_id, action, \
    recipient_id, recipient_name, requester_id, requester_name, sources, outcome, account_count, \
    failed_count, errors, channel, raw_codec, raw_size";

/// `(lowest id, id above the highest)` that events of `[since, until)` in `table` can have.
fn id_bounds(
    conn: &Connection,
    table: &str,
    since: Option<Millis>,
    until: Option<Millis>,
    before: Option<i64>,
) -> Result<(i64, i64), StoreError> {
    if (since.is_some() || until.is_some()) && time_order_mixed(conn)? {
        // Restored rows sit at ids far from their times: the exact bounds, through the time
        // index (a scan of the range's entries rather than two seeks).
        let (low, high): (Option<i64>, Option<i64>) = conn
            .prepare_cached(&format!(
                "SELECT min(id), max(id) FROM {table} WHERE received_at >= ?1 AND received_at < ?2"
            ))
            .map_err(read_error)?
            .query_row(
                params![since.unwrap_or(i64::MIN), until.unwrap_or(i64::MAX)],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(read_error)?;
        return Ok(match (low, high) {
            (Some(low), Some(high)) => {
                (low, before.unwrap_or(i64::MAX).min(high.saturating_add(1)))
            }
            _ => (i64::MAX, i64::MIN),
        });
    }
    // The bounds rest on what the writer keeps true while the store is not marked mixed: a row
    // is never stored after another received more than the slack later than it. So every row
    // below the latest received before `since - slack` was received before `since`, and every
    // row above the earliest received from `until + slack` on was received from `until` on.
    // The id of the row nearest `at` on one side, through the time index.
    let nearest = |condition_and_order: &str, at: Millis| -> Result<Option<i64>, StoreError> {
        conn.prepare_cached(&format!(
            "SELECT id FROM {table} WHERE {condition_and_order} LIMIT 1"
        ))
        .map_err(read_error)?
        .query_row(params![at], |row| row.get(0))
        .optional()
        .map_err(read_error)
    };
    let first_at = |at| nearest("received_at >= ?1 ORDER BY received_at", at);
    let last_before = |at| nearest("received_at < ?1 ORDER BY received_at DESC", at);
    let low = match since {
        Some(since) => {
            if first_at(since)?.is_none() {
                // No row at all late enough: nothing can match.
                return Ok((i64::MAX, i64::MIN));
            }
            last_before(since.saturating_sub(ORDER_SLACK_MS))?
                .map_or(i64::MIN, |id| id.saturating_add(1))
        }
        None => i64::MIN,
    };
    let mut high = before.unwrap_or(i64::MAX);
    if let Some(until) = until {
        if let Some(id) = first_at(until.saturating_add(ORDER_SLACK_MS))? {
            high = high.min(id);
        }
    }
    Ok((low, high))
}

/// Whether the store holds rows whose ids do not follow their receipt times.
fn time_order_mixed(conn: &Connection) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT 1 FROM meta WHERE key = ?1")
        .map_err(read_error)?
        .query_row(params![super::TIME_ORDER_MIXED], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
        .map_err(read_error)
}

/// A page from up to `limit + 1` rows: the extra row only says that there is a next page, which
/// starts below the last row kept.
fn into_page<T>(mut items: Vec<T>, limit: usize, id: impl Fn(&T) -> i64) -> Page<T> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(id)
    } else {
        None
    };
    Page { items, next_cursor }
}

fn in_range(at: Millis, since: Option<Millis>, until: Option<Millis>) -> bool {
    since.is_none_or(|since| at >= since) && until.is_none_or(|until| at < until)
}

fn summary(row: &Row<'_>) -> rusqlite::Result<EventSummary> {
    let errors: Option<String> = row.get(13)?;
    Ok(EventSummary {
        id: row.get(0)?,
        received_at: row.get(1)?,
        tracking_number: row.get(2)?,
        invocation_id: row.get(3)?,
        action: row.get(4)?,
        recipient_id: row.get(5)?,
        recipient_name: row.get(6)?,
        requester_id: row.get(7)?,
        requester_name: row.get(8)?,
        sources: row.get(9)?,
        outcome: row.get(10)?,
        account_count: row.get(11)?,
        failed_count: row.get(12)?,
        errors: errors
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
        channel: row.get(14)?,
        raw: None,
    })
}

fn load_raw(conn: &Connection, id: i64) -> Result<Bytes, StoreError> {
    let (codec, stored, size): (i64, Vec<u8>, i64) = conn
        .prepare_cached("SELECT raw_codec, raw, raw_size FROM events WHERE id = ?1")
        .map_err(read_error)?
        .query_row(params![id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .map_err(read_error)?;
    codec::decode_event(conn, id, codec, stored, size)
}

/// How a search through the full-text index failed: the index file damaged (SQLite's corrupt
/// or not-a-database error), or a query the index refuses.
fn search_index_error(err: rusqlite::Error) -> StoreError {
    if matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    ) {
        StoreError::Damaged(format!("{SEARCH_INDEX_DAMAGED}: {err}"))
    } else if err.to_string().contains("no such table") {
        // The connection found no index file to attach: removed, or being made anew (by the
        // indexer, which follows its file) at this moment.
        StoreError::Unavailable(format!(
            "the search index file is not there ({err}); it is being made anew from the stored \
             events"
        ))
    } else if err.sqlite_error_code() == Some(rusqlite::ErrorCode::Unknown) {
        // SQLITE_ERROR: what the index says of a query it cannot run (a phrase where the index
        // keeps no positions, say).
        StoreError::Invalid(format!("search failed: {err}"))
    } else if matches!(
        err.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::OutOfMemory
                | rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::FileLockingProtocolFailed
                | rusqlite::ErrorCode::SchemaChanged
                | rusqlite::ErrorCode::DiskFull
        )
    ) {
        // The server's trouble, not the query's: the same search may work in a moment.
        StoreError::Unavailable(format!("the search could not be made just now: {err}"))
    } else {
        read_error(err)
    }
}

/// The beginning of the message of a search that found the index file damaged.
pub(super) const SEARCH_INDEX_DAMAGED: &str = "the search index file is damaged";

pub fn search_events(
    conn: &Connection,
    query: &EventQuery,
    with_raw: bool,
) -> Result<Page<EventSummary>, StoreError> {
    if let Some(words) = query.q.as_deref().map(keys::query_word_count) {
        if words > keys::MAX_QUERY_WORDS {
            return Err(StoreError::Invalid(format!(
                "q holds {words} different words; a search takes at most {} (each one is a \
                 pass over the search index)",
                keys::MAX_QUERY_WORDS
            )));
        }
    }
    let limit = query.limit.clamp(1, MAX_LIMIT);
    let (low, high) = id_bounds(conn, "events", query.since, query.until, query.before_id)?;
    let low = match query.after_id {
        Some(after) => low.max(after.saturating_add(1)),
        None => low,
    };
    let mut items: Vec<EventSummary> = Vec::with_capacity(limit + 1);
    if low >= high {
        return Ok(Page {
            items,
            next_cursor: None,
        });
    }
    // One more than asked for tells whether there is a next page.
    let want = limit + 1;
    let chunk = (want * 2).max(64) as i64;
    let mut below = high;
    match keys::match_expression(query) {
        Some(expression) => {
            let mut ids_statement = conn
                .prepare_cached(
                    "SELECT rowid FROM search.events_index WHERE events_index MATCH ?1
                     AND rowid < ?2 AND rowid >= ?3 ORDER BY rowid DESC LIMIT ?4",
                )
                .map_err(search_index_error)?;
            let mut row_statement = conn
                .prepare_cached(&format!(
                    "SELECT {SUMMARY_COLUMNS} FROM events WHERE id = ?1"
                ))
                .map_err(read_error)?;
            while items.len() < want {
                let ids: Vec<i64> = ids_statement
                    .query_map(params![expression, below, low, chunk], |row| row.get(0))
                    .map_err(search_index_error)?
                    .collect::<Result<_, _>>()
                    .map_err(search_index_error)?;
                let Some(&last) = ids.last() else { break };
                for id in &ids {
                    let found = row_statement
                        .query_row(params![id], summary)
                        .optional()
                        .map_err(read_error)?;
                    if let Some(event) = found {
                        if in_range(event.received_at, query.since, query.until) {
                            items.push(event);
                            if items.len() == want {
                                break;
                            }
                        }
                    }
                }
                if (ids.len() as i64) < chunk {
                    break;
                }
                below = last;
            }
        }
        None => {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {SUMMARY_COLUMNS} FROM events WHERE id < ?1 AND id >= ?2
                     ORDER BY id DESC LIMIT ?3"
                ))
                .map_err(read_error)?;
            while items.len() < want {
                let rows: Vec<EventSummary> = statement
                    .query_map(params![below, low, chunk], summary)
                    .map_err(read_error)?
                    .collect::<Result<_, _>>()
                    .map_err(read_error)?;
                let Some(last) = rows.last().map(|event| event.id) else {
                    break;
                };
                let complete = (rows.len() as i64) < chunk;
                for event in rows {
                    if in_range(event.received_at, query.since, query.until) {
                        items.push(event);
                        if items.len() == want {
                            break;
                        }
                    }
                }
                if complete {
                    break;
                }
                below = last;
            }
        }
    }
    let mut page = into_page(items, limit, |event| event.id);
    if with_raw {
        for event in &mut page.items {
            event.raw = Some(load_raw(conn, event.id)?);
        }
    }
    Ok(page)
}

pub fn get_event(conn: &Connection, id: i64) -> Result<Option<EventDetail>, StoreError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS}, warnings, validation_warnings, remote_addr, method, path,
                raw
             FROM events WHERE id = ?1"
        ))
        .map_err(read_error)?
        .query_row(params![id], |row| {
            Ok((
                summary(row)?,
                row.get::<_, i64>(15)?,
                row.get::<_, i64>(16)?,
                row.get::<_, Option<String>>(17)?,
                row.get::<_, Option<String>>(18)?,
                row.get::<_, Option<String>>(19)?,
                row.get::<_, String>(20)?,
                row.get::<_, String>(21)?,
                row.get::<_, Vec<u8>>(22)?,
            ))
        })
        .optional()
        .map_err(read_error)?;
    let Some((summary, codec, size, warnings, validation, remote_addr, method, path, stored)) = row
    else {
        return Ok(None);
    };
    let raw = codec::decode_event(conn, id, codec, stored, size)?;
    let size = u64::try_from(size).unwrap_or(0);
    let deliveries = conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE event_id = ?1 ORDER BY id"
        ))
        .map_err(read_error)?
        .query_map(params![id], delivery)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    Ok(Some(EventDetail {
        summary,
        event_warnings: warnings
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
        validation_warnings: parse_issues(validation.as_deref()),
        remote_addr,
        method,
        path,
        size,
        raw,
        deliveries,
    }))
}

/// The most time buckets a series may have.
const MAX_BUCKETS: i64 = 20_000;

pub fn stats(conn: &Connection, query: &StatsQuery) -> Result<Stats, StoreError> {
    const HOUR: i64 = 3_600_000;
    let until = query
        .until
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    // The default range, 30 days back, stops at the first time that can be written.
    let since = query
        .since
        .unwrap_or(until - 30 * 86_400_000)
        .max(crate::store::EARLIEST_TIME);
    if since >= until {
        // Without a `since`, the range is empty because `until` is at or before the earliest
        // time there is: that is what to say, rather than name a parameter not given.
        return Err(StoreError::Invalid(match query.since {
            Some(_) => "`since` must be before `until`".to_owned(),
            None => format!(
                "`until` must be after {}, the earliest time an event can have",
                chrono::DateTime::from_timestamp_millis(crate::store::EARLIEST_TIME)
                    .map_or_else(String::new, |time| time.to_rfc3339())
            ),
        }));
    }
    let bucket_len = query.bucket.millis();
    // Rollups are hourly: the range is widened to whole hours, and buckets to whole bucket sizes
    // (days start at midnight UTC).
    let first_hour = since.div_euclid(HOUR);
    let end_hour = (until + HOUR - 1).div_euclid(HOUR);
    let buckets_between = |first_hour: i64, end_hour: i64| {
        let first_bucket = (first_hour * HOUR).div_euclid(bucket_len) * bucket_len;
        let count = ((end_hour * HOUR - first_bucket) + bucket_len - 1).div_euclid(bucket_len);
        (first_bucket, count.max(0))
    };
    let (mut first_bucket, mut bucket_count) = buckets_between(first_hour, end_hour);
    if bucket_count > MAX_BUCKETS {
        // A range as wide as "since 1900" asks for every event: the totals are the same over the
        // hours that hold events, and the buckets before and after them would all be empty.
        let held: (Option<i64>, Option<i64>) = conn
            .prepare_cached(
                "SELECT min(hour), max(hour) FROM rollup_events WHERE hour >= ?1 AND hour < ?2",
            )
            .map_err(read_error)?
            .query_row(params![first_hour, end_hour], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(read_error)?;
        (first_bucket, bucket_count) = match held {
            (Some(first), Some(last)) => buckets_between(first, last + 1),
            _ => (first_bucket, 0),
        };
    }
    if bucket_count > MAX_BUCKETS {
        return Err(StoreError::Invalid(
            "the range has more than 20000 buckets; use a larger bucket or a shorter range"
                .to_owned(),
        ));
    }
    let bucket_of = |hour: i64| ((hour * HOUR - first_bucket).div_euclid(bucket_len)) as usize;
    let mut series: Vec<BucketStats> = (0..bucket_count)
        .map(|n| BucketStats {
            start: first_bucket + n * bucket_len,
            requests: RequestCounts::default(),
            events: 0,
            sources: Vec::new(),
        })
        .collect();
    let mut per_bucket_source: Vec<BTreeMap<String, RequestCounts>> = vec![
        BTreeMap::new();
        if query.per_source_series {
            series.len()
        } else {
            0
        }
    ];
    let mut totals = RequestCounts::default();
    let mut per_source: HashMap<String, RequestCounts> = HashMap::new();
    // A source is matched as the search matches it: case, surrounding spaces and the form of
    // accents aside (SQLite's `lower` knows only ASCII letters).
    let wanted = query.source.as_deref().map(keys::value_key);
    // Spaces of every kind trimmed, as the search trims them (SQLite's `trim` knows only ASCII).
    let channel = query.channel.as_deref().map(str::trim);
    {
        let mut statement = conn
            .prepare_cached(
                "SELECT hour, source, result, requests FROM rollup_requests
                 WHERE hour >= ?1 AND hour < ?2
                   AND (?3 IS NULL OR channel = trim(?3) COLLATE NOCASE)",
            )
            .map_err(read_error)?;
        let rows = statement
            .query_map(params![first_hour, end_hour, channel], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })
            .map_err(read_error)?;
        for row in rows {
            let (hour, source, result, n) = row.map_err(read_error)?;
            if wanted
                .as_deref()
                .is_some_and(|wanted| keys::value_key(&source) != wanted)
            {
                continue;
            }
            let n = u64::try_from(n).unwrap_or(0);
            totals.add(&result, n);
            let index = bucket_of(hour);
            if let Some(bucket) = series.get_mut(index) {
                bucket.requests.add(&result, n);
            }
            if let Some(map) = per_bucket_source.get_mut(index) {
                map.entry(source.clone()).or_default().add(&result, n);
            }
            per_source.entry(source).or_default().add(&result, n);
        }
    }
    let mut events = BTreeMap::new();
    {
        let mut statement = conn
            .prepare_cached(
                "SELECT hour, outcome, events FROM rollup_events
                 WHERE hour >= ?1 AND hour < ?2 AND (?3 IS NULL OR channel = trim(?3) COLLATE NOCASE)",
            )
            .map_err(read_error)?;
        let rows = statement
            .query_map(params![first_hour, end_hour, channel], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(read_error)?;
        for row in rows {
            let (hour, outcome, n) = row.map_err(read_error)?;
            let n = u64::try_from(n).unwrap_or(0);
            *events.entry(outcome).or_insert(0) += n;
            if let Some(bucket) = series.get_mut(bucket_of(hour)) {
                bucket.events += n;
            }
        }
    }
    let top_errors = if query.top_errors == 0 {
        Vec::new()
    } else {
        conn.prepare_cached(
            "SELECT message, sum(events) AS n FROM rollup_errors
             WHERE hour >= ?1 AND hour < ?2 AND (?3 IS NULL OR channel = trim(?3) COLLATE NOCASE)
             GROUP BY message ORDER BY n DESC, message LIMIT ?4",
        )
        .map_err(read_error)?
        .query_map(
            params![
                first_hour,
                end_hour,
                channel,
                query.top_errors.min(1000) as i64
            ],
            |row| {
                Ok(ErrorCount {
                    message: row.get(0)?,
                    events: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                })
            },
        )
        .map_err(read_error)?
        .collect::<Result<_, _>>()
        .map_err(read_error)?
    };
    let source_stats = |map: HashMap<String, RequestCounts>| {
        let mut list: Vec<SourceStats> = map
            .into_iter()
            .map(|(source, requests)| SourceStats {
                failure_rate: requests.failure_rate(),
                source,
                requests,
            })
            .collect();
        list.sort_by(|a, b| {
            b.requests
                .failed
                .cmp(&a.requests.failed)
                .then(b.requests.total().cmp(&a.requests.total()))
                .then(a.source.cmp(&b.source))
        });
        list
    };
    for (bucket, map) in series.iter_mut().zip(per_bucket_source) {
        bucket.sources = source_stats(map.into_iter().collect());
    }
    Ok(Stats {
        since: first_hour * HOUR,
        // A range widened past the last writable time ends there.
        until: (end_hour * HOUR).min(crate::store::LATEST_TIME),
        bucket: query.bucket,
        requests: totals,
        events,
        sources: source_stats(per_source),
        series,
        top_errors,
    })
}

const DELIVERY_COLUMNS: &str = "id, received_at, remote_addr, method, path, channel, status, \
    outcome, reason, size, user_agent, invocation_id, event_id, quarantine_id";

fn delivery(row: &Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: row.get(0)?,
        received_at: row.get(1)?,
        remote_addr: row.get(2)?,
        method: row.get(3)?,
        path: row.get(4)?,
        channel: row.get(5)?,
        status: row.get(6)?,
        outcome: row.get(7)?,
        reason: row.get(8)?,
        size: u64::try_from(row.get::<_, i64>(9)?).unwrap_or(0),
        user_agent: row.get(10)?,
        invocation_id: row.get(11)?,
        event_id: row.get(12)?,
        quarantine_id: row.get(13)?,
    })
}

pub fn deliveries(
    conn: &Connection,
    query: &DeliveryQuery,
) -> Result<Page<DeliveryRecord>, StoreError> {
    let limit = query.limit.clamp(1, MAX_LIMIT);
    let (low, high) = id_bounds(
        conn,
        "deliveries",
        query.since,
        query.until,
        query.before_id,
    )?;
    // Any outcome but `accepted` is looked up through the partial index on (outcome, id); the
    // literal condition is what lets SQLite know that index applies.
    let outcome_clause = match query.outcome.as_deref() {
        None => "",
        Some("accepted") => "AND outcome = ?5",
        Some(_) => "AND outcome = ?5 AND outcome <> 'accepted'",
    };
    let items: Vec<DeliveryRecord> = conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries
             WHERE id < ?1 AND id >= ?2
               AND received_at >= ?3 AND received_at < ?4
               {outcome_clause}
               AND (?6 IS NULL OR status = ?6)
               AND (?7 IS NULL OR channel = trim(?7) COLLATE NOCASE)
             ORDER BY id DESC LIMIT ?8"
        ))
        .map_err(read_error)?
        .query_map(
            params![
                high,
                low,
                query.since.unwrap_or(i64::MIN),
                query.until.unwrap_or(i64::MAX),
                query.outcome,
                query.status,
                query.channel.as_deref().map(str::trim),
                (limit + 1) as i64
            ],
            delivery,
        )
        .map_err(read_error)?
        .collect::<Result<_, _>>()
        .map_err(read_error)?;
    Ok(into_page(items, limit, |record| record.id))
}

const QUARANTINE_COLUMNS: &str = "id, received_at, reason, errors, channel, remote_addr, method, path, raw_size, invocation_id, \
     warnings";

fn quarantine_entry(row: &Row<'_>) -> rusqlite::Result<QuarantineEntry> {
    let errors: String = row.get(3)?;
    Ok(QuarantineEntry {
        id: row.get(0)?,
        received_at: row.get(1)?,
        reason: row.get(2)?,
        errors: parse_issues(Some(&errors)),
        channel: row.get(4)?,
        remote_addr: row.get(5)?,
        method: row.get(6)?,
        path: row.get(7)?,
        size: u64::try_from(row.get::<_, i64>(8)?).unwrap_or(0),
        invocation_id: row.get(9)?,
        warnings: parse_issues(row.get::<_, Option<String>>(10)?.as_deref()),
        raw: None,
    })
}

pub fn quarantine(
    conn: &Connection,
    query: &QuarantineQuery,
) -> Result<Page<QuarantineEntry>, StoreError> {
    let limit = query.limit.clamp(1, MAX_LIMIT);
    let (low, high) = id_bounds(
        conn,
        "quarantine",
        query.since,
        query.until,
        query.before_id,
    )?;
    let items: Vec<QuarantineEntry> = conn
        .prepare_cached(&format!(
            "SELECT {QUARANTINE_COLUMNS} FROM quarantine
             WHERE id < ?1 AND id >= ?2
               AND received_at >= ?3 AND received_at < ?4
               AND (?5 IS NULL OR reason = ?5)
             ORDER BY id DESC LIMIT ?6"
        ))
        .map_err(read_error)?
        .query_map(
            params![
                high,
                low,
                query.since.unwrap_or(i64::MIN),
                query.until.unwrap_or(i64::MAX),
                query.reason,
                (limit + 1) as i64
            ],
            quarantine_entry,
        )
        .map_err(read_error)?
        .collect::<Result<_, _>>()
        .map_err(read_error)?;
    Ok(into_page(items, limit, |entry| entry.id))
}

pub fn get_quarantine(conn: &Connection, id: i64) -> Result<Option<QuarantineEntry>, StoreError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {QUARANTINE_COLUMNS}, raw_codec, raw FROM quarantine WHERE id = ?1"
        ))
        .map_err(read_error)?
        .query_row(params![id], |row| {
            Ok((
                quarantine_entry(row)?,
                row.get::<_, i64>(11)?,
                row.get::<_, Vec<u8>>(12)?,
                // The length as recorded: the entry's size reads a damaged one as 0.
                row.get::<_, i64>(8)?,
            ))
        })
        .optional()
        .map_err(read_error)?;
    let Some((mut entry, codec, stored, size)) = row else {
        return Ok(None);
    };
    entry.raw = Some(codec::decode(conn, codec, stored, size)?);
    Ok(Some(entry))
}
