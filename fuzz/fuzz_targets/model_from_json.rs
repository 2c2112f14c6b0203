//! Validates the input as a Provisioning Completed event in both modes. Nothing may panic or
//! overflow the stack; whenever an event comes out, its `to_json` must read back as an equal
//! event; and a document valid in lenient mode must be written back as the same JSON.

#![no_main]

use libfuzzer_sys::fuzz_target;
use provtrail_model::{Options, ProvisioningCompleted, validate_slice};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    for options in [Options::lenient(), Options::strict()] {
        let Ok(report) = validate_slice(data, &options) else {
            continue;
        };
        for issue in report.errors.iter().chain(&report.warnings) {
            assert!(
                !issue.path.is_empty() && !issue.message.is_empty(),
                "{issue:?}"
            );
        }
        let Some(event) = &report.event else {
            continue;
        };
        let json = event.to_json();
        let again = match ProvisioningCompleted::from_json(&json) {
            Ok(again) => again,
            Err(err) => panic!("to_json wrote an invalid event: {err}\n{json}"),
        };
        assert_eq!(
            &again, event,
            "to_json does not read back as the same event: {json}"
        );
        if report.is_valid()
            && let Ok(original) = serde_json::from_slice::<Value>(data)
        {
            assert_eq!(
                event.to_value(),
                original,
                "the round trip changed the document"
            );
        }
    }
    let _ = ProvisioningCompleted::from_slice(data);
});
