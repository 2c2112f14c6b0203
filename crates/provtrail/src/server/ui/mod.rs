//! The web UI under `/`: server-rendered pages, assets embedded in the binary.

use axum::Router;

use super::AppState;

/// The web UI's routes.
pub fn router() -> Router<AppState> {
    Router::new()
}
