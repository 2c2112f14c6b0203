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

/// `n` with its thousands grouped by commas: `1,234,567`. For people, in the web UI and on the
/// terminal alike.
pub fn grouped_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

/// Creates a file, or empties the one there, readable and writable by its owner only (on Unix):
/// for files that hold secrets or identities (configurations, tokens, exported events).
pub fn create_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let file = open_private(path)?;
    claim_output(&file)?;
    Ok(file)
}

/// [`create_private`] without emptying the file or changing its mode: for output opened early,
/// so that a path that cannot be written fails before the work, and claimed
/// ([`claim_output`]) once the work has something to write. A new file is made readable by its
/// owner only; one that was there is left as it was until then.
pub fn open_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Makes a regular file readable by its owner only and empties it, for output about to be
/// written. A device or a pipe (`/dev/null`, a FIFO) is other users' too, and has nothing to
/// empty: left as it is.
pub fn claim_output(file: &std::fs::File) -> std::io::Result<()> {
    if file.metadata()?.is_file() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.set_len(0)?;
    }
    Ok(())
}

/// Makes an empty file at `path`, readable and writable by its owner only, unless something is
/// there already. SQLite makes a database of an empty file, and gives its log and shared-memory
/// files the database's mode: a store made this way keeps the events (identities and their
/// access) from other users of the machine.
pub(crate) fn precreate_private(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            // An empty file made beforehand (`touch`) becomes the store: as private as a new one.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                // Best effort: a file of another owner keeps its mode (and may still be writable).
                let empty = std::fs::symlink_metadata(path)
                    .is_ok_and(|meta| meta.is_file() && meta.len() == 0);
                if empty {
                    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
                }
            }
            Ok(())
        }
        Err(err) => Err(err),
    }
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
