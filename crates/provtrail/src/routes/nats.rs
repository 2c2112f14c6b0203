//! `nats`: publish to a JetStream subject and wait for the stream's acknowledgement.
//!
//! `Nats-Msg-Id` is the event's identity (ISC's invocation id, or `provtrail-event-<id>`), so a
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
    let url = secrets
        .resolve(&settings.url)
        .map_err(|err| SinkConfigError::new("url", err.to_string()))?;
    let subject = secrets
        .resolve(&settings.subject)
        .map_err(|err| SinkConfigError::new("subject", err.to_string()))?;
    if subject.is_empty()
        || subject.contains(|c: char| c.is_whitespace() || c == '*' || c == '>')
        || subject.starts_with('.')
        || subject.ends_with('.')
    {
        return Err(SinkConfigError::new(
            "subject",
            "a subject to publish to has no spaces or wildcards (`*`, `>`)",
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
        Some(text) => humantime::parse_duration(text)
            .map_err(|err| SinkConfigError::new("duplicate_window", err.to_string()))?,
        None => Duration::from_secs(120),
    };
    let auth = match (&settings.token, &settings.user, &settings.password) {
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
        (None, None, None) => Auth::None,
        _ => {
            return Err(SinkConfigError::new(
                "token",
                "use either token or user and password",
            ));
        }
    };
    // Credentials may be written into the URL (nats://user:pass@host).
    for part in url.split(',') {
        if let Ok(parsed) = url::Url::parse(part.trim()) {
            if let Some(password) = parsed.password() {
                secrets.redactor().add(password);
            }
        }
    }
    Ok(Arc::new(Nats {
        target: format!(
            "{} subject {subject}{}",
            secrets.redactor().redact(&url),
            settings
                .stream
                .as_ref()
                .map(|s| format!(" (stream {s})"))
                .unwrap_or_default()
        ),
        url,
        subject,
        stream: settings.stream,
        create_stream: settings.create_stream,
        duplicate_window,
        auth,
        timeout: context.timeout,
        connection: OnceCell::new(),
        redactor: secrets.redactor().clone(),
    }))
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
    url: String,
    subject: String,
    stream: Option<String>,
    create_stream: bool,
    duplicate_window: Duration,
    auth: Auth,
    timeout: Duration,
    target: String,
    connection: OnceCell<jetstream::Context>,
    redactor: Redactor,
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
        self.connection
            .get_or_try_init(|| async {
                let mut options = async_nats::ConnectOptions::new()
                    .name("provtrail")
                    .connection_timeout(self.timeout)
                    // Later drops are reconnected by the client; deliveries made meanwhile fail
                    // and are retried.
                    .retry_on_initial_connect();
                match &self.auth {
                    Auth::None => {}
                    Auth::Token(token) => options = options.token(token.clone()),
                    Auth::User(user, password) => {
                        options = options.user_and_password(user.clone(), password.clone());
                    }
                }
                let addresses: Vec<async_nats::ServerAddr> = self
                    .url
                    .split(',')
                    .filter_map(|part| part.trim().parse().ok())
                    .collect();
                if addresses.is_empty() {
                    return Err(SinkError::permanent("no valid NATS server URL"));
                }
                let client = options
                    .connect(addresses)
                    .await
                    .map_err(|err| self.error(&format!("cannot connect to NATS: {err}")))?;
                let mut context = jetstream::new(client);
                context.set_timeout(self.timeout);
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
                            self.error(&format!("cannot create the stream {stream}: {err}"))
                        })?;
                }
                Ok(context)
            })
            .await
    }

    fn error(&self, message: &str) -> SinkError {
        SinkError::transient(self.redactor.redact(message))
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
            headers: vec![
                ("Nats-Msg-Id".to_owned(), delivery.event_key.to_owned()),
                ("Provtrail-Delivery".to_owned(), delivery.key.to_owned()),
                ("Provtrail-Route".to_owned(), delivery.route.to_owned()),
            ],
            body: String::from_utf8_lossy(delivery.raw).into_owned(),
        })
    }

    async fn deliver(&self, delivery: &Delivery<'_>) -> Result<Sent, SinkError> {
        let context = self.context().await?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, delivery.event_key);
        headers.insert("Provtrail-Delivery", delivery.key);
        headers.insert("Provtrail-Route", delivery.route);
        headers.insert("Provtrail-Event-Id", delivery.event_id.to_string().as_str());
        let ack = context
            .publish_with_headers(
                self.subject.clone(),
                headers,
                Bytes::copy_from_slice(delivery.raw),
            )
            .await
            .map_err(|err| self.error(&format!("publish failed: {err}")))?;
        // The stream's acknowledgement: only then is the message stored (or known as a
        // duplicate of one that is).
        ack.await
            .map_err(|err| self.error(&format!("no acknowledgement from JetStream: {err}")))?;
        Ok(Sent::default())
    }
}
