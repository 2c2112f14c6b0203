//! The example payloads shared by the project parse, validate and round-trip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use provtrail_model::{Options, Outcome, ProvisioningCompleted, validate_slice};
use serde_json::Value;

const PAYLOADS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/payloads");

fn payload(name: &str) -> Vec<u8> {
    std::fs::read(format!("{PAYLOADS}/{name}")).unwrap_or_else(|err| panic!("{name}: {err}"))
}

const ALL: [&str; 4] = [
    "doc_example.json",
    "spec_example_v2025.json",
    "minimal_required_only.json",
    "large_200x5.json",
];

#[test]
fn every_example_payload_is_valid_in_both_modes_without_warnings() {
    for name in ALL {
        for options in [Options::lenient(), Options::strict()] {
            let bytes = payload(name);
            let report = validate_slice(&bytes, &options).unwrap();
            assert!(report.errors.is_empty(), "{name}: {:?}", report.errors);
            assert!(report.warnings.is_empty(), "{name}: {:?}", report.warnings);
            assert!(report.event.is_some(), "{name}");
        }
    }
}

#[test]
fn every_example_payload_round_trips_as_json() {
    for name in ALL {
        let bytes = payload(name);
        let original: Value = serde_json::from_slice(&bytes).unwrap();
        let event = ProvisioningCompleted::from_slice(&bytes).unwrap();
        let written: Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(written, original, "{name} compact");
        let pretty: Value = serde_json::from_str(&event.to_json_pretty()).unwrap();
        assert_eq!(pretty, original, "{name} pretty");
        assert_eq!(event.to_value(), original, "{name} value");
        let again = ProvisioningCompleted::from_value(original.clone()).unwrap();
        assert_eq!(again, event, "{name} from_value");
    }
}

#[test]
fn doc_example_fields_are_read_with_their_types() {
    let bytes = payload("doc_example.json");
    let event = ProvisioningCompleted::from_slice(&bytes).unwrap();
    assert_eq!(event.tracking_number, "4b4d982dddff4267ab12f0f1e72b5a6d");
    assert_eq!(
        event.source_names().collect::<Vec<_>>(),
        ["Corp AD", "Corp LDAP", "Corp Salesforce"]
    );
    assert_eq!(event.action.as_deref(), Some("IdentityRefresh"));
    assert_eq!(event.error_messages(), ["Connector AD Failed"]);
    assert_eq!(event.recipient.name, "William Wilson");
    assert_eq!(event.account_requests.len(), 1);
    let request = &event.account_requests[0];
    assert_eq!(request.source.name, "Corporate Active Directory");
    assert_eq!(request.ticket_id.as_deref(), Some("72619262"));
    assert_eq!(event.outcome(), Outcome::Succeeded);
    assert_eq!(event.ticket_ids(), ["72619262"]);
    assert_eq!(event.attribute_requests().count(), 1);
}

#[test]
fn large_payload_counts_its_results() {
    let bytes = payload("large_200x5.json");
    let event = ProvisioningCompleted::from_slice(&bytes).unwrap();
    let counts = event.counts();
    assert_eq!(counts.total(), 200);
    assert_eq!(event.failed_account_requests().count(), counts.failed);
    assert_eq!(event.attribute_requests().count(), 1000);
}
