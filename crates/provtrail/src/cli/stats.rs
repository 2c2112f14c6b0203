//! `provtrail stats`: account requests by result, per source with failure rates, the most frequent
//! errors, and optionally a series per hour or day.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use provtrail::server::api::model::{RequestCounts, Stats};

use super::OutputFormat;
use super::remote::{Backend, SourceArgs, output_width, push, table, table_time};

/// Series buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BucketArg {
    /// One hour.
    Hour,
    /// One day (UTC).
    Day,
}

/// Arguments of `provtrail stats`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Times: 2026-11-01T10:00:00Z, 2026-11-01 (midnight UTC), or a span back \
from now such as 24h or 7d. The range is widened to whole hours.\n\n\
Exit status: 0 on success, 2 on errors."
)]
pub struct StatsArgs {
    #[command(flatten)]
    pub source_args: SourceArgs,
    /// From [default: 30 days before --until].
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Until [default: now].
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Also show a series with buckets of this size.
    #[arg(long, value_enum)]
    pub bucket: Option<BucketArg>,
    /// Only this source's account requests (by name).
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Only events posted to this channel.
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,
    /// How many of the most frequent errors to show (0 to 100).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: u32,
    /// Output format (`json`: the read API's document).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

impl StatsArgs {
    /// The read API's parameters for these flags.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        push(&mut pairs, "since", self.since.as_ref());
        push(&mut pairs, "until", self.until.as_ref());
        push(
            &mut pairs,
            "bucket",
            self.bucket.map(|bucket| match bucket {
                BucketArg::Hour => "hour",
                BucketArg::Day => "day",
            }),
        );
        push(&mut pairs, "source", self.source.as_ref());
        push(&mut pairs, "channel", self.channel.as_ref());
        push(&mut pairs, "top", Some(self.top));
        pairs
    }
}

/// Runs `provtrail stats`.
pub async fn run(args: StatsArgs) -> anyhow::Result<ExitCode> {
    super::refuse_blank(&[
        ("--since", &args.since),
        ("--until", &args.until),
        ("--source", &args.source),
        ("--channel", &args.channel),
    ])?;
    let backend = Backend::open(&args.source_args, false).await?;
    let result = backend.stats(args.pairs()).await;
    backend.close().await;
    let stats = result?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &stats)?;
            out.write_all(b"\n")?;
        }
        OutputFormat::Text => {
            let text = describe(&stats, args.bucket.is_some(), output_width());
            out.write_all(super::terminal_safe(&text).as_bytes())?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Tables are indented by two spaces under their titles.
fn indent(out: &mut String, table: &str) {
    for line in table.lines() {
        let _ = writeln!(out, "  {line}");
    }
}

fn narrower(width: Option<usize>) -> Option<usize> {
    width.map(|width| width.saturating_sub(2))
}

/// A failure rate as a percentage; `n/a` without requests, where 0.0% would read as "none
/// failed".
fn failure_rate(counts: &RequestCounts) -> String {
    if counts.total == 0 {
        "n/a".to_owned()
    } else {
        format!("{:.1}%", counts.failed as f64 / counts.total as f64 * 100.0)
    }
}

/// The statistics for people.
pub fn describe(stats: &Stats, series: bool, width: Option<usize>) -> String {
    let mut out = String::new();
    let requests = &stats.requests;
    let _ = writeln!(
        out,
        "Account requests from {} to {}",
        stats.since, stats.until
    );
    let _ = writeln!(
        out,
        "  total {}  success {}  pending {}  failed {}  unknown {}  failure rate {}",
        requests.total,
        requests.success,
        requests.pending,
        requests.failed,
        requests.unknown,
        failure_rate(requests)
    );
    let events: Vec<String> = stats
        .events
        .iter()
        .map(|(outcome, n)| format!("{outcome} {n}"))
        .collect();
    let total: u64 = stats.events.values().sum();
    let _ = writeln!(
        out,
        "Events: {total}{}{}",
        if events.is_empty() { "" } else { "  " },
        events.join("  ")
    );
    if !stats.sources.is_empty() {
        let _ = writeln!(out, "\nBy source");
        let rows: Vec<Vec<String>> = stats
            .sources
            .iter()
            .map(|source| {
                vec![
                    source.source.clone(),
                    source.requests.total.to_string(),
                    source.requests.failed.to_string(),
                    source.requests.pending.to_string(),
                    failure_rate(&source.requests),
                ]
            })
            .collect();
        indent(
            &mut out,
            &table(
                &["SOURCE", "REQUESTS", "FAILED", "PENDING", "FAILURE RATE"],
                &rows,
                &[0],
                &[1, 2, 3, 4],
                narrower(width),
            ),
        );
    }
    if !stats.top_errors.is_empty() {
        let _ = writeln!(out, "\nTop errors");
        let rows: Vec<Vec<String>> = stats
            .top_errors
            .iter()
            .map(|error| vec![error.events.to_string(), error.message.clone()])
            .collect();
        indent(
            &mut out,
            &table(&["EVENTS", "MESSAGE"], &rows, &[1], &[0], narrower(width)),
        );
    }
    if series {
        let unit = match stats.bucket {
            provtrail::server::api::model::Bucket::Hour => "hour",
            provtrail::server::api::model::Bucket::Day => "day",
        };
        let _ = writeln!(out, "\nPer {unit}");
        let rows: Vec<Vec<String>> = stats
            .series
            .iter()
            .map(|bucket| {
                vec![
                    table_time(bucket.start_ms),
                    bucket.events.to_string(),
                    bucket.requests.total.to_string(),
                    bucket.requests.failed.to_string(),
                    failure_rate(&bucket.requests),
                ]
            })
            .collect();
        indent(
            &mut out,
            &table(
                &["START", "EVENTS", "REQUESTS", "FAILED", "FAILURE RATE"],
                &rows,
                &[],
                &[1, 2, 3, 4],
                narrower(width),
            ),
        );
    }
    out
}
