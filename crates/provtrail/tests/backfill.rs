//! `provtrail backfill` against a stand-in for ISC's API on loopback (OAuth token, paged
//! invocation statuses, a rate limit), and its events imported with `provtrail ingest`: what the
//! store already had is counted as duplicate, the rest is stored once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use common::run_provtrail;

const TOKEN: &str = "isc-access-token";
const SECRET: &str = "client-secret-never-shown";
const FILTER: &str = r#"triggerId eq "idn:post-provisioning""#;

/// The stand-in's rows, and what it was asked.
#[derive(Default)]
struct Isc {
    rows: Vec<Value>,
    /// The status list's query of every request, in order.
    asked: Vec<HashMap<String, String>>,
    /// Whether the next status request is answered 429 first.
    limit_next: bool,
    /// Whether every page is the first, whatever the offset (a tenant that does not page).
    ignore_offset: bool,
    /// Fewer rows a page than asked for, at most this many.
    page_cap: Option<usize>,
    /// The body of the first page as sent, whatever the rows (bytes JSON cannot hold).
    raw_first_page: Option<Vec<u8>>,
    /// Pages a token is good for before it expires; each sign-in then issues a new one.
    token_pages: Option<usize>,
    /// The page at this offset comes back empty, whatever the rows (they expired meanwhile).
    empty_at: Option<usize>,
    /// Oldest rows that expire before each status request, by request.
    expiring: Vec<usize>,
    /// New rows (numbered on from the newest) that arrive before each status request, by
    /// request, after those that expire.
    arriving: Vec<usize>,
    /// Rows made so far, expired ones included: the next new row's number.
    made: usize,
    /// Whether the next status answer breaks off after the start of its body.
    break_next: bool,
    /// Whether the next status request gets no answer at all: the connection closes.
    hang_up_next: bool,
    /// Sign-ins answered before the tenant refuses the client's credentials.
    sign_ins_allowed: Option<usize>,
    /// Sign-ins so far, and pages served with the newest token.
    sign_ins: usize,
    pages_with_token: usize,
}

type Shared = Arc<Mutex<Isc>>;

/// A body that gives its start, then (once that is on its way) fails: the connection ends in
/// the middle of it.
struct BreaksOff {
    started: bool,
    pause: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for BreaksOff {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        if !std::mem::replace(&mut self.started, true) {
            let start = bytes::Bytes::from_static(b"[{\"id\":");
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(start))));
        }
        std::task::ready!(self.pause.as_mut().poll(cx));
        std::task::Poll::Ready(Some(Err(std::io::Error::other("broke off"))))
    }
}

/// An event as ISC keeps it in an invocation's input: without the `_metadata` envelope.
fn input(n: usize) -> Value {
    let mut event: Value = serde_json::from_slice(&common::event("unused")).unwrap();
    let event_object = event.as_object_mut().unwrap();
    event_object.remove("_metadata");
    event_object.insert("trackingNumber".into(), json!(format!("tn-{n}")));
    event
}

fn row(n: usize, kind: &str, subscription: &str, input: Value) -> Value {
    json!({
        "id": format!("inv-{n:03}"),
        "triggerId": "idn:post-provisioning",
        "subscriptionName": format!("name of {subscription}"),
        "subscriptionId": subscription,
        "type": kind,
        "created": format!("2026-11-30T{:02}:{:02}:00.000Z", n / 60 % 24, n % 60),
        "completed": "2026-11-30T23:59:00.000Z",
        "startInvocationInput": {"triggerId": "idn:post-provisioning", "input": input, "contentJson": {}},
    })
}

/// The token of the `n`th sign-in: the first is [`TOKEN`].
fn token_of(n: usize) -> String {
    if n <= 1 {
        TOKEN.to_owned()
    } else {
        format!("{TOKEN}-{n}")
    }
}

async fn token(State(isc): State<Shared>, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let good = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("client_id").map(String::as_str) == Some("client")
        && form.get("client_secret").map(String::as_str) == Some(SECRET);
    let refused = {
        let isc = isc.lock().unwrap();
        isc.sign_ins_allowed
            .is_some_and(|allowed| isc.sign_ins >= allowed)
    };
    if good && !refused {
        let mut isc = isc.lock().unwrap();
        isc.sign_ins += 1;
        isc.pages_with_token = 0;
        let token = token_of(isc.sign_ins);
        axum::Json(json!({"access_token": token, "token_type": "bearer", "expires_in": 749}))
            .into_response()
    } else {
        // Quoting what it was sent, secret included, as a careless server might.
        let description = format!("Bad credentials: {body}");
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "unauthorized", "error_description": description})),
        )
            .into_response()
    }
}

async fn statuses(
    State(isc): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut isc = isc.lock().unwrap();
    isc.asked.push(query.clone());
    let expired = isc.expiring.get(isc.asked.len() - 1).copied().unwrap_or(0);
    let expired = expired.min(isc.rows.len());
    isc.rows.drain(..expired);
    let arrived = isc.arriving.get(isc.asked.len() - 1).copied().unwrap_or(0);
    for _ in 0..arrived {
        let n = isc.made.max(isc.rows.len());
        isc.rows.push(row(n, "REAL_TIME", "sub-a", input(n)));
        isc.made = n + 1;
    }
    let current = token_of(isc.sign_ins);
    let expired = isc
        .token_pages
        .is_some_and(|pages| isc.pages_with_token >= pages);
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {current}"))
        || expired
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    isc.pages_with_token += 1;
    if std::mem::take(&mut isc.hang_up_next) {
        drop(isc);
        // Unwinds the connection's task: the connection closes with no answer (as a proxy or a
        // restarting node of the tenant does).
        std::panic::resume_unwind(Box::new("the stand-in hangs up"));
    }
    if std::mem::take(&mut isc.break_next) {
        let pause = Box::pin(tokio::time::sleep(std::time::Duration::from_millis(200)));
        return axum::body::Body::new(BreaksOff {
            started: false,
            pause,
        })
        .into_response();
    }
    if std::mem::take(&mut isc.limit_next) {
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")]).into_response();
    }
    let filters = query.get("filters").cloned().unwrap_or_default();
    let subscription = filters
        .strip_prefix(FILTER)
        .and_then(|rest| rest.strip_prefix(r#" and subscriptionId eq ""#))
        .and_then(|rest| rest.strip_suffix('"'))
        .map(str::to_owned);
    if !filters.starts_with(FILTER) || query.get("sorters").map(String::as_str) != Some("created") {
        return (StatusCode::BAD_REQUEST, "unexpected filters or sorters").into_response();
    }
    let offset: usize = if isc.ignore_offset {
        0
    } else {
        query["offset"].parse().unwrap()
    };
    let limit: usize = query["limit"].parse().unwrap();
    let limit = isc.page_cap.map_or(limit, |cap| cap.min(limit));
    if isc.empty_at == Some(offset) {
        return axum::Json(Vec::<Value>::new()).into_response();
    }
    if let Some(raw) = isc.raw_first_page.clone() {
        let body = if offset == 0 { raw } else { b"[]".to_vec() };
        return ([("content-type", "application/json")], body).into_response();
    }
    let page: Vec<Value> = isc
        .rows
        .iter()
        .filter(|row| {
            subscription
                .as_deref()
                .is_none_or(|wanted| row["subscriptionId"] == wanted)
        })
        .skip(offset)
        .take(limit)
        .cloned()
        .collect();
    axum::Json(page).into_response()
}

/// The stand-in with these rows, answering at once (no 429 first), with `set` applied to it.
async fn start_isc_with(rows: Vec<Value>, set: impl FnOnce(&mut Isc)) -> (String, Shared) {
    let (url, isc) = start_isc(rows).await;
    {
        let mut state = isc.lock().unwrap();
        state.limit_next = false;
        set(&mut state);
    }
    (url, isc)
}

/// The stand-in on a loopback port, with these rows: its URL and its state.
async fn start_isc(rows: Vec<Value>) -> (String, Shared) {
    let isc: Shared = Arc::new(Mutex::new(Isc {
        rows,
        limit_next: true,
        ..Isc::default()
    }));
    let app = Router::new()
        .route("/oauth/token", post(token))
        .route("/beta/trigger-invocations/status", get(statuses))
        .with_state(isc.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, isc)
}

async fn provtrail(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_provtrail(&args)
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| (*arg).to_owned()).collect()
}

/// `provtrail backfill` of the stand-in at `url` with its token, and `more` arguments.
async fn backfill_with_token(url: &str, more: &[&str]) -> (i32, String, String) {
    let mut list = args(&["backfill", "--tenant", url, "--access-token", TOKEN]);
    list.extend(args(more));
    provtrail(list).await
}

/// `count` real invocations of one subscription.
fn real_rows(count: usize) -> Vec<Value> {
    (0..count)
        .map(|n| row(n, "REAL_TIME", "sub-a", input(n)))
        .collect()
}

/// `provtrail backfill` of the stand-in at `url`, signing in with its client credentials.
async fn backfill_with_client(url: &str) -> (i32, String, String) {
    provtrail(args(&[
        "backfill",
        "--tenant",
        url,
        "--client-id",
        "client",
        "--client-secret",
        SECRET,
    ]))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfilled_events_are_imported_once_and_what_was_received_is_a_duplicate() {
    // 300 real invocations over two pages, a test invocation, and a row without its input.
    let mut rows: Vec<Value> = (0..300)
        .map(|n| row(n, "REAL_TIME", "sub-a", input(n)))
        .collect();
    rows.push(row(300, "TEST", "sub-a", input(300)));
    rows.push(row(301, "REAL_TIME", "sub-a", Value::Null));
    let (url, isc) = start_isc(rows).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let db = db.to_str().unwrap();
    let file = dir.path().join("backfill.jsonl");
    let file = file.to_str().unwrap();

    // The event of inv-000 arrived live before the outage.
    let live = dir.path().join("live.json");
    let mut received = input(0);
    received["_metadata"] = json!({"triggerId": "idn:post-provisioning", "triggerType": "fireAndForget", "invocationId": "inv-000"});
    std::fs::write(&live, serde_json::to_vec(&received).unwrap()).unwrap();
    let (code, _, stderr) = provtrail(args(&["ingest", "--db", db, live.to_str().unwrap()])).await;
    assert_eq!(code, 0, "{stderr}");

    let (code, stdout, stderr) = provtrail(args(&[
        "backfill",
        "--tenant",
        &url,
        "--client-id",
        "client",
        "--client-secret",
        SECRET,
        "--output",
        file,
        "--format",
        "json",
    ]))
    .await;
    assert_eq!(
        code, 1,
        "a row without its event makes the exit code 1: {stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");
    let summary: Value = serde_json::from_str(stderr.trim()).unwrap();
    assert_eq!(summary["read"], 302, "{summary}");
    assert_eq!(summary["written"], 300, "{summary}");
    assert_eq!(summary["skipped_tests"], 1, "{summary}");
    assert_eq!(
        summary["unusable"],
        json!([{"invocation_id": "inv-301", "reason": "the row holds no input"}])
    );
    {
        let isc = isc.lock().unwrap();
        let offsets: Vec<&str> = isc.asked.iter().map(|q| q["offset"].as_str()).collect();
        // A 429, then two pages; the second overlaps the first by 25 rows, so that a row
        // moved forward by an expiring one is not missed. The second is short: a page holding
        // only its overlap, then one overlapping that by a row, say that it was the last.
        assert_eq!(offsets, ["0", "0", "225", "277", "301"]);
        assert!(isc.asked.iter().all(|q| q["limit"] == "250"));
    }
    let lines: Vec<Value> = std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 300);
    assert_eq!(lines[7]["trackingNumber"], "tn-7");
    assert_eq!(
        lines[7]["_metadata"],
        json!({"triggerId": "idn:post-provisioning", "triggerType": "fireAndForget", "invocationId": "inv-007"})
    );

    let (code, stdout, stderr) = provtrail(args(&[
        "ingest",
        "--db",
        db,
        "--channel",
        "backfill",
        "--format",
        "json",
        file,
    ]))
    .await;
    assert_eq!(code, 0, "{stderr}");
    let imported: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(imported["accepted"], 299, "{imported}");
    assert_eq!(
        imported["duplicate"], 1,
        "inv-000 was received live: {imported}"
    );

    // Reading back again and importing again changes nothing.
    isc.lock().unwrap().limit_next = false;
    let (_, _, stderr) = backfill_with_token(&url, &["--output", file]).await;
    assert!(
        stderr.contains("read 302 invocation(s) of idn:post-provisioning; wrote 300 event(s)"),
        "{stderr}"
    );
    assert!(stderr.contains("skipped 1 test invocation(s)"), "{stderr}");
    assert!(
        stderr.contains("invocation inv-301: no event: the row holds no input"),
        "{stderr}"
    );
    let (_, stdout, _) = provtrail(args(&["ingest", "--db", db, "--format", "json", file])).await;
    let imported: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        (&imported["accepted"], &imported["duplicate"]),
        (&json!(0), &json!(300))
    );
    assert_eq!(
        common::open_db(std::path::Path::new(db))
            .query_row("SELECT COUNT(*) FROM events", [], |row| row
                .get::<_, i64>(0))
            .unwrap(),
        300
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_subscription_and_a_time_bound_narrow_what_is_read() {
    let mut rows: Vec<Value> = (0..10)
        .map(|n| row(n, "REAL_TIME", "sub-a", input(n)))
        .collect();
    rows.extend((10..14).map(|n| row(n, "REAL_TIME", "sub-b", input(n))));
    let (url, isc) = start_isc(rows).await;

    // Without --subscription: all rows, and a warning that they come from two subscriptions.
    let (code, stdout, stderr) = backfill_with_token(&url, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 14);
    assert!(stderr.contains("come from 2 subscriptions"), "{stderr}");

    // One subscription, created at or after 00:05.
    let (code, stdout, stderr) = backfill_with_token(
        &url,
        &["--subscription", "sub-a", "--since", "2026-11-30T00:05:00Z"],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let numbers: Vec<String> = stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["trackingNumber"].to_string())
        .collect();
    assert_eq!(
        numbers,
        ["\"tn-5\"", "\"tn-6\"", "\"tn-7\"", "\"tn-8\"", "\"tn-9\""]
    );
    assert!(
        stderr.contains("skipped 5 invocation(s) created before --since"),
        "{stderr}"
    );
    assert!(!stderr.contains("subscriptions"), "{stderr}");
    let asked = isc.lock().unwrap().asked.last().cloned().unwrap();
    assert_eq!(
        asked["filters"],
        r#"triggerId eq "idn:post-provisioning" and subscriptionId eq "sub-a""#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_and_bad_tenants_say_what_is_wrong_without_the_secret() {
    let (url, _isc) = start_isc(Vec::new()).await;
    let (code, stdout, stderr) = provtrail(args(&[
        "backfill",
        "--tenant",
        &url,
        "--client-id",
        "client",
        "--client-secret",
        "wrong-secret-value",
    ]))
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("cannot sign in to the tenant"), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(stderr.contains("credentials were not accepted"), "{stderr}");
    assert!(!stderr.contains("wrong-secret-value"), "{stderr}");
    // A file the run made is taken away again: it would hold nothing.
    let dir = tempfile::tempdir().unwrap();
    let missed = dir.path().join("missed.jsonl");
    let (code, _, stderr) = provtrail(args(&[
        "backfill",
        "--tenant",
        &url,
        "--client-id",
        "client",
        "--client-secret",
        "wrong-secret-value",
        "-o",
        missed.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(!missed.exists(), "an empty file was left behind");

    let (code, _, stderr) = provtrail(args(&[
        "backfill",
        "--tenant",
        "http://acme.api.identitynow.com",
        "--access-token",
        TOKEN,
    ]))
    .await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("http:// only for a loopback address"),
        "{stderr}"
    );

    let (code, _, stderr) =
        provtrail(args(&["backfill", "--tenant", &url, "--client-id", "c"])).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--client-id needs --client-secret"),
        "{stderr}"
    );

    // Nothing listens there any more.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (code, _, stderr) = provtrail(args(&[
        "backfill",
        "--tenant",
        &format!("http://{closed}"),
        "--access-token",
        TOKEN,
        "--timeout",
        "2",
    ]))
    .await;
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot reach"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_that_does_not_page_is_said_and_what_was_read_is_kept() {
    let rows = real_rows(300);
    let (url, _) = start_isc_with(rows, |isc| isc.ignore_offset = true).await;
    let (code, stdout, stderr) = backfill_with_token(&url, &[]).await;
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout.lines().count(), 250, "the rows read are written");
    assert!(
        stderr.contains("warning: the page at offset 225 held only rows already read"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_tenant_that_gives_fewer_rows_a_page_than_asked_is_read_to_the_end() {
    // 600 rows, at most 100 a page: a short page is not the last one.
    let rows = real_rows(600);
    let (url, isc) = start_isc_with(rows, |isc| isc.page_cap = Some(100)).await;
    let (code, stdout, stderr) = backfill_with_token(&url, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    let ids: std::collections::BTreeSet<String> = stdout
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).unwrap();
            event["_metadata"]["invocationId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(stdout.lines().count(), 600, "each row once: {stderr}");
    assert_eq!(ids.len(), 600);
    let offsets: Vec<usize> = isc
        .lock()
        .unwrap()
        .asked
        .iter()
        .map(|q| q["offset"].parse().unwrap())
        .collect();
    // Each page overlaps the one before by 25 rows; then one holds only that overlap, and the
    // last overlaps it by one row.
    let mut expected: Vec<usize> = (0..=525).step_by(75).collect();
    expected.extend([575, 599]);
    assert_eq!(offsets, expected);

    // Pages of 10, 25 or 26 rows: every row once, nothing said.
    for cap in [10, 25, 26] {
        let (url, _) = start_isc_with(real_rows(600), |isc| isc.page_cap = Some(cap)).await;
        let (code, stdout, stderr) = backfill_with_token(&url, &[]).await;
        assert_eq!(code, 0, "{cap}: {stderr}");
        assert_eq!(stdout.lines().count(), 600, "{cap}: {stderr}");
    }
    // One row a page: far too many pages for what ISC keeps; said, and what was read kept.
    let (url, _) = start_isc_with(real_rows(600), |isc| isc.page_cap = Some(1)).await;
    let (code, stdout, stderr) = backfill_with_token(&url, &[]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("far fewer a page than asked for"),
        "{stderr}"
    );
    assert!(stdout.lines().count() > 100, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_recovery_is_kept_when_nothing_is_read_and_standard_output_is_appended_to() {
    let rows = real_rows(3);
    let (url, isc) = start_isc(rows).await;
    isc.lock().unwrap().limit_next = false;
    let dir = tempfile::tempdir().unwrap();

    // The status list refuses the token: the file given holds an earlier recovery, which may be
    // the only copy left, and stays as it was.
    let kept = dir.path().join("recovered.jsonl");
    std::fs::write(&kept, "{\"earlier\":true}\n").unwrap();
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o640)).unwrap();
    let kept_arg = kept.display().to_string();
    let (code, _, stderr) = provtrail(args(&[
        "backfill",
        "--tenant",
        &url,
        "--access-token",
        "not-the-token",
        "-o",
        &kept_arg,
    ]))
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    // Not contradicted by the report before it.
    assert!(!stderr.contains("wrote 0 event(s)"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&kept).unwrap(),
        "{\"earlier\":true}\n"
    );
    // Its mode too: the file is only made private once the run writes into it.
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640, "{mode:o}");
    // A run that reads rows replaces it, readable by its owner only: it holds identities.
    let (code, _, stderr) = provtrail(args(&[
        "backfill",
        "--tenant",
        &url,
        "--access-token",
        TOKEN,
        "-o",
        &kept_arg,
    ]))
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read_to_string(&kept).unwrap().lines().count(), 3);
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    // `-o /dev/stdout` with standard output appended to a file (`>> file`): appended to, as
    // with `-o -`, not emptied first.
    let appended = dir.path().join("appended.jsonl");
    std::fs::write(&appended, "PRIOR\n").unwrap();
    let out = std::fs::OpenOptions::new()
        .append(true)
        .open(&appended)
        .unwrap();
    let url_arg = url.clone();
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_provtrail"))
            .args([
                "backfill",
                "--tenant",
                &url_arg,
                "--access-token",
                TOKEN,
                "-o",
                "/dev/stdout",
            ])
            .stdout(out)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&appended).unwrap();
    assert!(text.starts_with("PRIOR\n"), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
}

/// That the file of an earlier recovery holds what it held.
fn assert_earlier_kept(earlier: &std::path::Path, stderr: &str) {
    assert_eq!(
        std::fs::read_to_string(earlier).unwrap(),
        "{\"earlier\":true}\n",
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_recovery_is_replaced_only_by_a_run_that_reads_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let earlier = dir.path().join("recovered.jsonl");
    std::fs::write(&earlier, "{\"earlier\":true}\n").unwrap();
    // Reached through a link, as a path kept in a script may be.
    let link = dir.path().join("latest.jsonl");
    std::os::unix::fs::symlink(&earlier, &link).unwrap();
    let link_arg = link.display().to_string();
    let partial = dir.path().join("recovered.jsonl.partial");

    // The token is good for one page: the run stops after 250 of 600 rows.
    let (url, _) = start_isc_with(real_rows(600), |isc| isc.token_pages = Some(1)).await;
    let (code, _, stderr) = backfill_with_token(&url, &["-o", &link_arg]).await;
    assert_eq!(code, 2, "{stderr}");
    assert_earlier_kept(&earlier, &stderr);
    assert_eq!(
        std::fs::read_to_string(&partial).unwrap().lines().count(),
        250
    );
    let mode = std::fs::metadata(&partial).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert!(
        stderr.contains(&format!(
            "the 250 event(s) read before are in {}; {link_arg} still holds the earlier recovery",
            partial.display()
        )),
        "{stderr}"
    );

    // Again: the events of the run before stay where they are, this run's go beside them.
    let (url, _) = start_isc_with(real_rows(600), |isc| isc.token_pages = Some(1)).await;
    let (code, _, stderr) = backfill_with_token(&url, &["-o", &link_arg]).await;
    assert_eq!(code, 2, "{stderr}");
    let second = dir.path().join("recovered.jsonl.partial.2");
    assert_eq!(
        std::fs::read_to_string(&second).unwrap().lines().count(),
        250,
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&partial).unwrap().lines().count(),
        250
    );
    // A list that stops early (a tenant that does not page) does not replace it either.
    let (url, _) = start_isc_with(real_rows(300), |isc| isc.ignore_offset = true).await;
    let (code, _, stderr) = backfill_with_token(&url, &["-o", &link_arg]).await;
    assert_eq!(code, 1, "{stderr}");
    assert_earlier_kept(&earlier, &stderr);
    assert!(
        stderr.contains("still holds the earlier recovery, as it was: this run's events are in")
            && stderr.contains("recovered.jsonl.partial.3"),
        "{stderr}"
    );
    // Nor does an empty list (ISC has forgotten what the file holds): nothing is left beside.
    let (url, _) = start_isc_with(Vec::new(), |_| {}).await;
    let (code, _, stderr) = backfill_with_token(&url, &["-o", &link_arg]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_earlier_kept(&earlier, &stderr);
    assert!(
        stderr.contains("no event was read: ")
            && !dir.path().join("recovered.jsonl.partial.4").exists(),
        "{stderr}"
    );

    // A run that reads to the end takes its place; the link still leads to it.
    let (url, _) = start_isc_with(real_rows(600), |_| {}).await;
    let (code, _, stderr) = backfill_with_token(&url, &["-o", &link_arg]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read_to_string(&link).unwrap().lines().count(), 600);
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert!(!dir.path().join("recovered.jsonl.partial.4").exists());
    // What it held that the run did not read again is kept beside it, by a second name.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("recovered.jsonl.prev")).unwrap(),
        "{\"earlier\":true}\n",
        "{stderr}"
    );
    assert!(
        stderr.contains("held 1 line(s) that are not events this run read"),
        "{stderr}"
    );
    // A run that reads again everything the file holds replaces it, and keeps nothing more.
    let (url, _) = start_isc_with(real_rows(600), |_| {}).await;
    let (code, _, stderr) = backfill_with_token(&url, &["-o", &link_arg]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("not events this run read"), "{stderr}");
    assert!(!dir.path().join("recovered.jsonl.prev.2").exists());
    assert_eq!(std::fs::read_to_string(&link).unwrap().lines().count(), 600);
    let mode = std::fs::metadata(&earlier).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_is_not_json_text_is_named_and_the_others_are_recovered() {
    // Three rows; the second holds a lone surrogate escape, the third bytes that are not UTF-8.
    let text = |n: usize| row(n, "REAL_TIME", "sub-a", input(n)).to_string();
    let lone = text(1).replace("tn-1", "tn-\\ud800-1");
    let mut page = format!("[{}, {lone}, ", text(0)).into_bytes();
    // Written with a placeholder character, whose bytes are then replaced by ones that are not
    // UTF-8.
    let not_utf8 = text(2).replace("tn-2", "tn-\u{fffd}");
    let at = not_utf8.find('\u{fffd}').unwrap();
    page.extend_from_slice(&not_utf8.as_bytes()[..at]);
    page.extend_from_slice(&[0xff, 0xfe]);
    page.extend_from_slice(&not_utf8.as_bytes()[at + '\u{fffd}'.len_utf8()..]);
    page.push(b']');
    let (url, _) = start_isc_with(Vec::new(), |isc| isc.raw_first_page = Some(page)).await;
    let (code, stdout, stderr) = backfill_with_token(&url, &["--format", "json"]).await;
    assert_eq!(code, 1, "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0]["trackingNumber"], "tn-0");
    let summary: Value = serde_json::from_str(stderr.trim()).unwrap();
    let unusable = summary["unusable"].as_array().unwrap();
    let named: Vec<&str> = unusable
        .iter()
        .map(|u| u["invocation_id"].as_str().unwrap())
        .collect();
    assert_eq!(named, ["inv-001", "inv-002"], "{summary}");
    assert!(
        unusable.iter().all(|u| u["reason"]
            .as_str()
            .unwrap()
            .contains("not valid JSON on its own")),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_during_the_run_is_renewed_with_the_client_credentials() {
    // 600 rows over three pages; each token is good for one page.
    let rows = real_rows(600);
    let (url, isc) = start_isc_with(rows, |isc| isc.token_pages = Some(1)).await;
    let (code, stdout, stderr) = backfill_with_client(&url).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 600, "{stderr}");
    assert!(isc.lock().unwrap().sign_ins >= 3);

    // A token refused before any page was read is not renewed again and again.
    let (url, isc) = start_isc_with(Vec::new(), |isc| isc.token_pages = Some(0)).await;
    let (code, _, stderr) = backfill_with_client(&url).await;
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(isc.lock().unwrap().sign_ins, 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_page_where_rows_were_asked_for_again_is_a_gap_not_the_end() {
    // 600 rows; the second page (offset 225, which repeats 25 rows of the first) comes back
    // empty: the listing moved on under the reader, and the rest may be missing.
    let (url, _) = start_isc_with(real_rows(600), |isc| isc.empty_at = Some(225)).await;
    let (code, stdout, stderr) = backfill_with_token(&url, &[]).await;
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout.lines().count(), 250, "{stderr}");
    assert!(
        stderr.contains("warning: the page at offset 225 shared no row with the one before"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_expire_after_the_last_page_only_shorten_the_list() {
    // 300 rows: a full first page, a short last one at 225, then 30 of the oldest expire and
    // the page that would confirm the end comes back empty. Nothing was missed.
    let (url, _) = start_isc_with(real_rows(300), |isc| isc.expiring = vec![0, 0, 30]).await;
    let (code, stdout, stderr) = backfill_with_token(&url, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 300, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_arrive_while_more_than_a_page_of_older_ones_expire_are_read() {
    // 600 rows: pages at 0, 225 and 450 (the last, short); before the next (at 575), 300 of the
    // oldest expire and 10 new ones arrive, at 300 now: the page a width back (325) is empty
    // too, and the reading steps back until it finds rows read before, then reads on.
    let (url, _) = start_isc_with(real_rows(600), |isc| {
        isc.made = 600;
        isc.expiring = vec![0, 0, 0, 300];
        isc.arriving = vec![0, 0, 0, 10];
    })
    .await;
    let (code, stdout, stderr) = backfill_with_token(&url, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 610, "{stderr}");
    for n in 600..610 {
        assert!(stdout.contains(&format!("\"tn-{n}\"")), "tn-{n} missing");
    }
    // Every old row gone and 300 new ones: the page found is all new, and so may be the rows
    // before it: the reading steps back to the start.
    let (url, _) = start_isc_with(real_rows(600), |isc| {
        isc.made = 600;
        isc.expiring = vec![0, 0, 0, 600];
        isc.arriving = vec![0, 0, 0, 300];
    })
    .await;
    let (code, stdout, stderr) = backfill_with_token(&url, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 900, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_arrive_while_older_ones_expire_before_the_last_page_are_read() {
    // 400 rows: a full first page, a short one at 225; before the next (at 375), 60 of the
    // oldest expire and 10 new ones arrive, which moves them before 375: the empty page there
    // is not the end until the last page's width before it is read again.
    let (url, _) = start_isc_with(real_rows(400), |isc| {
        isc.made = 400;
        isc.expiring = vec![0, 0, 60];
        isc.arriving = vec![0, 0, 10];
    })
    .await;
    let (code, stdout, stderr) = backfill_with_token(&url, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 410, "{stderr}");
    for n in 400..410 {
        assert!(stdout.contains(&format!("\"tn-{n}\"")), "tn-{n} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_body_breaks_off_is_asked_for_again() {
    first_page_is_asked_for_again(|isc| isc.break_next = true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_closed_without_an_answer_is_asked_for_again() {
    first_page_is_asked_for_again(|isc| isc.hang_up_next = true).await;
}

/// 300 rows read whole from a stand-in whose first page fails as `set` makes it fail once.
async fn first_page_is_asked_for_again(set: impl FnOnce(&mut Isc)) {
    let (url, isc) = start_isc_with(real_rows(300), set).await;
    let (code, stdout, stderr) = backfill_with_token(&url, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 300, "{stderr}");
    assert!(
        isc.lock().unwrap().asked.len() >= 4,
        "the first page was not asked again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_refused_during_the_run_ends_it_with_the_summary_and_what_was_written() {
    // Each token is good for one page, and the tenant refuses the second sign-in.
    let (url, _) = start_isc_with(real_rows(600), |isc| {
        isc.token_pages = Some(1);
        isc.sign_ins_allowed = Some(1);
    })
    .await;
    let (code, stdout, stderr) = backfill_with_client(&url).await;
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stdout.lines().count(), 250, "{stderr}");
    assert!(stderr.contains("wrote 250 event(s)"), "{stderr}");
    assert!(
        stderr.contains("the 250 event(s) read before are in standard output")
            && stderr.contains("cannot sign in to the tenant again"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_listed_again_with_another_event_is_named() {
    let mut rows = real_rows(300);
    // Listed again later with another event: the first is written, and the second is named.
    rows.push(row(10, "REAL_TIME", "sub-a", input(999)));
    // Listed again with another status only (it completed meanwhile): nothing to say.
    let mut completed = row(20, "REAL_TIME", "sub-a", input(20));
    completed["completed"] = json!("2026-12-01T00:01:00.000Z");
    rows.push(completed);
    let (url, _) = start_isc_with(rows, |_| {}).await;
    let (code, stdout, stderr) = backfill_with_token(&url, &[]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("invocation inv-010 was listed again with another event"),
        "{stderr}"
    );
    assert!(!stderr.contains("inv-020"), "{stderr}");
    assert_eq!(stdout.lines().count(), 300, "{stderr}");
    assert!(stdout.contains("\"tn-10\"") && !stdout.contains("tn-999"));
    let (code, _, stderr) = backfill_with_token(&url, &["--format", "json"]).await;
    assert_eq!(code, 1, "{stderr}");
    let summary: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(
        summary["listed_again_with_another_event"],
        json!(["inv-010"])
    );
}

/// `provtrail backfill` of the stand-in at `url` with its token, and the most memory the
/// process held (`VmHWM`, read until it ends).
fn backfill_measured(url: &str) -> (i32, String, usize) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(["backfill", "--tenant", url, "--access-token", TOKEN])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Some(kb) = std::fs::read_to_string(&status_file).ok().and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|kb| {
                    kb.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
        }) {
            peak = peak.max(kb * 1024);
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(120));
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code().unwrap_or(-1), stderr, peak)
}

/// A page of small values (20 MB of `0,`) is not made into one tree of ten million numbers,
/// nor ten million slices: it is refused as holding more rows than ISC sends, with little
/// memory. Rows without an id are remembered by a digest, not their text, across pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_millions_of_small_values_is_refused_within_little_memory() {
    let mut page = b"[0".to_vec();
    page.extend(b",0".repeat(10_000_000));
    page.push(b']');
    let (url, _) = start_isc_with(Vec::new(), |isc| isc.raw_first_page = Some(page)).await;
    let (code, stderr, peak) = tokio::task::spawn_blocking(move || backfill_measured(&url))
        .await
        .unwrap();
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("it holds more than 2250 rows, where 250 were asked for"),
        "{stderr}"
    );
    assert!(peak < 300 << 20, "{} MiB", peak >> 20);
}

/// A page read twice (a second look at the list's end) that shares no row with the one before
/// is one gap, said once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_seen_twice_at_one_offset_is_said_once() {
    let (url, _) = start_isc_with(real_rows(3), |isc| {
        isc.page_cap = Some(2);
        isc.empty_at = Some(1);
    })
    .await;
    let (_, _, stderr) = backfill_with_token(&url, &["--format", "json"]).await;
    let summary: Value = serde_json::from_str(stderr.trim()).unwrap();
    assert_eq!(summary["gaps_at_offsets"], json!([1]), "{summary}");
}
