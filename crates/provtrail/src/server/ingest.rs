//! `POST /events` and `POST /events/{channel}`: the ingest contract.
//!
//! | case | answer |
//! |---|---|
//! | valid event, committed | 200 `{"status":"accepted","id":…}` |
//! | seen before (invocation id or canonical body) | 200 `{"status":"duplicate","id":…}` |
//! | JSON but not a valid event | 202 `{"status":"quarantined","id":…,"quarantine_id":…,"errors":[…],"warnings":[…]}` |
//! | not JSON / not UTF-8 (kept in quarantine) | 400 |
//! | content type that is not JSON, or a `Content-Encoding` (kept in quarantine) | 415 |
//! | channel name not allowed (kept in quarantine) | 400 |
//! | missing or wrong credentials (checked before the body is read) | 401 with `WWW-Authenticate` |
//! | body over the limit | 413 |
//! | body too slow or cut short | 408 / 400 |
//! | store cannot commit or is overloaded | 503 with `Retry-After` |

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use super::listener::MalformedRequest;
use super::{AppState, error_response};
use crate::ingest::{MAX_CHANNEL_LEN, is_channel_name};
use crate::metrics::EventOutcome;
use crate::store::{
    Content, Incoming, IngestOutcome, LateAnswer, QuarantineReason, Receipt, Rejection, StoreError,
};

/// Bodies above this are parsed on a blocking thread so that one large event cannot stall the
/// async workers.
const INLINE_PARSE_LIMIT: usize = 64 * 1024;

/// Kibibytes of bodies larger than [`INLINE_PARSE_LIMIT`] parsed at once. Reading a hostile
/// megabyte (an array of half a million numbers, say) takes up to 150 times its size in memory
/// while it lasts; four such at a time bound that to well under a gigabyte, where a thousand
/// connections sending them together would take many. Ordinary events (about a kilobyte) are
/// parsed inline and never wait for it.
pub(crate) const PARSE_BUDGET_KIB: u32 = 4 * 1024;

pub(super) async fn post_event(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let receipt = receipt(&parts, &state.trusted_proxies, None);
    let body = Unread::new(body, &parts);
    let place = held_place(&parts);
    handle(state, receipt, parts.headers, body, None, place).await
}

/// The request's place under the concurrency cap, taken from the layer that holds it.
fn held_place(parts: &Parts) -> Option<tokio::sync::OwnedSemaphorePermit> {
    parts
        .extensions
        .get::<super::HeldPlace>()
        .and_then(super::HeldPlace::take)
}

pub(super) async fn post_event_to_channel(
    State(state): State<AppState>,
    channel: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    // `/events/ops/` is the channel `ops`, as `/events/` is the default channel. The slash is
    // the URL's own, not one decoded from `%2F` (`/events/ops%2F` names the channel `ops/`).
    let ends_in_slash = parts.uri.path().ends_with('/');
    let channel = channel.map(|Path(channel)| match channel.strip_suffix('/') {
        Some(trimmed) if ends_in_slash => Path(trimmed.to_owned()),
        _ => Path(channel),
    });
    // A channel the store cannot file events under is refused, but the sender may be ISC with a
    // subscription URL nobody noticed was wrong: an authenticated body is kept in quarantine
    // (and answered 400), since ISC will not send it again.
    let refusal = match &channel {
        Ok(Path(channel)) if is_channel_name(channel) => None,
        Ok(Path(channel)) => {
            let shown: String = channel.chars().take(MAX_CHANNEL_LEN + 8).collect();
            Some(format!(
                "channel `{shown}` is not allowed: a channel name has 1 to {MAX_CHANNEL_LEN} \
                 ASCII letters, digits, '-', '_' or '.', and is not `.` or `..`"
            ))
        }
        Err(rejection) => Some(format!(
            "the channel in the URL cannot be read: {rejection}"
        )),
    }
    .map(|message| Refusal {
        reason: QuarantineReason::BadChannel,
        message,
    });
    let channel = match (channel, &refusal) {
        (Ok(Path(channel)), None) => Some(channel),
        _ => None,
    };
    let receipt = receipt(&parts, &state.trusted_proxies, channel);
    let body = Unread::new(body, &parts);
    let place = held_place(&parts);
    handle(state, receipt, parts.headers, body, refusal, place).await
}

/// A request body not read yet. Answered without being read (a wrong credential, a declared
/// length over the limit), an HTTP/2 body is read and dropped behind the answer: dropped unread,
/// its stream is reset, and a client still sending it may take the reset for the whole answer
/// and never show the 401 or 413. (HTTP/1 has the connection's lingering close for this.)
struct Unread {
    body: Body,
    http2: bool,
    /// Whether the server dropped its connections at the end of the grace (none in tests that
    /// call the router without the listener).
    abandoned: Option<super::listener::Abandoned>,
}

impl Unread {
    fn new(body: Body, parts: &Parts) -> Self {
        Unread {
            body,
            http2: parts.version == axum::http::Version::HTTP_2,
            abandoned: parts
                .extensions
                .get::<super::listener::Abandoned>()
                .cloned(),
        }
    }

    /// The body, to read now.
    fn take(self) -> Body {
        self.body
    }

    /// Gives the body up: over HTTP/2, read and dropped in the background, for at most a few
    /// seconds and megabytes (as the lingering close).
    fn refuse(self) {
        if !self.http2 {
            return;
        }
        let mut body = self.body;
        tokio::spawn(async move {
            let drain = async {
                let mut dropped = 0usize;
                let silence = super::listener::LINGER_SILENCE;
                while let Ok(Some(Ok(frame))) = tokio::time::timeout(silence, body.frame()).await {
                    dropped += frame.data_ref().map_or(0, Bytes::len);
                    if dropped > super::listener::LINGER_BYTES {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(super::listener::LINGER_TIME, drain).await;
        });
    }
}

/// Why an authenticated body that arrived whole is kept in quarantine without being read as an
/// event.
struct Refusal {
    reason: QuarantineReason,
    message: String,
}

fn receipt(
    parts: &Parts,
    proxies: &super::forwarded::TrustedProxies,
    channel: Option<String>,
) -> Receipt {
    let headers = &parts.headers;
    // Kept even when it is not ASCII (a client's name in UTF-8, or bytes in no encoding at all):
    // who sent a request is worth more than the exact form of its name.
    let user_agent = headers.get(header::USER_AGENT).map(|value| {
        String::from_utf8_lossy(value.as_bytes())
            .chars()
            .take(200)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    });
    let size = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    Receipt {
        received_at: chrono::Utc::now().timestamp_millis(),
        // The client a trusted proxy names, or the peer.
        remote_addr: proxies.origin(parts).map(|origin| origin.to_log()),
        channel,
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().chars().take(300).collect(),
        size,
        user_agent,
    }
}

/// Whether `bytes` are one whole JSON object or array: a body cut short cannot be one (its
/// brackets do not close). Over HTTP/2 a stream the client reset with NO_ERROR before its last
/// frame ends like a whole body, and the connection's end fails a body whose last frame had
/// arrived: without a `Content-Length`, this tells which arrived whole. Parsed on a blocking
/// thread past the size parsed inline.
async fn whole_json_document(bytes: &Bytes) -> bool {
    fn whole(bytes: &[u8]) -> bool {
        let starts_a_document = bytes
            .iter()
            .find(|byte| !byte.is_ascii_whitespace())
            .is_some_and(|first| matches!(first, b'{' | b'['));
        starts_a_document && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
    }
    if bytes.len() <= INLINE_PARSE_LIMIT {
        return whole(bytes);
    }
    let bytes = bytes.clone();
    tokio::task::spawn_blocking(move || whole(&bytes))
        .await
        .unwrap_or(false)
}

async fn handle(
    state: AppState,
    receipt: Receipt,
    headers: HeaderMap,
    body: Unread,
    refusal: Option<Refusal>,
    place: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Response {
    // Credentials first: nothing of an unauthenticated body is read.
    if let Err(err) = state.ingest_credentials.check_headers(&headers) {
        body.refuse();
        let mut response = reject(&state, receipt, StatusCode::UNAUTHORIZED, &err.to_string());
        if let Ok(challenge) = HeaderValue::from_str(&state.ingest_credentials.challenge()) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        return response;
    }
    if receipt.size > state.max_body as u64 {
        body.refuse();
        let message = too_large(state.max_body);
        return reject(&state, receipt, StatusCode::PAYLOAD_TOO_LARGE, &message);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    // From here the request runs as a task of its own, which a handler dropped by hyper does not
    // stop (and which the server's shutdown waits for before the store closes): hyper drops a
    // request's handler when its client goes (an HTTP/2 stream reset or connection closed after
    // the stream's last frame, a server shutting down past its grace). ISC sends an event once;
    // one that arrived whole is not thrown away for want of a listener, and one that did not
    // is refused with a record either way. The task holds the request's place under the
    // concurrency cap, so that the cap bounds the work of requests whose clients left too.
    let tracker = state.keeping.clone();
    let receiving = tracker.spawn(async move {
        let _place = place;
        receive(state, receipt, headers, body, refusal, content_type).await
    });
    receiving.await.unwrap_or_else(|_| {
        error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error while keeping the event",
        )
    })
}

/// Reads an authenticated body and keeps it if it arrived whole.
async fn receive(
    state: AppState,
    mut receipt: Receipt,
    headers: HeaderMap,
    body: Unread,
    refusal: Option<Refusal>,
    content_type: Option<String>,
) -> Response {
    let http2 = body.http2;
    let abandoned = body.abandoned.clone();
    let declared = headers
        .contains_key(header::CONTENT_LENGTH)
        .then_some(receipt.size);
    // Held until the answer: the body's bytes live on in the event until it is committed.
    let mut room = BodyRoom::new(state.body_memory.clone());
    let read = read_body_to_its_end(
        body.take(),
        state.max_body,
        state.body_timeout,
        Some(&mut room),
    );
    let (bytes, stream_ended) = match read.await {
        Ok(read) => read,
        // Over HTTP/2 the connection's end fails the body of a stream whose last frame may have
        // arrived, and a reset other than NO_ERROR fails one whose sender reset the stream
        // instead of ending it: what arrived is the whole body when it has the length
        // announced, or without one, when it is a whole JSON document.
        Err(BodyError::Broken { arrived, .. })
            if http2
                && match declared {
                    Some(length) => arrived.len() as u64 == length,
                    None => whole_json_document(&arrived).await,
                } =>
        {
            (arrived, true)
        }
        Err(BodyError::TooLarge) => {
            // A body without a length was read up to the limit: record at least that.
            receipt.size = receipt.size.max(state.max_body as u64 + 1);
            let message = too_large(state.max_body);
            return reject(&state, receipt, StatusCode::PAYLOAD_TOO_LARGE, &message);
        }
        Err(BodyError::Timeout { received }) => {
            receipt.size = received;
            let message =
                format!("the request body did not arrive in time ({received} bytes arrived)");
            return reject(&state, receipt, StatusCode::REQUEST_TIMEOUT, &message);
        }
        Err(BodyError::Broken { arrived, .. })
            if abandoned
                .as_ref()
                .is_some_and(super::listener::Abandoned::now) =>
        {
            // Nobody is answered: the connection is gone. The record says why.
            receipt.size = arrived.len() as u64;
            let message = format!(
                "the server stopped before the request's body arrived ({} bytes arrived when \
                 its shutdown grace period ended and its connections were closed); no answer \
                 was sent, and nothing of the request was kept",
                receipt.size
            );
            return unavailable(&state, receipt, &message);
        }
        Err(BodyError::Broken { reason, arrived }) => {
            let received = arrived.len();
            receipt.size = received as u64;
            let message = format!(
                "the request body could not be read completely ({received} bytes arrived): \
                 {reason}"
            );
            return reject(&state, receipt, StatusCode::BAD_REQUEST, &message);
        }
        Err(BodyError::NoRoom { received }) => {
            receipt.size = received;
            let message = "the server holds as many request bodies as its memory budget for \
                           them allows (ingest.max_body_memory) and none was done in time; \
                           nothing of this request was kept; retry later";
            return unavailable(&state, receipt, message);
        }
    };
    // HTTP/1 fails a body shorter than its `Content-Length`; over HTTP/2 a stream the client
    // resets with NO_ERROR ends the body where it stopped, and what arrived would be read as all
    // of it (an event it gave up on accepted, a cut one kept as not JSON).
    receipt.size = bytes.len() as u64;
    if let Some(declared) = declared.filter(|&declared| declared > receipt.size) {
        let message = format!(
            "the request body could not be read completely ({} of the {declared} bytes its \
             Content-Length announced arrived)",
            receipt.size
        );
        return reject(&state, receipt, StatusCode::BAD_REQUEST, &message);
    }
    // Without a `Content-Length` that reset looks like the body's end; the stream tells: its
    // last frame did not arrive. A body that is a whole JSON document is kept all the same (the
    // client may have reset the stream instead of ending it); anything else was cut short.
    if http2 && declared.is_none() && !stream_ended && !whole_json_document(&bytes).await {
        let message = format!(
            "the client went away (its connection closed or the stream was reset) before its \
             body was whole ({} bytes arrived, no whole JSON document); nothing of it was kept",
            receipt.size
        );
        return reject(&state, receipt, StatusCode::BAD_REQUEST, &message);
    }
    keep(state, receipt, headers, bytes, refusal, content_type, room).await
}

/// Keeps a body that arrived whole (an event, a duplicate, or a document for the quarantine) and
/// answers for it; `room` is the memory the body holds, given back with the answer.
async fn keep(
    state: AppState,
    receipt: Receipt,
    headers: HeaderMap,
    bytes: Bytes,
    refusal: Option<Refusal>,
    content_type: Option<String>,
    room: BodyRoom,
) -> Response {
    let _room = room;
    let ingestor = state.ingestor.clone();
    let encoding_refusal = unsupported_encoding(&headers);
    // RFC 9110 (section 15.5.16): a 415 for a content coding says which codings are accepted.
    let codings_refused = refusal.is_none() && encoding_refusal.is_some();
    let refusal = refusal
        .or(encoding_refusal)
        .or_else(|| two_content_types(&headers));
    let incoming = match (refusal, content_type.as_deref()) {
        (Some(Refusal { reason, message }), _) => {
            ingestor.prepare_refused(bytes, receipt.clone(), reason, message)
        }
        (None, Some(media)) if !is_json(media) => {
            ingestor.prepare_unsupported(bytes, receipt.clone(), media)
        }
        (None, _) if bytes.len() <= INLINE_PARSE_LIMIT => ingestor.prepare(bytes, receipt.clone()),
        (None, _) => {
            let receipt = receipt.clone();
            let kib = u32::try_from(bytes.len().div_ceil(1024))
                .unwrap_or(u32::MAX)
                .min(PARSE_BUDGET_KIB);
            // Never closed; held until the parse is done.
            let _budget = state.parse_budget.clone().acquire_many_owned(kib).await;
            match tokio::task::spawn_blocking(move || ingestor.prepare(bytes, receipt)).await {
                Ok(incoming) => incoming,
                Err(_) => {
                    return error_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal error while reading the event",
                    );
                }
            }
        }
    };
    let quarantine = match &incoming.content {
        Content::Quarantine(quarantine) => Some(quarantine.clone()),
        Content::Event(_) => None,
    };
    // A disk that stalls (a frozen file system, a dying device) would hold the request for as
    // long as it stalls: past the request timeout, the sender is answered 503 instead. The
    // commit may still happen later, so the answer does not say the event was not kept; if it
    // does, the 503 takes the place of the record the commit wrote (`LateAnswer`).
    let late = LateAnswer::default();
    let incoming = Incoming {
        late_answer: Some(late.clone()),
        ..incoming
    };
    let Ok(stored) = tokio::time::timeout(state.body_timeout, state.store.ingest(incoming)).await
    else {
        let message = format!(
            "the store did not commit within {}; the event may still be kept once the disk \
             answers (sent again, it is then answered as a duplicate); retry later",
            humantime::format_duration(state.body_timeout)
        );
        record_late_refusal(
            &state,
            receipt,
            StatusCode::SERVICE_UNAVAILABLE,
            &message,
            late,
        );
        let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, &message);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    match stored {
        Ok(IngestOutcome::Accepted { id }) => (
            StatusCode::OK,
            Json(Kept {
                status: "accepted",
                id,
            }),
        )
            .into_response(),
        Ok(IngestOutcome::Duplicate { id }) => (
            StatusCode::OK,
            Json(Kept {
                status: "duplicate",
                id,
            }),
        )
            .into_response(),
        Ok(IngestOutcome::Quarantined { id, duplicate }) => {
            let Some(quarantine) = quarantine else {
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            };
            use QuarantineReason::*;
            let status = StatusCode::from_u16(quarantine.reason.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let label = match quarantine.reason {
                InvalidEvent => "quarantined",
                NotJson | UnsupportedMediaType | BadChannel => "rejected",
            };
            let error = match quarantine.reason {
                InvalidEvent => {
                    "the document is JSON but not a valid Provisioning Completed event".to_owned()
                }
                NotJson => {
                    "the body is not JSON (or not UTF-8); it was kept in quarantine".to_owned()
                }
                UnsupportedMediaType | BadChannel => {
                    let why = quarantine
                        .errors
                        .first()
                        .map_or("the request was refused", |issue| issue.message.as_str());
                    format!("{why}; the body was kept in quarantine")
                }
            };
            let body = if status == StatusCode::ACCEPTED {
                // `id` and `quarantine_id` are the same: the second says what the id is of, as
                // the refusals' answers do, so that nobody takes it for an event's id.
                json!({
                    "status": label,
                    "id": id,
                    "quarantine_id": id,
                    "duplicate": duplicate,
                    "errors": quarantine.errors,
                    "warnings": quarantine.warnings,
                })
            } else {
                json!({
                    "status": label,
                    "error": error,
                    "quarantine_id": id,
                    "duplicate": duplicate,
                    "errors": quarantine.errors,
                })
            };
            let mut response = (status, Json(body)).into_response();
            if codings_refused {
                response.headers_mut().insert(
                    header::ACCEPT_ENCODING,
                    HeaderValue::from_static("identity"),
                );
            }
            response
        }
        Err(err) => {
            let status = if err.is_transient() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            // Not "the event was not stored": a duplicate of an event kept before is kept.
            let message = match &err {
                StoreError::Stranded(_) => err.to_string(),
                StoreError::Unavailable(_) | StoreError::Overloaded(_) => {
                    format!("nothing of this request was committed: {err}; retry later")
                }
                _ => format!("nothing of this request was committed: {err}"),
            };
            // A commit whose log could not be synced (`--log-sync pipelined`) wrote its
            // record: the refusal takes its place. Otherwise nothing was written, and this is a
            // refusal like any other, held to their budget (a store that cannot commit refuses
            // every request as fast as they come).
            if late.record().is_some() {
                record_late_refusal(&state, receipt, status, &message, late);
            } else {
                record_refusal(&state, receipt, status.as_u16(), &message);
            }
            let mut response = error_response(status, &message);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            response
        }
    }
}

/// A 503 for a store that cannot commit now, with when to try again.
fn unavailable(state: &AppState, receipt: Receipt, message: &str) -> Response {
    let mut response = reject(state, receipt, StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// The answer to an event that is kept (`accepted`, or a `duplicate` of one kept before): the
/// answer to nearly every request, so it is written straight from a struct rather than through a
/// `serde_json::Value`.
#[derive(serde::Serialize)]
struct Kept {
    status: &'static str,
    id: i64,
}

/// Answers a request to the ingest paths that is refused before any handler reads it (no such
/// path, wrong method, over the concurrency cap) and records it in the delivery log.
pub(super) fn refuse(
    state: &AppState,
    request: Request,
    status: StatusCode,
    reason: &str,
) -> Response {
    let (parts, _) = request.into_parts();
    let channel = channel_in_path(parts.uri.path());
    reject(
        state,
        receipt(&parts, &state.trusted_proxies, channel),
        status,
        reason,
    )
}

/// The channel a request to `/events/<channel>` names, when it is one that events can be filed
/// under (so that a wrong method on a subscription's URL is listed under its channel).
fn channel_in_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/events/")?;
    let channel = rest.strip_suffix('/').unwrap_or(rest);
    is_channel_name(channel).then(|| channel.to_owned())
}

/// Answers a refused request and records it in the delivery log, unless refusals come faster
/// than [`RejectionBudget`] allows.
fn reject(state: &AppState, receipt: Receipt, status: StatusCode, reason: &str) -> Response {
    record_refusal(state, receipt, status.as_u16(), reason);
    error_response(status, reason)
}

/// Records a request that HTTP itself refused as malformed (hyper answered it), as any other
/// refusal: its method and path were never read, so both are `-`.
pub(super) fn record_malformed(state: &AppState, malformed: MalformedRequest) {
    state.metrics.count_request("malformed", malformed.status);
    let receipt = Receipt {
        received_at: chrono::Utc::now().timestamp_millis(),
        remote_addr: Some(malformed.remote.to_string()),
        channel: None,
        method: "-".to_owned(),
        path: "-".to_owned(),
        size: 0,
        user_agent: None,
    };
    record_refusal(state, receipt, malformed.status, &malformed.reason);
}

/// Counts a refused request and records it in the delivery log, unless refusals come faster than
/// [`RejectionBudget`] allows.
fn record_refusal(state: &AppState, receipt: Receipt, status: u16, reason: &str) {
    state.metrics.count_event(EventOutcome::rejected);
    let Some(unrecorded) = state.rejection_budget.admit(Instant::now()) else {
        state.metrics.rejections_rate_limited.inc();
        return;
    };
    tracing::info!(
        status,
        remote = receipt.remote_addr.as_deref().unwrap_or("-"),
        channel = receipt.channel.as_deref().unwrap_or("-"),
        reason,
        unrecorded,
        "ingest request refused"
    );
    let recorded = if unrecorded == 0 {
        reason.to_owned()
    } else {
        format!(
            "{reason} (and {unrecorded} refused request(s) before this one not recorded one by \
             one: refusals came faster than {REJECTIONS_PER_SECOND} a second)"
        )
    };
    state.store.record_rejection(Rejection {
        receipt,
        status,
        reason: recorded,
        amends: None,
    });
}

/// Records the refusal of a request whose document was handed to the store and not committed
/// (in time, or at all): it replaces the record a commit wrote, if one finished, or is a record
/// of its own. Not held to the budget of refusals: it stands for an authenticated document
/// handed to the store, which the concurrency cap bounds, not for a request anyone can send by
/// the thousand.
fn record_late_refusal(
    state: &AppState,
    receipt: Receipt,
    status: StatusCode,
    reason: &str,
    late: LateAnswer,
) {
    state.metrics.count_event(EventOutcome::rejected);
    tracing::info!(
        status = status.as_u16(),
        remote = receipt.remote_addr.as_deref().unwrap_or("-"),
        channel = receipt.channel.as_deref().unwrap_or("-"),
        reason,
        "ingest request refused"
    );
    state.store.record_rejection(Rejection {
        receipt,
        status: status.as_u16(),
        reason: reason.to_owned(),
        amends: Some(late),
    });
}

/// Refused requests recorded one by one per second, on average.
const REJECTIONS_PER_SECOND: f64 = 20.0;

/// Refused requests recorded one by one in a burst.
const REJECTION_BURST: f64 = 200.0;

/// A token bucket for the delivery records of refused requests. Every request to `/events` leaves
/// a record, but anyone can send requests that are refused (no credential, a wrong path), and
/// each record takes room in the store: unbounded, a flood of them fills the disk (or the
/// configured size limit) until genuine events are answered 503. Beyond the rate, refusals are
/// counted instead (`provtrail_delivery_records_rate_limited_total`), and the next record says
/// how many went unrecorded before it.
#[derive(Debug)]
pub(crate) struct RejectionBudget(std::sync::Mutex<Bucket>);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Option<Instant>,
    unrecorded: u64,
}

impl Default for RejectionBudget {
    fn default() -> Self {
        RejectionBudget(std::sync::Mutex::new(Bucket {
            tokens: REJECTION_BURST,
            refilled: None,
            unrecorded: 0,
        }))
    }
}

impl RejectionBudget {
    /// `Some(n)` when a refusal at `now` is to be recorded, `n` being the refusals left
    /// unrecorded since the last record; `None` when it is over the rate.
    pub(crate) fn admit(&self, now: Instant) -> Option<u64> {
        let Ok(mut bucket) = self.0.lock() else {
            return Some(0);
        };
        if let Some(refilled) = bucket.refilled {
            let earned =
                now.saturating_duration_since(refilled).as_secs_f64() * REJECTIONS_PER_SECOND;
            bucket.tokens = (bucket.tokens + earned).min(REJECTION_BURST);
        }
        bucket.refilled = Some(now);
        if bucket.tokens < 1.0 {
            bucket.unrecorded += 1;
            return None;
        }
        bucket.tokens -= 1.0;
        Some(std::mem::take(&mut bucket.unrecorded))
    }
}

/// A `Content-Encoding` other than `identity`, or a transfer coding other than `chunked` (which
/// the HTTP layer takes off; `gzip, chunked` would leave gzip): provtrail stores what it can read
/// as sent, and does not decompress (ISC does not compress its posts), so such a body is kept in
/// quarantine and refused with 415, as RFC 9110 asks, rather than misread as a body that is not
/// JSON.
fn unsupported_encoding(headers: &HeaderMap) -> Option<Refusal> {
    let encodings: Vec<String> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .chain(headers.get_all(header::TRANSFER_ENCODING).iter())
        .flat_map(|value| {
            String::from_utf8_lossy(value.as_bytes())
                .split(',')
                .map(|coding| coding.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|coding| {
            !coding.is_empty()
                && !coding.eq_ignore_ascii_case("identity")
                && !coding.eq_ignore_ascii_case("chunked")
        })
        .collect();
    if encodings.is_empty() {
        return None;
    }
    Some(Refusal {
        reason: QuarantineReason::UnsupportedMediaType,
        message: format!(
            "content encoding `{}` is not supported (send the event uncompressed)",
            encodings.join(", ")
        ),
    })
}

/// Two `Content-Type` headers: which one the sender meant cannot be known, so the body is kept
/// in quarantine and refused with 415 rather than read by the first.
fn two_content_types(headers: &HeaderMap) -> Option<Refusal> {
    (headers.get_all(header::CONTENT_TYPE).iter().count() > 1).then(|| Refusal {
        reason: QuarantineReason::UnsupportedMediaType,
        message: "the request has more than one Content-Type header".to_owned(),
    })
}

fn too_large(limit: usize) -> String {
    format!("the body is larger than the limit of {limit} bytes")
}

/// `application/json`, `application/<anything>+json` and `text/json`, with no charset, UTF-8 or
/// US-ASCII.
fn is_json(content_type: &str) -> bool {
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let json = essence == "application/json"
        || essence == "text/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    let charset_ok = parts.all(|parameter| {
        let Some((name, value)) = parameter.split_once('=') else {
            return true;
        };
        !name.trim().eq_ignore_ascii_case("charset")
            // ASCII is UTF-8 too: a body that is not ASCII fails as invalid UTF-8, with its
            // own message.
            || matches!(
                value.trim().trim_matches('"').to_ascii_lowercase().as_str(),
                "utf-8" | "utf8" | "us-ascii" | "ascii"
            )
    });
    json && charset_ok
}

/// Why a body was not read whole; `received` is how many of its bytes did arrive.
#[derive(Debug)]
pub(crate) enum BodyError {
    TooLarge,
    Timeout {
        received: u64,
    },
    /// The body failed; `arrived` is what of it arrived.
    Broken {
        reason: String,
        arrived: Bytes,
    },
    /// No room for the body among those held ([`BodyRoom`]) within the timeout.
    NoRoom {
        received: u64,
    },
}

/// Room for a body in memory, taken from a shared budget in kibibytes, once: a body that
/// announces more than [`UNBUDGETED`] takes the room it announces before anything is read; one
/// of unknown length takes room for the largest body once it grows past [`UNBUDGETED`]. Room is
/// never added to room already held, so that bodies waiting for room never hold some of it
/// (which would have them wait for each other). Held until dropped, so that a handler keeps it
/// until the event is committed.
pub(crate) struct BodyRoom {
    budget: std::sync::Arc<tokio::sync::Semaphore>,
    held: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Bodies up to this size take no room: ordinary events (about a kilobyte) never wait behind
/// large ones, and what they hold at once is bounded by the concurrency cap (64 MiB at the
/// default 1,024 requests). The size under which bodies are parsed inline.
const UNBUDGETED: u64 = INLINE_PARSE_LIMIT as u64;

impl BodyRoom {
    pub(crate) fn new(budget: std::sync::Arc<tokio::sync::Semaphore>) -> Self {
        BodyRoom { budget, held: None }
    }

    fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Holds room for `bytes`, waiting for it; `false` when the budget cannot give it.
    async fn make(&mut self, bytes: u64) -> bool {
        debug_assert!(self.held.is_none(), "room is taken once");
        let Ok(kib) = u32::try_from(bytes.div_ceil(1024).max(1)) else {
            return false;
        };
        match self.budget.clone().acquire_many_owned(kib).await {
            Ok(room) => {
                self.held = Some(room);
                true
            }
            Err(_) => false,
        }
    }
}

/// The whole body, within `limit` bytes and `timeout`; with `room`, held within its budget (see
/// [`BodyRoom`]), waiting for room within the same timeout.
pub(crate) async fn read_body(
    body: Body,
    limit: usize,
    timeout: Duration,
    room: Option<&mut BodyRoom>,
) -> Result<Bytes, BodyError> {
    read_body_to_its_end(body, limit, timeout, room)
        .await
        .map(|(bytes, _)| bytes)
}

/// [`read_body`], and whether the body ended as its protocol ends one: over HTTP/2 a body that
/// ended for a reset with NO_ERROR before its last frame (which hyper ends like a whole one)
/// did not.
async fn read_body_to_its_end(
    body: Body,
    limit: usize,
    timeout: Duration,
    mut room: Option<&mut BodyRoom>,
) -> Result<(Bytes, bool), BodyError> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    let declared = http_body::Body::size_hint(&body).exact();
    // Counted as it arrives, so that a body cut short is recorded with what did arrive (a
    // chunked one has no length of its own to show).
    let arrived = AtomicU64::new(0);
    let waiting_for_room = AtomicBool::new(false);
    // `Err(None)`: no room; `Err(Some(_))`: the body failed, after what arrived of it.
    type Failed = Option<(Box<dyn std::error::Error + Send + Sync>, BodyBuffer)>;
    let read = async {
        let mut body = std::pin::pin!(Limited::new(body, limit));
        let mut chunks = BodyBuffer::default();
        // A declared length is what the body is (a shorter or longer one fails): its room.
        if let (Some(room), Some(declared)) = (room.as_deref_mut(), declared) {
            if declared > UNBUDGETED {
                waiting_for_room.store(true, Relaxed);
                if !room.make(declared.min(limit as u64)).await {
                    return Err(None);
                }
                waiting_for_room.store(false, Relaxed);
            }
        }
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(err) => return Err(Some((err, chunks))),
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let total = arrived.fetch_add(data.len() as u64, Relaxed) + data.len() as u64;
            // Of unknown length and past the size that takes none: room for the largest, which
            // the budget always holds.
            if let Some(room) = room.as_deref_mut() {
                if total > UNBUDGETED && !room.is_held() {
                    waiting_for_room.store(true, Relaxed);
                    if !room.make(limit as u64).await {
                        return Err(None);
                    }
                    waiting_for_room.store(false, Relaxed);
                }
            }
            chunks.push(data, declared, limit);
        }
        let ended = http_body::Body::is_end_stream(&*body);
        Ok::<_, Failed>((chunks.into_bytes(), ended))
    };
    let read = tokio::time::timeout(timeout, read).await;
    let received = arrived.load(Relaxed);
    match read {
        Err(_) if waiting_for_room.load(Relaxed) => Err(BodyError::NoRoom { received }),
        Ok(Err(None)) => Err(BodyError::NoRoom { received }),
        Err(_) => Err(BodyError::Timeout { received }),
        Ok(Ok(read)) => Ok(read),
        Ok(Err(Some((err, chunks)))) => {
            if err.downcast_ref::<LengthLimitError>().is_some() {
                Err(BodyError::TooLarge)
            } else {
                Err(BodyError::Broken {
                    reason: err.to_string(),
                    arrived: chunks.into_bytes(),
                })
            }
        }
    }
}

/// A body's chunks as one buffer, copied only when there are several. Each chunk hyper hands
/// over is a slice of its read buffer, which it keeps alive: a body sent in one-byte chunks held
/// as its chunks would take tens of times its size (and past the body-memory budget, which
/// counts the body's bytes), so a second chunk starts a copy of its own.
#[derive(Default)]
struct BodyBuffer {
    first: Option<Bytes>,
    copied: Option<Vec<u8>>,
}

impl BodyBuffer {
    /// Adds a chunk of a body of `declared` length, if it has one (hyper holds the body to it),
    /// held to at most `limit` bytes.
    fn push(&mut self, data: Bytes, declared: Option<u64>, limit: usize) {
        if let Some(copied) = &mut self.copied {
            if copied.capacity() - copied.len() < data.len() {
                // Doubling, as a vector grows, but never to room past the limit, which the
                // body's memory budget counts.
                let grow = copied
                    .len()
                    .min(limit.saturating_sub(copied.len()))
                    .max(data.len());
                copied.reserve_exact(grow);
            }
            copied.extend_from_slice(&data);
        } else if let Some(first) = self.first.take() {
            // Room for the declared length at once; for one of unknown length, grown as it
            // comes, so that a small body does not take the limit's room.
            let wanted = first.len() + data.len();
            let room = declared
                .and_then(|length| usize::try_from(length).ok())
                .unwrap_or(wanted * 2)
                .min(limit)
                .max(wanted);
            let mut copied = Vec::with_capacity(room);
            copied.extend_from_slice(&first);
            copied.extend_from_slice(&data);
            self.copied = Some(copied);
        } else {
            self.first = Some(data);
        }
    }

    fn into_bytes(self) -> Bytes {
        match (self.copied, self.first) {
            (Some(copied), _) => Bytes::from(copied),
            (None, Some(first)) => first,
            (None, None) => Bytes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BodyBuffer, REJECTION_BURST, REJECTIONS_PER_SECOND, RejectionBudget, is_json};

    #[test]
    fn a_body_in_many_small_chunks_is_copied_not_held_as_slices_of_the_read_buffer() {
        // hyper hands over each chunk as a slice of its read buffer: holding them would keep
        // whole read buffers alive for bytes of body.
        let read_buffer = bytes::Bytes::from(vec![b'x'; 8192]);
        let mut body = BodyBuffer::default();
        body.push(read_buffer.slice(0..1), None, 1 << 20);
        for at in 1..1000 {
            body.push(read_buffer.slice(at..at + 1), None, 1 << 20);
            assert!(read_buffer.is_unique(), "a slice is held after chunk {at}");
        }
        let bytes = body.into_bytes();
        assert_eq!(bytes.len(), 1000);
        assert!(bytes.iter().all(|b| *b == b'x'));
        // One chunk is passed on as it is, without a copy.
        let mut one = BodyBuffer::default();
        one.push(read_buffer.slice(0..100), Some(100), 1 << 20);
        assert_eq!(one.into_bytes().as_ptr(), read_buffer.as_ptr());
        assert!(BodyBuffer::default().into_bytes().is_empty());
    }
    use std::time::{Duration, Instant};

    #[test]
    fn refusals_beyond_the_rate_are_counted_into_the_next_record() {
        let budget = RejectionBudget::default();
        let start = Instant::now();
        let burst = REJECTION_BURST as usize;
        for _ in 0..burst {
            assert_eq!(budget.admit(start), Some(0));
        }
        for _ in 0..1000 {
            assert_eq!(budget.admit(start), None);
        }
        // A second later the bucket holds the rate's worth again; the first record counts the
        // thousand that were not recorded.
        let later = start + Duration::from_secs(1);
        assert_eq!(budget.admit(later), Some(1000));
        for _ in 1..REJECTIONS_PER_SECOND as usize {
            assert_eq!(budget.admit(later), Some(0));
        }
        assert_eq!(budget.admit(later), None);
        // Quiet for long enough, the whole burst is available again, and no more.
        let much_later = later + Duration::from_secs(3600);
        for _ in 0..burst {
            assert!(budget.admit(much_later).is_some());
        }
        assert_eq!(budget.admit(much_later), None);
    }

    #[test]
    fn json_content_types_are_recognised() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=UTF-8"));
        assert!(is_json("application/cloudevents+json"));
        assert!(is_json("text/json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json("application/json; charset=latin1"));
        assert!(is_json("application/json; charset=US-ASCII"));
    }

    /// A request body fed by hand, as a client sends it: chunks when the test gives them, the
    /// end when the sender is dropped; `length` is what its `Content-Length` would say.
    struct Fed {
        chunks: tokio::sync::mpsc::UnboundedReceiver<bytes::Bytes>,
        length: Option<u64>,
    }

    impl http_body::Body for Fed {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
            self.chunks
                .poll_recv(cx)
                .map(|chunk| chunk.map(|data| Ok(http_body::Frame::data(data))))
        }

        fn size_hint(&self) -> http_body::SizeHint {
            self.length.map_or_else(
                http_body::SizeHint::default,
                http_body::SizeHint::with_exact,
            )
        }
    }

    fn fed(
        length: Option<u64>,
    ) -> (
        tokio::sync::mpsc::UnboundedSender<bytes::Bytes>,
        axum::body::Body,
    ) {
        let (sender, chunks) = tokio::sync::mpsc::unbounded_channel();
        (sender, axum::body::Body::new(Fed { chunks, length }))
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_wait_for_room_in_memory_and_give_it_back() {
        use super::{BodyError, BodyRoom, read_body};
        use std::sync::Arc;
        // 200 KiB, room for one body of the largest size, as the server's always has.
        let budget = Arc::new(tokio::sync::Semaphore::new(200));
        let limit = 200 * 1024;
        let timeout = Duration::from_secs(5);

        // A body announcing 150 KiB takes that room before a byte is read, and keeps it.
        let (first_sender, first_body) = fed(Some(150 * 1024));
        let mut first_room = BodyRoom::new(budget.clone());
        // (Given longer than the others, so that it outlasts their waits.)
        let first = tokio::spawn(async move {
            let read = read_body(first_body, limit, timeout * 10, Some(&mut first_room)).await;
            (read, first_room)
        });
        tokio::task::yield_now().await;
        assert_eq!(budget.available_permits(), 50);

        // One of unknown length takes none until it grows past 64 KiB, then room for the
        // largest body: that does not fit beside the first, so it waits, holding nothing, and
        // gets none before its time is up.
        let (second_sender, second_body) = fed(None);
        second_sender
            .send(bytes::Bytes::from(vec![b'c'; 70 * 1024]))
            .unwrap();
        let mut second_room = BodyRoom::new(budget.clone());
        let refused = read_body(second_body, limit, timeout, Some(&mut second_room)).await;
        assert!(matches!(
            refused,
            Err(BodyError::NoRoom { received }) if received == 70 * 1024
        ));
        drop(second_room);
        assert_eq!(budget.available_permits(), 50);

        // An ordinary one takes no room and waits for none.
        let (small_sender, small_body) = fed(Some(1000));
        small_sender
            .send(bytes::Bytes::from(vec![b'x'; 1000]))
            .unwrap();
        drop(small_sender);
        let mut small_room = BodyRoom::new(budget.clone());
        let small = read_body(small_body, limit, timeout, Some(&mut small_room)).await;
        assert_eq!(small.unwrap().len(), 1000);
        assert_eq!(budget.available_permits(), 50);

        // Once the first is done and its room given back, a waiting body of unknown length gets
        // its room.
        let (third_sender, third_body) = fed(None);
        let third = tokio::spawn(async move {
            let mut room = BodyRoom::new(budget.clone());
            let read = read_body(third_body, limit, timeout, Some(&mut room)).await;
            (read, room, budget)
        });
        for _ in 0..3 {
            third_sender
                .send(bytes::Bytes::from(vec![b'b'; 30 * 1024]))
                .unwrap();
        }
        tokio::task::yield_now().await;
        first_sender
            .send(bytes::Bytes::from(vec![b'a'; 150 * 1024]))
            .unwrap();
        drop(first_sender);
        let (read, first_room) = first.await.unwrap();
        assert_eq!(read.unwrap().len(), 150 * 1024);
        drop(first_room);
        drop(third_sender);
        let (read, room, budget) = third.await.unwrap();
        assert_eq!(read.unwrap().len(), 90 * 1024);
        assert_eq!(budget.available_permits(), 0);
        drop(room);
        assert_eq!(budget.available_permits(), 200);
    }
}
