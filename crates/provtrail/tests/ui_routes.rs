//! The web UI's routes pages over loopback HTTP against a real SQLite store with routes
//! configured: counts per route, dead letters and deliveries, the empty state, routes no longer
//! configured, an event's deliveries on its page, escaping, and never a secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod routes_support;

use std::path::Path;
use std::time::Duration;

use common::{TestServer, client, event};
use provtrail::config::FileConfig;
use routes_support::{Mode, READ_TOKEN, Receiver, config_text, states, wait_for, webhook_route};

const WAIT: Duration = Duration::from_secs(60);

/// Secrets of the webhook route: none may ever reach a page.
/// Longer than the part of a refusal kept as its error, so that a receiver echoing it would leave
/// the beginning of it behind if errors were shortened before secrets are removed.
const BEARER: &str = concat!(
    "ui-secret-bearer-token-6d1f0c",
    "-a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1",
    "-a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1",
    "-a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1",
    "-a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1",
);
const HEADER: &str = "ui-secret-header-value-88a2e4";
const QUERY: &str = "ui-secret-in-the-url-query-31b7";

async fn start(db: &Path, routes: &str) -> TestServer {
    let text = config_text(db, routes);
    let config = FileConfig::parse(&text, Path::new("test.toml")).unwrap();
    TestServer::start_config(&config).await
}

/// A page read with the read token as a bearer header (the UI accepts it as a session).
async fn page(server: &TestServer, path: &str) -> (u16, String) {
    let response = client()
        .get(server.url(path))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn file_route(name: &str, path: &Path, filter: &str) -> String {
    format!(
        r#"
[[routes]]
name = "{name}"
filter = "{filter}"
[routes.sink]
type = "file"
path = "{}"
fsync = false
"#,
        path.display()
    )
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

fn count(db: &Path, route: &str, state: i64) -> i64 {
    states(db)
        .get(&(route.to_owned(), state))
        .copied()
        .unwrap_or(0)
}

/// No part of a route's secret is in the text (`what` names the page, for the message).
fn assert_no_secret(what: &str, text: &str) {
    for secret in [BEARER, HEADER, QUERY] {
        assert!(
            !text.contains(&secret[..20]),
            "{what} shows a secret:\n{text}"
        );
    }
}

/// The first link of the page to a delivery of route `name`.
fn delivery_link(html: &str, name: &str) -> String {
    let start = format!(r#"href="/routes/{name}/deliveries/"#);
    let at = html
        .find(&start)
        .unwrap_or_else(|| panic!("no delivery link of {name}:\n{html}"));
    let rest = &html[at + r#"href=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The table row of the page that links to `/routes/{name}`.
fn row<'a>(html: &'a str, name: &str) -> &'a str {
    let link = format!(r#"href="/routes/{name}""#);
    html.split("<tr>")
        .find(|row| row.contains(&link))
        .unwrap_or_else(|| panic!("no row for {name}:\n{html}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routes_pages_show_counts_dead_letters_and_deliveries_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provtrail.db");
    let archive = dir.path().join("archive.jsonl");
    let hostile = dir.path().join("hostile.jsonl");
    // A receiver that refuses everything for good (400), echoing the credential it got, as
    // careless servers do.
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::Down(400));
    let hook = webhook_route(
        "hook",
        &format!("{}?key={QUERY}", receiver.url()),
        &format!("bearer_token = \"{BEARER}\"\nheaders = {{ X-Api-Key = \"{HEADER}\" }}"),
    );
    let routes = format!(
        "{}{}{hook}",
        file_route(
            "archive",
            &archive,
            "$[?(@._metadata.invocationId =~ /keep-.*/)]"
        ),
        file_route(
            "hostile",
            &hostile,
            "$[?(@.action == '<script>alert(1)</script>')]"
        ),
    );
    let mut server = start(&db, &routes).await;
    for id in ["keep-0", "keep-1", "keep-2", "skip-0", "skip-1"] {
        assert_eq!(server.post("/events", event(id)).await.status, 200);
    }
    wait_for("the archive and the dead letters", WAIT, || {
        lines(&archive) == 3 && count(&db, "hook", 2) == 5
    })
    .await;
    wait_for("the archive's deliveries to be committed", WAIT, || {
        count(&db, "archive", 1) == 3
    })
    .await;

    let (status, html) = page(&server, "/routes").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#"<a href="/routes" aria-current="page">Routes</a>"#));
    let archive_row = row(&html, "archive");
    for cell in [
        r#"data-label="Matched">3</td>"#,
        r#"data-label="Delivered">3</td>"#,
        r#"data-label="Pending">0</td>"#,
        r#"data-label="Dead">0</td>"#,
        "file</span>",
        "invocationId =~ /keep-.*/",
    ] {
        assert!(archive_row.contains(cell), "{cell} in {archive_row}");
    }
    let hook_row = row(&html, "hook");
    for cell in [
        r#"data-label="Matched">5</td>"#,
        r#"data-label="Delivered">0</td>"#,
        r#"<span class="badge bad">5</span>"#,
        "webhook</span>",
        "HTTP 400",
        "none: every event",
    ] {
        assert!(hook_row.contains(cell), "{cell} in {hook_row}");
    }
    assert!(
        html.contains("3 routes · 3 delivered · 0 pending · 5 dead"),
        "{html}"
    );
    assert!(
        html.contains("provtrail deadletter retry"),
        "says where retries are"
    );
    assert!(!html.contains(r#"method="post""#), "read-only: {html}");

    let (status, detail) = page(&server, "/routes/hook").await;
    assert_eq!(status, 200, "{detail}");
    assert!(detail.contains("Dead letters (5)"), "{detail}");
    assert_eq!(
        detail.matches(">dead</span>").count(),
        10,
        "dead letters and recent"
    );
    assert!(
        detail.contains("you sent Bearer ***"),
        "the echo, redacted: {detail}"
    );
    assert!(detail.contains(r#"href="/event/1""#));
    assert!(detail.contains("POST /api/v1/routes/hook/replay"));
    let (status, archive_page) = page(&server, "/routes/archive?state=delivered").await;
    assert_eq!(status, 200);
    assert_eq!(archive_page.matches(">delivered</span>").count(), 3);
    assert!(archive_page.contains("tn-keep-2") && !archive_page.contains("tn-skip-0"));
    assert!(
        archive_page.contains(" ms</td>"),
        "the last attempt's latency"
    );
    assert!(archive_page.contains("Dead letters (0)"));
    let (_, pending_only) = page(&server, "/routes/archive?state=pending").await;
    assert!(pending_only.contains("No deliveries in this state."));
    // A page cursor that is not one is said, not dropped silently.
    let (_, bad_page) = page(&server, "/routes/archive?before=-1").await;
    assert!(
        bad_page.contains("“-1” is not a page of this list"),
        "{bad_page}"
    );

    for path in [
        "/routes",
        "/routes/hook",
        "/routes/hook?state=dead",
        "/routes/archive",
        "/routes/hostile",
    ] {
        let (status, html) = page(&server, path).await;
        assert_eq!(status, 200, "{path}");
        assert_no_secret(path, &html);
        assert!(!html.contains("<script>alert"), "{path}: unescaped");
    }
    // The same errors through the JSON API.
    for path in [
        "/api/v1/routes",
        "/api/v1/route-deliveries?route=hook",
        "/api/v1/route-deliveries/5",
        "/api/v1/deadletters",
    ] {
        let (status, body) = page(&server, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_no_secret(path, &body);
    }
    // Each delivery's attempts count links to its page, which lists every attempt.
    let hook_delivery = delivery_link(&detail, "hook");
    let (status, delivery) = page(&server, &hook_delivery).await;
    assert_eq!(status, 200, "{delivery}");
    for text in [
        "Attempts (1)",
        ">dead</span>",
        ">400</td>",
        "you sent Bearer ***",
        "(permanent: not retried)",
        r#"href="/routes/hook""#,
        r#"href="/event/"#,
        "no further attempt",
    ] {
        assert!(delivery.contains(text), "{text} in {delivery}");
    }
    assert_no_secret("a delivery page", &delivery);
    let archive_delivery = delivery_link(&archive_page, "archive");
    let (status, delivered) = page(&server, &archive_delivery).await;
    assert_eq!(status, 200, "{delivered}");
    for text in [
        "Attempts (1)",
        ">delivered</span>",
        " ms</td>",
        "delivered ",
    ] {
        assert!(delivered.contains(text), "{text} in {delivered}");
    }
    // A delivery is found under its own route only; anything else is not found.
    let elsewhere = hook_delivery.replace("/routes/hook/", "/routes/archive/");
    for path in [
        elsewhere.as_str(),
        "/routes/hook/deliveries/999999",
        "/routes/hook/deliveries/not-a-number",
    ] {
        assert_eq!(page(&server, path).await.0, 404, "{path}");
    }

    // A route tried on a stored event: does it match, and what would be sent (nothing is).
    let requests_before = receiver.requests();
    let (status, tried) = page(&server, "/routes/hook/test?event_id=1").await;
    assert_eq!(status, 200, "{tried}");
    for text in [
        "Nothing is sent.",
        "The filter matches",
        r#"href="/event/1""#,
        "tn-keep-0",
        "POST ",
        "Authorization",
    ] {
        assert!(tried.contains(text), "{text} in {tried}");
    }
    assert_no_secret("a route's test page", &tried);
    assert_eq!(receiver.requests(), requests_before, "nothing was sent");
    let (status, unmatched) = page(&server, "/routes/archive/test?event_id=4").await;
    assert_eq!(status, 200, "{unmatched}");
    assert!(unmatched.contains("does not match"), "{unmatched}");
    assert!(unmatched.contains("tn-skip-0"), "the line it would write");
    let (status, form) = page(&server, "/routes/archive/test").await;
    assert_eq!(status, 200);
    assert!(form.contains(r#"name="event_id""#) && !form.contains("The filter"));
    for (path, expected) in [
        ("/routes/archive/test?event_id=999999", 404),
        ("/routes/archive/test?event_id=abc", 400),
        ("/routes/nothing-by-this-name/test?event_id=1", 404),
    ] {
        assert_eq!(page(&server, path).await.0, expected, "{path}");
    }

    let (_, hostile_page) = page(&server, "/routes/hostile").await;
    assert!(hostile_page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    // An event's page lists its deliveries to routes, each linking to its route's page.
    let (status, event_page) = page(&server, "/event/1").await;
    assert_eq!(status, 200, "{event_page}");
    assert!(event_page.contains("tn-keep-0"), "event 1 is keep-0");
    assert!(event_page.contains("Route deliveries"), "{event_page}");
    assert!(!event_page.contains("No route matched"));
    let archive_row = row(&event_page, "archive");
    assert!(archive_row.contains(">delivered</span>"), "{archive_row}");
    assert!(archive_row.contains(" ms</td>"), "{archive_row}");
    assert!(archive_row.contains("delivered "), "when: {archive_row}");
    assert!(archive_row.contains("ingest"), "origin: {archive_row}");
    let hook_row = row(&event_page, "hook");
    for cell in [">dead</span>", ">400</td>", "you sent Bearer ***"] {
        assert!(hook_row.contains(cell), "{cell} in {hook_row}");
    }
    assert!(
        !event_page.contains(r#"href="/routes/hostile""#),
        "hostile did not match"
    );
    assert!(
        event_page.contains(r#"href="/routes/hostile/test?event_id=1""#),
        "every route can be tried on the event: {event_page}"
    );
    let (status, skipped) = page(&server, "/event/4").await;
    assert_eq!(status, 200);
    assert!(skipped.contains("tn-skip-0"), "event 4 is skip-0");
    assert!(row(&skipped, "hook").contains(">dead</span>"));
    assert!(!skipped.contains(r#"href="/routes/archive""#), "{skipped}");
    for html in [&event_page, &skipped] {
        assert_no_secret("an event page", html);
    }

    let (status, _) = page(&server, "/routes/nothing-by-this-name").await;
    assert_eq!(status, 404);
    let anonymous = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(server.url("/routes/hook"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 303, "sign in first");
    let answer = client()
        .get(server.url("/routes"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    let csp = answer.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_routes_the_page_says_how_to_add_one_and_lists_routes_no_longer_configured() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provtrail.db");
    let mut server = start(&db, "").await;
    let (status, html) = page(&server, "/routes").await;
    assert_eq!(status, 200, "{html}");
    for text in [
        "No routes are configured.",
        "[[routes]]",
        "docs/routes.md",
        "provtrail config init",
    ] {
        assert!(html.contains(text), "{text}:\n{html}");
    }
    assert!(!html.contains("No longer configured"));
    server.shutdown().await;

    // A route that delivered, then left the configuration; an event it did not match.
    let out = dir.path().join("old.jsonl");
    let mut server = start(
        &db,
        &file_route("old", &out, "$[?(@._metadata.invocationId =~ /old-.*/)]"),
    )
    .await;
    assert_eq!(server.post("/events", event("old-0")).await.status, 200);
    assert_eq!(server.post("/events", event("other-0")).await.status, 200);
    wait_for("the delivery", WAIT, || count(&db, "old", 1) == 1).await;
    let (status, unmatched) = page(&server, "/event/2").await;
    assert_eq!(status, 200, "{unmatched}");
    assert!(unmatched.contains("tn-other-0"), "event 2 is other-0");
    assert!(
        unmatched.contains("No route matched this event"),
        "{unmatched}"
    );
    assert!(!unmatched.contains(r#"href="/routes/old""#));
    server.shutdown().await;
    let mut server = start(&db, "").await;
    let (status, html) = page(&server, "/routes").await;
    assert_eq!(status, 200);
    assert!(html.contains("No routes are configured."));
    assert!(html.contains("No longer configured"), "{html}");
    let old = row(&html, "old");
    assert!(old.contains(">1</td>"), "{old}");
    let (status, detail) = page(&server, "/routes/old").await;
    assert_eq!(status, 200);
    assert!(
        detail.contains("no longer in the configuration"),
        "{detail}"
    );
    assert!(detail.contains("tn-old-0"));
    // Without routes, an event's deliveries to a route no longer configured are still listed,
    // and an event without any has no such section.
    let (status, old_event) = page(&server, "/event/1").await;
    assert_eq!(status, 200);
    assert!(
        row(&old_event, "old").contains(">delivered</span>"),
        "{old_event}"
    );
    let (status, other) = page(&server, "/event/2").await;
    assert_eq!(status, 200);
    assert!(other.contains("tn-other-0"));
    assert!(
        !other.contains("Route deliveries") && !other.contains("No route matched"),
        "{other}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_of_one_attempt_says_one_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provtrail.db");
    let out = dir.path().join("once.jsonl");
    let route = format!(
        "{}[routes.retry]\nmax_attempts = 1\n",
        file_route("once", &out, "$")
    );
    let mut server = start(&db, &route).await;
    let (status, html) = page(&server, "/routes/once").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("up to 1 attempt;"), "{html}");
    assert!(!html.contains("1 attempts"), "{html}");
    server.shutdown().await;
}
