//! Storage that cannot commit: a full database, a full file system, a lock held by another
//! process. The receiver answers 503 with Retry-After, never answers 200 for an event it did not
//! keep, says so on /readyz, and recovers by itself, without a restart, once it can commit again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rusqlite::Connection;

/// What a batch of posts was answered.
#[derive(Debug, Default)]
struct Tally {
    /// invocation id -> id, for every 200 accepted.
    accepted: HashMap<String, i64>,
    /// Invocation ids answered 503.
    unavailable: Vec<String>,
    /// Anything else, for the failure message.
    other: Vec<String>,
}

/// Posts distinct events from `clients` clients at once; each stops after it has been answered
/// 503 `stop_after` times, or after `max_each` posts.
async fn post_until_unavailable(
    server: &TestServer,
    prefix: &str,
    clients: usize,
    stop_after: usize,
    max_each: usize,
) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let client = client();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, url, tally) = (client.clone(), server.url("/events"), tally.clone());
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut refused = 0;
            for n in 0..max_each {
                let invocation = format!("{prefix}-c{c}-n{n}");
                let response = client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(event(&invocation))
                    .send()
                    .await
                    .unwrap();
                let answer = Answer::read(response).await;
                let mut tally = tally.lock().unwrap();
                match (answer.status, answer.outcome()) {
                    (200, (status, id)) if status == "accepted" => {
                        tally.accepted.insert(invocation, id);
                    }
                    (503, _) => {
                        assert!(
                            answer
                                .header("retry-after")
                                .is_some_and(|s| s.parse::<u64>().is_ok()),
                            "a 503 says when to retry: {:?}",
                            answer.headers
                        );
                        assert_eq!(answer.json()["status"], "rejected");
                        tally.unavailable.push(invocation);
                        refused += 1;
                        if refused >= stop_after {
                            return;
                        }
                    }
                    _ => tally.other.push(format!(
                        "{invocation}: {} {}",
                        answer.status,
                        answer.text()
                    )),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(tally).unwrap().into_inner().unwrap()
}

/// Every 200 is in the file with its id, and nothing answered 503 is.
fn assert_store_matches(db: &Path, tally: &Tally) {
    let stored = stored_invocations(db);
    for (invocation, id) in &tally.accepted {
        assert_eq!(
            stored.get(invocation),
            Some(id),
            "{invocation} was answered 200 but is not in the store"
        );
    }
    for invocation in &tally.unavailable {
        assert!(
            !stored.contains_key(invocation),
            "{invocation} was answered 503 but was kept"
        );
    }
}

async fn readiness(server: &TestServer) -> u16 {
    server.get("/readyz").await.status
}

async fn await_readiness(server: &TestServer, status: u16) {
    let url = server.url("/readyz");
    eventually(&format!("/readyz to answer {status}"), || {
        let url = url.clone();
        async move { client().get(url).send().await.unwrap().status().as_u16() == status }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_database_answers_503_never_200s_what_it_did_not_keep_and_recovers_when_space_is_freed()
 {
    let mut server = TestServer::start_with(|config| {
        // Room for the schema (routes add six pages) and a few hundred events.
        config.store.max_size = Some("320KiB".into());
    })
    .await;
    let tally = post_until_unavailable(&server, "full", 8, 3, 2_000).await;
    assert!(tally.other.is_empty(), "{:?}", tally.other);
    assert!(
        !tally.accepted.is_empty(),
        "events fit before the cap is reached"
    );
    assert!(
        !tally.unavailable.is_empty(),
        "the cap must be reached within 16000 events"
    );
    assert_store_matches(&server.db, &tally);
    eprintln!(
        "full database: {} events answered 200 and kept, {} answered 503 and not kept",
        tally.accepted.len(),
        tally.unavailable.len()
    );
    await_readiness(&server, 503).await;
    let ready = server.get("/readyz").await;
    assert!(ready.header("retry-after").is_some());
    // The reason names the cap, not the disk, which has room. (An event posted now may still
    // fit in pages a commit freed: the cap is reached page by page.)
    assert!(ready.text().contains("store.max_size"), "{}", ready.text());
    // The gauge says what the last commit found. At the cap some commits still fit in pages
    // freed by earlier ones (a readiness probe's own room, given back), so it is read right
    // after a readiness probe that failed.
    let mut tries = 0;
    loop {
        let probed = server.get("/readyz").await.status;
        let metrics = server.get("/metrics").await.text();
        if probed == 503 && metrics.contains("provtrail_store_writable 0") {
            break;
        }
        tries += 1;
        assert!(tries < 50, "readiness {probed}: {metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An event kept before and sent again is a duplicate, full or not: its sender is told it is
    // kept, with its id, rather than to retry what needs no room.
    let (kept, id) = tally.accepted.iter().next().unwrap();
    let again = server.post("/events", event(kept)).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.outcome(), ("duplicate".to_owned(), *id));

    // The operator frees space (prunes the delivery log) while the server runs.
    let conn = Connection::open(&server.db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute("DELETE FROM deliveries", []).unwrap();
    drop(conn);

    let answer = server.post("/events", event("full-after-pruning")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.outcome().0, "accepted");
    // An event refused while full is taken now, as new.
    let retried = server.post("/events", event(&tally.unavailable[0])).await;
    assert_eq!(retried.outcome().0, "accepted");
    await_readiness(&server, 200).await;
    assert_eq!(integrity(&server.db), "ok");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_locked_by_another_process_answers_503_and_recovers_without_restart() {
    let mut server = TestServer::start_with(|config| {
        config.store.busy_timeout = Some("200ms".into());
    })
    .await;
    let before = server.post("/events", event("lock-before")).await;
    assert_eq!(before.outcome().0, "accepted");
    assert_eq!(readiness(&server).await, 200);

    // Another process takes the write lock and keeps it.
    let intruder = Connection::open(&server.db).unwrap();
    intruder.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let mut refused = Vec::new();
    for n in 0..5 {
        let invocation = format!("lock-during-{n}");
        let answer = server.post("/events", event(&invocation)).await;
        assert_eq!(answer.status, 503, "{}", answer.text());
        assert!(answer.header("retry-after").is_some());
        assert!(answer.text().contains("locked"), "{}", answer.text());
        refused.push(invocation);
    }
    await_readiness(&server, 503).await;

    intruder.execute_batch("COMMIT").unwrap();
    drop(intruder);

    // The refusals' own records could not be committed either: held, they are written once the
    // store commits again, without waiting for another request.
    eventually("the refusals to be in the delivery log", || async {
        let refusals: Vec<Delivery> = deliveries(&server.db)
            .into_iter()
            .filter(|record| record.status == 503)
            .collect();
        assert!(refusals.len() <= refused.len(), "{refusals:?}");
        refusals.len() == refused.len()
    })
    .await;

    let after = server.post("/events", event("lock-after")).await;
    assert_eq!(after.status, 200, "{}", after.text());
    assert_eq!(after.outcome().0, "accepted");
    for invocation in &refused {
        // Nothing refused was kept: each is new when it is sent again.
        let answer = server.post("/events", event(invocation)).await;
        assert_eq!(answer.outcome().0, "accepted", "{invocation}");
    }
    await_readiness(&server, 200).await;
    let stored = stored_invocations(&server.db);
    assert_eq!(stored.len(), 2 + refused.len());
    server.shutdown().await;
}

/// A tmpfs of a given size, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts one, or says why it cannot (not root, no mount namespace rights, …).
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|err| err.to_string())?;
        if output.status.success() {
            Ok(Tmpfs {
                path: path.to_owned(),
            })
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes to `path` until the file system says it is full.
fn fill(path: &Path) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 16 * 1024];
    for _ in 0..100_000 {
        if let Err(err) = file.write_all(&block).and_then(|()| file.sync_all()) {
            assert_eq!(err.raw_os_error(), Some(28), "expected ENOSPC, got {err}");
            return;
        }
    }
    panic!("the file system never filled up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_file_system_answers_503_and_recovers_when_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let mount = match Tmpfs::mount(&dir.path().join("small"), "8m") {
        Ok(mount) => mount,
        Err(why) => {
            eprintln!(
                "SKIPPED: cannot mount a small tmpfs here ({why}); the full-database test covers SQLITE_FULL"
            );
            return;
        }
    };
    let db = mount.path.join("provtrail.db");
    let mut server = TestServer::start_config(&config(&db)).await;
    let first = server.post("/events", event("fs-first")).await;
    assert_eq!(first.outcome().0, "accepted");

    let filler = mount.path.join("filler");
    fill(&filler);
    let mut tally = post_until_unavailable(&server, "fs", 4, 3, 5_000).await;
    tally.accepted.insert("fs-first".into(), first.outcome().1);
    assert!(tally.other.is_empty(), "{:?}", tally.other);
    assert!(
        !tally.unavailable.is_empty(),
        "a full file system must stop commits"
    );
    assert_store_matches(&db, &tally);
    eprintln!(
        "full file system: {} events answered 200 and kept, {} answered 503 and not kept",
        tally.accepted.len(),
        tally.unavailable.len()
    );
    await_readiness(&server, 503).await;

    std::fs::remove_file(&filler).unwrap();
    let answer = server.post("/events", event("fs-after")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.outcome().0, "accepted");
    await_readiness(&server, 200).await;
    server.shutdown().await;
    assert_eq!(integrity(&db), "ok");
    assert_store_matches(&db, &tally);
    drop(mount);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_deleted_under_the_server_is_never_answered_200_again() {
    let mut server = TestServer::start().await;
    let before = server.post("/events", event("inv-before-delete")).await;
    assert_eq!(before.status, 200, "{}", before.text());
    // A careless clean-up: the database and its log are gone, the server's files still open.
    delete_database_files(&server.db);
    // Anything committed now would be written to files nothing reads again: no 200 for it.
    for n in 0..5 {
        let answer = server
            .post("/events", event(&format!("inv-after-delete-{n}")))
            .await;
        assert_eq!(answer.status, 503, "{}", answer.text());
        assert!(answer.header("retry-after").is_some());
        assert!(
            answer
                .text()
                .contains("was deleted or renamed while the server was running"),
            "{}",
            answer.text()
        );
    }
    await_readiness(&server, 503).await;
    let ready = server.get("/readyz").await.text();
    assert!(ready.contains("restart provtrail"), "{ready}");
    // Nor does it make an empty database where the old one was.
    assert!(!server.db.exists());
    server.shutdown().await;
    // The event acknowledged before is not lost with the process: the database as the server
    // saw it was saved beside the path, and nothing answered 503 is in it.
    let saved = saved_copies(&server.db);
    assert_eq!(saved.len(), 1, "{saved:?} ({ready})");
    assert!(ready.contains(&saved[0].display().to_string()), "{ready}");
    let kept = stored_invocations(&saved[0]);
    assert_eq!(
        kept.keys().collect::<Vec<_>>(),
        ["inv-before-delete"],
        "{kept:?}"
    );
}

/// Posts `count` distinct events (`<prefix>-<n>`), each answered 200; their invocation ids.
async fn post_accepted(server: &TestServer, prefix: &str, count: usize) -> Vec<String> {
    let mut accepted = Vec::new();
    for n in 0..count {
        let invocation = format!("{prefix}-{n}");
        let answer = server.post("/events", event(&invocation)).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        accepted.push(invocation);
    }
    accepted
}

/// Deletes the database, its log and its shared memory, as a careless clean-up would.
fn delete_database_files(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.to_owned().into_os_string();
        path.push(suffix);
        std::fs::remove_file(PathBuf::from(path)).unwrap();
    }
}

/// The copies `<db>.saved-<time>` a writer made of a database it found replaced or deleted.
fn saved_copies(db: &Path) -> Vec<PathBuf> {
    let name = db.file_name().unwrap().to_string_lossy().into_owned();
    let mut found: Vec<PathBuf> = std::fs::read_dir(db.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .strip_prefix(&name)
                .is_some_and(|rest| rest.starts_with(".saved-") && !rest.contains("-wal"))
        })
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_replaced_under_the_server_loses_no_acknowledged_event() {
    // The log is copied back only at checkpoints: most acknowledged events are in the log
    // alone when the file is replaced by a copy of itself (a backup put back, a careless `cp`).
    let mut server = TestServer::start().await;
    let mut acknowledged = post_accepted(&server, "inv-replaced", 40).await;
    let copy = server.db.with_extension("copy");
    std::fs::copy(&server.db, &copy).unwrap();
    std::fs::rename(&copy, &server.db).unwrap();
    let answer = server.post("/events", event("inv-after-replace")).await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert!(answer.text().contains("was replaced"), "{}", answer.text());
    assert!(answer.text().contains("saved in"), "{}", answer.text());
    // A graceful stop, as the message asks before the restart.
    server.shutdown().await;
    let saved = saved_copies(&server.db);
    assert_eq!(saved.len(), 1, "{saved:?}");
    // As private as the store it copies: it holds every event.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&saved[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let mut kept: Vec<String> = stored_invocations(&saved[0]).into_keys().collect();
    kept.sort();
    acknowledged.sort();
    assert_eq!(kept, acknowledged);
    // And the way back the message gives: export the saved copy, ingest it into the database.
    let db = server.db.display().to_string();
    let saved_db = saved[0].display().to_string();
    let export = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["export", "--db", &saved_db])
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let mut ingest = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["ingest", "--db", &db, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    ingest
        .stdin
        .take()
        .unwrap()
        .write_all(&export.stdout)
        .unwrap();
    let done = ingest.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let mut restored: Vec<String> = stored_invocations(&server.db).into_keys().collect();
    restored.sort();
    assert_eq!(restored, acknowledged);
}

/// The ids of the events whose tracking number is `tn-<invocation>`, by the search index.
async fn found(server: &TestServer, invocation: &str) -> Vec<i64> {
    let query = provtrail::store::EventQuery {
        tracking_number: Some(format!("tn-{invocation}")),
        ..Default::default()
    };
    let page = server
        .app()
        .store
        .search_events(&query, false)
        .await
        .unwrap();
    page.items.iter().map(|item| item.id).collect()
}

async fn start_on(db: &Path) -> TestServer {
    TestServer::start_config(&config(db)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_index_left_from_another_state_of_the_database_is_rebuilt_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provtrail.db");
    let files = |db: &Path| {
        ["", "-wal", "-shm"].map(|suffix| {
            let mut path = db.as_os_str().to_owned();
            path.push(suffix);
            PathBuf::from(path)
        })
    };
    // A first event, and a backup of the database then.
    let mut server = start_on(&db).await;
    assert_eq!(server.post("/events", event("inv-1")).await.status, 200);
    server.shutdown().await;
    let backup = dir.path().join("backup.db");
    std::fs::copy(&db, &backup).unwrap();
    // Two more, indexed as ids 2 and 3.
    let mut server = start_on(&db).await;
    for invocation in ["inv-2", "inv-3"] {
        assert_eq!(server.post("/events", event(invocation)).await.status, 200);
    }
    assert_eq!(found(&server, "inv-3").await, vec![3]);
    server.shutdown().await;
    // The backup put back, the index file left as it was: new events take ids 2 and 3 again.
    for file in files(&db) {
        let _ = std::fs::remove_file(file);
    }
    std::fs::copy(&backup, &db).unwrap();
    let mut server = start_on(&db).await;
    for invocation in ["inv-b2", "inv-b3"] {
        assert_eq!(server.post("/events", event(invocation)).await.status, 200);
    }
    assert_eq!(found(&server, "inv-b2").await, vec![2]);
    assert_eq!(found(&server, "inv-b3").await, vec![3]);
    assert_eq!(found(&server, "inv-2").await, Vec::<i64>::new());
    assert_eq!(found(&server, "inv-1").await, vec![1]);
    server.shutdown().await;
    // Another database altogether, as far along as this one, given this one's index file.
    let other = dir.path().join("other.db");
    let mut server = start_on(&other).await;
    for invocation in ["inv-other", "inv-o2", "inv-o3"] {
        assert_eq!(server.post("/events", event(invocation)).await.status, 200);
    }
    server.shutdown().await;
    std::fs::copy(
        dir.path().join("provtrail.db.search"),
        dir.path().join("other.db.search"),
    )
    .unwrap();
    let _ = std::fs::remove_file(dir.path().join("other.db.search-wal"));
    let _ = std::fs::remove_file(dir.path().join("other.db.search-shm"));
    let mut server = start_on(&other).await;
    assert_eq!(found(&server, "inv-other").await, vec![1]);
    assert_eq!(found(&server, "inv-o3").await, vec![3]);
    assert_eq!(found(&server, "inv-1").await, Vec::<i64>::new());
    assert_eq!(found(&server, "inv-b3").await, Vec::<i64>::new());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_held_past_the_request_timeout_is_answered_503_without_claiming_it_was_lost() {
    // The store waits up to 30 s for a lock (as it would for a stalled disk); the sender is
    // answered when the request timeout is over.
    let mut server = TestServer::start_with(|config| {
        config.store.busy_timeout = Some("30s".into());
        config.server.request_timeout = Some("1s".into());
    })
    .await;
    let intruder = Connection::open(&server.db).unwrap();
    intruder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // A readiness probe is told within its usual second that the store is not ready.
    let started = std::time::Instant::now();
    let ready = server.get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "answered after {:?}",
        started.elapsed()
    );
    assert!(ready.text().contains("within a second"), "{}", ready.text());
    let started = std::time::Instant::now();
    let held = server.post("/events", event("held-commit")).await;
    assert_eq!(held.status, 503, "{}", held.text());
    assert!(held.header("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered after {:?}",
        started.elapsed()
    );
    let said = held.json()["error"].as_str().unwrap().to_owned();
    assert!(
        said.starts_with("the store did not commit within 1s"),
        "{said}"
    );
    assert!(said.contains("may still be kept"), "{said}");
    // Once the lock goes, the commit that waited for it goes through: sent again, the event is
    // a duplicate of the one kept.
    intruder.execute_batch("COMMIT").unwrap();
    drop(intruder);
    let again = server.post("/events", event("held-commit")).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.outcome().0, "duplicate");
    // The delivery log says what each request got: the first a 503 (not the 200 its commit
    // recorded, which nobody got), tied to the event it left; then the duplicate.
    let log = deliveries(&server.db);
    let seen: Vec<(i64, &str)> = log.iter().map(|d| (d.status, d.outcome.as_str())).collect();
    assert_eq!(seen, [(503, "accepted"), (200, "duplicate")], "{log:?}");
    assert_eq!(log[0].event_id, Some(again.outcome().1), "{log:?}");
    assert!(
        log[0].reason.as_deref().is_some_and(|reason| reason
            .starts_with("the store did not commit within 1s")
            && reason.ends_with("the document was committed all the same, and is in the store")),
        "{log:?}"
    );
    server.shutdown().await;
}

/// Whether the search index finds the event of `invocation` (by its invocation id).
async fn found_by_invocation(server: &TestServer, invocation: &str) -> bool {
    let query = provtrail::store::EventQuery {
        invocation_id: Some(invocation.to_owned()),
        limit: 10,
        ..Default::default()
    };
    let page = server
        .app()
        .store
        .search_events(&query, false)
        .await
        .unwrap();
    page.items.len() == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_imported_beside_a_running_server_are_all_found_by_search() {
    // `provtrail ingest` and `serve` on one database: their commits interleave, and each
    // process's search indexer sees the other's events only as gaps between its own.
    let server = Arc::new(TestServer::start().await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut posters = Vec::new();
    for client in 0..4 {
        let (server, stop) = (server.clone(), stop.clone());
        posters.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 5_000 {
                let answer = server
                    .post("/events", event(&format!("inv-posted-{client}-{n}")))
                    .await;
                assert_eq!(answer.status, 200, "{}", answer.text());
                n += 1;
            }
        }));
    }
    let dir = tempfile::tempdir().unwrap();
    for round in 0..8 {
        let lines: Vec<String> = (0..300)
            .map(|n| {
                String::from_utf8(event(&format!("inv-bulk-{round}-{n}")))
                    .unwrap()
                    .replace('\n', " ")
            })
            .collect();
        let file = dir.path().join(format!("bulk-{round}.jsonl"));
        std::fs::write(&file, lines.join("\n")).unwrap();
        let db = server.db.clone();
        let imported = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_provtrail"))
                .args([
                    "ingest",
                    "--db",
                    db.to_str().unwrap(),
                    file.to_str().unwrap(),
                ])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            imported.status.success(),
            "{}",
            String::from_utf8_lossy(&imported.stderr)
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for poster in posters {
        poster.await.unwrap();
    }
    let stored = stored_invocations(&server.db);
    assert!(stored.len() > 2_400, "{}", stored.len());
    let mut missing = Vec::new();
    for invocation in stored.keys() {
        if !found_by_invocation(&server, invocation).await {
            missing.push(invocation.clone());
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "{} of {} stored events are not found: {:?}",
        missing.len(),
        stored.len(),
        &missing[..missing.len().min(10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_while_the_search_index_could_not_be_written_are_found_without_more_traffic()
{
    let server = TestServer::start_with(|config| {
        config.store.busy_timeout = Some("300ms".into());
    })
    .await;
    // Another process holds the index file's write lock past the lock wait.
    let index = {
        let mut path = server.db.clone().into_os_string();
        path.push(".search");
        PathBuf::from(path)
    };
    let locker = Connection::open(&index).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let invocations: Vec<String> = (0..5).map(|n| format!("inv-unindexed-{n}")).collect();
    for invocation in &invocations {
        let answer = server.post("/events", event(invocation)).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    // Longer than the indexer gathers and waits for the lock: its write has failed.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    locker.execute_batch("COMMIT").unwrap();
    drop(locker);
    // No event comes after: the indexer reads the ones it could not write back by itself.
    for invocation in &invocations {
        eventually(
            "the event stored while the index was locked to be found",
            || found_by_invocation(&server, invocation),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_deleted_after_its_last_commit_is_saved_when_the_server_stops() {
    // No request comes between the deletion and the stop: no commit finds the file gone.
    let mut server = TestServer::start().await;
    let acknowledged = post_accepted(&server, "inv-deleted-quietly", 5).await;
    delete_database_files(&server.db);
    server.shutdown().await;
    let saved = saved_copies(&server.db);
    assert_eq!(saved.len(), 1, "{saved:?}");
    let mut kept: Vec<String> = stored_invocations(&saved[0]).into_keys().collect();
    kept.sort();
    assert_eq!(kept, acknowledged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_another_process_left_unindexed_are_indexed_while_the_server_is_idle() {
    let server = TestServer::start().await;
    let invocations: Vec<String> = (0..5).map(|n| format!("inv-left-{n}")).collect();
    for invocation in &invocations {
        let answer = server.post("/events", event(invocation)).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    for invocation in &invocations {
        eventually("the event to be indexed", || {
            found_by_invocation(&server, invocation)
        })
        .await;
    }
    // What a process killed before indexing what it stored, or one that emptied the index and
    // stopped, leaves: stored events past the index's watermark.
    let mut index = server.db.clone().into_os_string();
    index.push(".search");
    let other = Connection::open(PathBuf::from(index)).unwrap();
    other
        .execute_batch(
            "BEGIN IMMEDIATE;
             INSERT INTO events_index (events_index) VALUES ('delete-all');
             DELETE FROM meta WHERE key = 'indexed_through';
             COMMIT;",
        )
        .unwrap();
    drop(other);
    // No event comes after: the server indexes them by itself.
    for invocation in &invocations {
        eventually("the event left unindexed to be found", || {
            found_by_invocation(&server, invocation)
        })
        .await;
    }
}

/// The search index file beside `db` and its log.
fn index_files(db: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut path = db.as_os_str().to_owned();
            path.push(".search");
            path.push(suffix);
            PathBuf::from(path)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_index_file_removed_while_serving_is_made_anew_and_finds_every_event() {
    let server = TestServer::start().await;
    let before = post_accepted(&server, "inv-before", 5).await;
    for invocation in &before {
        eventually("the event to be indexed", || {
            found_by_invocation(&server, invocation)
        })
        .await;
    }
    // Removed by hand, or by another process that found it unreadable.
    for file in index_files(&server.db) {
        let _ = std::fs::remove_file(file);
    }
    let after = post_accepted(&server, "inv-after", 5).await;
    for invocation in before.iter().chain(&after) {
        eventually("the event to be found in the new index file", || {
            found_by_invocation(&server, invocation)
        })
        .await;
    }
    assert!(index_files(&server.db)[0].is_file());
}

/// A store of five indexed events (`inv-kept-…`) whose search index file is then damaged, with
/// the server stopped: the index's own structure record overwritten, so the file still opens
/// and its meta table reads, but the full-text index can be neither written nor searched.
async fn store_with_a_damaged_search_index(db: &Path) -> Vec<String> {
    let mut server = TestServer::start_config(&config(db)).await;
    let before = post_accepted(&server, "inv-kept", 5).await;
    for invocation in &before {
        eventually("the event to be indexed", || {
            found_by_invocation(&server, invocation)
        })
        .await;
    }
    server.shutdown().await;
    let index = Connection::open(&index_files(db)[0]).unwrap();
    let damaged = index
        .execute(
            "UPDATE events_index_data SET block = x'ffffffffffffffff' WHERE id = 10",
            [],
        )
        .unwrap();
    assert_eq!(damaged, 1);
    before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_search_index_file_is_made_anew_from_the_stored_events() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provtrail.db");
    let before = store_with_a_damaged_search_index(&db).await;
    let server = TestServer::start_config(&config(&db)).await;
    let after = post_accepted(&server, "inv-new", 5).await;
    for invocation in before.iter().chain(&after) {
        eventually("the event to be found in the index made anew", || {
            found_by_invocation(&server, invocation)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_search_index_file_is_made_anew_when_a_search_finds_it_with_no_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provtrail.db");
    let before = store_with_a_damaged_search_index(&db).await;
    // No event arrives, so no write of the indexer meets the damage: the searches do. Each
    // either finds the event or says the index is being made anew (a 503 to API clients),
    // never blames the query, and soon finds every event.
    let server = TestServer::start_config(&config(&db)).await;
    let mut unavailable = 0;
    for invocation in &before {
        let query = provtrail::store::EventQuery {
            invocation_id: Some(invocation.clone()),
            limit: 10,
            ..Default::default()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match server.app().store.search_events(&query, false).await {
                Ok(page) if page.items.len() == 1 => break,
                Ok(_) => {}
                Err(provtrail::store::StoreError::Unavailable(reason)) => {
                    assert!(reason.contains("made anew"), "{reason}");
                    unavailable += 1;
                }
                Err(other) => panic!("the search failed with {other:?}"),
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{invocation} was not found"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The damage was found by a search (not by a write: none happened).
    assert!(unavailable >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_finds_an_event_another_process_stored_just_before_it_began() {
    let server = TestServer::start().await;
    let own = post_accepted(&server, "inv-own", 1).await;
    eventually("the event to be indexed", || {
        found_by_invocation(&server, &own[0])
    })
    .await;
    // Let the idle indexer settle into its quiet turns.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // Another process (a `provtrail ingest` beside the server) commits an event and has not
    // indexed it yet.
    let other = Connection::open(&server.db).unwrap();
    other.busy_timeout(Duration::from_secs(5)).unwrap();
    let stored = other
        .execute(
            "INSERT INTO events (received_at, dedup_key, invocation_id, tracking_number, action,
                recipient_id, recipient_name, requester_id, requester_name, sources, outcome,
                account_count, failed_count, errors, warnings, validation_warnings, channel,
                remote_addr, method, path, raw_codec, raw_size, raw)
             SELECT received_at, x'00ff00ff', 'inv-other-process', tracking_number, action,
                recipient_id, recipient_name, requester_id, requester_name, sources, outcome,
                account_count, failed_count, errors, warnings, validation_warnings, channel,
                remote_addr, method, path, raw_codec, raw_size, raw
             FROM events WHERE invocation_id = ?1",
            [&own[0]],
        )
        .unwrap();
    assert_eq!(stored, 1);
    drop(other);
    // At once: committed before the search began, it is found, as this process's events are.
    assert!(found_by_invocation(&server, "inv-other-process").await);
}
