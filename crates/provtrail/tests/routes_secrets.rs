#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Secrets of routes kept out of everything provtrail shows: credentials in URLs (refused for
//! webhooks, hidden for NATS), short secrets in a webhook's path and query, secrets a receiver
//! echoes escaped, secret-named headers in the preview, and NATS credentials in trace logs.

mod common;
mod routes_support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use common::{ServerProcess, TestServer, client, event, open_db, run_provtrail};
use provtrail::config::FileConfig;
use routes_support::{READ_TOKEN, config_text, wait_for, webhook_route};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

const WAIT: Duration = Duration::from_secs(60);

/// A bearer token with the `/` that PHP's `json_encode` escapes as `\/`.
const JWT: &str = "eyJhbGciOi/SECRETJWT+part/xyz==";
/// Chat-style webhook secrets in the path and the query, shorter than 8 characters each.
const PATH_SECRET: &str = "Xy7Qp2";
const QUERY_SECRET: &str = "Zx91";

fn write_config(dir: &Path, routes: &str) -> String {
    let path = dir.join("provtrail.toml");
    std::fs::write(&path, config_text(&dir.join("provtrail.db"), routes)).unwrap();
    path.display().to_string()
}

#[test]
fn a_webhook_url_with_credentials_stops_the_start_and_points_to_the_basic_settings() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &webhook_route("creds", "http://user:hunter2pw@127.0.0.1:47080/hook", ""),
    );
    let (code, _, stderr) = run_provtrail(&["routes", "list", "--config", &config]);
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("routes.creds.sink.url")
            && stderr.contains("basic_user")
            && stderr.contains("basic_password"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2pw"), "{stderr}");
}

#[test]
fn nats_url_credentials_are_not_shown_by_routes_list_or_test() {
    let dir = tempfile::tempdir().unwrap();
    let routes = r#"
[[routes]]
name = "token-in-url"
[routes.sink]
type = "nats"
url = "nats://SECRETTOKEN123@127.0.0.1:4222"
subject = "a.b"

[[routes]]
name = "no-scheme"
[routes.sink]
type = "nats"
url = "natsuser:passw0rdX@127.0.0.1:4222, nats://natsuser:passw0rdX@127.0.0.2"
subject = "a.b"
"#;
    let config = write_config(dir.path(), routes);
    let (code, stdout, stderr) =
        run_provtrail(&["routes", "list", "--format", "json", "--config", &config]);
    assert_eq!(code, 0, "{stderr}");
    let targets: Vec<String> = stdout
        .lines()
        .map(|line| {
            let route: Value = serde_json::from_str(line).unwrap();
            // The read API's document for the route, field for field.
            assert_eq!(route["configured"], true, "{route}");
            assert!(route.get("paused_since").is_some(), "{route}");
            assert!(route["counts"].get("matched").is_some(), "{route}");
            route["target"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        targets,
        [
            "nats://127.0.0.1:4222 subject a.b",
            "nats://127.0.0.1:4222, nats://127.0.0.2:4222 subject a.b"
        ]
    );
    let (code, text, stderr) = run_provtrail(&["routes", "list", "--config", &config]);
    assert_eq!(code, 0, "{stderr}");
    for name in ["token-in-url", "no-scheme"] {
        let (code, preview, stderr) = run_provtrail(&["routes", "test", name, "--config", &config]);
        assert_eq!(code, 0, "{stderr}");
        for output in [&stdout, &text, &preview] {
            for secret in ["SECRETTOKEN123", "natsuser", "passw0rdX"] {
                assert!(!output.contains(secret), "{secret} in {output}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_deliver_nothing_run_without_the_servers_secrets_and_config_check_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "{}{}",
            webhook_route(
                "hook",
                "http://127.0.0.1:47080/${env:PROVTRAIL_TEST_UNSET_PATH}",
                r#"bearer_token = "${env:PROVTRAIL_TEST_UNSET_TOKEN}"
headers = { "X-Key" = "${file:/nonexistent/provtrail-secret}" }"#,
            ),
            // A whole URL kept secret, as a Slack webhook's is.
            webhook_route("slack", "${env:PROVTRAIL_TEST_UNSET_URL}", ""),
        ),
    );
    // The server needs them: it refuses to start, and so does the check of its configuration.
    let (code, _, stderr) = run_provtrail(&["config", "check", &config]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("PROVTRAIL_TEST_UNSET_PATH is not set"),
        "{stderr}"
    );
    // Listing the routes and the dead letters, or replaying, needs none of them: each missing one
    // is noted once.
    let plain = config_text(&dir.path().join("provtrail.db"), "");
    let mut server =
        TestServer::start_config(&FileConfig::parse(&plain, Path::new("t.toml")).unwrap()).await;
    server.shutdown().await;
    for args in [
        vec!["routes", "list", "--config", &config],
        vec!["deadletter", "list", "--config", &config],
        vec!["routes", "test", "hook", "--config", &config],
    ] {
        let (code, _, stderr) = run_provtrail(&args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        for missing in [
            "PROVTRAIL_TEST_UNSET_URL is not set",
            "PROVTRAIL_TEST_UNSET_PATH is not set",
            "PROVTRAIL_TEST_UNSET_TOKEN is not set",
            "cannot read the secret file /nonexistent/provtrail-secret",
        ] {
            assert_eq!(stderr.matches(missing).count(), 1, "{args:?}: {stderr}");
        }
    }
}

/// A receiver that refuses everything and quotes the request back the way PHP does: its path and
/// query, and its headers in JSON with `/` escaped as `\/`.
async fn echoing_receiver() -> SocketAddr {
    async fn refuse(uri: Uri, headers: HeaderMap) -> (StatusCode, String) {
        let authorization = headers
            .get("authorization")
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_default();
        let quoted = serde_json::to_string(&authorization)
            .unwrap()
            .replace('/', "\\/");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{{\"error\":\"no hook {}\",\"authorization\":{quoted}}}",
                uri.path_and_query().unwrap()
            ),
        )
    }
    let app = Router::new().fallback(refuse);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_a_receiver_echoes_escaped_or_in_a_short_path_are_not_stored_or_shown() {
    let addr = echoing_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = webhook_route(
        "echo",
        &format!("http://{addr}/{PATH_SECRET}?k={QUERY_SECRET}"),
        &format!("bearer_token = \"{JWT}\"\nheaders = {{ X-Api-Key = \"k9Z\" }}"),
    );
    let text = config_text(&dir.path().join("provtrail.db"), &routes);
    let config = FileConfig::parse(&text, Path::new("test.toml")).unwrap();
    let mut server = TestServer::start_config(&config).await;
    let answer = server.post("/events", event("echo-1")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let db = server.db.clone();
    let failed_attempts = || -> Vec<String> {
        let conn = open_db(&db);
        let mut statement = conn
            .prepare("SELECT error FROM route_attempts WHERE error IS NOT NULL")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    wait_for("two failed attempts", WAIT, || failed_attempts().len() >= 2).await;

    let secrets = [JWT, "SECRETJWT", PATH_SECRET, QUERY_SECRET];
    for error in failed_attempts() {
        assert!(error.contains("HTTP 503"), "{error}");
        // The answer is kept, with every secret in it replaced.
        assert!(
            error.contains("no hook /***?***") && error.contains(r#""authorization":"Bearer ***""#),
            "{error}"
        );
        for secret in secrets {
            assert!(!error.contains(secret), "{secret} stored in {error}");
        }
    }
    let mut shown = Vec::new();
    for path in [
        "/api/v1/routes",
        "/api/v1/route-deliveries?route=echo",
        "/api/v1/route-deliveries/1",
        "/api/v1/routes/echo/test?event_id=1",
    ] {
        let response = client()
            .get(server.url(path))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body: Value = response.json().await.unwrap();
        for secret in secrets {
            assert!(
                !body.to_string().contains(secret),
                "{secret} in {path}: {body}"
            );
        }
        shown.push(body);
    }
    // The preview masks the secret-named header, short as its value is.
    let headers = shown[3]["preview"]["headers"].to_string();
    assert!(headers.contains(r#"["X-Api-Key","***"]"#), "{headers}");
    assert!(!headers.contains("k9Z"), "{headers}");
    server.shutdown().await;
}

/// A NATS server that reads each client's CONNECT line (which carries the password) and refuses
/// it; the lines it read are kept.
async fn refusing_nats_server() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connects = Arc::new(Mutex::new(Vec::new()));
    let seen = connects.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let info = "INFO {\"server_id\":\"fake\",\"server_name\":\"fake\",\"version\":\"2.10.0\",\
                            \"proto\":1,\"host\":\"127.0.0.1\",\"port\":4222,\"headers\":true,\
                            \"auth_required\":true,\"max_payload\":1048576}\r\n";
                if write.write_all(info.as_bytes()).await.is_err() {
                    return;
                }
                let mut lines = tokio::io::BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("CONNECT") {
                        seen.lock().unwrap().push(line);
                        let _ = write.write_all(b"-ERR 'Authorization Violation'\r\n").await;
                        return;
                    }
                }
            });
        }
    });
    (addr, connects)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_credentials_stay_out_of_trace_logs() {
    // Credentials in the URL are sent as the user and password (the client itself would leave
    // them out).
    const PASSWORD: &str = "url-pass-5ecret";
    let (nats, connects) = refusing_nats_server().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        r#"
[[routes]]
name = "nats"
timeout = "2s"
[routes.retry]
initial_delay = "50ms"
max_delay = "200ms"
[routes.sink]
type = "nats"
url = "nats://urluser:{PASSWORD}@{nats}"
subject = "a.b"
"#
    );
    let config = write_config(dir.path(), &routes);
    let mut server = ServerProcess::start_logging(dir.path(), &["--config", &config], &[], "trace");
    let addr = server.addr;
    let response = client()
        .post(format!("http://{addr}/events"))
        .bearer_auth(common::TOKEN)
        .header("content-type", "application/json")
        .body(event("nats-trace-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Two refused connections: the client sent the password (and logged what it logs) twice.
    wait_for("the client to connect twice", WAIT, || {
        connects.lock().unwrap().len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    let connect = connects.lock().unwrap()[0].clone();
    assert!(
        connect.contains(PASSWORD) && connect.contains("urluser"),
        "{connect}"
    );
    let log = server.output();
    // async_nats logs, only not below info.
    assert!(log.contains("async_nats"), "{log}");
    assert!(
        !log.contains(PASSWORD),
        "the password is in the log:\n{log}"
    );
}
