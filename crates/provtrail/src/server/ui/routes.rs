//! `/routes`: every route with its sink, filter and counts; `/routes/{name}`: one route's
//! settings, dead letters and recent deliveries; `/routes/{name}/deliveries/{id}`: one delivery
//! with every attempt; `/routes/{name}/test?event_id=N`: a route tried on a stored event (does it
//! match, what would be sent), sending nothing.
//!
//! The pages read the same documents as `/api/v1/routes` (`api::routes`), so that they show the
//! routes exactly as the API does, with every configured secret removed. They only read: a
//! retry or a replay sends traffic to other systems, so it needs an admin token, and the UI signs
//! in with read tokens.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::PageQuery;
use super::layout::{self, Nav, ago, badge, link, number, time};
use super::{AppState, PageError, Viewer, cursor, given, not_applied};
use crate::server::api::routes::{
    self, RouteDeliveryDetail, RouteDeliveryView, RouteView, TestMissing,
};
use crate::store::{DeliveryState, Millis, RouteDeliveryQuery};

/// Deliveries per page of a route's list.
const PAGE_SIZE: usize = 50;
/// Dead letters shown on a route's page before the link to all of them.
const DEAD_SHOWN: usize = 20;
/// A pending delivery older than this means the sink is behind or down: the count is flagged.
const STALE_PENDING_MS: Millis = 15 * 60_000;
/// An error this recent, and not followed by a success, is flagged.
const RECENT_ERROR_MS: Millis = 60 * 60_000;

const STATES: [(&str, &str); 4] = [
    ("", "Any state"),
    ("pending", "Pending"),
    ("delivered", "Delivered"),
    ("dead", "Dead"),
];

/// What the configuration needs, shown when there is no route.
const EXAMPLE: &str = r#"[[routes]]
name = "failures-to-file"
filter = '$[?($.accountRequests[*].provisioningResult contains "FAILED")]'
[routes.sink]
type = "file"
path = "/var/lib/provtrail/failures.jsonl""#;

/// The link to a route's page.
pub(super) fn route_href(name: &str) -> String {
    format!("/routes/{}", layout::encode(name))
}

/// The link to a delivery's page, under its route's.
fn delivery_href(delivery: &RouteDeliveryView) -> String {
    format!("{}/deliveries/{}", route_href(&delivery.route), delivery.id)
}

/// A delivery's attempt count, linking to the page that lists them.
fn attempts_cell(delivery: &RouteDeliveryView) -> Markup {
    html! {
        td.num {
            a href=(delivery_href(delivery)) title={"Delivery " (delivery.id) ": every attempt"} {
                (delivery.attempts)
            }
        }
    }
}

/// Said on both pages: why there is no button, and where the buttons are.
fn read_only_note(name: Option<&str>) -> Markup {
    let route = name.unwrap_or("NAME");
    html! {
        p.note {
            "This page only reads. Retrying dead letters and replaying events send traffic to other "
            "systems, so they need an admin token (" code { "[admin] tokens" } " or "
            code { "--admin-token" } "), which the web UI does not sign in with: use "
            code { "provtrail deadletter retry --route " (route) } " and "
            code { "provtrail replay --route " (route) } ", or "
            code { "POST /api/v1/deadletters/retry" } " and "
            code { "POST /api/v1/routes/" (route) "/replay" } " with an admin token."
        }
    }
}

/// The pending count, flagged when the oldest pending delivery is old.
fn pending(view: &RouteView, now: Millis) -> Markup {
    let counts = &view.counts;
    let stale = counts
        .oldest_pending_at
        .filter(|at| counts.pending > 0 && now - at > STALE_PENDING_MS);
    html! {
        @if let Some(at) = stale {
            span.badge.warn { (number(counts.pending)) }
            br; span.muted.small { "oldest " (ago(at, now)) }
        } @else {
            (number(counts.pending))
        }
        @if let Some(since) = view.paused_since {
            br;
            span.badge.warn.paused title="The sink keeps failing: one delivery at a time probes it, and the deliveries waiting behind the pause use none of their attempts" {
                "sink paused"
            }
            br; span.muted.small.paused-since { "since " (time(since)) " UTC · " (ago(since, now)) }
        }
    }
}

/// The dead count, flagged when there are any.
fn dead(view: &RouteView) -> Markup {
    html! {
        @if view.counts.dead > 0 {
            span.badge.bad { (number(view.counts.dead)) }
        } @else {
            "0"
        }
    }
}

/// `1 attempt`, `5 attempts`.
fn attempts(n: u32) -> String {
    format!("{n} attempt{}", if n == 1 { "" } else { "s" })
}

/// The last error with its time; flagged when recent and no delivery succeeded since.
fn last_error(view: &RouteView, now: Millis, max: usize) -> Markup {
    let counts = &view.counts;
    let recent = counts.last_error_at.is_some_and(|at| {
        now - at < RECENT_ERROR_MS && counts.last_delivered_at.is_none_or(|ok| ok < at)
    });
    html! {
        @match (&counts.last_error, counts.last_error_at) {
            (Some(error), at) => {
                span class=(if recent { "error recent" } else { "error" }) { (layout::shorten(error, max)) }
                @if let Some(at) = at {
                    br; span.muted.small { (time(at)) " UTC · " (ago(at, now)) }
                }
            }
            (None, _) => { span.muted { "none" } }
        }
    }
}

fn filter(view: &RouteView, max: usize) -> Markup {
    html! {
        @match &view.filter {
            Some(filter) => { code { (layout::shorten(filter, max)) } }
            None if view.configured => { span.muted { "none: every event" } }
            None => { span.muted { "—" } }
        }
    }
}

/// `GET /routes`.
pub async fn list(viewer: Viewer, State(state): State<AppState>) -> Result<Response, PageError> {
    let list = routes::list(state.store.as_ref(), &state.routes).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let (configured, gone): (Vec<&RouteView>, Vec<&RouteView>) =
        list.routes.iter().partition(|view| view.configured);
    let sum = |count: fn(&RouteView) -> u64| configured.iter().map(|view| count(view)).sum::<u64>();
    let main = html! {
        h1 { "Routes" }
        p {
            "A route delivers the stored events that match its filter to a sink (a webhook, NATS "
            "JetStream or a file), at least once: failed attempts are retried with backoff, and "
            "after the last one a delivery waits in the dead letters."
        }
        @if configured.is_empty() {
            div.empty #no-routes {
                p { strong { "No routes are configured." } }
                p {
                    "Add " code { "[[routes]]" } " entries to the configuration file and restart "
                    "provtrail. Each has a " code { "name" } ", an optional Jayway " code { "filter" }
                    " (the dialect of ISC's subscription filters) and a " code { "[routes.sink]" }
                    " of type " code { "webhook" } ", " code { "nats" } " or " code { "file" } ". "
                    code { "provtrail config init" } " writes a commented configuration with examples, "
                    "and " code { "docs/routes.md" } " describes every setting. For example:"
                }
                pre.json tabindex="0" { code { (EXAMPLE) } }
            }
        } @else {
            p.summary {
                (configured.len()) @if configured.len() == 1 { " route" } @else { " routes" }
                " · " (number(sum(|v| v.counts.delivered))) " delivered · "
                (number(sum(|v| v.counts.pending))) " pending · "
                (number(sum(|v| v.counts.dead))) " dead"
            }
            (routes_table("Routes", &configured, now))
        }
        @if !gone.is_empty() {
            section aria-labelledby="gone" {
                h2 #gone { "No longer configured" }
                p.muted {
                    "These routes have deliveries but are not in the configuration any more. Their "
                    "pending deliveries wait, and are attempted when a route of that name is "
                    "configured again."
                }
                (layout::table("Routes no longer configured", &["Route", "Matched", "Delivered", "Pending", "Dead", "Last error"], html! {
                    @for view in &gone {
                        tr {
                            td { a href=(route_href(&view.name)) { (view.name) } }
                            td.num { (number(view.counts.matched)) }
                            td.num { (number(view.counts.delivered)) }
                            td.num { (pending(view, now)) }
                            td.num { (dead(view)) }
                            td { (last_error(view, now, 120)) }
                        }
                    }
                }))
            }
        }
        (read_only_note(None))
    };
    Ok(viewer.page("Routes", Nav::Routes, main))
}

/// The configured routes; on a phone, one card per route.
fn routes_table(caption: &str, views: &[&RouteView], now: Millis) -> Markup {
    const HEAD: [&str; 8] = [
        "Route",
        "Sink",
        "Filter",
        "Matched",
        "Delivered",
        "Pending",
        "Dead",
        "Last error",
    ];
    html! {
        div.table-wrap tabindex="0" role="region" aria-label=(caption) {
            table.routes {
                caption.visually-hidden { (caption) }
                thead { tr { @for name in HEAD { th scope="col" { (name) } } } }
                tbody {
                    @for view in views {
                        tr {
                            td data-label=(HEAD[0]) { a.route-name href=(route_href(&view.name)) { (view.name) } }
                            td data-label=(HEAD[1]) {
                                (badge(view.sink.as_deref().unwrap_or("?")))
                                @if let Some(target) = &view.target {
                                    " " span.mono.target { (layout::shorten(target, 80)) }
                                }
                            }
                            td data-label=(HEAD[2]) { (filter(view, 80)) }
                            td.num data-label=(HEAD[3]) { (number(view.counts.matched)) }
                            td.num data-label=(HEAD[4]) { (number(view.counts.delivered)) }
                            td.num data-label=(HEAD[5]) { (pending(view, now)) }
                            td.num data-label=(HEAD[6]) { (dead(view)) }
                            td data-label=(HEAD[7]) { (last_error(view, now, 160)) }
                        }
                    }
                }
            }
        }
    }
}

/// Query string of a route's page.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    state: Option<String>,
    before: Option<String>,
}

/// `GET /routes/{name}`.
pub async fn route(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
    PageQuery(params): PageQuery<Params>,
) -> Result<Response, PageError> {
    let store = state.store.as_ref();
    let chosen = given(&params.state).and_then(|name| DeliveryState::parse(&name));
    let recent = RouteDeliveryQuery {
        route: Some(name.clone()),
        state: chosen,
        before_id: cursor(&params.before),
        limit: PAGE_SIZE,
        ..RouteDeliveryQuery::default()
    };
    let dead_letters = RouteDeliveryQuery {
        route: Some(name.clone()),
        state: Some(DeliveryState::Dead),
        limit: DEAD_SHOWN,
        ..RouteDeliveryQuery::default()
    };
    // Independent reads: the store runs them side by side.
    let (view, recent, dead_letters) = tokio::join!(
        routes::route(store, &state.routes, &name),
        routes::deliveries(store, &state.routes, &recent),
        routes::deliveries(store, &state.routes, &dead_letters),
    );
    let view = view?.ok_or_else(|| PageError::NotFound(format!("there is no route {name:?}")))?;
    let (recent, dead_letters) = (recent?, dead_letters?);
    let now = chrono::Utc::now().timestamp_millis();
    let notices: Vec<String> = [
        not_applied(&params.state, chosen.is_some(), "a delivery state"),
        not_applied(
            &params.before,
            cursor(&params.before).is_some(),
            "a page of this list (a delivery id)",
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    let chosen = chosen.map_or("", DeliveryState::as_str);
    let href = route_href(&view.name);
    let counts = &view.counts;
    let main = html! {
        p.back { a href="/routes" { "← Routes" } }
        h1 {
            "Route " span.mono { (view.name) } " "
            @if view.configured { (badge(view.sink.as_deref().unwrap_or("?"))) } @else { (badge("not configured")) }
        }
        section aria-labelledby="settings" {
            h2 #settings { "Settings" }
            @if view.configured {
                dl.summary-grid {
                    dt { "Sink" } dd { (view.sink.as_deref().unwrap_or("?")) }
                    dt { "Target" } dd.mono { (view.target.as_deref().unwrap_or("—")) }
                    dt { "Filter" } dd { (filter(&view, 2_000)) }
                    @if let Some(retry) = &view.retry {
                        dt { "Retries" }
                        dd {
                            @match (retry.max_attempts, &retry.max_age) {
                                (Some(n), Some(age)) => { "up to " (attempts(n)) " within " (age) }
                                (Some(n), None) => { "up to " (attempts(n)) }
                                (None, Some(age)) => { "for " (age) }
                                (None, None) => { "without end" }
                            }
                            "; delay up to " (retry.initial_delay) ", doubling to at most " (retry.max_delay)
                        }
                    }
                    dt { "At once" } dd { (view.concurrency.unwrap_or(0)) " deliveries, each within " (view.timeout.as_deref().unwrap_or("?")) }
                    @if view.sink.as_deref() == Some("webhook") {
                        dt { "Private targets" }
                        dd { @if view.allow_private == Some(true) { "allowed" } @else { "refused" } }
                    }
                }
            } @else {
                p.alert.warn {
                    "This route is no longer in the configuration. Its pending deliveries wait, and "
                    "are attempted when a route named " code { (view.name) } " is configured again."
                }
            }
        }
        section aria-labelledby="counts" {
            h2 #counts { "Deliveries so far" }
            dl.summary-grid {
                dt { "Matched" } dd { (number(counts.matched)) }
                dt { "Delivered" }
                dd {
                    (number(counts.delivered))
                    @if let Some(at) = counts.last_delivered_at { span.muted { " · last " (time(at)) " UTC, " (ago(at, now)) } }
                }
                dt { "Pending" } dd { (pending(&view, now)) }
                dt { "Dead" } dd { (dead(&view)) }
                dt { "Failed attempts" } dd { (number(counts.failed_attempts)) }
                dt { "Last error" } dd { (last_error(&view, now, layout::MAX_SHOWN)) }
            }
        }
        section aria-labelledby="dead-letters" {
            h2 #dead-letters { "Dead letters (" (number(counts.dead)) ")" }
            @if dead_letters.items.is_empty() {
                p.muted { "None." }
            } @else {
                (delivery_table("Dead letters", &dead_letters.items, now))
                @if counts.dead > dead_letters.items.len() as u64 {
                    p { a href=(link(&href, &[("state", "dead")])) { "All " (number(counts.dead)) " dead letters" } }
                }
            }
        }
        section aria-labelledby="recent" {
            h2 #recent { "Recent deliveries" }
            form.filters.inline method="get" action=(href) {
                (layout::select("state", "State", chosen, &STATES))
                button type="submit" { "Show" }
            }
            (layout::notices(&notices))
            @if recent.items.is_empty() {
                p.empty { "No deliveries" @if !chosen.is_empty() { " in this state" } "." }
            } @else {
                (delivery_table("Recent deliveries", &recent.items, now))
            }
            nav.pager aria-label="Pages" {
                @if params.before.is_some() { a href=(link(&href, &[("state", chosen)])) { "← Newest" } }
                @if let Some(next) = recent.next_cursor {
                    a rel="next" href=(link(&href, &[("state", chosen), ("before", &next.to_string())])) { "Older →" }
                }
            }
        }
        (read_only_note(Some(&view.name)))
    };
    Ok(viewer.page(&format!("Route {}", view.name), Nav::Routes, main))
}

/// `GET /routes/{name}/deliveries/{id}`: one delivery, what became of it and every attempt, as
/// `GET /api/v1/route-deliveries/{id}` gives them (secrets removed).
pub async fn delivery(
    viewer: Viewer,
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let missing = || PageError::NotFound(format!("route {name:?} has no delivery {id:?}"));
    let id: i64 = id.parse().map_err(|_| missing())?;
    let detail = routes::delivery(state.store.as_ref(), &state.routes, id)
        .await?
        .filter(|detail| detail.route == name)
        .ok_or_else(missing)?;
    let now = chrono::Utc::now().timestamp_millis();
    let main = delivery_main(&detail, now);
    Ok(viewer.page(&format!("Delivery {}", detail.id), Nav::Routes, main))
}

/// The content of a delivery's page.
fn delivery_main(detail: &RouteDeliveryDetail, now: Millis) -> Markup {
    let route = route_href(&detail.route);
    html! {
        p.back { a href=(route) { "← Route " (detail.route) } }
        h1 { "Delivery " (detail.id) " " (badge(detail.state.as_str())) }
        dl.summary-grid {
            dt { "Route" } dd { a.route-name href=(route) { (detail.route) } }
            dt { "Event" }
            dd {
                a.mono href={"/event/" (detail.event_id)} {
                    @match &detail.tracking_number {
                        Some(number) => { (number) }
                        None => { "event " (detail.event_id) }
                    }
                }
            }
            dt { "Origin" } dd { (detail.origin) }
            dt { "Created" } dd { (time(detail.created_at)) " UTC" }
            dt { "Where it stands" }
            dd {
                @match (detail.next_attempt_at, detail.delivered_at) {
                    (Some(next), _) => {
                        "next attempt " (time(next)) " UTC"
                        @if next <= now { span.muted { " (due)" } }
                    }
                    (None, Some(at)) => { "delivered " (time(at)) " UTC, " (ago(at, now)) }
                    (None, None) => { "no further attempt; since " (time(detail.updated_at)) " UTC" }
                }
            }
            @if let Some(error) = &detail.last_error {
                dt { "Last error" } dd.errors { (layout::ClipText(error)) }
            }
        }
        section aria-labelledby="attempts" {
            h2 #attempts { "Attempts (" (detail.attempts.len()) ")" }
            @if detail.attempts.is_empty() {
                p.empty { "No attempt yet." }
            } @else {
                (layout::table(
                    "Attempts",
                    &["Attempt", "Started (UTC)", "Latency", "Outcome", "Status", "Error"],
                    html! {
                        @for attempt in &detail.attempts {
                            tr {
                                td.num { (attempt.attempt) }
                                td.nowrap { (time(attempt.started_at)) }
                                td.num { (format!("{:.1} ms", attempt.latency_ms)) }
                                td { (badge(&attempt.outcome)) }
                                td.num {
                                    @match attempt.status {
                                        Some(status) => { (status) }
                                        None => { span.muted { "—" } }
                                    }
                                }
                                td.errors { @if let Some(error) = &attempt.error { (layout::ClipText(error)) } }
                            }
                        }
                    },
                ))
            }
        }
        (read_only_note(Some(&detail.route)))
    }
}

/// The query of a route's test page.
#[derive(Debug, Default, Deserialize)]
pub struct TestParams {
    event_id: Option<String>,
}

/// The link to the page that tries a route on an event.
pub(super) fn test_href(name: &str, event_id: i64) -> String {
    link(
        &format!("{}/test", route_href(name)),
        &[("event_id", &event_id.to_string())],
    )
}

/// `GET /routes/{name}/test?event_id=N`: does the route's filter match the stored event, and what
/// would its sink be sent (secrets removed)? Nothing is sent. Without an event, a form asks for
/// one.
pub async fn test(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
    PageQuery(params): PageQuery<TestParams>,
) -> Result<Response, PageError> {
    if state.routes.get(&name).is_none() {
        return Err(PageError::NotFound(format!(
            "there is no configured route {name:?}"
        )));
    }
    let view = RouteView::new(&state.routes, &name, None);
    let asked = given(&params.event_id);
    let tried = match &asked {
        None => None,
        Some(text) => {
            let id: i64 = text.parse().map_err(|_| {
                PageError::BadRequest(format!("{text:?} is not an event id (a whole number)"))
            })?;
            match routes::test(state.store.as_ref(), &state.routes, &name, id).await? {
                Ok(result) => Some((id, result)),
                Err(TestMissing::Event) => {
                    return Err(PageError::NotFound(format!("there is no event {id}")));
                }
                Err(TestMissing::Route) => {
                    return Err(PageError::NotFound(format!(
                        "there is no configured route {name:?}"
                    )));
                }
            }
        }
    };
    let href = route_href(&name);
    let main = html! {
        p.back { a href=(href) { "← Route " (name) } }
        h1 { "Try route " span.mono { (name) } }
        p {
            "Does the route's filter match a stored event, and what would its sink be sent? "
            strong { "Nothing is sent." }
        }
        dl.summary-grid {
            dt { "Filter" } dd { (filter(&view, 2_000)) }
            dt { "Sink" } dd { (view.sink.as_deref().unwrap_or("?")) }
            dt { "Target" } dd.mono { (view.target.as_deref().unwrap_or("—")) }
        }
        form.filters.inline method="get" action={(href) "/test"} {
            label.field {
                span { "Event id" }
                input type="number" name="event_id" min="1" required
                    value=(asked.as_deref().unwrap_or_default());
            }
            button type="submit" { "Try" }
        }
        @if let Some((id, result)) = &tried {
            section aria-labelledby="outcome" {
                h2 #outcome {
                    @if result.matched { "The filter matches " } @else { "The filter does not match " }
                    a href={"/event/" (id)} { "event " (id) }
                    " " (badge(if result.matched { "matches" } else { "no match" }))
                }
                @if !result.matched {
                    p.muted {
                        "A delivery is made only for events that match; this is what one would "
                        "send if the event did."
                    }
                }
                @if let Some(error) = &result.error {
                    p.alert.warn { "Nothing can be rendered: " (error) }
                }
                @if let Some(preview) = &result.preview {
                    dl.summary-grid {
                        dt { "To" } dd.mono { (preview.target) }
                    }
                    @if !preview.headers.is_empty() {
                        (layout::table(
                            "Headers",
                            &["Header", "Value"],
                            html! {
                                @for (header, value) in &preview.headers {
                                    tr { td.mono { (header) } td.mono { (value) } }
                                }
                            },
                        ))
                    }
                    @let shown = pretty(&preview.body);
                    h3 {
                        "Body"
                        @if shown != preview.body { span.muted { " (indented here; sent as it is)" } }
                    }
                    pre.json { (shown) }
                }
            }
        }
    };
    Ok(viewer.page(&format!("Try route {name}"), Nav::Routes, main))
}

/// A body indented when it is JSON, as it is otherwise.
fn pretty(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| body.to_owned())
}

/// Deliveries of a route, newest first.
fn delivery_table(caption: &str, items: &[RouteDeliveryView], now: Millis) -> Markup {
    layout::table(
        caption,
        &[
            "Created (UTC)",
            "Event",
            "State",
            "Attempts",
            "Last status",
            "Last latency",
            "Last error",
            "When",
        ],
        html! {
            @for delivery in items {
                tr {
                    td.nowrap { (time(delivery.created_at)) }
                    td {
                        a.mono href={"/event/" (delivery.event_id)} {
                            @match &delivery.tracking_number {
                                Some(number) => { (layout::shorten(number, 40)) }
                                None => { "event " (delivery.event_id) }
                            }
                        }
                        @if delivery.origin != "ingest" { br; span.muted.small { (delivery.origin) } }
                    }
                    td { (badge(delivery.state.as_str())) }
                    (attempts_cell(delivery))
                    (attempt_cells(delivery, now))
                }
            }
        },
    )
}

/// The cells that say how a delivery's last attempt went and what comes next: last status, last
/// latency, last error (secrets removed, shortened) and when.
fn attempt_cells(delivery: &RouteDeliveryView, now: Millis) -> Markup {
    html! {
        td.num { @match delivery.last_status { Some(status) => { (status) } None => { span.muted { "—" } } } }
        td.num {
            @match delivery.last_latency_ms {
                Some(ms) => { (format!("{ms:.1} ms")) }
                None => { span.muted { "—" } }
            }
        }
        td.errors { @if let Some(error) = &delivery.last_error { (layout::shorten(error, 160)) } }
        td.nowrap {
            @match (delivery.next_attempt_at, delivery.delivered_at) {
                (Some(next), _) => {
                    "next " (time(next))
                    @if next <= now { br; span.muted.small { "due" } }
                }
                (None, Some(at)) => { "delivered " (time(at)) }
                (None, None) => { "since " (time(delivery.updated_at)) }
            }
        }
    }
}

/// One event's deliveries to routes, newest first, as on the event page: the route rather than
/// the event in each row.
pub(super) fn event_delivery_table(items: &[RouteDeliveryView], now: Millis) -> Markup {
    layout::table(
        "Route deliveries",
        &[
            "Route",
            "State",
            "Attempts",
            "Last status",
            "Last latency",
            "Last error",
            "When (UTC)",
            "Origin",
        ],
        html! {
            @for delivery in items {
                tr {
                    td { a.route-name href=(route_href(&delivery.route)) { (delivery.route) } }
                    td { (badge(delivery.state.as_str())) }
                    (attempts_cell(delivery))
                    (attempt_cells(delivery, now))
                    td.nowrap { (delivery.origin) br; span.muted.small { "created " (time(delivery.created_at)) } }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::api::routes::{AttemptView, DeliveryStateValue};

    #[test]
    fn a_delivery_page_shows_a_long_error_clipped() {
        let error = format!("connection refused: {}", "x".repeat(5_000));
        let detail = RouteDeliveryDetail {
            id: 7,
            event_id: 1,
            tracking_number: Some("tn-1".to_owned()),
            route: "hook".to_owned(),
            state: DeliveryStateValue::Dead,
            origin: "ingest".to_owned(),
            created_at: 0,
            updated_at: 0,
            next_attempt_at: None,
            delivered_at: None,
            last_status: None,
            last_error: Some(error.clone()),
            last_latency_ms: Some(1.0),
            attempts: vec![AttemptView {
                attempt: 1,
                started_at: 0,
                latency_ms: 1.0,
                outcome: "dead".to_owned(),
                status: None,
                error: Some(error.clone()),
            }],
        };
        let html = delivery_main(&detail, 0).into_string();
        assert!(!html.contains(&"x".repeat(layout::MAX_SHOWN)), "{html}");
        assert_eq!(
            html.matches("5,020 characters in all)").count(),
            2,
            "{html}"
        );
    }

    #[test]
    fn one_attempt_is_one_attempt() {
        assert_eq!(attempts(1), "1 attempt");
        assert_eq!(attempts(5), "5 attempts");
    }
}
