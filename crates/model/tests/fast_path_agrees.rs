//! The fast parser and the fast writer against the serde-based reference they replace.
//!
//! Reading: for every input, [`validate_slice`] must give exactly what the serde-based reader
//! ([`validate_slice_reference`]) gives: the same `Ok`/`Err`, the same event (with unknown fields
//! in the same order), the same errors and warnings with the same paths, kinds, messages and
//! values, and the same `SyntaxError`. The fast parser alone ([`validate_slice_fast_only`]) must
//! accept exactly the documents the reference accepts, except that it declines input that is not
//! UTF-8 (which it leaves to the reference).
//!
//! Writing: [`ProvisioningCompleted::to_json`] and `write_json` must give the bytes that
//! `serde_json::to_string` gives through the `Serialize` impls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;

use proptest::prelude::*;
use provtrail_model::{
    Limits, Mode, Options, ProvisioningCompleted, Validation, validate_slice,
    validate_slice_fast_only, validate_slice_reference, validate_str,
};
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------------
// The comparison

/// Everything observable about a validation, with the event as JSON so that the order of unknown
/// fields (which `Map`'s equality ignores) and the sign of `-0.0` are compared too.
fn observable(validation: &Validation<'_>) -> (Option<String>, String) {
    let event = validation
        .event
        .as_ref()
        .map(|event| serde_json::to_string(event).unwrap());
    let issues = format!("{:?} {:?}", validation.errors, validation.warnings);
    (event, issues)
}

fn agree(bytes: &[u8], options: &Options) -> Result<(), TestCaseError> {
    let reference = validate_slice_reference(bytes, options);
    let public = validate_slice(bytes, options);
    prop_assert_eq!(
        &public,
        &reference,
        "validate_slice on {:?}",
        String::from_utf8_lossy(bytes)
    );
    if let (Ok(public), Ok(reference)) = (&public, &reference) {
        prop_assert_eq!(observable(public), observable(reference));
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        prop_assert_eq!(&validate_str(text, options), &reference, "validate_str");
    }
    let fast = validate_slice_fast_only(bytes, options);
    match (&fast, &reference) {
        (Some(fast), Ok(reference)) => {
            prop_assert_eq!(fast, reference);
            prop_assert_eq!(observable(fast), observable(reference));
        }
        (Some(_), Err(err)) => {
            return Err(TestCaseError::fail(format!(
                "the fast parser accepts what the reference rejects ({err}): {:?}",
                String::from_utf8_lossy(bytes)
            )));
        }
        (None, Ok(_)) => prop_assert!(
            std::str::from_utf8(bytes).is_err() || bytes.len() > options.limits.max_bytes,
            "the fast parser declines a UTF-8 document the reference accepts: {:?}",
            String::from_utf8_lossy(bytes)
        ),
        (None, Err(_)) => {}
    }
    Ok(())
}

fn check(text: &str) {
    for options in option_set() {
        agree(text.as_bytes(), &options).unwrap();
    }
}

fn check_bytes(bytes: &[u8]) {
    for options in option_set() {
        agree(bytes, &options).unwrap();
    }
}

fn option_set() -> Vec<Options> {
    let mut all = Vec::new();
    for mode in [Mode::Lenient, Mode::Strict] {
        for max_depth in [0, 1, 3, 6, 64, 300] {
            all.push(Options {
                mode,
                limits: Limits {
                    max_bytes: Limits::DEFAULT.max_bytes,
                    max_depth,
                    // A small cap, so that the documents' issues pass it.
                    max_issues: if max_depth == 64 { 2 } else { 1000 },
                },
            });
        }
    }
    all
}

fn options() -> impl Strategy<Value = Options> {
    (
        prop_oneof![Just(Mode::Lenient), Just(Mode::Strict)],
        prop_oneof![
            4 => Just(64usize),
            1 => 0usize..8,
            1 => Just(127usize),
            1 => Just(128usize),
            1 => Just(1000usize),
        ],
        prop_oneof![8 => Just(Limits::DEFAULT.max_bytes), 1 => 0usize..400],
        prop_oneof![4 => Just(Limits::DEFAULT.max_issues), 1 => 0usize..4],
    )
        .prop_map(|(mode, max_depth, max_bytes, max_issues)| Options {
            mode,
            limits: Limits {
                max_bytes,
                max_depth,
                max_issues,
            },
        })
}

// ---------------------------------------------------------------------------------------------
// Documents

const PAYLOADS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/payloads");

fn payload(name: &str) -> Vec<u8> {
    std::fs::read(format!("{PAYLOADS}/{name}")).unwrap_or_else(|err| panic!("{name}: {err}"))
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 ,.:=_-]{0,40}",
        2 => any::<String>(),
        1 => "[\"\\\\/\u{0}-\u{1f}\u{7f}é€😀 ]{0,8}",
        1 => Just(String::new()),
    ]
}

fn maybe_known(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(known).prop_map(str::to_owned),
        1 => text(),
        1 => proptest::sample::select(known).prop_map(|value| value.to_lowercase()),
    ]
}

fn identity() -> impl Strategy<Value = Value> {
    (maybe_known(&["IDENTITY"]), text(), text())
        .prop_map(|(kind, id, name)| json!({"type": kind, "id": id, "name": name}))
}

fn optional(value: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => value.prop_map(Some),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
    ]
}

fn attribute_request() -> impl Strategy<Value = Value> {
    (
        text(),
        optional(prop_oneof![
            6 => text().prop_map(Value::String),
            1 => proptest::collection::vec(text().prop_map(Value::String), 0..3).prop_map(Value::Array),
        ]),
        maybe_known(&["Add", "Set", "Remove"]),
    )
        .prop_map(|(name, value, operation)| {
            let mut object = Map::new();
            object.insert("attributeName".into(), Value::String(name));
            if let Some(value) = value {
                object.insert("attributeValue".into(), value);
            }
            object.insert("operation".into(), Value::String(operation));
            Value::Object(object)
        })
}

fn account_request() -> impl Strategy<Value = Value> {
    (
        (maybe_known(&["SOURCE"]), text(), text()),
        optional(text().prop_map(Value::String)),
        maybe_known(&["Create", "Modify", "Enable", "Disable", "Unlock", "Delete"]),
        maybe_known(&["SUCCESS", "PENDING", "FAILED"]),
        text(),
        optional(text().prop_map(Value::String)),
        optional(proptest::collection::vec(attribute_request(), 0..4).prop_map(Value::Array)),
    )
        .prop_map(
            |((kind, id, name), account_id, operation, result, target, ticket, attributes)| {
                let mut object = Map::new();
                object.insert(
                    "source".into(),
                    json!({"id": id, "type": kind, "name": name}),
                );
                if let Some(account_id) = account_id {
                    object.insert("accountId".into(), account_id);
                }
                object.insert("accountOperation".into(), Value::String(operation));
                object.insert("provisioningResult".into(), Value::String(result));
                object.insert("provisioningTarget".into(), Value::String(target));
                if let Some(ticket) = ticket {
                    object.insert("ticketId".into(), ticket);
                }
                if let Some(attributes) = attributes {
                    object.insert("attributeRequests".into(), attributes);
                }
                Value::Object(object)
            },
        )
}

fn metadata() -> impl Strategy<Value = Value> {
    (text(), text()).prop_map(|(trigger_type, invocation)| {
        json!({"triggerId": "idn:post-provisioning", "triggerType": trigger_type, "invocationId": invocation})
    })
}

/// A valid event as a `Value` (fields in schema order, optional ones sometimes absent or null).
fn event() -> impl Strategy<Value = Value> {
    (
        text(),
        text(),
        optional(
            maybe_known(&["IdentityRefresh", "Access Request", "Certification"])
                .prop_map(Value::String),
        ),
        optional(
            proptest::collection::vec(text().prop_map(Value::String), 0..3).prop_map(Value::Array),
        ),
        optional(
            proptest::collection::vec(text().prop_map(Value::String), 0..3).prop_map(Value::Array),
        ),
        identity(),
        optional(identity()),
        proptest::collection::vec(account_request(), 0..4),
        proptest::option::of(metadata()),
    )
        .prop_map(
            |(
                tracking,
                sources,
                action,
                errors,
                warnings,
                recipient,
                requester,
                accounts,
                metadata,
            )| {
                let mut object = Map::new();
                object.insert("trackingNumber".into(), Value::String(tracking));
                object.insert("sources".into(), Value::String(sources));
                for (key, value) in [
                    ("action", action),
                    ("errors", errors),
                    ("warnings", warnings),
                ] {
                    if let Some(value) = value {
                        object.insert(key.into(), value);
                    }
                }
                object.insert("recipient".into(), recipient);
                if let Some(requester) = requester {
                    object.insert("requester".into(), requester);
                }
                object.insert("accountRequests".into(), Value::Array(accounts));
                if let Some(metadata) = metadata {
                    object.insert("_metadata".into(), metadata);
                }
                Value::Object(object)
            },
        )
}

/// Any JSON value, nesting a little.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((text(), inner), 0..4)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// Nested arrays and objects around `core`, `depth` levels deep.
fn nest(depth: usize, seed: u64, core: Value) -> Value {
    let mut value = core;
    for level in 0..depth {
        value = if (seed >> (level % 64)) & 1 == 0 {
            Value::Array(vec![value])
        } else {
            let mut object = Map::new();
            object.insert(format!("k{level}"), value);
            Value::Object(object)
        };
    }
    value
}

/// One change that makes a document interesting for validation.
#[derive(Debug, Clone)]
enum Mutation {
    Remove(u64),
    Null(u64),
    Replace(u64, Value),
    AddUnknown(u64, String, Value),
    Deep(u64, usize, u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<u64>().prop_map(Mutation::Remove),
        any::<u64>().prop_map(Mutation::Null),
        (any::<u64>(), any_value()).prop_map(|(at, value)| Mutation::Replace(at, value)),
        (
            any::<u64>(),
            prop_oneof![
                text(),
                Just("_metadata".to_owned()),
                Just("a.b".to_owned()),
                Just("1x".to_owned())
            ],
            any_value()
        )
            .prop_map(|(at, key, value)| Mutation::AddUnknown(at, key, value)),
        (any::<u64>(), 0usize..140, any::<u64>())
            .prop_map(|(at, depth, seed)| Mutation::Deep(at, depth, seed)),
    ]
}

/// Every position in the tree (objects and arrays) as a path of indexes, in document order.
fn containers(value: &Value, path: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    match value {
        Value::Object(object) => {
            out.push(path.clone());
            for (index, child) in object.values().enumerate() {
                path.push(index);
                containers(child, path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            out.push(path.clone());
            for (index, child) in items.iter().enumerate() {
                path.push(index);
                containers(child, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at_path<'v>(value: &'v mut Value, path: &[usize]) -> &'v mut Value {
    let Some((&first, rest)) = path.split_first() else {
        return value;
    };
    match value {
        Value::Object(object) => at_path(object.values_mut().nth(first).unwrap(), rest),
        Value::Array(items) => at_path(&mut items[first], rest),
        _ => unreachable!(),
    }
}

fn apply(value: &mut Value, mutation: &Mutation) {
    let mut all = Vec::new();
    containers(value, &mut Vec::new(), &mut all);
    let pick = |at: u64| all[(at % all.len() as u64) as usize].clone();
    let child = |container: &mut Value, at: u64, f: &mut dyn FnMut(&mut Value)| match container {
        Value::Object(object) if !object.is_empty() => {
            let index = (at / 7 % object.len() as u64) as usize;
            f(object.values_mut().nth(index).unwrap());
        }
        Value::Array(items) if !items.is_empty() => {
            let index = (at / 7 % items.len() as u64) as usize;
            f(&mut items[index]);
        }
        _ => {}
    };
    match mutation {
        Mutation::Remove(at) => {
            let container = at_path(value, &pick(*at));
            match container {
                Value::Object(object) if !object.is_empty() => {
                    let index = (at / 7 % object.len() as u64) as usize;
                    let key = object.keys().nth(index).unwrap().clone();
                    object.shift_remove(&key);
                }
                Value::Array(items) if !items.is_empty() => {
                    let index = (at / 7 % items.len() as u64) as usize;
                    items.remove(index);
                }
                _ => {}
            }
        }
        Mutation::Null(at) => child(at_path(value, &pick(*at)), *at, &mut |v| *v = Value::Null),
        Mutation::Replace(at, new) => {
            child(at_path(value, &pick(*at)), *at, &mut |v| *v = new.clone())
        }
        Mutation::AddUnknown(at, key, new) => match at_path(value, &pick(*at)) {
            Value::Object(object) => {
                object.insert(key.clone(), new.clone());
            }
            Value::Array(items) => items.push(new.clone()),
            _ => {}
        },
        Mutation::Deep(at, depth, seed) => child(at_path(value, &pick(*at)), *at, &mut |v| {
            *v = nest(*depth, *seed, v.take())
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Writing JSON text with random formatting: whitespace, escapes and repeated keys

/// A small deterministic generator for formatting choices, and the indent of one level when the
/// text is pretty-printed.
struct Style(u64, &'static str);

impl Style {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.next() % one_in == 0
    }

    fn whitespace(&mut self, out: &mut String, pretty: bool) {
        if pretty {
            if self.chance(6) {
                out.push(' ');
            }
            return;
        }
        if !self.chance(3) {
            return;
        }
        for _ in 0..self.next() % 6 {
            out.push([' ', '\n', '\t', '\r'][(self.next() % 4) as usize]);
        }
    }
}

fn write_string(out: &mut String, text: &str, style: &mut Style) {
    out.push('"');
    for c in text.chars() {
        let escape = style.chance(8);
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' if !escape => out.push_str("\\b"),
            '\u{c}' if !escape => out.push_str("\\f"),
            '\n' if !escape => out.push_str("\\n"),
            '\r' if !escape => out.push_str("\\r"),
            '\t' if !escape => out.push_str("\\t"),
            '/' if escape => out.push_str("\\/"),
            c if (c as u32) < 0x20 || escape => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    if style.chance(2) {
                        write!(out, "\\u{unit:04X}").unwrap();
                    } else {
                        write!(out, "\\u{unit:04x}").unwrap();
                    }
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_value(out: &mut String, value: &Value, style: &mut Style, pretty: bool, indent: usize) {
    let unit = style.1;
    let newline = |out: &mut String, indent: usize| {
        if pretty {
            out.push('\n');
            out.push_str(&unit.repeat(indent));
        }
    };
    match value {
        Value::String(text) => write_string(out, text, style),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                newline(out, indent + 1);
                style.whitespace(out, pretty);
                write_value(out, item, style, pretty, indent + 1);
                style.whitespace(out, pretty);
            }
            if !items.is_empty() {
                newline(out, indent);
            }
            out.push(']');
        }
        Value::Object(object) => {
            out.push('{');
            let mut first = true;
            for (key, item) in object {
                // Now and then a key comes twice: first with another value, then with its own.
                let repeats = if style.chance(40) { 2 } else { 1 };
                for round in 0..repeats {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    newline(out, indent + 1);
                    style.whitespace(out, pretty);
                    write_string(out, key, style);
                    style.whitespace(out, pretty);
                    out.push(':');
                    if pretty {
                        out.push(' ');
                    }
                    style.whitespace(out, pretty);
                    if round + 1 < repeats {
                        // A repeated value is skipped unread: let it hold what only a skipping
                        // parser accepts (a lone surrogate escape, a number out of range).
                        match style.next() % 4 {
                            0 => out.push_str(r#""\ud800 is not read""#),
                            1 => out.push_str(r#"[1e400, {"a": [true, "\udc00"]}]"#),
                            2 => out.push_str("null"),
                            _ => write_value(out, item, style, pretty, indent + 1),
                        }
                    } else {
                        write_value(out, item, style, pretty, indent + 1);
                    }
                    style.whitespace(out, pretty);
                }
            }
            if !object.is_empty() {
                newline(out, indent);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn render(value: &Value, seed: u64) -> String {
    // The fast parser predicts the indentation of pretty-printed text from its first line: try
    // the usual units, odd ones, units too wide to predict at every depth, and tabs.
    const UNITS: [&str; 8] = ["  ", "  ", "    ", " ", "   ", "        ", "\t", "\r\n  "];
    let mut style = Style(seed | 1, "  ");
    style.1 = UNITS[(style.next() % 8) as usize];
    let pretty = style.chance(2);
    let mut out = String::new();
    style.whitespace(&mut out, false);
    write_value(&mut out, value, &mut style, pretty, 0);
    style.whitespace(&mut out, false);
    out
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn valid_events_agree(event in event(), seed in any::<u64>(), options in options()) {
        let text = render(&event, seed);
        agree(text.as_bytes(), &options)?;
        // And the plain serde_json forms.
        agree(event.to_string().as_bytes(), &options)?;
        agree(serde_json::to_string_pretty(&event).unwrap().as_bytes(), &options)?;
    }

    #[test]
    fn mutated_events_agree(
        event in event(),
        mutations in proptest::collection::vec(mutation(), 1..5),
        seed in any::<u64>(),
        options in options(),
    ) {
        let mut event = event;
        for mutation in &mutations {
            apply(&mut event, mutation);
        }
        agree(render(&event, seed).as_bytes(), &options)?;
        agree(event.to_string().as_bytes(), &options)?;
    }

    #[test]
    fn arbitrary_values_agree(value in any_value(), seed in any::<u64>(), options in options()) {
        agree(render(&value, seed).as_bytes(), &options)?;
    }

    #[test]
    fn arbitrary_bytes_agree(bytes in proptest::collection::vec(any::<u8>(), 0..64), options in options()) {
        agree(&bytes, &options)?;
    }

    #[test]
    fn escapes_agree(
        pieces in proptest::collection::vec(prop_oneof![
            3 => any::<u16>().prop_map(|unit| format!("\\u{unit:04x}")),
            1 => (0xD800u16..0xE000).prop_map(|unit| format!("\\u{unit:04X}")),
            1 => any::<char>().prop_map(|c| format!("\\{c}")),
            2 => "[a-z\"\u{1}-\u{1f}é]{0,3}",
        ], 0..6),
        options in options(),
    ) {
        let value = format!("\"{}\"", pieces.concat());
        agree(with(&format!(r#""x":{value}"#)).as_bytes(), &options)?;
        agree(with(&format!(r#""action":{value}"#)).as_bytes(), &options)?;
        agree(format!(r#"{{{BASE},"sources":{value}}}"#).as_bytes(), &options)?;
        agree(format!("{{{value}:1}}").as_bytes(), &options)?;
    }

    #[test]
    fn json_like_text_agrees(text in "[ \t\n\r{}\\[\\]:,\"\\\\/0-9eE+.a-z\u{0}-\u{1f}é-]{0,40}", options in options()) {
        agree(text.as_bytes(), &options)?;
    }

    #[test]
    fn truncated_and_flipped_documents_agree(
        event in event(),
        seed in any::<u64>(),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..4),
        options in options(),
    ) {
        let text = render(&event, seed);
        let bytes = text.as_bytes();
        agree(&bytes[..cut.index(bytes.len() + 1)], &options)?;
        let mut flipped = bytes.to_vec();
        if !flipped.is_empty() {
            for (at, bit) in &flips {
                let at = at.index(flipped.len());
                flipped[at] ^= 1 << bit;
            }
        }
        agree(&flipped, &options)?;
    }

    #[test]
    fn writer_matches_serde_json(event in event(), mutations in proptest::collection::vec(mutation(), 0..3)) {
        let mut event = event;
        for mutation in &mutations {
            // Only mutations that keep the event valid in lenient mode are written.
            let mut candidate = event.clone();
            apply(&mut candidate, mutation);
            if ProvisioningCompleted::from_value(candidate.clone()).is_ok() {
                event = candidate;
            }
        }
        let text = event.to_string();
        let parsed = ProvisioningCompleted::from_json(&text).unwrap();
        let expected = serde_json::to_string(&parsed).unwrap();
        prop_assert_eq!(&parsed.to_json(), &expected);
        let mut buffer = b"prefix".to_vec();
        parsed.write_json(&mut buffer).unwrap();
        prop_assert_eq!(&buffer[6..], expected.as_bytes());
        let owned = ProvisioningCompleted::from_value(event.clone()).unwrap();
        prop_assert_eq!(owned.to_json(), serde_json::to_string(&owned).unwrap());
    }
}

// ---------------------------------------------------------------------------------------------
// Edge cases of the scanner, each compared with the reference under every option set

const BASE: &str = r#""trackingNumber":"t","sources":"s","recipient":{"type":"IDENTITY","id":"i","name":"n"},"accountRequests":[]"#;

fn with(field: &str) -> String {
    format!("{{{BASE},{field}}}")
}

#[test]
fn the_example_payloads_agree() {
    for name in [
        "doc_example.json",
        "spec_example_v2025.json",
        "minimal_required_only.json",
        "large_200x5.json",
    ] {
        check_bytes(&payload(name));
    }
}

#[test]
fn strings_and_escapes() {
    for value in [
        r#""""#,
        r#""plain""#,
        r#""\"\\\/\b\f\n\r\t""#,
        r#""\u0041\u00e9\u20AC""#,
        r#""\ud83d\ude00""#,
        r#""\uD83D\uDE00 tail""#,
        r#""\ud800""#,
        r#""\udc00""#,
        r#""\ud800\u0041""#,
        r#""\ud800\n""#,
        r#""\ud800x""#,
        r#""\ud800\ud800""#,
        r#""\udd00""#,
        r#""\udfff""#,
        r#""\udbff\udfff""#,
        r#""\ud800\udbff""#,
        r#""\uDFFF\uD800""#,
        r#""\u12""#,
        r#""\u12G4""#,
        r#""\x""#,
        r#""\'""#,
        "\"a\u{1}b\"",
        "\"tab\there\"",
        "\"del\u{7f}\"",
        "\"é😀\"",
        "\"unterminated",
        "\"ends with backslash\\",
        r#""0123456789abcdef0123456789abcdef\n""#,
        r#""0123456789abcdef\"""#,
    ] {
        check(&with(&format!(r#""x":{value}"#)));
        check(&with(&format!(r#""action":{value}"#)));
        check(&with(&format!(r#""errors":[{value}]"#)));
        // A repeated key's value is skipped unread: lone surrogates pass there.
        check(&format!(r#"{{{BASE},"sources":{value}}}"#));
        check(&format!(r#"{{"tracking\u004Eumber":{value},{BASE}}}"#));
        check(&format!("{{{value}:1}}"));
    }
}

/// Ids are usually 32 characters, and the fast parser guesses so before it scans them: strings
/// of about that length, with escapes, control characters and quotes around the guessed end.
#[test]
fn strings_of_about_32_bytes() {
    let hex = "0123456789abcdef0123456789abcdef";
    let mut values = vec![
        format!("\"{hex}\""),
        format!("\"{}\"", &hex[..31]),
        format!("\"{hex}0\""),
        format!("\"{hex}0123456789abcdef\""),
        format!("\"{}\\\"\"", &hex[..31]),
        format!("\"{}\\\"tail\"", &hex[..31]),
        format!("\"{}\\n\"", &hex[..30]),
        format!("\"{}\\u0041\"", &hex[..26]),
        format!("\"{}\"", "é".repeat(16)),
        format!("\"{}\"", "€".repeat(10)),
        format!("\"{}", hex),
        format!("\"{}\\", &hex[..31]),
    ];
    for at in [0, 7, 8, 15, 16, 24, 31] {
        for special in ['\u{0}', '\u{1f}', '\n', '\t'] {
            let mut text = hex.to_owned();
            text.replace_range(at..=at, &special.to_string());
            values.push(format!("\"{text}\""));
        }
        let mut text = hex.to_owned();
        text.replace_range(at..=at, "\"");
        values.push(format!("\"{text}\""));
    }
    for value in &values {
        check(&format!(
            r#"{{"trackingNumber":{value},"sources":"s","recipient":{{"type":"IDENTITY","id":{value},"name":"n"}},"accountRequests":[{{"source":{{"id":{value},"type":"SOURCE","name":"n"}},"accountOperation":"Modify","provisioningResult":"SUCCESS","provisioningTarget":"t"}}]}}"#
        ));
        check(&format!(
            "{{\n  \"trackingNumber\": {value},\n  \"sources\": \"s\",\n  \"recipient\": {{\n    \"type\": \"IDENTITY\",\n    \"id\": {value},\n    \"name\": \"n\"\n  }},\n  \"accountRequests\": []\n}}"
        ));
        // At the very end of the input.
        check(&format!(r#"{{"sources":"s","trackingNumber":{value}"#));
        check(&format!(r#"{{"sources":"s","trackingNumber":{value}}}"#));
    }
}

/// The schema's own lists, which the fast parser reads with guesses about where their elements
/// and brackets are: well and badly formed, compact, on one line and across lines.
#[test]
fn schema_lists() {
    let shapes = [
        "[]",
        "[ ]",
        "[\n]",
        "[E]",
        "[ E ]",
        "[E,E]",
        "[E, E]",
        "[E ,E]",
        "[E\n,E]",
        "[\nE,\nE\n]",
        "[\n  E,\n  E\n]",
        "[,]",
        "[E,]",
        "[,E]",
        "[E E]",
        "[E,,E]",
        "[E]]",
        "[E",
        "[",
        "[E,",
        "[null]",
        "[E,null]",
        "[1]",
        "[[]]",
        "[{}]",
    ];
    let source = r#"{"id":"i","type":"SOURCE","name":"n"}"#;
    let attribute = r#"{"attributeName":"a","operation":"Add"}"#;
    for shape in shapes {
        check(&with(&format!(
            r#""errors":{}"#,
            shape.replace('E', "\"e\"")
        )));
        check(&with(&format!(
            r#""warnings":{}"#,
            shape.replace('E', "\"w\"")
        )));
        let account = format!(
            r#"{{"source":{source},"accountOperation":"Modify","provisioningResult":"SUCCESS","provisioningTarget":"t","attributeRequests":{}}}"#,
            shape.replace('E', attribute)
        );
        check(&format!(
            r#"{{"trackingNumber":"t","sources":"s","recipient":{{"type":"IDENTITY","id":"i","name":"n"}},"accountRequests":[{account}]}}"#
        ));
        check(&format!(
            r#"{{"trackingNumber":"t","sources":"s","recipient":{{"type":"IDENTITY","id":"i","name":"n"}},"accountRequests":{}}}"#,
            shape.replace('E', &account)
        ));
    }
}

#[test]
fn numbers() {
    for number in [
        "0",
        "-0",
        "1",
        "-1",
        "01",
        "-01",
        "1.",
        ".5",
        "1.5",
        "1e5",
        "1E+5",
        "1e-5",
        "1e",
        "1e+",
        "-",
        "--1",
        "+1",
        "1.5e3.2",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "1e308",
        "1e309",
        "1e400",
        "-1e400",
        "1e-400",
        "0e99999999999999999999",
        "123456789012345678901234567890",
        "0.1",
        "1x",
        "0x10",
        "NaN",
        "Infinity",
    ] {
        check(&with(&format!(r#""x":{number}"#)));
        check(&with(&format!(r#""x":[{number}]"#)));
        check(&format!(r#"{{{BASE},"sources":{number}}}"#));
        check(&with(&format!(r#""action":{number}"#)));
        check(number);
    }
}

#[test]
fn literals_and_structure() {
    for text in [
        "",
        " ",
        "\n\t\r ",
        "\u{c}{}",
        "{}",
        "[]",
        "null",
        "true",
        "false",
        "nul",
        "nulls",
        "tru",
        "{",
        "}",
        "[",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\" 1}",
        "{\"a\":1,}",
        "{,}",
        "[1,]",
        "[,1]",
        "[1 2]",
        "{\"a\":1 \"b\":2}",
        "{1:1}",
        "{} {}",
        "{}x",
        "{} ",
        "\u{feff}{}",
        "[1]]",
        "{\"a\":[}",
        "\"just a string\"",
        "42",
    ] {
        check(text);
        check(&with(&format!(r#""x":{text}"#)));
    }
}

#[test]
fn whitespace_everywhere() {
    let spaced = BASE
        .replace(':', " \t:\r\n ")
        .replace(',', "\n\n        ,                    ");
    check(&format!(" \n{{ {spaced} }}\r\n\t"));
    check(&format!("{{{spaced}\u{b}}}"));
    check(&format!("{{{spaced}\u{a0}}}"));
    for run in 0..40 {
        check(&format!(
            "{{\n{}{BASE}\n{}}}",
            " ".repeat(run),
            " ".repeat(run)
        ));
    }
}

#[test]
fn nesting_limits() {
    for depth in [0, 1, 2, 5, 6, 62, 63, 64, 65, 125, 126, 127, 128, 129, 200] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        for value in [&arrays, &objects] {
            check(&with(&format!(r#""x":{value}"#)));
            // Skipped unread (a repeated key): no limit at all.
            check(&format!(r#"{{{BASE},"sources":{value}}}"#));
            check(&with(&format!(r#""_metadata":{{"x":{value}}}"#)));
            // Envelope keys are reported one by one, incomplete or not.
            check(&with(&format!(
                r#""_metadata":{{"triggerId":{value},"triggerType":[],"invocationId":[[1]]}}"#
            )));
            check(&with(&format!(
                r#""accountRequests":[{{"attributeRequests":[{{"attributeValue":{value}}}]}}]"#
            )));
            check(&with(&format!(
                r#""accountRequests":[{{"attributeRequests":[{{"attributeValue":["a",{value}]}}]}}]"#
            )));
            check(&with(&format!(r#""errors":["a",{value}]"#)));
            check(value);
        }
    }
    // Deep nesting in a skipped value is not limited, nor read recursively.
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    check(&format!(r#"{{{BASE},"sources":{deep}}}"#));
    check(&with(&format!(r#""x":{deep}"#)));
}

#[test]
fn duplicates_unknown_fields_and_envelope() {
    for text in [
        with(r#""x":1,"x":2"#),
        with(r#""x":{"a":1,"a":{"b":2,"b":3}}"#),
        with(r#""_metadata":{"triggerId":"idn:post-provisioning","invocationId":"u"}"#),
        with(r#""_metadata":{"triggerId":1,"invocationId":null,"other":[1]}"#),
        with(r#""_metadata":"not an object""#),
        with(r#""_metadata":{},"_metadata":{}"#),
        with(r#""_metadata":5,"y":1"#),
        with(r#""a.b":1,"":2,"1x":3,"é":4,"\n":5"#),
        with(r#""recipient":null"#),
        with(r#""requester":null,"requester":{}"#),
        with(r#""requester":{"type":"PERSON","id":1,"extra":true}"#),
        with(r#""errors":null,"warnings":["a",null,3,"b",[]]"#),
        format!(
            r#"{{{BASE},"accountRequests":[{{"source":{{"id":"a","type":"SOURCE","name":"n","type":"X"}},"accountId":null,"accountOperation":"Rename","provisioningResult":"DONE","provisioningTarget":"t","ticketId":7,"attributeRequests":[{{"attributeName":"a","attributeValue":["x","y"],"operation":"Replace"}},{{"attributeName":"b","attributeValue":["x",1]}},null,5]}},null]}}"#
        ),
        r#"{"accountRequests":{"a":1},"recipient":[1,{"a":1,"a":2}],"trackingNumber":[],"sources":{}}"#.to_owned(),
        r#"{"trackingNumber":"t","trackingNumber":"u","sources":"s","recipient":{"type":"IDENTITY","type":"IDENTITY","id":"i","name":"n"},"accountRequests":[{"source":{},"source":{}}]}"#.to_owned(),
        // Problems inside the dropped value of a repeated field.
        r#"{"trackingNumber":"t","sources":"s","recipient":1,"recipient":{"type":"IDENTITY","id":"a","id":"b","name":"n"},"accountRequests":[]}"#.to_owned(),
        with(r#""requester":null,"requester":{"x":[{"k":1,"k":2}]}"#),
    ] {
        check(&text);
        check(&serde_json::to_string_pretty(&serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)).unwrap());
    }
}

#[test]
fn not_utf8_takes_the_reference_path() {
    for bytes in [
        b"{\"x\":\"\xff\"}".to_vec(),
        format!("{{{BASE},\"sources\":\"")
            .into_bytes()
            .into_iter()
            .chain(*b"\xc3\x28\"}")
            .collect(),
        format!("{{{BASE},\"x\":\"")
            .into_bytes()
            .into_iter()
            .chain(*b"\xed\xa0\x80\"}")
            .collect(),
        b"\xef\xbb\xbf{}".to_vec(),
        vec![0xff],
        vec![0x80],
    ] {
        check_bytes(&bytes);
    }
}

#[test]
fn size_limit() {
    let doc = payload("doc_example.json");
    for max_bytes in [0, 1, doc.len() - 1, doc.len(), doc.len() + 1] {
        let options = Options {
            limits: Limits {
                max_bytes,
                ..Limits::DEFAULT
            },
            ..Options::default()
        };
        agree(&doc, &options).unwrap();
        agree(b"", &options).unwrap();
    }
}

#[test]
fn strings_without_escapes_are_borrowed() {
    use std::borrow::Cow;
    let text = with(r#""action":"plain","errors":["a\nb"]"#);
    let event = validate_str(&text, &Options::default())
        .unwrap()
        .event
        .unwrap();
    assert!(matches!(event.tracking_number, Cow::Borrowed("t")));
    assert!(matches!(
        event.action.as_option(),
        Some(Cow::Borrowed("plain"))
    ));
    assert!(matches!(event.error_messages(), [Cow::Owned(text)] if text == "a\nb"));
}

#[test]
fn writer_edge_cases() {
    for field in [
        r#""_metadata":{}"#,
        r#""_metadata":{"x":1}"#,
        r#""_metadata":{"invocationId":"u","x":[1.5,-0.0,1e300,18446744073709551615,-9223372036854775808]}"#,
        r#""_metadata":{"triggerType":"t","triggerId":"i"}"#,
        r#""_metadata":7"#,
        r#""action":null,"errors":[],"warnings":null,"requester":null"#,
        r#""x\n\"y":"\u0000\u001f\u007f\/","z":{"a":{"b":[]}}"#,
        r#""accountRequests":[{"source":{"id":"","type":"S\tX","name":"","k":null},"accountOperation":"o","provisioningResult":"R\u0001","provisioningTarget":"","accountId":null,"ticketId":null,"attributeRequests":[{"attributeName":"","operation":"Op","attributeValue":["a","b\n"],"q":{}}]}]"#,
    ] {
        let text = if field.contains("accountRequests") {
            format!(
                "{{{},{field}}}",
                BASE.replace(r#","accountRequests":[]"#, "")
            )
        } else {
            with(field)
        };
        let event = ProvisioningCompleted::from_json(&text).unwrap();
        let expected = serde_json::to_string(&event).unwrap();
        assert_eq!(event.to_json(), expected, "{text}");
        let mut buffer = Vec::new();
        event.write_json(&mut buffer).unwrap();
        assert_eq!(buffer, expected.as_bytes());
    }
}
