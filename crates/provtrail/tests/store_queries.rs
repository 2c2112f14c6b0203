//! Searches, statistics, the delivery log and the quarantine, on a real SQLite file filled through
//! the same ingest path as the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use provtrail::ingest::Ingestor;
use provtrail::metrics::Metrics;
use provtrail::store::sqlite::{SqliteSettings, SqliteStore};
use provtrail::store::{
    Bucket, DeliveryQuery, EventQuery, IngestOutcome, QuarantineQuery, Receipt, StatsQuery, Store,
};
use provtrail::synth::{Generator, SynthOptions};
use provtrail_model::ProvisioningCompleted;

const DAY: i64 = 86_400_000;
const NOW: i64 = 1_795_000_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    ingestor: Ingestor,
    events: Vec<(i64, ProvisioningCompleted<'static>, i64)>,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(
            SqliteSettings::new(dir.path().join("q.db")),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        Fixture {
            _dir: dir,
            store,
            ingestor: Ingestor::new(1 << 20),
            events: Vec::new(),
        }
    }

    async fn put(
        &mut self,
        raw: Vec<u8>,
        received_at: i64,
        channel: Option<&str>,
    ) -> IngestOutcome {
        let receipt = Receipt {
            received_at,
            remote_addr: Some("127.0.0.1:1".into()),
            channel: channel.map(str::to_owned),
            method: "POST".into(),
            path: "/events".into(),
            size: raw.len() as u64,
            user_agent: None,
        };
        let event = ProvisioningCompleted::from_slice(&raw)
            .ok()
            .map(|e| e.into_owned());
        let outcome = self
            .store
            .ingest(self.ingestor.prepare(Bytes::from(raw), receipt))
            .await
            .unwrap();
        if let (IngestOutcome::Accepted { id }, Some(event)) = (outcome, event) {
            self.events.push((id, event, received_at));
        }
        outcome
    }

    /// 400 synthetic events over 40 days, one every 2.4 hours, with 20 % failures.
    async fn filled() -> Self {
        let mut fixture = Fixture::new().await;
        let mut generator = Generator::new(&SynthOptions {
            seed: 42,
            failure_rate: 0.2,
            identities: 50,
        });
        for n in 0..400 {
            let at = NOW - 40 * DAY + n * (DAY / 10);
            let channel = if n % 3 == 0 { Some("prod") } else { None };
            fixture.put(generator.next_json(), at, channel).await;
        }
        fixture
    }

    /// Every id the query finds, following cursors.
    async fn all(&self, mut query: EventQuery) -> Vec<i64> {
        let mut ids = Vec::new();
        query.limit = 7;
        loop {
            let page = self.store.search_events(&query, false).await.unwrap();
            ids.extend(page.items.iter().map(|event| event.id));
            match page.next_cursor {
                Some(cursor) => query.before_id = Some(cursor),
                None => return ids,
            }
        }
    }

    /// Ids of the events for which `keep` holds, newest first.
    fn expected(&self, keep: impl Fn(&ProvisioningCompleted<'static>, i64) -> bool) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .events
            .iter()
            .filter(|(_, event, at)| keep(event, *at))
            .map(|(id, _, _)| *id)
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids
    }
}

#[tokio::test]
async fn every_filter_finds_exactly_the_matching_events_across_pages() {
    let fixture = Fixture::filled().await;
    let (_, sample, _) = fixture.events[123].clone();
    let request = &sample.account_requests[0];

    let by_tracking = fixture
        .all(EventQuery {
            tracking_number: Some(sample.tracking_number.to_string()),
            ..EventQuery::default()
        })
        .await;
    assert_eq!(by_tracking, vec![fixture.events[123].0]);

    let by_invocation = fixture
        .all(EventQuery {
            invocation_id: Some(sample.invocation_id().unwrap().to_uppercase()),
            ..EventQuery::default()
        })
        .await;
    assert_eq!(
        by_invocation,
        vec![fixture.events[123].0],
        "case does not matter"
    );

    let name = sample.recipient.name.to_string();
    let identity = fixture
        .all(EventQuery {
            identity: Some(name.to_lowercase()),
            ..EventQuery::default()
        })
        .await;
    assert_eq!(
        identity,
        fixture.expected(|event, _| event.recipient.name == name
            || event.requester.as_option().is_some_and(|r| r.name == name))
    );

    let source = request.source.name.to_string();
    let failed_on_source = fixture
        .all(EventQuery {
            source: Some(source.clone()),
            result: Some("FAILED".into()),
            ..EventQuery::default()
        })
        .await;
    let expected = fixture.expected(|event, _| {
        event
            .account_requests
            .iter()
            .any(|r| r.source.name == source && r.failed())
    });
    assert!(!expected.is_empty());
    assert_eq!(
        failed_on_source, expected,
        "source and result on the same account request"
    );

    let account = request.account_id.as_deref().unwrap().to_owned();
    let by_account = fixture
        .all(EventQuery {
            account_id: Some(account.clone()),
            ..EventQuery::default()
        })
        .await;
    assert_eq!(
        by_account,
        fixture.expected(|event, _| event
            .account_requests
            .iter()
            .any(|r| r.account_id.as_deref() == Some(account.as_str())))
    );

    let in_channel = fixture
        .all(EventQuery {
            channel: Some("prod".into()),
            since: Some(NOW - 10 * DAY),
            until: Some(NOW - 5 * DAY),
            ..EventQuery::default()
        })
        .await;
    let prod: Vec<i64> = fixture
        .events
        .iter()
        .enumerate()
        .filter(|(n, (_, _, at))| n % 3 == 0 && *at >= NOW - 10 * DAY && *at < NOW - 5 * DAY)
        .map(|(_, (id, _, _))| *id)
        .rev()
        .collect();
    assert_eq!(in_channel, prod);

    let everything = fixture.all(EventQuery::default()).await;
    assert_eq!(everything, fixture.expected(|_, _| true));
}

#[tokio::test]
async fn full_text_matches_words_of_errors_and_attribute_values_and_never_injects_syntax() {
    let mut fixture = Fixture::new().await;
    let base = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/payloads/doc_example.json"
    ))
    .unwrap();
    fixture.put(base.clone(), NOW, None).await;
    let q = |text: &str| EventQuery {
        q: Some(text.into()),
        limit: 10,
        ..EventQuery::default()
    };
    for (text, hits) in [
        ("connector failed", 1),
        ("CONNECTOR", 1),
        ("conn*", 1),
        ("helpco sales", 1),
        ("notification skipped", 1),
        ("nowhere", 0),
        ("\"unbalanced NEAR( OR", 0),
        ("Rob.Robertson", 1),
        // The document has no word that starts with x: a prefix never finds the index's keys.
        ("x*", 0),
        ("xt*", 0),
        ("xs2*", 0),
    ] {
        let page = fixture.store.search_events(&q(text), false).await.unwrap();
        assert_eq!(page.items.len(), hits, "q = {text:?}");
    }
}

#[tokio::test]
async fn stats_agree_with_the_events_counted_one_by_one() {
    let fixture = Fixture::filled().await;
    let since = NOW - 30 * DAY;
    let stats = fixture
        .store
        .stats(&StatsQuery {
            since: Some(since),
            until: Some(NOW),
            bucket: Bucket::Day,
            top_errors: 5,
            per_source_series: true,
            ..StatsQuery::default()
        })
        .await
        .unwrap();
    let mut failed = 0;
    let mut total = 0;
    for (_, event, at) in &fixture.events {
        // Statistics are hourly; the fixture's times fall on whole hours or later.
        if *at >= since && *at < NOW {
            failed += event.counts().failed as u64;
            total += event.counts().total() as u64;
        }
    }
    assert_eq!(stats.requests.failed, failed);
    assert_eq!(stats.requests.total(), total);
    assert_eq!(stats.series.len(), 31);
    let series_total: u64 = stats.series.iter().map(|b| b.requests.total()).sum();
    assert_eq!(series_total, total);
    let per_source: u64 = stats.sources.iter().map(|s| s.requests.total()).sum();
    assert_eq!(per_source, total);
    assert!(
        stats
            .sources
            .windows(2)
            .all(|w| w[0].requests.failed >= w[1].requests.failed)
    );
    assert!(!stats.top_errors.is_empty());
    assert!(
        stats
            .top_errors
            .windows(2)
            .all(|w| w[0].events >= w[1].events)
    );

    // "Since 1900" by hour is more buckets than a series may have: the totals are of every
    // event, and the series runs from the first hour that holds events to the last.
    let everything = fixture
        .store
        .stats(&StatsQuery {
            since: Some(-2_208_988_800_000),
            until: Some(NOW + DAY),
            bucket: Bucket::Hour,
            ..StatsQuery::default()
        })
        .await
        .unwrap();
    let all_total: u64 = fixture
        .events
        .iter()
        .map(|(_, event, _)| event.counts().total() as u64)
        .sum();
    assert_eq!(everything.requests.total(), all_total);
    let first = fixture.events.iter().map(|(_, _, at)| *at).min().unwrap();
    let last = fixture.events.iter().map(|(_, _, at)| *at).max().unwrap();
    let hour = 3_600_000;
    assert_eq!(
        everything.series.first().unwrap().start,
        first / hour * hour
    );
    assert_eq!(everything.series.last().unwrap().start, last / hour * hour);
    let series_total: u64 = everything.series.iter().map(|b| b.requests.total()).sum();
    assert_eq!(series_total, all_total);
}

#[tokio::test]
async fn delivery_log_and_quarantine_list_every_request_newest_first() {
    let mut fixture = Fixture::new().await;
    let mut generator = Generator::new(&SynthOptions::default());
    let event = generator.next_json();
    fixture.put(event.clone(), NOW, None).await;
    fixture.put(event, NOW + 1, None).await;
    fixture
        .put(b"{\"a\": 1}".to_vec(), NOW + 2, Some("x"))
        .await;
    fixture.put(b"not json".to_vec(), NOW + 3, None).await;
    let log = fixture
        .store
        .deliveries(&DeliveryQuery {
            limit: 10,
            ..DeliveryQuery::default()
        })
        .await
        .unwrap();
    let outcomes: Vec<&str> = log.items.iter().map(|d| d.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["quarantined", "quarantined", "duplicate", "accepted"]
    );
    let duplicates = fixture
        .store
        .deliveries(&DeliveryQuery {
            outcome: Some("duplicate".into()),
            limit: 10,
            ..DeliveryQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(duplicates.items.len(), 1);
    let id = log.items[3].event_id.unwrap();
    let detail = fixture.store.get_event(id).await.unwrap().unwrap();
    assert_eq!(
        detail.deliveries.len(),
        2,
        "the first delivery and the duplicate"
    );
    let quarantine = fixture
        .store
        .quarantine(&QuarantineQuery {
            limit: 10,
            ..QuarantineQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(quarantine.items.len(), 2);
    let entry = fixture
        .store
        .get_quarantine(quarantine.items[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.raw.unwrap(), Bytes::from_static(b"not json"));
    assert!(fixture.store.get_event(999_999).await.unwrap().is_none());
}

/// The search index is a second file written behind the commits; losing it (or the documents
/// not yet written when the process stopped) loses nothing: it is rebuilt from the events, and
/// a search waits for that.
#[tokio::test]
async fn the_search_index_is_rebuilt_from_the_events_when_its_file_is_lost() {
    let mut fixture = Fixture::filled().await;
    let failed = EventQuery {
        result: Some("FAILED".into()),
        ..EventQuery::default()
    };
    let prod = EventQuery {
        channel: Some("prod".into()),
        ..EventQuery::default()
    };
    let want_failed = fixture.expected(|event, _| event.failed_account_requests().next().is_some());
    assert!(!want_failed.is_empty());
    assert_eq!(fixture.all(failed.clone()).await, want_failed);
    let want_prod = fixture.all(prod.clone()).await;
    assert_eq!(want_prod.len(), 134, "every third of 400 events");

    let path = fixture._dir.path().join("q.db");
    fixture.store.close().await;
    for suffix in [".search", ".search-wal", ".search-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
    fixture.store =
        SqliteStore::open(SqliteSettings::new(&path), Arc::new(Metrics::new())).unwrap();
    assert_eq!(fixture.all(failed.clone()).await, want_failed);
    assert_eq!(fixture.all(prod.clone()).await, want_prod);

    // New events after the rebuild are found as soon as they are stored.
    let mut generator = Generator::new(&SynthOptions {
        seed: 7,
        failure_rate: 1.0,
        identities: 5,
    });
    let outcome = fixture.put(generator.next_json(), NOW, Some("prod")).await;
    let IngestOutcome::Accepted { id } = outcome else {
        panic!("not accepted: {outcome:?}");
    };
    assert_eq!(fixture.all(prod).await.first(), Some(&id));
    assert_eq!(fixture.all(failed).await.first(), Some(&id));
}

/// The example event with only its required fields, to change.
fn minimal_event() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/payloads/minimal_required_only.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn a_result_is_matched_as_the_schema_spells_it() {
    // `success` is not a value of the enumeration: its event's outcome is unknown, and a search
    // for SUCCESS does not find it (nor does SUCCESS on its source).
    let mut fixture = Fixture::new().await;
    let mut event = minimal_event();
    event["accountRequests"][0]["provisioningResult"] = "SUCCESS".into();
    event["trackingNumber"] = "upper".into();
    let IngestOutcome::Accepted { id: upper } =
        fixture.put(event.to_string().into_bytes(), NOW, None).await
    else {
        panic!("not accepted");
    };
    event["accountRequests"][0]["provisioningResult"] = "success".into();
    event["trackingNumber"] = "lower".into();
    let IngestOutcome::Accepted { id: lower } =
        fixture.put(event.to_string().into_bytes(), NOW, None).await
    else {
        panic!("not accepted");
    };
    let source = event["accountRequests"][0]["source"]["name"]
        .as_str()
        .map(str::to_owned);
    for (result, with_source, expected) in [
        ("SUCCESS", false, vec![upper]),
        ("success", false, vec![lower]),
        ("SUCCESS", true, vec![upper]),
        ("Success", true, vec![]),
    ] {
        let query = EventQuery {
            result: Some(result.into()),
            source: source.clone().filter(|_| with_source),
            ..EventQuery::default()
        };
        assert_eq!(
            fixture.all(query).await,
            expected,
            "{result}, source {with_source}"
        );
    }
}

#[tokio::test]
async fn composed_and_decomposed_accents_are_the_same_words_and_values() {
    // `É` is one character (NFC) from most keyboards, `E` and a combining accent (NFD) from
    // others; both are the same word to a person, and to the search.
    let mut fixture = Fixture::new().await;
    let mut event = minimal_event();
    event["errors"] = serde_json::json!(["E\u{301}chec de connexion"]);
    event["accountRequests"][0]["source"]["name"] = "Cafe\u{301} Source".into();
    let IngestOutcome::Accepted { id } =
        fixture.put(event.to_string().into_bytes(), NOW, None).await
    else {
        panic!("not accepted");
    };
    for (q, source) in [
        (Some("\u{c9}chec"), None),
        (Some("E\u{301}chec"), None),
        (Some("\u{e9}ch*"), None),
        (None, Some("Caf\u{e9} source")),
        (None, Some("CAFE\u{301} SOURCE")),
    ] {
        let query = EventQuery {
            q: q.map(str::to_owned),
            source: source.map(str::to_owned),
            ..EventQuery::default()
        };
        assert_eq!(
            fixture.all(query).await,
            vec![id],
            "q {q:?}, source {source:?}"
        );
    }
    // Statistics by source count it the same way, and a final sigma is any sigma.
    let mut event = minimal_event();
    event["accountRequests"][0]["source"]["name"] = "ΟΔΟΣ".into();
    event["trackingNumber"] = "sigma".into();
    fixture.put(event.to_string().into_bytes(), NOW, None).await;
    for (source, requests) in [
        (" cafe\u{301} SOURCE ", 1),
        ("Caf\u{e9} Source", 1),
        ("οδος", 1),
        ("οδοσ", 1),
        ("Cafe", 0),
    ] {
        let stats = fixture
            .store
            .stats(&StatsQuery {
                since: Some(NOW - DAY),
                until: Some(NOW + DAY),
                bucket: Bucket::Day,
                source: Some(source.into()),
                ..StatsQuery::default()
            })
            .await
            .unwrap();
        let counted = stats.requests.success
            + stats.requests.pending
            + stats.requests.failed
            + stats.requests.unknown;
        assert_eq!(counted, requests, "stats for source {source:?}");
        let query = EventQuery {
            source: Some(source.into()),
            ..EventQuery::default()
        };
        assert_eq!(
            fixture.all(query).await.len(),
            requests as usize,
            "{source:?}"
        );
    }
}

#[tokio::test]
async fn an_index_of_an_earlier_token_format_is_rebuilt() {
    let mut fixture = Fixture::filled().await;
    let prod = EventQuery {
        channel: Some("prod".into()),
        ..EventQuery::default()
    };
    let want = fixture.all(prod.clone()).await;
    assert_eq!(want.len(), 134);
    let path = fixture._dir.path().join("q.db");
    let mut index = path.clone().into_os_string();
    index.push(".search");
    // An index that says it is complete, of the tokens of an earlier version (here: none): one
    // made before the format was recorded, and one of format 2 (final sigma not folded in
    // source-result pairs).
    for earlier in [
        "DELETE FROM meta WHERE key = 'token_format';",
        "UPDATE meta SET value = 2 WHERE key = 'token_format';",
    ] {
        fixture.store.close().await;
        let conn = rusqlite::Connection::open(&index).unwrap();
        conn.execute_batch("INSERT INTO events_index (events_index) VALUES ('delete-all');")
            .unwrap();
        conn.execute_batch(earlier).unwrap();
        drop(conn);
        fixture.store =
            SqliteStore::open(SqliteSettings::new(&path), Arc::new(Metrics::new())).unwrap();
        assert_eq!(fixture.all(prod.clone()).await, want, "{earlier}");
    }
}

/// Every search right after a store answered finds the event: many stores and searches
/// interleaved, with no pause between them.
#[tokio::test]
async fn an_event_is_found_by_a_search_made_right_after_it_was_stored() {
    let mut fixture = Fixture::new().await;
    let mut generator = Generator::new(&SynthOptions {
        seed: 11,
        failure_rate: 0.3,
        identities: 20,
    });
    for n in 0..200 {
        let outcome = fixture.put(generator.next_json(), NOW + n, None).await;
        let IngestOutcome::Accepted { id } = outcome else {
            panic!("not accepted: {outcome:?}");
        };
        let (_, event, _) = fixture.events.last().unwrap().clone();
        let page = fixture
            .store
            .search_events(
                &EventQuery {
                    tracking_number: Some(event.tracking_number.to_string()),
                    ..EventQuery::default()
                },
                false,
            )
            .await
            .unwrap();
        let found: Vec<i64> = page.items.iter().map(|e| e.id).collect();
        assert_eq!(found, vec![id], "event {n}");
    }
}

/// Documents the indexer has no room for are not lost: it reads those events back from the
/// database. With room for one document, nearly every commit's documents overflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_the_indexer_has_no_room_for_are_rebuilt_from_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = SqliteSettings::new(dir.path().join("q.db"));
    settings.index_queue_capacity = 1;
    let store = Arc::new(SqliteStore::open(settings, Arc::new(Metrics::new())).unwrap());
    let ingestor = Arc::new(Ingestor::new(1 << 20));
    let mut generator = Generator::new(&SynthOptions {
        seed: 5,
        failure_rate: 0.25,
        identities: 30,
    });
    // Concurrent stores, so that commits hold several events and the queue overflows.
    let mut events = Vec::new();
    for _ in 0..10 {
        let mut puts = tokio::task::JoinSet::new();
        for n in 0..30 {
            let raw = generator.next_json();
            let (store, ingestor) = (store.clone(), ingestor.clone());
            puts.spawn(async move {
                let receipt = Receipt {
                    received_at: NOW + n,
                    remote_addr: None,
                    channel: Some("bulk".into()),
                    method: "POST".into(),
                    path: "/events/bulk".into(),
                    size: raw.len() as u64,
                    user_agent: None,
                };
                let incoming = ingestor.prepare(Bytes::from(raw.clone()), receipt);
                (store.ingest(incoming).await.unwrap(), raw, NOW + n)
            });
        }
        while let Some(put) = puts.join_next().await {
            let (outcome, raw, at) = put.unwrap();
            let IngestOutcome::Accepted { id } = outcome else {
                panic!("not accepted: {outcome:?}");
            };
            let event = ProvisioningCompleted::from_slice(&raw)
                .unwrap()
                .into_owned();
            events.push((id, event, at));
        }
    }
    let Ok(store) = Arc::try_unwrap(store) else {
        panic!("the store is still shared");
    };
    let fixture = Fixture {
        _dir: dir,
        store,
        ingestor: Ingestor::new(1 << 20),
        events,
    };
    let everything = fixture.expected(|_, _| true);
    assert_eq!(everything.len(), 300);
    let bulk = EventQuery {
        channel: Some("bulk".into()),
        ..EventQuery::default()
    };
    assert_eq!(fixture.all(bulk).await, everything);
    let failed = fixture.expected(|event, _| event.failed_account_requests().next().is_some());
    assert!(!failed.is_empty());
    let found = fixture
        .all(EventQuery {
            result: Some("FAILED".into()),
            ..EventQuery::default()
        })
        .await;
    assert_eq!(found, failed);
}

/// Every event of a time range is found, and no other, whatever order the receipts came in:
/// close together but out of order (within the slack the lists rely on), restored from far in
/// the past, or from the future (a clock that ran ahead), with live ones after them. Checked for
/// the event list and the delivery log against the times counted one by one.
#[tokio::test]
async fn a_time_range_finds_every_event_received_in_it_whatever_the_order_of_receipts() {
    const MINUTE: i64 = 60_000;
    let mut generator = Generator::new(&SynthOptions {
        seed: 7,
        failure_rate: 0.1,
        identities: 10,
    });
    // A small deterministic generator, so that a failure can be replayed.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |below: i64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as i64).rem_euclid(below)
    };
    // The writer checks the order of receipts as they come, against the clock for the newest:
    // the live receipts after one from the future must be recent, as they would be.
    let now = chrono::Utc::now().timestamp_millis();
    for order in ["close", "restored from the past", "from the future"] {
        let mut fixture = Fixture::new().await;
        let (mut at, step, count) = match order {
            "from the future" => (now - 10 * MINUTE, 20_000, 60),
            // Sparse: the rows nearest a range's start may be many minutes into it.
            _ => (NOW, 30 * MINUTE, 240),
        };
        for n in 0..count {
            at += next(step);
            let received = match order {
                // Up to 14 minutes early: inside the slack, the store is not marked mixed.
                "close" => at - next(14 * MINUTE),
                "restored from the past" if n % 60 == 30 => at - 3 * DAY + next(DAY),
                "from the future" if n == 20 || n == 21 => now + 20 * DAY + n * MINUTE,
                _ => at,
            };
            fixture.put(generator.next_json(), received, None).await;
        }
        let times: Vec<(i64, i64)> = fixture
            .events
            .iter()
            .map(|(id, _, at)| (*id, *at))
            .collect();
        let lowest = times.iter().map(|(_, at)| *at).min().unwrap();
        let highest = times.iter().map(|(_, at)| *at).max().unwrap();
        let span = highest - lowest + 2 * MINUTE;
        for check in 0..60 {
            let since = (check % 3 != 0).then(|| lowest - MINUTE + next(span));
            let until = (check % 3 != 1).then(|| lowest - MINUTE + next(span));
            let mut expected: Vec<i64> = times
                .iter()
                .filter(|(_, at)| since.is_none_or(|s| *at >= s) && until.is_none_or(|u| *at < u))
                .map(|(id, _)| *id)
                .collect();
            expected.sort_unstable_by(|a, b| b.cmp(a));
            let found = fixture
                .all(EventQuery {
                    since,
                    until,
                    ..EventQuery::default()
                })
                .await;
            assert_eq!(found, expected, "{order}: events of {since:?}..{until:?}");
            let mut logged = Vec::new();
            let mut query = DeliveryQuery {
                since,
                until,
                limit: 50,
                ..DeliveryQuery::default()
            };
            loop {
                let page = fixture.store.deliveries(&query).await.unwrap();
                logged.extend(page.items.iter().map(|record| record.event_id.unwrap()));
                match page.next_cursor {
                    Some(cursor) => query.before_id = Some(cursor),
                    None => break,
                }
            }
            assert_eq!(
                logged, expected,
                "{order}: delivery log of {since:?}..{until:?}"
            );
        }
    }
}
