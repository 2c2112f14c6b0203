//! The read API over real HTTP on loopback, on a real SQLite file with known contents: every
//! endpoint and parameter, pagination, authentication and error answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_support;
mod common;

use std::collections::HashSet;

use api_support::{DAY, NOW, READ, Seeded, all_ids, get, read, refusal, requests, seed, serve};
use base64::Engine as _;
use common::{TOKEN, TestServer, client};
use serde_json::{Value, json};

/// The ISC documentation's style of filter. In Jayway a path inside `[?( )]` is an existence
/// test, and a nested filter that selects nothing still exists: this matches every event that
/// has `accountRequests`, failed or not. ISC evaluates it the same way.
const NESTED_FILTER: &str = "$[?($.accountRequests[?(@.provisioningResult == 'FAILED')])]";
/// A filter that does select events with a failed account request.
const FAILED_FILTER: &str = "$[?($.accountRequests[*].provisioningResult contains 'FAILED')]";

async fn fixture() -> (Seeded, TestServer) {
    let seeded = seed(60).await;
    let server = serve(&seeded.db).await;
    (seeded, server)
}

fn rfc3339(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test]
async fn only_read_tokens_open_the_api_and_the_document_is_public() {
    let (_seeded, server) = fixture().await;
    let paths = [
        "/api/v1/events",
        "/api/v1/events/1",
        "/api/v1/stats",
        "/api/v1/deliveries",
        "/api/v1/quarantine",
        "/api/v1/quarantine/1",
    ];
    for path in paths {
        for token in [None, Some(TOKEN), Some("not-a-token")] {
            let answer = get(&server, path, &[], token).await;
            let error = refusal(&answer, 401);
            assert_eq!(error["code"], "unauthorized");
            // The read API takes a read token alone: its refusal offers nothing else.
            let message = error["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("read token") && !message.contains("Basic"),
                "{error}"
            );
            assert_eq!(
                answer.header("www-authenticate"),
                Some(r#"Bearer realm="provtrail""#)
            );
        }
        assert_eq!(
            get(&server, path, &[], Some(READ)).await.status,
            200,
            "{path}"
        );
    }
    // Two Authorization headers are refused, even when one of them is right.
    let answer = client()
        .get(server.url("/api/v1/events"))
        .header("authorization", format!("Bearer {READ}"))
        .header("authorization", "Bearer not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    // Basic credentials are not read tokens either, even with the token as password.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("user:{READ}"));
    let answer = client()
        .get(server.url("/api/v1/events"))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    // The filter test checks the token before it reads the body.
    let answer = client()
        .post(server.url("/api/v1/filter/test"))
        .bearer_auth(TOKEN)
        .json(&json!({"filter": "$"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let document = get(&server, "/api/v1/openapi.json", &[], None).await;
    assert_eq!(document.status, 200);
    assert_eq!(document.json()["openapi"], "3.1.0");
    // It takes no parameter, and says so as every endpoint does.
    let answer = get(&server, "/api/v1/openapi.json", &[("x", "1")], None).await;
    assert_eq!(refusal(&answer, 400)["parameter"], "x");
    // The APIs take tokens only: a refusal does not offer the ingest's Basic credentials.
    for path in ["/api/v1/events", "/api/v1/routes"] {
        let answer = get(&server, path, &[], None).await;
        assert_eq!(answer.status, 401, "{path}");
        assert!(
            !answer.text().contains("Basic"),
            "{path}: {}",
            answer.text()
        );
    }
}

#[tokio::test]
async fn events_page_through_everything_newest_first_without_gaps_or_repeats() {
    let (seeded, server) = fixture().await;
    let everything = seeded.expected(|_| true);
    for limit in [1, 7, 50, 1000] {
        assert_eq!(
            all_ids(&server, &[], limit).await,
            everything,
            "limit {limit}"
        );
    }
    let page = read(&server, "/api/v1/events", &[]).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 50, "default limit");
    assert_eq!(page["complete"], true);
    let newest = &page["items"][0];
    let example = seeded.events.last().unwrap();
    assert_eq!(newest["id"], example.id);
    assert_eq!(newest["received_at"], rfc3339(example.at));
    assert_eq!(newest["received_at_ms"], example.at);
    assert_eq!(
        newest["tracking_number"],
        "4b4d982dddff4267ab12f0f1e72b5a6d"
    );
    assert_eq!(newest["recipient_name"], "William Wilson");
    assert_eq!(newest["channel"], "docs");
    assert_eq!(newest["errors"], json!(["Connector AD Failed"]));
    let last = read(&server, "/api/v1/events", &[("limit", "1000")]).await;
    assert_eq!(last["next_cursor"], Value::Null);
}

#[tokio::test]
async fn every_filter_alone_and_combined_finds_exactly_the_matching_events() {
    let (seeded, server) = fixture().await;
    let sample = seeded.events[17].clone();
    let first = &requests(&sample.json)[0];
    let text = |value: &Value| value.as_str().unwrap().to_owned();

    let tracking = text(&sample.json["trackingNumber"]);
    assert_eq!(
        all_ids(&server, &[("tracking_number", &tracking)], 5).await,
        vec![sample.id]
    );
    let invocation = text(&sample.json["_metadata"]["invocationId"]).to_uppercase();
    assert_eq!(
        all_ids(&server, &[("invocation_id", &invocation)], 5).await,
        vec![sample.id]
    );

    let name = text(&sample.json["recipient"]["name"]);
    let by_name = seeded.expected(|seed| {
        seed.json["recipient"]["name"] == name.as_str()
            || seed.json["requester"]["name"] == name.as_str()
    });
    assert_eq!(
        all_ids(&server, &[("identity", &name.to_lowercase())], 4).await,
        by_name
    );
    let identity_id = text(&sample.json["recipient"]["id"]);
    let by_id = seeded.expected(|seed| {
        seed.json["recipient"]["id"] == identity_id.as_str()
            || seed.json["requester"]["id"] == identity_id.as_str()
    });
    assert_eq!(
        all_ids(&server, &[("identity", &identity_id)], 4).await,
        by_id
    );

    let source = text(&first["source"]["name"]);
    let on_source = |seed: &api_support::Seed, result: Option<&str>| {
        requests(&seed.json).iter().any(|r| {
            r["source"]["name"] == source.as_str()
                && result.is_none_or(|result| r["provisioningResult"] == result)
        })
    };
    let expected = seeded.expected(|seed| on_source(seed, None));
    assert_eq!(all_ids(&server, &[("source", &source)], 6).await, expected);
    let source_id = text(&first["source"]["id"]);
    assert_eq!(
        all_ids(&server, &[("source", &source_id)], 6).await,
        expected,
        "by id too"
    );
    let failed_there = seeded.expected(|seed| on_source(seed, Some("FAILED")));
    assert!(!failed_there.is_empty());
    assert_eq!(
        all_ids(&server, &[("source", &source), ("result", "failed")], 3).await,
        failed_there,
        "source and result on the same account request; result in any case"
    );

    for result in ["SUCCESS", "PENDING", "FAILED"] {
        let expected = seeded.expected(|seed| {
            requests(&seed.json)
                .iter()
                .any(|r| r["provisioningResult"] == result)
        });
        assert!(!expected.is_empty(), "{result}");
        assert_eq!(
            all_ids(&server, &[("result", result)], 9).await,
            expected,
            "{result}"
        );
    }

    let account = text(&first["accountId"]);
    assert_eq!(
        all_ids(&server, &[("account_id", &account)], 5).await,
        seeded.expected(|seed| requests(&seed.json)
            .iter()
            .any(|r| r["accountId"] == account.as_str()))
    );

    let with_ticket = seeded
        .events
        .iter()
        .find_map(|seed| {
            requests(&seed.json)
                .iter()
                .find_map(|r| r["ticketId"].as_str().map(str::to_owned))
        })
        .unwrap();
    assert_eq!(
        all_ids(&server, &[("ticket_id", &with_ticket)], 5).await,
        seeded.expected(|seed| requests(&seed.json)
            .iter()
            .any(|r| r["ticketId"] == with_ticket.as_str()))
    );

    let operation = text(&first["accountOperation"]);
    assert_eq!(
        all_ids(&server, &[("operation", &operation)], 10).await,
        seeded.expected(|seed| requests(&seed.json)
            .iter()
            .any(|r| r["accountOperation"] == operation.as_str()))
    );

    let action = text(&sample.json["action"]);
    let by_action = seeded.expected(|seed| seed.json["action"] == action.as_str());
    assert_eq!(
        all_ids(&server, &[("action", &action)], 10).await,
        by_action
    );

    // Channel and a time range together; the range is [since, until).
    let since = seeded.events[10].at;
    let until = seeded.events[40].at;
    let expected = seeded.expected(|seed| {
        seed.channel.as_deref() == Some("prod") && seed.at >= since && seed.at < until
    });
    assert!(!expected.is_empty());
    assert_eq!(
        all_ids(
            &server,
            &[
                ("channel", "prod"),
                ("since", &rfc3339(since)),
                ("until", &rfc3339(until))
            ],
            2
        )
        .await,
        expected
    );
    // A date is midnight UTC; a span is back from now (everything seeded is in the past).
    let day = chrono::DateTime::from_timestamp_millis(seeded.events[30].at).unwrap();
    let midnight = day.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let date = day.format("%Y-%m-%d").to_string();
    assert_eq!(
        all_ids(&server, &[("since", &date)], 50).await,
        seeded.expected(|seed| seed.at >= midnight.timestamp_millis())
    );
    assert_eq!(all_ids(&server, &[("until", "1h")], 50).await.len(), 61);
    assert!(all_ids(&server, &[("since", "1h")], 50).await.is_empty());

    // Full text: words of errors, names, account ids and attribute values; prefixes with `*`.
    let example = seeded.events.last().unwrap().id;
    for q in [
        "connector ad failed",
        "Rob.Robertson",
        "helpco sales",
        "notif*",
    ] {
        let ids = all_ids(&server, &[("q", q)], 50).await;
        assert!(ids.contains(&example), "q={q}: {ids:?}");
    }
    assert!(
        all_ids(&server, &[("q", "nowhere-to-be-found")], 50)
            .await
            .is_empty()
    );
    // A word said again and again is searched for once; too many different words (each a pass
    // over the index) are refused rather than left to keep a reader busy.
    let repeated = vec!["notif*"; 140].join(" ");
    assert!(
        all_ids(&server, &[("q", &repeated)], 50)
            .await
            .contains(&example)
    );
    let many: Vec<String> = (0..33).map(|n| format!("w{n}*")).collect();
    let answer = get(
        &server,
        "/api/v1/events",
        &[("q", &many.join(" "))],
        Some(READ),
    )
    .await;
    let error = refusal(&answer, 400);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("33 different words")
            && error["message"].as_str().unwrap().contains("at most 32"),
        "{error}"
    );
    // Combined with an identity, only the example remains.
    assert_eq!(
        all_ids(
            &server,
            &[("q", "Rob.Robertson"), ("identity", "william wilson")],
            50
        )
        .await,
        vec![example]
    );
}

#[tokio::test]
async fn a_jayway_filter_selects_like_isc_and_combines_with_index_filters() {
    let (seeded, server) = fixture().await;
    let failed = seeded.expected(|seed| {
        requests(&seed.json)
            .iter()
            .any(|r| r["provisioningResult"] == "FAILED")
    });
    assert_eq!(
        all_ids(&server, &[("filter", FAILED_FILTER)], 4).await,
        failed
    );
    // The same answer as the index's `result`, and as `in`.
    assert_eq!(all_ids(&server, &[("result", "FAILED")], 50).await, failed);
    let in_filter = "$[?('FAILED' in $.accountRequests[*].provisioningResult)]";
    assert_eq!(all_ids(&server, &[("filter", in_filter)], 50).await, failed);
    // Jayway's existence semantics: the nested filter matches every event with account requests.
    assert_eq!(
        all_ids(&server, &[("filter", NESTED_FILTER)], 50).await,
        seeded.expected(|seed| seed.json.get("accountRequests").is_some())
    );

    let page = read(
        &server,
        "/api/v1/events",
        &[("filter", FAILED_FILTER), ("limit", "1000")],
    )
    .await;
    assert_eq!(page["complete"], true);
    assert_eq!(page["scanned"], seeded.events.len());

    // Jayway semantics: `contains` on a list, `in`, regular expressions, size.
    let ad = "$[?($.accountRequests[*].provisioningTarget contains 'Corp AD')]";
    let expected = seeded.expected(|seed| {
        requests(&seed.json)
            .iter()
            .any(|r| r["provisioningTarget"] == "Corp AD")
    });
    assert_eq!(all_ids(&server, &[("filter", ad)], 50).await, expected);
    let regex = "$[?($.recipient.name =~ /william.*/i)]";
    assert_eq!(
        all_ids(&server, &[("filter", regex)], 50).await,
        seeded.expected(|seed| seed.json["recipient"]["name"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .starts_with("william"))
    );
    let many = "$[?($.accountRequests.length() >= 3)]";
    assert_eq!(
        all_ids(&server, &[("filter", many)], 50).await,
        seeded.expected(|seed| requests(&seed.json).len() >= 3)
    );

    // With index filters the filter sees only their candidates.
    let since = rfc3339(seeded.events[20].at);
    let expected = seeded.expected(|seed| {
        seed.at >= seeded.events[20].at
            && seed.channel.as_deref() == Some("prod")
            && requests(&seed.json)
                .iter()
                .any(|r| r["provisioningResult"] == "FAILED")
    });
    assert_eq!(
        all_ids(
            &server,
            &[
                ("filter", FAILED_FILTER),
                ("channel", "prod"),
                ("since", &since)
            ],
            2
        )
        .await,
        expected
    );

    // A filter that matches nothing scans everything and says it is complete.
    let page = read(
        &server,
        "/api/v1/events",
        &[("filter", "$[?($.nothing == 1)]")],
    )
    .await;
    assert_eq!(page["items"], json!([]));
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(page["complete"], true);
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter_and_what_is_accepted() {
    let (_seeded, server) = fixture().await;
    // (path, query, the parameter named, a phrase of the message)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case<'_>] = &[
        (
            "/api/v1/events",
            &[("since", "yesterday")],
            "since",
            "RFC 3339",
        ),
        (
            "/api/v1/events",
            &[("until", "2026-13-01")],
            "until",
            "RFC 3339",
        ),
        (
            "/api/v1/events",
            &[("limit", "0")],
            "limit",
            "from 1 to 1000",
        ),
        (
            "/api/v1/events",
            &[("limit", "1001")],
            "limit",
            "from 1 to 1000",
        ),
        (
            "/api/v1/events",
            &[("limit", "ten")],
            "limit",
            "from 1 to 1000",
        ),
        (
            "/api/v1/events",
            &[("result", "MAYBE")],
            "result",
            "SUCCESS, PENDING, FAILED",
        ),
        (
            "/api/v1/events",
            &[("cursor", "garbage")],
            "cursor",
            "next_cursor",
        ),
        ("/api/v1/events", &[("q", "?!")], "q", "letters or digits"),
        // A vowel sign alone is no word (the search splits words at marks), nor is the
        // private-use character that begins the index's own tokens.
        (
            "/api/v1/events",
            &[("q", "\u{093E}")],
            "q",
            "letters or digits",
        ),
        (
            "/api/v1/events",
            &[("q", "\u{E000}")],
            "q",
            "letters or digits",
        ),
        (
            "/api/v1/events",
            &[("tracking", "x")],
            "tracking",
            "tracking_number",
        ),
        (
            "/api/v1/events",
            &[("source", "a"), ("source", "b")],
            "source",
            "more than once",
        ),
        (
            "/api/v1/events",
            &[("since", "2026-11-02"), ("until", "2026-11-01")],
            "until",
            "later than",
        ),
        (
            "/api/v1/stats",
            &[("bucket", "week")],
            "bucket",
            "hour, day",
        ),
        ("/api/v1/stats", &[("top", "101")], "top", "from 0 to 100"),
        (
            "/api/v1/stats",
            &[("by_source", "maybe")],
            "by_source",
            "true or false",
        ),
        // "Since 2000" by hour is answered with the hours that hold events (see store_queries);
        // a span back past year 0 is no time at all.
        (
            "/api/v1/stats",
            &[("since", "5000000000y"), ("bucket", "hour")],
            "since",
            "0000 to 9999",
        ),
        // An `until` alone, before the earliest time the default `since` can be: the range is
        // empty by the `until` given, and said so, as `GET /events` says it.
        (
            "/api/v1/stats",
            &[("until", "0000-01-01T00:00:00Z")],
            "until",
            "`until` must be after 0000-01-01T00:00:00+00:00",
        ),
        (
            "/api/v1/deliveries",
            &[("outcome", "lost")],
            "outcome",
            "accepted",
        ),
        (
            "/api/v1/deliveries",
            &[("status", "99")],
            "status",
            "from 100 to 599",
        ),
        (
            "/api/v1/quarantine",
            &[("reason", "ugly")],
            "reason",
            "not_json",
        ),
        ("/api/v1/events/abc", &[], "id", "positive integer"),
        ("/api/v1/events/-3", &[], "id", "positive integer"),
        ("/api/v1/events/+5", &[], "id", "positive integer"),
        ("/api/v1/events/005", &[], "id", "positive integer"),
        ("/api/v1/quarantine/0", &[], "id", "positive integer"),
    ];
    for (path, query, parameter, accepted) in cases {
        let answer = get(&server, path, query, Some(READ)).await;
        let error = refusal(&answer, 400);
        assert_eq!(error["parameter"], *parameter, "{path} {query:?}: {error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(accepted), "{path} {query:?}: {message}");
    }
    // At the ends of the years RFC 3339 can write, a range widened to whole hours, or the
    // default 30 days back, stops there: every time answered can be written and read back.
    for (query, since, until) in [
        (
            &[
                ("since", "9999-12-31T23:30:00Z"),
                ("until", "9999-12-31T23:45:00Z"),
            ][..],
            "9999-12-31T23:00:00.000Z",
            "9999-12-31T23:59:59.999Z",
        ),
        (
            &[("until", "0000-01-01T00:30:00Z")][..],
            "0000-01-01T00:00:00.000Z",
            "0000-01-01T01:00:00.000Z",
        ),
    ] {
        let stats = read(&server, "/api/v1/stats", query).await;
        assert_eq!(stats["since"], since, "{query:?}: {stats}");
        assert_eq!(stats["until"], until, "{query:?}: {stats}");
        for bucket in stats["series"].as_array().unwrap() {
            let start = bucket["start"].as_str().unwrap();
            assert!(!start.starts_with(['-', '+']), "{query:?}: {start}");
        }
    }
    // A range shorter than the millisecond receipts are kept to is empty at every request, not
    // by chance of the clock; one a few milliseconds long is a range.
    for _ in 0..30 {
        let answer = get(&server, "/api/v1/stats", &[("since", "500us")], Some(READ)).await;
        let error = refusal(&answer, 400);
        assert_eq!(error["parameter"], "since", "{error}");
        let stats = read(&server, "/api/v1/stats", &[("since", "2ms")]).await;
        assert!(stats["series"].is_array(), "{stats}");
    }
    // Escapes that do not decode to UTF-8 are refused, naming their parameter, not searched for
    // as U+FFFD; UTF-8 escapes and `+` for a space are read as forms write them.
    for (raw, parameter) in [
        ("identity=%FF", "identity"),
        ("q=ok&source=%C3", "source"),
        // A name that does not decode is a parameter too, shown as best it can be.
        ("%FF=1", "\u{FFFD}"),
    ] {
        let answer = client()
            .get(format!("{}?{raw}", server.url("/api/v1/events")))
            .bearer_auth(READ)
            .send()
            .await
            .unwrap();
        let answer = common::Answer::read(answer).await;
        let error = refusal(&answer, 400);
        assert_eq!(error["parameter"], parameter, "{raw}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains("UTF-8"),
            "{error}"
        );
    }
    let answer = client()
        .get(format!(
            "{}?identity=J%C3%BCrgen+M&limit=5",
            server.url("/api/v1/events")
        ))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // A cursor of one list is not accepted by another.
    let deliveries = read(&server, "/api/v1/deliveries", &[("limit", "1")]).await;
    let cursor = deliveries["next_cursor"].as_str().unwrap();
    let answer = get(&server, "/api/v1/events", &[("cursor", cursor)], Some(READ)).await;
    assert_eq!(refusal(&answer, 400)["parameter"], "cursor");

    // A filter that does not compile: where, and what was expected.
    let answer = get(
        &server,
        "/api/v1/events",
        &[("filter", "$[?(@.a == )]")],
        Some(READ),
    )
    .await;
    let error = refusal(&answer, 400);
    assert_eq!(error["code"], "invalid_filter");
    assert_eq!(error["parameter"], "filter");
    // The character offset of the `)` where a value was expected.
    assert_eq!(error["position"], 11);
    assert!(error["expected"].as_str().unwrap().contains("value"));
    assert!(error["message"].as_str().unwrap().contains("position 11"));

    // Empty texts, times and cursors are the same as no value; an empty number or choice is not.
    let page = read(
        &server,
        "/api/v1/events",
        &[
            ("source", ""),
            ("since", ""),
            ("cursor", ""),
            ("filter", " "),
        ],
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 50);
    for (path, name) in [
        ("/api/v1/events", "limit"),
        ("/api/v1/events", "result"),
        ("/api/v1/stats", "bucket"),
        ("/api/v1/stats", "by_source"),
        ("/api/v1/quarantine", "reason"),
    ] {
        let answer = get(&server, path, &[(name, "")], Some(READ)).await;
        assert_eq!(refusal(&answer, 400)["parameter"], name, "{path}");
    }
    let blank = " ".repeat(1001);
    let answer = get(
        &server,
        "/api/v1/deliveries",
        &[("channel", &blank)],
        Some(READ),
    )
    .await;
    assert_eq!(refusal(&answer, 400)["parameter"], "channel");
}

#[tokio::test]
async fn endpoints_without_parameters_refuse_any_as_the_others_refuse_unknown_ones() {
    let (seeded, server) = fixture().await;
    let event = format!("/api/v1/events/{}", seeded.events[0].id);
    let entry = format!("/api/v1/quarantine/{}", seeded.quarantined[0]);
    for path in [event.as_str(), entry.as_str()] {
        assert_eq!(
            get(&server, path, &[], Some(READ)).await.status,
            200,
            "{path}"
        );
        let error = refusal(&get(&server, path, &[("raw", "1")], Some(READ)).await, 400);
        assert_eq!(error["code"], "unknown_parameter", "{path}");
        assert_eq!(error["parameter"], "raw", "{path}");
        assert!(
            error["message"].as_str().unwrap().contains("takes none"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn unknown_ids_paths_and_methods_answer_in_the_same_shape() {
    let (_seeded, server) = fixture().await;
    for path in ["/api/v1/events/999999", "/api/v1/quarantine/999999"] {
        let error = refusal(&get(&server, path, &[], Some(READ)).await, 404);
        assert_eq!(error["code"], "not_found");
    }
    let error = refusal(&get(&server, "/api/v1/nothing", &[], Some(READ)).await, 404);
    assert!(error["message"].as_str().unwrap().contains("openapi.json"));
    let answer = common::Answer::read(
        client()
            .delete(server.url("/api/v1/events"))
            .bearer_auth(READ)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(refusal(&answer, 405)["code"], "method_not_allowed");
    assert!(answer.header("allow").unwrap().contains("GET"));
}

#[tokio::test]
async fn an_event_comes_with_its_body_exactly_receipt_warnings_and_deliveries() {
    let (seeded, server) = fixture().await;
    let example = seeded.events.last().unwrap();
    let detail = read(&server, &format!("/api/v1/events/{}", example.id), &[]).await;
    assert_eq!(detail["summary"]["id"], example.id);
    assert_eq!(detail["raw_encoding"], "utf-8");
    assert_eq!(
        detail["raw"].as_str().unwrap().as_bytes(),
        example.raw.as_slice(),
        "the body exactly as received"
    );
    assert_eq!(detail["event"], example.json);
    let receipt = &detail["receipt"];
    assert_eq!(receipt["received_at"], rfc3339(NOW));
    assert_eq!(receipt["received_at_ms"], NOW);
    assert_eq!(receipt["channel"], "docs");
    assert_eq!(receipt["method"], "POST");
    assert_eq!(receipt["path"], "/events/docs");
    assert_eq!(receipt["remote_addr"], "127.0.0.1:40000");
    assert_eq!(receipt["size"], example.raw.len());
    assert_eq!(detail["errors"], json!(["Connector AD Failed"]));
    assert_eq!(
        detail["warnings"],
        json!(["Notification Skipped due to invalid email"])
    );
    assert!(detail["validation_warnings"].is_array());
    assert_eq!(detail["deliveries"].as_array().unwrap().len(), 1);

    // The first event was delivered twice: both deliveries are listed, oldest first.
    let first = &seeded.events[0];
    let detail = read(&server, &format!("/api/v1/events/{}", first.id), &[]).await;
    let outcomes: Vec<&str> = detail["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["accepted", "duplicate"]);
    assert_eq!(
        detail["receipt"]["invocation_id"],
        first.json["_metadata"]["invocationId"]
    );

    // A posted event comes back through the API as it was sent, spacing and all.
    let body = b"{ \"trackingNumber\" : \"tn-spaced\",\n\"sources\":\"Corp AD\",\"recipient\":{\"type\":\"IDENTITY\",\"id\":\"r1\",\"name\":\"Ann Example\"},\"accountRequests\":[],\"_metadata\":{\"invocationId\":\"spaced-1\"}}\n";
    let answer = server.post("/events/live", body.to_vec()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let id = answer.outcome().1;
    let detail = read(&server, &format!("/api/v1/events/{id}"), &[]).await;
    assert_eq!(detail["raw"].as_str().unwrap().as_bytes(), body);
    assert_eq!(detail["receipt"]["channel"], "live");
    assert_eq!(
        detail["receipt"]["remote_addr"]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some("127.0.0.1")
    );
    // Found by its tracking number, as `show` does.
    let found = read(
        &server,
        "/api/v1/events",
        &[("tracking_number", "TN-SPACED")],
    )
    .await;
    assert_eq!(found["items"][0]["id"], id);
}

#[tokio::test]
async fn stats_count_account_requests_by_result_source_and_bucket() {
    let (seeded, server) = fixture().await;
    let since = seeded.events[0].at - seeded.events[0].at % 3_600_000;
    let until = NOW + 3_600_000;
    let range = [("since", rfc3339(since)), ("until", rfc3339(until))];
    let query: Vec<(&str, &str)> = range.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stats = read(&server, "/api/v1/stats", &query).await;
    let mut totals = [0u64; 3];
    let mut per_source: std::collections::HashMap<String, (u64, u64)> = Default::default();
    for seed in &seeded.events {
        for request in requests(&seed.json) {
            let result = request["provisioningResult"].as_str().unwrap();
            let slot = match result {
                "SUCCESS" => 0,
                "PENDING" => 1,
                _ => 2,
            };
            totals[slot] += 1;
            let entry = per_source
                .entry(request["source"]["name"].as_str().unwrap().to_owned())
                .or_default();
            entry.0 += 1;
            entry.1 += u64::from(result == "FAILED");
        }
    }
    assert_eq!(stats["requests"]["success"], totals[0]);
    assert_eq!(stats["requests"]["pending"], totals[1]);
    assert_eq!(stats["requests"]["failed"], totals[2]);
    assert_eq!(stats["requests"]["total"], totals.iter().sum::<u64>());
    assert_eq!(stats["since"], rfc3339(since));
    assert_eq!(stats["until_ms"], until);
    assert_eq!(stats["bucket"], "day");
    let events: u64 = stats["events"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(events, seeded.events.len() as u64);
    let sources = stats["sources"].as_array().unwrap();
    assert_eq!(sources.len(), per_source.len());
    for source in sources {
        let (total, failed) = per_source[source["source"].as_str().unwrap()];
        assert_eq!(source["requests"]["total"], total);
        assert_eq!(source["requests"]["failed"], failed);
        let rate = source["failure_rate"].as_f64().unwrap();
        assert!((rate - failed as f64 / total as f64).abs() < 1e-9);
    }
    assert!(
        sources
            .windows(2)
            .all(|w| w[0]["requests"]["failed"].as_u64() >= w[1]["requests"]["failed"].as_u64()),
        "most failures first"
    );
    let top = stats["top_errors"].as_array().unwrap();
    assert!(!top.is_empty() && top.len() <= 10);
    let series_total: u64 = stats["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["requests"]["total"].as_u64().unwrap())
        .sum();
    assert_eq!(series_total, totals.iter().sum::<u64>());

    // Hourly buckets, per source, top 2, one source, one channel.
    let mut hourly = query.clone();
    hourly.extend([("bucket", "hour"), ("by_source", "true"), ("top", "2")]);
    let stats = read(&server, "/api/v1/stats", &hourly).await;
    let series = stats["series"].as_array().unwrap();
    assert_eq!(series.len() as i64, (until - since) / 3_600_000);
    assert_eq!(series[0]["start"], rfc3339(since));
    assert!(
        series
            .iter()
            .any(|b| !b["sources"].as_array().unwrap().is_empty())
    );
    assert_eq!(stats["top_errors"].as_array().unwrap().len(), 2);
    let name = sources[0]["source"].as_str().unwrap().to_owned();
    let mut one = query.clone();
    one.push(("source", &name));
    let stats = read(&server, "/api/v1/stats", &one).await;
    assert_eq!(stats["sources"].as_array().unwrap().len(), 1);
    assert_eq!(stats["requests"]["total"], per_source[&name].0);
    let mut docs = query.clone();
    docs.push(("channel", "docs"));
    let stats = read(&server, "/api/v1/stats", &docs).await;
    assert_eq!(stats["requests"]["total"], 1);
    assert_eq!(stats["top_errors"][0]["message"], "Connector AD Failed");
    // A channel is matched as the search matches it: case and surrounding spaces aside.
    let mut shouted = query.clone();
    shouted.push(("channel", " DOCS "));
    let loud = read(&server, "/api/v1/stats", &shouted).await;
    assert_eq!(loud["requests"], stats["requests"]);
    let found = read(&server, "/api/v1/events", &[("channel", " DOCS ")]).await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    // A range without account requests has no failure rate (not a rate of 0).
    let empty = read(
        &server,
        "/api/v1/stats",
        &[("since", "2001-01-01"), ("until", "2001-01-02")],
    )
    .await;
    assert_eq!(empty["requests"]["total"], 0);
    assert!(empty["failure_rate"].is_null(), "{empty}");
    assert!(stats["failure_rate"].is_f64(), "{stats}");
    // Defaults: the last 30 days up to now, by day.
    let stats = read(&server, "/api/v1/stats", &[]).await;
    let days = stats["series"].as_array().unwrap().len();
    assert!((30..=31).contains(&days), "{days}");
}

#[tokio::test]
async fn the_delivery_log_lists_every_request_including_refused_ones() {
    let (seeded, server) = fixture().await;
    // Refused (wrong token) and quarantined requests over HTTP.
    let refused = client()
        .post(server.url("/events"))
        .bearer_auth("wrong")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let total = seeded.events.len() as u64 + 1 + 2 + 1;
    server.await_deliveries(total).await;
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "9")];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor));
        }
        let page = read(&server, "/api/v1/deliveries", &query).await;
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(ids.len() as u64, total);
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );
    let rejected = read(&server, "/api/v1/deliveries", &[("outcome", "rejected")]).await;
    let items = rejected["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"], 401);
    assert!(items[0]["reason"].is_string());
    let by_status = read(&server, "/api/v1/deliveries", &[("status", "401")]).await;
    assert_eq!(by_status["items"], rejected["items"]);
    let duplicate = read(&server, "/api/v1/deliveries", &[("outcome", "DUPLICATE")]).await;
    assert_eq!(duplicate["items"][0]["event_id"], seeded.events[0].id);
    let prod = read(
        &server,
        "/api/v1/deliveries",
        &[("channel", "prod"), ("limit", "1000")],
    )
    .await;
    assert_eq!(
        prod["items"].as_array().unwrap().len(),
        seeded
            .events
            .iter()
            .filter(|s| s.channel.as_deref() == Some("prod"))
            .count()
    );
    let shouted = read(
        &server,
        "/api/v1/deliveries",
        &[("channel", "Prod"), ("limit", "1000")],
    )
    .await;
    assert_eq!(shouted["items"], prod["items"]);
    let old = read(
        &server,
        "/api/v1/deliveries",
        &[("until", &rfc3339(seeded.events[5].at))],
    )
    .await;
    assert_eq!(old["items"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn the_quarantine_lists_entries_and_gives_bodies_as_text_or_base64() {
    let (seeded, server) = fixture().await;
    let list = read(&server, "/api/v1/quarantine", &[]).await;
    let items = list["items"].as_array().unwrap();
    let ids: Vec<i64> = items.iter().map(|q| q["id"].as_i64().unwrap()).collect();
    let mut expected = seeded.quarantined.clone();
    expected.reverse();
    assert_eq!(ids, expected);
    assert_eq!(items[0]["reason"], "not_json");
    assert_eq!(items[1]["reason"], "invalid_event");
    assert!(!items[1]["errors"].as_array().unwrap().is_empty());
    let page = read(&server, "/api/v1/quarantine", &[("limit", "1")]).await;
    let next = page["next_cursor"].as_str().unwrap().to_owned();
    let rest = read(&server, "/api/v1/quarantine", &[("cursor", &next)]).await;
    assert_eq!(rest["items"][0]["id"], ids[1]);
    assert_eq!(rest["next_cursor"], Value::Null);
    let only = read(
        &server,
        "/api/v1/quarantine",
        &[("reason", "invalid_event")],
    )
    .await;
    assert_eq!(only["items"].as_array().unwrap().len(), 1);

    let binary = read(&server, &format!("/api/v1/quarantine/{}", ids[0]), &[]).await;
    assert_eq!(binary["raw_encoding"], "base64");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(binary["raw"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, b"\xff\xfe not json");
    assert_eq!(binary["document"], Value::Null);
    let json_entry = read(&server, &format!("/api/v1/quarantine/{}", ids[1]), &[]).await;
    assert_eq!(json_entry["raw_encoding"], "utf-8");
    assert_eq!(json_entry["raw"], "{\"a\": 1}");
    assert_eq!(json_entry["document"], json!({"a": 1}));
    assert_eq!(json_entry["entry"]["reason"], "invalid_event");
}

async fn filter_test(server: &TestServer, body: Value) -> common::Answer {
    common::Answer::read(
        client()
            .post(server.url("/api/v1/filter/test"))
            .bearer_auth(READ)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_filter_test_counts_the_matches_and_returns_the_newest() {
    let (seeded, server) = fixture().await;
    let failed = seeded.expected(|seed| {
        requests(&seed.json)
            .iter()
            .any(|r| r["provisioningResult"] == "FAILED")
    });
    let answer = filter_test(&server, json!({"filter": FAILED_FILTER, "limit": 3})).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let result = answer.json();
    assert_eq!(result["matched"], failed.len());
    assert_eq!(result["scanned"], seeded.events.len());
    assert_eq!(result["complete"], true);
    assert_eq!(result["since"], Value::Null);
    assert_eq!(result["filter"], FAILED_FILTER);
    let examples: Vec<i64> = result["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(examples, failed[..3]);
    assert_eq!(result["unknown_functions"], json!([]));

    // A misspelt function compiles, as in Jayway, matches nothing, and is named.
    let answer = filter_test(
        &server,
        json!({"filter": "$[?($.accountRequests.lenght() > 0)]"}),
    )
    .await;
    let result = answer.json();
    assert_eq!(result["matched"], 0, "{result}");
    assert_eq!(result["unknown_functions"], json!(["lenght"]));

    let since = seeded.events[30].at;
    let answer = filter_test(
        &server,
        json!({"filter": FAILED_FILTER, "since": rfc3339(since)}),
    )
    .await;
    let result = answer.json();
    let recent = failed
        .iter()
        .filter(|id| seeded.events.iter().any(|s| s.id == **id && s.at >= since))
        .count();
    assert_eq!(result["matched"], recent);
    assert_eq!(result["scanned"], seeded.events.len() - 30);
    assert_eq!(result["since"], rfc3339(since));
    assert!(
        result["examples"].as_array().unwrap().len() <= 20,
        "default limit"
    );

    let result = filter_test(&server, json!({"filter": "$", "limit": 0}))
        .await
        .json();
    assert_eq!(result["matched"], seeded.events.len());
    assert_eq!(result["examples"], json!([]));

    for (body, code, parameter) in [
        (
            json!({"filter": "$[?(@.a == )]"}),
            "invalid_filter",
            Some("filter"),
        ),
        (json!({"filter": ""}), "invalid_parameter", Some("filter")),
        (
            json!({"filter": "$", "since": "soon"}),
            "invalid_parameter",
            Some("since"),
        ),
        (
            json!({"filter": "$", "limit": 1001}),
            "invalid_parameter",
            Some("limit"),
        ),
        // Out of range below as above: the limit's fault, not the body's.
        (
            json!({"filter": "$", "limit": -1}),
            "invalid_parameter",
            Some("limit"),
        ),
        (json!({"filter": "$", "extra": 1}), "invalid_body", None),
        (json!({"since": "1h"}), "invalid_body", None),
        (json!([1, 2]), "invalid_body", None),
    ] {
        let answer = filter_test(&server, body.clone()).await;
        let error = refusal(&answer, 400);
        assert_eq!(error["code"], code, "{body}: {error}");
        assert_eq!(error["parameter"].as_str(), parameter, "{body}: {error}");
    }
    let error = refusal(
        &filter_test(&server, json!({"filter": "$[?(@.a == )]"})).await,
        400,
    );
    assert_eq!(error["position"], 11);
    let everything = filter_test(&server, json!({"filter": NESTED_FILTER}))
        .await
        .json();
    assert_eq!(
        everything["matched"],
        seeded.events.len(),
        "Jayway existence semantics"
    );
    let answer = common::Answer::read(
        client()
            .post(server.url("/api/v1/filter/test"))
            .bearer_auth(READ)
            .header("content-type", "text/plain")
            .body("$")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(refusal(&answer, 415)["code"], "unsupported_media_type");
    // A content coding is refused, whether or not the body is really coded: it would be read as
    // JSON it is not, or taken for what its label denies.
    for coding in ["gzip", "br", "identity, gzip"] {
        let answer = common::Answer::read(
            client()
                .post(server.url("/api/v1/filter/test"))
                .bearer_auth(READ)
                .header("content-type", "application/json")
                .header("content-encoding", coding)
                .body(r#"{"filter": "$"}"#)
                .send()
                .await
                .unwrap(),
        )
        .await;
        let refused = refusal(&answer, 415);
        assert_eq!(refused["code"], "unsupported_media_type");
        assert!(
            refused["message"]
                .as_str()
                .is_some_and(|message| message.contains("Content-Encoding")),
            "{coding}: {refused}"
        );
    }
    let answer = common::Answer::read(
        client()
            .post(server.url("/api/v1/filter/test"))
            .bearer_auth(READ)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(refusal(&answer, 400)["code"], "invalid_body");
    // serde would read the request from an array of its fields; the API takes objects only.
    let answer = common::Answer::read(
        client()
            .post(server.url("/api/v1/filter/test"))
            .bearer_auth(READ)
            .header("content-type", "application/json")
            .body(r#"["$"]"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(refusal(&answer, 400)["code"], "invalid_body");
    // A NUL is refused as by `GET /events`.
    for (body, parameter, said) in [
        (
            json!({"filter": "$", "limit": -1}),
            "limit",
            "from 0 to 1000",
        ),
        (json!({"filter": "$.a\u{0}"}), "filter", "NUL"),
    ] {
        let answer = filter_test(&server, body.clone()).await;
        let error = refusal(&answer, 400);
        assert_eq!(error["parameter"], parameter, "{body}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(said),
            "{body}: {error}"
        );
    }
}

#[tokio::test]
async fn a_filtered_search_that_runs_out_of_budget_returns_what_it_found_and_continues() {
    use provtrail::search::Budget;
    use provtrail::server::api::service::search_events_within;
    use provtrail::store::Store as _;
    use provtrail::store::sqlite::{SqliteSettings, SqliteStore};

    let seeded = seed(450).await;
    let store = SqliteStore::open(
        SqliteSettings::new(&seeded.db),
        std::sync::Arc::new(provtrail::metrics::Metrics::new()),
    )
    .unwrap();
    let expected = seeded.expected(|seed| {
        requests(&seed.json)
            .iter()
            .any(|r| r["provisioningResult"] == "FAILED")
    });
    // Every page of the search under `budget`, following its cursors to the end.
    let pages_within = async |budget: Budget| {
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut pairs = vec![
                ("filter".to_owned(), FAILED_FILTER.to_owned()),
                ("limit".to_owned(), "1000".to_owned()),
            ];
            if let Some(cursor) = &cursor {
                pairs.push(("cursor".to_owned(), cursor.clone()));
            }
            let page = search_events_within(&store, pairs, budget).await.unwrap();
            cursor = page.next_cursor.clone();
            pages.push(page);
            if cursor.is_none() {
                return pages;
            }
        }
    };
    let found = |pages: &[provtrail::server::api::model::EventList]| -> Vec<i64> {
        pages
            .iter()
            .flat_map(|page| page.items.iter().map(|item| item.id))
            .collect()
    };

    // The store hands candidates over 200 at a time; a budget of 5 stops after the first batch.
    let pages = pages_within(Budget {
        events: 5,
        time: std::time::Duration::from_secs(60),
    })
    .await;
    let mut incomplete_pages = 0;
    for page in &pages {
        assert!(page.scanned <= 200, "{}", page.scanned);
        if !page.complete {
            incomplete_pages += 1;
            assert!(
                page.next_cursor.is_some(),
                "an incomplete page says where to go on"
            );
        }
    }
    assert_eq!(
        incomplete_pages, 2,
        "451 events: two full batches, then the rest"
    );
    assert_eq!(found(&pages), expected, "nothing missed, nothing twice");

    // Out of time before it starts: each request still evaluates one event, and moves on.
    let pages = pages_within(Budget {
        events: 20_000,
        time: std::time::Duration::ZERO,
    })
    .await;
    for page in &pages {
        assert_eq!(page.scanned, 1, "one event a request");
    }
    assert_eq!(pages.len(), 451);
    assert_eq!(found(&pages), expected, "nothing missed, nothing twice");
    store.close().await;
}

#[tokio::test]
async fn seeded_ids_are_distinct() {
    // Guards the fixture the other tests rely on.
    let seeded = seed(10).await;
    let ids: HashSet<i64> = seeded.events.iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), 11);
    assert!(seeded.events.windows(2).all(|w| w[0].at < w[1].at));
    assert!(
        seeded
            .events
            .iter()
            .all(|s| s.at <= NOW && s.at > NOW - 2 * DAY)
    );
}

#[tokio::test]
async fn answers_with_stored_data_are_kept_by_no_cache() {
    let seeded = seed(3).await;
    let server = serve(&seeded.db).await;
    for (path, token, status) in [
        ("/api/v1/events", Some(READ), 200),
        ("/api/v1/quarantine", Some(READ), 200),
        ("/api/v1/events", None, 401),
        ("/api/v1/nothing", Some(READ), 404),
        ("/no-such-page", None, 404),
        ("/healthz", None, 200),
        ("/readyz", None, 200),
        ("/metrics", None, 200),
    ] {
        let answer = get(&server, path, &[], token).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.text());
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{path}");
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
}

/// The last page of a filtered search has no cursor, as without a filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_search_whose_last_match_fills_the_page_has_no_cursor() {
    let seeded = seed(30).await;
    let mut server = serve(&seeded.db).await;
    let all = seeded.events.len();
    let body = read(
        &server,
        "/api/v1/events",
        &[("filter", "$"), ("limit", &all.to_string())],
    )
    .await;
    assert_eq!(body["items"].as_array().unwrap().len(), all);
    assert_eq!(body["next_cursor"], Value::Null, "{body}");
    assert_eq!(body["complete"], true, "{body}");
    // One fewer: a cursor, to the last one.
    let body = read(
        &server,
        "/api/v1/events",
        &[("filter", "$"), ("limit", &(all - 1).to_string())],
    )
    .await;
    assert!(body["next_cursor"].is_string(), "{body}");
    // Every event but the oldest matches: a page of all the matches ends the search, although
    // an event is left below its last.
    let oldest = seeded.events[0].json["trackingNumber"].as_str().unwrap();
    let filter = format!("$[?(@.trackingNumber != '{oldest}')]");
    let body = read(
        &server,
        "/api/v1/events",
        &[("filter", &filter), ("limit", &(all - 1).to_string())],
    )
    .await;
    assert_eq!(body["items"].as_array().unwrap().len(), all - 1, "{body}");
    assert_eq!(body["next_cursor"], Value::Null, "{body}");
    assert_eq!(body["complete"], true, "{body}");
    server.shutdown().await;
}
