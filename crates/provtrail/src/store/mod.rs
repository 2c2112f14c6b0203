//! The storage boundary. Everything that keeps or reads events goes through [`Store`]; the rest of
//! the application never knows which backend runs.
//!
//! Architecture invariant: an [`IngestOutcome`] is returned only after the event (or quarantine
//! entry) and its delivery record are durably committed. A backend that cannot commit returns
//! [`StoreError::Unavailable`] and nothing claims the event was kept.

pub mod sqlite;
mod types;

use std::sync::Arc;

use async_trait::async_trait;

pub use types::*;

/// Shared handle to the running store.
pub type SharedStore = Arc<dyn Store>;

/// What is kept beside a database at `<database><suffix>`: SQLite's log and lock files, the search
/// index and its own, the tokens `provtrail serve` generates, and the store's lock.
const FILES_BESIDE: [&str; 11] = [
    "-wal",
    "-shm",
    "-journal",
    ".search",
    ".search-wal",
    ".search-shm",
    ".search-journal",
    ".token",
    ".read-token",
    // The lock that keeps a second server off the store (`app::StoreLock`): what is written
    // there is lost at the next start.
    ".lock",
    "",
];

/// Whether writing to `path` would write over the store at `db`: the database or a file kept
/// beside it, by any name (a link, a hard link, `..` in the path), also before the database
/// is made (a first start makes it where the path leads).
pub fn is_store_file(path: &std::path::Path, db: &std::path::Path) -> bool {
    let Some(db) = written_path(db) else {
        return false;
    };
    let Some(path) = written_path(path) else {
        return false;
    };
    let target = file_identity(&path);
    FILES_BESIDE.iter().any(|suffix| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let file = std::path::PathBuf::from(name);
        file == path || (target.is_some() && file_identity(&file) == target)
    })
}

/// Why writing to `path` would destroy kept data, if it would: it is an SQLite database (a
/// store, whichever), or a file kept beside one (its log, its index, its tokens). For commands
/// that write a file they are told to and know no store (`export -o`, `openapi -o`, `config
/// init`).
pub fn kept_data_at(path: &std::path::Path) -> Option<String> {
    let path = written_path(path)?;
    if is_sqlite_database(&path) {
        return Some(format!("{} is an SQLite database", path.display()));
    }
    let name = path.to_string_lossy();
    FILES_BESIDE
        .iter()
        .filter(|suffix| !suffix.is_empty())
        .find_map(|suffix| {
            let db = std::path::Path::new(name.strip_suffix(suffix)?);
            is_sqlite_database(db).then(|| {
                format!(
                    "{} is one of the files kept beside the database {}",
                    path.display(),
                    db.display()
                )
            })
        })
}

fn is_sqlite_database(path: &std::path::Path) -> bool {
    use std::io::Read as _;
    // Only a regular file is opened: opening a FIFO to read would wait for a writer.
    if !std::fs::metadata(path).is_ok_and(|meta| meta.is_file()) {
        return false;
    }
    let mut header = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut header))
        .is_ok_and(|()| &header == b"SQLite format 3\0")
}

/// The file that writing to `path` writes: its links followed, also to a file that does not
/// exist yet (a link left dangling where a log will be), its directory resolved.
pub(crate) fn written_path(path: &std::path::Path) -> Option<std::path::PathBuf> {
    let mut path = std::path::absolute(path).ok()?;
    // A bounded number of links, as the system follows them.
    for _ in 0..40 {
        match std::fs::read_link(&path) {
            Ok(target) => {
                path = match path.parent() {
                    Some(dir) => dir.join(target),
                    None => target,
                };
            }
            Err(_) => break,
        }
    }
    Some(std::fs::canonicalize(&path).unwrap_or_else(|_| {
        // A file not there yet: its directory resolved.
        match (path.parent().map(std::fs::canonicalize), path.file_name()) {
            (Some(Ok(dir)), Some(name)) => dir.join(name),
            _ => path.clone(),
        }
    }))
}

/// A file's device and inode: two names with the same are one file.
#[cfg(unix)]
pub(crate) fn file_identity(file: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(file)
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
pub(crate) fn file_identity(_file: &std::path::Path) -> Option<(u64, u64)> {
    None
}

/// Why the store could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot commit right now (disk full, read-only, locked, I/O error, shutting down).
    /// Callers answer 503 and try again later; the store recovers by itself when it can.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store is too busy to take more work (its queue is full).
    #[error("the store is overloaded: {0}")]
    Overloaded(String),
    /// What was asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is malformed (for example a cursor that was not issued by the store).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Anything else; a bug or corruption.
    #[error("store error: {0}")]
    Internal(String),
    /// The request was committed, but to a database file that was deleted or replaced under the
    /// server (saved beside its path): it is not in the store, and is answered as not kept.
    #[error("{0}")]
    Stranded(String),
    /// The database file is damaged past being opened (cut short, pages overwritten): what
    /// `provtrail verify` reports as a finding rather than as a failure to check.
    #[error("{0}")]
    Damaged(String),
    /// A stored event whose body cannot be read back (damaged on disk): the first such of a read
    /// of several, which [`read_back_page`] steps over.
    #[error("the stored body of event {id} cannot be read back: {reason}")]
    Unreadable {
        /// The event's id.
        id: i64,
        /// What reading it back found.
        reason: String,
    },
}

impl StoreError {
    /// True when retrying later may succeed (the answer is 503 rather than 500).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Overloaded(_) | StoreError::Stranded(_)
        )
    }
}

/// Events read back in id order for an export or a replay: those whose bodies read back, and
/// those whose bodies do not (damaged on disk), listed rather than ending the read.
#[derive(Debug, Default)]
pub struct ReadBackPage {
    /// The events read back whole.
    pub events: Vec<StoredEvent>,
    /// Ids of the events whose bodies cannot be read back, and why.
    pub unreadable: Vec<(i64, String)>,
    /// The last id the page covers (the cursor of the next): `None` when it covers none.
    pub last_id: Option<i64>,
}

/// Reads the page of up to `limit` events after `after` through `fetch` (an
/// [`Store::export_events`] of some range). A page holding an event whose body cannot be read
/// back is read again one event at a time, so that the others are still read: one damaged body
/// does not keep a whole store from being exported or replayed.
pub async fn read_back_page<F, Fut>(
    mut fetch: F,
    after: i64,
    limit: usize,
) -> Result<ReadBackPage, StoreError>
where
    F: FnMut(i64, usize) -> Fut,
    Fut: Future<Output = Result<Vec<StoredEvent>, StoreError>>,
{
    match fetch(after, limit).await {
        Ok(events) => Ok(ReadBackPage {
            last_id: events.last().map(|event| event.id),
            events,
            unreadable: Vec::new(),
        }),
        Err(StoreError::Unreadable { .. }) => {
            let mut page = ReadBackPage::default();
            let mut cursor = after;
            for _ in 0..limit {
                match fetch(cursor, 1).await {
                    Ok(one) => {
                        let Some(event) = one.into_iter().next() else {
                            break;
                        };
                        cursor = event.id;
                        page.events.push(event);
                    }
                    Err(StoreError::Unreadable { id, reason }) => {
                        cursor = id;
                        page.unreadable.push((id, reason));
                    }
                    Err(other) => return Err(other),
                }
            }
            page.last_id = (cursor != after).then_some(cursor);
            Ok(page)
        }
        Err(other) => Err(other),
    }
}

/// The storage boundary.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Keeps one delivered document (event or quarantine entry) with its delivery record, and
    /// returns once that is durably committed. Deduplicates on [`Incoming::dedup_key`].
    async fn ingest(&self, incoming: Incoming) -> Result<IngestOutcome, StoreError>;

    /// Records a request that was rejected before anything was kept (401, 413, …). Best effort:
    /// never blocks, and under overload the record may be dropped (and counted).
    fn record_rejection(&self, rejection: Rejection);

    /// Whether a write can be committed now (used by `/readyz`).
    async fn check_writable(&self) -> Result<(), StoreError>;

    /// Size of the store on disk, in bytes.
    async fn size_bytes(&self) -> Result<u64, StoreError>;

    /// Counts of what the store holds.
    async fn counts(&self) -> Result<StoreCounts, StoreError>;

    /// Stored events received in `[since, until)`, oldest first, starting after `after_id`; at most
    /// `limit`. Used by export and replay.
    async fn export_events(
        &self,
        range: &ExportRange,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// How many stored events were received in `[since, until)` (for a progress bar's total).
    async fn count_events(&self, range: &ExportRange) -> Result<u64, StoreError>;

    /// Events matching `query`, newest first; with `with_raw`, each carries its body.
    async fn search_events(
        &self,
        query: &EventQuery,
        with_raw: bool,
    ) -> Result<Page<EventSummary>, StoreError>;

    /// One event with its body, receipt and deliveries.
    async fn get_event(&self, id: i64) -> Result<Option<EventDetail>, StoreError>;

    /// Counts by result, source and time bucket, and the most frequent errors.
    async fn stats(&self, query: &StatsQuery) -> Result<Stats, StoreError>;

    /// The delivery log, newest first.
    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Page<DeliveryRecord>, StoreError>;

    /// The quarantine, newest first (bodies not included).
    async fn quarantine(
        &self,
        query: &QuarantineQuery,
    ) -> Result<Page<QuarantineEntry>, StoreError>;

    /// One quarantine entry with its body.
    async fn get_quarantine(&self, id: i64) -> Result<Option<QuarantineEntry>, StoreError>;

    /// Stops taking work, commits what is queued, and closes.
    async fn close(&self);

    /// Whether closing is saving a copy of data that exists nowhere else (a database file
    /// deleted or replaced while open): a close that is cut short then loses it.
    fn is_saving_what_would_be_lost(&self) -> bool {
        false
    }

    /// Writes a change to the routes' outbox (through the single writer) and returns how many
    /// deliveries it touched once that is committed.
    async fn outbox_write(&self, write: OutboxWrite) -> Result<u64, StoreError>;

    /// Pending deliveries of `route` due at `now`, soonest first, at most `limit`, leaving out
    /// those in `exclude` (being attempted now).
    async fn outbox_due(
        &self,
        route: &str,
        now: Millis,
        limit: usize,
        exclude: Vec<i64>,
    ) -> Result<Vec<OutboxItem>, StoreError>;

    /// Counts of every route that has deliveries.
    async fn route_counts(&self) -> Result<Vec<RouteCounts>, StoreError>;

    /// Deliveries to routes, newest first.
    async fn route_deliveries(
        &self,
        query: &RouteDeliveryQuery,
    ) -> Result<Page<RouteDelivery>, StoreError>;

    /// The attempts of one delivery, oldest first.
    async fn delivery_attempts(&self, delivery_id: i64)
    -> Result<Vec<DeliveryAttempt>, StoreError>;

    /// Changes whenever deliveries become pending in this process (new matching events, replays,
    /// retries) and were not handed to a feed, so that workers need not wait for their next poll.
    fn outbox_changes(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Hands the deliveries of newly stored events to `route`'s worker from now on (see
    /// [`OutboxFeed`]). A store that cannot leaves them to be read as due.
    fn feed_outbox(&self, route: &str, feed: OutboxFeed) {
        let _ = (route, feed);
    }
}
