#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Replay of a time range with `provtrail replay`, into a file sink, while the server runs; and
//! the `routes list|test` and `deadletter list` commands on the same configuration.

mod common;
mod routes_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{TestServer, event};
use provtrail::config::FileConfig;
use routes_support::{config_text, wait_for};
use serde_json::Value;

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn provtrail(args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_provtrail"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PROVTRAIL_") {
            command.env_remove(name);
        }
    }
    let output = command.args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_time_range_delivers_exactly_the_events_of_that_range_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provtrail.db");
    let out = dir.path().join("events.jsonl");
    let routes = format!(
        r#"
[[routes]]
name = "archive"
[routes.sink]
type = "file"
path = "{}"
"#,
        out.display()
    );
    let text = config_text(&db, &routes);
    let config_file = dir.path().join("provtrail.toml");
    std::fs::write(&config_file, &text).unwrap();
    let config = FileConfig::parse(&text, Path::new("t.toml")).unwrap();
    let mut server = TestServer::start_config(&config).await;

    for n in 0..6 {
        assert_eq!(
            server
                .post("/events", event(&format!("early-{n}")))
                .await
                .status,
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let boundary = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(30)).await;
    for n in 0..4 {
        assert_eq!(
            server
                .post("/events", event(&format!("late-{n}")))
                .await
                .status,
            200
        );
    }
    wait_for("the first deliveries", Duration::from_secs(60), || {
        lines(&out).len() == 10
    })
    .await;

    let since = boundary.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let config_arg = config_file.display().to_string();
    let (code, _, stderr) = provtrail(&[
        "replay",
        "--route",
        "archive",
        "--since",
        &since,
        "--config",
        &config_arg,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("4 matched, 4 deliveries created"),
        "{stderr}"
    );
    wait_for("the replayed deliveries", Duration::from_secs(60), || {
        lines(&out).len() == 14
    })
    .await;
    let replayed: Vec<String> = lines(&out)[10..]
        .iter()
        .map(|line| {
            line["event"]["_metadata"]["invocationId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut sorted = replayed.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["late-0", "late-1", "late-2", "late-3"]);
    // The replayed lines carry the same delivery key as the originals, for deduplication.
    let all = lines(&out);
    for line in &all[10..] {
        assert!(
            all[..10]
                .iter()
                .any(|first| first["delivery"] == line["delivery"]),
            "{line}"
        );
    }

    // A replay with an extra filter and an upper bound.
    let (code, _, stderr) = provtrail(&[
        "replay",
        "--route",
        "archive",
        "--until",
        &since,
        "--filter",
        "$[?(@._metadata.invocationId == 'early-2')]",
        "--config",
        &config_arg,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("1 matched, 1 deliveries created"),
        "{stderr}"
    );
    wait_for("the filtered replay", Duration::from_secs(60), || {
        lines(&out).len() == 15
    })
    .await;

    // routes list shows the counts; routes test renders without sending.
    let (code, stdout, stderr) = provtrail(&[
        "routes",
        "list",
        "--format",
        "json",
        "--config",
        &config_arg,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let listed: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(listed["name"], "archive");
    assert_eq!(listed["counts"]["matched"], 15);
    assert_eq!(listed["counts"]["delivered"], 15);
    let sample = dir.path().join("event.json");
    std::fs::write(&sample, event("sample")).unwrap();
    let sample_arg = sample.display().to_string();
    let (code, stdout, stderr) = provtrail(&[
        "routes",
        "test",
        "archive",
        "--event",
        &sample_arg,
        "--config",
        &config_arg,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("match:  yes"), "{stdout}");
    assert!(stdout.contains("\"invocationId\": \"sample\""), "{stdout}");
    let (code, stdout, stderr) = provtrail(&["deadletter", "list", "--config", &config_arg]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.trim().is_empty(), "{stdout}");
    assert_eq!(lines(&out).len(), 15, "routes test sent nothing");
    server.shutdown().await;
}
