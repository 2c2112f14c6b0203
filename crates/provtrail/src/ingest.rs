//! The ingest core: turns the bytes of one delivery into what the store keeps. Shared by the HTTP
//! receiver and `provtrail ingest`, so that both validate and deduplicate the same way.
//!
//! Architecture invariant: no I/O here. Everything expensive about a delivery (parsing,
//! validation, hashing, extracting search fields, matching routes) happens in this module, on the
//! caller's thread, so that the store's single writer only writes.

use bytes::Bytes;
use provtrail_model::{Issue, Options, ProvisioningCompleted, Validation, validate_slice};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::{
    AccountRow, Content, Incoming, IssueRecord, PreparedEvent, PreparedQuarantine,
    QuarantineReason, Receipt, SearchFields,
};

/// Decides which routes an event goes to. Implemented by the routing module; the ingest core only
/// asks for names so that it does not depend on how routes deliver.
pub trait RouteMatcher: Send + Sync + std::fmt::Debug {
    /// Names of the routes whose filter matches the event (given as a JSON value).
    fn matching_routes(&self, event: &Value) -> Vec<String>;
    /// True when there are no routes, so that the event need not be turned into a value.
    fn is_empty(&self) -> bool;
    /// True when a route's filter reads the event. When none does (every route takes every
    /// event), the event is not turned into a value and `matching_routes` is given `null`.
    fn reads_event(&self) -> bool {
        true
    }
    /// The only top-level members of the event that the filters read, when they read only some
    /// (`$.accountRequests[?(…)]` reads `accountRequests`): the value given to
    /// `matching_routes` then holds just those. None: every member.
    fn read_members(&self) -> Option<&[String]> {
        None
    }
}

/// Prepares deliveries for the store.
#[derive(Debug, Default)]
pub struct Ingestor {
    options: Options,
    routes: Option<std::sync::Arc<dyn RouteMatcher>>,
}

impl Ingestor {
    /// An ingestor with lenient validation and the given body limit.
    pub fn new(max_body: usize) -> Self {
        let mut options = Options::lenient();
        options.limits.max_bytes = max_body;
        options.limits.max_issues = MAX_KEPT_ISSUES;
        Ingestor {
            options,
            routes: None,
        }
    }

    /// Adds routes whose matches are put in the outbox with the event.
    pub fn with_routes(mut self, routes: std::sync::Arc<dyn RouteMatcher>) -> Self {
        self.routes = Some(routes);
        self
    }

    /// Prepares a document whose content type says JSON (or says nothing).
    pub fn prepare(&self, raw: Bytes, receipt: Receipt) -> Incoming {
        match validate_slice(&raw, &self.options) {
            Ok(validation) => self.prepare_json(validation, &raw, receipt),
            Err(err) => {
                let errors = vec![IssueRecord {
                    path: "$".to_owned(),
                    message: err.to_string(),
                }];
                quarantine(
                    raw,
                    receipt,
                    QuarantineReason::NotJson,
                    errors,
                    Vec::new(),
                    None,
                )
            }
        }
    }

    /// Prepares a document that is refused for how it was sent rather than for what it holds
    /// (a content encoding that is not decoded, a channel name that is not allowed): it is kept
    /// in quarantine as received, with `message` as its error, so that nothing an authenticated
    /// sender delivered is lost.
    pub fn prepare_refused(
        &self,
        raw: Bytes,
        receipt: Receipt,
        reason: QuarantineReason,
        message: String,
    ) -> Incoming {
        let errors = vec![IssueRecord {
            path: "$".to_owned(),
            message,
        }];
        quarantine(raw, receipt, reason, errors, Vec::new(), None)
    }

    /// Prepares a document sent with a content type that is not JSON: it is kept in quarantine
    /// as received, so that nothing an authenticated sender delivered is lost.
    pub fn prepare_unsupported(
        &self,
        raw: Bytes,
        receipt: Receipt,
        content_type: &str,
    ) -> Incoming {
        // JSON in another charset is refused for the charset: saying it is not JSON would
        // send its sender looking in the wrong place.
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let message =
            if essence.contains("json") && content_type.to_ascii_lowercase().contains("charset") {
                format!(
                    "content type `{content_type}` names a charset other than UTF-8: JSON is read \
                 as UTF-8 only (send application/json)"
                )
            } else {
                format!("content type `{content_type}` is not JSON (send application/json)")
            };
        self.prepare_refused(
            raw,
            receipt,
            QuarantineReason::UnsupportedMediaType,
            message,
        )
    }

    fn prepare_json(&self, validation: Validation<'_>, raw: &Bytes, receipt: Receipt) -> Incoming {
        let Validation {
            event,
            errors,
            warnings,
            errors_not_listed,
            warnings_not_listed,
        } = validation;
        match event {
            Some(event) if errors.is_empty() => {
                let invocation_id = event
                    .invocation_id()
                    .filter(|id| is_usable_invocation_id(id))
                    .map(str::to_owned);
                let dedup_key = match &invocation_id {
                    Some(id) => invocation_key(id),
                    None => canonical_key(raw),
                };
                let routes = match &self.routes {
                    Some(routes) if !routes.is_empty() => {
                        // Building the value costs more than the parse: only for filters, and only
                        // the members they read.
                        let value = if !routes.reads_event() {
                            Value::Null
                        } else if let Some(members) = routes.read_members() {
                            event.to_value_of(|name| members.iter().any(|member| member == name))
                        } else {
                            event.to_value()
                        };
                        routes.matching_routes(&value)
                    }
                    _ => Vec::new(),
                };
                let fields = search_fields(&event);
                Incoming {
                    receipt,
                    invocation_id,
                    dedup_key,
                    raw: raw.clone(),
                    content: Content::Event(PreparedEvent {
                        fields,
                        warnings: records(&warnings, warnings_not_listed, "warnings"),
                        routes,
                    }),
                    restored: false,
                    late_answer: None,
                }
            }
            _ => {
                // Invalid: find the envelope's invocation id without the typed event, so that a
                // redelivery of the same invalid document is still recognised.
                let invocation_id = envelope_invocation_id(raw);
                quarantine(
                    raw.clone(),
                    receipt,
                    QuarantineReason::InvalidEvent,
                    records(&errors, errors_not_listed, "errors"),
                    records(&warnings, warnings_not_listed, "warnings"),
                    invocation_id,
                )
            }
        }
    }
}

/// The envelope's invocation id of a document that is not a valid event, read without building
/// the rest of it: everything else is passed over unread (a `Value` of a hostile megabyte takes
/// a hundred times its size).
fn envelope_invocation_id(raw: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(rename = "_metadata", borrow)]
        metadata: Option<Metadata<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Metadata<'a> {
        #[serde(rename = "invocationId", borrow)]
        invocation_id: Option<std::borrow::Cow<'a, str>>,
    }
    let envelope: Envelope<'_> = serde_json::from_slice(raw).ok()?;
    envelope
        .metadata?
        .invocation_id
        .filter(|id| is_usable_invocation_id(id))
        .map(std::borrow::Cow::into_owned)
}

fn quarantine(
    raw: Bytes,
    receipt: Receipt,
    reason: QuarantineReason,
    errors: Vec<IssueRecord>,
    warnings: Vec<IssueRecord>,
    invocation_id: Option<String>,
) -> Incoming {
    // With an invocation id, the bytes too: a redelivery of the same document is one entry,
    // but another document under the same id (ISC sends none, anyone else may) is not taken for
    // it, which would keep one and answer with the other's problems. (Not the canonical form:
    // that builds a `Value` of what may be a hostile megabyte; the same document written
    // another way is kept twice, the safe side.)
    let content_key = match &invocation_id {
        Some(id) => digest(&[b"invalid\0", &invocation_key(id), b"\0", &raw]),
        None => canonical_key(&raw),
    };
    // A document refused for how it was sent (its content type or encoding, its channel) may
    // come again sent another way and be kept for another refusal: each refusal gets its own
    // entry, so that what an entry records (its reason, its problem) is true of every delivery it
    // stands for. What the document holds decides the other two reasons, so they need no salt.
    let dedup_key = match reason {
        QuarantineReason::InvalidEvent | QuarantineReason::NotJson => content_key,
        QuarantineReason::UnsupportedMediaType | QuarantineReason::BadChannel => {
            let refusal = errors.first().map_or("", |error| error.message.as_str());
            digest(&[
                b"refused\0",
                reason.as_str().as_bytes(),
                b"\0",
                refusal.as_bytes(),
                b"\0",
                &content_key,
            ])
        }
    };
    Incoming {
        receipt,
        invocation_id,
        dedup_key,
        raw,
        content: Content::Quarantine(PreparedQuarantine {
            reason,
            errors,
            warnings,
        }),
        restored: false,
        late_answer: None,
    }
}

/// Most issues of each kind kept with a document and given in its answer. A document of 1 MiB
/// can hold over a million problems; the first hundred say what is wrong with it, and the
/// answer and the store stay small.
pub const MAX_KEPT_ISSUES: usize = 100;

/// The issues as kept, and for those past the cap one more record that counts them (with an
/// empty path: it is about the document).
fn records(issues: &[Issue], not_listed: usize, what: &str) -> Vec<IssueRecord> {
    let mut records: Vec<IssueRecord> = issues
        .iter()
        .map(|issue| IssueRecord {
            path: issue.path.clone(),
            message: issue.message.clone(),
        })
        .collect();
    if not_listed > 0 {
        records.push(IssueRecord {
            path: String::new(),
            message: format!(
                "{not_listed} more {what} not listed: only the first {} are kept",
                issues.len()
            ),
        });
    }
    records
}

/// Longest channel name accepted in the URL.
pub const MAX_CHANNEL_LEN: usize = 128;

/// 1 to [`MAX_CHANNEL_LEN`] ASCII letters, digits, `-`, `_` or `.`, and not `.` or `..`: a name
/// that is safe in search keys, metrics labels and file names.
pub fn is_channel_name(channel: &str) -> bool {
    !channel.is_empty()
        && !matches!(channel, "." | "..")
        && channel.len() <= MAX_CHANNEL_LEN
        && channel
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether an envelope's invocation id can identify a delivery. A blank one cannot: taken as
/// an id, every event sent with it would be answered as a duplicate of the first and lost, so
/// such events are deduplicated on their body, as events without an id are.
fn is_usable_invocation_id(id: &str) -> bool {
    !id.trim().is_empty()
}

/// The deduplication key of an event with an invocation id.
pub fn invocation_key(invocation_id: &str) -> [u8; 16] {
    digest(&[b"invocation\0", invocation_id.as_bytes()])
}

/// The deduplication key of a document without an invocation id: a hash of its canonical form
/// (keys sorted at every level, no insignificant whitespace), so that the same event re-serialized
/// differently is still recognised. Bytes that are not JSON are hashed as they are.
///
/// The number literals as sent are hashed too, sorted so that key order still does not matter:
/// two documents that differ only in how a number is written (`1.0` and `1`) are then kept
/// twice, which is the safe side. (The canonical form keeps numbers as written too, since the
/// event model turns on serde_json's `arbitrary_precision`; before it did, a `Value` held a
/// double, and the literals were what told `0.1000000000000000001` from `0.1`. A document
/// stored before that whose numbers a double changes gets a new key: it is kept again.)
pub fn canonical_key(raw: &[u8]) -> [u8; 16] {
    match serde_json::from_slice::<Value>(raw) {
        Ok(value) => {
            let mut canonical = Vec::with_capacity(raw.len());
            write_canonical(&value, &mut canonical);
            let mut numbers = number_literals(raw);
            numbers.sort_unstable();
            let numbers = numbers.join(&b' ');
            digest(&[b"body\0", &canonical, b"\0numbers\0", &numbers])
        }
        Err(_) => digest(&[b"bytes\0", raw]),
    }
}

/// The number literals of a JSON text, as written, in document order.
fn number_literals(json: &[u8]) -> Vec<&[u8]> {
    let mut numbers = Vec::new();
    let mut index = 0;
    while let Some(&byte) = json.get(index) {
        match byte {
            b'"' => {
                // Skip the string, escapes included.
                index += 1;
                while let Some(&byte) = json.get(index) {
                    index += if byte == b'\\' { 2 } else { 1 };
                    if byte == b'"' {
                        break;
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = index;
                while json
                    .get(index)
                    .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    index += 1;
                }
                numbers.push(&json[start..index]);
            }
            _ => index += 1,
        }
    }
    numbers
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (index, (key, value)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_json_string(key, out);
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

fn write_json_string(text: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(Value::String(text.to_owned()).to_string().as_bytes());
}

fn digest(parts: &[&[u8]]) -> [u8; 16] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    let full = hasher.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&full[..16]);
    key
}

/// A stored event's body read as an event (lenient, as at ingest). It was accepted under the
/// server's body limit, whatever that was then: read with the model's default limit (1 MiB), an
/// event taken under a larger `ingest.max_body` would read as no event at all.
pub fn read_stored(raw: &[u8]) -> Result<ProvisioningCompleted<'_>, provtrail_model::Error> {
    validate_slice(raw, &stored_options())?.into_result()
}

/// How a stored body is read back: leniently, and with no size limit, because it was accepted
/// under the server's body limit, whatever that was.
pub fn stored_options() -> Options {
    let mut options = Options::lenient();
    options.limits.max_bytes = usize::MAX;
    options
}

/// Takes out the fields that searches and statistics use.
pub fn search_fields(event: &ProvisioningCompleted<'_>) -> SearchFields {
    let mut text = String::new();
    let mut add = |part: &str| {
        if !part.is_empty() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(part);
        }
    };
    for message in event.error_messages() {
        add(message);
    }
    for message in event.warning_messages() {
        add(message);
    }
    add(&event.recipient.name);
    if let Some(requester) = event.requester.as_option() {
        add(&requester.name);
    }
    let mut accounts = Vec::with_capacity(event.account_requests.len());
    for request in &event.account_requests {
        add(&request.source.name);
        if let Some(account_id) = request.account_id.as_deref() {
            add(account_id);
        }
        for attribute in request.attribute_requests.as_option().into_iter().flatten() {
            if let Some(value) = attribute.attribute_value.as_option() {
                for value in value.values() {
                    add(value);
                }
            }
        }
        accounts.push(AccountRow {
            source_id: request.source.id.to_string(),
            source_name: request.source.name.to_string(),
            account_id: request.account_id.as_deref().map(str::to_owned),
            operation: request.account_operation.to_string(),
            result: request.provisioning_result.as_wire().to_owned(),
            target: request.provisioning_target.to_string(),
            ticket_id: request.ticket_id.as_deref().map(str::to_owned),
        });
    }
    let requester = event.requester.as_option();
    SearchFields {
        tracking_number: event.tracking_number.to_string(),
        action: event.action.as_deref().map(str::to_owned),
        recipient_id: event.recipient.id.to_string(),
        recipient_name: event.recipient.name.to_string(),
        requester_id: requester.map(|r| r.id.to_string()),
        requester_name: requester.map(|r| r.name.to_string()),
        sources: event.sources.to_string(),
        outcome: event.outcome().as_str().to_owned(),
        failed_count: u32::try_from(event.counts().failed).unwrap_or(u32::MAX),
        errors: event
            .error_messages()
            .iter()
            .map(|m| m.to_string())
            .collect(),
        warnings: event
            .warning_messages()
            .iter()
            .map(|m| m.to_string())
            .collect(),
        accounts,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_of_an_invalid_document_is_read_without_the_rest() {
        let id = |raw: &str| envelope_invocation_id(raw.as_bytes());
        assert_eq!(
            id(r#"{"x": [1, {"y": 2}], "_metadata": {"invocationId": "inv-1", "z": null}}"#),
            Some("inv-1".to_owned())
        );
        assert_eq!(
            id(r#"{"_metadata": {"invocationId": "inv\u002d2"}}"#),
            Some("inv-2".to_owned())
        );
        for none in [
            r#"{"_metadata": {"invocationId": 7}}"#,
            r#"{"_metadata": "text"}"#,
            r#"{"_metadata": {"invocationId": "   "}}"#,
            r#"{"accountRequests": [{}]}"#,
            r#"[{"_metadata": {"invocationId": "inv-3"}}]"#,
            "not json",
        ] {
            assert_eq!(id(none), None, "{none}");
        }
    }

    #[test]
    fn canonical_key_ignores_key_order_and_whitespace() {
        let a = br#"{"a": 1, "b": {"c": [1, 2], "d": "x"}}"#;
        let b = br#"{"b":{"d":"x","c":[1,2]},"a":1}"#;
        assert_eq!(canonical_key(a), canonical_key(b));
        let c = br#"{"b":{"d":"y","c":[1,2]},"a":1}"#;
        assert_ne!(canonical_key(a), canonical_key(c));
        // Numbers a double cannot tell apart are still different documents.
        for (x, y) in [
            ("12345678901234567890123", "12345678901234567890124"),
            ("0.10000000000000000001", "0.10000000000000000002"),
        ] {
            let x = format!(r#"{{"n":{x}}}"#);
            let y = format!(r#"{{"n":{y}}}"#);
            assert_ne!(canonical_key(x.as_bytes()), canonical_key(y.as_bytes()));
        }
    }

    #[test]
    fn invocation_key_differs_from_body_key() {
        assert_ne!(invocation_key("abc"), canonical_key(b"abc"));
        assert_eq!(invocation_key("abc"), invocation_key("abc"));
    }

    #[test]
    fn a_blank_invocation_id_is_no_id() {
        let ingestor = Ingestor::new(1 << 20);
        let event = |tracking: &str, id: &str| {
            let value = serde_json::json!({
                "trackingNumber": tracking,
                "sources": "Corp AD",
                "recipient": {"type": "IDENTITY", "id": "x1", "name": "W"},
                "accountRequests": [{
                    "source": {"id": "s", "type": "SOURCE", "name": "AD"},
                    "accountOperation": "Modify",
                    "provisioningResult": "SUCCESS",
                    "provisioningTarget": "Corp AD"
                }],
                "_metadata": {"invocationId": id}
            });
            Bytes::from(serde_json::to_vec(&value).unwrap())
        };
        for blank in ["", "   ", "\t"] {
            let a = ingestor.prepare(event("aaaa", blank), Receipt::default());
            let b = ingestor.prepare(event("bbbb", blank), Receipt::default());
            assert!(matches!(a.content, Content::Event(_)));
            assert_eq!(a.invocation_id, None);
            assert_ne!(a.dedup_key, b.dedup_key, "{blank:?}");
        }
        let a = ingestor.prepare(event("aaaa", "inv-1"), Receipt::default());
        let b = ingestor.prepare(event("bbbb", "inv-1"), Receipt::default());
        assert_eq!(a.invocation_id.as_deref(), Some("inv-1"));
        assert_eq!(a.dedup_key, b.dedup_key);
    }

    #[test]
    fn not_json_goes_to_quarantine_with_its_bytes() {
        let ingestor = Ingestor::new(1024);
        let incoming = ingestor.prepare(Bytes::from_static(b"\xff\xfe"), Receipt::default());
        assert_eq!(&incoming.raw[..], b"\xff\xfe");
        match incoming.content {
            Content::Quarantine(q) => assert_eq!(q.reason, QuarantineReason::NotJson),
            Content::Event(_) => panic!("not JSON must not be an event"),
        }
    }
}
