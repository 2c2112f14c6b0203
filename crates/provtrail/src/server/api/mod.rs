//! The read API under `/api/v1/`, authenticated with read tokens (never the ingest credential).
//!
//! - `handlers.rs`: the routes, thin, with their OpenAPI description;
//! - `service.rs`: what each endpoint does, shared with the CLI (`search`, `show`, `stats` on a
//!   database file);
//! - `params.rs`: query parameters, documented and checked from one list;
//! - `model.rs`: the answer documents; `error.rs`: the one error shape;
//! - `routes.rs`: the routes' documents and reads, for `server/routes_api.rs` and the web UI.
//!
//! The OpenAPI document is generated from this code ([`ApiDoc`]) and served, without
//! authentication, at `/api/v1/openapi.json`; a test keeps the checked-in copy
//! (`crates/provtrail/openapi.json`) equal to it.

pub mod error;
pub(crate) mod handlers;
pub mod model;
pub mod params;
pub mod routes;
pub mod service;

use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, post};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use self::error::ApiError;
use super::AppState;

/// The OpenAPI description of the read API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "provtrail read API",
        description = "Search, inspect and count the SailPoint ISC Provisioning Completed events \
            kept by provtrail, its delivery log and its quarantine, and test Jayway filters on \
            stored events; see the routes that forward events to other systems, with their \
            deliveries and dead letters.\n\nEvery endpoint but this document needs a read token \
            (`Authorization: Bearer <token>`); ingest credentials are not accepted. An admin token \
            also reads the routes, and only an admin token may retry dead letters or replay \
            events to a route (a read token gets 403). Times are answered in RFC 3339 (UTC) with \
            the Unix milliseconds beside them, and accepted as RFC 3339, a date (`2026-11-01`, \
            midnight UTC) or a span back from now (`24h`, `7d`); the routes' documents give \
            Unix milliseconds only, and their lists are paged with `before_id`. Lists are newest \
            first and paged with opaque cursors. Errors are \
            `{\"error\": {\"code\", \"message\", \"parameter\"?}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        handlers::search_events,
        handlers::get_event,
        handlers::stats,
        handlers::deliveries,
        handlers::quarantine,
        handlers::quarantine_entry,
        handlers::filter_test,
        crate::server::routes_api::list_routes,
        crate::server::routes_api::get_route,
        crate::server::routes_api::test_route,
        crate::server::routes_api::replay_route,
        crate::server::routes_api::list_deliveries,
        crate::server::routes_api::get_delivery,
        crate::server::routes_api::list_dead,
        crate::server::routes_api::retry_dead,
    ),
    modifiers(&TokenSchemes),
    tags(
        (name = "events", description = "Stored events"),
        (name = "stats", description = "Counts over time"),
        (name = "deliveries", description = "Every request to the ingest endpoint"),
        (name = "quarantine", description = "Documents kept that are not valid events"),
        (name = "filters", description = "Jayway filters tried on stored events"),
        (name = "routes", description = "Routes that forward matching events to other systems: \
            their deliveries, dead letters, retries and replays"),
    )
)]
pub struct ApiDoc;

struct TokenSchemes;

impl Modify for TokenSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut read = Http::new(HttpAuthScheme::Bearer);
        read.description = Some(
            "A read token (`--read-token`; a zero-config `serve` keeps one in \
             `<db>.read-token`). Ingest credentials are not accepted."
                .to_owned(),
        );
        components.add_security_scheme("read_token", SecurityScheme::Http(read));
        let mut admin = Http::new(HttpAuthScheme::Bearer);
        admin.description = Some(
            "An admin token (`--admin-token`, `[admin] tokens`): retries dead letters and \
             replays events to a route, and reads the routes. Never a read or ingest token."
                .to_owned(),
        );
        components.add_security_scheme("admin_token", SecurityScheme::Http(admin));
    }
}

/// The OpenAPI document as served: pretty JSON with a final newline, generated once.
pub fn openapi_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| match ApiDoc::openapi().to_pretty_json() {
        Ok(mut text) => {
            text.push('\n');
            text
        }
        // Serializing a document built from static descriptions cannot fail; if it ever did, the
        // drift test would show it.
        Err(err) => format!("{{\"error\": \"{err}\"}}\n"),
    })
}

/// `route`, answering unknown methods in the API's error shape (axum adds `Allow`).
pub(crate) fn endpoint(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.fallback(method_not_allowed)
}

/// The read API's routes.
pub fn router() -> Router<AppState> {
    let authenticated = Router::new()
        .route("/api/v1/events", endpoint(get(handlers::search_events)))
        .route("/api/v1/events/{id}", endpoint(get(handlers::get_event)))
        .route("/api/v1/stats", endpoint(get(handlers::stats)))
        .route("/api/v1/deliveries", endpoint(get(handlers::deliveries)))
        .route("/api/v1/quarantine", endpoint(get(handlers::quarantine)))
        .route(
            "/api/v1/quarantine/{id}",
            endpoint(get(handlers::quarantine_entry)),
        )
        .route("/api/v1/filter/test", endpoint(post(handlers::filter_test)));
    Router::new()
        .merge(authenticated)
        .route("/api/v1/openapi.json", endpoint(get(openapi_document)))
        .route("/api/v1", any(not_found))
        .route("/api/v1/", any(not_found))
        .route("/api/v1/{*rest}", any(not_found))
}

/// Proof that the request carries a valid read token. Handlers take it as their first argument,
/// so that it is checked before anything else is read, the body included.
#[derive(Debug, Clone, Copy)]
pub struct ReadAccess;

impl axum::extract::FromRequestParts<AppState> for ReadAccess {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(wait) = state.token_guesses.refusal(parts, &state.trusted_proxies) {
            return Err(ApiError::too_many_requests(wait));
        }
        state
            .read_credentials
            .check_headers(&parts.headers)
            .map(|()| ReadAccess)
            .map_err(|err| {
                crate::server::guesses::note_refused(state, parts, &err);
                ApiError::unauthorized(format!(
                    "{}: the read API needs a read token (Authorization: Bearer <token>); \
                     ingest credentials are not accepted, nor admin tokens (they open the \
                     routes API only)",
                    err.without_ingest_hint()
                ))
            })
    }
}

async fn openapi_document(query: handlers::Pairs) -> Response {
    // As every other endpoint, it refuses a parameter it does not have.
    if let Err(err) = handlers::no_parameters(query) {
        return err.into_response();
    }
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found(
        "no such resource in the read API; see /api/v1/openapi.json for what there is",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_every_route_and_the_read_token() {
        let document: serde_json::Value = serde_json::from_str(openapi_json()).unwrap();
        let paths = document["paths"].as_object().unwrap();
        for path in [
            "/api/v1/events",
            "/api/v1/events/{id}",
            "/api/v1/stats",
            "/api/v1/deliveries",
            "/api/v1/quarantine",
            "/api/v1/quarantine/{id}",
            "/api/v1/filter/test",
            "/api/v1/routes",
            "/api/v1/routes/{name}",
            "/api/v1/routes/{name}/test",
            "/api/v1/routes/{name}/replay",
            "/api/v1/route-deliveries",
            "/api/v1/route-deliveries/{id}",
            "/api/v1/deadletters",
            "/api/v1/deadletters/retry",
        ] {
            assert!(paths.contains_key(path), "{path} is not documented");
        }
        for scheme in ["read_token", "admin_token"] {
            assert_eq!(
                document["components"]["securitySchemes"][scheme]["scheme"],
                "bearer"
            );
        }
        // Changes need the admin token alone.
        for (path, method) in [
            ("/api/v1/deadletters/retry", "post"),
            ("/api/v1/routes/{name}/replay", "post"),
        ] {
            assert_eq!(
                document["paths"][path][method]["security"],
                serde_json::json!([{"admin_token": []}]),
                "{method} {path}"
            );
        }
    }
}
