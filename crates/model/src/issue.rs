//! What validation reports: [`Issue`]s with wire-name paths, the [`Mode`] that decides which of
//! them are errors, and the [`Error`] of the convenience constructors.

use std::fmt;

use serde_json::Value;

use crate::ProvisioningCompleted;

/// How strictly a document is held to the published schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// The default, used for ingestion: what ISC is known to send beyond the published schema
    /// (unknown fields, unknown enum values, multi-valued `attributeValue`, `null` in
    /// `accountId`) is accepted and reported as a warning.
    #[default]
    Lenient,
    /// The published schema, closed: each of the lenient cases above is an error (an unknown
    /// field too, which the schema does not forbid in so many words). The `_metadata` envelope
    /// is still allowed. In both modes an `accountOperation` other than its usual values is a
    /// warning: the schema leaves it free text.
    Strict,
}

/// Limits that protect the decoder from hostile documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted document, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted nesting of arrays and objects, counting the root object as depth 1. The
    /// event's own containers count: `accountRequests` is at depth 2, an account request at 3, its
    /// `attributeRequests` at 4 and an attribute request at 5, so the schema itself needs 5, 6
    /// with a multi-valued `attributeValue`; the rest is room for unknown fields.
    ///
    /// A container deeper than this is not read (only its syntax is checked): the document gets a
    /// [`IssueKind::TooDeep`] error at the first such container and no event.
    pub max_depth: usize,
    /// Most issues of each severity listed in a [`Validation`]; the rest are counted
    /// ([`Validation::errors_not_listed`], [`Validation::warnings_not_listed`]). A document of
    /// 1 MiB can hold over a million problems (`"accountRequests": [{}, {}, …]` is four missing
    /// fields per three bytes), and listing them all would take gigabytes. At least one error is
    /// always listed, so the cap never changes whether a document is valid.
    pub max_issues: usize,
}

impl Limits {
    /// 1 MiB, the size ISC's transport implies, 64 levels of nesting, and 1,000 issues of each
    /// severity listed.
    pub const DEFAULT: Limits = Limits {
        max_bytes: 1024 * 1024,
        max_depth: 64,
        max_issues: 1000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Options of [`crate::validate_slice`] and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// Lenient (default) or strict.
    pub mode: Mode,
    /// Size and nesting limits.
    pub limits: Limits,
}

impl Options {
    /// Lenient validation with default limits.
    pub fn lenient() -> Self {
        Options::default()
    }

    /// Strict validation with default limits.
    pub fn strict() -> Self {
        Options {
            mode: Mode::Strict,
            ..Options::default()
        }
    }
}

/// Whether an issue makes the document invalid in the chosen mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The document is not a valid event.
    Error,
    /// The document is valid, but something in it is outside the published schema.
    Warning,
}

/// What kind of problem an [`Issue`] is. The message of the issue says it for people; this is
/// for programs that want to act on the kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IssueKind {
    /// A required field is not in its object.
    Missing,
    /// A required (or non-nullable) field is present with `null`.
    Null,
    /// A value has the wrong JSON type.
    WrongType {
        /// What the schema wants, e.g. `"a string"`.
        expected: &'static str,
    },
    /// An enum or known-values field holds a value the schema does not list.
    UnknownValue,
    /// A key that the schema does not define.
    UnknownField,
    /// `attributeValue` holds an array of strings (a multi-valued attribute).
    MultiValuedAttribute,
    /// The same key appears twice in one object; which one counts is ambiguous.
    DuplicateKey,
    /// Arrays and objects nest deeper than [`Limits::max_depth`].
    TooDeep,
    /// The `_metadata` envelope is malformed.
    Envelope,
}

/// One problem found in a document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Issue {
    /// Where, in wire names: `accountRequests[1].attributeRequests[0].operation`; `$` for the root.
    /// A key that is not a plain name is written quoted, `recipient["odd key"]`, and so is a key
    /// named `$`: `["$"]`.
    pub path: String,
    /// What kind of problem it is.
    pub kind: IssueKind,
    /// A sentence for people, naming the offending value where there is one.
    pub message: String,
    /// The offending value as JSON text, shortened to about 80 characters; `None` when the field is
    /// missing.
    pub value: Option<String>,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The result of validating one document that is JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation<'a> {
    /// The typed event, when the document has the shape of one (every required field present with
    /// the right type, and nothing nested deeper than [`Limits::max_depth`], which would be left
    /// unread). In strict mode it can be `Some` while `errors` lists schema extensions.
    pub event: Option<ProvisioningCompleted<'a>>,
    /// Problems that make the document invalid in the chosen mode, in document order.
    pub errors: Vec<Issue>,
    /// Problems that do not, in document order.
    pub warnings: Vec<Issue>,
    /// Errors found past [`Limits::max_issues`], counted but not listed.
    pub errors_not_listed: usize,
    /// Warnings found past [`Limits::max_issues`], counted but not listed.
    pub warnings_not_listed: usize,
}

/// The issues both readers find, as they find them: the first [`Limits::max_issues`] of each
/// severity listed, the rest only counted, before their path is even rendered.
#[derive(Debug)]
pub(crate) struct Issues {
    errors: Vec<Issue>,
    warnings: Vec<Issue>,
    errors_not_listed: usize,
    warnings_not_listed: usize,
    max: usize,
}

impl Issues {
    pub(crate) fn new(limits: &Limits) -> Self {
        Issues {
            errors: Vec::new(),
            warnings: Vec::new(),
            errors_not_listed: 0,
            warnings_not_listed: 0,
            max: limits.max_issues.max(1),
        }
    }

    /// Whether an issue of this severity is to be listed; when it is not, it is counted.
    pub(crate) fn room_for(&mut self, severity: Severity) -> bool {
        let (listed, not_listed) = match severity {
            Severity::Error => (&self.errors, &mut self.errors_not_listed),
            Severity::Warning => (&self.warnings, &mut self.warnings_not_listed),
        };
        if listed.len() < self.max {
            return true;
        }
        *not_listed += 1;
        false
    }

    /// Lists an issue that [`Issues::room_for`] made room for.
    pub(crate) fn push(&mut self, severity: Severity, issue: Issue) {
        match severity {
            Severity::Error => self.errors.push(issue),
            Severity::Warning => self.warnings.push(issue),
        }
    }

    pub(crate) fn into_validation(
        self,
        event: Option<ProvisioningCompleted<'_>>,
    ) -> Validation<'_> {
        Validation {
            event,
            errors: self.errors,
            warnings: self.warnings,
            errors_not_listed: self.errors_not_listed,
            warnings_not_listed: self.warnings_not_listed,
        }
    }
}

impl<'a> Validation<'a> {
    /// True when there are no errors (warnings are allowed).
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// The event if the document is valid, otherwise every error.
    pub fn into_result(self) -> Result<ProvisioningCompleted<'a>, Error> {
        match self.event {
            Some(event) if self.errors.is_empty() => Ok(event),
            _ => Err(Error::Invalid(self.errors)),
        }
    }
}

/// Why a document could not be read as JSON at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    /// Larger than [`Limits::max_bytes`].
    #[error("the document is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON (bad syntax, invalid UTF-8, trailing data, too deep for the parser).
    #[error("not JSON: {message} at line {line}, column {column}")]
    NotJson {
        /// What the JSON parser said.
        message: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
    },
    /// The input is empty or only whitespace.
    #[error("not JSON: the document is empty")]
    Empty,
}

impl SyntaxError {
    pub(crate) fn from_json(err: &serde_json::Error) -> Self {
        let full = err.to_string();
        // serde_json appends " at line L column C"; the position is reported separately.
        let message = match full.rfind(" at line ") {
            Some(cut) => full[..cut].to_owned(),
            None => full,
        };
        let message = match message.as_str() {
            "recursion limit exceeded" => {
                "arrays and objects nest too deeply for the parser (recursion limit exceeded)"
                    .to_owned()
            }
            // JSON's grammar allows `\ud800` alone, but it is half of a UTF-16 pair, not a
            // character, and text cannot hold it: say so rather than only "hex escape" (or
            // "leading", which serde_json says of any first half it cannot pair, `\udc00` too).
            "unexpected end of hex escape" | "lone leading surrogate in hex escape" => {
                "a `\\u` escape is one half of a UTF-16 surrogate pair (a lone surrogate) \
                 without the other half, which is not a character"
                    .to_owned()
            }
            // What serde_json says of bytes in a string that are not UTF-8.
            "invalid unicode code point" => {
                "the text is not valid UTF-8 (JSON must be UTF-8), or an escape names no \
                 character"
                    .to_owned()
            }
            _ => message,
        };
        SyntaxError::NotJson {
            message,
            line: err.line(),
            column: err.column(),
        }
    }

    /// [`SyntaxError::from_json`] for an error in `bytes`: when a byte that is not UTF-8 comes
    /// at or before where the parser stopped, that byte is the problem, and is named (the parser
    /// says only "expected value" of one outside a string).
    pub(crate) fn from_json_in(err: &serde_json::Error, bytes: &[u8]) -> Self {
        let parsed = Self::from_json(err);
        let Err(invalid) = std::str::from_utf8(bytes) else {
            return parsed;
        };
        let offset = invalid.valid_up_to();
        let before = &bytes[..offset];
        let line = 1 + before.iter().filter(|&&byte| byte == b'\n').count();
        let column = 1 + before
            .iter()
            .rposition(|&byte| byte == b'\n')
            .map_or(offset, |newline| offset - newline - 1);
        if (line, column) > (err.line(), err.column()) {
            return parsed;
        }
        SyntaxError::NotJson {
            message: format!(
                "the text is not valid UTF-8 (JSON must be UTF-8): the byte 0x{:02X} here \
                 starts no UTF-8 character",
                bytes[offset]
            ),
            line,
            column,
        }
    }
}

/// Why [`ProvisioningCompleted::from_json`] and friends gave no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input is not JSON.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    /// The input is JSON but not a valid event; every problem is listed.
    #[error("not a valid Provisioning Completed event: {}", summarize(.0))]
    Invalid(Vec<Issue>),
    /// Serializing to JSON failed (only possible through a custom writer that fails).
    #[error("cannot write JSON: {0}")]
    Write(String),
}

fn summarize(issues: &[Issue]) -> String {
    const SHOWN: usize = 3;
    let mut text = issues
        .iter()
        .take(SHOWN)
        .map(Issue::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if issues.len() > SHOWN {
        text.push_str(&format!("; and {} more", issues.len() - SHOWN));
    }
    text
}

/// One step of a path while decoding. Known field names are static, so building the path costs
/// nothing until an issue needs it rendered.
#[derive(Debug, Clone)]
pub(crate) enum Segment {
    Field(&'static str),
    Key(String),
    Index(usize),
}

pub(crate) fn render_path(segments: &[Segment], last: Option<&Segment>) -> String {
    let mut path = String::new();
    for segment in segments.iter().chain(last) {
        match segment {
            Segment::Field(name) => push_name(&mut path, name),
            Segment::Key(name) => push_name(&mut path, name),
            Segment::Index(index) => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
        }
    }
    if path.is_empty() {
        path.push('$');
    }
    path
}

/// Names that look like identifiers are written `a.b`; anything else as `["a.b"]` (JSON-quoted) so
/// that the path stays unambiguous. A key named `$` alone is quoted too: written plainly, a root
/// key `$` would read as the root itself.
fn push_name(path: &mut String, name: &str) {
    let plain = !name.is_empty()
        && name != "$"
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(name);
    } else {
        path.push('[');
        path.push_str(&Value::String(name.to_owned()).to_string());
        path.push(']');
    }
}

/// A value read whole for an issue (a value of the wrong type, an unknown field, the envelope),
/// and whether a container in it, or the value itself, nests deeper than [`Limits::max_depth`].
/// Such a container is not read, only checked for syntax, and stands in the value as an empty
/// one, so the value is incomplete: issues then say what it is instead of showing it.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) value: Value,
    pub(crate) truncated: bool,
}

impl Found {
    /// A value read completely.
    pub(crate) fn whole(value: Value) -> Found {
        Found {
            value,
            truncated: false,
        }
    }

    /// What was found, for messages: `a number: 7`, or for an incomplete value `an array that
    /// nests deeper than the limit of 5 levels`.
    pub(crate) fn text(&self, max_depth: usize) -> String {
        if self.truncated {
            format!(
                "{} that nests deeper than the limit of {}",
                describe(&self.value),
                levels(max_depth)
            )
        } else if self.value.is_null() {
            // `null` says it all: not "null: null".
            "null".to_owned()
        } else {
            format!("{}: {}", describe(&self.value), shorten(&self.value))
        }
    }

    /// [`Issue::value`]: the shortened JSON text, or nothing for an incomplete value.
    pub(crate) fn shown(&self) -> Option<String> {
        (!self.truncated).then(|| shorten(&self.value))
    }
}

/// The message of [`IssueKind::UnknownField`].
/// The note on a value of a free-text field that is not one of its usual values: the published
/// schema leaves `accountOperation` free text (only its beta listed the values), so another
/// value is news, not a fault.
pub(crate) fn unusual_value_message(name: &str, shown: &str, usual: &[&str]) -> String {
    format!(
        "`{name}` has the value {shown}, not one of the usual ones ({}); the published schema \
         leaves it free text",
        usual.join(", ")
    )
}

pub(crate) fn unknown_field_message(name: &str, found: &Found, max_depth: usize) -> String {
    if found.truncated {
        format!(
            "unknown field `{name}` (not in the published schema) with {}",
            found.text(max_depth)
        )
    } else {
        format!(
            "unknown field `{name}` (not in the published schema) with value {}",
            shorten(&found.value)
        )
    }
}

/// The message and shown value of [`IssueKind::DuplicateKey`]: `first` is the value kept, where
/// it is at hand as JSON (a known field's is already read into its type), `again` the later one.
pub(crate) fn duplicate_key_message(
    name: &str,
    first: Option<&Value>,
    again: &Found,
) -> (String, Option<String>) {
    // The first value is shown from where it is kept, never copied: a key repeated many times
    // after a large value would copy it once per repetition.
    let values = match (first.map(shorten), again.shown()) {
        (Some(first), Some(again)) => format!(": first {first}, then {again}"),
        (None, Some(again)) => format!(" (again with value {again})"),
        (Some(first), None) => format!(" (first with value {first})"),
        (None, None) => String::new(),
    };
    (
        format!(
            "the key `{name}` appears more than once in this object, so its value is \
             ambiguous{values}"
        ),
        again.shown(),
    )
}

/// "1 level", "5 levels".
pub(crate) fn levels(count: usize) -> String {
    if count == 1 {
        "1 level".to_owned()
    } else {
        format!("{count} levels")
    }
}

/// The message of [`IssueKind::TooDeep`], for the first container (`"array"` or `"object"`) that
/// nests deeper than the limit.
pub(crate) fn too_deep_message(container: &str, max_depth: usize) -> String {
    format!(
        "this {container} nests deeper than the limit of {} of arrays and objects, so it is not read",
        levels(max_depth)
    )
}

/// JSON text of a value, shortened to about `MAX` characters for messages.
pub(crate) fn shorten(value: &Value) -> String {
    const MAX: usize = 80;
    // Written only as far as it is shown: a message about a key repeated many times after a
    // megabyte string would otherwise write (and scan) the megabyte once per repetition.
    let mut preview = Preview {
        text: String::new(),
        chars: 0,
        limit: MAX + 1,
    };
    preview.value(value);
    if preview.chars <= MAX {
        return preview.text;
    }
    let mut short: String = preview.text.chars().take(MAX).collect();
    short.push('…');
    short
}

/// The start of a value's JSON text as `serde_json` writes it (compact), up to `limit`
/// characters.
struct Preview {
    text: String,
    chars: usize,
    limit: usize,
}

impl Preview {
    fn full(&self) -> bool {
        self.chars >= self.limit
    }

    fn push(&mut self, c: char) {
        if !self.full() {
            self.text.push(c);
            self.chars += 1;
        }
    }

    fn push_str(&mut self, text: &str) {
        for c in text.chars() {
            if self.full() {
                return;
            }
            self.push(c);
        }
    }

    fn string(&mut self, text: &str) {
        self.push('"');
        for c in text.chars() {
            if self.full() {
                return;
            }
            match c {
                '"' => self.push_str("\\\""),
                '\\' => self.push_str("\\\\"),
                '\n' => self.push_str("\\n"),
                '\r' => self.push_str("\\r"),
                '\t' => self.push_str("\\t"),
                '\u{8}' => self.push_str("\\b"),
                '\u{c}' => self.push_str("\\f"),
                c if c < ' ' => self.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => self.push(c),
            }
        }
        self.push('"');
    }

    fn value(&mut self, value: &Value) {
        if self.full() {
            return;
        }
        match value {
            Value::Null => self.push_str("null"),
            Value::Bool(true) => self.push_str("true"),
            Value::Bool(false) => self.push_str("false"),
            // Kept as written (`arbitrary_precision`): its text is at hand, not made.
            Value::Number(number) => self.push_str(number.as_str()),
            Value::String(text) => self.string(text),
            Value::Array(items) => {
                self.push('[');
                for (index, item) in items.iter().enumerate() {
                    if self.full() {
                        return;
                    }
                    if index > 0 {
                        self.push(',');
                    }
                    self.value(item);
                }
                self.push(']');
            }
            Value::Object(members) => {
                self.push('{');
                for (index, (key, member)) in members.iter().enumerate() {
                    if self.full() {
                        return;
                    }
                    if index > 0 {
                        self.push(',');
                    }
                    self.string(key);
                    self.push(':');
                    self.value(member);
                }
                self.push('}');
            }
        }
    }
}

/// "a string", "a number", … for messages about what was found.
pub(crate) fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What a required field with listed values must be, in the message of its absence: the values
/// the published schema lists (another value is a schema extension, kept; see
/// [`IssueKind::UnknownValue`]). In step with the enums' `KNOWN` (a test checks).
pub(crate) mod expected {
    /// `type` of the recipient and requester ([`crate::IdentityType`]).
    pub(crate) const IDENTITY_TYPE: &str = "a string: \"IDENTITY\"";
    /// `type` of a source reference ([`crate::SourceType`]).
    pub(crate) const SOURCE_TYPE: &str = "a string: \"SOURCE\"";
    /// `provisioningResult` ([`crate::ProvisioningResult`]).
    pub(crate) const RESULT: &str = "a string: \"SUCCESS\", \"PENDING\" or \"FAILED\"";
    /// `operation` of an attribute request ([`crate::AttributeOperation`]).
    pub(crate) const OPERATION: &str = "a string: \"Add\", \"Set\" or \"Remove\"";
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_expected_values_of_a_missing_field_are_the_schemas() {
        fn listed(known: &[&str]) -> String {
            let quoted: Vec<String> = known.iter().map(|value| format!("\"{value}\"")).collect();
            match quoted.split_last() {
                Some((last, [])) => format!("a string: {last}"),
                Some((last, rest)) => format!("a string: {} or {last}", rest.join(", ")),
                None => unreachable!("every enum lists a value"),
            }
        }
        use super::expected;
        assert_eq!(expected::IDENTITY_TYPE, listed(crate::IdentityType::KNOWN));
        assert_eq!(expected::SOURCE_TYPE, listed(crate::SourceType::KNOWN));
        assert_eq!(expected::RESULT, listed(crate::ProvisioningResult::KNOWN));
        assert_eq!(
            expected::OPERATION,
            listed(crate::AttributeOperation::KNOWN)
        );
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn what_was_found_is_named_once_for_null() {
        assert_eq!(Found::whole(Value::Null).text(5), "null");
        assert_eq!(Found::whole(json!(7)).text(5), "a number: 7");
    }

    #[test]
    fn a_shortened_value_is_the_start_of_its_json_text() {
        let long = "é\"\\\n\u{1}x".repeat(40);
        for value in [
            json!(null),
            json!(true),
            json!(1.50),
            json!("short"),
            json!(long),
            json!([1, "two", null, [false], {"k": long}]),
            json!({"a\"b": [1, 2, 3], "c": {"d": "\t"}, "e": long}),
            serde_json::from_str::<Value>(&format!("[{}]", "123456789".repeat(30))).unwrap(),
        ] {
            let text = value.to_string();
            let expected = if text.chars().count() <= 80 {
                text
            } else {
                format!("{}…", text.chars().take(80).collect::<String>())
            };
            assert_eq!(shorten(&value), expected);
        }
    }

    #[test]
    fn paths_use_wire_names_dots_and_indexes() {
        let segments = [
            Segment::Field("accountRequests"),
            Segment::Index(1),
            Segment::Field("attributeRequests"),
            Segment::Index(0),
            Segment::Field("operation"),
        ];
        assert_eq!(
            render_path(&segments, None),
            "accountRequests[1].attributeRequests[0].operation"
        );
        assert_eq!(render_path(&[], None), "$");
        assert_eq!(render_path(&[], Some(&Segment::Index(3))), "[3]");
    }

    #[test]
    fn odd_keys_are_quoted() {
        let segments = [Segment::Key("a.b c".into()), Segment::Key("x".into())];
        assert_eq!(render_path(&segments, None), r#"["a.b c"].x"#);
    }

    #[test]
    fn a_key_named_dollar_is_quoted_so_that_it_is_not_the_root() {
        assert_eq!(render_path(&[Segment::Key("$".into())], None), r#"["$"]"#);
        let nested = [Segment::Field("recipient"), Segment::Key("$".into())];
        assert_eq!(render_path(&nested, None), r#"recipient["$"]"#);
        for plain in ["$x", "x$", "$$", "with-dash_and_$"] {
            assert_eq!(render_path(&[Segment::Key(plain.into())], None), plain);
        }
    }

    #[test]
    fn long_values_are_shortened() {
        let long = Value::String("x".repeat(500));
        let short = shorten(&long);
        assert!(short.chars().count() <= 81);
        assert!(short.ends_with('…'));
    }
}
