//! `webhook`: POST the event (or a body rendered from it) to a URL.
//!
//! Every request carries `Idempotency-Key` and `X-Provtrail-Delivery` (the same stable key of the
//! (event, route) pair on every attempt and every replay) so that receivers can drop repeats,
//! plus `X-Provtrail-Event-Id`, `X-Provtrail-Route` and `X-Provtrail-Attempt`.
//!
//! Answers: 2xx is delivered; 408, 425, 429 and 5xx are retried; any other answer (a 4xx, or a
//! redirect, which is never followed) is permanent and goes to the dead letters at once, since the
//! same request would get the same answer.
//! A `Retry-After` on a retried answer is passed on with the failure: the worker then leaves the
//! whole route alone at least that long.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::secret::{REDACTED, Redactor};
use super::sink::{
    Delivery, Preview, Sent, Sink, SinkConfigError, SinkContext, SinkError, settings,
};
use super::ssrf::{GuardedResolver, forbidden};
use super::template::BodyTemplate;
use tokio::runtime::RuntimeFlavor;

/// `[routes.sink]` with `type = "webhook"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookSettings {
    /// Where to POST; `${env:…}` / `${file:…}` references allowed.
    url: String,
    /// Extra headers; values may hold references.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// `Authorization: Bearer <token>`.
    bearer_token: Option<String>,
    /// `Authorization: Basic`, with `basic_password`.
    basic_user: Option<String>,
    /// `Authorization: Basic`, with `basic_user`.
    basic_password: Option<String>,
    /// A MiniJinja template for the body; without one the event is sent as received.
    body_template: Option<String>,
    /// `Content-Type` of the body [default: application/json].
    content_type: Option<String>,
}

/// Whether a part of a URL looks like a token rather than a word: it has a digit, both upper
/// and lower case letters, or twelve characters or more (`T0A1/B2C3/xyz`, `Xy7Qp2`, but not
/// `hook`, `events` or `webhooks`).
fn looks_secret(text: &str) -> bool {
    text.bytes().any(|b| b.is_ascii_digit())
        || (text.bytes().any(|b| b.is_ascii_uppercase())
            && text.bytes().any(|b| b.is_ascii_lowercase()))
        || text.chars().count() >= 12
}

/// Whether one segment of a URL's path looks like a token rather than a word: it has a digit,
/// or is too long for a word (`IncomingWebhook`, `incoming-webhook` are words of the path).
fn looks_like_token(segment: &str) -> bool {
    segment.bytes().any(|b| b.is_ascii_digit()) || segment.chars().count() >= 20
}

/// Header names whose values are treated as secret even when written literally.
fn secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "auth",
        "token",
        "key",
        "secret",
        "signature",
        "hmac",
        "credential",
        "session",
        "password",
        "cookie",
    ]
    .iter()
    .any(|word| name.contains(word))
        // `sig` as a word of the name (`X-Sig`, `sig`), not inside `design` or `signal`.
        || name.split(['-', '_']).any(|word| word == "sig")
}

pub(super) fn build(
    table: toml::Table,
    context: &SinkContext<'_>,
) -> Result<Arc<dyn Sink>, SinkConfigError> {
    let settings: WebhookSettings = settings(table)?;
    let secrets = context.secrets;
    // Only the parts of the URL that came from references are hidden in the target: a host name
    // given as `${env:…}` is a secret like any other.
    let (url_text, url_references) = secrets
        .resolve_scoped(&settings.url)
        .map_err(|err| SinkConfigError::new("url", err.to_string()))?;
    let url = reqwest::Url::parse(&url_text)
        .map_err(|err| SinkConfigError::new("url", format!("not a URL: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SinkConfigError::new("url", "only http and https URLs"));
    }
    // The HTTP client would turn `user:password@` into an `Authorization: Basic` header of its
    // own, whose base64 the redactor never learns (so an answer echoing it would leak it) and
    // which the preview cannot show; the settings made for it have neither problem.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SinkConfigError::new(
            "url",
            "credentials in the URL (user:password@host) are not supported; give them as \
             basic_user and basic_password",
        ));
    }
    let host = match url.host() {
        Some(host) => host,
        None => return Err(SinkConfigError::new("url", "the URL has no host")),
    };
    let path = url.path().strip_prefix('/').unwrap_or(url.path());
    let query = url.query().unwrap_or_default();
    let has_path_or_query = !path.is_empty() || !query.is_empty();
    // A host that came from a `${…}` reference is a secret: no message may name it, nor the
    // address it is or resolves to. Told from the URL as written, not as parsed: the parser
    // rewrites `127.1` as `127.0.0.1`, which no redactor of the value `127.1` would find.
    let host_hidden = match settings.url.split_once("://") {
        Some((_, rest)) => rest
            .split(['/', '?', '#'])
            .next()
            .is_some_and(|authority| authority.contains("${")),
        None => super::secret::has_reference(&settings.url),
    };
    let target = url_references.redact(&format!(
        "POST {}://{}{}",
        url.scheme(),
        if host_hidden {
            "***"
        } else {
            url.host_str().unwrap_or_default()
        },
        match (url.port(), has_path_or_query) {
            (Some(port), true) => format!(":{port}/…"),
            (Some(port), false) => format!(":{port}/"),
            (None, true) => "/…".to_owned(),
            (None, false) => "/".to_owned(),
        }
    ));
    // The client connects to a literal address without asking the resolver, so the guard checks
    // it here; names are checked at every connection by the resolver.
    let literal = match host {
        url::Host::Ipv4(ip) => Some(std::net::IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(std::net::IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    };
    // A refusal of a hidden host names nothing of it, and is shown as it is.
    let url_error = |message: String| {
        if host_hidden {
            SinkConfigError::naming_no_secret("url", message)
        } else {
            SinkConfigError::new("url", message)
        }
    };
    // `localhost` and its subdomains are loopback by definition (RFC 6761), whatever the
    // resolver would say at the first delivery: refused at the start, as a loopback literal is.
    if let (url::Host::Domain(name), false) = (&host, context.allow_private) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name == "localhost" || name.ends_with(".localhost") {
            let shown = if host_hidden {
                "the host (given by reference, not shown)".to_owned()
            } else {
                format!("`{name}`")
            };
            return Err(url_error(format!(
                "{shown} is a loopback name; set allow_private = true on the route to \
                 allow it"
            )));
        }
    }
    if let (Some(ip), false) = (literal, context.allow_private) {
        if let Some(reason) = forbidden(ip) {
            let address = if host_hidden {
                "the host (given by reference, not shown)".to_owned()
            } else {
                ip.to_string()
            };
            return Err(url_error(format!(
                "{address} is in the {reason} range; set allow_private = true on the route \
                 to allow it"
            )));
        }
    }
    // Webhook URLs of chat tools carry their secret in the path or the query. Each is scrubbed
    // on its own when it looks like a secret: the redactor serves every route, and a plain
    // word (`/hook`, `/events`) would be blanked in all their messages.
    if looks_secret(path) {
        // Whole only: its segments may be plain words (`services/incoming-webhook/…`). A
        // receiver may name one secret-looking segment alone ("no hook B0123…").
        secrets.redactor().add_whole(path);
        for segment in path.split('/').filter(|segment| looks_like_token(segment)) {
            secrets.redactor().add(segment);
        }
    }
    if !query.is_empty() {
        // Whole only, as the path: `source=provtrail` must not blank every "provtrail".
        secrets.redactor().add_whole(query);
        // A receiver may echo one parameter's value alone (`token=…` → "bad token …"), as
        // sent or decoded.
        for (name, value) in url.query_pairs() {
            if secret_header(&name) || looks_secret(&value) {
                secrets.redactor().add(&value);
            }
        }
        for (name, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
            if secret_header(name) || looks_secret(value) {
                secrets.redactor().add(value);
            }
        }
    }

    let mut headers = HeaderMap::new();
    let mut shown = Vec::new();
    let content_type = settings
        .content_type
        .clone()
        .unwrap_or_else(|| "application/json".to_owned());
    if !is_media_type(&content_type) {
        return Err(SinkConfigError::new(
            "content_type",
            "not a media type: give type/subtype, like application/json or text/plain; \
             charset=utf-8",
        ));
    }
    let value = HeaderValue::from_str(&content_type)
        .map_err(|_| SinkConfigError::new("content_type", "not a valid header value"))?;
    headers.insert(reqwest::header::CONTENT_TYPE, value);
    shown.push(("Content-Type".to_owned(), content_type.clone()));
    // The HTTP client's own, so that the preview is the whole request.
    shown.push(("User-Agent".to_owned(), USER_AGENT.to_owned()));
    shown.push(("Accept".to_owned(), "*/*".to_owned()));
    let has_credentials = settings.bearer_token.is_some()
        || settings.basic_user.is_some()
        || settings.basic_password.is_some();
    for (name, text) in &settings.headers {
        let setting = format!("headers.{name}");
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| SinkConfigError::new(&setting, "not a valid header name"))?;
        if let Some(why) = reserved_header(header.as_str(), has_credentials) {
            return Err(SinkConfigError::new(&setting, why));
        }
        if headers.contains_key(&header) {
            return Err(SinkConfigError::new(
                &setting,
                "given twice (header names ignore case)",
            ));
        }
        let resolved = if secret_header(name) {
            secrets.resolve_secret(text)
        } else {
            secrets.resolve(text)
        }
        .map_err(|err| SinkConfigError::new(&setting, err.to_string()))?;
        let mut value = HeaderValue::from_str(&resolved)
            .map_err(|_| SinkConfigError::new(&setting, "not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(header, value);
        // A secret-named header is masked whatever its length: the redactor spares values too
        // short to scrub from running text, but here the whole value stands on its own.
        let shown_value = if secret_header(name) {
            REDACTED.to_owned()
        } else {
            secrets.redactor().redact(&resolved)
        };
        shown.push((name.clone(), shown_value));
    }
    let authorization = match (
        &settings.bearer_token,
        &settings.basic_user,
        &settings.basic_password,
    ) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(SinkConfigError::new(
                "bearer_token",
                "use either bearer_token or basic_user/basic_password, not both",
            ));
        }
        (Some(token), None, None) => {
            let token = secrets
                .resolve_secret(token)
                .map_err(|err| SinkConfigError::new("bearer_token", err.to_string()))?;
            Some(format!("Bearer {token}"))
        }
        (None, Some(user), Some(password)) => {
            use base64::Engine as _;
            let user = secrets
                .resolve(user)
                .map_err(|err| SinkConfigError::new("basic_user", err.to_string()))?;
            let password = secrets
                .resolve_secret(password)
                .map_err(|err| SinkConfigError::new("basic_password", err.to_string()))?;
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            secrets.redactor().add(&encoded);
            Some(format!("Basic {encoded}"))
        }
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err(SinkConfigError::new(
                "basic_user",
                "Basic authentication needs both basic_user and basic_password",
            ));
        }
        (None, None, None) => None,
    };
    if let Some(authorization) = authorization {
        let mut value = HeaderValue::from_str(&authorization)
            .map_err(|_| SinkConfigError::new("bearer_token", "not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
        let scheme = authorization.split(' ').next().unwrap_or_default();
        shown.push(("Authorization".to_owned(), format!("{scheme} ***")));
    }
    let template = match &settings.body_template {
        Some(source) => {
            // A key the receiver wants in the body (PagerDuty's `routing_key`) comes from the
            // environment or a file like any other secret, and is scrubbed like one. Only a
            // template that holds such a reference is resolved: in any other, `${` is text (a
            // dollar before `{{ amount }}`), as it always was.
            //
            // In a JSON body a reference stands inside a string ("routing_key": "${env:KEY}"):
            // its value is escaped for one, so that a `"` or `\` in it cannot end the string
            // and break every body. (A number or a name outside a string needs no escape.)
            let json_text = |value: &str| {
                let quoted = serde_json::Value::from(value).to_string();
                quoted[1..quoted.len() - 1].to_owned()
            };
            let as_is = |value: &str| value.to_owned();
            let encode: &dyn Fn(&str) -> String =
                if content_type.to_ascii_lowercase().contains("json") {
                    &json_text
                } else {
                    &as_is
                };
            // A value put into the template's code (`{{ "${env:KEY}" }}`) would be run: one
            // holding `" ~ event ~ "` would change what is sent, whatever the content type.
            if super::template::reference_in_code(source) {
                return Err(SinkConfigError::new(
                    "body_template",
                    "a ${…} reference inside {{ … }} or {% … %} would be run as template code; \
                     put it in the text around them",
                ));
            }
            let (resolved, references) = if source.contains("${env:") || source.contains("${file:")
            {
                secrets
                    .resolve_scoped_as(source, encode)
                    .map_err(|err| SinkConfigError::new("body_template", err.to_string()))?
            } else {
                (source.clone(), Redactor::default())
            };
            // A value is text, not template: one that holds template syntax would be run.
            let syntax = |text: &str| {
                ["{{", "{%", "{#"]
                    .iter()
                    .map(|open| text.matches(open).count())
                    .sum::<usize>()
            };
            if syntax(&resolved) != syntax(source) {
                return Err(SinkConfigError::new(
                    "body_template",
                    "the value of a ${…} reference holds template syntax ({{, {% or {#)",
                ));
            }
            Some((
                BodyTemplate::compile(&resolved)
                    .map_err(|message| SinkConfigError::new("body_template", message))?,
                references,
            ))
        }
        None => None,
    };
    crate::install_crypto_provider();
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: context.allow_private,
        }))
        .timeout(context.timeout)
        .connect_timeout(context.timeout.min(Duration::from_secs(10)))
        .user_agent(USER_AGENT)
        .build()
        .map_err(|err| SinkConfigError::new("", format!("cannot build the HTTP client: {err}")))?;
    let webhook = Webhook {
        client,
        url,
        target,
        headers,
        shown,
        json_body: content_type.to_ascii_lowercase().contains("json"),
        template,
        redactor: secrets.redactor().clone(),
        host_hidden,
        drains: Arc::new(tokio::sync::Semaphore::new(ANSWER_DRAINS)),
    };
    webhook.check_template()?;
    Ok(Arc::new(webhook))
}

/// The `User-Agent` of every delivery.
const USER_AGENT: &str = concat!("provtrail/", env!("CARGO_PKG_VERSION"));

/// Why a header of `headers` may not be set there (`name` in lower case), or None. What the
/// request carries must be what `routes test` shows: a second `Idempotency-Key` would break the
/// receiver's deduplication, and a header the HTTP client writes itself would be sent twice or
/// not at all.
fn reserved_header(name: &str, has_credentials: bool) -> Option<&'static str> {
    match name {
        "content-type" => Some("set it with content_type"),
        "authorization" if has_credentials => Some(
            "bearer_token or basic_user/basic_password already set the Authorization header; \
             use one or the other",
        ),
        "idempotency-key" => Some("provtrail sets it for every delivery (the delivery's key)"),
        _ if name.starts_with("x-provtrail-") => {
            Some("provtrail sets the X-Provtrail-* headers of every delivery")
        }
        "host"
        | "content-length"
        | "transfer-encoding"
        | "connection"
        | "keep-alive"
        | "upgrade"
        | "te"
        | "trailer"
        | "expect"
        | "proxy-authorization"
        | "proxy-connection" => Some("the HTTP client sets this header itself"),
        _ => None,
    }
}

/// `type/subtype`, each an HTTP token, then any parameters: what a receiver can read as a
/// content type.
fn is_media_type(text: &str) -> bool {
    let essence = text.split(';').next().unwrap_or_default().trim();
    let token = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
    };
    matches!(essence.split_once('/'), Some((kind, sub)) if token(kind) && token(sub))
}

/// A webhook sink.
pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    target: String,
    headers: HeaderMap,
    shown: Vec<(String, String)>,
    json_body: bool,
    /// The body template, and what its `${…}` references resolved to (secrets).
    template: Option<(BodyTemplate, Redactor)>,
    redactor: Redactor,
    /// The URL's host came from a secret reference: messages do not name it or its addresses.
    host_hidden: bool,
    /// Places for reading the bodies of answers that took a delivery, apart from the attempts
    /// ([`ANSWER_DRAINS`]).
    drains: Arc<tokio::sync::Semaphore>,
}

/// Bodies of 2xx answers a webhook route reads at once, each for at most [`ANSWER_DRAIN_TIME`],
/// so that their connections can be reused; past them an answer is dropped with its
/// connection. A receiver that sends its bodies slowly must not have the server hold a
/// connection per delivery.
const ANSWER_DRAINS: usize = 32;

/// See [`ANSWER_DRAINS`].
const ANSWER_DRAIN_TIME: Duration = Duration::from_secs(1);

// The URL and the headers may hold secrets: only the redacted target is printed.
impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Renders the body template for a sample event with failed account requests: a template
    /// that cannot render a body (not JSON where the content type says JSON) would send every
    /// delivery to the dead letters, so it fails the start instead.
    fn check_template(&self) -> Result<(), SinkConfigError> {
        if self.template.is_none() {
            return Ok(());
        }
        let raw = crate::synth::Generator::new(&crate::synth::SynthOptions {
            failure_rate: 1.0,
            ..crate::synth::SynthOptions::default()
        })
        .next_json();
        let event: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
        let sample = Delivery {
            delivery_id: 0,
            route: "sample",
            event_id: 1,
            event_key: "sample",
            key: "sample",
            attempt: 1,
            received_at: 0,
            raw: &raw,
            event: &event,
        };
        if let Err(err) = self.body(&sample) {
            return Err(SinkConfigError::new(
                "body_template",
                format!(
                    "for a sample event with failed account requests: {} (see provtrail routes \
                     test)",
                    err.message
                ),
            ));
        }
        if !self.json_body {
            return Ok(());
        }
        // The same event with its text as an outsider could write it: text that closes a JSON
        // string and opens a member of its own. A template that puts event text into the body
        // without `json_escape` or `tojson` either breaks the body (every such event to the dead
        // letters) or lets the event choose the message's members (a channel, a user name).
        // Twice: the second time with a backslash before the quote, which defeats a template
        // that escapes quotes alone (`replace('"', '\\"')`).
        for text in HOSTILE_TEXTS {
            let mut hostile = event.clone();
            with_hostile_text(&mut hostile, text);
            let hostile_raw = serde_json::to_vec(&hostile).unwrap_or_default();
            let sample = Delivery {
                raw: &hostile_raw,
                event: &hostile,
                ..sample
            };
            let unescaped = match self.body(&sample) {
                Ok(body) => serde_json::from_slice::<serde_json::Value>(&body)
                    .is_ok_and(|body| holds_key(&body, INJECTED_KEY)),
                // A template that fails on such text otherwise (`| int` of a number that is now
                // text) says nothing of its escaping.
                Err(err) => err.message.contains("did not render valid JSON"),
            };
            if unescaped {
                return Err(SinkConfigError::new(
                    "body_template",
                    format!(
                        "text from the event reaches the body unescaped: an event whose text \
                         holds {text:?} adds a member to the JSON or breaks it. Apply \
                         json_escape to text placed inside a JSON string, or tojson to a whole \
                         value (see provtrail routes test)"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn body(&self, delivery: &Delivery<'_>) -> Result<Vec<u8>, SinkError> {
        match &self.template {
            None => Ok(delivery.raw.to_vec()),
            Some((template, _)) => {
                let body = template.render(delivery).map_err(|err| {
                    if err.retry {
                        SinkError::transient(err.message)
                    } else {
                        SinkError::permanent(err.message)
                    }
                })?;
                if self.json_body {
                    if let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(&body) {
                        return Err(SinkError::permanent(format!(
                            "the body template did not render valid JSON ({err})"
                        )));
                    }
                    // Most receivers keep the last of a key given twice: text from the event
                    // that closed a string the template assembled would choose the message.
                    if let Some(key) = super::template::repeated_key(&body) {
                        return Err(SinkError::permanent(format!(
                            "the body template did not render valid JSON (the key {key:?} is \
                             given twice in one object: apply json_escape or tojson to text \
                             from the event)"
                        )));
                    }
                }
                Ok(body.into_bytes())
            }
        }
    }

    fn delivery_headers(delivery: &Delivery<'_>) -> Vec<(&'static str, String)> {
        vec![
            ("Idempotency-Key", delivery.key.to_owned()),
            ("X-Provtrail-Delivery", delivery.key.to_owned()),
            ("X-Provtrail-Event-Id", delivery.event_id.to_string()),
            ("X-Provtrail-Route", delivery.route.to_owned()),
            ("X-Provtrail-Attempt", delivery.attempt.to_string()),
        ]
    }
}

/// The member that [`HOSTILE_TEXTS`] add to a body that takes event text unescaped.
const INJECTED_KEY: &str = "provtrail-injected";

/// Event text that closes a JSON string and opens a member of its own, without and with a
/// backslash before the quote.
const HOSTILE_TEXTS: [&str; 2] = [
    "x\",\"provtrail-injected\":\"x",
    "x\\\",\"provtrail-injected\":\"x",
];

/// Members whose values a template compares rather than shows (`provisioningResult`,
/// `accountOperation`, types, times): kept as they are, so that the template takes the same
/// branches as for the sample event.
const COMPARED_MEMBERS: &[&str] = &[
    "provisioningResult",
    "accountOperation",
    "operation",
    "type",
    "triggerId",
    "triggerType",
    "created",
    "modified",
];

/// Every string of `value` (but those of [`COMPARED_MEMBERS`]) as `hostile` followed by the
/// string.
fn with_hostile_text(value: &mut serde_json::Value, hostile: &str) {
    match value {
        serde_json::Value::String(text) => *text = format!("{hostile}{text}"),
        serde_json::Value::Array(items) => items
            .iter_mut()
            .for_each(|item| with_hostile_text(item, hostile)),
        serde_json::Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                if !COMPARED_MEMBERS.contains(&name.as_str()) {
                    with_hostile_text(member, hostile);
                }
            }
        }
        _ => {}
    }
}

/// Whether an object in `value` has a member `key`.
fn holds_key(value: &serde_json::Value, key: &str) -> bool {
    match value {
        serde_json::Value::Array(items) => items.iter().any(|item| holds_key(item, key)),
        serde_json::Value::Object(members) => members
            .iter()
            .any(|(name, member)| name == key || holds_key(member, key)),
        _ => false,
    }
}

/// Bytes of an answer's body read (a refusal's, to explain it): enough for any error message,
/// and a bound on what a receiver can make us hold.
const MAX_ANSWER_READ: usize = 16 * 1024;

/// Characters of a refusal's body kept in the delivery's error.
const MAX_ANSWER_KEPT: usize = 300;

/// The first `limit` bytes of a response body (as text), without reading the rest, and whether
/// there may be more.
async fn read_prefix(mut response: reqwest::Response, limit: usize) -> (String, bool) {
    let mut body = Vec::new();
    // An answer that broke off (a reset, the timeout) is cut short as much as one past the
    // limit: a secret may end beyond what was read.
    let mut broke_off = false;
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(limit - body.len());
                body.extend_from_slice(&chunk[..take]);
            }
            Ok(None) => break,
            Err(_) => {
                broke_off = true;
                break;
            }
        }
    }
    let cut = broke_off || body.len() >= limit;
    (String::from_utf8_lossy(&body).into_owned(), cut)
}

/// The server-side request forgery guard's refusal, when it is what failed the connection.
fn refused_by_guard<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a super::ssrf::Refused> {
    let mut source = Some(err);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<super::ssrf::Refused>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
}

/// An error and its causes in one line (the client's own message is terse: the cause says
/// "connection refused" or "refused: … resolves to 10.0.0.1").
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[async_trait]
impl Sink for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn target(&self) -> String {
        self.target.clone()
    }

    fn needs_value(&self) -> bool {
        self.template.is_some()
    }

    fn preview(&self, delivery: &Delivery<'_>) -> Result<Preview, SinkError> {
        let body = self.body(delivery)?;
        let mut headers = self.shown.clone();
        for (name, value) in Self::delivery_headers(delivery) {
            headers.push((name.to_owned(), value));
        }
        Ok(Preview {
            target: self.target.clone(),
            headers,
            // A template's references are secrets; the event itself is shown as it is.
            body: match &self.template {
                Some((_, references)) => references.redact(&String::from_utf8_lossy(&body)),
                None => String::from_utf8_lossy(&body).into_owned(),
            },
        })
    }

    async fn deliver(&self, delivery: &Delivery<'_>) -> Result<Sent, SinkError> {
        // A template can take seconds on a large event (its fuel grows with the event's size):
        // rendered with the thread handed over, so that the runtime's other tasks (the other
        // routes' attempts) go on meanwhile, rather than wait for it.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|runtime| runtime.runtime_flavor() == RuntimeFlavor::MultiThread);
        let body = match &self.template {
            Some(_) if multi_thread => tokio::task::block_in_place(|| self.body(delivery)),
            _ => self.body(delivery),
        };
        let body = bytes::Bytes::from(body?);
        let headers = Self::delivery_headers(delivery);
        let send = || {
            let mut request = self
                .client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .body(body.clone());
            for (name, value) in &headers {
                request = request.header(*name, value);
            }
            request.send()
        };
        let mut sent = send().await;
        // A kept-alive connection the receiver closed as the request went out (its keep-alive
        // time ran out, or it closes after every answer without saying so) answers nothing:
        // the request is sent once more, on a new connection, rather than counted as a failed
        // attempt and retried minutes later. A receiver that closes a connection as it takes a
        // request has rarely acted on it; if it had, this is the second delivery that any
        // retry of an unanswered request makes (at least once), with the same Idempotency-Key
        // for receivers that deduplicate.
        if sent.as_ref().is_err_and(closed_unanswered) {
            sent = send().await;
        }
        let mut response = match sent {
            Ok(response) => response,
            Err(err) => {
                let timeout = err.is_timeout();
                let err = err.without_url();
                let message = if timeout {
                    "timed out".to_owned()
                } else {
                    chain(&err)
                };
                let message = self.redactor.redact(&message);
                // The guard refused every address the name resolves to: retrying will not
                // change the configuration, so the delivery goes to the dead letters at once,
                // with the reason, rather than failing for days.
                if let Some(refused) = refused_by_guard(&err) {
                    return Err(SinkError::permanent(if self.host_hidden {
                        refused.without_host()
                    } else {
                        message
                    }));
                }
                // An answer that is not HTTP (or a head past the client's limits) comes from a
                // receiver that is up: the attempt counts, as a 500 does, so that `max_attempts`
                // ends what would otherwise be retried until `max_age`.
                if answer_not_http(&err) {
                    return Err(SinkError::transient(message).from_a_target_that_answered());
                }
                return Err(SinkError::transient(message));
            }
        };
        let status = response.status();
        let code = status.as_u16();
        if status.is_success() {
            // Read a short answer, so that the connection can be reused; a long one is cut off
            // with its connection: a receiver must not make the server hold what it sends (the
            // events' ingest runs in the same process). Apart from the attempt, which is done:
            // a receiver that sends its answer's body slowly would otherwise have the attempt
            // end at its timeout, recorded as failed, and the event sent again.
            if let Ok(place) = self.drains.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    let _place = place;
                    let drained = async {
                        let mut read = 0;
                        while read < MAX_ANSWER_READ {
                            match response.chunk().await {
                                Ok(Some(chunk)) => read += chunk.len(),
                                Ok(None) | Err(_) => break,
                            }
                        }
                    };
                    let _ = tokio::time::timeout(ANSWER_DRAIN_TIME, drained).await;
                });
            }
            return Ok(Sent { status: Some(code) });
        }
        let retry = matches!(code, 408 | 425 | 429) || status.is_server_error();
        let retry_after = if retry {
            response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| retry_after(value, chrono::Utc::now()))
        } else {
            None
        };
        // Redacted whole, then shortened: shortening first could cut a secret the receiver echoes
        // (a long bearer token) and leave its beginning where redaction no longer recognises it.
        let (answer, cut) = read_prefix(response, MAX_ANSWER_READ).await;
        let answer = self.redactor.redact_cut(&answer, cut);
        let answer: String = answer.trim().chars().take(MAX_ANSWER_KEPT).collect();
        let mut message = format!("HTTP {code}");
        if code == 304 {
            // Not a redirect: an answer to a conditional GET, which a delivery never is.
            message.push_str(" (Not Modified: no answer to a POST; the receiver took nothing)");
        } else if status.is_redirection() {
            message.push_str(" (redirects are not followed; use the final URL)");
        }
        if !answer.is_empty() {
            message.push_str(": ");
            message.push_str(&answer);
        }
        Err(SinkError {
            message: self.redactor.redact(&message),
            status: Some(code),
            permanent: !retry,
            retry_after,
            // Said by the status: a 503 is a sink down, though it answered.
            answered: false,
        })
    }
}

/// Whether the connection was closed or reset under a request sent on it, before any answer:
/// not a timeout, not a refused connection.
fn closed_unanswered(err: &reqwest::Error) -> bool {
    if err.is_timeout() || err.is_connect() {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            );
        }
        source = cause.source();
    }
    false
}

/// Whether the request failed on the receiver's answer itself: bytes that are not an HTTP
/// response, or a head too large to read.
fn answer_not_http(err: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(err), |err| err.source()).any(|err| {
        err.downcast_ref::<hyper::Error>()
            .is_some_and(|err| err.is_parse() || err.is_parse_too_large() || err.is_parse_status())
    })
}

/// A `Retry-After` value (seconds, or an HTTP date) as a wait from `now`, at most a day: a
/// receiver that asks for longer is paused a day at a time rather than trusted for a week.
fn retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    const LONGEST: Duration = Duration::from_secs(86_400);
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // More seconds than fit in 64 bits is still "longer than a day", not no answer.
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    (!wait.is_zero()).then_some(wait.min(LONGEST))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::secret::Secrets;

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_at_most_a_day() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(retry_after("30", now), Some(Duration::from_secs(30)));
        assert_eq!(
            retry_after("Sun, 29 Nov 2026 10:02:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        for long in ["9999999", "99999999999999999999"] {
            assert_eq!(
                retry_after(long, now),
                Some(Duration::from_secs(86_400)),
                "{long}"
            );
        }
        for useless in ["0", "Sun, 29 Nov 2026 09:00:00 GMT", "soon", "-5", ""] {
            assert_eq!(retry_after(useless, now), None, "{useless:?}");
        }
    }

    fn build_with(sink: &str, secrets: &Secrets) -> Result<Arc<dyn Sink>, SinkConfigError> {
        crate::routes::sink::testing::build_sink(build, sink, secrets, true)
    }

    /// A first attempt at delivering `event` (with an empty body as received).
    fn delivery_of(event: &serde_json::Value) -> Delivery<'_> {
        Delivery {
            delivery_id: 0,
            route: "r",
            event_id: 1,
            event_key: "k",
            key: "pt-k",
            attempt: 1,
            received_at: 0,
            raw: b"{}",
            event,
        }
    }

    fn preview(sink: &Arc<dyn Sink>) -> Preview {
        sink.preview(&delivery_of(&serde_json::Value::Null))
            .unwrap()
    }

    #[test]
    fn headers_that_provtrail_or_the_http_client_set_are_refused_and_named() {
        let url = "url = \"https://example.com/hook\"\n";
        for (headers, named, why) in [
            (
                "{ \"Content-Type\" = \"text/plain\" }",
                "Content-Type",
                "content_type",
            ),
            (
                "{ \"idempotency-key\" = \"fixed\" }",
                "idempotency-key",
                "every delivery",
            ),
            (
                "{ \"X-Provtrail-Route\" = \"spoof\" }",
                "X-Provtrail-Route",
                "X-Provtrail-*",
            ),
            ("{ \"Host\" = \"evil.example\" }", "Host", "HTTP client"),
            (
                "{ \"Transfer-Encoding\" = \"chunked\" }",
                "Transfer-Encoding",
                "HTTP client",
            ),
            (
                "{ \"Content-Length\" = \"5\" }",
                "Content-Length",
                "HTTP client",
            ),
            (
                "{ \"X-Team\" = \"a\", \"x-team\" = \"b\" }",
                "x-team",
                "twice",
            ),
        ] {
            let err =
                build_with(&format!("{url}headers = {headers}"), &Secrets::default()).unwrap_err();
            assert_eq!(err.setting, format!("headers.{named}"), "{headers}");
            assert!(err.message.contains(why), "{headers}: {}", err.message);
        }
        // The preview is the whole request, the client's own headers included.
        let sink = build_with(url, &Secrets::default()).unwrap();
        let shown = preview(&sink).headers;
        assert!(shown.contains(&("User-Agent".to_owned(), USER_AGENT.to_owned())));
        assert!(shown.contains(&("Accept".to_owned(), "*/*".to_owned())));
        // Authorization: a scheme of the receiver's own, unless the credentials settings set it.
        let custom = format!("{url}headers = {{ \"Authorization\" = \"Token abc123\" }}");
        assert!(build_with(&custom, &Secrets::default()).is_ok());
        let both = format!("{custom}\nbearer_token = \"t0ken-value\"");
        let err = build_with(&both, &Secrets::default()).unwrap_err();
        assert_eq!(err.setting, "headers.Authorization");
        assert!(err.message.contains("bearer_token"), "{}", err.message);
    }

    #[test]
    fn credentials_in_the_url_are_refused_in_favour_of_the_basic_settings() {
        for url in [
            "http://user:hunter2pw@127.0.0.1:47080/hook",
            "https://only-a-user@example.com/",
            "https://:hunter2pw@example.com/",
        ] {
            let secrets = Secrets::default();
            let err = build_with(&format!("url = \"{url}\""), &secrets).unwrap_err();
            assert_eq!(err.setting, "url");
            assert!(
                err.message.contains("basic_user") && err.message.contains("basic_password"),
                "{}",
                err.message
            );
            assert!(!err.message.contains("hunter2pw"), "{}", err.message);
        }
    }

    #[test]
    fn a_template_that_renders_no_json_for_a_json_content_type_fails_the_start() {
        let template = "body_template = 'not json {{ event_id }}'";
        let err = build_with(
            &format!("url = \"https://example.com/\"\n{template}"),
            &Secrets::default(),
        )
        .unwrap_err();
        assert_eq!(err.setting, "body_template");
        assert!(
            err.message.contains("sample event") && err.message.contains("valid JSON"),
            "{}",
            err.message
        );
        for bad in ["", "not a type", "json"] {
            let err = build_with(
                &format!("url = \"https://example.com/\"\ncontent_type = {bad:?}"),
                &Secrets::default(),
            )
            .unwrap_err();
            assert_eq!(err.setting, "content_type", "{bad:?}");
        }
        // Text is what a text content type asks for.
        assert!(
            build_with(
                &format!(
                    "url = \"https://example.com/\"\ncontent_type = \"text/plain\"\n{template}"
                ),
                &Secrets::default(),
            )
            .is_ok()
        );
    }

    /// A template that puts event text into a JSON body without escaping it fails the start:
    /// an outsider's text could add members to the message (a channel, a user name) or break
    /// it. The documented templates, and the same templates escaped, start.
    #[test]
    fn a_template_that_takes_event_text_unescaped_fails_the_start() {
        let build = |template: &str| {
            build_with(
                &format!("url = \"https://example.com/\"\nbody_template = '''{template}'''"),
                &Secrets::default(),
            )
        };
        for unescaped in [
            r#"{"text": "Provisioning {{ outcome }} for {{ recipient }}", "channel": "idm-alerts"}"#,
            r#"{"text": "{{ errors | join('; ') }}"}"#,
            r#"{"text": "{{ failed[0].source | slack_escape }}"}"#,
            r#"{"id": "{{ event.accountRequests[0].accountId }}"}"#,
            r#"{"text": "{{ recipient | replace('"', '\\"') }}"}"#,
        ] {
            let err = build(unescaped).unwrap_err();
            assert_eq!(err.setting, "body_template");
            assert!(
                err.message.contains("reaches the body unescaped")
                    && err.message.contains("json_escape"),
                "{unescaped}: {}",
                err.message
            );
        }
        for escaped in [
            r#"{"text": "Provisioning {{ outcome }} for {{ recipient | json_escape }}", "channel": "idm-alerts"}"#,
            r#"{"text": {{ (errors | join('; ')) | tojson }}, "n": {{ failed | length }}}"#,
            r#"{"text": "{{ failed[0].source | slack_escape | json_escape }}"}"#,
        ] {
            assert!(build(escaped).is_ok(), "{escaped}");
        }
        let docs = include_str!("../../../../docs/routes.md");
        for block in docs.split("```jinja\n").skip(1) {
            let template = block.split("```").next().unwrap();
            assert!(build(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn a_body_template_takes_references_and_its_preview_hides_them() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("routing-key");
        std::fs::write(&key, "R0utingKey0123456789\n").unwrap();
        let secrets = Secrets::default();
        let sink = build_with(
            &format!(
                "url = \"https://example.com/enqueue\"\nbody_template = '{{\"routing_key\": \
                 \"${{file:{}}}\", \"summary\": \"{{{{ event.trackingNumber | json_escape }}}}\"}}'",
                key.display()
            ),
            &secrets,
        )
        .unwrap();
        let event = serde_json::json!({"trackingNumber": "tn-1"});
        let delivery = delivery_of(&event);
        // The reference was resolved (unresolved, it would show as written), and what is
        // shown hides its value.
        let preview = sink.preview(&delivery).unwrap().body;
        assert!(preview.contains(r#""routing_key": "***""#), "{preview}");
        assert!(preview.contains("tn-1"), "{preview}");
        // A value is never read as template syntax.
        std::fs::write(&key, "{{ 7 * 7 }}").unwrap();
        let err = build_with(
            &format!(
                "url = \"https://example.com/\"\nbody_template = '\"${{file:{}}}\"'",
                key.display()
            ),
            &Secrets::default(),
        )
        .unwrap_err();
        assert_eq!(err.setting, "body_template");
        // Nor is a value put into the template's code, where it would be run.
        std::fs::write(&key, "zz\" ~ event ~ \"qq").unwrap();
        let err = build_with(
            &format!(
                "url = \"https://example.com/\"\ncontent_type = \"text/plain\"\n\
                 body_template = 'k={{{{ \"${{file:{}}}\" }}}}'",
                key.display()
            ),
            &Secrets::default(),
        )
        .unwrap_err();
        assert_eq!(err.setting, "body_template");
        assert!(err.message.contains("template code"), "{}", err.message);
        // Without an env or file reference, `${` is text, as it always was.
        let sink = build_with(
            "url = \"https://example.com/\"\nbody_template = '\"Total: ${{ event.trackingNumber | json_escape }}\"'",
            &Secrets::default(),
        )
        .unwrap();
        assert_eq!(sink.preview(&delivery).unwrap().body, "\"Total: $tn-1\"");
    }

    /// Accepts one connection on `listener` and reads one HTTP request from it: the connection,
    /// to answer on, and the request's body.
    fn read_one_request(listener: &std::net::TcpListener) -> (std::net::TcpStream, Vec<u8>) {
        use std::io::{BufRead as _, Read as _};
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        (reader.into_inner(), body)
    }

    /// Answers one HTTP request on loopback with 200 and hands back its body.
    fn receive_one() -> (String, std::thread::JoinHandle<String>) {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let receiver = std::thread::spawn(move || {
            let (mut stream, body) = read_one_request(&listener);
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
            String::from_utf8(body).unwrap()
        });
        (url, receiver)
    }

    /// A template that takes long on a large event is rendered with the thread handed over:
    /// the runtime's other tasks (other routes' attempts) go on while it renders.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_slow_template_does_not_hold_up_the_runtimes_other_tasks() {
        let sink = build_with(
            "url = \"http://127.0.0.1:9/hook\"\ncontent_type = \"text/plain\"\n\
             body_template = '{% for a in event.errors %}{% for b in event.errors %}.{% endfor %}{% endfor %}'",
            &Secrets::default(),
        )
        .unwrap();
        // Large enough for the most fuel a rendering gets.
        let errors: Vec<String> = (0..200_000).map(|n| format!("error {n}")).collect();
        let event = serde_json::json!({"trackingNumber": "tn-1", "errors": errors});
        let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        // Let the ticker start.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = std::time::Instant::now();
        let before = ticks.load(std::sync::atomic::Ordering::SeqCst);
        // On the runtime's one worker, as the attempts of routes are; the body as received, by
        // whose size the rendering gets its fuel.
        let raw = serde_json::to_vec(&event).unwrap();
        let _ = tokio::spawn(async move {
            let delivery = Delivery {
                raw: &raw,
                ..delivery_of(&event)
            };
            sink.deliver(&delivery).await
        })
        .await;
        let during = ticks.load(std::sync::atomic::Ordering::SeqCst) - before;
        let took = started.elapsed();
        ticker.abort();
        // Only meaningful when the rendering took a while: it does, by far, on any machine.
        assert!(took > Duration::from_millis(100), "rendered in {took:?}");
        assert!(
            during > 5,
            "{during} ticks in {took:?}: the other task waited"
        );
    }

    /// A receiver that answers 200 at once and then sends the rest of its answer slowly has
    /// taken the delivery: the attempt is over then, not once the answer's body has come (the
    /// worker's timeout would otherwise end it as failed, and the event be sent again).
    #[tokio::test]
    async fn a_2xx_whose_body_comes_slowly_is_a_delivery_made_at_once() {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        let receiver = std::thread::spawn(move || {
            let (mut stream, _) = read_one_request(&listener);
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n{\"ok\":")
                .unwrap();
            stream.flush().unwrap();
            // The rest of the answer only once the delivery is over (or after 20 s).
            let _ = finished.recv_timeout(Duration::from_secs(20));
            let _ = stream.write_all(b" true, \"n\": 1}    ");
        });
        // A client timeout longer than the wait below.
        let secrets = Secrets::default();
        let sink = build(
            format!("url = \"{url}\"").parse().unwrap(),
            &SinkContext {
                route: "r",
                allow_private: true,
                timeout: Duration::from_secs(30),
                secrets: &secrets,
                inspecting: false,
                store: None,
            },
        )
        .unwrap();
        let event = serde_json::json!({"trackingNumber": "tn-1"});
        let sent =
            tokio::time::timeout(Duration::from_secs(5), sink.deliver(&delivery_of(&event))).await;
        let _ = finish.send(());
        receiver.join().unwrap();
        let sent = sent.expect("the delivery waited for the answer's body");
        assert_eq!(sent.unwrap().status, Some(200));
    }

    #[tokio::test]
    async fn a_reference_in_a_json_body_is_escaped_for_its_string() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "pa\"ss\\word\tend\n").unwrap();
        let sent = |content_type: &'static str| {
            let key = key.clone();
            async move {
                let (url, receiver) = receive_one();
                let settings = format!(
                    "url = \"{url}\"\ncontent_type = {content_type:?}\n\
                     body_template = '{{\"key\": \"${{file:{}}}\", \"id\": {{{{ event_id }}}}}}'",
                    key.display()
                );
                let sink = build_with(&settings, &Secrets::default()).unwrap();
                let event = serde_json::json!({"trackingNumber": "tn-1"});
                sink.deliver(&delivery_of(&event)).await.unwrap();
                receiver.join().unwrap()
            }
        };
        for content_type in [
            "application/json",
            "application/vnd.api+json; charset=utf-8",
        ] {
            let body: serde_json::Value = serde_json::from_str(&sent(content_type).await).unwrap();
            assert_eq!(body["key"], "pa\"ss\\word\tend", "{content_type}");
            assert_eq!(body["id"], 1, "{content_type}");
        }
        // A body that is not JSON takes the value as it is.
        let body = sent("text/plain").await;
        assert_eq!(body, "{\"key\": \"pa\"ss\\word\tend\", \"id\": 1}");
    }

    #[test]
    fn a_path_segment_or_a_decoded_query_value_echoed_alone_is_redacted() {
        let secrets = Secrets::default();
        build_with(
            "url = \"https://example.com/hooks/LiteralSeg9X?sig=LiteralSig123&code=abc/def+ghi==\"",
            &secrets,
        )
        .unwrap();
        let redactor = secrets.redactor();
        for (echo, shown) in [
            ("no hook LiteralSeg9X", "no hook ***"),
            ("q.code=abc/def ghi==", "q.code=***"),
            ("q.code=abc%2Fdef%2Bghi%3D%3D", "q.code=***"),
            ("bad sig LiteralSig123", "bad sig ***"),
        ] {
            assert_eq!(redactor.redact(echo), shown, "{echo}");
        }
        // A plain word of the path is not a secret, nor is a plain query value that is part of
        // the (secret) whole query.
        assert_eq!(redactor.redact("POST /hooks failed"), "POST /hooks failed");
        let secrets = Secrets::default();
        build_with(
            "url = \"https://example.com/services/incoming-webhook?source=provtrail\"",
            &secrets,
        )
        .unwrap();
        assert_eq!(
            secrets
                .redactor()
                .redact("provtrail posted to incoming-webhook"),
            "provtrail posted to incoming-webhook"
        );
        assert!(!secret_header("X-Design"));
        assert!(secret_header("X-Sig"));
    }

    #[test]
    fn short_path_and_query_secrets_are_redacted_each_on_its_own() {
        let secrets = Secrets::default();
        let sink = build_with("url = \"http://127.0.0.1:47080/Xy7Qp2?k=Zx91\"", &secrets).unwrap();
        assert_eq!(sink.target(), "POST http://127.0.0.1:47080/…");
        let redactor = secrets.redactor();
        assert_eq!(
            redactor.redact("404 for /Xy7Qp2?k=Zx91"),
            "404 for /***?***"
        );
        assert_eq!(redactor.redact("unknown hook Xy7Qp2"), "unknown hook ***");
        // Alone, each is too short for the old rule (8 characters for path and query together).
        for (url, echo) in [
            ("http://127.0.0.1:47080/Xy7Qp2", "unknown hook Xy7Qp2"),
            ("http://127.0.0.1:47080/?k=Zx91", "bad key k=Zx91"),
        ] {
            let secrets = Secrets::default();
            build_with(&format!("url = \"{url}\""), &secrets).unwrap();
            let redacted = secrets.redactor().redact(echo);
            assert!(redacted.ends_with(" ***"), "{url}: {redacted}");
        }
        // One parameter's value, echoed alone.
        let secrets = Secrets::default();
        build_with(
            "url = \"https://example.com/hooks?format=json&key=Ab12&token=T0kenValue\"",
            &secrets,
        )
        .unwrap();
        assert_eq!(
            secrets
                .redactor()
                .redact("bad token T0kenValue, key Ab12, not json"),
            "bad token ***, key ***, not json"
        );
        // Plain words are not secrets: they stay readable in every route's messages.
        let secrets = Secrets::default();
        build_with("url = \"https://example.com/hook?format=json\"", &secrets).unwrap();
        assert_eq!(
            secrets.redactor().redact("webhook hook: invalid json"),
            "webhook hook: invalid json"
        );
        // A URL without a path registers nothing.
        let secrets = Secrets::default();
        build_with("url = \"http://127.0.0.1:47080/\"", &secrets).unwrap();
        assert_eq!(
            secrets.redactor().redact("http://127.0.0.1:47080/"),
            "http://127.0.0.1:47080/"
        );
    }

    #[test]
    fn the_preview_masks_secret_named_headers_whatever_their_length() {
        let secrets = Secrets::default();
        let sink = build_with(
            "url = \"https://example.com/hook\"\nheaders = { X-Api-Key = \"k9Z\", X-Team = \"ops\" }",
            &secrets,
        )
        .unwrap();
        let headers = preview(&sink).headers;
        assert!(
            headers.contains(&("X-Api-Key".to_owned(), "***".to_owned())),
            "{headers:?}"
        );
        assert!(
            headers.contains(&("X-Team".to_owned(), "ops".to_owned())),
            "{headers:?}"
        );
    }

    #[test]
    fn a_forbidden_address_given_by_reference_is_not_named_at_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        // Written in a short form too, which the URL parser rewrites in full.
        for short in ["127.1", "0x7f.1", "2130706433"] {
            std::fs::write(&host, format!("{short}\n")).unwrap();
            let sink = format!("url = \"http://${{file:{}}}/hook\"", host.display());
            let err =
                crate::routes::sink::testing::build_sink(build, &sink, &Secrets::default(), false)
                    .unwrap_err()
                    .message;
            assert!(err.contains("loopback"), "{err}");
            assert!(!err.contains("127.0.0.1") && !err.contains(short), "{err}");
        }
        std::fs::write(&host, "10.1.2.3\n").unwrap();
        let sink = format!("url = \"http://${{file:{}}}/hook\"", host.display());
        let err =
            crate::routes::sink::testing::build_sink(build, &sink, &Secrets::default(), false)
                .unwrap_err()
                .message;
        assert!(err.contains("private"), "{err}");
        assert!(!err.contains("10.1.2.3"), "{err}");
        // Written in the file, the address is no secret, and the message names it.
        let err = crate::routes::sink::testing::build_sink(
            build,
            "url = \"http://10.1.2.3/hook\"",
            &Secrets::default(),
            false,
        )
        .unwrap_err()
        .message;
        assert!(err.contains("10.1.2.3 is in the private"), "{err}");
    }

    #[test]
    fn localhost_is_refused_at_the_start_and_not_named_when_given_by_reference() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("url");
        for host in ["localhost", "LocalHost.", "api.localhost"] {
            std::fs::write(&url, format!("http://{host}:9/hook\n")).unwrap();
            let err = crate::routes::sink::testing::build_sink(
                build,
                &format!("url = \"${{file:{}}}\"", url.display()),
                &Secrets::default(),
                false,
            )
            .unwrap_err();
            assert_eq!(err.setting, "url");
            assert!(err.message.contains("loopback name"), "{}", err.message);
            assert!(
                !err.message.to_lowercase().contains("localhost"),
                "{}",
                err.message
            );
            let err = crate::routes::sink::testing::build_sink(
                build,
                &format!("url = \"http://{host}:9/hook\""),
                &Secrets::default(),
                false,
            )
            .unwrap_err();
            assert!(
                err.message.contains("is a loopback name") && err.message.contains("allow_private"),
                "{}",
                err.message
            );
        }
        // Allowed when the route says so; a name that only looks alike is not refused.
        for (url, allow_private) in [
            ("http://localhost:9/hook", true),
            ("http://localhost.example.com/hook", false),
            ("http://mylocalhost/hook", false),
        ] {
            crate::routes::sink::testing::build_sink(
                build,
                &format!("url = \"{url}\""),
                &Secrets::default(),
                allow_private,
            )
            .unwrap_or_else(|err| panic!("{url}: {err:?}"));
        }
    }

    #[tokio::test]
    async fn a_refused_host_given_by_reference_is_not_named_when_delivering() {
        // A name the start cannot judge that leads to loopback: this machine's name, on most.
        let Some(name) = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| {
                use std::net::ToSocketAddrs;
                (name.as_str(), 9).to_socket_addrs().is_ok_and(|found| {
                    let found: Vec<_> = found.collect();
                    !found.is_empty() && found.iter().all(|address| address.ip().is_loopback())
                })
            })
        else {
            eprintln!("this machine's name does not resolve to loopback: nothing to deliver to");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("url");
        std::fs::write(&url, format!("http://{name}:9/hook\n")).unwrap();
        let sink = crate::routes::sink::testing::build_sink(
            build,
            &format!("url = \"${{file:{}}}\"", url.display()),
            &Secrets::default(),
            false,
        )
        .unwrap();
        let err = sink
            .deliver(&delivery_of(&serde_json::Value::Null))
            .await
            .unwrap_err();
        assert!(err.permanent, "{err:?}");
        assert!(err.message.contains("loopback"), "{}", err.message);
        for hidden in [name.as_str(), "127.0.0.1", "::1"] {
            assert!(!err.message.contains(hidden), "{}", err.message);
        }
        // A host written in the file is named.
        let sink = crate::routes::sink::testing::build_sink(
            build,
            &format!("url = \"http://{name}:9/hook\""),
            &Secrets::default(),
            false,
        )
        .unwrap();
        let err = sink
            .deliver(&delivery_of(&serde_json::Value::Null))
            .await
            .unwrap_err();
        assert!(
            err.message.contains(&format!("{name} resolves to")),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_host_given_by_reference_is_hidden_in_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        std::fs::write(&host, "secrethost40.example.com\n").unwrap();
        let secrets = Secrets::default();
        // Another route's secret that happens to be a word of this target is not blotted out.
        secrets.resolve_secret("example").unwrap();
        let sink = build_with(
            &format!("url = \"https://${{file:{}}}:8443/hook\"", host.display()),
            &secrets,
        )
        .unwrap();
        assert_eq!(sink.target(), "POST https://***:8443/…");
        assert_eq!(preview(&sink).target, "POST https://***:8443/…");
        let secrets = Secrets::default();
        secrets.resolve_secret("example").unwrap();
        let sink = build_with("url = \"https://hooks.example.com/\"", &secrets).unwrap();
        assert_eq!(sink.target(), "POST https://hooks.example.com/");
    }

    /// A receiver that closes each connection right after its answer, without saying so
    /// (`Connection: close`), as some servers do when their keep-alive time runs out: the client
    /// may send the next request on that connection before it has seen the close. Such a request
    /// was never answered, and is sent again on a new connection rather than counted as a failed
    /// attempt.
    #[tokio::test]
    async fn a_request_on_a_connection_the_receiver_closed_unsaid_is_sent_again() {
        use std::io::{BufRead as _, Read as _, Write as _};
        const DELIVERIES: usize = 40;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let receiver = std::thread::spawn(move || {
            let mut answered = 0;
            while answered < DELIVERIES {
                let (stream, _) = listener.accept().unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut reader = std::io::BufReader::new(stream);
                let mut length = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = Some(value.trim().parse().unwrap());
                        }
                    }
                }
                // A connection closed with nothing sent: the client's fresh one takes its place.
                let Some(length) = length else { continue };
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                reader
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .unwrap();
                answered += 1;
            }
        });
        let sink = build_with(&format!("url = \"{url}\""), &Secrets::default()).unwrap();
        let event = serde_json::json!({"trackingNumber": "tn-1"});
        for delivery in 0..DELIVERIES {
            if let Err(err) = sink.deliver(&delivery_of(&event)).await {
                panic!("delivery {delivery} failed: {}", err.message);
            }
        }
        receiver.join().unwrap();
    }
}
