//! Checkpoints on their own thread. SQLite copies the write-ahead log back into the database
//! inside whichever commit crosses a threshold, which stalls every request waiting on that commit.
//! This thread does most of that copying in the background without blocking the writer
//! (`PASSIVE`), so that the writer's own checkpoint has little left to do.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How often the log is copied back.
const INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(super) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(path: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("provtrail-checkpoint".into())
            .spawn(move || {
                // The writer checkpoints too when the log grows past its threshold.
                crate::become_background_thread();
                run(&path, &flag)
            })
            .ok();
        Checkpointer { stop, thread }
    }

    /// Stops the thread after one last full checkpoint.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(path: &PathBuf, stop: &AtomicBool) {
    let Ok(conn) = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) else {
        tracing::warn!(
            "cannot open the database for checkpoints; the log will only shrink on restart"
        );
        return;
    };
    let _ = conn.busy_timeout(Duration::from_secs(1));
    let _ = conn.pragma_update(None, "synchronous", "FULL");
    let _ = conn.pragma_update(None, "wal_autocheckpoint", 0);
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(INTERVAL);
        // PASSIVE never waits for the writer; with nothing new in the log it costs little.
        if let Err(err) = checkpoint(&conn, "PASSIVE") {
            tracing::debug!(error = %err, "checkpoint failed; will retry");
        }
    }
    // On the way out, fold the whole log into the database and empty it.
    if let Err(err) = checkpoint(&conn, "TRUNCATE") {
        tracing::debug!(error = %err, "final checkpoint failed");
    }
}

fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<()> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
}
