//! The documents the read API answers with. They are the API's contract, separate from the store's
//! types so that the store can change without breaking clients: times are RFC 3339 text (with the
//! Unix milliseconds beside them), cursors are opaque strings, bodies are text or base64. Every
//! field is always present: one that may have no value is `null` (and marked required, nullable).
//!
//! The CLI reads these same types, whether it got them from a server or computed them from a
//! database file, so that its output is the same either way.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::store;

/// RFC 3339 text (UTC, milliseconds) for Unix milliseconds.
pub fn rfc3339(millis: store::Millis) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(millis)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| millis.to_string())
}

/// An event in a list: what people scan for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventItem {
    /// The event's id in this store.
    pub id: i64,
    /// When it was received (RFC 3339, UTC).
    #[schema(example = "2026-11-01T10:00:00.000Z")]
    pub received_at: String,
    /// When it was received, in Unix milliseconds.
    pub received_at_ms: i64,
    /// `trackingNumber`.
    pub tracking_number: String,
    /// `_metadata.invocationId`.
    #[schema(required = true)]
    pub invocation_id: Option<String>,
    /// `action`.
    #[schema(required = true)]
    pub action: Option<String>,
    /// `recipient.id`.
    pub recipient_id: String,
    /// `recipient.name`.
    pub recipient_name: String,
    /// `requester.id`.
    #[schema(required = true)]
    pub requester_id: Option<String>,
    /// `requester.name`.
    #[schema(required = true)]
    pub requester_name: Option<String>,
    /// `sources`, as sent.
    pub sources: String,
    /// Overall outcome: `succeeded` (every account request), `pending` (none failed, one or
    /// more pending), `partially_failed`, `failed` (every one), `unknown` (a result the schema
    /// does not list) or `no_requests`.
    pub outcome: String,
    /// Account requests in the event.
    pub account_count: u32,
    /// Account requests that failed.
    pub failed_count: u32,
    /// The event's `errors`.
    pub errors: Vec<String>,
    /// The channel it was posted to (`POST /events/{channel}`).
    #[schema(required = true)]
    pub channel: Option<String>,
}

impl From<store::EventSummary> for EventItem {
    fn from(event: store::EventSummary) -> Self {
        EventItem {
            id: event.id,
            received_at: rfc3339(event.received_at),
            received_at_ms: event.received_at,
            tracking_number: event.tracking_number,
            invocation_id: event.invocation_id,
            action: event.action,
            recipient_id: event.recipient_id,
            recipient_name: event.recipient_name,
            requester_id: event.requester_id,
            requester_name: event.requester_name,
            sources: event.sources,
            outcome: event.outcome,
            account_count: event.account_count,
            failed_count: event.failed_count,
            errors: event.errors,
            channel: event.channel,
        }
    }
}

/// A page of events, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventList {
    /// The events.
    pub items: Vec<EventItem>,
    /// Pass as `cursor` to get the next page; null when there is none.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    /// False when a `filter` search stopped at its scan budget before the page was full: what
    /// was found is here, and `next_cursor` continues the scan.
    pub complete: bool,
    /// Candidate events the `filter` was evaluated on (0 without a filter).
    pub scanned: u64,
}

/// How a body is given as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum RawEncoding {
    /// The body is valid UTF-8 and is given as it was received.
    #[serde(rename = "utf-8")]
    Utf8,
    /// The body is not valid UTF-8 and is given in standard base64.
    #[serde(rename = "base64")]
    Base64,
}

/// A body as received: the text itself, or base64 when it is not UTF-8.
pub fn raw_text(raw: &[u8]) -> (String, RawEncoding) {
    match std::str::from_utf8(raw) {
        Ok(text) => (text.to_owned(), RawEncoding::Utf8),
        Err(_) => (STANDARD.encode(raw), RawEncoding::Base64),
    }
}

/// The bytes of a body given by [`raw_text`].
pub fn raw_bytes(raw: &str, encoding: RawEncoding) -> Option<Vec<u8>> {
    match encoding {
        RawEncoding::Utf8 => Some(raw.as_bytes().to_vec()),
        RawEncoding::Base64 => STANDARD.decode(raw).ok(),
    }
}

/// A problem noted in a document, with its wire-name path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Issue {
    /// Wire-name path, `$` for the root.
    #[schema(example = "$.accountRequests[0].provisioningResult")]
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl From<store::IssueRecord> for Issue {
    fn from(issue: store::IssueRecord) -> Self {
        Issue {
            path: issue.path,
            message: issue.message,
        }
    }
}

/// Where and how an event arrived (its first delivery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    /// When it was received (RFC 3339, UTC).
    pub received_at: String,
    /// When it was received, in Unix milliseconds.
    pub received_at_ms: i64,
    /// The peer's address (`ip:port`).
    #[schema(required = true)]
    pub remote_addr: Option<String>,
    /// The channel named in the URL.
    #[schema(required = true)]
    pub channel: Option<String>,
    /// HTTP method, or `IMPORT` for `provtrail ingest`.
    pub method: String,
    /// Request path (or the imported file).
    pub path: String,
    /// Body size in bytes.
    pub size: u64,
    /// `_metadata.invocationId`.
    #[schema(required = true)]
    pub invocation_id: Option<String>,
}

/// One event with everything known about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventDetail {
    /// The list fields.
    pub summary: EventItem,
    /// The event as parsed JSON (null only if the stored body no longer parses).
    #[schema(value_type = Option<Object>, required = true)]
    pub event: Option<Value>,
    /// The body exactly as received: text, or base64 when `raw_encoding` says so.
    pub raw: String,
    /// How `raw` is given.
    pub raw_encoding: RawEncoding,
    /// Where and how it arrived.
    pub receipt: Receipt,
    /// The event's `errors`.
    pub errors: Vec<String>,
    /// The event's `warnings`.
    pub warnings: Vec<String>,
    /// What lenient validation noted when it was received.
    pub validation_warnings: Vec<Issue>,
    /// Every delivery of this event: the first, and duplicates.
    pub deliveries: Vec<Delivery>,
}

impl From<store::EventDetail> for EventDetail {
    fn from(detail: store::EventDetail) -> Self {
        let event = serde_json::from_slice(&detail.raw).ok();
        let (raw, raw_encoding) = raw_text(&detail.raw);
        let summary = EventItem::from(detail.summary);
        EventDetail {
            receipt: Receipt {
                received_at: summary.received_at.clone(),
                received_at_ms: summary.received_at_ms,
                remote_addr: detail.remote_addr,
                channel: summary.channel.clone(),
                method: detail.method,
                path: detail.path,
                size: detail.size,
                invocation_id: summary.invocation_id.clone(),
            },
            errors: summary.errors.clone(),
            summary,
            event,
            raw,
            raw_encoding,
            warnings: detail.event_warnings,
            validation_warnings: detail
                .validation_warnings
                .into_iter()
                .map(Issue::from)
                .collect(),
            deliveries: detail.deliveries.into_iter().map(Delivery::from).collect(),
        }
    }
}

/// One request in the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// Record id.
    pub id: i64,
    /// When the request was received (RFC 3339, UTC).
    pub received_at: String,
    /// When the request was received, in Unix milliseconds.
    pub received_at_ms: i64,
    /// Peer address.
    #[schema(required = true)]
    pub remote_addr: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Channel.
    #[schema(required = true)]
    pub channel: Option<String>,
    /// HTTP status answered.
    pub status: u16,
    /// `accepted`, `duplicate`, `quarantined` or `rejected`.
    pub outcome: String,
    /// Why, when not accepted.
    #[schema(required = true)]
    pub reason: Option<String>,
    /// Body size in bytes.
    pub size: u64,
    /// `User-Agent`, shortened.
    #[schema(required = true)]
    pub user_agent: Option<String>,
    /// `_metadata.invocationId`.
    #[schema(required = true)]
    pub invocation_id: Option<String>,
    /// The event it delivered.
    #[schema(required = true)]
    pub event_id: Option<i64>,
    /// The quarantine entry it made.
    #[schema(required = true)]
    pub quarantine_id: Option<i64>,
}

impl From<store::DeliveryRecord> for Delivery {
    fn from(record: store::DeliveryRecord) -> Self {
        Delivery {
            id: record.id,
            received_at: rfc3339(record.received_at),
            received_at_ms: record.received_at,
            remote_addr: record.remote_addr,
            method: record.method,
            path: record.path,
            channel: record.channel,
            status: record.status,
            outcome: record.outcome,
            reason: record.reason,
            size: record.size,
            user_agent: record.user_agent,
            invocation_id: record.invocation_id,
            event_id: record.event_id,
            quarantine_id: record.quarantine_id,
        }
    }
}

/// A page of the delivery log, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    /// The records.
    pub items: Vec<Delivery>,
    /// Pass as `cursor` to get the next page; null when there is none.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// A document kept in quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuarantineItem {
    /// Entry id.
    pub id: i64,
    /// When it was received (RFC 3339, UTC).
    pub received_at: String,
    /// When it was received, in Unix milliseconds.
    pub received_at_ms: i64,
    /// Why it is here: `invalid_event`, `not_json`, `unsupported_media_type` or
    /// `bad_channel`.
    pub reason: String,
    /// Every problem that put it here.
    pub errors: Vec<Issue>,
    /// What lenient validation noted besides (unknown fields, unknown values, …). Empty for
    /// entries stored before the two were kept apart, whose `errors` hold both.
    #[serde(default)]
    #[schema(required = true)]
    pub warnings: Vec<Issue>,
    /// Channel.
    #[schema(required = true)]
    pub channel: Option<String>,
    /// Peer address.
    #[schema(required = true)]
    pub remote_addr: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Body size in bytes.
    pub size: u64,
    /// `_metadata.invocationId`, when it could be read.
    #[schema(required = true)]
    pub invocation_id: Option<String>,
}

impl From<store::QuarantineEntry> for QuarantineItem {
    fn from(entry: store::QuarantineEntry) -> Self {
        QuarantineItem {
            id: entry.id,
            received_at: rfc3339(entry.received_at),
            received_at_ms: entry.received_at,
            reason: entry.reason,
            errors: entry.errors.into_iter().map(Issue::from).collect(),
            warnings: entry.warnings.into_iter().map(Issue::from).collect(),
            channel: entry.channel,
            remote_addr: entry.remote_addr,
            method: entry.method,
            path: entry.path,
            size: entry.size,
            invocation_id: entry.invocation_id,
        }
    }
}

/// A page of the quarantine, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuarantineList {
    /// The entries (bodies not included).
    pub items: Vec<QuarantineItem>,
    /// Pass as `cursor` to get the next page; null when there is none.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// A quarantine entry with its body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuarantineDetail {
    /// The list fields.
    pub entry: QuarantineItem,
    /// The body as parsed JSON, when it is JSON.
    #[schema(value_type = Option<Object>, required = true)]
    pub document: Option<Value>,
    /// The body exactly as received: text, or base64 when `raw_encoding` says so.
    pub raw: String,
    /// How `raw` is given.
    pub raw_encoding: RawEncoding,
}

impl From<store::QuarantineEntry> for QuarantineDetail {
    fn from(mut entry: store::QuarantineEntry) -> Self {
        let body = entry.raw.take().unwrap_or_default();
        let (raw, raw_encoding) = raw_text(&body);
        QuarantineDetail {
            entry: QuarantineItem::from(entry),
            document: serde_json::from_slice(&body).ok(),
            raw,
            raw_encoding,
        }
    }
}

/// Size of the time buckets of statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// One hour.
    Hour,
    /// One day (UTC).
    Day,
}

impl From<store::Bucket> for Bucket {
    fn from(bucket: store::Bucket) -> Self {
        match bucket {
            store::Bucket::Hour => Bucket::Hour,
            store::Bucket::Day => Bucket::Day,
        }
    }
}

/// Account requests by `provisioningResult`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestCounts {
    /// `SUCCESS`.
    pub success: u64,
    /// `PENDING`.
    pub pending: u64,
    /// `FAILED`.
    pub failed: u64,
    /// Any other value.
    pub unknown: u64,
    /// All of them.
    pub total: u64,
}

impl From<store::RequestCounts> for RequestCounts {
    fn from(counts: store::RequestCounts) -> Self {
        RequestCounts {
            success: counts.success,
            pending: counts.pending,
            failed: counts.failed,
            unknown: counts.unknown,
            total: counts.total(),
        }
    }
}

/// One source's account requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SourceStats {
    /// Source name.
    pub source: String,
    /// Account requests by result.
    pub requests: RequestCounts,
    /// Failed share of the source's account requests (0 to 1).
    pub failure_rate: f64,
}

impl From<store::SourceStats> for SourceStats {
    fn from(stats: store::SourceStats) -> Self {
        SourceStats {
            source: stats.source,
            requests: stats.requests.into(),
            failure_rate: stats.failure_rate,
        }
    }
}

/// One time bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BucketStats {
    /// Start of the bucket (RFC 3339, UTC).
    pub start: String,
    /// Start of the bucket, in Unix milliseconds.
    pub start_ms: i64,
    /// Events received.
    pub events: u64,
    /// Account requests by result.
    pub requests: RequestCounts,
    /// By source, most failures first (empty unless `by_source=true`).
    pub sources: Vec<SourceStats>,
}

/// An error message and how many events carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorCount {
    /// The message.
    pub message: String,
    /// Events with it.
    pub events: u64,
}

/// Statistics over a time range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    /// Start of the range covered (rounded down to the hour; RFC 3339, UTC).
    pub since: String,
    /// Start of the range covered, in Unix milliseconds.
    pub since_ms: i64,
    /// End of the range covered (rounded up to the hour; RFC 3339, UTC).
    pub until: String,
    /// End of the range covered, in Unix milliseconds.
    pub until_ms: i64,
    /// Size of the time buckets of `series`.
    pub bucket: Bucket,
    /// Account requests by result.
    pub requests: RequestCounts,
    /// Failed share of all account requests (0 to 1); `null` when the range holds none, which
    /// is no rate at all rather than a rate of no failures.
    pub failure_rate: Option<f64>,
    /// Events by overall outcome.
    pub events: BTreeMap<String, u64>,
    /// Per source, most failures first.
    pub sources: Vec<SourceStats>,
    /// Per time bucket, oldest first; buckets without events included. A range of more than
    /// 20,000 buckets (a `since` decades back) gets the buckets from the first to the last that
    /// hold events.
    pub series: Vec<BucketStats>,
    /// The most frequent error messages, most frequent first.
    pub top_errors: Vec<ErrorCount>,
}

impl From<store::Stats> for Stats {
    fn from(stats: store::Stats) -> Self {
        Stats {
            since: rfc3339(stats.since),
            since_ms: stats.since,
            until: rfc3339(stats.until),
            until_ms: stats.until,
            bucket: stats.bucket.into(),
            failure_rate: (stats.requests.total() > 0).then(|| stats.requests.failure_rate()),
            requests: stats.requests.into(),
            events: stats.events,
            sources: stats.sources.into_iter().map(SourceStats::from).collect(),
            series: stats
                .series
                .into_iter()
                .map(|bucket| BucketStats {
                    start: rfc3339(bucket.start),
                    start_ms: bucket.start,
                    events: bucket.events,
                    requests: bucket.requests.into(),
                    sources: bucket.sources.into_iter().map(SourceStats::from).collect(),
                })
                .collect(),
            top_errors: stats
                .top_errors
                .into_iter()
                .map(|error| ErrorCount {
                    message: error.message,
                    events: error.events,
                })
                .collect(),
        }
    }
}

/// What to test a filter on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterTestRequest {
    /// The filter (Jayway JsonPath, as in an ISC trigger subscription).
    #[schema(example = "$[?($.accountRequests[*].provisioningResult contains 'FAILED')]")]
    pub filter: String,
    /// Only events received at or after this time: RFC 3339, a date (`2026-11-01`), or a span
    /// back from now (`24h`, `7d`). Default: every stored event.
    #[serde(default)]
    pub since: Option<String>,
    /// Most matching events to return as examples (0 to 1000; default 20).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000)]
    pub limit: Option<i64>,
}

/// What a filter matched among stored events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FilterTestResult {
    /// The filter tested.
    pub filter: String,
    /// Events the filter matched.
    pub matched: u64,
    /// Events the filter was evaluated on.
    pub scanned: u64,
    /// False when the scan budget ran out before every event in the range was evaluated.
    pub complete: bool,
    /// Start of the range tested (RFC 3339), null for every stored event.
    #[schema(required = true)]
    pub since: Option<String>,
    /// The newest matches, at most `limit`.
    pub examples: Vec<EventItem>,
    /// Functions the filter calls that Jayway does not have (`lenght`): it compiles, but every
    /// evaluation that reaches such a call fails and matches nothing.
    #[serde(default)]
    pub unknown_functions: Vec<String>,
}

/// An error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code: `invalid_parameter`, `unknown_parameter`, `invalid_filter`, `invalid_body`,
    /// `unauthorized`, `forbidden`, `not_found`, `method_not_allowed`, `unsupported_media_type`,
    /// `payload_too_large`, `request_timeout`, `too_many_requests`, `unavailable` or `internal`.
    pub code: String,
    /// What went wrong and what is accepted, for people.
    pub message: String,
    /// The parameter (or body field) at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// For a filter that does not compile: the character offset where parsing failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// For a filter that does not compile: what the parser expected there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
}
