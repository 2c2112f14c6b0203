//! The sink boundary: one trait, one module per kind. Adding a sink means writing one module with
//! a `build` function and naming it in [`KINDS`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::secret::Secrets;
use crate::store::Millis;

/// One delivery of one event to one route, as a sink sees it.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The outbox row (0 for a preview).
    pub delivery_id: i64,
    /// The route.
    pub route: &'a str,
    /// The stored event's id.
    pub event_id: i64,
    /// The event's identity across systems: ISC's `_metadata.invocationId`, or
    /// `provtrail-body-<hash>` of the body as received for an event without one (see
    /// [`event_key`]). JetStream deduplicates on it.
    pub event_key: &'a str,
    /// A stable key of this (event, route) pair, the same on every attempt and every replay:
    /// receivers deduplicate on it (`Idempotency-Key`).
    pub key: &'a str,
    /// Attempt number, 1 for the first.
    pub attempt: u32,
    /// When the event was received.
    pub received_at: Millis,
    /// The event exactly as received.
    pub raw: &'a [u8],
    /// The event as a JSON value; `Null` for a sink whose [`Sink::needs_value`] is false (the
    /// parse is skipped for it).
    pub event: &'a Value,
}

/// The stable (event, route) key: opaque, header-safe, the same for every attempt and replay.
pub fn delivery_key(event_key: &str, route: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(event_key.as_bytes());
    hasher.update([0]);
    hasher.update(route.as_bytes());
    prefixed_hex("pt-", &hasher.finalize()[..16])
}

/// The identity of a stored event for sinks: the invocation id, else a hash of the body as
/// received (the first half of its SHA-256, in lowercase hex). Not the event's id in the store:
/// two stores (a standby, a rebuilt database) give different events the same ids, and a stream
/// that both publish to would drop one of them as a repeat of the other. The same body received
/// by two stores is the same event, and is meant to be dropped.
///
/// An invocation id is used only as a header can carry it whole: printable ASCII without spaces,
/// at most [`MAX_KEY_ID`] bytes (ISC's are UUIDs). Anything else (a line break would end the
/// header and start another; two ids alike up to a character a header cannot hold would be
/// taken for one) is keyed by the body as any event without an id.
pub fn event_key(raw: &[u8], invocation_id: Option<&str>) -> String {
    match invocation_id {
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_KEY_ID
                && id.bytes().all(|byte| byte.is_ascii_graphic()) =>
        {
            id.to_owned()
        }
        _ => prefixed_hex("provtrail-body-", &Sha256::digest(raw)[..16]),
    }
}

/// Longest invocation id used as an event's key as it is.
pub const MAX_KEY_ID: usize = 200;

fn prefixed_hex(prefix: &str, bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(prefix.len() + 2 * bytes.len());
    text.push_str(prefix);
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    text
}

/// What a sink reports about a successful delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// The status the target answered (HTTP status), when it has one.
    pub status: Option<u16>,
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// What happened, with secrets already removed by the caller.
    pub message: String,
    /// The status the target answered, when it answered.
    pub status: Option<u16>,
    /// True when trying again cannot help (the target refused this content for good, or the
    /// body cannot be rendered): the delivery goes to the dead letters at once.
    pub permanent: bool,
    /// How long the target asked to be left alone (`Retry-After` on a 429 or 503). It holds for
    /// the whole route: its attempts pause at least this long.
    pub retry_after: Option<Duration>,
    /// True when the target answered, though not with what the protocol allows (a webhook
    /// receiver whose answer is not HTTP): without a status, yet the sink is up, and the attempt
    /// counts toward the delivery's `max_attempts` as an error status does.
    pub answered: bool,
}

impl SinkError {
    /// Whether the failure found the sink down rather than refusing this delivery: no answer
    /// (a refused connection, a timeout, a file that could not be written) or one that says it
    /// is unavailable (429, 502, 503, 504: a gateway whose backend is down). An answer that is
    /// an error of its own (500, 422) means the sink is up and refuses this delivery.
    pub fn found_sink_down(&self) -> bool {
        !self.permanent
            && !self.answered
            && matches!(self.status, None | Some(429 | 502 | 503 | 504))
    }

    /// A failure worth retrying.
    pub fn transient(message: impl Into<String>) -> Self {
        SinkError {
            message: message.into(),
            status: None,
            permanent: false,
            retry_after: None,
            answered: false,
        }
    }

    /// The same failure, from a target that answered (see [`SinkError::answered`]).
    pub fn from_a_target_that_answered(mut self) -> Self {
        self.answered = true;
        self
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        SinkError {
            message: message.into(),
            status: None,
            permanent: true,
            retry_after: None,
            answered: false,
        }
    }
}

/// What a delivery would send, for `provtrail routes test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// Where it goes (secrets removed).
    pub target: String,
    /// Headers, message headers or metadata (secret values removed).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

/// A place deliveries go to.
#[async_trait]
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// The kind named in the configuration (`webhook`, `nats`, `file`).
    fn kind(&self) -> &'static str;

    /// Where deliveries go, for people, without secrets.
    fn target(&self) -> String;

    /// Whether [`Delivery::event`] must hold the parsed event. Sinks that send the body as
    /// received say no, and save a parse per delivery.
    fn needs_value(&self) -> bool {
        true
    }

    /// What [`Sink::deliver`] would send, without sending it.
    fn preview(&self, delivery: &Delivery<'_>) -> Result<Preview, SinkError>;

    /// Delivers once. Returns only when the target has taken the delivery (answered 2xx,
    /// acknowledged the publication, written the line to disk); anything else is an error.
    async fn deliver(&self, delivery: &Delivery<'_>) -> Result<Sent, SinkError>;

    /// Most deliveries one attempt may carry. Above 1 for a sink whose cost is per write rather
    /// than per delivery (the file sink flushes many lines with one fsync): a route that has a
    /// backlog then drains it in batches, and each batch takes one place of the route's
    /// concurrency.
    fn batch_limit(&self) -> usize {
        1
    }

    /// Delivers several at once (at most [`Sink::batch_limit`]), with the promise of
    /// [`Sink::deliver`] for each: one result per delivery, in order. The default delivers them
    /// one after another.
    async fn deliver_batch(&self, deliveries: &[Delivery<'_>]) -> Vec<Result<Sent, SinkError>> {
        let mut results = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            results.push(self.deliver(delivery).await);
        }
        results
    }
}

/// What a sink's `build` function gets besides its own settings.
#[derive(Debug)]
pub struct SinkContext<'a> {
    /// The route's name.
    pub route: &'a str,
    /// The route allows private, loopback and link-local targets.
    pub allow_private: bool,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Resolves `${env:…}` / `${file:…}` references.
    pub secrets: &'a Secrets,
    /// Built for a command that delivers nothing (`routes list`, `deadletter`, `replay`): what
    /// the target is now (a file route's path a pipe for a while) is not checked, since the
    /// server's deliveries wait it out and these commands are how it is looked into.
    pub inspecting: bool,
    /// The database of the store the routes deliver from, whose files (by any name, a hard
    /// link made later included) a file route must never write to.
    pub store: Option<&'a std::path::Path>,
}

/// A sink setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfigError {
    /// The setting inside `sink`, e.g. `url` (empty for the table as a whole).
    pub setting: String,
    /// Why.
    pub message: String,
    /// The message was made to name no secret, and is shown as it is: scrubbing it would blank
    /// fixed text that shares a run with a secret (the `127.0.0.` of `127.0.0.0/8` for a host
    /// `127.0.0.1` given by reference).
    pub names_no_secret: bool,
}

impl SinkConfigError {
    /// An error about one setting; its message is scrubbed of secrets before it is shown.
    pub fn new(setting: &str, message: impl Into<String>) -> Self {
        SinkConfigError {
            setting: setting.to_owned(),
            message: message.into(),
            names_no_secret: false,
        }
    }

    /// An error whose message was made without any secret in it.
    pub fn naming_no_secret(setting: &str, message: impl Into<String>) -> Self {
        SinkConfigError {
            names_no_secret: true,
            ..SinkConfigError::new(setting, message)
        }
    }
}

/// Builds a sink from its settings (the `[routes.sink]` table without `type`).
pub type BuildSink = fn(toml::Table, &SinkContext<'_>) -> Result<Arc<dyn Sink>, SinkConfigError>;

/// Every sink kind: its `type` and how to build it.
pub const KINDS: &[(&str, BuildSink)] = &[
    ("webhook", super::webhook::build),
    ("nats", super::nats::build),
    ("file", super::file::build),
];

/// Reads a sink's settings into its own type; unknown settings are errors.
pub fn settings<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T, SinkConfigError> {
    T::deserialize(toml::Value::Table(table)).map_err(|err| {
        SinkConfigError::new(
            "",
            crate::config::in_plain_terms(err.to_string().trim()).replace('\n', " "),
        )
    })
}

/// Building sinks in the sinks' own unit tests.
#[cfg(test)]
pub(super) mod testing {
    use super::*;

    /// A sink of the kind `build` makes, from its settings as TOML text, for a route named `r`
    /// with a one-second timeout.
    pub fn build_sink(
        build: BuildSink,
        settings: &str,
        secrets: &Secrets,
        allow_private: bool,
    ) -> Result<Arc<dyn Sink>, SinkConfigError> {
        let table: toml::Table = settings.parse().expect("the test's settings are TOML");
        build(
            table,
            &SinkContext {
                route: "r",
                allow_private,
                timeout: Duration::from_secs(1),
                secrets,
                inspecting: false,
                store: None,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_errors_do_not_quote_the_value() {
        #[derive(Debug, serde::Deserialize)]
        struct Settings {
            #[allow(dead_code)]
            bearer_token: String,
        }
        for text in [
            "bearer_token = 987654321012345",
            "bearer_token = [\"SECRETINLIST\"]",
        ] {
            let table: toml::Table = text.parse().unwrap();
            let err = settings::<Settings>(table).unwrap_err();
            assert!(
                !err.message.contains("987654321012345") && !err.message.contains("SECRET"),
                "{}",
                err.message
            );
            assert!(err.message.contains("invalid type"), "{}", err.message);
        }
    }

    #[test]
    fn delivery_keys_are_stable_and_differ_per_route() {
        let a = delivery_key("inv-1", "slack");
        assert_eq!(a, delivery_key("inv-1", "slack"));
        assert_ne!(a, delivery_key("inv-1", "desk"));
        assert_ne!(a, delivery_key("inv-2", "slack"));
        assert_eq!(a.len(), 35);
        // Receivers deduplicate on it across versions and replays: its form is fixed (the first
        // half of SHA-256 of `event key, 0, route`, in lowercase hex).
        assert_eq!(a, "pt-e69969ad8e6f82d3771dd5755504cde3");
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        assert_eq!(event_key(b"{}", Some("abc")), "abc");
        // An id a header cannot carry whole is not used: it could end the header and start
        // another, or be cut to another event's id.
        let body = b"{}";
        let by_body = event_key(body, None);
        for unusable in ["a\r\nX-Evil: 1", "a b", "tëst", &"x".repeat(201)] {
            assert_eq!(event_key(body, Some(unusable)), by_body, "{unusable:?}");
        }
        // Without an invocation id: the body's hash, so that events of two stores that share
        // ids never share a key, and one body has one key wherever it is stored.
        let body = br#"{"trackingNumber":"t1"}"#;
        assert_eq!(event_key(body, None), event_key(body, Some("")));
        assert_ne!(
            event_key(body, None),
            event_key(br#"{"trackingNumber":"t2"}"#, None)
        );
        assert_eq!(
            event_key(b"{}", None),
            "provtrail-body-44136fa355b3678a1146ad16f7e8649e"
        );
    }
}
