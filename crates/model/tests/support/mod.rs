//! Helpers shared by the integration tests: the wire-path syntax of issues (parse, render,
//! resolve in a document), checks that an issue points at what it names, and a complete event.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use provtrail_model::{Issue, IssueKind};
use serde_json::{Value, json};

/// One step of an issue path: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    Key(String),
    Index(usize),
}

impl From<&str> for Step {
    fn from(key: &str) -> Self {
        Step::Key(key.to_owned())
    }
}

impl From<usize> for Step {
    fn from(index: usize) -> Self {
        Step::Index(index)
    }
}

/// Characters a key may have to be written plainly (`a.b`); any other key is written `["…"]`.
fn is_plain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$'
}

/// A key named `$` alone is quoted, `["$"]`, so that it is not read as the root.
fn is_plain(key: &str) -> bool {
    !key.is_empty()
        && key != "$"
        && key.chars().all(is_plain_char)
        && !key.starts_with(|c: char| c.is_ascii_digit())
}

/// Parses the documented path syntax: `$` for the root, `a.b`, `[1]`, `["odd key"]`.
pub fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    if path == "$" {
        return Ok(Vec::new());
    }
    if path.is_empty() {
        return Err("empty path (the root is `$`)".into());
    }
    let chars: Vec<char> = path.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '[' => {
                i += 1;
                if chars.get(i) == Some(&'"') {
                    let start = i;
                    i += 1;
                    loop {
                        match chars.get(i) {
                            None => return Err(format!("unterminated quoted key in {path:?}")),
                            Some('\\') => i += 2,
                            Some('"') => {
                                i += 1;
                                break;
                            }
                            Some(_) => i += 1,
                        }
                    }
                    let literal: String = chars[start..i].iter().collect();
                    let key: String = serde_json::from_str(&literal)
                        .map_err(|err| format!("bad quoted key {literal} in {path:?}: {err}"))?;
                    steps.push(Step::Key(key));
                } else {
                    let start = i;
                    while chars.get(i).is_some_and(char::is_ascii_digit) {
                        i += 1;
                    }
                    let digits: String = chars[start..i].iter().collect();
                    let index = digits
                        .parse()
                        .map_err(|_| format!("bad index {digits:?} in {path:?}"))?;
                    steps.push(Step::Index(index));
                }
                if chars.get(i) != Some(&']') {
                    return Err(format!("expected `]` at {i} in {path:?}"));
                }
                i += 1;
            }
            '.' if !steps.is_empty() => {
                i += 1;
                let start = i;
                while chars.get(i).is_some_and(|c| is_plain_char(*c)) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if !is_plain(&name) {
                    return Err(format!("bad name {name:?} after `.` in {path:?}"));
                }
                steps.push(Step::Key(name));
            }
            c if steps.is_empty() && i == 0 && is_plain_char(c) => {
                let start = i;
                while chars.get(i).is_some_and(|c| is_plain_char(*c)) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if !is_plain(&name) {
                    return Err(format!("bad leading name {name:?} in {path:?}"));
                }
                steps.push(Step::Key(name));
            }
            c => return Err(format!("unexpected {c:?} at {i} in {path:?}")),
        }
    }
    Ok(steps)
}

/// Renders steps in the documented path syntax.
pub fn render_path(steps: &[Step]) -> String {
    let mut path = String::new();
    for step in steps {
        match step {
            Step::Key(key) if is_plain(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Step::Key(key) => {
                path.push('[');
                path.push_str(&Value::String(key.clone()).to_string());
                path.push(']');
            }
            Step::Index(index) => path.push_str(&format!("[{index}]")),
        }
    }
    if path.is_empty() {
        path.push('$');
    }
    path
}

/// The value at `steps`, if there is one.
pub fn resolve<'v>(mut value: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    for step in steps {
        value = match (step, value) {
            (Step::Key(key), Value::Object(map)) => map.get(key)?,
            (Step::Index(index), Value::Array(items)) => items.get(*index)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Mutable access to the value at `steps`.
pub fn resolve_mut<'v>(mut value: &'v mut Value, steps: &[Step]) -> Option<&'v mut Value> {
    for step in steps {
        value = match (step, value) {
            (Step::Key(key), Value::Object(map)) => map.get_mut(key)?,
            (Step::Index(index), Value::Array(items)) => items.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(value)
}

/// True when `reported` is the JSON text of `actual`, possibly shortened (ending in `…`).
pub fn names_value(reported: &str, actual: &Value) -> bool {
    let text = actual.to_string();
    match reported.strip_suffix('…') {
        Some(prefix) => text.starts_with(prefix) && prefix.len() < text.len(),
        None => reported == text,
    }
}

/// Checks that an issue's path locates it in `input`: a missing field's object exists and lacks
/// the key; anything else exists, and its reported value is the one found there.
pub fn check_issue_location(input: &Value, issue: &Issue) -> Result<(), String> {
    let steps = parse_path(&issue.path)?;
    if issue.kind == IssueKind::Missing {
        let Some((Step::Key(key), parent)) = steps.split_last() else {
            return Err(format!(
                "missing-field issue whose path does not end in a key: {issue:?}"
            ));
        };
        return match resolve(input, parent) {
            Some(Value::Object(map)) if !map.contains_key(key) => Ok(()),
            Some(Value::Object(_)) => {
                Err(format!("`Missing` for a key that is present: {issue:?}"))
            }
            other => Err(format!(
                "parent of a `Missing` issue is {other:?}: {issue:?}"
            )),
        };
    }
    let Some(found) = resolve(input, &steps) else {
        return Err(format!("path does not resolve in the input: {issue:?}"));
    };
    if let (Some(reported), false) = (&issue.value, issue.kind == IssueKind::DuplicateKey) {
        if !names_value(reported, found) {
            return Err(format!(
                "reported value {reported} is not the value {found} at the path: {issue:?}"
            ));
        }
    }
    Ok(())
}

pub const ACCOUNT_OPERATIONS: &[&str] =
    &["Create", "Modify", "Enable", "Disable", "Unlock", "Delete"];
pub const RESULTS: &[&str] = &["SUCCESS", "PENDING", "FAILED"];
pub const ATTRIBUTE_OPERATIONS: &[&str] = &["Add", "Set", "Remove"];

/// A complete valid event: every optional field present, two account requests with two attribute
/// requests each, and the `_metadata` envelope.
pub fn base_event() -> Value {
    json!({
        "trackingNumber": "4b4d982dddff4267ab12f0f1e72b5a6d",
        "sources": "Corp AD, Corp LDAP",
        "action": "Access Request",
        "errors": ["Connector AD Failed", "Retry scheduled"],
        "warnings": ["Notification Skipped due to invalid email", "Approval reminder not sent"],
        "recipient": {
            "type": "IDENTITY",
            "id": "2c91808568c529c60168cca6f90c1313",
            "name": "William Wilson"
        },
        "requester": {
            "type": "IDENTITY",
            "id": "2c7180a46faadee4016fb4e018c20648",
            "name": "Michael Michaels"
        },
        "accountRequests": [
            {
                "source": {
                    "id": "4e4d982dddff4267ab12f0f1e72b5a6d",
                    "type": "SOURCE",
                    "name": "Corporate Active Directory"
                },
                "accountId": "CN=William.Wilson,ou=sales,dc=helpco,dc=com",
                "accountOperation": "Modify",
                "provisioningResult": "SUCCESS",
                "provisioningTarget": "Corp AD",
                "ticketId": "72619262",
                "attributeRequests": [
                    {"attributeName": "memberOf", "attributeValue": "CN=sales,DC=helpco,DC=com", "operation": "Add"},
                    {"attributeName": "description", "attributeValue": "Sales", "operation": "Set"}
                ]
            },
            {
                "source": {
                    "id": "5f5e093eeeff5378bc23f1f2f83c6b7e",
                    "type": "SOURCE",
                    "name": "Corp LDAP"
                },
                "accountId": "uid=wwilson,ou=people,dc=helpco,dc=com",
                "accountOperation": "Create",
                "provisioningResult": "FAILED",
                "provisioningTarget": "Corp LDAP",
                "ticketId": "72619263",
                "attributeRequests": [
                    {"attributeName": "groups", "attributeValue": "cn=staff", "operation": "Remove"},
                    {"attributeName": "mail", "attributeValue": "william.wilson@helpco.com", "operation": "Set"}
                ]
            }
        ],
        "_metadata": {
            "triggerId": "idn:post-provisioning",
            "triggerType": "fireAndForget",
            "invocationId": "0f7a9e4e-5b8c-4a0e-9d2f-3c6b1a2e4d5f"
        }
    })
}
