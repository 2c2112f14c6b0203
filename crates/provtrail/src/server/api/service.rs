//! What each read API endpoint does, apart from HTTP: parameters in, an answer document out. The
//! handlers call these, and so does the CLI on a database file, so that both give the same answer
//! to the same question.

use crate::search::{self, Budget};
use crate::store::{DeliveryQuery, EventQuery, QuarantineQuery, StatsQuery, Store};

use super::error::ApiError;
use super::model::{
    DeliveryList, EventDetail, EventItem, EventList, FilterTestRequest, FilterTestResult,
    QuarantineDetail, QuarantineItem, QuarantineList, Stats, rfc3339,
};
use super::params::{
    CursorKind, MAX_FILTER, Params, deliveries_accepted, encode_cursor, events_accepted,
    parse_time, quarantine_accepted, stats_accepted,
};

/// Default number of examples of a filter test.
pub const DEFAULT_EXAMPLES: i64 = 20;
/// Largest number of examples of a filter test.
pub const MAX_EXAMPLES: i64 = 1_000;
/// Default number of top error messages in statistics.
pub const DEFAULT_TOP: i64 = 10;

/// The query and filter of `GET /events`, read from its parameters.
#[derive(Debug)]
pub struct EventSearch {
    /// The store's index filters, range, cursor and page size.
    pub query: EventQuery,
    /// The Jayway filter as given (compiled by [`search_events_within`], off the async workers).
    pub filter: Option<String>,
}

impl EventSearch {
    /// Reads and checks the parameters of `GET /events`.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<EventSearch, ApiError> {
        let params = Params::parse(pairs, events_accepted())?;
        let (since, until) = params.range()?;
        let q = params.text("q")?;
        if let Some(q) = &q {
            // As the search reads words: a vowel sign alone, or a private-use character, is none.
            if !q.chars().any(crate::store::is_query_word_char) {
                return Err(ApiError::invalid(
                    "q",
                    "`q` has no words to search for: give letters or digits",
                ));
            }
        }
        let filter = params.text_up_to("filter", MAX_FILTER)?;
        let query = EventQuery {
            tracking_number: params.text("tracking_number")?,
            invocation_id: params.text("invocation_id")?,
            identity: params.text("identity")?,
            source: params.text("source")?,
            account_id: params.text("account_id")?,
            ticket_id: params.text("ticket_id")?,
            operation: params.text("operation")?,
            result: params
                .choice("result", &["SUCCESS", "PENDING", "FAILED"])?
                .map(str::to_owned),
            action: params.text("action")?,
            channel: params.text("channel")?,
            q,
            since,
            until,
            before_id: params.cursor(CursorKind::Events)?,
            after_id: None,
            limit: params.limit()?,
        };
        Ok(EventSearch { query, filter })
    }
}

/// `GET /events`: a page of matching events, newest first.
pub async fn search_events(
    store: &dyn Store,
    pairs: Vec<(String, String)>,
) -> Result<EventList, ApiError> {
    search_events_within(store, pairs, Budget::INTERACTIVE).await
}

/// [`search_events`] with the scan budget of a filtered search given (the API uses
/// [`Budget::INTERACTIVE`]).
pub async fn search_events_within(
    store: &dyn Store,
    pairs: Vec<(String, String)>,
    budget: Budget,
) -> Result<EventList, ApiError> {
    let search = EventSearch::from_pairs(pairs)?;
    // Compiled only once every other parameter is known to be good, off the async workers.
    let filter = search::compile_filter(search.filter.as_deref()).await?;
    let page = search::search(store, &search.query, filter.as_ref(), budget).await?;
    Ok(EventList {
        items: page.items.into_iter().map(EventItem::from).collect(),
        next_cursor: page
            .next_cursor
            .map(|id| encode_cursor(CursorKind::Events, id)),
        complete: page.complete,
        scanned: page.scanned,
    })
}

/// Reads an id from a path segment: a positive integer, written as the API writes it (digits,
/// no sign, no leading zero), so that one event has one address, as one cursor names one place.
pub fn parse_id(text: &str) -> Result<i64, ApiError> {
    let canonical = !text.starts_with('0') && text.bytes().all(|byte| byte.is_ascii_digit());
    match text.parse::<i64>() {
        Ok(id) if id > 0 && canonical => Ok(id),
        _ => Err(ApiError::invalid(
            "id",
            format!("`id` must be a positive integer, not {text:?}"),
        )),
    }
}

/// `GET /events/{id}`.
pub async fn event(store: &dyn Store, id: i64) -> Result<EventDetail, ApiError> {
    match store.get_event(id).await? {
        Some(detail) => Ok(crate::server::made_apart(move || detail.into()).await?),
        None => Err(ApiError::not_found(format!("there is no event {id}"))),
    }
}

/// `GET /stats`.
pub async fn stats(store: &dyn Store, pairs: Vec<(String, String)>) -> Result<Stats, ApiError> {
    let params = Params::parse(pairs, stats_accepted())?;
    let (since, until) = params.range()?;
    let bucket = match params.choice("bucket", &["hour", "day"])? {
        Some("hour") => crate::store::Bucket::Hour,
        _ => crate::store::Bucket::Day,
    };
    let query = StatsQuery {
        since,
        // The `now` a relative `since` counted back from: read again later, it could be a
        // millisecond on, and a range shorter than a millisecond empty or not by chance.
        until: until.or(Some(params.now())),
        bucket,
        source: params.text("source")?,
        channel: params.text("channel")?,
        top_errors: params
            .integer("top", 0, 100)?
            .unwrap_or(DEFAULT_TOP)
            .unsigned_abs() as usize,
        per_source_series: params.boolean("by_source")?.unwrap_or(false),
    };
    match store.stats(&query).await {
        Ok(stats) => Ok(stats.into()),
        // The store checks the range against its defaults (an `until` alone can fall before the
        // default `since`) and the number of buckets.
        // A range emptied by the default `since` is the given `until`'s doing, as
        // `GET /events` reports it.
        Err(crate::store::StoreError::Invalid(message)) => Err(ApiError::invalid(
            if message.contains("bucket") {
                "bucket"
            } else if since.is_none() {
                "until"
            } else {
                "since"
            },
            message,
        )),
        Err(err) => Err(err.into()),
    }
}

/// `GET /deliveries`.
pub async fn deliveries(
    store: &dyn Store,
    pairs: Vec<(String, String)>,
) -> Result<DeliveryList, ApiError> {
    let params = Params::parse(pairs, deliveries_accepted())?;
    let (since, until) = params.range()?;
    let query = DeliveryQuery {
        since,
        until,
        outcome: params
            .choice(
                "outcome",
                &["accepted", "duplicate", "quarantined", "rejected"],
            )?
            .map(str::to_owned),
        status: params
            .integer("status", 100, 599)?
            .and_then(|status| u16::try_from(status).ok()),
        channel: params.text("channel")?,
        before_id: params.cursor(CursorKind::Deliveries)?,
        limit: params.limit()?,
    };
    let page = store.deliveries(&query).await?;
    Ok(DeliveryList {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page
            .next_cursor
            .map(|id| encode_cursor(CursorKind::Deliveries, id)),
    })
}

/// `GET /quarantine`.
pub async fn quarantine(
    store: &dyn Store,
    pairs: Vec<(String, String)>,
) -> Result<QuarantineList, ApiError> {
    let params = Params::parse(pairs, quarantine_accepted())?;
    let (since, until) = params.range()?;
    let query = QuarantineQuery {
        since,
        until,
        reason: params
            .choice(
                "reason",
                &[
                    "invalid_event",
                    "not_json",
                    "unsupported_media_type",
                    "bad_channel",
                ],
            )?
            .map(str::to_owned),
        before_id: params.cursor(CursorKind::Quarantine)?,
        limit: params.limit()?,
    };
    let page = store.quarantine(&query).await?;
    Ok(QuarantineList {
        items: page.items.into_iter().map(QuarantineItem::from).collect(),
        next_cursor: page
            .next_cursor
            .map(|id| encode_cursor(CursorKind::Quarantine, id)),
    })
}

/// `GET /quarantine/{id}`.
pub async fn quarantine_entry(store: &dyn Store, id: i64) -> Result<QuarantineDetail, ApiError> {
    match store.get_quarantine(id).await? {
        Some(entry) => Ok(crate::server::made_apart(move || entry.into()).await?),
        None => Err(ApiError::not_found(format!(
            "there is no quarantine entry {id}"
        ))),
    }
}

/// `POST /filter/test`: how many stored events the filter matches, and the newest of them.
pub async fn filter_test(
    store: &dyn Store,
    request: FilterTestRequest,
) -> Result<FilterTestResult, ApiError> {
    if request.filter.chars().count() > MAX_FILTER {
        return Err(ApiError::invalid(
            "filter",
            format!("`filter` is longer than {MAX_FILTER} characters"),
        ));
    }
    if request.filter.trim().is_empty() {
        return Err(ApiError::invalid("filter", "`filter` is empty"));
    }
    // As the `filter` parameter of `GET /events` is.
    if request.filter.contains('\0') {
        return Err(ApiError::invalid(
            "filter",
            "`filter` contains a NUL character",
        ));
    }
    let Some(filter) = search::compile_filter(Some(&request.filter)).await? else {
        return Err(ApiError::invalid("filter", "`filter` is empty"));
    };
    let since = match request.since.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(
            parse_time(text)
                .map_err(|message| ApiError::invalid("since", format!("`since`: {message}")))?,
        ),
    };
    let examples = request.limit.unwrap_or(DEFAULT_EXAMPLES);
    if !(0..=MAX_EXAMPLES).contains(&examples) {
        return Err(ApiError::invalid(
            "limit",
            format!("`limit` must be an integer from 0 to {MAX_EXAMPLES}, not {examples}"),
        ));
    }
    let result = search::test_filter(
        store,
        &filter,
        (since, None),
        examples as usize,
        Budget::FILTER_TEST,
    )
    .await?;
    Ok(FilterTestResult {
        filter: request.filter,
        matched: result.matched,
        scanned: result.scanned,
        complete: result.complete,
        since: result.since.map(rfc3339),
        examples: result.examples.into_iter().map(EventItem::from).collect(),
        unknown_functions: filter.unknown_functions(),
    })
}

/// Reads the body of `POST /filter/test`.
pub fn parse_filter_test(body: &[u8]) -> Result<FilterTestRequest, ApiError> {
    let invalid = |why: &dyn std::fmt::Display| {
        ApiError::invalid_body(format!(
            "the body must be a JSON object {{\"filter\": string, \"since\"?: string, \
             \"limit\"?: integer}}: {why}"
        ))
    };
    // serde reads a struct from an array of its fields too (`["$"]`); the document says object.
    if body.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err(invalid(&"it is not an object"));
    }
    serde_json::from_slice(body).map_err(|err| invalid(&err))
}
