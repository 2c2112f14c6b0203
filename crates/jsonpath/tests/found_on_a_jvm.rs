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

/// A property name is read whole, also when the filter ignores case: `\p{Sc}/i` is the currency
/// symbols, not `\p{` followed by a letter `S` of either case.
#[test]
fn property_names_and_group_names_are_read_whole_when_case_is_ignored() {
    for (pattern, text) in [
        (r"\p{Sc}", "$"),
        (r"\p{Sm}", "+"),
        (r"\p{Sk}", "^"),
        (r"\p{So}", "©"),
        (r"\p{S}", "€"),
        (r"\pS", "€"),
        (r"\PS", "a"),
        (r"\p{Ps}", "("),
        (r"\p{Zs}", " "),
        (r"\p{sc=Latin}", "k"),
        (r"\p{script=Greek}", "σ"),
        (r"\p{gc=Sc}", "$"),
        (r"\p{general_category=Sk}", "^"),
        (r"\p{IsSc}", "$"),
        (r"\p{LD}", "7"),
        (r"\p{L1}", "ÿ"),
        (r"\p{all}", "\n"),
        (r"(?<s>a)b", "AB"),
        (r"(?<key>s)", "S"),
    ] {
        let filter = format!("$[?(@.s =~ /{pattern}/i)]");
        let doc = json!([{ "s": text }]);
        assert!(matches(&filter, &doc), "{filter} on {text:?}");
    }
    // Case is still ASCII's for the letters around them.
    assert!(!matches(r"$[?(@.s =~ /\p{Sc}s/i)]", &json!([{"s": "$ſ"}])));
    assert!(matches(r"$[?(@.s =~ /\p{Sc}s/i)]", &json!([{"s": "$S"}])));
}

/// `Pattern` takes the general categories and the `java…` classes by name, and refuses other
/// names (a script needs `Is` or `sc=`).
#[test]
fn java_property_names_are_those_pattern_takes() {
    for (pattern, text, expected) in [
        (r"\p{javaTitleCase}", "ǅ", true),
        (r"\p{javaMirrored}", "(", true),
        (r"\p{javaMirrored}", "a", false),
        (r"\p{javaDefined}", "a", true),
        (r"\p{javaIdeographic}", "中", true),
        (r"\p{javaISOControl}", "\u{85}", true),
        (r"\p{javaIdentifierIgnorable}", "\u{200B}", true),
        (r"\p{javaJavaIdentifierStart}", "$", true),
        (r"\p{javaJavaIdentifierStart}", "1", false),
        (r"\p{javaJavaIdentifierPart}", "1", true),
        (r"\p{javaUnicodeIdentifierStart}", "a", true),
        (r"\p{javaUnicodeIdentifierPart}", "_", true),
        (r"\p{LC}", "a", true),
        (r"\p{LC}", "ª", false),
        (r"\p{Cs}", "a", false),
        (r"\P{Cs}", "a", true),
    ] {
        let filter = format!("$[?(@.s =~ /{pattern}/)]");
        assert_eq!(
            matches(&filter, &json!([{ "s": text }])),
            expected,
            "{filter} on {text:?}"
        );
    }
    for pattern in [
        r"\p{Latin}",
        r"\p{Greek}",
        r"\p{Lowercase_Letter}",
        r"\p{Currency_Symbol}",
        r"\p{InGreek}",
        r"\p{blk=Greek}",
        r"\p{foo=bar}",
        r"\p{Sc",
        r"\p",
    ] {
        let filter = format!("$[?(@.s =~ /{pattern}/)]");
        assert!(
            provtrail_jsonpath::compile(&filter).is_err(),
            "{filter} compiled"
        );
    }
}

/// A backslash before an ASCII character that is not a letter or a digit is that character in
/// Java: `\<` and `\>` are the angle brackets, not word boundaries.
#[test]
fn an_escaped_punctuation_character_is_itself() {
    assert!(matches(r"$[?(@.s =~ /a\<b\>/)]", &json!([{"s": "a<b>"}])));
    assert!(!matches(r"$[?(@.s =~ /.*\<b.*/)]", &json!([{"s": "a b"}])));
    assert!(matches(r"$[?(@.s =~ /[\<]/)]", &json!([{"s": "<"}])));
    assert!(matches(r"$[?(@.s =~ /\#\ \-/x)]", &json!([{"s": "# -"}])));
}

/// A list element that is a path after leading whitespace (`' $'`) is a path Jayway cannot
/// compile as it is written: the predicate fails, and matches nothing, `nin` included.
#[test]
fn a_list_element_that_is_a_path_after_spaces_fails_the_predicate() {
    let doc = json!([{"v": "x", "list": [" $", "z"]}]);
    assert!(!matches("$[?(@.v nin [' $','z'])]", &doc));
    assert!(!matches("$[?(@.v nin [' @.x'])]", &doc));
    assert!(!matches("$[?(@.v nin @.list)]", &doc));
    // Without the spaces, or after the path, it is a path (never equal to a value).
    assert!(matches("$[?(@.v nin ['$','z'])]", &doc));
    assert!(matches("$[?(@.v nin ['$ ','z'])]", &doc));
}

/// With `U`, a shorthand class in a bracket class followed by `-` is the class and the
/// character `-`, as without it.
#[test]
fn a_unicode_shorthand_class_before_a_dash_is_no_range() {
    for (pattern, text, expected) in [
        (r"[\w-.]", "-", true),
        (r"[\w-.]", ".", true),
        (r"[\w-.]", "é", true),
        (r"[\w-.]", "/", false),
        (r"[\w-\d]", "-", true),
        (r"[\d-z]", "z", true),
        (r"[\d-z]", "٣", true),
        (r"[\d-z]", "y", false),
        (r"[\s-a]", "\u{2003}", true),
        (r"[^\W-]", "é", true),
        (r"[^\W-]", "-", false),
    ] {
        let filter = format!("$[?(@.s =~ /{pattern}/U)]");
        assert_eq!(
            matches(&filter, &json!([{ "s": text }])),
            expected,
            "{filter} on {text:?}"
        );
    }
}

/// With `U`, `\p{Graph}` and `\p{Print}` are Unicode's, as in Java.
#[test]
fn graph_and_print_are_unicode_s_with_u() {
    for (pattern, text, expected) in [
        (r"\p{Graph}", "é", true),
        (r"\p{Graph}", "中", true),
        (r"\p{Graph}", " ", false),
        (r"\p{Graph}", "\u{a0}", false),
        (r"\p{Graph}", "\u{85}", false),
        (r"\p{Print}", "é", true),
        (r"\p{Print}", "\u{3000}", true),
        (r"\p{Print}", "\t", false),
        (r"\p{Print}", "\n", false),
        (r"\P{Print}", "\n", true),
        (r"\P{Print}", "é", false),
        (r"[x\p{Print}]", "é", true),
    ] {
        let filter = format!("$[?(@.s =~ /{pattern}/U)]");
        assert_eq!(
            matches(&filter, &json!([{ "s": text }])),
            expected,
            "{filter} on {text:?}"
        );
    }
    // Without it, ASCII's.
    assert!(!matches(r"$[?(@.s =~ /\p{Graph}/)]", &json!([{"s": "é"}])));
}
