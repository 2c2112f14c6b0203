//! `provtrail quarantine [ID]`: the documents that were kept but are not valid events, newest
//! first with why, or one of them in full with its body, from a database file or a server.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use provtrail::server::api::model::{
    QuarantineDetail, QuarantineItem, QuarantineList, RawEncoding,
};

use super::remote::{Backend, SourceArgs};
use super::{OutputFormat, terminal_line, terminal_safe};

/// Problems shown per entry in the list; `provtrail quarantine ID` shows them all.
const LISTED_ERRORS: usize = 3;

/// Arguments of `provtrail quarantine`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Without ID: the entries, newest first. With ID: that entry, every problem and \
its body.\n\n\
Exit status: 0 on success (an empty list too), 1 when the entry asked for does not exist, 2 on \
errors."
)]
pub struct QuarantineArgs {
    #[command(flatten)]
    pub source_args: SourceArgs,
    /// The entry to show in full (without it, the entries are listed). Ids start at 1, as the
    /// API's do.
    #[arg(value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
    pub id: Option<i64>,
    /// Only entries kept for this reason.
    #[arg(
        long,
        value_parser = ["invalid_event", "not_json", "unsupported_media_type", "bad_channel"],
        conflicts_with = "id"
    )]
    pub reason: Option<String>,
    /// Received at or after (RFC 3339, a date, or a span back from now like `24h`).
    #[arg(long, value_name = "TIME", conflicts_with = "id")]
    pub since: Option<String>,
    /// Received before.
    #[arg(long, value_name = "TIME", conflicts_with = "id")]
    pub until: Option<String>,
    /// Most entries to list (1 to 1000) [default: 50].
    #[arg(long, value_name = "N", conflicts_with = "id")]
    pub limit: Option<u32>,
    /// Continue after a previous page (its next cursor).
    #[arg(long, conflicts_with = "id")]
    pub cursor: Option<String>,
    /// With ID: print the body exactly as it was received, and nothing else.
    #[arg(long, requires = "id", conflicts_with = "format")]
    pub raw: bool,
    /// Output format (`json`: the read API's document).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `provtrail quarantine`.
pub async fn run(args: QuarantineArgs) -> anyhow::Result<ExitCode> {
    let backend = Backend::open(&args.source_args, false).await?;
    let result = match args.id {
        Some(id) => show(&backend, id, &args).await,
        None => list(&backend, &args).await,
    };
    backend.close().await;
    result
}

async fn list(backend: &Backend, args: &QuarantineArgs) -> anyhow::Result<ExitCode> {
    let mut pairs = Vec::new();
    let named = [
        ("reason", args.reason.clone()),
        ("since", args.since.clone()),
        ("until", args.until.clone()),
        ("limit", args.limit.map(|limit| limit.to_string())),
        ("cursor", args.cursor.clone()),
    ];
    for (name, value) in named {
        if let Some(value) = value {
            pairs.push((name.to_owned(), value));
        }
    }
    let page = backend.quarantine(pairs).await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        OutputFormat::Json => {
            serde_json::to_writer(&mut out, &page)?;
            out.write_all(b"\n")?;
        }
        OutputFormat::Text => out.write_all(terminal_safe(&describe_list(&page)).as_bytes())?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn show(backend: &Backend, id: i64, args: &QuarantineArgs) -> anyhow::Result<ExitCode> {
    let Some(detail) = backend.quarantine_entry(id).await? else {
        note!("there is no quarantine entry {id}");
        return Ok(ExitCode::from(1));
    };
    super::print_detail(
        &detail,
        (&detail.raw, detail.raw_encoding),
        args.raw,
        args.format,
        describe_entry,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Where and how an entry arrived, on one line.
fn arrival(item: &QuarantineItem) -> String {
    let mut text = format!("{} {}", item.method, &item.path);
    if let Some(channel) = &item.channel {
        let _ = write!(text, ", channel {channel}");
    }
    if let Some(address) = &item.remote_addr {
        let _ = write!(text, ", from {address}");
    }
    text
}

fn describe_list(page: &QuarantineList) -> String {
    let mut text = String::new();
    if page.items.is_empty() {
        text.push_str("the quarantine holds no entries that match\n");
    }
    for item in &page.items {
        let _ = writeln!(
            text,
            "{}  {}  {}  {} bytes  {}",
            item.id,
            item.received_at,
            item.reason,
            item.size,
            terminal_line(&arrival(item))
        );
        // Problems name what was sent (a channel, a key): one line each, whatever they hold.
        for issue in item.errors.iter().take(LISTED_ERRORS) {
            let _ = writeln!(text, "    {}", terminal_line(&issue_line(issue)));
        }
        if item.errors.len() > LISTED_ERRORS {
            let _ = writeln!(
                text,
                "    … and {} more (provtrail quarantine {})",
                item.errors.len() - LISTED_ERRORS,
                item.id
            );
        }
    }
    if let Some(cursor) = &page.next_cursor {
        let _ = writeln!(text, "more: --cursor {cursor}");
    }
    text
}

fn describe_entry(detail: &QuarantineDetail) -> String {
    let item = &detail.entry;
    let mut text = String::new();
    let _ = writeln!(text, "quarantine entry {}", item.id);
    let _ = writeln!(text, "  received       {}", item.received_at);
    let _ = writeln!(text, "  reason         {}", item.reason);
    let _ = writeln!(text, "  arrived as     {}", terminal_line(&arrival(item)));
    let _ = writeln!(text, "  size           {} bytes", item.size);
    if let Some(invocation) = &item.invocation_id {
        let _ = writeln!(text, "  invocation id  {}", terminal_line(invocation));
    }
    let _ = writeln!(text, "problems ({})", item.errors.len());
    for issue in &item.errors {
        let _ = writeln!(text, "  {}", terminal_line(&issue_line(issue)));
    }
    if !item.warnings.is_empty() {
        let _ = writeln!(text, "warnings ({})", item.warnings.len());
        for issue in &item.warnings {
            let _ = writeln!(text, "  {}", terminal_line(&issue_line(issue)));
        }
    }
    text.push_str("body\n");
    match detail.raw_encoding {
        RawEncoding::Utf8 => {
            for line in detail.raw.lines() {
                let _ = writeln!(text, "  {}", line);
            }
        }
        RawEncoding::Base64 => {
            let _ = writeln!(
                text,
                "  (not UTF-8 text, {} bytes: --raw prints it as received)",
                item.size
            );
        }
    }
    text
}

/// `path: message`.
fn issue_line(issue: &provtrail::server::api::model::Issue) -> String {
    format!("{}: {}", issue.path, issue.message)
}
