//! `provtrail replay`: deliver stored events of a time range to a route again.

use std::process::ExitCode;

use anyhow::Context as _;
use provtrail::routes::replay::{ReplayError, ReplayProgress, ReplayRequest, replay};
use provtrail::server::routes_api::replay_range;
use provtrail::store::ExportRange;

use super::routes::{open_store, settings};
use super::serve::ServerArgs;

/// Arguments of `provtrail replay`.
///
/// Creates new deliveries in the outbox; a running server picks them up within a second, a
/// stopped one on its next start. An event that still has a pending delivery to the route gets
/// no second one.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The route to deliver to.
    #[arg(long)]
    route: String,
    /// Events received at or after this time (2026-11-01, 2026-11-01T10:00:00Z, or 24h / 7d ago).
    #[arg(long)]
    since: Option<String>,
    /// Events received before this time (the same forms; later than --since).
    #[arg(long)]
    until: Option<String>,
    /// Only events that also match this Jayway filter.
    #[arg(long)]
    filter: Option<String>,
    /// Do not apply the route's own filter (only --filter, if given).
    #[arg(long)]
    ignore_route_filter: bool,
    #[command(flatten)]
    server: Box<ServerArgs>,
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let settings = settings(&args.server)?;
    let route = settings
        .routes
        .get(&args.route)
        .cloned()
        .with_context(|| format!("there is no route {:?} in the configuration", args.route))?;
    // The API's reading of the range, so that both accept the same times and refuse the same
    // ranges (an empty one would read nothing and report success).
    let (since, until) = replay_range(
        args.since.as_deref(),
        args.until.as_deref(),
        ["--since", "--until"],
    )?;
    // Given blank, it would replay every event of the range: most likely a mistake.
    anyhow::ensure!(
        args.filter
            .as_deref()
            .is_none_or(|text| !text.trim().is_empty()),
        "--filter is empty; leave it out to replay every event the route matches"
    );
    let request = ReplayRequest {
        since,
        until,
        filter: args.filter.clone(),
        ignore_route_filter: args.ignore_route_filter,
    };
    let store = open_store(&settings).await?;
    // The events in the range, read one page at a time: the bar's total.
    let total = store
        .count_events(&ExportRange {
            since: request.since,
            until: request.until,
        })
        .await
        .ok();
    let bar = super::progress_bar(total, "replaying");
    // What was done before a failure part of the way is kept: said with the error.
    let reached = std::cell::Cell::new(ReplayProgress::default());
    let result = replay(&store, &route, &request, |progress| {
        reached.set(*progress);
        bar.set_position(progress.scanned);
        bar.set_message(format!(
            "{} matched, {} deliveries created",
            progress.matched, progress.enqueued
        ));
    })
    .await;
    bar.finish_and_clear();
    store.close().await;
    let done = match result {
        Ok(done) => done,
        // The error names its cause in its own message; as a cause again it would be printed
        // twice (`error: {err:#}` prints the chain).
        Err(ReplayError::Filter(err)) => anyhow::bail!("--filter does not compile: {err}"),
        Err(err @ ReplayError::UnknownFunctions(_)) => anyhow::bail!("--filter: {err}"),
        Err(err) => {
            let reached = reached.get();
            if reached.enqueued > 0 {
                return Err(anyhow::Error::new(err).context(format!(
                    "the replay stopped after {} events read: the {} deliveries created before \
                     stay pending, and are delivered",
                    reached.scanned, reached.enqueued
                )));
            }
            return Err(err.into());
        }
    };
    note!(
        "replay to {}: {} events read, {} matched, {} deliveries created",
        route.name,
        done.scanned,
        done.matched,
        done.enqueued
    );
    if done.enqueued < done.matched {
        note!(
            "({} events already had a pending delivery to this route)",
            done.matched - done.enqueued
        );
    }
    if done.unreadable > 0 {
        note!(
            "{} events could not be read back and were passed over: the database is damaged \
             (`provtrail verify` checks it)",
            done.unreadable
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
