//! `provtrail show ID|TRACKING_NUMBER`: one event, for people (account requests, attribute
//! changes, errors, receipt), as JSON, or its body exactly as received.

use std::fmt::Write as _;
use std::process::ExitCode;

use provtrail::server::api::model::EventDetail;
use serde_json::Value;

use super::OutputFormat;
use super::remote::{Backend, SourceArgs};

/// Arguments of `provtrail show`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "A number is looked up as an event id first, then as a tracking number. \
When several events have the tracking number, the newest is shown.\n\n\
Exit status: 0 when the event was found, 1 when it was not, 2 on errors."
)]
pub struct ShowArgs {
    #[command(flatten)]
    pub source_args: SourceArgs,
    /// The event's id, or its tracking number.
    #[arg(value_name = "ID|TRACKING_NUMBER")]
    pub event: String,
    /// Print the body exactly as it was received, and nothing else.
    #[arg(long, conflicts_with = "format")]
    pub raw: bool,
    /// Output format (`json`: the read API's document for the event).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `provtrail show`.
pub async fn run(args: ShowArgs) -> anyhow::Result<ExitCode> {
    // A tracking number is looked up in the search index (so is a number that is no event's id).
    let backend = Backend::open(&args.source_args, true).await?;
    let result = show(&backend, &args).await;
    backend.close().await;
    result
}

async fn show(backend: &Backend, args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let Some(detail) = find(backend, args.event.trim()).await? else {
        note!(
            "no event has the id or tracking number {:?}",
            args.event.trim()
        );
        return Ok(ExitCode::from(1));
    };
    super::print_detail(
        &detail,
        (&detail.raw, detail.raw_encoding),
        args.raw,
        args.format,
        describe,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The event with this id, else the newest with this tracking number.
async fn find(backend: &Backend, key: &str) -> anyhow::Result<Option<EventDetail>> {
    if key.is_empty() {
        return Ok(None);
    }
    // An id as the API takes one (digits, no sign, no leading zero): `0012` or `+12` is a
    // tracking number, not event 12.
    let canonical_id = key.bytes().all(|b| b.is_ascii_digit()) && !key.starts_with('0');
    if let Some(id) = key.parse::<i64>().ok().filter(|_| canonical_id) {
        if id > 0 {
            if let Some(detail) = backend.event(id).await? {
                return Ok(Some(detail));
            }
        }
    }
    let page = backend
        .search(vec![
            ("tracking_number".to_owned(), key.to_owned()),
            ("limit".to_owned(), "10".to_owned()),
        ])
        .await?;
    let Some(newest) = page.items.first() else {
        return Ok(None);
    };
    if page.items.len() > 1 {
        let others: Vec<String> = page.items[1..]
            .iter()
            .map(|item| item.id.to_string())
            .collect();
        note!(
            "{} other event(s) have this tracking number{} (ids {}); showing the last stored",
            others.len(),
            if page.next_cursor.is_some() {
                ", and more"
            } else {
                ""
            },
            others.join(", ")
        );
    }
    backend.event(newest.id).await
}

/// The event for people.
pub fn describe(detail: &EventDetail) -> String {
    let mut out = String::new();
    let summary = &detail.summary;
    let receipt = &detail.receipt;
    let _ = writeln!(out, "Event {}", summary.id);
    // Values come from the event: each stays on its line, whatever it holds.
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "  {label:<16}{}", super::terminal_line(&value));
    };
    line("Tracking number", summary.tracking_number.clone());
    if let Some(invocation) = &summary.invocation_id {
        line("Invocation", invocation.clone());
    }
    line("Received", receipt.received_at.clone());
    let mut via = format!("{} {}", receipt.method, receipt.path);
    if let Some(addr) = &receipt.remote_addr {
        let _ = write!(via, " from {addr}");
    }
    let _ = write!(via, ", {} bytes", receipt.size);
    line("Via", via);
    if let Some(channel) = &receipt.channel {
        line("Channel", channel.clone());
    }
    if let Some(action) = &summary.action {
        line("Action", action.clone());
    }
    line(
        "Recipient",
        format!("{} ({})", summary.recipient_name, summary.recipient_id),
    );
    if let Some(name) = &summary.requester_name {
        let id = summary.requester_id.as_deref().unwrap_or("-");
        line("Requester", format!("{name} ({id})"));
    }
    line("Sources", summary.sources.clone());
    line(
        "Outcome",
        format!(
            "{} ({} of {} account requests failed)",
            summary.outcome, summary.failed_count, summary.account_count
        ),
    );
    let requests = detail
        .event
        .as_ref()
        .and_then(|event| event.get("accountRequests"))
        .and_then(Value::as_array);
    if let Some(requests) = requests.filter(|requests| !requests.is_empty()) {
        let _ = writeln!(out, "\nAccount requests");
        for (n, request) in requests.iter().enumerate() {
            let text = |key: &str| request.get(key).map(value_text).unwrap_or_default();
            let source = request
                .get("source")
                .and_then(|source| source.get("name"))
                .map(value_text)
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}. {}  {}  {}",
                n + 1,
                text("provisioningResult"),
                text("accountOperation"),
                source
            );
            let mut facts = Vec::new();
            for (label, key) in [
                ("account", "accountId"),
                ("target", "provisioningTarget"),
                ("ticket", "ticketId"),
            ] {
                let value = text(key);
                if !value.is_empty() {
                    facts.push(format!("{label} {value}"));
                }
            }
            if !facts.is_empty() {
                let _ = writeln!(out, "     {}", facts.join("; "));
            }
            let attributes = request
                .get("attributeRequests")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for attribute in attributes {
                let field = |key: &str| attribute.get(key).map(value_text).unwrap_or_default();
                let operation = field("operation");
                let sign = match operation.as_str() {
                    "Add" => "+",
                    "Remove" => "-",
                    _ => "=",
                };
                let _ = writeln!(
                    out,
                    "     {sign} {} {} ({operation})",
                    field("attributeName"),
                    field("attributeValue")
                );
            }
        }
    }
    let mut list = |title: &str, items: Vec<String>| {
        if !items.is_empty() {
            let _ = writeln!(out, "\n{title}");
            for item in items {
                let _ = writeln!(out, "  - {}", super::terminal_line(&item));
            }
        }
    };
    list("Errors", detail.errors.clone());
    list("Warnings", detail.warnings.clone());
    list(
        "Validation warnings",
        detail
            .validation_warnings
            .iter()
            .map(|issue| format!("{}: {}", issue.path, issue.message))
            .collect(),
    );
    list(
        "Deliveries",
        detail
            .deliveries
            .iter()
            .map(|delivery| {
                format!(
                    "{}  {} {}  {} {}{}",
                    delivery.received_at,
                    delivery.status,
                    delivery.outcome,
                    delivery.method,
                    delivery.path,
                    delivery
                        .remote_addr
                        .as_deref()
                        .map(|addr| format!(" from {addr}"))
                        .unwrap_or_default()
                )
            })
            .collect(),
    );
    out
}

/// A JSON value as one line of text: a string bare (escaped for the terminal), the rest as JSON,
/// so that a list of values that hold commas (distinguished names) is still read as it is.
fn value_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => super::terminal_line(text).into_owned(),
        other => super::terminal_line(&other.to_string()).into_owned(),
    }
}
