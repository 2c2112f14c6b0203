//! Compiles the input as a Jayway JsonPath expression and, when it compiles, evaluates it on a
//! fixed event with every option combination: neither step may panic or overflow the stack.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use provtrail_jsonpath::Options;
use serde_json::Value;

fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::json!({
            "identity": {"id": "ee769173319b41d19ccec6cea52f237b", "name": "john.doe", "type": "IDENTITY"},
            "accountRequests": [
                {"provisioningResult": "SUCCESS", "attributeRequests": [{"attributeName": "memberOf", "operation": "Add"}]},
                {"provisioningResult": "FAILED", "errors": ["x"]}
            ],
            "warnings": ["Notification Skipped due to invalid email"],
            "errors": [],
            "numbers": [1, 2.5, -3, 1e20],
            "nested": [[1, [2, [3]]], {"a": {"b": {"c": null}}}],
            "flag": true
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(path) = provtrail_jsonpath::compile(text) else { return };
    let doc = document();
    let _ = path.matches(doc);
    for bits in 0u8..32 {
        let opts = Options {
            default_path_leaf_to_null: bits & 1 != 0,
            always_return_list: bits & 2 != 0,
            as_path_list: bits & 4 != 0,
            suppress_exceptions: bits & 8 != 0,
            require_properties: bits & 16 != 0,
        };
        let _ = path.evaluate_with(doc, opts);
    }
});
