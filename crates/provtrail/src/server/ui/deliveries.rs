//! `/deliveries`: every request to the ingest routes, kept or not; `/quarantine` and
//! `/quarantine/{id}`: what arrived but is not a valid event, with every problem and the body.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::PageQuery;
use super::layout::{self, Nav, badge, link, time};
use super::{
    AppState, PageError, Viewer, cursor, given, not_applied, range_name, range_options, range_since,
};
use crate::store::{DeliveryQuery, QuarantineQuery};

const PAGE_SIZE: usize = 100;

const OUTCOMES: [(&str, &str); 5] = [
    ("", "Any outcome"),
    ("accepted", "Accepted"),
    ("duplicate", "Duplicate"),
    ("quarantined", "Quarantined"),
    ("rejected", "Rejected"),
];

const REASONS: [(&str, &str); 5] = [
    ("", "Any reason"),
    ("invalid_event", "Invalid event"),
    ("not_json", "Not JSON"),
    ("unsupported_media_type", "Unsupported media type"),
    ("bad_channel", "Bad channel name"),
];

/// Query string of the lists.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    outcome: Option<String>,
    range: Option<String>,
    reason: Option<String>,
    before: Option<String>,
}

/// `GET /deliveries`.
pub async fn log(
    viewer: Viewer,
    State(state): State<AppState>,
    PageQuery(params): PageQuery<Params>,
) -> Result<Response, PageError> {
    let outcome = given(&params.outcome).filter(|o| OUTCOMES.iter().any(|(v, _)| v == o));
    // The log is walked newest first and an outcome is not indexed: a rare outcome over all time
    // reads the whole log. A week by default keeps every view of it quick.
    let range = range_name(&params.range, "7d");
    let notices: Vec<String> = [
        not_applied(&params.outcome, outcome.is_some(), "an outcome"),
        not_applied(
            &params.range,
            given(&params.range).as_deref() == Some(range.as_str()),
            "a time range",
        ),
        not_applied(
            &params.before,
            cursor(&params.before).is_some(),
            "a page of this list (a request id)",
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    let now = chrono::Utc::now().timestamp_millis();
    let page = state
        .store
        .deliveries(&DeliveryQuery {
            outcome: outcome.clone(),
            since: range_since(&range, now),
            before_id: cursor(&params.before),
            limit: PAGE_SIZE,
            ..DeliveryQuery::default()
        })
        .await?;
    let outcome = outcome.unwrap_or_default();
    let main = html! {
        h1 { "Delivery log" }
        p { "Every request to " code { "/events" } ", whatever became of it: what ISC says it sent can be checked here." }
        form.filters.inline method="get" action="/deliveries" {
            (layout::select("outcome", "Outcome", &outcome, &OUTCOMES))
            (layout::select("range", "Received", &range,
                &range_options()))
            button type="submit" { "Show" }
        }
        (layout::notices(&notices))
        @if page.items.is_empty() {
            p.empty {
                "No deliveries in this range."
                @if range != "all" { " " a href=(link("/deliveries", &[("outcome", &outcome), ("range", "all")])) { "Look at all time" } }
            }
        } @else {
            (super::event::delivery_table(&page.items))
        }
        nav.pager aria-label="Pages" {
            @if params.before.is_some() { a href=(link("/deliveries", &[("outcome", &outcome), ("range", &range)])) { "← Newest" } }
            @if let Some(next) = page.next_cursor {
                a rel="next" href=(link("/deliveries", &[("outcome", &outcome), ("range", &range), ("before", &next.to_string())])) { "Older →" }
            }
        }
    };
    Ok(viewer.page("Delivery log", Nav::Deliveries, main))
}

/// `GET /quarantine`.
pub async fn quarantine(
    viewer: Viewer,
    State(state): State<AppState>,
    PageQuery(params): PageQuery<Params>,
) -> Result<Response, PageError> {
    let reason = given(&params.reason).filter(|r| REASONS.iter().any(|(v, _)| v == r));
    let notices: Vec<String> = [
        not_applied(&params.reason, reason.is_some(), "a reason"),
        not_applied(
            &params.before,
            cursor(&params.before).is_some(),
            "a page of this list (an entry id)",
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    let page = state
        .store
        .quarantine(&QuarantineQuery {
            reason: reason.clone(),
            before_id: cursor(&params.before),
            limit: PAGE_SIZE,
            ..QuarantineQuery::default()
        })
        .await?;
    let reason = reason.unwrap_or_default();
    let main = html! {
        h1 { "Quarantine" }
        p { "Deliveries that were kept but are not valid events: JSON that breaks the schema, or not JSON at all." }
        form.filters.inline method="get" action="/quarantine" {
            (layout::select("reason", "Reason", &reason, &REASONS))
            button type="submit" { "Show" }
        }
        (layout::notices(&notices))
        @if page.items.is_empty() { p.empty { "Nothing in quarantine." } }
        (layout::table("Quarantine", &["Received (UTC)", "Reason", "Errors", "Remote address", "Size", "Entry"], html! {
            @for entry in &page.items {
                tr {
                    td.nowrap { (time(entry.received_at)) }
                    td { (badge(&entry.reason)) }
                    td.errors {
                        @if let Some(first) = entry.errors.first() {
                            code { (layout::shorten(&first.path, 40)) } ": " (layout::shorten(&first.message, 80))
                            @if entry.errors.len() > 1 { " " span.more { "+" (entry.errors.len() - 1) " more" } }
                        }
                    }
                    td.mono { (entry.remote_addr.as_deref().unwrap_or("—")) }
                    td.num { (layout::bytes(entry.size)) }
                    td { a href={"/quarantine/" (entry.id)} { "entry " (entry.id) } }
                }
            }
        }))
        nav.pager aria-label="Pages" {
            @if params.before.is_some() { a href=(link("/quarantine", &[("reason", &reason)])) { "← Newest" } }
            @if let Some(next) = page.next_cursor {
                a rel="next" href=(link("/quarantine", &[("reason", &reason), ("before", &next.to_string())])) { "Older →" }
            }
        }
    };
    Ok(viewer.page("Quarantine", Nav::Quarantine, main))
}

/// `GET /quarantine/{id}`.
pub async fn quarantine_entry(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id: i64 = id
        .parse()
        .map_err(|_| PageError::NotFound(format!("there is no quarantine entry {id:?}")))?;
    let entry = state
        .store
        .get_quarantine(id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("there is no quarantine entry {id}")))?;
    let raw = entry.raw.clone().unwrap_or_default();
    let utf8 = std::str::from_utf8(&raw).ok();
    let main = html! {
        p.back { a href="/quarantine" { "← Quarantine" } }
        h1 { "Quarantine entry " (entry.id) " " (badge(&entry.reason)) }
        dl.summary-grid {
            dt { "Received at" } dd { (time(entry.received_at)) " UTC" }
            dt { "Request" } dd.mono { (entry.method) " " (entry.path) " · " (layout::bytes(entry.size)) }
            dt { "Channel" } dd { (entry.channel.as_deref().unwrap_or("—")) }
            dt { "Remote address" } dd.mono { (entry.remote_addr.as_deref().unwrap_or("—")) }
            dt { "Invocation id" } dd.mono { (entry.invocation_id.as_deref().unwrap_or("—")) }
        }
        section aria-labelledby="errors" {
            h2 #errors { "Problems (" (entry.errors.len()) ")" }
            (layout::table("Problems", &["Path", "Problem"], html! {
                @for issue in &entry.errors {
                    tr { td.mono { (layout::ClipText(&issue.path)) } td { (layout::ClipText(&issue.message)) } }
                }
            }))
        }
        @if !entry.warnings.is_empty() {
            section aria-labelledby="warnings" {
                h2 #warnings { "Warnings (" (entry.warnings.len()) ")" }
                (layout::table("Warnings", &["Path", "Warning"], html! {
                    @for issue in &entry.warnings {
                        tr { td.mono { (layout::ClipText(&issue.path)) } td { (layout::ClipText(&issue.message)) } }
                    }
                }))
            }
        }
        section aria-labelledby="body" {
            h2 #body { "Body as received" }
            @match utf8 {
                Some(text) => { pre.json tabindex="0" { code { (text) } } }
                None => {
                    p.muted { "The body is not UTF-8; bytes that are not are shown as �." }
                    pre.json tabindex="0" { code { (String::from_utf8_lossy(&raw)) } }
                }
            }
        }
    };
    Ok(viewer.page(&format!("Quarantine entry {id}"), Nav::Quarantine, main))
}
