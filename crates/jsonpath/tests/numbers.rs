//! Integers past 64 bits, as json-smart reads them: `BigInteger`s, compared exactly (serde_json
//! keeps their text with `arbitrary_precision`, turned on for these tests as provtrail-model
//! turns it on for provtrail).
#![allow(clippy::unwrap_used)]

use serde_json::Value;

fn doc(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn integers_past_64_bits_compare_exactly() {
    let event = doc(r#"{"n": 123456789012345678901234567890}"#);
    for (filter, expected) in [
        ("$[?($.n == 123456789012345678901234567890)]", true),
        // The same double, a different integer.
        ("$[?($.n == 123456789012345678901234567891)]", false),
        ("$[?($.n > 123456789012345678901234567889)]", true),
        ("$[?($.n < 123456789012345678901234567891)]", true),
        ("$[?($.n == '123456789012345678901234567890')]", true),
    ] {
        let path = provtrail_jsonpath::compile(filter).unwrap();
        assert_eq!(path.matches(&event), expected, "{filter}");
    }
}

#[test]
fn integers_past_64_bits_in_json_literals_compare_exactly_too() {
    let event = doc(r#"{"n": -98765432109876543210987654321, "list": [1, 2]}"#);
    for (filter, expected) in [
        ("$[?($.n in [-98765432109876543210987654321])]", true),
        ("$[?($.n in [-98765432109876543210987654322])]", false),
        ("$[?($.n nin [-98765432109876543210987654322])]", true),
    ] {
        let path = provtrail_jsonpath::compile(filter).unwrap();
        assert_eq!(path.matches(&event), expected, "{filter}");
    }
}

/// json-smart reads a short number past the double range as an infinite `Double`, and an
/// aggregation can overflow (`sum`, `avg`) or take the root of rounding noise below zero
/// (`stddev` of equal doubles): Jayway compares such a value through `new BigDecimal("Infinity")`
/// or `("NaN")`, which throws, so the filter fails and the event does not match. Comparing it as
/// null (or as 0) would match `!= 0` and `== null` where ISC matches nothing.
#[test]
fn infinite_and_nan_doubles_in_a_filter_fail_the_evaluation_as_in_jayway() {
    let event = doc(
        r#"{"big": [1e308, 1e308], "same": [0.1, 0.1, 0.1], "x": 1e400, "neg": -1e400, "n": 5,
            "mixed": [1e400, -5], "long": [1.000000000000000000e400, -5]}"#,
    );
    for (filter, character) in [
        ("$[?(@.big.sum() != 0)]", 'I'),
        ("$[?(@.big.sum() == 0)]", 'I'),
        ("$[?(@.big.sum() == null)]", 'I'),
        ("$[?(@.big.avg() > 1)]", 'I'),
        ("$[?(@.same.stddev() == 0)]", 'N'),
        ("$[?(@.same.stddev() != 0)]", 'N'),
        ("$[?(@.x == 0)]", 'I'),
        ("$[?(@.x != 0)]", 'I'),
        ("$[?(@.neg < 0)]", 'I'),
        // Aggregated, such a number is infinite too (a `BigDecimal`'s `doubleValue()` as well).
        ("$[?(@.mixed.sum() < 0)]", 'I'),
        ("$[?(@.mixed.max() > 0)]", 'I'),
        ("$[?(@.long.sum() < 0)]", 'I'),
        // A number past the range in a literal list is such a double too.
        ("$[?(@.n in [1, 1e400])]", 'I'),
        ("$[?(@.n nin [-1e400])]", 'I'),
    ] {
        let path = provtrail_jsonpath::compile(filter).unwrap();
        assert!(!path.matches(&event), "{filter} matched");
        let error = path.evaluate(&event).unwrap_err();
        assert!(
            error.message.starts_with(&format!(
                "NumberFormatException: Character {character} is neither a decimal digit number"
            )),
            "{filter}: {error}"
        );
    }
    // Finite results and other members are not affected.
    for (filter, expected) in [
        ("$[?(@.same.max() == 0.1)]", true),
        ("$[?(@.same.sum() > 0.3)]", true),
        ("$[?(@.n == 5)]", true),
    ] {
        let path = provtrail_jsonpath::compile(filter).unwrap();
        assert_eq!(path.matches(&event), expected, "{filter}");
    }
}

/// Outside a comparison the value is kept: json-smart writes it as null, and `concat` takes its
/// Java text.
#[test]
fn an_infinite_double_reads_as_null_and_concatenates_as_java_prints_it() {
    let event = doc(
        r#"{"big": [1e308, 1e308], "same": [0.1, 0.1, 0.1], "s": ["a"], "x": -1e400,
            "long": 1.000000000000000000e400}"#,
    );
    let read = |expr: &str| {
        provtrail_jsonpath::compile(expr)
            .unwrap()
            .evaluate(&event)
            .unwrap()
            .into_value()
    };
    assert_eq!(read("$.big.sum()"), Value::Null);
    assert_eq!(read("$.s.concat($.big.sum())"), Value::from("aInfinity"));
    assert_eq!(read("$.s.concat($.same.stddev())"), Value::from("aNaN"));
    // A document's number past the range: Java's text of the `Double`, or of the `BigDecimal`.
    assert_eq!(read("$.s.concat($.x)"), Value::from("a-Infinity"));
    assert_eq!(
        read("$.s.concat($.long)"),
        Value::from("a1.000000000000000000E+400")
    );
}

/// A longer text past the double range is a `BigDecimal` to json-smart, exact and comparable.
#[test]
fn a_long_number_past_the_double_range_compares_as_a_decimal() {
    let event = doc(r#"{"x": 1.000000000000000000e400}"#);
    for (filter, expected) in [
        ("$[?(@.x > 1)]", true),
        ("$[?(@.x == 1E400)]", true),
        ("$[?(@.x < 0)]", false),
    ] {
        let path = provtrail_jsonpath::compile(filter).unwrap();
        assert_eq!(path.matches(&event), expected, "{filter}");
    }
}
