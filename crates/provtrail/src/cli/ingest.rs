//! `provtrail ingest`: import events from a JSON or JSON-lines file straight into the store, through
//! the same validation and deduplication as the HTTP receiver.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use provtrail::ingest::Ingestor;
use provtrail::metrics::Metrics;
use provtrail::store::sqlite::{SqliteSettings, SqliteStore};
use provtrail::store::{IngestOutcome, Receipt, SharedStore};
use serde_json::json;
use tokio::task::JoinSet;

use super::OutputFormat;

/// Documents committed concurrently, so that group commits batch them.
const IN_FLIGHT: usize = 256;

/// Arguments of `provtrail ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// The events: a JSON file with one event, or JSON lines with --jsonl (`-` for standard input).
    #[arg(value_name = "FILE|-")]
    file: PathBuf,
    /// The database file.
    #[arg(long, env = "PROVTRAIL_DB", default_value = "provtrail.db")]
    db: PathBuf,
    /// One event per line.
    #[arg(long)]
    jsonl: bool,
    /// Label the events with this channel.
    #[arg(long)]
    channel: Option<String>,
    /// Largest event accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_bytes: usize,
    /// Summary for people (`text`) or as one JSON object (`json`).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

#[derive(Debug, Default)]
struct Tally {
    accepted: u64,
    duplicate: u64,
    quarantined: u64,
    failed: u64,
}

pub async fn run(args: IngestArgs) -> anyhow::Result<ExitCode> {
    // What can be checked without the store is checked first, so that a mistyped file name or
    // channel leaves no new database behind.
    if let Some(channel) = &args.channel {
        anyhow::ensure!(
            provtrail::ingest::is_channel_name(channel),
            "--channel {channel:?} is not a channel name: 1 to {} letters, digits, '-', '_' or '.' \
             (the names POST /events/{{channel}} takes)",
            provtrail::ingest::MAX_CHANNEL_LEN
        );
    }
    let reader = super::open_input(&args.file)?;
    let metrics = Arc::new(Metrics::new());
    let settings = SqliteSettings::new(&args.db);
    let store: SharedStore =
        Arc::new(tokio::task::spawn_blocking(move || SqliteStore::open(settings, metrics)).await??);
    let ingestor = Arc::new(Ingestor::new(args.max_bytes));
    let source = args.file.display().to_string();
    let (lines, mut documents) = tokio::sync::mpsc::channel::<Bytes>(IN_FLIGHT);
    let jsonl = args.jsonl;
    let reading = tokio::task::spawn_blocking(move || super::read_documents(reader, jsonl, lines));
    let progress = super::progress_bar(None, "importing");
    let mut tally = Tally::default();
    let mut tasks = JoinSet::new();
    let mut first_error: Option<String> = None;
    loop {
        while tasks.len() >= IN_FLIGHT {
            collect(tasks.join_next().await, &mut tally, &mut first_error);
            progress.inc(1);
        }
        let Some(raw) = documents.recv().await else {
            break;
        };
        let receipt = Receipt {
            received_at: chrono::Utc::now().timestamp_millis(),
            remote_addr: None,
            channel: args.channel.clone(),
            method: "IMPORT".to_owned(),
            path: source.clone(),
            size: raw.len() as u64,
            user_agent: None,
        };
        let store = store.clone();
        let ingestor = ingestor.clone();
        tasks.spawn(async move {
            let incoming = ingestor.prepare(raw, receipt);
            store.ingest(incoming).await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        collect(Some(joined), &mut tally, &mut first_error);
        progress.inc(1);
    }
    progress.finish_and_clear();
    store.close().await;
    let read = reading.await.context("the reader stopped unexpectedly")?;
    match args.format {
        OutputFormat::Json => say!(
            "{}",
            json!({
                "accepted": tally.accepted,
                "duplicate": tally.duplicate,
                "quarantined": tally.quarantined,
                "failed": tally.failed,
                "db": args.db.display().to_string(),
            })
        )?,
        OutputFormat::Text => {
            say!(
                "imported into {}: {} accepted, {} duplicate, {} quarantined, {} failed",
                args.db.display(),
                tally.accepted,
                tally.duplicate,
                tally.quarantined,
                tally.failed
            )?;
            if let Some(error) = &first_error {
                say!("  first failure: {error}")?;
            }
        }
    }
    read?;
    Ok(if tally.failed > 0 || tally.quarantined > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn collect(
    joined: Option<
        Result<Result<IngestOutcome, provtrail::store::StoreError>, tokio::task::JoinError>,
    >,
    tally: &mut Tally,
    first_error: &mut Option<String>,
) {
    match joined {
        Some(Ok(Ok(IngestOutcome::Accepted { .. }))) => tally.accepted += 1,
        Some(Ok(Ok(IngestOutcome::Duplicate { .. }))) => tally.duplicate += 1,
        Some(Ok(Ok(IngestOutcome::Quarantined { .. }))) => tally.quarantined += 1,
        Some(Ok(Err(err))) => {
            tally.failed += 1;
            first_error.get_or_insert_with(|| err.to_string());
        }
        Some(Err(err)) => {
            tally.failed += 1;
            first_error.get_or_insert_with(|| err.to_string());
        }
        None => {}
    }
}
