//! Evaluations whose results would take more memory than a server has end with an error.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

/// 30 objects, one inside the other, around an array of 50,000 numbers.
fn deep_and_wide() -> Value {
    let mut value = json!(vec![0; 50_000]);
    for _ in 0..30 {
        value = json!({ "k": value });
    }
    value
}

#[test]
fn deep_scans_of_deep_scans_past_the_result_limit_fail_instead_of_taking_the_memory() {
    let doc = deep_and_wide();
    // Every node below each of the 30 objects: 1.5 million results.
    let path = provtrail_jsonpath::compile("$..*..*").unwrap();
    let error = path.evaluate(&doc).unwrap_err();
    assert!(
        error.to_string().contains("more than 1000000 results"),
        "{error}"
    );
    let filter = provtrail_jsonpath::compile("$[?(@..*..*..*)]").unwrap();
    assert!(!filter.matches(&doc));
    // One deep scan stays well under it.
    let nodes = provtrail_jsonpath::compile("$..*").unwrap();
    assert!(nodes.evaluate(&doc).is_ok());
}
