//! The fast reader behind [`crate::validate_slice`] and [`crate::validate_str`]: a hand-written,
//! schema-directed JSON parser that builds the event straight from the bytes.
//!
//! It must give exactly what the serde-based reader in [`crate::decode`] gives (that reader stays
//! as the reference, behind `validate_value` and `Deserialize`, and the differential tests compare
//! the two), so it mirrors that reader decision by decision; the comments name the serde_json or
//! visitor behaviour each branch reproduces. What makes it fast:
//!
//! - the input is checked as UTF-8 once, so every string without escapes is borrowed as a slice of
//!   the input, found by a sixteen-bytes-at-a-time scan ([`crate::swar`]);
//! - the layout of the document (compact, or pretty-printed with some indent) is learned from its
//!   first key, so the whitespace and separators between keys, elements and brackets are compared
//!   in one step rather than measured ([`Parser::learn_layout`]);
//! - the fields of each schema object are read straight in schema order while the keys come in
//!   that order (`schema_fields!`), known keys and enum values are matched by their bytes, and
//!   every value is written straight into its place in the event, account and attribute requests
//!   in their `Vec`s;
//! - the path of schema objects lives in a small fixed array; issues render it only when one is
//!   recorded, and `serde_json::Value`s are built only for unknown fields, values of the wrong
//!   type and the `_metadata` envelope.
//!
//! **Errors take the reference path.** When the input is not JSON (or not UTF-8), this parser only
//! says so, and the reference reader runs on the same bytes to produce the [`SyntaxError`] with
//! serde_json's own message and position. So the fast parser must *accept and reject* exactly what
//! serde_json does, including its quirks: a value that the reference skips unread (the repeated
//! value of a known key, the inside of a container nested too deep) is only checked for syntax,
//! not for `\u` surrogate pairs, and counts no nesting, while everything that is
//! read counts towards serde_json's limit of 128 nested containers. Input that is not UTF-8 always
//! takes the reference path, since serde_json accepts invalid UTF-8 inside skipped values.

use std::borrow::Cow;
use std::str::FromStr;

use serde_json::{Map, Number, Value};

use crate::issue::{
    Found, Issue, IssueKind, Issues, Mode, Options, Segment, Severity, duplicate_key_message,
    expected, render_path, shorten, too_deep_message, unknown_field_message, unusual_value_message,
};
use crate::types::{
    AccountRequest, AttributeOperation, AttributeRequest, AttributeValue, Extra, IdentityRef,
    IdentityType, Metadata, ProvisioningCompleted, ProvisioningResult, SourceRef, SourceType,
};
use crate::{AccountOperation, Maybe, SyntaxError, Validation, decode, swar};

/// A key as [`Parser::eat_key`] guesses it: `name":`, and `name": ` as pretty printers write it.
macro_rules! key {
    ($name:literal) => {
        (
            concat!($name, "\":").as_bytes(),
            concat!($name, "\": ").as_bytes(),
        )
    };
}

/// Tries the known values of a field, each as its exact quoted text, at a string's opening quote:
/// the first that the input has is consumed and written to `slot`, and the reader returns. A
/// chain of compares, each against constant text; a loop over a table of the values would build
/// and drop the table every time.
macro_rules! known_value {
    ($this:ident, $slot:ident, [$($text:literal => $value:expr),+ $(,)?]) => {
        $(
            if $this.eat(concat!("\"", $text, "\"").as_bytes()) {
                *$slot = $value;
                return Ok(true);
            }
        )+
    };
}

/// Reads the keys of a schema object after its `{`, up to its `}`, and gives which of its fields
/// were seen (bits by index) and whether one of them could not be typed.
///
/// `[index "key" required, …]` lists the fields in schema order, and `others` keys that the
/// object knows but that come after them (`_metadata`). `|index| read` reads the value of the
/// field `index` into its place and gives whether it is typed; unknown keys go to `extra`;
/// `names` names the fields for the report of a repeated key.
///
/// Events list their fields in schema order, so the keys are first read straight in that order,
/// each compared where it is expected, optional ones passed over when absent; at the first key
/// out of that order the general loop takes over, which still guesses that the next key is the
/// one after the last, and otherwise reads the key and looks it up.
macro_rules! schema_fields {
    (
        $this:ident, $kind:expr, $extra:expr, $names:expr,
        [$($index:literal $key:literal $required:literal),+ $(,)?]
        $(others [$($other:literal $other_key:literal),+])?,
        |$field:ident| $read:expr
    ) => {{
        let mut seen = 0u32;
        let mut bad = false;
        let mut first = true;
        let mut next = 0usize;
        let in_order = 'ordered: {
            $(
                if $this.key_is(&mut first, $kind, key!($key))? {
                    let $field: usize = $index;
                    let typed: bool = $read;
                    bad |= !typed;
                    seen |= 1 << $index;
                    next = $index + 1;
                } else if $required {
                    break 'ordered false;
                }
            )+
            true
        };
        // Usually the object ends right after its last field.
        let ended = in_order && $this.object_ends($kind);
        while !ended && $this.before_schema_key(&mut first, $kind)? {
            let guessed = match next {
                $($index => $this.eat_key(key!($key)),)+
                _ => false,
            };
            let $field: usize = if guessed {
                next
            } else {
                let key = $this.key_rest()?;
                match key.as_ref() {
                    $($key => $index,)+
                    $($($other_key => $other,)+)?
                    _ => {
                        $this.unknown_field(key, $extra)?;
                        continue;
                    }
                }
            };
            next = $field + 1;
            if !first_time(&mut seen, $field) {
                $this.repeated($names.get($field).copied().unwrap_or_default())?;
                continue;
            }
            let typed: bool = $read;
            bad |= !typed;
        }
        (seen, bad)
    }};
}

/// serde_json refuses the 128th nested array or object that it reads (the root counts as 1).
const RECURSION_LIMIT: usize = 128;

/// A newline and fifteen spaces, as one little-endian word.
const NEWLINE_INDENT: u128 = u128::from_le_bytes(*b"\n               ");

/// Deepest nesting of schema objects and arrays (`accountRequests[i].attributeRequests[j]`).
const MAX_FRAMES: usize = 8;

const STRING: &str = "a string";
const OBJECT: &str = "an object";
const STRINGS: &str = "an array of strings";
const OBJECTS: &str = "an array of objects";

/// Validates a document held in bytes: the fast path, or the reference reader when the bytes are
/// not UTF-8 or not JSON.
#[inline]
pub(crate) fn validate_slice<'a>(
    bytes: &'a [u8],
    options: &Options,
) -> Result<Validation<'a>, SyntaxError> {
    if bytes.len() > options.limits.max_bytes {
        return Err(too_large(bytes.len(), options));
    }
    // One check of the whole input up front, so that every string can then be borrowed as a
    // slice of it. simdutf8 gives the same answer as `std::str::from_utf8`, several times faster
    // on the mostly ASCII text of an event.
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => validate_str(text, options),
        Err(_) => decode::validate_slice(bytes, options),
    }
}

/// Validates a document held in a string: the fast path, or the reference reader when it is not
/// JSON.
#[inline(never)]
pub(crate) fn validate_str<'a>(
    text: &'a str,
    options: &Options,
) -> Result<Validation<'a>, SyntaxError> {
    if text.len() > options.limits.max_bytes {
        return Err(too_large(text.len(), options));
    }
    // The event is written straight into its place in the result: it is large, and moving it
    // through return values costs more than reading a small document. Not inlined: inlined into
    // `validate_slice` and its caller it took more instructions in all (about 75 more per
    // `doc_example.json` parse under callgrind). Either way the validation (368 bytes) is copied
    // once into the caller's result.
    let mut parser = Parser::new(text, options);
    let mut validation = Validation {
        event: None,
        errors: Vec::new(),
        warnings: Vec::new(),
        errors_not_listed: 0,
        warnings_not_listed: 0,
    };
    match parser.run(&mut validation.event) {
        Ok(()) => {
            let found = parser.issues.into_validation(None);
            validation.errors = found.errors;
            validation.warnings = found.warnings;
            validation.errors_not_listed = found.errors_not_listed;
            validation.warnings_not_listed = found.warnings_not_listed;
            Ok(validation)
        }
        Err(Reject) => decode::validate_slice(text.as_bytes(), options),
    }
}

/// The fast parser alone, for the differential tests: `None` when it declines (too large, not
/// UTF-8, not JSON), where [`validate_slice`] hands over to the reference reader.
pub(crate) fn validate_fast_only<'a>(bytes: &'a [u8], options: &Options) -> Option<Validation<'a>> {
    if bytes.len() > options.limits.max_bytes {
        return None;
    }
    let text = simdutf8::basic::from_utf8(bytes).ok()?;
    let mut parser = Parser::new(text, options);
    let mut event = None;
    parser.run(&mut event).ok()?;
    Some(parser.issues.into_validation(event))
}

fn too_large(size: usize, options: &Options) -> SyntaxError {
    SyntaxError::TooLarge {
        size,
        limit: options.limits.max_bytes,
    }
}

/// The input is not JSON as serde_json reads it; the reference reader says why and where.
#[derive(Debug)]
struct Reject;

type Step<T> = Result<T, Reject>;

/// One level of the path through the schema's own objects and arrays.
#[derive(Debug, Clone, Copy)]
enum Frame {
    Field(&'static str),
    Index(usize),
}

/// What a field's value may be besides its expected type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Required and not nullable: `null` is an error.
    Required,
    /// Optional and nullable.
    Nullable,
    /// Optional, not nullable in the schema: `null` is a schema extension (`accountId`).
    NotNullable,
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    mode: Mode,
    max_depth: usize,
    /// The path through schema objects and arrays; `depth` of them are in use.
    frames: [Frame; MAX_FRAMES],
    depth: usize,
    /// The path below the frames, inside values read as `serde_json::Value` (unknown fields,
    /// values of the wrong type, `_metadata`). Always deeper than every frame.
    keys: Vec<Segment>,
    issues: Issues,
    /// How many containers were too deep to read; the first one is reported.
    skipped: usize,
    /// The separator last seen between two keys, per kind of schema object.
    separators: [Separator; 5],
    /// Spaces per level of indentation when the document is pretty-printed (see
    /// [`Parser::learn_layout`]); 0 when it is not, or not in a way that is recognised.
    indent: usize,
    /// Length of the last `accountRequests` and `attributeRequests` lists.
    list_hints: [usize; 2],
}

/// What a document writes between two keys of an object: `len` bytes (at most 16) equal to the
/// low bytes of `pattern`; `mask` selects them.
#[derive(Debug, Clone, Copy)]
struct Separator {
    pattern: u128,
    mask: u128,
    len: usize,
}

impl Separator {
    /// Nothing learned yet: sixteen `0xff` bytes, which UTF-8 text never has, so that the
    /// comparison fails without a separate test.
    const UNLEARNED: Separator = Separator {
        pattern: u128::MAX,
        mask: u128::MAX,
        len: 0,
    };
}

/// Largest capacity a list of schema objects starts with.
const MAX_LIST_HINT: usize = 64;

/// Kinds of schema object, for [`Parser::before_schema_key`].
const EVENT: usize = 0;
const IDENTITY: usize = 1;
const ACCOUNT: usize = 2;
const SOURCE: usize = 3;
const ATTRIBUTE: usize = 4;

/// How deep the keys of each kind of schema object are (the root's are at 1), which the schema
/// fixes: `recipient.id` at 2, `accountRequests[i].accountId` at 3, `….source.id` at 4,
/// `….attributeRequests[j].operation` at 5.
const KEY_DEPTH: [usize; 5] = [1, 2, 3, 4, 5];

/// How deep the elements of `accountRequests`, `attributeRequests` and `errors`/`warnings` are.
const ACCOUNT_DEPTH: usize = 2;
const ATTRIBUTE_DEPTH: usize = 4;
const MESSAGE_DEPTH: usize = 2;

impl<'a> Parser<'a> {
    fn new(text: &'a str, options: &Options) -> Self {
        Parser {
            text,
            pos: 0,
            mode: options.mode,
            max_depth: options.limits.max_depth,
            frames: [Frame::Index(0); MAX_FRAMES],
            depth: 0,
            keys: Vec::new(),
            issues: Issues::new(&options.limits),
            skipped: 0,
            separators: [Separator::UNLEARNED; 5],
            indent: 0,
            list_hints: [0; 2],
        }
    }

    /// The input as bytes. Taken from `text` each time rather than kept aside, so that the
    /// compiler sees that both are the same memory: a byte just compared with a quote is then
    /// known to be a character boundary, and the checks of slicing `text` at it fold away.
    #[inline(always)]
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The whole document: one value and nothing after it but whitespace. The event, when the
    /// document has the shape of one, is written to `event`.
    fn run(&mut self, event: &mut Option<ProvisioningCompleted<'a>>) -> Step<()> {
        match self.peek() {
            None => return Err(Reject),
            Some(b'{') => self.event(event)?,
            Some(_) => self.root_not_an_object()?,
        }
        if self.peek().is_some() {
            return Err(Reject);
        }
        // Something was left unread for nesting too deep: an event would not hold what the
        // document says (the reference's `Ctx::finish`).
        if self.skipped > 0 {
            *event = None;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Tokens

    /// Skips whitespace and returns the next byte without consuming it.
    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        let byte = *self.bytes().get(self.pos)?;
        // Every JSON whitespace byte is at most a space; most tokens follow none.
        if byte > b' ' {
            return Some(byte);
        }
        self.skip_whitespace()
    }

    /// Whether the next token (after whitespace) is a string, at its opening quote, which is not
    /// consumed: [`Self::peek`] compared with a quote, with the quote tested first, since values
    /// usually follow their key's `": ` directly.
    #[inline(always)]
    fn at_string(&mut self) -> bool {
        match self.bytes().get(self.pos) {
            Some(b'"') => true,
            Some(&byte) if byte > b' ' => false,
            _ => self.skip_whitespace() == Some(b'"'),
        }
    }

    #[inline(never)]
    fn skip_whitespace(&mut self) -> Option<u8> {
        // Pretty printers write a newline and an indent of spaces between tokens: one test of
        // sixteen bytes skips the usual case.
        if let Some(chunk) = self
            .bytes()
            .get(self.pos..)
            .and_then(<[u8]>::first_chunk::<16>)
        {
            let other = u128::from_le_bytes(*chunk) ^ NEWLINE_INDENT;
            self.pos += (other.trailing_zeros() / 8) as usize;
        }
        loop {
            match *self.bytes().get(self.pos)? {
                b' ' | b'\n' | b'\r' | b'\t' => {
                    self.pos += 1;
                    // Pretty-printed JSON indents with runs of spaces: skip them 8 at a time.
                    while let Some(spaces) = swar::leading_spaces(self.bytes(), self.pos) {
                        self.pos += spaces;
                        if spaces < 8 {
                            break;
                        }
                    }
                }
                byte => return Some(byte),
            }
        }
    }

    /// Consumes `byte` (after whitespace) or rejects.
    #[inline(always)]
    fn expect(&mut self, byte: u8) -> Step<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Reject)
        }
    }

    /// `null`, `true` or `false` at the current position (serde_json's `parse_ident`).
    fn literal(&mut self, word: &[u8]) -> Step<()> {
        let end = self.pos + word.len();
        if self.bytes().get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            Err(Reject)
        }
    }

    /// Consumes `expected` if the input continues with it.
    #[inline(always)]
    fn eat(&mut self, expected: &'static [u8]) -> bool {
        let end = self.pos + expected.len();
        if self.bytes().get(self.pos..end) == Some(expected) {
            self.pos = end;
            true
        } else {
            false
        }
    }

    /// A guess at the next key, given (by [`key!`]) as its text, closing quote and colon, without
    /// and with the space that pretty printers write after the colon: consumes it when the input
    /// has exactly that. Events list their fields in schema order, so the guess is nearly always
    /// right, and a key that is guessed is matched with a couple of word compares instead of being
    /// scanned. A space the guess leaves is skipped as whitespace before the value.
    #[inline(always)]
    fn eat_key(&mut self, (key_quote_colon, with_space): (&'static [u8], &'static [u8])) -> bool {
        if self.indent != 0 && self.eat(with_space) {
            return true;
        }
        self.eat(key_quote_colon)
    }

    /// Before each key of an object: `}` ends it (`false`), otherwise a `,` unless it is the first
    /// key, then the key's opening quote. Trailing commas are rejected.
    #[inline(always)]
    fn before_key(&mut self, first: &mut bool) -> Step<bool> {
        let mut byte = self.peek().ok_or(Reject)?;
        if byte == b'}' {
            self.pos += 1;
            return Ok(false);
        }
        if *first {
            *first = false;
        } else {
            if byte != b',' {
                return Err(Reject);
            }
            self.pos += 1;
            byte = self.peek().ok_or(Reject)?;
        }
        if byte != b'"' {
            return Err(Reject);
        }
        self.pos += 1;
        Ok(true)
    }

    /// [`Self::before_key`] in an object of the schema, of one of the kinds `EVENT` … `ATTRIBUTE`.
    ///
    /// Between two keys a document repeats the same bytes (`,"` when compact; a comma, a newline
    /// and the indent of that level when pretty-printed), so the separator seen last in objects of
    /// the same kind is remembered and compared in one step before anything is scanned. In a
    /// pretty-printed document, the first key and the closing brace are also preceded by a newline
    /// and an indent that the depth of the object fixes, compared the same way.
    #[inline(always)]
    fn before_schema_key(&mut self, first: &mut bool, kind: usize) -> Step<bool> {
        let depth = KEY_DEPTH.get(kind).copied().unwrap_or(1);
        if *first {
            if self.indent != 0 && self.indented(self.pos, self.indent * depth, b'"') {
                *first = false;
                self.pos += self.indent * depth + 2;
                return Ok(true);
            }
            return self.before_key(first);
        }
        if let (Some(separator), Some(chunk)) = (
            self.separators.get(kind),
            self.bytes()
                .get(self.pos..)
                .and_then(<[u8]>::first_chunk::<16>),
        ) {
            if (u128::from_le_bytes(*chunk) ^ separator.pattern) & separator.mask == 0 {
                self.pos += separator.len;
                return Ok(true);
            }
        }
        let closing = self.indent * (depth - 1);
        if self.indent != 0 && self.indented(self.pos, closing, b'}') {
            self.pos += closing + 2;
            return Ok(false);
        }
        let start = self.pos;
        let more = self.before_key(first)?;
        if more {
            self.learn_separator(kind, start);
        }
        Ok(more)
    }

    /// The closing brace of a schema object of `kind` after a value, when it comes next (after the
    /// newline and indent of its depth when the document is pretty-printed): consumed.
    #[inline(always)]
    fn object_ends(&mut self, kind: usize) -> bool {
        if self.indent == 0 {
            let ends = self.bytes().get(self.pos) == Some(&b'}');
            self.pos += usize::from(ends);
            return ends;
        }
        let depth = KEY_DEPTH.get(kind).copied().unwrap_or(1);
        let closing = self.indent * (depth - 1);
        let ends = self.indented(self.pos, closing, b'}');
        if ends {
            self.pos += closing + 2;
        }
        ends
    }

    /// The next key of a schema object, when it is `key` (see [`Self::eat_key`]): consumed with
    /// what comes before it. Otherwise nothing is consumed, for the general loop to read it.
    #[inline(always)]
    fn key_is(
        &mut self,
        first: &mut bool,
        kind: usize,
        key: (&'static [u8], &'static [u8]),
    ) -> Step<bool> {
        let (pos, was_first) = (self.pos, *first);
        if self.before_schema_key(first, kind)? && self.eat_key(key) {
            return Ok(true);
        }
        (self.pos, *first) = (pos, was_first);
        Ok(false)
    }

    /// True when the input has, at `at`, a newline, `spaces` spaces and `then`: what a pretty
    /// printer writes before a token `spaces` deep. Compared in one step, at most sixteen bytes.
    #[inline(always)]
    fn indented(&self, at: usize, spaces: usize, then: u8) -> bool {
        let len = spaces + 1;
        let (Some(&mask), Some(chunk)) = (LOW_BYTES.get(len), self.chunk(at)) else {
            return false;
        };
        (chunk ^ NEWLINE_INDENT) & mask == 0 && self.bytes().get(at + len) == Some(&then)
    }

    /// The sixteen bytes at `at` as a little-endian word; near the end of the input, the bytes
    /// left followed by zeros (which no comparison with whitespace or punctuation matches).
    #[inline(always)]
    fn chunk(&self, at: usize) -> Option<u128> {
        let rest = self.bytes().get(at..)?;
        match rest.first_chunk::<16>() {
            Some(chunk) => Some(u128::from_le_bytes(*chunk)),
            None => Some(padded(rest)),
        }
    }

    /// Looks at what comes between the root's `{` and its first key, to know the layout of the
    /// document before its keys are read. Nothing: it is compact, and the separator between keys
    /// is `,"` in every object. A newline and `n` spaces: it is pretty-printed with `n` spaces per
    /// level, and every key, element and closing bracket of the schema's objects and lists is
    /// preceded by a newline and `n` times its depth in spaces. Either way only a guess, checked
    /// each time it is used; where it does not hold the whitespace is read as usual.
    fn learn_layout(&mut self) {
        let Some(chunk) = self
            .bytes()
            .get(self.pos..)
            .and_then(<[u8]>::first_chunk::<16>)
        else {
            return;
        };
        let run = ((u128::from_le_bytes(*chunk) ^ NEWLINE_INDENT).trailing_zeros() / 8) as usize;
        if self.bytes().get(self.pos + run) != Some(&b'"') {
            return;
        }
        let indent = match run {
            0 => 0,
            2..=15 => run - 1,
            _ => return,
        };
        self.indent = indent;
        for (separator, depth) in self.separators.iter_mut().zip(KEY_DEPTH) {
            // `,`, a newline and the indent when pretty-printed, then the key's quote.
            // Taken whole from tables rather than computed here.
            let len = if indent == 0 { 2 } else { indent * depth + 3 };
            let (Some(&pattern), Some(&mask)) = (SEPARATORS.get(len), LOW_BYTES.get(len)) else {
                break;
            };
            *separator = Separator { pattern, mask, len };
        }
    }

    /// Remembers the bytes from `start` to here as the separator between keys of `kind`.
    #[inline(never)]
    fn learn_separator(&mut self, kind: usize, start: usize) {
        let len = self.pos - start;
        let chunk = self
            .bytes()
            .get(start..)
            .and_then(<[u8]>::first_chunk::<16>);
        let (Some(slot), Some(chunk), 1..=16) = (self.separators.get_mut(kind), chunk, len) else {
            return;
        };
        let mask = low_bytes(len);
        *slot = Separator {
            pattern: u128::from_le_bytes(*chunk) & mask,
            mask,
            len,
        };
    }

    /// The rest of a key after its opening quote, and its colon.
    #[inline]
    fn key_rest(&mut self) -> Step<Cow<'a, str>> {
        let key = self.string()?;
        self.expect(b':')?;
        Ok(key)
    }

    /// The next key of an object, or `None` at its end.
    fn next_key(&mut self, first: &mut bool) -> Step<Option<Cow<'a, str>>> {
        if self.before_key(first)? {
            self.key_rest().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Before each element of an array: `]` ends it (`false`), otherwise a `,` unless it is the
    /// first element. Trailing commas are rejected.
    #[inline]
    fn next_element(&mut self, first: &mut bool) -> Step<bool> {
        let byte = self.peek().ok_or(Reject)?;
        if byte == b']' {
            self.pos += 1;
            return Ok(false);
        }
        if *first {
            *first = false;
            return Ok(true);
        }
        if byte != b',' {
            return Err(Reject);
        }
        self.pos += 1;
        match self.peek() {
            Some(b']') | None => Err(Reject),
            Some(_) => Ok(true),
        }
    }

    /// [`Self::next_element`] in a list of the schema whose elements are `depth` deep and start
    /// with `opening`: in a pretty-printed document, the whitespace before each element and before
    /// the closing bracket is known (see [`Self::learn_layout`]) and compared in one step.
    #[inline(always)]
    fn next_schema_element(&mut self, first: &mut bool, depth: usize, opening: u8) -> Step<bool> {
        // Compact, or written on one line: the element right after `[` or `,`, `]` right after
        // the last element.
        let bytes = self.bytes();
        match (*first, bytes.get(self.pos)) {
            (_, Some(b']')) => {
                self.pos += 1;
                return Ok(false);
            }
            (true, Some(&byte)) if byte == opening => {
                *first = false;
                return Ok(true);
            }
            (false, Some(b',')) if bytes.get(self.pos + 1) == Some(&opening) => {
                self.pos += 1;
                return Ok(true);
            }
            _ => {}
        }
        // A list written on one line (`["a", "b"]`) has no newline to compare.
        if self.indent != 0 {
            let spaces = self.indent * depth;
            let closing = spaces - self.indent;
            match (*first, self.bytes().get(self.pos)) {
                (true, Some(b'\n')) if self.indented(self.pos, spaces, opening) => {
                    *first = false;
                    self.pos += spaces + 1;
                    return Ok(true);
                }
                (false, Some(b',')) if self.indented(self.pos + 1, spaces, opening) => {
                    self.pos += spaces + 2;
                    return Ok(true);
                }
                (false, Some(b'\n')) if self.indented(self.pos, closing, b']') => {
                    self.pos += closing + 2;
                    return Ok(false);
                }
                _ => {}
            }
        }
        self.next_element(first)
    }

    /// A string whose opening quote has been consumed, as serde_json's `parse_str` reads it:
    /// borrowed when it has no escapes.
    ///
    /// Inlined so that the `Cow` is built where it is stored: returned through memory from a
    /// call, it was read back before the store had settled, which cost more than the scan.
    #[inline(always)]
    fn string(&mut self) -> Step<Cow<'a, str>> {
        let start = self.pos;
        let end = swar::string_special(self.bytes(), start);
        if self.bytes().get(end) == Some(&b'"') {
            self.pos = end + 1;
            // Both ends are next to an ASCII quote, so they are character boundaries.
            // Two one-sided slices, which the compiler inlines where it calls the two-sided one.
            return self
                .text
                .get(start..)
                .and_then(|rest| rest.get(..end.checked_sub(start)?))
                .map(Cow::Borrowed)
                .ok_or(Reject);
        }
        self.escaped_string(start, end).map(Cow::Owned)
    }

    /// The rest of a string from its first special byte at `at`: escapes are decoded; a control
    /// character or the end of the input rejects.
    #[inline(never)]
    fn escaped_string(&mut self, start: usize, mut at: usize) -> Step<String> {
        let mut out = String::with_capacity(at - start + 16);
        let mut from = start;
        loop {
            let run = self.text.get(from..at).ok_or(Reject)?;
            out.push_str(run);
            match self.bytes().get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    at = self.escape(at + 1, &mut out)?;
                    from = at;
                    at = swar::string_special(self.bytes(), at);
                }
                _ => return Err(Reject),
            }
        }
    }

    /// One escape after its backslash, appended to `out`; returns the index after it.
    fn escape(&self, at: usize, out: &mut String) -> Step<usize> {
        let decoded = match self.bytes().get(at) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => return self.unicode_escape(at + 1, out),
            _ => return Err(Reject),
        };
        out.push(decoded);
        Ok(at + 1)
    }

    /// `\uXXXX` after its `\u`, as serde_json validates it for a string it keeps: a UTF-16
    /// surrogate must come as a leading one directly followed by an escaped trailing one.
    fn unicode_escape(&self, at: usize, out: &mut String) -> Step<usize> {
        let first = hex4(self.bytes(), at).ok_or(Reject)?;
        let at = at + 4;
        let code = match first {
            0xDC00..=0xDFFF => return Err(Reject),
            0xD800..=0xDBFF => {
                if self.bytes().get(at..at + 2) != Some(b"\\u") {
                    return Err(Reject);
                }
                let second = hex4(self.bytes(), at + 2).ok_or(Reject)?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(Reject);
                }
                let code =
                    0x1_0000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00);
                out.push(char::from_u32(code).ok_or(Reject)?);
                return Ok(at + 6);
            }
            other => u32::from(other),
        };
        out.push(char::from_u32(code).ok_or(Reject)?);
        Ok(at)
    }

    /// A string that the reference skips unread (serde_json's `ignore_str`): escapes are only
    /// checked for form, so lone surrogates pass.
    fn skip_string(&mut self) -> Step<()> {
        let mut at = self.pos;
        loop {
            at = swar::string_special(self.bytes(), at);
            match self.bytes().get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(());
                }
                Some(b'\\') => match self.bytes().get(at + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => at += 2,
                    Some(b'u') => {
                        hex4(self.bytes(), at + 2).ok_or(Reject)?;
                        at += 6;
                    }
                    _ => return Err(Reject),
                },
                _ => return Err(Reject),
            }
        }
    }

    /// The extent of a number by JSON's grammar (no leading zeros, digits after `.` and `e`);
    /// returns where it starts.
    fn scan_number(&mut self) -> Step<usize> {
        let start = self.pos;
        let mut at = start;
        if self.bytes().get(at) == Some(&b'-') {
            at += 1;
        }
        match self.bytes().get(at) {
            Some(b'0') => {
                at += 1;
                if matches!(self.bytes().get(at), Some(b'0'..=b'9')) {
                    return Err(Reject);
                }
            }
            Some(b'1'..=b'9') => at = self.digits(at + 1),
            _ => return Err(Reject),
        }
        if self.bytes().get(at) == Some(&b'.') {
            let end = self.digits(at + 1);
            if end == at + 1 {
                return Err(Reject);
            }
            at = end;
        }
        if matches!(self.bytes().get(at), Some(b'e' | b'E')) {
            at += 1;
            if matches!(self.bytes().get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            let end = self.digits(at);
            if end == at {
                return Err(Reject);
            }
            at = end;
        }
        self.pos = at;
        Ok(start)
    }

    fn digits(&self, mut at: usize) -> usize {
        while matches!(self.bytes().get(at), Some(b'0'..=b'9')) {
            at += 1;
        }
        at
    }

    /// A number that the reference reads: serde_json parses it, so that the value is exactly
    /// serde_json's (with `arbitrary_precision`, the text as written, its exponent normalised).
    fn number(&mut self) -> Step<Number> {
        let start = self.scan_number()?;
        let text = self.text.get(start..self.pos).ok_or(Reject)?;
        Number::from_str(text).map_err(|_| Reject)
    }

    /// A value that the reference skips unread (serde_json's `ignore_value`): syntax only, no
    /// nesting limit, and no recursion (an explicit stack of open containers).
    #[inline(never)]
    fn skip_value(&mut self) -> Step<()> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            // A value starts here.
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    self.skip_string()?;
                }
                Some(b'n') => self.literal(b"null")?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'-' | b'0'..=b'9') => {
                    self.scan_number()?;
                }
                Some(bracket @ (b'[' | b'{')) => {
                    self.pos += 1;
                    let close = if bracket == b'[' { b']' } else { b'}' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                    } else {
                        open.push(close);
                        if close == b'}' {
                            self.skip_key()?;
                        }
                        continue;
                    }
                }
                _ => return Err(Reject),
            }
            // A value ended: close the containers it ends, or go on to the next element.
            loop {
                let Some(&close) = open.last() else {
                    return Ok(());
                };
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if close == b'}' {
                            self.skip_key()?;
                        }
                        break;
                    }
                    Some(byte) if byte == close => {
                        self.pos += 1;
                        open.pop();
                    }
                    _ => return Err(Reject),
                }
            }
        }
    }

    /// A key inside a skipped object, and its colon.
    fn skip_key(&mut self) -> Step<()> {
        self.expect(b'"')?;
        self.skip_string()?;
        self.expect(b':')
    }

    // -----------------------------------------------------------------------------------------
    // Values read as `serde_json::Value` (the reference's `ValueSeed`)

    /// Reads any value. `segment` is the value's own path segment, pushed while a container is
    /// read (issues inside it and the depth check need it); `None` when the caller pushed it.
    fn collect(&mut self, segment: Option<Segment>) -> Step<Value> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                Ok(Value::String(self.string()?.into_owned()))
            }
            Some(b'n') => self.literal(b"null").map(|()| Value::Null),
            Some(b't') => self.literal(b"true").map(|()| Value::Bool(true)),
            Some(b'f') => self.literal(b"false").map(|()| Value::Bool(false)),
            Some(b'-' | b'0'..=b'9') => self.number().map(Value::Number),
            Some(b'[') => self.collect_array(segment),
            Some(b'{') => self.collect_object(segment, None),
            _ => Err(Reject),
        }
    }

    /// [`Self::collect`] for an issue: the value, and whether a container in it was skipped for
    /// nesting too deep.
    fn collect_found(&mut self, segment: Option<Segment>) -> Step<Found> {
        let before = self.skipped;
        let value = self.collect(segment)?;
        Ok(Found {
            value,
            truncated: self.skipped != before,
        })
    }

    /// Consumes `[` or `{` of a container that the reference reads, with its segment pushed;
    /// rejects at serde_json's nesting limit. Returns whether a segment was pushed.
    fn open_container(&mut self, segment: Option<Segment>) -> Step<bool> {
        self.pos += 1;
        let pushed = match segment {
            Some(segment) => {
                self.keys.push(segment);
                true
            }
            None => false,
        };
        // The path has one segment per enclosing container, so the container just opened is
        // the (path length + 1)th nested one.
        if self.path_len() + 1 >= RECURSION_LIMIT {
            return Err(Reject);
        }
        Ok(pushed)
    }

    /// An array read into a `Value`; one too deep is skipped and stands in as an empty array.
    fn collect_array(&mut self, segment: Option<Segment>) -> Step<Value> {
        let pushed = self.open_container(segment)?;
        let value = if self.too_deep("array") {
            self.skip_elements()?;
            Value::Array(Vec::new())
        } else {
            Value::Array(self.collect_elements()?)
        };
        if pushed {
            self.keys.pop();
        }
        Ok(value)
    }

    /// The elements of an array after its `[`, each read into a `Value`.
    fn collect_elements(&mut self) -> Step<Vec<Value>> {
        let mut items = Vec::new();
        let mut first = true;
        while self.next_element(&mut first)? {
            let item = self.collect(Some(Segment::Index(items.len())))?;
            items.push(item);
        }
        Ok(items)
    }

    /// An object read into a `Value`; one too deep is skipped and stands in as an empty object.
    /// Keys whose values are incomplete are added to `truncated_keys`, when given.
    fn collect_object(
        &mut self,
        segment: Option<Segment>,
        mut truncated_keys: Option<&mut Vec<String>>,
    ) -> Step<Value> {
        let pushed = self.open_container(segment)?;
        // serde_json reads an object whose first key is its private number token (see
        // `decode::NUMBER_TOKEN`) as a number, and so does the reference: such a document is
        // left to it.
        if self.peek() == Some(b'"')
            && self
                .bytes()
                .get(self.pos + 1..)
                .is_some_and(|rest| rest.starts_with(decode::NUMBER_TOKEN.as_bytes()))
        {
            return Err(Reject);
        }
        let value = if self.too_deep("object") {
            self.skip_members()?;
            Value::Object(Map::new())
        } else {
            let mut object = Map::new();
            let mut first = true;
            while let Some(key) = self.next_key(&mut first)? {
                if key == decode::NUMBER_TOKEN {
                    return Err(Reject);
                }
                self.keys.push(Segment::Key(key.into_owned()));
                let before = self.skipped;
                let value = self.collect(None)?;
                let key = match self.keys.pop() {
                    Some(Segment::Key(key)) => key,
                    _ => String::new(),
                };
                // The first value of a repeated key is kept, as in the reference.
                if let Some(first) = object.get(&key) {
                    let again = Found {
                        value,
                        truncated: self.skipped != before,
                    };
                    self.duplicate(&key, Some(first), &again);
                } else {
                    if let (Some(keys), true) =
                        (truncated_keys.as_deref_mut(), self.skipped != before)
                    {
                        keys.push(key.clone());
                    }
                    object.insert(key, value);
                }
            }
            Value::Object(object)
        };
        if pushed {
            self.keys.pop();
        }
        Ok(value)
    }

    /// The rest of an array that is not read (too deep): syntax only, as the reference's
    /// `IgnoredAny` elements.
    #[cold]
    fn skip_elements(&mut self) -> Step<()> {
        let mut first = true;
        while self.next_element(&mut first)? {
            self.skip_value()?;
        }
        Ok(())
    }

    /// The rest of an object that is not read (too deep): keys are still read as strings
    /// (serde_json's `MapKey`), values skipped unread.
    #[cold]
    fn skip_members(&mut self) -> Step<()> {
        let mut first = true;
        while self.next_key(&mut first)?.is_some() {
            self.skip_value()?;
        }
        Ok(())
    }

    /// The reference's depth check of every array and object read, the event's own and those
    /// read into a `Value`, as it is entered: the container sits at depth `path_len() + 1`. The
    /// first container too deep is reported; `container` is `"array"` or `"object"`.
    #[inline]
    fn too_deep(&mut self, container: &str) -> bool {
        if self.path_len() < self.max_depth {
            return false;
        }
        self.report_too_deep(container);
        true
    }

    #[cold]
    #[inline(never)]
    fn report_too_deep(&mut self, container: &str) {
        if self.skipped == 0 {
            let message = too_deep_message(container, self.max_depth);
            self.record(Severity::Error, IssueKind::TooDeep, message, None, None);
        }
        self.skipped += 1;
    }

    // -----------------------------------------------------------------------------------------
    // Paths and issues

    fn path_len(&self) -> usize {
        self.depth + self.keys.len()
    }

    #[inline(always)]
    fn push_frame(&mut self, frame: Frame) {
        // The schema nests at most 4 frames deep, well within MAX_FRAMES; an overflow would only
        // shorten rendered paths, never panic.
        if let Some(slot) = self.frames.get_mut(self.depth) {
            *slot = frame;
        }
        self.depth += 1;
    }

    #[inline(always)]
    fn pop_frame(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Records an issue at the current path (and `last`), with the offending value's text.
    #[cold]
    fn record(
        &mut self,
        severity: Severity,
        kind: IssueKind,
        message: String,
        value: Option<String>,
        last: Option<&Segment>,
    ) {
        if !self.issues.room_for(severity) {
            return;
        }
        let frames = self.frames.get(..self.depth).unwrap_or(&self.frames);
        let mut segments: Vec<Segment> = frames
            .iter()
            .map(|frame| match *frame {
                Frame::Field(name) => Segment::Field(name),
                Frame::Index(index) => Segment::Index(index),
            })
            .collect();
        segments.extend(self.keys.iter().cloned());
        let issue = Issue {
            path: render_path(&segments, last),
            kind,
            message,
            value,
        };
        self.issues.push(severity, issue);
    }

    /// Something outside the published schema that ISC is known to send.
    #[cold]
    fn extension(
        &mut self,
        kind: IssueKind,
        message: String,
        value: Option<String>,
        last: Option<&Segment>,
    ) {
        let severity = match self.mode {
            Mode::Lenient => Severity::Warning,
            Mode::Strict => Severity::Error,
        };
        self.record(severity, kind, message, value, last);
    }

    #[cold]
    fn duplicate(&mut self, name: &str, first: Option<&Value>, again: &Found) {
        let (message, value) = duplicate_key_message(name, first, again);
        self.record(
            Severity::Error,
            IssueKind::DuplicateKey,
            message,
            value,
            Some(&Segment::Key(name.to_owned())),
        );
    }

    /// A repeated known key: reported, and its value read as an unknown field's is, for the
    /// problems inside it (duplicate keys, nesting too deep), then dropped: the first value is
    /// the one kept. The reference does the same.
    #[cold]
    #[inline(never)]
    fn repeated(&mut self, name: &'static str) -> Step<()> {
        self.keys.push(Segment::Field(name));
        let again = self.collect_found(None)?;
        self.keys.pop();
        self.duplicate(name, None, &again);
        Ok(())
    }

    #[cold]
    fn wrong_type(&mut self, name: &'static str, expected: &'static str, found: &Found) {
        self.record(
            Severity::Error,
            IssueKind::WrongType { expected },
            format!(
                "`{name}` must be {expected}, found {}",
                found.text(self.max_depth)
            ),
            found.shown(),
            Some(&Segment::Field(name)),
        );
    }

    /// Reports the required fields (index into `fields`, what it must be) not in `seen`.
    fn report_missing(
        &mut self,
        seen: u32,
        fields: &[&'static str],
        required: &[(usize, &'static str)],
    ) {
        let all = required
            .iter()
            .fold(0u32, |all, &(index, _)| all | 1 << index);
        if seen & all == all {
            return;
        }
        for &(index, expected) in required {
            if seen & (1 << index) == 0 {
                if let Some(&name) = fields.get(index) {
                    self.missing(name, expected);
                }
            }
        }
    }

    #[cold]
    fn missing(&mut self, name: &'static str, expected: &'static str) {
        self.record(
            Severity::Error,
            IssueKind::Missing,
            format!("required field `{name}` is missing (it must be {expected})"),
            None,
            Some(&Segment::Field(name)),
        );
    }

    /// An element of a schema array that is not of the element type (`null` included).
    #[cold]
    fn bad_element(
        &mut self,
        list: &'static str,
        expected: &'static str,
        index: usize,
    ) -> Step<()> {
        let found = self.collect_found(Some(Segment::Index(index)))?;
        let kind = if found.value.is_null() {
            IssueKind::Null
        } else {
            IssueKind::WrongType { expected }
        };
        self.record(
            Severity::Error,
            kind,
            format!(
                "each element of `{list}` must be {expected}, found {}",
                found.text(self.max_depth)
            ),
            found.shown(),
            Some(&Segment::Index(index)),
        );
        Ok(())
    }

    /// The value of field `name` is not of its expected JSON type: reads it and reports it as the
    /// reference does. Returns true when the field still has a value, `null`, that is accepted.
    #[cold]
    #[inline(never)]
    fn field_other(
        &mut self,
        name: &'static str,
        expected: &'static str,
        need: Need,
    ) -> Step<bool> {
        // A literal `null` is the reference's `Decoded::Null`.
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            match need {
                Need::Required => {
                    self.record(
                        Severity::Error,
                        IssueKind::Null,
                        format!("required field `{name}` is null (it must be {expected})"),
                        Some("null".to_owned()),
                        Some(&Segment::Field(name)),
                    );
                    return Ok(false);
                }
                Need::Nullable => return Ok(true),
                Need::NotNullable => {
                    self.extension(
                        IssueKind::Null,
                        format!(
                            "`{name}` is null; the published schema allows {expected} or no `{name}` at all"
                        ),
                        Some("null".to_owned()),
                        Some(&Segment::Field(name)),
                    );
                    return Ok(true);
                }
            }
        }
        let found = self.collect_found(Some(Segment::Field(name)))?;
        self.wrong_type(name, expected, &found);
        Ok(false)
    }

    /// Reads the value of a key the schema does not define into `extra`.
    #[cold]
    #[inline(never)]
    fn unknown_field(&mut self, key: Cow<'a, str>, extra: &mut Extra) -> Step<()> {
        // The first key of a schema object, in the reference a number (see `collect_object`).
        if key == decode::NUMBER_TOKEN {
            return Err(Reject);
        }
        self.keys.push(Segment::Key(key.into_owned()));
        let found = self.collect_found(None)?;
        let name = match self.keys.pop() {
            Some(Segment::Key(name)) => name,
            _ => String::new(),
        };
        if let Some(first) = extra.get(&name) {
            self.duplicate(&name, Some(first), &found);
            return Ok(());
        }
        let message = unknown_field_message(&name, &found, self.max_depth);
        self.extension(
            IssueKind::UnknownField,
            message,
            found.shown(),
            Some(&Segment::Key(name.clone())),
        );
        extra.insert(name, found.value);
        Ok(())
    }

    #[cold]
    fn unusual_value(&mut self, name: &'static str, value: &str, usual: &[&str]) {
        let value = shorten(&Value::String(value.to_owned()));
        self.record(
            Severity::Warning,
            IssueKind::UnknownValue,
            unusual_value_message(name, &value, usual),
            Some(value),
            Some(&Segment::Field(name)),
        );
    }

    #[cold]
    fn unknown_value(&mut self, name: &'static str, value: &str, known: &[&str]) {
        let value = shorten(&Value::String(value.to_owned()));
        self.extension(
            IssueKind::UnknownValue,
            format!(
                "`{name}` has the value {value} that the published schema does not list (known: {})",
                known.join(", ")
            ),
            Some(value),
            Some(&Segment::Field(name)),
        );
    }

    // -----------------------------------------------------------------------------------------
    // Fields by type
    //
    // Each reads a field's value into its slot in the object being built and returns whether it
    // could be typed; when not, the issue is recorded and the object will not be typed either.
    // Writing in place matters: a value returned through memory and then copied into its slot is
    // read back before its bytes have been stored, and that stall cost more than the scanning.

    /// A required string.
    #[inline(always)]
    fn required_string(&mut self, name: &'static str, slot: &mut Cow<'a, str>) -> Step<bool> {
        if self.at_string() {
            self.pos += 1;
            *slot = self.string()?;
            return Ok(true);
        }
        self.field_other(name, STRING, Need::Required)?;
        Ok(false)
    }

    /// A required string that is usually an id: 32 lowercase hex characters, as ISC writes them.
    #[inline(always)]
    fn required_id(&mut self, name: &'static str, slot: &mut Cow<'a, str>) -> Step<bool> {
        if self.at_string() {
            self.pos += 1;
            *slot = self.id_string()?;
            return Ok(true);
        }
        self.field_other(name, STRING, Need::Required)?;
        Ok(false)
    }

    /// [`Self::string`] for a string that is usually 32 characters long without escapes, as ISC's
    /// ids are: that guess is tested first, in one step. Its end is then known before it is
    /// found, so what comes after is read without waiting for the scan of the string.
    #[inline(always)]
    fn id_string(&mut self) -> Step<Cow<'a, str>> {
        let start = self.pos;
        if let Some((run, [b'"', ..])) = self
            .bytes()
            .get(start..)
            .and_then(<[u8]>::split_first_chunk::<32>)
        {
            if !swar::has_special(run) {
                self.pos = start + 33;
                return self
                    .text
                    .get(start..start + 32)
                    .map(Cow::Borrowed)
                    .ok_or(Reject);
            }
        }
        self.string()
    }

    /// An optional string, nullable or not.
    #[inline(always)]
    fn optional_string(
        &mut self,
        name: &'static str,
        need: Need,
        slot: &mut Maybe<Cow<'a, str>>,
    ) -> Step<bool> {
        if self.at_string() {
            self.pos += 1;
            *slot = Maybe::Value(self.string()?);
            return Ok(true);
        }
        self.null_or_other(name, STRING, need, slot)
    }

    /// A field that is not of its expected JSON type: `null`, accepted (written to `slot`) when
    /// `need` allows it, or a value of the wrong type.
    #[cold]
    #[inline(never)]
    fn null_or_other<T>(
        &mut self,
        name: &'static str,
        expected: &'static str,
        need: Need,
        slot: &mut Maybe<T>,
    ) -> Step<bool> {
        let null = self.field_other(name, expected, need)?;
        if null {
            *slot = Maybe::Null;
        }
        Ok(null)
    }

    /// A required string whose known values are listed: anything else is kept and reported as
    /// a schema extension.
    #[inline]
    fn required_known(
        &mut self,
        name: &'static str,
        known: &[&str],
        slot: &mut Cow<'a, str>,
    ) -> Step<bool> {
        if !self.required_string(name, slot)? {
            return Ok(false);
        }
        let text: &str = slot;
        if !known.contains(&text) {
            self.unknown_value(name, text, known);
        }
        Ok(true)
    }

    /// A required string whose usual values are listed, though the schema leaves it free text
    /// (`accountOperation`): another value is noted, a warning in both modes.
    fn required_usual(
        &mut self,
        name: &'static str,
        usual: &[&str],
        slot: &mut Cow<'a, str>,
    ) -> Step<bool> {
        if !self.required_string(name, slot)? {
            return Ok(false);
        }
        let text: &str = slot;
        if !usual.contains(&text) {
            self.unusual_value(name, text, usual);
        }
        Ok(true)
    }

    /// A required enum whose value is not written as one of its known values (the callers try
    /// those first): read as text, then as `from_wire` reads it.
    #[cold]
    #[inline(never)]
    fn required_enum<E>(
        &mut self,
        name: &'static str,
        from_wire: fn(&str) -> E,
        known: &[&str],
        slot: &mut E,
    ) -> Step<bool> {
        let mut text = Cow::Borrowed("");
        if !self.required_known(name, known, &mut text)? {
            return Ok(false);
        }
        *slot = from_wire(&text);
        Ok(true)
    }

    /// `errors` or `warnings`: an optional, nullable array of strings.
    fn string_list(
        &mut self,
        name: &'static str,
        slot: &mut Maybe<Vec<Cow<'a, str>>>,
    ) -> Step<bool> {
        if self.peek() != Some(b'[') {
            return self.null_or_other(name, STRINGS, Need::Nullable, slot);
        }
        self.pos += 1;
        self.push_frame(Frame::Field(name));
        if self.too_deep("array") {
            self.skip_elements()?;
            self.pop_frame();
            return Ok(false);
        }
        let mut items = Vec::new();
        let mut broken = false;
        let mut first = true;
        let mut index = 0;
        while self.next_schema_element(&mut first, MESSAGE_DEPTH, b'"')? {
            if self.at_string() {
                self.pos += 1;
                let item = self.string()?;
                if !broken {
                    if items.capacity() == 0 {
                        // Allocated outright, rather than grown from nothing by `push`.
                        items = Vec::with_capacity(4);
                    }
                    items.push(item);
                }
            } else {
                // Once an element is broken the list cannot be typed, but every element is
                // still read so that all issues are reported.
                self.bad_element(name, STRING, index)?;
                broken = true;
                items.clear();
            }
            index += 1;
        }
        self.pop_frame();
        if broken {
            return Ok(false);
        }
        *slot = Maybe::Value(items);
        Ok(true)
    }

    /// The array of a schema list whose elements are objects (at its `[`), each read in place by
    /// `element` into a blank value appended to `items`; false when an element cannot be typed.
    #[inline]
    fn object_list<T>(
        &mut self,
        name: &'static str,
        blank: fn() -> T,
        mut element: impl FnMut(&mut Self, &mut T) -> Step<bool>,
        items: &mut Vec<T>,
    ) -> Step<bool> {
        self.pos += 1;
        self.push_frame(Frame::Field(name));
        if self.too_deep("array") {
            self.skip_elements()?;
            self.pop_frame();
            return Ok(false);
        }
        // Lists of one kind tend to have the same length within a document (every account
        // request has its few attribute requests): start at the length of the previous one, so
        // that most lists are allocated once instead of growing from 4. Bounded, so that a
        // document cannot make many short lists each reserve a long one.
        let hint = self
            .list_hints
            .get(usize::from(name == "attributeRequests"))
            .copied();
        let capacity = hint.unwrap_or(0).clamp(1, MAX_LIST_HINT);
        let depth = if name == "attributeRequests" {
            ATTRIBUTE_DEPTH
        } else {
            ACCOUNT_DEPTH
        };
        let mut broken = false;
        let mut first = true;
        let mut index = 0;
        while self.next_schema_element(&mut first, depth, b'{')? {
            if self.peek() == Some(b'{') {
                self.push_frame(Frame::Index(index));
                let typed = if broken {
                    let mut scratch = blank();
                    element(self, &mut scratch)?
                } else {
                    if items.capacity() == 0 {
                        // Allocated outright, rather than grown from nothing.
                        *items = Vec::with_capacity(capacity);
                    }
                    // `resize_with` makes room first and then builds the blank in its slot, where
                    // `push` would build it aside and copy it in.
                    items.resize_with(items.len() + 1, blank);
                    match items.last_mut() {
                        Some(slot) => element(self, slot)?,
                        None => false,
                    }
                };
                self.pop_frame();
                if !typed {
                    broken = true;
                    items.clear();
                }
            } else {
                self.bad_element(name, OBJECT, index)?;
                broken = true;
                items.clear();
            }
            index += 1;
        }
        self.pop_frame();
        if let Some(hint) = self
            .list_hints
            .get_mut(usize::from(name == "attributeRequests"))
        {
            *hint = index;
        }
        Ok(!broken)
    }

    // -----------------------------------------------------------------------------------------
    // The schema's objects
    //
    // Each reads its object from the `{`, guessing that keys come in schema order (see
    // `eat_key`) and matching them by their bytes when they do not. The typed value is written
    // only when every field could be typed, exactly as the reference builds it.

    /// The root event object, built in place in `out` and left there when it can be typed.
    fn event(&mut self, out: &mut Option<ProvisioningCompleted<'a>>) -> Step<()> {
        self.pos += 1;
        if self.too_deep("object") {
            return self.skip_members();
        }
        self.learn_layout();
        let event = out.insert(blank_event());
        // When a field's value cannot be typed (`bad`), the reference has no event.
        let (seen, bad) = schema_fields!(
            self,
            EVENT,
            &mut event.extra,
            EVENT_FIELDS,
            [
                0 "trackingNumber" true,
                1 "sources" true,
                2 "action" false,
                3 "errors" false,
                4 "warnings" false,
                5 "recipient" true,
                6 "requester" false,
                7 "accountRequests" true,
            ]
            others [8 "_metadata"],
            |index| match index {
                0 => self.required_id("trackingNumber", &mut event.tracking_number)?,
                1 => self.required_string("sources", &mut event.sources)?,
                2 => self.optional_string("action", Need::Nullable, &mut event.action)?,
                3 => self.string_list("errors", &mut event.errors)?,
                4 => self.string_list("warnings", &mut event.warnings)?,
                5 => {
                    if self.peek() == Some(b'{') {
                        self.identity_in("recipient", &mut event.recipient)?
                    } else {
                        self.field_other("recipient", OBJECT, Need::Required)?;
                        false
                    }
                }
                6 => {
                    if self.peek() == Some(b'{') {
                        event.requester = Maybe::Value(blank_identity());
                        match &mut event.requester {
                            Maybe::Value(requester) => self.identity_in("requester", requester)?,
                            _ => false,
                        }
                    } else {
                        self.null_or_other(
                            "requester",
                            OBJECT,
                            Need::Nullable,
                            &mut event.requester,
                        )?
                    }
                }
                7 => self.account_requests(&mut event.account_requests)?,
                _ => {
                    event.metadata = self.metadata(&mut event.extra)?.map(Box::new);
                    true
                }
            }
        );
        self.report_missing(
            seen,
            EVENT_FIELDS,
            &[(0, STRING), (1, STRING), (5, OBJECT), (7, OBJECTS)],
        );
        if bad || seen & EVENT_REQUIRED != EVENT_REQUIRED {
            *out = None;
        }
        Ok(())
    }

    /// A `recipient` or `requester` object (at its `{`), read into `slot`; true when typed.
    fn identity_in(&mut self, name: &'static str, slot: &mut IdentityRef<'a>) -> Step<bool> {
        self.push_frame(Frame::Field(name));
        let typed = self.identity(slot)?;
        self.pop_frame();
        Ok(typed)
    }

    /// A `recipient` or `requester` object, read into `slot`; true when typed.
    fn identity(&mut self, slot: &mut IdentityRef<'a>) -> Step<bool> {
        self.pos += 1;
        if self.too_deep("object") {
            self.skip_members()?;
            return Ok(false);
        }
        let (seen, bad) = schema_fields!(
            self,
            IDENTITY,
            &mut slot.extra,
            IDENTITY_FIELDS,
            [0 "type" true, 1 "id" true, 2 "name" true],
            |index| match index {
                // The blank's `kind` is already `IDENTITY`.
                0 => {
                    (self.at_string() && self.eat(b"\"IDENTITY\""))
                        || self.required_enum(
                            "type",
                            IdentityType::from_wire,
                            IdentityType::KNOWN,
                            &mut slot.kind,
                        )?
                }
                1 => self.required_id("id", &mut slot.id)?,
                _ => self.required_string("name", &mut slot.name)?,
            }
        );
        self.report_missing(
            seen,
            IDENTITY_FIELDS,
            &[(0, expected::IDENTITY_TYPE), (1, STRING), (2, STRING)],
        );
        Ok(!bad && seen & 0b111 == 0b111)
    }

    /// `accountRequests`: a required array of objects, read into `slot` (empty).
    fn account_requests(&mut self, slot: &mut Vec<AccountRequest<'a>>) -> Step<bool> {
        if self.peek() != Some(b'[') {
            self.field_other("accountRequests", OBJECTS, Need::Required)?;
            return Ok(false);
        }
        self.object_list(
            "accountRequests",
            blank_account,
            Self::account_request,
            slot,
        )
    }

    /// One account request, read into `slot`; true when typed.
    fn account_request(&mut self, slot: &mut AccountRequest<'a>) -> Step<bool> {
        self.pos += 1;
        if self.too_deep("object") {
            self.skip_members()?;
            return Ok(false);
        }
        let (seen, bad) = schema_fields!(
            self,
            ACCOUNT,
            &mut slot.extra,
            ACCOUNT_FIELDS,
            [
                0 "source" true,
                1 "accountId" false,
                2 "accountOperation" true,
                3 "provisioningResult" true,
                4 "provisioningTarget" true,
                5 "ticketId" false,
                6 "attributeRequests" false,
            ],
            |index| match index {
                0 => self.source_field(&mut slot.source)?,
                1 => self.optional_string("accountId", Need::NotNullable, &mut slot.account_id)?,
                2 => self.account_operation(&mut slot.account_operation)?,
                3 => self.provisioning_result(&mut slot.provisioning_result)?,
                4 => self.required_string("provisioningTarget", &mut slot.provisioning_target)?,
                5 => self.optional_string("ticketId", Need::Nullable, &mut slot.ticket_id)?,
                _ => self.attribute_requests(&mut slot.attribute_requests)?,
            }
        );
        self.report_missing(
            seen,
            ACCOUNT_FIELDS,
            &[(0, OBJECT), (2, STRING), (3, expected::RESULT), (4, STRING)],
        );
        Ok(!bad && seen & ACCOUNT_REQUIRED == ACCOUNT_REQUIRED)
    }

    /// `accountOperation`: its known values are matched without scanning (and borrowed from
    /// static text, which equals the input's).
    #[inline(always)]
    fn account_operation(&mut self, slot: &mut Cow<'a, str>) -> Step<bool> {
        if self.at_string() {
            known_value!(self, slot, [
                "Modify" => Cow::Borrowed("Modify"),
                "Create" => Cow::Borrowed("Create"),
                "Enable" => Cow::Borrowed("Enable"),
                "Disable" => Cow::Borrowed("Disable"),
                "Delete" => Cow::Borrowed("Delete"),
                "Unlock" => Cow::Borrowed("Unlock"),
            ]);
        }
        self.required_usual("accountOperation", AccountOperation::KNOWN, slot)
    }

    /// `provisioningResult`: its known values are matched without scanning.
    #[inline(always)]
    fn provisioning_result(&mut self, slot: &mut ProvisioningResult) -> Step<bool> {
        if self.at_string() {
            known_value!(self, slot, [
                "SUCCESS" => ProvisioningResult::Success,
                "FAILED" => ProvisioningResult::Failed,
                "PENDING" => ProvisioningResult::Pending,
            ]);
        }
        self.required_enum(
            "provisioningResult",
            ProvisioningResult::from_wire,
            ProvisioningResult::KNOWN,
            slot,
        )
    }

    /// `source` of an account request: a required object, read in place.
    fn source_field(&mut self, slot: &mut SourceRef<'a>) -> Step<bool> {
        if self.peek() != Some(b'{') {
            self.field_other("source", OBJECT, Need::Required)?;
            return Ok(false);
        }
        self.push_frame(Frame::Field("source"));
        let typed = self.source_ref(slot)?;
        self.pop_frame();
        Ok(typed)
    }

    /// A `source` object, read into `slot`; true when typed.
    fn source_ref(&mut self, slot: &mut SourceRef<'a>) -> Step<bool> {
        self.pos += 1;
        if self.too_deep("object") {
            self.skip_members()?;
            return Ok(false);
        }
        let (seen, bad) = schema_fields!(
            self,
            SOURCE,
            &mut slot.extra,
            SOURCE_FIELDS,
            [0 "id" true, 1 "type" true, 2 "name" true],
            |index| match index {
                0 => self.required_id("id", &mut slot.id)?,
                // The blank's `kind` is already `SOURCE`.
                1 => {
                    (self.at_string() && self.eat(b"\"SOURCE\""))
                        || self.required_enum(
                            "type",
                            SourceType::from_wire,
                            SourceType::KNOWN,
                            &mut slot.kind,
                        )?
                }
                _ => self.required_string("name", &mut slot.name)?,
            }
        );
        self.report_missing(
            seen,
            SOURCE_FIELDS,
            &[(0, STRING), (1, expected::SOURCE_TYPE), (2, STRING)],
        );
        Ok(!bad && seen & 0b111 == 0b111)
    }

    /// `attributeRequests`: an optional, nullable array of objects.
    fn attribute_requests(&mut self, slot: &mut Maybe<Vec<AttributeRequest<'a>>>) -> Step<bool> {
        if self.peek() != Some(b'[') {
            return self.null_or_other("attributeRequests", OBJECTS, Need::Nullable, slot);
        }
        *slot = Maybe::Value(Vec::new());
        let Maybe::Value(items) = slot else {
            return Ok(false);
        };
        self.object_list(
            "attributeRequests",
            blank_attribute,
            Self::attribute_request,
            items,
        )
    }

    /// One attribute request, read into `slot`; true when typed.
    fn attribute_request(&mut self, slot: &mut AttributeRequest<'a>) -> Step<bool> {
        self.pos += 1;
        if self.too_deep("object") {
            self.skip_members()?;
            return Ok(false);
        }
        let (seen, bad) = schema_fields!(
            self,
            ATTRIBUTE,
            &mut slot.extra,
            ATTRIBUTE_FIELDS,
            [0 "attributeName" true, 1 "attributeValue" false, 2 "operation" true],
            |index| match index {
                0 => self.required_string("attributeName", &mut slot.attribute_name)?,
                1 => self.attribute_value(&mut slot.attribute_value)?,
                _ => self.attribute_operation(&mut slot.operation)?,
            }
        );
        self.report_missing(
            seen,
            ATTRIBUTE_FIELDS,
            &[(0, STRING), (2, expected::OPERATION)],
        );
        Ok(!bad && seen & 0b101 == 0b101)
    }

    /// `operation` of an attribute request: its known values are matched without scanning.
    #[inline(always)]
    fn attribute_operation(&mut self, slot: &mut AttributeOperation) -> Step<bool> {
        if self.at_string() {
            known_value!(self, slot, [
                "Add" => AttributeOperation::Add,
                "Set" => AttributeOperation::Set,
                "Remove" => AttributeOperation::Remove,
            ]);
        }
        self.required_enum(
            "operation",
            AttributeOperation::from_wire,
            AttributeOperation::KNOWN,
            slot,
        )
    }

    /// `attributeValue`: an optional, nullable string; lenient validation also accepts an array
    /// of strings (a multi-valued attribute).
    #[inline]
    fn attribute_value(&mut self, slot: &mut Maybe<AttributeValue<'a>>) -> Step<bool> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                *slot = Maybe::Value(AttributeValue::Single(self.string()?));
                Ok(true)
            }
            Some(b'[') => self.multi_valued(slot),
            _ => self.null_or_other("attributeValue", STRING, Need::Nullable, slot),
        }
    }

    /// `attributeValue` as an array (at its `[`), as the reference's `AttributeValueVisitor`
    /// reads it.
    #[cold]
    #[inline(never)]
    fn multi_valued(&mut self, slot: &mut Maybe<AttributeValue<'a>>) -> Step<bool> {
        let pushed = self.open_container(Some(Segment::Field("attributeValue")))?;
        // The array is one of the event's own containers: too deep, it is not read, and whether
        // it is an array of strings cannot be told.
        let read = if self.too_deep("array") {
            self.skip_elements()?;
            None
        } else {
            let before = self.skipped;
            let items = self.collect_elements()?;
            Some(Found {
                value: Value::Array(items),
                truncated: self.skipped != before,
            })
        };
        if pushed {
            self.keys.pop();
        }
        let Some(found) = read else {
            return Ok(false);
        };
        // A container too deep inside stands in as an empty one, which is not a string.
        let items = match found.value {
            Value::Array(items) if items.iter().all(Value::is_string) => items,
            value => {
                let found = Found {
                    value,
                    truncated: found.truncated,
                };
                self.wrong_type("attributeValue", STRING, &found);
                return Ok(false);
            }
        };
        let array = Value::Array(items);
        let shown = shorten(&array);
        self.extension(
            IssueKind::MultiValuedAttribute,
            format!(
                "`attributeValue` is an array of strings (a multi-valued attribute); the published schema allows only a string: {shown}"
            ),
            Some(shown),
            Some(&Segment::Field("attributeValue")),
        );
        let Value::Array(items) = array else {
            return Ok(false);
        };
        let values = items
            .into_iter()
            .filter_map(|item| match item {
                Value::String(text) => Some(Cow::Owned(text)),
                _ => None,
            })
            .collect();
        *slot = Maybe::Value(AttributeValue::Multi(values));
        Ok(true)
    }

    /// `_metadata`: read as a `Value`, then as the envelope, exactly as the reference does.
    #[cold]
    #[inline(never)]
    fn metadata(&mut self, extra: &mut Extra) -> Step<Option<Metadata<'a>>> {
        self.keys.push(Segment::Field("_metadata"));
        let before = self.skipped;
        let mut truncated_keys = Vec::new();
        let value = if self.peek() == Some(b'{') {
            self.collect_object(None, Some(&mut truncated_keys))?
        } else {
            self.collect(None)?
        };
        let found = Found {
            value,
            truncated: self.skipped != before,
        };
        let metadata = self.envelope(found, &truncated_keys, extra);
        self.keys.pop();
        Ok(metadata)
    }

    /// Not part of the schema, so nothing in it makes an event invalid in lenient mode; what is
    /// malformed is kept verbatim so that the round trip stays faithful. `truncated_keys`: its
    /// keys whose values are incomplete.
    fn envelope(
        &mut self,
        found: Found,
        truncated_keys: &[String],
        extra: &mut Extra,
    ) -> Option<Metadata<'a>> {
        let object = match found.value {
            Value::Object(object) => object,
            other => {
                let found = Found {
                    value: other,
                    truncated: found.truncated,
                };
                self.extension(
                    IssueKind::Envelope,
                    format!(
                        "the `_metadata` envelope must be an object, found {}",
                        found.text(self.max_depth)
                    ),
                    found.shown(),
                    None,
                );
                extra.insert("_metadata".to_owned(), found.value);
                return None;
            }
        };
        let mut metadata = Metadata::default();
        for (key, value) in object {
            let slot = match key.as_str() {
                "triggerId" => &mut metadata.trigger_id,
                "triggerType" => &mut metadata.trigger_type,
                "invocationId" => &mut metadata.invocation_id,
                _ => {
                    metadata.extra.insert(key, value);
                    continue;
                }
            };
            match value {
                Value::String(text) => *slot = Some(Cow::Owned(text)),
                other => {
                    let found = Found {
                        value: other,
                        truncated: truncated_keys.contains(&key),
                    };
                    let message = format!(
                        "`_metadata.{key}` must be a string, found {}",
                        found.text(self.max_depth)
                    );
                    self.extension(
                        IssueKind::Envelope,
                        message,
                        found.shown(),
                        Some(&Segment::Key(key.clone())),
                    );
                    metadata.extra.insert(key, found.value);
                }
            }
        }
        Some(metadata)
    }

    /// The root is not an object: read it as a `Value` and report it.
    #[cold]
    fn root_not_an_object(&mut self) -> Step<()> {
        let found = self.collect_found(None)?;
        self.record(
            Severity::Error,
            IssueKind::WrongType { expected: OBJECT },
            format!(
                "a Provisioning Completed event must be a JSON object, found {}",
                found.text(self.max_depth)
            ),
            found.shown(),
            None,
        );
        Ok(())
    }
}

const EVENT_FIELDS: &[&str] = &[
    "trackingNumber",
    "sources",
    "action",
    "errors",
    "warnings",
    "recipient",
    "requester",
    "accountRequests",
    "_metadata",
];
const IDENTITY_FIELDS: &[&str] = &["type", "id", "name"];
const SOURCE_FIELDS: &[&str] = &["id", "type", "name"];
const ACCOUNT_FIELDS: &[&str] = &[
    "source",
    "accountId",
    "accountOperation",
    "provisioningResult",
    "provisioningTarget",
    "ticketId",
    "attributeRequests",
];
const ATTRIBUTE_FIELDS: &[&str] = &["attributeName", "attributeValue", "operation"];

/// Required fields of the event and of an account request, as bits of their `seen` masks.
const EVENT_REQUIRED: u32 = 1 << 0 | 1 << 1 | 1 << 5 | 1 << 7;
const ACCOUNT_REQUIRED: u32 = 1 << 0 | 1 << 2 | 1 << 3 | 1 << 4;

/// Marks a known key as seen; true the first time.
#[inline(always)]
fn first_time(seen: &mut u32, index: usize) -> bool {
    let bit = 1u32 << index;
    let first = *seen & bit == 0;
    *seen |= bit;
    first
}

/// Fewer than sixteen bytes as a little-endian word, followed by zeros. Built in registers: copied
/// into a buffer and read back as one word, the bytes were read before the copy had settled, which
/// stalled for longer than the rest of the comparison took (the last few tokens of every document
/// are read this way).
#[cold]
fn padded(rest: &[u8]) -> u128 {
    let rest = rest.get(..16).unwrap_or(rest);
    if let (Some(low), Some(high)) = (rest.first_chunk::<8>(), rest.last_chunk::<8>()) {
        // Eight bytes or more: the first eight, and the last eight shifted down to the bytes
        // after them.
        let high = u64::from_le_bytes(*high)
            .checked_shr(8 * (16 - rest.len()) as u32)
            .unwrap_or(0);
        return u128::from(u64::from_le_bytes(*low)) | u128::from(high) << 64;
    }
    let mut word = 0u128;
    for &byte in rest.iter().rev() {
        word = word << 8 | u128::from(byte);
    }
    word
}

/// Masks of the `len` low bytes of a `u128`, by `len`.
const LOW_BYTES: [u128; 17] = {
    let mut masks = [0u128; 17];
    let mut len = 1;
    while len <= 16 {
        masks[len] = u128::MAX >> (8 * (16 - len));
        len += 1;
    }
    masks
};

/// A quote as byte `at` of a `u128`, by `at`.
const QUOTE_AT: [u128; 16] = {
    let mut quotes = [0u128; 16];
    let mut at = 0;
    while at < 16 {
        quotes[at] = (b'"' as u128) << (8 * at);
        at += 1;
    }
    quotes
};

/// A comma, a newline and fourteen spaces, as one little-endian word.
const COMMA_NEWLINE_INDENT: u128 = u128::from_le_bytes(*b",\n              ");

/// By length (at least 2): a comma, a newline and spaces, then a quote, as one little-endian word;
/// `,"` at length 2. What separates two keys in a document laid out as
/// [`Parser::learn_layout`] recognises.
const SEPARATORS: [u128; 17] = {
    let mut separators = [0u128; 17];
    let mut len = 2;
    while len <= 16 {
        separators[len] = COMMA_NEWLINE_INDENT & LOW_BYTES[len - 1] | QUOTE_AT[len - 1];
        len += 1;
    }
    separators
};

/// A mask of the `len` low bytes of a `u128` (`len` at most 16).
fn low_bytes(len: usize) -> u128 {
    LOW_BYTES.get(len).copied().unwrap_or(u128::MAX)
}

/// Four hex digits as a UTF-16 code unit.
fn hex4(bytes: &[u8], at: usize) -> Option<u16> {
    let digits = bytes.get(at..)?.first_chunk::<4>()?;
    let mut value = 0u16;
    for &digit in digits {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            b'A'..=b'F' => digit - b'A' + 10,
            _ => return None,
        };
        value = (value << 4) | u16::from(nibble);
    }
    Some(value)
}

// Blank values that the in-place readers fill; never returned unless every required field was
// read into them.

#[inline]
fn blank_event<'a>() -> ProvisioningCompleted<'a> {
    ProvisioningCompleted {
        tracking_number: Cow::Borrowed(""),
        sources: Cow::Borrowed(""),
        action: Maybe::Absent,
        errors: Maybe::Absent,
        warnings: Maybe::Absent,
        recipient: blank_identity(),
        requester: Maybe::Absent,
        account_requests: Vec::new(),
        metadata: None,
        extra: Extra::new(),
    }
}

#[inline]
fn blank_identity<'a>() -> IdentityRef<'a> {
    IdentityRef {
        kind: IdentityType::Identity,
        id: Cow::Borrowed(""),
        name: Cow::Borrowed(""),
        extra: Extra::new(),
    }
}

#[inline]
fn blank_source<'a>() -> SourceRef<'a> {
    SourceRef {
        id: Cow::Borrowed(""),
        kind: SourceType::Source,
        name: Cow::Borrowed(""),
        extra: Extra::new(),
    }
}

#[inline]
fn blank_account<'a>() -> AccountRequest<'a> {
    AccountRequest {
        source: blank_source(),
        account_id: Maybe::Absent,
        account_operation: Cow::Borrowed(""),
        provisioning_result: ProvisioningResult::Success,
        provisioning_target: Cow::Borrowed(""),
        ticket_id: Maybe::Absent,
        attribute_requests: Maybe::Absent,
        extra: Extra::new(),
    }
}

#[inline]
fn blank_attribute<'a>() -> AttributeRequest<'a> {
    AttributeRequest {
        attribute_name: Cow::Borrowed(""),
        attribute_value: Maybe::Absent,
        operation: AttributeOperation::Add,
        extra: Extra::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_is_the_bytes_left_followed_by_zeros() {
        let text: Vec<u8> = (1..=16).collect();
        for len in 0..=16 {
            let rest = &text[..len];
            let mut chunk = [0u8; 16];
            chunk[..len].copy_from_slice(rest);
            assert_eq!(padded(rest), u128::from_le_bytes(chunk), "{len} bytes");
        }
    }
}
