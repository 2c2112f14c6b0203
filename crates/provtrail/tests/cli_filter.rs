//! `provtrail filter` end to end: the built binary on real example events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const PAYLOADS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/payloads/");

fn provtrail(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A command that does not read its input may exit before this write: a broken pipe here is
    // not a failure, the exit status and output below decide.
    let _ = input.write_all(stdin.unwrap_or("").as_bytes());
    drop(input);
    child.wait_with_output().unwrap()
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn json_format_reports_match_and_jayway_answer_for_a_file() {
    let doc = format!("{PAYLOADS}doc_example.json");
    let out = provtrail(
        &[
            "filter",
            "--format",
            "json",
            r#"$[?($.accountRequests[*].provisioningResult contains "SUCCESS")]"#,
            &doc,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["match"], Value::Bool(true));
    assert!(lines[0]["result"].as_array().is_some_and(|a| a.len() == 1));
}

#[test]
fn definite_missing_path_is_a_path_not_found_error_and_no_match() {
    let out = provtrail(
        &[
            "filter",
            "--format",
            "json",
            "$.identity.attributes[?(!@.x)]",
        ],
        Some(r#"{"identity": {}}"#),
    );
    assert_eq!(out.status.code(), Some(0));
    let lines = json_lines(&out);
    assert_eq!(lines[0]["match"], Value::Bool(false));
    assert!(
        lines[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("PathNotFound: ")
    );
}

#[test]
fn jsonl_input_reports_each_line_and_survives_invalid_json() {
    let input = "{\"a\": 1}\nnot json\n\n{\"a\": 2}\n";
    let out = provtrail(
        &[
            "filter",
            "--format",
            "json",
            "--jsonl",
            "$[?(@.a == 2)]",
            "-",
        ],
        Some(input),
    );
    // A document that is not JSON was never evaluated: the run says so.
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 of 3 documents are not JSON"),
        "{out:?}"
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["match"], Value::Bool(false));
    assert!(
        lines[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("InvalidJson: ")
    );
    assert_eq!(lines[2]["match"], Value::Bool(true));
    assert_eq!(lines[2]["result"], serde_json::json!([{"a": 2}]));
}

#[test]
fn expression_that_does_not_compile_exits_2_with_a_caret() {
    let out = provtrail(&["filter", "$[?($.warnings size 1]"], Some("{}"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("InvalidPath"), "{err}");
    assert!(err.contains("$[?($.warnings size 1]"), "{err}");
    assert!(err.contains('^'), "{err}");
}

#[test]
fn unreadable_input_file_exits_2() {
    let out = provtrail(&["filter", "$", "/nonexistent/provtrail/event.json"], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn text_format_shows_match_and_explain_shows_the_parse() {
    let out = provtrail(
        &[
            "filter",
            "--explain",
            "$.changes[?(@.attribute == 'department')]",
        ],
        Some(r#"{"changes": [{"attribute": "department"}]}"#),
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("match: yes"), "{text}");
    assert!(text.contains("filter"), "{text}");
    assert!(text.contains("\"department\""), "{text}");
}

#[test]
fn json_lines_are_recognised_without_the_flag_and_each_answer_names_its_line() {
    let input = "{\"a\": 1}\n\n{\"a\": 2}\nnot json\n";
    let out = provtrail(
        &["filter", "$[?($.a == 2)]", "--format", "json"],
        Some(input),
    );
    // A document that is not JSON was never evaluated: the run says so.
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 of 3 documents are not JSON"),
        "{out:?}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("JSON lines"));
    let answers = json_lines(&out);
    assert_eq!(answers.len(), 3);
    let lines: Vec<u64> = answers
        .iter()
        .map(|a| a["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [1, 3, 4]);
    assert_eq!(answers[1]["match"], true);
    assert!(
        answers[2]["error"]
            .as_str()
            .unwrap()
            .starts_with("InvalidJson")
    );
}

#[test]
fn an_input_without_a_document_exits_2() {
    for input in ["", "  \n\n"] {
        let out = provtrail(&["filter", "$"], Some(input));
        assert_eq!(out.status.code(), Some(2), "{input:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("no documents"));
    }
}

#[test]
fn a_byte_order_mark_is_named_as_validate_names_it() {
    let out = provtrail(
        &["filter", "$.a", "--format", "json"],
        Some("\u{feff}{\"a\": 1}"),
    );
    // A document that is not JSON was never evaluated: the run says so.
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 of 1 documents are not JSON"),
        "{out:?}"
    );
    let answers = json_lines(&out);
    assert!(
        answers[0]["error"]
            .as_str()
            .unwrap()
            .contains("byte order mark"),
        "{answers:?}"
    );
}

#[test]
fn a_function_jayway_does_not_have_is_warned_of() {
    let doc = format!("{PAYLOADS}doc_example.json");
    let out = provtrail(
        &["filter", "$[?($.accountRequests.lenght() > 0)]", &doc],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("calls lenght(), which Jayway does not have"),
        "{stderr}"
    );
    let out = provtrail(
        &["filter", "$[?($.accountRequests.length() > 0)]", &doc],
        None,
    );
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_line_that_is_not_utf8_is_reported_on_its_own_and_the_others_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.jsonl");
    std::fs::write(&file, b"{\"a\": 1}\r\n{\"a\": \"\xff\"}\n{\"a\": 2}\n").unwrap();
    let out = provtrail(
        &[
            "filter",
            "--format",
            "json",
            "$[?(@.a == 2)]",
            file.to_str().unwrap(),
        ],
        None,
    );
    // A document that is not JSON was never evaluated: the run says so.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 of 3 documents are not JSON"),
        "{out:?}"
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[0]["match"], false);
    assert_eq!(lines[1]["line"], 2);
    let error = lines[1]["error"].as_str().unwrap();
    assert!(
        error.starts_with("InvalidJson: the document is not UTF-8"),
        "{error}"
    );
    assert_eq!(lines[2]["line"], 3);
    assert_eq!(lines[2]["match"], true);
}
