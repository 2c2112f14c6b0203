//! provtrail, the application: the ingest core, the storage boundary and its backends, the HTTP
//! server and the metrics. The command line in `main.rs` is a thin layer over this library, and the
//! benchmark driver uses it to run the real server.

pub mod app;
pub mod auth;
pub mod config;
pub mod ingest;
pub mod metrics;
pub mod routes;
pub mod sender;
pub mod server;
pub mod store;
pub mod synth;

/// Makes ring the process's TLS crypto provider (for the HTTP client; the server passes its provider
/// explicitly). Calling it again does nothing.
pub fn install_crypto_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}
pub mod search;
