//! `provtrail backfill`: read back from ISC the Provisioning Completed events it sent while the
//! receiver may have missed them, as JSON lines for `provtrail ingest` or `provtrail send`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use provtrail::isc::{Credentials, Invocation, TRIGGER_ID, Tenant};
use serde_json::json;

use super::OutputFormat;
use super::time::parse_time;

/// Rows that could not be turned into events that the summary lists one by one.
const LISTED_PROBLEMS: usize = 20;

/// Arguments of `provtrail backfill`.
#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The tenant's API URL, https://TENANT.api.identitynow.com.
    #[arg(long, env = "PROVTRAIL_ISC_URL", value_name = "URL")]
    tenant: String,
    /// The id of an API client allowed to read trigger invocations (a personal access token's
    /// client id will do).
    #[arg(long, env = "PROVTRAIL_ISC_CLIENT_ID", value_name = "ID")]
    client_id: Option<String>,
    /// The client's secret. Better given in the environment (PROVTRAIL_ISC_CLIENT_SECRET): a
    /// command line is visible to every user of the machine.
    #[arg(
        long,
        env = "PROVTRAIL_ISC_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    client_secret: Option<String>,
    /// A bearer token obtained elsewhere, instead of a client id and secret.
    #[arg(
        long,
        env = "PROVTRAIL_ISC_ACCESS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    access_token: Option<String>,
    /// Only the invocations of this trigger subscription (its id). Without it, those of every
    /// subscription to the trigger: an event sent to two subscriptions then comes back twice,
    /// under two invocation ids.
    #[arg(long, value_name = "ID")]
    subscription: Option<String>,
    /// Only invocations that ISC created at or after this time: RFC 3339, a date, or a span
    /// back from now (6h, 2d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Keep test invocations too (a subscription's Test button, the test invocation API): their
    /// input is an example event, not a provisioning outcome.
    #[arg(long)]
    include_tests: bool,
    /// Write the events to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Seconds to wait for each of ISC's answers.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// The summary, on standard error: for people (`text`) or one JSON object (`json`).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

/// What was done with the rows read.
#[derive(Debug, Default)]
struct Summary {
    read: usize,
    written: usize,
    tests: usize,
    before_since: usize,
    /// Rows with no event to recover: (invocation id, why).
    unusable: Vec<(String, &'static str)>,
    /// The subscriptions the rows came from, by id, with their names.
    subscriptions: std::collections::BTreeMap<String, String>,
}

pub async fn run(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let credentials = credentials(&args)?;
    let since = args.since.as_deref().map(parse_time).transpose()?;
    if let Some(output) = &args.output
        && let Some(kept) = provtrail::store::kept_data_at(output)
    {
        anyhow::bail!("{kept}: writing the events there would destroy it");
    }
    let tenant = Tenant::new(&args.tenant, Duration::from_secs(args.timeout))?;
    let token = tenant
        .token(&credentials)
        .await
        .context("cannot sign in to the tenant")?;
    let progress = super::progress_bar(None, "reading invocations");
    let rows = tenant
        .invocations(&token, args.subscription.as_deref(), |read| {
            progress.set_position(read as u64)
        })
        .await
        .context("cannot read the trigger invocations")?;
    progress.finish_and_clear();

    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut summary = Summary {
        read: rows.len(),
        ..Summary::default()
    };
    for invocation in &rows {
        if let Some(id) = &invocation.subscription_id {
            summary.subscriptions.insert(
                id.clone(),
                invocation.subscription_name.clone().unwrap_or_default(),
            );
        }
        if invocation.is_test() && !args.include_tests {
            summary.tests += 1;
            continue;
        }
        if let Some(since) = since
            && created_millis(invocation).is_some_and(|created| created < since)
        {
            summary.before_since += 1;
            continue;
        }
        match invocation.event_body() {
            Ok(body) => {
                out.write_all(&body)?;
                out.write_all(b"\n")?;
                summary.written += 1;
            }
            Err(reason) => summary.unusable.push((invocation.id.clone(), reason)),
        }
    }
    out.flush()?;
    drop(out);
    report(&args, &summary)?;
    Ok(if summary.unusable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The credentials the arguments give, or what is missing.
fn credentials(args: &BackfillArgs) -> anyhow::Result<Credentials> {
    let given = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    match (
        given(&args.access_token),
        given(&args.client_id),
        given(&args.client_secret),
    ) {
        (Some(token), None, None) => Ok(Credentials::AccessToken(token)),
        (Some(_), _, _) => anyhow::bail!(
            "give either --access-token or --client-id with --client-secret, not both (check \
             the PROVTRAIL_ISC_* environment variables)"
        ),
        (None, Some(id), Some(secret)) => Ok(Credentials::Client { id, secret }),
        (None, Some(_), None) => {
            anyhow::bail!("--client-id needs --client-secret (or PROVTRAIL_ISC_CLIENT_SECRET)")
        }
        (None, None, Some(_)) => {
            anyhow::bail!("--client-secret needs --client-id (or PROVTRAIL_ISC_CLIENT_ID)")
        }
        (None, None, None) => anyhow::bail!(
            "the tenant needs credentials: --client-id and --client-secret of an API client \
             (or PROVTRAIL_ISC_CLIENT_ID and PROVTRAIL_ISC_CLIENT_SECRET), or --access-token"
        ),
    }
}

/// When ISC created the invocation, in milliseconds; `None` when the row does not say in a
/// form that can be read, and such a row is kept whatever `--since` says.
fn created_millis(invocation: &Invocation) -> Option<i64> {
    let created = invocation.created.as_deref()?;
    chrono::DateTime::parse_from_rfc3339(created)
        .ok()
        .map(|time| time.timestamp_millis())
}

fn report(args: &BackfillArgs, summary: &Summary) -> anyhow::Result<()> {
    let destination = args.output.as_ref().map_or_else(
        || "standard output".to_owned(),
        |path| path.display().to_string(),
    );
    let mut err = std::io::stderr().lock();
    match args.format {
        OutputFormat::Json => {
            let record = json!({
                "trigger": TRIGGER_ID,
                "read": summary.read,
                "written": summary.written,
                "skipped_tests": summary.tests,
                "skipped_before_since": summary.before_since,
                "unusable": summary.unusable.iter().map(|(id, reason)| json!({
                    "invocation_id": id,
                    "reason": reason,
                })).collect::<Vec<_>>(),
                "subscriptions": summary.subscriptions.iter().map(|(id, name)| json!({
                    "id": id,
                    "name": name,
                })).collect::<Vec<_>>(),
                "output": destination,
            });
            writeln!(err, "{record}")?;
        }
        OutputFormat::Text => {
            writeln!(
                err,
                "read {} invocation(s) of {TRIGGER_ID}; wrote {} event(s) to {destination}",
                summary.read, summary.written
            )?;
            if summary.tests > 0 {
                writeln!(
                    err,
                    "skipped {} test invocation(s) (--include-tests keeps them)",
                    summary.tests
                )?;
            }
            if summary.before_since > 0 {
                writeln!(
                    err,
                    "skipped {} invocation(s) created before --since",
                    summary.before_since
                )?;
            }
            for (id, reason) in summary.unusable.iter().take(LISTED_PROBLEMS) {
                let id = if id.is_empty() { "(no id)" } else { id };
                writeln!(
                    err,
                    "invocation {}: no event: {reason}",
                    super::terminal_safe(id)
                )?;
            }
            if summary.unusable.len() > LISTED_PROBLEMS {
                writeln!(
                    err,
                    "… and {} more without an event",
                    summary.unusable.len() - LISTED_PROBLEMS
                )?;
            }
            if args.subscription.is_none() && summary.subscriptions.len() > 1 {
                let names: Vec<String> = summary
                    .subscriptions
                    .iter()
                    .map(|(id, name)| super::terminal_safe(&format!("{id} ({name})")).into_owned())
                    .collect();
                writeln!(
                    err,
                    "warning: the invocations come from {} subscriptions: {}. An event sent to \
                     several comes back once for each, under different invocation ids; give \
                     --subscription ID for the one that points at this receiver",
                    names.len(),
                    names.join(", ")
                )?;
            }
            if summary.written > 0 {
                writeln!(
                    err,
                    "import them with `provtrail ingest --channel backfill FILE` (or pipe them \
                     into `provtrail ingest --channel backfill -`): events already received are \
                     counted as duplicates, not stored twice"
                )?;
            }
        }
    }
    Ok(())
}
