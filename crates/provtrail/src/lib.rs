//! provtrail, the application: the ingest core, the storage boundary and its backends, the HTTP
//! server and the metrics. The command line in `main.rs` is a thin layer over this library, and the
//! benchmark driver uses it to run the real server.

pub mod app;
pub mod auth;
pub mod config;
pub mod ingest;
pub mod metrics;
pub mod server;
pub mod store;
