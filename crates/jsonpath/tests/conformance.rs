//! Conformance with Jayway 2.10.0: every case in `../shared/jsonpath/*.jsonl` is evaluated and
//! compared with the answer Jayway recorded (numbers by value, objects without key order).
//!
//! Cases that differ are listed with their reason in `tests/conformance/known-differences.txt`
//! (`file<TAB>id<TAB>reason`). A test fails when a case outside the list fails, and also when a
//! listed case passes, so that the list stays true.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use provtrail_jsonpath::{EvalErrorKind, Evaluation, Options, Path, compile};
use serde_json::Value;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/jsonpath/");
const KNOWN: &str = include_str!("conformance/known-differences.txt");

/// What an evaluation produced, in the terms the data files record.
#[derive(Debug, Clone)]
enum Outcome {
    Ok(Value),
    /// The Jayway exception name: `InvalidPath`, `PathNotFound`, `JsonPathException`, `Other`.
    Err(String),
}

fn run(path: &str, doc: &Value, opts: Options) -> Outcome {
    let p = match compile(path) {
        Ok(p) => p,
        Err(_) => return Outcome::Err("InvalidPath".into()),
    };
    match p.evaluate_with(doc, opts) {
        Ok(e) => Outcome::Ok(e.into_value()),
        Err(e) => Outcome::Err(
            match e.kind {
                EvalErrorKind::PathNotFound => "PathNotFound",
                EvalErrorKind::InvalidPath => "InvalidPath",
                EvalErrorKind::JsonPath => "JsonPathException",
                EvalErrorKind::InvalidArgument => "Other",
            }
            .into(),
        ),
    }
}

fn java_error(class: &str) -> String {
    match class {
        "com.jayway.jsonpath.InvalidPathException" => "InvalidPath",
        "com.jayway.jsonpath.PathNotFoundException" => "PathNotFound",
        "com.jayway.jsonpath.JsonPathException" | "com.jayway.jsonpath.InvalidJsonException" => {
            "JsonPathException"
        }
        _ => "Other",
    }
    .into()
}

/// Equality of recorded and computed answers: numbers by value, objects without key order.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64()) {
                i == j
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Multiset equality for rows whose order is not significant.
fn same_unordered(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return false;
            }
            let mut used = vec![false; y.len()];
            x.iter().all(|p| {
                if let Some(i) = (0..y.len()).find(|i| !used[*i] && same(p, &y[*i])) {
                    used[i] = true;
                    true
                } else {
                    false
                }
            })
        }
        _ => same(a, b),
    }
}

fn check(expected: &Outcome, actual: &Outcome, ordered: bool) -> Result<(), String> {
    let ok = match (expected, actual) {
        (Outcome::Ok(e), Outcome::Ok(a)) => {
            if ordered {
                same(e, a)
            } else {
                same_unordered(e, a)
            }
        }
        (Outcome::Err(e), Outcome::Err(a)) => e == a,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {expected:?}, got {actual:?}"))
    }
}

fn rows(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{DATA}{file}"))
        .unwrap_or_else(|e| panic!("read {file}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn document(row: &Value) -> Value {
    if let Some(text) = row.get("document_text").and_then(Value::as_str) {
        if let Ok(v) = serde_json::from_str(text) {
            return v;
        }
    }
    row.get("document")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}))
}

fn known(file: &str) -> BTreeMap<String, String> {
    KNOWN
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            let (f, id, reason) = (parts.next()?, parts.next()?, parts.next()?);
            (f == file).then(|| (id.to_string(), reason.to_string()))
        })
        .collect()
}

/// Runs every row of `file` through `case`, prints the pass rate, and fails on any disagreement
/// with the known-differences list.
fn conform(file: &str, min_rate: f64, case: impl Fn(&Value) -> Result<(), String>) {
    let listed = known(file);
    let mut passed = 0usize;
    let mut failures = Vec::new();
    let mut listed_passing = Vec::new();
    let mut seen = BTreeSet::new();
    let all = rows(file);
    for row in &all {
        let id = row["id"].as_str().unwrap().to_string();
        seen.insert(id.clone());
        let result = case(row);
        match (&result, listed.contains_key(&id)) {
            (Ok(()), false) => passed += 1,
            (Ok(()), true) => {
                passed += 1;
                listed_passing.push(id);
            }
            (Err(_), true) => {}
            (Err(why), false) => failures.push(format!("{id}: {why}")),
        }
    }
    let total = all.len();
    let rate = passed as f64 / total as f64;
    println!(
        "{file}: {passed}/{total} passed ({:.1}%), {} listed as known differences",
        rate * 100.0,
        listed.len()
    );
    let stale: Vec<&String> = listed.keys().filter(|k| !seen.contains(*k)).collect();
    assert!(
        stale.is_empty(),
        "{file}: listed ids that are not in the data: {stale:?}"
    );
    assert!(
        failures.is_empty(),
        "{file}: {} unlisted failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        listed_passing.is_empty(),
        "{file}: listed as known differences but now passing: {listed_passing:?}"
    );
    assert!(
        rate >= min_rate,
        "{file}: pass rate {rate} below {min_rate}"
    );
}

#[test]
fn isc_doc_examples_match_jayway_exactly() {
    conform("isc-doc-examples.jsonl", 1.0, |row| {
        let path = row["path"].as_str().unwrap();
        let doc = document(row);
        let j = &row["jayway_2_10_0"];
        let expected = if j["ok"].as_bool() == Some(true) {
            Outcome::Ok(j["result"].clone())
        } else {
            Outcome::Err(java_error(j["error"].as_str().unwrap_or("")))
        };
        check(&expected, &run(path, &doc, Options::default()), true)?;
        let want = row["jayway_2_10_0_match"].as_bool().unwrap();
        let got = compile(path).map(|p| p.matches(&doc)).unwrap_or(false);
        if want != got {
            return Err(format!("match decision: expected {want}, got {got}"));
        }
        Ok(())
    });
}

#[test]
fn jayway_unit_test_cases_match_jayway() {
    conform("jayway-filter-cases.jsonl", 0.98, |row| {
        let path = row["path"].as_str().unwrap();
        match row["kind"].as_str().unwrap() {
            "syntax" => {
                let want = row["expected_valid"].as_bool().unwrap();
                let got = compile(path).is_ok();
                if want == got {
                    Ok(())
                } else {
                    Err(format!("expected valid={want}, got valid={got}"))
                }
            }
            _ => {
                let doc = document(row);
                let mut opts = Options::default();
                if let Some(list) = row.get("options").and_then(Value::as_array) {
                    for o in list {
                        assert!(opts.set_by_name(o.as_str().unwrap()), "unknown option {o}");
                    }
                }
                let actual = run(path, &doc, opts);
                if let Some(err) = row.get("expected_error").and_then(Value::as_str) {
                    return check(&Outcome::Err(java_error(err)), &actual, true);
                }
                if let Some(exp) = row.get("expected") {
                    return check(&Outcome::Ok(exp.clone()), &actual, true);
                }
                let want = row["expected_match"].as_bool().unwrap();
                let got = compile(path).map(|p| p.matches(&doc)).unwrap_or(false);
                if want == got {
                    Ok(())
                } else {
                    Err(format!("expected match={want}, got {got}"))
                }
            }
        }
    });
}

#[test]
fn json_path_comparison_queries_match_jayway() {
    conform("jayway-cases.jsonl", 0.98, |row| {
        let path = row["selector"].as_str().unwrap();
        let doc = document(row);
        let expected = if row.get("jayway_error").and_then(Value::as_bool) == Some(true) {
            Outcome::Err(
                match row["jayway_error_kind"].as_str().unwrap_or("") {
                    "NOT_FOUND" => "PathNotFound",
                    "NOT_SUPPORTED" => "InvalidPath",
                    _ => "Other",
                }
                .into(),
            )
        } else {
            Outcome::Ok(row["jayway_result"].clone())
        };
        let ordered = row.get("ordered").and_then(Value::as_bool).unwrap_or(true);
        check(&expected, &run(path, &doc, Options::default()), ordered)
    });
}

#[test]
fn rfc9535_compliance_suite_matches_jayway_answers() {
    conform("cts-jayway.jsonl", 0.98, |row| {
        let path = row["selector"].as_str().unwrap();
        let doc = document(row);
        let j = &row["jayway"];
        let expected = if j["ok"].as_bool() == Some(true) {
            Outcome::Ok(j["result"].clone())
        } else {
            Outcome::Err(java_error(j["error"].as_str().unwrap_or("")))
        };
        check(&expected, &run(path, &doc, Options::default()), true)
    });
}

#[test]
fn known_differences_have_reasons() {
    for line in KNOWN
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let parts: Vec<&str> = line.splitn(3, '\t').collect();
        assert_eq!(parts.len(), 3, "malformed line: {line}");
        assert!(parts[2].trim().len() > 10, "no real reason given: {line}");
    }
}

#[test]
fn evaluation_answers_are_lists_for_indefinite_paths() {
    let doc = serde_json::json!({"a": [1, 2]});
    assert!(matches!(
        compile("$.a[*]").unwrap().evaluate(&doc).unwrap(),
        Evaluation::List(_)
    ));
    assert!(matches!(
        compile("$.a[0]").unwrap().evaluate(&doc).unwrap(),
        Evaluation::Value(_)
    ));
}

/// Every path of the data that compiles: its file, its text, the path and its document.
fn compiled_paths() -> Vec<(&'static str, String, Path, Value)> {
    let mut paths = Vec::new();
    for (file, key) in [
        ("isc-doc-examples.jsonl", "path"),
        ("jayway-filter-cases.jsonl", "path"),
        ("jayway-cases.jsonl", "selector"),
        ("cts-jayway.jsonl", "selector"),
    ] {
        for row in rows(file) {
            let Some(text) = row.get(key).and_then(Value::as_str) else {
                continue;
            };
            if let Ok(path) = compile(text) {
                paths.push((file, text.to_owned(), path, document(&row)));
            }
        }
    }
    paths
}

/// `Path::root_members` holds for every case of the data: evaluated on an object cut down to the
/// members it names, a path answers (value or error kind, and match decision) as on the whole
/// object. This is what lets routing build only those members of an event.
#[test]
fn paths_answer_alike_on_an_object_cut_down_to_their_root_members() {
    let mut cut_cases = 0;
    for (file, text, path, doc) in compiled_paths() {
        let (Some(names), Value::Object(members)) = (path.root_members(), &doc) else {
            continue;
        };
        let cut: serde_json::Map<String, Value> = members
            .iter()
            .filter(|(name, _)| names.binary_search(name).is_ok())
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        if cut.len() < members.len() {
            cut_cases += 1;
        }
        let cut = Value::Object(cut);
        let whole = run(&text, &doc, Options::default());
        let part = run(&text, &cut, Options::default());
        if let Err(diff) = check(&whole, &part, true) {
            panic!("{file}: {text}: cut to {names:?}: {diff}");
        }
        assert_eq!(
            path.matches(&doc),
            path.matches(&cut),
            "{file}: {text}: match decision differs when cut to {names:?}"
        );
    }
    // The data must exercise the cut, not only documents that hold nothing else.
    assert!(
        cut_cases > 100,
        "only {cut_cases} cases had members left out"
    );
}

#[test]
fn root_members_are_the_names_a_path_starts_from() {
    let members = |text: &str| compile(text).unwrap().root_members();
    let names = |list: &[&str]| Some(list.iter().map(|name| (*name).to_owned()).collect());
    assert_eq!(
        members("$.accountRequests[?(@.provisioningResult == 'FAILED')]"),
        names(&["accountRequests"])
    );
    assert_eq!(
        members("$['recipient','action'].id"),
        names(&["action", "recipient"])
    );
    // Root paths inside filters and function parameters count; `@` paths do not.
    assert_eq!(
        members("$.accountRequests[?(@.source.name == $.sources && @.x in $['a'])]"),
        names(&["a", "accountRequests", "sources"])
    );
    assert_eq!(members("$.a.concat($.b.c)"), names(&["a", "b"]));
    assert_eq!(members("$.a..b[*][0:2]"), names(&["a"]));
    // A path that may read any member.
    for any in [
        "$",
        "$..id",
        "$.*",
        "$[*]",
        "$[?(@.action)]",
        "$.length()",
        "$.a[?(@.b == $..c)]",
        "$.a[?($[*].b)]",
    ] {
        assert_eq!(members(any), None, "{any}");
    }
}

#[test]
fn unknown_functions_are_named_wherever_they_are_called() {
    let unknown = |text: &str| compile(text).unwrap().unknown_functions();
    assert_eq!(unknown("$.accountRequests.lenght()"), ["lenght"]);
    assert_eq!(unknown("$[?(@.accountRequests.count() > 0)]"), ["count"]);
    assert_eq!(unknown("$.sum($.a.total(), $.b.avg())"), ["total"]);
    assert_eq!(
        unknown("$[?($.a[?(@.b.zeta())] empty false || !(@.c.alpha() == 1))]"),
        ["alpha", "zeta"]
    );
    assert_eq!(unknown("$.a.foo().bar().foo()"), ["bar", "foo"]);
    for known in Path::FUNCTIONS {
        assert!(
            unknown(&format!("$.a.{known}()")).is_empty(),
            "{known} is a Jayway function"
        );
    }
    assert!(unknown("$[?(@.size() > 1 && @.x.length() == $.y.min())]").is_empty());
}

/// Over every path of the data: an evaluation fails for a missing function only when
/// `unknown_functions` names one.
#[test]
fn only_paths_with_unknown_functions_fail_for_a_missing_function() {
    let mut checked = 0;
    for (file, text, path, doc) in compiled_paths() {
        checked += 1;
        if let Err(err) = path.evaluate(&doc) {
            if err.message.starts_with("Function with name") {
                assert!(
                    !path.unknown_functions().is_empty(),
                    "{file}: {text}: {}",
                    err.message
                );
            }
        }
    }
    assert!(checked > 1000, "only {checked} paths checked");
}

/// A filter is compiled for every request that sends one: its patterns are bounded in number
/// and in compiled size, so that no filter of the accepted length costs seconds to compile.
#[test]
fn regular_expressions_are_bounded_in_number_and_size() {
    let filter = |count: usize, pattern: &str| {
        let tests: Vec<String> = (0..count).map(|_| format!("@.x =~ /{pattern}/")).collect();
        format!("$[?({})]", tests.join(" && "))
    };
    assert!(compile(&filter(32, "a{200}")).is_ok());
    let err = compile(&filter(33, "a")).unwrap_err();
    assert!(
        err.message
            .contains("more than 32 regular expressions in one expression"),
        "{}",
        err.message
    );
    // Nested filters count too.
    let nested = format!("$[?(@.a[?(@.b =~ /x/)] && {})]", &filter(32, "y")[4..]);
    let nested = nested.trim_end_matches(")]").to_owned() + ")]";
    let err = compile(&nested).unwrap_err();
    assert!(
        err.message.contains("more than 32"),
        "{nested}: {}",
        err.message
    );
    // A pattern too large to compile cheaply is refused, as a syntax error is.
    let err = compile(&filter(1, "a{99999}")).unwrap_err();
    assert!(err.message.contains("size limit"), "{}", err.message);
    // The count starts over for each expression.
    for _ in 0..3 {
        assert!(compile(&filter(32, "b")).is_ok());
    }
}

/// An evaluation given a deadline gives up at it, and answers as without one before it.
#[test]
fn an_evaluation_past_its_deadline_gives_up() {
    use std::time::{Duration, Instant};
    let path = compile("$[?(@.a =~ /x.*/ && @.b =~ /y/)]").unwrap();
    let doc = serde_json::json!({"a": "xyz", "b": "y"});
    let later = Instant::now() + Duration::from_secs(60);
    assert_eq!(path.matches_within(&doc, later), Some(true));
    assert_eq!(
        path.matches_within(&serde_json::json!({"a": "q"}), later),
        Some(false)
    );
    let passed = Instant::now() - Duration::from_millis(1);
    assert_eq!(path.matches_within(&doc, passed), None);
    // The deadline ends with its evaluation: the next one without it answers in full.
    assert!(path.matches(&doc));
    // A short evaluation without patterns ends before the clock is read at all.
    let plain = compile("$[?(@.b == 'y')]").unwrap();
    assert_eq!(plain.matches_within(&doc, passed), Some(true));
}

/// A document of about 9,000 nodes: a deep scan compared with a deep scan over it takes minutes.
fn thousands_of_nodes() -> Value {
    let nodes: Vec<Value> = (0..3000)
        .map(|n| serde_json::json!({"n": n, "s": format!("v{n}")}))
        .collect();
    serde_json::json!({"items": nodes})
}

/// An evaluation whose answer is no longer wanted ends as at its deadline once told so.
#[test]
fn an_evaluation_stops_when_told_to() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let doc = thousands_of_nodes();
    let quadratic = compile("$[?($..*[?(@ == $..*)])]").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let started = Instant::now();
    let answer = quadratic.matches_within_unless(&doc, started + Duration::from_secs(3600), &stop);
    let took = started.elapsed();
    stopper.join().unwrap();
    assert_eq!(answer, None);
    // Not a timing assertion on the machine's speed: the full evaluation takes minutes.
    assert!(
        took < Duration::from_secs(20),
        "stopped only after {took:?}"
    );
    // Not set, the same call answers in full.
    let small = serde_json::json!({"a": [1, 2]});
    let fresh = Arc::new(AtomicBool::new(false));
    assert_eq!(
        quadratic.matches_within_unless(&small, Instant::now() + Duration::from_secs(60), &fresh),
        Some(quadratic.matches(&small))
    );
}

/// Steps, not only patterns, add up: a deep scan compared with a deep scan is quadratic in the
/// document's nodes, and gives up at its deadline as a pattern does.
#[test]
fn an_evaluation_without_patterns_gives_up_at_its_deadline_too() {
    use std::time::{Duration, Instant};
    let doc = thousands_of_nodes();
    let quadratic = compile("$[?($..*[?(@ == $..*)] && $..*[?(@ == $..*)])]").unwrap();
    let started = Instant::now();
    let answer = quadratic.matches_within(&doc, started + Duration::from_millis(50));
    let took = started.elapsed();
    assert_eq!(answer, None);
    // Not a timing assertion on the machine's speed: the full evaluation takes minutes.
    assert!(
        took < Duration::from_secs(20),
        "gave up only after {took:?}"
    );
    // The same filter on a small document answers in full before a distant deadline.
    let small = serde_json::json!({"a": [1, 2], "b": 1});
    assert_eq!(
        quadratic.matches_within(&small, Instant::now() + Duration::from_secs(60)),
        Some(quadratic.matches(&small))
    );
}

/// A list compared with a list, element by element, gives up at its deadline too: `in`,
/// `nin`, `anyof`, `noneof` and `subsetof` of a long list with itself take few path steps and
/// billions of comparisons.
#[test]
fn a_list_compared_with_itself_gives_up_at_its_deadline() {
    use std::time::{Duration, Instant};
    let errors: Vec<String> = (0..40_000).map(|n| format!("error number {n}")).collect();
    let others: Vec<String> = (0..40_000).map(|n| format!("other {n}")).collect();
    let doc = serde_json::json!({"errors": errors, "e": [errors.clone()], "o": [others]});
    for filter in [
        "$.errors[?(@ in $.errors)]",
        "$.errors[?(@ nin $.errors)]",
        "$.o[?(@ anyof $.errors)]",
        "$.o[?(@ noneof $.errors)]",
        "$.e[?(@ subsetof $.errors)]",
    ] {
        let path = compile(filter).unwrap();
        let started = Instant::now();
        let answer = path.matches_within(&doc, started + Duration::from_millis(50));
        let took = started.elapsed();
        assert_eq!(answer, None, "{filter}");
        // Not a timing assertion on the machine's speed: the full evaluation takes minutes.
        assert!(
            took < Duration::from_secs(20),
            "{filter}: gave up only after {took:?}"
        );
    }
}

/// A list element's string is made as Jayway's `ValueNode.toValueNode` makes it, `new
/// StringNode(s, true)` (json-path 2.10.0, `filter/ValueNode.java` 165–180,
/// `filter/ValueNodes.java` 203–217, `internal/Utils.java` `unescape`): quotes around it are
/// dropped and its escapes read, for a literal list in the filter and a document's array alike,
/// while a single value read by a path is taken as it is. (Worked out from Jayway's source; the
/// conformance data has no such case.)
#[test]
fn list_elements_are_unescaped_as_jayway_makes_their_nodes() {
    let doc = serde_json::json!({
        "dn": "CN=Doe\\, John,OU=X",
        "groups": ["CN=Doe\\, John,OU=X", "C:\\temp"],
        "path": "C:\\temp",
        "tags": ["'vip'"],
        "tag": "vip",
        "odd": ["x\\u00zz"],
    });
    let matches = |filter: &str| compile(filter).unwrap().matches(&doc);
    // An Active Directory name with an escaped comma: the list holds it unescaped.
    assert!(!matches(r#"$[?(@.dn in ["CN=Doe\\, John,OU=X"])]"#));
    assert!(matches(r#"$[?(@.dn in ["CN=Doe\\\\, John,OU=X"])]"#));
    assert!(!matches("$[?(@.dn in @.groups)]"));
    assert!(!matches(r#"$[?(@.groups contains "CN=Doe\\, John,OU=X")]"#));
    assert!(matches(r#"$[?(@.groups contains "CN=Doe, John,OU=X")]"#));
    // `\t` in a document's array is a tab there, not in a single value.
    assert!(!matches("$[?(@.path in @.groups)]"));
    assert!(!matches("$[?(@.groups =~ /C:\\\\temp/)]"));
    assert!(matches("$[?(@.path =~ /C:\\\\temp/)]"));
    // Quotes around an element are dropped; `\u` escapes are read.
    assert!(matches(r#"$[?(@.tags contains "vip")]"#));
    assert!(matches("$[?(@.tag in @.tags)]"));
    assert!(matches(r#"$[?(@.tags anyof ["vip"])]"#));
    assert!(matches(r#"$[?(@.tag in ["\\u0076ip"])]"#));
    // One character is taken as it is; an escape that cannot be read fails the evaluation.
    assert!(
        compile(r#"$[?(@.x in ["\\"])]"#)
            .unwrap()
            .matches(&serde_json::json!({"x": "\\"}))
    );
    assert!(!matches("$[?(@.t nin @.odd)]"));
    assert!(!matches("$[?(@.t in @.odd)]"));
}
