//! provtrail, the application: the ingest core, the storage boundary and its backends, the HTTP
//! server and the metrics. The command line in `main.rs` is a thin layer over this library, and the
//! benchmark driver uses it to run the real server.

pub mod app;
pub mod auth;
pub mod config;
pub mod ingest;
pub mod isc;
pub mod metrics;
pub mod routes;
pub mod sender;
pub mod server;
pub mod store;
pub mod synth;
pub mod visible;

/// Makes ring the process's TLS crypto provider (for the HTTP client; the server passes its provider
/// explicitly). Calling it again does nothing.
pub fn install_crypto_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

/// The nice value of background threads: those whose work may lag behind ingest (route
/// deliveries, the search index, checkpoints), below the HTTP threads and the store's writer
/// at the default 0.
const BACKGROUND_NICENESS: i32 = 10;

/// Makes the calling thread a background thread: on a machine whose cores are all busy, the
/// kernel gives ingest the CPU first and this thread what is left (at nice 10 against 0, about a
/// tenth of a busy core, so it still progresses); with idle cores it changes nothing. On Linux,
/// priority is per thread, and threads a thread starts inherit it. Best effort: a failure leaves
/// the thread at the default priority.
pub(crate) fn become_background_thread() {
    #[cfg(target_os = "linux")]
    {
        let thread = rustix::thread::gettid();
        if let Err(err) = rustix::process::setpriority_process(Some(thread), BACKGROUND_NICENESS) {
            tracing::debug!(error = %err, "cannot lower a background thread's priority");
        }
    }
}

/// Raises the soft limit on open files towards `wanted`, as far as the hard limit allows, and
/// returns the soft limit then in force (`None` where it cannot be read). Every connection is a
/// file: a server under the common default of 1,024 would refuse connections long before its
/// connection cap, however that is configured.
pub fn raise_open_file_limit(wanted: u64) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let current = limit.current?;
        let reachable = limit.maximum.map_or(wanted, |maximum| wanted.min(maximum));
        if reachable <= current {
            return Some(current);
        }
        let raised = rustix::process::Rlimit {
            current: Some(reachable),
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => Some(reachable),
            Err(err) => {
                tracing::debug!(error = %err, "cannot raise the open-file limit");
                Some(current)
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = wanted;
        None
    }
}

pub mod search;
