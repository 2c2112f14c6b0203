//! The web UI under `/`: server-rendered pages, assets embedded in the binary.
//!
//! Pages are plain HTML rendered with maud from the same core the read API uses (`store` and
//! `search`); the one small script only enhances them (live rows, the playground as you type), and
//! every page works without it. Signing in exchanges a read token for a server-side session
//! ([`session`]); a read token in an `Authorization: Bearer` header is accepted too.
//!
//! Routes: `/` events, `/event/{id}`, `/failures`, `/playground`, `/deliveries`, `/quarantine`,
//! `/quarantine/{id}`, `/routes`, `/routes/{name}`, `/routes/{name}/deliveries/{id}`,
//! `/routes/{name}/test`, `/sign-in`, `/sign-out`, `/assets/{file}`, and
//! the fragments the script fetches under `/ui/fragments/`. (`/events` itself belongs to ingest.)
//!
//! Architecture invariant: lists never load bodies or parse events; only the one-event pages and
//! the playground (which must evaluate the filter on bodies, within a budget) do.

mod assets;
mod chart;
mod deliveries;
mod event;
mod events;
mod failures;
mod layout;
mod playground;
mod routes;
pub mod session;
mod signin;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, middleware};
use maud::{Markup, html};

use super::AppState;
use crate::store::{StatsQuery, Store, StoreError};
use layout::Nav;
use session::Sessions;

/// A page's query string, read as `axum::extract::Query` reads it; one that cannot be read (a
/// parameter given twice, say) is answered with the error page every other bad address gets,
/// not with the framework's plain text.
#[derive(Debug)]
pub struct PageQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for PageQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(PageQuery(value)),
            Err(rejection) => Err(browser_error_page(
                StatusCode::BAD_REQUEST,
                &format!("this address cannot be read: {}", rejection.body_text()),
            )),
        }
    }
}

/// What the UI keeps between requests.
#[derive(Debug, Default)]
pub struct UiState {
    /// Signed-in browsers.
    pub sessions: Sessions,
    sources: Mutex<Option<(Instant, Arc<Vec<String>>)>>,
}

/// How long the list of source names offered as a facet is reused.
const SOURCES_TTL: Duration = Duration::from_secs(60);

impl UiState {
    /// Names of the sources seen in the last 90 days, for the source facet; computed from the
    /// hourly rollups at most once a minute.
    async fn source_names(&self, store: &dyn Store) -> Arc<Vec<String>> {
        if let Some((at, names)) = self.lock_sources().as_ref() {
            if at.elapsed() < SOURCES_TTL {
                return names.clone();
            }
        }
        let now = chrono::Utc::now().timestamp_millis();
        let query = StatsQuery {
            since: Some(now - 90 * 86_400_000),
            until: Some(now),
            ..StatsQuery::default()
        };
        let mut names: Vec<String> = match store.stats(&query).await {
            Ok(stats) => stats.sources.into_iter().map(|s| s.source).collect(),
            // A facet is a convenience: without it the page still works.
            Err(_) => Vec::new(),
        };
        names.sort_by_key(|name| name.to_lowercase());
        let names = Arc::new(names);
        *self.lock_sources() = Some((Instant::now(), names.clone()));
        names
    }

    fn lock_sources(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Arc<Vec<String>>)>> {
        self.sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The web UI's routes.
pub fn router() -> Router<AppState> {
    let state = Arc::new(UiState::default());
    Router::new()
        .route("/", get(events::page))
        .route("/event/{id}", get(event::page))
        .route("/failures", get(failures::page))
        .route("/playground", get(playground::page))
        .route("/deliveries", get(deliveries::log))
        .route("/quarantine", get(deliveries::quarantine))
        .route("/quarantine/{id}", get(deliveries::quarantine_entry))
        .route("/routes", get(routes::list))
        .route("/routes/{name}", get(routes::route))
        .route("/routes/{name}/deliveries/{id}", get(routes::delivery))
        .route("/routes/{name}/test", get(routes::test))
        .route("/ui/fragments/events", get(events::fragment))
        .route("/ui/fragments/playground", get(playground::fragment))
        .route("/sign-in", get(signin::form).post(signin::sign_in))
        .route("/sign-out", post(signin::sign_out))
        .route("/assets/{file}", get(assets::serve))
        .layer(middleware::from_fn(security_headers))
        .layer(Extension(state))
}

/// The Content-Security-Policy of every UI response: nothing but this server's own files, no
/// inline script or style, no framing, forms only to this server.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    add_security_headers(&mut response);
    response
}

/// A page that says what went wrong, for a browser's request outside the UI's routes (a
/// mistyped address, a method no page takes), with the UI's own headers.
pub fn browser_error_page(status: StatusCode, message: &str) -> Response {
    let mut response = error_page(status, message);
    add_security_headers(&mut response);
    response
}

/// Whether a request asks for a page (a browser's navigation) rather than JSON.
pub fn wants_a_page(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

fn add_security_headers(response: &mut Response) {
    let headers = response.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    for (name, value) in set {
        headers.insert(name, value);
    }
    // Pages show stored events: no cache may keep them. Assets set their own (immutable) policy.
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Who is looking: a signed-in browser (with its CSRF token for forms) or a client that sent a
/// read token in an `Authorization` header. Taking a `Viewer` is what makes a handler require
/// sign-in.
#[derive(Debug, Clone)]
pub struct Viewer {
    csrf: Option<String>,
    ui: Arc<UiState>,
}

impl Viewer {
    /// The CSRF token for the sign-out form, when signed in with a cookie.
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }

    /// A whole page for this viewer.
    fn page(&self, title: &str, nav: Nav, main: Markup) -> Response {
        self.page_with_status(StatusCode::OK, title, nav, main)
    }

    /// A whole page for this viewer, answered with `status`.
    fn page_with_status(
        &self,
        status: StatusCode,
        title: &str,
        nav: Nav,
        main: Markup,
    ) -> Response {
        html_response(status, layout::page(title, nav, self.csrf(), main))
    }
}

/// The UI's state, put on every UI request by the router's `Extension` layer.
fn ui_state(parts: &Parts) -> Option<Arc<UiState>> {
    parts.extensions.get::<Arc<UiState>>().cloned()
}

/// The answer when [`ui_state`] finds nothing: a route outside [`router`] (a bug).
fn no_ui_state() -> Response {
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the UI is not set up on this route",
    )
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let ui = ui_state(parts).ok_or_else(no_ui_state)?;
        if parts.headers.contains_key(header::AUTHORIZATION) {
            if let Some(wait) = state.token_guesses.refusal(parts, &state.trusted_proxies) {
                return Err(too_many_wrong_tokens(wait));
            }
            return match state.read_credentials.check_headers(&parts.headers) {
                Ok(()) => Ok(Viewer { csrf: None, ui }),
                Err(err) => {
                    crate::server::guesses::note_refused(state, parts, &err);
                    Err(error_page(StatusCode::UNAUTHORIZED, &err.to_string()))
                }
            };
        }
        if state.read_credentials.is_open() {
            return Ok(Viewer { csrf: None, ui });
        }
        let session = session_id(parts).and_then(|id| ui.sessions.touch(id));
        match session {
            Some(session) => Ok(Viewer {
                csrf: Some(session.csrf),
                ui,
            }),
            None if parts.uri.path().starts_with("/ui/fragments/") => {
                // The script answers a 401 by going to the sign-in page.
                Err(error_page(StatusCode::UNAUTHORIZED, "sign in first"))
            }
            None => {
                let next = parts.uri.path_and_query().map_or("/", |path| path.as_str());
                Err(Redirect::to(&layout::link("/sign-in", &[("next", next)])).into_response())
            }
        }
    }
}

/// A 429 page for a client that sent too many wrong tokens, with `Retry-After`.
fn too_many_wrong_tokens(wait: Duration) -> Response {
    let seconds = crate::server::guesses::retry_after_seconds(wait);
    let mut response = error_page(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("Too many wrong tokens from this address: try again in {seconds} s."),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The session id from the request's cookie.
fn session_id(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| session::cookie_value(value, session::COOKIE))
}

/// An HTML response.
fn html_response(status: StatusCode, markup: Markup) -> Response {
    let html = visible_html(markup.into_string());
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        html,
    )
        .into_response()
}

/// `html` with the characters of [`crate::visible`] escaped where people read them: text and
/// `title` tooltips. What events hold is shown as the sender wrote it, but a direction override
/// or an invisible character must not make a value look like another. Other attributes are
/// values the page sends back (a facet's option, a link, a sample filter) and stay exact, so
/// that choosing such a value still finds it; so is the text of a `textarea` (the playground's
/// filter), which the browser edits and sends back as it is. None of these characters is in the pages' own
/// markup, and maud escapes `<`, `>` and `"` in what it inserts: a `<` starts a tag, a `"` in a
/// tag starts or ends an attribute's value.
fn visible_html(html: String) -> String {
    let keep = |c: char| matches!(c, '\n' | '\t' | '\r');
    if !html
        .chars()
        .any(|c| crate::visible::is_hidden(c) && !keep(c))
    {
        return html;
    }
    let mut out = String::with_capacity(html.len() + 64);
    let mut rest = html.as_str();
    while !rest.is_empty() {
        // Text up to the next tag.
        let text_end = rest.find('<').unwrap_or(rest.len());
        out.push_str(&crate::visible::escape_hidden(&rest[..text_end], keep));
        rest = &rest[text_end..];
        // The tag, its `title` values escaped.
        let mark = out.len();
        let mut in_tag = 0;
        let mut quoted_from: Option<usize> = None;
        for (at, c) in rest.char_indices() {
            match quoted_from {
                None => {
                    out.push(c);
                    if c == '"' {
                        quoted_from = Some(at + 1);
                    } else if c == '>' {
                        in_tag = at + 1;
                        break;
                    }
                }
                Some(from) if c == '"' => {
                    let value = &rest[from..at];
                    if rest[..from].ends_with("title=\"") {
                        out.push_str(&crate::visible::escape_hidden(value, keep));
                    } else {
                        out.push_str(value);
                    }
                    out.push('"');
                    quoted_from = None;
                }
                Some(_) => {}
            }
        }
        if in_tag == 0 {
            // Not closed (cannot happen with maud): the rest as it is.
            out.truncate(mark);
            out.push_str(rest);
            break;
        }
        let textarea = out[mark..]
            .strip_prefix("<textarea")
            .is_some_and(|tag| tag.starts_with([' ', '>']));
        rest = &rest[in_tag..];
        if textarea {
            // maud escapes `<` in the text, so the first `</textarea` ends it.
            let end = rest.find("</textarea").unwrap_or(rest.len());
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        }
    }
    out
}

/// A page that says what went wrong.
fn error_page(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    html_response(
        status,
        layout::page(
            title,
            Nav::None,
            None,
            html! {
                h1 { (title) }
                p { (message) }
                p { a href="/" { "Back to the events" } }
            },
        ),
    )
}

/// Why a page could not be shown.
#[derive(Debug)]
enum PageError {
    Store(StoreError),
    NotFound(String),
    BadRequest(String),
    /// Work the server has no room for right now: 503, to try again shortly.
    Busy(String),
}

impl From<StoreError> for PageError {
    fn from(err: StoreError) -> Self {
        PageError::Store(err)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::NotFound(what) => error_page(StatusCode::NOT_FOUND, &what),
            PageError::BadRequest(what) => error_page(StatusCode::BAD_REQUEST, &what),
            PageError::Store(StoreError::NotFound(what)) => {
                error_page(StatusCode::NOT_FOUND, &what)
            }
            PageError::Store(StoreError::Invalid(what)) => {
                error_page(StatusCode::BAD_REQUEST, &what)
            }
            PageError::Busy(what) => {
                let mut response = error_page(StatusCode::SERVICE_UNAVAILABLE, &what);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            PageError::Store(err) if err.is_transient() => {
                let mut response = error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("{err}. Try again in a moment."),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            PageError::Store(err) => {
                tracing::error!(error = %err, "a UI page failed");
                error_page(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string())
            }
        }
    }
}

/// A query-string value that is present and not blank, trimmed.
fn given(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

/// Says that a query-string value is not applied, when it was given and is not one the page
/// takes (`taken`): shown on the page, so that a list without it is not read as its answer.
fn not_applied(given_value: &Option<String>, taken: bool, what: &str) -> Option<String> {
    let value = given(given_value).filter(|_| !taken)?;
    Some(format!(
        "“{}” is not {what}, so it is not applied.",
        layout::shorten(&value, 80)
    ))
}

/// A cursor from the query string (`before=<id>`, ids start at 1); anything else is no cursor.
fn cursor(value: &Option<String>) -> Option<i64> {
    value
        .as_deref()
        .and_then(|value| value.trim().parse().ok())
        .filter(|id| *id > 0)
}

/// Time ranges offered by the lists: `(value, label, length in ms)`.
const RANGES: [(&str, &str, Option<i64>); 4] = [
    ("24h", "Last 24 hours", Some(86_400_000)),
    ("7d", "Last 7 days", Some(7 * 86_400_000)),
    ("30d", "Last 30 days", Some(30 * 86_400_000)),
    ("all", "All time", None),
];

/// The range named in the query string when it is one of [`RANGES`], else `default`.
fn range_name(value: &Option<String>, default: &str) -> String {
    given(value)
        .filter(|range| RANGES.iter().any(|(name, _, _)| name == range))
        .unwrap_or_else(|| default.to_owned())
}

/// [`RANGES`] as the options of a `<select>`.
fn range_options() -> Vec<(&'static str, &'static str)> {
    RANGES
        .iter()
        .map(|(value, label, _)| (*value, *label))
        .collect()
}

/// `since` for a range name (unknown names: all time).
fn range_since(range: &str, now: i64) -> Option<i64> {
    RANGES
        .iter()
        .find(|(name, _, _)| *name == range)
        .and_then(|(_, _, length)| length.map(|length| now - length))
}

/// An hour in milliseconds: the grain of the counts.
const HOUR: i64 = 3_600_000;

/// The events a range of the events list holds, as `(since, until)`: the hours the counts
/// above the list are made of (hourly rollups), from the start of the range's first hour to
/// the end of the current one, so that the list holds what is counted. An event received
/// further "in the future" (restored from a machine whose clock ran ahead) is under "all time"
/// (no bounds), as it is counted there. The playground tests a filter on the same events.
fn range_bounds(range: &str, now: i64) -> (Option<i64>, Option<i64>) {
    match range_since(range, now) {
        Some(since) => (
            Some(since.div_euclid(HOUR) * HOUR),
            Some((now + HOUR - 1).div_euclid(HOUR) * HOUR),
        ),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::visible_html;

    #[test]
    fn text_and_tooltips_show_hidden_characters_and_values_sent_back_stay_exact() {
        let html = "<p class=\"x\">a\u{202e}b</p><option value=\"soft\u{ad}hyphen\">soft\u{ad}hyphen</option>\
                    <span title=\"t\u{200b}\">👨\u{200d}👩</span>"
            .to_owned();
        assert_eq!(
            visible_html(html),
            "<p class=\"x\">a\\u202eb</p><option value=\"soft\u{ad}hyphen\">soft\\u00adhyphen</option>\
             <span title=\"t\\u200b\">👨\u{200d}👩</span>"
        );
        let plain = "<p title=\"é\">plain</p>".to_owned();
        assert_eq!(visible_html(plain.clone()), plain);
    }

    #[test]
    fn a_textarea_holds_its_text_as_typed() {
        let html = "<textarea name=\"filter\">$[?(@.a == 'x\u{200b}')]</textarea><p>\u{200b}</p>"
            .to_owned();
        assert_eq!(
            visible_html(html),
            "<textarea name=\"filter\">$[?(@.a == 'x\u{200b}')]</textarea><p>\\u200b</p>"
        );
    }
}
