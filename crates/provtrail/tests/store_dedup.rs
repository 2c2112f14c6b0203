//! Deduplication across the store's two tiers of keys (the `dedup` table up to a watermark, the
//! recent keys in the writer's memory above it), on a real SQLite file: every delivery of an
//! event already stored, whichever tier holds its key, in the same batch or after a restart, is
//! a duplicate with the original id, and no key is ever lost or kept twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use provtrail::ingest::Ingestor;
use provtrail::metrics::Metrics;
use provtrail::store::sqlite::{DedupLimits, SqliteSettings, SqliteStore};
use provtrail::store::{IngestOutcome, Receipt, Store};
use provtrail::synth::{Generator, SynthOptions};

/// Small limits, so that a few hundred events go through many merges.
const LIMITS: DedupLimits = DedupLimits {
    merge_when_idle: 40,
    merge_always: 100,
    merge_slice: 30,
};

fn open(path: &Path) -> Arc<SqliteStore> {
    let mut settings = SqliteSettings::new(path);
    settings.dedup = LIMITS;
    Arc::new(SqliteStore::open(settings, Arc::new(Metrics::new())).unwrap())
}

fn receipt(size: usize) -> Receipt {
    Receipt {
        received_at: 1_700_000_000_000,
        remote_addr: Some("127.0.0.1:1".into()),
        channel: None,
        method: "POST".into(),
        path: "/events".into(),
        size: size as u64,
        user_agent: None,
    }
}

/// Ingests every body concurrently (so that they share group commits) and returns the outcomes
/// in the bodies' order.
async fn ingest_all(store: &Arc<SqliteStore>, bodies: &[Bytes]) -> Vec<IngestOutcome> {
    let ingestor = Arc::new(Ingestor::new(1 << 20));
    let mut tasks = Vec::new();
    for chunk in bodies.chunks(64) {
        for body in chunk {
            let (store, ingestor, body) = (store.clone(), ingestor.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let incoming = ingestor.prepare(body.clone(), receipt(body.len()));
                store.ingest(incoming).await.unwrap()
            }));
        }
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

fn bodies(count: usize, seed: u64) -> Vec<Bytes> {
    let mut generator = Generator::new(&SynthOptions {
        seed,
        failure_rate: 0.2,
        identities: 10,
    });
    (0..count)
        .map(|_| Bytes::from(generator.next_json()))
        .collect()
}

fn accepted_ids(outcomes: &[IngestOutcome]) -> Vec<i64> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            IngestOutcome::Accepted { id } => *id,
            other => panic!("expected a new event, got {other:?}"),
        })
        .collect()
}

fn assert_duplicates_of(outcomes: &[IngestOutcome], ids: &[i64], when: &str) {
    for (outcome, id) in outcomes.iter().zip(ids) {
        assert_eq!(
            outcome,
            &IngestOutcome::Duplicate { id: *id },
            "{when}: a second delivery must be a duplicate of event {id}"
        );
    }
}

/// Every stored event's key is in exactly one tier: in `dedup` (with the event's id) at or below
/// the watermark, nowhere in it above.
fn assert_tiers_consistent(path: &Path, expected_events: usize) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    let watermark: i64 = conn
        .query_row(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'dedup_merged_through'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let merged: HashMap<Vec<u8>, i64> = conn
        .prepare("SELECT dedup_key, event_id FROM dedup")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let events: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT id, dedup_key FROM events ORDER BY id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(events.len(), expected_events, "events stored");
    let keys: HashSet<&Vec<u8>> = events.iter().map(|(_, key)| key).collect();
    assert_eq!(keys.len(), events.len(), "no key is stored twice");
    for (id, key) in &events {
        if *id <= watermark {
            assert_eq!(
                merged.get(key),
                Some(id),
                "event {id} is below the watermark"
            );
        } else {
            assert!(
                !merged.contains_key(key),
                "event {id} is above the watermark"
            );
        }
    }
    assert_eq!(
        merged.len(),
        events.iter().filter(|(id, _)| *id <= watermark).count(),
        "the dedup table holds only stored events"
    );
    watermark
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_delivery_is_a_duplicate_whichever_tier_holds_the_key_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dedup.db");
    let first = bodies(500, 3);

    let store = open(&path);
    let ids = accepted_ids(&ingest_all(&store, &first).await);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        first.len(),
        "ids are distinct"
    );
    // Again while the writer holds some keys in memory and the rest are merged.
    assert_duplicates_of(&ingest_all(&store, &first).await, &ids, "same process");
    // New events in the same batches as duplicates of old ones.
    let second = bodies(200, 4);
    let mut mixed: Vec<Bytes> = second.clone();
    mixed.extend(first.iter().take(200).cloned());
    let outcomes = ingest_all(&store, &mixed).await;
    let second_ids = accepted_ids(&outcomes[..200]);
    assert_duplicates_of(&outcomes[200..], &ids[..200], "mixed batches");
    store.close().await;
    drop(store);

    let watermark = assert_tiers_consistent(&path, 700);
    assert!(
        watermark > 0,
        "with these limits some keys must have been merged"
    );

    // After a restart the recent keys are read back from the events above the watermark.
    let store = open(&path);
    assert_duplicates_of(&ingest_all(&store, &first).await, &ids, "after a restart");
    assert_duplicates_of(
        &ingest_all(&store, &second).await,
        &second_ids,
        "after a restart",
    );
    store.close().await;
    assert_tiers_consistent(&path, 700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_delivered_many_times_at_once_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dedup-once.db");
    let store = open(&path);
    let body = bodies(1, 9).remove(0);
    let outcomes = ingest_all(&store, &vec![body; 50]).await;
    let accepted: Vec<i64> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            IngestOutcome::Accepted { id } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(accepted.len(), 1, "{outcomes:?}");
    for outcome in &outcomes {
        assert!(
            matches!(outcome, IngestOutcome::Accepted { id } | IngestOutcome::Duplicate { id } if *id == accepted[0]),
            "{outcome:?}"
        );
    }
    store.close().await;
    assert_tiers_consistent(&path, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_the_dedup_table_keeps_deduplicating_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upgrade.db");
    let first = bodies(120, 5);
    let store = open(&path);
    let ids = accepted_ids(&ingest_all(&store, &first).await);
    store.close().await;
    drop(store);
    // Put the file back the way schema version 2 left it: keys only in a unique index on events.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE dedup;
             DELETE FROM meta WHERE key = 'dedup_merged_through';
             CREATE UNIQUE INDEX events_dedup_key ON events (dedup_key);
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let store = open(&path);
    assert_duplicates_of(&ingest_all(&store, &first).await, &ids, "after the upgrade");
    let more = bodies(50, 6);
    accepted_ids(&ingest_all(&store, &more).await);
    store.close().await;
    let watermark = assert_tiers_consistent(&path, 170);
    assert!(watermark >= ids.iter().copied().max().unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let old_index: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'events_dedup_key'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(old_index, 0, "the unique index is gone");
}
