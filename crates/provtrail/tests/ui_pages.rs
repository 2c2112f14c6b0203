//! The web UI over loopback HTTP against a real SQLite store: sign-in and its protections, every
//! page's content, escaping of hostile event content, and the security headers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Answer, TOKEN, TestServer, payload};
use serde_json::json;

const READ: &str = "read-token-for-ui-tests-0123456789";

const PAGES: [&str; 8] = [
    "/",
    "/failures",
    "/playground",
    "/deliveries",
    "/quarantine",
    "/event/1",
    "/quarantine/1",
    "/?q=x&range=7d",
];

async fn start() -> TestServer {
    TestServer::start_with(|config| config.read.tokens = vec![READ.into()]).await
}

/// A client that does not follow redirects and keeps no cookies: the tests look at both.
fn client() -> reqwest::Client {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(server: &TestServer, path: &str, cookie: Option<&str>) -> Answer {
    let mut request = client().get(server.url(path));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    Answer::read(request.send().await.unwrap()).await
}

async fn sign_in_with(server: &TestServer, token: &str, origin: Option<&str>) -> Answer {
    let mut request = client()
        .post(server.url("/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", token), ("next", "/failures")]));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    Answer::read(request.send().await.unwrap()).await
}

/// Signs in with the read token; returns the `Cookie` header value.
async fn sign_in(server: &TestServer) -> String {
    let origin = format!("http://{}", server.addr);
    let answer = sign_in_with(server, READ, Some(&origin)).await;
    assert_eq!(answer.status, 303, "{}", answer.text());
    let set_cookie = answer.header("set-cookie").unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn page(server: &TestServer, cookie: &str, path: &str) -> String {
    let answer = get(server, path, Some(cookie)).await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.text());
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    answer.text()
}

async fn post_event(server: &TestServer, body: serde_json::Value) -> i64 {
    let answer = server
        .post("/events", serde_json::to_vec(&body).unwrap())
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.outcome().1
}

fn event(n: usize, source: &str, result: &str, error: Option<&str>) -> serde_json::Value {
    json!({
        "trackingNumber": format!("track-{n}"),
        "sources": source,
        "action": if n % 2 == 0 { "IdentityRefresh" } else { "Access Request" },
        "errors": error.map(|e| vec![e]).unwrap_or_default(),
        "recipient": {"type": "IDENTITY", "id": format!("id-{n}"), "name": format!("Person {n}")},
        "accountRequests": [{
            "source": {"id": "s1", "type": "SOURCE", "name": source},
            "accountId": format!("acct-{n}"),
            "accountOperation": "Modify",
            "provisioningResult": result,
            "provisioningTarget": source,
            "attributeRequests": [{"attributeName": "title", "attributeValue": format!("Engineer {n}"), "operation": "Set"}]
        }],
        "_metadata": {"invocationId": format!("inv-{n}")}
    })
}

#[tokio::test]
async fn pages_redirect_to_sign_in_and_fragments_answer_401() {
    let server = start().await;
    for path in PAGES {
        let answer = get(&server, path, None).await;
        assert_eq!(answer.status, 303, "{path}");
        let location = answer.header("location").unwrap();
        assert!(
            location.starts_with("/sign-in?next=%2F"),
            "{path}: {location}"
        );
    }
    for path in [
        "/ui/fragments/events?after=0",
        "/ui/fragments/playground?filter=$",
    ] {
        assert_eq!(get(&server, path, None).await.status, 401, "{path}");
    }
    // A forged cookie is no session.
    let forged = get(&server, "/", Some("provtrail_session=forged")).await;
    assert_eq!(forged.status, 303);
    let form = get(&server, "/sign-in?next=/failures", None).await;
    assert_eq!(form.status, 200);
    assert!(form.text().contains(r#"name="token""#));
}

#[tokio::test]
async fn the_read_token_signs_in_with_a_protected_opaque_cookie() {
    let server = start().await;
    let origin = format!("http://{}", server.addr);

    for wrong in ["wrong", TOKEN, ""] {
        let answer = sign_in_with(&server, wrong, Some(&origin)).await;
        assert_eq!(answer.status, 401, "{wrong:?} must not sign in");
        assert!(answer.header("set-cookie").is_none());
        assert!(answer.text().contains("not a read token"));
    }

    let answer = sign_in_with(&server, READ, Some(&origin)).await;
    assert_eq!(answer.status, 303);
    assert_eq!(answer.header("location"), Some("/failures"));
    let set_cookie = answer.header("set-cookie").unwrap();
    for part in [
        "provtrail_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    assert!(!set_cookie.contains(READ), "the cookie is not the token");
    let cookie = set_cookie.split(';').next().unwrap();
    page(&server, cookie, "/").await;

    // Signed in over HTTPS (as the browser's Origin says), the cookie is Secure.
    let answer = sign_in_with(&server, READ, Some(&format!("https://{}", server.addr))).await;
    assert!(answer.header("set-cookie").unwrap().contains("Secure"));
}

#[tokio::test]
async fn sign_in_from_another_site_is_refused() {
    let server = start().await;
    let answer = sign_in_with(&server, READ, Some("http://evil.example")).await;
    assert_eq!(answer.status, 403);
    assert!(answer.header("set-cookie").is_none());
}

#[tokio::test]
async fn sign_out_needs_the_session_csrf_token_and_ends_the_session() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    let html = page(&server, &cookie, "/").await;
    let csrf = html
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();

    let forged = client()
        .post(server.url("/sign-out"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", "forged")]))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    page(&server, &cookie, "/").await;

    let out = client()
        .post(server.url("/sign-out"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", csrf.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(get(&server, "/", Some(&cookie)).await.status, 303);
}

#[tokio::test]
async fn another_sites_sign_out_form_neither_signs_out_nor_clears_the_cookie() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    // The browser does not send the `SameSite=Strict` cookie with another site's form.
    let forged = client()
        .post(server.url("/sign-out"))
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", "x")]))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(forged.headers().get("set-cookie").is_none());
    page(&server, &cookie, "/").await;
}

#[tokio::test]
async fn a_browser_gets_pages_for_unknown_addresses_and_methods_and_other_clients_json() {
    let server = start().await;
    let html = "text/html,application/xhtml+xml,*/*;q=0.8";
    for (method, path, accept, status, page) in [
        ("GET", "/nonexistent", Some(html), 404, true),
        ("PUT", "/", Some(html), 405, true),
        ("DELETE", "/event/1", Some(html), 405, true),
        ("GET", "/nonexistent", None, 404, false),
        ("GET", "/api/v1/nonexistent", Some(html), 404, false),
    ] {
        let mut request = client().request(method.parse().unwrap(), server.url(path));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let answer = Answer::read(request.send().await.unwrap()).await;
        assert_eq!(answer.status, status, "{method} {path}");
        let content_type = answer.header("content-type").unwrap_or_default();
        if page {
            assert!(content_type.starts_with("text/html"), "{method} {path}");
            assert!(answer.header("content-security-policy").is_some());
            assert_eq!(answer.header("cache-control"), Some("no-store"));
        } else {
            assert!(
                content_type.starts_with("application/json"),
                "{method} {path}"
            );
        }
    }
}

#[tokio::test]
async fn forms_that_cannot_be_read_get_an_error_page() {
    let server = start().await;
    for (path, content_type, body) in [
        ("/sign-out", None, ""),
        (
            "/sign-out",
            Some("application/x-www-form-urlencoded"),
            "x=1",
        ),
        ("/sign-in", Some("application/x-www-form-urlencoded"), "x=1"),
        ("/sign-in", Some("text/plain"), "token=abc"),
    ] {
        let mut request = client().post(server.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let answer = Answer::read(request.send().await.unwrap()).await;
        assert!(
            answer.status == 415 || answer.status == 422,
            "{path} {content_type:?}: {}",
            answer.status
        );
        assert!(
            answer
                .header("content-type")
                .is_some_and(|value| value.starts_with("text/html")),
            "{path} {content_type:?}"
        );
        assert!(
            answer.text().contains("the form could not be read"),
            "{}",
            answer.text()
        );
        assert!(
            answer.header("content-security-policy").is_some(),
            "{path} {content_type:?}"
        );
    }
}

#[tokio::test]
async fn a_bearer_read_token_opens_pages_and_an_ingest_token_does_not() {
    let server = start().await;
    let read = client()
        .get(server.url("/failures"))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let ingest = client()
        .get(server.url("/failures"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ingest.status(), 401);
}

#[tokio::test]
async fn every_response_carries_a_strict_policy_and_assets_are_cached_for_good() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    for path in [
        "/",
        "/failures",
        "/playground",
        "/deliveries",
        "/quarantine",
    ] {
        let answer = get(&server, path, Some(&cookie)).await;
        assert_eq!(answer.status, 200, "{path}");
        let csp = answer.header("content-security-policy").unwrap();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
        // Only a server that serves TLS asks browsers to keep to HTTPS.
        assert_eq!(answer.header("strict-transport-security"), None);
        let html = answer.text();
        assert!(!html.contains("<script>"), "{path}: no inline script");
        assert!(!html.contains(" style="), "{path}: no inline style");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{path}: nothing external"
        );
    }
    let html = get(&server, "/sign-in", None).await.text();
    let assets: Vec<&str> = html
        .split("/assets/")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    assert!(assets.iter().any(|a| a.ends_with(".css")), "{html}");
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{html}");
    for asset in assets {
        let answer = get(&server, &format!("/assets/{asset}"), None).await;
        assert_eq!(answer.status, 200, "{asset}");
        assert_eq!(
            answer.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        assert!(!answer.body.is_empty());
    }
    assert_eq!(get(&server, "/assets/ui.css", None).await.status, 404);
}

#[tokio::test]
async fn hostile_event_content_is_shown_as_text_everywhere() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    let script = "<script>alert('xss')</script>";
    let image = "<img src=x onerror=alert(1)>";
    let breakout = "\"'><svg onload=alert(2)>";
    let id = post_event(
        &server,
        json!({
            "trackingNumber": format!("tn{breakout}"),
            "sources": format!("Src{image}"),
            "action": script,
            "errors": [format!("boom {script}")],
            "warnings": [image],
            "recipient": {"type": "IDENTITY", "id": breakout, "name": format!("Mallory {script}")},
            "requester": {"type": "IDENTITY", "id": "r", "name": image},
            "accountRequests": [{
                "source": {"id": breakout, "type": "SOURCE", "name": format!("AD {script}")},
                "accountId": image,
                "accountOperation": breakout,
                "provisioningResult": "FAILED",
                "provisioningTarget": script,
                "ticketId": breakout,
                "attributeRequests": [{"attributeName": image, "attributeValue": script, "operation": "Add"}]
            }],
            "_metadata": {"invocationId": breakout}
        }),
    )
    .await;
    // A quarantined document and a rejected one, hostile too.
    let quarantined = server
        .post(
            &format!("/events/{}", "chan"),
            format!(r#"{{"trackingNumber": "{}"}}"#, "<script>alert(3)</script>"),
        )
        .await;
    assert_eq!(quarantined.status, 202);
    let q_id = quarantined.outcome().1;
    let not_json = server.post("/events", format!("not json {script}")).await;
    assert_eq!(not_json.status, 400);

    let filter = "$[?($.action =~ /^<script>alert.*/)]".to_owned();
    let paths = [
        "/".to_owned(),
        format!("/?q={}", "alert"),
        format!("/event/{id}"),
        "/failures".to_owned(),
        format!("/playground?filter={}", urlencode(&filter)),
        format!("/playground?filter={}", urlencode("$[?(<script>")),
        "/deliveries".to_owned(),
        "/quarantine".to_owned(),
        format!("/quarantine/{q_id}"),
    ];
    for path in &paths {
        let html = page(&server, &cookie, path).await;
        for raw in ["<script>alert", "<img src=x", "<svg onload", "'><svg"] {
            assert!(!html.contains(raw), "{path} shows {raw} unescaped:\n{html}");
        }
    }
    let event_page = page(&server, &cookie, &format!("/event/{id}")).await;
    assert!(event_page.contains("Mallory &lt;script&gt;alert('xss')&lt;/script&gt;"));
    assert!(event_page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    let playground = page(
        &server,
        &cookie,
        &format!("/playground?filter={}", urlencode(&filter)),
    )
    .await;
    assert!(playground.contains(r#"data-matched="1""#), "{playground}");

    // A direction override would show `gnp.exe` as `exe.png`, a control character as nothing:
    // both are shown as their escapes.
    let spoof = "\u{202e}gnp.exe\u{202c}";
    let id = post_event(
        &server,
        json!({
            "trackingNumber": format!("{spoof}\u{1}"),
            "sources": "AD",
            "recipient": {"type": "IDENTITY", "id": "x", "name": format!("Eve{spoof}\u{200b}")},
            "accountRequests": [{
                "source": {"id": "s", "type": "SOURCE", "name": format!("AD{spoof}")},
                "accountOperation": "Modify",
                "provisioningResult": "SUCCESS",
                "provisioningTarget": "AD",
            }],
        }),
    )
    .await;
    for path in [
        "/".to_owned(),
        format!("/event/{id}"),
        "/failures".to_owned(),
    ] {
        let html = page(&server, &cookie, &path).await;
        // What people read: the page without its attributes' values (those a page sends back,
        // like a facet's option, stay exact), `title` tooltips apart.
        let mut shown = String::new();
        let (mut in_tag, mut quoted) = (false, false);
        for c in html.chars() {
            match c {
                '"' if in_tag => quoted = !quoted,
                '<' if !quoted => in_tag = true,
                '>' if !quoted => in_tag = false,
                _ if quoted => continue,
                _ => {}
            }
            shown.push(c);
        }
        for hidden in ['\u{202e}', '\u{202c}', '\u{1}', '\u{200b}'] {
            assert!(!shown.contains(hidden), "{path} shows {hidden:?}");
            assert!(
                !html.contains(&format!("title=\"{hidden}")),
                "{path} tooltip"
            );
        }
        assert!(html.contains("\\u202egnp.exe\\u202c"), "{path}:\n{html}");
    }
    // The source facet sends the value back exact, so that choosing it finds the event.
    let chosen = page(
        &server,
        &cookie,
        &format!("/?source={}", urlencode(&format!("AD{spoof}"))),
    )
    .await;
    assert!(
        chosen.contains(&format!("value=\"AD{spoof}\" selected")),
        "{chosen}"
    );
    assert_eq!(chosen.matches("<tr data-id=").count(), 1, "{chosen}");
    // Joiners that join (an emoji family, a Persian word) are text, not escapes.
    let family = "👨\u{200d}👩\u{200d}👧 می\u{200c}خواهم";
    let id = post_event(
        &server,
        json!({
            "trackingNumber": "t-family",
            "sources": "AD",
            "recipient": {"type": "IDENTITY", "id": "x", "name": family},
            "accountRequests": [],
        }),
    )
    .await;
    let event_page = page(&server, &cookie, &format!("/event/{id}")).await;
    assert!(event_page.contains(family), "{event_page}");
}

/// An `application/x-www-form-urlencoded` body.
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", urlencode(key), urlencode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn the_events_page_searches_filters_pages_and_adds_new_rows() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    let mut ids = Vec::new();
    for n in 0..60 {
        let (source, result, error) = if n % 3 == 0 {
            ("Workday", "FAILED", Some("Connection refused by upstream"))
        } else {
            ("Corp LDAP", "SUCCESS", None)
        };
        ids.push(post_event(&server, event(n, source, result, error)).await);
    }
    let all = page(&server, &cookie, "/").await;
    assert_eq!(all.matches("<tr data-id=").count(), 50, "a page holds 50");
    assert!(all.contains("track-59") && !all.contains("track-5<"));
    assert!(all.contains(&format!("before={}", ids[10])), "older link");
    let older = page(&server, &cookie, &format!("/?before={}", ids[10])).await;
    assert_eq!(older.matches("<tr data-id=").count(), 10);
    assert!(
        !older.contains("data-live-url"),
        "only the first page is live"
    );

    let failed = page(&server, &cookie, "/?result=FAILED&source=Workday").await;
    assert_eq!(failed.matches("<tr data-id=").count(), 20);
    assert!(failed.contains("Connection refused"));
    let text = page(&server, &cookie, "/?q=refused&source=Corp+LDAP").await;
    assert_eq!(text.matches("<tr data-id=").count(), 0);
    assert!(text.contains("No events match"));
    // What the API would refuse is said on the page, not silently dropped.
    let no_words = page(&server, &cookie, "/?q=%22").await;
    assert!(
        no_words.contains("has no words to search for"),
        "{no_words}"
    );
    assert_eq!(no_words.matches("<tr data-id=").count(), 50);
    let bogus = page(&server, &cookie, "/?result=bogus&source=Workday").await;
    assert!(
        bogus.contains("“bogus” is not an account request result"),
        "{bogus}"
    );
    assert_eq!(
        bogus.matches("<tr data-id=").count(),
        20,
        "the source still applies"
    );
    assert!(
        !failed.contains("not applied"),
        "a good query has no notice"
    );
    for (path, notice) in [
        ("/deliveries?outcome=bogus", "“bogus” is not an outcome"),
        ("/deliveries?range=forever", "“forever” is not a time range"),
        ("/quarantine?reason=bogus", "“bogus” is not a reason"),
        ("/failures?range=forever", "“forever” is not a range here"),
        ("/failures?bucket=minute", "“minute” is not a bucket"),
        ("/playground?range=bogus", "“bogus” is not a time range"),
        ("/?before=abc", "“abc” is not a page of this list"),
        ("/?before=-1", "“-1” is not a page of this list"),
        ("/deliveries?before=x", "“x” is not a page of this list"),
        ("/quarantine?before=0", "“0” is not a page of this list"),
    ] {
        let shown = page(&server, &cookie, path).await;
        assert!(shown.contains(notice), "{path}: {shown}");
    }
    let good = page(&server, &cookie, "/deliveries?outcome=accepted").await;
    assert!(!good.contains("not applied"), "{good}");
    let by_number = page(&server, &cookie, "/?number=track-7").await;
    assert_eq!(by_number.matches("<tr data-id=").count(), 1);
    let by_invocation = page(&server, &cookie, "/?number=inv-8").await;
    assert!(by_invocation.contains("track-8"));
    assert_eq!(by_invocation.matches("<tr data-id=").count(), 1);
    assert!(all.contains(r#"<option value="Workday">"#), "source facet");

    // Live: the fragment gives only the rows newer than the newest shown, with the same filters.
    let newest = *ids.last().unwrap();
    let url = format!("/ui/fragments/events?result=FAILED&after={newest}");
    assert_eq!(page(&server, &cookie, &url).await.matches("<tr").count(), 0);
    post_event(&server, event(100, "Workday", "FAILED", Some("late"))).await;
    post_event(&server, event(101, "Corp LDAP", "SUCCESS", None)).await;
    let fresh = page(&server, &cookie, &url).await;
    assert_eq!(fresh.matches("<tr").count(), 1, "{fresh}");
    assert!(fresh.contains("track-100"));

    // More new rows than one poll adds: the page is told to offer a reload instead.
    for n in 200..252 {
        post_event(&server, event(n, "Workday", "FAILED", None)).await;
    }
    let burst = get(&server, &url, Some(&cookie)).await;
    assert_eq!(burst.header("x-provtrail-more"), Some("1"));
    assert_eq!(burst.text().matches("<tr").count(), 50);
    assert!(burst.text().contains("track-251"), "newest first");
}

#[tokio::test]
async fn long_values_are_shown_clipped_in_tables_and_whole_in_the_body() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    let source = "S".repeat(20_000);
    let value = "V".repeat(20_000);
    let id = post_event(
        &server,
        json!({
            "trackingNumber": "t-long",
            "sources": "AD",
            "recipient": {"type": "IDENTITY", "id": "x", "name": "Long Values"},
            "accountRequests": [{
                "source": {"id": "s", "type": "SOURCE", "name": source},
                "accountOperation": "Modify",
                "provisioningResult": "FAILED",
                "provisioningTarget": "AD",
                "attributeRequests": (0..4)
                    .map(|n| json!({"attributeName": format!("a{n}"), "attributeValue": value, "operation": "Add"}))
                    .collect::<Vec<_>>(),
            }],
        }),
    )
    .await;
    let event_page = page(&server, &cookie, &format!("/event/{id}")).await;
    assert!(
        event_page.contains("20,000 characters in all"),
        "{event_page}"
    );
    // The body shows the event once pretty-printed and once as received; the tables show 1,000
    // characters of each value.
    let runs = |html: &str, text: &str| html.matches(text).count();
    assert_eq!(runs(&event_page, &value), 4 * 2);
    assert_eq!(runs(&event_page, &source), 2);
    for path in ["/", "/failures"] {
        // As text, that is: a facet's option keeps the whole name as its value.
        let html = page(&server, &cookie, path).await;
        assert!(
            !html.contains(&format!(">{}", "S".repeat(100))),
            "{path} shows the whole source name: {}",
            html.replace(&"S".repeat(1000), "S*1000")
        );
    }
}

#[tokio::test]
async fn a_large_event_shows_every_account_request_and_change() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    let answer = server.post("/events", payload("large_200x5.json")).await;
    assert_eq!(answer.outcome().0, "accepted", "{}", answer.text());
    let html = page(&server, &cookie, &format!("/event/{}", answer.outcome().1)).await;
    assert_eq!(html.matches(r#"<h3 id="changes-"#).count(), 200);
    assert!(html.contains(r#"<h3 id="changes-199""#));
}

#[tokio::test]
async fn the_event_page_shows_requests_changes_problems_body_and_every_delivery() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    let body = payload("doc_example.json");
    let first = server.post("/events/hr-feed", body.clone()).await;
    assert_eq!(first.outcome().0, "accepted");
    let again = server.post("/events/hr-feed", body.clone()).await;
    assert_eq!(again.outcome().0, "duplicate");
    let id = first.outcome().1;
    let html = page(&server, &cookie, &format!("/event/{id}")).await;
    for expected in [
        "4b4d982dddff4267ab12f0f1e72b5a6d",
        "IdentityRefresh",
        "William Wilson",
        "hr-feed",
        "127.0.0.1",
        "Corporate Active Directory",
        "CN=Rob.Robertson,ou=csm,ou=sales,dc=helpco,dc=com",
        "72619262",
        "memberOf",
        "CN=sales,DC=helpco,DC=com",
        "Connector AD Failed",
        "Notification Skipped due to invalid email",
        "&quot;trackingNumber&quot;: &quot;4b4d982dddff4267ab12f0f1e72b5a6d&quot;",
        ">duplicate<",
        ">accepted<",
    ] {
        assert!(html.contains(expected), "missing {expected}");
    }
    assert_eq!(get(&server, "/event/999", Some(&cookie)).await.status, 404);
    assert_eq!(get(&server, "/event/x", Some(&cookie)).await.status, 404);
}

#[tokio::test]
async fn the_failures_page_draws_a_line_per_source() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    for n in 0..12 {
        let (source, result) = match n % 3 {
            0 => ("Workday", "FAILED"),
            1 => ("Okta", "SUCCESS"),
            _ => ("Corp LDAP", "FAILED"),
        };
        post_event(
            &server,
            event(n, source, result, Some("Timeout talking to it")),
        )
        .await;
    }
    for query in [
        "",
        "?range=24h&bucket=hour",
        "?range=90d&bucket=day",
        "?range=bogus",
    ] {
        let html = page(&server, &cookie, &format!("/failures{query}")).await;
        assert!(html.contains(r#"<svg id="failure-chart""#), "{query}");
        assert_eq!(html.matches("<path ").count(), 3, "{query}");
        assert!(html.contains("Timeout talking to it"));
        assert!(html.contains("Workday") && html.contains("Okta"));
    }
}

#[tokio::test]
async fn the_playground_reports_matches_and_the_error_position() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    for n in 0..6 {
        let result = if n < 2 { "FAILED" } else { "SUCCESS" };
        post_event(&server, event(n, "Workday", result, None)).await;
    }
    let failed = r#"$[?($.accountRequests[*].provisioningResult contains "FAILED")]"#;
    let html = page(
        &server,
        &cookie,
        &format!("/ui/fragments/playground?filter={}", urlencode(failed)),
    )
    .await;
    assert!(html.contains(r#"data-matched="2""#), "{html}");
    assert!(html.contains(r#"data-complete="true""#));
    assert!(html.contains("track-1") && html.contains("track-0"));
    assert!(!html.contains("track-2"));

    // As in Jayway (and so in ISC), a nested filter is only an existence test: it matches every
    // event with account requests. The playground shows it rather than hides it.
    let nested = "$[?($.accountRequests[?(@.provisioningResult == 'FAILED')])]";
    let html = page(
        &server,
        &cookie,
        &format!("/ui/fragments/playground?filter={}", urlencode(nested)),
    )
    .await;
    assert!(html.contains(r#"data-matched="6""#), "{html}");
    assert!(!html.contains("unknown-function"), "{html}");

    // A misspelt function compiles, as in Jayway, and matches nothing: the playground says why.
    let misspelt = "$[?($.accountRequests.lenght() > 0)]";
    let html = page(
        &server,
        &cookie,
        &format!("/ui/fragments/playground?filter={}", urlencode(misspelt)),
    )
    .await;
    assert!(html.contains(r#"data-matched="0""#), "{html}");
    assert!(
        html.contains(r#"data-warning="unknown-function""#)
            && html.contains("<code>lenght()</code>"),
        "{html}"
    );

    let broken = "$[?($.action == 'x']";
    let html = page(
        &server,
        &cookie,
        &format!("/ui/fragments/playground?filter={}", urlencode(broken)),
    )
    .await;
    let position = provtrail_jsonpath::compile(broken).unwrap_err().position;
    assert!(html.contains(r#"data-state="error""#), "{html}");
    assert!(html.contains(&format!(r#"<span class="position">{position}</span>"#)));
    // The caret follows the line up to the character, drawn hidden, so that it takes the room
    // of what is above it.
    let before: String = broken.chars().take(position).collect();
    let before = before
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    assert!(
        html.contains(&format!(
            r#"<span class="caret-pad" aria-hidden="true">{before}</span><span class="caret-mark">^</span>"#
        )),
        "{html}"
    );

    let page_html = page(
        &server,
        &cookie,
        &format!("/playground?filter={}", urlencode(failed)),
    )
    .await;
    assert!(
        page_html.contains(r#"data-matched="2""#),
        "the page works without script"
    );
    assert!(page_html.contains("IdentityRefresh"), "samples are offered");
    let thorough = page(
        &server,
        &cookie,
        &format!("/playground?filter={}&thorough=1", urlencode(failed)),
    )
    .await;
    assert!(thorough.contains(r#"data-matched="2""#));
}

#[tokio::test]
async fn the_delivery_log_and_quarantine_show_what_arrived() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    let id = post_event(&server, event(1, "Okta", "SUCCESS", None)).await;
    let quarantined = server.post("/events", r#"{"sources": 3}"#).await;
    assert_eq!(quarantined.status, 202);
    let q_id = quarantined.outcome().1;
    let unauthorized = client()
        .post(server.url("/events"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    server.await_deliveries(3).await;

    let log = page(&server, &cookie, "/deliveries").await;
    assert!(log.contains(&format!(r#"href="/event/{id}""#)));
    assert!(log.contains(&format!(r#"href="/quarantine/{q_id}""#)));
    assert!(log.contains(">rejected<") && log.contains(">401<"));
    let rejected = page(&server, &cookie, "/deliveries?outcome=rejected").await;
    assert!(!rejected.contains(&format!(r#"href="/event/{id}""#)));
    assert!(rejected.contains(">401<"));

    let list = page(&server, &cookie, "/quarantine").await;
    assert!(list.contains("invalid_event"));
    let entry = page(&server, &cookie, &format!("/quarantine/{q_id}")).await;
    assert!(
        entry.contains("trackingNumber"),
        "each problem with its path"
    );
    assert!(entry.contains("{&quot;sources&quot;: 3}"), "the raw body");
}

#[tokio::test]
async fn hostile_redirect_targets_are_not_followed() {
    let server = start().await;
    let origin = format!("http://{}", server.addr);
    let answer = Answer::read(
        client()
            .post(server.url("/sign-in"))
            .header("origin", &origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("token", READ), ("next", "//evil.example/x")]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 303);
    assert_eq!(answer.header("location"), Some("/"));
}

#[tokio::test]
async fn wrong_tokens_from_one_address_are_stopped_after_ten_a_minute() {
    let server = start().await;
    let origin = format!("http://{}", server.addr);
    let cookie = sign_in(&server).await;
    let bearer = |path: &str, token: &str| {
        let request = client().get(server.url(path)).bearer_auth(token);
        async move { Answer::read(request.send().await.unwrap()).await }
    };
    // The ingest token sent to the read API or the sign-in form is a mistake of configuration,
    // not a guess.
    for _ in 0..12 {
        assert_eq!(bearer("/api/v1/events", TOKEN).await.status, 401);
        assert_eq!(
            sign_in_with(&server, TOKEN, Some(&origin)).await.status,
            401
        );
    }
    // Wrong tokens count alike wherever they are sent: the sign-in form, the read API, the
    // routes API and the pages.
    for n in 0..4 {
        let answer = sign_in_with(&server, &format!("guess-{n}"), Some(&origin)).await;
        assert_eq!(answer.status, 401, "attempt {n}: {}", answer.text());
    }
    for (n, path) in ["/api/v1/events", "/api/v1/routes", "/failures"]
        .iter()
        .cycle()
        .take(6)
        .enumerate()
    {
        let answer = bearer(path, &format!("header-guess-{n}")).await;
        assert_eq!(answer.status, 401, "{path}: {}", answer.text());
    }
    // No token at all is no guess.
    assert_eq!(get(&server, "/api/v1/events", None).await.status, 401);
    // The eleventh is not even checked: the right token waits as a wrong one does, wherever
    // it is sent.
    for path in ["/api/v1/events", "/api/v1/routes", "/failures"] {
        let answer = bearer(path, READ).await;
        assert_eq!(answer.status, 429, "{path}: {}", answer.text());
        let wait: u64 = answer.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        if path.starts_with("/api/") {
            assert_eq!(answer.json()["error"]["code"], "too_many_requests");
        }
    }
    // A browser signed in before keeps its session.
    assert_eq!(get(&server, "/failures", Some(&cookie)).await.status, 200);
    for token in ["guess-10", READ] {
        let answer = sign_in_with(&server, token, Some(&origin)).await;
        assert_eq!(answer.status, 429, "{}", answer.text());
        assert!(answer.text().contains("try again in"), "{}", answer.text());
        let wait: u64 = answer.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(answer.header("set-cookie").is_none());
    }
    // Another address is not held back by this one's guesses.
    let other = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let answer = other
        .post(server.url("/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", &origin)
        .body(form(&[("token", READ), ("next", "/")]))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let answer = other
        .get(server.url("/api/v1/events"))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}

/// Behind a reverse proxy every request comes from the proxy's address: with the proxy
/// trusted, its `X-Forwarded-For` names the client, so that one client's guesses lock out that
/// client only, and the delivery log names ISC rather than the proxy. A header from a peer that
/// is not trusted means nothing.
#[tokio::test]
async fn behind_a_trusted_proxy_wrong_tokens_count_for_the_client_it_names() {
    let server = TestServer::start_with(|config| {
        config.read.tokens = vec![READ.into()];
        config.server.max_wrong_tokens = Some(3);
        config.server.trusted_proxies = Some(vec!["127.0.0.1".into()]);
    })
    .await;
    let from = |named: &'static str, token: &'static str| {
        let request = client()
            .get(server.url("/api/v1/events"))
            .header("x-forwarded-for", named)
            .bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for _ in 0..3 {
        assert_eq!(from("203.0.113.7", "a-guess").await, 401);
    }
    assert_eq!(from("203.0.113.7", READ).await, 429);
    // Another client through the same proxy is not held back.
    assert_eq!(from("203.0.113.8", READ).await, 200);
    // What a client wrote itself, left of what the proxy wrote, is not believed.
    assert_eq!(from("203.0.113.8, 203.0.113.7", READ).await, 429);
    // An event through the proxy: the delivery log names the client.
    let answer = client()
        .post(server.url("/events"))
        .header("x-forwarded-for", "198.51.100.20")
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(common::event("inv-through-proxy"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let logged = common::deliveries(&server.db);
    assert_eq!(
        logged.last().unwrap().remote_addr.as_deref(),
        Some("198.51.100.20")
    );

    // Not trusted: the header means nothing, and every request is the peer's.
    let direct = TestServer::start_with(|config| {
        config.read.tokens = vec![READ.into()];
        config.server.max_wrong_tokens = Some(3);
    })
    .await;
    for client_named in ["203.0.113.7", "203.0.113.8", "203.0.113.9"] {
        let status = client()
            .get(direct.url("/api/v1/events"))
            .header("x-forwarded-for", client_named)
            .bearer_auth("a-guess")
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 401);
    }
    let status = client()
        .get(direct.url("/api/v1/events"))
        .header("x-forwarded-for", "203.0.113.10")
        .bearer_auth(READ)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 429);
}

#[tokio::test]
async fn an_address_that_cannot_be_read_gets_the_error_page() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    for path in [
        "/?result=FAILED&result=SUCCESS",
        "/playground?filter=a&filter=b",
        "/deliveries?outcome=accepted&outcome=rejected",
    ] {
        let answer = get(&server, path, Some(&cookie)).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.text());
        assert!(
            answer
                .header("content-type")
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        assert!(
            answer.text().contains("this address cannot be read"),
            "{path}: {}",
            answer.text()
        );
        assert!(answer.header("content-security-policy").is_some(), "{path}");
    }
}

#[tokio::test]
async fn text_filters_past_the_apis_length_are_left_out_with_a_notice_and_nul_filters_refused() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    post_event(&server, event(1, "Workday", "SUCCESS", None)).await;
    // 1,200 characters of words: the API refuses such a `q`; the page leaves it out and says so,
    // rather than run a search of 600 words on every poll.
    let long = "a ".repeat(600);
    let path = format!("/?q={}&ticket={}", urlencode(&long), urlencode(&long));
    let html = page(&server, &cookie, &path).await;
    assert!(
        html.contains("The search is longer than 1,000 characters, so it is not applied."),
        "{html}"
    );
    assert!(html.contains("The ticket is longer than 1,000 characters"));
    assert!(html.contains("track-1"), "the list is not filtered by them");
    // A NUL, which the API refuses too, is left out and not written into the form.
    let html = page(&server, &cookie, "/?identity=%00&channel=a%00b&q=x%00").await;
    assert!(!html.contains('\0'), "{html}");
    for name in ["identity", "channel", "search"] {
        assert!(
            html.contains(&format!(
                "The {name} contains a NUL character, so it is not applied."
            )),
            "{name}: {html}"
        );
    }
    assert!(html.contains("track-1"), "the list is not filtered by them");
    let fragment = get(
        &server,
        &format!("/ui/fragments/events?q={}&after=0", urlencode(&long)),
        Some(&cookie),
    )
    .await;
    assert_eq!(fragment.status, 200, "{}", fragment.text());
    // More different words than a search takes (32), within 1,000 characters.
    let many: Vec<String> = (0..33).map(|n| format!("w{n}")).collect();
    let many = urlencode(&many.join(" "));
    let html = page(&server, &cookie, &format!("/?q={many}")).await;
    assert!(
        html.contains("The search holds 33 different words, more than the 32 a search takes"),
        "{html}"
    );
    assert!(html.contains("track-1"), "the list is not filtered by them");
    let fragment = get(
        &server,
        &format!("/ui/fragments/events?q={many}&after=0"),
        Some(&cookie),
    )
    .await;
    assert_eq!(fragment.status, 200, "{}", fragment.text());
    // Within the limit, the search applies.
    let html = page(&server, &cookie, "/?q=nothing-matches-this").await;
    assert!(!html.contains("track-1"));
    assert!(!html.contains("longer than"));

    // The playground refuses a NUL as `POST /api/v1/filter/test` does.
    let answer = get(
        &server,
        &format!(
            "/ui/fragments/playground?filter={}",
            urlencode("$[?(@.action == 'a\0b')]")
        ),
        Some(&cookie),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(answer.text().contains("NUL"), "{}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_received_in_the_future_is_counted_and_listed_alike() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    post_event(&server, event(1, "Active Directory", "Success", None)).await;
    // Restored from an export made where the clock ran two days ahead: kept with that time.
    let later = chrono::Utc::now() + chrono::Duration::days(2);
    restore(
        &server,
        event(2, "Active Directory", "Success", None),
        later,
    );

    // The last day: the event of now, counted and listed; not the one of later.
    let day = page(&server, &cookie, "/?range=24h").await;
    assert!(day.contains("track-1"), "{day}");
    assert!(!day.contains("track-2"), "{day}");
    assert!(day.contains("1 events in range"), "{day}");
    assert!(!day.contains("before the filters"), "{day}");
    // With a filter, the counts say they are of the whole range, not of the list below them.
    let filtered = page(&server, &cookie, "/?range=24h&source=Okta").await;
    assert!(filtered.contains("1 events in range"), "{filtered}");
    assert!(
        filtered.contains("(all of them, before the filters below)"),
        "{filtered}"
    );
    // A filter that is not applied (a search without words) narrows nothing.
    let unapplied = page(&server, &cookie, "/?range=24h&q=!!").await;
    assert!(!unapplied.contains("before the filters"), "{unapplied}");
    // All time: both, and both counted.
    let all = page(&server, &cookie, "/?range=all").await;
    assert!(all.contains("track-1") && all.contains("track-2"), "{all}");
    assert!(all.contains("2 events stored"), "{all}");
    // The playground tests a filter on the events the list holds for the same range.
    let day = page(&server, &cookie, "/playground?filter=%24&range=24h").await;
    assert!(day.contains(r#"data-matched="1""#), "{day}");
    let all = page(&server, &cookie, "/playground?filter=%24&range=all").await;
    assert!(all.contains(r#"data-matched="2""#), "{all}");
}

#[tokio::test]
async fn no_link_leads_to_a_list_that_cannot_be_filtered_as_it_says() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    // Values longer than the list filters on, and an error without a word to search for.
    let long_source = "S".repeat(1_500);
    let mut long = event(1, &long_source, "FAILED", Some("🚀🚀 !!!"));
    long["trackingNumber"] = json!("T".repeat(1_500));
    long["recipient"]["id"] = json!("R".repeat(1_500));
    let id = post_event(&server, long).await;
    post_event(
        &server,
        event(2, "Workday", "FAILED", Some("Timeout talking to it")),
    )
    .await;
    // A NUL, which the read API refuses in a filter (and a browser would turn into U+FFFD).
    post_event(&server, event(3, "NUL\u{0}inside", "FAILED", None)).await;

    let html = page(&server, &cookie, &format!("/event/{id}")).await;
    assert!(!html.contains(r#"href="/?number="#), "{html}");
    assert!(!html.contains(r#"href="/?identity="#), "{html}");
    let failures = page(&server, &cookie, "/failures").await;
    assert!(!failures.contains(r#"href="/?source=SSS"#), "{failures}");
    assert!(
        failures.contains(r#"href="/?source=Workday&amp;result=FAILED"#),
        "{failures}"
    );
    // The error with words links to its search; the one without is not linked at all.
    assert!(failures.contains(r#"href="/?q=Timeout"#), "{failures}");
    assert!(!failures.contains(r#"href="/?range="#), "{failures}");
    let list = page(&server, &cookie, "/").await;
    assert!(
        !list.contains(&format!(r#"value="{long_source}""#)),
        "the facet offers it"
    );
    assert!(!list.contains('\0'), "a NUL written into the page");
    assert!(!list.contains(r#"href="/?identity=RRR"#));
    assert!(list.contains(r#"href="/?identity=id-2""#), "{list}");
}

/// Stores `body` as `provtrail ingest` restores a line of an export: with the receipt time
/// `received_at`, whatever the time now.
fn restore(
    server: &TestServer,
    body: serde_json::Value,
    received_at: chrono::DateTime<chrono::Utc>,
) {
    let line =
        json!({"received_at": received_at.to_rfc3339(), "raw": body.to_string(), "event": body});
    let file = server.dir.as_ref().unwrap().path().join("restore.jsonl");
    std::fs::write(&file, format!("{line}\n")).unwrap();
    let imported = std::process::Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["ingest", "--db"])
        .arg(&server.db)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
}

/// The CSRF token of the sign-out form on a page.
fn csrf_of(html: &str) -> String {
    html.split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

/// Posts the sign-out form with `cookie` and `csrf`, from `origin` when given.
async fn sign_out(server: &TestServer, cookie: &str, csrf: &str, origin: Option<&str>) -> Answer {
    let mut request = client()
        .post(server.url("/sign-out"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", csrf)]));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    Answer::read(request.send().await.unwrap()).await
}

#[tokio::test]
async fn a_sign_out_from_a_page_shown_before_signing_in_again_ends_the_session_of_now() {
    let server = start().await;
    let origin = format!("http://{}", server.addr);
    let first = sign_in(&server).await;
    // Tab A shows a page of the first session.
    let old_csrf = csrf_of(&page(&server, &first, "/failures").await);
    // Tab B signs out and in again.
    let out = sign_out(&server, &first, &old_csrf, Some(&origin)).await;
    assert_eq!(out.status, 303, "{}", out.text());
    let second = sign_in(&server).await;

    // Tab A's form carries the old token; the cookie names the new session, which ends.
    let out = sign_out(&server, &second, &old_csrf, Some(&origin)).await;
    assert_eq!(out.status, 303, "{}", out.text());
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        get(&server, "/", Some(&second)).await.status,
        303,
        "the session of now ended"
    );
    let signed_out = get(&server, out.header("location").unwrap(), None).await;
    assert!(
        signed_out.text().contains("You are signed out."),
        "{}",
        signed_out.text()
    );

    // The session already gone (expired, a restart): the cookie is cleared and the page says so.
    let again = sign_out(&server, &second, &old_csrf, Some(&origin)).await;
    assert_eq!(again.status, 303, "{}", again.text());
    assert!(again.header("set-cookie").unwrap().contains("Max-Age=0"));
    let already = get(&server, again.header("location").unwrap(), None).await;
    assert!(
        already.text().contains("You were already signed out"),
        "{}",
        already.text()
    );

    // A request that does not say where it comes from (not a browser) still needs the token;
    // another site's form still ends nothing.
    let third = sign_in(&server).await;
    for from in [None, Some("http://evil.example")] {
        let refused = sign_out(&server, &third, &old_csrf, from).await;
        assert_eq!(refused.status, 403, "{from:?}");
        assert!(refused.header("set-cookie").is_none(), "{from:?}");
        page(&server, &third, "/").await;
    }
}

/// The value of attribute `name` of the first element that has it.
fn attribute<'a>(html: &'a str, name: &str) -> &'a str {
    let start = format!(r#" {name}=""#);
    let at = html
        .find(&start)
        .unwrap_or_else(|| panic!("no {name}: {html}"))
        + start.len();
    &html[at..at + html[at..].find('"').unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_updates_go_on_when_the_newest_event_was_received_in_the_future() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    post_event(&server, event(1, "Workday", "SUCCESS", None)).await;
    // Restored from an export made where the clock ran two days ahead.
    let later = chrono::Utc::now() + chrono::Duration::days(2);
    restore(&server, event(2, "Workday", "SUCCESS", None), later);

    let html = page(&server, &cookie, "/").await;
    let after = attribute(&html, "data-after").to_owned();
    post_event(&server, event(3, "Workday", "SUCCESS", None)).await;
    // Restored after the page was shown, with a receipt half an hour old: new all the same.
    let earlier = chrono::Utc::now() - chrono::Duration::minutes(30);
    restore(&server, event(4, "Workday", "SUCCESS", None), earlier);
    let fresh = page(
        &server,
        &cookie,
        &format!("/ui/fragments/events?after={after}"),
    )
    .await;
    assert!(
        fresh.contains("track-3") && fresh.contains("track-4"),
        "{fresh}"
    );
    assert_eq!(fresh.matches("<tr").count(), 2, "{fresh}");
}

#[tokio::test]
async fn a_top_errors_link_lists_the_events_it_counts() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    for n in 0..3 {
        post_event(
            &server,
            event(n, "Workday", "FAILED", Some("Connector AD Failed")),
        )
        .await;
    }
    for n in 3..8 {
        post_event(
            &server,
            event(n, "Workday", "FAILED", Some("Connector Failed")),
        )
        .await;
    }
    let html = page(&server, &cookie, "/failures").await;
    let row = html
        .split("<tr>")
        .find(|row| row.contains(">Connector AD Failed</a>"))
        .unwrap_or_else(|| panic!("no row: {html}"));
    assert!(row.contains(">3</td>"), "{row}");
    let href = attribute(row, "href").replace("&amp;", "&");
    let listed = page(&server, &cookie, &href).await;
    assert_eq!(
        listed.matches("<tr data-id=").count(),
        3,
        "{href}: {listed}"
    );
    // The search finds words anywhere in an event: the page says the list may hold more.
    assert!(html.contains("may hold more events than counted"), "{html}");
    // A message longer than the counts keep is shown cut, and said to be.
    post_event(
        &server,
        event(9, "Workday", "FAILED", Some(&"longword ".repeat(60))),
    )
    .await;
    let html = page(&server, &cookie, "/failures").await;
    assert!(html.contains("…</a>"), "{html}");
}

#[tokio::test]
async fn top_errors_in_any_script_link_to_their_events() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    // Words with marks inside them (vowel signs, a virama, Thai tone marks), and a message
    // written decomposed (an accent as a mark of its own).
    let messages = [
        "हिन्दी त्रुटि हुई",
        "ไม่สามารถเชื่อมต่อเซิร์ฟเวอร์",
        "Caf\u{e9} NFD e\u{301}te\u{301}",
    ];
    for (n, message) in messages.iter().enumerate() {
        post_event(&server, event(n, "Workday", "FAILED", Some(message))).await;
    }
    let html = page(&server, &cookie, "/failures").await;
    for (n, message) in messages.iter().enumerate() {
        let row = html
            .split("<tr>")
            .find(|row| row.contains(&format!(">{message}</a>")))
            .unwrap_or_else(|| panic!("no row for {message:?}: {html}"));
        let href = attribute(row, "href").replace("&amp;", "&");
        let answer = get(&server, &href, Some(&cookie)).await;
        assert_eq!(answer.status, 200, "{href}: {}", answer.text());
        let listed = answer.text();
        assert!(listed.contains(&format!("track-{n}")), "{href}: {listed}");
        // And typed into the search, each word alone.
        for word in message.split_whitespace() {
            let path = format!("/?q={}", urlencode(word));
            let answer = get(&server, &path, Some(&cookie)).await;
            assert_eq!(answer.status, 200, "{word}: {}", answer.text());
            assert!(answer.text().contains(&format!("track-{n}")), "{word}");
        }
    }
}

#[tokio::test]
async fn a_playground_address_with_a_refused_filter_reloads_with_the_form() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    post_event(&server, event(1, "Workday", "SUCCESS", None)).await;
    let path = |filter: &str| format!("/playground?filter={}", urlencode(filter));

    // Too long: refused, and kept in the box.
    let long = format!("$[?(@.action == '{}')]", "a".repeat(10_000));
    let answer = get(&server, &path(&long), Some(&cookie)).await;
    assert_eq!(answer.status, 400);
    let html = answer.text();
    assert!(html.contains("at most 10000 characters"), "{html}");
    assert!(
        html.contains(&format!(">{long}</textarea>")),
        "the filter is kept"
    );
    assert!(html.contains(r#"<form id="playground""#));

    // A NUL: no box can hold it; the page says so and shows it escaped.
    let nul = "$[?(@.action == 'a\0b')]";
    let answer = get(&server, &path(nul), Some(&cookie)).await;
    assert_eq!(answer.status, 400);
    let html = answer.text();
    assert!(!html.contains('\0'));
    assert!(html.contains(r#"<form id="playground""#), "{html}");
    assert!(html.contains("cannot contain a NUL character"), "{html}");
    assert!(html.contains("holds a NUL character"), "{html}");
    assert!(html.contains(r"a\u0000b"), "{html}");

    // Invisible characters come back in the box as typed, not as escapes.
    let invisible = "$[?(@.action == 'x\u{200b}\u{202e}')]";
    let html = page(&server, &cookie, &path(invisible)).await;
    assert!(html.contains(&format!(">{invisible}</textarea>")), "{html}");
}

#[tokio::test]
async fn forwarded_hosts_count_only_from_a_trusted_proxy() {
    let proxied = |server: &TestServer| {
        client()
            .post(server.url("/sign-in"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", "https://trail.example")
            .header("x-forwarded-host", "trail.example")
            .header("x-forwarded-proto", "https")
            .body(form(&[("token", READ), ("next", "/")]))
            .send()
    };
    // Straight from a client: what it says of the host means nothing.
    let direct = start().await;
    let answer = Answer::read(proxied(&direct).await.unwrap()).await;
    assert_eq!(answer.status, 403, "{}", answer.text());
    assert!(answer.header("set-cookie").is_none());
    // Whoever sets the server up learns why.
    assert!(
        answer.text().contains("--trusted-proxy"),
        "{}",
        answer.text()
    );
    // From the trusted proxy: the browser's host, over HTTPS.
    let behind = TestServer::start_with(|config| {
        config.read.tokens = vec![READ.into()];
        config.server.trusted_proxies = Some(vec!["127.0.0.1".into()]);
    })
    .await;
    let answer = Answer::read(proxied(&behind).await.unwrap()).await;
    assert_eq!(answer.status, 303, "{}", answer.text());
    assert!(answer.header("set-cookie").unwrap().contains("Secure"));
}

#[tokio::test]
async fn long_requesters_actions_tracking_numbers_and_problems_are_clipped() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    let long = |c: char| c.to_string().repeat(3_000);
    let mut body = event(1, "Workday", "SUCCESS", None);
    body["trackingNumber"] = json!(long('Z'));
    body["action"] = json!(long('Y'));
    body["requester"] = json!({"type": "IDENTITY", "id": long('Q'), "name": long('R')});
    let id = post_event(&server, body).await;
    let html = page(&server, &cookie, &format!("/event/{id}")).await;
    // As text, that is: the body section holds each whole value, and links keep whole ids.
    for c in ['Q', 'R', 'Z'] {
        assert!(
            !html.contains(&format!(">{}", c.to_string().repeat(1_001))),
            "{c}"
        );
        assert!(
            html.contains(&format!("&quot;{}&quot;", long(c))),
            "the body: {c}"
        );
    }
    let heading = &html[html.find("<h1>").unwrap()..html.find("</h1>").unwrap()];
    assert!(!heading.contains(&"Z".repeat(100)), "{heading}");

    let playground = page(&server, &cookie, "/playground?filter=%24").await;
    assert!(playground.contains("track-1") || playground.contains("ZZZ"));
    assert!(!playground.contains(&"Y".repeat(1_001)), "the action cell");
    assert!(
        playground.contains("3,000 characters in all"),
        "{playground}"
    );

    // Invalid (no tracking number), with a member of a long name: a warning in quarantine.
    let mut invalid = event(2, "Workday", "SUCCESS", None);
    invalid.as_object_mut().unwrap().remove("trackingNumber");
    invalid[long('W')] = json!(1);
    server
        .post("/events", serde_json::to_vec(&invalid).unwrap())
        .await;
    let entry = page(&server, &cookie, "/quarantine/1").await;
    assert!(entry.contains("Warnings ("), "{entry}");
    assert_eq!(
        entry.matches(&long('W')).count(),
        1,
        "only the body as received holds the whole name"
    );
}

#[tokio::test]
async fn the_failure_chart_starts_at_its_newest_end() {
    let server = start().await;
    let cookie = sign_in(&server).await;
    let html = page(&server, &cookie, "/failures").await;
    assert!(
        html.contains(r#"<div class="chart-scroll" data-scroll-to-end>"#),
        "{html}"
    );
    // The page's own script (no inline script: the policy forbids it) scrolls it.
    let script_url = attribute(&html[html.find("<script").unwrap()..], "src").to_owned();
    let script = get(&server, &script_url, None).await.text();
    assert!(script.contains("[data-scroll-to-end]"), "{script}");
    assert!(script.contains("scrollLeft = box.scrollWidth"));
}
