//! Differences from Jayway 2.10.0 found by running it: its 2.10.0 tag built with json-smart 2.6.0
//! (the version its build names) on OpenJDK 17, given the same filters and documents as this
//! crate. Each case here is Jayway's answer.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

fn matches(filter: &str, doc: &Value) -> bool {
    provtrail_jsonpath::compile(filter).unwrap().matches(doc)
}

/// A quantifier on a quantifier, or a `{` that begins no repetition: `Pattern.compile` refuses
/// it when the filter is compiled (`ValueNodes.PatternNode`), so ISC refuses the filter.
#[test]
fn regular_expressions_java_refuses_are_refused() {
    for pattern in [
        "a**",
        "ab?*",
        "a+*",
        "a{2}*",
        "a???",
        "a{ 1}",
        "a{x}",
        "a{,2}",
        "x|b*+*",
        // Comments mode reads past whitespace, not past these.
        "(?x)a* *",
        "(?x)a { 2 }",
    ] {
        let filter = format!("$[?(@.name =~ /{pattern}/)]");
        assert!(
            provtrail_jsonpath::compile(&filter).is_err(),
            "{filter} compiled"
        );
    }
    // Possessive forms are not supported (as documented): taken as greedy, `a++a` would match
    // "aaa", which Java's never does.
    for pattern in ["a++a", "a?+b", "a{2}+"] {
        let filter = format!("$[?(@.name =~ /{pattern}/)]");
        let err = provtrail_jsonpath::compile(&filter)
            .unwrap_err()
            .to_string();
        assert!(err.contains("possessive"), "{filter}: {err}");
    }
    // Java's reluctant forms, repetitions, braces that are no repetition.
    for (pattern, name) in [
        ("a*?", "aaa"),
        ("a{2,}", "aaa"),
        ("a{2,3}?", "aa"),
        ("\\p{L}+", "abc"),
        ("[a{]*", "a{"),
        ("\\{x\\}", "{x}"),
        ("\\Qa**\\E", "a**"),
        ("(?<word>a)+", "aa"),
        ("(?x) a * b # many a, one b", "aab"),
        ("(?x)a {2}", "aa"),
    ] {
        let filter = format!("$[?(@.name =~ /{pattern}/)]");
        assert!(
            matches(&filter, &json!({ "name": name })),
            "{filter} on {name:?}"
        );
    }
}

/// A counted repetition right after another quantifier repeats nothing in Java: `a{2}{3}` is
/// `a{2}`, `a+{2}` is `a+` (Java 17's `Pattern.matches`, each row).
#[test]
fn a_repetition_after_a_repetition_repeats_nothing_as_in_java() {
    for (pattern, name, expected) in [
        ("a{2}{3}", "aa", true),
        ("a{2}{3}", "aaaaaa", false),
        ("a+{2}", "a", true),
        ("a?{2}", "aa", false),
        ("a{1,2}{3}", "aaa", false),
        ("a{2}{0}", "aa", true),
        ("(ab){2}{2}", "abab", true),
        ("[a-z]{1}{5}", "abcde", false),
        ("a{2}?{3}", "aa", true),
    ] {
        let filter = format!("$[?(@.name =~ /{pattern}/)]");
        assert_eq!(
            matches(&filter, &json!({ "name": name })),
            expected,
            "{filter} on {name:?}"
        );
    }
}

/// A literal list is read by json-smart (`ValueNodes.JsonNode.parse`): `\x` takes two hex
/// digits, a pair of escaped UTF-16 halves is one character, and an escape json-smart does not
/// know is dropped whole; a `\x` cut short fails the evaluation.
#[test]
fn strings_in_a_literal_list_are_read_as_json_smart_reads_them() {
    let id = |id: &str| json!({ "id": id });
    for (filter, doc, expected) in [
        (r"$[?(@.id in ['a\.b'])]", id("ab"), true),
        (r"$[?(@.id in ['a\.b'])]", id("a.b"), false),
        (r"$[?(@.id in ['\d+'])]", id("+"), true),
        (r"$[?(@.id in ['\d+'])]", id("d+"), false),
        (r"$[?(@.id in ['A\x41'])]", id("AA"), true),
        (r"$[?(@.id in ['\ud83d\ude00'])]", id("😀"), true),
        (r"$[?(@.id in ['it\'s'])]", id("it's"), true),
        (r#"$[?(@.id in ["a\/b"])]"#, id("a/b"), true),
    ] {
        assert_eq!(matches(filter, &doc), expected, "{filter} on {doc}");
    }
    let cut = provtrail_jsonpath::compile(r"$[?(@.id nin ['a\x4'])]").unwrap();
    assert!(cut.evaluate(&id("b")).is_err());
}
