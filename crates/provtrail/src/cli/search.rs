//! `provtrail search`: find events, with the read API's filters as flags, on a server or a
//! database file.

use std::io::Write;
use std::process::ExitCode;

use provtrail::server::api::model::{EventItem, EventList};

use super::remote::{Backend, SourceArgs, output_width, push, table, table_time};

/// Output formats of `search`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SearchFormat {
    /// Aligned columns for people, fitted to the terminal.
    Table,
    /// One JSON array of events.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

/// Arguments of `provtrail search`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Every filter given must hold; newest first. \
Times: 2026-11-01T10:00:00Z, 2026-11-01 (midnight UTC), or a span back from now such as 24h or 7d.\n\n\
Exit status: 0 when the search ran (even if it found nothing), 2 on errors.")]
pub struct SearchArgs {
    #[command(flatten)]
    pub source_args: SourceArgs,
    /// `trackingNumber`: the whole value, ignoring case and surrounding spaces (as every value
    /// filter but --result).
    #[arg(long, value_name = "TN")]
    pub tracking_number: Option<String>,
    /// `_metadata.invocationId`.
    #[arg(long, value_name = "ID")]
    pub invocation_id: Option<String>,
    /// The recipient or the requester, by id or name.
    #[arg(long, value_name = "ID|NAME")]
    pub identity: Option<String>,
    /// A source of an account request, by id or name.
    #[arg(long, value_name = "ID|NAME")]
    pub source: Option<String>,
    /// An account request's `accountId`.
    #[arg(long, value_name = "ID")]
    pub account_id: Option<String>,
    /// An account request's `ticketId`.
    #[arg(long, value_name = "ID")]
    pub ticket_id: Option<String>,
    /// An account request's `accountOperation` (Create, Modify, …).
    #[arg(long, value_name = "OPERATION")]
    pub operation: Option<String>,
    /// Events with an account request with this result: SUCCESS, PENDING or FAILED, given in
    /// any case, matched as the schema spells it (an event's unknown `success` is not SUCCESS);
    /// with --source, on that source.
    #[arg(long, value_name = "RESULT")]
    pub result: Option<String>,
    /// The event's `action`.
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
    /// The channel the event was posted to.
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,
    /// Words in errors, warnings, names, account ids or attribute values (`word*` for a
    /// prefix).
    #[arg(short = 'q', long = "text", value_name = "WORDS")]
    pub text: Option<String>,
    /// Received at or after.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Received before.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// A Jayway filter evaluated on each candidate, as ISC evaluates subscription filters.
    #[arg(long, value_name = "JSONPATH")]
    pub filter: Option<String>,
    /// Most events to show (1 to 1000) [default: 50]; with --all, the page size.
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Follow the cursors: every matching event.
    #[arg(long)]
    pub all: bool,
    /// Continue after a previous page (its next cursor).
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SearchFormat::Table)]
    pub format: SearchFormat,
}

impl SearchArgs {
    /// The read API's parameters for these flags.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        push(&mut pairs, "tracking_number", self.tracking_number.as_ref());
        push(&mut pairs, "invocation_id", self.invocation_id.as_ref());
        push(&mut pairs, "identity", self.identity.as_ref());
        push(&mut pairs, "source", self.source.as_ref());
        push(&mut pairs, "account_id", self.account_id.as_ref());
        push(&mut pairs, "ticket_id", self.ticket_id.as_ref());
        push(&mut pairs, "operation", self.operation.as_ref());
        push(&mut pairs, "result", self.result.as_ref());
        push(&mut pairs, "action", self.action.as_ref());
        push(&mut pairs, "channel", self.channel.as_ref());
        push(&mut pairs, "q", self.text.as_ref());
        push(&mut pairs, "since", self.since.as_ref());
        push(&mut pairs, "until", self.until.as_ref());
        push(&mut pairs, "filter", self.filter.as_ref());
        let limit = match (self.limit, self.all) {
            (Some(limit), _) => Some(limit),
            (None, true) => Some(1000),
            (None, false) => None,
        };
        push(&mut pairs, "limit", limit);
        pairs
    }
}

/// Runs `provtrail search`.
pub async fn run(args: SearchArgs) -> anyhow::Result<ExitCode> {
    // The read API takes a blank `q` for none (a form's empty field); given on the command line
    // it is rather a script's empty variable, and listing every event would hide that.
    anyhow::ensure!(
        args.text
            .as_deref()
            .is_none_or(|text| !text.trim().is_empty()),
        "--text is empty: give the words to search for, or leave --text out to list every event"
    );
    // The same for every other filter: an empty `--ticket-id "$T"` would list every event.
    super::refuse_blank(&[
        ("--tracking-number", &args.tracking_number),
        ("--invocation-id", &args.invocation_id),
        ("--identity", &args.identity),
        ("--source", &args.source),
        ("--account-id", &args.account_id),
        ("--ticket-id", &args.ticket_id),
        ("--operation", &args.operation),
        ("--result", &args.result),
        ("--action", &args.action),
        ("--channel", &args.channel),
        ("--since", &args.since),
        ("--until", &args.until),
        ("--filter", &args.filter),
        ("--cursor", &args.cursor),
    ])?;
    let backend = Backend::open(&args.source_args, true).await?;
    let result = search(&backend, &args).await;
    backend.close().await;
    result
}

async fn search(backend: &Backend, args: &SearchArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printer = Printer::new(args.format);
    let mut cursor = args.cursor.clone();
    let mut scanned = 0u64;
    let more = loop {
        let mut pairs = args.pairs();
        push(&mut pairs, "cursor", cursor.as_ref());
        let page: EventList = backend.search(pairs).await?;
        scanned += page.scanned;
        printer.page(&mut out, &page.items)?;
        cursor = page.next_cursor;
        if !args.all || cursor.is_none() {
            break cursor.map(|cursor| (cursor, page.complete));
        }
    };
    printer.finish(&mut out)?;
    out.flush()?;
    // After the results, so that the hint follows the table it is about.
    if let Some((cursor, complete)) = more {
        let why = if complete {
            "more events may match".to_owned()
        } else {
            format!("the filter's scan budget ran out after {scanned} events")
        };
        note!("{why}: continue with --cursor {cursor}, or use --all");
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes events as they come; a table waits for all of them to size its columns.
struct Printer {
    format: SearchFormat,
    kept: Vec<EventItem>,
    first: bool,
}

impl Printer {
    fn new(format: SearchFormat) -> Self {
        Printer {
            format,
            kept: Vec::new(),
            first: true,
        }
    }

    fn page(&mut self, out: &mut impl Write, items: &[EventItem]) -> anyhow::Result<()> {
        match self.format {
            SearchFormat::Table => self.kept.extend_from_slice(items),
            SearchFormat::Jsonl => {
                for item in items {
                    serde_json::to_writer(&mut *out, item)?;
                    out.write_all(b"\n")?;
                }
            }
            SearchFormat::Json => {
                for item in items {
                    out.write_all(if self.first { b"[\n  " } else { b",\n  " })?;
                    serde_json::to_writer(&mut *out, item)?;
                    self.first = false;
                }
            }
            SearchFormat::Csv => {
                let mut writer = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(&mut *out);
                if self.first {
                    writer.write_record(CSV_HEADER)?;
                    self.first = false;
                }
                for item in items {
                    writer.write_record(csv_row(item))?;
                }
                writer.flush()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut impl Write) -> anyhow::Result<()> {
        match self.format {
            SearchFormat::Table => {
                if self.kept.is_empty() {
                    note!("no events found");
                } else {
                    let table = events_table(&self.kept, output_width());
                    out.write_all(super::terminal_safe(&table).as_bytes())?;
                }
            }
            SearchFormat::Json => {
                out.write_all(if self.first { b"[]\n" } else { b"\n]\n" })?;
            }
            SearchFormat::Csv if self.first => {
                let mut writer = csv::Writer::from_writer(&mut *out);
                writer.write_record(CSV_HEADER)?;
                writer.flush()?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The events as a table for people: time, id, tracking number, recipient, sources, outcome
/// and errors, shrinking the wide columns to fit `width`.
pub fn events_table(items: &[EventItem], width: Option<usize>) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            vec![
                table_time(item.received_at_ms),
                item.id.to_string(),
                item.tracking_number.clone(),
                item.recipient_name.clone(),
                item.sources.clone(),
                outcome(item),
                item.errors.join("; "),
            ]
        })
        .collect();
    table(
        &[
            "TIME",
            "ID",
            "TRACKING NUMBER",
            "RECIPIENT",
            "SOURCES",
            "OUTCOME",
            "ERRORS",
        ],
        &rows,
        // Errors go first, then sources, recipient and the tracking number.
        &[6, 4, 3, 2],
        &[1],
        width,
    )
}

/// `failed 1/3`: the outcome and, when any failed, how many account requests did.
fn outcome(item: &EventItem) -> String {
    if item.failed_count > 0 {
        format!(
            "{} {}/{}",
            item.outcome, item.failed_count, item.account_count
        )
    } else {
        item.outcome.clone()
    }
}

/// The columns of `--format csv`, which an export's CSV starts with.
pub(super) const CSV_HEADER: [&str; 16] = [
    "id",
    "received_at",
    "tracking_number",
    "invocation_id",
    "action",
    "outcome",
    "recipient_id",
    "recipient_name",
    "requester_id",
    "requester_name",
    "sources",
    "account_count",
    "failed_count",
    "channel",
    "errors",
    "received_at_ms",
];

fn csv_row(item: &EventItem) -> Vec<String> {
    vec![
        item.id.to_string(),
        item.received_at.clone(),
        item.tracking_number.clone(),
        item.invocation_id.clone().unwrap_or_default(),
        item.action.clone().unwrap_or_default(),
        item.outcome.clone(),
        item.recipient_id.clone(),
        item.recipient_name.clone(),
        item.requester_id.clone().unwrap_or_default(),
        item.requester_name.clone().unwrap_or_default(),
        item.sources.clone(),
        item.account_count.to_string(),
        item.failed_count.to_string(),
        item.channel.clone().unwrap_or_default(),
        item.errors.join(" | "),
        item.received_at_ms.to_string(),
    ]
    .into_iter()
    .map(super::export::spreadsheet_safe)
    .collect()
}
