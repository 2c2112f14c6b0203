//! ISC's own record of trigger invocations, read back to recover events a receiver missed.
//!
//! ISC never resends a Provisioning Completed event, but its invocation-status API (`GET
//! /beta/trigger-invocations/status`) keeps every invocation with the input it sent: successes
//! for 24 hours, failures for 48, at most 2,000 rows. Read back after an outage, those inputs are
//! the events sent while the receiver was down. This module fetches them and turns each into the
//! body ISC posts (the input with its `_metadata` envelope); importing them goes through the
//! ordinary ingest path, whose deduplication by invocation id drops what was received already.
//!
//! The boundary: [`Tenant`] talks HTTP to one tenant (an OAuth client-credentials token), and
//! [`Pages`] reads the status list page by page; [`Invocation`] reads one row and never fails on
//! a row it cannot use, it says why instead. Nothing here touches the store.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};

/// The trigger whose invocations are read back.
pub const TRIGGER_ID: &str = "idn:post-provisioning";

/// The most rows ISC keeps (its documentation: "may only fetch up to 2000 invocations").
pub const MAX_ROWS: usize = 2000;

/// Rows asked for per page: ISC's largest page.
pub const PAGE_SIZE: usize = 250;

/// Rows of the previous page asked for again with the next one. The list is oldest first and
/// its oldest rows expire as it is read: each that does moves the rest one place forward, and
/// without the overlap the row that moved across a page boundary would be missed.
const PAGE_OVERLAP: usize = 25;

/// The largest page body read: 250 rows of events of up to about 1 MB each.
const MAX_PAGE_BYTES: usize = 300 * 1024 * 1024;

/// The most rows a page may hold: what ISC keeps and a page more (it sends at most the 250
/// asked for). A page past it is refused unread.
const MAX_PAGE_ROWS: usize = MAX_ROWS + PAGE_SIZE;

/// The largest row read as JSON: an event of ISC's is about 1 MB at most. A larger row is
/// reported without its event, its text never made into a tree (which takes up to 60 times
/// the text's size: a row of 300 MB of `0,` would take tens of gigabytes).
const MAX_ROW_BYTES: usize = 4 * 1024 * 1024;

/// Tries for one request that ISC answers with 429 or a passing 5xx.
const TRIES: u32 = 5;

/// The longest wait asked for by a `Retry-After` that is honoured as given.
const LONGEST_RETRY_WAIT: Duration = Duration::from_secs(60);

/// A wait long enough to say so: the command would look stuck otherwise.
const NOTABLE_WAIT: Duration = Duration::from_secs(5);

/// What the tenant is asked with.
#[derive(Clone)]
pub enum Credentials {
    /// An API client (personal access token or OAuth client): exchanged for a token at
    /// `/oauth/token` with the client-credentials grant.
    Client { id: String, secret: String },
    /// A token obtained elsewhere, sent as it is.
    AccessToken(String),
}

impl std::fmt::Debug for Credentials {
    // Secrets never reach a log line or an error message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Client { id, .. } => write!(f, "Client {{ id: {id:?}, secret: *** }}"),
            Credentials::AccessToken(_) => f.write_str("AccessToken(***)"),
        }
    }
}

/// Why the tenant could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IscError {
    #[error(
        "the tenant URL {0:?} is not usable: give https://TENANT.api.identitynow.com (http:// only \
         for a loopback address)"
    )]
    BadUrl(String),
    #[error("{0} is not usable in an HTTP header: it holds characters other than visible ASCII")]
    BadCredential(&'static str),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the answer from {url} broke off: {reason}")]
    BrokeOff { url: String, reason: String },
    #[error("{url} answered {status}{}", explain(.status, .body))]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} answered something that is not {expected}: {reason}")]
    Unreadable {
        url: String,
        expected: &'static str,
        reason: String,
    },
}

/// What a refusal's status most likely means, and the start of the answer's body.
fn explain(status: &u16, body: &str) -> String {
    let hint = match status {
        400 => " (the tenant did not accept the request)",
        401 => " (the credentials were not accepted: check the client id and secret, or the token)",
        403 => {
            " (the client is not allowed to read trigger invocations: it needs the scope \
             sp:triggers:read or an admin role)"
        }
        404 => {
            " (no such API on this host: is it the tenant's API URL, https://TENANT.api.identitynow.com?)"
        }
        429 => " (rate limited, still after retrying)",
        _ => "",
    };
    if body.is_empty() {
        hint.to_owned()
    } else {
        format!("{hint}: {body}")
    }
}

/// Whether `value` can be sent in a header as it is: visible ASCII and spaces, not blank.
fn fits_a_header(value: &str) -> bool {
    !value.trim().is_empty() && value.bytes().all(|byte| (0x20..0x7f).contains(&byte))
}

/// One tenant's API.
#[derive(Debug)]
pub struct Tenant {
    base: url::Url,
    client: reqwest::Client,
}

impl Tenant {
    /// The tenant at `base` (`https://acme.api.identitynow.com`; a path after the host is kept,
    /// for a proxy in front of the API). Plain `http` is refused except on a loopback address,
    /// since the client secret and the events travel over it.
    pub fn new(base: &str, timeout: Duration) -> Result<Tenant, IscError> {
        // A URL with a user or password is refused, and not repeated: it may hold a secret.
        let shown = if base.contains('@') {
            "(a URL with a user or password)".to_owned()
        } else {
            crate::visible::shortened(base, 200)
        };
        let bad = || IscError::BadUrl(shown.clone());
        let mut url = url::Url::parse(base.trim()).map_err(|_| bad())?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            None => return Err(bad()),
        };
        let allowed = match url.scheme() {
            "https" => true,
            "http" => loopback,
            _ => false,
        };
        if !allowed || !url.username().is_empty() || url.password().is_some() {
            return Err(bad());
        }
        url.set_query(None);
        url.set_fragment(None);
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            // A redirect would carry the token to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("provtrail-backfill/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| IscError::Client(err.to_string()))?;
        Ok(Tenant { base: url, client })
    }

    fn endpoint(&self, path: &str) -> Result<url::Url, IscError> {
        // `base` ends with '/' and `path` is relative: joining keeps a proxy's path prefix.
        self.base
            .join(path)
            .map_err(|_| IscError::BadUrl(self.base.to_string()))
    }

    /// A bearer token for these credentials.
    pub async fn token(&self, credentials: &Credentials) -> Result<String, IscError> {
        let (id, secret) = match credentials {
            Credentials::AccessToken(token) if fits_a_header(token) => return Ok(token.clone()),
            Credentials::AccessToken(_) => return Err(IscError::BadCredential("the access token")),
            Credentials::Client { id, secret } => (id, secret),
        };
        let url = self.endpoint("oauth/token")?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", id)
            .append_pair("client_secret", secret)
            .finish();
        let body = self
            .send(
                || {
                    self.client
                        .post(url.clone())
                        .header(
                            reqwest::header::CONTENT_TYPE,
                            "application/x-www-form-urlencoded",
                        )
                        .header(reqwest::header::ACCEPT, "application/json")
                        .body(form.clone())
                },
                &[secret.as_str()],
            )
            .await?;
        let unreadable = |reason: String| IscError::Unreadable {
            url: url.to_string(),
            expected: "a token (JSON with access_token)",
            reason,
        };
        let answer: Value =
            serde_json::from_slice(&body).map_err(|err| unreadable(err.to_string()))?;
        match answer.get("access_token").and_then(Value::as_str) {
            Some(token) if fits_a_header(token) => Ok(token.to_owned()),
            Some(_) => Err(unreadable(
                "its access_token is blank or holds characters a header cannot".to_owned(),
            )),
            None => Err(unreadable("no access_token in it".to_owned())),
        }
    }

    /// The invocations of [`TRIGGER_ID`] that the tenant still keeps (of one subscription, when
    /// given), oldest first, a page at a time.
    pub fn invocations<'t>(
        &'t self,
        token: &str,
        credentials: &Credentials,
        subscription: Option<&str>,
    ) -> Pages<'t> {
        let mut filters = format!("triggerId eq {}", quoted(TRIGGER_ID));
        if let Some(subscription) = subscription {
            filters.push_str(&format!(" and subscriptionId eq {}", quoted(subscription)));
        }
        // Every secret the tenant could quote back in an answer.
        let mut secrets = vec![token.to_owned()];
        match credentials {
            Credentials::Client { secret, .. } => secrets.push(secret.clone()),
            Credentials::AccessToken(given) => secrets.push(given.clone()),
        }
        Pages {
            tenant: self,
            token: token.to_owned(),
            secrets,
            filters,
            subscription: subscription.map(str::to_owned),
            offset: 0,
            pages: 0,
            seen: HashMap::new(),
            changed: Vec::new(),
            ended: None,
            left_out: 0,
            gaps: Vec::new(),
            overlap: 0,
            confirming: false,
            widest: 0,
            last_count: 0,
            rereading_end: false,
            stepping_back: false,
        }
    }

    /// Sends the request that `build` makes, again after a 429 or a passing 5xx (after the
    /// answer's `Retry-After`, or 1, 2, 4 … seconds), and gives the body of a 2xx answer. The
    /// `secrets` never appear in an error, even when the tenant's answer quotes them.
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        secrets: &[&str],
    ) -> Result<bytes::Bytes, IscError> {
        let mut wait = Duration::from_secs(1);
        let mut tries = 0;
        loop {
            tries += 1;
            let request = build()
                .build()
                .map_err(|err| IscError::Client(error_chain(&err)))?;
            let url = request.url().as_str().to_owned();
            let answer = match self.client.execute(request).await {
                Ok(answer) => answer,
                // A refused connection is seldom a passing state: fewer tries for it. A
                // connection closed before any answer (a kept-alive one the tenant's side closed
                // as the request went out, a node restarting) is as passing as a timeout; what
                // is sent (the listing, the sign-in) changes nothing on the tenant.
                Err(err)
                    if ((err.is_timeout() || closed_before_answer(&err)) && tries < TRIES)
                        || (err.is_connect() && tries < 3) =>
                {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(LONGEST_RETRY_WAIT);
                    continue;
                }
                Err(err) => {
                    return Err(IscError::Unreachable {
                        url,
                        reason: error_chain(&err.without_url()),
                    });
                }
            };
            let status = answer.status();
            let passing = status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || matches!(status.as_u16(), 500 | 502..=504);
            if passing && tries < TRIES {
                let asked = answer
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(retry_after);
                let pause = asked.unwrap_or(wait).min(LONGEST_RETRY_WAIT);
                if pause >= NOTABLE_WAIT {
                    tracing::warn!(
                        status = status.as_u16(),
                        "the tenant answered {status}: trying again in {}s (try {} of {TRIES})",
                        pause.as_secs(),
                        tries + 1
                    );
                }
                tokio::time::sleep(pause).await;
                wait = (wait * 2).min(LONGEST_RETRY_WAIT);
                continue;
            }
            let body = match read_limited(answer, &url).await {
                Ok(body) => body,
                // A body that stopped coming (a timeout, a connection dropped half-way) is as
                // passing as an answer that never came.
                Err(IscError::BrokeOff { .. }) if tries < TRIES => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(LONGEST_RETRY_WAIT);
                    continue;
                }
                Err(err) => return Err(err),
            };
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body);
                return Err(IscError::Refused {
                    url,
                    status: status.as_u16(),
                    // On one line: a line break in it would read as a line of the command's
                    // own (`error: …`).
                    body: quotable(&text, secrets)
                        .map(|text| crate::visible::shortened(&one_line(&text), 300))
                        .unwrap_or_else(|| withheld(secrets).to_owned()),
                });
            }
            return Ok(body);
        }
    }
}

/// `text` with its line breaks, and the blanks around them, as one space.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Shortest secret masked in a quoted answer; with a shorter one the answer is not quoted at all
/// (masking every occurrence of a letter or two would garble it, and a search for it would
/// find it everywhere).
const SHORTEST_MASKED: usize = 8;

/// `text` fit to quote in an error: every secret in it (as written, JSON-escaped or
/// percent-encoded, in either case of hex digits; then, character by character, in the forms
/// and letter cases the routes' [`Redactor`](crate::routes::Redactor) knows) replaced by `***`;
/// `None` when it may still hold one (a secret too short to mask, or the start of one left after
/// masking, in any letter case: an upper-cased hex secret loses nothing).
fn quotable(text: &str, secrets: &[&str]) -> Option<String> {
    // Only the start of an answer is shown: the rest need not be searched.
    let mut text: String = text.chars().take(QUOTED_PREFIX).collect();
    let redactor = crate::routes::Redactor::default();
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        if secret.chars().count() < SHORTEST_MASKED {
            return None;
        }
        let json = Value::String((*secret).to_owned()).to_string();
        let json = json.trim_matches('"').to_owned();
        // The same with every character outside ASCII as `\uXXXX`, in lower and upper case.
        let ascii_json = |upper: bool| -> String {
            json.chars()
                .map(|c| {
                    if c.is_ascii() {
                        c.to_string()
                    } else {
                        c.encode_utf16(&mut [0; 2])
                            .iter()
                            .map(|unit| {
                                if upper {
                                    format!("\\u{unit:04X}")
                                } else {
                                    format!("\\u{unit:04x}")
                                }
                            })
                            .collect()
                    }
                })
                .collect()
        };
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let percent =
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        for form in [
            (*secret).to_owned(),
            ascii_json(false),
            ascii_json(true),
            json.clone(),
            lower_hex_escapes(&form),
            form,
            lower_hex_escapes(&percent),
            percent,
        ]
        .into_iter()
        .chain(base64_cores(secret))
        {
            if form.len() >= SHORTEST_MASKED {
                text = text.replace(&form, "***");
            }
        }
        redactor.add(secret);
    }
    let text = redactor.redact(&text);
    // Another encoding, or a cut, left a secret recognisable: eight of its characters in a row
    // are still there, once escapes are read and letters lower-cased.
    let plain = unescaped(&text).to_lowercase();
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        let chars: Vec<char> = secret.to_lowercase().chars().collect();
        for window in chars.windows(SHORTEST_MASKED) {
            if plain.contains(&window.iter().collect::<String>()) {
                return None;
            }
        }
    }
    Some(text)
}

/// What every base64 text holding `secret` holds of it, whatever the bytes before it (a Basic
/// credential, `id:secret`, included): for each of the three places the secret can start in a
/// group of three bytes, the characters that its bytes alone decide, in the standard and the
/// URL-safe alphabets.
fn base64_cores(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut cores = Vec::new();
    for shift in 0..3usize {
        let mut bytes = vec![0u8; shift];
        bytes.extend_from_slice(secret.as_bytes());
        // The characters wholly within the secret's bits: from the first that starts at or
        // after its first bit, to the last that ends at or before its last.
        let first = (shift * 8).div_ceil(6);
        let last = (bytes.len() * 8) / 6;
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = engine.encode(&bytes);
            if let Some(core) = encoded.get(first..last.min(encoded.len())) {
                cores.push(core.to_owned());
            }
        }
    }
    cores
}

/// Why [`quotable`] left an answer out.
fn withheld(secrets: &[&str]) -> &'static str {
    let too_short = secrets
        .iter()
        .any(|secret| !secret.is_empty() && secret.chars().count() < SHORTEST_MASKED);
    if too_short {
        "(its body is left out: a credential shorter than 8 characters cannot be told apart in \
         an answer, so none is quoted)"
    } else {
        "(its body is left out: it quotes a credential)"
    }
}

/// Most characters of an answer [`quotable`] looks at.
const QUOTED_PREFIX: usize = 4096;

/// `text` with its JSON escapes (`\u00e4`, surrogate pairs, `\/`) and percent escapes read, so
/// that what an escaped echo says can be searched for.
fn unescaped(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |at: usize, len: usize| -> Option<u32> {
        let digits = text.get(at..at + len)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| u32::from_str_radix(digits, 16).ok())
            .flatten()
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' if bytes.get(at + 1) == Some(&b'u') => match hex(at + 2, 4) {
                Some(high @ 0xD800..=0xDBFF) => {
                    let low = (bytes.get(at + 6) == Some(&b'\\')
                        && bytes.get(at + 7) == Some(&b'u'))
                    .then(|| hex(at + 8, 4))
                    .flatten()
                    .filter(|low| (0xDC00..=0xDFFF).contains(low));
                    let (c, len) = match low {
                        Some(low) => (
                            char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)),
                            12,
                        ),
                        None => (None, 6),
                    };
                    let mut buffer = [0; 4];
                    out.extend_from_slice(
                        c.unwrap_or('\u{fffd}').encode_utf8(&mut buffer).as_bytes(),
                    );
                    at += len;
                }
                Some(unit) => {
                    let mut buffer = [0; 4];
                    let c = char::from_u32(unit).unwrap_or('\u{fffd}');
                    out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
                    at += 6;
                }
                None => {
                    out.push(b'\\');
                    at += 1;
                }
            },
            b'\\' if bytes.get(at + 1).is_some_and(|b| b"/\"\\".contains(b)) => {
                out.push(bytes[at + 1]);
                at += 2;
            }
            b'%' => match hex(at + 1, 2) {
                Some(byte) => {
                    out.push(byte as u8);
                    at += 3;
                }
                None => {
                    out.push(b'%');
                    at += 1;
                }
            },
            byte => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The elements of a JSON array, as the slices of `body` that hold them, found by its brackets,
/// commas and strings alone, so that an element that is not valid JSON text on its own (bytes
/// that are not UTF-8, a lone surrogate escape) does not hide the others. `None` when `body`
/// is not shaped as an array of values, or holds more than [`MAX_PAGE_ROWS`] (whose slices
/// would take memory out of proportion to the page: 16 bytes for each `0,`).
fn split_array(body: &[u8]) -> Option<Vec<&[u8]>> {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = body.iter().position(|b| !is_space(b))?;
    if body[start] != b'[' {
        return None;
    }
    let mut elements = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut element_start = start + 1;
    for (at, &byte) in body.iter().enumerate().skip(start + 1) {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' if depth > 0 => depth -= 1,
            b']' if depth > 0 => depth -= 1,
            b',' | b']' if depth == 0 => {
                let element = &body[element_start..at];
                let blank = element.iter().all(is_space);
                if !blank {
                    if elements.len() == MAX_PAGE_ROWS {
                        return None;
                    }
                    elements.push(element);
                } else if byte == b',' || !elements.is_empty() {
                    // `[,` or `,,` or `,]`: not an array of values.
                    return None;
                }
                if byte == b']' {
                    return body[at + 1..].iter().all(is_space).then_some(elements);
                }
                element_start = at + 1;
            }
            b'}' => return None,
            _ => {}
        }
    }
    None
}

/// `text` made valid JSON text: bytes that are not UTF-8, and `\u` escapes of surrogates that
/// are not a high one followed by a low one, become U+FFFD.
fn repaired_json_text(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let surrogate = |at: usize| -> Option<u16> {
        let hex = text.get(at + 2..at + 6)?;
        if !text[at..].starts_with("\\u") {
            return None;
        }
        u16::from_str_radix(hex, 16)
            .ok()
            .filter(|unit| (0xD800..=0xDFFF).contains(unit))
    };
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while at < text.len() {
        let Some(rest) = text.get(at..) else { break };
        if !rest.starts_with('\\') {
            let c = rest.chars().next().unwrap_or('\u{fffd}');
            out.push(c);
            at += c.len_utf8();
            continue;
        }
        match surrogate(at) {
            // A high surrogate followed by a low one is a character.
            Some(0xD800..=0xDBFF)
                if surrogate(at + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) =>
            {
                out.push_str(&text[at..at + 12]);
                at += 12;
            }
            Some(_) => {
                out.push_str("\\ufffd");
                at += 6;
            }
            // Any other escape, `\\` included, is copied whole.
            None => {
                let escape_len = rest.chars().nth(1).map_or(1, |c| 1 + c.len_utf8());
                out.push_str(&rest[..escape_len]);
                at += escape_len;
            }
        }
    }
    out
}

/// `text` with the two hex digits after each `%` in lower case.
fn lower_hex_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lower = 0;
    for c in text.chars() {
        if lower > 0 {
            out.push(c.to_ascii_lowercase());
            lower -= 1;
        } else {
            out.push(c);
            if c == '%' {
                lower = 2;
            }
        }
    }
    out
}

/// Why the listing ended early; `None` from [`Pages::ended`] is a listing read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Pages kept coming past the most rows ISC keeps, or past the most pages such rows can
    /// take: the tenant does not page as documented.
    TooManyPages { rows: usize, pages: usize },
    /// A page held only rows already read: the tenant does not page as documented.
    NoNewRows { offset: usize },
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::TooManyPages { rows, .. } if *rows > MAX_ROWS => write!(
                f,
                "the tenant kept listing rows past {rows}, more than the {MAX_ROWS} ISC keeps: \
                 stopped there, and rows after them may be missing"
            ),
            Ended::TooManyPages { rows, pages } => write!(
                f,
                "the tenant gave {rows} rows in {pages} pages, far fewer a page than asked for: \
                 stopped there, and rows after them may be missing"
            ),
            Ended::NoNewRows { offset } => write!(
                f,
                "the page at offset {offset} held only rows already read (the tenant does not \
                 page): stopped there, and rows after them may be missing"
            ),
        }
    }
}

impl std::fmt::Debug for Pages<'_> {
    // The token stays out of every log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("filters", &self.filters)
            .field("offset", &self.offset)
            .field("pages", &self.pages)
            .field("rows", &self.seen.len())
            .finish_non_exhaustive()
    }
}

/// The status list, read a page at a time ([`Tenant::invocations`]).
pub struct Pages<'t> {
    tenant: &'t Tenant,
    token: String,
    /// Masked in the tenant's answers quoted in errors.
    secrets: Vec<String>,
    filters: String,
    subscription: Option<String>,
    offset: usize,
    pages: usize,
    /// The rows given so far, by id (or by what they hold, without one), each with a digest of
    /// its event: a row listed again (the pages overlap) is given once.
    seen: HashMap<String, u64>,
    /// Ids listed again with another event than the one given first, each once.
    changed: Vec<String>,
    /// Set once the listing is over: `Some(None)` read to its end.
    ended: Option<Option<Ended>>,
    /// Rows of another trigger or subscription than asked for.
    left_out: usize,
    /// Offsets of pages that shared no row with the page before.
    gaps: Vec<usize>,
    /// Rows of the page before that the next page is asked for again.
    overlap: usize,
    /// Whether the next page is asked for to confirm that the list has ended.
    confirming: bool,
    /// The most rows a page has held: the tenant's page size, as far as it has shown it.
    widest: usize,
    /// Rows of the page before.
    last_count: usize,
    /// Whether the pages since the last empty one are a second look at the list's end (see
    /// [`Pages::next`]).
    rereading_end: bool,
    /// Whether that second look is still stepping back to rows read before.
    stepping_back: bool,
}

impl Pages<'_> {
    /// The rows of the next page not given before, or `None` once the list is read; rows of
    /// another trigger or subscription than asked for are left out (the tenant's filter is not
    /// taken on trust).
    pub async fn next(&mut self) -> Result<Option<Vec<Invocation>>, IscError> {
        if self.ended.is_some() {
            return Ok(None);
        }
        // ISC keeps at most MAX_ROWS; a tenant that kept listing would otherwise be read for ever.
        // Pages may be shorter than asked (see below), so the pages are bounded as if each
        // brought ten new rows, and the rows by what ISC keeps and one page more.
        let most_pages = MAX_ROWS / 10 + 2;
        if self.pages == most_pages || self.seen.len() > MAX_ROWS + PAGE_SIZE {
            self.ended = Some(Some(Ended::TooManyPages {
                rows: self.seen.len(),
                pages: self.pages,
            }));
            return Ok(None);
        }
        let tenant = self.tenant;
        let mut url = tenant.endpoint("beta/trigger-invocations/status")?;
        url.query_pairs_mut()
            .append_pair("limit", &PAGE_SIZE.to_string())
            .append_pair("offset", &self.offset.to_string())
            .append_pair("sorters", "created")
            .append_pair("filters", &self.filters);
        let token = self.token.as_str();
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        let body = tenant
            .send(
                || {
                    tenant
                        .client
                        .get(url.clone())
                        .bearer_auth(token)
                        .header(reqwest::header::ACCEPT, "application/json")
                        // The v2024 path asks for it; the beta path ignores it.
                        .header("X-SailPoint-Experimental", "true")
                },
                &secrets,
            )
            .await?;
        self.pages += 1;
        let unreadable = |reason: String| IscError::Unreadable {
            url: url.to_string(),
            expected: "a list of invocation statuses",
            reason,
        };
        // Each row read on its own, with what it is known by when it has no id (a digest of
        // what it holds), so that the overlap does not give it twice. The page is never made
        // into one tree: a tree takes many times the text's size. One row that is not JSON text
        // (invalid UTF-8, a lone surrogate escape) does not cost the others either.
        let page: Vec<(Invocation, String)> = match split_array(&body) {
            Some(rows) => rows.into_iter().map(Invocation::from_row_text).collect(),
            None => {
                let reason = match serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
                    Err(err) => err.to_string(),
                    Ok(_) if body.trim_ascii_start().starts_with(b"[") => format!(
                        "it holds more than {MAX_PAGE_ROWS} rows, where {PAGE_SIZE} were asked for"
                    ),
                    Ok(_) => "not a JSON array".to_owned(),
                };
                return Err(unreadable(reason));
            }
        };
        let count = page.len();
        let mut rows = Vec::new();
        let mut new = 0;
        for (invocation, text) in page {
            let key = if invocation.id.is_empty() {
                text
            } else {
                format!("id\0{}", invocation.id)
            };
            let digest = event_digest(&invocation);
            match self.seen.entry(key) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    // Its status may change between pages; its event may not. The first is
                    // the one given: say so rather than drop the other without a word.
                    if *first.get() != digest
                        && !invocation.id.is_empty()
                        && !self.changed.contains(&invocation.id)
                        && self.changed.len() < MAX_CHANGED
                    {
                        self.changed.push(invocation.id.clone());
                    }
                    continue;
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(digest);
                }
            }
            new += 1;
            let other_trigger = invocation
                .trigger_id
                .as_deref()
                .is_some_and(|trigger| trigger != TRIGGER_ID);
            let other_subscription = match (&self.subscription, &invocation.subscription_id) {
                (Some(wanted), Some(found)) => wanted != found,
                _ => false,
            };
            if other_trigger || other_subscription {
                self.left_out += 1;
            } else {
                rows.push(invocation);
            }
        }
        // After the first page, one that repeats none of the overlap asked for was moved on by
        // more than it: rows between the two may have been missed. So was an empty one after a
        // full page, which had rows after it that moved back past the overlap; after a short
        // page (the last) or one that only confirms the end, rows that expired meanwhile only
        // shortened the list.
        let after_full_page = self.last_count == self.widest && !self.confirming;
        if self.overlap > 0 && ((count > 0 && new == count) || (count == 0 && after_full_page)) {
            // A page read again (a second look at the list's end) is one gap, said once.
            if !self.gaps.contains(&self.offset) {
                self.gaps.push(self.offset);
            }
        }
        self.widest = self.widest.max(count);
        self.last_count = count;
        // An empty page is the end only once the list's end has been read again from rows read
        // before: rows that expired since the page before moved the rest back, and rows that
        // arrived meanwhile would sit before this offset, never read.
        if count == 0 && !self.rereading_end && self.offset > 0 {
            self.rereading_end = true;
            self.stepping_back = true;
            self.confirming = false;
            self.overlap = 0;
            self.offset = self.offset.saturating_sub(self.widest.max(1));
            return Ok(Some(rows));
        }
        if self.rereading_end {
            // Empty again: the list shrank by more than a page (its oldest rows expired while
            // its end was read), and rows that arrived meanwhile sit further back. So does a
            // page of rows all new: rows before it may be new too. Step back again, to a page
            // that holds rows read before (or to the list's start).
            if self.stepping_back && self.offset > 0 && (count == 0 || new == count) {
                self.offset = self.offset.saturating_sub(self.widest.max(1));
                return Ok(Some(rows));
            }
            // From there the list is read on, pages of rows read before included (the steps back
            // read ahead), to an empty page: a short one is not taken for the last, a tenant
            // may give fewer rows than asked. Each page moves on by at least half of it.
            self.stepping_back = false;
            if count == 0 {
                self.ended = Some(None);
                return Ok(Some(rows));
            }
            self.overlap = PAGE_OVERLAP.min(count / 2);
            self.offset += count - self.overlap;
            return Ok(Some(rows));
        }
        // A page shorter than asked is not taken for the last: a tenant may give fewer rows a
        // page than asked for, and stopping there would leave the rest out without a word. So
        // the next page overlaps this one by at most half of it (a page of a few rows still
        // moves on), and the list ends only when a page has brought nothing but the overlap
        // and a last page, overlapping it by one row, brings nothing new either.
        if count == 0 || (new == 0 && self.confirming && count <= 1) {
            self.ended = Some(None);
        } else if new == 0 && count <= self.overlap.max(1) {
            self.confirming = true;
            self.offset += count - 1;
            self.overlap = 1;
        } else if new == 0 {
            self.ended = Some(Some(Ended::NoNewRows {
                offset: self.offset,
            }));
        } else {
            self.confirming = false;
            self.overlap = PAGE_OVERLAP.min(count / 2);
            self.offset += count - self.overlap;
        }
        Ok(Some(rows))
    }

    /// Reads the next pages with `token`, a new one for the same credentials (the one before
    /// expired): the page that was refused is asked for again by the next [`Pages::next`].
    pub fn renew_token(&mut self, token: String) {
        self.secrets.push(token.clone());
        self.token = token;
    }

    /// Pages read so far.
    pub fn pages_read(&self) -> usize {
        self.pages
    }

    /// Why the listing stopped early, once [`Pages::next`] has given `None`.
    pub fn ended(&self) -> Option<&Ended> {
        self.ended.as_ref().and_then(Option::as_ref)
    }

    /// Rows of another trigger or subscription than asked for, which were left out.
    pub fn left_out(&self) -> usize {
        self.left_out
    }

    /// Offsets of the pages that shared no row with the page before (rows may be missing).
    pub fn gaps(&self) -> &[usize] {
        &self.gaps
    }

    /// Ids of invocations the tenant listed again with another event than the one given first
    /// (at most [`MAX_CHANGED`]).
    pub fn changed(&self) -> &[String] {
        &self.changed
    }
}

/// Most ids [`Pages::changed`] keeps.
pub const MAX_CHANGED: usize = 100;

/// A digest of the event a row holds (or of why it holds none).
fn event_digest(invocation: &Invocation) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match &invocation.body {
        Ok(body) => body.hash(&mut hasher),
        Err(reason) => reason.hash(&mut hasher),
    }
    hasher.finish()
}

/// A `Retry-After` value: seconds, or an HTTP date (RFC 9110, section 10.2.3), as the wait
/// from now.
pub(crate) fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// The body of an answer, refused past [`MAX_PAGE_BYTES`].
async fn read_limited(mut answer: reqwest::Response, url: &str) -> Result<bytes::Bytes, IscError> {
    let too_large = || IscError::Unreadable {
        url: url.to_owned(),
        expected: "an answer of a readable size",
        reason: format!("it is over {} MiB", MAX_PAGE_BYTES / (1024 * 1024)),
    };
    if answer
        .content_length()
        .is_some_and(|length| length > MAX_PAGE_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match answer.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_PAGE_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.into()),
            Err(err) => {
                return Err(IscError::BrokeOff {
                    url: url.to_owned(),
                    reason: error_chain(&err.without_url()),
                });
            }
        }
    }
}

/// Whether the request failed with no answer begun, on a connection that was made: closed or
/// reset by the other side. Not a refused connection (`is_connect`), a certificate refused, or
/// a request that could not be built.
fn closed_before_answer(err: &reqwest::Error) -> bool {
    if !err.is_request() || err.is_connect() {
        return false;
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() || hyper.is_canceled() {
                return true;
            }
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

/// An error with its causes, which reqwest keeps apart (`error sending request` says little).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What a row without an id is known by: a digest of its text (SHA-256, so that two rows are
/// never taken for one), not the text, which the pages would keep for the whole listing.
fn row_digest(text: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(text);
    let mut key = String::with_capacity(4 + 64);
    key.push_str("row\0");
    for byte in digest {
        key.push_str(&format!("{byte:02x}"));
    }
    key
}

/// A value in ISC's filter syntax: double-quoted, with `"` and `\` escaped.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One row of the invocation-status list, as far as it could be read.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The invocation's id: what ISC puts in the event's `_metadata.invocationId`. Empty when
    /// the row has none (or not a string).
    pub id: String,
    pub trigger_id: Option<String>,
    pub subscription_id: Option<String>,
    pub subscription_name: Option<String>,
    /// `REAL_TIME`, or `TEST` for a test invocation.
    pub kind: Option<String>,
    /// When ISC created the invocation (ISO-8601, as ISC wrote it).
    pub created: Option<String>,
    /// The body ISC posted (see [`Invocation::event_body`]), or why the row holds no event that
    /// can be used. Made when the row is read, so that a page's rows do not keep their trees.
    body: Result<Vec<u8>, &'static str>,
}

impl Invocation {
    /// Reads one row. A row without a usable input is kept, with the reason, so that it is
    /// reported rather than passed over.
    pub fn from_row(row: &Value) -> Invocation {
        let text = |key: &str| row.get(key).and_then(Value::as_str).map(str::to_owned);
        let input = match row
            .get("startInvocationInput")
            .and_then(|start| start.get("input"))
        {
            Some(Value::Object(input)) => Ok(input),
            Some(Value::Null) | None => Err("the row holds no input"),
            Some(_) => Err("the row's input is not a JSON object"),
        };
        // A blank id is none.
        let id = text("id")
            .filter(|id| !id.trim().is_empty())
            .unwrap_or_default();
        let body = input.and_then(|input| event_body(&id, input));
        Invocation {
            id,
            trigger_id: text("triggerId").or_else(|| {
                row.get("startInvocationInput")
                    .and_then(|start| start.get("triggerId"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }),
            subscription_id: text("subscriptionId"),
            subscription_name: text("subscriptionName"),
            kind: text("type"),
            created: text("created"),
            body,
        }
    }

    /// Reads one row from its text, which may not be valid JSON text on its own although the
    /// page around it is well formed: such a row is kept with the reason, and with its id, its
    /// trigger and its subscription when a repaired copy (bad bytes and lone surrogates made
    /// U+FFFD) shows them. Its event is not recovered: the repaired copy is not what ISC sent.
    /// Also gives what the row is known by when it has no id.
    fn from_row_text(text: &[u8]) -> (Invocation, String) {
        if text.len() > MAX_ROW_BYTES {
            let mut invocation = Invocation::from_row(&Value::Null);
            invocation.body = Err(
                "the row is over 4 MiB, larger than any event ISC sends: it \
                is not read",
            );
            return (invocation, row_digest(text));
        }
        if let Ok(row) = serde_json::from_slice::<Value>(text) {
            let key = row_digest(row.to_string().as_bytes());
            return (Invocation::from_row(&row), key);
        }
        let repaired = repaired_json_text(text);
        let row = serde_json::from_str::<Value>(&repaired).unwrap_or(Value::Null);
        let mut invocation = Invocation::from_row(&row);
        invocation.body = Err("the row is not valid JSON on its own (bytes that are not \
            UTF-8, a lone surrogate escape, nesting past the parser's depth, or broken syntax): \
            its event cannot be recovered as ISC sent it");
        (invocation, row_digest(repaired.as_bytes()))
    }

    /// Whether ISC marks it as a test invocation (a subscription's "Test" button, or the test
    /// invocation API): its input is an example event, not a provisioning outcome.
    pub fn is_test(&self) -> bool {
        self.kind
            .as_deref()
            .is_some_and(|kind| kind.eq_ignore_ascii_case("TEST"))
    }

    /// The body ISC posted: the input, with the `_metadata` envelope the trigger service adds,
    /// whose `invocationId` is the row's id, so that the event's deduplication key is the one
    /// the live delivery carried. An envelope already in the input keeps its other members;
    /// one that is not an object is replaced. `Err` says why there is no event to recover.
    pub fn event_body(&self) -> Result<Vec<u8>, &'static str> {
        self.body.clone()
    }
}

/// The body ISC posted for the row `id` with `input` (see [`Invocation::event_body`]).
fn event_body(id: &str, input: &Map<String, Value>) -> Result<Vec<u8>, &'static str> {
    let mut event = input.clone();
    // Taken out in place (a plain `remove` would move the last member into its place) and
    // put back at the end, where ISC's envelope is.
    let mut metadata = match event.shift_remove("_metadata") {
        Some(Value::Object(metadata)) => metadata,
        _ => Map::new(),
    };
    if metadata.is_empty() {
        metadata.insert("triggerId".to_owned(), Value::String(TRIGGER_ID.to_owned()));
        metadata.insert(
            "triggerType".to_owned(),
            Value::String("fireAndForget".to_owned()),
        );
    }
    if !id.is_empty() {
        metadata.insert("invocationId".to_owned(), Value::String(id.to_owned()));
    } else if metadata
        .get("invocationId")
        .and_then(Value::as_str)
        .is_none_or(|id| id.trim().is_empty())
    {
        return Err("the row has no invocation id");
    }
    event.insert("_metadata".to_owned(), Value::Object(metadata));
    Ok(Value::Object(event).to_string().into_bytes())
}

#[cfg(test)]
mod tests {

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        assert_eq!(retry_after(" 7 "), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let waited = retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(waited > Duration::from_secs(100) && waited <= Duration::from_secs(120));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon"), None);
    }
    use super::*;
    use serde_json::json;

    #[test]
    fn a_row_becomes_the_body_isc_posted_with_its_invocation_id() {
        // Read from text, as the rows are, so that numbers keep their digits.
        let row: Value = serde_json::from_str(
            r#"{
                "id": "0f11f2a4-7c94-4bf3-a2bd-742580fe3bde",
                "triggerId": "idn:post-provisioning",
                "subscriptionId": "sub-1",
                "subscriptionName": "provtrail",
                "type": "REAL_TIME",
                "created": "2026-11-30T10:00:00.000Z",
                "startInvocationInput": {
                    "triggerId": "idn:post-provisioning",
                    "input": {"trackingNumber": "t1", "count": 1.50},
                    "contentJson": {}
                }
            }"#,
        )
        .unwrap();
        let invocation = Invocation::from_row(&row);
        assert!(!invocation.is_test());
        // The input's members in their order, the number as ISC wrote it (not re-read as a
        // double), then the envelope.
        assert_eq!(
            String::from_utf8(invocation.event_body().unwrap()).unwrap(),
            r#"{"trackingNumber":"t1","count":1.50,"_metadata":{"triggerId":"idn:post-provisioning","triggerType":"fireAndForget","invocationId":"0f11f2a4-7c94-4bf3-a2bd-742580fe3bde"}}"#
        );
    }

    #[test]
    fn an_envelope_in_the_input_gets_the_rows_invocation_id() {
        let body = |row: Value| -> Value {
            serde_json::from_slice(&Invocation::from_row(&row).event_body().unwrap()).unwrap()
        };
        let input = json!({"_metadata": {"invocationId": "other", "extra": 1}, "a": 1, "b": 2});
        let row = json!({"id": "row-id", "startInvocationInput": {"input": input}});
        let made = body(row);
        assert_eq!(
            made,
            json!({"a": 1, "b": 2, "_metadata": {"invocationId": "row-id", "extra": 1}})
        );
        let keys: Vec<&String> = made.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["a", "b", "_metadata"],
            "the members keep their order"
        );
        // An envelope that is not an object is replaced.
        let row = json!({"id": "r", "startInvocationInput": {"input": {"_metadata": "x"}}});
        assert_eq!(
            body(row)["_metadata"],
            json!({"triggerId": TRIGGER_ID, "triggerType": "fireAndForget", "invocationId": "r"})
        );
        // Without a row id, the input's own id is the event's.
        let row =
            json!({"startInvocationInput": {"input": {"_metadata": {"invocationId": "own"}}}});
        assert_eq!(body(row)["_metadata"]["invocationId"], "own");
        // A blank row id is none.
        let input = json!({"_metadata": {"invocationId": "own"}});
        let row = json!({"id": "  ", "startInvocationInput": {"input": input}});
        assert_eq!(body(row)["_metadata"]["invocationId"], "own");
    }

    #[test]
    fn rows_without_a_usable_input_say_why() {
        for (row, reason) in [
            (json!({"id": "a"}), "the row holds no input"),
            (
                json!({"id": "a", "startInvocationInput": {"input": null}}),
                "the row holds no input",
            ),
            (
                json!({"id": "a", "startInvocationInput": {"input": "text"}}),
                "the row's input is not a JSON object",
            ),
            (
                json!({"startInvocationInput": {"input": {}}}),
                "the row has no invocation id",
            ),
            (json!("not a row"), "the row holds no input"),
        ] {
            assert_eq!(
                Invocation::from_row(&row).event_body(),
                Err(reason),
                "{row}"
            );
        }
        let test = Invocation::from_row(&json!({"id": "a", "type": "TEST"}));
        assert!(test.is_test());
    }

    #[test]
    fn tenant_urls_must_be_https_except_on_loopback() {
        let timeout = Duration::from_secs(5);
        for good in [
            "https://acme.api.identitynow.com",
            "https://acme.api.identitynow.com/",
            "http://127.0.0.1:8080",
            "http://localhost:9000/prefix",
            "http://[::1]:8080",
        ] {
            assert!(Tenant::new(good, timeout).is_ok(), "{good}");
        }
        for bad in [
            "http://acme.api.identitynow.com",
            "ftp://127.0.0.1",
            "acme",
            "https://user:pass@acme.api.identitynow.com",
            "",
        ] {
            assert!(
                matches!(Tenant::new(bad, timeout), Err(IscError::BadUrl(_))),
                "{bad}"
            );
        }
        let tenant = Tenant::new("http://localhost:9000/prefix?x=1", timeout).unwrap();
        assert_eq!(
            tenant.endpoint("oauth/token").unwrap().as_str(),
            "http://localhost:9000/prefix/oauth/token"
        );
    }

    #[test]
    fn secrets_are_masked_and_tokens_must_fit_a_header() {
        let secret = "s3cret-\"q\\ü x";
        let quoted = serde_json::json!({"error": format!("bad secret {secret}")}).to_string();
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        for answer in [
            format!("bad secret {secret} for {secret}"),
            quoted,
            format!("client_secret={form}"),
            format!("client_secret={}", form.to_lowercase()),
            format!(
                "{}",
                percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
            ),
            "{\"e\":\"s3cret-\\\"q\\\\\\u00fc x\"}".to_owned(),
        ] {
            let shown = quotable(&answer, &[secret, ""]);
            assert!(
                shown
                    .as_deref()
                    .is_none_or(|shown| !shown.contains("s3cret")),
                "{answer} -> {shown:?}"
            );
        }
        assert_eq!(
            quotable("bad secret s3cret-long", &["s3cret-long"]).as_deref(),
            Some("bad secret ***")
        );
        // Why an answer is left out: a credential it quotes, or one too short to mask.
        assert_eq!(quotable("nothing here", &["short", ""]), None);
        assert!(withheld(&["short", ""]).contains("shorter than 8 characters"));
        assert!(withheld(&["s3cret-long", ""]).ends_with("it quotes a credential)"));
        let mixed = "S3CR3T/Mixed";
        assert_eq!(
            quotable("client_secret=S3CR3T%2fMixed", &[mixed]).as_deref(),
            Some("client_secret=***")
        );
        // In another letter case, as a tenant that upper-cases what it quotes: masked, or the
        // answer left out; never shown.
        let hex = "9f2c4e6a0b1d8d0f9f2c4e6a0b1d8d0f";
        for answer in [
            format!("invalid client secret {}", hex.to_uppercase()),
            format!("invalid client secret {}", &hex.to_uppercase()[..12]),
            format!(
                "{{\"e\":\"{}\"}}",
                hex.chars()
                    .map(|c| format!("\\u{:04x}", c as u32))
                    .collect::<String>()
            ),
        ] {
            let shown = quotable(&answer, &[hex]);
            assert!(
                shown.as_deref().is_none_or(|shown| {
                    !shown.to_lowercase().contains(&hex[..8]) && !shown.contains("\\u0039")
                }),
                "{answer} -> {shown:?}"
            );
        }
        // Cut short and escaped, or a secret outside ASCII escaped character by character, or
        // its end alone: eight characters of it in a row are never shown.
        let escaped = |text: &str| -> String {
            text.encode_utf16()
                .map(|unit| format!("\\u{unit:04x}"))
                .collect()
        };
        for (secret, answer) in [
            (hex, format!("client secret {}", escaped(&hex[..12]))),
            ("Ab3$xY9!kLm#Qr7&Zz+/=", "secret Ab3%24xY9%21kL".to_owned()),
            (
                "abcdefgh\u{1f511}ijklmnop",
                escaped("abcdefgh\u{1f511}ijklmnop"),
            ),
            ("p\u{e4}sswörd-Key42-long", escaped("p\u{e4}sswörd")),
            (hex, format!("ends with {}", &hex[hex.len() - 8..])),
        ] {
            assert_eq!(quotable(&answer, &[secret]), None, "{answer}");
        }
        // Other text is still quoted.
        assert_eq!(
            quotable("{\"error\":\"JWT expired\"}", &[hex]).as_deref(),
            Some("{\"error\":\"JWT expired\"}")
        );
        // A secret too short to mask: nothing of the answer is quoted.
        assert_eq!(quotable("no entry for abc", &["abc"]), None);
        assert_eq!(
            quotable("nothing secret here", &["a-long-secret"]).as_deref(),
            Some("nothing secret here")
        );
        assert!(fits_a_header("eyJhbGciOi.J9-_~"));
        for bad in ["", "  ", "a\nb", "a\rb", "caf\u{e9}", "a\u{7f}"] {
            assert!(!fits_a_header(bad), "{bad:?}");
        }
    }

    /// A secret in base64, alone or after other bytes (a Basic credential), is masked, and a
    /// quoted answer is one line.
    #[test]
    fn a_secret_in_base64_is_masked_wherever_it_starts() {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let secret = "SUPERSECRET-abcdef123456";
        for prefix in ["", "c", "cl", "client:", "client-id:"] {
            for engine in [&STANDARD, &URL_SAFE] {
                let encoded = engine.encode(format!("{prefix}{secret}"));
                let shown = quotable(&format!("{{\"seen\": \"{encoded}\"}}"), &[secret])
                    .unwrap_or_default();
                assert!(!shown.contains(&encoded), "{prefix:?}: {shown}");
                // What is left of it decodes to no part of the secret.
                for word in shown.split(|c: char| !c.is_ascii_alphanumeric()) {
                    if let Ok(bytes) = STANDARD.decode(word) {
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        assert!(!text.contains("SECRET-abc"), "{prefix:?}: {shown}");
                    }
                }
            }
        }
        assert_eq!(one_line("a\n error: FORGED \r\n\nb"), "a error: FORGED b");
    }

    #[test]
    fn a_page_is_split_into_its_rows_by_brackets_commas_and_strings_alone() {
        let body = b" [ {\"a\":\"x,]}\\\"\"}, [1,[2]] ,\"s\xff\" , 3 ]\n";
        let rows = split_array(body).unwrap();
        let rows: Vec<&[u8]> = rows.iter().map(|row| row.trim_ascii()).collect();
        assert_eq!(
            rows,
            [&b"{\"a\":\"x,]}\\\"\"}"[..], b"[1,[2]]", b"\"s\xff\"", b"3"]
        );
        assert_eq!(split_array(b"[]").unwrap().len(), 0);
        for bad in [
            &b"{}"[..],
            b"[1,,2]",
            b"[1,]",
            b"[,1]",
            b"[1",
            b"[1] x",
            b"[1}]",
            b"\"[\"",
        ] {
            assert!(
                split_array(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// A page of more rows than ISC sends is refused before its rows are collected (16 bytes of
    /// slice for every two bytes of `0,`), and a row larger than any event is not made into a
    /// tree (up to 60 times its size); rows without an id are known by a digest, not their text.
    #[test]
    fn a_page_of_too_many_rows_and_a_row_too_large_are_not_read() {
        let mut page = b"[0".to_vec();
        page.extend(b",0".repeat(MAX_PAGE_ROWS - 1));
        page.push(b']');
        assert_eq!(split_array(&page).unwrap().len(), MAX_PAGE_ROWS);
        page.truncate(page.len() - 1);
        page.extend(b",0]");
        assert!(split_array(&page).is_none());

        let mut row = br#"{"id":"inv-big","startInvocationInput":{"input":{"n":[0"#.to_vec();
        row.extend(b",0".repeat(MAX_ROW_BYTES / 2));
        row.extend(b"]}}}");
        let (invocation, key) = Invocation::from_row_text(&row);
        let reason = invocation.event_body().unwrap_err();
        assert!(reason.contains("over 4 MiB"), "{reason}");
        assert!(key.len() < 100, "{}", key.len());
        let (small, key) = Invocation::from_row_text(br#"{"startInvocationInput":{}}"#);
        assert!(small.id.is_empty());
        assert_eq!(key.len(), 4 + 64);
        assert_ne!(key, Invocation::from_row_text(br#"{"type":"TEST"}"#).1);
    }

    #[test]
    fn a_row_that_is_not_json_text_is_named_with_its_id_and_gives_no_event() {
        for text in [
            &b"{\"id\":\"inv-9\",\"triggerId\":\"idn:post-provisioning\",\"startInvocationInput\":{\"input\":{\"trackingNumber\":\"a\\ud800b\"}}}"[..],
            b"{\"id\":\"inv-9\",\"triggerId\":\"idn:post-provisioning\",\"startInvocationInput\":{\"input\":{\"trackingNumber\":\"a\xff\xfeb\"}}}",
        ] {
            let (invocation, _) = Invocation::from_row_text(text);
            assert_eq!(invocation.id, "inv-9");
            assert_eq!(invocation.trigger_id.as_deref(), Some(TRIGGER_ID));
            let reason = invocation.event_body().unwrap_err();
            assert!(reason.contains("not valid JSON on its own"), "{reason}");
        }
        // A pair of surrogates is a character, and `\\` before a `u` is no escape of one.
        assert_eq!(
            repaired_json_text(b"\"\\ud83d\\ude00 \\\\ud800 \\udc00\\ud800\""),
            "\"\\ud83d\\ude00 \\\\ud800 \\ufffd\\ufffd\""
        );
        // A row that is valid on its own is read as any other.
        let (invocation, _) = Invocation::from_row_text(
            b"{\"id\":\"inv-1\",\"startInvocationInput\":{\"input\":{\"a\":1}}}",
        );
        assert!(invocation.event_body().is_ok());
    }

    #[test]
    fn filter_values_are_quoted_with_escapes() {
        assert_eq!(quoted("idn:post-provisioning"), "\"idn:post-provisioning\"");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn credentials_never_print_their_secret() {
        let client = Credentials::Client {
            id: "client".to_owned(),
            secret: "s3cret".to_owned(),
        };
        assert!(!format!("{client:?}").contains("s3cret"));
        assert!(!format!("{:?}", Credentials::AccessToken("tok".to_owned())).contains("tok"));
    }
}
