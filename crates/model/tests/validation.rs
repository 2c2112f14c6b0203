//! The validation contract (spec "Required behaviour", 2, 3 and 5), case by case.
//!
//! Every case is a mutation of one complete valid event and lists the issues it must give, each
//! as (class, path, kind). The classes come from the spec: an `E` issue is an error in both modes
//! (missing or `null` required field, wrong JSON type, duplicate key, nesting too deep); an `X`
//! issue is a schema extension, a warning when lenient and an error when strict (unknown field,
//! unknown enum value, multi-valued `attributeValue`, `accountId: null`, malformed `_metadata`);
//! a `W` issue is a warning in both modes (an `accountOperation` other than its usual values:
//! the published schema, beta aside, leaves it free text). Each case runs in both modes, through `validate_str` and
//! `validate_value`, and checks the exact set of issues, that each issue's path locates it in the
//! input and its value is the one found there, and that a valid document round-trips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use provtrail_model::{
    Issue, IssueKind, Limits, Mode, Options, ProvisioningCompleted, Severity, SyntaxError,
    Validation, validate_slice, validate_str, validate_value,
};
use serde_json::{Value, json};
use support::{
    ACCOUNT_OPERATIONS, ATTRIBUTE_OPERATIONS, RESULTS, Step, base_event, check_issue_location,
    parse_path, render_path, resolve, resolve_mut,
};

// ---------------------------------------------------------------------------------------------
// Cases and how they are checked

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// An error in both modes.
    E,
    /// A schema extension: a warning when lenient, an error when strict.
    X,
    /// News, not a fault: a warning in both modes.
    W,
}

#[derive(Debug, Clone)]
struct Expect {
    class: Class,
    path: String,
    kind: IssueKind,
}

fn e(path: &str, kind: IssueKind) -> Expect {
    Expect {
        class: Class::E,
        path: path.to_owned(),
        kind,
    }
}

fn w(path: &str, kind: IssueKind) -> Expect {
    Expect {
        class: Class::W,
        path: path.to_owned(),
        kind,
    }
}

fn x(path: &str, kind: IssueKind) -> Expect {
    Expect {
        class: Class::X,
        path: path.to_owned(),
        kind,
    }
}

const STRING: &str = "a string";
const OBJECT: &str = "an object";
const STRINGS: &str = "an array of strings";
const OBJECTS: &str = "an array of objects";

fn wrong(expected: &'static str) -> IssueKind {
    IssueKind::WrongType { expected }
}

struct Case {
    name: String,
    /// The bytes validated.
    text: String,
    /// The document as JSON; for duplicate keys, the one with the first value of each key.
    doc: Value,
    /// True when `doc` is exactly what `text` says (no duplicate keys), so that a valid case must
    /// round-trip to it and `validate_value` must agree.
    exact: bool,
    expect: Vec<Expect>,
}

impl Case {
    fn new(name: impl Into<String>, doc: Value, expect: Vec<Expect>) -> Case {
        Case {
            name: name.into(),
            text: serde_json::to_string(&doc).unwrap(),
            doc,
            exact: true,
            expect,
        }
    }

    fn text(name: impl Into<String>, text: String, doc: Value, expect: Vec<Expect>) -> Case {
        Case {
            name: name.into(),
            text,
            doc,
            exact: false,
            expect,
        }
    }
}

fn severity(class: Class, mode: Mode) -> Severity {
    match (class, mode) {
        (Class::E, _) | (Class::X, Mode::Strict) => Severity::Error,
        (Class::X, Mode::Lenient) | (Class::W, _) => Severity::Warning,
    }
}

fn options(mode: Mode) -> Options {
    match mode {
        Mode::Lenient => Options::lenient(),
        Mode::Strict => Options::strict(),
    }
}

type Triple = (String, String, String);

fn triple(severity: Severity, path: &str, kind: &IssueKind) -> Triple {
    (
        format!("{severity:?}"),
        path.to_owned(),
        format!("{kind:?}"),
    )
}

fn actual_triples(report: &Validation<'_>) -> Vec<Triple> {
    let mut all: Vec<Triple> = report
        .errors
        .iter()
        .map(|i| triple(Severity::Error, &i.path, &i.kind))
        .chain(
            report
                .warnings
                .iter()
                .map(|i| triple(Severity::Warning, &i.path, &i.kind)),
        )
        .collect();
    all.sort();
    all
}

/// The last key named by a path (`errors` for `errors[1]`), for checking that messages name it.
fn last_key(path: &str) -> Option<String> {
    parse_path(path)
        .ok()?
        .into_iter()
        .rev()
        .find_map(|step| match step {
            Step::Key(key) => Some(key),
            Step::Index(_) => None,
        })
}

/// What every issue must satisfy, whatever the case.
fn check_issue(doc: &Value, issue: &Issue) -> Result<(), String> {
    check_issue_location(doc, issue)?;
    if issue.message.trim().is_empty() {
        return Err(format!("empty message: {issue:?}"));
    }
    match (&issue.kind, &issue.value) {
        (IssueKind::Missing, Some(_)) => {
            return Err(format!("a missing field has no value: {issue:?}"));
        }
        (IssueKind::Null, value) if value.as_deref() != Some("null") => {
            return Err(format!("a `null` issue's value is `null`: {issue:?}"));
        }
        (_, Some(value)) if !issue.message.contains(value.as_str()) => {
            return Err(format!(
                "the message does not name the value {value}: {issue:?}"
            ));
        }
        _ => {}
    }
    if issue.kind != IssueKind::TooDeep {
        if let Some(key) = last_key(&issue.path) {
            if !issue.message.contains(&key) {
                return Err(format!(
                    "the message does not name the field `{key}`: {issue:?}"
                ));
            }
        }
    }
    Ok(())
}

fn check_case(case: &Case) -> Result<(), String> {
    for mode in [Mode::Lenient, Mode::Strict] {
        let options = options(mode);
        let report = validate_str(&case.text, &options)
            .map_err(|err| format!("{mode:?}: a JSON document gave a syntax error: {err}"))?;
        let mut expected: Vec<Triple> = case
            .expect
            .iter()
            .map(|want| triple(severity(want.class, mode), &want.path, &want.kind))
            .collect();
        expected.sort();
        let actual = actual_triples(&report);
        if actual != expected {
            return Err(format!(
                "{mode:?}: issues differ\n    expected {expected:?}\n    actual   {actual:?}\n    errors   {:?}\n    warnings {:?}",
                report.errors, report.warnings
            ));
        }
        let valid = expected.iter().all(|(severity, _, _)| severity != "Error");
        if report.is_valid() != valid {
            return Err(format!("{mode:?}: is_valid() is {}", report.is_valid()));
        }
        for issue in report.errors.iter().chain(&report.warnings) {
            check_issue(&case.doc, issue).map_err(|err| format!("{mode:?}: {err}"))?;
        }
        if report.clone().into_result().is_ok() != valid {
            return Err(format!("{mode:?}: into_result disagrees with is_valid"));
        }
        if mode == Mode::Lenient && ProvisioningCompleted::from_json(&case.text).is_ok() != valid {
            return Err("from_json disagrees with lenient validation".into());
        }
        if valid {
            let Some(event) = &report.event else {
                return Err(format!("{mode:?}: valid but no event"));
            };
            if case.exact && event.to_value() != case.doc {
                return Err(format!(
                    "{mode:?}: the round trip changed the document\n    in  {}\n    out {}",
                    case.doc,
                    event.to_value()
                ));
            }
        }
        if case.exact {
            let from_value = validate_value(case.doc.clone(), &options);
            if from_value.errors != report.errors || from_value.warnings != report.warnings {
                return Err(format!(
                    "{mode:?}: validate_value disagrees with validate_str\n    value {:?} {:?}\n    str   {:?} {:?}",
                    from_value.errors, from_value.warnings, report.errors, report.warnings
                ));
            }
        }
    }
    Ok(())
}

fn run(cases: &[Case]) {
    assert!(!cases.is_empty());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            check_case(case)
                .err()
                .map(|err| format!("[{}] {err}", case.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree with the contract:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Mutations of the base event

fn steps(path: &str) -> Vec<Step> {
    parse_path(path).unwrap()
}

fn child(parent: &str, name: &str) -> String {
    let mut all = steps(parent);
    all.push(Step::Key(name.to_owned()));
    render_path(&all)
}

fn removed(path: &str) -> Value {
    let mut doc = base_event();
    let all = steps(path);
    let (Step::Key(key), parent) = all.split_last().unwrap() else {
        panic!("{path} does not end in a key");
    };
    let object = resolve_mut(&mut doc, parent)
        .unwrap()
        .as_object_mut()
        .unwrap();
    assert!(
        object.shift_remove(key).is_some(),
        "{path} is not in the base event"
    );
    doc
}

fn set(path: &str, value: Value) -> Value {
    let mut doc = base_event();
    *resolve_mut(&mut doc, &steps(path)).unwrap() = value;
    doc
}

fn inserted(object_path: &str, key: &str, value: Value) -> Value {
    let mut doc = base_event();
    let object = resolve_mut(&mut doc, &steps(object_path))
        .unwrap()
        .as_object_mut()
        .unwrap();
    assert!(
        object.insert(key.to_owned(), value).is_none(),
        "{key} exists"
    );
    doc
}

// ---------------------------------------------------------------------------------------------
// The schema, from the spec's tables

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    StrList,
    Obj,
    ObjList,
    /// `attributeValue`: a string; an array of strings is a schema extension.
    AttrValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    Required,
    /// Optional and nullable.
    Nullable,
    /// Optional, not nullable (`accountId`): `null` is a schema extension.
    NotNullable,
}

struct Field {
    name: &'static str,
    ty: Ty,
    presence: Presence,
    /// The listed values of an enum, or the known values of `accountOperation`.
    known: Option<&'static [&'static str]>,
}

const fn field(name: &'static str, ty: Ty, presence: Presence) -> Field {
    Field {
        name,
        ty,
        presence,
        known: None,
    }
}

const fn listed(name: &'static str, known: &'static [&'static str]) -> Field {
    Field {
        name,
        ty: Ty::Str,
        presence: Required,
        known: Some(known),
    }
}

use Presence::{NotNullable, Nullable, Required};

const ROOT: &[Field] = &[
    field("trackingNumber", Ty::Str, Required),
    field("sources", Ty::Str, Required),
    field("action", Ty::Str, Nullable),
    field("errors", Ty::StrList, Nullable),
    field("warnings", Ty::StrList, Nullable),
    field("recipient", Ty::Obj, Required),
    field("requester", Ty::Obj, Nullable),
    field("accountRequests", Ty::ObjList, Required),
];

const IDENTITY: &[Field] = &[
    listed("type", &["IDENTITY"]),
    field("id", Ty::Str, Required),
    field("name", Ty::Str, Required),
];

const ACCOUNT: &[Field] = &[
    field("source", Ty::Obj, Required),
    field("accountId", Ty::Str, NotNullable),
    listed("accountOperation", ACCOUNT_OPERATIONS),
    listed("provisioningResult", RESULTS),
    field("provisioningTarget", Ty::Str, Required),
    field("ticketId", Ty::Str, Nullable),
    field("attributeRequests", Ty::ObjList, Nullable),
];

const SOURCE: &[Field] = &[
    field("id", Ty::Str, Required),
    listed("type", &["SOURCE"]),
    field("name", Ty::Str, Required),
];

const ATTRIBUTE: &[Field] = &[
    field("attributeName", Ty::Str, Required),
    field("attributeValue", Ty::AttrValue, Nullable),
    listed("operation", ATTRIBUTE_OPERATIONS),
];

fn expected_name(ty: Ty) -> &'static str {
    match ty {
        Ty::Str | Ty::AttrValue => STRING,
        Ty::StrList => STRINGS,
        Ty::Obj => OBJECT,
        Ty::ObjList => OBJECTS,
    }
}

/// Values of every JSON type but the field's own (and but `null`).
fn wrong_values(ty: Ty) -> Vec<Value> {
    match ty {
        Ty::Str => vec![
            json!(42),
            json!(-4.5),
            json!(true),
            json!(["text in an array"]),
            json!({"text": "in an object"}),
        ],
        Ty::StrList => vec![
            json!(42),
            json!(false),
            json!("a string, not a list"),
            json!({"0": "an object, not a list"}),
        ],
        Ty::Obj => vec![
            json!(42),
            json!(true),
            json!("a string, not an object"),
            json!([]),
            json!([{"type": "IDENTITY"}]),
        ],
        Ty::ObjList => vec![
            json!(42),
            json!(true),
            json!("a string, not a list"),
            json!({}),
        ],
        Ty::AttrValue => vec![
            json!(42),
            json!(true),
            json!({"value": "in an object"}),
            json!([1, 2]),
            json!(["first", 2]),
            json!([null]),
        ],
    }
}

/// Every per-field case for one object of the base event.
fn field_cases(object: &str, fields: &[Field]) -> Vec<Case> {
    let mut cases = Vec::new();
    for f in fields {
        let path = child(object, f.name);
        let on_absent = match f.presence {
            Required => vec![e(&path, IssueKind::Missing)],
            Nullable | NotNullable => vec![],
        };
        cases.push(Case::new(
            format!("{path} removed"),
            removed(&path),
            on_absent,
        ));
        let on_null = match f.presence {
            Required => vec![e(&path, IssueKind::Null)],
            Nullable => vec![],
            NotNullable => vec![x(&path, IssueKind::Null)],
        };
        cases.push(Case::new(
            format!("{path} null"),
            set(&path, Value::Null),
            on_null,
        ));
        for value in wrong_values(f.ty) {
            cases.push(Case::new(
                format!("{path} = {value}"),
                set(&path, value),
                vec![e(&path, wrong(expected_name(f.ty)))],
            ));
        }
        if let Some(known) = f.known {
            for value in known {
                cases.push(Case::new(
                    format!("{path} = {value} (listed)"),
                    set(&path, json!(value)),
                    vec![],
                ));
            }
            let unlisted = [
                "NOT_A_LISTED_VALUE".to_owned(),
                known[0].to_lowercase(),
                format!(" {}", known[0]),
                String::new(),
            ];
            // The schema lists the values of an enum; `accountOperation`'s are only usual.
            let class = if f.name == "accountOperation" { w } else { x };
            for value in unlisted {
                cases.push(Case::new(
                    format!("{path} = {value:?} (not listed)"),
                    set(&path, json!(value)),
                    vec![class(&path, IssueKind::UnknownValue)],
                ));
            }
        } else if f.ty == Ty::Str {
            // No field has a format, length or pattern constraint.
            for value in ["", "Zoë \"Z\" O'Brien\\\n\t\u{1F600}\u{0}", "12345"] {
                cases.push(Case::new(
                    format!("{path} = {value:?} (any text)"),
                    set(&path, json!(value)),
                    vec![],
                ));
            }
        }
    }
    cases
}

// ---------------------------------------------------------------------------------------------
// The base event and every field

#[test]
fn the_complete_base_event_is_valid_in_both_modes_without_issues() {
    run(&[Case::new("base", base_event(), vec![])]);
}

#[test]
fn root_fields_missing_null_wrong_type_and_free_text_in_both_modes() {
    let mut cases = field_cases("$", ROOT);
    cases.push(Case::new(
        "action = an unlisted value (free text, no helper value needed)",
        set("action", json!("Something ISC added later")),
        vec![],
    ));
    cases.push(Case::new(
        "empty object",
        json!({}),
        ["trackingNumber", "sources", "recipient", "accountRequests"]
            .iter()
            .map(|name| e(name, IssueKind::Missing))
            .collect(),
    ));
    run(&cases);
}

#[test]
fn recipient_and_requester_fields_missing_null_wrong_type_and_unknown_type_in_both_modes() {
    let mut cases = field_cases("recipient", IDENTITY);
    cases.extend(field_cases("requester", IDENTITY));
    for object in ["recipient", "requester"] {
        cases.push(Case::new(
            format!("{object} = {{}}"),
            set(object, json!({})),
            ["type", "id", "name"]
                .iter()
                .map(|name| e(&child(object, name), IssueKind::Missing))
                .collect(),
        ));
    }
    run(&cases);
}

#[test]
fn account_request_fields_missing_null_wrong_type_and_unknown_values_in_both_modes() {
    let mut cases = field_cases("accountRequests[0]", ACCOUNT);
    cases.extend(field_cases("accountRequests[1]", ACCOUNT));
    cases.push(Case::new(
        "accountRequests = [] (no minimum length in the schema)",
        set("accountRequests", json!([])),
        vec![],
    ));
    cases.push(Case::new(
        "attributeRequests = []",
        set("accountRequests[1].attributeRequests", json!([])),
        vec![],
    ));
    run(&cases);
}

#[test]
fn source_fields_missing_null_wrong_type_and_unknown_type_in_both_modes() {
    let mut cases = field_cases("accountRequests[0].source", SOURCE);
    cases.extend(field_cases("accountRequests[1].source", SOURCE));
    cases.push(Case::new(
        "source = {}",
        set("accountRequests[1].source", json!({})),
        ["id", "type", "name"]
            .iter()
            .map(|name| {
                e(
                    &format!("accountRequests[1].source.{name}"),
                    IssueKind::Missing,
                )
            })
            .collect(),
    ));
    run(&cases);
}

#[test]
fn attribute_request_fields_missing_null_wrong_type_and_unknown_operation_in_both_modes() {
    let mut cases = field_cases("accountRequests[0].attributeRequests[1]", ATTRIBUTE);
    cases.extend(field_cases(
        "accountRequests[1].attributeRequests[0]",
        ATTRIBUTE,
    ));
    let value = "accountRequests[1].attributeRequests[0].attributeValue";
    cases.push(Case::new(
        "multi-valued attributeValue",
        set(
            value,
            json!(["CN=sales,DC=helpco,DC=com", "CN=staff,DC=helpco,DC=com"]),
        ),
        vec![x(value, IssueKind::MultiValuedAttribute)],
    ));
    cases.push(Case::new(
        "multi-valued attributeValue with one value",
        set(value, json!(["only"])),
        vec![x(value, IssueKind::MultiValuedAttribute)],
    ));
    cases.push(Case::new(
        "multi-valued attributeValue with no value",
        set(value, json!([])),
        vec![x(value, IssueKind::MultiValuedAttribute)],
    ));
    run(&cases);
}

#[test]
fn account_id_null_is_a_warning_when_lenient_and_an_error_when_strict() {
    // Also part of the field tables; spelled out here because the spec names it.
    for index in 0..2 {
        let path = format!("accountRequests[{index}].accountId");
        run(&[Case::new(
            format!("{path} null"),
            set(&path, Value::Null),
            vec![x(&path, IssueKind::Null)],
        )]);
    }
}

#[test]
fn metadata_envelope_is_allowed_and_a_malformed_one_is_an_extension() {
    let mut cases = vec![
        Case::new("_metadata removed", removed("_metadata"), vec![]),
        Case::new("_metadata = {}", set("_metadata", json!({})), vec![]),
        Case::new(
            "_metadata with a key of its own",
            inserted("_metadata", "deliveredAt", json!("2026-01-01T00:00:00Z")),
            vec![],
        ),
        Case::new(
            "_metadata inside recipient is an ordinary unknown field",
            inserted("recipient", "_metadata", json!({"invocationId": "x"})),
            vec![x("recipient._metadata", IssueKind::UnknownField)],
        ),
    ];
    for value in [
        Value::Null,
        json!(42),
        json!(true),
        json!("idn:post-provisioning"),
        json!([]),
        json!([{"invocationId": "x"}]),
    ] {
        cases.push(Case::new(
            format!("_metadata = {value}"),
            set("_metadata", value),
            vec![x("_metadata", IssueKind::Envelope)],
        ));
    }
    for key in ["triggerId", "triggerType", "invocationId"] {
        let path = format!("_metadata.{key}");
        cases.push(Case::new(format!("{path} removed"), removed(&path), vec![]));
        cases.push(Case::new(
            format!("{path} = \"\""),
            set(&path, json!("")),
            vec![],
        ));
        for value in [
            Value::Null,
            json!(42),
            json!(false),
            json!(["x"]),
            json!({"k": "v"}),
        ] {
            cases.push(Case::new(
                format!("{path} = {value}"),
                set(&path, value),
                vec![x(&path, IssueKind::Envelope)],
            ));
        }
    }
    run(&cases);
}

// ---------------------------------------------------------------------------------------------
// Unknown fields, bad elements, duplicates, roots

const OBJECTS_OF_THE_EVENT: &[&str] = &[
    "$",
    "recipient",
    "requester",
    "accountRequests[0]",
    "accountRequests[1]",
    "accountRequests[0].source",
    "accountRequests[1].source",
    "accountRequests[0].attributeRequests[0]",
    "accountRequests[1].attributeRequests[1]",
];

#[test]
fn unknown_fields_at_every_level_are_warnings_when_lenient_and_errors_when_strict() {
    let mut cases = Vec::new();
    for object in OBJECTS_OF_THE_EVENT {
        for (key, value) in [
            (
                "unexpectedField",
                json!({"nested": [1, "two", null, {"deep": true}]}),
            ),
            ("nullField", Value::Null),
            ("odd key", json!("v")),
        ] {
            let path = child(object, key);
            cases.push(Case::new(
                format!("{path} added"),
                inserted(object, key, value),
                vec![x(&path, IssueKind::UnknownField)],
            ));
        }
    }
    // Known names of other levels, and case variants, are unknown where they do not belong.
    for (object, key, path) in [
        ("$", "source", "source"),
        ("$", "TrackingNumber", "TrackingNumber"),
        ("recipient", "accountId", "recipient.accountId"),
        (
            "accountRequests[1]",
            "operation",
            "accountRequests[1].operation",
        ),
        (
            "accountRequests[1].source",
            "attributeName",
            "accountRequests[1].source.attributeName",
        ),
    ] {
        cases.push(Case::new(
            format!("{path} added"),
            inserted(object, key, json!("x")),
            vec![x(path, IssueKind::UnknownField)],
        ));
    }
    // Keys that are not plain names are quoted in the path.
    for (object, key, path) in [
        ("$", "odd key", r#"["odd key"]"#),
        ("$", "a.b", r#"["a.b"]"#),
        ("$", "1st", r#"["1st"]"#),
        ("$", "", r#"[""]"#),
        ("$", "say \"hi\"", r#"["say \"hi\""]"#),
        ("$", "ключ", r#"["ключ"]"#),
        ("$", "[0]", r#"["[0]"]"#),
        ("$", "with-dash_and_$", "with-dash_and_$"),
        ("recipient", "odd key", r#"recipient["odd key"]"#),
        ("accountRequests[1]", "a.b", r#"accountRequests[1]["a.b"]"#),
        (
            "accountRequests[1].attributeRequests[0]",
            "",
            r#"accountRequests[1].attributeRequests[0][""]"#,
        ),
    ] {
        cases.push(Case::new(
            format!("{path} added"),
            inserted(object, key, json!(7)),
            vec![x(path, IssueKind::UnknownField)],
        ));
    }
    run(&cases);
}

#[test]
fn a_root_key_named_dollar_is_not_reported_at_the_root_path() {
    // `$` is the root's path, so an unknown field named `$` needs another spelling.
    let doc = inserted("$", "$", json!("dollar"));
    let text = serde_json::to_string(&doc).unwrap();
    let report = validate_str(&text, &Options::lenient()).unwrap();
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    let issue = &report.warnings[0];
    assert_eq!(issue.kind, IssueKind::UnknownField);
    assert_ne!(
        issue.path, "$",
        "the unknown field `$` is reported as the root: {issue:?}"
    );
    assert_eq!(
        resolve(&doc, &parse_path(&issue.path).unwrap()),
        Some(&json!("dollar"))
    );
}

#[test]
fn bad_elements_at_index_1_are_reported_at_their_index() {
    let mut cases = Vec::new();
    for list in ["errors", "warnings"] {
        let at = format!("{list}[1]");
        cases.push(Case::new(
            format!("{at} null"),
            set(&at, Value::Null),
            vec![e(&at, IssueKind::Null)],
        ));
        for value in [json!(7), json!(true), json!(["x"]), json!({"m": "x"})] {
            cases.push(Case::new(
                format!("{at} = {value}"),
                set(&at, value),
                vec![e(&at, wrong(STRING))],
            ));
        }
        cases.push(Case::new(
            format!("{list} = [\"a\", 1, \"c\"]"),
            set(list, json!(["a", 1, "c"])),
            vec![e(&at, wrong(STRING))],
        ));
    }
    for (at, required) in [
        (
            "accountRequests[1]",
            &[
                "source",
                "accountOperation",
                "provisioningResult",
                "provisioningTarget",
            ][..],
        ),
        (
            "accountRequests[0].attributeRequests[1]",
            &["attributeName", "operation"][..],
        ),
    ] {
        cases.push(Case::new(
            format!("{at} null"),
            set(at, Value::Null),
            vec![e(at, IssueKind::Null)],
        ));
        for value in [json!(7), json!("x"), json!(false), json!([{}])] {
            cases.push(Case::new(
                format!("{at} = {value}"),
                set(at, value),
                vec![e(at, wrong(OBJECT))],
            ));
        }
        cases.push(Case::new(
            format!("{at} = {{}}"),
            set(at, json!({})),
            required
                .iter()
                .map(|name| e(&child(at, name), IssueKind::Missing))
                .collect(),
        ));
    }
    run(&cases);
}

/// JSON text of `doc` with `key` written a second time, with `dup`, right after its first
/// occurrence in the object at `object`.
fn text_with_duplicate(doc: &Value, object: &[Step], key: &str, dup: &Value) -> String {
    fn write(
        value: &Value,
        here: &mut Vec<Step>,
        target: (&[Step], &str, &Value),
        out: &mut String,
    ) {
        match value {
            Value::Object(map) => {
                out.push('{');
                for (n, (k, v)) in map.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    here.push(Step::Key(k.clone()));
                    write(v, here, target, out);
                    here.pop();
                    if here.as_slice() == target.0 && k == target.1 {
                        out.push(',');
                        out.push_str(&Value::String(k.clone()).to_string());
                        out.push(':');
                        out.push_str(&target.2.to_string());
                    }
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (n, v) in items.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    here.push(Step::Index(n));
                    write(v, here, target, out);
                    here.pop();
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(doc, &mut Vec::new(), (object, key, dup), &mut out);
    assert!(
        out.len() > serde_json::to_string(doc).unwrap().len(),
        "{key} not found"
    );
    out
}

#[test]
fn duplicate_keys_are_errors_in_both_modes_at_their_path() {
    let base = base_event();
    let mut cases = Vec::new();
    for (object, key, dup) in [
        ("$", "trackingNumber", json!("another")),
        ("$", "accountRequests", json!([])),
        ("$", "requester", Value::Null),
        ("$", "_metadata", json!({"invocationId": "other"})),
        ("recipient", "type", json!("IDENTITY")),
        ("accountRequests[1]", "provisioningResult", json!("SUCCESS")),
        ("accountRequests[1].source", "id", json!("other")),
        (
            "accountRequests[0].attributeRequests[1]",
            "operation",
            json!("Remove"),
        ),
        ("_metadata", "invocationId", json!("other")),
    ] {
        let path = child(object, key);
        cases.push(Case::text(
            format!("{path} twice"),
            text_with_duplicate(&base, &steps(object), key, &dup),
            base.clone(),
            vec![e(&path, IssueKind::DuplicateKey)],
        ));
    }
    // An unknown field twice, with the same value both times: unknown once, duplicate once.
    for object in ["$", "recipient", "accountRequests[1].attributeRequests[0]"] {
        let doc = inserted(object, "extra", json!({"a": 1}));
        let path = child(object, "extra");
        cases.push(Case::text(
            format!("{path} twice"),
            text_with_duplicate(&doc, &steps(object), "extra", &json!({"a": 1})),
            doc,
            vec![
                x(&path, IssueKind::UnknownField),
                e(&path, IssueKind::DuplicateKey),
            ],
        ));
    }
    // A duplicate inside the value of an unknown field.
    let doc = inserted("recipient", "extra", json!({"a": 1}));
    cases.push(Case::text(
        "recipient.extra.a twice",
        text_with_duplicate(&doc, &steps("recipient.extra"), "a", &json!(2)),
        doc,
        vec![
            x("recipient.extra", IssueKind::UnknownField),
            e("recipient.extra.a", IssueKind::DuplicateKey),
        ],
    ));
    run(&cases);
}

#[test]
fn non_object_roots_are_one_error_at_the_root() {
    let cases: Vec<Case> = [
        "null", "true", "0", "-1.5", "\"text\"", "[]", "[{}]", "[1,2]",
    ]
    .into_iter()
    .map(|text| {
        Case::new(
            format!("root {text}"),
            serde_json::from_str(text).unwrap(),
            vec![e("$", wrong(OBJECT))],
        )
    })
    .collect();
    run(&cases);
}

#[test]
fn missing_and_null_required_fields_differ_in_kind_and_message() {
    let objects: [(&str, &[Field]); 7] = [
        ("$", ROOT),
        ("recipient", IDENTITY),
        ("requester", IDENTITY),
        ("accountRequests[1]", ACCOUNT),
        ("accountRequests[1].source", SOURCE),
        ("accountRequests[1].attributeRequests[0]", ATTRIBUTE),
        ("accountRequests[0].attributeRequests[1]", ATTRIBUTE),
    ];
    let mut checked = 0;
    for (object, fields) in objects {
        for f in fields.iter().filter(|f| f.presence == Required) {
            let path = child(object, f.name);
            let only_error = |doc: Value| {
                let report = validate_value(doc, &Options::lenient());
                assert_eq!(report.errors.len(), 1, "{path}: {:?}", report.errors);
                report.errors.into_iter().next().unwrap()
            };
            let missing = only_error(removed(&path));
            let null = only_error(set(&path, Value::Null));
            assert_eq!(missing.kind, IssueKind::Missing, "{path}");
            assert_eq!(null.kind, IssueKind::Null, "{path}");
            assert_ne!(missing.message, null.message, "{path}");
            assert_eq!(missing.value, None, "{path}");
            assert_eq!(null.value.as_deref(), Some("null"), "{path}");
            assert!(missing.message.contains("missing"), "{missing:?}");
            assert!(null.message.contains("null"), "{null:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 4 + 3 + 3 + 4 + 3 + 2 + 2);
}

#[test]
fn a_missing_field_with_listed_values_names_them_in_both_readers() {
    let cases = [
        ("recipient.type", "a string: \"IDENTITY\""),
        ("accountRequests[1].source.type", "a string: \"SOURCE\""),
        (
            "accountRequests[0].provisioningResult",
            "a string: \"SUCCESS\", \"PENDING\" or \"FAILED\"",
        ),
        (
            "accountRequests[0].attributeRequests[1].operation",
            "a string: \"Add\", \"Set\" or \"Remove\"",
        ),
        ("recipient.name", "a string"),
    ];
    for (path, expected) in cases {
        let mut doc = base_event();
        apply(&mut doc, path, None);
        let name = path.rsplit('.').next().unwrap();
        let message = format!("required field `{name}` is missing (it must be {expected})");
        let text = doc.to_string();
        let fast = validate_str(&text, &Options::lenient()).unwrap();
        let reference = validate_value(doc, &Options::lenient());
        for errors in [fast.errors, reference.errors] {
            assert_eq!(errors.len(), 1, "{path}: {errors:?}");
            assert_eq!(errors[0].message, message, "{path}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Every problem at once

fn apply(doc: &mut Value, path: &str, value: Option<Value>) {
    let all = steps(path);
    match value {
        Some(value) => *resolve_mut(doc, &all).unwrap() = value,
        None => {
            let (Step::Key(key), parent) = all.split_last().unwrap() else {
                panic!("{path}");
            };
            resolve_mut(doc, parent)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .shift_remove(key)
                .unwrap();
        }
    }
}

#[test]
fn five_independent_errors_are_all_reported_at_once() {
    let mut doc = base_event();
    apply(&mut doc, "sources", Some(json!(12)));
    apply(&mut doc, "warnings[1]", Some(json!(false)));
    apply(&mut doc, "recipient.id", None);
    apply(
        &mut doc,
        "accountRequests[0].attributeRequests[1].operation",
        Some(Value::Null),
    );
    apply(&mut doc, "accountRequests[1].source.type", Some(json!(7)));
    run(&[Case::new(
        "five errors",
        doc,
        vec![
            e("sources", wrong(STRING)),
            e("warnings[1]", wrong(STRING)),
            e("recipient.id", IssueKind::Missing),
            e(
                "accountRequests[0].attributeRequests[1].operation",
                IssueKind::Null,
            ),
            e("accountRequests[1].source.type", wrong(STRING)),
        ],
    )]);
}

#[test]
fn five_independent_extensions_are_all_reported_at_once() {
    let mut doc = base_event();
    apply(&mut doc, "recipient.type", Some(json!("SERVICE_ACCOUNT")));
    apply(
        &mut doc,
        "accountRequests[0].accountOperation",
        Some(json!("Rename")),
    );
    apply(&mut doc, "accountRequests[0].accountId", Some(Value::Null));
    apply(
        &mut doc,
        "accountRequests[1].provisioningResult",
        Some(json!("RETRY")),
    );
    apply(
        &mut doc,
        "accountRequests[1].attributeRequests[1].attributeValue",
        Some(json!(["a", "b"])),
    );
    run(&[Case::new(
        "five extensions",
        doc,
        vec![
            x("recipient.type", IssueKind::UnknownValue),
            w(
                "accountRequests[0].accountOperation",
                IssueKind::UnknownValue,
            ),
            x("accountRequests[0].accountId", IssueKind::Null),
            x(
                "accountRequests[1].provisioningResult",
                IssueKind::UnknownValue,
            ),
            x(
                "accountRequests[1].attributeRequests[1].attributeValue",
                IssueKind::MultiValuedAttribute,
            ),
        ],
    )]);
}

#[test]
fn errors_are_listed_in_document_order() {
    let mut doc = base_event();
    apply(&mut doc, "accountRequests[1].ticketId", Some(json!(1)));
    apply(&mut doc, "trackingNumber", Some(Value::Null));
    apply(
        &mut doc,
        "accountRequests[0].attributeRequests[0].attributeValue",
        Some(json!(2)),
    );
    apply(&mut doc, "requester.name", Some(json!(3)));
    apply(&mut doc, "errors[0]", Some(json!(4)));
    let report = validate_value(doc, &Options::lenient());
    let paths: Vec<&str> = report.errors.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "trackingNumber",
            "errors[0]",
            "requester.name",
            "accountRequests[0].attributeRequests[0].attributeValue",
            "accountRequests[1].ticketId",
        ]
    );
}

#[test]
fn long_offending_values_are_shortened_in_value_and_message() {
    let long = "x".repeat(500);
    let doc = set("accountRequests[1].provisioningResult", json!(long));
    let report = validate_value(doc.clone(), &Options::strict());
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    let issue = &report.errors[0];
    let value = issue.value.as_deref().unwrap();
    assert!(value.chars().count() <= 100, "{value}");
    assert!(value.starts_with("\"xxxx"), "{value}");
    assert!(issue.message.contains(value));
    assert!(issue.message.chars().count() < 400, "{}", issue.message);
    check_issue_location(&doc, issue).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Bad bytes: a clean error, never a panic

fn not_json(bytes: &[u8]) -> SyntaxError {
    for options in [Options::lenient(), Options::strict()] {
        match validate_slice(bytes, &options) {
            Err(err) => {
                assert!(!err.to_string().is_empty());
                assert!(ProvisioningCompleted::from_slice(bytes).is_err());
            }
            Ok(report) => panic!(
                "{:?} gave a validation instead of a syntax error: {report:?}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }
    validate_slice(bytes, &Options::lenient()).unwrap_err()
}

fn base_text() -> String {
    serde_json::to_string(&base_event()).unwrap()
}

#[test]
fn text_that_is_not_json_is_a_syntax_error_with_a_position() {
    for text in [
        "not JSON",
        "{",
        "{\"trackingNumber\": }",
        "{'a': 1}",
        "[1,]",
        "nul",
    ] {
        match not_json(text.as_bytes()) {
            SyntaxError::NotJson {
                line,
                column,
                message,
            } => {
                assert_eq!(line, 1, "{text}");
                assert!(column >= 1, "{text}");
                assert!(!message.is_empty());
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn invalid_utf8_is_a_syntax_error() {
    let mut bytes = br#"{"trackingNumber": ""#.to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, 0x80]);
    bytes.extend_from_slice(br#""}"#);
    assert!(matches!(not_json(&bytes), SyntaxError::NotJson { .. }));
    let mut key = b"{\"".to_vec();
    key.extend_from_slice(&[0xc3, 0x28]);
    key.extend_from_slice(b"\": 1}");
    assert!(matches!(not_json(&key), SyntaxError::NotJson { .. }));
    assert!(matches!(not_json(&[0xff]), SyntaxError::NotJson { .. }));
}

#[test]
fn trailing_data_after_the_event_is_a_syntax_error() {
    let text = base_text();
    for tail in [" x", "{}", " {}", ",", "]", "\u{0}"] {
        let input = format!("{text}{tail}");
        assert!(
            matches!(not_json(input.as_bytes()), SyntaxError::NotJson { .. }),
            "{tail:?}"
        );
    }
    // Trailing whitespace is not data.
    let padded = format!("\n\t {text} \r\n");
    assert!(
        validate_str(&padded, &Options::strict())
            .unwrap()
            .is_valid()
    );
}

#[test]
fn empty_and_whitespace_only_input_is_the_empty_error() {
    assert_eq!(not_json(b""), SyntaxError::Empty);
    for text in [" ", "\n", "\t\r\n  ", "   \n\n"] {
        assert_eq!(not_json(text.as_bytes()), SyntaxError::Empty, "{text:?}");
    }
}

#[test]
fn a_byte_order_mark_is_a_syntax_error() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(base_text().as_bytes());
    match not_json(&bytes) {
        SyntaxError::NotJson {
            message,
            line,
            column,
        } => {
            assert!(message.contains("byte order mark"), "{message}");
            assert_eq!((line, column), (1, 1));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lone_surrogate_escape_is_a_syntax_error_that_says_so() {
    let text = base_text();
    for escape in [r"\ud800", r"\ud800\u0041", r"\udbff x"] {
        let input = text.replacen("Corp AD", &format!("Corp AD {escape}"), 1);
        match not_json(input.as_bytes()) {
            SyntaxError::NotJson { message, .. } => {
                assert!(message.contains("surrogate pair"), "{escape}: {message}")
            }
            other => panic!("{escape}: {other:?}"),
        }
    }
}

#[test]
fn a_body_above_the_size_limit_is_too_large_and_one_at_the_limit_is_read() {
    let two_mib = 2 * 1024 * 1024;
    let mut doc = base_event();
    let padding = two_mib - base_text().len() - r#","padding":"""#.len();
    doc.as_object_mut()
        .unwrap()
        .insert("padding".into(), json!("p".repeat(padding)));
    let text = serde_json::to_string(&doc).unwrap();
    assert_eq!(text.len(), two_mib);
    assert_eq!(
        not_json(text.as_bytes()),
        SyntaxError::TooLarge {
            size: two_mib,
            limit: 1024 * 1024
        }
    );
    // A larger limit reads it; exactly at the limit is still accepted.
    let options = Options {
        mode: Mode::Lenient,
        limits: Limits {
            max_bytes: two_mib,
            ..Limits::DEFAULT
        },
    };
    let report = validate_slice(text.as_bytes(), &options).unwrap();
    assert!(report.is_valid(), "{:?}", report.errors);
    assert_eq!(report.warnings.len(), 1);
    assert_eq!(report.warnings[0].path, "padding");
    let one_less = Options {
        limits: Limits {
            max_bytes: two_mib - 1,
            ..Limits::DEFAULT
        },
        ..options
    };
    assert!(matches!(
        validate_slice(text.as_bytes(), &one_less),
        Err(SyntaxError::TooLarge { .. })
    ));
}

/// A key repeated many times after a large first value: each repetition is reported against
/// the first value, which is shown shortened and never copied or written out whole (it was, once
/// per repetition: a megabyte of them took minutes). Through both readers: at the top, where
/// an unknown key is read straight into the event, and inside an unknown object.
#[test]
fn a_key_repeated_after_a_large_value_is_reported_once_per_repetition() {
    let big = "A".repeat(200_000);
    let repeats = 20_000;
    let event = serde_json::to_string(&base_event()).unwrap();
    let body = event.strip_suffix('}').unwrap();
    let top = format!("{body},\"x\":\"{big}\"{}}}", ",\"x\":0".repeat(repeats));
    let inner = format!(
        "{body},\"x\":{{\"y\":\"{big}\"{}}}}}",
        ",\"y\":0".repeat(repeats)
    );
    for (text, path) in [(&top, "x"), (&inner, "x.y")] {
        for options in [Options::lenient(), Options::strict()] {
            let report = validate_slice(text.as_bytes(), &options).unwrap();
            let duplicates: Vec<&Issue> = report
                .errors
                .iter()
                .filter(|issue| issue.kind == IssueKind::DuplicateKey)
                .collect();
            assert_eq!(
                report.errors.len() + report.errors_not_listed,
                repeats + usize::from(options.mode == Mode::Strict),
                "{path}"
            );
            assert_eq!(duplicates[0].path, path);
            let shown = format!("first \"{}…, then 0", "A".repeat(79));
            assert!(
                duplicates[0].message.ends_with(&shown),
                "{}",
                duplicates[0].message
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Nesting

/// `levels` arrays nested in each other: `[[…[]…]]`.
fn nested_arrays(levels: usize) -> Value {
    let mut value = json!([]);
    for _ in 1..levels {
        value = json!([value]);
    }
    value
}

/// The path of the innermost of `levels` nested arrays at `at`.
fn innermost(at: &str, levels: usize) -> String {
    let mut path = at.to_owned();
    for _ in 1..levels {
        path.push_str("[0]");
    }
    path
}

fn with_limits(mode: Mode, max_depth: usize) -> Options {
    Options {
        mode,
        limits: Limits {
            max_depth,
            ..Limits::DEFAULT
        },
    }
}

/// Checks the depth limit at its boundary for nesting inside the unknown field `key` of the object
/// at `object`, which sits at depth `object_depth` (the root is 1).
fn check_depth_boundary(max_depth: usize, object: &str, object_depth: usize) {
    let key = "deep";
    let at = child(object, key);
    // The innermost array of `levels` arrays in `key` is at depth object_depth + levels.
    let fits = max_depth - object_depth;
    let doc = inserted(object, key, nested_arrays(fits));
    let text = serde_json::to_string(&doc).unwrap();
    for mode in [Mode::Lenient, Mode::Strict] {
        let report = validate_str(&text, &with_limits(mode, max_depth)).unwrap();
        let issues: Vec<_> = report.errors.iter().chain(&report.warnings).collect();
        assert_eq!(issues.len(), 1, "{max_depth} {at}: {issues:?}");
        assert_eq!(issues[0].kind, IssueKind::UnknownField);
        assert_eq!(report.is_valid(), mode == Mode::Lenient);
    }
    let doc = inserted(object, key, nested_arrays(fits + 1));
    let text = serde_json::to_string(&doc).unwrap();
    for mode in [Mode::Lenient, Mode::Strict] {
        let report = validate_str(&text, &with_limits(mode, max_depth)).unwrap();
        let too_deep: Vec<_> = report
            .errors
            .iter()
            .filter(|issue| issue.kind == IssueKind::TooDeep)
            .collect();
        assert_eq!(too_deep.len(), 1, "{max_depth} {at}: {:?}", report.errors);
        assert_eq!(too_deep[0].path, innermost(&at, fits + 1));
        check_issue_location(&doc, too_deep[0]).unwrap();
        assert!(!report.is_valid());
        assert!(
            report
                .warnings
                .iter()
                .all(|w| w.kind == IssueKind::UnknownField)
        );
    }
}

#[test]
fn nesting_inside_an_unknown_field_is_limited_to_max_depth() {
    check_depth_boundary(Limits::DEFAULT.max_depth, "$", 1);
    check_depth_boundary(
        Limits::DEFAULT.max_depth,
        "accountRequests[1].attributeRequests[0]",
        5,
    );
    check_depth_boundary(10, "$", 1);
    check_depth_boundary(10, "recipient", 2);
}

#[test]
fn nesting_inside_a_wrongly_typed_field_is_limited_to_max_depth() {
    let doc = set("trackingNumber", nested_arrays(80));
    let report = validate_value(doc, &Options::lenient());
    let kinds: Vec<_> = report
        .errors
        .iter()
        .map(|i| (&i.path[..], &i.kind))
        .collect();
    assert!(
        kinds.contains(&("trackingNumber", &wrong(STRING))),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().any(|(_, kind)| **kind == IssueKind::TooDeep),
        "{kinds:?}"
    );
}

#[test]
fn the_depth_limit_counts_the_schema_s_own_containers() {
    // root (1) > accountRequests (2) > account request (3) > attributeRequests (4) > attribute (5)
    let text = base_text();
    let report = validate_str(&text, &with_limits(Mode::Lenient, 5)).unwrap();
    assert!(report.is_valid(), "{:?}", report.errors);
    let report = validate_str(&text, &with_limits(Mode::Lenient, 4)).unwrap();
    assert!(
        report
            .errors
            .iter()
            .any(|issue| issue.kind == IssueKind::TooDeep),
        "a document 5 levels deep passes a limit of 4: {:?}",
        report.errors
    );
}

/// Every issue of `doc` validated with `max_depth` in `mode`, after checking that the reference
/// reader (`validate_value`) says the same, that each issue locates itself in `doc`, and that a
/// document with a `TooDeep` error gives no event.
fn deep_issues(doc: &Value, mode: Mode, max_depth: usize) -> Vec<Issue> {
    let text = serde_json::to_string(doc).unwrap();
    let options = with_limits(mode, max_depth);
    let report = validate_str(&text, &options).unwrap();
    let from_value = validate_value(doc.clone(), &options);
    assert_eq!(from_value.errors, report.errors, "{max_depth}");
    assert_eq!(from_value.warnings, report.warnings, "{max_depth}");
    let issues: Vec<Issue> = report
        .errors
        .iter()
        .chain(&report.warnings)
        .cloned()
        .collect();
    for issue in &issues {
        check_issue_location(doc, issue).unwrap();
    }
    if issues.iter().any(|issue| issue.kind == IssueKind::TooDeep) {
        assert!(report.event.is_none(), "{max_depth}: {issues:?}");
        assert!(!report.is_valid());
    }
    issues
}

fn kinds_and_paths(issues: &[Issue]) -> Vec<(IssueKind, &str)> {
    issues
        .iter()
        .map(|issue| (issue.kind.clone(), issue.path.as_str()))
        .collect()
}

#[test]
fn the_first_event_container_beyond_the_limit_is_the_one_error_and_is_not_read() {
    // In document order, the first container at depth `limit + 1`.
    for (limit, path) in [
        (0, "$"),
        (1, "errors"),
        (2, "accountRequests[0]"),
        (3, "accountRequests[0].source"),
        (4, "accountRequests[0].attributeRequests[0]"),
    ] {
        for mode in [Mode::Lenient, Mode::Strict] {
            let issues = deep_issues(&base_event(), mode, limit);
            assert_eq!(
                kinds_and_paths(&issues),
                [(IssueKind::TooDeep, path)],
                "{limit}: {issues:?}"
            );
            let container = if path == "errors" { "array" } else { "object" };
            assert!(
                issues[0].message.contains(container)
                    && issues[0]
                        .message
                        .contains(&format!("limit of {limit} level")),
                "{limit}: {}",
                issues[0].message
            );
            assert_eq!(issues[0].value, None);
        }
    }
    assert!(deep_issues(&base_event(), Mode::Strict, 5).is_empty());
}

#[test]
fn a_multi_valued_attribute_value_is_at_depth_six() {
    let at = "accountRequests[1].attributeRequests[0].attributeValue";
    let doc = set(at, json!(["a", "b"]));
    let issues = deep_issues(&doc, Mode::Lenient, 6);
    assert_eq!(
        kinds_and_paths(&issues),
        [(IssueKind::MultiValuedAttribute, at)]
    );
    // One level less: the array is not read, so whether it holds strings is unknown; it is
    // reported as too deep and as nothing else.
    for mode in [Mode::Lenient, Mode::Strict] {
        let issues = deep_issues(&doc, mode, 5);
        assert_eq!(kinds_and_paths(&issues), [(IssueKind::TooDeep, at)]);
        assert!(issues[0].message.contains("array"), "{:?}", issues[0]);
    }
}

#[test]
fn a_value_with_containers_beyond_the_limit_is_described_not_shown() {
    let too_deep = "that nests deeper than the limit of";
    // A wrongly typed field whose inner array is too deep, or which is itself too deep.
    for (value, limit, deep_at) in [
        (json!([[1]]), 2, "trackingNumber[0]"),
        (json!([1]), 1, "trackingNumber"),
        (json!({"a": {"b": 1}}), 2, "trackingNumber.a"),
    ] {
        let doc = set("trackingNumber", value.clone());
        let issues = deep_issues(&doc, Mode::Lenient, limit);
        assert_eq!(
            kinds_and_paths(&issues),
            [
                (IssueKind::TooDeep, deep_at),
                (wrong(STRING), "trackingNumber")
            ],
            "{value}"
        );
        let wrong_type = &issues[1];
        let found = if value.is_array() {
            "an array"
        } else {
            "an object"
        };
        assert_eq!(
            wrong_type.message,
            format!(
                "`trackingNumber` must be a string, found {found} {too_deep} {}",
                if limit == 1 { "1 level" } else { "2 levels" }
            )
        );
        assert_eq!(wrong_type.value, None, "an incomplete value is not shown");
    }

    // An array of strings in `attributeValue` with an array in it: not a multi-valued attribute.
    let at = "accountRequests[1].attributeRequests[0].attributeValue";
    let doc = set(at, json!(["a", ["b"]]));
    let issues = deep_issues(&doc, Mode::Lenient, 6);
    assert_eq!(
        kinds_and_paths(&issues),
        [
            (IssueKind::TooDeep, &format!("{at}[1]")[..]),
            (wrong(STRING), at)
        ]
    );
    assert_eq!(
        issues[1].message,
        format!("`attributeValue` must be a string, found an array {too_deep} 6 levels")
    );
    assert!(!issues[1].message.contains("null"));

    // An unknown field (after the event's own containers, which need 5 levels): still reported
    // as one, described.
    let doc = inserted("$", "deep", json!([[[[["x"]]]]]));
    let issues = deep_issues(&doc, Mode::Lenient, 5);
    assert_eq!(
        kinds_and_paths(&issues),
        [
            (IssueKind::TooDeep, "deep[0][0][0][0]"),
            (IssueKind::UnknownField, "deep")
        ]
    );
    assert!(issues[1].message.contains(too_deep), "{:?}", issues[1]);
    assert_eq!(issues[1].value, None);

    // Envelope keys are described one by one: only the incomplete one is not shown.
    let doc = set(
        "_metadata",
        json!({"triggerId": [[[["x"]]]], "triggerType": [], "invocationId": "id"}),
    );
    let issues = deep_issues(&doc, Mode::Lenient, 5);
    assert_eq!(
        kinds_and_paths(&issues),
        [
            (IssueKind::TooDeep, "_metadata.triggerId[0][0][0]"),
            (IssueKind::Envelope, "_metadata.triggerId"),
            (IssueKind::Envelope, "_metadata.triggerType"),
        ]
    );
    assert!(issues[1].message.contains(too_deep), "{:?}", issues[1]);
    assert_eq!(issues[1].value, None);
    assert!(!issues[2].message.contains(too_deep), "{:?}", issues[2]);
    assert_eq!(issues[2].value.as_deref(), Some("[]"));

    // A root that is not an object.
    let text = "[[1]]";
    let report = validate_str(text, &with_limits(Mode::Lenient, 1)).unwrap();
    assert_eq!(
        report.errors[1].message,
        format!(
            "a Provisioning Completed event must be a JSON object, found an array {too_deep} 1 level"
        )
    );
    assert_eq!(report.errors[0].kind, IssueKind::TooDeep);
    assert_eq!(report.errors[0].path, "[0]");
}

/// A bad document that must give a clean error: a syntax error, or errors.
fn rejected_cleanly(bytes: &[u8]) {
    for options in [Options::lenient(), Options::strict()] {
        match validate_slice(bytes, &options) {
            Err(err) => assert!(!err.to_string().is_empty()),
            Ok(report) => {
                assert!(!report.is_valid());
                assert!(
                    report
                        .errors
                        .iter()
                        .any(|issue| issue.kind == IssueKind::TooDeep),
                    "{:?}",
                    report.errors
                );
            }
        }
    }
    assert!(ProvisioningCompleted::from_slice(bytes).is_err());
}

#[test]
fn hundred_thousand_levels_of_nesting_are_rejected_without_overflowing_the_stack() {
    let depth = 100_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    rejected_cleanly(arrays.as_bytes());
    let unclosed = "[".repeat(depth);
    rejected_cleanly(unclosed.as_bytes());
    let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    rejected_cleanly(objects.as_bytes());
    let text = base_text();
    let in_unknown = format!("{{\"deep\":{arrays},{}", &text[1..]);
    rejected_cleanly(in_unknown.as_bytes());
    let in_field = text.replacen(
        "\"trackingNumber\":\"4b4d982dddff4267ab12f0f1e72b5a6d\"",
        &format!("\"trackingNumber\":{arrays}"),
        1,
    );
    assert_ne!(in_field, text);
    rejected_cleanly(in_field.as_bytes());
}

#[test]
fn deep_values_given_as_serde_json_values_are_limited_too() {
    let doc = inserted("$", "deep", nested_arrays(200));
    let report = validate_value(doc, &Options::lenient());
    assert!(!report.is_valid());
    assert!(
        report
            .errors
            .iter()
            .any(|issue| issue.kind == IssueKind::TooDeep)
    );
}

#[test]
fn problems_inside_the_dropped_value_of_a_repeated_field_are_reported_too() {
    // The first value is the one read; the second, dropped, is still looked through, as an
    // unknown field's value is.
    let text = r#"{"trackingNumber":"t","sources":"s","recipient":1,"recipient":{"type":"IDENTITY","id":"a","id":"b","name":"n"},"accountRequests":[]}"#;
    for options in [Options::lenient(), Options::strict()] {
        let validation = validate_slice(text.as_bytes(), &options).unwrap();
        let errors: Vec<(String, IssueKind)> = validation
            .errors
            .iter()
            .map(|issue| (issue.path.clone(), issue.kind.clone()))
            .collect();
        assert!(
            errors.contains(&("recipient.id".to_owned(), IssueKind::DuplicateKey)),
            "{errors:?}"
        );
        assert!(
            errors.contains(&("recipient".to_owned(), IssueKind::DuplicateKey)),
            "{errors:?}"
        );
    }
}

#[test]
fn a_duplicate_key_names_the_values_it_has() {
    let minimal =
        r#""sources":"s","recipient":{"type":"IDENTITY","id":"i","name":"n"},"accountRequests":[]"#;
    let message = |text: &str| {
        let report = validate_str(text, &Options::lenient()).unwrap();
        let issue = report
            .errors
            .iter()
            .find(|issue| issue.kind == IssueKind::DuplicateKey)
            .unwrap_or_else(|| panic!("no duplicate in {report:?}"))
            .clone();
        (issue.message, issue.value)
    };
    // A known field: the first value is read into its type, so the later one is shown.
    let (text, value) = message(&format!(
        r#"{{{minimal},"trackingNumber":"t","trackingNumber":"u"}}"#
    ));
    assert!(text.contains(r#"(again with value "u")"#), "{text}");
    assert_eq!(value.as_deref(), Some(r#""u""#));
    // An unknown field, and a key inside one: both values.
    let (text, value) = message(&format!(
        r#"{{{minimal},"trackingNumber":"t","zz":1,"zz":2}}"#
    ));
    assert!(text.ends_with("ambiguous: first 1, then 2"), "{text}");
    assert_eq!(value.as_deref(), Some("2"));
    let (text, _) = message(&format!(
        r#"{{{minimal},"trackingNumber":"t","zz":{{"a":[1],"a":{{"b":null}}}}}}"#
    ));
    assert!(text.ends_with(r#"first [1], then {"b":null}"#), "{text}");
}

#[test]
fn lone_surrogates_and_bytes_that_are_not_utf8_are_named_as_such() {
    for text in [
        r#"{"a":"\udc00x"}"#,
        r#"{"a":"\ud800"}"#,
        r#"{"a":"\ud800x"}"#,
    ] {
        match not_json(text.as_bytes()) {
            SyntaxError::NotJson { message, .. } => {
                assert!(message.contains("lone surrogate"), "{text}: {message}");
                assert!(!message.contains("leading"), "{text}: {message}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    match not_json(b"{\"a\":\"\xff\"}") {
        SyntaxError::NotJson { message, .. } => {
            assert!(message.contains("not valid UTF-8"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_byte_that_is_not_utf8_outside_a_string_is_named_where_it_is() {
    // serde_json says only "expected value" (or "expected `,`") of these.
    for (bytes, line, column, byte) in [
        (&b"\xff"[..], 1, 1, "0xFF"),
        (&b"{\"a\": 1,\n  \xc3\x28: 2}"[..], 2, 3, "0xC3"),
        (&b"{\"a\": [1, 2]\xfe}"[..], 1, 13, "0xFE"),
    ] {
        match not_json(bytes) {
            SyntaxError::NotJson {
                message,
                line: at_line,
                column: at_column,
            } => {
                assert!(message.contains("not valid UTF-8"), "{bytes:?}: {message}");
                assert!(message.contains(byte), "{bytes:?}: {message}");
                assert_eq!((at_line, at_column), (line, column), "{bytes:?}: {message}");
            }
            other => panic!("{bytes:?}: {other:?}"),
        }
    }
    // A syntax error before the first such byte is still that syntax error.
    match not_json(b"{\"a\": tru, \"b\": \"\xff\"}") {
        SyntaxError::NotJson { message, .. } => {
            assert!(!message.contains("UTF-8"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn issues_past_the_cap_are_counted_not_listed() {
    // 10,000 empty account requests: four missing fields each, in three bytes each.
    let mut doc = base_event();
    doc["accountRequests"] = Value::Array(vec![json!({}); 10_000]);
    doc["extra"] = json!(1);
    let text = serde_json::to_string(&doc).unwrap();
    let report = validate_str(&text, &Options::lenient()).unwrap();
    assert!(!report.is_valid());
    assert_eq!(report.errors.len(), 1000);
    assert_eq!(report.errors_not_listed, 39_000);
    assert_eq!(report.errors[0].path, "accountRequests[0].source");
    assert_eq!(
        report.errors[999].path,
        "accountRequests[249].provisioningTarget"
    );
    // Warnings have their own cap: the unknown field after the account requests is listed.
    assert_eq!(report.warnings.len(), 1);
    assert_eq!(report.warnings_not_listed, 0);

    let everything = Options {
        limits: Limits {
            max_issues: usize::MAX,
            ..Limits::DEFAULT
        },
        ..Options::lenient()
    };
    let report = validate_str(&text, &everything).unwrap();
    assert_eq!(report.errors.len(), 40_000);
    assert_eq!(report.errors_not_listed, 0);

    // A cap of 0 still lists the first error: validity never depends on the cap.
    let none = Options {
        limits: Limits {
            max_issues: 0,
            ..Limits::DEFAULT
        },
        ..Options::strict()
    };
    let report = validate_str(&text, &none).unwrap();
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors_not_listed, 40_000);
}
