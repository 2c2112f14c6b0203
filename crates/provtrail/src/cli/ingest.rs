//! `provtrail ingest`: import events from a JSON or JSON-lines file straight into the store, through
//! the same validation and deduplication as the HTTP receiver.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use provtrail::ingest::Ingestor;
use provtrail::metrics::Metrics;
use provtrail::store::sqlite::{SqliteSettings, SqliteStore};
use provtrail::store::{Content, IngestOutcome, Receipt, SharedStore, StoreError};
use serde_json::json;

use super::OutputFormat;

/// Documents committed concurrently, so that group commits batch them.
const IN_FLIGHT: usize = 256;

/// Arguments of `provtrail ingest`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when every document was stored or recognised as a duplicate, \
1 when any was quarantined or could not be stored, 2 when the input cannot be read or holds no \
document (or is a CSV export), 130 when interrupted (what was read is committed and reported)."
)]
pub struct IngestArgs {
    /// The events: a JSON file with one event, or JSON lines (`-` for standard input). A
    /// `.jsonl` or `.ndjson` file, or an input that is one JSON document per line, is read as
    /// JSON lines without --jsonl. Lines of `provtrail export` are restored with the receipt
    /// they were first received with.
    #[arg(value_name = "FILE|-")]
    file: PathBuf,
    #[command(flatten)]
    database: super::database::DatabaseArgs,
    /// One event per line, whatever the file is called.
    #[arg(long)]
    jsonl: bool,
    /// Label the events with this channel.
    #[arg(long)]
    channel: Option<String>,
    /// Largest event accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_bytes: usize,
    /// Stop storing events once the database file reaches this size, as `serve` does
    /// [default: the configuration file's store.max_size, else no limit].
    #[arg(long, env = "PROVTRAIL_MAX_DB_SIZE", value_name = "SIZE")]
    max_db_size: Option<String>,
    /// Summary for people (`text`) or as one JSON object (`json`).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

/// Documents not kept as events that the report lists one by one; the counts cover the rest.
const LISTED_PROBLEMS: usize = 100;

#[derive(Debug, Default)]
struct Tally {
    /// Lines of `provtrail export` read back with their receipts (counted in the outcomes too).
    restored: u64,
    /// The first line the store could not take now, and why: reading stops there.
    stopped: Option<(u64, String)>,
    /// Documents after that line, read ahead of the store's answer, that were not stored (the
    /// others were: the store took some after refusing one, once its group was split).
    not_stored_since_stop: u64,
    /// Documents answered from that line on, stored or not.
    answered_since_stop: u64,
    accepted: u64,
    duplicate: u64,
    quarantined: u64,
    failed: u64,
    /// The first [`LISTED_PROBLEMS`] documents, by line, quarantined or not stored.
    problems: Vec<Problem>,
}

/// A document that was quarantined or could not be stored.
#[derive(Debug)]
struct Problem {
    /// The line the document starts on.
    line: u64,
    /// `quarantined` or `failed`.
    outcome: &'static str,
    /// The quarantine entry, when one was kept.
    quarantine_id: Option<i64>,
    /// Every problem found, each with its path, or why the store failed.
    errors: Vec<String>,
    /// Its place among the documents answered (0 for the first).
    ordinal: u64,
}

/// What one document's import came to.
struct Imported {
    line: u64,
    /// For a document headed for quarantine, its validation problems.
    invalid: Vec<String>,
    /// What the store made of it, or why it was not stored.
    result: Result<IngestOutcome, String>,
    /// The store could not take it now (full, at its size limit, locked): neither can it take
    /// the documents after it.
    store_unavailable: bool,
}

pub async fn run(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let db = args.database.path()?;
    let max_size = match args.max_db_size.clone().map_or_else(
        || args.database.configured_max_size(),
        |size| Ok(Some(size)),
    )? {
        Some(text) => Some(provtrail::app::store_max_size(&text).map_err(|err| {
            // The message names the file's setting; a value from the command line or the
            // environment is said to come from there.
            let source = if args.max_db_size.is_none() {
                None
            } else if super::typed("max-db-size") {
                Some("the command line's --max-db-size".to_owned())
            } else {
                super::from_environment("max-db-size", "PROVTRAIL_MAX_DB_SIZE".into())
                    .map(|variable| format!("the environment's {variable}"))
            };
            match source {
                Some(source) => anyhow::anyhow!("{err} (that value comes from {source})"),
                None => err.into(),
            }
        })?),
        None => None,
    };
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
    let mut reader = super::open_input(&args.file)?;
    // A CSV export is refused before a store is made for it. Its start is read whole, however
    // slowly a pipe gives it, then handed on with the rest.
    use std::io::Read as _;
    let mut start = Vec::new();
    (&mut reader)
        .take((BYTE_ORDER_MARK.len() + CSV_EXPORT_HEADER.len()) as u64)
        .read_to_end(&mut start)
        .context("cannot read the input")?;
    if is_csv_export(&start) {
        anyhow::bail!("{CSV_REFUSAL}");
    }
    let reader: Box<dyn std::io::BufRead + Send> =
        Box::new(std::io::Cursor::new(start).chain(reader));
    let ingestor = Arc::new(Ingestor::new(args.max_bytes));
    // The file is the receipt's path: kept as a server keeps a request's path (no control
    // characters, at most so long), so that an export of these events can be restored.
    let source: String = super::terminal_line(&args.file.display().to_string())
        .chars()
        .take(MAX_PATH_CHARS)
        .collect();
    let (lines, read) = tokio::sync::mpsc::channel::<(u64, Bytes)>(IN_FLIGHT);
    // Ctrl-C stops the reading; what was read is committed and reported, as `send` does.
    let (mut documents, interrupted) = super::stop_on_ctrl_c(read);
    let jsonl = args.jsonl || super::is_json_lines_path(&args.file);
    let reading = tokio::task::spawn_blocking(move || {
        super::read_documents(reader, jsonl, |line, document| {
            lines.blocking_send((line, document)).is_ok()
        })
    });
    // The store is made once the input has given a document: an input of blank lines (or one
    // that cannot be read) leaves no database behind.
    let Some(first) = documents.recv().await else {
        // Interrupted before a document was handed on: the reader may be waiting for more of
        // standard input (an input that is not JSON lines is read to its end before it is
        // split), and is not waited for.
        if interrupted.is_set() {
            super::tell(
                "interrupted before the input gave a whole document: nothing was imported (an \
                 input read as JSON lines, with --jsonl or a .jsonl name, is imported line by \
                 line as it comes)",
            );
            return Ok(ExitCode::from(130));
        }
        reading.await.context("the reader stopped unexpectedly")??;
        anyhow::bail!("{}", super::NO_DOCUMENTS);
    };
    let mut first = Some(first);
    let metrics = Arc::new(Metrics::new());
    let mut settings = SqliteSettings::new(&db);
    settings.max_size_bytes = max_size;
    let store: SharedStore =
        Arc::new(tokio::task::spawn_blocking(move || SqliteStore::open(settings, metrics)).await??);
    let progress = super::progress_bar(None, "importing");
    let mut tally = Tally::default();
    // Documents go to the store in input order, so that their ids follow the file; many are
    // in flight at once, so that group commits batch them. Each is handed to the store's writer
    // by its first poll, made here in turn; the answers come back in the same order.
    let mut in_flight: VecDeque<Pending> = VecDeque::with_capacity(IN_FLIGHT);
    let mut last_line = 0;
    let mut input_ended = false;
    loop {
        while in_flight.len() >= IN_FLIGHT {
            if let Some(pending) = in_flight.pop_front() {
                collect(pending.finish().await, &mut tally);
                progress.inc(1);
            }
        }
        // A store that takes nothing now (at its size limit, a full disk) would fail every
        // document after: the rest of the input is left unread, to import again later.
        if tally.stopped.is_some() {
            break;
        }
        let next = match first.take() {
            Some(document) => Some(document),
            None => documents.recv().await,
        };
        let Some((line, raw)) = next else {
            // Every document was read (unless an interruption ended them): a Ctrl-C from here
            // on finds nothing left unread, and the last commit finishes.
            interrupted.finish();
            input_ended = true;
            break;
        };
        last_line = line;
        let exported = exported_event(&raw);
        let restored_line = exported.is_some();
        let restored = match exported {
            None => {
                let receipt = Receipt {
                    received_at: chrono::Utc::now().timestamp_millis(),
                    remote_addr: None,
                    channel: args.channel.clone(),
                    method: "IMPORT".to_owned(),
                    path: source.clone(),
                    size: raw.len() as u64,
                    user_agent: None,
                };
                Ok((raw, receipt))
            }
            Some(exported) => exported
                .and_then(|exported| exported.restore(args.channel.as_deref()))
                .inspect(|_| tally.restored += 1),
        };
        let (raw, receipt) = match restored {
            Ok(restored) => restored,
            Err(problem) => {
                // Not stored at all: quarantining the export line would keep a copy of an event
                // under a wrapper nobody sent; the fix is to repair the line and import it again.
                in_flight.push_back(Pending {
                    line,
                    invalid: Vec::new(),
                    answer: Answer::Refused(problem),
                });
                continue;
            }
        };
        // As the server answers such a body 413 and keeps nothing of it, rather than keep it
        // whole in quarantine as a document that could not be read.
        if raw.len() > args.max_bytes {
            in_flight.push_back(Pending {
                line,
                invalid: Vec::new(),
                answer: Answer::Refused(format!(
                    "the document is {} bytes, more than --max-bytes {}: not imported",
                    raw.len(),
                    args.max_bytes
                )),
            });
            continue;
        }
        let mut incoming = ingestor.prepare(raw, receipt);
        incoming.restored = restored_line;
        let invalid = match &incoming.content {
            Content::Quarantine(quarantine) => quarantine
                .errors
                .iter()
                .map(|issue| format!("{}: {}", issue.path, issue.message))
                .collect(),
            Content::Event(_) => Vec::new(),
        };
        let store = store.clone();
        let mut waiting: Waiting = Box::pin(async move { store.ingest(incoming).await });
        // The first poll hands the document to the writer (and almost never has its answer).
        let first =
            std::future::poll_fn(|cx| std::task::Poll::Ready(waiting.as_mut().poll(cx))).await;
        in_flight.push_back(Pending {
            line,
            invalid,
            answer: match first {
                std::task::Poll::Ready(result) => Answer::Given(result),
                std::task::Poll::Pending => Answer::Waiting(waiting),
            },
        });
    }
    while let Some(pending) = in_flight.pop_front() {
        collect(pending.finish().await, &mut tally);
        progress.inc(1);
    }
    progress.finish_and_clear();
    store.close().await;
    // The reader stops at its next document, which has nowhere to go.
    drop(documents);
    let interrupted = interrupted.is_set();
    // Interrupted, the reader stops at its next document, which has nowhere to go; it may be
    // waiting for standard input, and is not waited for.
    let read = if interrupted {
        Ok(())
    } else {
        reading.await.context("the reader stopped unexpectedly")?
    };
    match args.format {
        OutputFormat::Json => say!(
            "{}",
            json!({
                "accepted": tally.accepted,
                "restored_from_export": tally.restored,
                "duplicate": tally.duplicate,
                "quarantined": tally.quarantined,
                "failed": tally.failed,
                "db": db.display().to_string(),
                "problems": tally.problems.iter().map(|problem| json!({
                    "line": problem.line,
                    "outcome": problem.outcome,
                    "quarantine_id": problem.quarantine_id,
                    "error": problem.errors.first(),
                    "errors": problem.errors,
                })).collect::<Vec<_>>(),
                "problems_listed": tally.problems.len() as u64 == tally.quarantined + tally.failed,
                "interrupted": interrupted,
                "stopped_at_line": tally.stopped.as_ref().map(|(line, _)| *line),
                "last_line": last_line,
            })
        )?,
        OutputFormat::Text => {
            say!(
                "imported into {}: {} accepted, {} duplicate, {} quarantined, {} failed",
                db.display(),
                tally.accepted,
                tally.duplicate,
                tally.quarantined,
                tally.failed
            )?;
            if tally.restored > 0 {
                say!(
                    "  {} documents were lines of `provtrail export`: those not stored before \
                     were kept with the body and the receipt (time, channel, sender) they were \
                     first received with",
                    tally.restored
                )?;
            }
            let mut problems = tally.problems.iter().peekable();
            while let Some(problem) = problems.next() {
                let first = problem
                    .errors
                    .first()
                    .map(String::as_str)
                    .unwrap_or_default();
                let more = match problem.errors.len() {
                    0 | 1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                };
                let error = super::terminal_line(first);
                match problem.quarantine_id {
                    Some(id) => say!(
                        "  line {}: {} (quarantine entry {id}): {error}{more}",
                        problem.line,
                        problem.outcome,
                    )?,
                    None => {
                        // Documents that failed one after the other for the same reason (a
                        // store at its size limit refuses every one) are one line of the list.
                        let mut last = problem.line;
                        let mut alike = 1;
                        while let Some(next) = problems.next_if(|next| {
                            next.quarantine_id.is_none()
                                && next.errors == problem.errors
                                && next.ordinal == problem.ordinal + alike
                        }) {
                            last = next.line;
                            alike += 1;
                        }
                        if alike == 1 {
                            say!(
                                "  line {}: {}: {error}{more}",
                                problem.line,
                                problem.outcome
                            )?;
                        } else {
                            say!(
                                "  lines {} to {last} ({alike} documents): {}: {error}{more}",
                                problem.line,
                                problem.outcome
                            )?;
                        }
                    }
                }
            }
            let unlisted = tally.quarantined + tally.failed - tally.problems.len() as u64;
            if unlisted > 0 {
                let listed_failed = tally
                    .problems
                    .iter()
                    .filter(|problem| problem.quarantine_id.is_none())
                    .count() as u64;
                let failed = tally.failed - listed_failed;
                let quarantined = unlisted - failed;
                let mut parts = Vec::new();
                if quarantined > 0 {
                    parts.push(format!(
                        "{quarantined} quarantined: `provtrail quarantine` lists them"
                    ));
                }
                if failed > 0 {
                    parts.push(format!("{failed} failed: not stored"));
                }
                say!("  … and {unlisted} more ({})", parts.join("; "))?;
            }
            if let Some((line, why)) = &tally.stopped {
                // Documents are read ahead of the store's answers: those already read when it
                // stopped were refused with it.
                let (not_stored, answered) =
                    (tally.not_stored_since_stop, tally.answered_since_stop);
                let of_lines = if last_line <= *line {
                    format!("line {line} was not stored")
                } else if not_stored == answered {
                    format!("lines {line} to {last_line} were not stored")
                } else {
                    // The store took some of the documents read ahead after refusing one.
                    format!(
                        "of the {answered} documents of lines {line} to {last_line}, {not_stored} \
                         {} not stored (the failed lines above) and {} {} in the store \
                         (accepted, duplicates or quarantined)",
                        if not_stored == 1 { "was" } else { "were" },
                        answered - not_stored,
                        if answered - not_stored == 1 {
                            "is"
                        } else {
                            "are"
                        },
                    )
                };
                let rest = if input_ended {
                    of_lines
                } else {
                    format!("{of_lines}, and the input after line {last_line} was not read")
                };
                say!(
                    "the store stopped taking documents at line {line} ({}): {rest}; import \
                     from line {line} again once the store takes documents (what is stored \
                     already is then answered as duplicate)",
                    super::terminal_line(why)
                )?;
            }
        }
    }
    if interrupted {
        super::tell(&format!(
            "interrupted: everything up to line {last_line} was imported as reported; the rest \
             of the input was not read (importing it again answers what is stored as duplicate)"
        ));
        return Ok(ExitCode::from(130));
    }
    read?;
    Ok(if tally.failed > 0 || tally.quarantined > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The store's answer to one document, to come.
type Waiting = std::pin::Pin<Box<dyn Future<Output = Result<IngestOutcome, StoreError>> + Send>>;

enum Answer {
    Waiting(Waiting),
    Given(Result<IngestOutcome, StoreError>),
    /// Not handed to the store: why.
    Refused(String),
}

/// A document handed to the store, and its answer.
struct Pending {
    line: u64,
    invalid: Vec<String>,
    answer: Answer,
}

impl Pending {
    async fn finish(self) -> Imported {
        let result = match self.answer {
            Answer::Waiting(waiting) => waiting.await,
            Answer::Given(result) => result,
            Answer::Refused(problem) => {
                return Imported {
                    line: self.line,
                    invalid: self.invalid,
                    result: Err(problem),
                    store_unavailable: false,
                };
            }
        };
        Imported {
            line: self.line,
            invalid: self.invalid,
            store_unavailable: matches!(
                result,
                Err(StoreError::Unavailable(_) | StoreError::Overloaded(_))
            ),
            result: result.map_err(|err| err.to_string()),
        }
    }
}

fn collect(imported: Imported, tally: &mut Tally) {
    let Imported {
        line,
        invalid,
        result,
        store_unavailable,
    } = imported;
    if store_unavailable && tally.stopped.is_none() {
        if let Err(why) = &result {
            tally.stopped = Some((line, why.clone()));
        }
    }
    if tally.stopped.is_some() {
        tally.answered_since_stop += 1;
    }
    let ordinal = tally.accepted + tally.duplicate + tally.quarantined + tally.failed;
    let problem = match result {
        Ok(IngestOutcome::Accepted { .. }) => {
            tally.accepted += 1;
            return;
        }
        Ok(IngestOutcome::Duplicate { .. }) => {
            tally.duplicate += 1;
            return;
        }
        Ok(IngestOutcome::Quarantined { id, duplicate }) => {
            tally.quarantined += 1;
            let mut errors = invalid;
            if errors.is_empty() {
                errors.push("not a valid event".to_owned());
            }
            if duplicate {
                errors[0].push_str(" (already in quarantine)");
            }
            Problem {
                line,
                outcome: "quarantined",
                quarantine_id: Some(id),
                errors,
                ordinal,
            }
        }
        Err(err) => {
            tally.failed += 1;
            if tally.stopped.is_some() {
                tally.not_stored_since_stop += 1;
            }
            Problem {
                line,
                outcome: "failed",
                quarantine_id: None,
                errors: vec![err],
                ordinal,
            }
        }
    };
    // Answers come in input order: the first problems are the earliest lines.
    if tally.problems.len() < LISTED_PROBLEMS {
        tally.problems.push(problem);
    }
}

/// Longest request path kept in a receipt, as the server keeps it.
const MAX_PATH_CHARS: usize = 300;

/// Longest `User-Agent` kept in a receipt, as the server keeps it.
const MAX_USER_AGENT_CHARS: usize = 200;

/// How a CSV export (`provtrail export --format csv`) begins.
const CSV_EXPORT_HEADER: &[u8] = b"id,received_at,tracking_number,";

/// What an editor or a spreadsheet may put before the first line of a file.
const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// Whether `start` begins a CSV export, also when saved again by a spreadsheet, which puts a
/// byte order mark first.
fn is_csv_export(start: &[u8]) -> bool {
    start
        .strip_prefix(BYTE_ORDER_MARK)
        .unwrap_or(start)
        .starts_with(CSV_EXPORT_HEADER)
}

/// Why a CSV export is not imported.
const CSV_REFUSAL: &str = "this is a CSV export, which holds no event bodies: restore from JSON \
                           lines (`provtrail export --format jsonl`)";

/// Longest method kept in a receipt.
const MAX_METHOD_CHARS: usize = 16;

/// A line of `provtrail export --format jsonl`: the body as first received and its receipt.
/// Read back by `ingest`, so that an export restores a store (or moves it to another machine)
/// with the times, channels and senders of the original deliveries, not the time of the import.
#[derive(Debug)]
struct ExportedEvent {
    received_at: String,
    raw: String,
    channel: Option<String>,
    remote_addr: Option<String>,
    method: Option<String>,
    path: Option<String>,
    user_agent: Option<String>,
}

/// The document read as a line of `provtrail export`, when it is one; an error names what is
/// wrong with a line that has an export's shape but cannot be restored. An export line has the
/// event under `event` and the body under `raw`, and an event has neither (it has a
/// `trackingNumber` or an `_metadata` envelope at the top instead).
fn exported_event(document: &[u8]) -> Option<Result<ExportedEvent, String>> {
    // A CSV export holds no bodies: kept in quarantine, it would be a copy of customer data
    // that restores nothing.
    if is_csv_export(document) {
        return Some(Err(CSV_REFUSAL.to_owned()));
    }
    let line = super::export_line(document)?;
    let problem = |field: &str, what: &str| {
        format!("a line of `provtrail export` whose `{field}` {what}: it cannot be restored")
    };
    let text = |field: &str, required: bool| -> Result<Option<String>, String> {
        match line.get(field) {
            Some(serde_json::Value::String(text)) => {
                // What a server records never holds control characters (HTTP does not carry
                // them): a line holding some was edited, and would show them in every list.
                if field != "raw" && text.chars().any(char::is_control) {
                    return Err(problem(field, "holds control characters"));
                }
                Ok(Some(text.clone()))
            }
            None | Some(serde_json::Value::Null) if !required => Ok(None),
            None | Some(serde_json::Value::Null) => Err(problem(field, "is missing")),
            Some(_) => Err(problem(field, "is not a string")),
        }
    };
    let exported = (|| {
        Ok(ExportedEvent {
            received_at: text("received_at", true)?.unwrap_or_default(),
            raw: text("raw", true)?.unwrap_or_default(),
            channel: text("channel", false)?,
            remote_addr: text("remote_addr", false)?,
            method: text("method", false)?,
            path: text("path", false)?,
            user_agent: text("user_agent", false)?,
        })
    })();
    Some(exported)
}

/// How far past now a restored receipt time may be: a week, for the clocks of the machines an
/// export moved between (one that ran days ahead is kept with its times, and shown alike).
const RESTORE_CLOCK_SLACK_MS: i64 = 7 * 24 * 3_600_000;

impl ExportedEvent {
    /// The body and its receipt as first received. `--channel` relabels restored events too.
    fn restore(self, channel: Option<&str>) -> Result<(Bytes, Receipt), String> {
        let received_at = provtrail::server::api::params::parse_time(self.received_at.trim())
            .ok()
            .filter(|_| chrono::DateTime::parse_from_rfc3339(self.received_at.trim()).is_ok())
            .ok_or_else(|| {
                format!(
                    "a line of `provtrail export` whose `received_at` ({:?}) is not an RFC 3339 \
                     time of the years 0000 to 9999: it cannot be restored",
                    super::terminal_line(&self.received_at)
                )
            })?;
        // An event cannot have been received after now; a clock ahead on the machine that
        // exported it is allowed for, up to a week. (A time far ahead would stay the store's newest
        // event for ever, first in every list, and in no statistics window.)
        let latest = chrono::Utc::now().timestamp_millis() + RESTORE_CLOCK_SLACK_MS;
        if received_at > latest {
            return Err(format!(
                "a line of `provtrail export` whose `received_at` ({}) is in the future: it \
                 cannot be restored",
                super::terminal_line(self.received_at.trim())
            ));
        }
        let channel = match channel {
            Some(channel) => Some(channel.to_owned()),
            None => self.channel,
        };
        if let Some(channel) = &channel {
            if !provtrail::ingest::is_channel_name(channel) {
                return Err(format!(
                    "a line of `provtrail export` whose `channel` ({:?}) is not a channel name \
                     (give --channel to file its events under another)",
                    super::terminal_line(channel)
                ));
            }
        }
        let raw = Bytes::from(self.raw.into_bytes());
        let receipt = Receipt {
            received_at,
            remote_addr: self
                .remote_addr
                .map(|address| address.chars().take(MAX_PATH_CHARS).collect()),
            channel,
            method: self.method.filter(|method| !method.is_empty()).map_or_else(
                || "IMPORT".to_owned(),
                |method| method.chars().take(MAX_METHOD_CHARS).collect(),
            ),
            path: self
                .path
                .map(|path| path.chars().take(MAX_PATH_CHARS).collect())
                .unwrap_or_default(),
            size: raw.len() as u64,
            user_agent: self
                .user_agent
                .map(|agent| agent.chars().take(MAX_USER_AGENT_CHARS).collect()),
        };
        Ok((raw, receipt))
    }
}
