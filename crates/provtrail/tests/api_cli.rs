//! `provtrail search`, `show`, `stats` and `quarantine`, the built binary, against a database file (`--db`) and
//! against a running server (`--url`): the same output either way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_support;
mod common;

use std::path::Path;
use std::process::{Command, Output};

use api_support::{READ, Seeded, requests};
use common::{ServerProcess, TOKEN};
use serde_json::Value;

struct Setup {
    seeded: Seeded,
    server: ServerProcess,
}

fn setup() -> Setup {
    let seeded = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(api_support::seed(40));
    let db = seeded.db.to_str().unwrap().to_owned();
    let server = ServerProcess::start(
        seeded.dir.path(),
        &[
            "--db",
            &db,
            "--listen",
            "127.0.0.1:0",
            "--ingest-token",
            TOKEN,
            "--read-token",
            READ,
        ],
    );
    Setup { seeded, server }
}

fn provtrail(args: &[&str], env: &[(&str, &str)]) -> Output {
    provtrail_in(Path::new("."), args, env)
}

impl Setup {
    fn db(&self) -> &str {
        self.seeded.db.to_str().unwrap()
    }

    fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Runs `command args` on the file and on the server; both must agree on everything.
    fn both(&self, command: &str, args: &[&str]) -> Output {
        let mut on_file = vec![command, "--db", self.db()];
        on_file.extend_from_slice(args);
        let url = self.url();
        let mut on_server = vec![command, "--url", &url, "--token", READ];
        on_server.extend_from_slice(args);
        let file = provtrail(&on_file, &[]);
        let server = provtrail(&on_server, &[]);
        assert_eq!(
            file.status.code(),
            server.status.code(),
            "{args:?}\nfile: {}\nserver: {}",
            String::from_utf8_lossy(&file.stderr),
            String::from_utf8_lossy(&server.stderr)
        );
        assert!(
            file.stdout == server.stdout,
            "{command} {args:?} differs:\n--db:\n{}\n--url:\n{}",
            String::from_utf8_lossy(&file.stdout),
            String::from_utf8_lossy(&server.stdout)
        );
        assert_eq!(
            String::from_utf8_lossy(&file.stderr),
            String::from_utf8_lossy(&server.stderr),
            "{command} {args:?}"
        );
        file
    }
}

fn ids(output: &Output) -> Vec<i64> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

#[test]
fn search_gives_the_same_output_from_a_file_and_from_a_server() {
    let setup = setup();
    let seeded = &setup.seeded;
    let sample = &seeded.events[11];
    let name = sample.json["recipient"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let tracking = sample.json["trackingNumber"].as_str().unwrap().to_owned();
    let since = api_support::NOW - 2 * api_support::DAY;
    let since_text = chrono::DateTime::from_timestamp_millis(since)
        .unwrap()
        .to_rfc3339();
    let filter = "$[?($.accountRequests[*].provisioningResult contains 'FAILED')]";
    let flag_sets: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--result", "FAILED"],
        vec!["--filter", filter, "--limit", "5"],
        vec!["--identity", &name, "--all", "--limit", "2"],
        vec!["--tracking-number", &tracking],
        vec!["--since", &since_text, "--channel", "prod"],
        vec!["-q", "connector", "--all"],
        vec!["--source", "nowhere"],
    ];
    for flags in &flag_sets {
        for format in ["table", "json", "jsonl", "csv"] {
            let mut args = flags.clone();
            args.extend(["--format", format]);
            let output = setup.both("search", &args);
            assert_eq!(output.status.code(), Some(0), "{args:?}");
        }
    }

    // What the lines say.
    let all = setup.both("search", &["--all", "--limit", "7", "--format", "jsonl"]);
    assert_eq!(
        ids(&all),
        seeded.expected(|_| true),
        "--all follows every cursor"
    );
    let failed = setup.both(
        "search",
        &["--filter", filter, "--all", "--format", "jsonl"],
    );
    assert_eq!(
        ids(&failed),
        seeded.expected(|seed| requests(&seed.json)
            .iter()
            .any(|r| r["provisioningResult"] == "FAILED"))
    );
    let mine = setup.both("search", &["--identity", &name, "--format", "json"]);
    let list: Vec<Value> = serde_json::from_slice(&mine.stdout).unwrap();
    assert!(!list.is_empty());
    assert!(
        list.iter()
            .all(|event| event["recipient_name"] == name.as_str()
                || event["requester_name"] == name.as_str())
    );
    let nothing = setup.both("search", &["--source", "nowhere", "--format", "json"]);
    assert_eq!(String::from_utf8_lossy(&nothing.stdout), "[]\n");
    let csv = setup.both(
        "search",
        &["--tracking-number", &tracking, "--format", "csv"],
    );
    let text = String::from_utf8(csv.stdout).unwrap();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("id,received_at,tracking_number")
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with(&format!("{},", sample.id))
    );

    // A page that is not the last says how to continue, and the cursor it names gives the
    // next page.
    let first = setup.both("search", &["--limit", "3", "--format", "jsonl"]);
    let hint = String::from_utf8_lossy(&first.stderr).into_owned();
    let cursor = hint
        .split_once("continue with --cursor ")
        .and_then(|(_, rest)| rest.split([',', ' ', '\n']).next())
        .unwrap_or_else(|| panic!("no cursor in {hint:?}"));
    assert!(hint.starts_with("more events may match: "), "{hint}");
    let next = setup.both(
        "search",
        &["--limit", "3", "--format", "jsonl", "--cursor", cursor],
    );
    let (first_ids, next_ids) = (ids(&first), ids(&next));
    assert_eq!((first_ids.len(), next_ids.len()), (3, 3));
    assert!(
        first_ids.iter().min() > next_ids.iter().max(),
        "{first_ids:?} then {next_ids:?}"
    );
}

#[test]
fn the_table_is_aligned_and_fits_the_width_it_is_given() {
    let setup = setup();
    let output = provtrail(
        &["search", "--db", setup.db(), "--limit", "20"],
        &[("COLUMNS", "100")],
    );
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 21);
    assert!(lines[0].starts_with("TIME"));
    for line in &lines {
        assert!(line.chars().count() <= 100, "{line:?}");
    }
    // Every column starts at the same place on every line.
    let id_column = lines[0].find("ID").unwrap();
    let tracking_column = lines[0].find("TRACKING").unwrap();
    for line in &lines[1..] {
        let chars: Vec<char> = line.chars().collect();
        assert_eq!(chars[tracking_column - 1], ' ', "{line}");
        assert_ne!(chars[tracking_column], ' ', "{line}");
        assert_ne!(
            chars[tracking_column - 3],
            ' ',
            "ids are right-aligned: {line} {id_column}"
        );
    }
    assert!(text.contains('…'), "long cells are shortened:\n{text}");
}

#[test]
fn show_finds_by_id_or_tracking_number_and_prints_the_raw_body_exactly() {
    let setup = setup();
    let example = setup.seeded.events.last().unwrap();
    let id = example.id.to_string();
    let text = setup.both("show", &[&id]);
    assert_eq!(text.status.code(), Some(0));
    let text = String::from_utf8(text.stdout).unwrap();
    for expected in [
        &format!("Event {id}"),
        "4b4d982dddff4267ab12f0f1e72b5a6d",
        "William Wilson",
        "Account requests",
        "SUCCESS  Modify  Corporate Active Directory",
        "account CN=Rob.Robertson,ou=csm,ou=sales,dc=helpco,dc=com",
        "ticket 72619262",
        "+ memberOf CN=sales,DC=helpco,DC=com (Add)",
        "Errors\n  - Connector AD Failed",
        "Warnings\n  - Notification Skipped due to invalid email",
        "Channel         docs",
        "POST /events/docs from 127.0.0.1:40000",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let by_tracking = setup.both("show", &["4b4d982dddff4267ab12f0f1e72b5a6d"]);
    assert_eq!(String::from_utf8(by_tracking.stdout).unwrap(), text);

    let raw = setup.both("show", &[&id, "--raw"]);
    assert_eq!(raw.stdout, example.raw, "the body byte for byte");
    let json = setup.both("show", &[&id, "--format", "json"]);
    let detail: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(detail["event"], example.json);
    assert_eq!(detail["summary"]["id"], example.id);

    let missing = setup.both("show", &["no-such-tracking-number"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(missing.stdout.is_empty());
    let missing = setup.both("show", &["999999"]);
    assert_eq!(missing.status.code(), Some(1));
    // Only an id as written by provtrail is one: these are tracking numbers (none has them).
    for not_an_id in [format!("0{id}"), format!("+{id}")] {
        let missing = setup.both("show", &[&not_an_id]);
        assert_eq!(missing.status.code(), Some(1), "{not_an_id:?}");
    }
}

#[test]
fn quarantine_lists_and_shows_entries_the_same_either_way() {
    let setup = setup();
    let [invalid, not_json] = setup.seeded.quarantined[..] else {
        panic!("{:?}", setup.seeded.quarantined)
    };
    let list = setup.both("quarantine", &[]);
    assert_eq!(list.status.code(), Some(0));
    let text = String::from_utf8(list.stdout).unwrap();
    let entries: Vec<&str> = text.lines().filter(|line| !line.starts_with(' ')).collect();
    assert_eq!(entries.len(), 2, "{text}");
    assert!(
        entries[0].starts_with(&format!("{not_json}  ")) && entries[0].contains("not_json"),
        "newest first: {text}"
    );
    assert!(
        entries[1].starts_with(&format!("{invalid}  ")) && entries[1].contains("invalid_event"),
        "{text}"
    );
    assert!(text.contains("    trackingNumber: "), "{text}");
    assert!(text.contains("… and "), "more problems than listed: {text}");

    let only = setup.both(
        "quarantine",
        &["--reason", "invalid_event", "--format", "json"],
    );
    let page: Value = serde_json::from_slice(&only.stdout).unwrap();
    let ids: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [invalid]);
    let paged = setup.both("quarantine", &["--limit", "1"]);
    let paged = String::from_utf8(paged.stdout).unwrap();
    assert!(paged.contains("more: --cursor "), "{paged}");

    // One entry in full; its body as received, also when it is not text.
    let shown = setup.both("quarantine", &[&invalid.to_string()]);
    let shown = String::from_utf8(shown.stdout).unwrap();
    for expected in [
        &format!("quarantine entry {invalid}"),
        "reason         invalid_event",
        "problems (",
        "body\n  {\"a\": 1}",
    ] {
        assert!(
            shown.contains(expected),
            "{expected:?} missing from:\n{shown}"
        );
    }
    let raw = setup.both("quarantine", &[&not_json.to_string(), "--raw"]);
    assert_eq!(raw.stdout, b"\xff\xfe not json");
    let binary = setup.both("quarantine", &[&not_json.to_string()]);
    assert!(
        String::from_utf8(binary.stdout)
            .unwrap()
            .contains("not UTF-8 text")
    );
    let missing = setup.both("quarantine", &["999999"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(missing.stdout.is_empty());
}

#[test]
fn stats_give_the_same_totals_per_source_and_series_either_way() {
    let setup = setup();
    let since = "2026-11-01";
    let until = "2026-12-01";
    let text = setup.both(
        "stats",
        &["--since", since, "--until", until, "--bucket", "day"],
    );
    assert_eq!(text.status.code(), Some(0));
    let text = String::from_utf8(text.stdout).unwrap();
    for expected in [
        "Account requests from",
        "By source",
        "FAILURE RATE",
        "Top errors",
        "Per day",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let json = setup.both(
        "stats",
        &[
            "--since", since, "--until", until, "--format", "json", "--top", "3",
        ],
    );
    let stats: Value = serde_json::from_slice(&json.stdout).unwrap();
    let total: usize = setup
        .seeded
        .events
        .iter()
        .map(|seed| requests(&seed.json).len())
        .sum();
    assert_eq!(stats["requests"]["total"], total);
    assert_eq!(stats["top_errors"].as_array().unwrap().len(), 3);
    let hourly = setup.both(
        "stats",
        &[
            "--since", since, "--until", until, "--bucket", "hour", "--source", "nowhere",
        ],
    );
    assert_eq!(hourly.status.code(), Some(0));
    // No requests: no failure rate, rather than one that reads as "none failed".
    let hourly = String::from_utf8(hourly.stdout).unwrap();
    assert!(hourly.contains("failure rate n/a"), "{hourly}");
    assert!(!hourly.contains("0.0%"), "{hourly}");
}

#[test]
fn a_servers_error_text_reaches_the_terminal_without_its_control_codes() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0; 4096];
        let _ = stream.read(&mut request).unwrap();
        let body = "\u{1b}]0;owned\u{7}\u{1b}[2J broken";
        write!(
            stream,
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let output = provtrail(&["search", "--url", &url, "--token", READ], &[]);
    server.join().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\u{7}'),
        "{stderr:?}"
    );
    assert!(stderr.contains("\\u001b]0;owned"), "{stderr}");
}

/// A server that sends an answer without end: the command stops reading at a bound far above
/// what the read API answers, rather than taking the machine's memory.
#[test]
fn an_answer_without_end_is_cut_off_not_read_whole() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0; 4096];
        let _ = stream.read(&mut request).unwrap();
        stream
            .write_all(b"HTTP/1.1 500 Internal Server Error\r\nconnection: close\r\n\r\n")
            .unwrap();
        let chunk = vec![b'x'; 1024 * 1024];
        // Past the bound; the client closes its end before.
        for _ in 0..300 {
            if stream.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let output = provtrail(&["stats", "--url", &url, "--token", READ], &[]);
    server.join().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("larger than 256 MiB"), "{stderr}");
}

/// The URL is the server's address: a query or credentials in it are refused, and a password
/// is not echoed.
#[test]
fn a_url_with_a_query_or_credentials_is_refused_without_echoing_the_password() {
    for (url, said) in [
        ("http://127.0.0.1:9/?x=1", "without a ?query or #fragment"),
        ("http://127.0.0.1:9/#top", "without a ?query or #fragment"),
        (
            "http://someone:s3cret-pass@127.0.0.1:9",
            "holds a user name or password",
        ),
    ] {
        let output = provtrail(&["show", "1", "--url", url, "--token", READ], &[]);
        assert_eq!(output.status.code(), Some(2), "{url}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(said), "{url}: {stderr}");
        assert!(!stderr.contains("s3cret-pass"), "{url}: {stderr}");
    }
}

#[test]
fn errors_exit_2_with_a_message_either_way() {
    let setup = setup();
    let bad_since = setup.both("search", &["--since", "whenever"]);
    assert_eq!(bad_since.status.code(), Some(2));
    let message = String::from_utf8_lossy(&bad_since.stderr);
    assert!(
        message.contains("`--since`") && message.contains("RFC 3339"),
        "{message}"
    );
    // Each parameter the API names is said as the flag it came from.
    let long_text = "x".repeat(1001);
    for (command, args, flag) in [
        ("search", vec!["--text", long_text.as_str()], "`--text`"),
        (
            "search",
            vec!["--tracking-number", long_text.as_str()],
            "`--tracking-number`",
        ),
        ("search", vec!["--limit", "5000"], "`--limit`"),
        ("stats", vec!["--until", "whenever"], "`--until`"),
        ("quarantine", vec!["--cursor", "x"], "`--cursor`"),
    ] {
        let refused = setup.both(command, &args);
        assert_eq!(refused.status.code(), Some(2));
        let message = String::from_utf8_lossy(&refused.stderr);
        assert!(message.contains(flag), "{command} {args:?}: {message}");
    }
    let bad_filter = setup.both("search", &["--filter", "$[?(@.a == )]"]);
    assert_eq!(bad_filter.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_filter.stderr).contains("position"));

    let url = setup.url();
    let wrong = provtrail(&["search", "--url", &url, "--token", TOKEN], &[]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("--token"));
    let none = provtrail(&["stats", "--url", &url], &[]);
    assert_eq!(none.status.code(), Some(2));

    // The token from the environment or a file works like --token.
    let env = provtrail(
        &["search", "--limit", "1"],
        &[("PROVTRAIL_URL", &url), ("PROVTRAIL_READ_TOKEN", READ)],
    );
    assert_eq!(
        env.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&env.stderr)
    );
    let token_file = setup.seeded.dir.path().join("read-token");
    std::fs::write(&token_file, format!("{READ}\n")).unwrap();
    let file = provtrail(
        &[
            "show",
            "1",
            "--url",
            &format!("{url}/api/v1/"),
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(
        file.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&file.stderr)
    );

    // As serve takes PROVTRAIL_READ_TOKEN: references resolved, the first of a list.
    let reference = format!("${{file:{}}}", token_file.display());
    for token in [reference.as_str(), &format!("{READ},another-token")] {
        let output = provtrail(
            &["search", "--limit", "1", "--url", &url],
            &[("PROVTRAIL_READ_TOKEN", token)],
        );
        exits(&output, 0);
    }
    // An empty token file is said to be empty, not sent as an empty token.
    let empty = setup.seeded.dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let output = provtrail(
        &[
            "search",
            "--url",
            &url,
            "--token-file",
            empty.to_str().unwrap(),
        ],
        &[],
    );
    let said = exits(&output, 2);
    assert!(said.contains("is empty"), "{said}");

    let missing = Path::new(setup.seeded.dir.path()).join("missing.db");
    let output = provtrail(&["stats", "--db", missing.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no database"));
    assert!(!missing.exists(), "a missing database is not created");
}

/// Asserts that `output` is of a command that exited with `code`, and gives what it said on
/// standard error.
fn exits(output: &Output, code: i32) -> String {
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{said}");
    said
}

/// `provtrail` in `cwd`, with only the `PROVTRAIL_*` variables of `env`.
fn provtrail_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_provtrail"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("PROVTRAIL_") || name == "COLUMNS" {
            command.env_remove(&*name);
        }
    }
    command
        .current_dir(cwd)
        .args(["--log", "warn"])
        .args(args)
        .envs(env.iter().copied());
    command.output().unwrap()
}

#[test]
fn without_db_the_commands_use_the_store_serve_would_use() {
    let setup = setup();
    let elsewhere = tempfile::tempdir().unwrap();
    let config = elsewhere.path().join("prod.toml");
    std::fs::write(&config, format!("[store]\npath = {:?}\n", setup.db())).unwrap();
    let config_arg = config.to_str().unwrap();
    let expected = provtrail(&["stats", "--format", "json", "--db", setup.db()], &[]);
    assert_eq!(expected.status.code(), Some(0));
    // Named by PROVTRAIL_CONFIG, by --config, or found as ./provtrail.toml: the store of
    // store.path, not a ./provtrail.db.
    let by_variable = provtrail_in(
        elsewhere.path(),
        &["stats", "--format", "json"],
        &[("PROVTRAIL_CONFIG", config_arg)],
    );
    let by_flag = provtrail_in(
        elsewhere.path(),
        &["stats", "--format", "json", "--config", config_arg],
        &[],
    );
    std::fs::copy(&config, elsewhere.path().join("provtrail.toml")).unwrap();
    let by_default = provtrail_in(elsewhere.path(), &["stats", "--format", "json"], &[]);
    for output in [&by_variable, &by_flag, &by_default] {
        exits(output, 0);
        assert_eq!(output.stdout, expected.stdout);
    }
    // `export` too, to standard output for `-o -`.
    let exported = provtrail_in(elsewhere.path(), &["export", "-o", "-"], &[]);
    exits(&exported, 0);
    let direct = provtrail(&["export", "--db", setup.db()], &[]);
    assert!(!direct.stdout.is_empty());
    assert_eq!(exported.stdout, direct.stdout);
    assert!(!elsewhere.path().join("-").exists());
    // PROVTRAIL_DB wins over the file, as it does for serve; set but empty, it is refused.
    let empty = provtrail_in(elsewhere.path(), &["stats"], &[("PROVTRAIL_DB", "")]);
    let said = exits(&empty, 2);
    assert!(said.contains("PROVTRAIL_DB is set but empty"), "{said}");
    // `ingest` fills the configured store and makes no ./provtrail.db.
    let other = elsewhere.path().join("other.db");
    std::fs::write(
        elsewhere.path().join("provtrail.toml"),
        format!("[store]\npath = {:?}\n", other.to_str().unwrap()),
    )
    .unwrap();
    let payload =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/payloads/doc_example.json");
    let event = elsewhere.path().join("event.json");
    match std::fs::copy(&payload, &event) {
        Ok(_) => {}
        Err(_) => {
            let exported = String::from_utf8_lossy(&exported.stdout).into_owned();
            std::fs::write(&event, exported.lines().next().unwrap()).unwrap();
        }
    }
    let ingested = provtrail_in(elsewhere.path(), &["ingest", "event.json"], &[]);
    exits(&ingested, 0);
    assert!(other.exists());
    assert!(!elsewhere.path().join("provtrail.db").exists());
    // A configuration file that cannot be read leaves the store unknown: an error, not a guess.
    std::fs::write(elsewhere.path().join("provtrail.toml"), "[store\n").unwrap();
    let broken = provtrail_in(elsewhere.path(), &["search"], &[]);
    let said = exits(&broken, 2);
    assert!(said.contains("give --db"), "{said}");
}

#[test]
fn a_read_only_copy_without_its_search_index_still_shows_its_events() {
    let seeded = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(api_support::seed(5));
    // A backup of the database file alone (as `sqlite3 .backup` makes), which this user may
    // read but not write.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("backup.db");
    std::fs::copy(&seeded.db, &copy).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(copy_dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0");
    // The superuser writes whatever the modes say: run as nobody then.
    let run = |args: &[&str]| -> Output {
        let mut command = if root {
            let mut command = Command::new("setpriv");
            command
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_provtrail"));
            command
        } else {
            Command::new(env!("CARGO_BIN_EXE_provtrail"))
        };
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PROVTRAIL_") {
                command.env_remove(name);
            }
        }
        command.current_dir(copy_dir.path()).args(args);
        command.output().unwrap()
    };
    let shown = run(&["show", "1", "--db", "backup.db"]);
    let said = String::from_utf8_lossy(&shown.stderr);
    assert_eq!(shown.status.code(), Some(0), "{said}");
    assert!(String::from_utf8_lossy(&shown.stdout).contains("Event 1"));
    assert!(said.contains("search index"), "{said}");
    let listed = run(&["search", "--format", "jsonl", "--db", "backup.db"]);
    exits(&listed, 0);
    assert_eq!(ids(&listed).len(), seeded.events.len());
    // What needs the index is refused, said as such: not an empty answer taken for complete.
    let tracking = seeded.events[0].json["trackingNumber"]
        .as_str()
        .unwrap()
        .to_owned();
    for args in [
        vec![
            "search",
            "--tracking-number",
            tracking.as_str(),
            "--db",
            "backup.db",
        ],
        vec!["search", "--text", "failed", "--db", "backup.db"],
        vec!["show", tracking.as_str(), "--db", "backup.db"],
    ] {
        let refused = run(&args);
        let said = exits(&refused, 2);
        assert!(
            said.contains("cannot search this store"),
            "{args:?}: {said}"
        );
        assert!(refused.stdout.is_empty(), "{args:?}");
    }
    std::fs::set_permissions(copy_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}
