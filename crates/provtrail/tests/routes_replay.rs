#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Replay of a time range with `provtrail replay`, into a file sink, while the server runs; and
//! the `routes list|test` and `deadletter list` commands on the same configuration; a file route
//! whose file or directory is removed under it; and the arguments `replay` and `deadletter retry`
//! refuse.

mod common;
mod routes_support;

use std::path::Path;
use std::time::Duration;

use common::{TestServer, event, run_into_closed_pipe, run_provtrail};
use provtrail::config::FileConfig;
use routes_support::{config_text, none_pending, states, wait_for};
use serde_json::Value;

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
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
    // Written to the file and recorded: a replay leaves a delivery that is still pending alone.
    wait_for("the first deliveries", Duration::from_secs(60), || {
        lines(&out).len() == 10 && none_pending(&db, "archive")
    })
    .await;

    let since = boundary.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let config_arg = config_file.display().to_string();
    let (code, _, stderr) = run_provtrail(&[
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
    let (code, _, stderr) = run_provtrail(&[
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
        lines(&out).len() == 15 && none_pending(&db, "archive")
    })
    .await;
    // The server's metrics count the replays another process made, as the store does: no more
    // delivered than matched.
    let metric = |text: &str, name: &str| -> u64 {
        let prefix = format!("provtrail_route_{name}_total{{route=\"archive\",sink=\"file\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = server.get("/metrics").await.text();
        let (matched, delivered) = (metric(&text, "matched"), metric(&text, "delivered"));
        if matched == 15 && delivered == 15 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "matched {matched}, delivered {delivered}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // routes list shows the counts; routes test renders without sending.
    let (code, stdout, stderr) = run_provtrail(&[
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
    let (code, stdout, stderr) = run_provtrail(&[
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
    // A file that is not JSON is an error (exit 2), not "no match" (exit 1); one that is JSON
    // but no event is tested with a warning that the server would quarantine it.
    let not_json = dir.path().join("not.json");
    std::fs::write(&not_json, "nojson").unwrap();
    let not_event = dir.path().join("not-event.json");
    std::fs::write(&not_event, r#"{"not": "event"}"#).unwrap();
    let test_file = |file: &Path| {
        let file = file.display().to_string();
        run_provtrail(&[
            "routes",
            "test",
            "archive",
            "--event",
            &file,
            "--config",
            &config_arg,
        ])
    };
    let (code, _, stderr) = test_file(&not_json);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not.json: not JSON"), "{stderr}");
    let (_, _, stderr) = test_file(&not_event);
    assert!(
        stderr.contains("warning") && stderr.contains("not a valid Provisioning Completed event"),
        "{stderr}"
    );
    assert!(stderr.contains("quarantine"), "{stderr}");
    let (code, stdout, stderr) = run_provtrail(&["deadletter", "list", "--config", &config_arg]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.trim().is_empty(), "{stdout}");
    assert_eq!(lines(&out).len(), 15, "routes test sent nothing");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_route_starts_its_file_again_when_removed_and_retries_while_its_directory_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provtrail.db");
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("a.jsonl");
    let routes = format!(
        r#"
[[routes]]
name = "arch"
[routes.retry]
initial_delay = "20ms"
max_delay = "100ms"
max_attempts = 1000
[routes.sink]
type = "file"
path = "{}"
"#,
        out.display()
    );
    let config = FileConfig::parse(&config_text(&db, &routes), Path::new("t.toml")).unwrap();
    let mut server = TestServer::start_config(&config).await;
    let post = |ids: Vec<String>| {
        let server = &server;
        async move {
            for id in ids {
                assert_eq!(server.post("/events", event(&id)).await.status, 200);
            }
        }
    };
    let delivered = |db: &Path| {
        states(db)
            .get(&("arch".to_owned(), 1))
            .copied()
            .unwrap_or(0)
    };

    post((0..3).map(|n| format!("first-{n}")).collect()).await;
    wait_for("the first lines", Duration::from_secs(60), || {
        lines(&out).len() == 3
    })
    .await;

    // Removed (as logrotate without copytruncate does): the next lines start a new file at the
    // path instead of going to the removed one.
    std::fs::remove_file(&out).unwrap();
    post((0..3).map(|n| format!("second-{n}")).collect()).await;
    wait_for(
        "the lines after the removal",
        Duration::from_secs(60),
        || lines(&out).len() == 3,
    )
    .await;
    wait_for("the results recorded", Duration::from_secs(60), || {
        delivered(&db) == 6
    })
    .await;

    // The directory removed: nothing counts as delivered until it is back.
    std::fs::remove_dir_all(&out_dir).unwrap();
    post((0..2).map(|n| format!("third-{n}")).collect()).await;
    wait_for("failed attempts", Duration::from_secs(60), || {
        let conn = common::open_db(&db);
        conn.query_row(
            "SELECT count(*) FROM route_deliveries WHERE state = 0 AND attempts >= 2",
            [],
            |row| row.get::<_, i64>(0),
        )
        .unwrap()
            == 2
    })
    .await;
    assert_eq!(
        delivered(&db),
        6,
        "not delivered while the directory is gone"
    );
    std::fs::create_dir(&out_dir).unwrap();
    wait_for(
        "the lines once the directory is back",
        Duration::from_secs(60),
        || lines(&out).len() == 2,
    )
    .await;
    wait_for("every delivery", Duration::from_secs(60), || {
        delivered(&db) == 8
    })
    .await;
    let ids: Vec<String> = lines(&out)
        .iter()
        .map(|line| line["event"]["_metadata"]["invocationId"].to_string())
        .collect();
    assert!(ids.iter().all(|id| id.contains("third-")), "{ids:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_deadletter_retry_refuse_what_they_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provtrail.db");
    let routes = format!(
        r#"
[[routes]]
name = "archive"
[routes.sink]
type = "file"
path = "{}"
"#,
        dir.path().join("events.jsonl").display()
    );
    let text = config_text(&db, &routes);
    let config_file = dir.path().join("provtrail.toml");
    std::fs::write(&config_file, &text).unwrap();
    let config = config_file.display().to_string();
    // The commands need a store to open.
    let mut server =
        TestServer::start_config(&FileConfig::parse(&text, Path::new("t.toml")).unwrap()).await;
    let replay = |extra: &[&str]| {
        let mut args = vec!["replay", "--route", "archive", "--config", &config];
        args.extend_from_slice(extra);
        run_provtrail(&args)
    };

    // An empty range reads nothing: refused, naming both bounds.
    let (code, _, stderr) = replay(&["--since", "2027-01-01", "--until", "2026-01-01"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--since 2027-01-01") && stderr.contains("--until 2026-01-01"),
        "{stderr}"
    );
    assert!(!stderr.contains("events read"), "{stderr}");

    // A date that does not exist is called that, not a parse position.
    let (code, _, stderr) = replay(&["--since", "2026-13-45"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is not a valid date"), "{stderr}");
    assert!(!stderr.contains("invalid character"), "{stderr}");

    // A filter that does not compile is reported once.
    let (code, _, stderr) = replay(&["--filter", "$[?(@.a == "]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.matches("does not compile").count(), 1, "{stderr}");
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    let reason = error_lines[0].rsplit(": ").next().unwrap();
    assert_eq!(stderr.matches(reason).count(), 1, "{stderr}");

    // A filter calling a function Jayway does not have would match nothing: refused, as a
    // route's filter is.
    let (code, _, stderr) = replay(&["--filter", "$.accountRequests.lenght()"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("lenght(), which Jayway does not have"),
        "{stderr}"
    );
    assert!(!stderr.contains("events read"), "{stderr}");

    // A blank filter would replay everything the route matches: refused.
    let (code, _, stderr) = replay(&["--filter", " "]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--filter is empty"), "{stderr}");

    // The forms the API accepts, and a range in order.
    let (code, _, stderr) = replay(&["--since", "48h", "--until", "2099-01-01"]);
    assert_eq!(code, 0, "{stderr}");

    // deadletter retry: a route nobody knows is an error, not "0 retried"; --all and --id
    // contradict each other.
    let retry = |extra: &[&str]| {
        let mut args = vec!["deadletter", "retry", "--config", &config];
        args.extend_from_slice(extra);
        run_provtrail(&args)
    };
    let (code, _, stderr) = retry(&["--route", "archvie"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no route \"archvie\""), "{stderr}");
    assert!(stderr.contains("(configured: archive"), "{stderr}");
    // Listing one too: an empty list would read as "no dead letters".
    let (code, stdout, stderr) = run_provtrail(&[
        "deadletter",
        "list",
        "--route",
        "archvie",
        "--config",
        &config,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("no route \"archvie\""), "{stderr}");
    // Ids that name no dead delivery retried nothing: a failure that says so.
    let (code, _, stderr) = retry(&["--id", "999999"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("1 of the 1 ids given name no dead delivery"),
        "{stderr}"
    );
    // With a route, the message says whose dead delivery it is not.
    let (code, _, stderr) = retry(&["--id", "999999", "--route", "archive"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("name no dead delivery of route \"archive\""),
        "{stderr}"
    );
    let (code, _, stderr) = retry(&["--route", "archive"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = retry(&["--all", "--id", "1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    // The API's bounds for a page: 1 to 1000.
    for limit in ["0", "1001"] {
        let (code, _, stderr) =
            run_provtrail(&["deadletter", "list", "--limit", limit, "--config", &config]);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("1..=1000"), "{stderr}");
    }

    // Output into a pipe whose reader has gone (`| head -1`) ends the command quietly, not in a
    // panic, with the status of a program the signal ends (141), not a success.
    for args in [
        vec!["routes", "test", "archive", "--config", &config],
        vec!["routes", "list", "--config", &config],
        vec!["routes", "list", "--format", "json", "--config", &config],
    ] {
        let (code, stderr) = run_into_closed_pipe(&args);
        assert_eq!(code, 141, "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
    // With no dead letters there is nothing to write: the command finishes.
    let (code, stderr) = run_into_closed_pipe(&["deadletter", "list", "--config", &config]);
    assert_eq!(code, 0, "{stderr}");
    server.shutdown().await;
}

/// A replay's filters run beside ingest, not in its place: a replay with a filter that takes time
/// quadratic in a large event's size leaves health probes and ingest answering (on a runtime of
/// one worker, which the evaluation would otherwise hold), and stops at the time one event may
/// take, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_replay_with_a_slow_filter_holds_up_neither_health_nor_ingest() {
    use routes_support::ADMIN_TOKEN;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provtrail.db");
    let routes = format!(
        r#"
[[routes]]
name = "archive"
[routes.sink]
type = "file"
path = "{}"
fsync = false
"#,
        dir.path().join("events.jsonl").display()
    );
    let config = FileConfig::parse(&config_text(&db, &routes), Path::new("t.toml")).unwrap();
    let mut server = TestServer::start_config(&config).await;
    // A valid event with 50,000 numbers in a field of its own: comparing every node with every
    // other is billions of steps.
    let mut large: Value = serde_json::from_slice(&event("large")).unwrap();
    large["extra"] = (0..50_000).collect::<Vec<u32>>().into();
    let answer = server
        .post("/events", serde_json::to_vec(&large).unwrap())
        .await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );

    let replay = common::client()
        .post(server.url("/api/v1/routes/archive/replay"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"filter": "$..*[?(@ == $..*)]", "ignore_route_filter": true}"#)
        .timeout(Duration::from_secs(120))
        .send();
    let waited = tokio::spawn(replay);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health = common::client()
        .get(server.url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("health answers while the replays run");
    assert_eq!(health.status(), 200);
    let kept = tokio::time::timeout(
        Duration::from_secs(5),
        server.post("/events", event("during-replay")),
    )
    .await
    .expect("ingest answers while the replays run");
    assert_eq!(kept.status, 200);

    let answer = waited.await.unwrap().unwrap();
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.unwrap();
    assert!(
        body.to_string()
            .contains("the filter did not finish on event 1 within 10s"),
        "{body}"
    );
    server.shutdown().await;
}

/// Dead letters of a route that is no longer configured (renamed) are made pending again, and
/// `deadletter retry` says that they wait for the route to be configured again, rather than that
/// a running server delivers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_the_dead_letters_of_a_route_no_longer_configured_says_they_wait_for_it() {
    use routes_support::{Mode, Receiver, webhook_route};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provtrail.db");
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::RefuseMarked(400));
    let text = config_text(&db, &webhook_route("perm", &receiver.url(), ""));
    let mut server =
        TestServer::start_config(&FileConfig::parse(&text, Path::new("t.toml")).unwrap()).await;
    let refused = String::from_utf8(event("dead-1"))
        .unwrap()
        .replace("tn-dead-1", routes_support::REFUSED_MARK);
    assert_eq!(server.post("/events", refused).await.status, 200);
    wait_for("the dead letter", Duration::from_secs(30), || {
        states(&db).get(&("perm".to_owned(), 2)) == Some(&1)
    })
    .await;
    server.shutdown().await;

    // The route renamed in the configuration.
    let renamed = config_text(&db, &webhook_route("perm2", &receiver.url(), ""));
    let config_file = dir.path().join("provtrail.toml");
    std::fs::write(&config_file, &renamed).unwrap();
    let config = config_file.display().to_string();
    let (code, _, stderr) = run_provtrail(&[
        "deadletter",
        "retry",
        "--route",
        "perm",
        "--config",
        &config,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("1 dead delivery is pending again"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("route \"perm\" is not configured: its 1 pending delivery is delivered once"),
        "{stderr}"
    );
    assert!(!stderr.contains("a running server delivers"), "{stderr}");
}
