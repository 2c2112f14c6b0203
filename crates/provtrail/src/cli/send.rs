//! `provtrail send`: post events to any subscriber URL, like ISC's test invocation but with your own
//! data: a file, a JSON-lines stream, or realistic synthetic events.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use provtrail::sender::{Answer, Auth, SendOptions, SendReport, send_all};
use provtrail::synth::{Generator, SynthOptions};
use serde_json::json;
use tokio::sync::mpsc;

use super::OutputFormat;

/// Arguments of `provtrail send`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when every event was kept (accepted or recognised as a duplicate \
by provtrail; any other 2xx answer from a receiver that is not provtrail), 1 when any was refused, \
quarantined or got no answer (none is sent again: sending the input again is safe, provtrail \
answers what it has as duplicate), 2 when the input cannot be read."
)]
pub struct SendArgs {
    /// The subscriber's URL, e.g. http://127.0.0.1:8080/events.
    url: String,
    /// A JSON file to post (`-` for standard input). A `.jsonl` or `.ndjson` file, or an input
    /// that is one JSON document per line, is posted line by line without --jsonl.
    #[arg(value_name = "FILE|-", conflicts_with = "synthetic")]
    file: Option<PathBuf>,
    /// Read the input as JSON lines and post each line, whatever the file is called.
    #[arg(long)]
    jsonl: bool,
    /// Post this many realistic synthetic events instead of a file.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    synthetic: Option<u64>,
    /// Share of synthetic account requests that fail (0 to 1).
    #[arg(long, default_value_t = 0.03, value_name = "RATE")]
    failure_rate: f64,
    /// Seed of the synthetic events (the same seed sends the same events).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Bearer token to present [env: PROVTRAIL_SEND_TOKEN, used when no credential is given
    /// on the command line]. It may be, or hold, `${env:NAME}` or `${file:PATH}`, as may
    /// --basic.
    #[arg(long, conflicts_with_all = ["basic", "token_file"])]
    token: Option<String>,
    /// Read the bearer token from a file (e.g. the provtrail.db.token a server generated).
    #[arg(long, value_name = "FILE", conflicts_with = "basic")]
    token_file: Option<PathBuf>,
    /// Basic credentials to present, as user:password [env: PROVTRAIL_SEND_BASIC, used when no
    /// credential is given on the command line].
    #[arg(long, value_name = "USER:PASS")]
    basic: Option<String>,
    /// Requests in flight at once (1 to 10000).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Most requests per second.
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<f64>,
    /// Timeout of one request, in seconds.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    timeout: f64,
    /// Accept an invalid TLS certificate (self-signed test servers).
    #[arg(long)]
    insecure: bool,
    /// Times a document is sent again after an answer that asks for it later (429, 502, 503,
    /// 504), after the answer's Retry-After or 1, 2, 4 … seconds (at most 60); 0 sends each
    /// document once, as ISC does.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100))]
    retries: u32,
    /// Summary for people (`text`) or as one JSON object (`json`).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

/// Most requests in flight at once: each is a task and a connection.
const MAX_CONCURRENCY: usize = 10_000;

pub async fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    let url = reqwest::Url::parse(&args.url)
        .with_context(|| format!("{:?} is not a URL like http://host:8080/events", args.url))?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https") && url.host().is_some(),
        "the URL must be http:// or https:// with a host"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.failure_rate),
        "--failure-rate is between 0 and 1"
    );
    anyhow::ensure!(
        (1..=MAX_CONCURRENCY).contains(&args.concurrency),
        "--concurrency is between 1 and {MAX_CONCURRENCY}, not {}",
        args.concurrency
    );
    if let Some(rate) = args.rate {
        anyhow::ensure!(
            (0.001..=1e6).contains(&rate),
            "--rate is requests per second, from 0.001 to 1000000, not {rate}"
        );
    }
    anyhow::ensure!(
        args.timeout.is_finite() && (0.001..=86_400.0).contains(&args.timeout),
        "--timeout is seconds between 0.001 and 86400, not {}",
        args.timeout
    );
    // A credential on the command line wins over the environment's, whichever kind either is.
    let (token, basic) =
        if args.token.is_none() && args.token_file.is_none() && args.basic.is_none() {
            let from_env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
            let (token, basic) = (
                from_env("PROVTRAIL_SEND_TOKEN"),
                from_env("PROVTRAIL_SEND_BASIC"),
            );
            anyhow::ensure!(
                token.is_none() || basic.is_none(),
                "PROVTRAIL_SEND_TOKEN and PROVTRAIL_SEND_BASIC are both set: unset one, or give \
             --token or --basic"
            );
            let resolved = |value: Option<String>, variable: &str| {
                value
                    .map(|value| super::client_credential(&value, Some(variable), false))
                    .transpose()
            };
            (
                resolved(token, "PROVTRAIL_SEND_TOKEN")?,
                resolved(basic, "PROVTRAIL_SEND_BASIC")?,
            )
        } else {
            let resolved = |value: &Option<String>| {
                value
                    .as_deref()
                    .map(|value| super::client_credential(value, None, false))
                    .transpose()
            };
            (resolved(&args.token)?, resolved(&args.basic)?)
        };
    let auth = match (&token, &args.token_file, &basic) {
        (Some(token), _, _) => Auth::Bearer(token.clone()),
        (None, Some(path), _) => Auth::Bearer(super::token_from_file(path)?),
        (None, None, Some(pair)) => {
            anyhow::ensure!(
                pair.contains(':'),
                "{} is user:password (no ':' in the value given)",
                if args.basic.is_some() {
                    "--basic"
                } else {
                    "PROVTRAIL_SEND_BASIC"
                }
            );
            Auth::Basic(pair.clone())
        }
        (None, None, None) => Auth::None,
    };
    // A credential that cannot be a header would be left out of every request, each then
    // answered 401 with nothing to say why.
    let credential = match &auth {
        Auth::Bearer(token) => Some(("token", token.as_str())),
        Auth::Basic(pair) => Some(("--basic", pair.as_str())),
        Auth::None => None,
    };
    if let Some((what, value)) = credential {
        anyhow::ensure!(
            !value.is_empty()
                && value
                    .bytes()
                    .all(|byte| byte == b' ' || byte.is_ascii_graphic()),
            "the {what} is empty or holds characters a header cannot carry (one line of \
             printable ASCII)"
        );
    }
    let options = SendOptions {
        url: args.url.clone(),
        auth,
        concurrency: args.concurrency,
        rate: args.rate,
        timeout: Duration::from_secs_f64(args.timeout),
        insecure: args.insecure,
        retries: args.retries,
    };
    let (documents, read) = mpsc::channel::<(u64, Bytes)>(options.concurrency * 4);
    let (total, producer) = producer(&args, documents)?;
    // How the report names a document: by the line it starts on, or its place among those made.
    let what = if args.synthetic.is_some() {
        "event"
    } else {
        "line"
    };
    let (receiver, interrupted) = super::stop_on_ctrl_c(read);
    let progress = super::progress_bar(total, "sending");
    let bar = progress.clone();
    let report = send_all(&options, receiver, &interrupted, move |answer: &Answer| {
        bar.inc(1);
        if let Answer::Failed(error) = answer {
            bar.set_message(format!("last error: {error}"));
        }
    })
    .await?;
    progress.finish_and_clear();
    if interrupted.is_set() {
        // The reader stops at its next document, which has nowhere to go.
        drop(producer);
        print_report(&report, args.format, what)?;
        super::tell(&format!(
            "interrupted: stopped after {} documents; those not yet sent were not sent",
            report.sent
        ));
        return Ok(ExitCode::from(130));
    }
    let read = producer
        .await
        .context("the input reader stopped unexpectedly")?;
    // An input that gave nothing to send is an error of its own, with no report of nothing.
    let read = match read {
        Err(err) if report.sent == 0 => return Err(err),
        read => read,
    };
    print_report(&report, args.format, what)?;
    if let Err(err) = read {
        note!("error: {}", super::terminal_line(&format!("{err:#}")));
        return Ok(ExitCode::from(2));
    }
    let all_kept = report.kept() == report.sent && report.sent > 0;
    Ok(if all_kept {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

type Producer = tokio::task::JoinHandle<anyhow::Result<()>>;

/// Starts reading or generating documents on a blocking thread; returns how many there will be,
/// when known.
fn producer(
    args: &SendArgs,
    documents: mpsc::Sender<(u64, Bytes)>,
) -> anyhow::Result<(Option<u64>, Producer)> {
    if let Some(count) = args.synthetic {
        let options = SynthOptions {
            seed: args.seed.unwrap_or_else(rand::random),
            failure_rate: args.failure_rate,
            ..SynthOptions::default()
        };
        let handle = tokio::task::spawn_blocking(move || {
            let mut generator = Generator::new(&options);
            for number in 1..=count {
                if documents
                    .blocking_send((number, Bytes::from(generator.next_json())))
                    .is_err()
                {
                    break;
                }
            }
            Ok(())
        });
        return Ok((Some(count), handle));
    }
    let Some(path) = args.file.clone() else {
        anyhow::bail!("give a FILE to send (or - for standard input), or --synthetic N");
    };
    let reader = super::open_input(&path)?;
    let jsonl = args.jsonl || super::is_json_lines_path(&path);
    let handle = tokio::task::spawn_blocking(move || {
        super::read_documents(reader, jsonl, |line, document| {
            // A line of `provtrail export` holds the event's body as first received: that body
            // is what a receiver takes, not the line around it.
            let document = super::body_of_export_line(&document, line, "sending")
                .map_or(document, Bytes::from);
            documents.blocking_send((line, document)).is_ok()
        })
    });
    // Without --jsonl the input may still turn out to be JSON lines, so the count is not known.
    Ok((None, handle))
}

fn print_report(report: &SendReport, format: OutputFormat, what: &str) -> std::io::Result<()> {
    let seconds = report.elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        report.sent as f64 / seconds
    } else {
        0.0
    };
    match format {
        OutputFormat::Json => {
            let summary = json!({
                "sent": report.sent,
                "by_status": report.by_status,
                "by_outcome": report.by_outcome,
                "failures": report.failures,
                // Requests sent again, by the status of the answer that asked for it.
                "retried": report.retried,
                // Each with `document`: the line it starts on, or its place among synthetic ones.
                "not_kept": report.not_kept,
                "not_kept_unlisted": report.not_kept_unlisted,
                "seconds": (seconds * 1000.0).round() / 1000.0,
                "events_per_s": rate.round(),
                "p50_ms": report.latency_quantile(0.5),
                "p99_ms": report.latency_quantile(0.99),
            });
            say!("{summary}")?;
        }
        OutputFormat::Text => {
            say!(
                "sent {} in {:.2}s ({}/s)",
                provtrail::grouped_thousands(report.sent),
                seconds,
                provtrail::grouped_thousands(rate.round() as u64)
            )?;
            for (outcome, count) in &report.by_outcome {
                say!("  {outcome:<12} {count}")?;
            }
            for (status, count) in &report.by_status {
                say!("  HTTP {status:<7} {count}")?;
            }
            for (error, count) in &report.failures {
                say!("  no answer    {count} ({error})")?;
            }
            for (status, count) in &report.retried {
                say!("  sent again   {count} (after HTTP {status})")?;
            }
            if let (Some(p50), Some(p99)) =
                (report.latency_quantile(0.5), report.latency_quantile(0.99))
            {
                say!("  latency      p50 {p50:.1} ms, p99 {p99:.1} ms")?;
            }
            if !report.not_kept.is_empty() {
                say!("not kept:")?;
            }
            for not_kept in &report.not_kept {
                let answer = match not_kept.status {
                    Some(status) => format!("HTTP {status} {}", not_kept.outcome),
                    None => not_kept.outcome.clone(),
                };
                // The receiver's words, escaped: they come from outside.
                say!(
                    "  {what} {}: {answer}: {}",
                    not_kept.document,
                    super::terminal_line(&not_kept.reason)
                )?;
            }
            if report.not_kept_unlisted > 0 {
                say!("  and {} more", report.not_kept_unlisted)?;
            }
        }
    }
    Ok(())
}
