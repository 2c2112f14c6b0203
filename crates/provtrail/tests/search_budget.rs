#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A filtered search against events whose evaluation takes long. Its own test binary, so its
//! own process: filter evaluations share a process-wide number of slots (half the cores), and
//! the evaluation this test holds for up to ten seconds would make the fast filtered searches of
//! the tests beside it wait for their turn. For the same reason the tests here run one at a
//! time ([`ONE_AT_A_TIME`]).

mod common;

use std::time::Duration;

use common::{TestServer, client};
use serde_json::{Value, json};

/// Held by each test for its whole run.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An event whose every node equals itself, with thousands of nodes: what
/// [`QUADRATIC`] takes far longer than the first-event limit to evaluate.
fn large_event(invocation: &str) -> Vec<u8> {
    let mut large: Value = serde_json::from_slice(&common::event(invocation)).unwrap();
    large["extra"] = Value::Array(
        (0..3000)
            .map(|n| json!({"n": n, "s": format!("v{n}")}))
            .collect(),
    );
    serde_json::to_vec(&large).unwrap()
}

/// Every node compared with every other: a match on every event, in time quadratic in its nodes.
const QUADRATIC: &str = "$[?($..*[?(@ == $..*)])]";

/// A page of candidates none of whose events could be evaluated in time is not skipped: the
/// search continues where that page began. A filter that cannot finish on one event within the
/// first-event limit is refused, naming the event, rather than hold the request for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_search_out_of_time_at_a_page_start_continues_at_that_page() {
    use provtrail::search::{Budget, SearchError, search};
    use provtrail::store::EventQuery;

    let _alone = ONE_AT_A_TIME.lock().await;
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
    let large_id = post(large_event("inv-large")).await;
    assert_eq!(large_id, 51);
    for n in 0..200 {
        post(common::event(&format!("inv-small-b{n}"))).await;
    }
    let filter = provtrail_jsonpath::compile(QUADRATIC).unwrap();
    let store = server.app().store.clone();
    let query = EventQuery {
        limit: 1000,
        ..EventQuery::default()
    };
    let budget = Budget {
        events: 20_000,
        time: Duration::from_secs(5),
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

/// A client that leaves while its filter is evaluated (an HTTP/2 connection closed) takes the
/// evaluation with it: the slot it held is free for the next search at once, not after the
/// ten seconds its first event may take. (Over HTTP/1 the end of a client's input is not taken
/// for its leaving: a client may shut its side and wait for the answer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_whose_client_left_gives_its_evaluation_slot_back() {
    const READ: &str = "search-budget-read-token";
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut server = TestServer::start_with(|config| config.read.tokens = vec![READ.into()]).await;
    for n in 0..5 {
        let answer = server
            .post("/events", common::event(&format!("inv-s{n}")))
            .await;
        assert_eq!(answer.status, 200);
    }
    let answer = server.post("/events", large_event("inv-large")).await;
    assert_eq!(answer.status, 200);

    // The slow search, from a client that leaves half a second in.
    let target = format!("/api/v1/events?filter={}", url_encoded(QUADRATIC));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (h2_client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut h2_client = h2_client.ready().await.unwrap();
    let request = axum::http::Request::get(format!("http://{}{target}", server.addr))
        .header("authorization", format!("Bearer {READ}"))
        .body(())
        .unwrap();
    let (_answer, _stream) = h2_client.send_request(request, true).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    connection.abort();
    drop(h2_client);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The next filtered search gets the slot and its whole budget: every event, complete.
    let url = format!(
        "{}?limit=100&filter={}",
        server.url("/api/v1/events"),
        url_encoded("$[?($.trackingNumber)]")
    );
    let answer = client().get(url).bearer_auth(READ).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let page: Value = answer.json().await.unwrap();
    assert_eq!(page["complete"], true, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 6, "{page}");
    server.shutdown().await;
}

fn url_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
