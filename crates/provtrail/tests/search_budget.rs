#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A filtered search against events whose evaluation takes long. Its own test binary, so its
//! own process: filter evaluations share a process-wide number of slots (half the cores), and
//! the evaluation this test holds for up to ten seconds would make the fast filtered searches of
//! the tests beside it wait for their turn.

mod common;

use common::TestServer;
use serde_json::{Value, json};

/// A page of candidates none of whose events could be evaluated in time is not skipped: the
/// search continues where that page began. A filter that cannot finish on one event within the
/// first-event limit is refused, naming the event, rather than hold the request for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_search_out_of_time_at_a_page_start_continues_at_that_page() {
    use provtrail::search::{Budget, SearchError, search};
    use provtrail::store::EventQuery;

    let mut server = TestServer::start().await;
    let post = |body: Vec<u8>| {
        let server = &server;
        async move {
            let answer = server.post("/events", body).await;
            assert_eq!(answer.status, 200, "{}", answer.text());
            answer.outcome().1
        }
    };
    // Ids 1 to 50 small, 51 large (thousands of nodes), 52 to 251 small: the store hands the
    // search candidates 200 at a time, newest first, so the large one opens the second batch.
    for n in 0..50 {
        post(common::event(&format!("inv-small-a{n}"))).await;
    }
    let mut large: Value = serde_json::from_slice(&common::event("inv-large")).unwrap();
    large["extra"] = Value::Array(
        (0..3000)
            .map(|n| json!({"n": n, "s": format!("v{n}")}))
            .collect(),
    );
    let large_id = post(serde_json::to_vec(&large).unwrap()).await;
    assert_eq!(large_id, 51);
    for n in 0..200 {
        post(common::event(&format!("inv-small-b{n}"))).await;
    }
    // Every node equals itself: a match on every event, in time quadratic in its nodes.
    let filter = provtrail_jsonpath::compile("$[?($..*[?(@ == $..*)])]").unwrap();
    let store = server.app().store.clone();
    let query = EventQuery {
        limit: 1000,
        ..EventQuery::default()
    };
    let budget = Budget {
        events: 20_000,
        time: std::time::Duration::from_secs(5),
    };
    let page = search(store.as_ref(), &query, Some(&filter), budget)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 200, "the first batch, all of it");
    assert!(!page.complete);
    assert_eq!(
        page.next_cursor,
        Some(52),
        "the second batch, none of it evaluated, is where to go on"
    );
    // Continued there: the large event alone cannot be evaluated within the first-event limit.
    let continued = EventQuery {
        before_id: page.next_cursor,
        ..query
    };
    match search(store.as_ref(), &continued, Some(&filter), budget).await {
        Err(err @ SearchError::TooSlow { event_id: 51 }) => {
            assert!(err.to_string().contains("event 51"), "{err}");
        }
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}
