//! Every row of the ingest contract (`product.md`), over real HTTP on loopback into a real SQLite
//! file: what each kind of delivery is answered, and what the store keeps for it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;
use provtrail::store::ExportRange;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_event_is_answered_accepted_and_kept_byte_for_byte_with_its_receipt() {
    let mut server = TestServer::start().await;
    let body = payload("doc_example.json");

    // On a raw connection, so that the client's own address is known.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let client_addr = stream.local_addr().unwrap().to_string();
    stream
        .write_all(&authorized_post("/events/isc-prod", &body))
        .await
        .unwrap();
    let answer = expect_response(&mut stream).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let json = answer.json();
    assert_eq!(json["status"], "accepted");
    let id = json["id"].as_i64().expect("an accepted event has an id");

    let second = server
        .post("/events", payload("minimal_required_only.json"))
        .await;
    assert_eq!(second.outcome().0, "accepted");

    let stored = server
        .app()
        .store
        .export_events(&ExportRange::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    let first = &stored[0];
    assert_eq!(first.id, id);
    assert_eq!(
        &first.raw[..],
        &body[..],
        "the raw body must be kept as received"
    );
    assert_eq!(first.receipt.channel.as_deref(), Some("isc-prod"));
    assert_eq!(
        first.receipt.remote_addr.as_deref(),
        Some(client_addr.as_str())
    );
    assert_eq!(first.receipt.method, "POST");
    assert_eq!(first.receipt.path, "/events/isc-prod");
    assert_eq!(first.receipt.size, body.len() as u64);
    assert_eq!(first.tracking_number, "4b4d982dddff4267ab12f0f1e72b5a6d");
    assert_eq!(stored[1].receipt.channel, None);
    assert_eq!(
        &stored[1].raw[..],
        &payload("minimal_required_only.json")[..]
    );

    let log = deliveries(&server.db);
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].status, 200);
    assert_eq!(log[0].outcome, "accepted");
    assert_eq!(log[0].event_id, Some(id));
    assert_eq!(log[0].channel.as_deref(), Some("isc-prod"));
    assert_eq!(log[0].remote_addr.as_deref(), Some(client_addr.as_str()));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_example_event_is_kept_byte_for_byte() {
    // 140 KB: parsed off the async workers and stored compressed; still returned as received.
    let mut server = TestServer::start().await;
    let body = payload("large_200x5.json");
    let answer = server.post("/events", body.clone()).await;
    let (status, id) = answer.outcome();
    assert_eq!(status, "accepted", "{}", answer.text());
    let stored = server
        .app()
        .store
        .export_events(&ExportRange::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, id);
    assert!(
        stored[0].raw == body,
        "the raw body must be kept as received"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_invocation_id_again_is_a_duplicate_with_the_original_id_and_is_stored_once() {
    let mut server = TestServer::start().await;
    let (status, id) = server.post("/events", event("inv-dup-1")).await.outcome();
    assert_eq!(status, "accepted");

    // Exactly the same delivery again.
    let again = server.post("/events", event("inv-dup-1")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.outcome(), ("duplicate".to_owned(), id));

    // The invocation id decides, even when the body differs (a retry re-serialized by the sender).
    let mut changed: Value = serde_json::from_slice(&event("inv-dup-1")).unwrap();
    changed["trackingNumber"] = "something-else".into();
    let changed = server
        .post(
            "/events/other-channel",
            serde_json::to_vec(&changed).unwrap(),
        )
        .await;
    assert_eq!(changed.outcome(), ("duplicate".to_owned(), id));

    let counts = server.app().store.counts().await.unwrap();
    assert_eq!(counts.events, 1, "a duplicate must not be stored twice");
    assert_eq!(counts.quarantined, 0);
    let stored = server
        .app()
        .store
        .export_events(&ExportRange::default(), 0, 10)
        .await
        .unwrap();
    assert!(
        stored[0].raw == event("inv-dup-1"),
        "the first body is kept"
    );

    // Counted: every delivery is in the log, duplicates pointing at the original.
    let log = deliveries(&server.db);
    let outcomes: Vec<_> = log
        .iter()
        .map(|d| (d.status, d.outcome.as_str(), d.event_id))
        .collect();
    assert_eq!(
        outcomes,
        [
            (200, "accepted", Some(id)),
            (200, "duplicate", Some(id)),
            (200, "duplicate", Some(id)),
        ]
    );
    assert!(
        log.iter()
            .all(|d| d.invocation_id.as_deref() == Some("inv-dup-1"))
    );
    let metrics = server.get("/metrics").await.text();
    assert!(
        metrics.contains(r#"provtrail_events_total{outcome="duplicate"} 2"#),
        "{metrics}"
    );
    server.shutdown().await;
}

/// The same JSON value with every object's keys in reverse order.
fn reverse_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.reverse();
            Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key, reverse_keys(value)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(reverse_keys).collect()),
        other => other,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_invocation_id_the_same_event_reserialized_is_a_duplicate() {
    let mut server = TestServer::start().await;
    let original = payload("doc_example.json");
    let (status, id) = server.post("/events", original.clone()).await.outcome();
    assert_eq!(status, "accepted");

    // Keys in another order at every level, no whitespace: the same event.
    let value: Value = serde_json::from_slice(&original).unwrap();
    let compact_reversed = serde_json::to_vec(&reverse_keys(value.clone())).unwrap();
    assert_ne!(compact_reversed, original);
    let again = server.post("/events", compact_reversed).await;
    assert_eq!(again.outcome(), ("duplicate".to_owned(), id));
    // Pretty-printed with other whitespace: still the same event.
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    assert_ne!(pretty, original);
    let again = server.post("/events", pretty).await;
    assert_eq!(again.outcome(), ("duplicate".to_owned(), id));

    // A different value is a different event.
    let mut other = value;
    other["accountRequests"][0]["ticketId"] = "72619263".into();
    let other = server
        .post("/events", serde_json::to_vec(&other).unwrap())
        .await;
    let (status, other_id) = other.outcome();
    assert_eq!(status, "accepted");
    assert_ne!(other_id, id);

    assert_eq!(server.app().store.counts().await.unwrap().events, 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_that_is_not_a_valid_event_is_quarantined_with_the_path_of_every_error() {
    let mut server = TestServer::start().await;
    let mut value: Value = serde_json::from_slice(&event("inv-invalid-1")).unwrap();
    value.as_object_mut().unwrap().remove("trackingNumber");
    value["recipient"] = "not an object".into();
    // What lenient validation only notes is a warning, not one of the errors that make the
    // event invalid.
    value["customField"] = 1.into();
    value["accountRequests"][0]["provisioningResult"] = "RETRYING".into();
    let body = serde_json::to_vec_pretty(&value).unwrap();

    let answer = server.post("/events", body.clone()).await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    let json = answer.json();
    assert_eq!(json["status"], "quarantined");
    let quarantine_id = json["id"].as_i64().expect("a quarantine id");
    assert_eq!(json["quarantine_id"], quarantine_id, "{json}");
    let errors = json["errors"].as_array().expect("errors is a list");
    for error in errors {
        assert!(error["path"].is_string(), "{error}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{error}"
        );
    }
    let paths: Vec<&str> = errors.iter().filter_map(|e| e["path"].as_str()).collect();
    assert!(
        paths.iter().any(|p| p.contains("trackingNumber")),
        "{paths:?}"
    );
    assert!(paths.iter().any(|p| p.contains("recipient")), "{paths:?}");
    assert_eq!(paths.len(), 2, "{paths:?}");
    let mut warned: Vec<&str> = json["warnings"]
        .as_array()
        .expect("warnings is a list")
        .iter()
        .filter_map(|w| w["path"].as_str())
        .collect();
    warned.sort_unstable();
    assert_eq!(
        warned,
        ["accountRequests[0].provisioningResult", "customField"],
        "{json}"
    );

    let kept = quarantine(&server.db);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].id, quarantine_id);
    assert_eq!(kept[0].reason, "invalid_event");
    assert!(kept[0].raw == body, "the raw body must be kept as received");
    assert_eq!(&kept[0].errors, &json["errors"]);
    assert_eq!(&kept[0].warnings, &json["warnings"]);

    // The same invalid delivery again is recognised, not kept twice.
    let again = server.post("/events", body).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.json()["id"].as_i64(), Some(quarantine_id));
    assert_eq!(again.json()["duplicate"], true);

    let counts = server.app().store.counts().await.unwrap();
    assert_eq!((counts.events, counts.quarantined), (0, 1));
    let log = deliveries(&server.db);
    assert_eq!(log.len(), 2);
    assert!(
        log.iter()
            .all(|d| d.status == 202 && d.quarantine_id == Some(quarantine_id))
    );

    // Another invalid document under the same invocation id is not taken for the first: kept
    // with its own problems, which its answer gives.
    let mut other: Value = serde_json::from_slice(&event("inv-invalid-1")).unwrap();
    other.as_object_mut().unwrap().remove("sources");
    let other = serde_json::to_vec(&other).unwrap();
    let answer = server.post("/events", other.clone()).await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    let json = answer.json();
    assert_eq!(json["duplicate"], false, "{json}");
    let other_id = json["id"].as_i64().unwrap();
    assert_ne!(other_id, quarantine_id);
    let kept = quarantine(&server.db);
    let entry = kept.iter().find(|entry| entry.id == other_id).unwrap();
    assert!(entry.raw == other);
    assert_eq!(&entry.errors, &json["errors"]);
    assert_eq!(json["errors"][0]["path"], "sources", "{json}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_that_is_not_json_or_not_utf8_is_answered_400_and_its_bytes_kept_in_quarantine() {
    let mut server = TestServer::start().await;
    let not_json = b"trackingNumber=4b4d982d&sources=Corp+AD".to_vec();
    let not_utf8 = b"{\"trackingNumber\": \"\xff\xfe\xfd\", \"sources\": \"Corp AD\"}".to_vec();
    let mut ids = Vec::new();
    for body in [&not_json, &not_utf8] {
        let answer = server.post("/events", body.clone()).await;
        assert_eq!(answer.status, 400, "{}", answer.text());
        let json = answer.json();
        assert_eq!(json["status"], "rejected");
        assert!(json["error"].as_str().is_some_and(|e| e.contains("JSON")));
        ids.push(json["quarantine_id"].as_i64().expect("a quarantine id"));
    }
    let kept = quarantine(&server.db);
    assert_eq!(kept.len(), 2);
    for (entry, (body, id)) in kept.iter().zip([&not_json, &not_utf8].iter().zip(&ids)) {
        assert_eq!(entry.id, *id);
        assert_eq!(entry.reason, "not_json");
        assert_eq!(&entry.raw, *body, "the raw bytes must be kept as received");
    }
    assert_eq!(server.app().store.counts().await.unwrap().events, 0);
    let statuses: Vec<i64> = deliveries(&server.db).iter().map(|d| d.status).collect();
    assert_eq!(statuses, [400, 400]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_credentials_are_answered_401_with_a_challenge_and_nothing_is_kept() {
    let mut server = TestServer::start().await;
    let client = client();
    let url = server.url("/events");
    let attempts = [
        None,
        Some("Bearer not-the-token".to_owned()),
        Some(format!("Bearer {TOKEN}x")),
        Some("Token test-token-0123456789".to_owned()),
        Some("Basic dGVzdDp0ZXN0".to_owned()),
        Some("Basic !!!".to_owned()),
    ];
    for (n, authorization) in attempts.iter().enumerate() {
        let mut request = client
            .post(&url)
            .header("content-type", "application/json")
            .body(event(&format!("inv-unauth-{n}")));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let answer = Answer::read(request.send().await.unwrap()).await;
        assert_eq!(answer.status, 401, "{authorization:?}: {}", answer.text());
        let challenge = answer
            .header("www-authenticate")
            .expect("a 401 names the scheme");
        assert!(challenge.contains("Bearer"), "{challenge}");
    }
    server.await_deliveries(attempts.len() as u64).await;
    let counts = server.app().store.counts().await.unwrap();
    assert_eq!((counts.events, counts.quarantined), (0, 0));
    assert!(
        deliveries(&server.db)
            .iter()
            .all(|d| d.status == 401 && d.outcome == "rejected" && d.event_id.is_none())
    );
    server.shutdown().await;
}

/// Posts the test event with `invocation_id` as JSON, through `request` (credentials set).
fn send_event(
    request: reqwest::RequestBuilder,
    invocation_id: String,
) -> impl Future<Output = reqwest::Result<reqwest::Response>> {
    request
        .header("content-type", "application/json")
        .body(event(&invocation_id))
        .send()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_every_configured_token_are_accepted_so_secrets_can_rotate() {
    let mut server = TestServer::start_with(|config| {
        config.ingest.tokens = vec!["old-token".into(), "new-token".into()];
        config.ingest.basic = vec!["isc:s3cret:with:colons".into()];
    })
    .await;
    let client = client();
    let url = server.url("/events");
    let send =
        |request: reqwest::RequestBuilder, n: usize| send_event(request, format!("inv-rotate-{n}"));
    let accepted = [
        send(client.post(&url).bearer_auth("old-token"), 0),
        send(client.post(&url).bearer_auth("new-token"), 1),
        send(
            client
                .post(&url)
                .basic_auth("isc", Some("s3cret:with:colons")),
            2,
        ),
    ];
    for (n, request) in accepted.into_iter().enumerate() {
        let answer = Answer::read(request.await.unwrap()).await;
        assert_eq!(answer.status, 200, "credential {n}: {}", answer.text());
        assert_eq!(answer.outcome().0, "accepted");
    }
    let refused = [
        send(client.post(&url).bearer_auth("older-token"), 3),
        send(client.post(&url).basic_auth("isc", Some("wrong")), 4),
        // A token is not a Basic password, nor the other way round.
        send(client.post(&url).basic_auth("isc", Some("new-token")), 5),
        send(client.post(&url).bearer_auth("isc:s3cret:with:colons"), 6),
    ];
    for (n, request) in refused.into_iter().enumerate() {
        let answer = Answer::read(request.await.unwrap()).await;
        assert_eq!(answer.status, 401, "credential {n}: {}", answer.text());
        let challenge = answer.header("www-authenticate").unwrap();
        assert!(
            challenge.contains("Bearer") && challenge.contains("Basic"),
            "{challenge}"
        );
    }
    assert_eq!(server.app().store.counts().await.unwrap().events, 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_given_by_reference_to_a_file_are_the_ones_accepted() {
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("isc-token");
    let password_file = secrets.path().join("isc-password");
    // As secret stores mount them: with a trailing newline, which is no part of the secret.
    std::fs::write(&token_file, "token-from-a-file-0123456789\n").unwrap();
    std::fs::write(&password_file, "password-from-a-file\n").unwrap();
    let token_reference = format!("${{file:{}}}", token_file.display());
    let basic_reference = format!("isc:${{file:{}}}", password_file.display());
    let mut server = TestServer::start_with(|config| {
        config.ingest.tokens = vec![token_reference.clone()];
        config.ingest.basic = vec![basic_reference.clone()];
    })
    .await;
    let client = client();
    let url = server.url("/events");
    let send = |request: reqwest::RequestBuilder, n: usize| {
        send_event(request, format!("inv-reference-{n}"))
    };
    let accepted = [
        send(
            client
                .post(&url)
                .bearer_auth("token-from-a-file-0123456789"),
            0,
        ),
        send(
            client
                .post(&url)
                .basic_auth("isc", Some("password-from-a-file")),
            1,
        ),
    ];
    for (n, request) in accepted.into_iter().enumerate() {
        let answer = Answer::read(request.await.unwrap()).await;
        assert_eq!(answer.status, 200, "credential {n}: {}", answer.text());
    }
    // The reference itself is no credential.
    let refused = [
        send(client.post(&url).bearer_auth(&token_reference), 2),
        send(
            client
                .post(&url)
                .basic_auth("isc", Some(basic_reference.trim_start_matches("isc:"))),
            3,
        ),
    ];
    for (n, request) in refused.into_iter().enumerate() {
        let answer = Answer::read(request.await.unwrap()).await;
        assert_eq!(answer.status, 401, "reference {n}: {}", answer.text());
    }
    server.shutdown().await;

    // A reference that cannot be resolved stops the start, naming the setting and not a value.
    let mut config = config(&secrets.path().join("other.db"));
    config.read.tokens = vec![format!(
        "${{file:{}}}",
        secrets.path().join("missing").display()
    )];
    let err = provtrail::app::Settings::from_config(&config)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("read.tokens") && err.contains("cannot read the secret file"),
        "{err}"
    );
    // Commands that serve nothing stand missing ones in, one per role, and say which.
    config.read.tokens = vec!["${env:PROVTRAIL_TEST_UNSET_READ_TOKEN}".into()];
    config.admin.tokens = vec!["${env:PROVTRAIL_TEST_UNSET_ADMIN_TOKEN}".into()];
    let (_, stood_in) = provtrail::app::Settings::from_config_standing_in(&config).unwrap();
    let stood_in: Vec<String> = stood_in.iter().map(ToString::to_string).collect();
    assert_eq!(stood_in.len(), 2, "{stood_in:?}");
    assert!(
        stood_in[0].contains("PROVTRAIL_TEST_UNSET_READ_TOKEN")
            && stood_in[1].contains("PROVTRAIL_TEST_UNSET_ADMIN_TOKEN"),
        "{stood_in:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_before_the_body_is_read() {
    // A long request timeout: a server that waited for the body would answer 408 only after the
    // test has given up waiting, so the 401 below can only come before the body.
    let mut server = TestServer::start_with(|config| {
        config.server.request_timeout = Some("120s".into());
    })
    .await;

    // Announces 100 MB and sends none of it.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(post_head("/events", "Content-Length: 100000000\r\n").as_bytes())
        .await
        .unwrap();
    let answer = expect_response(&mut stream).await;
    assert_eq!(answer.status, 401);
    assert!(answer.header("www-authenticate").is_some());

    // A chunked body that never ends, with a wrong token.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            post_head(
                "/events",
                "Authorization: Bearer wrong\r\nTransfer-Encoding: chunked\r\n",
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    stream
        .write_all(b"10\r\n{\"trackingNumber\r\n")
        .await
        .unwrap();
    let answer = expect_response(&mut stream).await;
    assert_eq!(answer.status, 401);

    server.await_deliveries(2).await;
    assert_eq!(server.get("/healthz").await.status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_413_with_content_length_and_with_chunked_encoding() {
    let mut server = TestServer::start_with(|config| {
        config.server.request_timeout = Some("120s".into());
    })
    .await;
    let limit = 1024 * 1024;

    // Content-Length over the limit: refused before the body is read (none is sent).
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!("{}Content-Length: {}\r\n", auth_line(), limit + 1);
    stream
        .write_all(post_head("/events", &head).as_bytes())
        .await
        .unwrap();
    let answer = expect_response(&mut stream).await;
    assert_eq!(answer.status, 413);

    // A length past what the log's size column holds is kept as the largest size, not wrapped.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!("{}Content-Length: {}\r\n", auth_line(), 1u64 << 63);
    stream
        .write_all(post_head("/events", &head).as_bytes())
        .await
        .unwrap();
    let answer = expect_response(&mut stream).await;
    assert_eq!(answer.status, 413);

    // Chunked, no length: refused once more than the limit has arrived. The body is written
    // while the answer is read, and the writer stops at 3 MiB or when the server hangs up.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!("{}Transfer-Encoding: chunked\r\n", auth_line());
    stream
        .write_all(post_head("/events", &head).as_bytes())
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let feeder = tokio::spawn(async move {
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
        for _ in 0..48 {
            if writer.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let answer = tokio::time::timeout(PATIENCE, read_response_half(&mut reader))
        .await
        .expect("no answer in time")
        .expect("the connection closed without an answer");
    assert_eq!(answer.status, 413);
    feeder.abort();

    // At the limit exactly: accepted (ISC's transport allows about 1 MB).
    let mut body = event("inv-at-limit");
    let closing = body.pop().unwrap();
    body.resize(limit - 1, b' ');
    body.push(closing);
    assert_eq!(body.len(), limit);
    let answer = server.post("/events", body.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());

    server.await_deliveries(4).await;
    let counts = server.app().store.counts().await.unwrap();
    assert_eq!((counts.events, counts.quarantined), (1, 0));
    let logged = deliveries(&server.db);
    let statuses: Vec<i64> = logged.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [413, 413, 413, 200]);
    assert_eq!(logged[0].size, limit as i64 + 1);
    assert_eq!(logged[1].size, i64::MAX);
    server.shutdown().await;
}

/// [`read_response`] on the read half of a split stream.
async fn read_response_half(reader: &mut tokio::net::tcp::OwnedReadHalf) -> Option<RawResponse> {
    use tokio::io::AsyncReadExt as _;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..pos + 4]).into_owned();
            let status = head.split_whitespace().nth(1)?.parse().ok()?;
            return Some(RawResponse {
                status,
                head,
                body: buffer[pos + 4..].to_vec(),
            });
        }
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_leaves_a_delivery_record_with_its_status() {
    let mut server = TestServer::start().await;
    let client = client();
    let url = server.url("/events/audit");
    assert_eq!(
        server
            .post("/events/audit", event("inv-log-1"))
            .await
            .status,
        200
    );
    assert_eq!(
        server
            .post("/events/audit", event("inv-log-1"))
            .await
            .status,
        200
    );
    assert_eq!(
        server.post("/events/audit", b"{}".to_vec()).await.status,
        202
    );
    assert_eq!(
        server.post("/events/audit", b"{".to_vec()).await.status,
        400
    );
    let unsupported = client
        .post(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(unsupported.status().as_u16(), 415);
    let unauthenticated = client.post(&url).body(event("inv-log-2")).send().await;
    assert_eq!(unauthenticated.unwrap().status().as_u16(), 401);
    // Announced over the limit; none of it is sent, since it is refused unread.
    let head = format!("{}Content-Length: 2000000\r\n", auth_line());
    let too_large = raw_exchange(server.addr, post_head("/events/audit", &head).as_bytes()).await;
    assert_eq!(too_large.status, 413);
    let bad_channel = server
        .post("/events/bad%20channel", event("inv-log-3"))
        .await;
    assert_eq!(bad_channel.status, 400);

    server.await_deliveries(8).await;
    let log = deliveries(&server.db);
    let seen: Vec<(i64, &str)> = log.iter().map(|d| (d.status, d.outcome.as_str())).collect();
    // The status recorded is the one answered; the body of a 400 or 415 is kept in quarantine.
    assert_eq!(
        seen,
        [
            (200, "accepted"),
            (200, "duplicate"),
            (202, "quarantined"),
            (400, "quarantined"),
            (415, "quarantined"),
            (401, "rejected"),
            (413, "rejected"),
            // A channel name that is not allowed: the body is kept all the same.
            (400, "quarantined"),
        ]
    );
    assert!(log.iter().all(|d| d.remote_addr.is_some()));
    assert!(
        log[..7]
            .iter()
            .all(|d| d.channel.as_deref() == Some("audit"))
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_of_one_event_store_it_once_and_all_answer_its_id() {
    const CLIENTS: usize = 32;
    let mut server = TestServer::start().await;
    let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let url = server.url("/events");
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let barrier = barrier.clone();
        let url = url.clone();
        // One client (and connection) each, connected before the barrier.
        let client = client();
        tasks.push(tokio::spawn(async move {
            let ready = client.get(url.replace("/events", "/healthz")).send().await;
            assert_eq!(ready.unwrap().status().as_u16(), 200);
            barrier.wait().await;
            let response = client
                .post(&url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(event("inv-same-for-all"))
                .send()
                .await
                .unwrap();
            Answer::read(response).await
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
        outcomes.push(answer.outcome());
    }
    let accepted = outcomes.iter().filter(|(s, _)| s == "accepted").count();
    let duplicates = outcomes.iter().filter(|(s, _)| s == "duplicate").count();
    assert_eq!((accepted, duplicates), (1, CLIENTS - 1), "{outcomes:?}");
    let ids: HashSet<i64> = outcomes.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), 1, "every answer names the one stored event");

    let counts = server.app().store.counts().await.unwrap();
    assert_eq!(counts.events, 1);
    let logged = delivery_count(server.app().store.as_ref()).await;
    assert_eq!(logged, CLIENTS as u64, "one delivery record per request");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_distinct_events_are_all_accepted_with_distinct_ids_and_all_stored() {
    const CLIENTS: usize = 64;
    let mut server = TestServer::start().await;
    let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let url = server.url("/events");
    let client = client();
    let mut tasks = Vec::new();
    for n in 0..CLIENTS {
        let (barrier, url, client) = (barrier.clone(), url.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let invocation = format!("inv-distinct-{n}");
            barrier.wait().await;
            let response = client
                .post(&url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(event(&invocation))
                .send()
                .await
                .unwrap();
            (invocation, Answer::read(response).await)
        }));
    }
    let mut acknowledged = std::collections::HashMap::new();
    for task in tasks {
        let (invocation, answer) = task.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
        let (status, id) = answer.outcome();
        assert_eq!(status, "accepted");
        acknowledged.insert(invocation, id);
    }
    let ids: HashSet<i64> = acknowledged.values().copied().collect();
    assert_eq!(ids.len(), CLIENTS, "every event gets its own id");
    assert_eq!(stored_invocations(&server.db), acknowledged);
    server.shutdown().await;
}

/// A readiness probe is committed at once, not held in a group commit that waits for more
/// events: with `commit_max_wait` at its largest (1 s) and events coming in, it still answers
/// within its second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_answered_within_its_second_while_commits_wait_for_more_events() {
    let mut server =
        TestServer::start_with(|config| config.store.commit_max_wait = Some("1s".into())).await;
    let url = server.url("/events");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut posters = Vec::new();
    // Enough at once that group commits gather (two or more jobs queued when one starts).
    for poster in 0..48 {
        let (url, stop) = (url.clone(), stop.clone());
        posters.push(tokio::spawn(async move {
            let client = client();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 100 {
                let response = client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(event(&format!("inv-ready-{poster}-{n}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                n += 1;
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Held in a group that gathers for up to a second, a probe would miss its second about
    // one time in ten: twenty probes.
    let mut answers = Vec::new();
    for _ in 0..20 {
        let ready = server.get("/readyz").await;
        answers.push((ready.status, ready.text()));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for poster in posters {
        poster.await.unwrap();
    }
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_endpoints_answer() {
    let mut server = TestServer::start().await;
    let health = server.get("/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let ready = server.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["status"], "ready");

    assert_eq!(
        server.post("/events", event("inv-metrics")).await.status,
        200
    );
    let metrics = server.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(
        text.contains(r#"provtrail_events_total{outcome="accepted"} 1"#),
        "{text}"
    );
    assert!(text.contains("provtrail_commit_batch_size"), "{text}");
    assert!(text.contains("provtrail_store_writable 1"), "{text}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_agent_that_is_not_ascii_is_still_recorded() {
    let mut server = TestServer::start().await;
    for (invocation, agent) in [
        ("inv-agent-utf8", "isc-tëst/1.0".as_bytes().to_vec()),
        ("inv-agent-latin1", b"isc-t\xe9st/1.0".to_vec()),
    ] {
        let body = event(invocation);
        let mut request = post_head(
            "/events",
            &format!("{}Content-Length: {}\r\n", auth_line(), body.len()),
        )
        .into_bytes();
        // The head ends with the blank line: the agent goes in before it.
        request.truncate(request.len() - 2);
        request.extend_from_slice(b"User-Agent: ");
        request.extend_from_slice(&agent);
        request.extend_from_slice(b"\r\n\r\n");
        request.extend_from_slice(&body);
        assert_eq!(raw_exchange(server.addr, &request).await.status, 200);
    }
    let conn = open_db(&server.db);
    let agents: Vec<Option<String>> = conn
        .prepare("SELECT user_agent FROM deliveries ORDER BY id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        agents,
        [
            Some("isc-tëst/1.0".to_owned()),
            Some("isc-t\u{fffd}st/1.0".to_owned())
        ]
    );
    server.shutdown().await;
}
