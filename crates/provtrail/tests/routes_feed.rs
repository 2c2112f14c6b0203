//! The writer hands the deliveries of new events to the routes' workers (the outbox feed), with
//! the database as the record: tested against a real SQLite file, without the workers, so that
//! what a worker relies on is checked directly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use provtrail::ingest::{Ingestor, RouteMatcher};
use provtrail::metrics::Metrics;
use provtrail::store::sqlite::{SqliteSettings, SqliteStore};
use provtrail::store::{IngestOutcome, OutboxFeed, OutboxItem, Receipt, Store};
use provtrail::synth::{Generator, SynthOptions};
use serde_json::Value;

/// Every event matches the one route.
#[derive(Debug)]
struct Everything;

impl RouteMatcher for Everything {
    fn matching_routes(&self, _event: &Value) -> Vec<String> {
        vec!["archive".into()]
    }

    fn is_empty(&self) -> bool {
        false
    }
}

fn receipt(received_at: i64, size: usize) -> Receipt {
    Receipt {
        received_at,
        remote_addr: Some("127.0.0.1:1".into()),
        channel: None,
        method: "POST".into(),
        path: "/events".into(),
        size: size as u64,
        user_agent: None,
    }
}

/// Stores `count` synthetic events (generator `seed`), received a millisecond apart; each is
/// accepted. Returns each one's id, body and receipt time.
async fn ingest_synthetic(
    store: &SqliteStore,
    ingestor: &Ingestor,
    seed: u64,
    count: i64,
) -> Vec<(i64, Vec<u8>, i64)> {
    let mut generator = Generator::new(&SynthOptions {
        seed,
        failure_rate: 0.2,
        identities: 10,
    });
    let mut events = Vec::new();
    for n in 0..count {
        let raw = generator.next_json();
        let at = 1_795_000_000_000 + n;
        let outcome = store
            .ingest(ingestor.prepare(Bytes::from(raw.clone()), receipt(at, raw.len())))
            .await
            .unwrap();
        let IngestOutcome::Accepted { id } = outcome else {
            panic!("not accepted: {outcome:?}");
        };
        events.push((id, raw, at));
    }
    events
}

/// A store in `dir` for these tests.
fn open_feed_store(dir: &std::path::Path) -> SqliteStore {
    SqliteStore::open(
        SqliteSettings::new(dir.join("feed.db")),
        Arc::new(Metrics::new()),
    )
    .unwrap()
}

type Handed = Arc<Mutex<HashSet<i64>>>;

/// Registers a feed for the `archive` route with room for `capacity` deliveries.
fn feed_archive(
    store: &SqliteStore,
    capacity: usize,
) -> (
    tokio::sync::mpsc::Receiver<OutboxItem>,
    Handed,
    Arc<tokio::sync::Notify>,
) {
    let (feed, handed, overflowed, _) = feed_archive_within(store, capacity, usize::MAX);
    (feed, handed, overflowed)
}

/// [`feed_archive`] with room for `max_bytes` of bodies; also gives the bytes it holds.
fn feed_archive_within(
    store: &SqliteStore,
    capacity: usize,
    max_bytes: usize,
) -> (
    tokio::sync::mpsc::Receiver<OutboxItem>,
    Handed,
    Arc<tokio::sync::Notify>,
    Arc<AtomicUsize>,
) {
    let (sender, feed) = tokio::sync::mpsc::channel(capacity);
    let handed = Handed::default();
    let overflowed = Arc::new(tokio::sync::Notify::new());
    let held_bytes = Arc::new(AtomicUsize::new(0));
    store.feed_outbox(
        "archive",
        OutboxFeed {
            sender,
            handed: handed.clone(),
            overflowed: overflowed.clone(),
            held_bytes: held_bytes.clone(),
            max_bytes,
        },
    );
    (feed, handed, overflowed, held_bytes)
}

/// A feed holds no more than its bytes' worth of bodies: the rest are left to reads, as when
/// its queue is full.
#[tokio::test]
async fn deliveries_past_the_feeds_bytes_are_left_to_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_feed_store(dir.path());
    let ingestor = Ingestor::new(1 << 20).with_routes(Arc::new(Everything));
    let (mut feed, handed, overflowed, held) = feed_archive_within(&store, 1_000, 1);
    // Room for one byte: nothing fits (and nothing is counted as held).
    let events = ingest_synthetic(&store, &ingestor, 11, 3).await;
    assert!(
        feed.try_recv().is_err(),
        "a body past the bytes was handed over"
    );
    assert!(handed.lock().unwrap().is_empty());
    assert_eq!(held.load(Ordering::SeqCst), 0);
    tokio::time::timeout(std::time::Duration::from_secs(5), overflowed.notified())
        .await
        .expect("the route's worker is told to read them");
    let due = store
        .outbox_due("archive", i64::MAX, 10, Vec::new())
        .await
        .unwrap();
    assert_eq!(due.len(), events.len());
    store.close().await;

    // Room for two bodies: two are handed over and counted, the third is left to reads.
    let dir = tempfile::tempdir().unwrap();
    let store = open_feed_store(dir.path());
    let ingestor = Ingestor::new(1 << 20).with_routes(Arc::new(Everything));
    // The bodies `ingest_synthetic` will store, to size the room by.
    let mut generator = Generator::new(&SynthOptions {
        seed: 12,
        failure_rate: 0.2,
        identities: 10,
    });
    let two = generator.next_json().len() + generator.next_json().len();
    let (mut feed, _handed, _overflowed, held) = feed_archive_within(&store, 1_000, two);
    let events = ingest_synthetic(&store, &ingestor, 12, 3).await;
    assert_eq!(events[0].1.len() + events[1].1.len(), two);
    let mut fed = Vec::new();
    while let Ok(item) = feed.try_recv() {
        fed.push(item.event_id);
    }
    assert_eq!(fed, [events[0].0, events[1].0]);
    assert_eq!(held.load(Ordering::SeqCst), two);
    store.close().await;
}

#[tokio::test]
async fn new_deliveries_reach_the_feed_and_those_it_has_no_room_for_are_left_to_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_feed_store(dir.path());
    let ingestor = Ingestor::new(1 << 20).with_routes(Arc::new(Everything));
    // Room for two: the third and later deliveries overflow.
    let (mut feed, handed, overflowed) = feed_archive(&store, 2);
    let mut changes = store.outbox_changes();
    changes.mark_unchanged();

    let events = ingest_synthetic(&store, &ingestor, 7, 5).await;

    // The first two arrive through the feed, complete, and are marked as handed over.
    let mut fed = Vec::new();
    while let Ok(item) = feed.try_recv() {
        fed.push(item);
    }
    assert_eq!(fed.len(), 2);
    for (item, (event_id, raw, at)) in fed.iter().zip(&events) {
        assert_eq!(item.event_id, *event_id);
        assert_eq!(item.route, "archive");
        assert_eq!(item.attempts, 0);
        assert_eq!(item.received_at, *at);
        assert_eq!(item.due_since, *at);
        assert_eq!(&item.raw[..], &raw[..]);
    }
    let fed_ids: HashSet<i64> = fed.iter().map(|item| item.id).collect();
    assert_eq!(*handed.lock().unwrap(), fed_ids);

    // The rest were not handed over: this route's worker (and no other) is woken to read them.
    tokio::time::timeout(std::time::Duration::from_secs(5), overflowed.notified())
        .await
        .expect("the route's worker is told that its feed overflowed");
    assert!(!changes.has_changed().unwrap(), "no other route is woken");

    // The database holds all five as pending: a read that leaves out what was handed over
    // finds exactly the three the feed had no room for, with the same content.
    let due = store
        .outbox_due("archive", i64::MAX, 10, Vec::new())
        .await
        .unwrap();
    assert_eq!(due.len(), 5);
    let exclude: Vec<i64> = handed.lock().unwrap().iter().copied().collect();
    let rest = store
        .outbox_due("archive", i64::MAX, 10, exclude)
        .await
        .unwrap();
    let rest_events: Vec<i64> = rest.iter().map(|item| item.event_id).collect();
    let expected: Vec<i64> = events[2..].iter().map(|(id, _, _)| *id).collect();
    assert_eq!(rest_events, expected);
    for item in &rest {
        let (_, raw, _) = events
            .iter()
            .find(|(id, _, _)| *id == item.event_id)
            .unwrap();
        assert_eq!(&item.raw[..], &raw[..]);
        assert!(!fed_ids.contains(&item.id));
    }
    store.close().await;
}

#[tokio::test]
async fn a_commit_that_fails_takes_back_what_it_reserved_for_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.db");
    // Create the schema, then reopen with a size cap a little above the empty database, so that
    // commits start failing (as on a full disk) after a few events.
    drop(SqliteStore::open(SqliteSettings::new(&path), Arc::new(Metrics::new())).unwrap());
    let empty = std::fs::metadata(&path).unwrap().len();
    let mut settings = SqliteSettings::new(&path);
    settings.max_size_bytes = Some(empty + 64 * 1024);
    // No room above the cap: commits themselves fail, as on a full disk.
    settings.cap_reserve_bytes = Some(0);
    let store = SqliteStore::open(settings, Arc::new(Metrics::new())).unwrap();
    let ingestor = Ingestor::new(1 << 20).with_routes(Arc::new(Everything));
    let (mut feed, handed, _overflowed) = feed_archive(&store, 10_000);
    let mut generator = Generator::new(&SynthOptions {
        seed: 11,
        failure_rate: 0.2,
        identities: 10,
    });
    let mut accepted = 0;
    let mut failed = 0;
    for n in 0..2_000 {
        let raw = generator.next_json();
        let incoming = ingestor.prepare(Bytes::from(raw.clone()), receipt(n, raw.len()));
        match store.ingest(incoming).await {
            Ok(IngestOutcome::Accepted { .. }) => accepted += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => {
                failed += 1;
                if failed == 3 {
                    break;
                }
            }
        }
    }
    assert!(failed == 3, "the size cap never made a commit fail");
    assert!(accepted > 0);
    // Only committed deliveries reached the feed, and every reservation left is one of them.
    let mut fed = HashSet::new();
    while let Ok(item) = feed.try_recv() {
        fed.insert(item.id);
    }
    assert_eq!(fed.len(), accepted);
    assert_eq!(*handed.lock().unwrap(), fed);
    store.close().await;
}

#[tokio::test]
async fn a_delivery_whose_event_cannot_be_read_back_keeps_no_other_from_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("damaged.db");
    let store = SqliteStore::open(SqliteSettings::new(&db), Arc::new(Metrics::new())).unwrap();
    let ingestor = Ingestor::new(1 << 20).with_routes(Arc::new(Everything));
    let events = ingest_synthetic(&store, &ingestor, 11, 3).await;
    // The middle event's body damaged on disk, and the last one's row (text no longer UTF-8,
    // as a damaged page leaves it).
    let damaged = events[1].0;
    let unreadable_row = events[2].0;
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE events SET raw = zeroblob(length(raw)) WHERE id = ?1",
        [damaged],
    )
    .unwrap();
    conn.execute(
        "UPDATE events SET invocation_id = CAST(X'FF' AS TEXT) WHERE id = ?1",
        [unreadable_row],
    )
    .unwrap();
    drop(conn);

    let due = store
        .outbox_due("archive", i64::MAX, 10, Vec::new())
        .await
        .unwrap();
    assert_eq!(due.len(), 3);
    for (item, (id, raw, _)) in due.iter().zip(&events) {
        assert_eq!(item.event_id, *id);
        if *id == damaged {
            let why = item.unreadable.as_deref().unwrap();
            assert!(
                why.starts_with(&format!(
                    "the stored body of event {id} cannot be read back"
                )),
                "{why}"
            );
        } else if *id == unreadable_row {
            let why = item.unreadable.as_deref().unwrap();
            assert!(
                why.starts_with(&format!(
                    "the stored event {id} cannot be read back: SQLite"
                )),
                "{why}"
            );
        } else {
            assert_eq!(item.unreadable, None);
            assert_eq!(&item.raw[..], &raw[..]);
        }
    }
    store.close().await;
}
