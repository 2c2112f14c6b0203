//! The single writer: one thread owns the write connection and commits queued work in groups, so
//! that many concurrent deliveries share one fsync.
//!
//! Why one thread: SQLite allows one writer at a time anyway, and a dedicated thread turns lock
//! contention into a queue whose length is the batch. Why group commits: with `synchronous=FULL`
//! every commit waits for the disk; committing what queued up during the previous fsync makes
//! throughput grow with concurrency while each request still waits for its own durable commit.
//! Why a syncer thread can be had (`LogSync::Pipelined`): the fsync takes more than half of each
//! commit's time, during which the writer does nothing; with the sync on its own thread, the
//! writer builds the next commit meanwhile, and one sync covers every group committed since the
//! previous one. It is not the default: on a quiet 2-core machine it made smaller commits, whose
//! fixed costs outweighed the overlap (14-18k against 18-19k events/s); it won only while other
//! work loaded the machine and made each fsync slower (docs/performance.md).

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::{Shared, apply_size_cap, documents_refused_for_size, open_connection, outbox};
use crate::metrics::EventOutcome;
use crate::store::{
    Content, Incoming, IngestOutcome, LateAnswer, ORDER_SLACK_MS, OutboxItem, OutboxWrite,
    QuarantineReason, Rejection, SearchFields, StoreError,
};

/// Work for the writer.
pub(super) enum Job {
    /// Keep a delivered document and answer when it is durable.
    Ingest(
        Box<Pending>,
        oneshot::Sender<Result<IngestOutcome, StoreError>>,
    ),
    /// Record a rejected request; nobody waits for it.
    Reject(Box<Rejection>),
    /// Commit a small write to prove the store is writable.
    Probe(oneshot::Sender<Result<(), StoreError>>),
    /// Change the routes' outbox (attempt results, replays, dead-letter retries).
    Outbox(Box<OutboxJob>),
}

/// An outbox change and who waits for it.
pub(super) struct OutboxJob {
    pub write: OutboxWrite,
    /// Deliveries touched, set while committing.
    pub touched: std::sync::atomic::AtomicU64,
    pub reply: oneshot::Sender<Result<u64, StoreError>>,
}

/// How often a commit failure that repeats is logged again.
const FAILURE_REMINDER: Duration = Duration::from_secs(60);

/// Bytes a readiness probe writes (and removes again) to prove there is room for new events.
const PROBE_SPACE: usize = 16 * 1024;

/// A document with its body already encoded for storage (compression happens on the caller's
/// thread, not on the single writer).
pub(super) struct Pending {
    pub incoming: Incoming,
    pub codec: i64,
    pub stored_raw: bytes::Bytes,
    /// The search index document (events only).
    pub index_doc: String,
}

/// How a commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSync {
    /// SQLite fsyncs the log inside each commit (`synchronous=FULL`); the writer waits for the
    /// disk before it starts the next commit.
    Inline,
    /// The writer commits without waiting for the disk (`synchronous=NORMAL`) and a second
    /// thread fdatasyncs the log, then answers the commit's requests. The next commit is built
    /// while the disk flushes the previous one; no request is answered before the log holding
    /// its commit is on disk, so a 200 means the same as with `Inline`.
    Pipelined,
}

/// How the writer batches.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommit {
    /// Most documents in one commit.
    pub max_batch: usize,
    /// How long a batch may wait for more work once it has more than one item (a lone request is
    /// committed at once). None by default: what queued during the previous commit is the batch;
    /// at 64 connections, waiting 500 µs for more left the writer idle a third of the time and cost
    /// 15 % of the throughput (docs/performance.md).
    pub max_wait: Duration,
    /// Who waits for the disk (see [`LogSync`]); inline by default.
    pub log_sync: LogSync,
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit {
            max_batch: 512,
            max_wait: Duration::ZERO,
            log_sync: LogSync::Inline,
        }
    }
}

pub(super) struct Writer {
    pub path: PathBuf,
    pub conn: Option<Connection>,
    pub jobs: Receiver<Job>,
    pub group: GroupCommit,
    pub shared: Arc<Shared>,
    /// Counts the connections opened, so that the syncer knows when the log file may be a new
    /// one (see [`Committed::connection`]).
    pub connection: u64,
    /// The files the store opened, to tell when the path no longer leads to them.
    pub files: Option<StoreFiles>,
    /// Set for good once the database was found deleted or replaced under the server.
    pub moved: Option<Moved>,
    /// The last failed commit's reason and when it was logged: a store that fails the same way
    /// at every commit (a lock, a full disk) is logged once a minute, not at every commit.
    pub failure_said: Option<(String, Instant)>,
    /// Records of refused requests whose commit failed (the store locked, the disk full): kept
    /// to be written once commits work again, so that the delivery log still shows what was
    /// refused while the store could not take it (at most [`MAX_HELD_RECORDS`]).
    pub held: std::collections::VecDeque<Job>,
}

/// Most records of refused requests held while commits fail (up to about 1 KB each); beyond it
/// they are counted only (`provtrail_delivery_records_dropped_total`). Refusals anyone can send
/// are recorded at most 20 a second, so this holds well over half an hour of them (fewer where
/// authenticated requests time out waiting for the store, which are all recorded).
const MAX_HELD_RECORDS: usize = 50_000;

/// How often held records are tried again when no other work comes.
const HELD_RETRY: Duration = Duration::from_secs(1);

/// The database file and its write-ahead log as opened, by device and inode. Deleted or
/// replaced while the server runs (a careless clean-up, a backup put back), SQLite goes on
/// writing to the files it holds open, which nothing will read again: every commit after it
/// would be answered 200 and lost at the next start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StoreFiles {
    database: (u64, u64),
    log: Option<(u64, u64)>,
}

impl StoreFiles {
    /// The files at `path` now (the log may not exist yet).
    pub(super) fn at(path: &std::path::Path) -> Option<Self> {
        Some(StoreFiles {
            database: file_id(path)?,
            log: file_id(&log_path(path)),
        })
    }

    /// This process's descriptors of these files (`/proc/self/fd`), database first.
    #[cfg(target_os = "linux")]
    fn open_descriptors(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
            return Vec::new();
        };
        let mut database = None;
        let mut log = None;
        for entry in entries.flatten() {
            let id = file_id(&entry.path());
            if id.is_some() && id == Some(self.database) && database.is_none() {
                database = Some(entry.file_name().to_string_lossy().into_owned());
            } else if id.is_some() && id == self.log && log.is_none() {
                log = Some(entry.file_name().to_string_lossy().into_owned());
            }
        }
        database.into_iter().chain(log).collect()
    }

    #[cfg(not(target_os = "linux"))]
    fn open_descriptors(&self) -> Vec<String> {
        Vec::new()
    }

    /// What is wrong when the path no longer leads to these files.
    fn moved_from(&self, path: &std::path::Path) -> Option<String> {
        let database_now = file_id(path);
        let log_now = file_id(&log_path(path));
        let replaced = |was: (u64, u64), now: Option<(u64, u64)>| match now {
            None => Some("deleted or renamed"),
            Some(now) if now != was => Some("replaced"),
            Some(_) => None,
        };
        let (file, how) = match (replaced(self.database, database_now), self.log) {
            (Some(how), _) => (path.to_owned(), how),
            (None, Some(log)) => (log_path(path), replaced(log, log_now)?),
            (None, None) => return None,
        };
        Some(format!(
            "the database file {} was {how} while the server was running, so nothing written \
             now would be kept",
            file.display()
        ))
    }
}

fn log_path(database: &std::path::Path) -> PathBuf {
    let mut path = database.as_os_str().to_owned();
    path.push("-wal");
    PathBuf::from(path)
}

#[cfg(unix)]
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    crate::store::file_identity(path)
}

#[cfg(not(unix))]
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    // Elsewhere the check is off: a file that exists counts as the one opened.
    path.exists().then_some((0, 0))
}

/// A database found deleted or replaced under the writer, and its copy.
pub(super) struct Moved {
    /// What happened to the file.
    found: String,
    /// Where the database as it was is saved, once it is.
    saved: Option<PathBuf>,
    /// Why the last attempt to save it failed, and when it was made.
    failed: Option<(String, Instant)>,
}

/// How often a copy that could not be saved (a full disk) is tried again.
const SAVE_RETRY: Duration = Duration::from_secs(10);

impl Moved {
    /// The whole story, as the answers of every later write give it.
    fn message(&self, database: &std::path::Path) -> String {
        match (&self.saved, &self.failed) {
            (Some(saved), _) => format!(
                "{}; every event acknowledged before is saved in {saved}: restart provtrail, then \
                 bring them back with `provtrail export --db {saved} | provtrail ingest --db {db} -`",
                self.found,
                saved = saved.display(),
                db = database.display()
            ),
            (None, Some((why, _))) => format!("{}; {why}", self.found),
            (None, None) => self.found.clone(),
        }
    }
}

/// A committed group: what must happen once its log is on disk.
struct Committed {
    batch: Vec<Job>,
    outcomes: Vec<Option<IngestOutcome>>,
    handover: outbox::Handover,
    routes: outbox::Counters,
    started: Instant,
    /// Bumped whenever the writer opens a new connection, so that the syncer opens the log file
    /// afresh (it may be a new file).
    connection: u64,
}

impl Writer {
    /// Runs until every sender is gone, then commits what is left, waits for it to be on disk
    /// and answered, and returns.
    pub fn run(mut self) {
        let syncer = match self.group.log_sync {
            LogSync::Inline => None,
            LogSync::Pipelined => match Syncer::start(&self.path, self.shared.clone()) {
                Ok(syncer) => Some(syncer),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot start the log syncer; syncing inline");
                    None
                }
            },
        };
        if let Some(conn) = &self.conn {
            if let Err(err) = set_synchronous(conn, syncer.is_some()) {
                tracing::warn!(error = %err, "cannot set up the write connection; reopening it");
                self.conn = None;
            }
        }
        let mut batch = Vec::with_capacity(self.group.max_batch);
        loop {
            let next = if self.held.is_empty() {
                self.jobs.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                // Held records are tried again on their own when nothing else comes.
                self.jobs.recv_timeout(HELD_RETRY)
            };
            match next {
                Ok(first) => {
                    batch.push(first);
                    self.gather(&mut batch);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Held records go first, oldest first, and all at once: their receipt times then come
            // in order before the new work's, and the store's ids keep following its times
            // (`TimeOrder`), however long the store could not commit.
            if !self.held.is_empty() {
                let mut with_held: Vec<Job> = self.held.drain(..).collect();
                with_held.append(&mut batch);
                batch = with_held;
            }
            // A panic while writing must not kill the writer (and with it every later request):
            // the batch is answered with an error and the connection is reopened.
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                self.commit(&mut batch, syncer.as_ref());
            }));
            if outcome.is_err() {
                tracing::error!("the store writer panicked; reopening the database");
                self.conn = None;
                fail_all(&mut batch, "internal error while writing", &self.shared);
            }
            batch.clear();
        }
        // A last try for the records still held; what fails now is counted as dropped.
        if !self.held.is_empty() {
            let mut last: Vec<Job> = self.held.drain(..).collect();
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
                self.commit(&mut last, syncer.as_ref());
            }));
            let dropped = self.held.len() as u64;
            self.held.clear();
            self.shared.metrics.rejections_dropped.inc_by(dropped);
        }
        if let Some(syncer) = syncer {
            syncer.stop();
        }
        // A file deleted or replaced after the last commit is found by no commit: looked for
        // once more, since closing the connection would take the log's acknowledged events
        // with it.
        if self.moved.is_none() {
            if let Some(found) = self
                .files
                .as_ref()
                .and_then(|files| files.moved_from(&self.path))
            {
                self.shared.unsaved_copy.store(true, Ordering::Relaxed);
                tracing::error!(error = %found, "the database file is gone; saving it as it was");
                self.moved = Some(Moved {
                    found,
                    saved: None,
                    failed: None,
                });
            }
        }
        if self
            .moved
            .as_ref()
            .is_some_and(|moved| moved.saved.is_none())
        {
            // The last chance: once the connection closes, the file as it was is gone.
            if let Some(moved) = &mut self.moved {
                moved.failed = None;
            }
            self.save_if_not_yet();
            if self
                .moved
                .as_ref()
                .is_some_and(|moved| moved.saved.is_none())
            {
                tracing::error!(error = %self.moved_message(), "stopping with the database as it was unsaved");
            }
        }
        // Saved or given up on: nothing more is being saved.
        self.shared.unsaved_copy.store(false, Ordering::Relaxed);
        tracing::debug!("store writer stopped");
    }

    fn gather(&self, batch: &mut Vec<Job>) {
        let deadline = Instant::now() + self.group.max_wait;
        // A readiness probe waits for its commit within a second: a batch that holds one is
        // committed as soon as the queue is empty, whatever `commit_max_wait` says.
        let mut probing = batch.iter().any(|job| matches!(job, Job::Probe(_)));
        while batch.len() < self.group.max_batch {
            match self.jobs.try_recv() {
                Ok(job) => {
                    probing |= matches!(job, Job::Probe(_));
                    batch.push(job);
                }
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => {
                    // Only wait when there is evidence of concurrent work.
                    if probing || batch.len() < 2 || self.group.max_wait.is_zero() {
                        return;
                    }
                    match self.jobs.recv_deadline(deadline) {
                        Ok(job) => {
                            probing |= matches!(job, Job::Probe(_));
                            batch.push(job);
                        }
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
        }
    }

    /// Commits `batch` and answers each of its jobs. Returns why, when documents were refused for
    /// the store's size cap (`store.max_size`).
    fn commit(&mut self, batch: &mut Vec<Job>, syncer: Option<&Syncer>) -> Option<String> {
        if self.moved.is_some() {
            self.save_if_not_yet();
            let message = self.moved_message();
            count_failed_commit(batch, &self.shared.metrics);
            fail_all(batch, &message, &self.shared);
            return None;
        }
        // The cap is read on the connection, which a failed commit closed: opened again first
        // (a failure here fails the commit below, as it would have).
        if self.shared.settings.max_size_bytes.is_some() {
            let _ = self.reopen_if_closed(syncer.is_some());
        }
        if let Some(message) = self.documents_refused_for_size(batch) {
            // A store at its cap takes no documents: they are answered as for a full disk, and
            // records of refused requests are counted only. Delivery outcomes of the events
            // kept go into the room reserved above the cap, so that the outbox still drains.
            refuse_documents(batch, &message, &self.shared, self.conn.as_ref());
            if batch.is_empty() {
                return Some(message);
            }
        }
        // Checked before the commit, so that nothing goes into a file nobody reads again, and
        // after it, before anyone is told: a file deleted during the commit holds what it
        // committed, and nobody may be told that it is kept.
        if self.refuse_if_moved(batch, false) {
            return None;
        }
        let started = Instant::now();
        let result = self.try_commit(batch, syncer.is_some());
        if self.refuse_if_moved(batch, result.is_ok()) {
            return None;
        }
        match result {
            Ok((outcomes, handover, routes)) => {
                self.failure_said = None;
                let committed = Committed {
                    batch: std::mem::take(batch),
                    outcomes,
                    handover,
                    routes,
                    started,
                    connection: self.connection,
                };
                match syncer {
                    Some(syncer) => syncer.push(committed, &self.shared),
                    None => finish(committed, Ok(()), &self.shared),
                }
                None
            }
            Err(err) => {
                // Unavailable is wrapped again by `fail_all`: its bare message, not its text.
                let message = match err {
                    StoreError::Unavailable(message) => message,
                    other => other.to_string(),
                };
                let at_cap = message
                    .starts_with(FULL)
                    .then(|| self.size_cap_reached())
                    .flatten();
                if at_cap.is_some() && batch.len() > 1 {
                    // A group larger than the room left under the cap: its documents go in one
                    // at a time, as many as fit, rather than all refused for the last ones. The
                    // first that does not fit ends it: the rest are refused without a try.
                    self.conn = None;
                    let mut jobs = std::mem::take(batch).into_iter();
                    while let Some(job) = jobs.next() {
                        if let Some(cap) = self.commit(&mut vec![job], syncer) {
                            let mut rest: Vec<Job> = jobs.collect();
                            refuse_documents(&mut rest, &cap, &self.shared, self.conn.as_ref());
                            if !rest.is_empty() {
                                self.commit(&mut rest, syncer);
                            }
                            return Some(cap);
                        }
                    }
                    return None;
                }
                count_failed_commit(batch, &self.shared.metrics);
                let at_cap_message = at_cap.clone();
                let message = at_cap.unwrap_or(message);
                let repeated = self
                    .failure_said
                    .as_ref()
                    .is_some_and(|(said, at)| *said == message && at.elapsed() < FAILURE_REMINDER);
                if repeated {
                    tracing::debug!(error = %message, documents = batch.len(), "group commit failed");
                } else {
                    tracing::warn!(error = %message, documents = batch.len(),
                        "group commit failed (the same failure again is said once a minute)");
                    self.failure_said = Some((message.clone(), Instant::now()));
                }
                // The connection may be what is broken (file replaced, read-only remount): start
                // afresh on the next batch.
                self.conn = None;
                self.hold_records(batch);
                fail_all(batch, &message, &self.shared);
                at_cap_message
            }
        }
    }

    /// Takes the records of refused requests out of a batch whose commit failed, to be written
    /// with a later commit.
    fn hold_records(&mut self, batch: &mut Vec<Job>) {
        let mut rest = Vec::with_capacity(batch.len());
        let mut records = Vec::new();
        for job in batch.drain(..) {
            match job {
                Job::Reject(_) => records.push(job),
                other => rest.push(other),
            }
        }
        *batch = rest;
        // In the order they came (those held before first), ahead of any held meanwhile.
        for record in records.into_iter().rev() {
            if self.held.len() < MAX_HELD_RECORDS {
                self.held.push_front(record);
            } else {
                self.shared.metrics.rejections_dropped.inc();
            }
        }
    }

    /// When the database path no longer leads to the files this writer holds open: refuses the
    /// batch, and every write from now on, and saves the database as it was. `committed`: the
    /// batch went into the file as it was, and so into the copy, which its answers say.
    fn refuse_if_moved(&mut self, batch: &mut Vec<Job>, committed: bool) -> bool {
        let Some(found) = self
            .files
            .as_ref()
            .and_then(|files| files.moved_from(&self.path))
        else {
            return false;
        };
        self.moved = Some(Moved {
            found,
            saved: None,
            failed: None,
        });
        self.shared.unsaved_copy.store(true, Ordering::Relaxed);
        self.save_if_not_yet();
        let message = self.moved_message();
        tracing::error!(error = %message, "the database file is gone; refusing every write");
        count_failed_commit(batch, &self.shared.metrics);
        if committed {
            let said = format!(
                "this request was committed to the database file as it was, not to the one now \
                 at its path, and is answered as not kept: {message}"
            );
            fail_all_as(batch, &said, &self.shared, StoreError::Stranded);
        } else {
            fail_all(batch, &message, &self.shared);
        }
        true
    }

    fn moved_message(&self) -> String {
        self.moved
            .as_ref()
            .map(|moved| moved.message(&self.path))
            .unwrap_or_default()
    }

    /// Saves the database as it was, unless it is saved already or was tried less than
    /// [`SAVE_RETRY`] ago (a full disk may have room again).
    fn save_if_not_yet(&mut self) {
        let due = self.moved.as_ref().is_some_and(|moved| {
            moved.saved.is_none()
                && moved
                    .failed
                    .as_ref()
                    .is_none_or(|(_, at)| at.elapsed() >= SAVE_RETRY)
        });
        if !due {
            return;
        }
        let outcome = self.save_as_it_was();
        if let Some(moved) = &mut self.moved {
            match outcome {
                Ok(saved) => {
                    tracing::warn!(saved = %saved.display(), "the database as it was is saved");
                    moved.saved = Some(saved);
                    self.shared.unsaved_copy.store(false, Ordering::Relaxed);
                    moved.failed = None;
                }
                Err(why) => moved.failed = Some((why, Instant::now())),
            }
        }
    }

    /// Copies the database as this writer sees it (the file it opened and its log: every event
    /// ever acknowledged) to a new file beside the path. Without it, they would be lost when the
    /// process ends: the file was deleted or replaced, and SQLite removes the log on close.
    fn save_as_it_was(&self) -> Result<PathBuf, String> {
        let kept_open = || {
            let pid = std::process::id();
            let open = self
                .files
                .as_ref()
                .map(StoreFiles::open_descriptors)
                .unwrap_or_default();
            format!(
                "the events acknowledged before are only in the file as it was, which this \
                 process still holds open: copy {} before you stop provtrail",
                if open.is_empty() {
                    format!("it from /proc/{pid}/fd/")
                } else {
                    open.iter()
                        .map(|fd| format!("/proc/{pid}/fd/{fd}"))
                        .collect::<Vec<_>>()
                        .join(" (the database) and ")
                        + if open.len() > 1 { " (its log)" } else { "" }
                }
            )
        };
        let Some(conn) = &self.conn else {
            return Err(kept_open());
        };
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let mut last = String::new();
        for attempt in 0..100 {
            let mut name = self.path.as_os_str().to_owned();
            name.push(format!(".saved-{stamp}"));
            if attempt > 0 {
                name.push(format!("-{attempt}"));
            }
            let saved = PathBuf::from(name);
            if saved.exists() {
                continue;
            }
            // Made empty and private first: SQLite fills an empty file, and one it made itself
            // would be readable by every user of the machine, events and identities included.
            if let Err(err) = crate::precreate_private(&saved) {
                last = format!("saving the database to {} failed ({err})", saved.display());
                break;
            }
            match conn.execute("VACUUM INTO ?1", params![saved.to_string_lossy()]) {
                Ok(_) => {
                    // The log's frames belong to the file as it was: emptied, they cannot be
                    // replayed into whatever file now has the path when the server is killed.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                    return Ok(saved);
                }
                Err(err) => {
                    // A copy cut short is no copy.
                    let _ = std::fs::remove_file(&saved);
                    last = format!("saving the database to {} failed ({err})", saved.display());
                    if !saved.exists() && !err.to_string().contains("already exists") {
                        break;
                    }
                }
            }
        }
        Err(format!("{last}; {}", kept_open()))
    }

    /// Why the documents of `batch` cannot go in: the database has reached its size cap.
    /// Only asked when the batch holds something that the cap refuses.
    fn documents_refused_for_size(&self, batch: &[Job]) -> Option<String> {
        self.shared.settings.max_size_bytes?;
        if !batch.iter().any(refused_at_the_cap) {
            return None;
        }
        documents_refused_for_size(self.conn.as_ref()?, &self.shared.settings)
    }

    /// Why a commit that found the database full failed, when the reason is its size cap
    /// (`store.max_size`) rather than the disk: the database is within a few megabytes of it.
    fn size_cap_reached(&self) -> Option<String> {
        let max = self.shared.settings.max_size_bytes?;
        let conn = self.conn.as_ref()?;
        let pragma = |name: &str| -> Option<u64> {
            conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0))
                .ok()
                .and_then(|value| u64::try_from(value).ok())
        };
        let size = pragma("page_count")? * pragma("page_size")?;
        (size.saturating_add(4 << 20) >= max).then(|| {
            format!(
                "the database reached its size limit ({size} of {max} bytes, store.max_size); \
                 raise the limit (provtrail deletes no event)"
            )
        })
    }

    /// Opens the write connection again after a failed commit closed it (the connection may be
    /// what was broken); nothing when it is open.
    fn reopen_if_closed(&mut self, pipelined: bool) -> Result<(), StoreError> {
        if self.conn.is_some() {
            return Ok(());
        }
        // Opening would create an empty database where the old one was deleted. (Only the
        // database: with every connection closed, SQLite may have removed the log itself.)
        if let Some(files) = &mut self.files {
            files.log = None;
            if let Some(message) = files.moved_from(&self.path) {
                return Err(StoreError::Unavailable(format!(
                    "{message}: restart provtrail (events acknowledged before were written \
                         to the file as it was)"
                )));
            }
        }
        let conn = open_connection(&self.path, &self.shared.settings)?;
        apply_size_cap(&conn, &self.shared.settings)?;
        set_synchronous(&conn, pipelined).map_err(unavailable)?;
        self.conn = Some(conn);
        self.connection += 1;
        // With every connection closed for a moment, SQLite may have started a new log.
        if let Some(files) = &mut self.files {
            files.log = file_id(&log_path(&self.path));
        }
        Ok(())
    }

    /// Writes and commits the batch; what follows the commit (answers, handing deliveries to
    /// the routes' workers) is left to [`finish`], once the commit is on disk.
    fn try_commit(
        &mut self,
        batch: &[Job],
        pipelined: bool,
    ) -> Result<
        (
            Vec<Option<IngestOutcome>>,
            outbox::Handover,
            outbox::Counters,
        ),
        StoreError,
    > {
        self.reopen_if_closed(pipelined)?;
        let Some(conn) = self.conn.as_mut() else {
            return Err(StoreError::Unavailable("no database connection".into()));
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut rollups = Rollups::default();
        let mut time_order = TimeOrder::load(&tx).map_err(unavailable)?;
        let mut handover = outbox::Handover::default();
        // The delivery records written for documents whose receivers may give up on them: told
        // to them once committed, never before (a transaction that fails leaves its ids to
        // others).
        let mut records = Vec::new();
        for job in batch {
            outcomes.push(match job {
                Job::Ingest(pending, _) => {
                    let (outcome, deliveries) =
                        insert(&tx, pending, &mut rollups, &mut time_order, &mut records)
                            .map_err(unavailable)?;
                    if let IngestOutcome::Accepted { id } = outcome {
                        for (delivery_id, route) in deliveries {
                            handover.add(&self.shared, fresh_item(pending, id, delivery_id, route));
                        }
                    }
                    Some(outcome)
                }
                Job::Reject(rejection) => {
                    time_order
                        .note(&tx, rejection.receipt.received_at)
                        .map_err(unavailable)?;
                    // The record of its document: written in this transaction, or committed before.
                    let record = rejection.amends.as_ref().and_then(|late| {
                        records
                            .iter()
                            .find(|(written, _)| written.is(late))
                            .map(|(_, record)| *record)
                            .or_else(|| late.record())
                    });
                    let amended = match record {
                        Some(record) => {
                            amend_record(&tx, record, rejection).map_err(unavailable)?
                        }
                        None => false,
                    };
                    if !amended {
                        insert_rejection(&tx, rejection).map_err(unavailable)?;
                    }
                    None
                }
                Job::Probe(_) => {
                    // Room for a few events is taken and given back in the same transaction:
                    // updating one small row in place needs no new page, so on its own it would
                    // succeed on a database too full to take a single event.
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES ('probe_space', ?1)",
                        params!["0".repeat(PROBE_SPACE)],
                    )
                    .and_then(|_| tx.execute("DELETE FROM meta WHERE key = 'probe_space'", []))
                    .map_err(unavailable)?;
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES ('last_probe', ?1)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        params![chrono::Utc::now().to_rfc3339()],
                    )
                    .map_err(unavailable)?;
                    None
                }
                Job::Outbox(job) => {
                    let touched =
                        outbox::apply(&tx, &job.write, &mut rollups.routes).map_err(unavailable)?;
                    job.touched.store(touched, Ordering::Relaxed);
                    None
                }
            });
        }
        rollups.write(&tx).map_err(unavailable)?;
        // The search index is not written here: the indexer thread takes the documents once
        // the commit is on disk (see `indexer`).
        // On a failed commit, dropping `handover` takes back its reservations.
        handover.reserve();
        tx.commit().map_err(unavailable)?;
        for (late, record) in records {
            late.note(Some(record));
        }
        Ok((outcomes, handover, rollups.routes))
    }
}

/// With the log synced by the syncer thread, SQLite need not wait for the disk at commit; its
/// checkpoints still sync (NORMAL only leaves out the sync at commit in write-ahead-log mode).
fn set_synchronous(conn: &Connection, pipelined: bool) -> rusqlite::Result<()> {
    conn.pragma_update(
        None,
        "synchronous",
        if pipelined { "NORMAL" } else { "FULL" },
    )
}

/// Answers a committed group, once its log is on disk (`synced` is Ok) or could not be made so.
fn finish(committed: Committed, synced: Result<(), String>, shared: &Arc<Shared>) {
    let Committed {
        mut batch,
        outcomes,
        handover,
        routes,
        started,
        connection: _,
    } = committed;
    let metrics = &shared.metrics;
    if let Err(message) = synced {
        // The commit is in the database, but whether it would survive a power cut is unknown:
        // nobody is told it is kept. Its deliveries stay pending for the workers' next read.
        drop(handover);
        shared
            .outbox_changed
            .send_modify(|n| *n = n.wrapping_add(1));
        count_failed_commit(&batch, metrics);
        tracing::warn!(error = %message, documents = batch.len(), "the log could not be synced");
        fail_all(&mut batch, &message, shared);
        return;
    }
    metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    metrics.commit_batch_size.observe(batch.len() as f64);
    // Writable again once a commit took room for a document: a record of a refusal or a
    // delivery's outcome fits where an event no longer does, and says nothing about events.
    let took_room = batch.iter().any(|job| matches!(job, Job::Probe(_)))
        || outcomes.iter().flatten().any(|outcome| {
            matches!(
                outcome,
                IngestOutcome::Accepted { .. }
                    | IngestOutcome::Quarantined {
                        duplicate: false,
                        ..
                    }
            )
        });
    if took_room {
        shared.set_writable(None);
    }
    // Before any answer: a search made after a 200 waits for the index to hold the event.
    let documents = batch
        .iter_mut()
        .zip(&outcomes)
        .filter_map(|(job, outcome)| match (job, outcome) {
            (Job::Ingest(pending, _), Some(IngestOutcome::Accepted { id })) => {
                Some((*id, std::mem::take(&mut pending.index_doc)))
            }
            _ => None,
        })
        .collect();
    shared.indexer.submit(documents);
    handover.hand_over(shared);
    routes.committed(shared);
    for outcome in outcomes.iter().flatten() {
        metrics.count_event(match outcome {
            IngestOutcome::Accepted { .. } => EventOutcome::accepted,
            IngestOutcome::Duplicate { .. } => EventOutcome::duplicate,
            IngestOutcome::Quarantined { .. } => EventOutcome::quarantined,
        });
    }
    for (job, outcome) in batch.drain(..).zip(outcomes) {
        match job {
            Job::Ingest(_, reply) => {
                if let Some(outcome) = outcome {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Job::Probe(reply) => {
                let _ = reply.send(Ok(()));
            }
            Job::Reject(_) => {}
            Job::Outbox(job) => {
                let touched = job.touched.load(Ordering::Relaxed);
                let _ = job.reply.send(Ok(touched));
            }
        }
    }
}

/// The thread that puts committed groups on disk: it takes every group committed since its last
/// sync, fdatasyncs the log file once for all of them, and answers them. The writer meanwhile
/// builds and commits the next group, so the disk's flush and the writer's work overlap.
///
/// fsync acts on the file, not on the descriptor, so syncing our own descriptor of the log
/// flushes what SQLite wrote through its own. The log file is not locked by SQLite (its locks
/// are on the database and the shared-memory file), so opening and closing it here is safe.
struct Syncer {
    log_path: PathBuf,
    groups: crossbeam_channel::Sender<Committed>,
    thread: std::thread::JoinHandle<()>,
}

impl Syncer {
    fn start(path: &std::path::Path, shared: Arc<Shared>) -> std::io::Result<Self> {
        let mut log_path = path.as_os_str().to_owned();
        log_path.push("-wal");
        let log_path = PathBuf::from(log_path);
        let (groups, received) = crossbeam_channel::unbounded::<Committed>();
        let thread_log_path = log_path.clone();
        let thread = std::thread::Builder::new()
            .name("provtrail-sync".into())
            .spawn(move || sync_loop(&thread_log_path, &received, &shared))?;
        Ok(Syncer {
            log_path,
            groups,
            thread,
        })
    }

    fn push(&self, committed: Committed, shared: &Arc<Shared>) {
        if let Err(err) = self.groups.send(committed) {
            // Only if the syncer thread is gone: sync here rather than never answer.
            let committed = err.into_inner();
            let synced = sync_log(&self.log_path, committed.connection, &mut None);
            finish(committed, synced, shared);
        }
    }

    /// Waits until every group pushed so far is synced and answered.
    fn stop(self) {
        drop(self.groups);
        let _ = self.thread.join();
    }
}

fn sync_loop(log_path: &std::path::Path, groups: &Receiver<Committed>, shared: &Arc<Shared>) {
    let mut log: Option<(u64, std::fs::File)> = None;
    let mut ready = Vec::new();
    while let Ok(first) = groups.recv() {
        ready.push(first);
        ready.extend(groups.try_iter());
        let connection = ready.last().map_or(0, |group| group.connection);
        let synced = sync_log(log_path, connection, &mut log);
        if synced.is_err() {
            // Start from a fresh descriptor next time.
            log = None;
        }
        for group in ready.drain(..) {
            // A panic while answering must not stop the syncing of later groups.
            let answered = std::panic::catch_unwind(AssertUnwindSafe(|| {
                finish(group, synced.clone(), shared);
            }));
            if answered.is_err() {
                tracing::error!("answering a committed group panicked");
            }
        }
    }
}

fn sync_log(
    log_path: &std::path::Path,
    connection: u64,
    log: &mut Option<(u64, std::fs::File)>,
) -> Result<(), String> {
    if log
        .as_ref()
        .is_none_or(|(opened_for, _)| *opened_for != connection)
    {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .open(log_path)
            .map_err(|err| {
                format!(
                    "cannot open the write-ahead log {} to sync it: {err}",
                    log_path.display()
                )
            })?;
        *log = Some((connection, file));
    }
    let Some((_, file)) = log.as_ref() else {
        return Err("no write-ahead log to sync".into());
    };
    file.sync_data()
        .map_err(|err| format!("cannot sync the write-ahead log to disk: {err}"))
}

/// Whether a store at its size cap refuses `job`: what grows the store (documents, records of
/// refused requests, new deliveries, and readiness probes, which ask whether a document fits).
/// Outcomes of deliveries and dead letters sent back go into the room kept above the cap.
/// The outcome of a document the store already holds (an event or a quarantined document with
/// the same deduplication key), read without writing.
fn kept_before(conn: &Connection, incoming: &Incoming) -> Option<IngestOutcome> {
    let query = match incoming.content {
        Content::Event(_) => "SELECT id FROM events WHERE dedup_key = ?1",
        Content::Quarantine(_) => "SELECT id FROM quarantine WHERE dedup_key = ?1",
    };
    let id: i64 = conn
        .prepare_cached(query)
        .ok()?
        .query_row(params![&incoming.dedup_key[..]], |row| row.get(0))
        .ok()?;
    Some(match incoming.content {
        Content::Event(_) => IngestOutcome::Duplicate { id },
        Content::Quarantine(_) => IngestOutcome::Quarantined {
            id,
            duplicate: true,
        },
    })
}

fn refused_at_the_cap(job: &Job) -> bool {
    match job {
        Job::Ingest(..) | Job::Probe(_) => true,
        // Except the refusal of a committed document, which changes its record in place: left
        // out, the log would say 200 for a request answered 503.
        Job::Reject(rejection) => !amends_a_record(rejection),
        Job::Outbox(job) => matches!(job.write, OutboxWrite::Enqueue { .. }),
    }
}

/// Whether `rejection` is of a document whose record was committed: it changes that record in
/// place, and takes no room.
fn amends_a_record(rejection: &Rejection) -> bool {
    rejection
        .amends
        .as_ref()
        .is_some_and(|late| late.record().is_some())
}

/// Answers the jobs of `batch` that a store at its size cap refuses ([`refused_at_the_cap`])
/// with `message` (503) and takes them out of it. A document the store already holds is
/// answered as the duplicate it is: nothing is written for it (not even its delivery record,
/// as no refusal's is at the cap), and a sender that retries it is told it is kept.
fn refuse_documents(
    batch: &mut Vec<Job>,
    message: &str,
    shared: &Shared,
    conn: Option<&Connection>,
) {
    shared.set_writable(Some(message.to_owned()));
    let mut refused_ingest = false;
    let mut kept = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        match job {
            Job::Ingest(pending, reply) => {
                let answer = match conn.and_then(|conn| kept_before(conn, &pending.incoming)) {
                    Some(outcome) => {
                        shared.metrics.count_event(match outcome {
                            IngestOutcome::Quarantined { .. } => EventOutcome::quarantined,
                            _ => EventOutcome::duplicate,
                        });
                        Ok(outcome)
                    }
                    None => {
                        refused_ingest = true;
                        Err(StoreError::Unavailable(message.to_owned()))
                    }
                };
                let _ = reply.send(answer);
            }
            Job::Probe(reply) => {
                let _ = reply.send(Err(StoreError::Unavailable(message.to_owned())));
            }
            Job::Reject(rejection) if amends_a_record(&rejection) => {
                kept.push(Job::Reject(rejection));
            }
            // Refusals come as fast as anyone sends requests: kept, they would take the room
            // reserved for delivery outcomes.
            Job::Reject(_) => {
                shared.metrics.rejections_dropped.inc();
            }
            // New deliveries (a replay) would take it too.
            Job::Outbox(job) if matches!(job.write, OutboxWrite::Enqueue { .. }) => {
                let _ = job
                    .reply
                    .send(Err(StoreError::Unavailable(message.to_owned())));
            }
            Job::Outbox(job) => kept.push(Job::Outbox(job)),
        }
    }
    *batch = kept;
    // One refused commit, counted once, as a failed one is (answers all duplicates are none).
    if refused_ingest {
        shared.metrics.commit_failures.inc();
    }
}

/// Counts a failed commit that held work someone is answered 503 for (a document, an outbox
/// change): the counter is of commits whose requests were answered 503. Readiness probes of a
/// broken store every second are not such commits, nor are the delivery-log records of the 503s
/// themselves, which fail on a full disk as the commit did and would count every failure twice.
fn count_failed_commit(batch: &[Job], metrics: &crate::metrics::Metrics) {
    if batch
        .iter()
        .any(|job| matches!(job, Job::Ingest(..) | Job::Outbox(_)))
    {
        metrics.commit_failures.inc();
    }
}

fn fail_all(batch: &mut Vec<Job>, message: &str, shared: &Shared) {
    fail_all_as(batch, message, shared, StoreError::Unavailable);
}

/// [`fail_all`], with the documents' answers made by `documents`.
fn fail_all_as(
    batch: &mut Vec<Job>,
    message: &str,
    shared: &Shared,
    documents: fn(String) -> StoreError,
) {
    shared.set_writable(Some(message.to_owned()));
    for job in batch.drain(..) {
        match job {
            Job::Ingest(_, reply) => {
                let _ = reply.send(Err(documents(message.to_owned())));
            }
            Job::Probe(reply) => {
                let _ = reply.send(Err(StoreError::Unavailable(message.to_owned())));
            }
            Job::Reject(_) => {
                shared.metrics.rejections_dropped.inc();
            }
            Job::Outbox(job) => {
                let _ = job
                    .reply
                    .send(Err(StoreError::Unavailable(message.to_owned())));
            }
        }
    }
}

fn unavailable(err: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(describe(&err))
}

/// A sentence an operator can act on.
/// How [`describe`] begins the message of a full disk or database.
const FULL: &str = "the disk or the database is full";

fn describe(err: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode;
    match err.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => format!("{FULL} ({err})"),
        Some(ErrorCode::ReadOnly) => format!("the database is read-only ({err})"),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            format!("the database is locked by another process ({err})")
        }
        Some(ErrorCode::CannotOpen) => format!("the database cannot be opened ({err})"),
        Some(ErrorCode::SystemIoFailure) => format!("disk I/O error ({err})"),
        _ => err.to_string(),
    }
}

/// Statistics counted over a batch and written once per distinct key, so that a batch of a
/// hundred events costs a handful of upserts rather than hundreds.
#[derive(Default)]
struct Rollups {
    requests: HashMap<(i64, String, String, String), u64>,
    events: HashMap<(i64, String, String), u64>,
    errors: HashMap<(i64, String, String), u64>,
    /// Route totals (deliveries matched, delivered, dead).
    routes: outbox::Counters,
}

/// Error messages longer than this are cut, so that one odd message cannot bloat the rollup.
const MAX_ERROR_LEN: usize = crate::store::MAX_COUNTED_ERROR_LEN;

/// Distinct error messages of one event counted in the error rollup (the event keeps them all).
const MAX_ERRORS_COUNTED: usize = 100;

impl Rollups {
    fn count(&mut self, received_at: i64, channel: Option<&str>, fields: &SearchFields) {
        let hour = received_at.div_euclid(3_600_000);
        let channel = channel.unwrap_or_default().to_owned();
        for account in &fields.accounts {
            *self
                .requests
                .entry((
                    hour,
                    channel.clone(),
                    account.source_name.clone(),
                    account.result.clone(),
                ))
                .or_default() += 1;
        }
        *self
            .events
            .entry((hour, channel.clone(), fields.outcome.clone()))
            .or_default() += 1;
        // A sender may put tens of thousands of distinct messages in one event: a list searched
        // for each made this quadratic (seconds of the single writer's time, every other
        // request waiting), and each would be an upsert. The first few count.
        let mut seen: HashSet<&str> = HashSet::new();
        for message in &fields.errors {
            if seen.len() == MAX_ERRORS_COUNTED {
                break;
            }
            let message = truncate(message, MAX_ERROR_LEN);
            if seen.insert(message) {
                *self
                    .errors
                    .entry((hour, channel.clone(), message.to_owned()))
                    .or_default() += 1;
            }
        }
    }

    fn write(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let mut requests = tx.prepare_cached(
            "INSERT INTO rollup_requests (hour, channel, source, result, requests)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO UPDATE SET requests = requests + excluded.requests",
        )?;
        for ((hour, channel, source, result), n) in &self.requests {
            requests.execute(params![hour, channel, source, result, *n as i64])?;
        }
        let mut events = tx.prepare_cached(
            "INSERT INTO rollup_events (hour, channel, outcome, events) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO UPDATE SET events = events + excluded.events",
        )?;
        for ((hour, channel, outcome), n) in &self.events {
            events.execute(params![hour, channel, outcome, *n as i64])?;
        }
        let mut errors = tx.prepare_cached(
            "INSERT INTO rollup_errors (hour, channel, message, events) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO UPDATE SET events = events + excluded.events",
        )?;
        for ((hour, channel, message), n) in &self.errors {
            errors.execute(params![hour, channel, message, *n as i64])?;
        }
        self.routes.write(tx)?;
        Ok(())
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Stores one document; returns what became of it and, for a new event, its new deliveries
/// (id and route).
fn insert(
    tx: &Transaction<'_>,
    pending: &Pending,
    rollups: &mut Rollups,
    time_order: &mut TimeOrder,
    records: &mut Vec<(LateAnswer, i64)>,
) -> rusqlite::Result<(IngestOutcome, Vec<(i64, String)>)> {
    let incoming = &pending.incoming;
    let mut deliveries = Vec::new();
    let receipt = &incoming.receipt;
    let (codec, raw) = (pending.codec, &pending.stored_raw);
    time_order.note(tx, receipt.received_at)?;
    let outcome = match &incoming.content {
        Content::Event(event) => {
            let fields = &event.fields;
            // No `RETURNING`: it would give the statement a savepoint, which copies every page
            // the insert touches into a statement journal (and flushes the search index).
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO events (received_at, dedup_key, invocation_id, tracking_number,
                        action, recipient_id, recipient_name, requester_id, requester_name, sources,
                        outcome, account_count, failed_count, errors, warnings, validation_warnings,
                        channel, remote_addr, method, path, raw_codec, raw_size, raw)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                        ?17, ?18, ?19, ?20, ?21, ?22, ?23)
                     ON CONFLICT (dedup_key) DO NOTHING",
                )?
                .execute(params![
                    receipt.received_at,
                    &incoming.dedup_key[..],
                    incoming.invocation_id,
                    fields.tracking_number,
                    fields.action,
                    fields.recipient_id,
                    fields.recipient_name,
                    fields.requester_id,
                    fields.requester_name,
                    fields.sources,
                    fields.outcome,
                    fields.accounts.len() as i64,
                    fields.failed_count,
                    json_list(&fields.errors),
                    json_list(&fields.warnings),
                    json_list(&event.warnings),
                    receipt.channel,
                    receipt.remote_addr,
                    receipt.method,
                    receipt.path,
                    codec,
                    incoming.raw.len() as i64,
                    raw.as_ref(),
                ])?;
            match (inserted > 0).then(|| tx.last_insert_rowid()) {
                Some(id) => {
                    // Its search document is added after the batch (see `try_commit`).
                    rollups.count(receipt.received_at, receipt.channel.as_deref(), fields);
                    // Same transaction as the event: an accepted event is never without its
                    // deliveries.
                    let ids = outbox::enqueue_event(
                        tx,
                        id,
                        &event.routes,
                        receipt.received_at,
                        &mut rollups.routes,
                    )?;
                    deliveries = ids.into_iter().zip(event.routes.iter().cloned()).collect();
                    IngestOutcome::Accepted { id }
                }
                None => {
                    let id = tx
                        .prepare_cached("SELECT id FROM events WHERE dedup_key = ?1")?
                        .query_row(params![&incoming.dedup_key[..]], |row| row.get(0))?;
                    IngestOutcome::Duplicate { id }
                }
            }
        }
        Content::Quarantine(quarantine) => {
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO quarantine (received_at, dedup_key, invocation_id, reason, errors,
                        channel, remote_addr, method, path, raw_codec, raw_size, raw, warnings)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                     ON CONFLICT (dedup_key) DO NOTHING",
                )?
                .execute(params![
                    receipt.received_at,
                    &incoming.dedup_key[..],
                    incoming.invocation_id,
                    quarantine.reason.as_str(),
                    serde_json::to_string(&quarantine.errors).unwrap_or_default(),
                    receipt.channel,
                    receipt.remote_addr,
                    receipt.method,
                    receipt.path,
                    codec,
                    incoming.raw.len() as i64,
                    raw.as_ref(),
                    serde_json::to_string(&quarantine.warnings).unwrap_or_default(),
                ])?;
            match (inserted > 0).then(|| tx.last_insert_rowid()) {
                Some(id) => IngestOutcome::Quarantined {
                    id,
                    duplicate: false,
                },
                None => {
                    let id = tx
                        .prepare_cached("SELECT id FROM quarantine WHERE dedup_key = ?1")?
                        .query_row(params![&incoming.dedup_key[..]], |row| row.get(0))?;
                    IngestOutcome::Quarantined {
                        id,
                        duplicate: true,
                    }
                }
            }
        }
    };
    let reason = match &incoming.content {
        Content::Quarantine(quarantine) => Some(quarantine.reason),
        Content::Event(_) => None,
    };
    let (status, label, event_id, quarantine_id) = match outcome {
        IngestOutcome::Accepted { id } => (200, "accepted", Some(id), None),
        IngestOutcome::Duplicate { id } => (200, "duplicate", Some(id), None),
        // The status the request is answered with: 202, or 400/415 for bodies kept although
        // refused.
        IngestOutcome::Quarantined { id, .. } => (
            reason.map_or(202, QuarantineReason::http_status),
            "quarantined",
            None,
            Some(id),
        ),
    };
    let reason = reason.map(QuarantineReason::as_str);
    let already_kept = matches!(
        outcome,
        IngestOutcome::Duplicate { .. }
            | IngestOutcome::Quarantined {
                duplicate: true,
                ..
            }
    );
    if incoming.restored && already_kept {
        return Ok((outcome, deliveries));
    }
    tx.prepare_cached(
        "INSERT INTO deliveries (received_at, remote_addr, method, path, channel, status, outcome,
            reason, size, user_agent, invocation_id, event_id, quarantine_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        receipt.received_at,
        receipt.remote_addr,
        receipt.method,
        receipt.path,
        receipt.channel,
        status,
        label,
        reason,
        stored_size(receipt.size),
        receipt.user_agent,
        incoming.invocation_id,
        event_id,
        quarantine_id,
    ])?;
    if let Some(late) = &incoming.late_answer {
        records.push((late.clone(), tx.last_insert_rowid()));
    }
    Ok((outcome, deliveries))
}

/// Keeps true what readers rely on to map a time range to ids (see `read::id_bounds`): until
/// the store is marked as holding rows whose ids do not follow their receipt times
/// ([`super::TIME_ORDER_MIXED`]), no row is stored after another received more than the slack
/// later than it. Every row is checked, not only restored ones: a restored receipt from the
/// future, or a clock set back, breaks the order for the live rows that follow.
struct TimeOrder {
    /// The latest receipt time stored so far (every request has a row in the delivery log,
    /// whose times cover those of events and quarantined documents).
    newest: Option<i64>,
    mixed: bool,
}

impl TimeOrder {
    /// Read at the start of each commit, under the write lock: another process may have written
    /// the same database since.
    fn load(tx: &Transaction<'_>) -> rusqlite::Result<Self> {
        let newest = tx
            .prepare_cached("SELECT max(received_at) FROM deliveries")?
            .query_row([], |row| row.get(0))?;
        let mixed = tx
            .prepare_cached("SELECT 1 FROM meta WHERE key = ?1")?
            .query_row(params![super::TIME_ORDER_MIXED], |_| Ok(()))
            .optional()?
            .is_some();
        Ok(Self { newest, mixed })
    }

    /// Called before a row received at `at` is stored.
    fn note(&mut self, tx: &Transaction<'_>, at: i64) -> rusqlite::Result<()> {
        if !self.mixed
            && self
                .newest
                .is_some_and(|newest| at < newest - ORDER_SLACK_MS)
        {
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, '1') ON CONFLICT DO NOTHING",
            )?
            .execute(params![super::TIME_ORDER_MIXED])?;
            self.mixed = true;
        }
        self.newest = Some(self.newest.map_or(at, |newest| newest.max(at)));
        Ok(())
    }
}

/// A new delivery as its route's worker takes it from the writer.
fn fresh_item(pending: &Pending, event_id: i64, delivery_id: i64, route: String) -> OutboxItem {
    let incoming = &pending.incoming;
    OutboxItem {
        id: delivery_id,
        event_id,
        route,
        attempts: 0,
        attempts_base: 0,
        backoff_base: 0,
        due_since: incoming.receipt.received_at,
        received_at: incoming.receipt.received_at,
        invocation_id: incoming.invocation_id.clone(),
        raw: incoming.raw.clone(),
        unreadable: None,
    }
}

/// Replaces the record the store wrote for a document whose request was then refused (its
/// commit waited for too long) with that refusal, which is what the sender got; the document
/// stays tied to it. False when `record` is not that request's (a transaction that failed left
/// its id to another): the refusal is then a record of its own.
fn amend_record(
    tx: &Transaction<'_>,
    record: i64,
    rejection: &Rejection,
) -> rusqlite::Result<bool> {
    let receipt = &rejection.receipt;
    let reason = format!(
        "{}; the document was committed all the same, and is in the store",
        rejection.reason
    );
    let changed = tx
        .prepare_cached(
            "UPDATE deliveries SET status = ?2, reason = ?3
             WHERE id = ?1 AND received_at = ?4 AND method = ?5 AND path = ?6
               AND remote_addr IS ?7 AND channel IS ?8",
        )?
        .execute(params![
            record,
            rejection.status,
            reason,
            receipt.received_at,
            receipt.method,
            receipt.path,
            receipt.remote_addr,
            receipt.channel,
        ])?;
    Ok(changed == 1)
}

fn insert_rejection(tx: &Transaction<'_>, rejection: &Rejection) -> rusqlite::Result<()> {
    let receipt = &rejection.receipt;
    tx.prepare_cached(
        "INSERT INTO deliveries (received_at, remote_addr, method, path, channel, status, outcome,
            reason, size, user_agent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'rejected', ?7, ?8, ?9)",
    )?
    .execute(params![
        receipt.received_at,
        receipt.remote_addr,
        receipt.method,
        receipt.path,
        receipt.channel,
        rejection.status,
        rejection.reason,
        stored_size(receipt.size),
        receipt.user_agent,
    ])?;
    Ok(())
}

fn json_list<T: serde::Serialize>(items: &[T]) -> Option<String> {
    if items.is_empty() {
        None
    } else {
        serde_json::to_string(items).ok()
    }
}

/// A request's size as the delivery log keeps it: a declared `Content-Length` past what the
/// column holds (2^63 bytes and more, sent only to probe) is kept as the largest it holds, not
/// wrapped round to a negative size.
fn stored_size(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_commit_is_counted_only_when_it_held_work_answered_503() {
        let metrics = crate::metrics::Metrics::new();
        let probe = || Job::Probe(oneshot::channel().0);
        count_failed_commit(&[probe(), probe()], &metrics);
        assert_eq!(metrics.commit_failures.get(), 0);
        let rejection = refusal(401, None);
        // The record of a request refused before (a 401, or the 503 of a commit that failed):
        // nobody is answered for it.
        count_failed_commit(&[probe(), rejection], &metrics);
        assert_eq!(metrics.commit_failures.get(), 0);
        let outbox = Job::Outbox(Box::new(OutboxJob {
            write: OutboxWrite::Results(Vec::new()),
            touched: std::sync::atomic::AtomicU64::new(0),
            reply: oneshot::channel().0,
        }));
        count_failed_commit(&[probe(), outbox], &metrics);
        assert_eq!(metrics.commit_failures.get(), 1);
    }

    /// The record of a request to `/events` refused with `status`.
    fn refusal(status: u16, amends: Option<LateAnswer>) -> Job {
        Job::Reject(Box::new(Rejection {
            receipt: crate::store::Receipt {
                received_at: 0,
                remote_addr: None,
                channel: None,
                method: "POST".into(),
                path: "/events".into(),
                size: 0,
                user_agent: None,
            },
            status,
            reason: format!("refused with {status}"),
            amends,
        }))
    }

    #[test]
    fn at_the_size_cap_only_a_refusal_that_changes_a_committed_record_is_kept() {
        let refusal = |amends| refusal(503, amends);
        let committed = LateAnswer::default();
        committed.note(Some(7));
        let mut batch = vec![
            refusal(None),
            refusal(Some(LateAnswer::default())),
            refusal(Some(committed.clone())),
        ];
        let refused: Vec<bool> = batch.iter().map(refused_at_the_cap).collect();
        assert_eq!(refused, [true, true, false]);
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let shared = Shared::for_tests(metrics.clone());
        refuse_documents(
            &mut batch,
            "the database reached its size limit",
            &shared,
            None,
        );
        assert_eq!(batch.len(), 1);
        assert!(matches!(&batch[0], Job::Reject(kept)
            if kept.amends.as_ref().is_some_and(|late| late.is(&committed))));
        assert_eq!(metrics.rejections_dropped.get(), 2);
    }

    #[test]
    fn an_event_counts_each_distinct_error_once_and_only_its_first_hundred() {
        let mut rollups = Rollups::default();
        // Repeats first, so that the cap is on distinct messages, not on the list.
        let mut errors = vec!["same".to_owned(); 3];
        errors.extend((0..50_000).map(|n| format!("error {n}")));
        let fields = SearchFields {
            errors,
            ..SearchFields::default()
        };
        rollups.count(0, None, &fields);
        assert_eq!(rollups.errors.len(), MAX_ERRORS_COUNTED);
        assert!(rollups.errors.values().all(|&n| n == 1));
        assert!(
            rollups
                .errors
                .contains_key(&(0, String::new(), "same".to_owned()))
        );
        assert!(
            rollups
                .errors
                .contains_key(&(0, String::new(), "error 98".to_owned()))
        );
        assert!(
            !rollups
                .errors
                .contains_key(&(0, String::new(), "error 99".to_owned()))
        );
    }
}
