//! `/`: the events, newest first, with a search box and facets; and the fragment of rows newer
//! than the newest shown, which the script polls to add new events live.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::PageQuery;
use super::layout::{self, Nav, badge, link, number, shorten, time};
use super::{
    AppState, PageError, Viewer, cursor, given, html_response, not_applied, range_bounds,
    range_name, range_options,
};
use crate::server::api::params::MAX_TEXT;
use crate::store::{EventQuery, EventSummary, Page, StatsQuery, Store};

/// Rows on a page.
const PAGE_SIZE: usize = 50;

/// The account request results the result facet takes.
const RESULTS: [&str; 3] = ["FAILED", "PENDING", "SUCCESS"];

/// Most new rows one poll adds; beyond, the page offers a reload instead.
const LIVE_LIMIT: usize = 50;

/// The search box and facets, as in the query string.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    q: Option<String>,
    result: Option<String>,
    source: Option<String>,
    channel: Option<String>,
    range: Option<String>,
    identity: Option<String>,
    number: Option<String>,
    ticket: Option<String>,
    before: Option<String>,
    /// Fragment only: the newest id shown.
    after: Option<String>,
    /// Why filters were left out (see [`Params::without_overlong`]), as the page says it.
    #[serde(skip)]
    overlong: Vec<String>,
}

impl Params {
    /// Leaves out the text filters longer than the read API takes ([`MAX_TEXT`] characters),
    /// which it refuses: a search costs more the more words it has, and the page repeats it
    /// every few seconds while it is open. The page says so (see [`Params::ignored`]).
    fn without_overlong(mut self) -> Params {
        for (name, value) in [
            ("search", &mut self.q),
            ("source", &mut self.source),
            ("channel", &mut self.channel),
            ("identity", &mut self.identity),
            ("number", &mut self.number),
            ("ticket", &mut self.ticket),
        ] {
            // A NUL, which the read API refuses too, would also be written into the page's
            // form as it is.
            let why = match value.as_deref() {
                Some(text) if text.chars().count() > MAX_TEXT => {
                    format!("is longer than {} characters", number(MAX_TEXT as u64))
                }
                Some(text) if text.contains('\0') => "contains a NUL character".to_owned(),
                _ => continue,
            };
            *value = None;
            self.overlong
                .push(format!("The {name} {why}, so it is not applied."));
        }
        // More words than a search takes, which the store refuses.
        let words = self
            .q
            .as_deref()
            .map_or(0, crate::store::sqlite::query_word_count);
        if words > crate::store::sqlite::MAX_QUERY_WORDS {
            self.q = None;
            self.overlong.push(format!(
                "The search holds {words} different words, more than the {} a search takes, so \
                 it is not applied.",
                crate::store::sqlite::MAX_QUERY_WORDS
            ));
        }
        self
    }

    fn range(&self) -> String {
        range_name(&self.range, "all")
    }

    /// The filters as query-string pairs (no cursor), to build links that keep them.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let range = self.range();
        [
            ("q", given(&self.q)),
            ("result", given(&self.result)),
            ("source", given(&self.source)),
            ("channel", given(&self.channel)),
            ("range", (range != "all").then_some(range)),
            ("identity", given(&self.identity)),
            ("number", given(&self.number)),
            ("ticket", given(&self.ticket)),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| (key, value)))
        .collect()
    }

    fn link(&self, path: &str, extra: &[(&'static str, String)]) -> String {
        let mut pairs = self.pairs();
        pairs.extend_from_slice(extra);
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        link(path, &borrowed)
    }

    /// The search text, when it has words to search for (the API refuses one without).
    fn words(&self) -> Option<String> {
        given(&self.q).filter(|q| q.chars().any(crate::store::is_query_word_char))
    }

    /// The result facet, when it is one.
    fn result(&self) -> Option<String> {
        given(&self.result)
            .map(|result| result.to_ascii_uppercase())
            .filter(|result| RESULTS.contains(&result.as_str()))
    }

    /// What of the query string is not used, and why: said on the page, so that a list that
    /// ignored it is not taken for its answer.
    fn ignored(&self) -> Vec<String> {
        let no_words = given(&self.q).is_some() && self.words().is_none();
        let overlong = self.overlong.iter().cloned();
        overlong
            .chain([
            no_words.then(|| {
                "The search has no words to search for (letters or digits), so it is not applied."
                    .to_owned()
            }),
            not_applied(
                &self.result,
                self.result().is_some(),
                "an account request result (Failed, Pending or Succeeded)",
            ),
            not_applied(
                &self.range,
                given(&self.range).as_deref() == Some(self.range().as_str()),
                "a time range",
            ),
            not_applied(
                &self.before,
                cursor(&self.before).is_some(),
                "a page of this list (an event id)",
            ),
        ]
        .into_iter()
        .flatten())
        .collect()
    }

    fn query(&self, now: i64) -> EventQuery {
        let (since, until) = range_bounds(&self.range(), now);
        EventQuery {
            q: self.words(),
            result: self.result(),
            source: given(&self.source),
            channel: given(&self.channel),
            identity: given(&self.identity),
            tracking_number: given(&self.number),
            ticket_id: given(&self.ticket),
            since,
            until,
            before_id: cursor(&self.before),
            limit: PAGE_SIZE,
            ..EventQuery::default()
        }
    }

    /// Whether a filter behind "More filters" is set (then they show opened).
    fn more_filters(&self) -> bool {
        [&self.identity, &self.number, &self.ticket, &self.channel]
            .into_iter()
            .any(|value| given(value).is_some())
    }

    fn filtered(&self) -> bool {
        self.pairs().iter().any(|(key, _)| *key != "range")
    }
}

/// Whether the list's query applies a filter besides its time range (a parameter given but not
/// applied, such as a search without words, narrows nothing).
fn narrows(query: &EventQuery) -> bool {
    [
        &query.q,
        &query.result,
        &query.source,
        &query.channel,
        &query.identity,
        &query.tracking_number,
        &query.ticket_id,
    ]
    .into_iter()
    .any(Option::is_some)
}

/// Events for `query`; a "number" that is no tracking number is tried as an invocation id.
async fn find(store: &dyn Store, mut query: EventQuery) -> Result<Page<EventSummary>, PageError> {
    let page = store.search_events(&query, false).await?;
    if page.items.is_empty() {
        if let Some(number) = query.tracking_number.take() {
            query.invocation_id = Some(number);
            return Ok(store.search_events(&query, false).await?);
        }
    }
    Ok(page)
}

/// One row of the events table.
fn row(event: &EventSummary) -> Markup {
    let href = format!("/event/{}", event.id);
    html! {
        tr data-id=(event.id) {
            td.nowrap data-label=(HEAD[0]) { (time(event.received_at)) }
            td data-label=(HEAD[1]) { a.mono href=(href) { (shorten(&event.tracking_number, 36)) } }
            td data-label=(HEAD[2]) {
                @if layout::filterable(&event.recipient_id) {
                    a href=(link("/", &[("identity", &event.recipient_id)])) title=(event.recipient_id) {
                        (shorten(&event.recipient_name, 40))
                    }
                } @else {
                    span title=(event.recipient_id) { (shorten(&event.recipient_name, 40)) }
                }
            }
            td data-label=(HEAD[3]) { (shorten(&event.sources, 48)) }
            td data-label=(HEAD[4]) { (badge(&event.outcome)) }
            td.num data-label=(HEAD[5]) {
                @if event.failed_count > 0 { strong { (event.failed_count) } } @else { "0" }
                " / " (event.account_count)
            }
            td.errors data-label=(HEAD[6]) {
                @if let Some(first) = event.errors.first() {
                    span title=(shorten(first, layout::MAX_SHOWN)) { (shorten(first, 80)) }
                    @if event.errors.len() > 1 { " " span.more { "+" (event.errors.len() - 1) " more" } }
                }
            }
        }
    }
}

const HEAD: [&str; 7] = [
    "Received (UTC)",
    "Tracking number",
    "Recipient",
    "Sources",
    "Outcome",
    "Failed",
    "Errors",
];

/// Counts over the selected range, from the hourly rollups (or the table count for all time).
/// They are of every event in the range: with filters set (`filtered`), the page says so, since
/// the list below holds only the events that match them.
async fn counts(store: &dyn Store, since: Option<i64>, now: i64, filtered: bool) -> Option<Markup> {
    let before_filters = html! {
        @if filtered { span.muted { " (all of them, before the filters below)" } }
    };
    let Some(since) = since else {
        let counts = store.counts().await.ok()?;
        return Some(html! {
            (number(counts.events)) " events stored" (before_filters) " · "
            a href="/quarantine" { (number(counts.quarantined)) " in quarantine" }
        });
    };
    let stats = store
        .stats(&StatsQuery {
            since: Some(since),
            until: Some(now),
            ..StatsQuery::default()
        })
        .await
        .ok()?;
    let total: u64 = stats.events.values().sum();
    Some(html! {
        (number(total)) " events in range" (before_filters)
        @for (outcome, n) in &stats.events {
            " · " (badge(outcome)) " " (number(*n))
        }
        " · account requests failed: " (layout::percent(stats.requests.failure_rate()))
    })
}

/// `GET /`.
pub async fn page(
    viewer: Viewer,
    State(state): State<AppState>,
    PageQuery(params): PageQuery<Params>,
) -> Result<Response, PageError> {
    let params = params.without_overlong();
    let now = chrono::Utc::now().timestamp_millis();
    let query = params.query(now);
    let store = state.store.as_ref();
    // Independent reads: the store runs them side by side.
    let (page, sources, summary) = tokio::join!(
        find(store, query.clone()),
        viewer.ui.source_names(store),
        counts(store, query.since, now, narrows(&query)),
    );
    let page = page?;
    let range = params.range();
    let first_page = query.before_id.is_none();
    let newest = page.items.first();
    let live_url = params.link("/ui/fragments/events", &[]);
    let result = params.result().unwrap_or_default();
    let ignored = params.ignored();
    let source = given(&params.source).unwrap_or_default();
    let mut source_options: Vec<(&str, &str)> = vec![("", "Any source")];
    // A source the list cannot filter on is not offered (see `layout::filterable`).
    source_options.extend(
        sources
            .iter()
            .filter(|name| layout::filterable(name))
            .map(|name| (name.as_str(), name.as_str())),
    );
    if !source.is_empty() && !sources.contains(&source) {
        source_options.push((source.as_str(), source.as_str()));
    }
    let range_options = range_options();
    let main = html! {
        h1 { "Events" }
        @if let Some(summary) = summary { p.summary { (summary) } }
        form.filters method="get" action="/" role="search" {
            div.searchbar {
                label.visually-hidden for="q" { "Search" }
                input #q type="search" name="q" value=[given(&params.q)]
                    placeholder="Search errors, names, account ids, attribute values…";
                button.primary type="submit" { "Search" }
            }
            div.facets {
                (layout::select("result", "Account request result", &result, &[
                    ("", "Any result"), ("FAILED", "Failed"), ("PENDING", "Pending"), ("SUCCESS", "Succeeded"),
                ]))
                (layout::select("source", "Source", &source, &source_options))
                (layout::select("range", "Received", &range, &range_options))
            }
            details.more-filters open[params.more_filters()] {
                summary { "More filters (identity, number, ticket, channel)" }
                div.facets {
                    label.field { span { "Identity (id or name)" }
                        input type="text" name="identity" value=[given(&params.identity)]; }
                    label.field { span { "Tracking number or invocation id" }
                        input type="text" name="number" value=[given(&params.number)]; }
                    label.field { span { "Ticket" }
                        input type="text" name="ticket" value=[given(&params.ticket)]; }
                    label.field { span { "Channel" }
                        input type="text" name="channel" value=[given(&params.channel)]; }
                }
            }
            div.actions {
                button type="submit" { "Apply" }
                @if params.filtered() || range != "all" { a href="/" { "Clear filters" } }
            }
        }
        (layout::notices(&ignored))
        @if first_page {
            p #live-status .live aria-live="polite" { }
        }
        @if page.items.is_empty() {
            p.empty { "No events match." @if params.filtered() { " " a href="/" { "Show all events" } } }
        }
        div.table-wrap tabindex="0" role="region" aria-label="Events" {
            table.events {
                caption.visually-hidden { "Events, newest first" }
                thead { tr { @for name in HEAD { th scope="col" { (name) } } } }
                tbody #event-rows
                    data-live-url=[first_page.then_some(&live_url)]
                    data-after=(newest.map_or(0, |e| e.id)) {
                    @for event in &page.items { (row(event)) }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if !first_page { a href=(params.link("/", &[])) { "← Newest" } }
            @if let Some(next) = page.next_cursor {
                a rel="next" href=(params.link("/", &[("before", next.to_string())])) { "Older →" }
            }
        }
    };
    Ok(viewer.page("Events", Nav::Events, main))
}

/// `GET /ui/fragments/events?…&after=<id>`: the rows newer than `after` that match the
/// same filters, newest first. The header `x-provtrail-more: 1` says there were more than one poll
/// adds.
pub async fn fragment(
    _viewer: Viewer,
    State(state): State<AppState>,
    PageQuery(params): PageQuery<Params>,
) -> Result<Response, PageError> {
    let params = params.without_overlong();
    let now = chrono::Utc::now().timestamp_millis();
    let after = cursor(&params.after).unwrap_or(0);
    let mut query = params.query(now);
    query.before_id = None;
    query.limit = LIVE_LIMIT + 1;
    // Only rows stored after the newest shown are new: the walk is bounded by ids, so that a
    // rare filter does not read the whole store on every poll. Not by time: a row restored
    // with an earlier receipt time (an import of an export), or received while the newest
    // shown was "in the future" (a clock that ran ahead), is new all the same.
    query.after_id = Some(after);
    let page = find(state.store.as_ref(), query).await?;
    let mut new: Vec<&EventSummary> = page.items.iter().filter(|e| e.id > after).collect();
    let more = new.len() > LIVE_LIMIT;
    new.truncate(LIVE_LIMIT);
    let mut response = html_response(StatusCode::OK, html! { @for event in new { (row(event)) } });
    if more {
        response.headers_mut().insert(
            header::HeaderName::from_static("x-provtrail-more"),
            HeaderValue::from_static("1"),
        );
    }
    Ok(response.into_response())
}
