//! `provtrail routes list|test`: the configured routes, their counts, and what a route would do
//! with an event.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use provtrail::app::Settings;
use provtrail::metrics::Metrics;
use provtrail::routes::TestOutcome;
use provtrail::store::sqlite::SqliteStore;
use provtrail::store::{RouteCounts, SharedStore};
use provtrail::synth::{Generator, SynthOptions};
use serde_json::json;

use super::OutputFormat;
use super::serve::ServerArgs;
use super::time::format_time;

/// Arguments of `provtrail routes`.
#[derive(Debug, clap::Args)]
pub struct RoutesArgs {
    #[command(subcommand)]
    command: RoutesCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RoutesCommand {
    /// List the configured routes (secrets hidden) with their delivery counts.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        #[command(flatten)]
        server: Box<ServerArgs>,
    },
    /// Does an event match a route, and what would be sent? Sends nothing. Exit status 0 when
    /// the event matches, 1 when it does not (or is not a valid event, which is never routed).
    Test {
        /// The route.
        name: String,
        /// The event file (`-` for standard input); without it and without --event-id, a
        /// synthetic event with a failed account request.
        #[arg(long, value_name = "FILE")]
        event: Option<PathBuf>,
        /// A stored event, by id.
        #[arg(long, value_name = "ID", conflicts_with = "event")]
        event_id: Option<i64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        #[command(flatten)]
        server: Box<ServerArgs>,
    },
}

/// The settings of the configuration (routes compiled, secrets resolved).
/// The settings of a command that reads the store and the routes but delivers nothing: a
/// route's secret that only the server's environment holds is not needed, and stands in.
pub fn settings(server: &ServerArgs) -> anyhow::Result<Settings> {
    let config = server.resolve()?;
    let (settings, stood_in) = Settings::from_config_standing_in(&config)?;
    for why in stood_in {
        note!("note: {why}; a stand-in takes its place here (provtrail serve needs it)");
    }
    Ok(settings)
}

/// Whether there is a database at `path`: a file that is not empty (SQLite, and so a store
/// opened on it, would make a new database of an empty one).
fn has_database(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| !meta.is_file() || meta.len() > 0)
}

/// Opens the store of `settings`, failing when there is no database yet.
pub async fn open_store(settings: &Settings) -> anyhow::Result<SharedStore> {
    let path = settings.store.path.clone();
    anyhow::ensure!(
        has_database(&path),
        "there is no database at {} (give --db){}",
        path.display(),
        if path.exists() {
            ": the file is empty"
        } else {
            ""
        }
    );
    let store_settings = settings.store.clone();
    let store = tokio::task::spawn_blocking(move || {
        SqliteStore::open(store_settings, Arc::new(Metrics::new()))
    })
    .await??;
    Ok(Arc::new(store))
}

/// Opens the store of `settings` to read only, failing when there is no database yet: as
/// `export` and `search` open it, so that a store that cannot be written (a read-only copy, one
/// a server holds busy) still lists its routes' deliveries. A store this build must bring up to
/// date first is opened in full.
pub async fn open_store_to_read(settings: &Settings) -> anyhow::Result<SharedStore> {
    let path = settings.store.path.clone();
    if has_database(&path) {
        let reader =
            tokio::task::spawn_blocking(move || SqliteStore::open_reader(&path, false)).await?;
        if let Ok(Some(reader)) = reader {
            return Ok(Arc::new(reader));
        }
    }
    open_store(settings).await
}

pub async fn run(args: RoutesArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RoutesCommand::List { format, server } => list(&server, format).await,
        RoutesCommand::Test {
            name,
            event,
            event_id,
            format,
            server,
        } => test(&server, &name, event, event_id, format).await,
    }
}

async fn list(server: &ServerArgs, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let settings = settings(server)?;
    let routes = &settings.routes;
    let counts: Vec<RouteCounts> = if has_database(&settings.store.path) {
        let store = open_store_to_read(&settings).await?;
        let counts = store.route_counts().await?;
        store.close().await;
        counts
    } else {
        // The routes are listed all the same (what the configuration says); the counts are
        // zero because nothing was stored yet, which is said rather than left to be guessed.
        note!(
            "note: there is no database at {} yet: no event was stored, every count is 0 \
             (give --db for another store)",
            settings.store.path.display()
        );
        Vec::new()
    };
    let find = |name: &str| {
        counts
            .iter()
            .find(|c| c.route == name)
            .cloned()
            .unwrap_or_else(|| RouteCounts {
                route: name.to_owned(),
                ..RouteCounts::default()
            })
    };
    match format {
        OutputFormat::Json => {
            // One line per route, each the read API's document for it (`GET
            // /api/v1/routes/{name}`): a route no longer configured that has deliveries too.
            // A pause lives in the server that delivers: `paused_since` is null here.
            let list = provtrail::server::api::routes::list_with_counts(routes, &counts);
            for route in &list.routes {
                say!("{}", serde_json::to_string(route)?)?;
            }
        }
        OutputFormat::Text => {
            if routes.is_empty() {
                say!("no routes are configured (add [[routes]] to the configuration file)")?;
            }
            for route in routes.iter() {
                let info = route.info();
                let c = find(&route.name);
                say!("{} ({} → {})", info.name, info.sink, info.target)?;
                say!(
                    "  filter:  {}",
                    info.filter.as_deref().unwrap_or("(none: every event)")
                )?;
                let retry = &info.retry;
                // A paused route's probes do not use attempts (docs/routes.md): with no max age
                // of its own, a route that counts attempts still ends them at the default age.
                let max_age = match (&retry.max_age, retry.max_attempts) {
                    (Some(age), _) => age.clone(),
                    (None, Some(_)) => format!(
                        "unlimited (a paused route's probes, which use no attempts, end at {})",
                        default_max_age()
                    ),
                    (None, None) => "unlimited".to_owned(),
                };
                say!(
                    "  retry:   {} attempts, max age {}, delay {} doubling up to {}; {} at once, \
                     timeout {}",
                    retry
                        .max_attempts
                        .map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
                    max_age,
                    retry.initial_delay,
                    retry.max_delay,
                    info.concurrency,
                    info.timeout
                )?;
                say!(
                    "  counts:  {} matched, {} delivered, {} pending, {} dead, {} failed attempts",
                    c.matched,
                    c.delivered,
                    c.pending,
                    c.dead,
                    c.failed_attempts
                )?;
                if let (Some(error), Some(at)) = (&c.last_error, c.last_error_at) {
                    say!(
                        "  last error: {} ({})",
                        super::terminal_line(&routes.redact(error)),
                        format_time(at)
                    )?;
                }
            }
            for c in counts.iter().filter(|c| routes.get(&c.route).is_none()) {
                say!(
                    "{} (not configured any more): {} pending, {} dead",
                    c.route,
                    c.pending,
                    c.dead
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn test(
    server: &ServerArgs,
    name: &str,
    event: Option<PathBuf>,
    event_id: Option<i64>,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let settings = settings(server)?;
    let route = settings.routes.get(name).cloned().with_context(|| {
        let names: Vec<&str> = settings.routes.iter().map(|r| r.name.as_str()).collect();
        format!(
            "there is no route {name:?} (configured: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )
    })?;
    let now = chrono::Utc::now().timestamp_millis();
    let (raw, id, received_at, source, valid) = match (event, event_id) {
        (Some(path), _) => {
            // Read within the parser's limit (and a byte past it, to say it is passed): a
            // device or pipe without end (`/dev/zero`) is refused rather than read on.
            let limit = provtrail_model::Options::lenient().limits.max_bytes;
            let raw = super::read_within(&path, limit + 1)?;
            anyhow::ensure!(
                raw.len() <= limit,
                "{}: the document is more than the limit of {limit} bytes",
                path.display()
            );
            let valid = check_event_file(&raw, &path.display().to_string())?;
            (raw, 0, now, path.display().to_string(), valid)
        }
        (None, Some(id)) => {
            let store = open_store_to_read(&settings).await?;
            let detail = store.get_event(id).await?;
            store.close().await;
            let detail = detail.with_context(|| format!("there is no stored event {id}"))?;
            (
                detail.raw.to_vec(),
                id,
                detail.summary.received_at,
                format!("stored event {id}"),
                true,
            )
        }
        (None, None) => {
            let mut generator = Generator::new(&SynthOptions {
                failure_rate: 1.0,
                ..SynthOptions::default()
            });
            (
                generator.next_json(),
                0,
                now,
                "a synthetic event with failed account requests".to_owned(),
                true,
            )
        }
    };
    let outcome = route.test(&raw, id, received_at);
    match format {
        OutputFormat::Json => say!(
            "{}",
            json!({"event": source, "outcome": outcome, "valid_event": valid})
        )?,
        OutputFormat::Text => print_test(&source, &outcome, valid)?,
    }
    // A match whose body cannot be made would not be delivered either: its deliveries would go
    // to the dead letters. Nor would a document that is not a valid event: it is kept in
    // quarantine, and routes act on stored events.
    Ok(if outcome.matched && outcome.error.is_none() && valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// An error for a file that is not JSON (the test could say nothing of it, and "no match" would
/// read as an answer); a warning for one that is not a valid event, which the server would keep
/// in quarantine and never route.
fn check_event_file(raw: &[u8], source: &str) -> anyhow::Result<bool> {
    match provtrail_model::validate_slice(raw, &provtrail_model::Options::lenient()) {
        // The parser's own message begins "not JSON".
        Err(err) => anyhow::bail!("{source}: {err}"),
        Ok(validation) if !validation.errors.is_empty() => {
            let first = &validation.errors[0];
            note!(
                "warning: {source} is not a valid Provisioning Completed event ({} problem{}; \
                 the first: {}: {}); provtrail would keep such a document in quarantine and \
                 route nothing of it (see provtrail validate {source})",
                validation.errors.len(),
                if validation.errors.len() == 1 {
                    ""
                } else {
                    "s"
                },
                super::terminal_line(&first.path),
                super::terminal_line(&first.message)
            );
            Ok(false)
        }
        Ok(_) => Ok(true),
    }
}

fn print_test(source: &str, outcome: &TestOutcome, valid: bool) -> std::io::Result<()> {
    say!("route:  {} ({})", outcome.route, outcome.sink)?;
    say!("event:  {source}")?;
    say!(
        "match:  {}",
        match (outcome.matched, valid) {
            (true, true) => "yes",
            (true, false) => {
                "the filter matches, but it would not be delivered: the document is not a valid \
                 event (kept in quarantine, never routed); what it would send is shown anyway"
            }
            (false, _) => "no (it would not be delivered; what it would send is shown anyway)",
        }
    )?;
    if let Some(error) = &outcome.error {
        say!("error:  {}", super::terminal_line(error))?;
    }
    if let Some(preview) = &outcome.preview {
        say!("target: {}", preview.target)?;
        if !preview.headers.is_empty() {
            say!("headers:")?;
            for (name, value) in &preview.headers {
                say!("  {name}: {value}")?;
            }
        }
        say!("body:")?;
        let pretty = serde_json::from_str::<serde_json::Value>(&preview.body)
            .ok()
            .and_then(|value| serde_json::to_string_pretty(&value).ok());
        let body = pretty.unwrap_or_else(|| preview.body.clone());
        say!("{}", super::terminal_safe(&body))?;
    }
    Ok(())
}

/// The age at which deliveries end when a route sets no `max_age`, as `routes list` shows ages.
fn default_max_age() -> String {
    provtrail::routes::RetryPolicy::default()
        .max_age
        .map_or_else(String::new, |age| {
            humantime::format_duration(age).to_string()
        })
}
