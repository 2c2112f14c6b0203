//! The offline tools: `validate` (exit codes and the JSON report), `send` against a live server,
//! `ingest` into a database file, `export` of what was stored, `config`, `demo`; and HTTPS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The command started with `args`, its standard streams piped, warnings only in its log.
fn spawn_provtrail(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(args)
        .env("PROVTRAIL_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn provtrail(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = spawn_provtrail(args);
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        // The command may exit before reading all of it; that is not the test's concern.
        let _ = input.write_all(bytes);
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// The test event with `prefix` (JSON string content, escapes as written) before its
/// recipient's name: a name chosen by whoever sent the event.
fn event_with_name_prefix(invocation_id: &str, prefix: &str) -> String {
    String::from_utf8(event(invocation_id)).unwrap().replacen(
        "\"name\": \"",
        &format!("\"name\": \"{prefix}"),
        1,
    )
}

/// What `child` printed when sent SIGINT (Ctrl-C) after `millis` milliseconds.
fn interrupted_after(child: std::process::Child, millis: u64) -> Output {
    signalled_after(child, millis, "-INT")
}

/// What `child` printed when sent `signal` (`-INT`, `-TERM`) after `millis` milliseconds.
fn signalled_after(child: std::process::Child, millis: u64, signal: &str) -> Output {
    std::thread::sleep(Duration::from_millis(millis));
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Each line of what `output` printed, read as JSON.
fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A database `name` in `dir` holding the test event with `invocation_id`, imported with
/// `provtrail ingest`; its path as an argument.
fn store_with_event(dir: &Path, name: &str, invocation_id: &str) -> String {
    let db_arg = dir.join(name).display().to_string();
    let file = dir.join(format!("{invocation_id}.json"));
    std::fs::write(&file, event(invocation_id)).unwrap();
    let output = provtrail(&["ingest", "--db", &db_arg, file.to_str().unwrap()], None);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    db_arg
}

/// Removes the search index beside a database, as a backup copy often lacks it.
fn remove_search_index(db_arg: &str) {
    for suffix in [".search", ".search-wal", ".search-shm"] {
        let _ = std::fs::remove_file(format!("{db_arg}{suffix}"));
    }
}

#[test]
fn validate_exit_codes_say_valid_invalid_or_not_json() {
    let dir = tempfile::tempdir().unwrap();
    let valid = format!("{PAYLOADS}doc_example.json");
    let invalid = dir.path().join("invalid.json");
    std::fs::write(&invalid, br#"{"trackingNumber": null, "sources": 1}"#).unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, b"{\"trackingNumber\": ").unwrap();
    let missing = dir.path().join("missing.json");

    assert_eq!(
        provtrail(&["validate", &valid], None).status.code(),
        Some(0)
    );
    let output = provtrail(&["validate", invalid.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains("trackingNumber: required field `trackingNumber` is null"),
        "{text}"
    );
    // What the document holds reaches the terminal with its direction controls escaped.
    let reversed = dir.path().join("reversed.json");
    std::fs::write(
        &reversed,
        "{\"accountRequests\": \"a\u{202e}b\"}".as_bytes(),
    )
    .unwrap();
    let shown = stdout(&provtrail(&["validate", reversed.to_str().unwrap()], None));
    assert!(!shown.contains('\u{202e}'), "{shown}");
    assert!(shown.contains(r#""a\u202eb""#), "{shown}");
    // A key holding a line break is one problem on one line, escaped as its path escapes it.
    let key_with_break = dir.path().join("broken-key.json");
    let mut document: Value = serde_json::from_slice(&event("inv-broken-key")).unwrap();
    document["recipient"]["x\ny"] = serde_json::json!(1);
    std::fs::write(&key_with_break, document.to_string()).unwrap();
    let shown = stdout(&provtrail(
        &["validate", key_with_break.to_str().unwrap()],
        None,
    ));
    let warning = shown
        .lines()
        .find(|line| line.contains("warning:"))
        .unwrap_or_else(|| panic!("no warning: {shown}"));
    assert!(
        warning.contains(r#"recipient["x\ny"]: unknown field `x\ny`"#),
        "{shown}"
    );
    assert!(!shown.lines().any(|line| line.starts_with('y')), "{shown}");
    assert!(
        text.contains("accountRequests: required field `accountRequests` is missing"),
        "{text}"
    );
    assert_eq!(
        provtrail(&["validate", broken.to_str().unwrap()], None)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        provtrail(&["validate", missing.to_str().unwrap()], None)
            .status
            .code(),
        Some(2)
    );
    // The worst document decides.
    let output = provtrail(&["validate", &valid, invalid.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn a_report_cut_short_by_a_closed_pipe_is_never_a_success() {
    let dir = tempfile::tempdir().unwrap();
    let invalid = dir.path().join("invalid.json");
    std::fs::write(&invalid, br#"{"trackingNumber": null, "sources": 1}"#).unwrap();
    let missing = dir.path().join("missing.json");
    // `validate … | head -1`: the reader left before the verdict; 0 would say "all valid".
    for file in [&invalid, &missing] {
        let (code, stderr) = run_into_closed_pipe(&["validate", file.to_str().unwrap()]);
        assert_eq!(code, 141, "{}: {stderr}", file.display());
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn validate_json_report_is_exactly_one_object_with_paths_and_messages() {
    let event = br#"{"trackingNumber": "t", "sources": "s",
        "recipient": {"type": "IDENTITY", "id": "i", "name": "n"},
        "accountRequests": [{"source": {"id": "s", "type": "SOURCE", "name": "S"},
            "accountOperation": "Modify", "provisioningResult": "DONE", "provisioningTarget": "t"}],
        "color": "blue"}"#;
    let lenient = provtrail(&["validate", "--format", "json", "-"], Some(event));
    assert_eq!(lenient.status.code(), Some(0), "warnings are allowed");
    let report: Value = serde_json::from_str(stdout(&lenient).trim()).unwrap();
    let keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["valid", "errors", "warnings"]);
    assert_eq!(report["valid"], true);
    let paths: Vec<&str> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["accountRequests[0].provisioningResult", "color"]);

    let strict = provtrail(
        &["validate", "--strict", "--format", "json", "-"],
        Some(event),
    );
    assert_eq!(strict.status.code(), Some(1));
    let report: Value = serde_json::from_str(stdout(&strict).trim()).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"].as_array().unwrap().len(), 2);
    assert!(
        report["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("DONE")
    );
}

#[test]
fn validate_lists_the_first_issues_and_counts_the_rest() {
    let mut value: Value = serde_json::from_slice(&event("many")).unwrap();
    value["accountRequests"] = Value::Array(vec![serde_json::json!({}); 300]);
    let body = serde_json::to_vec(&value).unwrap();
    let text = provtrail(&["validate", "--max-issues", "5", "-"], Some(&body));
    assert_eq!(text.status.code(), Some(1));
    let out = stdout(&text);
    assert!(out.starts_with("<stdin>: invalid, 1200 errors\n"), "{out}");
    assert_eq!(out.matches("  error: ").count(), 5, "{out}");
    assert!(
        out.contains("  … and 1195 more errors not listed (--max-issues lists more)"),
        "{out}"
    );
    let json = provtrail(&["validate", "--format", "json", "-"], Some(&body));
    let report: Value = serde_json::from_str(stdout(&json).trim()).unwrap();
    assert_eq!(report["errors"].as_array().unwrap().len(), 1000);
    assert_eq!(report["errors_not_listed"], 200);
    assert!(report.get("warnings_not_listed").is_none());
}

#[test]
fn validate_reads_json_lines_past_the_size_limit_line_by_line() {
    // 1,500 events of about 900 bytes: more than the 1 MiB limit of one document.
    let mut input = Vec::new();
    for n in 0..1500 {
        let mut line: Value = serde_json::from_slice(&event(&format!("big-{n}"))).unwrap();
        line["padding"] = Value::String("x".repeat(300));
        input.extend_from_slice(&serde_json::to_vec(&line).unwrap());
        input.push(b'\n');
    }
    assert!(input.len() > 1024 * 1024);
    // A file (not named .jsonl): its reports fill the output pipe while it is read, which
    // standard input written whole first would not allow.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.json");
    std::fs::write(&path, &input).unwrap();
    let reports = valid_file_reports(&path);
    assert_eq!(reports.len(), 1500);
    assert_eq!(reports[1499]["line"], 1500);
    assert!(reports.iter().all(|report| report["valid"] == true));
}

/// The reports of `validate --format json` on the file at `path`, which must all be valid.
fn valid_file_reports(path: &Path) -> Vec<Value> {
    let output = provtrail(
        &["validate", "--format", "json", path.to_str().unwrap()],
        None,
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    json_lines(&output)
}

#[test]
fn validate_judges_json_lines_past_what_it_holds_whole_by_whole_lines_only() {
    // Lines of exactly 1 KiB: what is held whole (64 MiB and one byte) ends with the opening
    // brace of the next line, which alone is no document: the input is still JSON lines.
    let mut line: Value = serde_json::from_slice(&event("inv-cut")).unwrap();
    let plain = serde_json::to_vec(&line).unwrap().len();
    line["padding"] = Value::String("x".repeat(1023 - plain - ",\"padding\":\"\"".len()));
    let mut one = serde_json::to_vec(&line).unwrap();
    one.push(b'\n');
    assert_eq!(one.len(), 1024);
    let count = (64 << 20) / 1024 + 3;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.json");
    std::fs::write(&path, one.repeat(count)).unwrap();
    let reports = valid_file_reports(&path);
    assert_eq!(reports.len(), count);
    assert_eq!(reports[count - 1]["line"], count);
}

#[test]
fn a_stream_of_pretty_printed_documents_is_read_document_by_document() {
    let dir = tempfile::tempdir().unwrap();
    // What `jq . a.json b.json c.json` prints, with an event on one line among them.
    let first = String::from_utf8(event("inv-jq-1")).unwrap();
    let second = String::from_utf8(event("inv-jq-2"))
        .unwrap()
        .replace('\n', " ");
    let third = String::from_utf8(event("inv-jq-3")).unwrap();
    let stream = format!(
        "{}\n{second}\n{}\n{{\"trackingNumber\": 1}}\n",
        first.trim_end(),
        third.trim_end()
    );
    let lines = [
        1,
        1 + first.trim_end().lines().count(),
        2 + first.trim_end().lines().count(),
        2 + first.trim_end().lines().count() + third.trim_end().lines().count(),
    ];
    let file = dir.path().join("stream.json");
    std::fs::write(&file, &stream).unwrap();
    let file = file.to_str().unwrap();

    let db = dir.path().join("stream.db").display().to_string();
    let output = provtrail(&["ingest", "--db", &db, file, "--format", "json"], None);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let summary: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(summary["accepted"], 3, "{summary}");
    assert_eq!(summary["quarantined"], 1, "{summary}");
    assert_eq!(summary["problems"][0]["line"], lines[3], "{summary}");

    // Each document within --max-bytes, all of them together past it: each is checked.
    let max = (first.len().max(third.len()) + 100).to_string();
    assert!(stream.len() > first.len() + 100);
    let output = provtrail(
        &["validate", "--max-bytes", &max, "--format", "json", file],
        None,
    );
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let reports = json_lines(&output);
    let reported: Vec<(Value, Value)> = reports
        .iter()
        .map(|report| (report["line"].clone(), report["valid"].clone()))
        .collect();
    assert_eq!(
        reported,
        [
            (lines[0].into(), true.into()),
            (lines[1].into(), true.into()),
            (lines[2].into(), true.into()),
            (lines[3].into(), false.into()),
        ]
    );

    let output = provtrail(
        &["filter", "--format", "json", "$[?(@.recipient)]", file],
        None,
    );
    assert_eq!(output.status.code(), Some(0));
    let matches: Vec<Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["match"].clone())
        .collect();
    assert_eq!(matches, [true, true, true, false]);
}

#[test]
fn validate_jsonl_reports_each_line() {
    let lines = [
        String::from_utf8(event("inv-a"))
            .unwrap()
            .replace('\n', " "),
        "{}".to_owned(),
        "not json".to_owned(),
    ]
    .join("\n");
    let output = provtrail(
        &["validate", "--jsonl", "--format", "json", "-"],
        Some(lines.as_bytes()),
    );
    assert_eq!(output.status.code(), Some(2));
    let reports = json_lines(&output);
    assert_eq!(reports.len(), 3);
    let verdicts: Vec<(u64, bool)> = reports
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["valid"].as_bool().unwrap()))
        .collect();
    assert_eq!(verdicts, [(1, true), (2, false), (3, false)]);
}

#[test]
fn validate_reads_json_lines_by_name_or_content_and_says_when_there_is_nothing_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let one_line = String::from_utf8(event("inv-a"))
        .unwrap()
        .replace('\n', " ");
    let lines = format!("{one_line}\n{{}}\n");
    for name in ["events.jsonl", "events.txt"] {
        let path = dir.path().join(name);
        std::fs::write(&path, &lines).unwrap();
        let output = provtrail(
            &["validate", "--format", "json", path.to_str().unwrap()],
            None,
        );
        assert_eq!(output.status.code(), Some(1), "{name}");
        let verdicts: Vec<(u64, bool)> = stdout(&output)
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .map(|r| (r["line"].as_u64().unwrap(), r["valid"].as_bool().unwrap()))
            .collect();
        assert_eq!(verdicts, [(1, true), (2, false)], "{name}");
    }

    let blank = dir.path().join("blank.jsonl");
    std::fs::write(&blank, "\n  \n").unwrap();
    let output = provtrail(&["validate", blank.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stdout(&output).contains("no documents"),
        "{}",
        stdout(&output)
    );

    // The size in the message is the limit's, not that of the part read.
    let large = dir.path().join("large.json");
    std::fs::write(&large, vec![b' '; 5000]).unwrap();
    let output = provtrail(
        &["validate", "--max-bytes", "1000", large.to_str().unwrap()],
        None,
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stdout(&output).contains("more than 1000 bytes"),
        "{}",
        stdout(&output)
    );
}

/// The command's output once it has exited by itself; a failure if it is still reading after
/// two minutes (a guard against reading forever, not a measure of speed).
fn finished(args: &[&str]) -> Output {
    let mut child = spawn_provtrail(args);
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("provtrail {args:?} was still reading after two minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn an_input_without_end_is_refused_not_read_forever_nor_held_whole() {
    // A device that never ends, given by mistake: each command reads a bounded part of it and
    // says why it stops.
    for (args, said) in [
        (
            &["filter", "$", "/dev/zero"][..],
            "more than 67108864 bytes and not one document per line",
        ),
        (
            &["filter", "--jsonl", "$", "/dev/zero"],
            "line 1 is more than 67108864 bytes long",
        ),
        (
            &["validate", "--jsonl", "/dev/zero"],
            "more than 1073741824 bytes long and still goes on",
        ),
        (&["config", "check", "/dev/zero"], "more than 4 MiB long"),
        (
            &["search", "--config", "/dev/zero", "--result", "FAILED"],
            "more than 4 MiB long",
        ),
    ] {
        let output = finished(args);
        let told = format!(
            "{}{}",
            stdout(&output),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(output.status.code(), Some(2), "{args:?}: {told}");
        assert!(told.contains(said), "{args:?}: {told}");
    }
}

#[test]
fn filter_reads_json_lines_past_what_it_holds_whole_line_by_line() {
    // 64 MiB of blank lines, then two events, one per line: evaluated as they come.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.json");
    let mut input = vec![b'\n'; (64 << 20) + 10];
    for id in ["inv-late-1", "inv-late-2"] {
        input.extend(
            String::from_utf8(event(id))
                .unwrap()
                .replace('\n', " ")
                .bytes(),
        );
        input.push(b'\n');
    }
    std::fs::write(&path, &input).unwrap();
    let output = finished(&[
        "filter",
        "--format",
        "json",
        "$._metadata.invocationId",
        path.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let answers: Vec<(u64, Value)> = json_lines(&output)
        .into_iter()
        .map(|answer| (answer["line"].as_u64().unwrap(), answer["result"].clone()))
        .collect();
    let first = (64 << 20) + 11;
    assert_eq!(
        answers,
        [
            (first, Value::from("inv-late-1")),
            (first + 1, Value::from("inv-late-2"))
        ]
    );
    // And `ingest` takes them too, rather than calling the input empty.
    let db = dir.path().join("late.db");
    let output = finished(&[
        "ingest",
        "--db",
        db.to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_posts_synthetic_events_that_the_server_keeps_and_export_gives_them_back() {
    let server = TestServer::start().await;
    let url = server.url("/events/load");
    let db = server.db.clone();
    let output = tokio::task::spawn_blocking(move || {
        provtrail(
            &[
                "send",
                &url,
                "--synthetic",
                "40",
                "--seed",
                "9",
                "--concurrency",
                "4",
                "--token",
                TOKEN,
                "--format",
                "json",
            ],
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(summary["sent"], 40);
    assert_eq!(summary["by_outcome"]["accepted"], 40);

    // A wrong token: every request refused, and the exit status says so.
    let url = server.url("/events");
    let refused = tokio::task::spawn_blocking(move || {
        provtrail(
            &["send", &url, "--synthetic", "3", "--token", "wrong"],
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(refused.status.code(), Some(1));

    let mut server = server;
    server.shutdown().await;
    let db_arg = db.display().to_string();
    let export = provtrail(&["export", "--db", &db_arg], None);
    assert_eq!(export.status.code(), Some(0));
    let lines = json_lines(&export);
    assert_eq!(lines.len(), 40);
    for line in &lines {
        assert_eq!(line["channel"], "load");
        let raw: Value = serde_json::from_str(line["raw"].as_str().unwrap()).unwrap();
        assert_eq!(raw, line["event"], "the raw body parses to the event");
        assert!(line["received_at"].as_str().unwrap().ends_with('Z'));
    }
    let csv = provtrail(&["export", "--db", &db_arg, "--format", "csv"], None);
    let text = stdout(&csv);
    assert_eq!(text.lines().count(), 41, "a header and one row per event");
    // The columns of `search`, in its order and under its names, then what only an export has.
    let search = provtrail(&["search", "--db", &db_arg, "--format", "csv"], None);
    let search_header = stdout(&search).lines().next().unwrap().to_owned();
    assert_eq!(
        text.lines().next().unwrap(),
        format!("{search_header},remote_addr,ticket_ids")
    );
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    let header = rows.headers().unwrap().clone();
    let row = rows.records().next().unwrap().unwrap();
    let cell = |name: &str| &row[header.iter().position(|column| column == name).unwrap()];
    let newest = lines
        .iter()
        .find(|line| line["id"].as_i64().map(|id| id.to_string()).as_deref() == Some(cell("id")))
        .unwrap();
    assert_eq!(cell("channel"), "load");
    assert_eq!(cell("received_at"), newest["received_at"].as_str().unwrap());
    assert_eq!(
        cell("account_count"),
        newest["event"]["accountRequests"]
            .as_array()
            .unwrap()
            .len()
            .to_string()
    );
    let none = provtrail(&["export", "--db", &db_arg, "--until", "2000-01-01"], None);
    assert_eq!(stdout(&none).lines().count(), 0);
    // Bounds swapped: an error, not an export of nothing.
    let swapped = provtrail(
        &[
            "export",
            "--db",
            &db_arg,
            "--since",
            "2026-11-30",
            "--until",
            "2026-11-01",
        ],
        None,
    );
    assert_eq!(swapped.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&swapped.stderr).contains("later than --since"));
    // A file written with `-o` is its owner's only, as the store is: it holds every event.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trail.jsonl");
    let written = provtrail(
        &["export", "--db", &db_arg, "-o", file.to_str().unwrap()],
        None,
    );
    assert!(written.status.success(), "{written:?}");
    assert_eq!(std::fs::read(&file).unwrap(), export.stdout);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    // A device that takes nothing more is named in the error.
    if Path::new("/dev/full").exists() {
        let full = provtrail(&["export", "--db", &db_arg, "-o", "/dev/full"], None);
        assert_eq!(full.status.code(), Some(2), "{full:?}");
        let stderr = String::from_utf8_lossy(&full.stderr);
        assert!(stderr.contains("cannot write to /dev/full"), "{stderr}");
    }
}

/// A receiver that answers `202` and closes the connection before the answer's body is whole:
/// what it would have said (quarantined?) is unknown.
async fn receiver_cutting_its_answers() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // The request, up to its body's end or a pause.
                let mut request = vec![0u8; 64 * 1024];
                let _ = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut request))
                    .await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n\
                          content-length: 120\r\n\r\n{\"status\":\"quarantined\",\"errors\":[",
                    )
                    .await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_whose_answer_is_cut_off_is_no_answer_not_a_kept_document() {
    let url = receiver_cutting_its_answers().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.json");
    std::fs::write(&file, event("inv-cut-answer")).unwrap();
    let file = file.display().to_string();
    let output = tokio::task::spawn_blocking(move || {
        provtrail(
            &[
                "send",
                &url,
                &file,
                "--token",
                TOKEN,
                "--format",
                "json",
                "--retries",
                "0",
            ],
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let summary: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    let not_kept = &summary["not_kept"][0];
    assert_eq!(not_kept["document"], 1, "{summary}");
    assert_eq!(not_kept["outcome"], "no answer", "{summary}");
    assert!(
        not_kept["reason"]
            .as_str()
            .is_some_and(|reason| reason.starts_with("the answer (202) was cut off")),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_names_each_document_not_kept_with_the_receivers_reason() {
    let mut server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.jsonl");
    let valid: Value = serde_json::from_slice(&event("inv-send-mixed")).unwrap();
    let invalid = r#"{"trackingNumber": "t", "accountRequests": "not a list"}"#;
    std::fs::write(&file, format!("{valid}\nnot json at all\n{invalid}\n")).unwrap();
    let url = server.url("/events");
    let file = file.display().to_string();
    let run = move |format: &'static str| {
        let (url, file) = (url.clone(), file.clone());
        tokio::task::spawn_blocking(move || {
            provtrail(
                &["send", &url, &file, "--token", TOKEN, "--format", format],
                None,
            )
        })
    };
    let text = run("text").await.unwrap();
    assert_eq!(text.status.code(), Some(1), "{text:?}");
    let shown = stdout(&text);
    assert!(shown.contains("not kept:"), "{shown}");
    assert!(
        shown.contains("line 2: HTTP 400 rejected: the body is not JSON"),
        "{shown}"
    );
    assert!(
        shown.contains("line 3: HTTP 202 quarantined: accountRequests: "),
        "{shown}"
    );
    assert!(!shown.contains("line 1:"), "{shown}");

    let json = run("json").await.unwrap();
    let summary: Value = serde_json::from_str(stdout(&json).trim()).unwrap();
    let not_kept = summary["not_kept"].as_array().unwrap();
    let documents: Vec<u64> = not_kept
        .iter()
        .map(|entry| entry["document"].as_u64().unwrap())
        .collect();
    assert_eq!(documents, [2, 3], "{summary}");
    assert_eq!(not_kept[0]["status"], 400, "{summary}");
    assert_eq!(summary["not_kept_unlisted"], 0, "{summary}");

    // An export sent back: each line's body as received goes, so the event is a duplicate.
    let export = provtrail(&["export", "--db", server.db.to_str().unwrap()], None);
    assert!(export.status.success(), "{export:?}");
    let exported = dir.path().join("export.jsonl");
    std::fs::write(&exported, &export.stdout).unwrap();
    let (url, exported) = (server.url("/events"), exported.display().to_string());
    let again = tokio::task::spawn_blocking(move || {
        provtrail(
            &[
                "send", &url, &exported, "--token", TOKEN, "--format", "json",
            ],
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    let summary: Value = serde_json::from_str(stdout(&again).trim()).unwrap();
    assert_eq!(summary["by_outcome"]["duplicate"], 1, "{summary}");
    server.shutdown().await;
}

/// A receiver that answers each document 503 (with `Retry-After: 0`) the first two times it
/// comes, then takes it: its URL and how many requests it got.
async fn receiver_busy_twice_per_document() -> (String, Arc<std::sync::Mutex<Vec<Instant>>>) {
    busy_receiver(2, "0").await
}

/// A receiver that answers each document 503 with `Retry-After: retry_after` the first `times`
/// times it comes, then takes it: its URL and when each request came.
async fn busy_receiver(
    times: usize,
    retry_after: &'static str,
) -> (String, Arc<std::sync::Mutex<Vec<Instant>>>) {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let seen: Arc<std::sync::Mutex<std::collections::HashMap<bytes::Bytes, usize>>> =
        Arc::default();
    let requests: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let counted = requests.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |body: bytes::Bytes| {
            let seen = seen.clone();
            let counted = counted.clone();
            async move {
                counted.lock().unwrap().push(Instant::now());
                let came = {
                    let mut seen = seen.lock().unwrap();
                    let came = seen.entry(body).or_default();
                    *came += 1;
                    *came
                };
                if came <= times {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("retry-after", retry_after)],
                        "busy",
                    )
                        .into_response()
                } else {
                    axum::Json(serde_json::json!({"status": "accepted", "id": came}))
                        .into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, requests)
}

/// `provtrail send URL --synthetic 5 --seed SEED --token …` with `more` arguments.
async fn send_five(url: &str, seed: &str, more: &[&str]) -> Output {
    let mut args: Vec<String> = [
        "send",
        url,
        "--synthetic",
        "5",
        "--seed",
        seed,
        "--token",
        TOKEN,
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    args.extend(more.iter().map(|arg| (*arg).to_owned()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        provtrail(&args, None)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_sends_again_what_a_busy_receiver_asks_for_later() {
    let (url, requests) = receiver_busy_twice_per_document().await;
    // Each document is answered 503 twice, then taken: kept with the default retries.
    let output = send_five(&url, "7", &["--format", "json"]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let summary: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(summary["sent"], 5, "{summary}");
    assert_eq!(summary["by_outcome"]["accepted"], 5, "{summary}");
    assert_eq!(
        summary["by_status"],
        serde_json::json!({"200": 5}),
        "{summary}"
    );
    assert_eq!(
        summary["retried"],
        serde_json::json!({"503": 10}),
        "{summary}"
    );
    assert_eq!(requests.lock().unwrap().len(), 15);

    // Other events with one retry: every document's last answer is its second 503.
    let output = send_five(&url, "8", &["--retries", "1"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let shown = stdout(&output);
    assert!(shown.contains("HTTP 503     5"), "{shown}");
    assert!(shown.contains("sent again   5 (after HTTP 503)"), "{shown}");
    assert!(shown.contains("HTTP 503 refused: busy"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_sent_again_keeps_to_the_rate_and_an_interruption_ends_the_wait() {
    // Paced at 4 a second: the five documents, each sent three times, go out a turn apart.
    let (url, requests) = receiver_busy_twice_per_document().await;
    let output = send_five(&url, "9", &["--rate", "4", "--concurrency", "2"]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let times = requests.lock().unwrap().clone();
    assert_eq!(times.len(), 15);
    let first = times[0];
    let last = times[times.len() - 1];
    // 15 requests at 4 a second take at least 14 turns after the first: 3.5 s (the ticks of a
    // paced run are at least a turn apart; more on a busy machine, never less).
    assert!(
        last - first >= Duration::from_millis(3_300),
        "15 requests in {:?}",
        last - first
    );

    // A receiver that asks for every document again in a minute: Ctrl-C ends the wait, the
    // document keeps its 503, and nothing is sent again.
    let (url, requests) = busy_receiver(usize::MAX, "60").await;
    let started = Instant::now();
    let output = send_interrupted(
        url,
        &["--synthetic", "3", "--concurrency", "1", "--retries", "5"],
        1_500,
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the interrupted run waited {:?}",
        started.elapsed()
    );
    let summary: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(summary["sent"], 1, "{summary}");
    assert_eq!(
        summary["by_status"],
        serde_json::json!({"503": 1}),
        "{summary}"
    );
    assert_eq!(summary["retried"], serde_json::json!({}), "{summary}");
    assert_eq!(requests.lock().unwrap().len(), 1);
}

#[test]
fn ingest_refuses_a_document_over_max_bytes_and_keeps_nothing_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("limits.db");
    let small: Value = serde_json::from_slice(&event("inv-small")).unwrap();
    let mut large = small.clone();
    large["_metadata"]["invocationId"] = "inv-large".into();
    large["trackingNumber"] = "x".repeat(4000).into();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, format!("{small}\n{large}\n")).unwrap();
    let output = provtrail(
        &[
            "ingest",
            "--db",
            db.to_str().unwrap(),
            "--max-bytes",
            "2000",
            file.to_str().unwrap(),
        ],
        None,
    );
    let shown = format!(
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(shown.contains("more than --max-bytes 2000"), "{shown}");
    let stored = stored_invocations(&db);
    assert_eq!(stored.keys().collect::<Vec<_>>(), ["inv-small"], "{shown}");
    assert!(quarantine(&db).is_empty(), "{shown}");
}

#[test]
fn ingest_of_a_directory_is_refused_before_a_store_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never.db");
    let output = provtrail(
        &[
            "ingest",
            "--db",
            db.to_str().unwrap(),
            dir.path().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is a directory"));
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    assert!(!db.exists(), "no empty store is left behind");
}

/// A JSON-lines file `name` in `dir` of `count` test events, invocation ids `{prefix}-0000` …
fn events_file(dir: &Path, name: &str, prefix: &str, count: usize) -> std::path::PathBuf {
    let lines: Vec<String> = (0..count)
        .map(|n| {
            String::from_utf8(event(&format!("{prefix}-{n:04}")))
                .unwrap()
                .replace('\n', " ")
        })
        .collect();
    let file = dir.join(name);
    std::fs::write(&file, lines.join("\n")).unwrap();
    file
}

#[test]
fn a_damaged_body_does_not_stop_the_search_index_at_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("damaged.db");
    let file = events_file(dir.path(), "events.jsonl", "inv-index", 5);
    assert!(ingest_into(&db, &file).status.success());
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        // Events 1 to 5 hold inv-index-0000 to -0004. A body that does not read back, a row
        // SQLite cannot give back (a length that is no number), and a body stored as text.
        conn.execute("UPDATE events SET raw_size = -1 WHERE id = 2", [])
            .unwrap();
        conn.execute("UPDATE events SET raw_size = 'many' WHERE id = 3", [])
            .unwrap();
        conn.execute("UPDATE events SET raw = 'not a body' WHERE id = 4", [])
            .unwrap();
    }
    // The index rebuilt from the events: the damaged ones are passed, the one after them found;
    // those whose invocation id still reads are found by it.
    let db_arg = db.to_str().unwrap();
    remove_search_index(db_arg);
    for (id, found) in [
        ("inv-index-0004", 1),
        ("inv-index-0003", 1),
        ("inv-index-0002", 0),
        ("inv-index-0001", 1),
        ("inv-index-0000", 1),
    ] {
        let output = provtrail(
            &[
                "search",
                "--db",
                db_arg,
                "--invocation-id",
                id,
                "--format",
                "jsonl",
            ],
            None,
        );
        let said = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(0), "{id}: {said}");
        assert_eq!(json_lines(&output).len(), found, "{id}: {said}");
    }
}

#[test]
fn export_saves_every_event_that_reads_back_from_a_damaged_store_and_names_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("damaged.db");
    let file = events_file(dir.path(), "events.jsonl", "inv-damaged", 7);
    assert!(ingest_into(&db, &file).status.success());
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        // A body no longer decodes: the zstd frame's first bytes zeroed.
        for id in [3, 5] {
            conn.execute(
                "UPDATE events SET raw = zeroblob(length(raw)) WHERE id = ?1",
                [id],
            )
            .unwrap();
        }
        // Lengths recorded that the bodies do not have: no length at all, and a longer one.
        for (id, size) in [(6, -1), (7, 999_999)] {
            conn.execute("UPDATE events SET raw_size = ?2 WHERE id = ?1", [id, size])
                .unwrap();
        }
        // A row whose text is no longer UTF-8, as a damaged page leaves it: SQLite cannot give
        // it back whole.
        conn.execute(
            "UPDATE events SET tracking_number = CAST(X'FF' AS TEXT) WHERE id = 2",
            [],
        )
        .unwrap();
    }
    let out = dir.path().join("saved.jsonl");
    let db_arg = db.to_str().unwrap();
    let exported = provtrail(
        &["export", "--db", db_arg, "-o", out.to_str().unwrap()],
        None,
    );
    let said = String::from_utf8_lossy(&exported.stderr).into_owned();
    assert_eq!(exported.status.code(), Some(1), "{said}");
    assert!(
        said.contains("event 3 skipped: its stored body cannot be read back")
            && said.contains(
                "event 2 skipped: its stored body cannot be read back (SQLite cannot read its row"
            )
            && said.contains("event 6 skipped: its stored body cannot be read back (its recorded length (-1) is not a length)")
            && said.contains("event 7 skipped: its stored body cannot be read back (its body reads back as")
            && said.contains("bytes, 999999 arrived)")
            && said.contains("exported 2 events")
            && said.contains(
                "5 events could not be read back and were not exported (ids 2, 3, 5, 6, 7)"
            ),
        "{said}"
    );
    let saved: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let invocations: Vec<&str> = saved
        .iter()
        .map(|line| line["invocation_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        invocations,
        ["inv-damaged-0000", "inv-damaged-0003"],
        "{saved:?}"
    );
    // With standard error a pipe already closed (`2>&1 | head -1`), the messages are dropped,
    // not a panic: the export is made, and its status is the same.
    let again = dir.path().join("saved-again.jsonl");
    let (reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(reader);
    let status = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["export", "--db", db_arg, "-o", again.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::os::fd::OwnedFd::from(writer))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(&again).unwrap(),
        std::fs::read_to_string(&out).unwrap()
    );
    // One event alone says so too.
    let show = provtrail(&["show", "--db", db_arg, "3"], None);
    let said = String::from_utf8_lossy(&show.stderr).into_owned();
    assert!(
        said.contains("the stored body of event 3 cannot be read back"),
        "{said}"
    );
}

#[test]
fn verify_reads_every_body_back_and_names_what_no_longer_reads_as_it_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("verified.db");
    let file = events_file(dir.path(), "events.jsonl", "inv-verify", 5);
    assert!(ingest_into(&db, &file).status.success());
    let db_arg = db.to_str().unwrap();
    let verify = |more: &[&str]| {
        let mut args = vec!["verify", "--db", db_arg];
        args.extend_from_slice(more);
        provtrail(&args, None)
    };
    let intact = verify(&[]);
    assert_eq!(intact.status.code(), Some(0), "{intact:?}");
    let shown = stdout(&intact);
    assert!(
        shown.contains("5 event(s) and 0 quarantined document(s) read back")
            && shown.contains("SQLite's integrity_check: ok")
            && shown.contains("intact"),
        "{shown}"
    );

    // What SQLite's own check cannot see: a body that no longer decodes, one recorded under an
    // invocation id it does not carry.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute(
            "UPDATE events SET raw = zeroblob(length(raw)) WHERE id = 2",
            [],
        )
        .unwrap();
        conn.execute(
            "UPDATE events SET invocation_id = 'inv-someone-else' WHERE id = 4",
            [],
        )
        .unwrap();
        // A value no longer of its column's type (as a damaged page leaves, that SQLite still
        // reads): a problem of that row, and the rows after it are read all the same.
        conn.execute("UPDATE events SET raw_codec = 'x' WHERE id = 3", [])
            .unwrap();
    }
    let damaged = verify(&["--format", "json"]);
    assert_eq!(damaged.status.code(), Some(1), "{damaged:?}");
    let summary: Value = serde_json::from_str(stdout(&damaged).trim()).unwrap();
    assert_eq!(summary["intact"], false, "{summary}");
    assert_eq!(summary["events_read"], 5, "{summary}");
    assert_eq!(
        summary["sqlite_problems"],
        serde_json::json!([]),
        "{summary}"
    );
    let problems = summary["problems"].as_array().unwrap();
    let ids: Vec<i64> = problems.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [2, 3, 4], "{summary}");
    assert!(
        problems[1]["problem"]
            .as_str()
            .unwrap()
            .starts_with("its row is damaged: "),
        "{summary}"
    );
    assert!(
        problems[2]["problem"]
            .as_str()
            .unwrap()
            .contains("recorded with invocation id \"inv-someone-else\""),
        "{summary}"
    );
    let text = stdout(&verify(&["--quick"]));
    assert!(
        text.contains("event 2: ") && text.contains("NOT INTACT"),
        "{text}"
    );

    // A file cut short: a finding (exit 1) with the advice, not a failure to check (exit 2).
    let cut = dir.path().join("cut-short.db");
    let whole = std::fs::read(&db).unwrap();
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let cut_short = provtrail(&["verify", "--db", cut.to_str().unwrap()], None);
    let said = stdout(&cut_short);
    assert_eq!(cut_short.status.code(), Some(1), "{cut_short:?}");
    assert!(
        said.contains("the file cannot be opened") && said.contains("NOT INTACT"),
        "{said}"
    );
    let as_json = provtrail(
        &["verify", "--db", cut.to_str().unwrap(), "--format", "json"],
        None,
    );
    assert_eq!(as_json.status.code(), Some(1), "{as_json:?}");
    let summary: Value = serde_json::from_str(stdout(&as_json).trim()).unwrap();
    assert_eq!(summary["intact"], false, "{summary}");

    // An index page overwritten (the one a count reads): found and said, not an error.
    let copy = dir.path().join("index-damaged.db");
    std::fs::copy(&db, &copy).unwrap();
    let root: i64 = rusqlite::Connection::open(&copy)
        .unwrap()
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = 'events_received_at'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let mut bytes = std::fs::read(&copy).unwrap();
    let start = (root as usize - 1) * 4096;
    for byte in &mut bytes[start..start + 4096] {
        *byte = 0x5A;
    }
    std::fs::write(&copy, &bytes).unwrap();
    let damaged_index = provtrail(&["verify", "--db", copy.to_str().unwrap()], None);
    let said = format!(
        "{}{}",
        stdout(&damaged_index),
        String::from_utf8_lossy(&damaged_index.stderr)
    );
    assert_eq!(damaged_index.status.code(), Some(1), "{said}");
    assert!(said.contains("found problems"), "{said}");

    // A page of the file overwritten: SQLite's check says so, and what cannot be read back.
    let mut bytes = std::fs::read(&db).unwrap();
    let page = 4096;
    assert!(bytes.len() > 3 * page, "{}", bytes.len());
    for byte in &mut bytes[page + 100..2 * page] {
        *byte = 0xA5;
    }
    std::fs::write(&db, &bytes).unwrap();
    let broken = verify(&[]);
    let said = format!(
        "{}{}",
        stdout(&broken),
        String::from_utf8_lossy(&broken.stderr)
    );
    assert_eq!(broken.status.code(), Some(1), "{said}");
    assert!(
        said.contains("SQLite's integrity_check found problems:") && said.contains("NOT INTACT"),
        "{said}"
    );
}

#[test]
fn ingest_stores_events_in_the_order_of_the_file() {
    // Many documents are in flight at once; they still take ids in the order of their lines, so
    // that listing by id (or exporting) gives the file back in its order.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ordered.db");
    let file = events_file(dir.path(), "ordered.jsonl", "inv-order", 600);
    let output = provtrail(
        &[
            "ingest",
            "--db",
            &db.display().to_string(),
            file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let mut by_id: Vec<(i64, String)> = stored_invocations(&db)
        .into_iter()
        .map(|(invocation, id)| (id, invocation))
        .collect();
    by_id.sort();
    let order: Vec<String> = by_id
        .into_iter()
        .map(|(_, invocation)| invocation)
        .collect();
    let expected: Vec<String> = (0..600).map(|n| format!("inv-order-{n:04}")).collect();
    assert_eq!(order, expected);
}

/// Bytes of the database file's pages in use (not free for reuse).
fn used_bytes(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT (page_count - freelist_count) * page_size
             FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
            [],
            |row| row.get(0),
        )
        .unwrap()
}

/// Large documents arriving together (a group commit larger than the room left under the cap)
/// still fill the store to its cap: the group goes in one document at a time, as many as fit.
#[test]
fn ingest_of_large_documents_fills_the_store_to_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capped-large.db");
    // Documents of about 10 KB that do not compress (letters from a simple generator).
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut letters = |n: usize| -> String {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'a' + (state % 26) as u8)
            })
            .collect()
    };
    let lines: Vec<String> = (0..300)
        .map(|n| {
            let mut event: Value =
                serde_json::from_slice(&event(&format!("inv-large-{n}"))).unwrap();
            event["errors"] = (0..100).map(|_| Value::from(letters(100))).collect();
            event.to_string()
        })
        .collect();
    let file = dir.path().join("large.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let capped = provtrail(
        &[
            "ingest",
            "--db",
            &db.display().to_string(),
            "--max-db-size",
            "2MB",
            "--format",
            "json",
            &file.display().to_string(),
        ],
        None,
    );
    assert_eq!(capped.status.code(), Some(1), "{}", stdout(&capped));
    let report: Value = serde_json::from_str(stdout(&capped).trim()).unwrap();
    let used = used_bytes(&db);
    assert!(used >= 1_900_000, "{used} bytes used of 2 MB: {report}");
    assert_eq!(
        report["stopped_at_line"].as_u64(),
        report["accepted"].as_u64().map(|accepted| accepted + 1),
        "{report}"
    );
}

/// An import keeps to the store's size cap as the server does (`--max-db-size`, or the
/// configuration file's `store.max_size`), and stops reading once the store takes nothing more:
/// the rest is imported by running it again under a larger cap.
#[test]
fn ingest_keeps_to_the_size_cap_and_stops_where_the_store_stops() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capped.db");
    let db_arg = db.display().to_string();
    let file = events_file(dir.path(), "events.jsonl", "inv-cap", 3000);
    let file_arg = file.display().to_string();
    let capped = provtrail(
        &[
            "ingest",
            "--db",
            &db_arg,
            "--max-db-size",
            "256KiB",
            "--format",
            "json",
            &file_arg,
        ],
        None,
    );
    assert_eq!(capped.status.code(), Some(1), "{}", stdout(&capped));
    let report: Value = serde_json::from_str(stdout(&capped).trim()).unwrap();
    let accepted = report["accepted"].as_u64().unwrap();
    let failed = report["failed"].as_u64().unwrap();
    let stopped = report["stopped_at_line"].as_u64().expect("stopped");
    assert!(accepted > 0 && failed > 0, "{report}");
    assert_eq!(stopped, accepted + 1, "{report}");
    assert!(accepted + failed < 3000, "read on past the stop: {report}");
    assert!(
        report["problems"][0]["error"]
            .as_str()
            .unwrap()
            .contains("size limit"),
        "{report}"
    );
    assert_eq!(stored_invocations(&db).len() as u64, accepted);
    // Filled to its cap, not stopped short of it by a group of documents too large for the
    // room left.
    let used = used_bytes(&db);
    assert!(used >= 240 * 1024, "{used} bytes used of 256 KiB: {report}");
    // The configuration file's cap, larger: the rest goes in, what is stored is a duplicate.
    let config = dir.path().join("provtrail.toml");
    std::fs::write(&config, "[store]\nmax_size = \"64MiB\"\n").unwrap();
    let rest = provtrail(
        &[
            "ingest",
            "--db",
            &db_arg,
            "--config",
            &config.display().to_string(),
            "--format",
            "json",
            &file_arg,
        ],
        None,
    );
    assert_eq!(rest.status.code(), Some(0), "{}", stdout(&rest));
    let report: Value = serde_json::from_str(stdout(&rest).trim()).unwrap();
    assert_eq!(report["duplicate"], accepted, "{report}");
    assert_eq!(report["accepted"], 3000 - accepted, "{report}");
    assert_eq!(stored_invocations(&db).len(), 3000);
    // Under the smallest cap there is, the configuration's value is checked as serve checks it.
    std::fs::write(&config, "[store]\nmax_size = \"1KiB\"\n").unwrap();
    let refused = provtrail(
        &[
            "ingest",
            "--db",
            &db_arg,
            "--config",
            &config.display().to_string(),
            &file_arg,
        ],
        None,
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("store.max_size"));
}

#[test]
fn ingest_imports_lines_through_validation_and_deduplication() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("imported.db");
    let lines = [
        String::from_utf8(event("inv-1"))
            .unwrap()
            .replace('\n', " "),
        String::from_utf8(event("inv-2"))
            .unwrap()
            .replace('\n', " "),
        String::from_utf8(event("inv-1"))
            .unwrap()
            .replace('\n', " "),
        r#"{"trackingNumber": 5}"#.to_owned(),
    ]
    .join("\n");
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines).unwrap();
    let db_arg = db.display().to_string();
    let output = provtrail(
        &[
            "ingest",
            "--db",
            &db_arg,
            "--jsonl",
            file.to_str().unwrap(),
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "a quarantined line makes the import not clean"
    );
    let summary: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(summary["accepted"], 2);
    assert_eq!(summary["duplicate"], 1);
    assert_eq!(summary["quarantined"], 1);
    // The quarantined document is named by its line, with its first problem.
    let problems = summary["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{summary}");
    assert_eq!(problems[0]["line"], 4);
    assert_eq!(problems[0]["outcome"], "quarantined");
    assert!(problems[0]["quarantine_id"].is_i64(), "{summary}");
    assert!(
        problems[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("trackingNumber: "),
        "{summary}"
    );
    // and every other problem it has (sources, recipient, accountRequests are missing too).
    let errors = problems[0]["errors"].as_array().unwrap();
    assert_eq!(errors[0], problems[0]["error"], "{summary}");
    assert!(errors.len() >= 4, "{summary}");
    assert_eq!(summary["problems_listed"], true);
    assert_eq!(stored_invocations(&db).len(), 2);
    // Importing again changes nothing.
    let again = provtrail(
        &[
            "ingest",
            "--db",
            &db_arg,
            "--jsonl",
            file.to_str().unwrap(),
            "--format",
            "json",
        ],
        None,
    );
    let summary: Value = serde_json::from_str(stdout(&again).trim()).unwrap();
    assert_eq!(summary["accepted"], 0);
    assert_eq!(summary["duplicate"], 3);
}

#[test]
fn ingest_reads_json_lines_without_the_flag_and_names_bad_lines_for_people() {
    let dir = tempfile::tempdir().unwrap();
    let one_line = |id: &str| {
        String::from_utf8(event(id))
            .unwrap()
            .replace(['\n', '\r'], " ")
    };
    let lines = format!(
        "{}\n\n{}\nnot json\n{}\n",
        one_line("inv-a"),
        one_line("inv-b"),
        one_line("inv-a")
    );
    // By its extension, and by its content under any name.
    for name in ["events.ndjson", "events.txt"] {
        let db = dir.path().join(format!("{name}.db"));
        let file = dir.path().join(name);
        std::fs::write(&file, &lines).unwrap();
        let output = provtrail(
            &[
                "ingest",
                "--db",
                db.to_str().unwrap(),
                file.to_str().unwrap(),
            ],
            None,
        );
        assert_eq!(
            output.status.code(),
            Some(1),
            "{name}: a line is quarantined"
        );
        let text = stdout(&output);
        assert!(
            text.contains("2 accepted, 1 duplicate, 1 quarantined, 0 failed"),
            "{name}: {text}"
        );
        let problem = text
            .lines()
            .find(|line| line.trim_start().starts_with("line 4: quarantined"))
            .unwrap_or_else(|| panic!("{name}: no line for the bad document: {text}"));
        assert!(problem.contains("$: "), "{name}: {problem}");
        assert_eq!(stored_invocations(&db).len(), 2, "{name}");
    }
    // Many bad lines: the report lists the first hundred by line, and counts the rest.
    let many: String = (0..150).map(|n| format!("{{\"bad\": {n}}}\n")).collect();
    let file = dir.path().join("many.jsonl");
    std::fs::write(&file, many).unwrap();
    let db = dir.path().join("many.db");
    let output = ingest_reporting_json(&db, &file);
    let summary: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(summary["quarantined"], 150);
    let lines: Vec<u64> = summary["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|problem| problem["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, (1..=100).collect::<Vec<u64>>());
    assert_eq!(summary["problems_listed"], false);
    // One pretty-printed event stays one document.
    let db = dir.path().join("single.db");
    let file = dir.path().join("single.json");
    std::fs::write(&file, event("inv-single")).unwrap();
    let output = provtrail(
        &[
            "ingest",
            "--db",
            db.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let stored = stored_invocations(&db);
    assert_eq!(stored.len(), 1);
    assert!(stored.contains_key("inv-single"), "{stored:?}");
}

#[test]
fn show_search_and_quarantine_print_no_terminal_escapes_from_what_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hostile.db");
    let db_arg = db.display().to_string();
    // A name that would clear the screen and then show the rest right to left, and a
    // quarantined body that would clear it too.
    let hostile = event_with_name_prefix("inv-escape", "\\u001b[2J\\u202e\\nFAKE LINE\\t\\u200b");
    let file = dir.path().join("hostile.json");
    std::fs::write(&file, &hostile).unwrap();
    assert_eq!(
        provtrail(&["ingest", "--db", &db_arg, file.to_str().unwrap()], None)
            .status
            .code(),
        Some(0)
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, b"not json \x1b]0;title\x07").unwrap();
    provtrail(&["ingest", "--db", &db_arg, bad.to_str().unwrap()], None);
    // The list shows no body, so nothing to escape there; the rest show the hostile text.
    for (args, shows_it) in [
        (vec!["show", "--db", &db_arg, "tn-inv-escape"], true),
        (vec!["search", "--db", &db_arg], true),
        (vec!["quarantine", "--db", &db_arg], false),
        (vec!["quarantine", "--db", &db_arg, "1"], true),
    ] {
        let output = provtrail(&args, None);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert!(
            !output
                .stdout
                .iter()
                .any(|&byte| byte == 0x1b || byte == 0x07),
            "{args:?} printed a control character: {}",
            stdout(&output)
        );
        assert_eq!(
            stdout(&output).contains("\\u001b"),
            shows_it,
            "{args:?}: {}",
            stdout(&output)
        );
        assert!(
            !stdout(&output).contains('\u{202e}'),
            "{args:?} printed a right-to-left override: {}",
            stdout(&output)
        );
        if args[0] != "quarantine" {
            assert!(stdout(&output).contains("\\u202e"), "{args:?}");
            // A line break in a value cannot pass for a line of its own, in a field or a cell.
            assert!(
                stdout(&output).contains("\\nFAKE LINE\\t\\u200b"),
                "{args:?}"
            );
            assert!(
                !stdout(&output).lines().any(|line| line.starts_with("FAKE")),
                "{args:?}: {}",
                stdout(&output)
            );
        }
    }
}

#[test]
fn an_export_imported_again_restores_its_events_with_their_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let first = store_with_event(dir.path(), "first.db", "inv-export-1");
    let export = provtrail(&["export", "--db", &first], None);
    assert_eq!(export.status.code(), Some(0));
    let exported = stdout(&export);
    let line: Value = serde_json::from_str(exported.lines().next().unwrap()).unwrap();

    // A line as another store exported it: received long ago, on a channel, from an address.
    let mut old = line.clone();
    old["received_at"] = "2020-01-02T03:04:05.678Z".into();
    old["channel"] = "hr".into();
    old["remote_addr"] = "10.1.2.3:44321".into();
    old["method"] = "POST".into();
    old["path"] = "/events/hr".into();
    old["user_agent"] = "SailPoint-ISC/1.0 (x)".into();
    old["raw"] = String::from_utf8(event("inv-export-2")).unwrap().into();
    // Not restorable: a time that is not RFC 3339. It must be named, and nothing stored.
    let mut bad = line.clone();
    bad["received_at"] = "yesterday".into();
    bad["raw"] = String::from_utf8(event("inv-export-3")).unwrap().into();
    // An event that happens to carry `raw`, `received_at` and `event` members is still an event.
    let mut odd: Value = serde_json::from_slice(&event("inv-export-4")).unwrap();
    odd["raw"] = "x".into();
    odd["received_at"] = "2020-01-01T00:00:00Z".into();
    odd["event"] = Value::Null;
    let file = dir.path().join("export.jsonl");
    std::fs::write(&file, format!("{exported}{old}\n{bad}\n{odd}\n")).unwrap();
    let second = dir.path().join("second.db").display().to_string();
    let ingest_json = |db: &str| {
        let output = provtrail(
            &[
                "ingest",
                "--db",
                db,
                file.to_str().unwrap(),
                "--format",
                "json",
            ],
            None,
        );
        assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
        serde_json::from_str::<Value>(stdout(&output).trim()).unwrap()
    };
    let report = ingest_json(&second);
    assert_eq!(report["accepted"], 3, "{report}");
    assert_eq!(report["restored_from_export"], 2, "{report}");
    assert_eq!(report["failed"], 1, "{report}");
    assert_eq!(report["problems"][0]["line"], 3, "{report}");
    let error = report["problems"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("received_at") && error.contains("yesterday"),
        "{error}"
    );

    let again = provtrail(&["export", "--db", &second], None);
    let lines = json_lines(&again);
    assert_eq!(lines.len(), 3);
    // The first store's event comes back as it was exported, receipt and body alike.
    for key in [
        "received_at",
        "channel",
        "remote_addr",
        "method",
        "path",
        "user_agent",
        "size",
        "invocation_id",
        "tracking_number",
        "outcome",
        "warnings",
        "event",
        "raw",
    ] {
        assert_eq!(lines[0][key], line[key], "{key}");
    }
    assert_eq!(lines[1]["user_agent"], "SailPoint-ISC/1.0 (x)");
    assert_eq!(lines[1]["received_at"], "2020-01-02T03:04:05.678Z");
    assert_eq!(lines[1]["channel"], "hr");
    assert_eq!(lines[1]["remote_addr"], "10.1.2.3:44321");
    assert_eq!(lines[1]["method"], "POST");
    assert_eq!(lines[1]["path"], "/events/hr");
    assert_eq!(lines[1]["invocation_id"], "inv-export-2");
    // The event with export-like members was imported as itself, members and all.
    assert_eq!(lines[2]["method"], "IMPORT");
    assert_eq!(lines[2]["event"]["raw"], "x");
    // The restored event is found by its first receipt time, although its id is newer than an
    // event received years after it.
    for (range, expected) in [
        (vec!["--until", "2021-01-01"], vec!["inv-export-2"]),
        (
            vec!["--since", "2020-01-02", "--until", "2020-01-03"],
            vec!["inv-export-2"],
        ),
        (
            vec!["--since", "2021-01-01"],
            vec!["inv-export-4", "inv-export-1"],
        ),
    ] {
        let mut args = vec!["search", "--db", &second, "--format", "json"];
        args.extend(&range);
        let found = provtrail(&args, None);
        let items: Vec<Value> = serde_json::from_str(&stdout(&found)).unwrap();
        let ids: Vec<&str> = items
            .iter()
            .map(|item| item["invocation_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, expected, "{range:?}");
    }

    // Imported again: every event is a duplicate; `--channel` relabels restored events.
    let third = dir.path().join("third.db").display().to_string();
    let relabelled = provtrail(
        &[
            "ingest",
            "--db",
            &third,
            "--channel",
            "moved",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(relabelled.status.code(), Some(1));
    let moved = provtrail(&["export", "--db", &third], None);
    let channels: Vec<Value> = stdout(&moved)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["channel"].clone())
        .collect();
    assert_eq!(channels, vec!["moved", "moved", "moved"]);
    let report = ingest_json(&second);
    assert_eq!(report["duplicate"], 3, "{report}");
    assert_eq!(report["accepted"], 0, "{report}");
    // Restoring again delivered nothing: the restored events' delivery logs stay as they were
    // (the plain event imported twice has two deliveries, the second a duplicate).
    for (id, deliveries) in [(1, 1), (2, 1), (3, 2)] {
        let show = provtrail(
            &["show", "--db", &second, &id.to_string(), "--format", "json"],
            None,
        );
        let detail: Value = serde_json::from_str(&stdout(&show)).unwrap();
        assert_eq!(
            detail["deliveries"].as_array().map(Vec::len),
            Some(deliveries),
            "event {id}: {detail}"
        );
    }
}

/// `provtrail ingest --db DB FILE`.
fn ingest_into(db: &Path, file: &Path) -> Output {
    provtrail(
        &[
            "ingest",
            "--db",
            db.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
        None,
    )
}

#[test]
fn export_reads_the_file_without_starting_a_store_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let db_arg = store_with_event(dir.path(), "copy.db", "inv-copy");
    let db = Path::new(&db_arg);
    let file = dir.path().join("inv-copy.json");
    // A copy of a store without its search index, as a backup often is: exporting it must not
    // build one (nor start a writer that would change the file).
    remove_search_index(&db_arg);
    let size = std::fs::metadata(db).unwrap().len();
    let export = provtrail(&["export", "--db", &db_arg], None);
    assert_eq!(
        export.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let lines = json_lines(&export);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["invocation_id"], "inv-copy");
    assert!(
        !Path::new(&format!("{db_arg}.search")).exists(),
        "export built a search index"
    );
    assert_eq!(std::fs::metadata(db).unwrap().len(), size);
    // Not a database: a clear error, exit 2.
    let export = provtrail(&["export", "--db", file.to_str().unwrap()], None);
    assert_eq!(export.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&export.stderr).contains("is not a provtrail database"),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    // Nor is importing into it a passing trouble of the store ("unavailable").
    let events = dir.path().join("one.json");
    std::fs::write(&events, event("inv-into-not-db")).unwrap();
    let ingest = ingest_into(&file, &events);
    let stderr = String::from_utf8_lossy(&ingest.stderr);
    assert_eq!(ingest.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not a provtrail database"), "{stderr}");
    assert!(!stderr.contains("unavailable"), "{stderr}");
    // A directory, or a path whose directory is missing, is named as such.
    let export = provtrail(&["export", "--db", dir.path().to_str().unwrap()], None);
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert_eq!(export.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is a directory, not a database file"),
        "{stderr}"
    );
    let ingest = ingest_into(dir.path(), &events);
    let stderr = String::from_utf8_lossy(&ingest.stderr);
    assert_eq!(ingest.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is a directory, not a database file"),
        "{stderr}"
    );
    // A device: refused before SQLite opens it (and makes its journal beside it).
    let ingest = ingest_into(Path::new("/dev/null"), &events);
    let stderr = String::from_utf8_lossy(&ingest.stderr);
    assert_eq!(ingest.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
    assert!(!Path::new("/dev/null-journal").exists());
    let ingest = ingest_into(&dir.path().join("missing").join("x.db"), &events);
    let stderr = String::from_utf8_lossy(&ingest.stderr);
    assert_eq!(ingest.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot create the database") && stderr.contains("No such file"),
        "{stderr}"
    );
    // Nor is another application's SQLite database taken over: one with tables of its own, one
    // that names an application of its own, one with a schema version without provtrail's
    // tables. Each is refused, and left as it was.
    for (name, sql, why) in [
        (
            "other.sqlite",
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)",
            "another application's tables (`accounts`)",
        ),
        (
            "app.sqlite",
            "PRAGMA application_id = 12345",
            "application_id 12345",
        ),
        (
            "versioned.sqlite",
            "PRAGMA user_version = 2",
            "schema version 2",
        ),
    ] {
        let path = dir.path().join(name);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
        let before = std::fs::read(&path).unwrap();
        let ingest = ingest_into(&path, &events);
        let stderr = String::from_utf8_lossy(&ingest.stderr);
        assert_eq!(ingest.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(why), "{name}: {stderr}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "{name}");
        assert!(
            !dir.path().join(format!("{name}.search")).exists(),
            "{name}"
        );
    }
    // An empty file made beforehand becomes a store, as private as a new one.
    let touched = dir.path().join("touched.db");
    std::fs::write(&touched, b"").unwrap();
    let ingest = ingest_into(&touched, &events);
    assert_eq!(ingest.status.code(), Some(0), "{ingest:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&touched).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
}

#[test]
fn read_commands_neither_wait_for_the_write_lock_nor_build_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let db_arg = store_with_event(dir.path(), "read.db", "inv-reader");
    let db = Path::new(&db_arg);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, br#"{"trackingNumber": 5}"#).unwrap();
    provtrail(&["ingest", "--db", &db_arg, bad.to_str().unwrap()], None);
    let reads: Vec<(Vec<&str>, &str)> = vec![
        (vec!["stats", "--db", &db_arg], "total 1"),
        (vec!["quarantine", "--db", &db_arg], "invalid_event"),
        (vec!["quarantine", "--db", &db_arg, "1"], "trackingNumber"),
        (vec!["show", "--db", &db_arg, "1"], "tn-inv-reader"),
        (
            vec!["show", "--db", &db_arg, "tn-inv-reader"],
            "tn-inv-reader",
        ),
        (
            vec![
                "search",
                "--db",
                &db_arg,
                "--tracking-number",
                "tn-inv-reader",
            ],
            "tn-inv-reader",
        ),
        (vec!["routes", "list", "--db", &db_arg], "no routes"),
        // Nothing on standard output: there is no dead letter.
        (vec!["deadletter", "list", "--db", &db_arg], ""),
    ];
    // A server's writer in the middle of a commit holds the write lock: reading the file
    // neither waits for it nor needs it (before, opening the store for a read recorded its
    // compression dictionary, and failed after five seconds with "database is locked").
    let writer = rusqlite::Connection::open(db).unwrap();
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    for (args, expected) in &reads {
        let output = provtrail(args, None);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout(&output).contains(expected),
            "{args:?}: {}",
            stdout(&output)
        );
    }
    writer.execute_batch("ROLLBACK").unwrap();
    drop(writer);
    // An empty list says so, beside the list (which a script reads) rather than in it.
    let empty = provtrail(&["deadletter", "list", "--db", &db_arg], None);
    assert!(stdout(&empty).is_empty());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("no dead letters"));
    // A largest event of no bytes would refuse every one: refused itself.
    let nothing = provtrail(
        &["ingest", "--db", &db_arg, "--max-bytes", "0", "/dev/null"],
        None,
    );
    assert_eq!(nothing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("--max-bytes"));
    // Without its search index (a backup copy), the commands that do not search build none;
    // a search does, and finds the event.
    let index = format!("{db_arg}.search");
    remove_search_index(&db_arg);
    for (args, expected) in &reads[..3] {
        let output = provtrail(args, None);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert!(
            stdout(&output).contains(expected),
            "{args:?}: {}",
            stdout(&output)
        );
        assert!(!Path::new(&index).exists(), "{args:?} built a search index");
    }
    let (args, expected) = &reads[5];
    let output = provtrail(args, None);
    assert_eq!(output.status.code(), Some(0), "{args:?}");
    assert!(stdout(&output).contains(expected), "{}", stdout(&output));
    assert!(Path::new(&index).exists());
}

/// Where the search index beside `db_arg` says it is complete, or sets it.
fn index_watermark(db_arg: &str, set: Option<i64>) -> i64 {
    let index = rusqlite::Connection::open(format!("{db_arg}.search")).unwrap();
    if let Some(through) = set {
        index
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'indexed_through'",
                [through],
            )
            .unwrap();
    }
    index
        .query_row(
            "SELECT value FROM meta WHERE key = 'indexed_through'",
            [],
            |row| row.get(0),
        )
        .unwrap()
}

#[test]
fn a_search_beside_a_server_that_is_still_indexing_reads_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db_arg = dir.path().join("busy.db").display().to_string();
    let lines: String = (0..10)
        .map(|n| {
            let event: Value = serde_json::from_slice(&event(&format!("inv-busy-{n}"))).unwrap();
            format!("{event}\n")
        })
        .collect();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines).unwrap();
    let output = provtrail(&["ingest", "--db", &db_arg, file.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(index_watermark(&db_arg, None), 10);
    let search = [
        "search",
        "--db",
        &db_arg,
        "--tracking-number",
        "tn-inv-busy-3",
    ];

    // A server's indexer at work: the watermark moves, but stays behind the events.
    index_watermark(&db_arg, Some(1));
    let indexer = {
        let db_arg = db_arg.clone();
        std::thread::spawn(move || {
            for through in 2..=8 {
                std::thread::sleep(Duration::from_millis(250));
                index_watermark(&db_arg, Some(through));
            }
        })
    };
    let output = provtrail(&search, None);
    indexer.join().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stdout(&output).contains("tn-inv-busy-3"),
        "{}",
        stdout(&output)
    );
    let note = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(note.contains("lacks the newest"), "{note}");
    // Read only: no indexer of its own caught the index up.
    assert_eq!(index_watermark(&db_arg, None), 8);

    // Nobody indexing: the search opens the store, which brings the index up to date.
    let output = provtrail(&search, None);
    assert_eq!(output.status.code(), Some(0));
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("lacks the newest"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(index_watermark(&db_arg, None), 10);
}

#[test]
fn export_never_writes_over_its_store_and_neutralises_formulas_in_csv() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kept.db");
    let db_arg = db.display().to_string();
    // A recipient name that a spreadsheet would run as a formula.
    let hostile =
        event_with_name_prefix("inv-formula", "=HYPERLINK(\\\"http://evil\\\",\\\"x\\\")");
    // And one that hides it behind spaces, which some spreadsheets skip.
    let spaced = event_with_name_prefix("inv-formula-spaced", "  =cmd|' /C calc'!A0");
    let spaced_file = dir.path().join("spaced.json");
    std::fs::write(&spaced_file, &spaced).unwrap();
    let output = provtrail(
        &["ingest", "--db", &db_arg, spaced_file.to_str().unwrap()],
        None,
    );
    assert_eq!(output.status.code(), Some(0));
    let file = dir.path().join("hostile.json");
    std::fs::write(&file, &hostile).unwrap();
    let output = provtrail(&["ingest", "--db", &db_arg, file.to_str().unwrap()], None);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let size = std::fs::metadata(&db).unwrap().len();
    // Another name of the database (a hard link) is the database too; the tokens kept beside
    // it are its files.
    let hard_link = dir.path().join("snapshot.db");
    std::fs::hard_link(&db, &hard_link).unwrap();
    std::fs::write(format!("{db_arg}.token"), "ptk_kept\n").unwrap();
    // A link to where the log will be, while it is not there: writing through it is writing
    // the log.
    let dangling = dir.path().join("dangling.jsonl");
    std::os::unix::fs::symlink(format!("{db_arg}-wal"), &dangling).unwrap();
    for target in [
        db_arg.clone(),
        format!("{db_arg}-wal"),
        format!("{db_arg}.search"),
        format!("{db_arg}.token"),
        format!("{db_arg}.read-token"),
        hard_link.display().to_string(),
        dangling.display().to_string(),
    ] {
        let output = provtrail(&["export", "--db", &db_arg, "-o", &target], None);
        assert_eq!(output.status.code(), Some(2), "{target}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("would destroy the store"),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        size,
        "the store is untouched"
    );
    assert_eq!(
        std::fs::read_to_string(format!("{db_arg}.token")).unwrap(),
        "ptk_kept\n"
    );
    // Another store, and commands that know no store, are refused too.
    let other = dir.path().join("other.db");
    std::fs::copy(&db, &other).unwrap();
    let other_arg = other.display().to_string();
    for args in [
        vec!["export", "--db", &db_arg, "-o", &other_arg],
        vec!["openapi", "--output", &other_arg],
        vec!["config", "init", &other_arg, "--force"],
        vec!["openapi", "--output", &format!("{db_arg}.token")],
    ] {
        let output = provtrail(&args, None);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("would destroy"),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(std::fs::metadata(&other).unwrap().len(), size);
    let csv = provtrail(&["export", "--db", &db_arg, "--format", "csv"], None);
    assert_eq!(csv.status.code(), Some(0));
    let text = stdout(&csv);
    assert!(text.contains("'=HYPERLINK("), "{text}");
    assert!(!text.contains(",=HYPERLINK("), "{text}");
    assert!(text.contains("'  =cmd|"), "{text}");
}

#[test]
fn demo_keeps_to_its_own_store_and_runs_no_routes_of_a_real_configuration() {
    // A deployment's settings around the demo: a store named by the environment, and a
    // configuration in the working directory whose route would deliver to a listener here.
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let real_db = dir.path().join("real.db");
    std::fs::write(
        dir.path().join("provtrail.toml"),
        format!(
            "[[routes]]\nname = \"tickets\"\nallow_private = true\n[routes.sink]\n\
             type = \"webhook\"\nurl = \"http://{}/hook\"\n",
            listener.local_addr().unwrap()
        ),
    )
    .unwrap();
    let output = demo_to_exit(dir.path(), "20")
        .env("PROVTRAIL_DB", &real_db)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stdout(&output).contains("sent 21 requests"),
        "{}",
        stdout(&output)
    );
    assert!(dir.path().join("provtrail-demo.db").exists());
    assert!(!real_db.exists(), "the environment's store was not touched");
    // It says where to look: commands that work on its store as printed, and, the server
    // having stopped, how to serve it again rather than its URLs.
    let said = stdout(&output);
    assert!(
        said.contains("provtrail quarantine --db provtrail-demo.db\n"),
        "{said}"
    );
    assert!(said.contains("the web UI again"), "{said}");
    assert!(!said.contains("/metrics"), "{said}");
    let quarantine = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["quarantine", "--db", "provtrail-demo.db"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let listed = stdout(&quarantine);
    assert!(listed.contains("invalid_event"), "{listed}");
    assert!(listed.contains("not_json"), "{listed}");
    assert!(
        listener.accept().is_err(),
        "the configuration's route received nothing"
    );
    // Bad rates are refused, not a panic.
    for bad in [["--failure-rate", "NaN"], ["--rate", "inf"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_provtrail"))
            .arg("demo")
            .args(bad)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad:?}");
    }
    // Its help gives the demo's own defaults, not the server's.
    let help = stdout(&provtrail(&["demo", "--help"], None));
    assert!(help.contains("[default: provtrail-demo.db]"), "{help}");
    assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
    assert!(!help.contains("PROVTRAIL_DB"), "{help}");
    assert!(!help.contains("PROVTRAIL_CONFIG"), "{help}");
}

/// The demo shows what an endpoint answers to a wrong token only when it has tokens.
/// `provtrail demo --exit` in `dir` on a free port, sending `events` at full speed, its logs at
/// warn.
fn demo_to_exit(dir: &Path, events: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_provtrail"));
    command
        .args([
            "demo",
            "--exit",
            "--listen",
            "127.0.0.1:0",
            "--events",
            events,
        ])
        .args(["--rate", "0"])
        .current_dir(dir)
        .env("PROVTRAIL_LOG", "warn");
    command
}

#[test]
fn a_demo_without_authentication_sends_no_wrong_token() {
    for (no_auth, shown) in [(false, true), (true, false)] {
        let dir = tempfile::tempdir().unwrap();
        let mut command = demo_to_exit(dir.path(), "3");
        command.stdin(Stdio::null());
        if no_auth {
            command.arg("--no-auth");
        }
        let output = command.output().unwrap();
        let said = stdout(&output);
        assert_eq!(output.status.code(), Some(0), "{said}");
        assert!(
            said.contains("and a body that is not JSON: HTTP 400"),
            "{said}"
        );
        assert_eq!(
            said.contains("and a wrong token: HTTP 401"),
            shown,
            "no_auth {no_auth}: {said}"
        );
    }
}

/// A demo served over TLS sends its traffic over HTTPS to its own server.
#[test]
fn a_demo_served_over_tls_sends_its_traffic_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_pem(dir.path(), "isc.example.com");
    let output = demo_to_exit(dir.path(), "3")
        .env("PROVTRAIL_TLS_CERT", &cert)
        .env("PROVTRAIL_TLS_KEY", &key)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = stdout(&output);
    let told = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{said}{told}");
    assert!(told.contains("serving on https://127.0.0.1:"), "{told}");
    assert!(said.contains("and a wrong token: HTTP 401"), "{said}");
    assert!(said.contains("sent 4 requests"), "{said}");
    assert!(said.contains(": 3 accepted, 1 duplicate"), "{said}");
}

/// `provtrail demo` serving on a free port in `dir`, sending `events` at `rate` a second.
fn spawn_demo(dir: &Path, events: &str, rate: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--events",
            events,
            "--rate",
            rate,
        ])
        .current_dir(dir)
        .env("PROVTRAIL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_serving_demo_names_its_web_ui_with_the_read_token_that_opens_it() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_demo(dir.path(), "5", "0");
    let output = interrupted_after(child, 6000);
    let said = stdout(&output);
    assert!(said.contains("Serving until Ctrl-C"), "{said}");
    let read_token =
        std::fs::read_to_string(dir.path().join("provtrail-demo.db.read-token")).unwrap();
    assert!(
        said.contains(&format!(
            "sign in with the read token {},",
            read_token.trim()
        )),
        "{said}"
    );
    assert!(said.contains("/metrics"), "{said}");
}

#[test]
fn demo_stops_its_traffic_on_ctrl_c_and_says_what_it_sent() {
    for signal in ["-INT", "-TERM"] {
        demo_stops_its_traffic_on(signal);
    }
}

fn demo_stops_its_traffic_on(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_demo(dir.path(), "100000", "100");
    let output = signalled_after(child, 2500, signal);
    let text = stdout(&output);
    assert_eq!(
        output.status.code(),
        Some(130),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sent: u64 = text
        .split("interrupted: sent ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no report: {text}"));
    assert!(sent > 0 && sent < 1_000, "{text}");
    assert!(!text.contains("Serving until Ctrl-C"), "{text}");
    assert!(dir.path().join("provtrail-demo.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_stops_on_ctrl_c_and_reports_what_it_sent() {
    let server = TestServer::start().await;
    let url = server.url("/events");
    let output = send_interrupted(url, &["--synthetic", "100000", "--rate", "100"], 1500).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let summary: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    let sent = summary["sent"].as_u64().unwrap();
    assert!(
        sent > 0 && sent < 1_000,
        "sent {sent} of 100000 before stopping"
    );
    // Every request it reports was answered, and kept.
    assert_eq!(summary["by_outcome"]["accepted"], sent, "{summary}");
    let mut server = server;
    server.shutdown().await;
    assert_eq!(stored_invocations(&server.db).len() as u64, sent);
}

/// `provtrail send URL ARGS --token … --format json`, interrupted (SIGINT) after `millis`.
async fn send_interrupted(url: String, args: &[&str], millis: u64) -> Output {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let child = Command::new(env!("CARGO_BIN_EXE_provtrail"))
            .args(["send", &url])
            .args(&args)
            .args(["--token", TOKEN, "--format", "json"])
            .env("PROVTRAIL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        interrupted_after(child, millis)
    })
    .await
    .unwrap()
}

/// Paced (`--rate`), many workers wait for their turn at once: none of them holds a document
/// while it waits, so an interruption sends at most the one document on its way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_at_a_slow_rate_stops_on_ctrl_c_without_sending_what_waits_for_its_turn() {
    let server = TestServer::start().await;
    let url = server.url("/events");
    let args = ["--synthetic", "100", "--rate", "2", "--concurrency", "8"];
    let output = send_interrupted(url, &args, 1200).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let summary: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    let sent = summary["sent"].as_u64().unwrap();
    // Three turns in 1.2 s (at 0, 0.5 and 1 s), then at most the one document on its way.
    assert!((1..=5).contains(&sent), "sent {sent}: {summary}");
    let mut server = server;
    server.shutdown().await;
}

#[test]
fn ingest_stops_on_ctrl_c_and_reports_what_it_imported() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("interrupted.db");
    let mut child = spawn_provtrail(&[
        "ingest",
        "--db",
        db.to_str().unwrap(),
        "--jsonl",
        "-",
        "--format",
        "json",
    ]);
    // Three events, and standard input left open: the import waits for more.
    let mut input = child.stdin.take().unwrap();
    for n in 0..3 {
        let line = String::from_utf8(event(&format!("inv-ctrl-c-{n}")))
            .unwrap()
            .replace('\n', " ");
        writeln!(input, "{line}").unwrap();
    }
    input.flush().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !(db.exists() && stored_invocations(&db).len() == 3) {
        assert!(
            Instant::now() < deadline,
            "the three events were not imported"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = interrupted_after(child, 0);
    drop(input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted: everything up to line 3"),
        "{stderr}"
    );
    let summary: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(summary["accepted"], 3, "{summary}");
    assert_eq!(summary["interrupted"], true, "{summary}");
    assert_eq!(summary["last_line"], 3, "{summary}");
}

#[test]
fn ingest_interrupted_before_a_whole_document_stops_at_once_and_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never.db");
    let mut child = spawn_provtrail(&["ingest", "--db", db.to_str().unwrap(), "-"]);
    // Not JSON lines: read to its end before it is split, and the end does not come.
    let mut input = child.stdin.take().unwrap();
    let line = String::from_utf8(event("inv-never"))
        .unwrap()
        .replace('\n', " ");
    writeln!(input, "{line}").unwrap();
    input.flush().unwrap();
    // Closed after a while, so that a run that waits for the end fails rather than hangs.
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(15));
        drop(input);
    });
    let started = Instant::now();
    let output = interrupted_after(child, 1500);
    let waited = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    assert!(
        waited < Duration::from_secs(15),
        "it waited for the input's end: {waited:?}"
    );
    assert!(!db.exists());
    closer.join().unwrap();
}

#[test]
fn a_line_far_past_the_limit_is_not_held_whole() {
    let dir = tempfile::tempdir().unwrap();
    let line = |id: &str| String::from_utf8(event(id)).unwrap().replace('\n', " ");
    // 80 MiB without a line break: past what `ingest` holds of one line, far past --max-bytes.
    let huge = "x".repeat(80 * 1024 * 1024);
    let file = dir.path().join("huge.jsonl");
    std::fs::write(
        &file,
        format!(
            "{}\n{huge}\n{}\n",
            line("inv-before-huge"),
            line("inv-after-huge")
        ),
    )
    .unwrap();
    drop(huge);
    let file = file.to_str().unwrap();
    // `validate` reports the line and checks the next.
    let output = provtrail(
        &[
            "validate",
            "--jsonl",
            "--max-bytes",
            "100000",
            "--format",
            "json",
            file,
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let reports = json_lines(&output);
    assert_eq!(reports.len(), 3, "{reports:?}");
    assert_eq!(reports[1]["line"], 2);
    assert!(
        reports[1]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("more than 100000 bytes"),
        "{reports:?}"
    );
    assert_eq!(
        (reports[2]["line"].clone(), reports[2]["valid"].clone()),
        (3.into(), true.into())
    );
    // `ingest` keeps what came before it, and stops there with an error naming it.
    let db = dir.path().join("huge.db");
    let output = provtrail(
        &[
            "ingest",
            "--db",
            db.to_str().unwrap(),
            file,
            "--format",
            "json",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 2 is more than"), "{stderr}");
    let stored: Vec<String> = stored_invocations(&db).into_keys().collect();
    assert_eq!(stored, ["inv-before-huge"]);
}

#[test]
fn send_refuses_numbers_it_cannot_use_instead_of_panicking() {
    for bad in [
        ["--rate", "inf"],
        ["--rate", "1e-300"],
        ["--timeout", "1e30"],
        ["--timeout", "NaN"],
        ["--concurrency", "18446744073709551615"],
        ["--concurrency", "0"],
    ] {
        let mut args = vec!["send", "http://127.0.0.1:9/events", "--synthetic", "1"];
        args.extend(bad);
        let output = provtrail(&args, None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(
            stderr.contains(bad[0]) && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

#[test]
fn ingest_and_send_refuse_bad_arguments_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never.db");
    let db_arg = db.display().to_string();
    let missing = dir.path().join("missing.json");
    let payload = dir.path().join("event.json");
    std::fs::write(&payload, event("inv-args")).unwrap();
    for args in [
        vec!["ingest", "--db", &db_arg, missing.to_str().unwrap()],
        vec![
            "ingest",
            "--db",
            &db_arg,
            "--channel",
            "bad channel/..",
            payload.to_str().unwrap(),
        ],
    ] {
        let output = provtrail(&args, None);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!db.exists(), "{args:?} left a database behind");
    }
    let empty_token = dir.path().join("empty.token");
    std::fs::write(&empty_token, "").unwrap();
    for args in [
        vec!["send", "http://", "--synthetic", "1"],
        vec![
            "send",
            "http://127.0.0.1:9/events",
            "--synthetic",
            "1",
            "--token-file",
            empty_token.to_str().unwrap(),
        ],
    ] {
        let output = provtrail(&args, None);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn config_check_warns_of_an_address_serve_could_not_listen_on_here() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("provtrail.toml");
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let check = |listen: String| {
        std::fs::write(
            &path,
            format!("[server]\nlisten = \"{listen}\"\n[store]\npath = \"x.db\"\n"),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_provtrail"))
            .args(["config", "check", path.to_str().unwrap()])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let in_use = check(held.local_addr().unwrap().to_string());
    let said = String::from_utf8_lossy(&in_use.stderr);
    assert_eq!(in_use.status.code(), Some(0), "{said}");
    assert!(
        said.contains("that address is in use on this machine") && said.contains("is valid"),
        "{said}"
    );
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let free = check(free_port.to_string());
    let said = String::from_utf8_lossy(&free.stderr);
    assert_eq!(free.status.code(), Some(0), "{said}");
    assert!(!said.contains("warning"), "{said}");

    // What `serve` warns of at its start, `check` warns of too: a short secret, and a size cap
    // below what a new store takes (every event would be answered 503).
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"{free_port}\"\n[store]\npath = \"x.db\"\nmax_size = \"64KiB\"\n\
             [read]\ntokens = [\"short\"]\n"
        ),
    )
    .unwrap();
    let checked = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["config", "check", path.to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(0), "{said}");
    assert!(
        said.contains("a secret in read.tokens is shorter than 16 characters")
            && said.contains("store.max_size is 65536 bytes, less than a new store takes"),
        "{said}"
    );
}

#[test]
fn config_init_writes_a_default_that_check_accepts_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("provtrail.toml");
    let path_arg = path.to_str().unwrap();
    assert_eq!(
        provtrail(&["config", "init", path_arg], None).status.code(),
        Some(0)
    );
    assert!(std::fs::read_to_string(&path).unwrap().contains("[ingest]"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "tokens go in it: {mode:o}");
        // Replaced with --force, a file keeps the mode its owner gave it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(
            provtrail(&["config", "init", "--force", path_arg], None)
                .status
                .code(),
            Some(0)
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640, "{mode:o}");
    }
    assert_eq!(
        provtrail(&["config", "check", path_arg], None)
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        provtrail(&["config", "init", path_arg], None).status.code(),
        Some(2)
    );
    std::fs::write(&path, "[server]\nlisten = \"nowhere\"\n").unwrap();
    let bad = provtrail(&["config", "check", path_arg], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("server.listen"));
    // Without a path, the file serve would read: the one PROVTRAIL_CONFIG names.
    let named = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["config", "check"])
        .env("PROVTRAIL_CONFIG", path_arg)
        .current_dir(dir.path().parent().unwrap())
        .output()
        .unwrap();
    assert_eq!(named.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&named.stderr).contains("server.listen"));
    // The PROVTRAIL_* variables count, as for serve: here the database a file route may not
    // write to.
    std::fs::write(
        &path,
        "[[routes]]\nname = \"archive\"\n[routes.sink]\ntype = \"file\"\npath = \"z.db\"\n",
    )
    .unwrap();
    let check_with_db = |db: &str| {
        Command::new(env!("CARGO_BIN_EXE_provtrail"))
            .args(["config", "check", path_arg])
            .env("PROVTRAIL_DB", db)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let refused = check_with_db("z.db");
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("one of the store's files"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(check_with_db("other.db").status.code(), Some(0));
    // A database path serve could not open is refused here too, with serve's words.
    std::fs::create_dir(dir.path().join("a-directory")).unwrap();
    // A file of another application, and a database with a second name.
    let other = rusqlite::Connection::open(dir.path().join("other-app.db")).unwrap();
    other
        .execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY);")
        .unwrap();
    drop(other);
    std::fs::write(dir.path().join("named-twice.db"), b"").unwrap();
    std::fs::hard_link(
        dir.path().join("named-twice.db"),
        dir.path().join("second-name.db"),
    )
    .unwrap();
    for (db, said) in [
        ("a-directory", "is a directory"),
        ("missing/store.db", "its directory missing does not exist"),
        ("other-app.db", "is not a provtrail database"),
        ("named-twice.db", "hard links"),
    ] {
        let refused = check_with_db(db);
        assert_eq!(refused.status.code(), Some(2), "{db}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(said), "{db}: {stderr}");
    }
    // Every route's problem in one run, not only the first.
    std::fs::write(
        &path,
        "[server]\nlisten = \"nowhere\"\n\
         [[routes]]\nname = \"one\"\nfilter = \"$[?(\"\n[routes.sink]\ntype = \"file\"\npath = \"a.jsonl\"\n\
         [[routes]]\nname = \"two\"\n[routes.sink]\ntype = \"smtp\"\n\
         [[routes]]\nname = \"three\"\n[routes.sink]\ntype = \"file\"\npath = \"same.jsonl\"\n\
         [[routes]]\nname = \"four\"\n[routes.sink]\ntype = \"file\"\npath = \"same.jsonl\"\n",
    )
    .unwrap();
    let several = provtrail(&["config", "check", path_arg], None);
    assert_eq!(several.status.code(), Some(2));
    let said = String::from_utf8_lossy(&several.stderr);
    for problem in [
        "server.listen",
        "routes.one.filter",
        "routes.two.sink.type",
        "route \"three\" writes to the same file",
        "4 problems",
    ] {
        assert!(said.contains(problem), "{problem}: {said}");
    }
    // A variable serve could not use is named as one, not as a flag of a usage to follow.
    let bad_variable = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["config", "check", path_arg])
        .env("PROVTRAIL_NO_AUTH", "maybe")
        .output()
        .unwrap();
    assert_eq!(bad_variable.status.code(), Some(2));
    let said = String::from_utf8_lossy(&bad_variable.stderr);
    assert!(
        said.contains("PROVTRAIL_NO_AUTH") && said.contains("'maybe'"),
        "{said}"
    );
    assert!(!said.contains("Usage:"), "{said}");
    // What serve would refuse beside the database, check refuses too.
    let kept = dir.path().join("kept.db");
    std::fs::write(dir.path().join("kept.db.token"), "ptk_a\nptk_b\n").unwrap();
    std::fs::write(
        &path,
        format!("[store]\npath = {:?}\n", kept.display().to_string()),
    )
    .unwrap();
    let bad = provtrail(&["config", "check", path_arg], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("more than one token"));
    // Every setting has a flag: a bad value from one is refused naming the setting.
    let dir_arg = dir.path().join("flags.db").display().to_string();
    for (flag, value, setting) in [
        ("--max-connections", "0", "server.max_connections"),
        ("--shutdown-grace", "soon", "server.shutdown_grace"),
        ("--busy-timeout", "soon", "store.busy_timeout"),
    ] {
        let output = provtrail(&["serve", "--db", &dir_arg, flag, value], None);
        assert_eq!(output.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(setting), "{flag}: {stderr}");
    }
    // A bad value from the environment is refused naming the variable too, which is where the
    // value is (not in the file the setting's name points to); a flag given wins over it.
    for (variable, value, setting) in [
        ("PROVTRAIL_REQUEST_TIMEOUT", "abc", "server.request_timeout"),
        ("PROVTRAIL_MAX_DB_SIZE", "1", "store.max_size"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_provtrail"))
            .args(["serve", "--listen", "127.0.0.1:0", "--db", &dir_arg])
            .env(variable, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{variable}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(setting) && stderr.contains(&format!("environment's {variable}")),
            "{variable}: {stderr}"
        );
        let check = Command::new(env!("CARGO_BIN_EXE_provtrail"))
            .args(["config", "check", path_arg])
            .env(variable, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&check.stderr);
        assert!(stderr.contains(variable), "{variable}: {stderr}");
    }
    // With --log-json, the error that ends the process is a log record like the others.
    let output = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args([
            "serve",
            "--log-json",
            "--listen",
            "127.0.0.1:0",
            "--db",
            &dir_arg,
        ])
        .env("PROVTRAIL_REQUEST_TIMEOUT", "abc")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines() {
        let record: Value = serde_json::from_str(line).expect(line);
        assert!(record["level"].is_string(), "{line}");
    }
    let last: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "ERROR");
    assert!(
        last["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("PROVTRAIL_REQUEST_TIMEOUT"),
        "{last}"
    );
    // So is a refusal of the command line itself, asked for by the flag or the environment.
    for (args, env) in [
        (&["serve", "--log-json", "--bogus"][..], None),
        (
            &["serve", "--no-auth=maybe"][..],
            Some(("PROVTRAIL_LOG_JSON", "true")),
        ),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_provtrail"));
        command.args(args);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let record: Value = serde_json::from_str(stderr.trim()).expect(&stderr);
        assert_eq!(record["level"], "ERROR", "{stderr}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db", &dir_arg])
        .args(["--request-timeout", "5ms"])
        .env("PROVTRAIL_REQUEST_TIMEOUT", "30s")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("server.request_timeout") && !stderr.contains("environment"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_events_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_pem(dir.path(), "localhost");
    let server = TestServer::start_with(|config| {
        config.server.tls_cert = Some(cert.clone());
        config.server.tls_key = Some(key.clone());
        config.read.tokens = vec!["tls-read-token-0123456789".to_owned()];
    })
    .await;
    provtrail::install_crypto_provider();
    let tls_client = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .no_proxy()
        .build()
        .unwrap();
    // The UI's session cookie is `Secure` on an HTTPS server, also for an HTTP/1.1 request
    // without an `Origin` (whose URI carries no scheme).
    let http1 = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .no_proxy()
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = http1
        .post(format!("https://localhost:{}/sign-in", server.addr.port()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=tls-read-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Browsers are told to come back over HTTPS only.
    assert_eq!(
        signed_in.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let response = tls_client
        .post(format!("https://localhost:{}/events", server.addr.port()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(event("inv-tls"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "accepted");
    // Plain HTTP on the TLS port is not served.
    let plain = client()
        .post(server.url("/events"))
        .bearer_auth(TOKEN)
        .body(event("inv-plain"))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
}

#[test]
fn send_to_a_receiver_that_is_not_provtrail_counts_its_2xx_as_taken() {
    use std::io::{BufRead as _, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    // Each answer in turn, one per request: (status line, extra header, body, what send says,
    // its exit code).
    let answers = [
        ("200 OK", "", "OK", "taken (2xx)", 0),
        ("503 Service Unavailable", "", "busy", "refused", 1),
        // Provtrail's word counts only with a code that agrees.
        ("200 OK", "", r#"{"status":"ok"}"#, "taken (2xx)", 0),
        (
            "500 Internal Server Error",
            "",
            r#"{"status":"accepted"}"#,
            "refused",
            1,
        ),
        // A redirect is not followed: the event would go elsewhere as a GET without its body.
        ("302 Found", "location: /elsewhere\r\n", "", "redirected", 1),
        // A receiver's own word is not printed: it could be anything.
        (
            "200 OK",
            "",
            "{\"status\":\"\\u001b]0;pwned\\u0007\"}",
            "taken (2xx)",
            0,
        ),
    ];
    let server = std::thread::spawn(move || {
        for (status, header, body, _, _) in answers {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut request_body = vec![0; length];
            reader.read_exact(&mut request_body).unwrap();
            write!(
                reader.get_mut(),
                "HTTP/1.1 {status}\r\n{header}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.json");
    std::fs::write(&file, event("inv-elsewhere")).unwrap();
    for (status, _, body, outcome, code) in answers {
        let output = provtrail(
            // Each answer once: a 503 is not sent again.
            &[
                "send",
                &url,
                file.to_str().unwrap(),
                "--token",
                "t0ken",
                "--retries",
                "0",
            ],
            None,
        );
        let text = stdout(&output);
        assert_eq!(output.status.code(), Some(code), "{status} {body}: {text}");
        assert!(text.contains(outcome), "{status} {body}: {text}");
        assert!(!text.contains('\u{1b}'), "{status} {body}: {text}");
    }
    server.join().unwrap();
}

#[test]
fn an_input_without_a_document_is_an_error_for_ingest_and_send_as_for_validate() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("empty.db").display().to_string();
    let blanks = dir.path().join("blanks.jsonl");
    std::fs::write(&blanks, "\n  \n\n").unwrap();
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "").unwrap();
    // Nothing listens there: nothing may be sent anyway.
    let url = "http://127.0.0.1:9/events";
    for (args, stdin) in [
        (vec!["ingest", "--db", &db, "-"], Some(&b""[..])),
        (vec!["ingest", "--db", &db, blanks.to_str().unwrap()], None),
        (
            vec!["send", url, empty.to_str().unwrap(), "--token", "t0ken"],
            None,
        ),
        (
            vec!["send", url, blanks.to_str().unwrap(), "--token", "t0ken"],
            None,
        ),
        (vec!["validate", "--jsonl", blanks.to_str().unwrap()], None),
    ] {
        let output = provtrail(&args, stdin);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("no documents") || stdout(&output).contains("no documents"),
            "{args:?}: {stderr}"
        );
        // An input without a document is found before a store is made for it.
        assert!(!dir.path().join("empty.db").exists(), "{args:?}");
    }
    let output = provtrail(&["send", url, "--synthetic", "0", "--token", "t0ken"], None);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn send_takes_the_command_line_s_credential_over_the_environment_s() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.json");
    std::fs::write(&file, event("inv-env-credential")).unwrap();
    // Nothing listens on port 1: the send fails (1), but not on its arguments (2).
    let output = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args([
            "send",
            "http://127.0.0.1:1/events",
            file.to_str().unwrap(),
            "--basic",
            "isc:password",
            "--timeout",
            "2",
        ])
        .env("PROVTRAIL_SEND_TOKEN", "ptk_from_the_environment")
        .env_remove("PROVTRAIL_SEND_BASIC")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn the_route_commands_show_only_the_flags_that_find_the_store_and_routes() {
    let help = |args: &[&str]| stdout(&provtrail(args, None));
    assert!(help(&["serve", "--help"]).contains("--listen"));
    for command in [
        &["routes", "list", "--help"][..],
        &["routes", "test", "--help"],
        &["replay", "--help"],
        &["deadletter", "list", "--help"],
        &["deadletter", "retry", "--help"],
    ] {
        let text = help(command);
        assert!(
            text.contains("--config") && text.contains("--db"),
            "{command:?}: {text}"
        );
        for serving in [
            "--listen",
            "--ingest-token",
            "--tls-cert",
            "--max-connections",
        ] {
            assert!(
                !text.contains(serving),
                "{command:?} shows {serving}: {text}"
            );
        }
    }
    // Hidden, still taken: the configuration resolves as serve's does.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let output = provtrail(
        &[
            "routes",
            "list",
            "--db",
            db.to_str().unwrap(),
            "--listen",
            "127.0.0.1:1",
        ],
        None,
    );
    assert_ne!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_value_refused_from_the_environment_names_its_variable_and_booleans_read_alike() {
    let refused = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["export"])
        .env("PROVTRAIL_DB", "")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("PROVTRAIL_DB"), "{stderr}");
    // PROVTRAIL_LOG_JSON reads as PROVTRAIL_NO_AUTH does: 1, yes, on and true.
    for value in ["1", "yes", "on", "true", "0", "off"] {
        let output = Command::new(env!("CARGO_BIN_EXE_provtrail"))
            .args(["validate", "-"])
            .env("PROVTRAIL_LOG_JSON", value)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // Read as a boolean: the command ran (and found nothing to check).
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("PROVTRAIL_LOG_JSON"), "{value}: {stderr}");
        assert!(stdout(&output).contains("not checked"), "{value}: {stderr}");
    }
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Mounted(std::path::PathBuf);

impl Mounted {
    /// None when this process may not mount (not root, or no such capability in a container).
    fn tmpfs(at: &Path) -> Option<Mounted> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "none"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Mounted(at.to_owned()))
    }

    fn remount_read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_store_on_read_only_media_is_read_by_every_read_command() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = Mounted::tmpfs(dir.path()) else {
        eprintln!("SKIPPED: this process cannot mount a file system to make read-only media");
        return;
    };
    let db_arg = store_with_event(dir.path(), "kept.db", "inv-read-only");
    mount.remount_read_only();
    // Root writes through permissions, not through a read-only mount.
    assert!(std::fs::write(dir.path().join("probe"), b"x").is_err());
    for args in [
        vec!["search", "--db", &db_arg, "-q", "William"],
        vec![
            "search",
            "--db",
            &db_arg,
            "--invocation-id",
            "inv-read-only",
        ],
        vec!["show", "--db", &db_arg, "1"],
        vec!["export", "--db", &db_arg],
        vec!["stats", "--db", &db_arg],
        vec!["quarantine", "--db", &db_arg],
    ] {
        let output = provtrail(&args, None);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&output.stderr).contains("WARN"),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let found = provtrail(&["search", "--db", &db_arg, "-q", "William"], None);
    assert!(
        stdout(&found).contains("William Wilson"),
        "{}",
        stdout(&found)
    );
    drop(mount);
}

#[test]
fn events_imported_from_a_file_of_any_name_export_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    // A name with a line break and a tab, and one longer than a receipt's path keeps.
    let odd = dir.path().join("weird\nname\twith breaks.json");
    let deep = dir.path().join(format!("{}.json", "d".repeat(240)));
    let long = deep.join(format!("{}.json", "e".repeat(200)));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(&odd, event("inv-odd-name")).unwrap();
    std::fs::write(&long, event("inv-long-name")).unwrap();
    let first = dir.path().join("first.db").display().to_string();
    for file in [&odd, &long] {
        let output = provtrail(&["ingest", "--db", &first, file.to_str().unwrap()], None);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let export = dir.path().join("export.jsonl");
    let output = provtrail(
        &["export", "--db", &first, "-o", export.to_str().unwrap()],
        None,
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let exported = std::fs::read_to_string(&export).unwrap();
    let paths: Vec<String> = exported
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        paths[0].ends_with("weird\\nname\\twith breaks.json"),
        "{paths:?}"
    );
    assert_eq!(paths[1].chars().count(), 300, "{paths:?}");
    // Restored elsewhere: both, with the same receipts.
    let second = dir.path().join("second.db").display().to_string();
    let output = provtrail(&["ingest", "--db", &second, export.to_str().unwrap()], None);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let again = provtrail(&["export", "--db", &second], None);
    let restored = json_lines(&again);
    assert_eq!(restored.len(), 2);
    for (line, path) in restored.iter().zip(&paths) {
        assert_eq!(line["path"].as_str().unwrap(), path);
    }
}

#[test]
fn an_export_line_that_cannot_be_restored_names_its_field_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let raw = String::from_utf8(event("inv-edited")).unwrap();
    let line = |change: &dyn Fn(&mut Value)| {
        let mut line = serde_json::json!({
            "id": 1, "received_at": "2026-01-02T03:04:05.000Z", "channel": null,
            "remote_addr": "10.0.0.1:4000", "method": "POST", "path": "/events",
            "event": {}, "raw": raw,
        });
        change(&mut line);
        line.to_string()
    };
    type Edit<'a> = &'a dyn Fn(&mut Value);
    let cases: [(Edit<'_>, &str); 6] = [
        (
            &|line| line["channel"] = 5.into(),
            "`channel` is not a string",
        ),
        (
            &|line| line["received_at"] = "9999-12-31T23:00:00Z".into(),
            "is in the future: it cannot be restored",
        ),
        (&|line| line["raw"] = Value::Null, "`raw` is missing"),
        (
            &|line| line["method"] = "PO\u{7}ST".into(),
            "`method` holds control characters",
        ),
        (
            &|line| line["received_at"] = "0000-01-01T00:00:00+01:00".into(),
            "years 0000 to 9999",
        ),
        (
            &|line| line["received_at"] = "9999-12-31T23:00:00-05:00".into(),
            "years 0000 to 9999",
        ),
    ];
    let file = dir.path().join("edited.jsonl");
    let lines: Vec<String> = cases.iter().map(|(change, _)| line(*change)).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let db = dir.path().join("edited.db").display().to_string();
    let output = provtrail(
        &[
            "ingest",
            "--db",
            &db,
            file.to_str().unwrap(),
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(report["failed"], cases.len(), "{report}");
    assert_eq!(report["quarantined"], 0, "{report}");
    for (problem, (_, expected)) in report["problems"].as_array().unwrap().iter().zip(cases) {
        let error = problem["error"].as_str().unwrap();
        assert!(error.contains(expected), "{expected}: {error}");
    }
    // A CSV export holds no bodies: it is refused, not kept in quarantine.
    let source = store_with_event(dir.path(), "source.db", "inv-csv");
    let csv = dir.path().join("export.csv");
    let exported = provtrail(
        &[
            "export",
            "--db",
            &source,
            "--format",
            "csv",
            "-o",
            csv.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(exported.status.code(), Some(0));
    let target = dir.path().join("from-csv.db");
    let output = ingest_reporting_json(&target, &csv);
    assert_eq!(output.status.code(), Some(2));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("this is a CSV export"), "{said}");
    assert!(!target.exists(), "refused before a store is made for it");
    // Also once a spreadsheet has saved it again, with a byte order mark first.
    let mut marked = b"\xEF\xBB\xBF".to_vec();
    marked.extend(std::fs::read(&csv).unwrap());
    let resaved = dir.path().join("resaved.csv");
    std::fs::write(&resaved, marked).unwrap();
    let output = provtrail(
        &[
            "ingest",
            "--db",
            target.to_str().unwrap(),
            resaved.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(2));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("this is a CSV export"), "{said}");
    assert!(!target.exists(), "refused before a store is made for it");
}

/// Events on lines of their own with a stray bracket among them (left from an edit): every
/// event is kept, the bracket alone is quarantined at its line.
#[test]
fn a_stray_bracket_among_json_lines_does_not_take_the_events_with_it() {
    let dir = tempfile::tempdir().unwrap();
    // Each on one line.
    let event = |n: usize| {
        let event: Value = serde_json::from_slice(&event(&format!("inv-stray-{n}"))).unwrap();
        event.to_string()
    };
    let file = dir.path().join("events.txt");
    std::fs::write(
        &file,
        format!("{}\n{}\n]\n{}\n", event(1), event(2), event(3)),
    )
    .unwrap();
    let db = dir.path().join("stray.db");
    let output = ingest_reporting_json(&db, &file);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(report["accepted"], 3, "{report}");
    assert_eq!(report["quarantined"], 1, "{report}");
    assert_eq!(report["problems"][0]["line"], 3, "{report}");
}

#[test]
fn a_quarantine_id_below_1_is_refused_as_the_api_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let db_arg = store_with_event(dir.path(), "ids.db", "inv-ids");
    for id in ["0", "-1"] {
        let output = provtrail(&["quarantine", "--db", &db_arg, "--", id], None);
        assert_eq!(output.status.code(), Some(2), "{id}");
    }
    let missing = provtrail(&["quarantine", "--db", &db_arg, "5"], None);
    assert_eq!(missing.status.code(), Some(1));
}

/// `export -o` puts the file in place only once it is whole: an export that fails part way
/// leaves the file that was there (often the previous backup) as it was, and no part of the
/// export anywhere. A link given as the output stays a link, to the new export.
#[test]
fn an_export_that_fails_part_way_leaves_the_previous_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let db = store_of_events(dir.path(), "backup.db", "inv-backup", 3000);

    // Through a link: the link stays, its target gets the export.
    let target = dir.path().join("backups").join("trail.jsonl");
    std::fs::create_dir(target.parent().unwrap()).unwrap();
    std::fs::write(&target, "the previous backup\n").unwrap();
    let link = dir.path().join("latest.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let exported = export_to(&db, &link);
    assert_eq!(exported.status.code(), Some(0));
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(
        std::fs::read_to_string(&target).unwrap().lines().count(),
        3000
    );

    // The store's second half overwritten, its indexes and delivery log with it: nothing
    // tells which events lie beyond the damage, and the export fails part way.
    std::fs::write(&target, "the previous backup\n").unwrap();
    let size = std::fs::metadata(&db).unwrap().len();
    let damaged = {
        use std::io::{Seek as _, Write as _};
        let mut file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        file.seek(std::io::SeekFrom::Start(size / 2)).unwrap();
        file.write_all(&vec![0xFF; (size - size / 2) as usize])
            .unwrap();
        file
    };
    drop(damaged);
    let failed = export_to(&db, &link);
    assert_eq!(
        failed.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    assert!(
        std::fs::read_to_string(&target).unwrap() == "the previous backup\n",
        "the previous backup was written over"
    );
    let left: Vec<_> = std::fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(left, ["trail.jsonl"], "nothing but the previous backup");
}

/// Ctrl-C during `export -o` leaves the file that was there as it was, and no part of the
/// export beside it.
#[test]
fn an_export_interrupted_leaves_the_previous_file_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    // Many events, so that the export is still running when the signal comes.
    let db = store_of_events(dir.path(), "big.db", "inv-interrupted", 60_000);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let target = out_dir.join("trail.jsonl");
    std::fs::write(&target, "the previous backup\n").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["export", "--db", db.to_str().unwrap(), "-o"])
        .arg(&target)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the export is being written beside the file, it is interrupted.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&out_dir).unwrap().count() < 2 {
        assert!(Instant::now() < deadline, "no export was begun");
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = interrupted_after(child, 0);
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{said}");
    assert!(said.contains("it is as it was"), "{said}");
    assert!(
        std::fs::read_to_string(&target).unwrap() == "the previous backup\n",
        "the previous backup was written over"
    );
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1);
}

/// A database `name` in `dir` holding `count` copies of the test event, with invocation ids
/// `{prefix}-0`, `{prefix}-1` …, imported with `provtrail ingest` from JSON lines.
fn store_of_events(dir: &Path, name: &str, prefix: &str, count: usize) -> std::path::PathBuf {
    let event: Value = serde_json::from_slice(&event(prefix)).unwrap();
    let lines: String = (0..count)
        .map(|n| {
            let mut event = event.clone();
            event["_metadata"]["invocationId"] = Value::from(format!("{prefix}-{n}"));
            format!("{event}\n")
        })
        .collect();
    let events = dir.join(format!("{name}.jsonl"));
    std::fs::write(&events, lines).unwrap();
    let db = dir.join(name);
    let imported = provtrail(
        &[
            "ingest",
            "--db",
            db.to_str().unwrap(),
            events.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(imported.status.code(), Some(0));
    db
}

/// `-o` to what the shell opened (`/dev/stdout`) writes where the shell sends it, appended when
/// it appends; a link to a file yet to be made stays a link, to the export.
#[test]
fn an_export_to_standard_output_by_name_or_through_a_new_link_goes_where_it_leads() {
    let dir = tempfile::tempdir().unwrap();
    let db = store_of_events(dir.path(), "small.db", "inv-small", 20);
    let log = dir.path().join("app.log");
    std::fs::write(&log, "PRECIOUS\n").unwrap();
    let appended = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["export", "--db", db.to_str().unwrap(), "-o", "/dev/stdout"])
        .stdout(appended)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("PRECIOUS\n"), "the file was written over");
    assert_eq!(text.lines().count(), 21);

    let link = dir.path().join("latest.jsonl");
    std::os::unix::fs::symlink("made-now.jsonl", &link).unwrap();
    let exported = export_to(&db, &link);
    assert_eq!(exported.status.code(), Some(0));
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    let made = std::fs::read_to_string(dir.path().join("made-now.jsonl")).unwrap();
    assert_eq!(made.lines().count(), 20);
}

/// `provtrail export --db DB -o OUT`.
fn export_to(db: &Path, out: &Path) -> Output {
    provtrail(
        &[
            "export",
            "--db",
            db.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        None,
    )
}

/// `provtrail ingest --db DB FILE --format json`.
fn ingest_reporting_json(db: &Path, file: &Path) -> Output {
    provtrail(
        &[
            "ingest",
            "--db",
            db.to_str().unwrap(),
            file.to_str().unwrap(),
            "--format",
            "json",
        ],
        None,
    )
}

#[test]
fn config_check_refuses_the_files_serve_could_not_use() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let db_arg = db.to_str().unwrap();
    let ingested = provtrail(&["ingest", "--db", db_arg, "-"], Some(&event("check-1")));
    assert_eq!(
        ingested.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ingested.stderr)
    );
    let config = dir.path().join("check.toml");
    let config_arg = config.to_str().unwrap();
    let with_route = |path: &str| {
        format!(
            "[store]\npath = {db_arg:?}\n\n[[routes]]\nname = \"archive\"\n\
             [routes.sink]\ntype = \"file\"\npath = {path:?}\n"
        )
    };
    let check = || {
        let output = provtrail(&["config", "check", config_arg], None);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let archive = dir.path().join("archive.jsonl");
    std::fs::write(&config, with_route(archive.to_str().unwrap())).unwrap();
    assert_eq!(check().0, Some(0), "{}", check().1);

    // A route appending to the configuration file itself would leave it unreadable, also
    // under another name (a hard link).
    let hard_link = dir.path().join("linked.toml");
    std::fs::hard_link(&config, &hard_link).unwrap();
    for target in [config_arg, hard_link.to_str().unwrap()] {
        std::fs::write(&config, with_route(target)).unwrap();
        let (status, said) = check();
        assert_eq!(status, Some(2), "{target}: {said}");
        assert!(said.contains("the configuration file"), "{said}");
    }
    // Also when the path comes from a reference, compared as the sink resolves it.
    std::fs::write(&config, with_route("${env:ARCHIVE_PATH}")).unwrap();
    let referenced = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["config", "check", config_arg])
        .env("ARCHIVE_PATH", config_arg)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&referenced.stderr);
    assert_eq!(referenced.status.code(), Some(2), "{said}");
    assert!(said.contains("the configuration file"), "{said}");
    // And a configuration named like one of the route's rotated files, which a rotation would
    // rename the route's file over.
    let rotated_config = dir.path().join("rotating.jsonl.1");
    std::fs::write(
        &rotated_config,
        with_route(dir.path().join("rotating.jsonl").to_str().unwrap()),
    )
    .unwrap();
    let rotating = provtrail(&["config", "check", rotated_config.to_str().unwrap()], None);
    let said = String::from_utf8_lossy(&rotating.stderr);
    assert_eq!(rotating.status.code(), Some(2), "{said}");
    assert!(said.contains("files sink.path rotates to"), "{said}");
    // A route appending to another database, or to a file kept beside one.
    let other = dir.path().join("other.db");
    std::fs::copy(&db, &other).unwrap();
    for target in [other.clone(), dir.path().join("other.db-wal")] {
        std::fs::write(&config, with_route(target.to_str().unwrap())).unwrap();
        let (status, said) = check();
        assert_eq!(status, Some(2), "{}: {said}", target.display());
        assert!(said.contains("would destroy it"), "{said}");
    }

    // A store a newer provtrail made is refused, as serve refuses it.
    std::fs::write(&config, with_route(archive.to_str().unwrap())).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let (status, said) = check();
    assert_eq!(status, Some(2), "{said}");
    assert!(said.contains("newer than this build knows"), "{said}");
}

#[test]
fn route_commands_make_no_store_of_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("empty.db");
    std::fs::write(&db, "").unwrap();
    let db_arg = db.to_str().unwrap();
    let listed = provtrail(&["routes", "list", "--db", db_arg], None);
    assert_eq!(
        listed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    for args in [
        &["deadletter", "list", "--db", db_arg][..],
        &[
            "deadletter",
            "retry",
            "--all",
            "--route",
            "any",
            "--db",
            db_arg,
        ][..],
    ] {
        let refused = provtrail(args, None);
        assert_eq!(refused.status.code(), Some(2), "{args:?}");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("the file is empty"), "{args:?}: {said}");
    }
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("empty.db")]);
}

#[test]
fn validate_and_filter_read_the_bodies_an_export_holds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let db_arg = db.to_str().unwrap();
    let mut events = event("exported-1");
    events.push(b'\n');
    events.extend_from_slice(&event("exported-2"));
    let ingested = provtrail(&["ingest", "--db", db_arg, "-"], Some(&events));
    assert_eq!(
        ingested.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ingested.stderr)
    );
    // A name that is not UTF-8 is a file name like any other.
    let export = dir
        .path()
        .join(std::ffi::OsStr::from_bytes(b"trail-\xff.jsonl"));
    let exported = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["export", "--db", db_arg, "-o"])
        .arg(&export)
        .output()
        .unwrap();
    assert!(exported.status.success());
    let validated = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["validate", "--format", "json"])
        .arg(&export)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&validated.stderr);
    assert_eq!(
        validated.status.code(),
        Some(0),
        "{said}{}",
        String::from_utf8_lossy(&validated.stdout)
    );
    assert!(
        said.contains("line 1 is a line of `provtrail export`"),
        "{said}"
    );
    let filtered = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["filter", "--format", "json", "$[?($.trackingNumber)]"])
        .arg(&export)
        .output()
        .unwrap();
    assert_eq!(
        filtered.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&filtered.stderr)
    );
    let answers: Vec<Value> = String::from_utf8_lossy(&filtered.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(answers.len(), 2);
    assert!(
        answers.iter().all(|answer| answer["match"] == true),
        "{answers:?}"
    );
}

#[test]
fn ingest_of_an_array_reads_each_element_and_an_empty_array_is_no_documents() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("array.db");
    let one: Value = serde_json::from_slice(&event("inv-array-1")).unwrap();
    let two: Value = serde_json::from_slice(&event("inv-array-2")).unwrap();
    // Elements that are no events among the events: each its own document, not the end of the
    // others.
    let mixed = dir.path().join("mixed.json");
    let array = serde_json::json!([one, {"foo": 1}, 5, two]);
    std::fs::write(&mixed, serde_json::to_string_pretty(&array).unwrap()).unwrap();
    let imported = ingest_into(&db, &mixed);
    let said = stdout(&imported);
    assert_eq!(imported.status.code(), Some(1), "{said}");
    assert!(
        said.contains("2 accepted, 0 duplicate, 2 quarantined, 0 failed"),
        "{said}"
    );
    assert!(said.contains("found a number: 5"), "{said}");
    let stored = stored_invocations(&db);
    assert!(stored.contains_key("inv-array-1") && stored.contains_key("inv-array-2"));

    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "[ ]\n").unwrap();
    let nothing = ingest_into(&db, &empty);
    let said = String::from_utf8_lossy(&nothing.stderr).into_owned();
    assert_eq!(nothing.status.code(), Some(2), "{said}");
    assert!(
        said.contains("no documents: the input is an empty JSON array"),
        "{said}"
    );
}

#[test]
fn search_with_an_empty_text_is_refused_rather_than_listing_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("searched.db");
    let file = events_file(dir.path(), "events.jsonl", "inv-empty-text", 2);
    assert!(ingest_into(&db, &file).status.success());
    let searched = provtrail(
        &["search", "--db", db.to_str().unwrap(), "--text", " "],
        None,
    );
    let said = String::from_utf8_lossy(&searched.stderr).into_owned();
    assert_eq!(searched.status.code(), Some(2), "{said}");
    assert!(said.contains("--text is empty"), "{said}");
    assert!(stdout(&searched).is_empty());
    // Every other filter flag as well, in search and in stats.
    let db = db.to_str().unwrap();
    for (command, flag) in [
        ("search", "--ticket-id"),
        ("search", "--tracking-number"),
        ("search", "--source"),
        ("search", "--filter"),
        ("search", "--since"),
        ("stats", "--source"),
        ("stats", "--until"),
    ] {
        let refused = provtrail(&[command, "--db", db, flag, ""], None);
        let said = String::from_utf8_lossy(&refused.stderr).into_owned();
        assert_eq!(refused.status.code(), Some(2), "{command} {flag}: {said}");
        assert!(said.contains(&format!("{flag} is empty")), "{said}");
        assert!(stdout(&refused).is_empty(), "{command} {flag}");
    }
}

/// `routes test --event` reads within the parser's limit: a device without end, or standard
/// input past the limit, is refused rather than read on.
#[test]
fn routes_test_refuses_an_event_input_without_end() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("provtrail.toml");
    std::fs::write(
        &config,
        format!(
            "[[routes]]\nname = \"w\"\n[routes.sink]\ntype = \"file\"\npath = \"{}\"\n",
            dir.path().join("out.jsonl").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let endless = provtrail(
        &[
            "routes",
            "test",
            "w",
            "--config",
            config,
            "--event",
            "/dev/zero",
        ],
        None,
    );
    let said = String::from_utf8_lossy(&endless.stderr).into_owned();
    assert_eq!(endless.status.code(), Some(2), "{said}");
    assert!(
        said.contains("/dev/zero: the document is more than the limit of 1048576 bytes"),
        "{said}"
    );
    let piped = provtrail(
        &["routes", "test", "w", "--config", config, "--event", "-"],
        Some(&vec![b'{'; 2 * 1024 * 1024]),
    );
    let said = String::from_utf8_lossy(&piped.stderr).into_owned();
    assert_eq!(piped.status.code(), Some(2), "{said}");
    assert!(said.contains("more than the limit"), "{said}");

    // A document the filter matches but that is not a valid event would never be routed (it is
    // kept in quarantine): not a match by the exit status, and said so.
    let invalid = provtrail(
        &["routes", "test", "w", "--config", config, "--event", "-"],
        Some(br#"{"trackingNumber": "tn-1"}"#),
    );
    let said = stdout(&invalid);
    assert_eq!(invalid.status.code(), Some(1), "{said}");
    assert!(
        said.contains("the filter matches, but it would not be delivered"),
        "{said}"
    );
    let as_json = provtrail(
        &[
            "routes", "test", "w", "--config", config, "--event", "-", "--format", "json",
        ],
        Some(br#"{"trackingNumber": "tn-1"}"#),
    );
    assert_eq!(as_json.status.code(), Some(1));
    let answer: Value = serde_json::from_str(stdout(&as_json).trim()).unwrap();
    assert_eq!(answer["valid_event"], false, "{answer}");
}

/// A value that cannot be used is said to come from where it came from: the command line's flag
/// or the environment's variable, not only the configuration file's setting it stands for.
#[test]
fn a_bad_value_from_a_flag_or_the_environment_is_named_by_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never.db");
    let file = events_file(dir.path(), "events.jsonl", "inv-env", 1);
    let (db, file) = (db.to_str().unwrap(), file.to_str().unwrap());
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let output = Command::new(env!("CARGO_BIN_EXE_provtrail"))
            .args(args)
            .envs(env.iter().copied())
            .env("PROVTRAIL_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, said) = run(
        &["ingest", "--db", db, file],
        &[("PROVTRAIL_MAX_DB_SIZE", "abc")],
    );
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("(that value comes from the environment's PROVTRAIL_MAX_DB_SIZE)"),
        "{said}"
    );
    let (code, said) = run(&["ingest", "--db", db, "--max-db-size", "abc", file], &[]);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("(that value comes from the command line's --max-db-size)"),
        "{said}"
    );
    assert!(
        !Path::new(db).exists(),
        "no store is made for a refused command"
    );
    let (code, said) = run(
        &["send", "http://127.0.0.1:9/events", file],
        &[("PROVTRAIL_SEND_BASIC", "nocolon")],
    );
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("PROVTRAIL_SEND_BASIC is user:password"),
        "{said}"
    );
}

/// At its size cap the store refuses new events but still answers those it holds: the summary
/// of an import that stopped counts what of the documents read ahead was stored and what was
/// not, rather than calling them all not stored.
#[test]
fn an_import_stopped_by_the_size_cap_says_which_documents_read_ahead_were_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capped.db");
    let first = events_file(dir.path(), "first.jsonl", "inv-cap", 10);
    assert!(ingest_into(&db, &first).status.success());
    let size = std::fs::metadata(&db).unwrap().len().to_string();
    // Two new events, then the ten stored already.
    let new = events_file(dir.path(), "new.jsonl", "inv-cap-new", 2);
    let mixed = dir.path().join("mixed.jsonl");
    std::fs::write(
        &mixed,
        [
            std::fs::read_to_string(&new).unwrap(),
            std::fs::read_to_string(&first).unwrap(),
        ]
        .join("\n"),
    )
    .unwrap();
    let imported = provtrail(
        &[
            "ingest",
            "--db",
            db.to_str().unwrap(),
            "--max-db-size",
            &size,
            mixed.to_str().unwrap(),
        ],
        None,
    );
    let said = String::from_utf8_lossy(&imported.stderr).into_owned() + &stdout(&imported);
    assert_eq!(imported.status.code(), Some(1), "{said}");
    assert!(said.contains("0 accepted, 10 duplicate"), "{said}");
    // The documents refused one after the other for the same reason are one line of the list.
    assert!(
        said.contains("  lines 1 to 2 (2 documents): failed: the store is unavailable"),
        "{said}"
    );
    assert!(
        said.contains(
            "the store stopped taking documents at line 1 (the store is unavailable: the \
             database"
        ),
        "{said}"
    );
    assert!(
        said.contains(
            "of the 12 documents of lines 1 to 12, 2 were not stored (the failed lines above) \
             and 10 are in the store (accepted, duplicates or quarantined)"
        ),
        "{said}"
    );
}

/// `send` to an `http://` URL of a server that speaks TLS gets bytes that are no HTTP answer:
/// said, with the likely fix.
#[test]
fn send_over_plain_http_to_a_tls_server_says_to_use_https() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0; 65536];
        let _ = stream.read(&mut request).unwrap();
        // What a TLS server answers to bytes that are no handshake: an alert.
        let _ = stream.write_all(b"\x15\x03\x01\x00\x02\x02\x46");
    });
    let dir = tempfile::tempdir().unwrap();
    let file = events_file(dir.path(), "one.jsonl", "inv-tls", 1);
    let sent = provtrail(
        &[
            "send",
            &url,
            file.to_str().unwrap(),
            "--token",
            "abcdefghijklmnop1234",
            "--retries",
            "0",
        ],
        None,
    );
    server.join().unwrap();
    let said = stdout(&sent) + &String::from_utf8_lossy(&sent.stderr);
    assert_eq!(sent.status.code(), Some(1), "{said}");
    assert!(
        said.contains("if the server serves HTTPS, use https://"),
        "{said}"
    );
}

/// The table B-tree's pages below `page`, in key order (child pages of an interior page).
fn child_pages(file: &[u8], page_size: usize, page: u32) -> Vec<u32> {
    let start = (page as usize - 1) * page_size;
    // Page 1 begins with the 100-byte database header.
    let header = start + if page == 1 { 100 } else { 0 };
    if file[header] != 0x05 {
        return Vec::new();
    }
    let cells = u16::from_be_bytes([file[header + 3], file[header + 4]]) as usize;
    let mut children: Vec<u32> = (0..cells)
        .map(|n| {
            let at = header + 12 + 2 * n;
            let cell = start + u16::from_be_bytes([file[at], file[at + 1]]) as usize;
            u32::from_be_bytes(file[cell..cell + 4].try_into().unwrap())
        })
        .collect();
    children.push(u32::from_be_bytes(
        file[header + 8..header + 12].try_into().unwrap(),
    ));
    children
}

#[test]
fn export_from_a_store_with_damaged_pages_saves_every_event_that_reads_back() {
    // Enough for a table three levels deep.
    const EVENTS: i64 = 12_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let events = dir.path().join("events.jsonl");
    let mut lines = Vec::new();
    for n in 0..EVENTS {
        lines.extend(
            serde_json::to_vec(
                &serde_json::from_slice::<Value>(&event(&format!("inv-damaged-{n}"))).unwrap(),
            )
            .unwrap(),
        );
        lines.push(b'\n');
    }
    std::fs::write(&events, lines).unwrap();
    assert!(ingest_into(&db, &events).status.success());
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let root_of = |name: &str| -> u32 {
        conn.query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = ?1",
            [name],
            |row| row.get(0),
        )
        .unwrap()
    };
    let (root, deliveries_root) = (root_of("events"), root_of("deliveries"));
    let page_size = conn
        .query_row("PRAGMA page_size", [], |row| row.get::<_, i64>(0))
        .unwrap() as usize;
    drop(conn);
    let export_of = |db: &Path| {
        let out = dir.path().join("saved.jsonl");
        let export = export_to(db, &out);
        let saved: Vec<i64> = std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap()["id"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        (export, saved)
    };
    let original = std::fs::read(&db).unwrap();

    // A page of the delivery log, which export reads each event's client from: the events
    // themselves are whole, and every one is saved (without its client where it was there).
    let mut file = original.clone();
    let mut page = deliveries_root;
    loop {
        let children = child_pages(&file, page_size, page);
        if children.is_empty() {
            break;
        }
        page = children[children.len() / 2];
    }
    assert_ne!(page, deliveries_root);
    let start = (page as usize - 1) * page_size;
    file[start..start + 16].fill(0xff);
    let log_damaged = dir.path().join("log-damaged.db");
    std::fs::write(&log_damaged, &file).unwrap();
    let (export, saved) = export_of(&log_damaged);
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert_eq!(export.status.code(), Some(0), "{stderr}");
    assert_eq!(saved, (1..=EVENTS).collect::<Vec<i64>>(), "{stderr}");

    // The first of the pages below the events table's root, itself a page of pages: the rows
    // below it are lost, and a scan in id order stops at the first of them. The rows below the
    // root's other pages still read back, each through its own path from the root.
    let mut file = original;
    let below_root = child_pages(&file, page_size, root);
    assert!(
        below_root.len() >= 2,
        "the events table is three levels deep"
    );
    let page = below_root[0];
    assert!(
        !child_pages(&file, page_size, page).is_empty(),
        "the events table is three levels deep"
    );
    let start = (page as usize - 1) * page_size;
    file[start..start + 16].fill(0xff);
    std::fs::write(&db, &file).unwrap();
    let (export, ids) = export_of(&db);
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert_eq!(export.status.code(), Some(1), "{stderr}");
    // Every event is saved or named: those below the damaged page are the first ones, every
    // later one is saved, up to the last.
    assert!(!ids.is_empty(), "{stderr}");
    assert_eq!(ids.last(), Some(&EVENTS), "{stderr}");
    assert_eq!(ids, (ids[0]..=EVENTS).collect::<Vec<i64>>());
    let named: usize = stderr
        .lines()
        .find_map(|line| {
            line.split(" events could not be read back")
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(named as i64 + ids.len() as i64, EVENTS, "{stderr}");
}
