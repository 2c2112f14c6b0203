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
