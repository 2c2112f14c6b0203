//! `provtrail-bench ui`: how long each web UI page takes to load over HTTP from a large store.
//!
//! Builds (or reuses) a store of `--events` synthetic events received over the last `--days`,
//! written straight through the store boundary (the HTTP path would stamp every event with the
//! current time, and this is about reading, not ingest), then starts the real server on it and
//! requests each page `--requests` times on one keep-alive connection, reading the whole body.
//!
//! Prints one line per page: `{"bench":"ui.<page>","p50_ms":…,"p99_ms":…,…}`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use provtrail::app::{App, Settings};
use provtrail::config::FileConfig;
use provtrail::ingest::Ingestor;
use provtrail::metrics::Metrics;
use provtrail::store::sqlite::{SqliteSettings, SqliteStore};
use provtrail::store::{EventQuery, Receipt, Store};
use provtrail::synth::{Generator, SynthOptions};
use serde_json::json;
use tokio::net::TcpStream;

use crate::measure::emit;

/// Arguments of `provtrail-bench ui`.
#[derive(Debug, clap::Args)]
pub struct UiArgs {
    /// Events in the store.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Over how many days (up to now) they were received.
    #[arg(long, default_value_t = 30)]
    days: u64,
    /// The store to use: reused when it already holds `--events` events, else filled up to that.
    /// Default: a temporary file, removed afterwards.
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Timed requests per page (after three to warm up).
    #[arg(long, default_value_t = 50)]
    requests: usize,
}

const READ_TOKEN: &str = "bench-read-token";
const INGEST_TOKEN: &str = "bench-ingest-token";

/// Ingests in flight at once while filling: enough for large group commits.
const FILL_CONCURRENCY: usize = 512;

pub fn run(args: UiArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: UiArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| temp.path().join("ui-bench.db"));
    fill(&db, args.events, args.days).await?;

    let mut config = FileConfig::default();
    config.server.listen = Some("127.0.0.1:0".into());
    config.store.path = Some(db.clone());
    config.ingest.tokens = vec![INGEST_TOKEN.into()];
    config.read.tokens = vec![READ_TOKEN.into()];
    let settings = Settings::from_config(&config)?;
    let app = App::start(&settings).await?;
    let addr = app.server.local_addr();
    let counts = app.store.counts().await?;
    let newest = app
        .store
        .search_events(
            &EventQuery {
                limit: 1,
                ..EventQuery::default()
            },
            false,
        )
        .await?;
    let newest = newest.items.first().context("the store is empty")?;
    let (newest_id, newest_at) = (newest.id, newest.received_at);

    let failed = "$[?($.accountRequests[?(@.provisioningResult == 'FAILED')])]";
    let rare = "$[?($.recipient.name == 'Nobody At All')]";
    let pages: Vec<(&str, String)> = vec![
        ("events", "/".into()),
        (
            "events_failed_source",
            "/?result=FAILED&source=Workday".into(),
        ),
        ("events_text", "/?q=timed".into()),
        ("events_24h", "/?range=24h".into()),
        ("events_page_100", format!("/?before={}", newest_id - 5_000)),
        (
            "events_live_poll",
            format!("/ui/fragments/events?after={newest_id}&at={newest_at}"),
        ),
        ("event", String::new()),
        ("failures_default_7d_day", "/failures".into()),
        ("failures_7d_hour", "/failures?range=7d&bucket=hour".into()),
        ("failures_30d_day", "/failures?range=30d&bucket=day".into()),
        (
            "failures_90d_hour",
            "/failures?range=90d&bucket=hour".into(),
        ),
        (
            "playground_failed",
            format!("/playground?filter={}", encode(failed)),
        ),
        (
            "playground_rare",
            format!("/ui/fragments/playground?filter={}", encode(rare)),
        ),
        (
            "playground_error",
            format!("/ui/fragments/playground?filter={}", encode("$[?($.a ==")),
        ),
        ("deliveries", "/deliveries".into()),
        ("deliveries_rejected", "/deliveries?outcome=rejected".into()),
        ("quarantine", "/quarantine".into()),
    ];
    let mut sender = connect(addr).await?;
    for (name, path) in pages {
        let mut times = Vec::with_capacity(args.requests);
        let mut bytes = 0;
        for n in 0..args.requests + 3 {
            // A different event each time, so that no page is served from a warm row alone.
            let path = if name == "event" {
                format!("/event/{}", 1 + (n as i64 * 7919) % newest_id)
            } else {
                path.clone()
            };
            let started = Instant::now();
            let (status, size) = get(&mut sender, addr, &path).await?;
            let elapsed = started.elapsed();
            anyhow::ensure!(status == 200, "{path} answered {status}");
            bytes = size;
            if n >= 3 {
                times.push(elapsed);
            }
        }
        times.sort();
        emit(json!({
            "bench": format!("ui.{name}"),
            "p50_ms": millis(quantile(&times, 0.50)),
            "p99_ms": millis(quantile(&times, 0.99)),
            "max_ms": millis(times.last().copied().unwrap_or_default()),
            "requests": times.len(),
            "bytes": bytes,
            "store_events": counts.events,
        }));
    }
    drop(sender);
    app.shutdown().await;
    Ok(())
}

fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e5).round() / 100.0
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Fills the store at `db` up to `target` events, received evenly over the last `days` days.
async fn fill(db: &Path, target: u64, days: u64) -> anyhow::Result<()> {
    let settings = SqliteSettings::new(db);
    let store =
        tokio::task::spawn_blocking(move || SqliteStore::open(settings, Arc::new(Metrics::new())))
            .await??;
    let store = Arc::new(store);
    let have = store.counts().await?.events;
    if have >= target {
        eprintln!("reusing {} ({have} events)", db.display());
        store.close().await;
        return Ok(());
    }
    eprintln!("filling {} from {have} to {target} events…", db.display());
    let ingestor = Arc::new(Ingestor::new(1024 * 1024));
    let mut generator = Generator::new(&SynthOptions {
        seed: have + 1,
        failure_rate: 0.05,
        ..SynthOptions::default()
    });
    let span = i64::try_from(days.max(1) * 86_400_000)?;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let started = Instant::now();
    let mut n = have;
    while n < target {
        let batch = (target - n).min(FILL_CONCURRENCY as u64);
        let mut tasks = tokio::task::JoinSet::new();
        for i in n..n + batch {
            let raw = Bytes::from(generator.next_json());
            let receipt = Receipt {
                received_at: now - span + span * i as i64 / target as i64,
                remote_addr: Some("127.0.0.1:40000".to_owned()),
                channel: Some("bench".to_owned()),
                method: "POST".to_owned(),
                path: "/events/bench".to_owned(),
                size: raw.len() as u64,
                user_agent: Some("provtrail-bench".to_owned()),
            };
            let incoming = ingestor.prepare(raw, receipt);
            let store = store.clone();
            tasks.spawn(async move { store.ingest(incoming).await });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        n += batch;
        if n % 50_000 < batch {
            eprintln!(
                "  {n} events ({:.0}/s)",
                (n - have) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    store.close().await;
    Ok(())
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn get(sender: &mut Sender, addr: SocketAddr, path: &str) -> anyhow::Result<(u16, usize)> {
    sender.ready().await?;
    let request = Request::get(path)
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {READ_TOKEN}"))
        .body(Empty::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body.len()))
}
