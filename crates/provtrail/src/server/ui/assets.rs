//! The stylesheet, script and icon, compiled into the binary and served under names that carry a
//! digest of their content, so that browsers may cache them for good and a new build is never
//! served a stale copy.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The URL it is served at (`/assets/<stem>.<digest>.<ext>`).
    pub url: String,
    content_type: &'static str,
    body: &'static [u8],
}

impl Asset {
    fn new(stem: &str, ext: &str, content_type: &'static str, body: &'static [u8]) -> Asset {
        let digest = Sha256::digest(body);
        let short: String = digest[..6]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Asset {
            url: format!("/assets/{stem}.{short}.{ext}"),
            content_type,
            body,
        }
    }
}

/// The stylesheet.
pub static CSS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "ui",
        "css",
        "text/css; charset=utf-8",
        include_bytes!("../../../assets/ui.css"),
    )
});

/// The script: progressive enhancement only; every page works without it.
pub static JS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "ui",
        "js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../assets/ui.js"),
    )
});

/// The icon.
pub static ICON: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "icon",
        "svg",
        "image/svg+xml",
        include_bytes!("../../../assets/icon.svg"),
    )
});

/// `GET /assets/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    let path = format!("/assets/{file}");
    let Some(asset) = [&*CSS, &*JS, &*ICON]
        .into_iter()
        .find(|asset| asset.url == path)
    else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        asset.body,
    )
        .into_response()
}
