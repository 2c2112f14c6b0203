//! The fast writer behind [`ProvisioningCompleted::to_json`] and
//! [`ProvisioningCompleted::write_json`]: compact JSON written straight into a buffer.
//!
//! It writes byte for byte what `serde_json::to_string` writes through the `Serialize` impls in
//! [`crate::encode`] (which stay for `to_value`, pretty output and embedding in other serde
//! types): the same key order, the same escapes (`\"`, `\\`, the short forms `\b \f \n \r \t`, and
//! `\u00XX` with lowercase hex for the other control characters; nothing else, not `/` nor
//! non-ASCII), and `extra` values written by serde_json itself. What makes it fast: keys and
//! punctuation are static text, a string that needs no escape (nearly all of them) is found so with
//! a word-at-a-time test and copied in one piece, and the buffer is sized up front.

use std::borrow::Cow;

use serde_json::Value;

use crate::Maybe;
use crate::swar;
use crate::types::{
    AccountRequest, AttributeRequest, AttributeValue, Extra, IdentityRef, Metadata,
    ProvisioningCompleted, SourceRef,
};

/// Where JSON text goes: a `String` for `to_json`, a byte buffer for `write_json`. Everything
/// written is UTF-8 text, so a `String` needs no validation at the end.
pub(crate) trait Sink {
    fn text(&mut self, text: &str);
    fn reserve(&mut self, additional: usize);
    /// A value of `extra`, written by serde_json.
    fn value(&mut self, value: &Value) -> Result<(), serde_json::Error>;
}

impl Sink for String {
    #[inline(always)]
    fn text(&mut self, text: &str) {
        self.push_str(text);
    }
    fn reserve(&mut self, additional: usize) {
        String::reserve(self, additional);
    }
    fn value(&mut self, value: &Value) -> Result<(), serde_json::Error> {
        self.push_str(&serde_json::to_string(value)?);
        Ok(())
    }
}

impl Sink for Vec<u8> {
    #[inline(always)]
    fn text(&mut self, text: &str) {
        self.extend_from_slice(text.as_bytes());
    }
    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional);
    }
    fn value(&mut self, value: &Value) -> Result<(), serde_json::Error> {
        serde_json::to_writer(self, value)
    }
}

/// Compact JSON of an event, as `serde_json::to_string` writes it.
pub(crate) fn to_string(event: &ProvisioningCompleted<'_>) -> Result<String, serde_json::Error> {
    let mut out = String::new();
    write_event(&mut out, event)?;
    Ok(out)
}

/// Appends the compact JSON of an event to `out`.
pub(crate) fn write_event<S: Sink>(
    out: &mut S,
    event: &ProvisioningCompleted<'_>,
) -> Result<(), serde_json::Error> {
    out.reserve(estimate(event));
    out.text("{\"trackingNumber\":");
    string(out, &event.tracking_number);
    out.text(",\"sources\":");
    string(out, &event.sources);
    optional(out, ",\"action\":", &event.action, |out, action| {
        string(out, action)
    });
    optional(out, ",\"errors\":", &event.errors, |out, list| {
        strings(out, list)
    });
    optional(out, ",\"warnings\":", &event.warnings, |out, list| {
        strings(out, list)
    });
    out.text(",\"recipient\":");
    identity(out, &event.recipient)?;
    if let Some(requester) = maybe(out, ",\"requester\":", &event.requester) {
        identity(out, requester)?;
    }
    out.text(",\"accountRequests\":[");
    for (index, request) in event.account_requests.iter().enumerate() {
        if index > 0 {
            out.text(",");
        }
        account_request(out, request)?;
    }
    out.text("]");
    if let Some(metadata) = &event.metadata {
        out.text(",\"_metadata\":");
        envelope(out, metadata)?;
    }
    extra(out, &event.extra, true, |key| event.writes_field(key))?;
    out.text("}");
    Ok(())
}

fn identity<S: Sink>(out: &mut S, identity: &IdentityRef<'_>) -> Result<(), serde_json::Error> {
    out.text("{\"type\":");
    string(out, identity.kind.as_wire());
    out.text(",\"id\":");
    string(out, &identity.id);
    out.text(",\"name\":");
    string(out, &identity.name);
    extra(out, &identity.extra, true, |key| identity.writes_field(key))?;
    out.text("}");
    Ok(())
}

fn source<S: Sink>(out: &mut S, source: &SourceRef<'_>) -> Result<(), serde_json::Error> {
    out.text("{\"id\":");
    string(out, &source.id);
    out.text(",\"type\":");
    string(out, source.kind.as_wire());
    out.text(",\"name\":");
    string(out, &source.name);
    extra(out, &source.extra, true, |key| source.writes_field(key))?;
    out.text("}");
    Ok(())
}

fn account_request<S: Sink>(
    out: &mut S,
    request: &AccountRequest<'_>,
) -> Result<(), serde_json::Error> {
    out.text("{\"source\":");
    source(out, &request.source)?;
    optional(out, ",\"accountId\":", &request.account_id, |out, id| {
        string(out, id)
    });
    out.text(",\"accountOperation\":");
    string(out, &request.account_operation);
    out.text(",\"provisioningResult\":");
    string(out, request.provisioning_result.as_wire());
    out.text(",\"provisioningTarget\":");
    string(out, &request.provisioning_target);
    optional(out, ",\"ticketId\":", &request.ticket_id, |out, id| {
        string(out, id)
    });
    if let Some(requests) = maybe(out, ",\"attributeRequests\":", &request.attribute_requests) {
        out.text("[");
        for (index, request) in requests.iter().enumerate() {
            if index > 0 {
                out.text(",");
            }
            attribute_request(out, request)?;
        }
        out.text("]");
    }
    extra(out, &request.extra, true, |key| request.writes_field(key))?;
    out.text("}");
    Ok(())
}

fn attribute_request<S: Sink>(
    out: &mut S,
    request: &AttributeRequest<'_>,
) -> Result<(), serde_json::Error> {
    out.text("{\"attributeName\":");
    string(out, &request.attribute_name);
    optional(
        out,
        ",\"attributeValue\":",
        &request.attribute_value,
        |out, value| match value {
            AttributeValue::Single(value) => string(out, value),
            AttributeValue::Multi(values) => strings(out, values),
        },
    );
    out.text(",\"operation\":");
    string(out, request.operation.as_wire());
    extra(out, &request.extra, true, |key| request.writes_field(key))?;
    out.text("}");
    Ok(())
}

fn envelope<S: Sink>(out: &mut S, metadata: &Metadata<'_>) -> Result<(), serde_json::Error> {
    out.text("{");
    let mut first = true;
    for (key, value) in [
        ("\"triggerId\":", &metadata.trigger_id),
        ("\"triggerType\":", &metadata.trigger_type),
        ("\"invocationId\":", &metadata.invocation_id),
    ] {
        if let Some(value) = value {
            if !first {
                out.text(",");
            }
            first = false;
            out.text(key);
            string(out, value);
        }
    }
    extra(out, &metadata.extra, !first, |key| {
        metadata.writes_field(key)
    })?;
    out.text("}");
    Ok(())
}

/// The keys the schema does not define, after the known ones (`after_field`: a comma first),
/// except those that name a field the object writes (`written`): see [`Extra`].
fn extra<S: Sink>(
    out: &mut S,
    extra: &Extra,
    after_field: bool,
    written: impl Fn(&str) -> bool,
) -> Result<(), serde_json::Error> {
    if extra.is_empty() {
        return Ok(());
    }
    let mut comma = after_field;
    for (key, value) in extra {
        if written(key) {
            continue;
        }
        if comma {
            out.text(",");
        }
        comma = true;
        string(out, key);
        out.text(":");
        out.value(value)?;
    }
    Ok(())
}

/// A field that may be absent (left out), `null`, or hold a value.
#[inline(always)]
fn optional<S: Sink, T>(
    out: &mut S,
    key: &'static str,
    field: &Maybe<T>,
    write: impl FnOnce(&mut S, &T),
) {
    if let Some(value) = maybe(out, key, field) {
        write(out, value);
    }
}

/// Writes the key of a field that is not absent, and `null` for a null one; the value, if there
/// is one, is left for the caller to write.
#[inline(always)]
fn maybe<'f, S: Sink, T>(out: &mut S, key: &'static str, field: &'f Maybe<T>) -> Option<&'f T> {
    match field {
        Maybe::Absent => None,
        Maybe::Null => {
            out.text(key);
            out.text("null");
            None
        }
        Maybe::Value(value) => {
            out.text(key);
            Some(value)
        }
    }
}

fn strings<S: Sink>(out: &mut S, list: &[Cow<'_, str>]) {
    out.text("[");
    for (index, item) in list.iter().enumerate() {
        if index > 0 {
            out.text(",");
        }
        string(out, item);
    }
    out.text("]");
}

/// A JSON string: copied in one piece when nothing in it needs an escape.
#[inline]
fn string<S: Sink>(out: &mut S, text: &str) {
    let bytes = text.as_bytes();
    let special = swar::string_special(bytes, 0);
    out.text("\"");
    if special == bytes.len() {
        out.text(text);
    } else {
        escaped(out, text, special);
    }
    out.text("\"");
}

/// The rest of a string from its first byte that needs an escape, at `at`.
#[cold]
#[inline(never)]
fn escaped<S: Sink>(out: &mut S, text: &str, mut at: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(&byte) = bytes.get(at) {
        // Every byte that needs an escape is ASCII, so `from` and `at` are character boundaries.
        out.text(text.get(from..at).unwrap_or_default());
        let short = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            _ => "",
        };
        if short.is_empty() {
            // `byte` is a control character here, so both nibbles index `HEX`.
            let code = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ];
            out.text(std::str::from_utf8(&code).unwrap_or_default());
        } else {
            out.text(short);
        }
        from = at + 1;
        at = swar::string_special(bytes, from);
    }
    out.text(text.get(from..).unwrap_or_default());
}

/// A size that the JSON of `event` usually fits in, so that the buffer grows at most once: the
/// text of every string plus the keys and punctuation around it.
fn estimate(event: &ProvisioningCompleted<'_>) -> usize {
    fn text_len(field: &Maybe<Cow<'_, str>>) -> usize {
        field.as_option().map_or(0, |text| text.len() + 24)
    }
    fn list_len(field: &Maybe<Vec<Cow<'_, str>>>) -> usize {
        field.as_option().map_or(0, |list| {
            16 + list.iter().map(|text| text.len() + 3).sum::<usize>()
        })
    }
    fn identity_len(identity: &IdentityRef<'_>) -> usize {
        64 + identity.id.len() + identity.name.len() + 64 * identity.extra.len()
    }
    const PER_EXTRA: usize = 64;
    let mut size = 96
        + event.tracking_number.len()
        + event.sources.len()
        + text_len(&event.action)
        + list_len(&event.errors)
        + list_len(&event.warnings)
        + identity_len(&event.recipient)
        + event.requester.as_option().map_or(16, identity_len)
        + if event.metadata.is_some() { 160 } else { 0 }
        + PER_EXTRA * event.extra.len();
    for request in &event.account_requests {
        size += 150
            + request.source.id.len()
            + request.source.name.len()
            + text_len(&request.account_id)
            + request.account_operation.len()
            + request.provisioning_target.len()
            + text_len(&request.ticket_id)
            + PER_EXTRA * (request.extra.len() + request.source.extra.len());
        for attribute in request.attribute_requests.as_option().into_iter().flatten() {
            size += 64
                + attribute.attribute_name.len()
                + PER_EXTRA * attribute.extra.len()
                + match attribute.attribute_value.as_option() {
                    Some(AttributeValue::Single(value)) => value.len() + 20,
                    Some(AttributeValue::Multi(values)) => {
                        24 + values.iter().map(|value| value.len() + 3).sum::<usize>()
                    }
                    None => 24,
                };
        }
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every: String = (0u8..0x80).map(char::from).collect();
        every.push_str("é€😀/\u{7f}\u{80}\u{2028}");
        for text in [
            every.as_str(),
            "",
            "plain",
            "\"",
            "\\",
            "a\u{1f}b",
            "0123456789abcdef\n",
        ] {
            let mut out = String::new();
            string(&mut out, text);
            assert_eq!(out, serde_json::to_string(text).unwrap(), "{text:?}");
            let mut bytes = Vec::new();
            string(&mut bytes, text);
            assert_eq!(bytes, out.as_bytes());
        }
    }
}
