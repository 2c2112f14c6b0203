//! `/event/{id}`: one event, whole: summary, account requests with their results and attribute
//! changes, errors and warnings, its deliveries to routes, the body (pretty and exact), and every
//! request that delivered it.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};
use provtrail_model::AccountRequest;

use super::layout::{self, Clip, Nav, badge, time};
use super::routes::{event_delivery_table, test_href};
use super::{AppState, PageError, Viewer};
use crate::server::api::routes::{self, RouteDeliveryList};
use crate::store::{DeliveryRecord, EventDetail, Millis, RouteDeliveryQuery};

/// Route deliveries shown, newest first; the routes' pages list every delivery.
const ROUTE_DELIVERIES_SHOWN: usize = 50;

/// Most characters of the tracking number in the page's heading.
const HEADING_CHARS: usize = 80;

/// The event's deliveries to routes, and whether any route is configured.
struct RouteDeliveries {
    /// `Err` with the reason when they could not be read: the event is still shown.
    list: Result<RouteDeliveryList, String>,
    /// The configured routes, which the page offers to try on the event.
    routes: Vec<String>,
    now: Millis,
}

/// `GET /event/{id}`.
pub async fn page(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id: i64 = id
        .parse()
        .map_err(|_| PageError::NotFound(format!("there is no event {id:?}")))?;
    let query = RouteDeliveryQuery {
        event_id: Some(id),
        limit: ROUTE_DELIVERIES_SHOWN,
        ..RouteDeliveryQuery::default()
    };
    // Independent reads: the store runs them side by side.
    let (detail, deliveries) = tokio::join!(
        state.store.get_event(id),
        routes::deliveries(state.store.as_ref(), &state.routes, &query),
    );
    let detail = detail?.ok_or_else(|| PageError::NotFound(format!("there is no event {id}")))?;
    let deliveries = RouteDeliveries {
        list: deliveries.map_err(|err| err.to_string()),
        routes: state
            .routes
            .iter()
            .map(|route| route.name.clone())
            .collect(),
        now: chrono::Utc::now().timestamp_millis(),
    };
    let title = format!(
        "Event {}",
        layout::shorten(&detail.summary.tracking_number, 40)
    );
    let body = crate::server::made_apart(move || render(&detail, &deliveries)).await?;
    Ok(viewer.page(&title, Nav::Events, body))
}

/// The section of the event's route deliveries: none when there are none and no route is
/// configured.
fn route_deliveries(id: i64, deliveries: &RouteDeliveries) -> Markup {
    let list = match &deliveries.list {
        Ok(list) => list,
        Err(reason) => {
            return html! {
                section aria-labelledby="route-deliveries" {
                    h2 #route-deliveries { "Route deliveries" }
                    p.note { "The route deliveries could not be read: " (reason) }
                }
            };
        }
    };
    let items = &list.items;
    if items.is_empty() && deliveries.routes.is_empty() {
        return html! {};
    }
    html! {
        section aria-labelledby="route-deliveries" {
            h2 #route-deliveries { "Route deliveries" }
            @if items.is_empty() {
                p.muted #no-route-deliveries {
                    "No route matched this event (routes match events as they arrive, and when "
                    "replayed)."
                }
            } @else {
                (event_delivery_table(items, deliveries.now))
                @if list.next_cursor.is_some() {
                    p.note {
                        "The newest " (ROUTE_DELIVERIES_SHOWN) " deliveries of this event; all of "
                        "them are in " code { "GET /api/v1/route-deliveries?event_id=" (id) } "."
                    }
                }
            }
            @if !deliveries.routes.is_empty() {
                p.try-routes {
                    "Try a route on this event (nothing is sent): "
                    @for (n, name) in deliveries.routes.iter().enumerate() {
                        @if n > 0 { ", " }
                        a.route-name href=(test_href(name, id)) { (name) }
                    }
                }
            }
        }
    }
}

fn optional(value: Option<&str>) -> Markup {
    html! {
        @match value {
            Some(value) if !value.is_empty() => { (Clip(value)) }
            _ => { span.muted { "—" } }
        }
    }
}

fn render(detail: &EventDetail, deliveries: &RouteDeliveries) -> Markup {
    let event = &detail.summary;
    // Stored events passed validation at ingest; should a later model read one differently, the
    // page still shows everything that does not need the parsed body.
    let parsed = crate::ingest::read_stored(&detail.raw);
    let pretty = serde_json::from_slice::<serde_json::Value>(&detail.raw)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok());
    html! {
        p.back { a href="/" { "← Events" } }
        // A heading wraps a long value over many lines above everything else: a short part of
        // it, the summary below shows more.
        h1 { "Event " span.mono { (layout::shorten(&event.tracking_number, HEADING_CHARS)) } " " (badge(&event.outcome)) }
        section aria-labelledby="summary" {
            h2 #summary { "Summary" }
            dl.summary-grid {
                dt { "Tracking number" }
                dd { (layout::events_link(&[("number", &event.tracking_number)], html! { span.mono { (Clip(&event.tracking_number)) } })) }
                dt { "Action" } dd { (optional(event.action.as_deref())) }
                dt { "Recipient" }
                dd {
                    (layout::events_link(&[("identity", &event.recipient_id)], html! { (Clip(&event.recipient_name)) }))
                    " " span.mono.muted { (Clip(&event.recipient_id)) }
                }
                dt { "Requester" }
                dd {
                    @match (&event.requester_name, &event.requester_id) {
                        (Some(name), Some(id)) => {
                            (layout::events_link(&[("identity", id)], html! { (Clip(name)) })) " " span.mono.muted { (Clip(id)) }
                        }
                        (name, id) => { (optional(name.as_deref().or(id.as_deref()))) }
                    }
                }
                dt { "Outcome" }
                dd { (badge(&event.outcome)) " " (event.failed_count) " of " (event.account_count) " account requests failed" }
                dt { "Sources" } dd { (Clip(&event.sources)) }
                dt { "Received at" } dd { (time(event.received_at)) " UTC" }
                dt { "Channel" } dd { (optional(event.channel.as_deref())) }
                dt { "Remote address" } dd.mono { (optional(detail.remote_addr.as_deref())) }
                dt { "Invocation id" } dd.mono { (optional(event.invocation_id.as_deref())) }
                dt { "Request" } dd.mono { (detail.method) " " (detail.path) " · " (layout::bytes(detail.size)) }
            }
        }
        section aria-labelledby="requests" {
            h2 #requests { "Account requests" }
            @match &parsed {
                Ok(parsed) => { (account_requests(&parsed.account_requests)) }
                Err(err) => { p.alert { "The body could not be read as an event: " (err.to_string()) } }
            }
        }
        section aria-labelledby="problems" {
            h2 #problems { "Errors and warnings" }
            @if event.errors.is_empty() && detail.event_warnings.is_empty() && detail.validation_warnings.is_empty() {
                p.muted { "None." }
            }
            @if !event.errors.is_empty() {
                h3 { "Errors in the event" }
                ul.problems.bad { @for error in &event.errors { li { (Clip(error)) } } }
            }
            @if !detail.event_warnings.is_empty() {
                h3 { "Warnings in the event" }
                ul.problems.warn { @for warning in &detail.event_warnings { li { (Clip(warning)) } } }
            }
            @if !detail.validation_warnings.is_empty() {
                h3 { "Validation warnings" }
                ul.problems.info {
                    @for issue in &detail.validation_warnings {
                        li { code { (issue.path) } ": " (issue.message) }
                    }
                }
            }
        }
        (route_deliveries(event.id, deliveries))
        section aria-labelledby="body" {
            h2 #body { "Body" }
            @if let Some(pretty) = pretty {
                details open {
                    summary { "JSON, pretty-printed" }
                    pre.json tabindex="0" { code { (pretty) } }
                }
            }
            details {
                summary { "Exact body as received (" (layout::bytes(detail.raw.len() as u64)) ")" }
                pre.json tabindex="0" { code { (String::from_utf8_lossy(&detail.raw)) } }
            }
        }
        section aria-labelledby="deliveries" {
            h2 #deliveries { "Deliveries" }
            p.muted { "Every request that delivered this event, the first and any duplicates." }
            (delivery_table(&detail.deliveries))
        }
    }
}

fn account_requests(requests: &[AccountRequest<'_>]) -> Markup {
    if requests.is_empty() {
        return html! { p.muted { "This event has no account requests." } };
    }
    let rows = html! {
        @for (index, request) in requests.iter().enumerate() {
            tr {
                td { span title=(request.source.id) { (Clip(&request.source.name)) } }
                td.mono { (optional(request.account_id.as_deref())) }
                td { (Clip(&request.account_operation)) }
                td { (badge(request.provisioning_result.as_wire())) }
                td { (Clip(&request.provisioning_target)) }
                td.mono { (optional(request.ticket_id.as_deref())) }
                td.num {
                    @let changes = request.attribute_requests.as_option().map_or(0, Vec::len);
                    @if changes > 0 { a href={"#changes-" (index)} { (changes) } } @else { "0" }
                }
            }
        }
    };
    html! {
        (layout::table(
            "Account requests",
            &["Source", "Account", "Operation", "Result", "Target", "Ticket", "Attribute changes"],
            rows,
        ))
        @for (index, request) in requests.iter().enumerate() {
            @if let Some(changes) = request.attribute_requests.as_option().filter(|c| !c.is_empty()) {
                h3 id={"changes-" (index)} {
                    "Attribute changes: " (Clip(&request.source.name))
                    @if let Some(account) = request.account_id.as_option() { " · " span.mono { (Clip(account)) } }
                }
                (layout::table(
                    "Attribute changes",
                    &["Attribute", "Operation", "Value"],
                    html! {
                        @for change in changes {
                            tr {
                                td.mono { (Clip(&change.attribute_name)) }
                                td { (change.operation.as_wire()) }
                                td {
                                    @match change.attribute_value.as_option() {
                                        Some(value) => {
                                            @for (n, item) in value.values().enumerate() {
                                                @if n > 0 { br; }
                                                span.value { (Clip(item)) }
                                            }
                                        }
                                        None => { span.muted { "—" } }
                                    }
                                }
                            }
                        }
                    },
                ))
            }
        }
    }
}

/// The delivery records, as on the event page and in the delivery log.
pub fn delivery_table(records: &[DeliveryRecord]) -> Markup {
    layout::table(
        "Deliveries",
        &[
            "Received (UTC)",
            "Status",
            "Outcome",
            "Reason",
            "Remote address",
            "Size",
            "Request",
            "Kept as",
        ],
        html! {
            @for record in records {
                tr {
                    td.nowrap { (time(record.received_at)) }
                    td.num { (record.status) }
                    td { (badge(&record.outcome)) }
                    td { (optional(record.reason.as_deref())) }
                    td.mono { (optional(record.remote_addr.as_deref())) }
                    td.num { (layout::bytes(record.size)) }
                    td.mono {
                        (record.method) " " (record.path)
                        @if let Some(agent) = &record.user_agent { br; span.muted { (layout::shorten(agent, 40)) } }
                    }
                    td {
                        @if let Some(id) = record.event_id { a href={"/event/" (id)} { "event " (id) } }
                        @if let Some(id) = record.quarantine_id { a href={"/quarantine/" (id)} { "quarantine " (id) } }
                        @if record.event_id.is_none() && record.quarantine_id.is_none() { span.muted { "nothing kept" } }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::server::api::routes::{DeliveryStateValue, RouteDeliveryView};

    fn delivery(id: i64, route: &str) -> RouteDeliveryView {
        RouteDeliveryView {
            id,
            event_id: 9,
            tracking_number: Some("tn-9".to_owned()),
            route: route.to_owned(),
            state: DeliveryStateValue::Pending,
            attempts: 2,
            origin: "replay".to_owned(),
            created_at: 1_000,
            updated_at: 2_000,
            next_attempt_at: Some(3_000),
            delivered_at: None,
            last_status: Some(503),
            last_error: Some(format!("HTTP 503: {}", "<b>x</b>".repeat(100))),
            last_latency_ms: Some(12.5),
        }
    }

    fn render(items: Vec<RouteDeliveryView>, more: bool, configured: bool) -> String {
        let deliveries = RouteDeliveries {
            list: Ok(RouteDeliveryList {
                next_cursor: more.then_some(1),
                items,
            }),
            routes: if configured {
                vec!["a".to_owned(), "b-route".to_owned()]
            } else {
                Vec::new()
            },
            now: 2_500,
        };
        route_deliveries(9, &deliveries).into_string()
    }

    #[test]
    fn without_deliveries_the_section_shows_only_when_routes_are_configured() {
        assert_eq!(render(vec![], false, false), "");
        let html = render(vec![], false, true);
        assert!(html.contains("No route matched this event"), "{html}");
        assert!(!html.contains("<table"));
        // Each configured route can be tried on the event.
        assert!(
            html.contains(r#"href="/routes/a/test?event_id=9""#),
            "{html}"
        );
        assert!(
            html.contains(r#"href="/routes/b-route/test?event_id=9""#),
            "{html}"
        );
    }

    #[test]
    fn deliveries_link_their_routes_escape_errors_and_point_to_the_rest() {
        let html = render(vec![delivery(3, "b-route"), delivery(2, "a")], false, true);
        assert!(html.contains(r#"href="/routes/b-route""#), "{html}");
        assert!(html.contains(">pending</span>") && html.contains(">503</td>"));
        assert!(html.contains("12.5 ms") && html.contains("replay"));
        assert!(
            html.contains("&lt;b&gt;x") && !html.contains("<b>x"),
            "escaped"
        );
        assert!(html.contains("…"), "shortened: {html}");
        assert!(!html.contains("The newest"));
        let html = render(vec![delivery(3, "b-route"), delivery(2, "a")], true, false);
        assert!(html.contains("The newest 50 deliveries"), "{html}");
        assert!(html.contains("/api/v1/route-deliveries?event_id=9"));
    }

    #[test]
    fn deliveries_that_cannot_be_read_leave_a_note_not_an_error_page() {
        let deliveries = RouteDeliveries {
            list: Err("the store is <busy>".to_owned()),
            routes: vec!["a".to_owned()],
            now: 0,
        };
        let html = route_deliveries(9, &deliveries).into_string();
        assert!(
            html.contains("could not be read: the store is &lt;busy&gt;"),
            "{html}"
        );
    }
}
