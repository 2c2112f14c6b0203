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
}

/// What one request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP answer: its status and the `status` field of its JSON body, if any.
    Http {
        /// HTTP status.
        status: u16,
        /// `accepted`, `duplicate`, `quarantined`, `rejected`, … from the body.
        outcome: Option<String>,
    },
    /// No HTTP answer (connection refused, reset, timed out).
    Failed(String),
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
    /// Latency of every answered request, milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl SendReport {
    /// Requests answered 2xx with `accepted` or `duplicate`.
    pub fn kept(&self) -> u64 {
        ["accepted", "duplicate", TAKEN]
            .iter()
            .map(|outcome| self.by_outcome.get(*outcome).copied().unwrap_or(0))
            .sum()
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
        .timeout(options.timeout)
        .pool_max_idle_per_host(options.concurrency.max(1))
        .tls_danger_accept_invalid_certs(options.insecure)
        .user_agent(concat!("provtrail-send/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The outcome of a 2xx answer that does not say provtrail's `status` (another receiver).
pub const TAKEN: &str = "taken (2xx)";

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
        Ok(response) => {
            let status = response.status().as_u16();
            let outcome = response
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|body| body.get("status")?.as_str().map(str::to_owned));
            Answer::Http { status, outcome }
        }
        Err(err) => Answer::Failed(describe(&err)),
    }
}

fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "cannot connect".to_owned()
    } else {
        // The innermost cause says the most (e.g. "connection reset by peer").
        let mut source: &dyn std::error::Error = err;
        while let Some(next) = source.source() {
            source = next;
        }
        source.to_string()
    }
}

/// Sends every document that arrives on `documents`, `concurrency` at a time, calling `on_answer`
/// after each, and returns what they got.
pub async fn send_all(
    options: &SendOptions,
    documents: mpsc::Receiver<Bytes>,
    on_answer: impl Fn(&Answer) + Send + Sync + 'static,
) -> reqwest::Result<SendReport> {
    let client = client(options)?;
    let documents = Arc::new(Mutex::new(documents));
    let report = Arc::new(std::sync::Mutex::new(SendReport::default()));
    let on_answer = Arc::new(on_answer);
    let started = Instant::now();
    let pacer = options.rate.filter(|rate| *rate > 0.0).map(|rate| {
        Arc::new(Mutex::new(tokio::time::interval(Duration::from_secs_f64(
            1.0 / rate,
        ))))
    });
    let mut workers = Vec::new();
    for _ in 0..options.concurrency.max(1) {
        let client = client.clone();
        let options = options.clone();
        let documents = documents.clone();
        let report = report.clone();
        let on_answer = on_answer.clone();
        let pacer = pacer.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let Some(body) = documents.lock().await.recv().await else {
                    return;
                };
                if let Some(pacer) = &pacer {
                    pacer.lock().await.tick().await;
                }
                let sent_at = Instant::now();
                let answer = post(&client, &options, body).await;
                let latency = sent_at.elapsed().as_secs_f64() * 1000.0;
                if let Ok(mut report) = report.lock() {
                    report.sent += 1;
                    match &answer {
                        Answer::Http { status, outcome } => {
                            *report.by_status.entry(*status).or_default() += 1;
                            // A receiver that is not provtrail answers without its `status`:
                            // its status code says whether it took the document.
                            let outcome = outcome.clone().unwrap_or_else(|| {
                                if (200..300).contains(status) {
                                    TAKEN.to_owned()
                                } else {
                                    "refused".to_owned()
                                }
                            });
                            *report.by_outcome.entry(outcome).or_default() += 1;
                            report.latencies_ms.push(latency);
                        }
                        Answer::Failed(error) => {
                            *report.failures.entry(error.clone()).or_default() += 1;
                        }
                    }
                }
                on_answer(&answer);
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    let mut report = match Arc::try_unwrap(report) {
        Ok(report) => report.into_inner().unwrap_or_default(),
        Err(shared) => shared.lock().map(|r| r.clone()).unwrap_or_default(),
    };
    report.elapsed = started.elapsed();
    report.latencies_ms.sort_by(f64::total_cmp);
    Ok(report)
}
