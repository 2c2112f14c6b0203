//! Reading an event: one pass over the JSON that builds the typed event and collects every issue on
//! the way.
//!
//! Why not `#[derive(Deserialize)]`: serde stops at the first error and cannot tell a missing field
//! from `null` in a useful message, and decoding into a `serde_json::Value` first and then into
//! types would cost more than the `Value` alone. Instead each type has a visitor that accepts *any*
//! JSON value at every position, records an [`Issue`] with the wire-name path when the value is not
//! what the schema wants, and carries on. Known keys are matched without allocating; the path is a
//! stack of segments that is only rendered to text when an issue needs it.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::issue::{
    Found, Issue, IssueKind, Issues, Mode, Options, Segment, Severity, duplicate_key_message,
    expected, render_path, shorten, too_deep_message, unknown_field_message,
};
use crate::types::{
    AccountRequest, AttributeOperation, AttributeRequest, AttributeValue, Extra, IdentityRef,
    IdentityType, Metadata, ProvisioningCompleted, ProvisioningResult, SourceRef, SourceType,
};
use crate::{AccountOperation, Maybe, SyntaxError, Validation};

/// Validates one JSON document held in bytes.
pub(crate) fn validate_slice<'a>(
    bytes: &'a [u8],
    options: &Options,
) -> Result<Validation<'a>, SyntaxError> {
    if bytes.len() > options.limits.max_bytes {
        return Err(SyntaxError::TooLarge {
            size: bytes.len(),
            limit: options.limits.max_bytes,
        });
    }
    // serde_json says "EOF while parsing a value" for these, at a position that depends on the
    // whitespace; the documented error is `Empty`, whatever the whitespace.
    if bytes
        .iter()
        .all(|byte| matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Err(SyntaxError::Empty);
    }
    // serde_json says only "expected value" for a byte order mark, which editors on Windows
    // put at the start of files.
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(SyntaxError::NotJson {
            message: "the document starts with a UTF-8 byte order mark (EF BB BF), which JSON \
                      does not allow; save it without one"
                .to_owned(),
            line: 1,
            column: 1,
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let mut ctx = Ctx::new(options);
    let decoded = EventSeed { ctx: &mut ctx }
        .deserialize(&mut deserializer)
        .map_err(|err| SyntaxError::from_json_in(&err, bytes))?;
    deserializer
        .end()
        .map_err(|err| SyntaxError::from_json_in(&err, bytes))?;
    Ok(ctx.finish(decoded))
}

/// Validates a document that is already a `serde_json::Value`.
pub(crate) fn validate_value(value: Value, options: &Options) -> Validation<'static> {
    let mut ctx = Ctx::new(options);
    match (EventSeed { ctx: &mut ctx }).deserialize(value) {
        Ok(decoded) => ctx.finish(decoded),
        // The visitors never fail on their own and a `Value` always deserializes, so this cannot
        // happen; report it as an issue rather than panic if it ever does.
        Err(err) => {
            ctx.record(
                Severity::Error,
                IssueKind::WrongType {
                    expected: "a JSON object",
                },
                format!("cannot read the value: {err}"),
                None,
                None,
            );
            ctx.finish(Decoded::Invalid)
        }
    }
}

/// What a visitor found at one position.
enum Decoded<T> {
    /// The right JSON type, and everything inside it could be typed.
    Present(T),
    /// `null`.
    Null,
    /// The wrong JSON type; the value, for the message.
    Wrong(Found),
    /// The right JSON type, but something inside it is broken; the issues are already recorded.
    Invalid,
}

/// Decoding state: the options, where we are, and what was found so far.
pub(crate) struct Ctx {
    mode: Mode,
    max_depth: usize,
    path: Vec<Segment>,
    issues: Issues,
    /// How many containers were too deep to read; the first one is reported.
    skipped: usize,
}

impl Ctx {
    fn new(options: &Options) -> Self {
        Ctx {
            mode: options.mode,
            max_depth: options.limits.max_depth,
            path: Vec::with_capacity(8),
            issues: Issues::new(&options.limits),
            skipped: 0,
        }
    }

    fn finish<'a>(self, decoded: Decoded<ProvisioningCompleted<'a>>) -> Validation<'a> {
        let event = match decoded {
            // Something was left unread for nesting too deep: an event would not hold what the
            // document says.
            Decoded::Present(_) if self.skipped > 0 => None,
            Decoded::Present(event) => Some(event),
            Decoded::Null | Decoded::Wrong(_) | Decoded::Invalid => None,
        };
        self.issues.into_validation(event)
    }

    /// Records an issue at the current path (and `last`), with the offending value's text.
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
        let issue = Issue {
            path: render_path(&self.path, last),
            kind,
            message,
            value,
        };
        self.issues.push(severity, issue);
    }

    /// Something outside the published schema that ISC is known to send: a warning when lenient,
    /// an error when strict.
    fn extension(&mut self, kind: IssueKind, message: String, value: Option<String>) {
        let severity = match self.mode {
            Mode::Lenient => Severity::Warning,
            Mode::Strict => Severity::Error,
        };
        self.record(severity, kind, message, value, None);
    }

    /// Runs `decode` with `name` pushed on the path.
    fn at<T>(&mut self, segment: Segment, decode: impl FnOnce(&mut Ctx) -> T) -> T {
        self.path.push(segment);
        let result = decode(self);
        self.path.pop();
        result
    }

    fn missing(&mut self, name: &'static str, expected: &'static str) {
        self.record(
            Severity::Error,
            IssueKind::Missing,
            format!("required field `{name}` is missing (it must be {expected})"),
            None,
            Some(&Segment::Field(name)),
        );
    }

    /// A key seen before in the same object (see [`duplicate_key_message`]).
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

    fn wrong_type(&mut self, name: &str, expected: &'static str, found: &Found) {
        self.record(
            Severity::Error,
            IssueKind::WrongType { expected },
            format!(
                "`{name}` must be {expected}, found {}",
                found.text(self.max_depth)
            ),
            found.shown(),
            None,
        );
    }

    /// `value` as read since `skipped` was `before`: incomplete if a container was skipped since.
    fn found(&self, before: usize, value: Value) -> Found {
        Found {
            value,
            truncated: self.skipped != before,
        }
    }

    /// A required, non-nullable field.
    fn required<T>(
        &mut self,
        name: &str,
        expected: &'static str,
        decoded: Decoded<T>,
    ) -> Option<T> {
        match decoded {
            Decoded::Present(value) => Some(value),
            Decoded::Null => {
                self.record(
                    Severity::Error,
                    IssueKind::Null,
                    format!("required field `{name}` is null (it must be {expected})"),
                    Some("null".to_owned()),
                    None,
                );
                None
            }
            Decoded::Wrong(found) => {
                self.wrong_type(name, expected, &found);
                None
            }
            Decoded::Invalid => None,
        }
    }

    /// An element of an array: never `null`, always of the element type.
    fn element<T>(&mut self, list: &str, expected: &'static str, decoded: Decoded<T>) -> Option<T> {
        let found = match decoded {
            Decoded::Present(value) => return Some(value),
            Decoded::Invalid => return None,
            Decoded::Null => Found::whole(Value::Null),
            Decoded::Wrong(found) => found,
        };
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
            None,
        );
        None
    }

    /// An optional field that the schema marks nullable.
    fn nullable<T>(
        &mut self,
        name: &str,
        expected: &'static str,
        decoded: Decoded<T>,
    ) -> Option<Maybe<T>> {
        match decoded {
            Decoded::Present(value) => Some(Maybe::Value(value)),
            Decoded::Null => Some(Maybe::Null),
            Decoded::Wrong(found) => {
                self.wrong_type(name, expected, &found);
                None
            }
            Decoded::Invalid => None,
        }
    }

    /// An optional field that the schema does not mark nullable: `null` is a schema extension.
    fn optional_not_nullable<T>(
        &mut self,
        name: &str,
        expected: &'static str,
        decoded: Decoded<T>,
    ) -> Option<Maybe<T>> {
        if let Decoded::Null = decoded {
            self.extension(
                IssueKind::Null,
                format!(
                    "`{name}` is null; the published schema allows {expected} or no `{name}` at all"
                ),
                Some("null".to_owned()),
            );
        }
        self.nullable(name, expected, decoded)
    }

    /// A string field whose published values are an enum.
    fn required_enum<E>(
        &mut self,
        name: &str,
        decoded: Decoded<Cow<'_, str>>,
        from_wire: fn(&str) -> E,
        known: &[&str],
    ) -> Option<E> {
        let value = self.required(name, "a string", decoded)?;
        if !known.contains(&value.as_ref()) {
            self.unknown_value(name, &value, known);
        }
        Some(from_wire(&value))
    }

    /// A required string field whose usual values are listed, though the schema leaves it free
    /// text (`accountOperation`): another value is noted, a warning in both modes, and kept as
    /// it is.
    fn required_usual_string<'de>(
        &mut self,
        name: &str,
        decoded: Decoded<Cow<'de, str>>,
        usual: &[&str],
    ) -> Option<Cow<'de, str>> {
        let value = self.required(name, "a string", decoded)?;
        if !usual.contains(&value.as_ref()) {
            let shown = shorten(&Value::String(value.to_string()));
            self.record(
                Severity::Warning,
                IssueKind::UnknownValue,
                crate::issue::unusual_value_message(name, &shown, usual),
                Some(shown),
                None,
            );
        }
        Some(value)
    }

    fn unknown_value(&mut self, name: &str, value: &str, known: &[&str]) {
        let value = shorten(&Value::String(value.to_owned()));
        self.extension(
            IssueKind::UnknownValue,
            format!(
                "`{name}` has the value {value} that the published schema does not list (known: {})",
                known.join(", ")
            ),
            Some(value),
        );
    }

    /// Reads the value of a key the schema does not define into `extra`.
    fn unknown_field<'de, A: MapAccess<'de>>(
        &mut self,
        name: String,
        map: &mut A,
        extra: &mut Extra,
    ) -> Result<(), A::Error> {
        self.path.push(Segment::Key(name));
        let before = self.skipped;
        let value = map.next_value_seed(ValueSeed::new(self))?;
        let found = self.found(before, value);
        let name = match self.path.pop() {
            Some(Segment::Key(name)) => name,
            _ => String::new(),
        };
        if let Some(first) = extra.get(&name) {
            self.duplicate(&name, Some(first), &found);
            return Ok(());
        }
        let message = unknown_field_message(&name, &found, self.max_depth);
        self.path.push(Segment::Key(name));
        self.extension(IssueKind::UnknownField, message, found.shown());
        let name = match self.path.pop() {
            Some(Segment::Key(name)) => name,
            _ => String::new(),
        };
        extra.insert(name, found.value);
        Ok(())
    }

    /// The depth check of every array and object read, the event's own and those read into a
    /// `Value`, as it is entered: the path has one segment per enclosing container but not the
    /// root, so the container sits at depth `path.len() + 1`. The first container too deep is
    /// reported; `container` is `"array"` or `"object"`, for the message.
    fn too_deep(&mut self, container: &str) -> bool {
        if self.path.len() < self.max_depth {
            return false;
        }
        if self.skipped == 0 {
            let message = too_deep_message(container, self.max_depth);
            self.record(Severity::Error, IssueKind::TooDeep, message, None, None);
        }
        self.skipped += 1;
        true
    }
}

// ---------------------------------------------------------------------------------------------
// Keys

enum Key {
    Known(usize),
    Unknown(String),
}

/// Matches a key against a struct's wire names without allocating for known keys.
struct KeySeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match self.0.iter().position(|name| *name == key) {
            Some(index) => Key::Known(index),
            None => Key::Unknown(key.to_owned()),
        })
    }
    fn visit_string<E: de::Error>(self, key: String) -> Result<Key, E> {
        Ok(match self.0.iter().position(|name| *name == key) {
            Some(index) => Key::Known(index),
            None => Key::Unknown(key),
        })
    }
}

/// Remembers which known keys an object had, to report duplicates and missing fields.
struct Seen(u32);

impl Seen {
    /// True the first time a key is seen.
    fn first(&mut self, index: usize) -> bool {
        let bit = 1u32 << index;
        let first = self.0 & bit == 0;
        self.0 |= bit;
        first
    }
    fn has(&self, index: usize) -> bool {
        self.0 & (1u32 << index) != 0
    }
}

// ---------------------------------------------------------------------------------------------
// Values of the wrong type, and unknown fields: read into a `Value` with a depth limit and
// duplicate-key detection.

struct ValueSeed<'a> {
    ctx: &'a mut Ctx,
    /// When the value is an object: where to list its keys whose values are incomplete (see
    /// [`Found`]), for the envelope, which reports its keys one by one.
    truncated_keys: Option<&'a mut Vec<String>>,
}

impl<'a> ValueSeed<'a> {
    fn new(ctx: &'a mut Ctx) -> Self {
        ValueSeed {
            ctx,
            truncated_keys: None,
        }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        wide_integer(v)
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        wide_integer(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        collect_seq(self.ctx, seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        collect_map(self.ctx, map, self.truncated_keys)
    }
}

/// An integer wider than 64 bits, as a `Value` read from another `Value` gives it.
fn wide_integer<E: de::Error>(v: impl fmt::Display) -> Result<Value, E> {
    Number::from_str(&v.to_string())
        .map(Value::Number)
        .map_err(E::custom)
}

/// The key under which serde_json hands a number to `deserialize_any` as a one-entry map when its
/// `arbitrary_precision` feature is on: this crate turns it on so that every number (a 30-digit
/// integer, `1e400`, `1.50`) is kept as written and a round trip gives it back unchanged.
pub(crate) const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// What a map handed to `visit_map` turned out to be.
enum Opened<A> {
    /// A number, read from serde_json's one-entry map.
    Number(Number),
    /// An object, its first key already read and given back first.
    Object(Replayed<A>),
}

/// Reads the first key of a map to tell a number (see [`NUMBER_TOKEN`]) from an object.
fn open_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Opened<A>, A::Error> {
    let first = map.next_key::<String>()?;
    if first.as_deref() == Some(NUMBER_TOKEN) {
        let text = map.next_value::<String>()?;
        let number = Number::from_str(&text).map_err(de::Error::custom)?;
        return Ok(Opened::Number(number));
    }
    Ok(Opened::Object(Replayed {
        ended: first.is_none(),
        first,
        map,
    }))
}

/// A map whose first key was read ahead by [`open_map`]: that key comes first, then the rest.
struct Replayed<A> {
    first: Option<String>,
    /// The map had no key at all.
    ended: bool,
    map: A,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Replayed<A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if let Some(key) = self.first.take() {
            return seed
                .deserialize(de::value::StringDeserializer::<A::Error>::new(key))
                .map(Some);
        }
        if self.ended {
            return Ok(None);
        }
        self.map.next_key_seed(seed)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// Skips the rest of an array unread (syntax only), as serde_json's `IgnoredAny` does.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Skips the rest of an object: keys are still read as strings (serde_json's `MapKey`), values
/// unread.
fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// An array read into a `Value`; one too deep is skipped and stands in as an empty array.
fn collect_seq<'de, A: SeqAccess<'de>>(ctx: &mut Ctx, mut seq: A) -> Result<Value, A::Error> {
    if ctx.too_deep("array") {
        skip_seq(seq)?;
        return Ok(Value::Array(Vec::new()));
    }
    let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
    loop {
        let index = items.len();
        let item = ctx.at(Segment::Index(index), |ctx| {
            seq.next_element_seed(ValueSeed::new(ctx))
        })?;
        match item {
            Some(item) => items.push(item),
            None => return Ok(Value::Array(items)),
        }
    }
}

/// An object read into a `Value`; one too deep is skipped and stands in as an empty object. The
/// first value of a repeated key is kept. Keys whose values are incomplete are added to
/// `truncated_keys`, when given.
fn collect_map<'de, A: MapAccess<'de>>(
    ctx: &mut Ctx,
    map: A,
    mut truncated_keys: Option<&mut Vec<String>>,
) -> Result<Value, A::Error> {
    let mut map = match open_map(map)? {
        Opened::Number(number) => return Ok(Value::Number(number)),
        Opened::Object(map) => map,
    };
    if ctx.too_deep("object") {
        skip_map(map)?;
        return Ok(Value::Object(Map::new()));
    }
    let mut object = Map::new();
    while let Some(key) = map.next_key::<String>()? {
        ctx.path.push(Segment::Key(key));
        let before = ctx.skipped;
        let value = map.next_value_seed(ValueSeed::new(&mut *ctx));
        let key = match ctx.path.pop() {
            Some(Segment::Key(key)) => key,
            _ => String::new(),
        };
        let value = value?;
        if let Some(first) = object.get(&key) {
            let again = ctx.found(before, value);
            ctx.duplicate(&key, Some(first), &again);
        } else {
            if let (Some(keys), true) = (truncated_keys.as_deref_mut(), ctx.skipped != before) {
                keys.push(key.clone());
            }
            object.insert(key, value);
        }
    }
    Ok(Value::Object(object))
}

// ---------------------------------------------------------------------------------------------
// Visitors that accept anything: the helpers below fill in the cases a visitor does not expect.

macro_rules! wrong_scalars {
    () => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Decoded::Wrong(Found::whole(Value::Bool(v))))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Decoded::Wrong(Found::whole(Value::from(v))))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Decoded::Wrong(Found::whole(Value::from(v))))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Decoded::Wrong(Found::whole(Value::from(v))))
        }
        fn visit_i128<E: de::Error>(self, v: i128) -> Result<Self::Value, E> {
            wide_integer(v).map(|value| Decoded::Wrong(Found::whole(value)))
        }
        fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
            wide_integer(v).map(|value| Decoded::Wrong(Found::whole(value)))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Decoded::Null)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Decoded::Null)
        }
    };
}

macro_rules! wrong_strings {
    () => {
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Decoded::Wrong(Found::whole(Value::String(v.to_owned()))))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Decoded::Wrong(Found::whole(Value::String(v))))
        }
    };
}

macro_rules! wrong_seq {
    () => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            let before = self.ctx.skipped;
            let value = collect_seq(self.ctx, seq)?;
            Ok(Decoded::Wrong(self.ctx.found(before, value)))
        }
    };
}

macro_rules! wrong_map {
    () => {
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let before = self.ctx.skipped;
            let value = collect_map(self.ctx, map, None)?;
            Ok(Decoded::Wrong(self.ctx.found(before, value)))
        }
    };
}

/// A type that can be read at one position of the document.
trait Decode<'de>: Sized {
    /// What the schema wants here, for messages: "a string", "an object".
    const EXPECTED: &'static str;
    fn decode<D: Deserializer<'de>>(
        ctx: &mut Ctx,
        deserializer: D,
    ) -> Result<Decoded<Self>, D::Error>;
}

struct Seed<'a, T> {
    ctx: &'a mut Ctx,
    marker: PhantomData<T>,
}

fn seed<T>(ctx: &mut Ctx) -> Seed<'_, T> {
    Seed {
        ctx,
        marker: PhantomData,
    }
}

impl<'de, T: Decode<'de>> DeserializeSeed<'de> for Seed<'_, T> {
    type Value = Decoded<T>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Decoded<T>, D::Error> {
        T::decode(self.ctx, deserializer)
    }
}

// Strings ---------------------------------------------------------------------------------------

struct StringVisitor<'a> {
    ctx: &'a mut Ctx,
}

impl<'de> Visitor<'de> for StringVisitor<'_> {
    type Value = Decoded<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Decoded::Present(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Decoded::Present(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Decoded::Present(Cow::Owned(v)))
    }
    wrong_scalars!();
    wrong_seq!();
    wrong_map!();
}

impl<'de> Decode<'de> for Cow<'de, str> {
    const EXPECTED: &'static str = "a string";
    fn decode<D: Deserializer<'de>>(
        ctx: &mut Ctx,
        deserializer: D,
    ) -> Result<Decoded<Self>, D::Error> {
        deserializer.deserialize_any(StringVisitor { ctx })
    }
}

// Arrays ----------------------------------------------------------------------------------------

/// An array whose elements must all be `T`; the name is the field's, for messages.
struct ListVisitor<'a, T> {
    ctx: &'a mut Ctx,
    name: &'static str,
    marker: PhantomData<T>,
}

impl<'de, T: Decode<'de>> Visitor<'de> for ListVisitor<'_, T> {
    type Value = Decoded<Vec<T>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let ctx = self.ctx;
        let name = self.name;
        // The event's own arrays count towards the depth limit too.
        if ctx.too_deep("array") {
            skip_seq(seq)?;
            return Ok(Decoded::Invalid);
        }
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
        let mut broken = false;
        let mut index = 0;
        loop {
            let step = ctx.at(Segment::Index(index), |ctx| -> Result<_, A::Error> {
                let Some(decoded) = seq.next_element_seed(seed::<T>(ctx))? else {
                    return Ok(None);
                };
                Ok(Some(ctx.element(name, T::EXPECTED, decoded)))
            })?;
            match step {
                None => break,
                Some(Some(item)) if !broken => items.push(item),
                Some(Some(_)) => {}
                // Once an element is broken the list cannot be typed, but every element is still
                // read so that all issues are reported.
                Some(None) => {
                    broken = true;
                    items.clear();
                }
            }
            index += 1;
        }
        Ok(if broken {
            Decoded::Invalid
        } else {
            Decoded::Present(items)
        })
    }
    wrong_scalars!();
    wrong_strings!();
    wrong_map!();
}

fn decode_list<'de, T: Decode<'de>, D: Deserializer<'de>>(
    ctx: &mut Ctx,
    name: &'static str,
    deserializer: D,
) -> Result<Decoded<Vec<T>>, D::Error> {
    deserializer.deserialize_any(ListVisitor {
        ctx,
        name,
        marker: PhantomData::<T>,
    })
}

struct ListSeed<'a, T> {
    ctx: &'a mut Ctx,
    name: &'static str,
    marker: PhantomData<T>,
}

fn list_seed<'a, T>(ctx: &'a mut Ctx, name: &'static str) -> ListSeed<'a, T> {
    ListSeed {
        ctx,
        name,
        marker: PhantomData,
    }
}

impl<'de, T: Decode<'de>> DeserializeSeed<'de> for ListSeed<'_, T> {
    type Value = Decoded<Vec<T>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        decode_list(self.ctx, self.name, deserializer)
    }
}

// Objects ---------------------------------------------------------------------------------------

/// Reads the value of a known key as `T`, with the key on the path, and applies `check` to it.
fn field<'de, A: MapAccess<'de>, T: Decode<'de>, R>(
    ctx: &mut Ctx,
    map: &mut A,
    name: &'static str,
    check: impl FnOnce(&mut Ctx, Decoded<T>) -> R,
) -> Result<R, A::Error> {
    ctx.at(Segment::Field(name), |ctx| {
        let decoded = map.next_value_seed(seed::<T>(ctx))?;
        Ok(check(ctx, decoded))
    })
}

/// Like [`field`] for an array of `T`.
fn list_field<'de, A: MapAccess<'de>, T: Decode<'de>, R>(
    ctx: &mut Ctx,
    map: &mut A,
    name: &'static str,
    check: impl FnOnce(&mut Ctx, Decoded<Vec<T>>) -> R,
) -> Result<R, A::Error> {
    ctx.at(Segment::Field(name), |ctx| {
        let decoded = map.next_value_seed(list_seed::<T>(ctx, name))?;
        Ok(check(ctx, decoded))
    })
}

/// Reports the required fields an object lacks.
fn report_missing(
    ctx: &mut Ctx,
    seen: &Seen,
    fields: &[&'static str],
    required: &[(usize, &'static str)],
) {
    for &(index, expected) in required {
        if !seen.has(index) {
            if let Some(name) = fields.get(index) {
                ctx.missing(name, expected);
            }
        }
    }
}

/// Handles a key seen before: reports it, and reads its value as an unknown field's is, for the
/// problems inside it (duplicate keys, nesting too deep), then drops it: the first value is the
/// one kept.
fn skip_duplicate<'de, A: MapAccess<'de>>(
    ctx: &mut Ctx,
    map: &mut A,
    fields: &[&'static str],
    index: usize,
) -> Result<(), A::Error> {
    let name = fields.get(index).copied().unwrap_or_default();
    ctx.path.push(Segment::Field(name));
    let before = ctx.skipped;
    let value = map.next_value_seed(ValueSeed::new(ctx))?;
    ctx.path.pop();
    let again = ctx.found(before, value);
    ctx.duplicate(name, None, &again);
    Ok(())
}

macro_rules! object_visitor {
    ($visitor:ident, $ty:ty, $map:ident, $ctx:ident, $body:block) => {
        struct $visitor<'a> {
            ctx: &'a mut Ctx,
        }

        impl<'de> Visitor<'de> for $visitor<'_> {
            type Value = Decoded<$ty>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let $ctx = self.ctx;
                let mut $map = match open_map(map)? {
                    Opened::Number(number) => {
                        return Ok(Decoded::Wrong(Found::whole(Value::Number(number))));
                    }
                    Opened::Object(map) => map,
                };
                // The event's own objects count towards the depth limit too.
                if $ctx.too_deep("object") {
                    skip_map($map)?;
                    return Ok(Decoded::Invalid);
                }
                $body
            }
            wrong_scalars!();
            wrong_strings!();
            wrong_seq!();
        }

        impl<'de> Decode<'de> for $ty {
            const EXPECTED: &'static str = "an object";
            fn decode<D: Deserializer<'de>>(
                ctx: &mut Ctx,
                deserializer: D,
            ) -> Result<Decoded<Self>, D::Error> {
                deserializer.deserialize_any($visitor { ctx })
            }
        }
    };
}

const STRING: &str = "a string";

const IDENTITY_FIELDS: &[&str] = &["type", "id", "name"];

object_visitor!(IdentityVisitor, IdentityRef<'de>, map, ctx, {
    let fields = IDENTITY_FIELDS;
    let mut seen = Seen(0);
    let (mut kind, mut id, mut name) = (None, None, None);
    let mut extra = Extra::new();
    while let Some(key) = map.next_key_seed(KeySeed(fields))? {
        match key {
            Key::Unknown(key) => ctx.unknown_field(key, &mut map, &mut extra)?,
            Key::Known(index) if !seen.first(index) => {
                skip_duplicate(ctx, &mut map, fields, index)?
            }
            Key::Known(0) => {
                kind = field(ctx, &mut map, "type", |ctx, d| {
                    ctx.required_enum("type", d, IdentityType::from_wire, IdentityType::KNOWN)
                })?
            }
            Key::Known(1) => {
                id = field(ctx, &mut map, "id", |ctx, d| ctx.required("id", STRING, d))?
            }
            Key::Known(_) => {
                name = field(ctx, &mut map, "name", |ctx, d| {
                    ctx.required("name", STRING, d)
                })?
            }
        }
    }
    report_missing(
        ctx,
        &seen,
        fields,
        &[(0, expected::IDENTITY_TYPE), (1, STRING), (2, STRING)],
    );
    Ok(match (kind, id, name) {
        (Some(kind), Some(id), Some(name)) => Decoded::Present(IdentityRef {
            kind,
            id,
            name,
            extra,
        }),
        _ => Decoded::Invalid,
    })
});

const SOURCE_FIELDS: &[&str] = &["id", "type", "name"];

object_visitor!(SourceVisitor, SourceRef<'de>, map, ctx, {
    let fields = SOURCE_FIELDS;
    let mut seen = Seen(0);
    let (mut id, mut kind, mut name) = (None, None, None);
    let mut extra = Extra::new();
    while let Some(key) = map.next_key_seed(KeySeed(fields))? {
        match key {
            Key::Unknown(key) => ctx.unknown_field(key, &mut map, &mut extra)?,
            Key::Known(index) if !seen.first(index) => {
                skip_duplicate(ctx, &mut map, fields, index)?
            }
            Key::Known(0) => {
                id = field(ctx, &mut map, "id", |ctx, d| ctx.required("id", STRING, d))?
            }
            Key::Known(1) => {
                kind = field(ctx, &mut map, "type", |ctx, d| {
                    ctx.required_enum("type", d, SourceType::from_wire, SourceType::KNOWN)
                })?
            }
            Key::Known(_) => {
                name = field(ctx, &mut map, "name", |ctx, d| {
                    ctx.required("name", STRING, d)
                })?
            }
        }
    }
    report_missing(
        ctx,
        &seen,
        fields,
        &[(0, STRING), (1, expected::SOURCE_TYPE), (2, STRING)],
    );
    Ok(match (id, kind, name) {
        (Some(id), Some(kind), Some(name)) => Decoded::Present(SourceRef {
            id,
            kind,
            name,
            extra,
        }),
        _ => Decoded::Invalid,
    })
});

const ATTRIBUTE_FIELDS: &[&str] = &["attributeName", "attributeValue", "operation"];

object_visitor!(AttributeRequestVisitor, AttributeRequest<'de>, map, ctx, {
    let fields = ATTRIBUTE_FIELDS;
    let mut seen = Seen(0);
    let mut attribute_name = None;
    let mut attribute_value = Some(Maybe::Absent);
    let mut operation = None;
    let mut extra = Extra::new();
    while let Some(key) = map.next_key_seed(KeySeed(fields))? {
        match key {
            Key::Unknown(key) => ctx.unknown_field(key, &mut map, &mut extra)?,
            Key::Known(index) if !seen.first(index) => {
                skip_duplicate(ctx, &mut map, fields, index)?
            }
            Key::Known(0) => {
                attribute_name = field(ctx, &mut map, "attributeName", |ctx, d| {
                    ctx.required("attributeName", STRING, d)
                })?
            }
            Key::Known(1) => {
                attribute_value = field(ctx, &mut map, "attributeValue", |ctx, d| {
                    ctx.nullable("attributeValue", STRING, d)
                })?
            }
            Key::Known(_) => {
                operation = field(ctx, &mut map, "operation", |ctx, d| {
                    ctx.required_enum(
                        "operation",
                        d,
                        AttributeOperation::from_wire,
                        AttributeOperation::KNOWN,
                    )
                })?
            }
        }
    }
    report_missing(ctx, &seen, fields, &[(0, STRING), (2, expected::OPERATION)]);
    Ok(match (attribute_name, attribute_value, operation) {
        (Some(attribute_name), Some(attribute_value), Some(operation)) => {
            Decoded::Present(AttributeRequest {
                attribute_name,
                attribute_value,
                operation,
                extra,
            })
        }
        _ => Decoded::Invalid,
    })
});

const ACCOUNT_FIELDS: &[&str] = &[
    "source",
    "accountId",
    "accountOperation",
    "provisioningResult",
    "provisioningTarget",
    "ticketId",
    "attributeRequests",
];

object_visitor!(AccountRequestVisitor, AccountRequest<'de>, map, ctx, {
    let fields = ACCOUNT_FIELDS;
    let mut seen = Seen(0);
    let mut source = None;
    let mut account_id = Some(Maybe::Absent);
    let mut account_operation = None;
    let mut provisioning_result = None;
    let mut provisioning_target = None;
    let mut ticket_id = Some(Maybe::Absent);
    let mut attribute_requests = Some(Maybe::Absent);
    let mut extra = Extra::new();
    while let Some(key) = map.next_key_seed(KeySeed(fields))? {
        match key {
            Key::Unknown(key) => ctx.unknown_field(key, &mut map, &mut extra)?,
            Key::Known(index) if !seen.first(index) => {
                skip_duplicate(ctx, &mut map, fields, index)?
            }
            Key::Known(0) => {
                source = field(ctx, &mut map, "source", |ctx, d| {
                    ctx.required("source", "an object", d)
                })?
            }
            Key::Known(1) => {
                account_id = field(ctx, &mut map, "accountId", |ctx, d| {
                    ctx.optional_not_nullable("accountId", STRING, d)
                })?
            }
            Key::Known(2) => {
                account_operation = field(ctx, &mut map, "accountOperation", |ctx, d| {
                    ctx.required_usual_string("accountOperation", d, AccountOperation::KNOWN)
                })?
            }
            Key::Known(3) => {
                provisioning_result = field(ctx, &mut map, "provisioningResult", |ctx, d| {
                    ctx.required_enum(
                        "provisioningResult",
                        d,
                        ProvisioningResult::from_wire,
                        ProvisioningResult::KNOWN,
                    )
                })?
            }
            Key::Known(4) => {
                provisioning_target = field(ctx, &mut map, "provisioningTarget", |ctx, d| {
                    ctx.required("provisioningTarget", STRING, d)
                })?
            }
            Key::Known(5) => {
                ticket_id = field(ctx, &mut map, "ticketId", |ctx, d| {
                    ctx.nullable("ticketId", STRING, d)
                })?
            }
            Key::Known(_) => {
                attribute_requests = list_field(ctx, &mut map, "attributeRequests", |ctx, d| {
                    ctx.nullable("attributeRequests", "an array of objects", d)
                })?
            }
        }
    }
    report_missing(
        ctx,
        &seen,
        fields,
        &[
            (0, "an object"),
            (2, STRING),
            (3, expected::RESULT),
            (4, STRING),
        ],
    );
    Ok(
        match (
            source,
            account_id,
            account_operation,
            provisioning_result,
            provisioning_target,
            ticket_id,
            attribute_requests,
        ) {
            (
                Some(source),
                Some(account_id),
                Some(account_operation),
                Some(provisioning_result),
                Some(provisioning_target),
                Some(ticket_id),
                Some(attribute_requests),
            ) => Decoded::Present(AccountRequest {
                source,
                account_id,
                account_operation,
                provisioning_result,
                provisioning_target,
                ticket_id,
                attribute_requests,
                extra,
            }),
            _ => Decoded::Invalid,
        },
    )
});

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

object_visitor!(EventVisitor, ProvisioningCompleted<'de>, map, ctx, {
    let fields = EVENT_FIELDS;
    let mut seen = Seen(0);
    let mut tracking_number = None;
    let mut sources = None;
    let mut action = Some(Maybe::Absent);
    let mut errors = Some(Maybe::Absent);
    let mut warnings = Some(Maybe::Absent);
    let mut recipient = None;
    let mut requester = Some(Maybe::Absent);
    let mut account_requests = None;
    let mut metadata = None;
    let mut extra = Extra::new();
    while let Some(key) = map.next_key_seed(KeySeed(fields))? {
        match key {
            Key::Unknown(key) => ctx.unknown_field(key, &mut map, &mut extra)?,
            Key::Known(index) if !seen.first(index) => {
                skip_duplicate(ctx, &mut map, fields, index)?
            }
            Key::Known(0) => {
                tracking_number = field(ctx, &mut map, "trackingNumber", |ctx, d| {
                    ctx.required("trackingNumber", STRING, d)
                })?
            }
            Key::Known(1) => {
                sources = field(ctx, &mut map, "sources", |ctx, d| {
                    ctx.required("sources", STRING, d)
                })?
            }
            Key::Known(2) => {
                action = field(ctx, &mut map, "action", |ctx, d| {
                    ctx.nullable("action", STRING, d)
                })?
            }
            Key::Known(3) => {
                errors = list_field(ctx, &mut map, "errors", |ctx, d| {
                    ctx.nullable("errors", "an array of strings", d)
                })?
            }
            Key::Known(4) => {
                warnings = list_field(ctx, &mut map, "warnings", |ctx, d| {
                    ctx.nullable("warnings", "an array of strings", d)
                })?
            }
            Key::Known(5) => {
                recipient = field(ctx, &mut map, "recipient", |ctx, d| {
                    ctx.required("recipient", "an object", d)
                })?
            }
            Key::Known(6) => {
                requester = field(ctx, &mut map, "requester", |ctx, d| {
                    ctx.nullable("requester", "an object", d)
                })?
            }
            Key::Known(7) => {
                account_requests = list_field(ctx, &mut map, "accountRequests", |ctx, d| {
                    ctx.required("accountRequests", "an array of objects", d)
                })?
            }
            Key::Known(_) => {
                let before = ctx.skipped;
                let mut truncated_keys = Vec::new();
                let value = ctx.at(Segment::Field("_metadata"), |ctx| {
                    map.next_value_seed(ValueSeed {
                        ctx,
                        truncated_keys: Some(&mut truncated_keys),
                    })
                })?;
                let found = ctx.found(before, value);
                metadata = ctx
                    .at(Segment::Field("_metadata"), |ctx| {
                        envelope(ctx, found, &truncated_keys, &mut extra)
                    })
                    .map(Box::new);
            }
        }
    }
    report_missing(
        ctx,
        &seen,
        fields,
        &[
            (0, STRING),
            (1, STRING),
            (5, "an object"),
            (7, "an array of objects"),
        ],
    );
    Ok(
        match (
            tracking_number,
            sources,
            action,
            errors,
            warnings,
            recipient,
            requester,
            account_requests,
        ) {
            (
                Some(tracking_number),
                Some(sources),
                Some(action),
                Some(errors),
                Some(warnings),
                Some(recipient),
                Some(requester),
                Some(account_requests),
            ) => Decoded::Present(ProvisioningCompleted {
                tracking_number,
                sources,
                action,
                errors,
                warnings,
                recipient,
                requester,
                account_requests,
                metadata,
                extra,
            }),
            _ => Decoded::Invalid,
        },
    )
});

/// Reads the `_metadata` envelope. Not part of the schema, so nothing in it makes an event invalid
/// in lenient mode; what is malformed is kept verbatim so that the round trip stays faithful.
/// `truncated_keys`: its keys whose values are incomplete.
fn envelope(
    ctx: &mut Ctx,
    found: Found,
    truncated_keys: &[String],
    extra: &mut Extra,
) -> Option<Metadata<'static>> {
    let object = match found.value {
        Value::Object(object) => object,
        other => {
            let found = Found {
                value: other,
                truncated: found.truncated,
            };
            ctx.extension(
                IssueKind::Envelope,
                format!(
                    "the `_metadata` envelope must be an object, found {}",
                    found.text(ctx.max_depth)
                ),
                found.shown(),
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
                    found.text(ctx.max_depth)
                );
                ctx.at(Segment::Key(key.clone()), |ctx| {
                    ctx.extension(IssueKind::Envelope, message, found.shown())
                });
                metadata.extra.insert(key, found.value);
            }
        }
    }
    Some(metadata)
}

// Attribute values ------------------------------------------------------------------------------

struct AttributeValueVisitor<'a> {
    ctx: &'a mut Ctx,
}

impl<'de> Visitor<'de> for AttributeValueVisitor<'_> {
    type Value = Decoded<AttributeValue<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Decoded::Present(AttributeValue::Single(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Decoded::Present(AttributeValue::Single(Cow::Owned(
            v.to_owned(),
        ))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Decoded::Present(AttributeValue::Single(Cow::Owned(v))))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let ctx = self.ctx;
        // A multi-valued attribute is one of the event's own containers: too deep, it is not read,
        // and whether it is an array of strings cannot be told.
        if ctx.too_deep("array") {
            skip_seq(seq)?;
            return Ok(Decoded::Invalid);
        }
        let before = ctx.skipped;
        let value = collect_seq(ctx, seq)?;
        let found = ctx.found(before, value);
        let Value::Array(items) = found.value else {
            return Ok(Decoded::Wrong(found));
        };
        // A container too deep inside stands in as an empty one, which is not a string.
        if !items.iter().all(Value::is_string) {
            return Ok(Decoded::Wrong(Found {
                value: Value::Array(items),
                truncated: found.truncated,
            }));
        }
        let array = Value::Array(items);
        let shown = shorten(&array);
        ctx.extension(
            IssueKind::MultiValuedAttribute,
            format!(
                "`attributeValue` is an array of strings (a multi-valued attribute); the published schema allows only a string: {shown}"
            ),
            Some(shown),
        );
        let Value::Array(items) = array else {
            return Ok(Decoded::Invalid);
        };
        let values = items
            .into_iter()
            .filter_map(|item| match item {
                Value::String(text) => Some(Cow::Owned(text)),
                _ => None,
            })
            .collect();
        Ok(Decoded::Present(AttributeValue::Multi(values)))
    }
    wrong_scalars!();
    wrong_map!();
}

impl<'de> Decode<'de> for AttributeValue<'de> {
    const EXPECTED: &'static str = "a string";
    fn decode<D: Deserializer<'de>>(
        ctx: &mut Ctx,
        deserializer: D,
    ) -> Result<Decoded<Self>, D::Error> {
        deserializer.deserialize_any(AttributeValueVisitor { ctx })
    }
}

// The root --------------------------------------------------------------------------------------

struct EventSeed<'a> {
    ctx: &'a mut Ctx,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = Decoded<ProvisioningCompleted<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let ctx = self.ctx;
        let decoded = ProvisioningCompleted::decode(ctx, deserializer)?;
        let found = match decoded {
            Decoded::Null => Found::whole(Value::Null),
            Decoded::Wrong(found) => found,
            other => return Ok(other),
        };
        ctx.record(
            Severity::Error,
            IssueKind::WrongType {
                expected: "an object",
            },
            format!(
                "a Provisioning Completed event must be a JSON object, found {}",
                found.text(ctx.max_depth)
            ),
            found.shown(),
            None,
        );
        Ok(Decoded::Invalid)
    }
}

/// `impl Deserialize` for use inside other serde types: lenient, and any error fails the whole value.
///
/// The event borrows strings without escapes from the input, for any lifetime `'a` that the input
/// outlives, as `#[serde(borrow)]` on a field of a derived struct asks. So it is not
/// `DeserializeOwned`: from a reader, or from a `serde_json::Value` that it would have to own, read
/// with [`ProvisioningCompleted::from_value`], `str::parse` or `from_json` + `into_owned`.
impl<'de: 'a, 'a> serde::Deserialize<'de> for ProvisioningCompleted<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut ctx = Ctx::new(&Options::default());
        let decoded = EventSeed { ctx: &mut ctx }.deserialize(deserializer)?;
        ctx.finish(decoded).into_result().map_err(de::Error::custom)
    }
}
