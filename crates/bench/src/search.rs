//! `provtrail-bench search --events N`: builds a store of N realistic synthetic events (many
//! identities, every source, a few percent failures, spread over 90 days) through the same ingest
//! path as the server, then measures the searches operations people run every day, and the store's
//! size per event against the raw JSON it holds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use provtrail::ingest::Ingestor;
use provtrail::metrics::Metrics;
use provtrail::store::sqlite::{SqliteSettings, SqliteStore};
use provtrail::store::{Bucket, EventQuery, Receipt, StatsQuery, Store};
use provtrail::synth::{Generator, SynthOptions};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tokio::task::JoinSet;

use crate::measure::emit;

const DAY: i64 = 86_400_000;

/// Arguments of `provtrail-bench search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Events in the store.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Keep the store here (reused when it already holds enough events); default: a temporary
    /// directory.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Repetitions of each query.
    #[arg(long, default_value_t = 200)]
    repeat: usize,
}

/// What is remembered while building, to ask for real values later.
struct Sample {
    tracking_numbers: Vec<String>,
    invocation_ids: Vec<String>,
    raw_bytes: u64,
    events: u64,
}

pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: SearchArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let path = args
        .db
        .clone()
        .unwrap_or_else(|| temp.path().join("search.db"));
    let store = Arc::new(SqliteStore::open(
        SqliteSettings::new(&path),
        Arc::new(Metrics::new()),
    )?);
    let now = chrono::Utc::now().timestamp_millis();
    let have = store.counts().await?.events;
    let sample = if have >= args.events {
        eprintln!("reusing {} with {have} events", path.display());
        sample_existing(&store, have).await?
    } else {
        anyhow::ensure!(
            have == 0,
            "{} holds {have} events, fewer than asked; remove it or ask for fewer",
            path.display()
        );
        build(&store, args.events, now).await?
    };
    let end = store
        .search_events(
            &EventQuery {
                limit: 1,
                ..EventQuery::default()
            },
            false,
        )
        .await?
        .items
        .first()
        .map_or(now, |event| event.received_at + 1);

    let mut rng = StdRng::seed_from_u64(7);
    let repeat = args.repeat.max(1);
    let sources = [
        "Corporate Active Directory",
        "Corp LDAP",
        "Workday",
        "Okta",
        "Corp Salesforce",
        "Google Workspace",
        "GitHub Enterprise",
        "SAP ERP",
    ];
    let words = [
        "timed",
        "insufficient",
        "locked",
        "duplicate",
        "constraint",
        "wilson",
        "engineer",
    ];

    let tracking = exact_lookups(&store, repeat, &sample.tracking_numbers, |number| {
        EventQuery {
            tracking_number: Some(number),
            ..EventQuery::default()
        }
    })
    .await?;
    emit(figure("search.by_tracking_number", &tracking));
    let invocation = exact_lookups(&store, repeat, &sample.invocation_ids, |id| EventQuery {
        invocation_id: Some(id),
        ..EventQuery::default()
    })
    .await?;
    emit(figure("search.by_invocation_id", &invocation));

    let picks: Vec<usize> = (0..repeat)
        .map(|_| rng.random_range(0..sources.len()))
        .collect();
    let source_result = time_queries(repeat, |i| {
        let store = store.clone();
        let source = sources[picks[i]].to_owned();
        async move {
            store
                .search_events(
                    &EventQuery {
                        source: Some(source),
                        result: Some("FAILED".into()),
                        since: Some(end - 30 * DAY),
                        limit: 50,
                        ..EventQuery::default()
                    },
                    false,
                )
                .await?;
            Ok(())
        }
    })
    .await?;
    emit(figure("search.source_result_30d", &source_result));

    let full_text = time_queries(repeat, |i| {
        let store = store.clone();
        let word = words[i % words.len()].to_owned();
        async move {
            store
                .search_events(
                    &EventQuery {
                        q: Some(word),
                        limit: 50,
                        ..EventQuery::default()
                    },
                    false,
                )
                .await?;
            Ok(())
        }
    })
    .await?;
    emit(figure("search.full_text", &full_text));

    let stats = time_queries(repeat.min(50), |_| {
        let store = store.clone();
        async move {
            store
                .stats(&StatsQuery {
                    since: Some(end - 30 * DAY),
                    until: Some(end),
                    bucket: Bucket::Day,
                    top_errors: 10,
                    per_source_series: true,
                    ..StatsQuery::default()
                })
                .await?;
            Ok(())
        }
    })
    .await?;
    emit(figure("search.stats_30d", &stats));

    store.close().await;
    let mut store_bytes = 0;
    for suffix in ["", "-wal"] {
        let mut name = path.clone().into_os_string();
        name.push(suffix);
        store_bytes += std::fs::metadata(&name).map(|m| m.len()).unwrap_or(0);
    }
    let events = sample.events.max(1) as f64;
    emit(json!({
        "bench": "search.store_size",
        "events": sample.events,
        "store_bytes_per_event": (store_bytes as f64 / events).round(),
        "raw_bytes_per_event": (sample.raw_bytes as f64 / events).round(),
        "ratio": (store_bytes as f64 / sample.raw_bytes.max(1) as f64 * 1000.0).round() / 1000.0,
    }));
    Ok(())
}

async fn build(store: &Arc<SqliteStore>, count: u64, now: i64) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let ingestor = Arc::new(Ingestor::new(1 << 20));
    let mut generator = Generator::new(&SynthOptions {
        seed: 2026,
        failure_rate: 0.03,
        identities: 50_000,
    });
    let span = 90 * DAY;
    let mut sample = Sample {
        tracking_numbers: Vec::new(),
        invocation_ids: Vec::new(),
        raw_bytes: 0,
        events: count,
    };
    let mut tasks = JoinSet::new();
    for n in 0..count {
        let event = generator.next_event();
        let raw = Bytes::from(event.to_json());
        sample.raw_bytes += raw.len() as u64;
        if n % 997 == 0 {
            sample
                .tracking_numbers
                .push(event.tracking_number.to_string());
            if let Some(id) = event.invocation_id() {
                sample.invocation_ids.push(id.to_owned());
            }
        }
        let received_at = now - span + (n as i64 * span) / count as i64;
        let receipt = Receipt {
            received_at,
            remote_addr: Some("203.0.113.10:443".into()),
            channel: None,
            method: "POST".into(),
            path: "/events".into(),
            size: raw.len() as u64,
            user_agent: None,
        };
        let incoming = ingestor.prepare(raw, receipt);
        let store = store.clone();
        tasks.spawn(async move { store.ingest(incoming).await });
        // Keep a few hundred in flight so that group commits fill up, and times stay in order.
        while tasks.len() >= 512 {
            if let Some(done) = tasks.join_next().await {
                done??;
            }
        }
        if n > 0 && n % 100_000 == 0 {
            eprintln!(
                "built {n} events in {:.0}s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    eprintln!(
        "built a store of {count} events in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(sample)
}

/// Samples values from a store built earlier.
async fn sample_existing(store: &Arc<SqliteStore>, events: u64) -> anyhow::Result<Sample> {
    let mut sample = Sample {
        tracking_numbers: Vec::new(),
        invocation_ids: Vec::new(),
        raw_bytes: 0,
        events,
    };
    let mut after = 0;
    loop {
        let page = store
            .export_events(&Default::default(), after, 5_000)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for (n, event) in page.iter().enumerate() {
            sample.raw_bytes += event.raw.len() as u64;
            if n % 997 == 0 {
                sample.tracking_numbers.push(event.tracking_number.clone());
                if let Some(id) = &event.invocation_id {
                    sample.invocation_ids.push(id.clone());
                }
            }
        }
    }
    anyhow::ensure!(!sample.tracking_numbers.is_empty(), "the store is empty");
    Ok(sample)
}

/// Times lookups of single events by an exact key, checking that each finds its event.
async fn exact_lookups(
    store: &Arc<SqliteStore>,
    repeat: usize,
    values: &[String],
    query: fn(String) -> EventQuery,
) -> anyhow::Result<Vec<Duration>> {
    time_queries(repeat, |i| {
        let mut query = query(values[i % values.len()].clone());
        query.limit = 50;
        let store = store.clone();
        async move {
            let page = store.search_events(&query, false).await?;
            anyhow::ensure!(
                page.items.len() == 1,
                "an exact key must find its one event"
            );
            Ok(())
        }
    })
    .await
}

async fn time_queries<F, Fut>(count: usize, mut query: F) -> anyhow::Result<Vec<Duration>>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    // One untimed round so that the first query does not pay for opening connections.
    query(0).await.context("warm-up query")?;
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        query(i).await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times)
}

fn figure(bench: &str, times: &[Duration]) -> serde_json::Value {
    let quantile = |q: f64| {
        let index = ((times.len().saturating_sub(1)) as f64 * q).round() as usize;
        times.get(index).map_or(0.0, |t| {
            (t.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
        })
    };
    json!({
        "bench": bench,
        "p50_ms": quantile(0.5),
        "p99_ms": quantile(0.99),
        "queries": times.len(),
    })
}
