//! The SDK's surface in Rust idiom (spec "Required behaviour" 1, 4 and 6): constructors and
//! setters, `Display`, the derived helpers, absent versus `null` through a round trip, owned
//! events, `FromStr`, `TryFrom<Value>` and the `Deserialize` impl inside other serde types.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::borrow::Cow;

use provtrail_model::{
    AccountOperation, AccountRequest, Action, AttributeOperation, AttributeRequest, AttributeValue,
    Error, IdentityRef, IdentityType, IssueKind, Limits, Maybe, Metadata, Mode, Options, Outcome,
    OwnedProvisioningCompleted, ProvisioningCompleted, ProvisioningCompletedAccountRequestsInner,
    ProvisioningCompletedAccountRequestsInnerAttributeRequestsInner,
    ProvisioningCompletedAccountRequestsInnerAttributeRequestsInnerOperation,
    ProvisioningCompletedAccountRequestsInnerProvisioningResult,
    ProvisioningCompletedAccountRequestsInnerSource, ProvisioningCompletedRecipient,
    ProvisioningCompletedRequester, ProvisioningResult, ResultCounts, SourceRef, SourceType,
    SyntaxError, validate_str,
};
use serde::Deserialize;
use serde_json::{Value, json};
use support::base_event;

const DOC_EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/payloads/doc_example.json"
);

fn text(doc: &Value) -> String {
    serde_json::to_string(doc).unwrap()
}

fn recipient() -> IdentityRef<'static> {
    IdentityRef::new("2c91808568c529c60168cca6f90c1313", "William Wilson")
}

fn request(result: ProvisioningResult) -> AccountRequest<'static> {
    AccountRequest::new(
        SourceRef::new(
            "4e4d982dddff4267ab12f0f1e72b5a6d",
            "Corporate Active Directory",
        ),
        "Modify",
        result,
        "Corp AD",
    )
}

fn with_results(results: &[ProvisioningResult]) -> ProvisioningCompleted<'static> {
    ProvisioningCompleted::new(
        "4b4d982dddff4267ab12f0f1e72b5a6d",
        "Corp AD",
        recipient(),
        results.iter().cloned().map(request).collect(),
    )
}

use ProvisioningResult::{Failed, Pending, Success};

fn unknown() -> ProvisioningResult {
    ProvisioningResult::Unknown("RETRYING".into())
}

// ---------------------------------------------------------------------------------------------
// Construction

#[test]
fn constructors_and_setters_build_the_documented_example() {
    let identity = IdentityRef::new("2c91808568c529c60168cca6f90c1313", "William Wilson");
    let built = ProvisioningCompleted::new(
        "4b4d982dddff4267ab12f0f1e72b5a6d",
        "Corp AD, Corp LDAP, Corp Salesforce",
        identity.clone(),
        vec![
            AccountRequest::new(
                SourceRef::new(
                    "4e4d982dddff4267ab12f0f1e72b5a6d",
                    "Corporate Active Directory",
                ),
                "Modify",
                Success,
                "Corp AD",
            )
            .with_account_id("CN=Rob.Robertson,ou=csm,ou=sales,dc=helpco,dc=com")
            .with_ticket_id("72619262")
            .with_attribute_requests(vec![
                AttributeRequest::new("memberOf", AttributeOperation::Add)
                    .with_value("CN=sales,DC=helpco,DC=com"),
            ]),
        ],
    )
    .with_action("IdentityRefresh")
    .with_errors(["Connector AD Failed"])
    .with_warnings(vec![String::from(
        "Notification Skipped due to invalid email",
    )])
    .with_requester(identity);

    let bytes = std::fs::read(DOC_EXAMPLE).unwrap();
    let file: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(built.to_value(), file);
    assert_eq!(ProvisioningCompleted::from_slice(&bytes).unwrap(), built);

    let json = built.to_json();
    let report = validate_str(&json, &Options::strict()).unwrap();
    assert!(
        report.errors.is_empty() && report.warnings.is_empty(),
        "{report:?}"
    );
}

#[test]
fn a_new_event_has_only_its_required_fields() {
    let event = with_results(&[Success]);
    assert!(event.action.is_absent());
    assert!(event.errors.is_absent());
    assert!(event.warnings.is_absent());
    assert!(event.requester.is_absent());
    assert!(event.metadata.is_none());
    assert!(event.extra.is_empty());
    let request = &event.account_requests[0];
    assert!(request.account_id.is_absent());
    assert!(request.ticket_id.is_absent());
    assert!(request.attribute_requests.is_absent());
    let value = event.to_value();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["trackingNumber", "sources", "recipient", "accountRequests"]
    );
    let keys: Vec<&str> = value["accountRequests"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "source",
            "accountOperation",
            "provisioningResult",
            "provisioningTarget"
        ]
    );
    assert!(
        validate_str(&event.to_json(), &Options::strict())
            .unwrap()
            .is_valid()
    );
}

#[test]
fn reference_constructors_set_the_schema_s_only_type() {
    let identity = IdentityRef::new("i", "n");
    assert_eq!(identity.kind, IdentityType::Identity);
    assert_eq!(identity.kind.as_wire(), "IDENTITY");
    let source = SourceRef::new("s", "n");
    assert_eq!(source.kind, SourceType::Source);
    let event = with_results(&[Success]);
    assert_eq!(event.to_value()["recipient"]["type"], "IDENTITY");
    assert_eq!(
        event.to_value()["accountRequests"][0]["source"]["type"],
        "SOURCE"
    );
}

#[test]
fn metadata_constructor_is_the_envelope_isc_adds() {
    let event = with_results(&[Success]).with_metadata(Metadata::provisioning_completed(
        "0f7a9e4e-5b8c-4a0e-9d2f-3c6b1a2e4d5f",
    ));
    assert_eq!(
        event.invocation_id(),
        Some("0f7a9e4e-5b8c-4a0e-9d2f-3c6b1a2e4d5f")
    );
    assert_eq!(
        event.to_value()["_metadata"],
        json!({
            "triggerId": "idn:post-provisioning",
            "triggerType": "fireAndForget",
            "invocationId": "0f7a9e4e-5b8c-4a0e-9d2f-3c6b1a2e4d5f"
        })
    );
    // The envelope is allowed in strict mode.
    let json = event.to_json();
    let report = validate_str(&json, &Options::strict()).unwrap();
    assert!(
        report.errors.is_empty() && report.warnings.is_empty(),
        "{report:?}"
    );
}

#[test]
fn with_values_builds_a_multi_valued_attribute_that_only_lenient_mode_accepts() {
    let mut event = with_results(&[Success]);
    event.account_requests[0] = request(Success).with_attribute_requests(vec![
        AttributeRequest::new("memberOf", AttributeOperation::Add).with_values(["a", "b"]),
    ]);
    assert_eq!(
        event.to_value()["accountRequests"][0]["attributeRequests"][0]["attributeValue"],
        json!(["a", "b"])
    );
    let path = "accountRequests[0].attributeRequests[0].attributeValue";
    let json = event.to_json();
    let lenient = validate_str(&json, &Options::lenient()).unwrap();
    assert!(lenient.is_valid());
    assert_eq!(lenient.warnings[0].path, path);
    assert_eq!(lenient.warnings[0].kind, IssueKind::MultiValuedAttribute);
    let strict = validate_str(&json, &Options::strict()).unwrap();
    assert_eq!(strict.errors.len(), 1);
    assert_eq!(strict.errors[0].path, path);
    assert_eq!(lenient.event.unwrap(), event);
}

#[test]
fn with_extra_writes_an_unknown_field_back() {
    let event = with_results(&[Success]).with_extra("tenant", json!({"name": "acme"}));
    assert_eq!(event.to_value()["tenant"], json!({"name": "acme"}));
    let json = event.to_json();
    let strict = validate_str(&json, &Options::strict()).unwrap();
    assert_eq!(strict.errors.len(), 1);
    assert_eq!(strict.errors[0].path, "tenant");
    assert_eq!(strict.errors[0].kind, IssueKind::UnknownField);
    assert_eq!(
        ProvisioningCompleted::from_json(&event.to_json()).unwrap(),
        event
    );
}

#[test]
fn to_value_of_builds_the_chosen_members_exactly_as_to_value_does() {
    let doc_example = std::fs::read_to_string(DOC_EXAMPLE).unwrap();
    let with_extra = with_results(&[Success, Failed])
        .with_extra("tenant", json!({"name": "acme"}))
        .with_extra("action", json!("shadowed"));
    let events = [
        ProvisioningCompleted::from_json(&doc_example).unwrap(),
        with_extra,
    ];
    let choices: [&[&str]; 5] = [
        &[],
        &["accountRequests"],
        &["recipient", "_metadata", "tenant"],
        &[
            "action",
            "errors",
            "warnings",
            "requester",
            "sources",
            "trackingNumber",
        ],
        &["no-such-member"],
    ];
    for event in &events {
        let Value::Object(whole) = event.to_value() else {
            panic!("an event is an object");
        };
        for chosen in choices {
            let expected: serde_json::Map<String, Value> = whole
                .iter()
                .filter(|(name, _)| chosen.contains(&name.as_str()))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            let built = event.to_value_of(|name| chosen.contains(&name));
            assert_eq!(built, Value::Object(expected), "members {chosen:?}");
        }
        assert_eq!(event.to_value_of(|_| true), Value::Object(whole));
    }
}

/// Every key of every object in `json`, checked to appear once in its object.
fn assert_no_repeated_keys(json: &str) {
    let report = validate_str(json, &Options::lenient()).unwrap();
    let repeated: Vec<_> = report
        .errors
        .iter()
        .filter(|issue| issue.kind == IssueKind::DuplicateKey)
        .collect();
    assert!(repeated.is_empty(), "{json}: {repeated:?}");
}

#[test]
fn an_unknown_field_never_shadows_a_field_that_is_written() {
    let mut event = with_results(&[Success])
        .with_extra("trackingNumber", json!("from extra"))
        .with_extra("action", json!("from extra"))
        .with_extra("tenant", json!("acme"))
        .with_metadata(Metadata::provisioning_completed("id-1"));
    event.extra.insert("_metadata".into(), json!("from extra"));
    event.recipient.extra.insert("id".into(), json!(1));
    let request = &mut event.account_requests[0];
    request.extra.insert("provisioningResult".into(), json!(2));
    request.extra.insert("ticketId".into(), json!("from extra"));
    request.source.extra.insert("type".into(), json!(3));
    request.attribute_requests = Maybe::Value(vec![AttributeRequest::new(
        "memberOf",
        AttributeOperation::Add,
    )]);
    if let Maybe::Value(attributes) = &mut request.attribute_requests {
        attributes[0].extra.insert("operation".into(), json!(4));
        attributes[0]
            .extra
            .insert("attributeValue".into(), json!("from extra"));
    }
    if let Some(metadata) = &mut event.metadata {
        metadata.extra.insert("invocationId".into(), json!(5));
        metadata.extra.insert("triggerId".into(), json!(6));
        metadata.trigger_id = None;
    }

    let json = event.to_json();
    assert_no_repeated_keys(&json);
    // The fast writer and the `Serialize` impls agree.
    assert_eq!(serde_json::to_string(&event).unwrap(), json);
    let value = event.to_value();
    assert_eq!(serde_json::to_string(&value).unwrap(), json);

    // The typed field wins where the object writes it ...
    assert_eq!(value["trackingNumber"], "4b4d982dddff4267ab12f0f1e72b5a6d");
    assert_eq!(value["_metadata"]["invocationId"], "id-1");
    assert_eq!(value["recipient"]["id"], "2c91808568c529c60168cca6f90c1313");
    let request = &value["accountRequests"][0];
    assert_eq!(request["provisioningResult"], "SUCCESS");
    assert_eq!(request["source"]["type"], "SOURCE");
    assert_eq!(request["attributeRequests"][0]["operation"], "Add");
    // ... and the unknown field is written where it leaves the field out.
    assert_eq!(value["action"], "from extra");
    assert_eq!(request["ticketId"], "from extra");
    assert_eq!(
        request["attributeRequests"][0]["attributeValue"],
        "from extra"
    );
    assert_eq!(value["_metadata"]["triggerId"], 6);
    assert_eq!(value["tenant"], "acme");

    // Once the typed field is set, it wins.
    let event = event.with_action("Certification");
    let json = event.to_json();
    assert_no_repeated_keys(&json);
    assert_eq!(event.to_value()["action"], "Certification");
    assert_eq!(serde_json::to_string(&event).unwrap(), json);
}

#[test]
fn sdk_type_names_are_aliases_of_the_model_types() {
    let recipient: ProvisioningCompletedRecipient<'_> = IdentityRef::new("i", "n");
    let requester: ProvisioningCompletedRequester<'_> = recipient.clone();
    let source: ProvisioningCompletedAccountRequestsInnerSource<'_> = SourceRef::new("s", "n");
    let operation: ProvisioningCompletedAccountRequestsInnerAttributeRequestsInnerOperation =
        AttributeOperation::Set;
    let attribute: ProvisioningCompletedAccountRequestsInnerAttributeRequestsInner<'_> =
        AttributeRequest::new("a", operation);
    let result: ProvisioningCompletedAccountRequestsInnerProvisioningResult = Pending;
    let request: ProvisioningCompletedAccountRequestsInner<'_> =
        AccountRequest::new(source, "Modify", result, "t").with_attribute_requests(vec![attribute]);
    let event: OwnedProvisioningCompleted =
        ProvisioningCompleted::new("t", "s", recipient, vec![request]).with_requester(requester);
    assert_eq!(event.outcome(), Outcome::Pending);
}

// ---------------------------------------------------------------------------------------------
// Display

#[test]
fn display_is_one_line_with_tracking_number_action_recipient_and_results() {
    let event = with_results(&[Success, Pending, Failed]).with_action("Access Request");
    let line = event.to_string();
    assert!(!line.contains('\n'), "{line}");
    for part in [
        "4b4d982dddff4267ab12f0f1e72b5a6d",
        "Access Request",
        "William Wilson",
        "2c91808568c529c60168cca6f90c1313",
        "3 account requests",
        "1 succeeded",
        "1 pending",
        "1 failed",
    ] {
        assert!(line.contains(part), "{part:?} not in {line:?}");
    }

    let single = with_results(&[Success]).to_string();
    assert!(single.contains("1 account request"), "{single}");
    assert!(!single.contains("1 account requests"), "{single}");
    assert!(
        !single.contains("failed") && !single.contains("pending"),
        "{single}"
    );

    let odd = with_results(&[unknown(), Success]).to_string();
    assert!(odd.contains("unknown"), "{odd}");

    let none = with_results(&[]).to_string();
    assert!(none.contains("0 account requests"), "{none}");
}

#[test]
fn error_display_names_the_first_problems_and_counts_the_rest() {
    let err = ProvisioningCompleted::from_json("{}").unwrap_err();
    let Error::Invalid(issues) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(issues.len(), 4);
    let text = err.to_string();
    assert!(text.contains("trackingNumber"), "{text}");
    assert!(text.contains("sources"), "{text}");
    assert!(text.contains("recipient"), "{text}");
    assert!(text.contains("and 1 more"), "{text}");
    assert_eq!(
        issues[0].to_string(),
        format!("{}: {}", issues[0].path, issues[0].message)
    );

    let err = ProvisioningCompleted::from_json("{").unwrap_err();
    assert!(
        matches!(err, Error::Syntax(SyntaxError::NotJson { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("not JSON"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Helpers

#[test]
fn source_names_split_on_commas_trim_and_drop_empty_names() {
    for (sources, names) in [
        (
            "Corp AD, Corp LDAP, Corp Salesforce",
            &["Corp AD", "Corp LDAP", "Corp Salesforce"][..],
        ),
        ("Corp AD", &["Corp AD"][..]),
        ("A,B", &["A", "B"][..]),
        ("  A  ,\tB ,, ,C  ", &["A", "B", "C"][..]),
        ("", &[][..]),
        (", ,", &[][..]),
    ] {
        let mut event = with_results(&[Success]);
        event.sources = Cow::Borrowed(sources);
        assert_eq!(
            event.source_names().collect::<Vec<_>>(),
            names,
            "{sources:?}"
        );
    }
}

#[test]
fn outcome_follows_the_results_of_the_account_requests() {
    for (results, outcome) in [
        (vec![], Outcome::NoRequests),
        (vec![Success], Outcome::Succeeded),
        (vec![Success, Success], Outcome::Succeeded),
        (vec![Failed], Outcome::Failed),
        (vec![Failed, Failed], Outcome::Failed),
        (vec![Success, Failed], Outcome::PartiallyFailed),
        (vec![Pending, Failed], Outcome::PartiallyFailed),
        (vec![unknown(), Failed], Outcome::PartiallyFailed),
        (vec![Pending], Outcome::Pending),
        (vec![Success, Pending], Outcome::Pending),
        (vec![unknown(), Pending], Outcome::Pending),
        (vec![unknown()], Outcome::Unknown),
        (vec![Success, unknown()], Outcome::Unknown),
    ] {
        let event = with_results(&results);
        assert_eq!(event.outcome(), outcome, "{results:?}");
        assert_eq!(
            event.outcome().has_failures(),
            results.contains(&Failed),
            "{results:?}"
        );
    }
    let names: Vec<String> = [
        Outcome::Succeeded,
        Outcome::Pending,
        Outcome::PartiallyFailed,
        Outcome::Failed,
        Outcome::Unknown,
        Outcome::NoRequests,
    ]
    .iter()
    .map(|outcome| {
        assert_eq!(outcome.to_string(), outcome.as_str());
        outcome.to_string()
    })
    .collect();
    assert_eq!(
        names,
        [
            "succeeded",
            "pending",
            "partially_failed",
            "failed",
            "unknown",
            "no_requests"
        ]
    );
}

#[test]
fn counts_tally_each_result() {
    let event = with_results(&[Success, Failed, Success, Pending, unknown(), Failed, Failed]);
    let counts = event.counts();
    assert_eq!(
        counts,
        ResultCounts {
            success: 2,
            pending: 1,
            failed: 3,
            unknown: 1
        }
    );
    assert_eq!(counts.total(), 7);
    assert_eq!(with_results(&[]).counts().total(), 0);
}

#[test]
fn failed_account_requests_are_the_failed_ones_in_order() {
    let mut event = with_results(&[Success, Failed, Pending, Failed, unknown()]);
    event.account_requests[1].provisioning_target = Cow::Borrowed("first");
    event.account_requests[3].provisioning_target = Cow::Borrowed("second");
    let failed: Vec<&str> = event
        .failed_account_requests()
        .map(|request| request.provisioning_target.as_ref())
        .collect();
    assert_eq!(failed, ["first", "second"]);
    let flags: Vec<bool> = event
        .account_requests
        .iter()
        .map(AccountRequest::failed)
        .collect();
    assert_eq!(flags, [false, true, false, true, false]);
    assert_eq!(
        with_results(&[Success]).failed_account_requests().count(),
        0
    );
}

#[test]
fn ticket_ids_are_in_order_without_repeats_or_blanks() {
    let mut doc = base_event();
    let requests = doc["accountRequests"].as_array_mut().unwrap();
    let template = requests[0].clone();
    requests.clear();
    for ticket in [
        json!("72619262"),
        Value::Null,
        json!("1"),
        json!("72619262"),
        json!("1"),
    ] {
        let mut request = template.clone();
        request["ticketId"] = ticket;
        requests.push(request);
    }
    let mut absent = template.clone();
    absent.as_object_mut().unwrap().shift_remove("ticketId");
    requests.insert(1, absent);
    let text = text(&doc);
    let event = ProvisioningCompleted::from_json(&text).unwrap();
    assert_eq!(event.ticket_ids(), ["72619262", "1"]);
    assert!(with_results(&[Success]).ticket_ids().is_empty());
}

#[test]
fn known_action_recognises_the_values_seen_in_isc_events() {
    for (action, known) in [
        (Some("IdentityRefresh"), Some(Action::IdentityRefresh)),
        (Some("Access Request"), Some(Action::AccessRequest)),
        (Some("Certification"), Some(Action::Certification)),
        (Some("identityrefresh"), None),
        (Some("AccessRequest"), None),
        (Some("Something else"), None),
        (Some(""), None),
        (None, None),
    ] {
        let mut event = with_results(&[Success]);
        if let Some(action) = action {
            event = event.with_action(action);
        }
        assert_eq!(event.known_action(), known, "{action:?}");
    }
    let mut event = with_results(&[Success]);
    event.action = Maybe::Null;
    assert_eq!(event.known_action(), None);
}

#[test]
fn account_operation_reads_the_known_values_and_keeps_others_verbatim() {
    for (text, operation) in [
        ("Create", AccountOperation::Create),
        ("Modify", AccountOperation::Modify),
        ("Enable", AccountOperation::Enable),
        ("Disable", AccountOperation::Disable),
        ("Unlock", AccountOperation::Unlock),
        ("Delete", AccountOperation::Delete),
        ("Rename", AccountOperation::Unknown("Rename".into())),
        ("create", AccountOperation::Unknown("create".into())),
    ] {
        let mut request = request(Success);
        request.account_operation = Cow::Borrowed(text);
        assert_eq!(request.operation(), operation);
        assert_eq!(request.operation().as_wire(), text);
    }
}

#[test]
fn invocation_id_comes_from_the_envelope() {
    let text = text(&base_event());
    let event = ProvisioningCompleted::from_json(&text).unwrap();
    assert_eq!(
        event.invocation_id(),
        Some("0f7a9e4e-5b8c-4a0e-9d2f-3c6b1a2e4d5f")
    );

    let mut doc = base_event();
    doc.as_object_mut().unwrap().shift_remove("_metadata");
    let text = serde_json::to_string(&doc).unwrap();
    assert_eq!(
        ProvisioningCompleted::from_json(&text)
            .unwrap()
            .invocation_id(),
        None
    );

    // A malformed envelope gives no invocation id, and is written back as it was.
    let mut doc = base_event();
    doc["_metadata"]["invocationId"] = json!(12345);
    let text = serde_json::to_string(&doc).unwrap();
    let event = ProvisioningCompleted::from_json(&text).unwrap();
    assert_eq!(event.invocation_id(), None);
    assert_eq!(event.to_value(), doc);
}

#[test]
fn error_and_warning_messages_are_empty_when_absent_or_null() {
    let text = text(&base_event());
    let event = ProvisioningCompleted::from_json(&text).unwrap();
    assert_eq!(
        event.error_messages(),
        ["Connector AD Failed", "Retry scheduled"]
    );
    assert_eq!(event.warning_messages().len(), 2);
    let mut event = with_results(&[Success]);
    assert!(event.error_messages().is_empty() && event.warning_messages().is_empty());
    event.errors = Maybe::Null;
    event.warnings = Maybe::Null;
    assert!(event.error_messages().is_empty() && event.warning_messages().is_empty());
}

#[test]
fn attribute_requests_iterate_over_every_account_request() {
    let text = text(&base_event());
    let event = ProvisioningCompleted::from_json(&text).unwrap();
    let names: Vec<&str> = event
        .attribute_requests()
        .map(|attribute| attribute.attribute_name.as_ref())
        .collect();
    assert_eq!(names, ["memberOf", "description", "groups", "mail"]);
    assert_eq!(
        with_results(&[Success, Failed])
            .attribute_requests()
            .count(),
        0
    );

    let single = AttributeValue::Single("a".into());
    assert_eq!(single.values().collect::<Vec<_>>(), ["a"]);
    let multi = AttributeValue::Multi(vec!["a".into(), "b".into()]);
    assert_eq!(multi.values().collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn wire_enums_list_the_schema_s_values_and_keep_unknown_ones_verbatim() {
    assert_eq!(ProvisioningResult::KNOWN, ["SUCCESS", "PENDING", "FAILED"]);
    assert_eq!(AttributeOperation::KNOWN, ["Add", "Set", "Remove"]);
    assert_eq!(IdentityType::KNOWN, ["IDENTITY"]);
    assert_eq!(SourceType::KNOWN, ["SOURCE"]);
    assert_eq!(
        AccountOperation::KNOWN,
        ["Create", "Modify", "Enable", "Disable", "Unlock", "Delete"]
    );
    for wire in ProvisioningResult::KNOWN {
        let value = ProvisioningResult::from_wire(wire);
        assert!(value.is_known());
        assert_eq!(value.as_wire(), *wire);
        assert_eq!(value.to_string(), *wire);
        assert_eq!(ProvisioningResult::from(*wire), value);
    }
    let odd = ProvisioningResult::from_wire("Success");
    assert_eq!(odd, ProvisioningResult::Unknown("Success".into()));
    assert!(!odd.is_known());
    assert_eq!(odd.as_wire(), "Success");
    assert_eq!(
        AttributeOperation::from_wire_owned("Replace".into()),
        AttributeOperation::Unknown("Replace".into())
    );
    assert_eq!(
        AttributeOperation::from_wire_owned("Set".into()),
        AttributeOperation::Set
    );

    // An unknown value is kept through a round trip.
    let mut doc = base_event();
    doc["accountRequests"][1]["provisioningResult"] = json!("RETRYING");
    doc["accountRequests"][1]["attributeRequests"][0]["operation"] = json!("Replace");
    let text = text(&doc);
    let event = ProvisioningCompleted::from_json(&text).unwrap();
    assert_eq!(event.account_requests[1].provisioning_result, unknown());
    assert_eq!(event.to_value(), doc);
    assert_eq!(event.outcome(), Outcome::Unknown);
}

// ---------------------------------------------------------------------------------------------
// Absent and null, owned events, conversions

type Probe = fn(&ProvisioningCompleted<'_>) -> (bool, bool);

#[test]
fn absent_and_null_optional_fields_stay_apart_through_a_round_trip() {
    fn state<T>(maybe: &Maybe<T>) -> (bool, bool) {
        (maybe.is_absent(), maybe.is_null())
    }
    let fields: [(&str, Probe); 8] = [
        ("action", |e| state(&e.action)),
        ("errors", |e| state(&e.errors)),
        ("warnings", |e| state(&e.warnings)),
        ("requester", |e| state(&e.requester)),
        ("accountRequests[0].ticketId", |e| {
            state(&e.account_requests[0].ticket_id)
        }),
        ("accountRequests[0].accountId", |e| {
            state(&e.account_requests[0].account_id)
        }),
        ("accountRequests[0].attributeRequests", |e| {
            state(&e.account_requests[0].attribute_requests)
        }),
        (
            "accountRequests[1].attributeRequests[1].attributeValue",
            |e| {
                let attributes = e.account_requests[1]
                    .attribute_requests
                    .as_option()
                    .unwrap();
                state(&attributes[1].attribute_value)
            },
        ),
    ];
    for (path, probe) in fields {
        let steps = support::parse_path(path).unwrap();
        let (support::Step::Key(key), parent) = steps.split_last().unwrap() else {
            panic!("{path}");
        };
        for null in [false, true] {
            let mut doc = base_event();
            let object = support::resolve_mut(&mut doc, parent)
                .unwrap()
                .as_object_mut()
                .unwrap();
            if null {
                object.insert(key.clone(), Value::Null);
            } else {
                object.shift_remove(key);
            }
            let text = text(&doc);
            let event = ProvisioningCompleted::from_json(&text).unwrap();
            assert_eq!(probe(&event), (!null, null), "{path} null={null}");
            let written = event.to_value();
            assert_eq!(written, doc, "{path} null={null}");
            let again = ProvisioningCompleted::from_value(written).unwrap();
            assert_eq!(probe(&again), (!null, null), "{path} null={null}");
        }
    }
}

#[test]
fn maybe_gives_the_value_only_when_there_is_one() {
    let absent: Maybe<String> = Maybe::Absent;
    let null: Maybe<String> = Maybe::Null;
    let value = Maybe::Value(String::from("x"));
    assert_eq!(Maybe::<String>::default(), Maybe::Absent);
    assert_eq!(absent.as_deref(), None);
    assert_eq!(null.as_deref(), None);
    assert_eq!(value.as_deref(), Some("x"));
    assert!(value.is_value() && !value.is_null() && !value.is_absent());
    assert_eq!(null.clone().map(|s| s.len()), Maybe::Null);
    assert_eq!(absent.clone().map(|s| s.len()), Maybe::Absent);
    assert_eq!(value.clone().map(|s| s.len()), Maybe::Value(1));
    assert_eq!(value.as_ref(), Maybe::Value(&String::from("x")));
    assert_eq!(value.clone().into_option(), Some(String::from("x")));
    assert_eq!(null.into_option(), None);
    assert_eq!(Maybe::from(Some(1)), Maybe::Value(1));
    assert_eq!(Maybe::<u8>::from(None), Maybe::Absent);
    let mut value = value;
    value.as_option_mut().unwrap().push('y');
    assert_eq!(value.as_option().map(String::as_str), Some("xy"));
}

#[test]
fn into_owned_outlives_the_input() {
    let owned: ProvisioningCompleted<'static> = {
        let text = text(&base_event());
        let borrowed = ProvisioningCompleted::from_json(&text).unwrap();
        borrowed.into_owned()
    };
    // Moved to another thread, which needs 'static.
    let written = std::thread::spawn(move || owned.to_value()).join().unwrap();
    assert_eq!(written, base_event());
}

#[test]
fn from_str_parses_into_an_owned_event_and_reports_every_error() {
    let event: ProvisioningCompleted<'static> = {
        let text = text(&base_event());
        text.parse().unwrap()
    };
    assert_eq!(event.to_value(), base_event());

    let mut doc = base_event();
    doc["trackingNumber"] = Value::Null;
    doc["accountRequests"][1]["provisioningResult"] = json!(3);
    let err = text(&doc)
        .parse::<ProvisioningCompleted<'static>>()
        .unwrap_err();
    let Error::Invalid(issues) = err else {
        panic!("{err:?}");
    };
    let paths: Vec<&str> = issues.iter().map(|issue| issue.path.as_str()).collect();
    assert_eq!(
        paths,
        ["trackingNumber", "accountRequests[1].provisioningResult"]
    );

    assert!(matches!(
        "".parse::<ProvisioningCompleted<'static>>(),
        Err(Error::Syntax(SyntaxError::Empty))
    ));
}

#[test]
fn try_from_value_and_into_value_convert_both_ways() {
    let event = ProvisioningCompleted::try_from(base_event()).unwrap();
    assert_eq!(Value::from(&event), base_event());
    let Err(Error::Invalid(issues)) = ProvisioningCompleted::try_from(json!(null)) else {
        panic!("null is not an event");
    };
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].path, "$");
    let Err(Error::Invalid(issues)) = ProvisioningCompleted::try_from(json!({})) else {
        panic!("{{}} is not an event");
    };
    assert_eq!(issues.len(), 4);
}

#[test]
fn from_json_is_lenient_and_lists_every_error() {
    let mut doc = base_event();
    doc["unexpected"] = json!(1);
    doc["accountRequests"][0]["provisioningResult"] = json!("RETRYING");
    let text = text(&doc);
    assert!(ProvisioningCompleted::from_json(&text).is_ok());
    assert!(ProvisioningCompleted::from_slice(text.as_bytes()).is_ok());
    assert!(ProvisioningCompleted::from_value(doc.clone()).is_ok());

    doc["sources"] = json!(1);
    doc["recipient"] = json!([]);
    doc["accountRequests"][1]["source"]["id"] = Value::Null;
    let text = serde_json::to_string(&doc).unwrap();
    let report = validate_str(&text, &Options::lenient()).unwrap();
    assert_eq!(report.errors.len(), 3);
    let Err(Error::Invalid(issues)) = ProvisioningCompleted::from_json(&text) else {
        panic!("invalid");
    };
    assert_eq!(issues, report.errors);

    // Strict errors make `into_result` fail even when the event could be typed.
    let json = serde_json::to_string(&base_with_extension()).unwrap();
    let strict = validate_str(&json, &Options::strict()).unwrap();
    assert!(strict.event.is_some());
    assert!(!strict.is_valid());
    assert!(strict.into_result().is_err());
}

fn base_with_extension() -> Value {
    let mut doc = base_event();
    doc["recipient"]["department"] = json!("Sales");
    doc
}

#[test]
fn write_json_appends_compact_json_to_a_buffer() {
    let text = text(&base_event());
    let event = ProvisioningCompleted::from_json(&text).unwrap();
    let mut buffer = b"[".to_vec();
    event.write_json(&mut buffer).unwrap();
    buffer.push(b']');
    let written: Value = serde_json::from_slice(&buffer).unwrap();
    assert_eq!(written, json!([base_event()]));
    assert_eq!(&buffer[1..buffer.len() - 1], event.to_json().as_bytes());
    assert!(event.to_json_pretty().contains('\n'));
    assert!(!event.to_json().contains('\n'));
}

#[test]
fn floats_in_unknown_fields_are_written_back_exactly() {
    // Unknown fields keep any JSON, numbers included; each of these is the shortest form of a
    // double, so reading and writing it must give the same double.
    for number in [
        "7.755811228961497e-208",
        "3.6696323916090675e+19",
        "2.1802645696973272e-23",
        "0.1",
        "1e300",
    ] {
        let exact: f64 = number.parse().unwrap();
        let base = text(&base_event());
        let text = format!("{},\"measurement\":{number}}}", &base[..base.len() - 1]);
        let event = ProvisioningCompleted::from_json(&text).unwrap();
        assert_eq!(
            event.extra["measurement"].as_f64(),
            Some(exact),
            "read {number}"
        );
        let written = event.to_json();
        let again = ProvisioningCompleted::from_json(&written).unwrap();
        assert_eq!(again, event, "{number} written as {}", event.to_json());
    }
}

// ---------------------------------------------------------------------------------------------
// Inside other serde types

#[test]
fn deserialize_reads_events_inside_generic_serde_types() {
    let doc = json!([base_event(), base_with_extension()]);
    let text = serde_json::to_string(&doc).unwrap();
    let events: Vec<ProvisioningCompleted<'_>> = serde_json::from_str(&text).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].to_value(), base_event());
    assert_eq!(events[1].recipient.extra["department"], "Sales");

    let keyed = serde_json::to_string(&json!({"a": base_event(), "b": null})).unwrap();
    let map: std::collections::BTreeMap<String, Option<ProvisioningCompleted<'_>>> =
        serde_json::from_str(&keyed).unwrap();
    assert_eq!(map["a"].as_ref().unwrap().to_value(), base_event());
    assert!(map["b"].is_none());

    let pair = json!(["received", base_event()]);
    let pair: (String, ProvisioningCompleted<'_>) = Deserialize::deserialize(&pair).unwrap();
    assert_eq!(pair.1.to_value(), base_event());
}

#[test]
fn deserialize_fails_with_the_paths_of_an_invalid_event() {
    let mut event = base_event();
    event["accountRequests"][1]["provisioningResult"] = json!(7);
    event["sources"] = Value::Null;
    let text = serde_json::to_string(&json!([base_event(), event])).unwrap();
    let err = serde_json::from_str::<Vec<ProvisioningCompleted<'_>>>(&text).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("accountRequests[1].provisioningResult"),
        "{message}"
    );
    assert!(message.contains("sources"), "{message}");
    let err = serde_json::from_str::<Vec<ProvisioningCompleted<'_>>>("[[1]]").unwrap_err();
    assert!(err.to_string().contains('$'), "{err}");
}

// A struct that borrows from the input for a shorter lifetime (`'de: 'a`, what `#[serde(borrow)]`
// derives) can hold an event.
mod inside_a_derived_struct {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Stored<'a> {
        received_at: String,
        #[serde(borrow)]
        event: ProvisioningCompleted<'a>,
    }

    #[test]
    fn deserialize_reads_an_event_inside_a_derived_struct() {
        let doc = json!({"received_at": "2026-01-01T00:00:00Z", "event": base_event()});
        let text = serde_json::to_string(&doc).unwrap();
        let stored: Stored<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(stored.received_at, "2026-01-01T00:00:00Z");
        assert_eq!(stored.event.to_value(), base_event());
        let from_value = Stored::deserialize(&doc).unwrap();
        assert_eq!(from_value.event, stored.event);
    }
}

// ---------------------------------------------------------------------------------------------
// Options

#[test]
fn options_default_to_lenient_with_one_mebibyte_and_sixty_four_levels() {
    assert_eq!(Options::default(), Options::lenient());
    assert_eq!(Options::lenient().mode, Mode::Lenient);
    assert_eq!(Options::strict().mode, Mode::Strict);
    assert_eq!(Options::strict().limits, Limits::default());
    assert_eq!(Limits::DEFAULT, Limits::default());
    assert_eq!(Limits::DEFAULT.max_bytes, 1024 * 1024);
    assert_eq!(Limits::DEFAULT.max_depth, 64);
    assert_eq!(Mode::default(), Mode::Lenient);
}

// ---------------------------------------------------------------------------------------------
// Numbers

/// Numbers that a 64-bit integer or a double would change (beyond 64 bits, beyond the double's
/// range, more digits than a double holds, a negative zero, trailing zeros, an exponent), and
/// how each is written back: as written, but for an exponent's letter and sign (`1e+2`), which
/// serde_json normalises and which do not change the number.
const EXACT_NUMBERS: [(&str, &str); 8] = [
    (
        "123456789012345678901234567890",
        "123456789012345678901234567890",
    ),
    (
        "-98765432109876543210987654321",
        "-98765432109876543210987654321",
    ),
    (
        "340282366920938463463374607431768211457",
        "340282366920938463463374607431768211457",
    ),
    ("1e400", "1e+400"),
    (
        "0.1000000000000000055511151231257827",
        "0.1000000000000000055511151231257827",
    ),
    ("-0", "-0"),
    ("1E+2", "1e+2"),
    ("1.50", "1.50"),
];

/// A compact event with the numbers `column` of [`EXACT_NUMBERS`] in unknown fields of the event,
/// of an account request and of an attribute request, and inside an unknown array and object.
fn event_with_numbers(written: bool) -> String {
    let mut doc = base_event();
    for index in 0..EXACT_NUMBERS.len() {
        let marker = Value::String(format!("@{index}@"));
        doc[format!("top{index}")] = marker.clone();
        doc["accountRequests"][0][format!("n{index}")] = marker.clone();
        doc["accountRequests"][0]["attributeRequests"][0][format!("n{index}")] = marker.clone();
        doc["nested"][format!("k{index}")] = json!([marker.clone(), {"deep": marker}]);
    }
    let mut text = serde_json::to_string(&doc).unwrap();
    for (index, (number, as_written)) in EXACT_NUMBERS.iter().enumerate() {
        let number = if written { as_written } else { number };
        text = text.replace(&format!("\"@{index}@\""), number);
    }
    text
}

#[test]
fn numbers_in_unknown_fields_round_trip_as_written() {
    let text = event_with_numbers(false);
    let expected = event_with_numbers(true);

    let event = ProvisioningCompleted::from_json(&text).unwrap();
    assert_eq!(event.to_json(), expected);
    assert_eq!(
        serde_json::from_str::<Value>(&event.to_json_pretty()).unwrap(),
        serde_json::from_str::<Value>(&expected).unwrap()
    );

    // Through a `serde_json::Value` (the SDK's from_dict / to_dict), and as a field of another
    // serde type.
    // serde_json hands an integer that fits 64 bits out of a `Value` as that integer, so `-0`
    // comes back as `0` there: the same number.
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        ProvisioningCompleted::from_value(value).unwrap().to_json(),
        expected
            .replace(":-0,", ":0,")
            .replace(":-0}", ":0}")
            .replace("[-0,", "[0,")
    );
    #[derive(Deserialize)]
    struct Wrapper<'a> {
        #[serde(borrow)]
        event: ProvisioningCompleted<'a>,
    }
    let wrapped_text = format!("{{\"event\":{text}}}");
    let wrapped: Wrapper<'_> = serde_json::from_str(&wrapped_text).unwrap();
    assert_eq!(wrapped.event.to_json(), expected);
}

#[test]
fn a_wide_number_in_place_of_a_string_is_reported_as_written() {
    let mut doc = base_event();
    doc["trackingNumber"] = Value::String("@".into());
    let text = serde_json::to_string(&doc)
        .unwrap()
        .replace("\"@\"", "123456789012345678901234567890");
    for report in [
        validate_str(&text, &Options::lenient()).unwrap(),
        provtrail_model::validate_value(serde_json::from_str(&text).unwrap(), &Options::lenient()),
    ] {
        let error = &report.errors[0];
        assert_eq!(error.path, "trackingNumber");
        assert_eq!(
            error.value.as_deref(),
            Some("123456789012345678901234567890"),
            "{error:?}"
        );
    }
}

/// serde_json's key for numbers under `arbitrary_precision`: an object whose first key it is
/// reads as a number in serde_json, and the fast reader leaves such documents to the reference.
#[test]
fn objects_keyed_like_serde_json_s_number_token_read_as_serde_json_reads_them() {
    let token = r#""$serde_json::private::Number""#;
    for (place, value) in [
        ("x", format!(r#"{{{token}:"1"}}"#)),
        ("x", format!(r#"{{{token}:"abc"}}"#)),
        ("x", format!(r#"{{"a":{{{token}:"2"}}}}"#)),
        ("x", format!(r#"{{"a":1,{token}:"3"}}"#)),
        ("recipient", format!(r#"{{{token}:"4"}}"#)),
    ] {
        let mut doc = base_event();
        doc[place] = Value::String("@".into());
        let text = serde_json::to_string(&doc)
            .unwrap()
            .replace("\"@\"", &value);
        for options in [Options::lenient(), Options::strict()] {
            let fast = provtrail_model::validate_slice(text.as_bytes(), &options);
            let reference = provtrail_model::validate_slice_reference(text.as_bytes(), &options);
            assert_eq!(format!("{fast:?}"), format!("{reference:?}"), "{text}");
            if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&text) {
                if let Ok(report) = &fast {
                    if let (true, Some(event)) = (report.is_valid(), &report.event) {
                        assert_eq!(event.to_value(), Value::Object(map), "{text}");
                    }
                }
            }
        }
    }
}
