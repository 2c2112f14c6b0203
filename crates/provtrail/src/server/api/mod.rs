//! The read API under `/api/v1/`, authenticated with read tokens (never the ingest credential).

use axum::Router;

use super::AppState;

/// The read API's routes.
pub fn router() -> Router<AppState> {
    Router::new()
}
