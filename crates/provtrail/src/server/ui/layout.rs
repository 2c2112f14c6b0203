//! The page shell and the small pieces every page uses: times, numbers, badges, links.
//!
//! Everything goes through maud, which escapes text and attribute values; nothing here (or in the
//! pages) writes event data with `PreEscaped`.

use maud::{DOCTYPE, Markup, html};

use super::assets;
use crate::store::Millis;

/// The pages of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The events list (and an event).
    Events,
    /// Failure rates.
    Failures,
    /// The filter playground.
    Playground,
    /// The delivery log.
    Deliveries,
    /// The quarantine.
    Quarantine,
    /// The routes and their deliveries.
    Routes,
    /// None of them (sign-in, errors).
    None,
}

const NAV: [(Nav, &str, &str); 6] = [
    (Nav::Events, "/", "Events"),
    (Nav::Failures, "/failures", "Failures"),
    (Nav::Playground, "/playground", "Filter playground"),
    (Nav::Deliveries, "/deliveries", "Delivery log"),
    (Nav::Quarantine, "/quarantine", "Quarantine"),
    (Nav::Routes, "/routes", "Routes"),
];

/// A whole page: head, navigation (with the sign-out form when `csrf` is given) and `main`.
pub fn page(title: &str, current: Nav, csrf: Option<&str>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) " · provtrail" }
                link rel="stylesheet" href=(assets::CSS.url);
                link rel="icon" href=(assets::ICON.url) type="image/svg+xml";
                script src=(assets::JS.url) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { img src=(assets::ICON.url) alt="" width="20" height="20"; " provtrail" }
                    @if current != Nav::None {
                        nav aria-label="Main" {
                            ul {
                                @for (item, href, label) in NAV {
                                    li {
                                        a href=(href) aria-current=[(item == current).then_some("page")] { (label) }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(csrf) = csrf {
                        form.signout method="post" action="/sign-out" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" { (main) }
            }
        }
    }
}

/// `2026-11-28 11:24:03` (UTC), in a `<time>` element.
pub fn time(at: Millis) -> Markup {
    let when = chrono::DateTime::from_timestamp_millis(at).unwrap_or_default();
    html! {
        time datetime=(when.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) {
            (when.format("%Y-%m-%d %H:%M:%S"))
        }
    }
}

/// How long before `now` the time `at` was, roughly: `just now`, `12 min`, `3 h`, `5 days`.
pub fn ago(at: Millis, now: Millis) -> String {
    let seconds = (now - at).max(0) / 1000;
    match seconds {
        0..60 => "just now".to_owned(),
        60..3_600 => format!("{} min ago", seconds / 60),
        3_600..172_800 => format!("{} h ago", seconds / 3_600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

/// `1,234,567`.
pub fn number(n: u64) -> String {
    crate::grouped_thousands(n)
}

/// `12.5 %`.
pub fn percent(rate: f64) -> String {
    if rate > 0.0 && rate < 0.001 {
        "<0.1 %".to_owned()
    } else {
        format!("{:.1} %", rate * 100.0)
    }
}

/// `1.2 KiB`.
pub fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// Most characters of one value shown in a page's tables and summaries. A browser lays out a
/// long unbroken value slowly (a few 20,000-character values took Chromium seconds); the whole
/// value stays in the page's body section and in the API.
pub const MAX_SHOWN: usize = 1_000;

/// A value of an event, shown up to [`MAX_SHOWN`] characters, then how long it is in all and
/// that the event's body (on its page) shows the whole value.
pub struct Clip<'a>(pub &'a str);

impl maud::Render for Clip<'_> {
    fn render_to(&self, buffer: &mut String) {
        clipped(self.0, "; the body shows the whole value").render_to(buffer);
    }
}

/// A value that is not part of an event's body (an error, a problem's path), shown up to
/// [`MAX_SHOWN`] characters, then how long it is in all.
pub struct ClipText<'a>(pub &'a str);

impl maud::Render for ClipText<'_> {
    fn render_to(&self, buffer: &mut String) {
        clipped(self.0, "").render_to(buffer);
    }
}

/// `value` up to [`MAX_SHOWN`] characters; past that, its length in all and `whole` (where to
/// find the whole value).
fn clipped(value: &str, whole: &str) -> Markup {
    match crate::visible::cut_after(value, MAX_SHOWN) {
        None => html! { (value) },
        Some(end) => html! {
            (&value[..end])
            span.muted {
                "… (" (number(crate::visible::characters(value) as u64)) " characters in all"
                (whole) ")"
            }
        },
    }
}

pub use crate::visible::shortened as shorten;

/// The colour class of a result or outcome word.
fn tone(word: &str) -> &'static str {
    match word.to_ascii_lowercase().as_str() {
        "success" | "succeeded" | "accepted" | "delivered" => "ok",
        "failed"
        | "rejected"
        | "not_json"
        | "invalid_event"
        | "unsupported_media_type"
        | "bad_channel"
        | "dead" => "bad",
        "partial" | "partially_failed" | "quarantined" => "warn",
        "pending" | "duplicate" => "info",
        _ => "neutral",
    }
}

/// A coloured label for a result, outcome or delivery status; the word itself is always shown so
/// that colour is never the only signal.
pub fn badge(word: &str) -> Markup {
    html! { span class={"badge " (tone(word))} { (word) } }
}

/// Percent-encodes a query-string value (`application/x-www-form-urlencoded`).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char);
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `path?k=v&…` from the pairs whose value is not empty.
pub fn link(path: &str, pairs: &[(&str, &str)]) -> String {
    let query: Vec<String> = pairs
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| format!("{key}={}", encode(value)))
        .collect();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// Whether the events list can filter on `value`: not empty, no longer than the read API
/// takes a text filter ([`MAX_TEXT`](crate::server::api::params::MAX_TEXT) characters), and
/// without a NUL (which the read API refuses, and a browser turns into U+FFFD in a form). The
/// list leaves out a filter it cannot apply, so a link with such a value would list every event.
pub fn filterable(value: &str) -> bool {
    !value.is_empty()
        && !value.contains('\0')
        && value.chars().count() <= crate::server::api::params::MAX_TEXT
}

/// `body` as a link to the events list filtered by `pairs`, or alone when one of the values
/// is not [`filterable`]: a link must not list other events than it names.
pub fn events_link(pairs: &[(&str, &str)], body: Markup) -> Markup {
    if pairs.iter().all(|(_, value)| filterable(value)) {
        html! { a href=(link("/", pairs)) { (body) } }
    } else {
        body
    }
}

/// A table inside a container that scrolls sideways on narrow screens, so that the page never
/// does.
pub fn table(caption: &str, head: &[&str], rows: Markup) -> Markup {
    html! {
        div.table-wrap tabindex="0" role="region" aria-label=(caption) {
            table {
                caption.visually-hidden { (caption) }
                thead { tr { @for name in head { th scope="col" { (name) } } } }
                tbody { (rows) }
            }
        }
    }
}

/// A `<select>` with a label; `options` are `(value, label)`.
pub fn select(name: &str, label: &str, current: &str, options: &[(&str, &str)]) -> Markup {
    html! {
        label.field {
            span { (label) }
            select name=(name) {
                // A select is as wide as its longest option: a long source name would widen
                // the whole page.
                @for (value, text) in options {
                    option value=(value) selected[*value == current] { (shorten(text, 60)) }
                }
            }
        }
    }
}

/// Notices about the query (values not applied), one line each.
pub fn notices(notices: &[String]) -> Markup {
    html! {
        @for notice in notices {
            p.alert.warn role="status" { (notice) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sizes_and_rates_read_well() {
        assert_eq!(number(0), "0");
        assert_eq!(number(999), "999");
        assert_eq!(number(1_000), "1,000");
        assert_eq!(number(1_234_567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(2048), "2.0 KiB");
        assert_eq!(percent(0.125), "12.5 %");
        assert_eq!(percent(0.0001), "<0.1 %");
        assert_eq!(shorten("héllo world", 5), "héllo…");
        assert_eq!(shorten("short", 10), "short");
        let now = 1_800_000_000_000;
        assert_eq!(ago(now - 5_000, now), "just now");
        assert_eq!(ago(now + 5_000, now), "just now", "a clock a little ahead");
        assert_eq!(ago(now - 12 * 60_000, now), "12 min ago");
        assert_eq!(ago(now - 3 * 3_600_000, now), "3 h ago");
        assert_eq!(ago(now - 5 * 86_400_000, now), "5 days ago");
    }

    #[test]
    fn links_encode_their_values() {
        assert_eq!(
            link("/", &[("q", "a b&c=<d>"), ("source", ""), ("x", "é")]),
            "/?q=a+b%26c%3D%3Cd%3E&x=%C3%A9"
        );
        assert_eq!(link("/failures", &[]), "/failures");
    }

    #[test]
    fn text_is_escaped_in_the_shell() {
        let html = page(
            "<script>",
            Nav::Events,
            Some("\"><x"),
            html! { p { ("<b>") } },
        )
        .into_string();
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("&lt;b&gt;"));
        assert!(html.contains("&quot;&gt;&lt;x"));
    }
}
