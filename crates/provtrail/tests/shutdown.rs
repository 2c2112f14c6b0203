//! Graceful shutdown: a request the server has begun to receive is answered, and every 200 it
//! gave is in the store when it starts again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

/// The value of an unlabelled gauge in a Prometheus text exposition.
fn gauge(metrics: &str, name: &str) -> Option<i64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_every_request_already_received_and_keeps_every_event_it_accepted() {
    const REQUESTS: usize = 8;
    let mut server = TestServer::start_with(|config| {
        config.server.request_timeout = Some("120s".into());
    })
    .await;

    // Each request's head and half of its body are sent; the rest is held back.
    let mut pending = Vec::new();
    for n in 0..REQUESTS {
        let invocation = format!("inv-in-flight-{n}");
        let request = authorized_post("/events", &event(&invocation));
        let split = request.len() - 100;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(&request[..split]).await.unwrap();
        pending.push((invocation, stream, request[split..].to_vec()));
    }
    // The server is handling all of them (plus the metrics request that asks).
    eventually("every request to be in progress", || {
        let url = server.url("/metrics");
        async move {
            let text = text_at(&url).await;
            gauge(&text, "provtrail_http_requests_in_flight") == Some(REQUESTS as i64 + 1)
        }
    })
    .await;

    let app = server.app.take().unwrap();
    let stopping = tokio::spawn(app.shutdown());
    // New connections are refused once shutdown has begun.
    let addr = server.addr;
    eventually("the listener to close", || async move {
        TcpStream::connect(addr).await.is_err()
    })
    .await;

    let mut acknowledged = HashMap::new();
    for (invocation, mut stream, rest) in pending {
        stream.write_all(&rest).await.unwrap();
        let answer = expect_response(&mut stream).await;
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let json = answer.json();
        assert_eq!(json["status"], "accepted");
        acknowledged.insert(invocation, json["id"].as_i64().unwrap());
    }
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("shutdown finishes once the requests are answered")
        .unwrap();

    // Started again on the same file, the store holds every event it answered 200.
    let mut config = config(&server.db);
    config.server.listen = Some("127.0.0.1:0".into());
    let mut again = TestServer::start_config(&config).await;
    assert_eq!(stored_invocations(&again.db), acknowledged);
    assert_eq!(integrity(&again.db), "ok");
    again.shutdown().await;
}

fn serve_args(db: &Path) -> Vec<String> {
    vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--db".into(),
        db.display().to_string(),
        "--ingest-token".into(),
        TOKEN.into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_only_200s_exits_cleanly_and_keeps_every_200() {
    const CLIENTS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("term.db");
    let args = serve_args(&db);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = ServerProcess::start(dir.path(), &args);
    // A client with the usual pool: connections that sat idle before the stop are picked up
    // again during it; within the server's quarter of a second of last requests, each is
    // answered with `Connection: close`, and afterwards every new connection is refused.
    let client = client();
    let acknowledged = Arc::new(Mutex::new(HashMap::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let other_answers = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, url) = (client.clone(), server.url("/events"));
        let (acknowledged, count, other_answers, stop) = (
            acknowledged.clone(),
            count.clone(),
            other_answers.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for n in 0..2_000 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let invocation = format!("term-c{c}-n{n}");
                let sent = client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(event(&invocation))
                    .send()
                    .await;
                let response = match sent {
                    Ok(response) => response,
                    // Refused: the server no longer listens, and the client knows nothing was
                    // sent.
                    Err(err) if err.is_connect() => return,
                    // Sent and never answered: a connection closed under the request.
                    Err(err) => {
                        other_answers
                            .lock()
                            .unwrap()
                            .push(format!("no answer: {err:?}"));
                        return;
                    }
                };
                let answer = Answer::read(response).await;
                if answer.status == 200 && answer.outcome().0 == "accepted" {
                    acknowledged
                        .lock()
                        .unwrap()
                        .insert(invocation, answer.outcome().1);
                    count.fetch_add(1, Ordering::Relaxed);
                } else {
                    other_answers.lock().unwrap().push(format!(
                        "{} {}",
                        answer.status,
                        answer.text()
                    ));
                }
            }
        }));
    }
    let counted = count.clone();
    eventually("events to be acknowledged", || {
        let counted = counted.clone();
        async move { counted.load(Ordering::Relaxed) >= 100 }
    })
    .await;
    server.terminate();
    let (mut server, status) = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit();
        (server, status)
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    assert!(status.success(), "exit {status:?}:\n{}", server.output());
    assert!(server.output().contains("stopped."), "{}", server.output());
    server.kill();
    let other_answers = other_answers.lock().unwrap().clone();
    assert!(
        other_answers.is_empty(),
        "a request sent during shutdown was not accepted, or not answered: {other_answers:?}"
    );

    let acknowledged = acknowledged.lock().unwrap().clone();
    let restarted = ServerProcess::start(dir.path(), &args);
    assert_eq!(integrity(&db), "ok");
    let stored = stored_invocations(&db);
    for (invocation, id) in &acknowledged {
        assert_eq!(
            stored.get(invocation),
            Some(id),
            "{invocation} was answered 200"
        );
    }
    drop(restarted);
    eprintln!(
        "SIGTERM under load: {} events answered 200, all in the store after restart",
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grace_period_that_ends_with_requests_unanswered_exits_with_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("grace.db");
    let mut args = serve_args(&db);
    args.extend(["--shutdown-grace".into(), "1s".into()]);
    args.extend(["--request-timeout".into(), "60s".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = ServerProcess::start(dir.path(), &args);
    // A request whose body stops halfway: it is in flight when the signal comes, and stays so.
    let request = authorized_post("/events", &event("inv-cut-off"));
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(&request[..request.len() - 100])
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.terminate();
    let (mut server, status) = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit();
        (server, status)
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(1), "{}", server.output());
    assert!(
        server.output().contains("got no answer"),
        "{}",
        server.output()
    );
    server.kill();
    drop(stalled);
    // Its connection was dropped at the end of the grace, which failed its body: the request
    // is in the delivery log, refused for the stop (not for a client that sent it cut), though
    // it got no answer.
    let records = deliveries(&db);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].status, 503, "{records:?}");
    assert!(
        records[0].reason.as_deref().is_some_and(|reason| reason
            .starts_with("the server stopped before the request's body arrived")
            && reason.contains("no answer was sent")),
        "{records:?}"
    );
}

/// A store that another process holds locked cannot commit: the stop waits for it no longer than
/// the grace (and a moment), not for its lock wait once per queued batch, and nothing that was
/// not kept is answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_bounds_the_stop_when_the_store_cannot_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locked.db");
    let mut args = serve_args(&db);
    args.extend(["--shutdown-grace".into(), "1s".into()]);
    args.extend(["--busy-timeout".into(), "60s".into()]);
    args.extend(["--request-timeout".into(), "60s".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = ServerProcess::start(dir.path(), &args);
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let posts: Vec<_> = (0..5)
        .map(|n| {
            let url = server.url("/events");
            tokio::spawn(async move {
                client()
                    .post(url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(event(&format!("inv-locked-{n}")))
                    .send()
                    .await
                    .map(|response| response.status().as_u16())
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    server.terminate();
    let stopping = std::time::Instant::now();
    let (mut server, status) = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit();
        (server, status)
    })
    .await
    .unwrap();
    // A bound far above the grace and far below one lock wait (60 s): not a measure of speed.
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(20),
        "the stop took {:?}: {}",
        stopping.elapsed(),
        server.output()
    );
    assert_eq!(status.code(), Some(1), "{}", server.output());
    assert!(
        server.output().contains("store's last commits unfinished"),
        "{}",
        server.output()
    );
    for post in posts {
        assert_ne!(post.await.unwrap().ok(), Some(200));
    }
    server.kill();
    drop(lock);
}

/// With `--log-json`, standard error is read by a log collector: every line the shutdown writes,
/// the "quit now" of a second signal included, is a JSON record. The second signal quits at once
/// with status 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_quits_at_once_and_says_so_in_the_logs_format() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("twice.db");
    let mut args = vec!["--log-json".to_owned(), "serve".to_owned()];
    args.extend(serve_args(&db));
    args.extend(["--request-timeout".into(), "60s".into()]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(&args)
        .env_remove("PROVTRAIL_LOG_JSON")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the server said where it listens");
        let record: serde_json::Value = serde_json::from_str(&line).unwrap();
        seen.push(line);
        if let Some(url) = record["fields"]["listening"].as_str() {
            break url.trim_start_matches("http://").to_owned();
        }
    };
    // A request whose body stops halfway: in flight when the signals come.
    let request = authorized_post("/events", &event("inv-twice"));
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(&request[..request.len() - 100])
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let signal = |child: &std::process::Child| {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal(&child);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    signal(&child);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(130));
    reader.join().unwrap();
    seen.extend(lines.try_iter());
    for line in &seen {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a JSON record: {line}"
        );
    }
    assert!(
        seen.iter()
            .any(|line| line.contains("quitting now: 1 request in flight gets no answer")),
        "{seen:#?}"
    );
    drop(stalled);
}

/// A request whose headers began on a kept-alive connection and had not ended when the server
/// stopped: answered 408 and recorded, as at the header timeout, not closed under.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_half_sent_when_the_server_stops_is_answered_408_and_recorded() {
    use tokio::io::AsyncReadExt as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("half.db");
    let args = serve_args(&db);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = ServerProcess::start(dir.path(), &args);
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    // One request answered: the connection is kept alive, idle.
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0; 4096];
    let n = tcp.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    // The next one's head, half of it.
    tcp.write_all(b"POST /events HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.terminate();
    let mut answered = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tcp.read_to_end(&mut answered),
    )
    .await;
    let answered = String::from_utf8_lossy(&answered).into_owned();
    assert!(answered.starts_with("HTTP/1.1 408"), "{answered:?}");
    let (mut server, status) = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit();
        (server, status)
    })
    .await
    .unwrap();
    assert!(status.success(), "{}", server.output());
    server.kill();
    let records = deliveries(&db);
    let stalled: Vec<_> = records
        .iter()
        .filter(|record| record.status == 408)
        .collect();
    assert_eq!(stalled.len(), 1, "{records:?}");
    assert!(
        stalled[0]
            .reason
            .as_deref()
            .is_some_and(|reason| reason.contains("had not ended when the server stopped")),
        "{records:?}"
    );
}
