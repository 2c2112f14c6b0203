//! The OpenAPI document: served without a token, equal to the checked-in copy
//! (`crates/provtrail/openapi.json`), and describing routes that exist.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_support;
mod common;

use serde_json::Value;

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

#[tokio::test]
async fn the_served_document_is_the_checked_in_one() {
    let seeded = api_support::seed(3).await;
    let server = api_support::serve(&seeded.db).await;
    let answer = server.get("/api/v1/openapi.json").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let served = answer.text();
    if std::env::var_os("PROVTRAIL_UPDATE_OPENAPI").is_some() {
        std::fs::write(CHECKED_IN, &served).unwrap();
    }
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
    assert!(
        served == checked_in,
        "the OpenAPI document generated from the code differs from {CHECKED_IN}.\n\
         Regenerate it with:\n\n    \
         cargo run -p provtrail -- openapi --output crates/provtrail/openapi.json\n\n\
         (or PROVTRAIL_UPDATE_OPENAPI=1 cargo test -p provtrail --test api_openapi), \
         and commit it."
    );
    // Every documented path answers (401 without a token), none is a 404.
    let document: Value = serde_json::from_str(&served).unwrap();
    for (path, operations) in document["paths"].as_object().unwrap() {
        let concrete = path.replace("{id}", "1").replace("{name}", "a-route");
        for method in operations.as_object().unwrap().keys() {
            let request = common::client().request(
                method.to_uppercase().parse().unwrap(),
                server.url(&concrete),
            );
            let status = request.send().await.unwrap().status().as_u16();
            assert_eq!(status, 401, "{method} {path} without a token");
        }
    }
}

#[test]
fn the_subcommand_prints_the_same_document() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(output.status.success());
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
    assert!(
        String::from_utf8(output.stdout).unwrap() == checked_in,
        "`provtrail openapi` differs from {CHECKED_IN}; regenerate it with \
         cargo run -p provtrail -- openapi --output crates/provtrail/openapi.json"
    );
}
