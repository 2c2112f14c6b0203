//! Admin tokens of `provtrail serve` given with `--admin-token` (repeatable) or
//! `PROVTRAIL_ADMIN_TOKEN`: they replay through the API and a read token does not; given there,
//! they replace the configuration file's; and one that is also a read or ingest token stops the
//! start. Retries through the API name what they retry; replays take the command line's times
//! and refuse an empty range.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod routes_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{ServerProcess, client, event};
use routes_support::{none_pending, states, wait_for};
use serde_json::{Value, json};

const INGEST: &str = "ingest-token-for-admin-tests";
const READ: &str = "read-token-for-admin-tests";
const FROM_FILE: &str = "admin-token-in-the-configuration-file";

/// A configuration file with a file route and an admin token of its own.
fn write_config(dir: &Path) -> String {
    let path = dir.join("provtrail.toml");
    let text = format!(
        r#"
[admin]
tokens = ["{FROM_FILE}"]

[[routes]]
name = "archive"
[routes.sink]
type = "file"
path = "{}"
fsync = false
"#,
        dir.join("archive.jsonl").display()
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("archive.jsonl")).map_or(0, |text| text.lines().count())
}

async fn replay(server: &ServerProcess, token: Option<&str>) -> (u16, Value) {
    let mut request = client()
        .post(server.url("/api/v1/routes/archive/replay"))
        .header("content-type", "application/json")
        .body("{}");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post_events(server: &ServerProcess, ids: &[&str]) {
    for id in ids {
        let response = client()
            .post(server.url("/events"))
            .bearer_auth(INGEST)
            .header("content-type", "application/json")
            .body(event(id))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_tokens_from_the_flag_or_the_environment_replay_and_a_read_token_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let db = dir.path().join("provtrail.db").display().to_string();
    let common = [
        "--config",
        config.as_str(),
        "--db",
        db.as_str(),
        "--listen",
        "127.0.0.1:0",
        "--ingest-token",
        INGEST,
        "--read-token",
        READ,
    ];

    let mut args = common.to_vec();
    args.extend([
        "--admin-token",
        "first-admin",
        "--admin-token",
        "second-admin",
    ]);
    let mut server = ServerProcess::start(dir.path(), &args);
    post_events(&server, &["admin-0", "admin-1", "admin-2"]).await;
    // Written to the file and recorded: a replay leaves a delivery that is still pending alone.
    wait_for("the first deliveries", Duration::from_secs(60), || {
        lines(dir.path()) == 3 && none_pending(Path::new(&db), "archive")
    })
    .await;

    let (status, body) = replay(&server, Some("first-admin")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"scanned": 3, "matched": 3, "enqueued": 3, "unreadable": 0})
    );
    wait_for("the replayed deliveries", Duration::from_secs(60), || {
        lines(dir.path()) == 6
    })
    .await;
    let (status, body) = replay(&server, Some("second-admin")).await;
    assert_eq!(status, 200, "the flag is repeatable: {body}");

    let (status, body) = replay(&server, Some(READ)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let (status, _) = replay(&server, Some(FROM_FILE)).await;
    assert_eq!(status, 401, "the flag replaces the file's admin tokens");
    for token in [Some(INGEST), Some("not-a-token"), None] {
        let (status, body) = replay(&server, token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    // An admin token reads the routes too.
    let routes = client()
        .get(server.url("/api/v1/routes"))
        .bearer_auth("first-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(routes.status(), 200);
    server.terminate();
    let status = tokio::task::spawn_blocking(move || server.wait_exit())
        .await
        .unwrap();
    assert!(status.success());

    // The environment, comma-separated, instead of the flag.
    let server = ServerProcess::start_with_env(
        dir.path(),
        &common,
        &[("PROVTRAIL_ADMIN_TOKEN", "env-admin-1,env-admin-2")],
    );
    let (status, body) = replay(&server, Some("env-admin-2")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scanned"], 3);
    assert_eq!(replay(&server, Some(FROM_FILE)).await.0, 401);
    assert_eq!(replay(&server, Some(READ)).await.0, 403);
}

/// `provtrail serve …` that is expected to stop before it listens: its exit code and output.
fn serve_fails(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_provtrail"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PROVTRAIL_") {
            command.env_remove(name);
        }
    }
    let output = command
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_admin_token_that_is_also_a_read_or_ingest_token_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("refused.db").display().to_string();

    let (code, stderr) = serve_fails(
        dir.path(),
        &[
            "--db",
            &db,
            "--ingest-token",
            INGEST,
            "--read-token",
            READ,
            "--admin-token",
            READ,
        ],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("admin.tokens") && stderr.contains("must not also be a read token"),
        "{stderr}"
    );
    assert!(!stderr.contains(READ), "the token is not printed: {stderr}");

    let (code, stderr) = serve_fails(
        dir.path(),
        &["--db", &db, "--ingest-token", INGEST, "--read-token", READ],
        &[("PROVTRAIL_ADMIN_TOKEN", INGEST)],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("admin.tokens") && stderr.contains("must not also be an ingest token"),
        "{stderr}"
    );

    // The read token a zero-config start keeps beside the database counts too.
    std::fs::write(
        dir.path().join("refused.db.read-token"),
        "ptr_kept-read-token\n",
    )
    .unwrap();
    let (code, stderr) = serve_fails(
        dir.path(),
        &[
            "--db",
            &db,
            "--ingest-token",
            INGEST,
            "--admin-token",
            "ptr_kept-read-token",
        ],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("must not also be a read token"), "{stderr}");
    assert!(
        !dir.path().join("refused.db").exists(),
        "refused before the store is opened"
    );
}

/// POSTs `body` (raw text) to `path` with `token`: the status and the JSON answer.
async fn post_raw(server: &ServerProcess, path: &str, token: &str, body: &str) -> (u16, Value) {
    let response = client()
        .post(server.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_must_name_their_dead_letters_and_replays_take_the_command_lines_times() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("archive.jsonl");
    let config = dir.path().join("provtrail.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[admin]
tokens = ["{FROM_FILE}"]

[[routes]]
name = "archive"
[routes.retry]
max_attempts = 1
# A sink that cannot be written is down: its attempts use no budget, and end at max_age.
max_age = "1s"
[routes.sink]
type = "file"
path = "{}"
fsync = false
"#,
            out.display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let db_path = dir.path().join("provtrail.db");
    let db = db_path.display().to_string();
    let server = ServerProcess::start(
        dir.path(),
        &[
            "--config",
            &config,
            "--db",
            &db,
            "--listen",
            "127.0.0.1:0",
            "--ingest-token",
            INGEST,
            "--read-token",
            READ,
        ],
    );
    let count = |state: i64| {
        states(&db_path)
            .get(&("archive".to_owned(), state))
            .copied()
            .unwrap_or(0)
    };

    // Two dead letters: the directory is gone, and a second is all the route waits.
    std::fs::remove_dir_all(&out_dir).unwrap();
    post_events(&server, &["dead-0", "dead-1"]).await;
    wait_for("the dead letters", Duration::from_secs(60), || {
        count(2) == 2
    })
    .await;
    std::fs::create_dir(&out_dir).unwrap();

    // `deadletter list --format json` prints the API's documents, one per line.
    let api: Value = client()
        .get(server.url("/api/v1/deadletters"))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args([
            "deadletter",
            "list",
            "--format",
            "json",
            "--config",
            &config,
        ])
        .args(["--db", &db])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let listed: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(listed, api["items"].as_array().unwrap().clone());
    assert_eq!(listed.len(), 2);

    const RETRY: &str = "/api/v1/deadletters/retry";
    for body in ["", "{}", "null", r#"{"ids": []}"#, r#"{"all": false}"#] {
        let (status, answer) = post_raw(&server, RETRY, FROM_FILE, body).await;
        assert_eq!(status, 400, "{body:?}: {answer}");
        assert_eq!(
            answer["error"]["code"], "invalid_body",
            "{body:?}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("ids") && message.contains("route") && message.contains("all"),
            "{message}"
        );
    }
    let (status, answer) =
        post_raw(&server, RETRY, FROM_FILE, r#"{"all": true, "ids": [1]}"#).await;
    assert_eq!(status, 400, "{answer}");
    for body in [
        r#"{"route": "archvie"}"#,
        r#"{"route": "archvie", "all": true}"#,
    ] {
        let (status, answer) = post_raw(&server, RETRY, FROM_FILE, body).await;
        assert_eq!(status, 404, "{body}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("archvie"),
            "{answer}"
        );
    }
    assert_eq!(count(2), 2, "nothing was retried by the refused requests");
    // Ids that name no dead letter: none of them is a 404, some of them are counted.
    let dead: Vec<i64> = listed
        .iter()
        .map(|item| item["id"].as_i64().unwrap())
        .collect();
    let unknown = dead.iter().max().unwrap() + 1000;
    for (body, says) in [
        (
            format!(r#"{{"ids": [{unknown}, {unknown}]}}"#),
            "none of the 1 ids given names a dead letter",
        ),
        (
            format!(r#"{{"ids": [{unknown}], "route": "archive"}}"#),
            r#"dead letter of route "archive""#,
        ),
    ] {
        let (status, answer) = post_raw(&server, RETRY, FROM_FILE, &body).await;
        assert_eq!(status, 404, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {answer}");
    }
    assert_eq!(count(2), 2, "nothing was retried by the refused requests");
    let (status, answer) = post_raw(
        &server,
        RETRY,
        FROM_FILE,
        &format!(r#"{{"ids": [{}, {unknown}]}}"#, dead[0]),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"retried": 1, "not_dead": 1}));
    let (status, answer) = post_raw(&server, RETRY, FROM_FILE, r#"{"route": "archive"}"#).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"retried": 1}));
    wait_for("the retried deliveries", Duration::from_secs(60), || {
        count(1) == 2
    })
    .await;
    let (status, answer) = post_raw(&server, RETRY, FROM_FILE, r#"{"all": true}"#).await;
    assert_eq!((status, answer), (200, json!({"retried": 0})));

    // Replays: the command line's time forms, and an empty range refused naming both bounds.
    const REPLAY: &str = "/api/v1/routes/archive/replay";
    for body in [
        r#"{"since": "24h"}"#,
        r#"{"since": "2020-01-01", "until": "2099-01-01T00:00:00Z"}"#,
    ] {
        let (status, answer) = post_raw(&server, REPLAY, FROM_FILE, body).await;
        assert_eq!(status, 200, "{body}: {answer}");
        assert_eq!(answer["scanned"], 2, "{body}: {answer}");
    }
    let (status, answer) = post_raw(
        &server,
        REPLAY,
        FROM_FILE,
        r#"{"since": "2027-01-01", "until": "2026-01-01"}"#,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("since 2027-01-01") && message.contains("until 2026-01-01"),
        "{message}"
    );
    // A blank filter is refused, as the command line refuses it: it would replay everything.
    for body in [r#"{"filter": ""}"#, r#"{"filter": "  "}"#] {
        let (status, answer) = post_raw(&server, REPLAY, FROM_FILE, body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["parameter"], "filter", "{answer}");
    }
    // So is a filter that calls a function Jayway does not have: it would match nothing.
    let (status, answer) = post_raw(
        &server,
        REPLAY,
        FROM_FILE,
        r#"{"filter": "$.accountRequests.lenght()"}"#,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["parameter"], "filter", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lenght(), which Jayway does not have"),
        "{answer}"
    );
    let (status, answer) = post_raw(&server, REPLAY, FROM_FILE, r#"{"until": "2026-13-45"}"#).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["parameter"], "until", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not a valid date"),
        "{answer}"
    );
}

/// A file route's path that is, for a while, a pipe or a link to the store's database: the
/// server's deliveries wait it out, and the commands that show and retry them (which write no
/// line) must run meanwhile; the server itself does not start on such a path.
#[cfg(unix)]
#[test]
fn commands_that_deliver_nothing_run_while_a_file_routes_path_is_a_pipe_or_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provtrail.db");
    let archive = dir.path().join("archive.jsonl");
    let config = dir.path().join("provtrail.toml");
    let routes = format!(
        "[[routes]]\nname = \"archive\"\n[routes.sink]\ntype = \"file\"\npath = \"{}\"\n",
        archive.display()
    );
    std::fs::write(&config, routes_support::config_text(&db, &routes)).unwrap();
    let config = config.display().to_string();
    let events = dir.path().join("event.json");
    std::fs::write(&events, event("path-states")).unwrap();
    let (code, _, stderr) = common::run_provtrail(&[
        "ingest",
        "--db",
        &db.display().to_string(),
        &events.display().to_string(),
    ]);
    assert_eq!(code, 0, "{stderr}");

    let fifo = Command::new("mkfifo").arg(&archive).status().unwrap();
    assert!(fifo.success());
    let as_pipe = "not a regular file";
    for (state, refusal) in [
        (as_pipe, as_pipe),
        ("a link to the database", "store's files"),
    ] {
        if state != as_pipe {
            std::fs::remove_file(&archive).unwrap();
            std::os::unix::fs::symlink(&db, &archive).unwrap();
        }
        for args in [
            vec!["routes", "list", "--config", &config],
            vec!["deadletter", "list", "--config", &config],
        ] {
            let (code, stdout, stderr) = common::run_provtrail(&args);
            assert_eq!(code, 0, "{state}: {args:?}: {stderr}");
            assert!(
                stdout.contains("archive") || args[0] == "deadletter",
                "{stdout}"
            );
        }
        let (code, stderr) = serve_fails(dir.path(), &["--config", &config], &[]);
        assert_ne!(code, 0, "{state}: {stderr}");
        assert!(stderr.contains(refusal), "{state}: {stderr}");
    }
}
