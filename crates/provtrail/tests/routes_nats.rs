#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A route to the NATS server of this machine (127.0.0.1:4222, JetStream): matching events are
//! published to a test-unique stream, and re-deliveries of the same events (a replay) are dropped
//! by JetStream on `Nats-Msg-Id`. The stream is deleted afterwards.

mod common;
mod routes_support;

use std::path::Path;
use std::time::Duration;

use common::{TestServer, event};
use provtrail::config::FileConfig;
use provtrail::routes::replay::{ReplayRequest, replay};
use routes_support::{config_text, states, wait_for};

const NATS: &str = "nats://127.0.0.1:4222";

/// Deletes the test stream however the test ends.
struct StreamGuard {
    context: async_nats::jetstream::Context,
    name: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let context = self.context.clone();
        let name = self.name.clone();
        // The runtime of the test may be shutting down: delete from a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), context.delete_stream(&name))
                    .await;
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_published_to_jetstream_and_duplicates_are_dropped() {
    let unique = format!("{}_{}", std::process::id(), rand_suffix());
    let stream = format!("PROVTRAIL_TEST_{unique}");
    let subject = format!("provtrail.test.{unique}");
    let context = async_nats::jetstream::new(connect().await);
    let _guard = StreamGuard {
        context: context.clone(),
        name: stream.clone(),
    };

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provtrail.db");
    // Only failures go to NATS in this test, so that the filter is exercised too.
    let routes = format!(
        r#"
[[routes]]
name = "nats"
filter = '$.accountRequests[?(@.provisioningResult == "FAILED")]'
timeout = "5s"
[routes.retry]
initial_delay = "50ms"
max_delay = "500ms"
[routes.sink]
type = "nats"
url = "{NATS}"
subject = "{subject}"
stream = "{stream}"
create_stream = true
"#
    );
    let config = FileConfig::parse(&config_text(&db, &routes), Path::new("t.toml")).unwrap();
    let mut server = TestServer::start_config(&config).await;
    let failed = 8;
    for n in 0..failed {
        let body = String::from_utf8(event(&format!("nats-failed-{unique}-{n}")))
            .unwrap()
            .replace("\"SUCCESS\"", "\"FAILED\"");
        assert_eq!(server.post("/events", body).await.status, 200);
    }
    for n in 0..5 {
        let answer = server
            .post("/events", event(&format!("nats-ok-{unique}-{n}")))
            .await;
        assert_eq!(answer.status, 200);
    }
    let delivered = |db: &Path| {
        states(db)
            .get(&("nats".to_owned(), 1))
            .copied()
            .unwrap_or(0)
    };
    wait_for(
        "the failures to be published",
        Duration::from_secs(60),
        || delivered(&db) == failed,
    )
    .await;
    let mut info = context.get_stream(&stream).await.unwrap();
    let state = info.info().await.unwrap().state.clone();
    assert_eq!(state.messages, failed as u64);

    // The message carries the event and its id.
    let message = info.get_raw_message(1).await.unwrap();
    let id = message
        .headers
        .get(async_nats::header::NATS_MESSAGE_ID)
        .map(|value| value.to_string())
        .unwrap();
    assert!(id.starts_with("nats-failed-"), "{id}");
    let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(body["_metadata"]["invocationId"], id.as_str());

    // Replaying every event of the store to the route publishes each failure again: JetStream
    // drops them as duplicates.
    let route = server.app().routes.get("nats").unwrap().clone();
    let done = replay(
        &server.app().store,
        &route,
        &ReplayRequest::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(done.scanned, (failed + 5) as u64);
    assert_eq!(done.enqueued, failed as u64);
    wait_for("the replayed deliveries", Duration::from_secs(60), || {
        delivered(&db) == 2 * failed
    })
    .await;
    let state = info.info().await.unwrap().state.clone();
    assert_eq!(state.messages, failed as u64, "duplicates were not dropped");

    // A stream deleted while the server runs is created again, and the next event goes into it.
    context.delete_stream(&stream).await.unwrap();
    let body = String::from_utf8(event(&format!("nats-failed-{unique}-after-delete")))
        .unwrap()
        .replace("\"SUCCESS\"", "\"FAILED\"");
    assert_eq!(server.post("/events", body).await.status, 200);
    wait_for(
        "the event after the stream was deleted",
        Duration::from_secs(60),
        || delivered(&db) == 2 * failed + 1,
    )
    .await;
    let mut info = context.get_stream(&stream).await.unwrap();
    let state = info.info().await.unwrap().state.clone();
    assert_eq!(
        state.messages, 1,
        "the stream was created again with the new event"
    );
    server.shutdown().await;
    context.delete_stream(&stream).await.unwrap();
    assert!(
        context.get_stream(&stream).await.is_err(),
        "the test stream is gone"
    );
}

/// Messages NATS can never take (past the server's `max_payload`, or past the stream's
/// `max_msg_size`) go to the dead letters at the first attempt, saying why, instead of being
/// retried for days; the route goes on publishing the events that fit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_nats_can_never_take_are_dead_at_once_saying_why() {
    let unique = format!("{}_{}", std::process::id(), rand_suffix());
    let roomy = format!("PROVTRAIL_TEST_ROOMY_{unique}");
    let narrow = format!("PROVTRAIL_TEST_NARROW_{unique}");
    let roomy_subject = format!("provtrail.test.roomy.{unique}");
    let narrow_subject = format!("provtrail.test.narrow.{unique}");
    let client = connect().await;
    let max_payload = client.server_info().max_payload;
    let context = async_nats::jetstream::new(client);
    let _guards = [&roomy, &narrow].map(|name| StreamGuard {
        context: context.clone(),
        name: name.clone(),
    });
    // A stream that takes messages of up to 512 bytes: no event fits.
    context
        .create_stream(async_nats::jetstream::stream::Config {
            name: narrow.clone(),
            subjects: vec![narrow_subject.clone()],
            max_message_size: 512,
            ..Default::default()
        })
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provtrail.db");
    let routes = format!(
        r#"
[[routes]]
name = "roomy"
timeout = "5s"
[routes.retry]
initial_delay = "50ms"
max_delay = "500ms"
[routes.sink]
type = "nats"
url = "{NATS}"
subject = "{roomy_subject}"
stream = "{roomy}"
create_stream = true

[[routes]]
name = "narrow"
filter = '$[?(@.trackingNumber == "narrow")]'
timeout = "5s"
[routes.sink]
type = "nats"
url = "{NATS}"
subject = "{narrow_subject}"
stream = "{narrow}"
"#
    );
    let mut config = FileConfig::parse(&config_text(&db, &routes), Path::new("t.toml")).unwrap();
    config.ingest.max_body = Some(format!("{}", max_payload * 2));
    let mut server = TestServer::start_config(&config).await;

    // One event past the server's max_payload, one for the narrow stream, one that fits.
    let mut large: serde_json::Value =
        serde_json::from_slice(&event(&format!("nats-large-{unique}"))).unwrap();
    large["padding"] = serde_json::Value::String("x".repeat(max_payload));
    assert_eq!(server.post("/events", large.to_string()).await.status, 200);
    let mut narrow_event: serde_json::Value =
        serde_json::from_slice(&event(&format!("nats-narrow-{unique}"))).unwrap();
    narrow_event["trackingNumber"] = "narrow".into();
    assert_eq!(
        server
            .post("/events", narrow_event.to_string())
            .await
            .status,
        200
    );
    let fits = event(&format!("nats-fits-{unique}"));
    assert_eq!(server.post("/events", fits).await.status, 200);

    let count = |route: &str, state: i64| {
        states(&db)
            .get(&(route.to_owned(), state))
            .copied()
            .unwrap_or(0)
    };
    wait_for("the deliveries to settle", Duration::from_secs(60), || {
        count("roomy", 2) == 1 && count("roomy", 1) == 2 && count("narrow", 2) == 1
    })
    .await;
    let conn = common::open_db(&db);
    let dead: Vec<(String, i64, String)> = conn
        .prepare("SELECT route, attempts, last_error FROM route_deliveries WHERE state = 2 ORDER BY route")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    let (route, attempts, error) = &dead[0];
    assert_eq!((route.as_str(), *attempts), ("narrow", 1), "{dead:?}");
    assert!(error.contains("max_msg_size"), "{error}");
    // The size JetStream compares, headers included, and the event's part of it.
    assert!(
        error.contains("bytes with its headers, ") && error.contains(" of them the event)"),
        "{error}"
    );
    let (route, attempts, error) = &dead[1];
    assert_eq!((route.as_str(), *attempts), ("roomy", 1), "{dead:?}");
    assert!(error.contains("max_payload"), "{error}");
    let state = context
        .get_stream(&roomy)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .clone();
    assert_eq!(state.messages, 2, "the events that fit were published");
    server.shutdown().await;
}

/// A client of this machine's NATS server, which these tests need.
async fn connect() -> async_nats::Client {
    tokio::time::timeout(Duration::from_secs(10), async_nats::connect(NATS))
        .await
        .expect("the NATS server at 127.0.0.1:4222 did not answer")
        .expect("the NATS server at 127.0.0.1:4222 is needed for this test")
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    nanos % 1_000_000
}
