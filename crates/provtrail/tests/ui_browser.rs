//! Runs the browser tests (`tests/browser/`, Node with playwright-core driving Debian's Chromium)
//! against the real server binary on a seeded store, so that `cargo test --workspace` runs them.
//!
//! Without Node, the `node_modules` of `tests/browser` or Chromium, the test fails when `CI=true`
//! (`.ci/run` installs them) and otherwise skips with a loud message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::ServerProcess;
use provtrail::ingest::Ingestor;
use provtrail::metrics::Metrics;
use provtrail::store::sqlite::{SqliteSettings, SqliteStore};
use provtrail::store::{Receipt, Store};
use provtrail::synth::{Generator, SynthOptions};

const READ: &str = "ptr_browser-test-read-token-0123456789";
const INGEST: &str = "ptk_browser-test-ingest-token-0123456789";

/// Synthetic events in the seeded store, spread over the last week.
const SEEDED: usize = 800;

/// Secrets of the routes: no page may show them.
const ROUTE_SECRETS: [&str; 2] = [
    "browser-route-secret-bearer-5c2e",
    "browser-route-secret-query-91d0",
];

/// Three routes for the routes pages: every event to a file; failures to a webhook that no
/// one listens at (the discard port on loopback), so that they end in the dead letters quickly;
/// and every event to another such webhook whose deliveries may wait an hour, so that the route
/// stays paused while the tests run. The seeded events are not routed (they are imported, not
/// posted); those the browser tests post are.
fn routes_config(dir: &Path) -> String {
    format!(
        r#"
[[routes]]
name = "archive"
[routes.sink]
type = "file"
path = "{archive}"
fsync = false

[[routes]]
name = "failures-to-ticketing"
filter = '$[?($.accountRequests[*].provisioningResult contains "FAILED")]'
allow_private = true
timeout = "2s"
[routes.retry]
max_attempts = 2
max_age = "1s"
initial_delay = "50ms"
max_delay = "100ms"
[routes.sink]
type = "webhook"
url = "http://127.0.0.1:9/tickets?api_key={query}"
bearer_token = "{bearer}"

[[routes]]
name = "service-desk-outage"
allow_private = true
timeout = "2s"
[routes.retry]
max_age = "1h"
initial_delay = "50ms"
max_delay = "100ms"
[routes.sink]
type = "webhook"
url = "http://127.0.0.1:9/outage"
"#,
        archive = dir.join("archive.jsonl").display(),
        bearer = ROUTE_SECRETS[0],
        query = ROUTE_SECRETS[1],
    )
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// What the browser tests need and this machine lacks.
fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|output| output.status.success()) {
        missing.push("node (Debian package nodejs)".to_owned());
    }
    if !browser_dir()
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push("tests/browser/node_modules (run `npm ci` in tests/browser)".to_owned());
    }
    if !chromium().exists() {
        missing.push(format!(
            "{} (Debian package chromium)",
            chromium().display()
        ));
    }
    missing
}

/// Fills a store with synthetic events received over the last week, oldest first, as if ISC had
/// posted them then (the HTTP path would stamp them all with the current time).
async fn seed(db: &Path) {
    let store = SqliteStore::open(SqliteSettings::new(db), Arc::new(Metrics::new())).unwrap();
    let ingestor = Ingestor::new(1024 * 1024);
    let mut generator = Generator::new(&SynthOptions {
        seed: 11,
        failure_rate: 0.08,
        ..SynthOptions::default()
    });
    let span: i64 = 7 * 86_400_000;
    let now = chrono::Utc::now().timestamp_millis();
    for n in 0..SEEDED as i64 {
        let raw = Bytes::from(generator.next_json());
        let receipt = Receipt {
            received_at: now - span + span * n / SEEDED as i64 - 60_000,
            remote_addr: Some("127.0.0.1:50000".to_owned()),
            channel: Some("seed".to_owned()),
            method: "POST".to_owned(),
            path: "/events/seed".to_owned(),
            size: raw.len() as u64,
            user_agent: Some("provtrail-browser-test".to_owned()),
        };
        store.ingest(ingestor.prepare(raw, receipt)).await.unwrap();
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_works_in_a_real_browser() {
    let missing = missing();
    if !missing.is_empty() {
        let message = format!(
            "the browser tests of the web UI cannot run here; missing: {}. `bash .ci/run` installs them.",
            missing.join(", ")
        );
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("{message}");
        }
        // Written to the process's standard error, past the test harness's capture (which only
        // takes the print macros), so that a skip shows in a plain `cargo test`.
        let _ = writeln!(std::io::stderr(), "\n!!!!!!!!!! SKIPPED: {message}\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("browser.db");
    seed(&db).await;
    let db_arg = db.to_str().unwrap().to_owned();
    let config = dir.path().join("provtrail.toml");
    std::fs::write(&config, routes_config(dir.path())).unwrap();
    let config_arg = config.to_str().unwrap().to_owned();
    let server = ServerProcess::start(
        dir.path(),
        &[
            "--config",
            &config_arg,
            "--db",
            &db_arg,
            "--listen",
            "127.0.0.1:0",
            "--read-token",
            READ,
            "--ingest-token",
            INGEST,
        ],
    );
    let started = Instant::now();
    let mut node = tokio::process::Command::new("node");
    node.args(["--test", "--test-reporter=spec", "ui.test.mjs"])
        .current_dir(browser_dir())
        .env("PROVTRAIL_URL", format!("http://{}", server.addr))
        .env("PROVTRAIL_READ_TOKEN", READ)
        .env("PROVTRAIL_INGEST_TOKEN", INGEST)
        .env("PROVTRAIL_ROUTE_SECRETS", ROUTE_SECRETS.join(","))
        .env("CHROMIUM", chromium())
        .kill_on_drop(true);
    let status = tokio::time::timeout(Duration::from_secs(300), node.status())
        .await
        .expect("the browser tests took more than five minutes")
        .unwrap();
    eprintln!(
        "browser tests took {:.1}s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        browser_dir().join("artifacts").display()
    );
    assert!(
        status.success(),
        "the browser tests failed ({status}); server output:\n{}",
        server.output()
    );
}
