//! `provtrail deadletter list|retry`: deliveries given up on, and sending them again.

use std::process::ExitCode;

use provtrail::app::Settings;
use provtrail::server::api::routes as api_routes;
use provtrail::store::{DeliveryState, OutboxWrite, RouteDeliveryQuery, Store};

use super::OutputFormat;
use super::routes::{open_store, open_store_to_read, settings};
use super::serve::ServerArgs;
use super::time::format_time;

/// Arguments of `provtrail deadletter`.
#[derive(Debug, clap::Args)]
pub struct DeadletterArgs {
    #[command(subcommand)]
    command: DeadletterCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DeadletterCommand {
    /// List dead deliveries, newest first, with their last error.
    List {
        /// Only this route's.
        #[arg(long)]
        route: Option<String>,
        /// Most to list (1 to 1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        /// Only those with an id below this: the next page starts below the last id listed.
        #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
        before_id: Option<i64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        #[command(flatten)]
        server: Box<ServerArgs>,
    },
    /// Put dead deliveries back to pending with a fresh retry budget.
    Retry {
        /// Only this route's.
        #[arg(long)]
        route: Option<String>,
        /// Only these deliveries (repeatable).
        #[arg(long = "id")]
        ids: Vec<i64>,
        /// Every dead delivery (of --route, when given).
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[command(flatten)]
        server: Box<ServerArgs>,
    },
}

pub async fn run(args: DeadletterArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DeadletterCommand::List {
            route,
            limit,
            before_id,
            format,
            server,
        } => {
            let settings = settings(&server)?;
            let store = open_store_to_read(&settings).await?;
            // A misspelt name would otherwise list nothing and look like "no dead letters".
            if let Err(err) = known_route(store.as_ref(), &settings, route.as_deref()).await {
                store.close().await;
                return Err(err);
            }
            let query = RouteDeliveryQuery {
                route,
                state: Some(DeliveryState::Dead),
                before_id,
                limit: limit.into(),
                ..RouteDeliveryQuery::default()
            };
            if format == OutputFormat::Json {
                // The API's documents (`GET /api/v1/deadletters`), one per line.
                let list = api_routes::deliveries(store.as_ref(), &settings.routes, &query).await;
                store.close().await;
                let list = list?;
                for delivery in list.items {
                    say!("{}", serde_json::to_string(&delivery)?)?;
                }
                if let Some(next) = list.next_cursor {
                    note!("(more: --before-id {next})");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let page = store.route_deliveries(&query).await;
            store.close().await;
            let page = page?;
            // Said on standard error: the list itself (for a script) stays empty.
            if page.items.is_empty() && before_id.is_none() {
                note!("no dead letters");
            }
            for mut delivery in page.items {
                delivery.last_error = delivery
                    .last_error
                    .map(|error| settings.routes.redact(&error));
                say!(
                    "#{} {} event {} ({}) {}, dead since {}: {}",
                    delivery.id,
                    delivery.route,
                    delivery.event_id,
                    super::terminal_line(delivery.tracking_number.as_deref().unwrap_or("-")),
                    super::counted(u64::from(delivery.attempts), "attempt", "attempts"),
                    format_time(delivery.updated_at),
                    // A receiver's answer: no terminal control codes from it.
                    super::terminal_line(delivery.last_error.as_deref().unwrap_or("-"))
                )?;
            }
            if let Some(next) = page.next_cursor {
                note!("(more: --before-id {next})");
            }
            Ok(ExitCode::SUCCESS)
        }
        DeadletterCommand::Retry {
            route,
            ids,
            all,
            server,
        } => {
            anyhow::ensure!(
                all || !ids.is_empty() || route.is_some(),
                "say which dead letters: --id N (repeatable), --route NAME, or --all"
            );
            let settings = settings(&server)?;
            let store = open_store(&settings).await?;
            // A misspelt name would otherwise retry nothing and look like success.
            if let Err(err) = known_route(store.as_ref(), &settings, route.as_deref()).await {
                store.close().await;
                return Err(err);
            }
            let asked = ids.iter().collect::<std::collections::HashSet<_>>().len();
            let whole_routes = ids.is_empty();
            let retried = store
                .outbox_write(OutboxWrite::RetryDead {
                    route: route.clone(),
                    ids,
                    at: chrono::Utc::now().timestamp_millis(),
                })
                .await;
            // Those still dead once the retry is committed: their events have a pending
            // delivery (counted after, so that a retry running beside this one is counted too).
            let still_dead = match (&retried, whole_routes) {
                (Ok(_), true) => dead_count(store.as_ref(), route.as_deref()).await,
                _ => None,
            };
            // Routes that are not configured (renamed, or removed) keep their deliveries
            // pending until they are configured again: no server delivers them now.
            // Said only with the routes of a configuration file at hand: without one, every
            // route would look unconfigured, where the server has its own file.
            let config_read = server.config_file().is_some();
            let unconfigured: Vec<(String, u64)> = match &retried {
                Ok(n) if *n > 0 && config_read => store
                    .route_counts()
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|counts| {
                        counts.pending > 0
                            && settings.routes.get(&counts.route).is_none()
                            && route.as_deref().is_none_or(|route| route == counts.route)
                    })
                    .map(|counts| (counts.route, counts.pending))
                    .collect(),
                _ => Vec::new(),
            };
            store.close().await;
            let retried = retried?;
            if unconfigured.is_empty() {
                note!(
                    "{} pending again; a running server delivers {} within a second, a stopped \
                     one on its next start",
                    super::counted(retried, "dead delivery is", "dead deliveries are"),
                    if retried == 1 { "it" } else { "them" },
                );
            } else {
                note!(
                    "{} pending again",
                    super::counted(retried, "dead delivery is", "dead deliveries are"),
                );
                for (name, pending) in &unconfigured {
                    note!(
                        "route {name:?} is not configured: its {} delivered once a route of \
                         that name is configured again (with a sink), not before",
                        super::counted(*pending, "pending delivery is", "pending deliveries are"),
                    );
                }
            }
            if let Some(left) = still_dead.filter(|left| *left > 0) {
                note!(
                    "{} still dead: {} already {} a pending delivery to the route (from a \
                     replay, or another of {} dead letters retried just now)",
                    super::counted(left, "dead delivery is", "dead deliveries are"),
                    if left == 1 {
                        "its event"
                    } else {
                        "their events"
                    },
                    if left == 1 { "has" } else { "have" },
                    if left == 1 { "its" } else { "their" },
                );
            }
            // Ids that name no dead delivery (a typo, or one delivered since) retried nothing:
            // say so, and fail, rather than look like success.
            if asked > 0 && (retried as usize) < asked {
                let of_route = route
                    .as_deref()
                    .map(|route| format!(" of route {route:?}"))
                    .unwrap_or_default();
                note!(
                    "{} of the {asked} ids given name no dead delivery{of_route}, or one whose \
                     event already has a pending delivery to the route (see provtrail deadletter \
                     list)",
                    asked - retried as usize
                );
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Dead deliveries of `route` (or of every route) now.
async fn dead_count(store: &dyn Store, route: Option<&str>) -> Option<u64> {
    let counts = store.route_counts().await.ok()?;
    Some(
        counts
            .iter()
            .filter(|counts| route.is_none_or(|route| counts.route == route))
            .map(|counts| counts.dead)
            .sum(),
    )
}

/// An error for a route name that is neither configured nor has deliveries.
async fn known_route(
    store: &dyn Store,
    settings: &Settings,
    name: Option<&str>,
) -> anyhow::Result<()> {
    let Some(name) = name else {
        return Ok(());
    };
    if settings.routes.get(name).is_some() {
        return Ok(());
    }
    let counts = store.route_counts().await?;
    if counts.iter().any(|counts| counts.route == name) {
        return Ok(());
    }
    let configured: Vec<&str> = settings
        .routes
        .iter()
        .map(|route| route.name.as_str())
        .collect();
    anyhow::bail!(
        "there is no route {name:?}: no route of that name is configured and none has \
         deliveries (configured: {})",
        if configured.is_empty() {
            "none".to_owned()
        } else {
            configured.join(", ")
        }
    )
}
