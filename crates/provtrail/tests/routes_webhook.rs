#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Routes to a webhook receiver on loopback that fails, times out and recovers: every matching
//! event arrives exactly once per route after recovery, none is lost, and every attempt is
//! recorded. Also dead letters and their retry, permanent refusals, the SSRF guard at connect
//! time, and secrets kept out of stored errors and the API.

mod common;
mod routes_support;

use std::path::Path;
use std::time::Duration;

use common::{TestServer, client, event, open_db};
use provtrail::config::FileConfig;
use routes_support::{
    ADMIN_TOKEN, Mode, READ_TOKEN, REFUSED_MARK, Receiver, config_text, none_pending, states,
    wait_for, webhook_route,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

async fn start(dir: &Path, routes: &str) -> TestServer {
    let db = dir.join("provtrail.db");
    let text = config_text(&db, routes);
    let config = FileConfig::parse(&text, Path::new("test.toml")).unwrap();
    TestServer::start_config(&config).await
}

async fn api(server: &TestServer, path: &str, token: &str) -> (u16, Value) {
    let response = client()
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn api_post(server: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    let response = client()
        .post(server.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Posts `n` events with invocation ids `{prefix}-0` … and checks that each is accepted.
async fn post_events(server: &TestServer, prefix: &str, n: i64) {
    for i in 0..n {
        let answer = server
            .post("/events", event(&format!("{prefix}-{i}")))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
}

fn count(db: &Path, route: &str, state: i64) -> i64 {
    states(db)
        .get(&(route.to_owned(), state))
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_then_hanging_sink_gets_every_event_exactly_once_after_recovery() {
    let receiver = Receiver::start().await;
    // The first 7 requests fail, the next 3 hang past the route's 500ms timeout.
    receiver
        .state
        .fail_next
        .store(7, std::sync::atomic::Ordering::SeqCst);
    receiver
        .state
        .hang_next
        .store(3, std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let routes = webhook_route(
        "hook",
        &receiver.url(),
        "bearer_token = \"very-secret-bearer-token\"",
    );
    let mut server = start(dir.path(), &routes).await;
    let events = 25;
    post_events(&server, "hook", events).await;
    let db = server.db.clone();
    wait_for("every delivery to complete", WAIT, || {
        count(&db, "hook", 1) == events
    })
    .await;
    receiver.release();

    // Exactly once per event after recovery: 25 distinct keys, each answered 200 once.
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), events as usize, "{delivered:?}");
    assert!(delivered.values().all(|n| *n == 1), "{delivered:?}");
    assert_eq!(count(&db, "hook", 0), 0);
    assert_eq!(count(&db, "hook", 2), 0);
    // The receiver got the bearer token.
    assert_eq!(
        receiver.state.last_authorization.lock().unwrap().as_deref(),
        Some("Bearer very-secret-bearer-token")
    );

    // Every attempt is recorded: at least the 25 successes and the 10 failures, with time,
    // latency, status or error; the credential the receiver echoed is not stored.
    let conn = open_db(&db);
    let (attempts, failed, timeouts, http500, leaked): (i64, i64, i64, i64, i64) = conn
        .query_row(
            "SELECT count(*),
                sum(outcome = 'failed'),
                sum(error LIKE 'timed out%'),
                sum(status = 500),
                sum(error LIKE '%very-secret-bearer-token%')
             FROM route_attempts",
            [],
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            },
        )
        .unwrap();
    assert!(attempts >= 35, "{attempts} attempts recorded");
    assert!(failed >= 10, "{failed} failed attempts recorded");
    assert!(timeouts >= 3, "{timeouts} timeouts recorded");
    assert!(http500 >= 7, "{http500} HTTP 500 answers recorded");
    assert_eq!(leaked, 0, "a stored error contains the secret");
    let echoed: i64 = conn
        .query_row(
            "SELECT count(*) FROM route_attempts WHERE error LIKE '%you sent Bearer ***%'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(echoed >= 1, "the echoed credential is shown redacted");
    let (zero_started, zero_latency): (i64, i64) = conn
        .query_row(
            "SELECT sum(started_at <= 0), sum(latency_us < 0) FROM route_attempts",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!((zero_started, zero_latency), (0, 0));

    // The API shows the same, without the secret.
    let (status, body) = api(&server, "/api/v1/routes", READ_TOKEN).await;
    assert_eq!(status, 200, "{body}");
    let route = &body["routes"][0];
    assert_eq!(route["name"], "hook");
    assert_eq!(route["sink"], "webhook");
    assert_eq!(route["counts"]["matched"], events);
    assert_eq!(route["counts"]["delivered"], events);
    assert_eq!(route["counts"]["pending"], 0);
    assert_eq!(route["counts"]["dead"], 0);
    assert!(route["counts"]["failed_attempts"].as_u64().unwrap() >= 10);
    assert!(!body.to_string().contains("very-secret-bearer-token"));
    let (status, page) = api(
        &server,
        "/api/v1/route-deliveries?route=hook&limit=100",
        READ_TOKEN,
    )
    .await;
    assert_eq!(status, 200);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), events as usize);
    let retried = items
        .iter()
        .find(|d| d["attempts"].as_u64().unwrap() > 1)
        .expect("some delivery needed more than one attempt");
    let id = retried["id"].as_i64().unwrap();
    assert!(
        items
            .iter()
            .all(|d| d["state"] == "delivered" && d["last_latency_ms"].as_f64().is_some()),
        "{page}"
    );
    let (status, detail) = api(
        &server,
        &format!("/api/v1/route-deliveries/{id}"),
        READ_TOKEN,
    )
    .await;
    assert_eq!(status, 200);
    let attempts = detail["attempts"].as_array().unwrap();
    assert!(attempts.len() > 1, "{detail}");
    assert_eq!(attempts.last().unwrap()["outcome"], "delivered");
    assert!(attempts[0]["error"].is_string(), "{detail}");
    // Its last attempt worked: the earlier failure is in its attempts, not its last error.
    assert_eq!(detail["last_status"], 200, "{detail}");
    assert!(detail["last_error"].is_null(), "{detail}");
    assert!(!detail.to_string().contains("very-secret-bearer-token"));
    // What the route would send for a stored event, without sending it.
    let before = receiver.requests();
    let (status, test) = api(&server, "/api/v1/routes/hook/test?event_id=1", READ_TOKEN).await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["matched"], true);
    assert!(
        test["preview"]["body"].as_str().unwrap().contains("hook-0"),
        "{test}"
    );
    assert!(
        !test.to_string().contains("very-secret-bearer-token"),
        "{test}"
    );
    assert_eq!(receiver.requests(), before);
    // Reads need a read token; the ingest token is not one.
    let (status, _) = api(&server, "/api/v1/routes", common::TOKEN).await;
    assert_eq!(status, 401);

    // Metrics per route and sink.
    let metrics = server.get("/metrics").await.text();
    assert!(
        metrics.contains(&format!(
            "provtrail_route_delivered_total{{route=\"hook\",sink=\"webhook\"}} {events}"
        )),
        "{metrics}"
    );
    server.shutdown().await;
}

/// A loopback address nothing listens on (its port was free a moment ago).
fn closed_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_a_sink_that_is_down_wait_for_it_whatever_their_budget() {
    // Nothing listens on this port yet: every attempt is refused. Attempts made before the
    // route pauses (8 at once here) and after a restart (which forgets the pause) find the sink
    // down; none may use up a delivery's budget of one attempt.
    let addr = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let routes = webhook_route("down", &format!("http://{addr}/hook"), "")
        .replace("max_attempts = 1000", "max_attempts = 1")
        .replace("concurrency = 4", "concurrency = 8");
    let mut server = start(dir.path(), &routes).await;
    post_events(&server, "down", 20).await;
    let db = server.db.clone();
    let attempts = |db: &Path| -> i64 {
        open_db(db)
            .query_row("SELECT count(*) FROM route_attempts", [], |row| row.get(0))
            .unwrap()
    };
    wait_for("attempts on the sink that is down", WAIT, || {
        attempts(&db) >= 8
    })
    .await;
    assert_eq!(
        count(&db, "down", 2),
        0,
        "a delivery died while the sink was down"
    );
    server.shutdown().await;
    let mut server = start(dir.path(), &routes).await;
    let before = attempts(&db);
    wait_for("attempts after the restart", WAIT, || {
        attempts(&db) > before
    })
    .await;
    assert_eq!(
        count(&db, "down", 2),
        0,
        "a delivery died after the restart"
    );
    assert_eq!(count(&db, "down", 0), 20);
    // The sink comes up: everything arrives.
    let receiver = Receiver::start_on(addr).await;
    wait_for("every delivery", WAIT, || receiver.delivered().len() == 20).await;
    server.shutdown().await;
}

/// Deliveries waiting behind a paused route end at `max_age`, not when a probe (one at a time,
/// a pause apart) finally reaches each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_behind_a_paused_route_end_at_max_age() {
    let addr = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let routes = webhook_route("down", &format!("http://{addr}/hook"), "")
        .replace("max_attempts = 1000", "max_age = \"2s\"")
        .replace("initial_delay = \"20ms\"", "initial_delay = \"1s\"")
        .replace("max_delay = \"200ms\"", "max_delay = \"10m\"");
    let mut server = start(dir.path(), &routes).await;
    post_events(&server, "aged", 20).await;
    let db = server.db.clone();
    // The probes alone, each a pause after the last (1 s, 2 s, 4 s, …), would end five or six.
    wait_for(
        "every delivery past max_age to be dead",
        Duration::from_secs(40),
        || count(&db, "down", 2) == 20,
    )
    .await;
    let errors: Vec<String> = open_db(&db)
        .prepare("SELECT last_error FROM route_deliveries WHERE state = 2")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        errors.iter().all(|error| error.contains("max_age")),
        "{errors:?}"
    );
    // Those never attempted say only that; those attempted add their last error.
    assert!(
        errors.iter().any(|error| error.contains("; last error: ")),
        "{errors:?}"
    );
    server.shutdown().await;
}

/// A sink that never answers does not hold the shutdown past `shutdown_grace`: its delivery
/// stays pending, for the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_sink_does_not_hold_the_shutdown_past_its_grace() {
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::Hang);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provtrail.db");
    // A delivery past its max_age by the time of the stop: cut short, it is not ended for it.
    let routes = webhook_route("hangs", &receiver.url(), "")
        .replace("500ms", "1h")
        .replace(
            "max_attempts = 1000",
            "max_attempts = 1000\nmax_age = \"1s\"",
        );
    let mut config = FileConfig::parse(&config_text(&db, &routes), Path::new("test.toml")).unwrap();
    config.server.shutdown_grace = Some("1s".into());
    let mut server = TestServer::start_config(&config).await;
    post_events(&server, "hangs", 1).await;
    wait_for("the attempt to reach the sink", WAIT, || {
        receiver.requests() > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let began = std::time::Instant::now();
    server.shutdown().await;
    // The grace and half a second for attempts done to be recorded, not the ten seconds a
    // delivery may otherwise take; with room for a slow machine.
    let took = began.elapsed();
    assert!(took < Duration::from_secs(6), "shutdown took {took:?}");
    assert_eq!(
        count(&db, "hangs", 0),
        1,
        "the delivery is no longer pending"
    );
    // The attempt the sink never answered is recorded, as interrupted: the receiver may have
    // it, and the next attempt is the second.
    let (attempt, error): (i64, String) = open_db(&db)
        .query_row(
            "SELECT a.attempt, a.error FROM route_attempts a
             JOIN route_deliveries d ON d.id = a.delivery_id WHERE d.route = 'hangs'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(attempt, 1);
    assert!(
        error.starts_with("interrupted: the server shut down before the sink answered"),
        "{error}"
    );
    receiver.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_answers_errors_uses_up_the_budget_even_once_the_route_pauses() {
    // Five deliveries answered 500 every time: the route pauses after three failures, and its
    // probes, answered 500 too, count: every delivery is dead after its two attempts.
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::Down(500));
    let dir = tempfile::tempdir().unwrap();
    let routes = webhook_route("errors", &receiver.url(), "")
        .replace("max_attempts = 1000", "max_attempts = 2");
    let mut server = start(dir.path(), &routes).await;
    post_events(&server, "errors", 5).await;
    let db = server.db.clone();
    wait_for("every delivery to be dead", WAIT, || {
        count(&db, "errors", 2) == 5
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_counter_keeps_its_total_across_a_restart() {
    // A Prometheus counter that drops to zero on a restart reads as "nothing died" to an alert
    // on its increase; it follows the store's total, as the other route counters do.
    let refusing = Receiver::start().await;
    refusing.set_mode(Mode::Down(400));
    let dir = tempfile::tempdir().unwrap();
    let routes = webhook_route("refused", &refusing.url(), "");
    let mut server = start(dir.path(), &routes).await;
    post_events(&server, "dies", 3).await;
    let db = server.db.clone();
    wait_for("every delivery to be dead", WAIT, || {
        count(&db, "refused", 2) == 3
    })
    .await;
    server.shutdown().await;
    let server = start(dir.path(), &routes).await;
    let line = "provtrail_route_dead_total{route=\"refused\",sink=\"webhook\"} ";
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = server.get("/metrics").await.text();
        let dead = text
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .map(str::trim);
        if dead == Some("3") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dead letters counted after the restart: {dead:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_after_the_last_attempt_and_retry_through_the_api() {
    // The receiver answers, but refuses four events (500: an error of its own, not "down"):
    // those deliveries use up their budget of 3 attempts.
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::RefuseMarked(500));
    let dir = tempfile::tempdir().unwrap();
    let routes = webhook_route("hook", &receiver.url(), "")
        .replace("max_attempts = 1000", "max_attempts = 3");
    // A receiver that refuses the content for good (400) sends a delivery to the dead letters at
    // once.
    let refusing = Receiver::start().await;
    refusing.set_mode(Mode::Down(400));
    let routes = format!("{routes}{}", webhook_route("refused", &refusing.url(), ""));
    let mut server = start(dir.path(), &routes).await;
    post_events(&server, REFUSED_MARK, 4).await;
    let db = server.db.clone();
    let started = std::time::Instant::now();
    let mut accepted = 0;
    while count(&db, "hook", 2) < 4 {
        assert!(
            started.elapsed() < WAIT,
            "every refused delivery to be dead"
        );
        let answer = server
            .post("/events", event(&format!("ok-{accepted}")))
            .await;
        assert_eq!(answer.status, 200);
        accepted += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Events sent after the loop's last check may still be on their way to "refused".
    wait_for("every delivery to \"refused\" to be dead", WAIT, || {
        count(&db, "refused", 2) == 4 + accepted
    })
    .await;
    assert_eq!(
        refusing.requests(),
        4 + accepted as u32,
        "a 400 is not retried"
    );
    let conn = open_db(&db);
    let attempts: Vec<i64> = conn
        .prepare("SELECT attempts - attempts_base FROM route_deliveries WHERE route = 'hook' AND state = 2")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        attempts,
        vec![3, 3, 3, 3],
        "attempts that count toward the budget"
    );
    let (status, dead) = api(&server, "/api/v1/deadletters?route=hook", READ_TOKEN).await;
    assert_eq!(status, 200);
    let items = dead["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert!(
        items[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "{dead}"
    );

    // A read token may not retry (403); no token is 401; an admin token may. Errors have the
    // read API's shape.
    let (status, body) = api_post(
        &server,
        "/api/v1/deadletters/retry",
        READ_TOKEN,
        serde_json::json!({"route": "hook"}),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    let (status, body) = api_post(
        &server,
        "/api/v1/deadletters/retry",
        "not-a-token",
        serde_json::json!({"route": "hook"}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &"unauthorized".into())
    );
    for bad in [
        serde_json::json!(["hook"]),
        serde_json::json!({"routes": "hook"}),
    ] {
        let (status, body) = api_post(&server, "/api/v1/deadletters/retry", ADMIN_TOKEN, bad).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &"invalid_body".into())
        );
    }
    let (status, body) = api(
        &server,
        "/api/v1/deadletters?route=hook&limit=0",
        READ_TOKEN,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["parameter"], "limit", "{body}");
    // A route nobody knows is a 404, not an empty list that reads as "no dead letters".
    for path in [
        "/api/v1/deadletters?route=hoook",
        "/api/v1/route-deliveries?route=hoook",
    ] {
        let (status, body) = api(&server, path, READ_TOKEN).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("hoook"),
            "{body}"
        );
    }
    let (status, body) = api(&server, "/api/v1/deadletters?rout=hook", READ_TOKEN).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &"unknown_parameter".into())
    );
    // Endpoints without parameters refuse any, rather than ignore a misspelt one.
    for path in ["/api/v1/routes?foo=1", "/api/v1/routes/hook?foo=1"] {
        let (status, body) = api(&server, path, READ_TOKEN).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &"unknown_parameter".into()),
            "{path}"
        );
    }
    let (status, body) = api_post(
        &server,
        "/api/v1/deadletters/retry?route=hook",
        ADMIN_TOKEN,
        serde_json::json!({"route": "hook"}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &"unknown_parameter".into())
    );
    assert_eq!(count(&db, "hook", 2), 4, "nothing was retried");
    wait_for("the accepted events to be delivered", WAIT, || {
        count(&db, "hook", 0) == 0
    })
    .await;
    let delivered_before = receiver.delivered().len();
    receiver.set_mode(Mode::Up);
    let (status, body) = api_post(
        &server,
        "/api/v1/deadletters/retry",
        ADMIN_TOKEN,
        serde_json::json!({"route": "hook"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["retried"], 4);
    wait_for("the retried dead letters to be delivered", WAIT, || {
        count(&db, "hook", 2) == 0 && count(&db, "hook", 0) == 0
    })
    .await;
    assert_eq!(receiver.delivered().len(), delivered_before + 4);
    assert_eq!(
        count(&db, "refused", 2),
        4 + accepted,
        "only the route asked for is retried"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_a_receiver_keeps_refusing_does_not_pause_the_route() {
    // A receiver that answers 500 to one event (its own error about that event) and takes the
    // others: the event's retries, with nothing else between them, are one delivery refused,
    // not a sink that keeps failing. The route is not paused, so that an event sent later goes
    // out at once rather than after a pause.
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::RefuseMarked(500));
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &webhook_route("hook", &receiver.url(), "")).await;
    post_events(&server, REFUSED_MARK, 1).await;
    let state = receiver.state.clone();
    wait_for("the refused event to be tried 8 times", WAIT, move || {
        state.refused.load(std::sync::atomic::Ordering::SeqCst) >= 8
    })
    .await;
    let (status, view) = api(&server, "/api/v1/routes/hook", READ_TOKEN).await;
    assert_eq!(status, 200);
    assert!(view["paused_since"].is_null(), "paused: {view}");
    post_events(&server, "later", 1).await;
    wait_for("the later event to be delivered", WAIT, || {
        receiver.delivered().len() == 1
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_sent_back_go_out_while_new_events_keep_the_route_busy() {
    // A route at concurrency 1 whose receiver takes 100 ms a delivery (10 a second), sent events
    // far faster than that: new deliveries always wait in memory for its one place. Dead letters
    // sent back wait in the store (as retries and replays do), and get a place while the flow
    // goes on, rather than once it stops.
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::Down(400));
    let dir = tempfile::tempdir().unwrap();
    let routes =
        webhook_route("hook", &receiver.url(), "").replace("concurrency = 4", "concurrency = 1");
    let mut server = start(dir.path(), &routes).await;
    post_events(&server, "old", 3).await;
    let db = server.db.clone();
    wait_for("the first events to be dead", WAIT, || {
        count(&db, "hook", 2) == 3
    })
    .await;
    receiver
        .state
        .delay_ms
        .store(100, std::sync::atomic::Ordering::SeqCst);
    receiver.set_mode(Mode::Up);
    let old_delivered = || {
        let bodies = receiver.state.bodies.lock().unwrap();
        bodies
            .iter()
            .filter(|body| String::from_utf8_lossy(body).contains("tn-old-"))
            .count()
    };
    let started = std::time::Instant::now();
    let mut sent = 0;
    while old_delivered() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the dead letters sent back waited for the flow of new events to stop \
             ({sent} new events sent, {} delivered)",
            receiver.delivered().len()
        );
        let answer = server.post("/events", event(&format!("new-{sent}"))).await;
        assert_eq!(answer.status, 200);
        sent += 1;
        if sent == 40 {
            let (status, body) = api_post(
                &server,
                "/api/v1/deadletters/retry",
                ADMIN_TOKEN,
                serde_json::json!({"route": "hook"}),
            )
            .await;
            assert_eq!(status, 200, "{body}");
        }
    }
    assert!(sent > 40, "delivered before they were sent back");
    let waiting = count(&db, "hook", 0);
    assert!(waiting > 0, "the flow no longer kept the route busy");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_is_down_kills_no_delivery_by_max_attempts() {
    // With a budget of 3 attempts and a sink down for many backoff periods, the route pauses
    // and probes; a failed probe tests the sink, not the delivery, so nothing dies, and every
    // delivery arrives once the sink is back.
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::Down(503));
    let dir = tempfile::tempdir().unwrap();
    let routes = webhook_route("hook", &receiver.url(), "")
        .replace("max_attempts = 1000", "max_attempts = 3");
    let mut server = start(dir.path(), &routes).await;
    post_events(&server, "outage", 5).await;
    let db = server.db.clone();
    // Five deliveries at 3 attempts each would all be dead after 15 requests.
    let state = receiver.state.clone();
    wait_for("the sink to be tried 30 times", WAIT, move || {
        state.requests.load(std::sync::atomic::Ordering::SeqCst) >= 30
    })
    .await;
    assert_eq!(count(&db, "hook", 2), 0, "no delivery is dead");
    assert_eq!(count(&db, "hook", 0), 5, "every delivery is pending");
    // The pause is shown, so that attempts past the budget read as probes: in the API, on the
    // routes page and in the metrics.
    let (status, view) = api(&server, "/api/v1/routes/hook", READ_TOKEN).await;
    assert_eq!(status, 200);
    let paused_since = view["paused_since"].as_i64().expect("paused");
    assert!(
        paused_since <= chrono::Utc::now().timestamp_millis(),
        "{view}"
    );
    let page = client()
        .get(server.url("/routes"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("sink paused"), "{page}");
    // The gauge is refreshed every 5 s.
    let paused_metric = "provtrail_route_paused{route=\"hook\",sink=\"webhook\"} 1";
    let deadline = std::time::Instant::now() + WAIT;
    while !server.get("/metrics").await.text().contains(paused_metric) {
        assert!(std::time::Instant::now() < deadline, "no {paused_metric}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    receiver.set_mode(Mode::Up);
    wait_for("every delivery after the outage", WAIT, || {
        count(&db, "hook", 1) == 5
    })
    .await;
    assert_eq!(receiver.delivered().len(), 5);
    assert!(receiver.delivered().values().all(|&times| times == 1));
    let (_, view) = api(&server, "/api/v1/routes/hook", READ_TOKEN).await;
    assert!(view["paused_since"].is_null(), "{view}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_whose_last_delivery_died_is_not_left_paused() {
    // One delivery, a budget of 3 attempts, a sink that answers 500 (an error that uses the
    // budget, unlike "unavailable"): the third failure is also the third in a row, which pauses
    // the route, and the delivery is dead. Nothing is left to probe with; the pause must not
    // outlive what it was holding back.
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::Down(500));
    let dir = tempfile::tempdir().unwrap();
    let routes = webhook_route("hook", &receiver.url(), "")
        .replace("max_attempts = 1000", "max_attempts = 3");
    let mut server = start(dir.path(), &routes).await;
    post_events(&server, "last", 1).await;
    let db = server.db.clone();
    wait_for("the delivery to be dead", WAIT, || {
        count(&db, "hook", 2) == 1
    })
    .await;
    assert_eq!(count(&db, "hook", 0), 0, "nothing is pending");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, view) = api(&server, "/api/v1/routes/hook", READ_TOKEN).await;
        if view["paused_since"].is_null() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still paused with nothing pending: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The gauge is refreshed every 5 s.
    let resumed_metric = "provtrail_route_paused{route=\"hook\",sink=\"webhook\"} 0";
    let deadline = std::time::Instant::now() + WAIT;
    while !server.get("/metrics").await.text().contains(resumed_metric) {
        assert!(std::time::Instant::now() < deadline, "no {resumed_metric}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The sink is still down: the next event's delivery is tried and the route pauses again.
    let tried = receiver
        .state
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    post_events(&server, "next", 1).await;
    wait_for("the next delivery to be dead", WAIT, || {
        count(&db, "hook", 2) == 2
    })
    .await;
    assert_eq!(
        receiver
            .state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        tried + 3,
        "the next delivery had its three attempts"
    );
    receiver.set_mode(Mode::Up);
    post_events(&server, "after", 1).await;
    wait_for("a delivery once the sink is back", WAIT, || {
        count(&db, "hook", 1) == 1
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_route_whose_sink_then_refuses_for_good_is_no_longer_shown_paused() {
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::Down(503));
    let dir = tempfile::tempdir().unwrap();
    let routes = webhook_route("hook", &receiver.url(), "");
    let mut server = start(dir.path(), &routes).await;
    post_events(&server, "gone", 3).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, view) = api(&server, "/api/v1/routes/hook", READ_TOKEN).await;
        if view["paused_since"].is_i64() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never paused: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The sink now answers, with a refusal for good: it is up, and the deliveries are dead.
    receiver.set_mode(Mode::Down(404));
    let db = server.db.clone();
    wait_for("every delivery to be dead", WAIT, || {
        count(&db, "hook", 2) == 3
    })
    .await;
    let (_, view) = api(&server, "/api/v1/routes/hook", READ_TOKEN).await;
    assert!(view["paused_since"].is_null(), "{view}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_asking_to_wait_with_retry_after_is_left_alone_that_long() {
    // The route's delays are at most 200 ms; the receiver's 429 asks for 2 s.
    let receiver = Receiver::start().await;
    receiver
        .state
        .throttle_next
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &webhook_route("hook", &receiver.url(), "")).await;
    let answer = server.post("/events", event("throttled-1")).await;
    assert_eq!(answer.status, 200);
    let db = server.db.clone();
    wait_for("the delivery after the wait", WAIT, || {
        count(&db, "hook", 1) == 1
    })
    .await;
    let times = receiver.state.request_times.lock().unwrap().clone();
    assert_eq!(times.len(), 2, "one refused attempt, then the delivery");
    let waited = times[1] - times[0];
    assert!(
        waited >= Duration::from_millis(1_900),
        "retried after {waited:?}, before the 2 s the receiver asked for"
    );
    let (status, body) = api(&server, "/api/v1/route-deliveries?route=hook", READ_TOKEN).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["attempts"], 2, "{body}");
    server.shutdown().await;
}

/// A name of this machine, other than `localhost`, that resolves to loopback addresses only
/// (the host name, on most machines): a name the start-time check cannot judge.
fn loopback_name_other_than_localhost() -> Option<String> {
    use std::net::ToSocketAddrs;
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_owned();
    let addresses: Vec<_> = (name.as_str(), 80).to_socket_addrs().ok()?.collect();
    (!name.eq_ignore_ascii_case("localhost")
        && !addresses.is_empty()
        && addresses.iter().all(|address| address.ip().is_loopback()))
    .then_some(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_to_loopback_by_name_is_refused_when_connecting_unless_allowed() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();

    // `localhost` is loopback by definition: refused at the start, naming the route.
    let url = format!("http://localhost:{}/hook", receiver.addr.port());
    let named =
        webhook_route("named", &url, "").replace("allow_private = true", "allow_private = false");
    let text = config_text(&dir.path().join("named.db"), &named);
    let config = FileConfig::parse(&text, Path::new("test.toml")).unwrap();
    let err = provtrail::app::Settings::from_config(&config)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("routes.named.sink.url") && err.contains("loopback name"),
        "{err}"
    );

    // A literal private address fails the start, naming the route.
    let literal = webhook_route("literal", &receiver.url(), "")
        .replace("allow_private = true", "allow_private = false");
    let text = config_text(&dir.path().join("other.db"), &literal);
    let config = FileConfig::parse(&text, Path::new("test.toml")).unwrap();
    let err = provtrail::app::Settings::from_config(&config)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("routes.literal.sink.url") && err.contains("loopback"),
        "{err}"
    );

    // Another name: the start-time check cannot see where it leads; the resolver refuses it at
    // every connection.
    let Some(name) = loopback_name_other_than_localhost() else {
        eprintln!(
            "this machine's name does not resolve to loopback: the resolver's refusal is left to its unit tests"
        );
        return;
    };
    let url = format!("http://{name}:{}/hook", receiver.addr.port());
    // A budget of many attempts: a refusal is final, and is not retried.
    let guarded =
        webhook_route("guarded", &url, "").replace("allow_private = true", "allow_private = false");
    let mut server = start(dir.path(), &guarded).await;
    let answer = server.post("/events", event("ssrf-1")).await;
    assert_eq!(answer.status, 200);
    let db = server.db.clone();
    wait_for("the delivery to be dead", WAIT, || {
        count(&db, "guarded", 2) == 1
    })
    .await;
    assert_eq!(
        receiver.requests(),
        0,
        "nothing reached the loopback receiver"
    );
    let (error, attempts): (String, i64) = open_db(&db)
        .query_row(
            "SELECT last_error, attempts FROM route_deliveries",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert!(
        error.contains("refused") && error.contains("allow_private"),
        "{error}"
    );
    assert_eq!(attempts, 1, "a refusal by the guard is not retried");
    server.shutdown().await;
}

/// A receiver that answers 200 and then sends a body without end: the delivery counts once the
/// answer has come, and what the receiver sends after it is not read (held whole, it would take
/// the server's memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_end_is_not_read_past_its_start() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = sent.clone();
    let receiver = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = vec![0; 64 * 1024];
        let _ = stream.read(&mut request).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
        // At most 1 GiB or 30 s, then the receiver gives up by itself.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while counted.load(std::sync::atomic::Ordering::Relaxed) < 1 << 30
            && tokio::time::Instant::now() < deadline
        {
            if stream.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
            counted.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
        }
    });
    let route = format!(
        r#"
[[routes]]
name = "endless"
allow_private = true
timeout = "25s"
[routes.sink]
type = "webhook"
url = "http://{addr}/hook"
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &route).await;
    assert_eq!(server.post("/events", event("endless-1")).await.status, 200);
    let db = server.db.clone();
    wait_for(
        "the delivery, before the route's timeout",
        Duration::from_secs(10),
        || count(&db, "endless", 1) == 1,
    )
    .await;
    // The connection was dropped, far short of what the receiver would have sent.
    tokio::time::timeout(Duration::from_secs(10), receiver)
        .await
        .expect("the receiver was cut off")
        .unwrap();
    let read = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(read < 64 << 20, "{read} bytes were taken from the receiver");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_at_its_size_cap_still_records_the_deliveries_of_what_it_kept() {
    // The sink is down while the store fills up to its cap: every event kept has a delivery
    // pending. Once the cap refuses events, the outcomes of those deliveries must still be
    // recorded, or the outbox never drains and every delivery is made again at each restart.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "max_size = \"320KiB\"\nbusy_timeout = \"100ms\"\n{}",
        webhook_route("capped", &format!("http://{addr}/hook"), "")
    );
    let mut server = start(dir.path(), &routes).await;
    let mut accepted = 0;
    loop {
        let answer = server
            .post("/events", event(&format!("capped-{accepted}")))
            .await;
        if answer.status == 503 {
            assert!(
                answer.text().contains("store.max_size"),
                "{}",
                answer.text()
            );
            break;
        }
        assert_eq!(answer.status, 200, "{}", answer.text());
        accepted += 1;
        assert!(accepted < 5_000, "the cap was never reached");
    }
    assert!(accepted > 10, "only {accepted} events fit");
    // A replay would make new deliveries in the room kept for outcomes: refused too.
    let (status, body) = api_post(
        &server,
        "/api/v1/routes/capped/replay",
        ADMIN_TOKEN,
        serde_json::json!({ "since": "1h" }),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    // A commit that fails for another reason closes the writer's connection: here the outcomes
    // of the attempts on the sink that is down, while another process holds the lock. The
    // events that come next are still held to the cap.
    let holder = rusqlite::Connection::open(&server.db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    for n in 0..5 {
        let answer = server
            .post("/events", event(&format!("capped-after-lock-{n}")))
            .await;
        assert_eq!(answer.status, 503, "{}", answer.text());
    }
    let db = server.db.clone();
    let receiver = Receiver::start_on(addr).await;
    wait_for("every delivery made and recorded", WAIT, || {
        none_pending(&db, "capped") && count(&db, "capped", 1) == accepted
    })
    .await;
    assert_eq!(receiver.delivered().len(), accepted as usize);
    // Delivered once each: nothing was made again for want of a record.
    assert!(
        receiver.delivered().values().all(|&times| times == 1),
        "{:?}",
        receiver.delivered()
    );
    // The cap still holds for events.
    let answer = server.post("/events", event("capped-after")).await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_delivery_starts_while_the_store_cannot_record_its_outcome() {
    // A delivery made and not recorded is made again after a restart: while the store refuses
    // the outcomes (locked here by another process; full, or out of the room above its size
    // cap, alike), no delivery starts, and once it takes them again every delivery is made.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The default wait for a lock (5 s): no delivery may start while a write of outcomes waits.
    let routes = webhook_route("blocked", &format!("http://{addr}/hook"), "");
    let mut server = start(dir.path(), &routes).await;
    post_events(&server, "blocked", 60).await;
    let holder = rusqlite::Connection::open(&server.db).unwrap();
    holder.busy_timeout(Duration::from_secs(5)).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    // The attempts on the sink that is down cannot be recorded: from then on nothing starts,
    // so the sink, once up, gets nothing while the store is locked.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let receiver = Receiver::start_on(addr).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let made_while_locked = receiver.requests();
    assert!(
        made_while_locked <= 4,
        "{made_while_locked} deliveries made while their outcome could not be recorded"
    );
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    let db = server.db.clone();
    wait_for("every delivery made and recorded", WAIT, || {
        receiver.delivered().len() == 60 && none_pending(&db, "blocked")
    })
    .await;
    server.shutdown().await;
}

/// The value of the metric line that starts with `prefix` (name and labels), if any.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(prefix)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_counters_count_recorded_results_and_a_gauge_says_deliveries_are_held() {
    // A result counted when the sink answered but never recorded is made, and counted, again:
    // the counters follow what is recorded. While the store refuses results, a gauge says that
    // deliveries are held.
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::Hang);
    let dir = tempfile::tempdir().unwrap();
    let routes = webhook_route("held", &receiver.url(), "");
    let mut server = start(dir.path(), &routes).await;
    post_events(&server, "held", 10).await;
    wait_for("attempts waiting at the sink", WAIT, || {
        receiver.requests() >= 1
    })
    .await;
    let holder = rusqlite::Connection::open(&server.db).unwrap();
    holder.busy_timeout(Duration::from_secs(5)).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    // The held attempts are answered 503 and the next ones 200; none can be recorded.
    receiver.set_mode(Mode::Up);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = server.get("/metrics").await.text();
    assert_eq!(
        metric(&text, "provtrail_route_deliveries_held "),
        Some(1.0),
        "{text}"
    );
    for counter in ["delivered", "failed_attempts"] {
        let line = format!("provtrail_route_{counter}_total{{route=\"held\",sink=\"webhook\"}} ");
        assert_eq!(metric(&text, &line), Some(0.0), "{counter}: {text}");
    }
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    let db = server.db.clone();
    wait_for("every delivery made and recorded", WAIT, || {
        receiver.delivered().len() == 10 && none_pending(&db, "held")
    })
    .await;
    let delivered = "provtrail_route_delivered_total{route=\"held\",sink=\"webhook\"} ";
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = server.get("/metrics").await.text();
        if metric(&text, delivered) == Some(10.0)
            && metric(&text, "provtrail_route_deliveries_held ") == Some(0.0)
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Counted once each, also after the gauges' refresh raised the counters to the store's
    // totals.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let text = server.get("/metrics").await.text();
    assert_eq!(metric(&text, delivered), Some(10.0), "{text}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_the_size_cap_stops_part_way_says_what_it_created() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("replayed.jsonl");
    let route = format!(
        r#"
[[routes]]
name = "later"
filter = "$[?(@.action == 'nothing-has-this')]"
[routes.sink]
type = "file"
path = "{}"
"#,
        out.display()
    );
    let mut server = start(dir.path(), &route).await;
    post_events(&server, "kept", 600).await;
    let db = server.db.clone();
    server.shutdown().await;
    // A cap a few pages above what the store holds: the replay's first page of deliveries fits
    // under it, the next does not.
    let used = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let pragma = |name: &str| -> i64 {
            conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
                .unwrap()
        };
        (pragma("page_count") - pragma("freelist_count")) * pragma("page_size")
    };
    let capped = format!("max_size = \"{}\"\n{route}", used + 4 * 4096);
    let mut server = start(dir.path(), &capped).await;
    let (status, body) = api_post(
        &server,
        "/api/v1/routes/later/replay",
        ADMIN_TOKEN,
        serde_json::json!({ "since": "1h", "ignore_route_filter": true }),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("store.max_size"), "{body}");
    let created: i64 = open_db(&db)
        .query_row(
            "SELECT count(*) FROM route_deliveries WHERE route = 'later'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(created > 0 && created < 600, "{created} deliveries created");
    assert!(
        message.contains(&format!(
            "the {created} deliveries created before stay pending"
        )),
        "{body}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_whose_answer_is_not_http_uses_up_the_budget() {
    // Up, but answering what is not HTTP: each attempt counts, as a 500 does, and the
    // deliveries end by `max_attempts` rather than being retried until `max_age` (3 days).
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = tokio::spawn(async move {
        // Bounded: at most 200 connections, each answered at once.
        for _ in 0..200 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = vec![0; 64 * 1024];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(b"HELLO THERE\r\n\r\n").await;
            });
        }
    });
    let routes = webhook_route("garbled", &format!("http://{addr}/hook"), "")
        .replace("max_attempts = 1000", "max_attempts = 3");
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &routes).await;
    post_events(&server, "garbled", 3).await;
    let db = server.db.clone();
    wait_for("every delivery to be dead", WAIT, || {
        count(&db, "garbled", 2) == 3
    })
    .await;
    let attempts: i64 = open_db(&db)
        .query_row(
            "SELECT count(*) FROM route_attempts a JOIN route_deliveries d ON d.id = a.delivery_id
             WHERE d.route = 'garbled'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(
        attempts <= 9,
        "{attempts} attempts for 3 deliveries of 3 each"
    );
    server.shutdown().await;
    receiver.abort();
}
