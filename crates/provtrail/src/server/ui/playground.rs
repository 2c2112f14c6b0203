//! `/playground`: type a Jayway filter, see at once whether it compiles (with a caret under the
//! error) and which stored events it matches, newest first. The script fetches the result fragment
//! as you type; without the script, the form's button does the same with a page load.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::PageQuery;
use super::layout::{self, Nav, badge, link, number, shorten, time};
use super::{
    AppState, PageError, Viewer, given, html_response, not_applied, range_bounds, range_name,
    range_options,
};
use crate::search::{self, Budget, SearchError};

/// What one evaluation may read: enough for a useful answer while typing, little enough that the
/// answer comes back at once even on a large store. The page says when it ran out.
pub const PLAYGROUND_BUDGET: Budget = Budget {
    events: 5_000,
    time: Duration::from_millis(150),
};

/// Matches shown.
const EXAMPLES: usize = 10;

/// Longest filter accepted (ISC's own limit on a subscription filter is far below this).
const MAX_FILTER_CHARS: usize = 10_000;

/// Filters to start from: `(what it finds, filter)`.
const SAMPLES: [(&str, &str); 7] = [
    (
        "An account request failed (from ISC's documentation)",
        "$[?($.accountRequests[*].provisioningResult contains \"FAILED\")]",
    ),
    ("Identity refreshes", "$[?($.action == 'IdentityRefresh')]"),
    ("The event has errors", "$[?($.errors empty false)]"),
    (
        "Accounts created in Active Directory",
        "$.accountRequests[?(@.source.name == 'Corporate Active Directory' && @.accountOperation == 'Create')]",
    ),
    (
        "Recipients whose name starts with A",
        "$[?($.recipient.name =~ /^A.*/i)]",
    ),
    (
        "A trap: a nested filter inside a filter is only an existence test, so this matches every event with account requests, failed or not",
        "$[?($.accountRequests[?(@.provisioningResult == 'FAILED')])]",
    ),
    (
        "A filter with a mistake",
        "$[?($.action == 'IdentityRefresh']",
    ),
];

/// Query string of the page and the fragment.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    filter: Option<String>,
    range: Option<String>,
    /// `1`: count with the larger budget of an explicit filter test, not the one for typing.
    thorough: Option<String>,
}

impl Params {
    fn thorough(&self) -> bool {
        given(&self.thorough).is_some_and(|value| value == "1")
    }

    fn budget(&self) -> Budget {
        if self.thorough() {
            Budget::FILTER_TEST
        } else {
            PLAYGROUND_BUDGET
        }
    }

    fn range(&self) -> String {
        range_name(&self.range, "all")
    }
}

/// The line of `filter` holding character `position`, and that line up to the character: shown
/// hidden in front of the caret, it takes the same room as the characters above it however the
/// browser draws them (tabs, wide characters, an invisible character shown as its escape).
pub fn caret(filter: &str, position: usize) -> (String, String) {
    let chars: Vec<char> = filter.chars().collect();
    let position = position.min(chars.len());
    let start = chars[..position]
        .iter()
        .rposition(|c| *c == '\n')
        .map_or(0, |at| at + 1);
    let end = chars[position..]
        .iter()
        .position(|c| *c == '\n')
        .map_or(chars.len(), |at| position + at);
    let line: String = chars[start..end].iter().collect();
    let before: String = chars[start..position].iter().collect();
    (line, before)
}

/// The result of one filter: compile error, or matches.
async fn result(state: &AppState, params: &Params) -> Result<Markup, PageError> {
    let Some(filter) = params.filter.as_deref().filter(|f| !f.trim().is_empty()) else {
        return Ok(html! {
            p.muted data-state="empty" { "Type a filter above, or pick a sample." }
        });
    };
    if filter.chars().count() > MAX_FILTER_CHARS {
        return Err(PageError::BadRequest(format!(
            "a filter has at most {MAX_FILTER_CHARS} characters"
        )));
    }
    // Refused as the read API refuses any text value holding one, so that the playground and
    // `POST /api/v1/filter/test` answer a filter alike.
    if filter.contains('\0') {
        return Err(PageError::BadRequest(
            "a filter cannot contain a NUL character".to_owned(),
        ));
    }
    let compiled = match search::compile_filter(Some(filter)).await {
        Ok(Some(compiled)) => compiled,
        Ok(None) => return Ok(html! {}),
        Err(SearchError::InvalidFilter(err)) => {
            // `compile_filter` trims; positions count from the trimmed text.
            let trimmed = filter.trim();
            let (line, before) = caret(trimmed, err.position);
            return Ok(html! {
                div.parse-error data-state="error" role="alert" {
                    p { strong { "Does not compile: " } (err.message) }
                    pre.caret { code {
                        (line) "\n"
                        span.caret-pad aria-hidden="true" { (before) }
                        span.caret-mark { "^" }
                    } }
                    p.muted { "At position " span.position { (err.position) } "; expected " (err.expected) "." }
                }
            });
        }
        Err(SearchError::Store(err)) => return Err(err.into()),
        Err(err @ SearchError::TooSlow { .. }) => {
            return Err(PageError::BadRequest(err.to_string()));
        }
        Err(err @ SearchError::Busy) => return Err(PageError::Busy(err.to_string())),
    };
    let now = chrono::Utc::now().timestamp_millis();
    // The events the list holds for the same range, so that the two say the same count.
    let (since, until) = range_bounds(&params.range(), now);
    let outcome = search::test_filter(
        state.store.as_ref(),
        &compiled,
        (since, until),
        EXAMPLES,
        params.budget(),
    )
    .await
    .map_err(|err| match err {
        SearchError::Store(err) => PageError::Store(err),
        SearchError::InvalidFilter(err) => PageError::BadRequest(err.to_string()),
        err @ SearchError::TooSlow { .. } => PageError::BadRequest(err.to_string()),
        err @ SearchError::Busy => PageError::Busy(err.to_string()),
    })?;
    Ok(html! {
        div data-state="ok" data-matched=(outcome.matched) data-complete=(outcome.complete) {
            p.compiles {
                (badge("compiles")) " "
                "Matched " strong.matched { (number(outcome.matched)) } " of "
                (number(outcome.scanned)) " stored events evaluated"
                @if outcome.complete { " (every event in the range)." } @else { "." }
            }
            @let unknown = compiled.unknown_functions();
            @if !unknown.is_empty() {
                p.alert.warn data-warning="unknown-function" {
                    "Calls "
                    @for (i, name) in unknown.iter().enumerate() {
                        @if i > 0 { ", " }
                        code { (name) "()" }
                    }
                    ", which Jayway does not have: it compiles, but every evaluation that reaches "
                    "the call fails and matches nothing (as it would in ISC). Jayway's functions: "
                    (provtrail_jsonpath::Path::FUNCTIONS.join(", ")) "."
                }
            }
            @if !outcome.complete {
                @let budget = params.budget();
                p.alert.warn {
                    code { "complete: false" } " — the scan budget ("
                    (number(budget.events)) " events or "
                    (budget.time.as_millis()) " ms) ran out before every event in the range was evaluated; "
                    "the count covers the newest " (number(outcome.scanned)) " events only. "
                    @if params.thorough() {
                        "Narrow the range for an exact count, or use " code { "provtrail filter" } " on an export."
                    } @else {
                        a href=(link("/playground", &[("filter", filter), ("range", &params.range()), ("thorough", "1")])) {
                            "Count further (up to " (number(Budget::FILTER_TEST.events)) " events)"
                        }
                        "."
                    }
                }
            }
            @if !outcome.examples.is_empty() {
                h3 { "Newest matches" }
                (layout::table("Matching events", &["Received (UTC)", "Tracking number", "Recipient", "Action", "Outcome"], html! {
                    @for event in &outcome.examples {
                        tr {
                            td.nowrap { (time(event.received_at)) }
                            td { a.mono href={"/event/" (event.id)} { (shorten(&event.tracking_number, 36)) } }
                            td { (shorten(&event.recipient_name, 40)) }
                            td { (layout::Clip(event.action.as_deref().unwrap_or("—"))) }
                            td { (badge(&event.outcome)) }
                        }
                    }
                }))
            }
            details.explain {
                summary { "How provtrail reads this filter" }
                pre { code { (compiled.explain()) } }
            }
        }
    })
}

/// `GET /playground`.
pub async fn page(
    viewer: Viewer,
    State(state): State<AppState>,
    PageQuery(params): PageQuery<Params>,
) -> Result<Response, PageError> {
    // The script writes the filter into the address as it is typed: an address whose filter is
    // refused still gets the page, with the reason where the result would be, so that a reload
    // keeps the form (and the filter, whenever the box can hold it).
    let (status, outcome) = match result(&state, &params).await {
        Ok(outcome) => (StatusCode::OK, outcome),
        Err(PageError::BadRequest(why)) => (StatusCode::BAD_REQUEST, refusal(&why)),
        Err(PageError::Busy(why)) => (StatusCode::SERVICE_UNAVAILABLE, refusal(&why)),
        Err(err) => return Err(err),
    };
    let filter = params.filter.as_deref().unwrap_or_default();
    // A NUL cannot be written into a page (browsers read it as U+FFFD, another filter): the box
    // is left empty and the page says so, showing the filter's start with the NUL escaped.
    let unwritable = filter.contains('\0');
    let range = params.range();
    let range_options = range_options();
    let ignored: Vec<String> = not_applied(
        &params.range,
        given(&params.range).as_deref() == Some(range.as_str()),
        "a time range",
    )
    .into_iter()
    .collect();
    let main = html! {
        h1 { "Filter playground" }
        (layout::notices(&ignored))
        p {
            "Try an ISC trigger-subscription filter (Jayway JsonPath) on the events stored here. "
            "An event matches when the filter selects something from it, as ISC decides."
        }
        form #playground method="get" action="/playground" {
            label.field.wide for="filter" { span { "Filter" } }
            textarea #filter name="filter" rows="4" spellcheck="false" autocapitalize="off"
                autocomplete="off" data-fragment="/ui/fragments/playground"
                aria-describedby="playground-help" {
                @if !unwritable { (filter) }
            }
            @if unwritable {
                p.alert.warn role="status" #filter-not-shown {
                    "The filter in this address holds a NUL character, which a page cannot "
                    "carry, so it is not in the box. It begins: " code { (shorten(filter, 200)) }
                }
            }
            p #playground-help .muted { "Press Test to see which stored events match." }
            div.actions {
                (layout::select("range", "Events received", &range, &range_options))
                button.primary type="submit" { "Test" }
            }
        }
        section aria-labelledby="result-title" {
            h2 #result-title { "Result" }
            div #playground-result aria-live="polite" { (outcome) }
        }
        section aria-labelledby="samples" {
            h2 #samples { "Samples" }
            ul.samples {
                @for (what, filter) in SAMPLES {
                    li {
                        a href=(link("/playground", &[("filter", filter), ("range", &range)])) data-filter=(filter) {
                            (what)
                        }
                        br;
                        code { (filter) }
                    }
                }
            }
        }
    };
    let mut response = viewer.page_with_status(status, "Filter playground", Nav::Playground, main);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(response)
}

/// Why a filter got no result, where the result would be (as the script shows a refused
/// fragment).
fn refusal(why: &str) -> Markup {
    html! {
        p.alert role="alert" data-state="refused" { (why) }
    }
}

/// `GET /ui/fragments/playground?filter=…&range=…`: the result alone.
pub async fn fragment(
    _viewer: Viewer,
    State(state): State<AppState>,
    PageQuery(params): PageQuery<Params>,
) -> Result<Response, PageError> {
    Ok(html_response(
        StatusCode::OK,
        result(&state, &params).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caret_sits_under_the_character_on_its_own_line() {
        let pair = |line: &str, before: &str| (line.to_owned(), before.to_owned());
        assert_eq!(caret("$.a[", 4), pair("$.a[", "$.a["));
        assert_eq!(caret("$[?(\n\t@.x ==)]", 11), pair("\t@.x ==)]", "\t@.x ="));
        // Positions count characters, not bytes.
        assert_eq!(caret("$.é[", 3), pair("$.é[", "$.é"));
        assert_eq!(caret("$", 99), pair("$", "$"));
    }

    #[test]
    fn the_samples_compile_except_the_one_that_shows_a_mistake() {
        for (what, filter) in SAMPLES {
            let compiled = provtrail_jsonpath::compile(filter);
            assert_eq!(
                compiled.is_err(),
                what.contains("mistake"),
                "{what}: {filter}"
            );
        }
    }
}
