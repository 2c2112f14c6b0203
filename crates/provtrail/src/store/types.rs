//! The values that cross the storage boundary.

use bytes::Bytes;
use serde::Serialize;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

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
    /// A content type that is not JSON; kept so that nothing sent is lost.
    UnsupportedMediaType,
}

impl QuarantineReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineReason::InvalidEvent => "invalid_event",
            QuarantineReason::NotJson => "not_json",
            QuarantineReason::UnsupportedMediaType => "unsupported_media_type",
        }
    }

    /// The HTTP status a delivery kept for this reason is answered (and recorded) with.
    pub fn http_status(self) -> u16 {
        match self {
            QuarantineReason::InvalidEvent => 202,
            QuarantineReason::NotJson => 400,
            QuarantineReason::UnsupportedMediaType => 415,
        }
    }

    /// Reads a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "invalid_event" => Some(QuarantineReason::InvalidEvent),
            "not_json" => Some(QuarantineReason::NotJson),
            "unsupported_media_type" => Some(QuarantineReason::UnsupportedMediaType),
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
}

/// What the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreCounts {
    /// Stored events.
    pub events: u64,
    /// Quarantine entries.
    pub quarantined: u64,
    /// Delivery records.
    pub deliveries: u64,
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
