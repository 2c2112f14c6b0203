//! `nats`: publish to a JetStream subject and wait for the stream's acknowledgement.
//!
//! `Nats-Msg-Id` is the event's identity (ISC's invocation id, or `provtrail-body-<hash>` of the
//! body as received, which two stores publishing to one stream never share for two events), so a
//! repeated delivery or a replay within the stream's duplicate window is dropped by JetStream.
//! Two routes publishing the same event into the same stream are deduplicated the same way: the
//! stream keeps one copy of each event.
//!
//! The connection is opened on the first delivery and reopened by the client when it drops; a
//! server that is down at start does not stop provtrail from starting.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::secret::Redactor;
use super::sink::{
    Delivery, Preview, Sent, Sink, SinkConfigError, SinkContext, SinkError, settings,
};

/// `[routes.sink]` with `type = "nats"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NatsSettings {
    /// Server URL(s), comma-separated [default: nats://127.0.0.1:4222].
    #[serde(default = "default_url")]
    url: String,
    /// The subject to publish to.
    subject: String,
    /// The stream that takes the subject; created on first use when `create_stream` is set.
    stream: Option<String>,
    /// Create the stream (with the subject) if it does not exist.
    #[serde(default)]
    create_stream: bool,
    /// Duplicate window of a stream created here [default: 2m].
    duplicate_window: Option<String>,
    /// Token authentication.
    token: Option<String>,
    /// User/password authentication.
    user: Option<String>,
    /// User/password authentication.
    password: Option<String>,
}

fn default_url() -> String {
    "nats://127.0.0.1:4222".to_owned()
}

pub(super) fn build(
    table: toml::Table,
    context: &SinkContext<'_>,
) -> Result<Arc<dyn Sink>, SinkConfigError> {
    let settings: NatsSettings = settings(table)?;
    let secrets = context.secrets;
    let (url, url_references) = secrets
        .resolve_scoped(&settings.url)
        .map_err(|err| SinkConfigError::new("url", err.to_string()))?;
    let servers = server_addresses(&url).map_err(|message| SinkConfigError::new("url", message))?;
    // Credentials may be written into the URL: `nats://user:password@host`, or `nats://token@host`
    // where the user name is the token. The target shows only scheme, host and port, so neither
    // (nor the path or query of a websocket URL) is shown. A user name beside a password is no
    // more secret than the `user` setting, and scrubbing a word like `user` or `app` from every
    // message would garble them; a user name alone is the token, and is scrubbed.
    for server in &servers {
        // Both as written in the URL (percent-encoded) and as sent.
        let secret = match (server.username(), server.password()) {
            (_, Some(password)) => password,
            (Some(token), None) => token,
            (None, None) => continue,
        };
        secrets.redactor().add(secret);
        secrets.redactor().add(&percent_decoded(secret));
    }
    let shown_servers: Vec<String> = servers.iter().map(shown_server).collect();
    let (subject, subject_references) = secrets
        .resolve_scoped(&settings.subject)
        .map_err(|err| SinkConfigError::new("subject", err.to_string()))?;
    if subject.is_empty()
        || subject.contains(|c: char| c.is_whitespace() || c == '*' || c == '>')
        || subject.split('.').any(str::is_empty)
    {
        return Err(SinkConfigError::new(
            "subject",
            "a subject to publish to has no spaces, no wildcards (`*`, `>`) and no empty token \
             (`a..b`, or a `.` at either end)",
        ));
    }
    if settings.create_stream && settings.stream.is_none() {
        return Err(SinkConfigError::new(
            "create_stream",
            "name the stream to create in `stream`",
        ));
    }
    if let Some(stream) = &settings.stream {
        if stream.is_empty() || stream.contains(|c: char| c.is_whitespace() || ".*>".contains(c)) {
            return Err(SinkConfigError::new(
                "stream",
                "a stream name has no spaces, `.`, `*` or `>`",
            ));
        }
    }
    let duplicate_window = match &settings.duplicate_window {
        // The window of a stream that exists is the stream's own: this one would be ignored.
        Some(_) if !settings.create_stream => {
            return Err(SinkConfigError::new(
                "duplicate_window",
                "applies to a stream provtrail creates (`create_stream = true`); an existing \
                 stream keeps its own window",
            ));
        }
        Some(text) => {
            let window = humantime::parse_duration(text.trim()).map_err(|err| {
                SinkConfigError::new(
                    "duplicate_window",
                    format!("{text:?} is not a duration like 30s or 5m ({err})"),
                )
            })?;
            if window > super::MAX_SETTING_DURATION {
                return Err(SinkConfigError::new(
                    "duplicate_window",
                    format!("{text:?} is longer than the limit of 366 days"),
                ));
            }
            window
        }
        None => Duration::from_secs(120),
    };
    // JetStream drops duplicates only within the window: none would make `Nats-Msg-Id` useless.
    if duplicate_window.is_zero() {
        return Err(SinkConfigError::new(
            "duplicate_window",
            "must be above zero: JetStream drops repeated deliveries only within it",
        ));
    }
    // The client sends only the credentials set in its options, never those of the URL: they
    // are taken from the URL here, or they would be silently left out.
    let in_url =
        url_credentials(&servers).map_err(|message| SinkConfigError::new("url", message))?;
    let auth = match (&settings.token, &settings.user, &settings.password) {
        (None, None, None) => in_url,
        _ if !matches!(in_url, Auth::None) => {
            return Err(SinkConfigError::new(
                "url",
                "credentials are both in the URL and in token/user/password; keep one",
            ));
        }
        (Some(token), None, None) => Auth::Token(
            secrets
                .resolve_secret(token)
                .map_err(|err| SinkConfigError::new("token", err.to_string()))?,
        ),
        (None, Some(user), Some(password)) => Auth::User(
            secrets
                .resolve(user)
                .map_err(|err| SinkConfigError::new("user", err.to_string()))?,
            secrets
                .resolve_secret(password)
                .map_err(|err| SinkConfigError::new("password", err.to_string()))?,
        ),
        (Some(_), _, _) => {
            return Err(SinkConfigError::new(
                "token",
                "use either token or user and password, not both",
            ));
        }
        (None, Some(_), None) => {
            return Err(SinkConfigError::new(
                "password",
                "user is set without a password; give both",
            ));
        }
        (None, None, Some(_)) => {
            return Err(SinkConfigError::new(
                "user",
                "password is set without a user; give both",
            ));
        }
    };
    let target = format!(
        "{} subject {subject}{}",
        shown_servers.join(", "),
        settings
            .stream
            .as_ref()
            .map(|s| format!(" (stream {s})"))
            .unwrap_or_default()
    );
    Ok(Arc::new(Nats {
        // What came from references is hidden, as in every other text shown.
        target: subject_references.redact(&url_references.redact(&target)),
        route: context.route.to_owned(),
        servers,
        subject,
        stream: settings.stream,
        create_stream: settings.create_stream,
        duplicate_window,
        auth,
        timeout: context.timeout,
        connection: OnceCell::new(),
        stream_ready: std::sync::atomic::AtomicBool::new(false),
        refusal: Refusal::default(),
        redactor: secrets.redactor().clone(),
    }))
}

/// The servers of a comma-separated list, parsed as the client parses them (it adds `nats://`
/// when `://` is missing, so `user:password@host:4222` is a user and a password, not a scheme).
/// A server that the client could not use stops the start rather than every delivery.
fn server_addresses(list: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    let mut servers = Vec::new();
    for (index, part) in list.split(',').map(str::trim).enumerate() {
        if part.is_empty() {
            continue;
        }
        // The error names neither the text nor its credentials, only what is wrong with it.
        let server = part
            .parse::<async_nats::ServerAddr>()
            .map_err(|err| format!("server {} of the list: {err}", index + 1))?;
        // `nats://`, `nats://@`, `nats:///x` parse, with no host: the client would try to
        // connect to nothing for good, and every delivery wait.
        if server.host().trim_matches(['[', ']']).is_empty() {
            return Err(format!(
                "server {} of the list names no host (such as nats://127.0.0.1:4222)",
                index + 1
            ));
        }
        servers.push(server);
    }
    if servers.is_empty() {
        return Err("no NATS server URL".to_owned());
    }
    Ok(servers)
}

/// The credentials written into the servers' URLs: `user:password@` or a token as the user name.
/// Every server that has some must have the same (the client uses one set for all).
fn url_credentials(servers: &[async_nats::ServerAddr]) -> Result<Auth, String> {
    let mut found: Option<(Option<&str>, Option<&str>)> = None;
    for server in servers {
        let credentials = (server.username(), server.password());
        if credentials == (None, None) {
            continue;
        }
        match found {
            Some(seen) if seen != credentials => {
                return Err(
                    "the servers' URLs carry different credentials; the client sends \
                            one set to every server"
                        .to_owned(),
                );
            }
            _ => found = Some(credentials),
        }
    }
    // A URL carries them percent-encoded (a password with `@` or `:` must be); the server
    // expects them as they are.
    Ok(match found {
        Some((Some(user), Some(password))) => {
            Auth::User(percent_decoded(user), percent_decoded(password))
        }
        Some((Some(token), None)) => Auth::Token(percent_decoded(token)),
        Some((None, Some(_))) => {
            return Err("a URL has a password without a user name".to_owned());
        }
        _ => Auth::None,
    })
}

/// `%XX` sequences of URL userinfo as the bytes they stand for (kept as written when that is
/// not UTF-8).
fn percent_decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map_or_else(|_| text.to_owned(), std::borrow::Cow::into_owned)
}

/// The servers for people, as [`shown_server`] shows each, with what came from a reference
/// (a host given as `${env:…}`) hidden: for log lines, which pass through no other redaction.
fn shown_servers(servers: &[async_nats::ServerAddr], redactor: &Redactor) -> String {
    redactor.redact(
        &servers
            .iter()
            .map(shown_server)
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// A server for people: scheme, host and port, without credentials, path or query.
fn shown_server(server: &async_nats::ServerAddr) -> String {
    let host = server.host();
    if host.contains(':') {
        format!("{}://[{host}]:{}", server.scheme(), server.port())
    } else {
        format!("{}://{host}:{}", server.scheme(), server.port())
    }
}

enum Auth {
    None,
    Token(String),
    User(String, String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::Token(_) => "Token(***)",
            Auth::User(..) => "User(***)",
        })
    }
}

/// A JetStream sink.
pub struct Nats {
    servers: Vec<async_nats::ServerAddr>,
    subject: String,
    stream: Option<String>,
    create_stream: bool,
    duplicate_window: Duration,
    auth: Auth,
    timeout: Duration,
    target: String,
    /// The route's name, for the log.
    route: String,
    /// One client for the route, made at the first delivery: it connects, and reconnects, in
    /// the background on its own. (A client made again for every failed attempt would leave
    /// one more background loop trying the server each time.)
    connection: OnceCell<jetstream::Context>,
    /// The stream is known to exist (or the route does not create it).
    stream_ready: std::sync::atomic::AtomicBool,
    /// Why the server last refused a connection, until one succeeds.
    refusal: Refusal,
    redactor: Redactor,
}

/// Why the server last refused the client's connection (an authorization violation, say), as
/// the client reports it in the background: a failed delivery names it, for a publish that
/// waits for a connection only times out. A server that cannot be reached is not a refusal.
#[derive(Clone, Default)]
struct Refusal(Arc<std::sync::Mutex<Option<String>>>);

impl Refusal {
    /// Notes a connection error; true when it is a refusal other than the last one noted.
    fn note(&self, error: &async_nats::ClientError) -> bool {
        let text = match error {
            async_nats::ClientError::Other(text) => text.trim_start_matches("nats: "),
            async_nats::ClientError::MaxReconnects => return false,
        };
        // Connection refused, reset, unreachable: the server is down, not refusing us.
        if text == "IO error" || text == "timed out" || text == "DNS error" {
            return false;
        }
        let mut last = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let new = last.as_deref() != Some(text);
        *last = Some(text.to_owned());
        new
    }

    fn clear(&self) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    fn last(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Logs a NATS client's changes of connection once each, naming the route. (The client's own
/// log says `client error: nats: IO error` at every try while the server is down, and names no
/// route; it is held at warnings, see `cli::CAPPED_LOG_TARGETS`.)
fn connection_logger(
    route: String,
    servers: String,
    redactor: Redactor,
    refusal: Refusal,
) -> impl Fn(async_nats::Event) -> std::future::Ready<()> + Send + Sync + 'static {
    move |event| {
        use async_nats::Event;
        match event {
            Event::Connected => {
                refusal.clear();
                tracing::info!(route = %route, "route {route}: connected to NATS at {servers}")
            }
            Event::Disconnected => tracing::warn!(
                route = %route,
                "route {route}: lost its connection to NATS at {servers}; the client keeps \
                 trying, deliveries wait and are retried"
            ),
            Event::LameDuckMode => tracing::info!(
                route = %route,
                "route {route}: the NATS server is shutting down (lame duck mode); the client \
                 will move to another"
            ),
            Event::ServerError(err) => tracing::warn!(
                route = %route,
                "route {route}: NATS server error: {}",
                redactor.redact(&err.to_string())
            ),
            // A refusal (bad credentials, say) is said once; the rest come at every try to reach
            // a server that is down, and the disconnection has said it.
            Event::ClientError(err) if refusal.note(&err) => tracing::warn!(
                route = %route,
                "route {route}: NATS at {servers} refused the connection: {}; the client keeps \
                 trying, deliveries wait and are retried",
                redactor.redact(&err.to_string())
            ),
            Event::ClientError(err) => tracing::debug!(
                route = %route,
                "route {route}: NATS client error: {}",
                redactor.redact(&err.to_string())
            ),
            Event::Draining | Event::Closed | Event::SlowConsumer(_) => {}
        }
        std::future::ready(())
    }
}

/// The wait before a client's next try to reach the server: at once the first time, then from
/// a quarter of a second doubling to ten seconds. (The client's own curve reaches its ceiling
/// of four seconds only after a dozen quick tries, each logged.)
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(6);
    (Duration::from_millis(250) * 2u32.pow(doublings)).min(Duration::from_secs(10))
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats")
            .field("target", &self.target)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Nats {
    async fn context(&self) -> Result<&jetstream::Context, SinkError> {
        use std::sync::atomic::Ordering;
        let context = self
            .connection
            .get_or_try_init(|| async {
                let mut options = async_nats::ConnectOptions::new()
                    .name("provtrail")
                    .connection_timeout(self.timeout)
                    // The route's timeout for every request the client makes (creating the
                    // stream, too), not the client's own ten seconds.
                    .request_timeout(Some(self.timeout))
                    .reconnect_delay_callback(reconnect_delay)
                    .event_callback(connection_logger(
                        self.route.clone(),
                        shown_servers(&self.servers, &self.redactor),
                        self.redactor.clone(),
                        self.refusal.clone(),
                    ))
                    // The first connection and later drops alike are made by the client in
                    // the background; deliveries made meanwhile fail and are retried.
                    .retry_on_initial_connect();
                match &self.auth {
                    Auth::None => {}
                    Auth::Token(token) => options = options.token(token.clone()),
                    Auth::User(user, password) => {
                        options = options.user_and_password(user.clone(), password.clone());
                    }
                }
                let client = options
                    .connect(self.servers.clone())
                    .await
                    .map_err(|err| self.error(&format!("cannot connect to NATS: {err}")))?;
                let mut context = jetstream::new(client);
                context.set_timeout(self.timeout);
                Ok::<_, SinkError>(context)
            })
            .await?;
        if !self.stream_ready.load(Ordering::Acquire) {
            self.ensure_stream(context).await?;
            self.stream_ready.store(true, Ordering::Release);
        }
        Ok(context)
    }

    /// Creates the stream when the route is to (`create_stream`) and it does not exist: at the
    /// first connection, and again after a publish fails, since someone may have deleted it
    /// meanwhile and nothing else would bring it back.
    async fn ensure_stream(&self, context: &jetstream::Context) -> Result<(), SinkError> {
        if let (true, Some(stream)) = (self.create_stream, &self.stream) {
            context
                .get_or_create_stream(jetstream::stream::Config {
                    name: stream.clone(),
                    subjects: vec![self.subject.clone()],
                    duplicate_window: self.duplicate_window,
                    ..Default::default()
                })
                .await
                .map_err(|err| {
                    self.failure(
                        context,
                        &format!("cannot create the stream {stream}: {err}"),
                    )
                })?;
        }
        Ok(())
    }

    fn error(&self, message: &str) -> SinkError {
        SinkError::transient(self.redactor.redact(message))
    }

    /// A failed publish; when the client is not connected, that is what the operator needs to
    /// know (the client reconnects in the background, so the publish itself only times out).
    fn failure(&self, context: &jetstream::Context, message: &str) -> SinkError {
        let servers = shown_servers(&self.servers, &self.redactor);
        match context.client().connection_state() {
            async_nats::connection::State::Connected => self.error(message),
            _ => match self.refusal.last() {
                Some(reason) => self.error(&format!(
                    "{message}: not connected to NATS at {servers}: the server refuses the \
                     connection: {reason} (check the route's credentials and TLS settings; the \
                     client keeps trying)"
                )),
                None => self.error(&format!(
                    "{message}: not connected to NATS at {servers} (the server is unreachable \
                     or refuses the connection; the client keeps trying)"
                )),
            },
        }
    }
}

#[async_trait]
impl Sink for Nats {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn target(&self) -> String {
        self.target.clone()
    }

    fn needs_value(&self) -> bool {
        false
    }

    fn preview(&self, delivery: &Delivery<'_>) -> Result<Preview, SinkError> {
        Ok(Preview {
            target: self.target.clone(),
            headers: message_headers(delivery)
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            body: String::from_utf8_lossy(delivery.raw).into_owned(),
        })
    }

    async fn deliver(&self, delivery: &Delivery<'_>) -> Result<Sent, SinkError> {
        let context = self.context().await?;
        let listed = message_headers(delivery);
        // The server refuses a message past its `max_payload` (headers included) by closing
        // the connection, every time: such an event can never be published, and each try
        // would cut the route's other publishes off with it.
        let size = message_size(&listed, delivery.raw.len());
        let max_payload = context.client().server_info().max_payload;
        if max_payload > 0 && size > max_payload {
            return Err(SinkError::permanent(format!(
                "the message ({size} bytes with its headers) is larger than the NATS server's \
                 max_payload ({max_payload} bytes) and can never be published; raise the \
                 server's max_payload, then retry it from the dead letters"
            )));
        }
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in listed {
            headers.insert(name, value.as_str());
        }
        let ack = match context
            .publish_with_headers(
                self.subject.clone(),
                headers,
                Bytes::copy_from_slice(delivery.raw),
            )
            .await
        {
            // The stream's acknowledgement: only then is the message stored (or known as a
            // duplicate of one that is).
            Ok(ack) => ack.await,
            Err(err) => return Err(self.failure(context, &format!("publish failed: {err}"))),
        };
        if let Err(err) = ack {
            if refused_as_too_large(&err) {
                // JetStream counts the headers too (`Nats-Msg-Id` and the others).
                return Err(SinkError::permanent(format!(
                    "the stream refuses the message ({size} bytes with its headers, {} of \
                     them the event) as larger than its max_msg_size; raise the stream's limit, \
                     then retry it from the dead letters",
                    delivery.raw.len()
                )));
            }
            // A stream deleted while we ran is created again for the next attempt (this one
            // fails and is retried as any other). Only then: after any other failure the
            // stream is there, and making it again could race an operator re-creating it.
            if err.kind() == jetstream::context::PublishErrorKind::StreamNotFound {
                let _ = self.ensure_stream(context).await;
            }
            return Err(self.failure(
                context,
                &format!("no acknowledgement from JetStream: {err}"),
            ));
        }
        Ok(Sent::default())
    }
}

/// Bytes a message takes against the server's `max_payload`: its headers as the protocol writes
/// them (`NATS/1.0`, a line per header, a blank line) and its body.
fn message_size(headers: &[(&'static str, String)], body: usize) -> usize {
    let lines: usize = headers
        .iter()
        .map(|(name, value)| name.len() + ": ".len() + value.len() + 2)
        .sum();
    "NATS/1.0\r\n".len() + lines + 2 + body
}

/// Whether JetStream refused a message for its size (the stream's `max_msg_size`): no retry
/// can change that.
fn refused_as_too_large(err: &jetstream::context::PublishError) -> bool {
    std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<jetstream::Error>())
        .is_some_and(|refusal| {
            refusal.error_code() == jetstream::ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM
        })
}

/// The headers of a delivery's message, as sent and as `routes test` shows them.
fn message_headers(delivery: &Delivery<'_>) -> Vec<(&'static str, String)> {
    vec![
        ("Nats-Msg-Id", delivery.event_key.to_owned()),
        ("Provtrail-Delivery", delivery.key.to_owned()),
        ("Provtrail-Route", delivery.route.to_owned()),
        ("Provtrail-Event-Id", delivery.event_id.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::secret::Secrets;

    fn build_with(sink: &str, secrets: &Secrets) -> Result<Arc<dyn Sink>, SinkConfigError> {
        crate::routes::sink::testing::build_sink(build, sink, secrets, false)
    }

    /// A first attempt to deliver the event `event_id` (invocation `inv-1`, body `{}`).
    fn delivery(event_id: i64) -> Delivery<'static> {
        Delivery {
            delivery_id: event_id,
            route: "r",
            event_id,
            event_key: "inv-1",
            key: "pt-k",
            attempt: 1,
            received_at: 0,
            raw: b"{}",
            event: &serde_json::Value::Null,
        }
    }

    #[test]
    fn a_token_given_as_the_user_name_is_hidden_and_redacted() {
        let secrets = Secrets::default();
        let sink = build_with(
            "url = \"nats://SECRETTOKEN123@127.0.0.1:4222\"\nsubject = \"a.b\"",
            &secrets,
        )
        .unwrap();
        assert_eq!(sink.target(), "nats://127.0.0.1:4222 subject a.b");
        assert_eq!(
            secrets.redactor().redact("auth_token: SECRETTOKEN123"),
            "auth_token: ***"
        );
        assert!(!format!("{sink:?}").contains("SECRETTOKEN123"));
    }

    #[test]
    fn the_client_tries_again_at_once_then_backs_off_to_ten_seconds() {
        let waits: Vec<u128> = (0..12).map(|n| reconnect_delay(n).as_millis()).collect();
        assert_eq!(
            waits,
            [
                0, 0, 250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000, 10_000
            ]
        );
        assert_eq!(reconnect_delay(usize::MAX), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_server_nobody_listens_on_is_named_as_unreachable_on_every_attempt() {
        // A port nothing listens on: taken, then given back.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sink = build_with(
            &format!(
                "url = \"nats://127.0.0.1:{port}\"\nsubject = \"a.b\"\nstream = \"S\"\ncreate_stream = true"
            ),
            &Secrets::default(),
        )
        .unwrap();
        let delivery = delivery(1);
        for attempt in 1..=2 {
            let err = sink.deliver(&delivery).await.unwrap_err().to_string();
            assert!(
                err.contains(&format!("not connected to NATS at nats://127.0.0.1:{port}")),
                "attempt {attempt}: {err}"
            );
        }
    }

    /// A server that speaks NATS just far enough to refuse every client's credentials.
    async fn refusing_server() -> u16 {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let info = format!(
                        "INFO {{\"server_id\":\"refuser\",\"version\":\"2.10.0\",\"proto\":1,\
                         \"host\":\"127.0.0.1\",\"port\":{port},\"max_payload\":1048576,\
                         \"auth_required\":true}}\r\n"
                    );
                    write.write_all(info.as_bytes()).await.ok();
                    let mut lines = tokio::io::BufReader::new(read).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line.starts_with("PING") {
                            write
                                .write_all(b"-ERR 'Authorization Violation'\r\n")
                                .await
                                .ok();
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn a_server_that_refuses_the_credentials_is_named_as_refusing_them() {
        let port = refusing_server().await;
        let secrets = Secrets::default();
        let sink = build_with(
            &format!(
                "url = \"nats://127.0.0.1:{port}\"\nsubject = \"a.b\"\ntoken = \"wrong-token-77\""
            ),
            &secrets,
        )
        .unwrap();
        let delivery = delivery(1);
        // The first attempt starts the client, which tries the server in the background.
        let mut last = String::new();
        for _ in 0..5 {
            last = sink.deliver(&delivery).await.unwrap_err().to_string();
            if last.contains("refuses") {
                break;
            }
        }
        assert!(
            last.contains(&format!("not connected to NATS at nats://127.0.0.1:{port}"))
                && last.contains("the server refuses the connection: authorization violation"),
            "{last}"
        );
        assert!(!last.contains("wrong-token-77"), "{last}");
    }

    #[test]
    fn connection_changes_are_logged_once_each_with_the_route_and_without_secrets() {
        #[derive(Clone, Default)]
        struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let secrets = Secrets::default();
        secrets.redactor().add("s3cret-pass");
        let log = connection_logger(
            "archive".to_owned(),
            "nats://10.0.0.9:4222".to_owned(),
            secrets.redactor().clone(),
            Refusal::default(),
        );
        tracing::subscriber::with_default(subscriber, || {
            let () = log(async_nats::Event::Connected).into_inner();
            let () = log(async_nats::Event::Disconnected).into_inner();
            // What the client reports at every try while the server is down.
            for _ in 0..5 {
                let () = log(async_nats::Event::ClientError(
                    async_nats::ClientError::Other("nats: IO error".to_owned()),
                ))
                .into_inner();
            }
            let () = log(async_nats::Event::ServerError(
                async_nats::ServerError::Other("bad user s3cret-pass".to_owned()),
            ))
            .into_inner();
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].contains("INFO")
                && lines[0].contains("route archive: connected to NATS at nats://10.0.0.9:4222"),
            "{text}"
        );
        assert!(
            lines[1].contains("WARN") && lines[1].contains("route archive: lost its connection"),
            "{text}"
        );
        assert!(lines[2].contains("bad user ***"), "{text}");
        assert!(
            !text.contains("s3cret-pass") && !text.contains("IO error"),
            "{text}"
        );
    }

    #[test]
    fn a_host_given_by_reference_is_hidden_where_servers_are_shown() {
        let secrets = Secrets::default();
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        std::fs::write(&host, "nats-internal-7.example\n").unwrap();
        build_with(
            &format!(
                "url = \"nats://${{file:{}}}:4222\"\nsubject = \"a.b\"",
                host.display()
            ),
            &secrets,
        )
        .unwrap();
        let servers: Vec<async_nats::ServerAddr> =
            vec!["nats://nats-internal-7.example:4222".parse().unwrap()];
        assert_eq!(
            shown_servers(&servers, secrets.redactor()),
            "nats://***:4222"
        );
    }

    #[test]
    fn the_preview_shows_the_headers_a_message_carries() {
        let sink = build_with("subject = \"a.b\"", &Secrets::default()).unwrap();
        let delivery = delivery(42);
        let shown = sink.preview(&delivery).unwrap().headers;
        let sent: Vec<(String, String)> = message_headers(&delivery)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        assert_eq!(shown, sent);
        assert!(shown.contains(&("Provtrail-Event-Id".to_owned(), "42".to_owned())));
        assert!(shown.contains(&("Nats-Msg-Id".to_owned(), "inv-1".to_owned())));
    }

    #[test]
    fn half_given_credentials_name_the_missing_half() {
        for (auth, setting) in [
            ("user = \"u\"", "password"),
            ("password = \"pw123456\"", "user"),
            ("token = \"t0k3n\"\nuser = \"u\"", "token"),
        ] {
            let err =
                build_with(&format!("subject = \"a.b\"\n{auth}"), &Secrets::default()).unwrap_err();
            assert_eq!(err.setting, setting, "{auth}: {}", err.message);
        }
    }

    #[test]
    fn a_subject_with_an_empty_token_is_refused() {
        for subject in ["a..b", ".a", "a.", "a.b..", "."] {
            let err =
                build_with(&format!("subject = \"{subject}\""), &Secrets::default()).unwrap_err();
            assert_eq!(err.setting, "subject", "{subject}");
            assert!(err.message.contains("empty token"), "{}", err.message);
        }
        assert!(build_with("subject = \"a.b.c\"", &Secrets::default()).is_ok());
    }

    #[test]
    fn a_duplicate_window_is_that_of_a_created_stream_and_within_the_limit() {
        let err = build_with(
            "subject = \"a.b\"\nstream = \"S\"\nduplicate_window = \"5m\"",
            &Secrets::default(),
        )
        .unwrap_err();
        assert_eq!(err.setting, "duplicate_window");
        assert!(err.message.contains("create_stream"), "{}", err.message);
        let err = build_with(
            "subject = \"a.b\"\nstream = \"S\"\ncreate_stream = true\nduplicate_window = \"400d\"",
            &Secrets::default(),
        )
        .unwrap_err();
        assert_eq!(err.setting, "duplicate_window");
        assert!(err.message.contains("366 days"), "{}", err.message);
        assert!(
            build_with(
                "subject = \"a.b\"\nstream = \"S\"\ncreate_stream = true\nduplicate_window = \"5m\"",
                &Secrets::default(),
            )
            .is_ok()
        );
    }

    #[test]
    fn a_zero_duplicate_window_is_refused() {
        let err = build_with(
            "subject = \"a.b\"\nstream = \"S\"\ncreate_stream = true\nduplicate_window = \"0s\"",
            &Secrets::default(),
        )
        .unwrap_err();
        assert_eq!(err.setting, "duplicate_window");
    }

    #[test]
    fn a_server_without_a_host_is_refused() {
        for list in ["nats://", "nats://@", "nats:///x", "h1, nats://"] {
            let err = server_addresses(list).unwrap_err();
            assert!(err.contains("names no host"), "{list}: {err}");
        }
        assert!(server_addresses("nats://[::1]:4222").is_ok());
    }

    #[test]
    fn credentials_in_the_url_are_the_ones_the_client_sends() {
        let servers = server_addresses("nats://tok3n@h1:4222, nats://tok3n@h2").unwrap();
        assert!(matches!(url_credentials(&servers), Ok(Auth::Token(t)) if t == "tok3n"));
        let servers = server_addresses("u:pw@h1, h2").unwrap();
        assert!(matches!(url_credentials(&servers), Ok(Auth::User(u, p)) if u == "u" && p == "pw"));
        let servers = server_addresses("u:pw@h1, u:other@h2").unwrap();
        assert!(url_credentials(&servers).is_err());
        // Written percent-encoded in the URL, sent decoded.
        let servers = server_addresses("nats://app:p%40ss%3Aw0rd@h1").unwrap();
        assert!(
            matches!(url_credentials(&servers), Ok(Auth::User(u, p)) if u == "app" && p == "p@ss:w0rd")
        );
        let secrets = Secrets::default();
        let err = build_with(
            "url = \"nats://u:pw123456@h:4222\"\nsubject = \"a.b\"\ntoken = \"t0k3n\"",
            &secrets,
        )
        .unwrap_err();
        assert_eq!(err.setting, "url");
        assert!(!err.message.contains("pw123456"), "{}", err.message);
    }

    #[test]
    fn credentials_without_a_scheme_are_read_as_the_client_reads_them() {
        let secrets = Secrets::default();
        let sink = build_with(
            "url = \"user:passw0rdX@127.0.0.1:4222, nats://user:passw0rdX@h2, tls://[::1]:4443/x?k=v\"\n\
             subject = \"a.b\"\nstream = \"S\"",
            &secrets,
        )
        .unwrap();
        assert_eq!(
            sink.target(),
            "nats://127.0.0.1:4222, nats://h2:4222, tls://[::1]:4443 subject a.b (stream S)"
        );
        assert_eq!(secrets.redactor().redact("user passw0rdX"), "user ***");
    }

    #[test]
    fn parts_of_the_target_given_by_reference_are_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        std::fs::write(&host, "nats-secret-host.internal\n").unwrap();
        let secrets = Secrets::default();
        let sink = build_with(
            &format!(
                "url = \"nats://${{file:{}}}:4222\"\nsubject = \"a.b\"",
                host.display()
            ),
            &secrets,
        )
        .unwrap();
        assert_eq!(sink.target(), "nats://***:4222 subject a.b");
    }

    #[test]
    fn a_server_the_client_could_not_use_stops_the_start() {
        for url in ["nats://h:notaport", "http://user:pw123456@h:4222", " , "] {
            let secrets = Secrets::default();
            let err =
                build_with(&format!("url = \"{url}\"\nsubject = \"a.b\""), &secrets).unwrap_err();
            assert_eq!(err.setting, "url", "{url}");
            assert!(!err.message.contains("pw123456"), "{}", err.message);
        }
    }
}
