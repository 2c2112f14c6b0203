//! Requests a receiver on the internet will get sooner or later: wrong methods and content types,
//! bodies cut short, too large or too deep, bytes that are not UTF-8, clients that are slow or
//! stall. Each is answered as the contract says, and the server goes on serving after it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_on_the_ingest_routes_are_405_and_unknown_paths_404() {
    let mut server = TestServer::start().await;
    let client = client();
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        for path in ["/events", "/events/isc"] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let response = client
                .request(method.clone(), server.url(path))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(event("inv-wrong-method"))
                .send()
                .await
                .unwrap();
            let answer = Answer::read(response).await;
            assert_eq!(answer.status, 405, "{method} {path}: {}", answer.text());
            assert_eq!(answer.json()["status"], "rejected");
        }
    }
    let unknown = server.post("/event", event("inv-wrong-path")).await;
    assert_eq!(unknown.status, 404);
    // Below /events, more segments are a channel name that is refused (the body kept).
    let nested = server.post("/events/a/b", event("inv-wrong-path")).await;
    assert_eq!(nested.status, 400);
    assert_eq!(server.app().store.counts().await.unwrap().events, 0);
    // Each request below /events has its record (`/event` is not), a wrong method on a
    // channel's URL under that channel.
    server.await_deliveries(9).await;
    let records = deliveries(&server.db);
    for record in records.iter().filter(|record| record.status == 405) {
        let expected = (record.path == "/events/isc").then(|| "isc".to_owned());
        assert_eq!(record.channel, expected, "{record:?}");
    }
    server.assert_still_serving("inv-after-methods").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_type_that_is_not_json_is_415_and_the_body_is_kept_in_quarantine() {
    let mut server = TestServer::start().await;
    let client = client();
    let cases: [(&str, Vec<u8>); 3] = [
        ("text/plain", b"plain text".to_vec()),
        (
            "application/x-www-form-urlencoded",
            b"trackingNumber=1&sources=AD".to_vec(),
        ),
        // JSON, but declared in a charset the receiver does not read.
        ("application/json; charset=latin1", event("inv-latin1")),
    ];
    for (content_type, body) in &cases {
        let response = client
            .post(server.url("/events"))
            .bearer_auth(TOKEN)
            .header("content-type", *content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let answer = Answer::read(response).await;
        assert_eq!(answer.status, 415, "{content_type}: {}", answer.text());
        assert!(answer.json()["quarantine_id"].is_i64());
        let expected = if content_type.contains("charset") {
            "names a charset other than UTF-8"
        } else {
            "is not JSON"
        };
        assert!(answer.text().contains(expected), "{}", answer.text());
    }
    // JSON content types with parameters or a +json suffix are JSON.
    for (n, content_type) in [
        "application/json; charset=utf-8",
        "application/cloudevents+json",
    ]
    .iter()
    .enumerate()
    {
        let response = client
            .post(server.url("/events"))
            .bearer_auth(TOKEN)
            .header("content-type", *content_type)
            .body(event(&format!("inv-json-type-{n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{content_type}");
    }

    let kept = quarantine(&server.db);
    assert_eq!(kept.len(), cases.len());
    for (entry, (_, body)) in kept.iter().zip(&cases) {
        assert_eq!(entry.reason, "unsupported_media_type");
        assert_eq!(&entry.raw, body, "the body is kept as received");
    }
    server.assert_still_serving("inv-after-415").await;
    server.shutdown().await;
}

/// A valid event of about 200 KB (its `errors` list long), parsed off the async threads.
fn large_event(invocation_id: &str) -> Vec<u8> {
    let mut event: serde_json::Value = serde_json::from_slice(&event(invocation_id)).unwrap();
    event["errors"] = serde_json::json!(vec!["x".repeat(1_000); 200]);
    serde_json::to_vec(&event).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_client_stops_sending_or_leaves_after_it_is_kept_and_recorded() {
    let mut server = TestServer::start().await;
    let mut expected = Vec::new();
    for round in 0..3 {
        for (kind, body) in [
            ("small", event(&format!("inv-half-small-{round}"))),
            ("large", large_event(&format!("inv-half-large-{round}"))),
        ] {
            // The whole request, then the client's side shut: it still reads the answer.
            let mut stream = TcpStream::connect(server.addr).await.unwrap();
            stream
                .write_all(&authorized_post("/events", &body))
                .await
                .unwrap();
            stream.shutdown().await.unwrap();
            let answer = expect_response(&mut stream).await;
            assert_eq!(answer.status, 200, "{kind}, round {round}: {}", answer.head);
            expected.push(format!("inv-half-{kind}-{round}"));
        }
        // The whole request, then the connection closed without waiting for any answer.
        let invocation = format!("inv-gone-large-{round}");
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(&authorized_post("/events", &large_event(&invocation)))
            .await
            .unwrap();
        drop(stream);
        expected.push(invocation);
    }
    // Every request that arrived whole is kept, and is in the delivery log.
    server.await_deliveries(expected.len() as u64).await;
    let stored = stored_invocations(&server.db);
    for invocation in &expected {
        assert!(stored.contains_key(invocation), "{invocation} missing");
    }
    assert!(
        deliveries(&server.db)
            .iter()
            .all(|record| record.status == 200),
        "{:?}",
        deliveries(&server.db)
    );
    server.assert_still_serving("inv-after-half-close").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body_is_never_accepted_and_the_server_keeps_serving() {
    let mut server = TestServer::start().await;
    let body = event("inv-truncated");
    let head = format!("{}Content-Length: {}\r\n", auth_line(), body.len() + 100);

    // The client announces more than it sends, then stops sending but waits for the answer.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(post_head("/events", &head).as_bytes())
        .await
        .unwrap();
    stream.write_all(&body).await.unwrap();
    stream.shutdown().await.unwrap();
    let answer = expect_response(&mut stream).await;
    assert_eq!(
        answer.status,
        400,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );

    // The client goes away altogether in the middle of the body.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(post_head("/events", &head).as_bytes())
        .await
        .unwrap();
    stream.write_all(&body[..body.len() / 2]).await.unwrap();
    drop(stream);

    server.assert_still_serving("inv-after-truncated").await;
    let stored = stored_invocations(&server.db);
    assert!(
        !stored.contains_key("inv-truncated"),
        "a cut body is no event"
    );
    assert_eq!(stored.len(), 1);
    // The cut-short request that could be answered is in the delivery log, with the bytes that
    // did arrive.
    let records = deliveries(&server.db);
    let cut = records
        .iter()
        .find(|d| d.status == 400 && d.outcome == "rejected")
        .expect("a record of the cut body");
    assert_eq!(cut.size, body.len() as i64, "{cut:?}");
    assert!(
        cut.reason
            .as_deref()
            .unwrap()
            .contains(&format!("({} bytes arrived)", body.len())),
        "{cut:?}"
    );
    // A chunked body cut short has no length of its own: its record shows what arrived.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let chunked = format!("{}Transfer-Encoding: chunked\r\n", auth_line());
    stream
        .write_all(post_head("/events", &chunked).as_bytes())
        .await
        .unwrap();
    stream
        .write_all(b"10\r\n0123456789abcdef\r\n5\r\n01")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let answer = expect_response(&mut stream).await;
    assert_eq!(answer.status, 400, "{}", answer.head);
    server.await_deliveries(records.len() as u64 + 1).await;
    let last = deliveries(&server.db).pop().unwrap();
    assert_eq!((last.status, last.size), (400, 18), "{last:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabyte_body_is_413_and_the_server_keeps_serving() {
    let mut server = TestServer::start().await;
    const SIZE: usize = 10 * 1024 * 1024;
    for chunked in [false, true] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let framing = if chunked {
            "Transfer-Encoding: chunked\r\n".to_owned()
        } else {
            format!("Content-Length: {SIZE}\r\n")
        };
        let head = format!("{}{framing}", auth_line());
        stream
            .write_all(post_head("/events", &head).as_bytes())
            .await
            .unwrap();
        let (mut reader, mut writer) = stream.into_split();
        // The whole 10 MB is offered while the answer is read; the writer stops when the
        // server hangs up.
        let feeder = tokio::spawn(async move {
            let piece = vec![b'['; 256 * 1024];
            let mut framed = Vec::new();
            if chunked {
                framed.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            }
            framed.extend_from_slice(&piece);
            if chunked {
                framed.extend_from_slice(b"\r\n");
            }
            for _ in 0..SIZE / piece.len() {
                if writer.write_all(&framed).await.is_err() {
                    return;
                }
            }
        });
        let answer = tokio::time::timeout(PATIENCE, read_head(&mut reader))
            .await
            .expect("no answer in time")
            .expect("the connection closed without an answer");
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "chunked={chunked}: {answer}"
        );
        feeder.abort();
    }
    server.await_deliveries(2).await;
    server.assert_still_serving("inv-after-10mb").await;
    let counts = server.app().store.counts().await.unwrap();
    assert_eq!((counts.events, counts.quarantined), (1, 0));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_its_whole_body_before_reading_gets_the_answer_not_a_reset() {
    // Most HTTP clients write the whole request, then read. A request answered before its body
    // was read (a wrong credential, a body over the limit) must still reach such a client as
    // its 401 or 413: the server reads and drops the rest of the body before it closes, where
    // closing at once would reset the connection under the client's writes.
    let mut server = TestServer::start().await;
    for (credential, size, status) in [
        ("Authorization: Bearer wrong-token\r\n", 900 * 1024, "401"),
        ("", 3 * 1024 * 1024, "413"),
    ] {
        let credential = if credential.is_empty() {
            auth_line()
        } else {
            credential.to_owned()
        };
        for round in 0..10 {
            let mut stream = TcpStream::connect(server.addr).await.unwrap();
            let head = format!("{credential}Content-Length: {size}\r\n");
            stream
                .write_all(post_head("/events", &head).as_bytes())
                .await
                .unwrap();
            let body = vec![b' '; size];
            let sent = tokio::time::timeout(PATIENCE, stream.write_all(&body))
                .await
                .expect("the body was not taken in time");
            assert!(sent.is_ok(), "{status}, round {round}: {sent:?}");
            let (mut reader, _writer) = stream.into_split();
            let answer = tokio::time::timeout(PATIENCE, read_head(&mut reader))
                .await
                .expect("no answer in time")
                .unwrap_or_else(|| panic!("{status}, round {round}: closed without an answer"));
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status}")),
                "round {round}: {answer}"
            );
        }
    }
    server.assert_still_serving("inv-after-whole-bodies").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_still_sending_a_refused_body_gets_the_answer_not_a_reset() {
    // Over HTTP/2 a body dropped unread resets its stream; curl (as other clients) takes that
    // reset for the whole answer while it is still sending, and shows no 401 or 413.
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "curl is needed (see .ci/run)"
        );
        eprintln!("SKIPPED: curl is not installed");
        return;
    }
    let mut server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("big.json");
    std::fs::write(&body, vec![b' '; 2 * 1024 * 1024]).unwrap();
    let url = server.url("/events");
    for (token, status) in [("wrong-token", "401"), (TOKEN, "413")] {
        for round in 0..3 {
            let (url, body) = (url.clone(), body.clone());
            let output = tokio::task::spawn_blocking(move || {
                std::process::Command::new("curl")
                    .args(["--http2-prior-knowledge", "-sS", "-o", "/dev/null"])
                    .args(["-w", "%{http_code} %{http_version}", "--max-time", "20"])
                    .args(["-H", &format!("Authorization: Bearer {token}")])
                    .args(["-H", "Content-Type: application/json"])
                    .arg("--data-binary")
                    .arg(format!("@{}", body.display()))
                    .arg(&url)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            let shown = String::from_utf8_lossy(&output.stdout);
            assert_eq!(
                shown,
                format!("{status} 2"),
                "round {round}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    server
        .assert_still_serving("inv-after-http2-refusals")
        .await;
    server.shutdown().await;
}

/// Reads up to the end of a response head and returns it.
async fn read_head(reader: &mut tokio::net::tcp::OwnedReadHalf) -> Option<String> {
    use tokio::io::AsyncReadExt as _;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    Some(String::from_utf8_lossy(&buffer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_is_refused_or_quarantined_never_a_crash() {
    let mut server = TestServer::start().await;
    let deep = 100_000;
    let mut bodies: Vec<(&str, Vec<u8>)> = vec![
        ("unclosed arrays", "[".repeat(deep).into_bytes()),
        (
            "balanced arrays",
            format!("{}{}", "[".repeat(deep), "]".repeat(deep)).into_bytes(),
        ),
        (
            "nested objects",
            format!("{}1{}", r#"{"a":"#.repeat(deep / 2), "}".repeat(deep / 2)).into_bytes(),
        ),
    ];
    // Deep inside an otherwise valid event, where a lenient reader might follow it.
    let mut value: serde_json::Value = serde_json::from_slice(&event("inv-deep")).unwrap();
    value["accountRequests"][0]["attributeRequests"] = serde_json::json!([{
        "attributeName": "memberOf",
        "operation": "Add",
        "attributeValue": "PLACEHOLDER"
    }]);
    let text = serde_json::to_string(&value).unwrap().replace(
        r#""PLACEHOLDER""#,
        &format!("{}\"x\"{}", "[".repeat(deep / 4), "]".repeat(deep / 4)),
    );
    bodies.push(("deep attribute value", text.into_bytes()));
    for (what, body) in bodies {
        let answer = server.post("/events", body).await;
        assert!(
            answer.status == 400 || answer.status == 202,
            "{what}: {} {}",
            answer.status,
            answer.text()
        );
        assert!(!answer.json()["errors"].as_array().unwrap().is_empty());
    }
    server.assert_still_serving("inv-after-deep").await;
    assert_eq!(server.app().store.counts().await.unwrap().events, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_and_lone_surrogates_are_400_and_the_server_keeps_serving() {
    let mut server = TestServer::start().await;
    let bodies: [&[u8]; 4] = [
        b"\xff\xfe{\x00}\x00",
        b"{\"trackingNumber\": \"\xc3\x28\"}",
        // An overlong encoding of '/'.
        b"{\"trackingNumber\": \"\xc0\xaf\"}",
        br#"{"trackingNumber": "\ud800"}"#,
    ];
    for body in bodies {
        let answer = server.post("/events", body.to_vec()).await;
        assert_eq!(
            answer.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(body),
            answer.text()
        );
    }
    let kept = quarantine(&server.db);
    assert_eq!(kept.len(), bodies.len());
    for (entry, body) in kept.iter().zip(bodies) {
        assert_eq!(entry.raw, body, "the bytes are kept as received");
    }
    server.assert_still_serving("inv-after-utf8").await;
    server.shutdown().await;
}

/// Bodies share a budget of memory: a body announcing a length takes that room before it is
/// read, and one that does not fit waits until room is given back; bodies that fit beside the
/// others are not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_memory_budget_wait_for_room_and_those_that_fit_do_not() {
    let mut server = TestServer::start_with(|config| {
        config.server.request_timeout = Some("2s".into());
        config.ingest.max_body = Some("256KiB".into());
        config.ingest.max_body_memory = Some("256KiB".into());
    })
    .await;
    // Announces 200 KiB, sends a few bytes and stalls: its room is held until its 408.
    let head = format!("{}Content-Length: {}\r\n", auth_line(), 200 * 1024);
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(post_head("/events", &head).as_bytes())
        .await
        .unwrap();
    stalled.write_all(b"{\"a\":").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The metrics show the room it holds, of the budget.
    let metrics = server.get("/metrics").await.text();
    assert!(
        metrics.contains("provtrail_ingest_body_memory_bytes 204800")
            && metrics.contains("provtrail_ingest_body_memory_limit_bytes 262144"),
        "{metrics}"
    );
    // An event of ordinary size fits beside it.
    let answer = server.post("/events", event("inv-beside")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());

    // One of 100 KiB does not: it waits for the stalled body's room.
    let mut large: serde_json::Value = serde_json::from_slice(&event("inv-waits")).unwrap();
    large["padding"] = "x".repeat(100 * 1024).into();
    let large = large.to_string();
    let waiting = {
        let url = server.url("/events");
        tokio::spawn(async move {
            client()
                .post(url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(large)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "answered while the room was taken");
    assert!(!stored_invocations(&server.db).contains_key("inv-waits"));
    assert_eq!(expect_response(&mut stalled).await.status, 408);
    assert_eq!(waiting.await.unwrap(), 200);
    assert!(stored_invocations(&server.db).contains_key("inv-waits"));
    let metrics = server.get("/metrics").await.text();
    assert!(
        metrics.contains("provtrail_ingest_body_memory_bytes 0"),
        "{metrics}"
    );
    server.assert_still_serving("inv-after-room").await;
    server.shutdown().await;
}

/// Bodies of unknown length (chunked) take room for the largest body once they grow: more of
/// them at once than the budget holds wait their turn, and none holds room while it waits, so
/// all are kept, as they would be one after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_past_the_memory_budget_take_turns_rather_than_block_each_other() {
    let mut server = TestServer::start_with(|config| {
        config.server.request_timeout = Some("5s".into());
        config.ingest.max_body = Some("1MiB".into());
        config.ingest.max_body_memory = Some("2MiB".into());
    })
    .await;
    let sends: Vec<_> = (0..4)
        .map(|n| {
            let addr = server.addr;
            tokio::spawn(async move {
                let invocation = format!("inv-chunked-{n}");
                let mut large: serde_json::Value =
                    serde_json::from_slice(&event(&invocation)).unwrap();
                large["padding"] = "x".repeat(900 * 1024).into();
                let body = large.to_string().into_bytes();
                let head = format!("{}Transfer-Encoding: chunked\r\n", auth_line());
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream
                    .write_all(post_head("/events", &head).as_bytes())
                    .await
                    .unwrap();
                for chunk in body.chunks(16 * 1024) {
                    stream
                        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                        .await
                        .unwrap();
                    stream.write_all(chunk).await.unwrap();
                    stream.write_all(b"\r\n").await.unwrap();
                    // Paced, so that the bodies are all on their way at once.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                stream.write_all(b"0\r\n\r\n").await.unwrap();
                (invocation, expect_response(&mut stream).await.status)
            })
        })
        .collect();
    for send in sends {
        let (invocation, status) = send.await.unwrap();
        assert_eq!(status, 200, "{invocation}");
        assert!(stored_invocations(&server.db).contains_key(&invocation));
    }
    server.assert_still_serving("inv-after-chunked").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_that_stalls_or_trickles_past_the_request_timeout_is_answered_408() {
    let mut server = TestServer::start_with(|config| {
        config.server.request_timeout = Some("1s".into());
    })
    .await;
    let body = event("inv-slow");
    let head = format!("{}Content-Length: {}\r\n", auth_line(), body.len());

    // Stalls after a few bytes.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(post_head("/events", &head).as_bytes())
        .await
        .unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    let answer = expect_response(&mut stream).await;
    assert_eq!(answer.status, 408);

    // Trickles one byte every 50 ms: the whole body would take many times the timeout.
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(post_head("/events", &head).as_bytes())
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for byte in body {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let answer = tokio::time::timeout(PATIENCE, read_head(&mut reader))
        .await
        .expect("no answer in time")
        .expect("closed without an answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    trickle.abort();

    server.await_deliveries(2).await;
    assert!(deliveries(&server.db).iter().all(|d| d.status == 408));
    assert!(!stored_invocations(&server.db).contains_key("inv-slow"));
    server.assert_still_serving("inv-after-slow").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_finishes_its_headers_is_disconnected_after_the_header_timeout() {
    let mut server = TestServer::start_with(|config| {
        config.server.header_timeout = Some("1s".into());
    })
    .await;

    // Half a request head, then nothing.
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(b"POST /events HTTP/1.1\r\nHost: test\r\nContent-Type: appl")
        .await
        .unwrap();
    let seen = closed_by_server(&mut partial)
        .await
        .expect("the server must close a connection whose headers never end");
    // Answered, so that the client learns why, and told the connection is over.
    let seen = String::from_utf8_lossy(&seen);
    assert!(
        seen.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{seen}"
    );
    let (head, body) = seen.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    assert!(head.contains("\r\ndate: "), "{head}");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "status": "rejected",
            "error": "the request's headers did not end within the header timeout (1s)",
        })
    );

    // Headers one byte at a time, never finishing, each byte well within the timeout.
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let drip = tokio::spawn(async move {
        for byte in b"POST /events HTTP/1.1\r\nX-Padding: "
            .iter()
            .chain([b'a'; 400].iter())
        {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let closed = tokio::time::timeout(PATIENCE, async {
        use tokio::io::AsyncReadExt as _;
        let mut seen = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return seen,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let seen = closed.expect("a dripping header must be cut off");
    assert!(seen.starts_with(b"HTTP/1.1 408 "), "{seen:?}");
    drip.abort();

    server.assert_still_serving("inv-after-headers").await;
    // Both requests that began have their record.
    server.await_deliveries(3).await;
    let cut_off: Vec<Delivery> = deliveries(&server.db)
        .into_iter()
        .filter(|record| record.status == 408)
        .collect();
    assert_eq!(cut_off.len(), 2, "{cut_off:?}");
    for record in &cut_off {
        let reason = record.reason.as_deref().unwrap();
        assert!(
            reason.starts_with("the request's headers did not end within the header timeout (1s;"),
            "{reason}"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let mut server = TestServer::start_with(|config| {
        config.server.header_timeout = Some("1s".into());
    })
    .await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_by_server(&mut idle).await.is_some(),
        "a connection that never sends a request must not be held open"
    );
    // Too few bytes to tell HTTP/1 from HTTP/2: the start of the HTTP/2 preface, or of a method.
    for start in [&b"PRI * HTTP/2.0\r\n"[..], b"P"] {
        let mut stalled = TcpStream::connect(server.addr).await.unwrap();
        stalled.write_all(start).await.unwrap();
        assert!(
            closed_by_server(&mut stalled).await.is_some(),
            "a connection stalled after {:?} must not be held open",
            String::from_utf8_lossy(start)
        );
    }
    server.assert_still_serving("inv-after-idle").await;
    // A connection that sent nothing, or began HTTP/2 without a request, made no request; the
    // one that began an HTTP/1 request line did, and has its record.
    server.await_deliveries(2).await;
    let records = deliveries(&server.db);
    assert_eq!(records[0].status, 408, "{records:?}");
    assert!(
        records[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("1 byte received"),
        "{records:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_answers_health_after_a_barrage_of_every_kind_of_bad_request() {
    let mut server = TestServer::start_with(|config| {
        config.server.request_timeout = Some("1s".into());
        config.server.header_timeout = Some("1s".into());
    })
    .await;
    let addr = server.addr;
    let mut tasks = Vec::new();
    for round in 0..4 {
        tasks.push(tokio::spawn(async move {
            let requests: Vec<Vec<u8>> = vec![
                b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
                b"BREW /events HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
                b"POST /events HTTP/9.9\r\nHost: t\r\n\r\n".to_vec(),
                b"POST /events HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n".to_vec(),
                b"POST /events HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
                b"\x00\x01\x02 garbage\r\n\r\n".to_vec(),
                authorized_post("/events", b"\xff\xff"),
                authorized_post("/events", "[".repeat(50_000).as_bytes()),
                authorized_post(&format!("/events/{}", "c".repeat(200)), &event("inv-long")),
                authorized_post(&format!("/events?round={round}"), b"{}"),
            ];
            for request in requests {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                // Some of these are cut off by the server before they are written whole.
                let _ = stream.write_all(&request).await;
                let answer = tokio::time::timeout(PATIENCE, read_response(&mut stream))
                    .await
                    .expect("every bad request is answered or closed in time");
                if let Some(answer) = answer {
                    assert!(
                        answer.status >= 400 || answer.status == 202,
                        "{:?} was answered {}",
                        String::from_utf8_lossy(&request[..request.len().min(60)]),
                        answer.status
                    );
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    server.assert_still_serving("inv-after-barrage").await;
    assert_eq!(server.app().store.counts().await.unwrap().events, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_anywhere_give_their_place_back_after_the_request_timeout() {
    let mut server = TestServer::start_with(|config| {
        config.server.request_timeout = Some("1s".into());
        config.server.max_concurrent_requests = Some(2);
        config.read.tokens = vec!["read-token".into()];
    })
    .await;
    // Signing in takes no credential: a client that starts a form and never finishes it holds
    // its place until the request timeout ends it. Requests other than ingest have a quarter of
    // the cap (at least one place): a second stalled form is refused at once, and ingest keeps
    // the rest, since ISC does not send an event again.
    let form = b"POST /sign-in HTTP/1.1\r\nHost: test\r\nContent-Type: \
                  application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ntoken=";
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled.write_all(form).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut refused = TcpStream::connect(server.addr).await.unwrap();
    refused.write_all(form).await.unwrap();
    let answer = expect_response(&mut refused).await;
    assert_eq!(answer.status, 503, "{}", answer.head);
    assert!(
        answer.head.to_ascii_lowercase().contains("retry-after"),
        "{}",
        answer.head
    );
    server
        .assert_still_serving("inv-beside-a-stalled-form")
        .await;
    let answer = expect_response(&mut stalled).await;
    assert_eq!(answer.status, 408, "{}", answer.head);
    // So is a reader's request whose body stalls: it takes the read side's place, not ingest's.
    let mut reader = TcpStream::connect(server.addr).await.unwrap();
    reader
        .write_all(
            b"POST /api/v1/filter/test HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer \
              read-token\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server
        .assert_still_serving("inv-beside-a-stalled-read")
        .await;
    // Meanwhile another reader is told the server is busy in the read API's own error shape.
    let busy = raw_exchange(
        server.addr,
        b"GET /api/v1/events HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer read-token\r\n\r\n",
    )
    .await;
    assert_eq!(busy.status, 503, "{}", busy.head);
    assert!(
        busy.head.to_ascii_lowercase().contains("retry-after"),
        "{}",
        busy.head
    );
    let body: serde_json::Value = serde_json::from_slice(&busy.body).unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in progress"),
        "{body}"
    );
    let answer = expect_response(&mut reader).await;
    assert_eq!(
        answer.status,
        408,
        "{} {}",
        answer.head,
        String::from_utf8_lossy(&answer.body)
    );
    server.assert_still_serving("inv-after-stalled-forms").await;
    // A form larger than any sign-in is refused without reading it all.
    let big = raw_exchange(
        server.addr,
        b"POST /sign-in HTTP/1.1\r\nHost: test\r\nContent-Type: \
          application/x-www-form-urlencoded\r\nContent-Length: 2000000\r\n\r\ntoken=",
    )
    .await;
    assert_eq!(big.status, 413, "{}", big.head);
    // A browser gets the refusal as a page, as every other answer to its form: a form posted
    // from a page shows JSON otherwise. Sent whole here, and read past the limit.
    let mut browser_form = b"POST /sign-in HTTP/1.1\r\nHost: test\r\nAccept: text/html\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    let chunk = format!("token={}", "x".repeat(20_000));
    browser_form.extend_from_slice(format!("{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len()).as_bytes());
    let big = raw_exchange(server.addr, &browser_form).await;
    assert_eq!(big.status, 413, "{}", big.head);
    assert!(
        big.head
            .to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{}",
        big.head
    );
    let page = String::from_utf8_lossy(&big.body);
    assert!(page.contains("larger than the limit"), "{page}");
    // The API checks credentials before it reads a body: an outsider's is never read or held.
    let mut outsider = TcpStream::connect(server.addr).await.unwrap();
    outsider
        .write_all(
            b"POST /api/v1/filter/test HTTP/1.1\r\nHost: test\r\nContent-Type: \
              application/json\r\nContent-Length: 1000000\r\n\r\n{",
        )
        .await
        .unwrap();
    assert_eq!(expect_response(&mut outsider).await.status, 401);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_that_starts_no_more_requests_is_closed_after_the_idle_timeout() {
    let mut server = TestServer::start_with(|config| {
        config.server.idle_timeout = Some("1s".into());
    })
    .await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = axum::http::Request::get(format!("http://{}/healthz", server.addr))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    // The client keeps its handle (an h2 client with none left closes the connection itself)
    // and answers pings; the server ends the connection.
    let _still_open = client;
    tokio::time::timeout(PATIENCE, connection)
        .await
        .expect("the server kept an idle HTTP/2 connection open")
        .unwrap()
        .ok();
    server.assert_still_serving("inv-after-idle-h2").await;
    server.shutdown().await;
}

/// An idle HTTP/2 connection whose client stops answering pings does not hold the shutdown for
/// its whole grace, nor make it end as if a request went unanswered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_client_that_ignores_pings_does_not_hold_the_shutdown() {
    // The goodbye's ping is waited for a second at most, well within a grace shorter than the
    // header timeout (10 s): every request was answered, and the shutdown says so.
    let mut server = TestServer::start_with(|config| {
        config.server.header_timeout = Some("10s".into());
        config.server.shutdown_grace = Some("3s".into());
    })
    .await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Driven for one request, then held without being polled: pings go unanswered.
    let held = tokio::spawn(async move {
        let mut connection = connection;
        tokio::select! {
            _ = &mut connection => {}
            _ = stopped => {}
        }
        tokio::time::sleep(PATIENCE).await;
        drop(connection);
    });
    let mut client = client.ready().await.unwrap();
    let request = axum::http::Request::get(format!("http://{}/healthz", server.addr))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    stop.send(()).unwrap();
    let _still_open = client;
    let app = server.app.take().unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(15), app.shutdown())
        .await
        .expect("the shutdown waited for the silent client");
    assert!(answered, "the shutdown said requests went unanswered");
    held.abort();
}

/// A connection that never starts its TLS handshake holds no request: the shutdown does not
/// wait for its handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_starts_tls_does_not_hold_the_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_pem(dir.path(), "localhost");
    let mut server = TestServer::start_with(|config| {
        config.server.tls_cert = Some(cert.clone());
        config.server.tls_key = Some(key.clone());
        config.server.header_timeout = Some("30s".into());
    })
    .await;
    let _silent = TcpStream::connect(server.addr).await.unwrap();
    // The connection is accepted and its handshake awaited.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let app = server.app.take().unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(10), app.shutdown())
        .await
        .expect("the shutdown waited for the handshake");
    assert!(answered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let mut server = TestServer::start_with(|config| {
        config.server.max_connections = Some(4);
    })
    .await;
    // Half the cap each: two kept-alive connections from 127.0.0.1 ...
    let held = served_connections(&server, 2).await;
    // ... and a third from there is closed unanswered,
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await;
    let seen = closed_by_server(&mut third).await;
    assert_eq!(
        seen.as_deref(),
        Some(&b""[..]),
        "the third connection was served"
    );
    // while another address is still served.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = other.connect(server.addr).await.unwrap();
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(expect_response(&mut other).await.status, 200);
    drop(held);
    server.shutdown().await;

    // Behind a reverse proxy, one address is every client: the share can be raised to the cap.
    let mut server = TestServer::start_with(|config| {
        config.server.max_connections = Some(4);
        config.server.max_connections_per_address = Some(4);
    })
    .await;
    let held = served_connections(&server, 4).await;
    drop(held);
    server.shutdown().await;
}

/// `n` connections from 127.0.0.1, each served a request and kept open.
async fn served_connections(server: &TestServer, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(expect_response(&mut stream).await.status, 200);
        held.push(stream);
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_are_not_http_are_answered_by_http_and_still_recorded() {
    let mut server = TestServer::start().await;
    let auth = auth_line();
    let long_uri = format!(
        "POST /events/{} HTTP/1.1\r\nHost: test\r\n\r\n",
        "a".repeat(70_000)
    );
    let many_headers = format!(
        "POST /events HTTP/1.1\r\nHost: test\r\n{auth}{}\r\n",
        (0..200)
            .map(|n| format!("X-{n}: {n}\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(Vec<u8>, u16)> = vec![
        // A byte that no header value may hold.
        (
            format!("POST /events HTTP/1.1\r\nHost: test\r\n{auth}X: a\x01b\r\nContent-Length: 2\r\n\r\n{{}}")
                .into_bytes(),
            400,
        ),
        // Two lengths that disagree: no one can say where the body ends.
        (
            format!("POST /events HTTP/1.1\r\nHost: test\r\n{auth}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}")
                .into_bytes(),
            400,
        ),
        // A transfer coding that does not end in chunked.
        (
            format!("POST /events HTTP/1.1\r\nHost: test\r\n{auth}Transfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{{}}")
                .into_bytes(),
            400,
        ),
        (long_uri.into_bytes(), 414),
        (many_headers.into_bytes(), 431),
    ];
    for (n, (request, status)) in cases.iter().enumerate() {
        let answer = raw_exchange(server.addr, request).await;
        assert_eq!(answer.status, *status, "case {n}: {}", answer.head);
    }
    // Each has its record, with what was wrong and from where; the path was never read.
    server.await_deliveries(cases.len() as u64).await;
    let records = deliveries(&server.db);
    // A connection's record is made when the connection ends, which can come after the next
    // connection's: the statuses are compared as a set.
    let mut recorded: Vec<i64> = records.iter().map(|record| record.status).collect();
    let mut expected: Vec<i64> = cases.iter().map(|(_, status)| i64::from(*status)).collect();
    recorded.sort_unstable();
    expected.sort_unstable();
    assert_eq!(recorded, expected, "{records:?}");
    for record in &records {
        assert_eq!(record.outcome, "rejected", "{record:?}");
        assert_eq!(record.path, "-", "{record:?}");
        assert!(
            record
                .remote_addr
                .as_deref()
                .unwrap()
                .starts_with("127.0.0.1:"),
            "{record:?}"
        );
        assert!(
            record
                .reason
                .as_deref()
                .unwrap()
                .starts_with("not a well-formed HTTP request: "),
            "{record:?}"
        );
    }
    // And they are counted with the other answers.
    let metrics = server.get("/metrics").await.text();
    assert!(
        metrics.contains(r#"provtrail_http_requests_total{route="malformed",status="400"} 3"#),
        "{metrics}"
    );
    server.assert_still_serving("inv-after-malformed").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_stays_open_for_the_idle_timeout_not_the_header_timeout() {
    let mut server = TestServer::start_with(|config| {
        config.server.header_timeout = Some("1s".into());
        config.server.idle_timeout = Some("3s".into());
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = authorized_post("/events", &event("inv-keep-alive-1"));
    stream.write_all(&request).await.unwrap();
    assert_eq!(expect_response(&mut stream).await.status, 200);
    // Idle past the header timeout, within the idle timeout: the connection still serves.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let request = authorized_post("/events", &event("inv-keep-alive-2"));
    stream.write_all(&request).await.unwrap();
    assert_eq!(expect_response(&mut stream).await.status, 200);
    // The idle time counts from the last answer; past the idle timeout the server closes it.
    let started = std::time::Instant::now();
    assert!(
        closed_by_server(&mut stream).await.is_some(),
        "an idle connection must be closed after the idle timeout"
    );
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(2_500),
        "closed after {idle:?}"
    );
    server.assert_still_serving("inv-after-keep-alive").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_timeout_shorter_than_the_header_timeout_closes_a_kept_alive_connection() {
    let mut server = TestServer::start_with(|config| {
        config.server.header_timeout = Some("30s".into());
        config.server.idle_timeout = Some("1s".into());
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = authorized_post("/events", &event("inv-short-idle"));
    stream.write_all(&request).await.unwrap();
    assert_eq!(expect_response(&mut stream).await.status, 200);
    let started = std::time::Instant::now();
    assert!(closed_by_server(&mut stream).await.is_some());
    let idle = started.elapsed();
    assert!(
        idle < Duration::from_secs(15),
        "closed after {idle:?}: by the idle timeout (1s), not the header timeout (30s)"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_begun_on_a_kept_alive_connection_and_never_ended_has_its_record() {
    let mut server = TestServer::start_with(|config| {
        config.server.header_timeout = Some("1s".into());
        config.server.idle_timeout = Some("2s".into());
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = authorized_post("/events", &event("inv-before-stall"));
    stream.write_all(&request).await.unwrap();
    assert_eq!(expect_response(&mut stream).await.status, 200);
    // The next request's headers begin, and stop.
    stream
        .write_all(b"POST /events HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .await
        .unwrap();
    let seen = closed_by_server(&mut stream)
        .await
        .expect("the connection is closed once idle for the idle timeout");
    assert!(seen.starts_with(b"HTTP/1.1 408 "), "{seen:?}");
    server.await_deliveries(2).await;
    let records = deliveries(&server.db);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[1].status, 408, "{records:?}");
    let reason = records[1].reason.as_deref().unwrap();
    assert!(
        reason
            == "the headers of a request on a kept-alive connection did not end within the idle \
                timeout (2s; 43 bytes received): answered 408 and closed",
        "{reason}"
    );

    // A kept-alive connection left idle with nothing begun leaves no record; nor does one that
    // sends only blank lines, which come before a request line and begin none (RFC 9112).
    let mut quiet = TcpStream::connect(server.addr).await.unwrap();
    let request = authorized_post("/events", &event("inv-quiet"));
    quiet.write_all(&request).await.unwrap();
    assert_eq!(expect_response(&mut quiet).await.status, 200);
    assert_eq!(closed_by_server(&mut quiet).await, Some(Vec::new()));
    let mut blank = TcpStream::connect(server.addr).await.unwrap();
    let request = authorized_post("/events", &event("inv-blank"));
    blank.write_all(&request).await.unwrap();
    assert_eq!(expect_response(&mut blank).await.status, 200);
    blank.write_all(b"\r\n").await.unwrap();
    assert_eq!(closed_by_server(&mut blank).await, Some(Vec::new()));
    server.assert_still_serving("inv-after-stall").await;
    server.await_deliveries(5).await;
    let records = deliveries(&server.db);
    assert_eq!(
        records.iter().filter(|record| record.status == 408).count(),
        1,
        "{records:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_given_before_the_body_was_read_says_the_connection_closes() {
    let mut server = TestServer::start_with(|config| {
        config.ingest.max_body = Some("2KiB".into());
    })
    .await;
    let says_close = |head: &str| head.to_ascii_lowercase().contains("connection: close");
    // Over the limit, and refused credentials: the rest of the body is never read.
    let big = post_head(
        "/events",
        &format!("{}Content-Length: 5000\r\n", auth_line()),
    );
    let answer = raw_exchange(server.addr, format!("{big}{}", "x".repeat(100)).as_bytes()).await;
    assert_eq!(answer.status, 413, "{}", answer.head);
    assert!(says_close(&answer.head), "{}", answer.head);
    let outsider = post_head(
        "/events",
        "Authorization: Bearer wrong\r\nContent-Length: 1000\r\n",
    );
    let answer = raw_exchange(server.addr, format!("{outsider}{{").as_bytes()).await;
    assert_eq!(answer.status, 401, "{}", answer.head);
    assert!(says_close(&answer.head), "{}", answer.head);
    // A body read whole keeps the connection: two events, one connection, no close announced.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for invocation in ["inv-kept-alive-1", "inv-kept-alive-2"] {
        let body = event(invocation);
        let head = post_head(
            "/events",
            &format!("{}Content-Length: {}\r\n", auth_line(), body.len()),
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.unwrap();
        let answer = expect_response(&mut stream).await;
        assert_eq!(answer.status, 200, "{}", answer.head);
        assert!(!says_close(&answer.head), "{}", answer.head);
    }
    // So does a request without a body, whatever its answer.
    stream
        .write_all(b"POST /events HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let answer = expect_response(&mut stream).await;
    assert_eq!(answer.status, 401, "{}", answer.head);
    assert!(!says_close(&answer.head), "{}", answer.head);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(expect_response(&mut stream).await.status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_1_request_needs_exactly_one_valid_host() {
    let mut server = TestServer::start().await;
    let body = String::from_utf8(event("inv-without-host")).unwrap();
    let request = |version: &str, hosts: &str| {
        format!(
            "POST /events HTTP/{version}\r\n{hosts}Content-Type: application/json\r\n{}\
             Content-Length: {}\r\n\r\n{body}",
            auth_line(),
            body.len()
        )
    };
    for (hosts, why) in [
        ("", "needs a Host"),
        ("Host: a\r\nHost: b\r\n", "not several"),
        ("Host: user@test\r\n", "not a host name"),
        ("Host: te st\r\n", "not a host name"),
        ("Host: test:99999x\r\n", "not a host name"),
        ("Host: test:70000\r\n", "not a host name"),
    ] {
        let answer = raw_exchange(server.addr, request("1.1", hosts).as_bytes()).await;
        assert_eq!(answer.status, 400, "{hosts:?}: {}", answer.head);
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(why), "{hosts:?}: {error}");
    }
    // Each refusal is in the delivery log, and nothing was stored.
    server.await_deliveries(6).await;
    let log = deliveries(&server.db);
    assert_eq!(log.len(), 6, "{log:?}");
    assert!(log.iter().all(|d| d.status == 400 && d.event_id.is_none()));
    // And counted with the other answers.
    let metrics = server.get("/metrics").await.text();
    assert!(
        metrics.contains(r#"provtrail_http_requests_total{route="/events",status="400"} 6"#),
        "{metrics}"
    );
    // HTTP/1.0 has no Host to require; a port is part of a host; probes answer without one.
    let answer = raw_exchange(server.addr, request("1.0", "").as_bytes()).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    for host in ["Host: [::1]:8080\r\n", "Host: test:65535\r\n"] {
        let answer = raw_exchange(server.addr, request("1.1", host).as_bytes()).await;
        assert_eq!(answer.status, 200, "{host:?}: {}", answer.head);
    }
    let answer = raw_exchange(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    server
        .assert_still_serving("inv-host-with-port-is-fine")
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expectation_other_than_100_continue_is_answered_417() {
    let mut server = TestServer::start().await;
    let body = String::from_utf8(event("inv-expect")).unwrap();
    let request = |expect: &str| {
        format!(
            "POST /events HTTP/1.1\r\nHost: test\r\nExpect: {expect}\r\nContent-Type: \
             application/json\r\n{}Content-Length: {}\r\n\r\n{body}",
            auth_line(),
            body.len()
        )
    };
    let answer = raw_exchange(server.addr, request("teapot").as_bytes()).await;
    assert_eq!(answer.status, 417, "{}", answer.head);
    assert!(
        answer
            .head
            .to_ascii_lowercase()
            .contains("connection: close")
    );
    // Like every request to `/events`, it is in the delivery log and counted; nothing stored.
    server.await_deliveries(1).await;
    let log = deliveries(&server.db);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!((log[0].status, log[0].event_id), (417, None), "{log:?}");
    assert!(
        log[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("Expect: 100-continue"),
        "{log:?}"
    );
    let metrics = server.get("/metrics").await.text();
    assert!(
        metrics.contains(r#"provtrail_http_requests_total{route="/events",status="417"} 1"#),
        "{metrics}"
    );
    // The one expectation HTTP/1.1 defines is met, whatever its case.
    let answer = raw_exchange(server.addr, request("100-Continue").as_bytes()).await;
    assert!(
        answer.status == 100 || answer.status == 200,
        "{}",
        answer.head
    );
    server.assert_still_serving("inv-after-expect").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_body_reset_before_its_announced_length_is_not_taken_for_the_whole() {
    let mut server = TestServer::start().await;
    let body = event("inv-reset-short");
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = axum::http::Request::post(format!("http://{}/events", server.addr))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .header("content-length", body.len().to_string())
        .body(())
        .unwrap();
    let (_response, mut stream) = client.send_request(request, false).unwrap();
    // All but the closing brace, then a reset that says "no error": the client gave up.
    let cut = body.len() - 1;
    stream
        .send_data(bytes::Bytes::copy_from_slice(&body[..cut]), false)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.send_reset(h2::Reason::NO_ERROR);

    let deadline = std::time::Instant::now() + PATIENCE;
    let record = loop {
        if let Some(record) = deliveries(&server.db).into_iter().next() {
            break record;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no record of the reset request"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(record.status, 400, "{record:?}");
    assert_eq!(record.size, cut as i64, "{record:?}");
    assert!(
        record
            .reason
            .as_deref()
            .is_some_and(|reason| reason.contains("could not be read completely")),
        "{record:?}"
    );
    assert!(stored_invocations(&server.db).is_empty());
    assert!(quarantine(&server.db).is_empty());
    server.assert_still_serving("inv-after-reset").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_body_reset_without_an_announced_length_is_kept_only_when_whole() {
    let mut server = TestServer::start().await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    // Without a Content-Length.
    let request = || {
        axum::http::Request::post(format!("http://{}/events", server.addr))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(())
            .unwrap()
    };
    // A whole event and a cut one, each sent without a length and then reset with "no
    // error" instead of ended. hyper ends both bodies as if they were whole: the cut one is
    // refused (it is no whole JSON document), the whole one is kept.
    let whole = event("inv-reset-whole");
    let cut = event("inv-reset-cut");
    for body in [&whole[..], &cut[..cut.len() / 2]] {
        let (_response, mut stream) = client.send_request(request(), false).unwrap();
        stream
            .send_data(bytes::Bytes::copy_from_slice(body), false)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stream.send_reset(h2::Reason::NO_ERROR);
    }
    // An event sent whole after them on the same connection is kept: once it is, the two
    // before it have been handled.
    let (response, mut stream) = client.send_request(request(), false).unwrap();
    stream
        .send_data(bytes::Bytes::from(event("inv-after-resets")), true)
        .unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    server.await_deliveries(3).await;
    let kept = stored_invocations(&server.db);
    let mut kept: Vec<_> = kept.keys().collect();
    kept.sort();
    assert_eq!(kept, ["inv-after-resets", "inv-reset-whole"]);
    assert!(quarantine(&server.db).is_empty());
    // Each request has its record: the cut one says why nothing of it was kept.
    let records = deliveries(&server.db);
    let refused: Vec<_> = records
        .iter()
        .filter(|record| record.status == 400)
        .collect();
    assert_eq!(refused.len(), 1, "{records:?}");
    assert_eq!(refused[0].size, (cut.len() / 2) as i64, "{records:?}");
    assert!(
        refused[0].reason.as_deref().is_some_and(|reason| {
            reason.starts_with("the client went away (its connection closed or the stream")
                && reason.contains("before its body was whole")
        }),
        "{records:?}"
    );
    assert_eq!(
        records.iter().filter(|record| record.status == 200).count(),
        2,
        "{records:?}"
    );
    server.shutdown().await;
}

/// Streams sent whole (their last frame says so) and then cancelled by the client, as a client
/// that does not wait for the answer does: each event is kept, with or without a length, whether
/// the reset comes in the same packet or a little later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_cancelled_after_its_last_frame_is_kept() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut server = TestServer::start().await;
    let mut sent = Vec::new();
    // Thirty streams a connection, more than HTTP/2's default guard against rapid resets lets a
    // client reset before the server takes them (20: past it, the connection ends, with every
    // stream not taken yet).
    for connection_number in 0..6u32 {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        let bodies: Vec<_> = (0..30)
            .map(|n| {
                let id = format!("inv-cancelled-{connection_number}-{n}");
                sent.push(id.clone());
                event(&id)
            })
            .collect();
        let with_length = connection_number % 2 == 0;
        let frames = http2_requests(&server.addr.to_string(), &bodies, with_length);
        let resets: Vec<u8> = (0..bodies.len() as u32)
            .flat_map(|n| http2_frame(0x3, 0, 1 + 2 * n, &8u32.to_be_bytes()))
            .collect();
        if connection_number < 3 {
            // The resets in the same packet as the requests.
            tcp.write_all(&[frames, resets].concat()).await.unwrap();
        } else {
            tcp.write_all(&frames).await.unwrap();
            tokio::time::sleep(Duration::from_millis(u64::from(connection_number))).await;
            tcp.write_all(&resets).await.unwrap();
        }
        // The connection stays open a moment, reading what the server sends.
        let mut answers = vec![0; 64 * 1024];
        let _ = tokio::time::timeout(Duration::from_millis(300), async {
            while tcp.read(&mut answers).await.is_ok_and(|n| n > 0) {}
        })
        .await;
    }
    assert_every_event_kept(&server, &sent).await;
    server.assert_still_serving("inv-after-cancels").await;
    server.shutdown().await;
}

/// Every event of `sent` is stored, and each request recorded as accepted.
async fn assert_every_event_kept(server: &TestServer, sent: &[String]) {
    server.await_deliveries(sent.len() as u64).await;
    let kept = stored_invocations(&server.db);
    let missing: Vec<_> = sent.iter().filter(|id| !kept.contains_key(*id)).collect();
    let records = deliveries(&server.db);
    assert!(missing.is_empty(), "not kept: {missing:?}; {records:?}");
    assert!(
        records.iter().all(|record| record.status == 200),
        "{records:?}"
    );
}

/// An HTTP/2 frame: its kind, flags, stream and payload.
fn http2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HTTP/2 frames written by hand: the connection preface with empty settings, then for each
/// body a request on streams 1, 3, 5 … (`HEADERS` with literal fields, then one `DATA` frame
/// that ends the stream).
fn http2_requests(authority: &str, bodies: &[Vec<u8>], with_length: bool) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, value: usize) {
        // HPACK integers with a 7-bit prefix (the string lengths here, never Huffman-coded).
        if value < 127 {
            out.push(value as u8);
            return;
        }
        out.push(127);
        let mut rest = value - 127;
        while rest >= 128 {
            out.push((rest % 128 + 128) as u8);
            rest /= 128;
        }
        out.push(rest as u8);
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(http2_frame(0x4, 0, 0, &[]));
    for (n, body) in bodies.iter().enumerate() {
        let stream = 1 + 2 * n as u32;
        let length = body.len().to_string();
        let authorization = format!("Bearer {TOKEN}");
        let mut fields = vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/events"),
            (":authority", authority),
            ("authorization", authorization.as_str()),
            ("content-type", "application/json"),
        ];
        if with_length {
            fields.push(("content-length", length.as_str()));
        }
        let mut block = Vec::new();
        for (name, value) in fields {
            // A literal field without indexing, with a literal name.
            block.push(0);
            integer(&mut block, name.len());
            block.extend_from_slice(name.as_bytes());
            integer(&mut block, value.len());
            block.extend_from_slice(value.as_bytes());
        }
        out.extend(http2_frame(0x1, 0x4, stream, &block));
        out.extend(http2_frame(0x0, 0x1, stream, body));
    }
    out
}

/// A client that writes whole requests and closes the connection at once: every event is kept
/// and recorded, none dropped with its stream before the server took it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_sent_whole_just_before_the_connection_closes_are_kept() {
    use tokio::io::AsyncWriteExt as _;
    let mut server = TestServer::start().await;
    let mut sent = Vec::new();
    for connection_number in 0..8 {
        let bodies: Vec<_> = (0..15)
            .map(|n| {
                let id = format!("inv-closed-{connection_number}-{n}");
                sent.push(id.clone());
                event(&id)
            })
            .collect();
        let frames = http2_requests(
            &server.addr.to_string(),
            &bodies,
            connection_number % 2 == 0,
        );
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(&frames).await.unwrap();
        drop(tcp);
    }
    assert_every_event_kept(&server, &sent).await;
    server.assert_still_serving("inv-after-closes").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_whose_client_left_before_the_answer_leave_the_in_flight_gauge() {
    let mut server = TestServer::start().await;
    // Whole requests, each from a client that goes away at once: the server drops the handler
    // while it waits for the commit.
    for n in 0..20 {
        let body = event(&format!("inv-left-{n}"));
        let head = format!("{}Content-Length: {}\r\n", auth_line(), body.len());
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(post_head("/events", &head).as_bytes())
            .await
            .unwrap();
        stream.write_all(&body).await.unwrap();
        drop(stream);
    }
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let metrics = server.get("/metrics").await.text();
        let in_flight = metrics
            .lines()
            .find_map(|line| line.strip_prefix("provtrail_http_requests_in_flight "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .expect("the in-flight gauge");
        // The request for the metrics is itself in flight.
        if in_flight <= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{in_flight} requests still counted in flight"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.shutdown().await;
}
