//! `/failures`: failure rate per source over time (an SVG chart drawn here), the most frequent
//! errors and the worst sources; all from the hourly rollups, so the page costs the same for ten
//! events or ten million.

use axum::extract::State;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::PageQuery;
use super::layout::{self, Nav, number, percent, shorten};
use super::{AppState, PageError, Viewer, given, not_applied};
use crate::store::{Bucket, MAX_COUNTED_ERROR_LEN, StatsQuery};

/// `(value, label, days)`.
const RANGES: [(&str, &str, i64); 4] = [
    ("24h", "Last 24 hours", 1),
    ("7d", "Last 7 days", 7),
    ("30d", "Last 30 days", 30),
    ("90d", "Last 90 days", 90),
];

/// Query string of the page.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    range: Option<String>,
    bucket: Option<String>,
}

/// `GET /failures`.
pub async fn page(
    viewer: Viewer,
    State(state): State<AppState>,
    PageQuery(params): PageQuery<Params>,
) -> Result<Response, PageError> {
    let known = given(&params.range)
        .and_then(|range| RANGES.iter().find(|(name, _, _)| *name == range))
        .copied();
    let notices: Vec<String> = [
        not_applied(&params.range, known.is_some(), "a range here"),
        not_applied(
            &params.bucket,
            matches!(given(&params.bucket).as_deref(), Some("hour" | "day")),
            "a bucket (hour or day)",
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    let (range, label, days) = known.unwrap_or(RANGES[1]);
    let bucket = match given(&params.bucket).as_deref() {
        Some("hour") => Bucket::Hour,
        Some("day") => Bucket::Day,
        // Hours over a day; over longer ranges, days: enough points to see a trend, few enough to
        // read eight lines, and enough requests per point that a rate means something.
        _ if days <= 1 => Bucket::Hour,
        _ => Bucket::Day,
    };
    let bucket_name = match bucket {
        Bucket::Hour => "hour",
        Bucket::Day => "day",
    };
    let now = chrono::Utc::now().timestamp_millis();
    let stats = state
        .store
        .stats(&StatsQuery {
            since: Some(now - days * 86_400_000),
            until: Some(now),
            bucket,
            top_errors: 15,
            per_source_series: true,
            ..StatsQuery::default()
        })
        .await?;
    let lines = super::chart::lines(&stats);
    let caption = format!(
        "Failure rate per source, per {bucket_name}, {}",
        label.to_lowercase()
    );
    let events: u64 = stats.events.values().sum();
    let main = html! {
        h1 { "Failures" }
        form.filters.inline method="get" action="/failures" {
            (layout::select("range", "Range", range,
                &RANGES.iter().map(|(v, l, _)| (*v, *l)).collect::<Vec<_>>()))
            (layout::select("bucket", "Per", bucket_name, &[("hour", "Hour"), ("day", "Day")]))
            button type="submit" { "Show" }
        }
        (layout::notices(&notices))
        p.summary {
            (number(events)) " events · " (number(stats.requests.total())) " account requests · "
            (number(stats.requests.failed)) " failed ("
            (percent(stats.requests.failure_rate())) ")"
        }
        section aria-labelledby="rate" {
            h2 #rate { "Failure rate over time" }
            (super::chart::render(&stats, &lines, &caption))
            @if stats.sources.iter().filter(|s| s.requests.total() > 0).count() > lines.len() {
                p.muted { "The chart shows the " (lines.len()) " sources with the most failures; the table below has all of them." }
            }
        }
        div.columns {
            section aria-labelledby="worst" {
                h2 #worst { "Worst sources" }
                (layout::table("Sources by failures", &["Source", "Failed", "Requests", "Failure rate"], html! {
                    @for source in stats.sources.iter().filter(|s| s.requests.total() > 0) {
                        tr {
                            td { (layout::events_link(&[("source", &source.source), ("result", "FAILED"), ("range", range_for_events(range))], html! { (shorten(&source.source, 80)) })) }
                            td.num { (number(source.requests.failed)) }
                            td.num { (number(source.requests.total())) }
                            td.num {
                                meter min="0" max="1" value=(source.failure_rate) aria-hidden="true" {}
                                " " (percent(source.failure_rate))
                            }
                        }
                    }
                }))
            }
            section aria-labelledby="top-errors" {
                h2 #top-errors { "Top errors" }
                @if stats.top_errors.is_empty() {
                    p.muted { "No errors in this range." }
                } @else {
                    p.muted #top-errors-note {
                        "Each error links to the events that hold all of its words, anywhere in "
                        "their text (errors, warnings, names, account ids, values): the list may "
                        "hold more events than counted here."
                    }
                    (layout::table("Most frequent errors", &["Error", "Events"], html! {
                        @for error in &stats.top_errors {
                            tr {
                                // A message without words to search for is not linked: the
                                // list would hold every event.
                                td { (layout::events_link(&[("q", &search_words(&error.message)), ("range", range_for_events(range))], html! {
                                    (layout::ClipText(&error.message))
                                    // The counts keep the start of a long message: said so.
                                    @if counted_cut(&error.message) { "…" }
                                })) }
                                td.num { (number(error.events)) }
                            }
                        }
                    }))
                }
            }
        }
    };
    Ok(viewer.page("Failures", Nav::Failures, main))
}

/// The events list has no 90-day range; all time is the nearest that includes it.
fn range_for_events(range: &str) -> &str {
    if range == "90d" { "all" } else { range }
}

/// The search behind an error's link: every word of the message, so that the list holds the
/// events counted beside it and as few others as the search allows. The full-text search takes
/// words, not a phrase, and finds them anywhere in an event's text, so the list may hold more
/// (the page says so); but it must not hold fewer: short words are kept (a search for
/// "Connector Failed" listed 130 events beside a count of 9 for "Connector AD Failed"), and
/// the last word of a message that the counts may have cut ([`MAX_COUNTED_ERROR_LEN`] bytes)
/// is searched as a prefix, since its end is missing.
/// Whether the counts may have cut `message` ([`MAX_COUNTED_ERROR_LEN`] bytes, at a character
/// boundary).
fn counted_cut(message: &str) -> bool {
    message.len() + 4 > MAX_COUNTED_ERROR_LEN
}

fn search_words(message: &str) -> String {
    // Cut as the search cuts them: a word cut anywhere else (at an accent of a decomposed
    // letter, inside a word of an Indic script) would not be found, or fail as a phrase.
    let mut words = crate::store::text_words(message);
    let cut_last = counted_cut(message) && message.ends_with(crate::store::is_query_word_char);
    let last = if cut_last { words.pop() } else { None };
    let mut seen = std::collections::HashSet::new();
    words.retain(|word| seen.insert(word.to_lowercase()));
    let mut search = words.join(" ");
    if let Some(last) = last {
        if !search.is_empty() {
            search.push(' ');
        }
        search.push_str(&last);
        search.push('*');
    }
    search
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_become_every_word_once() {
        assert_eq!(
            search_words("Connection to 'ldap.corp' timed out after 30s; connection lost"),
            "Connection to ldap corp timed out after 30s lost"
        );
        assert_eq!(search_words("Connector AD Failed"), "Connector AD Failed");
        assert_eq!(search_words("!!"), "");
    }

    #[test]
    fn the_last_word_of_a_message_the_counts_cut_is_a_prefix() {
        let cut = format!("{}connection", "word ".repeat(58));
        assert_eq!(cut.len(), MAX_COUNTED_ERROR_LEN);
        assert_eq!(search_words(&cut), "word connection*");
        let whole = format!("{}end.", "word ".repeat(58));
        assert_eq!(search_words(&whole), "word end");
        assert_eq!(search_words("short connection"), "short connection");
    }
}
