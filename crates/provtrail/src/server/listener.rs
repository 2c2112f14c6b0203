//! The accept loop: HTTP/1.1 and HTTP/2, optional TLS, header timeouts, a cap on open connections,
//! and graceful shutdown that answers every request already received.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tower::ServiceExt as _;

use super::ServerConfig;

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why (in the message, and so not also its source: a chain would say it twice).
        reason: std::io::Error,
    },
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
}

/// A TLS configuration for the listener.
#[derive(Clone)]
pub struct Tls(Arc<rustls::ServerConfig>, Option<String>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// Largest certificate chain or key file read: a long chain is tens of KiB.
const MAX_PEM_FILE: u64 = 1024 * 1024;

/// A certificate or key file's bytes. Only a regular file of at most [`MAX_PEM_FILE`] is read:
/// `/dev/zero` or a log file named by mistake would be read into memory without end, and a named
/// pipe would hold the start until something writes to it.
fn read_pem_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a device, a pipe or a directory); give the PEM file's path",
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(std::io::Error::other(format!(
            "longer than the {} MiB a certificate or key file may hold; is it the file meant?",
            MAX_PEM_FILE / (1024 * 1024)
        )));
    }
    Ok(bytes)
}

impl Tls {
    /// Reads a PEM certificate chain and a PEM private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, ServerError> {
        let read = |path: &Path| {
            read_pem_file(path)
                .map_err(|err| ServerError::Tls(format!("cannot read {}: {err}", path.display())))
        };
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| ServerError::Tls(format!("{}: {err}", cert.display())))?;
        if chain.is_empty() {
            return Err(ServerError::Tls(format!(
                "{} holds no PEM certificate",
                cert.display()
            )));
        }
        // PKCS#8's encrypted form, and OpenSSL's older one (`Proc-Type: 4,ENCRYPTED` in the
        // key's headers).
        let encrypted = [
            &b"-----BEGIN ENCRYPTED PRIVATE KEY-----"[..],
            b"Proc-Type: 4,ENCRYPTED",
        ];
        if encrypted
            .iter()
            .any(|mark| memchr::memmem::find(&key_pem, mark).is_some())
        {
            return Err(ServerError::Tls(format!(
                "{} holds an encrypted private key, which provtrail cannot unlock (it would need \
                 the passphrase at every start): decrypt it, e.g. `openssl pkey -in {0} -out \
                 key.pem` (which reads either encrypted form), and keep that file readable by \
                 the service alone",
                key.display()
            )));
        }
        let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .map_err(|err| ServerError::Tls(format!("{}: {err}", key.display())))?
            .ok_or_else(|| {
                ServerError::Tls(format!("{} holds no PEM private key", key.display()))
            })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| ServerError::Tls(err.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key_der.clone_key())
            .map_err(|err| unusable_pair(cert, key, &chain, &key_der, &err))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // TLS 1.3 sends resumption tickets once the client's handshake is done: a client that
        // sends its request with the end of its handshake and leaves would fail that write and
        // the handshake with it, its request unread in the socket (an event that arrived whole,
        // lost). Resumption saves a round trip on a new connection, which a subscriber that keeps
        // its connections alive rarely opens.
        config.send_tls13_tickets = 0;
        let warning = validity_warning(cert, &cert_pem);
        Ok(Tls(Arc::new(config), warning))
    }

    /// What is wrong with the certificate's dates (expired, not yet valid, expiring within two
    /// weeks): ISC refuses such a handshake and, never resending, loses the events. Said at
    /// start rather than refused, since a proxy in front may not check.
    pub fn warning(&self) -> Option<&str> {
        self.1.as_deref()
    }
}

/// Why a certificate and a key cannot serve together, naming both files.
fn unusable_pair(
    cert: &Path,
    key: &Path,
    chain: &[rustls::pki_types::CertificateDer<'static>],
    key_der: &rustls::pki_types::PrivateKeyDer<'static>,
    err: &rustls::Error,
) -> ServerError {
    // The key is that of a later certificate of the chain: the server's own must come first
    // (then the ones that signed it), whatever is wrong with the first.
    let of_a_later_one = chain.iter().skip(1).position(|later| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .is_ok_and(|builder| {
                builder
                    .with_no_client_auth()
                    .with_single_cert(vec![later.clone()], key_der.clone_key())
                    .is_ok()
            })
    });
    let (cert, key) = (cert.display(), key.display());
    if let Some(index) = of_a_later_one {
        return ServerError::Tls(format!(
            "{key} is the key of certificate {} in {cert}, not of the first: the server's own \
             certificate must come first in the file, then the ones that signed it",
            index + 2
        ));
    }
    ServerError::Tls(match err {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => format!(
            "{key} is not the private key of the certificate in {cert}: give the key the \
             certificate was made for"
        ),
        // webpki reads version 3 certificates only; `openssl x509 -req` without extensions
        // makes version 1.
        _ if format!("{err:?}").contains("UnsupportedCertVersion") => format!(
            "{cert} is an X.509 version 1 certificate, which TLS libraries no longer accept: \
             make a version 3 one (`openssl req -x509 -new -key {key} -subj /CN=HOST -days 365 \
             -out CERT`, or `openssl x509 -req` with an `-extfile` of extensions)"
        ),
        // ring signs with RSA of 2048 bits or more, ECDSA on P-256 and P-384, and Ed25519: a
        // P-521 key (another curve, a short RSA key) is not "the wrong key".
        _ if format!("{err}").contains("failed to parse private key") => format!(
            "the key in {key} is of a kind or size TLS here cannot sign with (RSA of 2048 bits \
             or more, ECDSA on the P-256 or P-384 curve, and Ed25519 are; not P-521 or other \
             curves, nor shorter RSA keys): make the certificate with a key of one of those kinds"
        ),
        _ => {
            format!("the certificate in {cert} and the key in {key} cannot be used together: {err}")
        }
    })
}

/// [`Tls::warning`] for the first certificate of a PEM chain.
fn validity_warning(path: &Path, pem: &[u8]) -> Option<String> {
    let der = rustls_pemfile::certs(&mut &pem[..]).next()?.ok()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let validity = certificate.validity();
    let now = chrono::Utc::now().timestamp();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let date = |seconds: i64| {
        chrono::DateTime::<chrono::Utc>::from_timestamp(seconds, 0)
            .map_or_else(|| seconds.to_string(), |time| time.to_rfc3339())
    };
    let file = path.display();
    if now > not_after {
        Some(format!(
            "the TLS certificate {file} expired on {}: ISC will refuse the connection and its \
             events will be lost; renew it",
            date(not_after)
        ))
    } else if now < not_before {
        Some(format!(
            "the TLS certificate {file} is not valid before {}: ISC will refuse the connection \
             until then",
            date(not_before)
        ))
    } else if not_after - now < 14 * 86_400 {
        Some(format!(
            "the TLS certificate {file} expires on {}: renew it before then",
            date(not_after)
        ))
    } else {
        None
    }
}

/// A server running in the background (used by `serve`, `demo`, tests and the benchmark).
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    /// True when every connection closed within the grace period.
    task: JoinHandle<bool>,
}

impl RunningServer {
    /// Binds and starts serving `router`.
    pub async fn start(
        router: Router,
        config: &ServerConfig,
        tls: Option<Tls>,
    ) -> Result<Self, ServerError> {
        Self::start_with_hook(router, config, tls, None).await
    }

    /// Binds and starts serving `router`, telling `on_malformed` of every request that HTTP
    /// itself refused (see [`MalformedRequest`]).
    pub async fn start_with_hook(
        router: Router,
        config: &ServerConfig,
        tls: Option<Tls>,
        on_malformed: Option<MalformedRequestHook>,
    ) -> Result<Self, ServerError> {
        let listener = Self::bind(config).await?;
        Self::start_on(listener, router, config, tls, on_malformed)
    }

    /// Binds the configured address: done before anything else is set up, so that a port in
    /// use is found before a store is made.
    pub async fn bind(config: &ServerConfig) -> Result<TcpListener, ServerError> {
        TcpListener::bind(config.listen)
            .await
            .map_err(|reason| ServerError::Bind {
                addr: config.listen,
                reason,
            })
    }

    /// Serves on a listener from [`RunningServer::bind`].
    pub fn start_on(
        listener: TcpListener,
        router: Router,
        config: &ServerConfig,
        tls: Option<Tls>,
        on_malformed: Option<MalformedRequestHook>,
    ) -> Result<Self, ServerError> {
        let addr = listener.local_addr().map_err(|reason| ServerError::Bind {
            addr: config.listen,
            reason,
        })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let config = config.clone();
        let task = tokio::spawn(async move {
            serve(listener, router, &config, tls, on_malformed, async {
                let _ = stopped.await;
            })
            .await
        });
        Ok(RunningServer {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace period) and returns
    /// whether every connection closed within it (false: some requests got no answer).
    pub async fn shutdown(mut self) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap_or(false)
    }

    /// Waits until the server stops by itself (it does not, short of a panic).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// A request that the HTTP layer refused before any handler saw it: a request line or header
/// that is not HTTP (an invalid byte, a folded header, two different `Content-Length`s, a transfer
/// coding that does not end in `chunked`), or a head or URI over hyper's limits, which hyper
/// answers itself (400, 414 or 431) before it closes the connection; or an HTTP/1 request whose
/// headers began but did not end within the header timeout, answered 408 (over plain TCP; a TLS
/// connection is closed without an answer) as its connection closes.
#[derive(Debug, Clone)]
pub struct MalformedRequest {
    /// Who sent it.
    pub remote: SocketAddr,
    /// The status answered with (408: by the server, past hyper; over TLS none was sent).
    pub status: u16,
    /// What was wrong.
    pub reason: String,
}

/// Told of each [`MalformedRequest`], so that it can be counted and recorded like any other
/// refused request.
pub type MalformedRequestHook = Arc<dyn Fn(MalformedRequest) + Send + Sync>;

/// The requests of one connection being answered, and when that last changed, so that the
/// connection's idle time is counted from the end of its last answer. Requests only write it;
/// the connection's task reads it when its timer fires, so no request wakes that task.
struct Activity {
    base: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `base` to the last start or end of a request; [`NEVER`] before the
    /// first.
    changed_at: AtomicU64,
    /// Bytes received on the connection (after TLS), by [`Counted`].
    received: AtomicU64,
    /// `received` when the last request in flight ended: more since then, on a connection left
    /// idle, is the start of a request whose headers never ended.
    received_when_idle: AtomicU64,
    /// `received` after the last read that held a byte other than CR or LF: blank lines before a
    /// request line are to be ignored (RFC 9112, section 2.2), and begin no request.
    significant_until: AtomicU64,
    /// Whether the connection began with the HTTP/2 preface.
    http2: AtomicBool,
    /// Whether everything hyper wrote has been flushed to the socket: false from a write until
    /// the next flush completes. A connection closed for a stalled request may have a `408`
    /// written after hyper's bytes only when none of them wait in hyper's buffer.
    flushed: AtomicBool,
}

/// `Activity::changed_at` of a connection that has not started a request yet.
const NEVER: u64 = u64::MAX;

/// What a connection is doing, as its timer sees it.
enum Doing {
    /// No request has started yet.
    Nothing,
    /// Answering requests.
    Answering,
    /// Waiting for a request since then.
    IdleSince(Instant),
}

impl Activity {
    fn new() -> Self {
        Activity {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            changed_at: AtomicU64::new(NEVER),
            received: AtomicU64::new(0),
            received_when_idle: AtomicU64::new(0),
            significant_until: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            flushed: AtomicBool::new(true),
        }
    }

    fn touch(&self) {
        let millis = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(NEVER - 1);
        self.changed_at.store(millis, Ordering::Release);
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone())
    }

    fn doing(&self) -> Doing {
        let changed_at = self.changed_at.load(Ordering::Acquire);
        if changed_at == NEVER {
            Doing::Nothing
        } else if self.in_flight.load(Ordering::Acquire) > 0 {
            Doing::Answering
        } else {
            Doing::IdleSince(self.base + Duration::from_millis(changed_at))
        }
    }
}

/// A connection's stream, counting the bytes that arrive, so that a connection closed for
/// headers that never ended can be told from one that sent nothing.
struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
    /// The end of an HTTP/2 connection, held back for [`HTTP2_END_HELD`] (see `poll_read`).
    end: Option<HeldEnd>,
    /// See [`Counted::writes_dropped`].
    writes_gone: bool,
}

impl<S> Counted<S> {
    fn new(inner: S, activity: Arc<Activity>) -> Self {
        Counted {
            inner,
            activity,
            end: None,
            writes_gone: false,
        }
    }
}

/// How long an idle HTTP/1 connection stays open once the server is shutting down, for a
/// request already on its way (see `run_connection`).
const HTTP1_LAST_REQUESTS: Duration = Duration::from_millis(250);

/// How long the end of an HTTP/2 connection is held back from hyper.
const HTTP2_END_HELD: Duration = Duration::from_millis(20);

/// The end of a connection (its close, or its failure), and when to let hyper see it.
struct HeldEnd {
    until: Pin<Box<tokio::time::Sleep>>,
    error: Option<std::io::Error>,
}

/// Whether a read's failure is the connection's end (the client closed it, or its TLS layer
/// ended without saying so), rather than something to pass on at once.
fn is_connection_end(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // An HTTP/2 client may send whole requests and close the connection at once. Seeing the
        // end, the HTTP/2 layer drops the streams that hyper has not taken yet, with their
        // requests: no handler, no record, an event sent whole thrown away. Held back a moment,
        // the end leaves hyper time to take every stream that arrived before it; their bodies
        // are read to where they ended (see the ingest handler).
        if let Some(end) = self.end.as_mut() {
            std::task::ready!(end.until.as_mut().poll(cx));
            return Poll::Ready(match end.error.take() {
                Some(err) => Err(err),
                None => Ok(()),
            });
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let http2 = self.activity.http2.load(Ordering::Relaxed);
        let ended = match &polled {
            Poll::Ready(Ok(())) => buf.filled().len() == before && buf.remaining() > 0,
            Poll::Ready(Err(err)) => is_connection_end(err),
            Poll::Pending => false,
        };
        if http2 && ended {
            let error = match polled {
                Poll::Ready(Err(err)) => Some(err),
                _ => None,
            };
            self.end = Some(HeldEnd {
                until: Box::pin(tokio::time::sleep(HTTP2_END_HELD)),
                error,
            });
            // Polls the timer, so that its end wakes this connection.
            return self.poll_read(cx, buf);
        }
        let arrived = &buf.filled()[before..];
        if !arrived.is_empty() {
            let activity = &self.activity;
            let before = activity
                .received
                .fetch_add(arrived.len() as u64, Ordering::Relaxed);
            if before == 0 && arrived.starts_with(b"PRI ") {
                activity.http2.store(true, Ordering::Relaxed);
            }
            // Almost always decided by the first byte.
            if arrived.iter().any(|&byte| byte != b'\r' && byte != b'\n') {
                activity
                    .significant_until
                    .store(before + arrived.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }
}

impl<S> Counted<S> {
    /// Whether writes go nowhere: an HTTP/2 connection whose client is gone. The HTTP/2 layer
    /// would end the connection at the failed write, and with it the streams hyper has not
    /// taken yet (see `poll_read`); what is written to a client that is gone is lost anyway.
    fn writes_dropped<T>(
        &mut self,
        written: Poll<std::io::Result<T>>,
        as_if: T,
    ) -> Poll<std::io::Result<T>> {
        match written {
            Poll::Ready(Err(err))
                if is_connection_end(&err) && self.activity.http2.load(Ordering::Relaxed) =>
            {
                self.writes_gone = true;
                Poll::Ready(Ok(as_if))
            }
            written => written,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.writes_gone {
            return Poll::Ready(Ok(buf.len()));
        }
        self.activity.flushed.store(false, Ordering::Relaxed);
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.writes_dropped(written, buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let all = bufs.iter().map(|buf| buf.len()).sum();
        if self.writes_gone {
            return Poll::Ready(Ok(all));
        }
        self.activity.flushed.store(false, Ordering::Relaxed);
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.writes_dropped(written, all)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.writes_gone {
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        let polled = self.writes_dropped(polled, ());
        if let Poll::Ready(Ok(())) = polled {
            self.activity.flushed.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.writes_gone {
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.writes_dropped(polled, ())
    }
}

/// One request of the server not answered yet, counted in a total across connections until
/// dropped.
struct Unanswered(Arc<AtomicUsize>);

impl Unanswered {
    fn begin(total: &Arc<AtomicUsize>) -> Self {
        total.fetch_add(1, Ordering::AcqRel);
        Unanswered(total.clone())
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One request being answered, until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let received = self.0.received.load(Ordering::Relaxed);
            self.0.received_when_idle.store(received, Ordering::Relaxed);
        }
        self.0.touch();
    }
}

/// Runs a connection until it ends, closing it: at once when no request has begun within
/// `header_timeout` (the HTTP/1 header timeout only starts once the protocol has been told apart
/// from HTTP/2, which takes the first bytes, so a client that connects and sends nothing would
/// otherwise hold a connection slot for ever); gracefully (requests in flight are answered)
/// when none has been in flight for `idle_timeout` (see [`ServerConfig::idle_timeout`]), or when
/// the server shuts down. A request hyper refused as malformed is told to `on_malformed`.
///
/// Returns an HTTP/1 request whose headers began and never ended, to be recorded, with the
/// `408` to write on the socket once hyper has let go of it when `raw_answer` says the socket can
/// take one written past hyper (plain TCP: over TLS only hyper's session could) and hyper has
/// nothing left unwritten.
async fn run_connection<C>(
    connection: C,
    activity: &Activity,
    (header_timeout, idle_timeout): (Duration, Duration),
    mut shutdown: watch::Receiver<bool>,
    on_malformed: Option<(&MalformedRequestHook, SocketAddr)>,
    raw_answer: bool,
) -> Option<Stalled>
where
    C: GracefulConnection<Error = Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(connection);
    let report = |result: Result<(), C::Error>| {
        if let (Err(err), Some((hook, remote))) = (result, on_malformed) {
            if let Some(malformed) = malformed_request(&*err, remote) {
                hook(malformed);
            }
        }
    };
    let opened = Instant::now();
    // Looked at again by the shorter of the two timeouts: a first request may have come and
    // gone before the header timeout, and its idle time is counted from its end.
    let mut deadline = opened + header_timeout.min(idle_timeout);
    let idle_close = loop {
        tokio::select! {
            result = connection.as_mut() => {
                report(result);
                return None;
            }
            () = tokio::time::sleep_until(deadline.into()) => match activity.doing() {
                Doing::Nothing if opened + header_timeout > Instant::now() => {
                    deadline = opened + header_timeout;
                }
                Doing::Nothing => {
                    tracing::debug!("no request within the header timeout; closing the connection");
                    // An HTTP/1 request that began: recorded (and answered). A connection that
                    // sent nothing (or blank lines only), or an HTTP/2 one that opened without
                    // a request, made no request.
                    let what = format!(
                        "the request's headers did not end within the header timeout ({}",
                        humantime::format_duration(header_timeout)
                    );
                    return stalled_request(activity, 0, &what, raw_answer);
                }
                // A request in flight is bounded by the request timeout; look again later.
                Doing::Answering => deadline = Instant::now() + idle_timeout,
                Doing::IdleSince(since) if since + idle_timeout > Instant::now() => {
                    deadline = since + idle_timeout;
                }
                Doing::IdleSince(_) => {
                    tracing::debug!("no request for the idle timeout; closing the connection");
                    // A kept-alive HTTP/1 connection whose next request began (more than blank
                    // lines) and never ended its headers: that request is recorded as on a new
                    // connection, and the connection closed at once (nothing is in flight, and
                    // hyper would wait for the rest of the headers).
                    let what = format!(
                        "the headers of a request on a kept-alive connection did not end \
                         within the idle timeout ({}",
                        humantime::format_duration(idle_timeout)
                    );
                    let from = activity.received_when_idle.load(Ordering::Relaxed);
                    if stalled_request_began(activity, from) {
                        return stalled_request(activity, from, &what, raw_answer);
                    }
                    break true;
                }
            },
            // Shutting down with nothing in flight is an idle close too: an idle HTTP/2 client
            // that ignores pings would otherwise hold the shutdown for its whole grace.
            _ = shutdown.changed() => {
                let idle = || matches!(activity.doing(), Doing::Nothing | Doing::IdleSince(_));
                // An idle HTTP/1 connection closed at once would close under a request already
                // on its way (a client answered a moment ago sends its next one), which then
                // gets no answer and is not recorded: the connection stays open a moment, and a
                // request that comes is answered, with `Connection: close`. (HTTP/2 says which
                // streams it will still answer in its goodbye.)
                if idle() && !activity.http2.load(Ordering::Relaxed) {
                    tokio::select! {
                        result = connection.as_mut() => {
                            report(result);
                            return None;
                        }
                        () = tokio::time::sleep(HTTP1_LAST_REQUESTS) => {}
                    }
                    // A request whose headers began and did not end meanwhile is answered 408
                    // and recorded, as at the header timeout, rather than closed under.
                    let from = match activity.doing() {
                        Doing::Nothing => Some(0),
                        Doing::IdleSince(_) => {
                            Some(activity.received_when_idle.load(Ordering::Relaxed))
                        }
                        Doing::Answering => None,
                    };
                    if let Some(from) = from.filter(|&from| stalled_request_began(activity, from)) {
                        let what = format!(
                            "the request's headers had not ended when the server stopped (it \
                             waited {}",
                            humantime::format_duration(HTTP1_LAST_REQUESTS)
                        );
                        return stalled_request(activity, from, &what, raw_answer);
                    }
                }
                break idle();
            }
        }
    };
    connection.as_mut().graceful_shutdown();
    if idle_close {
        // Nothing is in flight: an HTTP/2 goodbye takes one ping's round trip, and a client that
        // does not answer pings does not get to keep the connection open for that (nor hold a
        // server that is stopping more than a second).
        let goodbye = if *shutdown.borrow() {
            header_timeout.min(Duration::from_secs(1))
        } else {
            header_timeout
        };
        if let Ok(result) = tokio::time::timeout(goodbye, connection).await {
            report(result);
        }
    } else {
        report(connection.await);
    }
    None
}

/// Whether an HTTP/1 request began after the connection had received `from` bytes: more than
/// blank lines arrived since.
fn stalled_request_began(activity: &Activity, from: u64) -> bool {
    activity.significant_until.load(Ordering::Relaxed) > from
        && !activity.http2.load(Ordering::Relaxed)
}

/// Tells `on_malformed` of an HTTP/1 request that began after the connection had received
/// `from` bytes and whose headers never ended, and returns the `408` to answer it with when
/// `raw_answer` allows one and hyper has flushed all it wrote; `what` says which timeout ran
/// out, up to the open parenthesis that the bytes received close.
fn stalled_request(
    activity: &Activity,
    from: u64,
    what: &str,
    raw_answer: bool,
) -> Option<Stalled> {
    if !stalled_request_began(activity, from) {
        return None;
    }
    let answer = (raw_answer && activity.flushed.load(Ordering::Relaxed))
        .then(|| request_timeout_answer(&format!("{what})")));
    let received = activity
        .received
        .load(Ordering::Relaxed)
        .saturating_sub(from);
    Some(Stalled {
        reason: format!(
            "{what}; {received} byte{} received)",
            if received == 1 { "" } else { "s" },
        ),
        answer,
    })
}

/// An HTTP/1 request whose headers never ended, as its connection closes: to be answered (when
/// the connection can take an answer written past hyper) and recorded.
struct Stalled {
    /// Why, up to what became of the connection.
    reason: String,
    /// The `408` to write.
    answer: Option<Vec<u8>>,
}

impl Stalled {
    /// Tells `on_malformed` of the request, and whether its `408` was `written`.
    fn record(self, on_malformed: Option<(&MalformedRequestHook, SocketAddr)>, written: bool) {
        let Some((hook, remote)) = on_malformed else {
            return;
        };
        let ending = if written {
            "answered 408 and closed"
        } else {
            "the connection was closed without an answer"
        };
        hook(MalformedRequest {
            remote,
            status: 408,
            reason: format!("{}: {ending}", self.reason),
        });
    }
}

/// A whole HTTP/1.1 `408` answer saying `why`, with the connection closing: what the server
/// says to a request whose headers never ended, written past hyper, which only closes.
fn request_timeout_answer(why: &str) -> Vec<u8> {
    let body = serde_json::json!({"status": "rejected", "error": why}).to_string();
    format!(
        "HTTP/1.1 408 Request Timeout\r\n\
         content-type: application/json\r\n\
         content-length: {}\r\n\
         connection: close\r\n\
         cache-control: no-store\r\n\
         x-content-type-options: nosniff\r\n\
         date: {}\r\n\r\n{body}",
        body.len(),
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    )
    .into_bytes()
}

/// Longest a closed connection is read on (see [`linger`]).
pub(super) const LINGER_TIME: Duration = Duration::from_secs(5);
/// Longest silence from the client while lingering.
pub(super) const LINGER_SILENCE: Duration = Duration::from_secs(1);
/// Most bytes read and dropped while lingering.
pub(super) const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// Closes a connection gently once hyper is done with it: says that nothing more will be sent,
/// then reads and drops what the client still sends, for a while, before closing. A request
/// answered before its body was read (401 for a wrong credential, 413 for a body over the
/// limit) ends the connection while the body is still arriving; closing a socket with unread
/// data makes the kernel reset the connection, and a client still sending gets the reset,
/// not the answer, which may already be in its hands: it sees a broken pipe where it should see
/// 401 or 413. (Where the client has nothing more to send, the first read ends it.)
async fn linger(mut socket: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    if socket.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buffer = vec![0; 64 * 1024];
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            match tokio::time::timeout(LINGER_SILENCE, socket.read(&mut buffer)).await {
                Ok(Ok(read)) if read > 0 => dropped += read,
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// Writes `answer` (the `408` of a request whose headers never ended) on a socket hyper has let
/// go of; whether all of it went.
async fn write_answer(socket: &mut tokio::net::TcpStream, answer: &[u8]) -> bool {
    use tokio::io::AsyncWriteExt as _;
    let written = tokio::time::timeout(LINGER_SILENCE, socket.write_all(answer)).await;
    matches!(written, Ok(Ok(())))
}

/// The refusal hyper made of a malformed request, if that is why a connection ended.
fn malformed_request(
    err: &(dyn std::error::Error + 'static),
    remote: SocketAddr,
) -> Option<MalformedRequest> {
    let err = err.downcast_ref::<hyper::Error>()?;
    if !err.is_parse() || err.is_parse_status() {
        return None;
    }
    // hyper's own answers to what it could not parse (its `Parse` kinds are not public).
    let reason = err.to_string();
    let status = if !err.is_parse_too_large() {
        400
    } else if reason.contains("URI") {
        414
    } else {
        431
    };
    Some(MalformedRequest {
        remote,
        status,
        reason: format!("not a well-formed HTTP request: {reason}"),
    })
}

/// Open connections per remote address, so that no single address can take every place under
/// the connection cap (and lock out everyone else, health probes included).
#[derive(Default)]
struct PerAddress(std::sync::Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    /// Counts a connection from `address` unless it already has `limit`.
    fn admit(self: &Arc<Self>, address: IpAddr, limit: usize) -> Option<AddressSlot> {
        let mut open = self.0.lock().ok()?;
        let count = open.entry(address).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: self.clone(),
            address,
        })
    }
}

/// Who a remote address belongs to, for the per-address cap: an IPv4 address (also written as
/// IPv4-mapped IPv6), or an IPv6 /64, the block one host or one customer line gets, so that a
/// client cannot get around the cap by using many addresses of its own block.
pub(crate) fn client_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !u128::from(u64::MAX),
            )),
        },
    }
}

/// One connection counted for its address until dropped.
struct AddressSlot {
    counts: Arc<PerAddress>,
    address: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.counts.0.lock() {
            if let Some(count) = open.get_mut(&self.address) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&self.address);
                }
            }
        }
    }
}

/// Serves connections from `listener` until `shutdown` completes, then shuts down gracefully:
/// false when the grace ended with requests still unanswered.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &ServerConfig,
    tls: Option<Tls>,
    on_malformed: Option<MalformedRequestHook>,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper starts this timer as soon as a connection waits for its next request, so alone
        // it would close a kept-alive connection after `header_timeout` however long the idle
        // timeout. The first request's headers are bounded by `run_connection`'s own timer, and
        // a kept-alive connection is closed by its idle timer (a second later than this one
        // would fire otherwise), so that a connection may stay open `idle_timeout` between
        // requests, as configured.
        .header_read_timeout(
            config.header_timeout.max(config.idle_timeout) + Duration::from_secs(1),
        )
        // The end of a client's input ends nothing in flight: a client may send its request,
        // shut its side and wait for the answer (RFC 9112, section 9.6), or send an event and
        // leave. hyper's default takes that end for the client gone and drops the request
        // being answered, before its handler may even have run: an event that arrived whole
        // would be neither kept nor recorded. The cost: a request whose client left runs to its
        // end, bounded by the request timeout and the filters' budget, as over HTTP/1 one that
        // left and one that half-closed look alike.
        .half_close(true)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        // Streams a client resets before hyper takes them: past the limit the connection ends,
        // with every stream not taken yet, some of them sent whole. The default (20) is reached by
        // a client that sends a few dozen events at once and cancels each after its last frame.
        // Ten times the default is still a bound against the rapid reset flood (each such stream
        // is handled as a request, within the concurrency cap and the refusals' record budget).
        .max_pending_accept_reset_streams(200);
    let builder = Arc::new(builder);
    let (stopping, stop_signal) = watch::channel(false);
    let (abandon, abandon_signal) = watch::channel(false);
    // Requests not answered yet, across connections: what the end of the grace leaves
    // unanswered (a connection still open past it may hold none: an idle HTTP/2 client that
    // does not answer the goodbye's ping).
    let unanswered = Arc::new(AtomicUsize::new(0));
    let max_connections = config.max_connections.clamp(1, u32::MAX as usize);
    let connections = Arc::new(Semaphore::new(max_connections));
    // Half the cap per address unless set: one client cannot lock out every other (a reverse
    // proxy in front of the server counts as one address, and needs the setting raised).
    let per_address = Arc::new(PerAddress::default());
    let max_per_address = config
        .max_connections_per_address
        .unwrap_or(max_connections.div_ceil(2))
        .clamp(1, max_connections);
    let acceptor = tls.map(|Tls(config, _)| TlsAcceptor::from(config));
    let handshake_timeout = config.header_timeout;
    let timeouts = (config.header_timeout, config.idle_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Usually too many open files; pausing keeps the loop from spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "too many open connections; closing a new one");
            drop(stream);
            continue;
        };
        let Some(address_slot) = per_address.admit(client_of(remote.ip()), max_per_address) else {
            tracing::warn!(%remote, "too many open connections from this address; closing a new one");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let requests = activity.clone();
        let stopping_now = stop_signal.clone();
        let unanswered = unanswered.clone();
        let abandoned_now = abandon_signal.clone();
        let service = router
            .clone()
            .map_request(move |mut request: axum::http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                request
                    .extensions_mut()
                    .insert(Abandoned(abandoned_now.clone()));
                request
            })
            .map_future(move |answer| {
                let in_flight = requests.begin();
                let counted = Unanswered::begin(&unanswered);
                let http1 = !requests.http2.load(Ordering::Relaxed);
                let stopping = stopping_now.clone();
                async move {
                    let mut answer: Result<axum::response::Response, _> = answer.await;
                    // Shutting down, an HTTP/1 connection answers its last request: the client
                    // learns so from the answer, rather than by a close under its next request.
                    if let (Ok(answer), true) = (&mut answer, http1 && *stopping.borrow()) {
                        answer.headers_mut().insert(
                            axum::http::header::CONNECTION,
                            axum::http::HeaderValue::from_static("close"),
                        );
                    }
                    drop((in_flight, counted));
                    answer
                }
            });
        let service = TowerToHyperService::new(service);
        let builder = builder.clone();
        let stop_signal = stop_signal.clone();
        let acceptor = acceptor.clone();
        let on_malformed = on_malformed.clone();
        // A second handle on the socket, so that it outlives hyper's (see `linger`).
        let lingering = std::os::fd::AsFd::as_fd(&stream).try_clone_to_owned().ok();
        let mut abandoned = abandon_signal.clone();
        let connection_task = async move {
            let _permits = (permit, address_slot);
            let hook = on_malformed.as_ref().map(|hook| (hook, remote));
            let stopping = stop_signal.clone();
            let stalled = match acceptor {
                None => {
                    let stream = Counted::new(stream, activity.clone());
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let raw_answer = lingering.is_some();
                    run_connection(
                        connection,
                        &activity,
                        timeouts,
                        stop_signal,
                        hook,
                        raw_answer,
                    )
                    .await
                }
                Some(acceptor) => {
                    // A connection still in its handshake holds no request: shutting down, it is
                    // dropped rather than waited for (a client that never starts TLS would hold
                    // the shutdown for the handshake timeout).
                    let mut stop = stop_signal.clone();
                    let handshake = tokio::select! {
                        handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)) => handshake,
                        _ = stop.wait_for(|stopping| *stopping) => return,
                    };
                    let Ok(Ok(stream)) = handshake else {
                        tracing::debug!(%remote, "TLS handshake failed or timed out");
                        return;
                    };
                    let stream = Counted::new(stream, activity.clone());
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    run_connection(connection, &activity, timeouts, stop_signal, hook, false).await
                }
            };
            let mut stopping = stopping;
            let mut socket = lingering.and_then(|socket| {
                tokio::net::TcpStream::from_std(std::net::TcpStream::from(socket)).ok()
            });
            if let Some(stalled) = stalled {
                let written = match (&mut socket, &stalled.answer) {
                    (Some(socket), Some(answer)) => write_answer(socket, answer).await,
                    _ => false,
                };
                stalled.record(hook, written);
            }
            // Shutting down, nothing waits for a client to finish sending.
            if let Some(socket) = socket.filter(|_| !*stopping.borrow()) {
                tokio::select! {
                    () = linger(socket) => {}
                    _ = stopping.changed() => {}
                }
            }
        };
        tokio::spawn(async move {
            // Past the shutdown's grace the connection is dropped: a body still on its way
            // fails its read, and its request is refused and recorded before the store closes,
            // rather than left waiting for its timeout while the process ends.
            tokio::select! {
                () = connection_task => {}
                _ = abandoned.wait_for(|abandon| *abandon) => {}
            }
        });
    }
    drop(listener);
    tracing::info!("stopped accepting connections; finishing in-flight requests");
    let _ = stopping.send(true);
    // Every connection holds a permit until it has closed.
    let all_closed = connections.acquire_many(u32::try_from(max_connections).unwrap_or(u32::MAX));
    tokio::select! {
        _ = all_closed => {
            tracing::info!("all connections closed");
            true
        }
        () = tokio::time::sleep(config.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
            let _ = abandon.send(true);
            unanswered.load(Ordering::Acquire) == 0
        }
    }
}

/// Whether the server has dropped the connections still open at the end of its shutdown's grace,
/// in each request's extensions: a body that then fails was cut by the stop, not by its client.
#[derive(Debug, Clone)]
pub(crate) struct Abandoned(watch::Receiver<bool>);

impl Abandoned {
    pub(crate) fn now(&self) -> bool {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::{Tls, client_of};
    use std::net::IpAddr;

    #[test]
    fn a_certificate_isc_would_refuse_for_its_dates_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let load = |from: (i32, u8, u8), to: (i32, u8, u8)| {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
            params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            let (cert_file, key_file) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
            std::fs::write(&cert_file, cert.pem()).unwrap();
            std::fs::write(&key_file, key.serialize_pem()).unwrap();
            Tls::from_pem_files(&cert_file, &key_file).unwrap()
        };
        let expired = load((2020, 1, 1), (2020, 2, 1));
        assert!(expired.warning().unwrap().contains("expired on 2020-02-01"));
        let later = load((2090, 1, 1), (2091, 1, 1));
        assert!(later.warning().unwrap().contains("not valid before"));
        assert!(load((2020, 1, 1), (2090, 1, 1)).warning().is_none());
    }

    #[test]
    fn a_certificate_or_key_path_naming_a_device_a_pipe_or_a_huge_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_file, key_file) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let pipe = dir.path().join("pipe.pem");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &pipe,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let huge = dir.path().join("huge.pem");
        std::fs::write(&huge, cert.pem().repeat(2_000)).unwrap();
        let zero = std::path::Path::new("/dev/zero");
        for (cert_path, key_path, said) in [
            (zero, key_file.as_path(), "not a regular file"),
            (cert_file.as_path(), zero, "not a regular file"),
            (pipe.as_path(), key_file.as_path(), "not a regular file"),
            (huge.as_path(), key_file.as_path(), "longer than"),
        ] {
            let err = Tls::from_pem_files(cert_path, key_path).expect_err("refused");
            assert!(err.to_string().contains(said), "{err}");
        }
        assert!(Tls::from_pem_files(&cert_file, &key_file).is_ok());
    }

    #[test]
    fn an_ipv6_client_is_its_64_block_and_a_mapped_address_its_ipv4() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(client_of(ip("2001:db8:1:2::5")), ip("2001:db8:1:2::"));
        assert_eq!(
            client_of(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_ne!(client_of(ip("2001:db8:1:3::5")), ip("2001:db8:1:2::"));
        assert_eq!(client_of(ip("::ffff:10.0.0.7")), ip("10.0.0.7"));
        assert_eq!(client_of(ip("10.0.0.7")), ip("10.0.0.7"));
    }
}
