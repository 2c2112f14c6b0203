#![allow(clippy::unwrap_used, clippy::expect_used)]
//! SIGKILL of `provtrail serve` with deliveries pending and in flight: after a restart on the
//! same database every delivery completes, none is lost.

mod common;
mod routes_support;

use std::time::Duration;

use common::{ServerProcess, client, event, open_db};
use routes_support::{Mode, Receiver, config_text, states, wait_for, webhook_route};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_and_in_flight_deliveries_complete_after_sigkill_and_restart() {
    let receiver = Receiver::start().await;
    // Down at first: the first deliveries hang (in flight when the process dies), the others
    // wait for a free slot or are refused and scheduled again.
    receiver.set_mode(Mode::Hang);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provtrail.db");
    let routes = webhook_route("hook", &receiver.url(), "")
        .replace("timeout = \"500ms\"", "timeout = \"30s\"");
    let config = dir.path().join("provtrail.toml");
    std::fs::write(&config, config_text(&db, &routes)).unwrap();
    let config_arg = config.display().to_string();

    let mut server = ServerProcess::start(dir.path(), &["--config", &config_arg]);
    let events = 30;
    let http = client();
    for n in 0..events {
        let response = http
            .post(server.url("/events"))
            .bearer_auth(common::TOKEN)
            .header("content-type", "application/json")
            .body(event(&format!("crash-{n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
    // The route's four slots are taken by held requests.
    wait_for("deliveries in flight", Duration::from_secs(30), || {
        receiver.requests() >= 4
    })
    .await;
    let pending = states(&db)
        .get(&("hook".to_owned(), 0))
        .copied()
        .unwrap_or(0);
    assert_eq!(pending, events, "every delivery is pending before the kill");
    server.kill();
    receiver.set_mode(Mode::Up);

    let _server = ServerProcess::start(dir.path(), &["--config", &config_arg]);
    wait_for(
        "every delivery after the restart",
        Duration::from_secs(60),
        || {
            states(&db)
                .get(&("hook".to_owned(), 1))
                .copied()
                .unwrap_or(0)
                == events
        },
    )
    .await;
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), events as usize, "none lost");
    // Nothing was answered 200 before the kill, so nothing is delivered twice either.
    assert!(delivered.values().all(|n| *n == 1), "{delivered:?}");
    let conn = open_db(&db);
    let with_attempts: i64 = conn
        .query_row(
            "SELECT count(DISTINCT delivery_id) FROM route_attempts WHERE outcome = 'delivered'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(with_attempts, events);
    assert_eq!(common::integrity(&db), "ok");
}
