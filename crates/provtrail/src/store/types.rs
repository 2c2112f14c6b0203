//! The values that cross the storage boundary.

use bytes::Bytes;
use serde::Serialize;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// 0000-01-01T00:00:00Z: times are written in RFC 3339, which has four-digit years, so none
/// earlier is taken or answered.
pub const EARLIEST_TIME: Millis = -62_167_219_200_000;
/// 9999-12-31T23:59:59.999Z, the last time RFC 3339 can write.
pub const LATEST_TIME: Millis = 253_402_300_799_999;

/// How far the order of stored ids may stray from the order of receipt times: more than any
/// request may take between its arrival and its commit. Lists that walk ids newest first use it
/// to turn a time range into an id range.
pub const ORDER_SLACK_MS: Millis = 15 * 60 * 1000;

/// Bytes of an error message the error counts ([`Stats::top_errors`]) keep: a longer message is
/// counted cut to this length (at a character boundary), so that one odd message cannot bloat
/// them.
pub const MAX_COUNTED_ERROR_LEN: usize = 300;

/// Whether the free-text search counts `c` as part of a word: a letter, a digit or a
/// private-use character, as the index's tokenizer keeps them (SQLite's `unicode61`, whose
/// tokens are of the general categories L*, N* and Co). A mark is not (a vowel sign of an
/// Indic script, a Thai tone mark; Latin accents are part of their letter once composed):
/// kept inside a word, it would make the word a phrase of several tokens, which the index
/// cannot search.
pub fn is_word_char(c: char) -> bool {
    (c.is_alphanumeric() && !unicode_normalization::char::is_combining_mark(c)) || is_private_use(c)
}

/// Whether `c` is a private-use character. The index's key tokens begin with one, so that no
/// word of an event's text or of a query can be a key: both have them taken out.
pub fn is_private_use(c: char) -> bool {
    matches!(c, '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..='\u{FFFFD}' | '\u{100000}'..='\u{10FFFD}')
}

/// Whether the free-text search counts `c`, typed in a query, as part of a word: as
/// [`is_word_char`], but never a private-use character (see [`is_private_use`]).
pub fn is_query_word_char(c: char) -> bool {
    is_word_char(c) && !is_private_use(c)
}

/// The words of `text` as the free-text search looks for them: composed (NFC), then cut at
/// every character that is not part of a word typed in a query ([`is_query_word_char`]).
pub fn text_words(text: &str) -> Vec<String> {
    use unicode_normalization::UnicodeNormalization as _;
    let composed: String = text.nfc().collect();
    composed
        .split(|c: char| !is_query_word_char(c))
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Where and how a document arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// When the request was received.
    pub received_at: Millis,
    /// The peer's address (`ip:port`), when known.
    pub remote_addr: Option<String>,
    /// The channel named in the URL (`POST /events/{channel}`), labelling a subscription.
    pub channel: Option<String>,
    /// HTTP method, or `import` for `provtrail ingest`.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Body size in bytes.
    pub size: u64,
    /// `User-Agent` header, shortened.
    pub user_agent: Option<String>,
}

/// A problem found in a document, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct IssueRecord {
    /// Wire-name path, `$` for the root.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// One account request's searchable fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountRow {
    /// `source.id`.
    pub source_id: String,
    /// `source.name`.
    pub source_name: String,
    /// `accountId`.
    pub account_id: Option<String>,
    /// `accountOperation`.
    pub operation: String,
    /// `provisioningResult` as on the wire.
    pub result: String,
    /// `provisioningTarget`.
    pub target: String,
    /// `ticketId`.
    pub ticket_id: Option<String>,
}

/// The fields of a valid event that searches and statistics need, taken out once at ingest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchFields {
    /// `trackingNumber`.
    pub tracking_number: String,
    /// `action`.
    pub action: Option<String>,
    /// `recipient.id`.
    pub recipient_id: String,
    /// `recipient.name`.
    pub recipient_name: String,
    /// `requester.id`.
    pub requester_id: Option<String>,
    /// `requester.name`.
    pub requester_name: Option<String>,
    /// `sources` as sent.
    pub sources: String,
    /// Overall outcome (`succeeded`, `failed`, …).
    pub outcome: String,
    /// Account requests that failed.
    pub failed_count: u32,
    /// The event's `errors`.
    pub errors: Vec<String>,
    /// The event's `warnings`.
    pub warnings: Vec<String>,
    /// One row per account request.
    pub accounts: Vec<AccountRow>,
    /// Text for full-text search: errors, warnings, names, account ids, attribute values.
    pub text: String,
}

/// A valid event, parsed and prepared off the storage writer.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    /// The searchable fields.
    pub fields: SearchFields,
    /// Lenient-validation warnings.
    pub warnings: Vec<IssueRecord>,
    /// Names of the routes whose filter matched, for the outbox (same transaction).
    pub routes: Vec<String>,
}

/// Why a document went to quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineReason {
    /// JSON, but not a valid event.
    InvalidEvent,
    /// Not JSON (or not UTF-8).
    NotJson,
    /// A content type that is not JSON, or a content encoding provtrail does not decode; kept so
    /// that nothing sent is lost.
    UnsupportedMediaType,
    /// Posted to `/events/{channel}` with a channel name that is not allowed; kept, because
    /// ISC never resends and every event of a subscription with such a URL would be lost.
    BadChannel,
}

impl QuarantineReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineReason::InvalidEvent => "invalid_event",
            QuarantineReason::NotJson => "not_json",
            QuarantineReason::UnsupportedMediaType => "unsupported_media_type",
            QuarantineReason::BadChannel => "bad_channel",
        }
    }

    /// The HTTP status a delivery kept for this reason is answered (and recorded) with.
    pub fn http_status(self) -> u16 {
        match self {
            QuarantineReason::InvalidEvent => 202,
            QuarantineReason::NotJson => 400,
            QuarantineReason::UnsupportedMediaType => 415,
            QuarantineReason::BadChannel => 400,
        }
    }

    /// Reads a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "invalid_event" => Some(QuarantineReason::InvalidEvent),
            "not_json" => Some(QuarantineReason::NotJson),
            "unsupported_media_type" => Some(QuarantineReason::UnsupportedMediaType),
            "bad_channel" => Some(QuarantineReason::BadChannel),
            _ => None,
        }
    }
}

/// A document that is kept in quarantine rather than as an event.
#[derive(Debug, Clone)]
pub struct PreparedQuarantine {
    /// Why.
    pub reason: QuarantineReason,
    /// Every problem found (for not-JSON documents, one at `$`).
    pub errors: Vec<IssueRecord>,
    /// What lenient validation noted besides (unknown fields, unknown values, …).
    pub warnings: Vec<IssueRecord>,
}

/// What was delivered.
#[derive(Debug, Clone)]
// Boxing the event would cost an allocation per delivery to save a move of a few hundred bytes.
#[allow(clippy::large_enum_variant)]
pub enum Content {
    /// A valid event.
    Event(PreparedEvent),
    /// Something that is not a valid event.
    Quarantine(PreparedQuarantine),
}

/// One delivered document on its way into the store.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Where and how it arrived.
    pub receipt: Receipt,
    /// `_metadata.invocationId`, when the document has one.
    pub invocation_id: Option<String>,
    /// The deduplication key: from the invocation id, or else from the canonical body.
    pub dedup_key: [u8; 16],
    /// The body exactly as received.
    pub raw: Bytes,
    /// Parsed content.
    pub content: Content,
    /// Restored from an export (`provtrail ingest` of `provtrail export` lines), with the receipt
    /// of its first delivery: a copy already stored adds no second delivery record, since no
    /// second delivery took place.
    pub restored: bool,
    /// Set by a receiver that may give up waiting for the commit (its request timeout): the
    /// store notes here which delivery record it wrote, so that the refusal the receiver then
    /// answers replaces that record rather than adding a second one for the same request.
    pub late_answer: Option<LateAnswer>,
}

/// Which delivery record the store wrote for a document ([`Incoming::late_answer`]), for the
/// refusal of the same request to replace ([`Rejection::amends`]): a request answered 503 after
/// its commit was waited for too long, whose commit then finished, is one record, with the 503
/// it got and the document it left, not a 200 nobody got and a 503 tied to nothing.
#[derive(Debug, Clone, Default)]
pub struct LateAnswer(std::sync::Arc<std::sync::Mutex<Option<i64>>>);

impl LateAnswer {
    /// Notes the record written, once committed.
    pub fn note(&self, record: Option<i64>) {
        if let Ok(mut noted) = self.0.lock() {
            *noted = record;
        }
    }

    /// The record noted, if any.
    pub fn record(&self) -> Option<i64> {
        self.0.lock().ok().and_then(|noted| *noted)
    }

    /// Whether `other` is this one (a clone of it).
    pub fn is(&self, other: &LateAnswer) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// What the store did with an [`Incoming`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum IngestOutcome {
    /// Kept as a new event.
    Accepted {
        /// The event's id.
        id: i64,
    },
    /// The same event was kept before; nothing new was stored.
    Duplicate {
        /// The id of the event kept before.
        id: i64,
    },
    /// Kept in quarantine (`duplicate` when the same document was quarantined before).
    Quarantined {
        /// The quarantine entry's id.
        id: i64,
        /// True when the same document was already in quarantine.
        duplicate: bool,
    },
}

/// A request that was refused before anything was kept.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Where and how it arrived.
    pub receipt: Receipt,
    /// The HTTP status answered.
    pub status: u16,
    /// Why, for people.
    pub reason: String,
    /// The request's document, when its commit was given up on ([`LateAnswer`]): the record
    /// the store wrote for it, if any by now, is replaced rather than added to.
    pub amends: Option<LateAnswer>,
}

/// What the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreCounts {
    /// Stored events.
    pub events: u64,
    /// Quarantine entries.
    pub quarantined: u64,
}

/// Which events to export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportRange {
    /// Received at or after.
    pub since: Option<Millis>,
    /// Received before.
    pub until: Option<Millis>,
}

/// A stored event with its receipt.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The event's id.
    pub id: i64,
    /// Where and how it arrived (method and path are those of the first delivery).
    pub receipt: Receipt,
    /// `_metadata.invocationId`.
    pub invocation_id: Option<String>,
    /// The body exactly as received.
    pub raw: Bytes,
    /// Validation warnings recorded at ingest.
    pub warnings: Vec<IssueRecord>,
    /// The searchable fields (account rows not loaded here).
    pub tracking_number: String,
    /// Overall outcome.
    pub outcome: String,
}

/// Which events to find. Every filter given must hold; newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct EventQuery {
    /// `trackingNumber` (case and surrounding spaces ignored).
    pub tracking_number: Option<String>,
    /// `_metadata.invocationId` (case and surrounding spaces ignored).
    pub invocation_id: Option<String>,
    /// The recipient or the requester, by id or by name (case does not matter).
    pub identity: Option<String>,
    /// A source of an account request, by id or by name.
    pub source: Option<String>,
    /// An account request's `accountId`.
    pub account_id: Option<String>,
    /// An account request's `ticketId`.
    pub ticket_id: Option<String>,
    /// An account request's `accountOperation`.
    pub operation: Option<String>,
    /// An account request's result (`SUCCESS`, `PENDING`, `FAILED`); with `source`, the same
    /// account request has both.
    pub result: Option<String>,
    /// `action`.
    pub action: Option<String>,
    /// The channel the event was posted to.
    pub channel: Option<String>,
    /// Words that must all appear in the event's errors, warnings, names, account ids or
    /// attribute values; a trailing `*` matches a prefix.
    pub q: Option<String>,
    /// Received at or after.
    pub since: Option<Millis>,
    /// Received before.
    pub until: Option<Millis>,
    /// Only events with an id below this (the cursor of the previous page).
    pub before_id: Option<i64>,
    /// Only events with an id above this (those stored after a list was shown).
    pub after_id: Option<i64>,
    /// Most events to return.
    pub limit: usize,
}

/// One event in a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventSummary {
    /// The event's id.
    pub id: i64,
    /// When it was received.
    pub received_at: Millis,
    /// `trackingNumber`.
    pub tracking_number: String,
    /// `_metadata.invocationId`.
    pub invocation_id: Option<String>,
    /// `action`.
    pub action: Option<String>,
    /// `recipient.id`.
    pub recipient_id: String,
    /// `recipient.name`.
    pub recipient_name: String,
    /// `requester.id`.
    pub requester_id: Option<String>,
    /// `requester.name`.
    pub requester_name: Option<String>,
    /// `sources`.
    pub sources: String,
    /// Overall outcome.
    pub outcome: String,
    /// Account requests.
    pub account_count: u32,
    /// Account requests that failed.
    pub failed_count: u32,
    /// The event's `errors`.
    pub errors: Vec<String>,
    /// The channel it was posted to.
    pub channel: Option<String>,
    /// The body as received, when asked for.
    #[serde(skip)]
    pub raw: Option<Bytes>,
}

/// A page of results and where the next one starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    /// The results.
    pub items: Vec<T>,
    /// Pass as `before_id` to get the next page; `None` when this is the last.
    pub next_cursor: Option<i64>,
}

/// One event with everything known about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventDetail {
    /// The list fields.
    #[serde(flatten)]
    pub summary: EventSummary,
    /// The event's `warnings`.
    pub event_warnings: Vec<String>,
    /// What lenient validation noted.
    pub validation_warnings: Vec<IssueRecord>,
    /// Peer address.
    pub remote_addr: Option<String>,
    /// HTTP method (or IMPORT).
    pub method: String,
    /// Request path (or the imported file).
    pub path: String,
    /// Body size in bytes.
    pub size: u64,
    /// The body as received.
    #[serde(skip)]
    pub raw: Bytes,
    /// Every delivery of this event (the first, and duplicates).
    pub deliveries: Vec<DeliveryRecord>,
}

/// Time buckets of statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// One hour.
    Hour,
    /// One day (UTC).
    #[default]
    Day,
}

impl Bucket {
    /// Length in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }
}

/// Which statistics to compute.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct StatsQuery {
    /// From (rounded down to the hour).
    pub since: Option<Millis>,
    /// Until (rounded up to the hour).
    pub until: Option<Millis>,
    /// Size of the time buckets.
    pub bucket: Bucket,
    /// Only this source (by name).
    pub source: Option<String>,
    /// Only this channel.
    pub channel: Option<String>,
    /// How many of the most frequent error messages.
    pub top_errors: usize,
    /// Break each time bucket down by source too.
    pub per_source_series: bool,
}

/// Account requests by result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    /// `SUCCESS`.
    pub success: u64,
    /// `PENDING`.
    pub pending: u64,
    /// `FAILED`.
    pub failed: u64,
    /// Other values.
    pub unknown: u64,
}

impl RequestCounts {
    /// All account requests.
    pub fn total(&self) -> u64 {
        self.success + self.pending + self.failed + self.unknown
    }

    /// Failed share of all account requests (0 when there are none).
    pub fn failure_rate(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            0.0
        } else {
            self.failed as f64 / total as f64
        }
    }

    /// Adds `n` requests with `result`.
    pub fn add(&mut self, result: &str, n: u64) {
        match result {
            "SUCCESS" => self.success += n,
            "PENDING" => self.pending += n,
            "FAILED" => self.failed += n,
            _ => self.unknown += n,
        }
    }
}

/// One source's counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceStats {
    /// Source name.
    pub source: String,
    /// Account requests by result.
    pub requests: RequestCounts,
    /// Failed share.
    pub failure_rate: f64,
}

/// One time bucket's counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketStats {
    /// Start of the bucket.
    pub start: Millis,
    /// Account requests by result.
    pub requests: RequestCounts,
    /// Events received.
    pub events: u64,
    /// By source, when asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceStats>,
}

/// An error message and how many events carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorCount {
    /// The message.
    pub message: String,
    /// Events with it.
    pub events: u64,
}

/// Statistics over a time range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Start of the range covered.
    pub since: Millis,
    /// End of the range covered.
    pub until: Millis,
    /// Bucket size.
    pub bucket: Bucket,
    /// Account requests by result.
    pub requests: RequestCounts,
    /// Events by overall outcome.
    pub events: std::collections::BTreeMap<String, u64>,
    /// Per source, most failures first.
    pub sources: Vec<SourceStats>,
    /// Per time bucket, oldest first (buckets without events included).
    pub series: Vec<BucketStats>,
    /// The most frequent error messages.
    pub top_errors: Vec<ErrorCount>,
}

/// Which delivery records to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct DeliveryQuery {
    /// Received at or after.
    pub since: Option<Millis>,
    /// Received before.
    pub until: Option<Millis>,
    /// `accepted`, `duplicate`, `quarantined` or `rejected`.
    pub outcome: Option<String>,
    /// HTTP status answered.
    pub status: Option<u16>,
    /// Channel.
    pub channel: Option<String>,
    /// Records with an id below this.
    pub before_id: Option<i64>,
    /// Most records to return.
    pub limit: usize,
}

/// One request in the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    /// Record id.
    pub id: i64,
    /// When the request was received.
    pub received_at: Millis,
    /// Peer address.
    pub remote_addr: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Channel.
    pub channel: Option<String>,
    /// HTTP status answered.
    pub status: u16,
    /// `accepted`, `duplicate`, `quarantined` or `rejected`.
    pub outcome: String,
    /// Why, when not accepted.
    pub reason: Option<String>,
    /// Body size.
    pub size: u64,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// `_metadata.invocationId`.
    pub invocation_id: Option<String>,
    /// The event it delivered.
    pub event_id: Option<i64>,
    /// The quarantine entry it made.
    pub quarantine_id: Option<i64>,
}

/// Which quarantine entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct QuarantineQuery {
    /// Received at or after.
    pub since: Option<Millis>,
    /// Received before.
    pub until: Option<Millis>,
    /// `invalid_event`, `not_json` or `unsupported_media_type`.
    pub reason: Option<String>,
    /// Entries with an id below this.
    pub before_id: Option<i64>,
    /// Most entries to return.
    pub limit: usize,
}

/// A document kept in quarantine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantineEntry {
    /// Entry id.
    pub id: i64,
    /// When it was received.
    pub received_at: Millis,
    /// Why it is here.
    pub reason: String,
    /// Every problem that put it here.
    pub errors: Vec<IssueRecord>,
    /// What lenient validation noted besides (unknown fields, unknown values, …); empty for
    /// entries stored before provtrail kept the two apart, whose `errors` hold both.
    pub warnings: Vec<IssueRecord>,
    /// Channel.
    pub channel: Option<String>,
    /// Peer address.
    pub remote_addr: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Body size.
    pub size: u64,
    /// `_metadata.invocationId`, when it could be read.
    pub invocation_id: Option<String>,
    /// The body as received, when asked for.
    #[serde(skip)]
    pub raw: Option<Bytes>,
}

// ---------------------------------------------------------------------------------------------
// Routes: the outbox of deliveries to sinks.

/// Where a route delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt (or being attempted now).
    Pending,
    /// The sink took it.
    Delivered,
    /// Given up on after the retry policy's last attempt, or refused for good by the sink.
    Dead,
}

impl DeliveryState {
    /// The stored code.
    pub fn code(self) -> i64 {
        match self {
            DeliveryState::Pending => 0,
            DeliveryState::Delivered => 1,
            DeliveryState::Dead => 2,
        }
    }

    /// From a stored code.
    pub fn from_code(code: i64) -> Self {
        match code {
            1 => DeliveryState::Delivered,
            2 => DeliveryState::Dead,
            _ => DeliveryState::Pending,
        }
    }

    /// The name used in the API and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    /// Reads a name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "dead" => Some(DeliveryState::Dead),
            _ => None,
        }
    }
}

/// A pending delivery that is due, with its event, for a worker.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    /// The delivery's id.
    pub id: i64,
    /// The event's id.
    pub event_id: i64,
    /// The route.
    pub route: String,
    /// Attempts made so far (ever).
    pub attempts: u32,
    /// Attempts the policy does not count: those made before the last retry from the dead
    /// letters, and those that found the sink down.
    pub attempts_base: u32,
    /// Attempts made before the last retry from the dead letters: the backoff grows with the
    /// rest.
    pub backoff_base: u32,
    /// Since when the delivery has been trying (created, or retried from the dead letters).
    pub due_since: Millis,
    /// When the event was received.
    pub received_at: Millis,
    /// `_metadata.invocationId`.
    pub invocation_id: Option<String>,
    /// The event as received (empty when it cannot be read back).
    pub raw: Bytes,
    /// Why the event's stored body cannot be read back (damaged on disk): the delivery fails for
    /// good, to the dead letters, rather than keeping the route's other deliveries from being
    /// read.
    pub unreadable: Option<String>,
}

/// A route's worker taking the deliveries of newly stored events straight from the writer, so
/// that it does not read back from the database what was written a moment ago. The database
/// stays the record: a delivery handed over is pending there until the result of an attempt is
/// committed, and one that cannot be handed over (the worker is behind and its queue is full) is
/// left to the worker's next read of due deliveries.
#[derive(Debug, Clone)]
pub struct OutboxFeed {
    /// Where handed-over deliveries go.
    pub sender: tokio::sync::mpsc::Sender<OutboxItem>,
    /// Deliveries handed over (or about to be) that the worker has not taken yet. The writer adds
    /// an id before the commit that makes the delivery visible, so a read of due deliveries that
    /// sees it also finds it here and leaves it to the feed.
    pub handed: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<i64>>>,
    /// Notified when deliveries of this route could not be handed over (the queue was full), so
    /// that its worker reads them when due. Only this route's worker is woken: the others have
    /// nothing new to read.
    pub overflowed: std::sync::Arc<tokio::sync::Notify>,
    /// Bytes of event bodies handed over that the worker has not started to deliver: the writer
    /// adds, the worker takes away. A delivery that would take it past `max_bytes` is not
    /// handed over (it is read when due, as when the queue is full), so that a route that is
    /// paused for long does not hold thousands of large bodies in memory.
    pub held_bytes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// See `held_bytes`.
    pub max_bytes: usize,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Delivered: done.
    Delivered,
    /// Failed; try again at this time.
    RetryAt(Millis),
    /// Failed for the last time: to the dead letters.
    Dead,
}

/// The result of one attempt, to record.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    /// The delivery.
    pub delivery_id: i64,
    /// Its route.
    pub route: String,
    /// The attempt's number (1 for the first ever).
    pub attempt: u32,
    /// When it started.
    pub started_at: Millis,
    /// How long it took, in microseconds.
    pub latency_us: i64,
    /// The status the target answered, when it answered.
    pub status: Option<u16>,
    /// Why it failed (secrets removed).
    pub error: Option<String>,
    /// What happens next.
    pub next: NextStep,
    /// A failed probe of a paused route: recorded like any attempt, but it tested the sink
    /// rather than the delivery, so it does not count toward `max_attempts` (the delivery's
    /// `attempts_base` moves up with it).
    pub uncharged: bool,
}

/// A change to the outbox, written by the store's writer.
#[derive(Debug, Clone)]
pub enum OutboxWrite {
    /// Attempt results of the workers.
    Results(Vec<AttemptResult>),
    /// New deliveries of stored events to a route (replay). An event that already has a pending
    /// delivery to the route gets no second one.
    Enqueue {
        /// The route.
        route: String,
        /// The events.
        event_ids: Vec<i64>,
        /// Why (`replay`), kept on the delivery.
        origin: String,
        /// Now.
        at: Millis,
    },
    /// Dead letters back to pending, with a fresh retry budget.
    RetryDead {
        /// Only this route's.
        route: Option<String>,
        /// Only these deliveries (all of them when empty).
        ids: Vec<i64>,
        /// Now.
        at: Millis,
    },
    /// Pending deliveries of a paused route that have been trying since before `due_before`
    /// (past the route's `max_age`) to the dead letters, without an attempt: while the sink is
    /// down they would wait for a probe each, which a paused route makes one at a time.
    Expire {
        /// The route.
        route: String,
        /// Deliveries trying since before this are expired.
        due_before: Millis,
        /// Deliveries being attempted now, left to their attempt.
        exclude: Vec<i64>,
        /// Why, kept as the dead letter's error (with its last error after it).
        reason: String,
        /// Now.
        at: Millis,
    },
}

/// Counts and the latest trouble of one route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouteCounts {
    /// The route.
    pub route: String,
    /// Deliveries created (matching events, and replays).
    pub matched: u64,
    /// Deliveries the sink took.
    pub delivered: u64,
    /// Waiting deliveries.
    pub pending: u64,
    /// Deliveries in the dead letters now.
    pub dead: u64,
    /// Deliveries sent to the dead letters, ever (one retried and dead again counts twice): what
    /// the `provtrail_route_dead_total` counter follows.
    #[serde(skip)]
    pub dead_ever: u64,
    /// Failed attempts, ever.
    pub failed_attempts: u64,
    /// Since when the pending delivery that has waited longest has waited: since it was made,
    /// or since it was last sent back from the dead letters.
    pub oldest_pending_at: Option<Millis>,
    /// The last failure's message (secrets removed).
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<Millis>,
    /// When the last delivery succeeded.
    pub last_delivered_at: Option<Millis>,
}

/// Which route deliveries to list; newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct RouteDeliveryQuery {
    /// Only this route's.
    pub route: Option<String>,
    /// Only in this state.
    pub state: Option<DeliveryState>,
    /// Only of this event.
    pub event_id: Option<i64>,
    /// Deliveries with an id below this (the cursor).
    pub before_id: Option<i64>,
    /// Most to return.
    pub limit: usize,
}

/// One delivery of an event to a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteDelivery {
    /// The delivery's id.
    pub id: i64,
    /// The event's id.
    pub event_id: i64,
    /// The event's tracking number.
    pub tracking_number: Option<String>,
    /// The route.
    pub route: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// `ingest` or `replay`.
    pub origin: String,
    /// Created.
    pub created_at: Millis,
    /// Last changed.
    pub updated_at: Millis,
    /// Next attempt, while pending.
    pub next_attempt_at: Option<Millis>,
    /// When the sink took it.
    pub delivered_at: Option<Millis>,
    /// The status of the last attempt.
    pub last_status: Option<u16>,
    /// The last failure (secrets removed).
    pub last_error: Option<String>,
    /// How long the last attempt took, in microseconds (the attempts table's primary key finds
    /// it, so lists can show it without reading every attempt).
    pub last_latency_us: Option<i64>,
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryAttempt {
    /// Its number (1 for the first).
    pub attempt: u32,
    /// When it started.
    pub started_at: Millis,
    /// How long it took.
    pub latency_ms: f64,
    /// `delivered`, `failed` (retried) or `dead`.
    pub outcome: String,
    /// The status the target answered.
    pub status: Option<u16>,
    /// Why it failed.
    pub error: Option<String>,
}
