//! Posting events to a subscriber, as ISC's trigger service does: used by `provtrail send` and
//! `provtrail demo`. Concurrent, optionally rate-limited, and it records what every request got.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use tokio::sync::{Mutex, mpsc};

/// Credentials to present.
#[derive(Clone, Default)]
pub enum Auth {
    /// None.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic base64(user:password)`, given as `user:password`.
    Basic(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::Bearer(_) => "Bearer(…)",
            Auth::Basic(_) => "Basic(…)",
        })
    }
}

impl Auth {
    fn header(&self) -> Option<HeaderValue> {
        use base64::Engine as _;
        let value = match self {
            Auth::None => return None,
            Auth::Bearer(token) => format!("Bearer {token}"),
            Auth::Basic(pair) => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ),
        };
        let mut value = HeaderValue::from_str(&value).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// `text` with the credentials masked, in every form a receiver may echo them in (the
    /// token, the password, the `user:password` pair and its base64): an answer that quotes the
    /// request's `Authorization` would otherwise print them.
    fn masked(&self, text: &str) -> String {
        use base64::Engine as _;
        let redactor = crate::routes::Redactor::default();
        match self {
            Auth::None => return text.to_owned(),
            Auth::Bearer(token) => redactor.add(token),
            Auth::Basic(pair) => {
                if let Some((_, password)) = pair.split_once(':') {
                    redactor.add(password);
                }
                redactor.add_whole(pair);
                redactor.add_whole(&base64::engine::general_purpose::STANDARD.encode(pair));
            }
        }
        redactor.redact(text)
    }
}

/// Set once a run is interrupted (Ctrl-C): no document is sent again, or taken, after it, and
/// whoever waits to send one again stops waiting. [`send_all`] says when it is done with it, so
/// that whoever listens for the interruption can stop listening.
#[derive(Debug, Clone, Default)]
pub struct Interruption(Arc<InterruptionState>);

#[derive(Debug, Default)]
struct InterruptionState {
    interrupted: std::sync::atomic::AtomicBool,
    finished: std::sync::atomic::AtomicBool,
    changed: tokio::sync::Notify,
}

impl Interruption {
    /// Interrupts the run, waking those who wait.
    pub fn interrupt(&self) {
        self.0
            .interrupted
            .store(true, std::sync::atomic::Ordering::Release);
        self.0.changed.notify_waiters();
    }

    /// Whether the run was interrupted.
    pub fn is_set(&self) -> bool {
        self.0
            .interrupted
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Says that the run has ended: an interruption no longer changes it.
    pub fn finish(&self) {
        self.0
            .finished
            .store(true, std::sync::atomic::Ordering::Release);
        self.0.changed.notify_waiters();
    }

    /// Returns once the run is interrupted.
    pub async fn wait(&self) {
        self.wait_for(&self.0.interrupted).await;
    }

    /// Returns once the run has ended ([`Interruption::finish`]).
    pub async fn wait_finished(&self) {
        self.wait_for(&self.0.finished).await;
    }

    async fn wait_for(&self, flag: &std::sync::atomic::AtomicBool) {
        loop {
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            // Registered before the flag is read: a change between the two still wakes it.
            changed.as_mut().enable();
            if flag.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            changed.await;
        }
    }
}

/// How to send.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Where to post.
    pub url: String,
    /// Credentials.
    pub auth: Auth,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Most requests per second, if limited.
    pub rate: Option<f64>,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Accept invalid TLS certificates (for self-signed test servers).
    pub insecure: bool,
    /// Times a document is sent again after an answer that asks for it later
    /// ([`RETRIED_STATUSES`]).
    pub retries: u32,
}

/// A wait before sending a document again that is said as it begins.
const LONG_RETRY_WAIT: Duration = Duration::from_secs(5);

/// Answers after which a document is sent again: too many requests (429), and a receiver or the
/// proxy in front of it unavailable for now (502, 503, 504). provtrail's 503 means nothing of the
/// request was kept, and what was kept is answered as a duplicate when sent again.
pub const RETRIED_STATUSES: [u16; 4] = [429, 502, 503, 504];

/// The longest wait before sending again, whatever the answer's `Retry-After` asks for.
pub const LONGEST_RETRY_WAIT: Duration = Duration::from_secs(60);

/// The wait before sending a document again for the `retry`-th time (from 1): the answer's
/// `Retry-After` if it gave one, else 1, 2, 4 … seconds; at most [`LONGEST_RETRY_WAIT`].
fn retry_wait(retry: u32, asked: Option<Duration>) -> Duration {
    let doubling = Duration::from_secs(1u64 << retry.saturating_sub(1).min(6));
    asked.unwrap_or(doubling).min(LONGEST_RETRY_WAIT)
}

/// What one request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP answer: its status and the `status` field of its JSON body, if any.
    Http {
        /// HTTP status.
        status: u16,
        /// [`outcome_of`] the answer: `accepted`, `duplicate`, `quarantined`, `rejected` from
        /// provtrail, [`TAKEN`], [`REDIRECTED`] or [`REFUSED`].
        outcome: String,
        /// Why the document was not kept, as the answer says it ([`reason_of`]); none for a
        /// document kept.
        reason: Option<String>,
        /// The wait the answer's `Retry-After` asks for (seconds or an HTTP date), if any.
        retry_after: Option<Duration>,
    },
    /// No HTTP answer (connection refused, reset, timed out).
    Failed(String),
}

/// Documents not kept that a report names one by one; the rest are counted.
pub const MAX_NOT_KEPT_LISTED: usize = 20;

/// A document the receiver did not keep, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NotKept {
    /// Its number: the line it starts on in the input, or its place among generated events.
    pub document: u64,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// What the answer says of it (see [`Answer::Http`]), or `no answer`.
    pub outcome: String,
    /// Why, in the receiver's words (or the error of a request without an answer).
    pub reason: String,
}

/// What a run of requests got.
#[derive(Debug, Clone, Default)]
pub struct SendReport {
    /// Requests sent.
    pub sent: u64,
    /// Answers by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    /// Answers by the body's `status` field.
    pub by_outcome: BTreeMap<String, u64>,
    /// Requests without an HTTP answer, by error.
    pub failures: BTreeMap<String, u64>,
    /// Documents sent again, by the status of the answer that asked for it: one count per
    /// request sent again (the answers above are each document's last).
    pub retried: BTreeMap<u16, u64>,
    /// The first [`MAX_NOT_KEPT_LISTED`] documents not kept, in the order their answers came.
    pub not_kept: Vec<NotKept>,
    /// Documents not kept past those listed.
    pub not_kept_unlisted: u64,
    /// Latency of every answered request, milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl SendReport {
    /// Requests answered 2xx with `accepted` or `duplicate`.
    pub fn kept(&self) -> u64 {
        KEPT.iter()
            .map(|outcome| self.by_outcome.get(*outcome).copied().unwrap_or(0))
            .sum()
    }

    /// Lists a document not kept when it is among the [`MAX_NOT_KEPT_LISTED`] lowest-numbered
    /// so far (answers come back in any order with concurrency; what is left out is then the
    /// tail of the input, whatever the timing), else counts it.
    fn list_not_kept(&mut self, not_kept: NotKept) {
        if self.not_kept.len() < MAX_NOT_KEPT_LISTED {
            self.not_kept.push(not_kept);
            return;
        }
        self.not_kept_unlisted += 1;
        let highest = self
            .not_kept
            .iter_mut()
            .max_by_key(|listed| listed.document);
        if let Some(highest) = highest {
            if not_kept.document < highest.document {
                *highest = not_kept;
            }
        }
    }

    /// The `q` quantile (0 to 1) of latency in milliseconds.
    pub fn latency_quantile(&self, q: f64) -> Option<f64> {
        if self.latencies_ms.is_empty() {
            return None;
        }
        let index = ((self.latencies_ms.len() - 1) as f64 * q).round() as usize;
        self.latencies_ms.get(index).copied()
    }
}

/// Builds the HTTP client used to send.
pub fn client(options: &SendOptions) -> reqwest::Result<reqwest::Client> {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        // A redirected POST becomes a GET without the event: following it would count an answer
        // to something else as the event's. A redirect is reported instead.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(options.timeout)
        .pool_max_idle_per_host(options.concurrency.max(1))
        .tls_danger_accept_invalid_certs(options.insecure)
        .user_agent(concat!("provtrail-send/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The outcome of a 2xx answer that does not say provtrail's `status` (another receiver).
pub const TAKEN: &str = "taken (2xx)";

/// The outcome of a 3xx answer, which `send` does not follow.
pub const REDIRECTED: &str = "redirected";

/// The outcome of an answer that refused the document without saying so in provtrail's words.
pub const REFUSED: &str = "refused";

/// The `status` words of provtrail's answers; a receiver's other words are not reported as they
/// are (they could be anything, terminal escapes included).
const PROVTRAIL_OUTCOMES: [&str; 4] = ["accepted", "duplicate", "quarantined", "rejected"];

/// Most bytes of an answer's body read: provtrail's answers are far shorter, and a receiver that
/// answers gigabytes must not fill the sender's memory.
const MAX_ANSWER_READ: usize = 64 * 1024;

/// What an answer says of the document: provtrail's own word where it gives one that fits the
/// status code, else what the code says.
pub fn outcome_of(status: u16, word: Option<&str>) -> &'static str {
    let word = word.and_then(|word| PROVTRAIL_OUTCOMES.iter().find(|known| **known == word));
    match (status, word) {
        (200..=299, Some(word)) if *word != "rejected" => word,
        (200..=299, _) => TAKEN,
        (300..=399, _) => REDIRECTED,
        (_, Some(&"rejected")) => "rejected",
        _ => REFUSED,
    }
}

/// Posts one document.
pub async fn post(client: &reqwest::Client, options: &SendOptions, body: Bytes) -> Answer {
    let mut request = client
        .post(&options.url)
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(value) = options.auth.header() {
        request = request.header(AUTHORIZATION, value);
    }
    match request.send().await {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(crate::isc::retry_after);
            let mut body = Vec::new();
            while body.len() < MAX_ANSWER_READ {
                match response.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    Ok(None) => break,
                    // A success whose answer stops short (a timeout, a closed connection) says
                    // nothing sure: its body may have said the document was quarantined. It is
                    // no answer, as a request that got none (and is sent again, where retried).
                    Err(err) if (200..300).contains(&status) => {
                        return Answer::Failed(format!(
                            "the answer ({status}) was cut off: {}",
                            describe(&err)
                        ));
                    }
                    Err(_) => break,
                }
            }
            let json = serde_json::from_slice::<serde_json::Value>(&body).ok();
            let word = json
                .as_ref()
                .and_then(|body| body.get("status")?.as_str().map(str::to_owned));
            let outcome = outcome_of(status, word.as_deref());
            let reason = (!KEPT.contains(&outcome))
                .then(|| options.auth.masked(&reason_of(json.as_ref(), &body)));
            Answer::Http {
                status,
                outcome: outcome.to_owned(),
                reason,
                retry_after,
            }
        }
        Err(err) => Answer::Failed(describe(&err)),
    }
}

/// Outcomes of a document the receiver kept.
const KEPT: [&str; 3] = ["accepted", "duplicate", TAKEN];

/// Most characters of a reason taken from an answer.
const MAX_REASON_CHARS: usize = 300;

/// Why an answer says its document was not kept: provtrail's `error` (a string, or an object
/// with a `message`), else the first of its `errors` (with how many more), else the body's
/// text, cut short; what the receiver wrote, to be shown escaped.
pub fn reason_of(json: Option<&serde_json::Value>, body: &[u8]) -> String {
    let from_json = json.and_then(|json| {
        let error = json.get("error");
        if let Some(text) = error.and_then(serde_json::Value::as_str) {
            return Some(text.to_owned());
        }
        if let Some(text) = error.and_then(|error| error.get("message")?.as_str()) {
            return Some(text.to_owned());
        }
        let errors = json.get("errors")?.as_array()?;
        let first = errors.first()?;
        let message = first.get("message").and_then(serde_json::Value::as_str)?;
        let path = first.get("path").and_then(serde_json::Value::as_str);
        let more = match errors.len() - 1 {
            0 => String::new(),
            n => format!(" (and {n} more)"),
        };
        Some(match path {
            Some(path) => format!("{path}: {message}{more}"),
            None => format!("{message}{more}"),
        })
    });
    let reason = from_json.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            "the answer has no body".to_owned()
        } else {
            text
        }
    });
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &reason[..cut]),
        None => reason,
    }
}

fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        // The innermost cause tells a refused connection from a certificate not trusted.
        let mut source: &dyn std::error::Error = err;
        while let Some(next) = source.source() {
            source = next;
        }
        let cause = source.to_string();
        if cause.contains("certificate") {
            format!("cannot connect: {cause} (for a test server's own certificate: --insecure)")
        } else {
            format!("cannot connect: {cause}")
        }
    } else {
        // The innermost cause says the most (e.g. "connection reset by peer").
        let mut source: &dyn std::error::Error = err;
        while let Some(next) = source.source() {
            source = next;
        }
        let cause = source.to_string();
        // A TLS server answers a plain-HTTP request with a TLS record, which hyper reads as an
        // answer of no HTTP version.
        let plain_to_tls = err.url().is_some_and(|url| url.scheme() == "http")
            && cause.contains("invalid HTTP version");
        if plain_to_tls {
            format!("{cause} (the answer is not HTTP: if the server serves HTTPS, use https://)")
        } else {
            cause
        }
    }
}

/// Sends every document that arrives on `documents`, `concurrency` at a time, calling `on_answer`
/// after each, and returns what they got. Once `interruption` is set, no document is taken or
/// sent again: each keeps the answer it had.
pub async fn send_all(
    options: &SendOptions,
    documents: mpsc::Receiver<(u64, Bytes)>,
    interruption: &Interruption,
    on_answer: impl Fn(&Answer) + Send + Sync + 'static,
) -> reqwest::Result<SendReport> {
    let client = client(options)?;
    let documents = Arc::new(Mutex::new(documents));
    let report = Arc::new(std::sync::Mutex::new(SendReport::default()));
    let on_answer = Arc::new(on_answer);
    let started = Instant::now();
    let pacer = options.rate.filter(|rate| *rate > 0.0).map(|rate| {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        // After a stall (a slow answer with --concurrency 1), the rate is still a maximum: no
        // burst to catch up the ticks missed.
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Arc::new(Mutex::new(interval))
    });
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..options.concurrency.max(1) {
        let client = client.clone();
        let options = options.clone();
        let documents = documents.clone();
        let report = report.clone();
        let on_answer = on_answer.clone();
        let pacer = pacer.clone();
        let ended = ended.clone();
        let interruption = interruption.clone();
        workers.push(tokio::spawn(async move {
            loop {
                if interruption.is_set() {
                    return;
                }
                // The turn first, then the document: a worker holding a document while it
                // waits for its turn would send it after an interruption (Ctrl-C), which stops
                // the documents but not the turns.
                if let Some(pacer) = &pacer {
                    let mut pacer = pacer.lock().await;
                    // The documents ended while this worker waited for the pacer: no turn to
                    // wait for (each would cost a tick).
                    if ended.load(std::sync::atomic::Ordering::Acquire) {
                        return;
                    }
                    pacer.tick().await;
                }
                let Some((number, body)) = documents.lock().await.recv().await else {
                    ended.store(true, std::sync::atomic::Ordering::Release);
                    return;
                };
                let mut retries = 0;
                let (answer, latency) = loop {
                    let sent_at = Instant::now();
                    let answer = post(&client, &options, body.clone()).await;
                    let latency = sent_at.elapsed().as_secs_f64() * 1000.0;
                    let asked_later = match &answer {
                        Answer::Http {
                            status,
                            retry_after,
                            ..
                        } if RETRIED_STATUSES.contains(status) => Some((*status, *retry_after)),
                        _ => None,
                    };
                    let Some((status, asked)) = asked_later.filter(|_| retries < options.retries)
                    else {
                        break (answer, latency);
                    };
                    // The wait, then a turn of the pacer (a document sent again is a request
                    // like any other under --rate); an interruption ends either, and the
                    // document keeps the answer it had.
                    let wait = retry_wait(retries + 1, asked);
                    // A long wait is said: a sender that stops for a minute looks hung.
                    if wait >= LONG_RETRY_WAIT {
                        tracing::info!(
                            document = number,
                            status,
                            wait_s = wait.as_secs(),
                            asked = asked.is_some(),
                            "waiting before sending the document again (as the answer's \
                             Retry-After asks, or backing off)"
                        );
                    }
                    let waited = async {
                        tokio::time::sleep(wait).await;
                        if let Some(pacer) = &pacer {
                            pacer.lock().await.tick().await;
                        }
                    };
                    tokio::select! {
                        () = waited => {}
                        () = interruption.wait() => break (answer, latency),
                    }
                    retries += 1;
                    if let Ok(mut report) = report.lock() {
                        *report.retried.entry(status).or_default() += 1;
                    }
                };
                if let Ok(mut report) = report.lock() {
                    report.sent += 1;
                    let not_kept = match &answer {
                        Answer::Http {
                            status,
                            outcome,
                            reason,
                            ..
                        } => {
                            *report.by_status.entry(*status).or_default() += 1;
                            *report.by_outcome.entry(outcome.clone()).or_default() += 1;
                            report.latencies_ms.push(latency);
                            reason.as_ref().map(|reason| NotKept {
                                document: number,
                                status: Some(*status),
                                outcome: outcome.clone(),
                                reason: reason.clone(),
                            })
                        }
                        Answer::Failed(error) => {
                            *report.failures.entry(error.clone()).or_default() += 1;
                            Some(NotKept {
                                document: number,
                                status: None,
                                outcome: "no answer".to_owned(),
                                reason: error.clone(),
                            })
                        }
                    };
                    if let Some(not_kept) = not_kept {
                        report.list_not_kept(not_kept);
                    }
                }
                on_answer(&answer);
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    interruption.finish();
    let mut report = match Arc::try_unwrap(report) {
        Ok(report) => report.into_inner().unwrap_or_default(),
        Err(shared) => shared.lock().map(|r| r.clone()).unwrap_or_default(),
    };
    report.elapsed = started.elapsed();
    report.latencies_ms.sort_by(f64::total_cmp);
    // In the order of the input, which concurrent answers do not keep.
    report.not_kept.sort_by_key(|not_kept| not_kept.document);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::{Auth, MAX_NOT_KEPT_LISTED, MAX_REASON_CHARS, NotKept, SendReport, reason_of};
    use serde_json::json;

    #[test]
    fn a_reason_that_quotes_the_credentials_shows_them_masked() {
        let token = "s3cr3t-ingest-token-123";
        let shown = Auth::Bearer(token.into()).masked(&format!("bad credential Bearer {token}"));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.starts_with("bad credential Bearer "), "{shown}");
        // Basic: the password, the pair, and the header's base64 of it.
        let basic = Auth::Basic("ingest:pa55-word-long".into());
        for echo in [
            "password pa55-word-long refused",
            "pair ingest:pa55-word-long refused",
            "header Basic aW5nZXN0OnBhNTUtd29yZC1sb25n refused",
        ] {
            let shown = basic.masked(echo);
            assert!(
                !shown.contains("pa55") && !shown.contains("aW5nZXN0OnBhNTUtd29yZC1sb25n"),
                "{shown}"
            );
        }
        assert_eq!(Auth::None.masked("plain"), "plain");
    }

    #[test]
    fn the_documents_listed_as_not_kept_are_the_first_of_the_input_whatever_the_order() {
        let mut report = SendReport::default();
        // Answers in a scrambled order: 60 documents, all refused.
        for document in (1..=60u64).map(|n| (n * 37) % 61) {
            report.list_not_kept(NotKept {
                document,
                status: Some(400),
                outcome: "refused".into(),
                reason: format!("number {document}"),
            });
        }
        let mut listed: Vec<u64> = report.not_kept.iter().map(|n| n.document).collect();
        listed.sort_unstable();
        assert_eq!(listed, (1..=MAX_NOT_KEPT_LISTED as u64).collect::<Vec<_>>());
        assert_eq!(report.not_kept_unlisted, 40);
        assert!(
            report
                .not_kept
                .iter()
                .all(|n| n.reason == format!("number {}", n.document))
        );
    }

    #[test]
    fn a_reason_is_the_receivers_error_or_its_text_cut_short() {
        let reason =
            |json: Option<serde_json::Value>, body: &str| reason_of(json.as_ref(), body.as_bytes());
        assert_eq!(reason(Some(json!({"error": "no"})), ""), "no");
        assert_eq!(
            reason(Some(json!({"error": {"code": "x", "message": "why"}})), ""),
            "why"
        );
        assert_eq!(
            reason(
                Some(json!({"errors": [{"path": "a", "message": "m"}, {"message": "n"}]})),
                ""
            ),
            "a: m (and 1 more)"
        );
        assert_eq!(
            reason(None, "<h1>Bad\n   Gateway</h1>"),
            "<h1>Bad Gateway</h1>"
        );
        assert_eq!(reason(None, " \n"), "the answer has no body");
        let long = reason(None, &"é".repeat(1000));
        assert_eq!(long.chars().count(), MAX_REASON_CHARS + 1);
        assert!(long.ends_with('…'));
    }
}
