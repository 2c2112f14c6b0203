//! `provtrail export`: dump stored events with their receipt metadata, as JSON lines (raw body
//! included) or CSV.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use provtrail::metrics::Metrics;
use provtrail::store::sqlite::{EventFile, SqliteSettings, SqliteStore};
use provtrail::store::{
    ExportRange, ReadBackPage, SharedStore, StoreError, StoredEvent, read_back_page,
};
use provtrail_model::ProvisioningCompleted;
use serde_json::{Value, json};

use super::time::{format_time, parse_time};

/// Events read from the store at a time.
const PAGE: usize = 1_000;

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per event: receipt, parsed event and raw body.
    Jsonl,
    /// One row per event with the fields people filter on.
    Csv,
}

/// Arguments of `provtrail export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    database: super::database::DatabaseArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    format: ExportFormat,
    /// Only events received at or after this time (2026-11-01, 2026-11-01T10:00:00Z, or 24h / 7d ago).
    #[arg(long)]
    since: Option<String>,
    /// Only events received before this time.
    #[arg(long)]
    until: Option<String>,
    /// Write to this file instead of standard output (`-` is standard output).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub async fn run(mut args: ExportArgs) -> anyhow::Result<ExitCode> {
    let db = args.database.path()?;
    // `-o -` is standard output, as for `backfill`, not a file named `-`.
    if args.output.as_deref() == Some(std::path::Path::new("-")) {
        args.output = None;
    }
    anyhow::ensure!(
        db.exists(),
        "there is no database at {} (give --db)",
        db.display()
    );
    if let Some(output) = &args.output {
        anyhow::ensure!(
            !provtrail::store::is_store_file(output, &db),
            "{} is the database or one of its files: writing the export there would destroy the \
             store; give another output file",
            output.display()
        );
        // Another store (or a file kept beside one) is kept data too.
        if let Some(kept) = provtrail::store::kept_data_at(output) {
            anyhow::bail!("{kept}: writing the export there would destroy it");
        }
    }
    let range = ExportRange {
        since: args.since.as_deref().map(parse_time).transpose()?,
        until: args.until.as_deref().map(parse_time).transpose()?,
    };
    // An empty range is a mistake (the bounds swapped), not an export of nothing.
    if let (Some(since), Some(until)) = (range.since, range.until) {
        anyhow::ensure!(
            since < until,
            "--until must be later than --since (the range [since, until) is empty)"
        );
    }
    let source = Source::open(&db).await?;
    let shown = args.output.as_ref().map_or_else(
        || "standard output".to_owned(),
        |path| path.display().to_string(),
    );
    // Ctrl-C (or SIGTERM) stops the export: with `-o`, the file that was there stays as it was
    // and the part written is removed; the default action would leave that part behind.
    let mut signals = super::StopSignals::listen();
    let staged = match &args.output {
        Some(path) => Some(
            Staged::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => None,
    };
    let out: Box<dyn Write> = match &staged {
        Some(staged) => Box::new(std::io::BufWriter::new(
            staged
                .writer()
                .with_context(|| format!("cannot create {shown}"))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut output = match args.format {
        ExportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            writer
                .write_record(super::search::CSV_HEADER.iter().chain(&EXPORT_ONLY_COLUMNS))
                .with_context(|| format!("cannot write to {shown}"))?;
            Output::Csv(Box::new(writer))
        }
        ExportFormat::Jsonl => Output::Jsonl(out),
    };
    // No bar drawn among the lines on a terminal (standard output, or `-o /dev/tty`).
    let progress = match &staged {
        None => super::progress_bar_beside_output(None, "exporting"),
        Some(staged) if staged.is_terminal() => indicatif::ProgressBar::hidden(),
        Some(_) => super::progress_bar(None, "exporting"),
    };
    let direct = staged.as_ref().is_none_or(Staged::is_direct);
    let exporting = async {
        let mut after = 0;
        let mut exported = 0u64;
        let mut unreadable = Vec::new();
        loop {
            let page = source.page(&range, after).await?;
            let Some(last) = page.last_id else {
                break;
            };
            after = last;
            for (id, reason) in page.unreadable {
                progress.suspend(|| {
                    note!("event {id} skipped: its stored body cannot be read back ({reason})");
                });
                unreadable.push(id);
            }
            let page = page.events;
            for event in &page {
                match &mut output {
                    Output::Csv(writer) => writer
                        .write_record(csv_row(event))
                        .with_context(|| format!("cannot write to {shown}"))?,
                    Output::Jsonl(out) => {
                        serde_json::to_writer(&mut *out, &jsonl_line(event))
                            .map_err(std::io::Error::from)
                            .and_then(|()| out.write_all(b"\n"))
                            .with_context(|| format!("cannot write to {shown}"))?;
                    }
                }
            }
            exported += page.len() as u64;
            progress.set_position(exported);
        }
        match &mut output {
            Output::Csv(writer) => writer.flush(),
            Output::Jsonl(out) => out.flush(),
        }
        .with_context(|| format!("cannot write to {shown}"))?;
        anyhow::Ok((exported, unreadable))
    };
    let (exported, unreadable) = tokio::select! {
        exported = exporting => exported?,
        () = signals.next() => {
            progress.finish_and_clear();
            drop(staged);
            match &args.output {
                Some(path) if !direct => note!(
                    "interrupted: nothing was written to {} (it is as it was)",
                    path.display()
                ),
                _ => note!("interrupted: the export stopped part way"),
            }
            return Ok(ExitCode::from(130));
        }
    };
    drop(output);
    if let Some(staged) = staged {
        staged
            .finish()
            .with_context(|| format!("cannot write to {shown}"))?;
    }
    progress.finish_and_clear();
    source.close().await;
    note!("exported {exported} events");
    if unreadable.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // Everything else is exported: what a damaged store still holds is saved, and the exit
    // status says that it is not all.
    let shown: Vec<String> = unreadable.iter().take(20).map(i64::to_string).collect();
    note!(
        "{} event{} could not be read back and {} not exported (id{} {}{}): the database is \
         damaged; `provtrail verify --db {}` checks the rest",
        unreadable.len(),
        if unreadable.len() == 1 { "" } else { "s" },
        if unreadable.len() == 1 { "was" } else { "were" },
        if unreadable.len() == 1 { "" } else { "s" },
        shown.join(", "),
        if unreadable.len() > shown.len() {
            ", …"
        } else {
            ""
        },
        db.display(),
    );
    Ok(ExitCode::from(1))
}

/// The output file of `-o`. A regular file (or a new one) is written beside its place under a
/// temporary name and put in place once whole, so that an export that fails (a full disk, an
/// error of the store) leaves the file that was there, often the previous backup, as it was,
/// and never a part of an export. A device or a pipe (`/dev/stdout`, a FIFO) is written
/// directly. Readable by its owner only, as the store is: it holds identities and their access.
enum Staged {
    Direct(std::fs::File),
    Temporary {
        file: tempfile::NamedTempFile,
        /// Where the file goes: a link's target, so that the link stays one.
        target: PathBuf,
    },
}

impl Staged {
    fn create(path: &std::path::Path) -> std::io::Result<Self> {
        // What the shell already opened (`/dev/stdout`, `/dev/fd/3`, a terminal) is written
        // where it stands, as the shell opened it (`>>` appends): renaming over the file behind
        // it, or emptying it, would take it from under the shell.
        if path.starts_with("/dev") || path.starts_with("/proc") {
            return open_as_the_shell_did(path).map(Self::Direct);
        }
        let target = match std::fs::metadata(path) {
            Ok(found) if !found.is_file() => {
                return provtrail::create_private(path).map(Self::Direct);
            }
            // A file with other names (hard links) is written in place, so that every name
            // sees the export, as before.
            Ok(found) if has_other_names(&found) => {
                return provtrail::create_private(path).map(Self::Direct);
            }
            Ok(_) => std::fs::canonicalize(path)?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => link_target(path)?,
            Err(err) => return Err(err),
        };
        let directory = match target.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        // Created with mode 0600 by `tempfile`; a short name, so that the longest file name
        // a directory takes is still one an export can be given.
        match tempfile::Builder::new()
            .prefix(".provtrail-export.")
            .suffix(".partial")
            .tempfile_in(&directory)
        {
            Ok(file) => Ok(Self::Temporary { file, target }),
            // A directory this user cannot write to, holding a file this user can: written in
            // place, as before, with no previous file left should it fail.
            Err(err)
                if err.kind() == std::io::ErrorKind::PermissionDenied
                    && std::fs::metadata(&target).is_ok() =>
            {
                note!(
                    "cannot write beside {} (the directory is not writable): writing the file \
                     in place",
                    target.display()
                );
                provtrail::create_private(&target).map(Self::Direct)
            }
            Err(err) => Err(err),
        }
    }

    /// Whether the export goes to a terminal.
    fn is_terminal(&self) -> bool {
        use std::io::IsTerminal as _;
        match self {
            Self::Direct(file) => file.is_terminal(),
            Self::Temporary { .. } => false,
        }
    }

    /// Whether the export goes straight to its destination (a device, a pipe, a file written
    /// in place) rather than under a temporary name.
    fn is_direct(&self) -> bool {
        matches!(self, Self::Direct(_))
    }

    fn writer(&self) -> std::io::Result<std::fs::File> {
        match self {
            Self::Direct(file) => file.try_clone(),
            Self::Temporary { file, .. } => file.as_file().try_clone(),
        }
    }

    /// Once everything is written: on disk, then in place.
    fn finish(self) -> std::io::Result<()> {
        match self {
            Self::Direct(_) => Ok(()),
            Self::Temporary { file, target } => {
                file.as_file().sync_all()?;
                file.persist(&target).map_err(|err| err.error)?;
                Ok(())
            }
        }
    }
}

/// A descriptor the process holds (`/dev/stdout`, `/dev/fd/N`, `/proc/self/fd/N`) shared, so
/// that writes go where the shell sends them, appended when it appends; any other device
/// opened for appending, never emptied.
fn open_as_the_shell_did(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        let text = path.to_string_lossy();
        let number = match text.as_ref() {
            "/dev/stdout" => Some(1),
            "/dev/stderr" => Some(2),
            _ => text
                .strip_prefix("/dev/fd/")
                .or_else(|| text.strip_prefix("/proc/self/fd/"))
                .and_then(|n| n.parse::<i32>().ok()),
        };
        match number {
            Some(1) => return Ok(std::io::stdout().as_fd().try_clone_to_owned()?.into()),
            Some(2) => return Ok(std::io::stderr().as_fd().try_clone_to_owned()?.into()),
            _ => {}
        }
    }
    std::fs::OpenOptions::new().append(true).open(path)
}

#[cfg(unix)]
fn has_other_names(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    metadata.nlink() > 1
}

#[cfg(not(unix))]
fn has_other_names(_: &std::fs::Metadata) -> bool {
    false
}

/// Where a path that leads to no file would be created: the path itself, or for a link to a
/// file yet to be made, the end of its chain of links (so that the link stays one). An error
/// when that end's directory does not exist, as creating the file there would give.
fn link_target(path: &std::path::Path) -> std::io::Result<PathBuf> {
    let mut current = path.to_owned();
    // Links to links, as the system follows them (it gives up at 40).
    for _ in 0..40 {
        match std::fs::read_link(&current) {
            Ok(next) => {
                current = match current.parent() {
                    Some(parent) if next.is_relative() => parent.join(next),
                    _ => next,
                };
            }
            Err(err) if err.kind() == std::io::ErrorKind::InvalidInput => return Ok(current),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(current),
            Err(err) => return Err(err),
        }
    }
    Err(std::io::Error::other(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

/// Where the events come from: the file read directly, with nothing started and nothing
/// written; or, for a database whose schema is older than this build's, the store opened
/// as the server opens it, which brings the schema up to date first.
enum Source {
    File(Arc<std::sync::Mutex<EventFile>>),
    Store(SharedStore),
}

impl Source {
    async fn open(db: &std::path::Path) -> anyhow::Result<Source> {
        let path = db.to_owned();
        if let Some(file) = tokio::task::spawn_blocking(move || EventFile::open(&path)).await?? {
            return Ok(Source::File(Arc::new(std::sync::Mutex::new(file))));
        }
        note!(
            "{} has an older schema: bringing it up to date before exporting",
            db.display()
        );
        let settings = SqliteSettings::new(db);
        let metrics = Arc::new(Metrics::new());
        let store =
            tokio::task::spawn_blocking(move || SqliteStore::open(settings, metrics)).await??;
        Ok(Source::Store(Arc::new(store)))
    }

    /// The next page of events after `after`, with those whose bodies cannot be read back
    /// listed apart.
    async fn page(&self, range: &ExportRange, after: i64) -> anyhow::Result<ReadBackPage> {
        let fetch = |after: i64, limit: usize| async move {
            match self {
                Source::File(file) => {
                    let (file, range) = (file.clone(), range.clone());
                    tokio::task::spawn_blocking(move || {
                        let file = file.lock().map_err(|_| {
                            StoreError::Internal("the export's reader failed".into())
                        })?;
                        file.export_events(&range, after, limit)
                    })
                    .await
                    .map_err(|_| StoreError::Internal("the export's reader failed".into()))?
                }
                Source::Store(store) => store.export_events(range, after, limit).await,
            }
        };
        Ok(read_back_page(fetch, after, PAGE).await?)
    }

    async fn close(self) {
        if let Source::Store(store) = self {
            store.close().await;
        }
    }
}

enum Output {
    Csv(Box<csv::Writer<Box<dyn Write>>>),
    Jsonl(Box<dyn Write>),
}

fn jsonl_line(stored: &StoredEvent) -> Value {
    let event: Value = serde_json::from_slice(&stored.raw).unwrap_or(Value::Null);
    let raw = String::from_utf8_lossy(&stored.raw);
    json!({
        "id": stored.id,
        "received_at": format_time(stored.receipt.received_at),
        "channel": stored.receipt.channel,
        "remote_addr": stored.receipt.remote_addr,
        "method": stored.receipt.method,
        "path": stored.receipt.path,
        "user_agent": stored.receipt.user_agent,
        "size": stored.receipt.size,
        "invocation_id": stored.invocation_id,
        "tracking_number": stored.tracking_number,
        "outcome": stored.outcome,
        "warnings": stored.warnings,
        "event": event,
        "raw": raw,
    })
}

/// The columns of an export past those of `provtrail search --format csv`, which it starts
/// with, in the same order and under the same names: a script reads either.
const EXPORT_ONLY_COLUMNS: [&str; 2] = ["remote_addr", "ticket_ids"];

/// A cell a spreadsheet would read as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a
/// carriage return, after any spaces or line breaks, which some spreadsheets skip) gets a
/// leading `'`: event fields are written by whoever sent the event, and a cell like
/// `=HYPERLINK(…)` would run when the export is opened (CSV injection).
/// A number alone (`-1234`, the time of an event before 1970 in milliseconds) is left as it is:
/// no spreadsheet runs it, and a `'` would make it text.
/// A NUL becomes U+FFFD (as a browser shows it): many CSV readers end a cell, or the file,
/// there. The JSON-lines export keeps the value exact.
pub(super) fn spreadsheet_safe(cell: String) -> String {
    let cell = if cell.contains('\0') {
        cell.replace('\0', "\u{FFFD}")
    } else {
        cell
    };
    if cell
        .trim_start_matches([' ', '\n'])
        .starts_with(['=', '+', '-', '@', '\t', '\r'])
        && !is_plain_number(&cell)
    {
        format!("'{cell}")
    } else {
        cell
    }
}

/// `-` then digits, with at most one `.` between digits, and no leading zero (a spreadsheet
/// would drop it: `-00123` is text, and keeps its `'`): nothing a spreadsheet reads as more.
fn is_plain_number(cell: &str) -> bool {
    let digits = cell.strip_prefix('-').unwrap_or(cell);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    !whole.is_empty()
        && (whole == "0" || !whole.starts_with('0'))
        && !fraction.is_empty()
        && whole.bytes().all(|byte| byte.is_ascii_digit())
        && fraction.bytes().all(|byte| byte.is_ascii_digit())
}

fn csv_row(stored: &StoredEvent) -> Vec<String> {
    let event = provtrail::ingest::read_stored(&stored.raw).ok();
    let text = |f: &dyn Fn(&ProvisioningCompleted<'_>) -> String| -> String {
        event.as_ref().map(f).unwrap_or_default()
    };
    vec![
        stored.id.to_string(),
        format_time(stored.receipt.received_at),
        stored.tracking_number.clone(),
        stored.invocation_id.clone().unwrap_or_default(),
        text(&|e| e.action.as_deref().unwrap_or_default().to_owned()),
        stored.outcome.clone(),
        text(&|e| e.recipient.id.to_string()),
        text(&|e| e.recipient.name.to_string()),
        text(&|e| {
            e.requester
                .as_option()
                .map(|r| r.id.to_string())
                .unwrap_or_default()
        }),
        text(&|e| {
            e.requester
                .as_option()
                .map(|r| r.name.to_string())
                .unwrap_or_default()
        }),
        text(&|e| e.sources.to_string()),
        text(&|e| e.account_requests.len().to_string()),
        text(&|e| e.counts().failed.to_string()),
        stored.receipt.channel.clone().unwrap_or_default(),
        text(&|e| e.error_messages().join(" | ")),
        stored.receipt.received_at.to_string(),
        stored.receipt.remote_addr.clone().unwrap_or_default(),
        // Blank ticket ids (ISC sends `""` for none at times) would only leave stray spaces.
        text(&|e| {
            e.ticket_ids()
                .into_iter()
                .filter(|ticket| !ticket.trim().is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        }),
    ]
    .into_iter()
    .map(spreadsheet_safe)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::spreadsheet_safe;

    #[test]
    fn formulas_are_quoted_and_numbers_left_alone() {
        for (cell, written) in [
            ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
            ("-2+3", "'-2+3"),
            ("+1", "'+1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("-", "'-"),
            ("-.5", "'-.5"),
            ("-5.", "'-5."),
            ("-1e5", "'-1e5"),
            ("-1234", "-1234"),
            ("-62167219200000", "-62167219200000"),
            ("-12.5", "-12.5"),
            ("-0.5", "-0.5"),
            ("-00123", "'-00123"),
            ("1234", "1234"),
            ("plain text", "plain text"),
            ("NUL\0inside", "NUL\u{FFFD}inside"),
            ("\0=1", "\u{FFFD}=1"),
        ] {
            assert_eq!(spreadsheet_safe(cell.to_owned()), written, "{cell}");
        }
    }
}
