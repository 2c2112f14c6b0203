//! The accept loop: HTTP/1.1 and HTTP/2, optional TLS, header timeouts, a cap on open connections,
//! and graceful shutdown that answers every request already received.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tower::ServiceExt as _;

use super::ServerConfig;

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
}

/// A TLS configuration for the listener.
#[derive(Clone)]
pub struct Tls(Arc<rustls::ServerConfig>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Reads a PEM certificate chain and a PEM private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, ServerError> {
        let read = |path: &Path| {
            std::fs::read(path)
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
            .with_single_cert(chain, key_der)
            .map_err(|err| {
                ServerError::Tls(format!("the certificate and key do not fit: {err}"))
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls(Arc::new(config)))
    }
}

/// A server running in the background (used by `serve`, `demo`, tests and the benchmark).
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// Binds and starts serving `router`.
    pub async fn start(
        router: Router,
        config: &ServerConfig,
        tls: Option<Tls>,
    ) -> Result<Self, ServerError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let config = config.clone();
        let task = tokio::spawn(async move {
            serve(listener, router, &config, tls, async {
                let _ = stopped.await;
            })
            .await;
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

    /// Stops accepting, lets in-flight requests finish (up to the grace period) and returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Waits until the server stops by itself (it does not, short of a panic).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Runs a connection, but closes it when no request has begun within `timeout`. The HTTP/1 header
/// timeout only starts once the protocol has been told apart from HTTP/2, which takes the first
/// bytes: a client that connects and sends nothing (or a few bytes) would otherwise hold a
/// connection slot for ever.
async fn close_unless_a_request_starts<F: Future>(
    connection: F,
    first_request: &Notify,
    timeout: Duration,
) {
    tokio::pin!(connection);
    tokio::select! {
        _ = &mut connection => return,
        started = tokio::time::timeout(timeout, first_request.notified()) => {
            if started.is_err() {
                tracing::debug!("no request within the header timeout; closing the connection");
                return;
            }
        }
    }
    let _ = connection.await;
}

/// Serves connections from `listener` until `shutdown` completes, then shuts down gracefully.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &ServerConfig,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let acceptor = tls.map(|Tls(config)| TlsAcceptor::from(config));
    let handshake_timeout = config.header_timeout;
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
        let _ = stream.set_nodelay(true);
        let first_request = Arc::new(Notify::new());
        let started = first_request.clone();
        let service =
            router
                .clone()
                .map_request(move |mut request: axum::http::Request<Incoming>| {
                    started.notify_one();
                    request.extensions_mut().insert(ConnectInfo(remote));
                    request
                });
        let service = TowerToHyperService::new(service);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                None => {
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let connection = watcher.watch(connection.into_owned());
                    close_unless_a_request_starts(connection, &first_request, handshake_timeout)
                        .await;
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await;
                    let Ok(Ok(stream)) = handshake else {
                        tracing::debug!(%remote, "TLS handshake failed or timed out");
                        return;
                    };
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let connection = watcher.watch(connection.into_owned());
                    close_unless_a_request_starts(connection, &first_request, handshake_timeout)
                        .await;
                }
            }
        });
    }
    drop(listener);
    tracing::info!("stopped accepting connections; finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(config.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
        }
    }
}
