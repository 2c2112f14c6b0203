//! Deliveries at the edges of the ingest contract: envelopes with a blank invocation id, channel
//! names that are not allowed, compressed bodies, two credentials in one request, requests to
//! the ingest paths that no handler takes, and the concurrency cap. In each case no event an
//! authenticated sender delivered is lost, and every request leaves a delivery record.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

/// A valid event whose envelope carries `invocation_id` verbatim (which may be blank).
fn event_with_id(tracking_number: &str, invocation_id: &str) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(&event("x")).unwrap();
    value["trackingNumber"] = tracking_number.into();
    value["_metadata"]["invocationId"] = invocation_id.into();
    serde_json::to_vec(&value).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_with_a_blank_invocation_id_are_told_apart_by_their_body() {
    let mut server = TestServer::start().await;
    let mut ids = Vec::new();
    for (n, blank) in ["", "", "   ", "\t"].iter().enumerate() {
        let answer = server
            .post("/events", event_with_id(&format!("blank-{n}"), blank))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let (status, id) = answer.outcome();
        assert_eq!(status, "accepted", "{blank:?}: {}", answer.text());
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 4, "four distinct events, four ids: {ids:?}");
    // The same body again is still a duplicate, found by its canonical form.
    let again = server
        .post("/events", event_with_id("blank-2", "   "))
        .await;
    assert_eq!(again.outcome(), ("duplicate".to_owned(), ids[2]));
    assert_eq!(server.app().store.counts().await.unwrap().events, 4);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_name_that_is_not_allowed_keeps_the_body_after_checking_credentials() {
    let mut server = TestServer::start().await;
    let client = client();
    let paths = [
        "/events/bad%20chan",
        "/events/caf%C3%A9",
        "/events/a%2Fb",
        "/events/%FF",
        // An encoded slash is part of the name, not the slash that ends the URL.
        "/events/ops%2F",
    ];
    // Without credentials: 401 first, whatever the channel.
    for path in paths {
        let response = client
            .post(server.url(path))
            .header("content-type", "application/json")
            .body(event("inv-unauth-channel"))
            .send()
            .await
            .unwrap();
        let answer = Answer::read(response).await;
        assert_eq!(answer.status, 401, "{path}: {}", answer.text());
        assert!(answer.header("www-authenticate").is_some(), "{path}");
    }
    // With them: 400 with a JSON error, and the body kept in quarantine as it arrived.
    let mut bodies = Vec::new();
    for (n, path) in paths.iter().enumerate() {
        let body = event(&format!("inv-channel-{n}"));
        let answer = server.post(path, body.clone()).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.text());
        let json = answer.json();
        assert_eq!(json["status"], "rejected");
        assert!(
            json["error"].as_str().unwrap().contains("channel"),
            "{path}: {json}"
        );
        assert!(json["quarantine_id"].is_i64(), "{path}: {json}");
        bodies.push(body);
    }
    let kept = quarantine(&server.db);
    assert_eq!(kept.len(), paths.len());
    for (entry, body) in kept.iter().zip(&bodies) {
        assert_eq!(entry.reason, "bad_channel");
        assert_eq!(&entry.raw, body);
    }
    server.await_deliveries(2 * paths.len() as u64).await;
    let log = deliveries(&server.db);
    let statuses: Vec<i64> = log.iter().map(|d| d.status).collect();
    let (unauthenticated, refused) = statuses.split_at(paths.len());
    assert!(
        unauthenticated.iter().all(|&status| status == 401),
        "{statuses:?}"
    );
    assert!(refused.iter().all(|&status| status == 400), "{statuses:?}");
    assert!(log[paths.len()..].iter().all(|d| d.quarantine_id.is_some()));
    server.assert_still_serving("inv-after-channels").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_kept_for_how_it_was_sent_and_again_for_what_it_holds_has_both_entries() {
    let mut server = TestServer::start().await;
    // Not an event, first sent to a channel that is not allowed, then to the right URL.
    let body = br#"{"trackingNumber": 7}"#.to_vec();
    let refused = server.post("/events/bad%20name", body.clone()).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    let refused_again = server.post("/events/bad%20name", body.clone()).await;
    assert_eq!(refused_again.status, 400, "{}", refused_again.text());
    assert_eq!(
        refused_again.json()["quarantine_id"],
        refused.json()["quarantine_id"],
        "the same refusal twice is one entry"
    );
    let invalid = server.post("/events", body.clone()).await;
    assert_eq!(invalid.status, 202, "{}", invalid.text());
    let invalid_json = invalid.json();
    assert_eq!(invalid_json["status"], "quarantined");
    assert_ne!(invalid_json["duplicate"], true, "{invalid_json}");
    assert_ne!(invalid_json["id"], refused.json()["quarantine_id"]);
    // Another channel that is not allowed is another refusal, with its own message.
    let other = server.post("/events/other%21", body.clone()).await;
    assert_eq!(other.status, 400, "{}", other.text());
    assert_ne!(
        other.json()["quarantine_id"],
        refused.json()["quarantine_id"]
    );
    let kept = quarantine(&server.db);
    let reasons: Vec<&str> = kept.iter().map(|entry| entry.reason.as_str()).collect();
    assert_eq!(reasons, ["bad_channel", "invalid_event", "bad_channel"]);
    assert!(
        kept[2].errors.to_string().contains("other!"),
        "{}",
        kept[2].errors
    );
    // Each entry holds the problems of its own reason.
    let invalid_errors = kept[1].errors.to_string();
    assert!(
        invalid_errors.contains("trackingNumber"),
        "{invalid_errors}"
    );
    assert!(!kept[0].errors.to_string().contains("trackingNumber"));
    assert!(kept.iter().all(|entry| entry.raw == body));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_body_is_415_and_kept_as_sent() {
    let mut server = TestServer::start().await;
    let client = client();
    let body = |encoding: &str| {
        let mut body = b"\x1f\x8b\x08\x00\x00\x00\x00\x00compressed as ".to_vec();
        body.extend_from_slice(encoding.as_bytes());
        body
    };
    let encodings = ["gzip", "br", "identity, deflate"];
    for encoding in encodings {
        let response = client
            .post(server.url("/events"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(body(encoding))
            .send()
            .await
            .unwrap();
        let answer = Answer::read(response).await;
        assert_eq!(answer.status, 415, "{encoding}: {}", answer.text());
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains("content encoding"), "{encoding}: {error}");
        // The answer says what the server does read (RFC 9110, section 15.5.16).
        assert_eq!(
            answer.headers.get("accept-encoding").map(String::as_str),
            Some("identity"),
            "{encoding}"
        );
    }
    let kept = quarantine(&server.db);
    let raws: Vec<Vec<u8>> = kept.into_iter().map(|entry| entry.raw).collect();
    assert_eq!(raws, encodings.map(body));
    // `identity` is no encoding at all.
    let response = client
        .post(server.url("/events"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .header("content-encoding", "identity")
        .body(event("inv-identity"))
        .send()
        .await
        .unwrap();
    let answer = Answer::read(response).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    // A 415 for the media type is not about codings.
    let response = client
        .post(server.url("/events"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body(event("inv-text"))
        .send()
        .await
        .unwrap();
    let answer = Answer::read(response).await;
    assert_eq!(answer.status, 415, "{}", answer.text());
    assert_eq!(answer.headers.get("accept-encoding"), None);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_are_refused_whatever_their_order() {
    let mut server = TestServer::start().await;
    let right = format!("Authorization: Bearer {TOKEN}\r\n");
    let wrong = "Authorization: Bearer not-the-token\r\n";
    for (n, headers) in [format!("{right}{wrong}"), format!("{wrong}{right}")]
        .iter()
        .enumerate()
    {
        let body = event(&format!("inv-two-auth-{n}"));
        let mut request = post_head(
            "/events",
            &format!("{headers}Content-Length: {}\r\n", body.len()),
        )
        .into_bytes();
        request.extend_from_slice(&body);
        let answer = raw_exchange(server.addr, &request).await;
        assert_eq!(
            answer.status,
            401,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        assert!(answer.header("www-authenticate").is_some());
    }
    assert_eq!(server.app().store.counts().await.unwrap().events, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_post_under_the_ingest_path_is_taken_refused_with_its_body_kept_or_recorded() {
    let mut server = TestServer::start().await;
    let client = client();
    let get = client
        .get(server.url("/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 405);
    // A subscription URL with a trailing slash is the same URL without it.
    let slash = server.post("/events/", event("inv-slash")).await;
    assert_eq!(slash.status, 200, "{}", slash.text());
    assert_eq!(slash.json()["status"], "accepted");
    let channel_slash = server
        .post("/events/ops/", event("inv-channel-slash"))
        .await;
    assert_eq!(channel_slash.status, 200, "{}", channel_slash.text());
    // More segments are no channel name: refused, the body kept, as ISC will not send it again.
    let nested_body = event("inv-nested");
    let nested = server.post("/events/a/b", nested_body.clone()).await;
    assert_eq!(nested.status, 400, "{}", nested.text());
    assert!(nested.json()["quarantine_id"].is_i64(), "{}", nested.text());
    let kept = quarantine(&server.db);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].reason, "bad_channel");
    assert!(kept[0].raw == nested_body);
    // Outside the ingest paths a 404 is only an answer.
    assert_eq!(
        server.post("/event", event("inv-elsewhere")).await.status,
        404
    );
    server.await_deliveries(4).await;
    let log = deliveries(&server.db);
    let seen: Vec<(i64, &str, Option<&str>)> = log
        .iter()
        .map(|d| (d.status, d.path.as_str(), d.channel.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (405, "/events", None),
            (200, "/events/", None),
            (200, "/events/ops/", Some("ops")),
            (400, "/events/a/b", None)
        ]
    );
    let counts = server.app().store.counts().await.unwrap();
    assert_eq!((counts.events, counts.quarantined), (2, 1));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_requests_is_recorded_in_summary_and_cannot_crowd_out_events() {
    let mut server = TestServer::start().await;
    let client = client();
    // Anyone can send requests that are refused; a record of each would let them fill the store.
    let flood = 1000;
    let mut refused = 0;
    for _ in 0..flood {
        let response = client
            .post(server.url("/events"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        refused += usize::from(response.status().as_u16() == 401);
    }
    assert_eq!(
        refused, flood,
        "every request without a credential is refused"
    );
    server.assert_still_serving("inv-after-flood").await;
    let metrics = server.get("/metrics").await.text();
    let unrecorded: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("provtrail_delivery_records_rate_limited_total "))
        .expect("the rate-limit counter is exported")
        .trim()
        .parse()
        .unwrap();
    assert!(unrecorded > 0.0, "{metrics}");
    // After a pause the next refusal is recorded, and says how many were not.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let last = client
        .get(server.url("/events/wrong/method"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(last.status().as_u16(), 405);
    let log = eventually_deliveries(&server, |log| {
        log.iter().any(|d| d.path == "/events/wrong/method")
    })
    .await;
    let refusals = log.iter().filter(|d| d.status == 401).count();
    assert!(
        refusals + unrecorded as usize == flood,
        "{refusals} recorded and {unrecorded} counted of {flood}"
    );
    assert!(
        refusals < flood / 2,
        "{refusals} of {flood} recorded one by one"
    );
    // The records that follow unrecorded refusals count them, all of them between them.
    let counted: u64 = log
        .iter()
        .filter_map(|d| {
            let reason = d.reason.as_deref()?;
            let (_, rest) = reason.split_once("(and ")?;
            let (n, _) = rest.split_once(" refused request(s) before this one")?;
            n.parse::<u64>().ok()
        })
        .sum();
    assert_eq!(counted, unrecorded as u64);
    server.shutdown().await;
}

/// The delivery log once `done` holds for it.
async fn eventually_deliveries(
    server: &TestServer,
    done: impl Fn(&[Delivery]) -> bool,
) -> Vec<Delivery> {
    for _ in 0..200 {
        let log = deliveries(&server.db);
        if done(&log) {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the delivery log never got the expected records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_cap_records_what_it_refuses_and_spares_health_and_metrics() {
    let mut server = TestServer::start_with(|config| {
        config.server.max_concurrent_requests = Some(1);
    })
    .await;
    // One upload that stalls halfway holds the only slot.
    let body = event("inv-stalled");
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    let head = post_head(
        "/events",
        &format!("{}Content-Length: {}\r\n", auth_line(), body.len()),
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&body[..10]).await.unwrap();
    eventually("the stalled upload to hold the slot", || async {
        server.post("/events", event("inv-probe")).await.status == 503
    })
    .await;
    let refused = server.post("/events", event("inv-refused")).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.header("retry-after").is_some());
    for path in ["/healthz", "/metrics"] {
        let answer = server.get(path).await;
        assert_eq!(answer.status, 200, "{path} while the cap is reached");
    }
    let metrics = server.get("/metrics").await.text();
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("provtrail_http_requests_total")
                && line.contains("status=\"503\"")),
        "refused requests are counted"
    );
    // Finish the upload: it is accepted, and the slot is free again.
    stalled.write_all(&body[10..]).await.unwrap();
    let answer = expect_response(&mut stalled).await;
    assert_eq!(answer.status, 200);
    server.assert_still_serving("inv-after-cap").await;
    // Refusals are logged off the request: wait for them.
    let db = server.db.clone();
    eventually(
        "every refused ingest request to be in the delivery log",
        || {
            let db = db.clone();
            async move {
                deliveries(&db)
                    .iter()
                    .filter(|d| d.status == 503 && d.outcome == "rejected")
                    .count()
                    >= 2
            }
        },
    )
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_are_not_channel_names() {
    let mut server = TestServer::start().await;
    let body = event("inv-dots");
    for path in ["/events/..", "/events/.", "/events/%2e%2e"] {
        let head = post_head(
            path,
            &format!("{}Content-Length: {}\r\n", auth_line(), body.len()),
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(&body);
        let answer = raw_exchange(server.addr, &request).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.head);
    }
    assert!(!stored_invocations(&server.db).contains_key("inv-dots"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_coding_or_a_second_content_type_is_415_and_kept() {
    let mut server = TestServer::start().await;
    // Distinct bodies: the quarantine keeps each body once.
    let bodies: Vec<Vec<u8>> = (0..3).map(|n| event(&format!("inv-framing-{n}"))).collect();
    let body = &bodies[0];
    // gzip as a transfer coding would be left on the body by the HTTP layer.
    let mut chunked = format!(
        "POST /events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{}\
         Transfer-Encoding: gzip, chunked\r\n\r\n{:x}\r\n",
        auth_line(),
        body.len()
    )
    .into_bytes();
    chunked.extend_from_slice(body);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let answer = raw_exchange(server.addr, &chunked).await;
    assert_eq!(
        answer.status,
        415,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    // Two media types, in either order: which one was meant cannot be known.
    for (body, (first, second)) in bodies[1..].iter().zip([
        ("application/json", "text/plain"),
        ("text/plain", "application/json"),
    ]) {
        let mut request = format!(
            "POST /events HTTP/1.1\r\nHost: test\r\nContent-Type: {first}\r\nContent-Type: \
             {second}\r\n{}Content-Length: {}\r\n\r\n",
            auth_line(),
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        let answer = raw_exchange(server.addr, &request).await;
        assert_eq!(answer.status, 415, "{first}, {second}");
        assert!(
            String::from_utf8_lossy(&answer.body).contains("more than one Content-Type"),
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    let kept: Vec<Vec<u8>> = quarantine(&server.db)
        .into_iter()
        .map(|entry| entry.raw)
        .collect();
    assert_eq!(kept, bodies);
    assert!(stored_invocations(&server.db).is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_a_million_problems_is_answered_and_kept_with_the_first_hundred() {
    let mut server = TestServer::start().await;
    // Under 1 MiB: 340,000 empty account requests, four missing fields each.
    let mut value: serde_json::Value = serde_json::from_slice(&event("many-problems")).unwrap();
    value["accountRequests"] = serde_json::Value::Array(vec![serde_json::json!({}); 340_000]);
    let body = serde_json::to_vec(&value).unwrap();
    assert!(body.len() < 1024 * 1024);
    let answer = server.post("/events", body.clone()).await;
    assert_eq!(answer.status, 202);
    assert!(
        answer.text().len() < 64 * 1024,
        "a small answer, not one entry per problem: {} bytes",
        answer.text().len()
    );
    let json = answer.json();
    let errors = json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 101, "the first hundred, then their count");
    assert_eq!(errors[0]["path"], "accountRequests[0].source");
    assert_eq!(errors[100]["path"], "");
    assert_eq!(
        errors[100]["message"],
        "1359900 more errors not listed: only the first 100 are kept"
    );
    let kept = quarantine(&server.db);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].raw, body, "the body is kept whole");
    assert_eq!(kept[0].errors.as_array().unwrap().len(), 101);
    server.assert_still_serving("after-many-problems").await;
    server.shutdown().await;
}
