//! The search index, kept beside the database and off the commit path.
//!
//! The full-text index is derived data: every document in it can be rebuilt from the stored
//! event. Written in the event's own transaction it was the largest single cost of a commit
//! (about a third of the writer's CPU time, and its pages made each fsync longer), and a
//! commit is what every ingest request waits for. So the index lives in a second SQLite file
//! (`<database>.search`) that one indexer thread writes, in batches of up to
//! [`MAX_BATCH`] documents gathered for up to [`GATHER_WAIT`], with `synchronous=NORMAL`:
//! nothing waits for its disk.
//!
//! Invariants:
//! - `meta.indexed_through` in the index file is the highest event id such that every event at
//!   or below it is indexed (events get increasing ids, and the indexer takes them in order). It
//!   is written in the same transaction as the documents, so a crash loses a suffix of the
//!   index and never leaves a hole in it.
//! - Documents come from the writer after each commit (in commit order). Whatever is not
//!   handed over that way (the queue was full, the process stopped before indexing, another
//!   process stored the events, the index file was new, a write of the index failed) is
//!   rebuilt from the stored events: the indexer writes only documents that follow on from the
//!   watermark without a gap, and reads the events of every gap from the database. It makes the
//!   documents without the index file's write lock and, under it, writes those past the
//!   watermark in the file, so that two processes on one database (`serve` and `ingest`) never
//!   move it past each other's events nor wait long for each other.
//! - Searches wait (boundedly) until the index holds every event committed before the search
//!   began, so that an event is found as soon as its `200` has been sent; while one waits, the
//!   indexer writes what it has without gathering more.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{codec, keys};
use crate::store::StoreError;

/// Most documents written in one transaction of the index.
const MAX_BATCH: usize = 4_096;

/// Longest the first of the pending documents waits for more to gather before the indexer
/// writes them: a transaction of thousands of documents costs about half as much CPU per
/// document as the small ones that a busy writer hands over every millisecond (each writes a
/// segment of its own, which merges rewrite later). A search waiting for the index cuts the
/// wait short.
const GATHER_WAIT: Duration = Duration::from_millis(100);

/// The first wait before a failed write of the index is tried again, the step in which a
/// stopping store cuts it short, and the longest it grows to.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_STEP: Duration = Duration::from_millis(50);
const RETRY_LAST: Duration = Duration::from_secs(5);

/// Least time between two remakes of an index file found damaged.
const REMAKE_INTERVAL: Duration = Duration::from_secs(30);

/// How often a gathering indexer looks whether a search is waiting.
const GATHER_STEP: Duration = Duration::from_millis(5);

/// How often an idle indexer looks whether a search is waiting, and how often, when none is, it
/// looks for events another process left unindexed.
const IDLE_STEP: Duration = Duration::from_millis(50);
const QUIET_TURN: Duration = Duration::from_millis(500);

/// How long a search waits for the index to catch up before it answers from what is indexed.
pub(super) const CATCH_UP_WAIT: Duration = Duration::from_secs(10);

/// The index file of the database at `database`.
pub(super) fn index_path(database: &Path) -> PathBuf {
    let mut path = database.as_os_str().to_owned();
    path.push(".search");
    PathBuf::from(path)
}

/// The schema of the index file. `content = ''` keeps only the index (the text is in the
/// events); `contentless_delete` lets a document be replaced when it is indexed twice (two
/// processes on one database).
const SCHEMA: &str = r#"
    CREATE VIRTUAL TABLE IF NOT EXISTS events_index USING fts5(
        doc,
        content = '',
        contentless_delete = 1,
        detail = 'none',
        tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TABLE IF NOT EXISTS meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
"#;

/// Index documents of one commit: (event id, document), ids increasing.
type Documents = Vec<(i64, String)>;

/// What the writer and the searches share with the indexer thread.
#[derive(Debug)]
pub(crate) struct IndexState {
    /// Highest event id the writer has committed (and handed over or dropped).
    committed_through: AtomicI64,
    /// Highest event id up to which the index is complete.
    indexed_through: tokio::sync::watch::Sender<i64>,
    /// Documents waiting in the queue.
    queued: AtomicUsize,
    /// Set when documents were dropped for lack of room; the indexer reads them back.
    dropped: AtomicBool,
    /// `provtrail_search_index_backlog`.
    backlog_gauge: prometheus_client::metrics::gauge::Gauge,
    /// The index is not being written (its last write failed: disk full, file not writable; or
    /// the indexer stopped): searches do not wait for it to catch up.
    failing: AtomicBool,
    /// Searches waiting for the index to catch up: the indexer then writes without gathering.
    waiting: AtomicUsize,
    /// Set when the store closes: an indexer waiting to try a failed write again stops waiting.
    stopping: AtomicBool,
    /// The index file (device and inode) a search found damaged: the indexer makes it anew if
    /// it is still the file it writes. Writes find damage by themselves, but an idle indexer
    /// writes nothing, and a search would fail until the next event arrived.
    damage_reported: std::sync::Mutex<Option<(u64, u64)>>,
}

/// The handle the store keeps: hands documents over and stops the thread.
#[derive(Debug)]
pub(super) struct SearchIndexer {
    state: Arc<IndexState>,
    /// Most documents that may wait in memory (about 0.5 KB each); beyond that they are left
    /// to be rebuilt from the database.
    max_queued: usize,
    documents: std::sync::Mutex<Option<Sender<Documents>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SearchIndexer {
    /// Creates the index file if needed and starts the indexer thread, which first catches up
    /// with events stored since the index was last written. `last_event_id` is the highest id
    /// stored so far: searches wait for the index to reach it.
    pub(super) fn start(
        database: &Path,
        busy_timeout: Duration,
        last_event_id: impl FnOnce() -> Result<i64, StoreError>,
        store_id: i64,
        max_queued: usize,
        backlog_gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> Result<Self, StoreError> {
        let path = index_path(database);
        let conn = open_index(&path, busy_timeout)?;
        let file = crate::store::file_identity(&path);
        // The newest event is read after the index's watermark: another process on the same
        // database may index while this one starts, but never past what is committed.
        let through = watermark(&conn).map_err(index_error)?;
        let last_event_id = last_event_id()?;
        adopt(&conn, store_id, through, last_event_id).map_err(index_error)?;
        let indexed_through = watermark(&conn).map_err(index_error)?;
        let state = Arc::new(IndexState {
            committed_through: AtomicI64::new(last_event_id),
            indexed_through: tokio::sync::watch::Sender::new(indexed_through),
            queued: AtomicUsize::new(0),
            dropped: AtomicBool::new(false),
            backlog_gauge,
            failing: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            damage_reported: std::sync::Mutex::new(None),
        });
        let (documents, received) = crossbeam_channel::unbounded();
        let thread_state = state.clone();
        let events = database.to_owned();
        let index_path = path;
        let thread = std::thread::Builder::new()
            .name("provtrail-index".into())
            .spawn(move || {
                // Derived data: rebuilt from the events when it lags or is lost.
                crate::become_background_thread();
                Indexer {
                    conn,
                    path: index_path,
                    file,
                    busy_timeout,
                    events: StoredEvents {
                        path: events,
                        conn: None,
                        busy_timeout,
                    },
                    state: thread_state,
                    store_id,
                    not_ours: false,
                    quiet_watermark: None,
                    announced: false,
                }
                .run(&received)
            })
            .map_err(|err| StoreError::Internal(format!("cannot start the indexer: {err}")))?;
        Ok(SearchIndexer {
            state,
            max_queued,
            documents: std::sync::Mutex::new(Some(documents)),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// For a store opened only to read ([`super::SqliteStore::open_reader`]): no thread, and
    /// searches never wait, since nothing in this process would bring the index further.
    /// `indexed_through` is where the index file stands, `committed_through` the newest event.
    pub(super) fn idle(
        indexed_through: i64,
        committed_through: i64,
        backlog_gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> Self {
        SearchIndexer {
            state: Arc::new(IndexState {
                committed_through: AtomicI64::new(committed_through),
                indexed_through: tokio::sync::watch::Sender::new(indexed_through),
                queued: AtomicUsize::new(0),
                dropped: AtomicBool::new(false),
                backlog_gauge,
                failing: AtomicBool::new(true),
                waiting: AtomicUsize::new(0),
                stopping: AtomicBool::new(false),
                damage_reported: std::sync::Mutex::new(None),
            }),
            max_queued: 0,
            documents: std::sync::Mutex::new(None),
            thread: std::sync::Mutex::new(None),
        }
    }

    /// Whether an indexer thread runs (a store opened only to read has none, and a thread stops
    /// once the index file is another database's): what it finds damaged is made anew.
    pub(super) fn is_running(&self) -> bool {
        self.thread
            .lock()
            .is_ok_and(|thread| thread.as_ref().is_some_and(|thread| !thread.is_finished()))
    }

    pub(super) fn state(&self) -> Arc<IndexState> {
        self.state.clone()
    }

    /// Stops accepting documents, lets the thread index what is queued, and waits for it.
    pub(super) fn stop(&self) {
        self.state.stopping.store(true, Ordering::Release);
        if let Ok(mut documents) = self.documents.lock() {
            documents.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut thread| thread.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Hands over the documents of one commit (ids increasing). Never blocks the writer.
    pub(super) fn submit(&self, documents: Documents) {
        let Some(&(last, _)) = documents.last() else {
            return;
        };
        let state = &self.state;
        state.committed_through.fetch_max(last, Ordering::Release);
        state.backlog_gauge.set(state.backlog());
        let count = documents.len();
        // Counted before sending, so that the indexer never takes more than was counted.
        let queued = state.queued.fetch_add(count, Ordering::Relaxed);
        let sent = queued + count <= self.max_queued
            && self
                .documents
                .lock()
                .ok()
                .and_then(|sender| sender.as_ref().map(|s| s.send(documents).is_ok()))
                .unwrap_or(false);
        if !sent {
            state.queued.fetch_sub(count, Ordering::Relaxed);
            state.dropped.store(true, Ordering::Release);
        }
    }
}

impl IndexState {
    /// A search found the index file `file` damaged (SQLite's corrupt or not-a-database error
    /// from the full-text index it attached).
    pub(super) fn report_damage(&self, file: Option<(u64, u64)>) {
        if let (Some(file), Ok(mut reported)) = (file, self.damage_reported.lock()) {
            *reported = Some(file);
        }
    }

    fn damage_is_reported(&self) -> bool {
        self.damage_reported
            .lock()
            .is_ok_and(|reported| reported.is_some())
    }

    /// Takes the report: whether it names `file`, the file the indexer writes (a search that
    /// read a file since replaced says nothing about the one in use).
    fn take_damage_report(&self, file: Option<(u64, u64)>) -> bool {
        let reported = self
            .damage_reported
            .lock()
            .ok()
            .and_then(|mut reported| reported.take());
        reported.is_some() && reported == file
    }

    /// Documents waiting for the indexer.
    pub(super) fn backlog(&self) -> i64 {
        (self.committed_through.load(Ordering::Acquire) - *self.indexed_through.borrow()).max(0)
    }

    /// Waits until every event committed so far is indexed, for at most `limit`: those this
    /// process committed, and `newest`, the newest event in the database (another process's,
    /// perhaps). Returns false when the wait ran out (the search then sees what is indexed).
    pub(super) async fn caught_up(&self, newest: i64, limit: Duration) -> bool {
        let target = self.committed_through.load(Ordering::Acquire).max(newest);
        if self.failing.load(Ordering::Acquire) {
            return *self.indexed_through.borrow() >= target;
        }
        let mut indexed = self.indexed_through.subscribe();
        if *indexed.borrow() >= target {
            return true;
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let _done = StopsWaiting(&self.waiting);
        tokio::time::timeout(limit, indexed.wait_for(|&through| through >= target))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }
}

/// An error of the index file: [`StoreError::Damaged`] when SQLite finds it damaged (it is then
/// made anew), else unavailable for now.
fn index_error(err: rusqlite::Error) -> StoreError {
    if matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    ) {
        StoreError::Damaged(format!("search index: {err}"))
    } else {
        StoreError::Unavailable(format!("search index: {err}"))
    }
}

/// An error reading the stored events: whatever it is, the index file is not to blame.
fn events_error(err: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("stored events for the search index: {err}"))
}

/// Whether another connection holds the lock SQLite needed.
fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Opens the index file, creating it (or, if it is unreadable, recreating it: it can always be
/// rebuilt from the events). A file another process is creating at the same moment is waited
/// for, never taken for unreadable: removing it would leave that process writing a file no one
/// else reads.
fn open_index(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    // Making a new file's log a write-ahead log takes its lock without SQLite's busy wait.
    let until = Instant::now() + busy_timeout;
    let mut result = try_open_index(path, busy_timeout);
    while result.as_ref().is_err_and(is_busy) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
        result = try_open_index(path, busy_timeout);
    }
    match result {
        Ok(conn) => Ok(conn),
        Err(err) if is_busy(&err) => Err(index_error(err)),
        Err(err) => {
            tracing::warn!(error = %err, path = %path.display(),
                "the search index cannot be opened; rebuilding it from the events");
            remove_index_files(path);
            try_open_index(path, busy_timeout).map_err(index_error)
        }
    }
}

/// Removes the index file and its log.
fn remove_index_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(file));
    }
}

fn try_open_index(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    // Private like the database: it holds the events' words. A failure here shows as SQLite's
    // own when it opens the file.
    let _ = crate::precreate_private(path);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    // Derived data: a power cut may lose the last transactions (they are rebuilt from the
    // events) but, in write-ahead-log mode, cannot corrupt the file.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -8_000)?;
    conn.execute_batch(SCHEMA)?;
    // Read once to fail here, not in the thread, on a file that is not an index.
    watermark(&conn)?;
    Ok(conn)
}

/// Where the index file beside `database` stands, read without writing anything: `None` when
/// there is no index file, or it cannot be read as one.
/// How far the index file of `database` reaches, when it is this database's (`store_id`, when
/// known); `None` when it is missing or another's.
pub(super) fn indexed_through(
    database: &Path,
    busy_timeout: Duration,
    store_id: Option<i64>,
) -> Option<i64> {
    let path = index_path(database);
    if !path.is_file() {
        return None;
    }
    let conn = super::open_read_only(&path).ok()?;
    conn.busy_timeout(busy_timeout).ok()?;
    let owner = index_owner(&conn).ok()?;
    if matches!((owner, store_id), (Some(owner), Some(id)) if owner != id) {
        return None;
    }
    if token_format(&conn).ok()? != keys::TOKEN_FORMAT {
        return None;
    }
    watermark(&conn).ok()
}

/// The form of the key tokens the index holds ([`keys::TOKEN_FORMAT`]); 1 for an index made
/// before the form was recorded.
fn token_format(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(meta_value(conn, "token_format")?.unwrap_or(1))
}

/// A value of the index file's `meta` table.
fn meta_value(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
        row.get(0)
    })
    .optional()
}

/// The store id the index was built for (see [`super::schema::store_id`]).
fn index_owner(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    meta_value(conn, "store_id")
}

/// Makes the index this database's. An index file left from another database (`store_id`
/// differs), or from this one at a later state than the file now holds (a backup put back: the
/// index reaches past `last_event_id`), would find the wrong events and never index the new
/// ones, whose ids it believes it has: it is emptied, and rebuilt from the stored events.
fn adopt(
    conn: &Connection,
    store_id: i64,
    through: i64,
    last_event_id: i64,
) -> rusqlite::Result<()> {
    let owner = index_owner(conn)?;
    let format = token_format(conn)?;
    if owner.is_some_and(|owner| owner != store_id) || through > last_event_id {
        tracing::warn!(
            indexed_through = through,
            last_event_id,
            "the search index was made for another database, or for this one at a later \
             state; rebuilding it from the stored events"
        );
    } else if format != keys::TOKEN_FORMAT && through > 0 {
        tracing::warn!(
            "the search index was made by an earlier version; rebuilding it from the stored \
             events"
        );
    }
    let reset = owner.is_some_and(|owner| owner != store_id)
        || through > last_event_id
        || format != keys::TOKEN_FORMAT;
    if !reset && owner == Some(store_id) {
        // Nothing to write: a command starting beside a busy indexer does not wait for its lock.
        return Ok(());
    }
    // One transaction: another process's indexer sees the index emptied and its watermark
    // gone together, or neither.
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    if reset {
        tx.execute_batch(
            "INSERT INTO events_index (events_index) VALUES ('delete-all');
             DELETE FROM meta WHERE key = 'indexed_through';",
        )?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('token_format', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![keys::TOKEN_FORMAT],
    )?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('store_id', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![store_id],
    )?;
    tx.commit()
}

fn watermark(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(meta_value(conn, "indexed_through")?.unwrap_or(0))
}

/// Counts a waiting search out again, however its wait ends.
struct StopsWaiting<'a>(&'a AtomicUsize);

impl Drop for StopsWaiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Marks the index as not being written when dropped.
struct StopsWaits(Arc<IndexState>);

impl Drop for StopsWaits {
    fn drop(&mut self) {
        self.0.failing.store(true, Ordering::Release);
    }
}

struct Indexer {
    conn: Connection,
    /// The index file's path, and the file `conn` has open (its device and inode): a file
    /// removed or put in its place under the running process is followed, not written blind.
    path: PathBuf,
    file: Option<(u64, u64)>,
    busy_timeout: Duration,
    events: StoredEvents,
    state: Arc<IndexState>,
    /// The database's id ([`super::schema::store_id`]): the index file is written only while it
    /// is this database's.
    store_id: i64,
    /// The index file was found made over for another database or version: nothing more is
    /// written to it.
    not_ours: bool,
    /// The watermark the last quiet turn found, to tell events left unindexed from events
    /// another process is indexing now.
    quiet_watermark: Option<i64>,
    /// Whether building the index from the start was said already.
    announced: bool,
}

/// The stored events, read when documents must be made from them rather than handed over.
struct StoredEvents {
    path: PathBuf,
    /// A read-only connection, opened when first needed (and again after a failure).
    conn: Option<Connection>,
    busy_timeout: Duration,
}

impl Indexer {
    fn run(mut self, documents: &Receiver<Documents>) {
        // However the thread ends (stopped, or a panic), searches stop waiting for it; what it
        // did not index is rebuilt on the next start.
        let _stopped = StopsWaits(self.state.clone());
        let mut failing = false;
        // How long to wait before a failed write is tried again: longer each time, so that an
        // index that cannot be written (a read-only file) costs little.
        let mut retry = RETRY_FIRST;
        // Documents taken from the queue and not yet indexed (kept across a failed write).
        let mut pending: Vec<(i64, String)> = Vec::new();
        // First: whatever was stored since the index was last written.
        let mut rebuild = true;
        let mut open = true;
        let mut quiet_since = Instant::now();
        // When the index file was last made anew for damage.
        let mut last_remade: Option<Instant> = None;
        // Once stopping, only what was handed over is indexed: a rebuild (which may take minutes
        // after an upgrade) is left to the next start, so that stopping stays quick.
        while open || !pending.is_empty() {
            if pending.is_empty() && !rebuild {
                match documents.recv_timeout(IDLE_STEP) {
                    Ok(batch) => self.take(&mut pending, batch),
                    // Quiet here: events another process stored and did not index (it was
                    // killed, or stopped with a gap before its documents) are indexed now, not
                    // when this process next stores one; at once when a search waits for them.
                    Err(RecvTimeoutError::Timeout) => {
                        let waited_for = self.state.waiting.load(Ordering::Acquire) > 0;
                        if self.state.damage_is_reported() {
                            rebuild = true;
                        } else if waited_for || quiet_since.elapsed() >= QUIET_TURN {
                            quiet_since = Instant::now();
                            rebuild = self.others_left_events(waited_for);
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
            }
            let gathered_by = Instant::now() + GATHER_WAIT;
            while pending.len() < MAX_BATCH {
                match documents.try_recv() {
                    Ok(batch) => self.take(&mut pending, batch),
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                    Err(TryRecvError::Empty) => {
                        let now = Instant::now();
                        if pending.is_empty()
                            || rebuild
                            || now >= gathered_by
                            || self.state.waiting.load(Ordering::Acquire) > 0
                        {
                            break;
                        }
                        match documents.recv_timeout(GATHER_STEP.min(gathered_by - now)) {
                            Ok(batch) => self.take(&mut pending, batch),
                            Err(RecvTimeoutError::Timeout) => {}
                            Err(RecvTimeoutError::Disconnected) => {
                                open = false;
                                break;
                            }
                        }
                    }
                }
            }
            rebuild |= self.state.dropped.swap(false, Ordering::AcqRel);
            let mut result = if self.state.take_damage_report(self.file) {
                Err(StoreError::Damaged(
                    "a search found the search index file damaged".into(),
                ))
            } else if rebuild && open {
                self.rebuild()
            } else {
                self.index(&mut pending, !open)
            };
            // A file found damaged again soon after it was made anew (a failing disk, another
            // process remaking it at the same moment) is retried as a failed write, with the
            // growing wait, rather than remade in a loop.
            let remade_lately = last_remade.is_some_and(|at| at.elapsed() < REMAKE_INTERVAL);
            if let (Err(StoreError::Damaged(reason)), false) = (&result, remade_lately) {
                tracing::warn!(error = %reason,
                    "the search index file is damaged; making it anew from the stored events");
                last_remade = Some(Instant::now());
                result = self.reopen(true).map(|()| {
                    rebuild = true;
                    true
                });
            }
            match result {
                Ok(more) => {
                    rebuild = more && rebuild;
                    if failing {
                        tracing::info!("the search index is written again");
                    }
                    failing = false;
                    retry = RETRY_FIRST;
                    self.state.failing.store(false, Ordering::Release);
                }
                Err(_) if self.not_ours => {
                    tracing::warn!(
                        "the search index file was made over for another database or version; \
                         this process no longer writes it (searches may miss new events until \
                         a restart)"
                    );
                    return;
                }
                Err(err) => {
                    self.state.failing.store(true, Ordering::Release);
                    if !failing {
                        tracing::warn!(error = %err,
                            "cannot write the search index; retrying (searches may miss new events)");
                    }
                    failing = true;
                    if !open {
                        // Stopping: what is left is rebuilt on the next start.
                        return;
                    }
                    self.events.conn = None;
                    // Whatever the failed write held is read back from the events, whether
                    // or not more events arrive.
                    rebuild = true;
                    let until = Instant::now() + retry;
                    while Instant::now() < until && !self.state.stopping.load(Ordering::Acquire) {
                        std::thread::sleep(RETRY_STEP);
                    }
                    retry = (retry * 2).min(RETRY_LAST);
                }
            }
        }
    }

    fn take(&self, pending: &mut Vec<(i64, String)>, batch: Vec<(i64, String)>) {
        self.state.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        pending.extend(batch);
    }

    /// Indexes up to [`MAX_BATCH`] pending documents: those that follow on from the watermark
    /// without a gap, after the stored events of any gap (another process on the same database
    /// stored them, or their documents were dropped) read back from the database. When
    /// `stopping`, documents after a gap are left to the next start's rebuild instead.
    fn index(
        &mut self,
        pending: &mut Vec<(i64, String)>,
        stopping: bool,
    ) -> Result<bool, StoreError> {
        if pending.is_empty() {
            return Ok(false);
        }
        self.follow_file()?;
        // The watermark in the file: another process on the same database may have indexed
        // past this one's (its events and this one's).
        let through = watermark(&self.conn).map_err(index_error)?;
        pending.retain(|(id, _)| *id > through);
        let Some(&(first, _)) = pending.first() else {
            self.note_indexed(through);
            return Ok(false);
        };
        if stopping && first > through + 1 {
            pending.clear();
            return Ok(false);
        }
        let gap = if first > through + 1 {
            self.events.documents(through, first, MAX_BATCH)?
        } else {
            Vec::new()
        };
        // Past a gap the stored events did not all fit in, none of the pending ones yet; then
        // only those that follow one another: a gap between two of them (another process's
        // commit between two of this one's) is read from the events at the next turn.
        let mut next = first;
        let following = if gap.len() < MAX_BATCH {
            pending
                .iter()
                .take(MAX_BATCH - gap.len())
                .take_while(|(id, _)| {
                    let follows = *id == next;
                    next = id + 1;
                    follows
                })
                .count()
        } else {
            0
        };
        let Some(last) = pending[..following]
            .last()
            .or(gap.last())
            .map(|&(id, _)| id)
        else {
            return Ok(true);
        };
        if !self.write_from(
            through,
            last,
            &[(&gap, true), (&pending[..following], false)],
        )? {
            // The index was emptied meanwhile: decided again at the next turn.
            return Ok(true);
        }
        // Only once written: a failed write keeps them for the next turn.
        pending.drain(..following);
        Ok(!pending.is_empty())
    }

    /// Indexes up to [`MAX_BATCH`] stored events past the watermark; true while more remain.
    fn rebuild(&mut self) -> Result<bool, StoreError> {
        self.follow_file()?;
        let through = watermark(&self.conn).map_err(index_error)?;
        let batch = self.events.documents(through, i64::MAX, MAX_BATCH)?;
        let Some(&(last, _)) = batch.last() else {
            self.note_indexed(through);
            return Ok(false);
        };
        if through == 0 && !self.announced {
            self.announced = true;
            tracing::info!("building the search index from the stored events");
        }
        let written = self.write_from(through, last, &[(&batch, true)])?;
        Ok(!written || batch.len() == MAX_BATCH)
    }

    /// Writes `parts` (documents with ids increasing, each part with whether it was read back
    /// from the events), which cover every stored event in `(through, last]`, and moves the
    /// watermark to `last`. They were read and made without the index's write lock, so that
    /// another process's indexer is not kept waiting meanwhile: under it, what another process
    /// indexed since (past `through`) is left out. False when the index was emptied meanwhile
    /// (nothing is written).
    fn write_from(
        &mut self,
        through: i64,
        last: i64,
        parts: &[(&[(i64, String)], bool)],
    ) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(index_error)?;
        if index_owner(&tx).map_err(index_error)? != Some(self.store_id)
            || token_format(&tx).map_err(index_error)? != keys::TOKEN_FORMAT
        {
            self.not_ours = true;
            return Err(StoreError::Unavailable(
                "the search index file was made over for another database or version".into(),
            ));
        }
        let now = watermark(&tx).map_err(index_error)?;
        if now < through {
            drop(tx);
            self.lower_to(now);
            return Ok(false);
        }
        if now >= last {
            drop(tx);
            self.note_indexed(now);
            return Ok(true);
        }
        for &(documents, rebuilt) in parts {
            let fresh = documents.partition_point(|&(id, _)| id <= now);
            write_documents(&tx, &documents[fresh..], rebuilt)?;
        }
        set_watermark(&tx, last)?;
        tx.commit().map_err(index_error)?;
        self.note_indexed(last);
        Ok(true)
    }

    /// Whether the database holds events past the index's watermark while this process hands
    /// over none, and the watermark stood still since the last quiet turn: another process
    /// stored them and did not index them (it was killed, or stopped with a gap before its
    /// documents), or emptied the index (one made by another version) and stopped before it
    /// was rebuilt.
    fn others_left_events(&mut self, waited_for: bool) -> bool {
        if self.follow_file().is_err() {
            // Tried again as a write, which says why it cannot be.
            return true;
        }
        let Ok(through) = watermark(&self.conn) else {
            return false;
        };
        if through < *self.state.indexed_through.borrow() {
            self.lower_to(through);
        } else {
            // Another process indexed further (its own events, which a search may wait for).
            self.note_indexed(through);
        }
        // A waiting search does not wait for the other process to finish: what both index is
        // written once.
        let still = self.quiet_watermark.replace(through) == Some(through) || waited_for;
        still
            && self
                .events
                .newest()
                .is_ok_and(|newest| newest.is_some_and(|newest| newest > through))
    }

    /// Opens the file at the index's path again when it is no longer the one this indexer
    /// writes: removed (by hand, or by another process that found it unreadable) or put in its
    /// place. Searches then wait for the new file to be filled from the stored events.
    fn follow_file(&mut self) -> Result<(), StoreError> {
        if crate::store::file_identity(&self.path) == self.file {
            return Ok(());
        }
        tracing::warn!(path = %self.path.display(),
            "the search index file was removed or replaced while in use; indexing into the file \
             now at its path");
        self.reopen(false)
    }

    /// Opens the index file again (`anew`: removed first, as damaged) and makes it this
    /// database's, so that what it lacks is filled from the stored events.
    fn reopen(&mut self, anew: bool) -> Result<(), StoreError> {
        // Only the damaged file this indexer has open is removed: one at the path by now was
        // put there by another process (which found the same damage and made it anew), and
        // removing it, or its log beside it, would damage it in turn.
        if anew && crate::store::file_identity(&self.path) == self.file {
            remove_index_files(&self.path);
        }
        let conn = open_index(&self.path, self.busy_timeout)?;
        let file = crate::store::file_identity(&self.path);
        let through = watermark(&conn).map_err(index_error)?;
        let newest = self.events.newest()?.unwrap_or(0);
        adopt(&conn, self.store_id, through, newest).map_err(index_error)?;
        let through = watermark(&conn).map_err(index_error)?;
        self.conn = conn;
        self.file = file;
        self.quiet_watermark = None;
        self.lower_to(through);
        Ok(())
    }

    /// The index was emptied by another process (made over for this version): it is complete
    /// only through `through` now, and searches wait for it to be rebuilt.
    fn lower_to(&self, through: i64) {
        self.state.indexed_through.send_replace(through);
        self.state.backlog_gauge.set(self.state.backlog());
    }

    /// The index is complete through `through`.
    fn note_indexed(&self, through: i64) {
        self.state.indexed_through.send_if_modified(|indexed| {
            let moved = through > *indexed;
            *indexed = (*indexed).max(through);
            moved
        });
        self.state.backlog_gauge.set(self.state.backlog());
    }
}

impl StoredEvents {
    fn connection(&mut self) -> Result<&Connection, StoreError> {
        if self.conn.is_none() {
            let conn = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(events_error)?;
            conn.busy_timeout(self.busy_timeout).map_err(events_error)?;
            self.conn = Some(conn);
        }
        self.conn
            .as_ref()
            .ok_or_else(|| StoreError::Internal("no connection to the events".into()))
    }

    /// The highest id of a stored event.
    fn newest(&mut self) -> Result<Option<i64>, StoreError> {
        self.connection()?
            .query_row("SELECT max(id) FROM events", [], |row| row.get(0))
            .map_err(events_error)
    }

    /// Documents for the stored events with `after < id < before`, in id order, at most
    /// `limit`.
    fn documents(
        &mut self,
        after: i64,
        before: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let conn = self.connection()?;
        let mut documents = Vec::new();
        let mut from = after;
        // Read again past a row SQLite cannot read (a wrong type in a column, a damaged page):
        // it is indexed by its id alone, since failing the batch would stop the index at it for
        // good, every later event unfound. `provtrail verify` names it.
        while documents.len() < limit {
            match read_documents(conn, from, before, limit - documents.len(), &mut documents) {
                Ok(()) => break,
                Err(err) if super::row_damaged(&err) => {
                    let last = documents.last().map_or(from, |&(id, _)| id);
                    let damaged = conn
                        .query_row(
                            "SELECT id FROM events WHERE id > ?1 AND id < ?2 ORDER BY id LIMIT 1",
                            params![last, before],
                            |row| row.get::<_, i64>(0),
                        )
                        .map_err(events_error)?;
                    tracing::warn!(
                        event = damaged,
                        error = %err,
                        "SQLite cannot read the row of a stored event; it is indexed by its id \
                         only (provtrail verify checks the store)"
                    );
                    documents.push((damaged, keys::document_of_raw(&[], None, None)));
                    from = damaged;
                }
                Err(err) => return Err(events_error(err)),
            }
        }
        Ok(documents)
    }
}

/// Adds `documents` to the index. `rebuilt`: read back from the events, so that an earlier
/// state of the index (or another process) may hold some already: they replace what is there,
/// which costs a lookup per document; documents handed over by this process's writer are new.
fn write_documents(
    tx: &rusqlite::Transaction<'_>,
    documents: &[(i64, String)],
    rebuilt: bool,
) -> Result<(), StoreError> {
    if documents.is_empty() {
        return Ok(());
    }
    let mut insert = tx
        .prepare_cached(if rebuilt {
            "INSERT OR REPLACE INTO events_index (rowid, doc) VALUES (?1, ?2)"
        } else {
            "INSERT INTO events_index (rowid, doc) VALUES (?1, ?2)"
        })
        .map_err(index_error)?;
    for (id, doc) in documents {
        insert.execute(params![id, doc]).map_err(index_error)?;
    }
    Ok(())
}

/// Moves the watermark in the file to `through`, never back.
fn set_watermark(tx: &rusqlite::Transaction<'_>, through: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('indexed_through', ?1)
         ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
        params![through],
    )
    .map(|_| ())
    .map_err(index_error)
}

/// Appends the documents of up to `limit` stored events with `after < id < before`, in id order,
/// to `documents`; stops at the first row SQLite cannot read, with its error.
fn read_documents(
    conn: &Connection,
    after: i64,
    before: i64,
    limit: usize,
    documents: &mut Vec<(i64, String)>,
) -> rusqlite::Result<()> {
    // The limit is part of the text: a bound LIMIT makes SQLite recompile the statement at
    // every run.
    let mut statement = conn.prepare_cached(&format!(
        "SELECT id, invocation_id, channel, raw_codec, raw_size, raw FROM events
         WHERE id > ?1 AND id < ?2 ORDER BY id LIMIT {limit}"
    ))?;
    let mut rows = statement.query(params![after, before])?;
    while let Some(row) = rows.next()? {
        let id = row.get::<_, i64>(0)?;
        let invocation_id = row.get::<_, Option<String>>(1)?;
        let channel = row.get::<_, Option<String>>(2)?;
        let (codec, size, stored) = (
            row.get::<_, i64>(3)?,
            row.get::<_, i64>(4)?,
            // Bytes whichever type they are stored as: a body in a column of the wrong type
            // fails its length check below, not the batch.
            match row.get_ref(5)? {
                rusqlite::types::ValueRef::Blob(bytes) | rusqlite::types::ValueRef::Text(bytes) => {
                    bytes.to_vec()
                }
                _ => Vec::new(),
            },
        );
        // A body that no longer reads back is indexed by what its row still says; one that
        // cannot be read just now (the dictionaries could not be read) fails the batch, which
        // is tried again.
        let raw = match codec::decode(conn, codec, stored, size) {
            Err(StoreError::Unavailable(reason)) => {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some(reason),
                ));
            }
            decoded => decoded,
        };
        let raw = raw.unwrap_or_else(|err| {
            tracing::warn!(
                event = id,
                error = %err,
                "the stored body of an event does not read back; it is indexed by its \
                 invocation id and channel only (provtrail verify checks the store)"
            );
            bytes::Bytes::new()
        });
        documents.push((
            id,
            keys::document_of_raw(&raw, invocation_id.as_deref(), channel.as_deref()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_indexed_twice_is_replaced_not_doubled() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_index(&dir.path().join("x.search"), Duration::from_secs(1)).unwrap();
        conn.execute(
            "INSERT OR REPLACE INTO events_index (rowid, doc) VALUES (1, 'alpha beta')",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT OR REPLACE INTO events_index (rowid, doc) VALUES (1, 'alpha gamma')",
            [],
        )
        .unwrap();
        let count = |term: &str| -> i64 {
            conn.query_row(
                "SELECT count(*) FROM events_index WHERE events_index MATCH ?1",
                [term],
                |row| row.get(0),
            )
            .unwrap()
        };
        assert_eq!(count("alpha"), 1);
        assert_eq!(count("beta"), 0);
        assert_eq!(count("gamma"), 1);
    }

    #[cfg(unix)]
    #[test]
    fn an_index_file_another_process_is_creating_is_waited_for_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.search");
        // Another process has just created the file, not yet in write-ahead-log mode, and is
        // writing to it. Making the log a write-ahead log then meets a lock that SQLite does not
        // wait for (its busy handler is not called where waiting could deadlock): it fails at
        // once as busy, and such a file was taken for unreadable and removed.
        let other = Connection::open(&path).unwrap();
        other.execute_batch("CREATE TABLE t (x);").unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        let theirs = crate::store::file_identity(&path).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            other.execute_batch("COMMIT").unwrap();
            other
        });
        let conn = open_index(&path, Duration::from_secs(5)).unwrap();
        let _other = release.join().unwrap();
        assert_eq!(crate::store::file_identity(&path), Some(theirs));
        assert_eq!(watermark(&conn).unwrap(), 0);
    }

    /// An indexer of a database with id 7 on a new index file, without its thread.
    fn indexer(dir: &Path) -> Indexer {
        let path = dir.join("x.search");
        let conn = open_index(&path, Duration::from_secs(1)).unwrap();
        adopt(&conn, 7, 0, 0).unwrap();
        Indexer {
            conn,
            file: crate::store::file_identity(&path),
            path,
            busy_timeout: Duration::from_secs(1),
            events: StoredEvents {
                path: dir.join("no-events.db"),
                conn: None,
                busy_timeout: Duration::from_secs(1),
            },
            state: Arc::new(IndexState {
                committed_through: AtomicI64::new(0),
                indexed_through: tokio::sync::watch::Sender::new(0),
                queued: AtomicUsize::new(0),
                dropped: AtomicBool::new(false),
                backlog_gauge: Default::default(),
                failing: AtomicBool::new(false),
                waiting: AtomicUsize::new(0),
                stopping: AtomicBool::new(false),
                damage_reported: std::sync::Mutex::new(None),
            }),
            store_id: 7,
            not_ours: false,
            quiet_watermark: None,
            announced: false,
        }
    }

    fn documents(ids: std::ops::RangeInclusive<i64>, word: &str) -> Vec<(i64, String)> {
        ids.map(|id| (id, format!("{word} n{id}"))).collect()
    }

    #[test]
    fn what_another_process_indexed_meanwhile_is_not_written_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut indexer = indexer(dir.path());
        // Another process on the same database indexes events 1 to 5 while this one prepares
        // 3 to 8 from a watermark of 2.
        let other = open_index(&dir.path().join("x.search"), Duration::from_secs(1)).unwrap();
        for (id, doc) in documents(1..=5, "theirs") {
            other
                .execute(
                    "INSERT INTO events_index (rowid, doc) VALUES (?1, ?2)",
                    params![id, doc],
                )
                .unwrap();
        }
        other
            .execute(
                "INSERT INTO meta (key, value) VALUES ('indexed_through', 5)",
                [],
            )
            .unwrap();
        let ours = documents(3..=8, "ours");
        assert!(indexer.write_from(2, 8, &[(&ours, false)]).unwrap());
        assert_eq!(watermark(&indexer.conn).unwrap(), 8);
        assert_eq!(*indexer.state.indexed_through.borrow(), 8);
        let count = |term: &str| -> i64 {
            other
                .query_row(
                    "SELECT count(*) FROM events_index WHERE events_index MATCH ?1",
                    [term],
                    |row| row.get(0),
                )
                .unwrap()
        };
        for id in 1..=8 {
            assert_eq!(count(&format!("n{id}")), 1, "event {id}");
        }
        assert_eq!(count("theirs"), 5);
        assert_eq!(count("ours"), 3);
        // Nothing left to write once the other process reached further than this batch.
        other
            .execute(
                "UPDATE meta SET value = 20 WHERE key = 'indexed_through'",
                [],
            )
            .unwrap();
        assert!(
            indexer
                .write_from(8, 12, &[(&documents(9..=12, "late"), false)])
                .unwrap()
        );
        assert_eq!(count("late"), 0);
        assert_eq!(*indexer.state.indexed_through.borrow(), 20);
        // Emptied by another process (made over for this version): nothing written, and the
        // index is complete through nothing again.
        other
            .execute_batch(
                "INSERT INTO events_index (events_index) VALUES ('delete-all');
                 DELETE FROM meta WHERE key = 'indexed_through';",
            )
            .unwrap();
        assert!(
            !indexer
                .write_from(20, 24, &[(&documents(21..=24, "after"), false)])
                .unwrap()
        );
        assert_eq!(count("after"), 0);
        assert_eq!(*indexer.state.indexed_through.borrow(), 0);
        // Made over for another database: never written again.
        other
            .execute("UPDATE meta SET value = 8 WHERE key = 'store_id'", [])
            .unwrap();
        assert!(
            indexer
                .write_from(0, 4, &[(&documents(1..=4, "foreign"), true)])
                .is_err()
        );
        assert!(indexer.not_ours);
        assert_eq!(count("foreign"), 0);
    }

    #[test]
    fn an_unreadable_index_file_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.search");
        std::fs::write(
            &path,
            b"this is not a database, it is some text that fills a page",
        )
        .unwrap();
        let conn = open_index(&path, Duration::from_secs(1)).unwrap();
        assert_eq!(watermark(&conn).unwrap(), 0);
    }
}
