//! `GET/POST /sign-in` and `POST /sign-out`.
//!
//! CSRF: the session cookie is `SameSite=Strict`, so no other site's page can make a browser send
//! it. On top, both forms refuse a request whose `Origin` (or `Referer`) names another host than
//! the one it was sent to, so that no other site can sign a browser in with a token of its
//! choosing; signing out also needs the session's CSRF token, unless the `Origin` says that the
//! form is a page of this site (one shown before the browser signed in again). The host a proxy
//! says it was asked for (`X-Forwarded-Host`, `X-Forwarded-Proto`) counts only from a trusted
//! proxy (`server.trusted_proxies`), as its `X-Forwarded-For` does.

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::PageQuery;
use super::layout::{self, Nav};
use super::{
    AppState, UiState, error_page, html_response, no_ui_state, session, session_id, ui_state,
};

/// `?next=` of the sign-in page, and `?out=` after signing out.
#[derive(Debug, Deserialize)]
pub struct Next {
    next: Option<String>,
    out: Option<String>,
}

/// What signing out did, as `?out=` tells the sign-in page.
const ENDED: &str = "ended";
const NO_SESSION: &str = "none";

/// The sign-in page's line about the sign-out that led there.
fn signed_out_notice(out: Option<&str>) -> Option<&'static str> {
    match out {
        Some(ENDED) => Some("You are signed out."),
        Some(NO_SESSION) => Some(
            "You were already signed out: the session had ended (signed out in another tab, \
             expired, or the server restarted).",
        ),
        _ => None,
    }
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub struct SignIn {
    token: String,
    next: Option<String>,
}

/// The sign-out form's fields.
#[derive(Debug, Deserialize)]
pub struct SignOut {
    csrf: String,
}

/// Where to go after signing in: a path on this server, or `/`. Anything that a browser could read
/// as another host (`//host`, `/\host`, a scheme) is refused, so the parameter cannot be used to
/// send people elsewhere.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.starts_with("/\\")
                && !next.chars().any(|c| c.is_control())
                && !next.starts_with("/sign-") =>
        {
            next
        }
        _ => "/",
    }
}

/// `next` as a `Location`: characters a URI may not hold (quotes, angle brackets, spaces,
/// anything not ASCII) percent-encoded, escapes already there kept.
fn location(next: &str) -> String {
    const NOT_IN_URI: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'<')
        .add(b'>')
        .add(b'\\')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');
    percent_encoding::utf8_percent_encode(next, NOT_IN_URI).to_string()
}

fn form_page(
    status: StatusCode,
    next: &str,
    problem: Option<&str>,
    notice: Option<&str>,
) -> Response {
    let main: Markup = html! {
        div.signin {
            h1 { "Sign in" }
            @if let Some(notice) = notice {
                p.alert.info role="status" { (notice) }
            }
            p {
                "Enter a read token. "
                "provtrail printed one when it first started and keeps it in "
                code { "<database>.read-token" } "; an ingest token does not open the UI."
            }
            @if let Some(problem) = problem {
                p.alert role="alert" #signin-error { (problem) }
            }
            form method="post" action="/sign-in" {
                input type="hidden" name="next" value=(next);
                label.field {
                    span { "Read token" }
                    input type="password" name="token" autocomplete="current-password"
                        required autofocus aria-describedby=[problem.map(|_| "signin-error")];
                }
                button.primary type="submit" { "Sign in" }
            }
        }
    };
    html_response(status, layout::page("Sign in", Nav::None, None, main))
}

/// `GET /sign-in`: the form, or straight on when already signed in.
pub async fn form(
    State(state): State<AppState>,
    PageQuery(query): PageQuery<Next>,
    parts: Parts,
) -> Response {
    let next = safe_next(query.next.as_deref());
    let signed_in = state.read_credentials.is_open()
        || ui_state(&parts)
            .is_some_and(|ui| session_id(&parts).is_some_and(|id| ui.sessions.touch(id).is_some()));
    if signed_in {
        return Redirect::to(&location(next)).into_response();
    }
    form_page(
        StatusCode::OK,
        next,
        None,
        signed_out_notice(query.out.as_deref()),
    )
}

/// `POST /sign-in`: checks the token and starts a session.
pub async fn sign_in(
    State(state): State<AppState>,
    parts: Parts,
    form: Result<Form<SignIn>, FormRejection>,
) -> Response {
    let Some(ui) = ui_state(&parts) else {
        return no_ui_state();
    };
    let through_proxy = state.trusted_proxies.from_trusted_proxy(&parts);
    let Some(secure) = same_origin(&parts.headers, &parts.uri, through_proxy) else {
        // A proxy that rewrites the Host and is not named as trusted looks like another site:
        // said, for whoever sets the server up.
        if !through_proxy && parts.headers.contains_key("x-forwarded-host") {
            return error_page(
                StatusCode::FORBIDDEN,
                "this sign-in form was sent from another site, as far as this server can tell: \
                 the request's X-Forwarded-Host comes from a proxy that is not trusted, so it is \
                 not believed (name the proxy with --trusted-proxy or [server] trusted_proxies)",
            );
        }
        return error_page(
            StatusCode::FORBIDDEN,
            "this sign-in form was sent from another site",
        );
    };
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return form_error(&rejection),
    };
    let secure = secure || state.serves_tls;
    let next = safe_next(form.next.as_deref());
    let origin = state.trusted_proxies.origin(&parts);
    let address = origin.map(|origin| crate::server::listener::client_of(origin.ip()));
    // Wrong tokens count alike here and in `Authorization` headers (`server::guesses`).
    if let Some(wait) = address.and_then(|address| state.token_guesses.wait(address)) {
        let seconds = crate::server::guesses::retry_after_seconds(wait);
        let mut response = form_page(
            StatusCode::TOO_MANY_REQUESTS,
            next,
            Some(&format!(
                "Too many wrong tokens from this address: try again in {seconds} s."
            )),
            None,
        );
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let token = form.token.trim();
    let authorization = format!("Bearer {token}");
    if token.is_empty()
        || state
            .read_credentials
            .check(Some(authorization.as_bytes()))
            .is_err()
    {
        // One of the server's own credentials in the wrong place (the ingest token) is a
        // mistake, not a guess.
        let own = crate::server::guesses::is_own_credential(&state, authorization.as_bytes());
        if let (Some(address), false) = (address, own) {
            state.token_guesses.note(address);
        }
        let remote = origin.map_or_else(|| "-".to_owned(), |origin| origin.to_log());
        tracing::info!(%remote, "a UI sign-in was refused");
        return form_page(
            StatusCode::UNAUTHORIZED,
            next,
            Some("That is not a read token. Check it and try again."),
            None,
        );
    }
    start_session(&ui, next, secure)
}

fn start_session(ui: &UiState, next: &str, secure: bool) -> Response {
    let id = ui.sessions.create();
    let mut response = Redirect::to(&location(next)).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(&id, secure)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /sign-out`: ends the session named by the cookie and clears the cookie, when the form
/// carries the session's CSRF token or its `Origin` says it is a page of this site.
pub async fn sign_out(
    State(state): State<AppState>,
    parts: Parts,
    form: Result<Form<SignOut>, FormRejection>,
) -> Response {
    let Some(ui) = ui_state(&parts) else {
        return no_ui_state();
    };
    let forged = || {
        error_page(
            StatusCode::FORBIDDEN,
            "this sign-out form was not sent from this site",
        )
    };
    // Another site's form is refused before anything: without the session cookie
    // (`SameSite=Strict`) it names no session, and clearing the cookie would sign the browser
    // out all the same.
    let through_proxy = state.trusted_proxies.from_trusted_proxy(&parts);
    let Some(same_site_is_https) = same_origin(&parts.headers, &parts.uri, through_proxy) else {
        return forged();
    };
    // `same_origin` passed: an `Origin` or `Referer` given names this site.
    let stated =
        parts.headers.contains_key(header::ORIGIN) || parts.headers.contains_key(header::REFERER);
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return form_error(&rejection),
    };
    let secure = same_site_is_https || state.serves_tls;
    let out = match session_id(&parts) {
        Some(id) => match ui.sessions.touch(id) {
            // A page shown before the browser signed out and in again (in another tab) carries
            // the token of a session that is gone, while the cookie names the new one. A browser
            // says where a form comes from, so a form of this site ends the session the browser
            // holds now, as the person asked; a request that says nothing (not a browser) must
            // carry the token.
            Some(session) if stated || session.csrf_matches(&form.csrf) => {
                ui.sessions.remove(id);
                ENDED
            }
            Some(_) => return forged(),
            None => NO_SESSION,
        },
        None => NO_SESSION,
    };
    let mut response = Redirect::to(&layout::link("/sign-in", &[("out", out)])).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::clear_cookie(secure)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// A form that could not be read (not a form, a field missing) as a page that says so.
fn form_error(rejection: &FormRejection) -> Response {
    error_page(
        rejection.status(),
        "the form could not be read: send it from the sign-in page or the sign-out button",
    )
}

/// `scheme://host[:port]` → `(scheme, host[:port])`.
fn split_origin(origin: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = origin.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    Some((scheme, host))
}

/// Checks that a form was posted from a page of this server. `None`: from another site. `Some`:
/// whether the browser used HTTPS (so that the cookie gets `Secure`, also behind a proxy that
/// ends TLS). `through_proxy`: the request came from a trusted proxy, whose `X-Forwarded-Host`
/// and `X-Forwarded-Proto` say what the browser asked for; from anyone else they mean nothing
/// (a client could name whatever host its `Origin` names).
fn same_origin(headers: &HeaderMap, uri: &Uri, through_proxy: bool) -> Option<bool> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let forwarded = |name: &str| text(name).filter(|_| through_proxy);
    // A chain of proxies lists a host each (`a, b`); the one the browser asked for is among
    // them. Only the browser's `Origin` is matched against them, which a page of another site
    // cannot set.
    let hosts: Vec<&str> = [
        text("host"),
        uri.authority().map(|authority| authority.as_str()),
    ]
    .into_iter()
    .flatten()
    .chain(
        forwarded("x-forwarded-host")
            .into_iter()
            .flat_map(|list| list.split(',').map(str::trim)),
    )
    .collect();
    let forwarded_https = forwarded("x-forwarded-proto")
        .is_some_and(|proto| proto.split(',').next().map(str::trim) == Some("https"))
        || uri.scheme_str() == Some("https");
    let claimed = text("origin")
        .filter(|origin| *origin != "null")
        .or_else(|| text("referer"));
    match claimed {
        // Not from a browser (a browser always sends Origin with a POST): nothing to forge.
        None if text("origin").is_none() => Some(forwarded_https),
        None => None,
        Some(claimed) => {
            let (scheme, host) = split_origin(claimed)?;
            hosts
                .iter()
                .any(|own| own.eq_ignore_ascii_case(host))
                .then_some(scheme.eq_ignore_ascii_case("https") || forwarded_https)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next(Some("/event/3?x=1")), "/event/3?x=1");
        for hostile in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "/sign-in",
            "/a\nb",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/", "{hostile}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_redirect_after_sign_in_is_a_valid_uri() {
        assert_eq!(location("/event/3?q=a%20b"), "/event/3?q=a%20b");
        assert_eq!(
            location("/\"><script>x</script>\u{202e}"),
            "/%22%3E%3Cscript%3Ex%3C/script%3E%E2%80%AE"
        );
    }

    #[test]
    fn forms_from_other_sites_are_refused() {
        let uri: Uri = "/sign-in".parse().unwrap();
        let own = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert_eq!(same_origin(&own, &uri, false), Some(false));
        let tls = headers(&[
            ("host", "trail.example"),
            ("origin", "https://trail.example"),
        ]);
        assert_eq!(same_origin(&tls, &uri, false), Some(true));
        let other = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert_eq!(same_origin(&other, &uri, false), None);
        let null = headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert_eq!(same_origin(&null, &uri, false), None);
        let referer = headers(&[
            ("host", "127.0.0.1:8080"),
            ("referer", "http://evil.example/page"),
        ]);
        assert_eq!(same_origin(&referer, &uri, false), None);
        let curl = headers(&[("host", "127.0.0.1:8080")]);
        assert_eq!(same_origin(&curl, &uri, false), Some(false));
        let proxied = headers(&[
            ("host", "backend:8080"),
            ("x-forwarded-host", "trail.example"),
            ("x-forwarded-proto", "https"),
            ("origin", "https://trail.example"),
        ]);
        assert_eq!(same_origin(&proxied, &uri, true), Some(true));
        // Through a chain of proxies, each adds the host it was asked for.
        let chained = headers(&[
            ("host", "backend:8080"),
            ("x-forwarded-host", "trail.example, internal.lan"),
            ("x-forwarded-proto", "https, http"),
            ("origin", "https://trail.example"),
        ]);
        assert_eq!(same_origin(&chained, &uri, true), Some(true));
        // Not from a trusted proxy: what the headers claim is not believed.
        assert_eq!(same_origin(&proxied, &uri, false), None);
    }
}
