//! Property tests: the compiler and the evaluator never panic, and deep scans of very deep
//! documents neither overflow the stack nor do work beyond the size of the answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use provtrail_jsonpath::{Evaluation, Options, compile};
use serde_json::{Map, Value, json};

/// Pieces of the dialect, so that generated strings get deep into the parser.
const TOKENS: &[&str] = &[
    "$",
    "@",
    ".",
    "..",
    "[",
    "]",
    "(",
    ")",
    "?",
    "?(",
    "*",
    "'",
    "\"",
    ",",
    ":",
    "-",
    "0",
    "1",
    "2",
    "-1",
    "a",
    "b",
    "name",
    "key with space",
    "==",
    "!=",
    "===",
    "<",
    "<=",
    ">",
    ">=",
    "=~",
    "/a.*/i",
    "/[/",
    "&&",
    "||",
    "!",
    " ",
    "in",
    "nin",
    "contains",
    "size",
    "empty",
    "subsetof",
    "anyof",
    "noneof",
    "exists",
    "true",
    "false",
    "null",
    "[1,2]",
    "['a','b']",
    "{\"a\":1}",
    "length()",
    "size()",
    "sum()",
    "min()",
    "max()",
    "avg()",
    "stddev()",
    "concat(",
    "keys()",
    "first()",
    "last()",
    "index(1)",
    "append(1)",
    "{",
    "}",
    "\\",
    "\\u0041",
    "$.a",
    "@.b",
    "$..a",
    "@.a[*]",
    "[?(@.a)]",
    "[0:2]",
    "[::2]",
    "[*]",
    "['x']",
    "1e3",
    "'s'",
];

fn token_string() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..24).prop_map(|v| v.concat())
}

fn rooted_token_string() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&["$", "$.", "$[", "@", "$..", "$[?("][..]),
        token_string(),
    )
        .prop_map(|(a, b)| format!("{a}{b}"))
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(|i| json!(i)),
        (-5.0f64..5.0).prop_map(|f| json!(f)),
        prop::sample::select(&["a", "b", "", "$", "@.a", "[1]", "1", "x y"][..])
            .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(&["a", "b", "name", "key with space"][..]),
                    inner
                ),
                0..4
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<Map<_, _>>()
            )),
        ]
    })
}

fn all_options() -> impl Strategy<Value = Options> {
    prop::collection::vec(any::<bool>(), 5).prop_map(|b| Options {
        default_path_leaf_to_null: b[0],
        always_return_list: b[1],
        as_path_list: b[2],
        suppress_exceptions: b[3],
        require_properties: b[4],
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn compiling_any_string_never_panics(s in any::<String>()) {
        let _ = compile(&s);
    }

    #[test]
    fn compiling_strings_of_dialect_tokens_never_panics(s in rooted_token_string()) {
        let _ = compile(&s);
    }

    #[test]
    fn evaluating_compiled_paths_on_generated_documents_never_panics(
        s in rooted_token_string(),
        doc in json_value(),
        opts in all_options(),
    ) {
        if let Ok(p) = compile(&s) {
            let _ = p.evaluate_with(&doc, opts);
            let _ = p.matches(&doc);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn evaluating_well_formed_filters_never_panics(
        left in prop::sample::select(&["@.a", "@.name", "$.a", "@", "@.a[*]", "$..a", "@.a.length()", "@['a','b']"][..]),
        op in prop::sample::select(&["==", "!=", "<", "<=", ">", ">=", "=~", "in", "nin", "subsetof", "anyof", "noneof", "size", "empty", "contains"][..]),
        right in prop::sample::select(&["1", "'a'", "\"b\"", "true", "null", "[1,'a']", "[]", "{'a':1}", "/a.*/", "@.b", "$.name", "2.5e1", "false"][..]),
        doc in json_value(),
    ) {
        for path in [format!("$[?({left} {op} {right})]"), format!("$..[?({left} {op} {right} || !{left})]")] {
            let p = compile(&path).unwrap();
            let _ = p.evaluate(&doc);
        }
    }
}

/// Takes a deep value apart without recursion (dropping it would recurse once per level).
fn dismantle(v: Value) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(a) => stack.extend(a),
            Value::Object(m) => stack.extend(m.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

const DEPTH: usize = 10_000;

fn deep_objects() -> Value {
    let mut v = json!({"leaf": true});
    for _ in 0..DEPTH {
        let mut m = Map::new();
        m.insert("a".into(), v);
        v = Value::Object(m);
    }
    v
}

fn deep_arrays() -> Value {
    let mut v = json!(0);
    for _ in 0..DEPTH {
        v = Value::Array(vec![v, json!(1)]);
    }
    v
}

#[test]
fn deep_scan_of_a_10000_deep_object_chain_visits_each_level_once() {
    let doc = deep_objects();
    let p = compile("$..a").unwrap();
    match p.evaluate(&doc).unwrap() {
        // One result per level: the scan is linear in the document.
        Evaluation::List(v) => assert_eq!(v.len(), DEPTH),
        other => panic!(
            "expected a list, got {}",
            matches!(other, Evaluation::Value(_))
        ),
    }
    let p = compile("$..leaf").unwrap();
    match p.evaluate(&doc).unwrap() {
        Evaluation::List(v) => assert_eq!(v.len(), 1),
        _ => panic!("expected a list"),
    }
    assert!(compile("$[?(@..leaf)]").unwrap().matches(&doc));
    dismantle(doc);
}

#[test]
fn deep_scan_of_a_10000_deep_array_nest_visits_each_level_once() {
    let doc = deep_arrays();
    let p = compile("$..[1]").unwrap();
    match p.evaluate(&doc).unwrap() {
        Evaluation::List(v) => assert_eq!(v.len(), DEPTH),
        _ => panic!("expected a list"),
    }
    // Each nest passes the filter and contributes its inner nest (the innermost holds numbers).
    let p = compile("$..[?(@[1] == 1)]").unwrap();
    match p.evaluate(&doc).unwrap() {
        Evaluation::List(v) => assert_eq!(v.len(), DEPTH - 1),
        _ => panic!("expected a list"),
    }
    dismantle(doc);
}

#[test]
fn deeply_nested_expressions_are_rejected_not_overflowed() {
    let nested = format!("$[?({}@.a{})]", "(".repeat(10_000), ")".repeat(10_000));
    assert!(compile(&nested).is_err());
    let negated = format!("$[?({}(@.a))]", "!".repeat(10_000));
    assert!(compile(&negated).is_err());
    let filters = "$".to_string() + &"[?(@".repeat(5_000) + &")]".repeat(5_000);
    assert!(compile(&filters).is_err());
    let long = "$".to_string() + &"[*]".repeat(100_000);
    assert!(compile(&long).is_err());
    let long_definite = "$".to_string() + &".a".repeat(100_000);
    assert!(compile(&long_definite).is_err());
}
