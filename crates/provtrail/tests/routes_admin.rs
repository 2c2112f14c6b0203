//! Admin tokens of `provtrail serve` given with `--admin-token` (repeatable) or
//! `PROVTRAIL_ADMIN_TOKEN`: they replay through the API and a read token does not; given there,
//! they replace the configuration file's; and one that is also a read or ingest token stops the
//! start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod routes_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{ServerProcess, client, event};
use routes_support::wait_for;
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
    wait_for("the first deliveries", Duration::from_secs(60), || {
        lines(dir.path()) == 3
    })
    .await;

    let (status, body) = replay(&server, Some("first-admin")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"scanned": 3, "matched": 3, "enqueued": 3}));
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
