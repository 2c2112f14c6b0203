//! The read API's one error shape, `{"error": {"code", "message", …}}`, and the status each kind
//! of failure is answered with.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::model::{ErrorBody, ErrorDetail};
use crate::search::SearchError;
use crate::store::StoreError;

/// Why a read API request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status to answer with.
    pub status: u16,
    /// A stable code (see [`ErrorDetail::code`]).
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// The parameter at fault.
    pub parameter: Option<String>,
    /// Where a filter failed to parse.
    pub position: Option<u64>,
    /// For a 429: seconds until the client may try again (`Retry-After`).
    pub retry_after: Option<u32>,
    /// What the filter parser expected there.
    pub expected: Option<String>,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            parameter: None,
            position: None,
            expected: None,
            retry_after: None,
        }
    }

    /// 400: a parameter's value is not acceptable.
    pub fn invalid(parameter: &str, message: impl Into<String>) -> Self {
        ApiError {
            parameter: Some(parameter.to_owned()),
            ..ApiError::new(400, "invalid_parameter", message)
        }
    }

    /// 400: a parameter this endpoint does not have.
    pub fn unknown(parameter: &str, accepted: &[String]) -> Self {
        ApiError {
            parameter: Some(parameter.to_owned()),
            ..ApiError::new(
                400,
                "unknown_parameter",
                if accepted.is_empty() {
                    format!("unknown parameter `{parameter}`; this endpoint takes none")
                } else {
                    format!(
                        "unknown parameter `{parameter}`; this endpoint accepts {}",
                        accepted.join(", ")
                    )
                },
            )
        }
    }

    /// 400: a request body that cannot be read.
    pub fn invalid_body(message: impl Into<String>) -> Self {
        ApiError::new(400, "invalid_body", message)
    }

    /// 400: a filter that does not compile, with where and why.
    pub fn invalid_filter(parameter: &str, err: &provtrail_jsonpath::ParseError) -> Self {
        ApiError {
            parameter: Some(parameter.to_owned()),
            position: Some(err.position as u64),
            expected: Some(err.expected.clone()),
            ..ApiError::new(
                400,
                "invalid_filter",
                format!(
                    "`{parameter}` does not compile: {} at position {} (expected {})",
                    err.message, err.position, err.expected
                ),
            )
        }
    }

    /// 401: no read token, or not a valid one.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(401, "unauthorized", message)
    }

    /// 403: a valid token that may not do this (a read token asking for a change).
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(403, "forbidden", message)
    }

    /// 404: nothing with this id.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(404, "not_found", message)
    }

    /// 405: the resource exists but not with this method.
    pub fn method_not_allowed() -> Self {
        ApiError::new(
            405,
            "method_not_allowed",
            "method not allowed on this resource (see the Allow header)",
        )
    }

    /// 429: this client sent too many wrong tokens; it may send one again after `wait`.
    pub fn too_many_requests(wait: std::time::Duration) -> Self {
        let seconds = crate::server::guesses::retry_after_seconds(wait);
        ApiError {
            retry_after: Some(u32::try_from(seconds).unwrap_or(u32::MAX)),
            ..ApiError::new(
                429,
                "too_many_requests",
                format!(
                    "too many wrong tokens from this address: no token is checked for it for \
                     {seconds} s"
                ),
            )
        }
    }

    /// 503: the server cannot take this request now; worth trying again shortly.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(503, "unavailable", message)
    }

    /// 413: a request body over the limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError::new(413, "payload_too_large", message)
    }

    /// 408: a request body that did not arrive within the request timeout.
    pub fn request_timeout() -> Self {
        ApiError::new(
            408,
            "request_timeout",
            "the request body did not arrive within the request timeout",
        )
    }

    /// 415 for a body sent with a content coding.
    pub fn content_coded() -> Self {
        ApiError::new(
            415,
            "unsupported_media_type",
            "the body has a Content-Encoding; send it uncompressed, without one",
        )
    }

    /// 415: a request body that is not JSON.
    pub fn unsupported_media_type() -> Self {
        ApiError::new(
            415,
            "unsupported_media_type",
            "send the body as application/json",
        )
    }

    /// The response body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                parameter: self.parameter.clone(),
                position: self.position,
                expected: self.expected.clone(),
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) | StoreError::Overloaded(_) | StoreError::Stranded(_) => {
                ApiError::unavailable(format!("{err}; try again shortly"))
            }
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Invalid(message) => ApiError::new(400, "invalid_parameter", message),
            StoreError::Internal(_) => {
                tracing::error!(error = %err, "a read API request failed");
                ApiError::new(500, "internal", "internal error while reading the store")
            }
            StoreError::Unreadable { .. } | StoreError::Damaged(_) => {
                tracing::error!(error = %err, "a read API request met a damaged body");
                ApiError::new(
                    500,
                    "internal",
                    format!("{err}: the store is damaged (`provtrail verify` checks it)"),
                )
            }
        }
    }
}

impl From<SearchError> for ApiError {
    fn from(err: SearchError) -> Self {
        match err {
            SearchError::InvalidFilter(parse) => ApiError::invalid_filter("filter", &parse),
            err @ SearchError::TooSlow { .. } => ApiError::invalid("filter", err.to_string()),
            err @ SearchError::Busy => ApiError::unavailable(err.to_string()),
            SearchError::Store(store) => store.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        let headers = response.headers_mut();
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="provtrail""#),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                if let Some(seconds) = self.retry_after {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
            }
            _ => {}
        }
        response
    }
}
