//! The promise ISC's fire-and-forget delivery depends on: a 200 means the event is on disk. The
//! server binary is killed with SIGKILL while many clients post distinct events; after a restart
//! on the same file, every event that was answered 200 must be there, with the id it was given.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// May search the events after each restart.
const READ_TOKEN: &str = "crash-read-token";

/// Kill-and-restart rounds, each on the file the previous rounds left behind.
const ROUNDS: usize = 5;
/// Clients posting at once.
const CLIENTS: usize = 32;
/// Events each client posts at most per round (the kill comes long before).
const MAX_PER_CLIENT: usize = 2_000;
/// Acknowledged events to wait for before the kill timer starts, so that every round proves
/// something.
const MIN_ACKNOWLEDGED: usize = 100;

/// Both ways of syncing the log keep the promise; the rounds alternate between them, each
/// restart recovering what the other mode wrote.
fn log_sync(round: usize) -> &'static str {
    if round % 2 == 0 {
        "pipelined"
    } else {
        "inline"
    }
}

fn serve_args(db: &Path, log_sync: &str) -> Vec<String> {
    vec![
        "--log-sync".into(),
        log_sync.into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--db".into(),
        db.display().to_string(),
        "--ingest-token".into(),
        TOKEN.into(),
        "--read-token".into(),
        READ_TOKEN.into(),
    ]
}

fn start(cwd: &Path, db: &Path, round: usize) -> ServerProcess {
    let args = serve_args(db, log_sync(round));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ServerProcess::start(cwd, &args)
}

#[derive(Default)]
struct RoundLog {
    /// invocation id -> id, for every event answered 200 accepted.
    acknowledged: Mutex<HashMap<String, i64>>,
    count: AtomicUsize,
    /// Answers that were neither 200 accepted nor a transport error.
    unexpected: Mutex<Vec<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_answered_200_survives_sigkill_of_the_server_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let client = client();
    let mut all_acknowledged: HashMap<String, i64> = HashMap::new();
    let mut server = start(dir.path(), &db, 0);

    for round in 0..ROUNDS {
        let log = Arc::new(RoundLog::default());
        let stop = Arc::new(AtomicBool::new(false));
        let url = server.url("/events");
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (log, stop, url, client) = (log.clone(), stop.clone(), url.clone(), client.clone());
            tasks.push(tokio::spawn(async move {
                for n in 0..MAX_PER_CLIENT {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let invocation = format!("crash-r{round}-c{c}-n{n}");
                    let sent = client
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .header("content-type", "application/json")
                        .body(event(&invocation))
                        .send()
                        .await;
                    // A transport error means the server is gone: nothing was promised.
                    let Ok(response) = sent else { return };
                    let status = response.status().as_u16();
                    let Ok(body) = response.bytes().await else {
                        return;
                    };
                    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    match (status, json["status"].as_str(), json["id"].as_i64()) {
                        (200, Some("accepted"), Some(id)) => {
                            log.acknowledged.lock().unwrap().insert(invocation, id);
                            log.count.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => log.unexpected.lock().unwrap().push(format!(
                            "{invocation}: {status} {}",
                            String::from_utf8_lossy(&body)
                        )),
                    }
                }
            }));
        }

        let counted = log.clone();
        eventually("the first acknowledged events", || {
            let counted = counted.clone();
            async move { counted.count.load(Ordering::Relaxed) >= MIN_ACKNOWLEDGED }
        })
        .await;
        let delay = Duration::from_millis(rand::random::<u64>() % 400);
        tokio::time::sleep(delay).await;
        server.child.kill().unwrap();
        let status = server.child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "the server must die of SIGKILL");
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        let unexpected = log.unexpected.lock().unwrap().clone();
        assert!(
            unexpected.is_empty(),
            "answers other than 200 accepted: {unexpected:?}"
        );
        let acknowledged = log.acknowledged.lock().unwrap().clone();

        // Restart on the same file; the store recovers from its write-ahead log.
        server = start(dir.path(), &db, round + 1);
        assert_eq!(integrity(&db), "ok");
        all_acknowledged.extend(acknowledged.clone());
        let stored = stored_invocations(&db);
        let missing: Vec<_> = all_acknowledged
            .iter()
            .filter(|(invocation, id)| stored.get(*invocation) != Some(id))
            .collect();
        assert!(
            missing.is_empty(),
            "round {round} ({}): {} events answered 200 are not in the store with their id: {:?}",
            log_sync(round),
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        // Each acknowledged event's delivery record was committed with it.
        let conn = open_db(&db);
        let recorded: i64 = conn
            .query_row(
                "SELECT count(DISTINCT event_id) FROM deliveries WHERE status = 200
                 AND outcome = 'accepted' AND invocation_id LIKE ?1",
                [format!("crash-r{round}-%")],
                |row| row.get(0),
            )
            .unwrap();
        assert!(recorded as usize >= acknowledged.len());
        let stored_this_round = stored
            .keys()
            .filter(|k| k.starts_with(&format!("crash-r{round}-")))
            .count();

        // The search index (written behind the commits, so the kill may have cut it short) finds
        // them too: what it lacked is rebuilt from the events after the restart.
        for (invocation, id) in acknowledged.iter().take(20) {
            let response = client
                // Invocation ids here are letters, digits and '-': nothing to escape.
                .get(server.url(&format!("/api/v1/events?invocation_id={invocation}")))
                .bearer_auth(READ_TOKEN)
                .send()
                .await
                .unwrap();
            let page = Answer::read(response).await.json();
            let found: Vec<i64> = page["items"]
                .as_array()
                .unwrap_or_else(|| panic!("not a page of events: {page}"))
                .iter()
                .map(|item| item["id"].as_i64().unwrap())
                .collect();
            assert_eq!(found, vec![*id], "searching for {invocation}");
        }

        // Redelivering acknowledged events finds them: duplicates with the same id.
        for (invocation, id) in acknowledged.iter().take(20) {
            let response = client
                .post(server.url("/events"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(event(invocation))
                .send()
                .await
                .unwrap();
            let answer = Answer::read(response).await;
            assert_eq!(answer.outcome(), ("duplicate".to_owned(), *id));
        }
        eprintln!(
            "crash round {}: SIGKILL {:?} after the first {MIN_ACKNOWLEDGED} answers; {} events \
             answered 200, all in the store with their id after restart; {} stored this round \
             (the others were committed but killed before their answer)",
            round + 1,
            delay,
            acknowledged.len(),
            stored_this_round,
        );
    }
    server.terminate();
    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit();
        drop(server);
        status
    })
    .await
    .unwrap();
    assert!(status.success());
    assert_eq!(integrity(&db), "ok");
    eprintln!(
        "crash test: {} acknowledged events over {ROUNDS} SIGKILLs, every one kept",
        all_acknowledged.len()
    );
}
