//! Shared by the read API and CLI tests: a database file filled through the real ingest path
//! with known receipt times and channels, and requests to the read API.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use provtrail::ingest::Ingestor;
use provtrail::metrics::Metrics;
use provtrail::store::sqlite::{SqliteSettings, SqliteStore};
use provtrail::store::{IngestOutcome, Receipt, Store};
use provtrail::synth::{Generator, SynthOptions};
use serde_json::Value;

use crate::common::{Answer, PAYLOADS, TestServer, client};

/// The read token of the test servers.
pub const READ: &str = "read-token-abcdef0123456789";
/// One day in milliseconds.
pub const DAY: i64 = 86_400_000;
/// The newest seeded event's time: in the past, on a whole hour.
pub const NOW: i64 = 1_795_000_000_000 - 1_795_000_000_000 % 3_600_000;

/// One stored event as the test put it in.
#[derive(Debug, Clone)]
pub struct Seed {
    pub id: i64,
    pub at: i64,
    pub channel: Option<String>,
    pub json: Value,
    pub raw: Vec<u8>,
}

/// A database file with known contents.
pub struct Seeded {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    /// Stored events, oldest first.
    pub events: Vec<Seed>,
    /// Ids of the quarantine entries, oldest first.
    pub quarantined: Vec<i64>,
}

fn receipt(at: i64, channel: Option<&str>, size: usize) -> Receipt {
    Receipt {
        received_at: at,
        remote_addr: Some("127.0.0.1:40000".into()),
        channel: channel.map(str::to_owned),
        method: "POST".into(),
        path: channel.map_or_else(|| "/events".to_owned(), |c| format!("/events/{c}")),
        size: size as u64,
        user_agent: Some("seed".into()),
    }
}

/// `n` synthetic events (20 % of account requests failing), one every 2.4 hours up to [`NOW`],
/// every third posted to channel `prod`; then the specification's example event; a duplicate
/// delivery of the first event; and two quarantined documents (an invalid event and a body that
/// is not UTF-8).
pub async fn seed(n: usize) -> Seeded {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("api.db");
    let store = SqliteStore::open(SqliteSettings::new(&db), Arc::new(Metrics::new())).unwrap();
    let ingestor = Ingestor::new(1 << 20);
    let mut generator = Generator::new(&SynthOptions {
        seed: 7,
        failure_rate: 0.2,
        identities: 20,
    });
    let mut events = Vec::new();
    let mut quarantined = Vec::new();
    async fn put(
        store: &SqliteStore,
        ingestor: &Ingestor,
        raw: Vec<u8>,
        at: i64,
        channel: Option<&'static str>,
    ) -> (IngestOutcome, Vec<u8>, i64, Option<&'static str>) {
        let incoming = ingestor.prepare(Bytes::from(raw.clone()), receipt(at, channel, raw.len()));
        (store.ingest(incoming).await.unwrap(), raw, at, channel)
    }
    for k in 0..n {
        let at = NOW - 1 - (n - 1 - k) as i64 * (DAY / 10);
        let channel = (k % 3 == 0).then_some("prod");
        let (outcome, raw, at, channel) =
            put(&store, &ingestor, generator.next_json(), at, channel).await;
        let IngestOutcome::Accepted { id } = outcome else {
            panic!("{outcome:?}")
        };
        events.push(Seed {
            id,
            at,
            channel: channel.map(str::to_owned),
            json: serde_json::from_slice(&raw).unwrap(),
            raw,
        });
    }
    // The example, with its own spacing kept: `raw` must come back byte for byte.
    let example = std::fs::read(format!("{PAYLOADS}doc_example.json")).unwrap();
    let (outcome, raw, at, channel) = put(&store, &ingestor, example, NOW, Some("docs")).await;
    let IngestOutcome::Accepted { id } = outcome else {
        panic!("{outcome:?}")
    };
    events.push(Seed {
        id,
        at,
        channel: channel.map(str::to_owned),
        json: serde_json::from_slice(&raw).unwrap(),
        raw,
    });
    let first = events[0].raw.clone();
    let (outcome, ..) = put(&store, &ingestor, first, NOW + 1, None).await;
    assert!(matches!(outcome, IngestOutcome::Duplicate { .. }));
    for (k, body) in [b"{\"a\": 1}".to_vec(), b"\xff\xfe not json".to_vec()]
        .into_iter()
        .enumerate()
    {
        let (outcome, ..) = put(&store, &ingestor, body, NOW + 2 + k as i64, None).await;
        let IngestOutcome::Quarantined { id, .. } = outcome else {
            panic!("{outcome:?}")
        };
        quarantined.push(id);
    }
    store.close().await;
    Seeded {
        dir,
        db,
        events,
        quarantined,
    }
}

impl Seeded {
    /// Ids of the events for which `keep` holds, newest first.
    pub fn expected(&self, keep: impl Fn(&Seed) -> bool) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .events
            .iter()
            .filter(|seed| keep(seed))
            .map(|seed| seed.id)
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids
    }
}

/// The account requests of an event.
pub fn requests(json: &Value) -> Vec<Value> {
    json["accountRequests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A server on `db` that accepts [`READ`] for reading and the common test token for ingest.
pub async fn serve(db: &Path) -> TestServer {
    let mut config = crate::common::config(db);
    config.read.tokens = vec![READ.into()];
    TestServer::start_config(&config).await
}

/// GET `path` with `query` and, when given, a bearer token.
pub async fn get(
    server: &TestServer,
    path: &str,
    query: &[(&str, &str)],
    token: Option<&str>,
) -> Answer {
    let mut url = reqwest::Url::parse(&server.url(path)).unwrap();
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    let mut request = client().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Answer::read(request.send().await.unwrap()).await
}

/// GET with the read token, expecting 200.
pub async fn read(server: &TestServer, path: &str, query: &[(&str, &str)]) -> Value {
    let answer = get(server, path, query, Some(READ)).await;
    assert_eq!(answer.status, 200, "{path} {query:?}: {}", answer.text());
    answer.json()
}

/// Every id `GET /api/v1/events` finds with `query`, following cursors with pages of `limit`;
/// fails on a repeated id.
pub async fn all_ids(server: &TestServer, query: &[(&str, &str)], limit: usize) -> Vec<i64> {
    let mut ids: Vec<i64> = Vec::new();
    let mut cursor: Option<String> = None;
    let limit = limit.to_string();
    for _ in 0..10_000 {
        let mut q: Vec<(&str, &str)> = query.to_vec();
        q.push(("limit", &limit));
        if let Some(cursor) = &cursor {
            q.push(("cursor", cursor));
        }
        let page = read(server, "/api/v1/events", &q).await;
        for item in page["items"].as_array().unwrap() {
            let id = item["id"].as_i64().unwrap();
            assert!(!ids.contains(&id), "{id} came twice for {query:?}");
            ids.push(id);
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
    panic!("the cursors never ended for {query:?}");
}

/// The `error` object of a refusal, after checking its status.
pub fn refusal(answer: &Answer, status: u16) -> Value {
    assert_eq!(answer.status, status, "{}", answer.text());
    assert_eq!(
        answer.header("content-type"),
        Some("application/json"),
        "{}",
        answer.text()
    );
    let body = answer.json();
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"].clone()
}
