//! The embedded store: one SQLite file (WAL; each commit synced to disk before it is answered),
//! one writer thread doing group commits, a small pool of read-only connections for queries, and
//! the full-text search index in a second file that an indexer thread keeps up behind the
//! commits (`indexer`).

mod checkpoint;
mod codec;
mod indexer;
mod keys;
mod outbox;
mod read;
mod schema;
mod verify;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use crossbeam_channel::{Sender, TrySendError};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

pub use keys::{MAX_QUERY_WORDS, query_word_count};
pub use verify::{BodyProblem, Verification};
pub use writer::{GroupCommit, LogSync};
use writer::{Job, OutboxJob, Pending, Writer};

use super::{
    Content, DeliveryAttempt, DeliveryQuery, DeliveryRecord, EventDetail, EventQuery, EventSummary,
    ExportRange, Incoming, IngestOutcome, IssueRecord, Millis, OutboxFeed, OutboxItem, OutboxWrite,
    Page, QuarantineEntry, QuarantineQuery, Receipt, Rejection, RouteCounts, RouteDelivery,
    RouteDeliveryQuery, Stats, StatsQuery, Store, StoreCounts, StoreError, StoredEvent,
};
use crate::metrics::Metrics;

/// How the embedded store is opened.
#[derive(Debug, Clone)]
pub struct SqliteSettings {
    /// The database file; created when missing.
    pub path: PathBuf,
    /// Group-commit bounds.
    pub group: GroupCommit,
    /// How long a commit waits for a lock held by another process before failing.
    pub busy_timeout: Duration,
    /// Size past which the database takes no more documents (they are answered as for a full
    /// disk). The routes' delivery records may still grow it by [`Self::cap_reserve`].
    pub max_size_bytes: Option<u64>,
    /// Room above `max_size_bytes` kept for what the store must still record once documents are
    /// refused (the outcomes of deliveries of events already kept); `None` for the default
    /// ([`default_cap_reserve`]).
    pub cap_reserve_bytes: Option<u64>,
    /// Documents that may wait for the writer before requests are refused as overloaded.
    pub queue_capacity: usize,
    /// Search-index documents that may wait for the indexer in memory; past that, the indexer
    /// rebuilds them from the stored events instead.
    pub index_queue_capacity: usize,
}

impl SqliteSettings {
    /// Defaults for a database at `path`. A symbolic link is followed to the file it names, so
    /// that what is kept beside the database (its logs, search index, tokens and lock) is kept
    /// beside that file, whichever name it is opened by, and a database made through a link
    /// that leads nowhere yet is made private like any other.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let path = if std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_symlink()) {
            crate::store::written_path(&path).unwrap_or(path)
        } else {
            path
        };
        SqliteSettings {
            path,
            group: GroupCommit::default(),
            busy_timeout: Duration::from_secs(5),
            max_size_bytes: None,
            cap_reserve_bytes: None,
            queue_capacity: 16_384,
            index_queue_capacity: 65_536,
        }
    }

    /// Room above the size cap for delivery records ([`Self::cap_reserve_bytes`]).
    pub fn cap_reserve(&self) -> u64 {
        match (self.cap_reserve_bytes, self.max_size_bytes) {
            (Some(reserve), _) => reserve,
            (None, Some(max)) => default_cap_reserve(max),
            (None, None) => 0,
        }
    }
}

/// The room kept above a size cap of `max` bytes for delivery records: a sixteenth of the cap,
/// at least 256 KiB and at most 256 MiB. A route whose sink was down when the cap was reached
/// has a delivery pending for each event it matched; recording their outcomes takes a few
/// hundred bytes each, and without room for them the outbox could neither drain nor say so
/// (every delivery made again at each restart).
pub fn default_cap_reserve(max: u64) -> u64 {
    (max / 16).clamp(256 << 10, 256 << 20)
}

/// State shared by the store handle and its writer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    settings: SqliteSettings,
    metrics: Arc<Metrics>,
    writable: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Bumped after a commit that made route deliveries pending without handing them to a feed.
    outbox_changed: tokio::sync::watch::Sender<u64>,
    /// The routes' workers that take new deliveries from the writer, by route.
    feeds: RwLock<HashMap<String, OutboxFeed>>,
    /// Keeps the search index (a second file) up to date behind the commits.
    indexer: indexer::SearchIndexer,
    /// The database file was deleted or replaced while open and the copy of it as it was
    /// (every event acknowledged) is not saved yet: stopping now would lose it.
    unsaved_copy: AtomicBool,
}

impl Shared {
    fn new(
        settings: &SqliteSettings,
        metrics: Arc<Metrics>,
        writable: bool,
        indexer: indexer::SearchIndexer,
    ) -> Self {
        Shared {
            settings: settings.clone(),
            metrics,
            writable: AtomicBool::new(writable),
            last_error: Mutex::new(None),
            outbox_changed: tokio::sync::watch::Sender::new(0),
            feeds: RwLock::default(),
            indexer,
            unsaved_copy: AtomicBool::new(false),
        }
    }

    /// State for a writer's tests: no files, an idle indexer.
    #[cfg(test)]
    pub(crate) fn for_tests(metrics: Arc<Metrics>) -> Self {
        let indexer = indexer::SearchIndexer::idle(0, 0, metrics.search_index_backlog.clone());
        Shared::new(&SqliteSettings::new("unused.db"), metrics, true, indexer)
    }

    fn set_writable(&self, error: Option<String>) {
        let writable = error.is_none();
        if self.writable.swap(writable, Ordering::Relaxed) != writable {
            match &error {
                None => tracing::info!("the store can commit again"),
                Some(error) => tracing::error!(%error, "the store cannot commit"),
            }
        }
        self.metrics.store_writable.set(i64::from(writable));
        if let Ok(mut last) = self.last_error.lock() {
            *last = error;
        }
    }
}

/// The embedded SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    shared: Arc<Shared>,
    jobs: RwLock<Option<Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<checkpoint::Checkpointer>>,
    readers: Arc<ReadPool>,
    /// Opened with [`SqliteStore::open_reader`]: there is no writer.
    read_only: bool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database, brings its schema up to date and starts the
    /// writer.
    pub fn open(settings: SqliteSettings, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let mut conn = open_connection(&settings.path, &settings)?;
        schema::migrate(&mut conn)?;
        let store_id = schema::store_id(&conn)?;
        codec::register(&conn)?;
        apply_size_cap(&conn, &settings)?;
        // A store already at its cap takes no document: said from the start, not from the
        // first event refused.
        let at_the_cap = documents_refused_for_size(&conn, &settings);
        let (sender, receiver) = crossbeam_channel::bounded(settings.queue_capacity.max(1));
        let last_event_id = || {
            conn.query_row("SELECT coalesce(max(id), 0) FROM events", [], |row| {
                row.get(0)
            })
            .map_err(|err| StoreError::Unavailable(format!("cannot read the events: {err}")))
        };
        let indexer = indexer::SearchIndexer::start(
            &settings.path,
            settings.busy_timeout,
            last_event_id,
            store_id,
            settings.index_queue_capacity,
            metrics.search_index_backlog.clone(),
        )?;
        let shared = Arc::new(Shared::new(&settings, metrics, true, indexer));
        shared.metrics.store_writable.set(1);
        if let Some(message) = at_the_cap {
            // Said by whoever opens the store, in its own words (`serve` warns at the start; a
            // command that only reads or retries dead letters has nothing to warn of).
            shared.writable.store(false, Ordering::Relaxed);
            shared.metrics.store_writable.set(0);
            if let Ok(mut last) = shared.last_error.lock() {
                *last = Some(message);
            }
        }
        let writer = Writer {
            path: settings.path.clone(),
            files: writer::StoreFiles::at(&settings.path),
            conn: Some(conn),
            jobs: receiver,
            group: settings.group,
            shared: shared.clone(),
            connection: 0,
            moved: None,
            failure_said: None,
            held: std::collections::VecDeque::new(),
        };
        let handle = std::thread::Builder::new()
            .name("provtrail-writer".into())
            .spawn(move || writer.run())
            .map_err(|err| StoreError::Internal(format!("cannot start the writer: {err}")))?;
        Ok(SqliteStore {
            readers: Arc::new(ReadPool::new(
                settings.path.clone(),
                settings.busy_timeout,
                true,
            )),
            read_only: false,
            shared,
            jobs: RwLock::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
            checkpointer: Mutex::new(Some(checkpoint::Checkpointer::start(settings.path.clone()))),
        })
    }

    /// Opens an existing database only to read it, for the commands that show what a store
    /// holds (`search`, `show`, `stats`, `quarantine` with `--db`): read-only connections, and no
    /// writer, search indexer or checkpointer. Reading the file of a running server then starts
    /// nothing beside that server's own threads, and a newer build never migrates the schema
    /// under it. Anything that would write fails as unavailable.
    ///
    /// `Ok(None)` when the file cannot be read that way and needs a full [`SqliteStore::open`]:
    /// its schema is older than this build's, or `search_index` is asked for and the search
    /// index does not hold every stored event (it is missing, or behind and not caught up
    /// within a moment by a server's indexer). A full open brings either up to date.
    pub fn open_reader(path: &Path, search_index: bool) -> Result<Option<Self>, StoreError> {
        let Some(file) = EventFile::open(path)? else {
            return Ok(None);
        };
        let last_event_id: i64 = file
            .conn
            .query_row("SELECT coalesce(max(id), 0) FROM events", [], |row| {
                row.get(0)
            })
            .map_err(read_error)?;
        let store_id = schema::read_store_id(&file.conn);
        drop(file);
        let settings = SqliteSettings::new(path);
        let mut indexed_through = indexer::indexed_through(path, settings.busy_timeout, store_id);
        if search_index {
            // A running server indexes behind its commits: give its indexer a moment to
            // reach the events that were there when this began.
            let started = indexed_through;
            let deadline = Instant::now() + READER_INDEX_WAIT;
            while indexed_through.is_some_and(|through| through < last_event_id)
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
                indexed_through = indexer::indexed_through(path, settings.busy_timeout, store_id);
            }
            let behind = indexed_through.is_none_or(|through| through < last_event_id);
            // Still behind but moving: a server is indexing (under load, it may stay a little
            // behind); read what is indexed rather than start a second indexer beside it
            // (`search_index_lag` says how far behind). Behind and still: nobody is indexing,
            // and the full open must catch up.
            let indexing =
                matches!((started, indexed_through), (Some(from), Some(now)) if now > from);
            if behind && !indexing {
                return Ok(None);
            }
        }
        let metrics = Arc::new(Metrics::new());
        let indexer = indexer::SearchIndexer::idle(
            indexed_through.unwrap_or_default(),
            last_event_id,
            metrics.search_index_backlog.clone(),
        );
        let shared = Arc::new(Shared::new(&settings, metrics, false, indexer));
        Ok(Some(SqliteStore {
            // Without an index file there is nothing to attach: the reads that need none work.
            readers: Arc::new(ReadPool::new(
                settings.path.clone(),
                settings.busy_timeout,
                indexed_through.is_some(),
            )),
            shared,
            jobs: RwLock::new(None),
            writer: Mutex::new(None),
            checkpointer: Mutex::new(None),
            read_only: true,
        }))
    }

    /// Events stored but not yet in the search index, as far as this store knows: for one opened
    /// with [`SqliteStore::open_reader`], those a running server had not indexed when it opened.
    pub fn search_index_lag(&self) -> i64 {
        self.shared.indexer.state().backlog()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.settings.path
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let guard = self
            .jobs
            .read()
            .map_err(|_| StoreError::Internal("store lock poisoned".into()))?;
        let Some(sender) = guard.as_ref() else {
            if self.read_only {
                return Err(StoreError::Unavailable(
                    "the database was opened for reading only".into(),
                ));
            }
            return Err(StoreError::Unavailable("the store is shutting down".into()));
        };
        sender.try_send(job).map_err(|err| match err {
            TrySendError::Full(_) => StoreError::Overloaded(format!(
                "more than {} documents are waiting to be committed",
                self.shared.settings.queue_capacity
            )),
            TrySendError::Disconnected(_) => {
                StoreError::Unavailable("the store writer has stopped".into())
            }
        })
    }

    /// A place for a read made for a client ([`CLIENT_READS_AT_ONCE`]), waited for.
    async fn client_place(&self) -> Result<tokio::sync::SemaphorePermit<'_>, StoreError> {
        self.readers
            .client_places
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))
    }

    /// [`SqliteStore::read`] for a client of the read API or the web UI: in one of a few places
    /// ([`CLIENT_READS_AT_ONCE`]), stopped at [`CLIENT_READ_TIME_LIMIT`], and stopped when its
    /// client leaves (the future is dropped), rather than reading on for nobody.
    async fn client_read<R, F>(&self, query: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let _place = self.client_place().await?;
        let stop = Arc::new(AtomicBool::new(false));
        let _stop_on_drop = crate::search::StopOnDrop(stop.clone());
        let deadline = Instant::now() + CLIENT_READ_TIME_LIMIT;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            readers.with(|conn| {
                interruptible(conn, stop, deadline, query).map_err(|err| {
                    if Instant::now() >= deadline {
                        StoreError::Invalid(format!(
                            "the query ran past its limit of {} s; narrow it (a shorter time \
                             range, since and until)",
                            CLIENT_READ_TIME_LIMIT.as_secs()
                        ))
                    } else {
                        err
                    }
                })
            })
        })
        .await
        .map_err(|err| StoreError::Internal(format!("a read task failed: {err}")))?
    }

    /// Runs a query on a read-only connection, off the async threads.
    pub(crate) async fn read<R, F>(&self, query: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.with(query))
            .await
            .map_err(|err| StoreError::Internal(format!("a read task failed: {err}")))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(&self, incoming: Incoming) -> Result<IngestOutcome, StoreError> {
        let (codec, stored_raw) = codec::encode(&incoming.raw);
        let index_doc = match &incoming.content {
            Content::Event(event) => keys::document(
                &event.fields,
                incoming.invocation_id.as_deref(),
                incoming.receipt.channel.as_deref(),
            ),
            Content::Quarantine(_) => String::new(),
        };
        let (reply, answer) = oneshot::channel();
        self.send(Job::Ingest(
            Box::new(Pending {
                incoming,
                codec,
                stored_raw,
                index_doc,
            }),
            reply,
        ))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store writer stopped".into()))?
    }

    fn record_rejection(&self, rejection: Rejection) {
        if self.send(Job::Reject(Box::new(rejection))).is_err() {
            self.shared.metrics.rejections_dropped.inc();
        }
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Probe(reply))?;
        // Within the second a readiness probe usually waits (Kubernetes' default timeout): a
        // store that cannot commit in that time is not ready, and the probe is told so rather
        // than left to time out. The probe's commit itself goes on.
        match tokio::time::timeout(Duration::from_millis(900), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(StoreError::Unavailable("the store writer stopped".into())),
            Err(_) => Err(StoreError::Unavailable(
                "the store did not commit within a second (another process may hold the \
                 database locked, or the disk is slow; ingest answers say which once its wait \
                 for the lock, store.busy_timeout, is over)"
                    .into(),
            )),
        }
    }

    async fn size_bytes(&self) -> Result<u64, StoreError> {
        let path = self.shared.settings.path.clone();
        let mut total = 0;
        for suffix in ["", "-wal", ".search", ".search-wal"] {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            if let Ok(meta) = tokio::fs::metadata(&name).await {
                total += meta.len();
            }
        }
        Ok(total)
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        self.client_read(|conn| {
            let count = |table: &str| -> Result<u64, StoreError> {
                conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                    row.get::<_, i64>(0)
                })
                .map(|n| n as u64)
                .map_err(read_error)
            };
            Ok(StoreCounts {
                events: count("events")?,
                quarantined: count("quarantine")?,
            })
        })
        .await
    }

    async fn export_events(
        &self,
        range: &ExportRange,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let since = range.since.unwrap_or(i64::MIN);
        let until = range.until.unwrap_or(i64::MAX);
        self.read(move |conn| export_page(conn, since, until, after_id, limit))
            .await
    }

    async fn count_events(&self, range: &ExportRange) -> Result<u64, StoreError> {
        let since = range.since.unwrap_or(i64::MIN);
        let until = range.until.unwrap_or(i64::MAX);
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT count(*) FROM events WHERE received_at >= ?1 AND received_at < ?2",
            )
            .and_then(|mut statement| {
                statement.query_row(params![since, until], |row| row.get::<_, i64>(0))
            })
            .map(|count| u64::try_from(count).unwrap_or(0))
            .map_err(read_error)
        })
        .await
    }

    async fn search_events(
        &self,
        query: &EventQuery,
        with_raw: bool,
    ) -> Result<Page<EventSummary>, StoreError> {
        if keys::match_expression(query).is_some() {
            // The index is written behind the commits: wait until it holds every event
            // committed before this search began (an event is found once its 200 is sent),
            // by this process or by another on the same database.
            let newest = self
                .read(|conn| {
                    conn.query_row("SELECT coalesce(max(id), 0) FROM events", [], |row| {
                        row.get::<_, i64>(0)
                    })
                    .map_err(read_error)
                })
                .await?;
            let state = self.shared.indexer.state();
            if !state.caught_up(newest, indexer::CATCH_UP_WAIT).await {
                tracing::debug!(
                    backlog = state.backlog(),
                    "searching while the index is still catching up"
                );
            }
        }
        let query = query.clone();
        let _place = self.client_place().await?;
        // A search runs on a blocking thread, which goes on when its client leaves: it stops
        // then, and at its time limit, rather than hold a reader (and a core) for nobody.
        let stop = Arc::new(AtomicBool::new(false));
        let _stop_on_drop = crate::search::StopOnDrop(stop.clone());
        let deadline = Instant::now() + CLIENT_READ_TIME_LIMIT;
        let indexer = self.shared.indexer.state();
        let remade = self.shared.indexer.is_running();
        let index_path = indexer::index_path(&self.readers.path);
        let readers = self.readers.clone();
        let searched = tokio::task::spawn_blocking(move || {
            readers.with_index(|conn, index_file| {
                interruptible(conn, stop, deadline, |conn| {
                    read::search_events(conn, &query, with_raw)
                })
                .map_err(|err| match err {
                    StoreError::Damaged(reason)
                        if reason.starts_with(read::SEARCH_INDEX_DAMAGED) =>
                    {
                        tracing::warn!(error = %reason, "a search found the search index damaged");
                        if remade {
                            indexer.report_damage(index_file);
                            StoreError::Unavailable(format!(
                                "{reason}; it is being made anew from the stored events"
                            ))
                        } else {
                            StoreError::Damaged(format!(
                                "{reason}: remove {} (the next start of provtrail serve \
                                     makes it anew from the stored events)",
                                index_path.display()
                            ))
                        }
                    }
                    _ if Instant::now() >= deadline => StoreError::Invalid(format!(
                        "the search ran past its limit of {} s; narrow it ({}a shorter time \
                             range)",
                        CLIENT_READ_TIME_LIMIT.as_secs(),
                        if query.q.is_some() {
                            "fewer words, fewer prefix words like abc*, "
                        } else {
                            ""
                        }
                    )),
                    err => err,
                })
            })
        })
        .await;
        searched.map_err(|err| StoreError::Internal(format!("a read task failed: {err}")))?
    }

    async fn get_event(&self, id: i64) -> Result<Option<EventDetail>, StoreError> {
        self.client_read(move |conn| read::get_event(conn, id))
            .await
    }

    async fn stats(&self, query: &StatsQuery) -> Result<Stats, StoreError> {
        let query = query.clone();
        self.client_read(move |conn| read::stats(conn, &query))
            .await
    }

    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Page<DeliveryRecord>, StoreError> {
        let query = query.clone();
        self.client_read(move |conn| read::deliveries(conn, &query))
            .await
    }

    async fn quarantine(
        &self,
        query: &QuarantineQuery,
    ) -> Result<Page<QuarantineEntry>, StoreError> {
        let query = query.clone();
        self.client_read(move |conn| read::quarantine(conn, &query))
            .await
    }

    async fn get_quarantine(&self, id: i64) -> Result<Option<QuarantineEntry>, StoreError> {
        self.client_read(move |conn| read::get_quarantine(conn, id))
            .await
    }

    fn is_saving_what_would_be_lost(&self) -> bool {
        self.shared.unsaved_copy.load(Ordering::Relaxed)
    }

    async fn close(&self) {
        if let Ok(mut jobs) = self.jobs.write() {
            jobs.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut writer| writer.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        // After the writer: it hands its last documents over as it stops.
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.indexer.stop()).await;
        let checkpointer = self.checkpointer.lock().ok().and_then(|mut c| c.take());
        if let Some(mut checkpointer) = checkpointer {
            let _ = tokio::task::spawn_blocking(move || checkpointer.stop()).await;
        }
    }

    async fn outbox_write(&self, write: OutboxWrite) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Outbox(Box::new(OutboxJob {
            write,
            touched: std::sync::atomic::AtomicU64::new(0),
            reply,
        })))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store writer stopped".into()))?
    }

    async fn outbox_due(
        &self,
        route: &str,
        now: Millis,
        limit: usize,
        exclude: Vec<i64>,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let route = route.to_owned();
        self.read(move |conn| {
            let exclude = exclude.into_iter().collect();
            outbox::due(conn, &route, now, limit, &exclude)
        })
        .await
    }

    async fn route_counts(&self) -> Result<Vec<RouteCounts>, StoreError> {
        self.read(outbox::counts).await
    }

    async fn route_deliveries(
        &self,
        query: &RouteDeliveryQuery,
    ) -> Result<Page<RouteDelivery>, StoreError> {
        let query = query.clone();
        self.client_read(move |conn| outbox::list(conn, &query))
            .await
    }

    async fn delivery_attempts(
        &self,
        delivery_id: i64,
    ) -> Result<Vec<DeliveryAttempt>, StoreError> {
        self.client_read(move |conn| outbox::attempts(conn, delivery_id))
            .await
    }

    fn outbox_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.outbox_changed.subscribe()
    }

    fn feed_outbox(&self, route: &str, feed: OutboxFeed) {
        if let Ok(mut feeds) = self.shared.feeds.write() {
            feeds.insert(route.to_owned(), feed);
        }
    }
}

pub(crate) fn parse_issues(text: Option<&str>) -> Vec<IssueRecord> {
    text.and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

pub(crate) fn read_error(err: rusqlite::Error) -> StoreError {
    StoreError::Internal(format!("query failed: {err}"))
}

/// Opens a read-write connection with the settings durability depends on.
pub(crate) fn open_connection(
    path: &Path,
    settings: &SqliteSettings,
) -> Result<Connection, StoreError> {
    let open = |err: rusqlite::Error| match err.sqlite_error_code() {
        // Nothing a retry mends: the file is something else (named by mistake, or damaged).
        Some(rusqlite::ErrorCode::NotADatabase) => StoreError::Internal(format!(
            "{} is not a provtrail database: {err}",
            path.display()
        )),
        _ => StoreError::Unavailable(format!(
            "cannot open the database {}: {err}",
            path.display()
        )),
    };
    if path.is_dir() {
        return Err(StoreError::Internal(format!(
            "{} is a directory, not a database file",
            path.display()
        )));
    }
    // SQLite would open a device (`/dev/null`) and fail later with a vague I/O error, after
    // making its journal beside it (`/dev/null-journal`).
    if std::fs::metadata(path).is_ok_and(|meta| !meta.is_file()) {
        return Err(StoreError::Internal(format!(
            "{} is not a regular file (a device or a pipe), not a database file",
            path.display()
        )));
    }
    crate::precreate_private(path).map_err(|err| {
        StoreError::Unavailable(format!(
            "cannot create the database {}: {err}",
            path.display()
        ))
    })?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open)?;
    conn.busy_timeout(settings.busy_timeout).map_err(open)?;
    refuse_foreign_database(&conn, path).map_err(|err| match err {
        ForeignOrNot::Foreign(refusal) => refusal,
        ForeignOrNot::Unreadable(err) => open(err),
    })?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(open)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "the database {} cannot use write-ahead logging (journal mode {mode})",
            path.display()
        )));
    }
    // FULL: a commit is on disk (WAL fsynced) before it returns; this is what lets a 200 mean
    // "kept". (The writer lowers it to NORMAL when its syncer thread syncs the log instead; see
    // `writer::LogSync`.)
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open)?;
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(open)?;
    // A small page cache, because SQLite walks all of it at the end of many commits: when a
    // b-tree split puts its new pages in order, it parks a page at the number just past the
    // lock-byte page (1 GiB), and the commit then drops every cached page beyond the end of
    // the file by scanning the whole cache. With 16 MB that scan was about 7 % of the writer's
    // time; with 1 MB routed ingest ran 8-20 % faster in alternating runs (docs/routes.md, "Cost").
    // What the writer rereads (interior pages, the right edges it appends to) fits.
    conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)
        .map_err(open)?;
    // A thread copies the log back into the database in the background (see `checkpoint`); the
    // writer's own checkpoint then finds little left to copy, and by completing it lets the log
    // start over from its beginning instead of growing without end (without it the log grew to
    // 1.7 GB in a 10 s bench). Once the log is past the threshold the writer tries at every
    // commit, so the threshold is set high: 10,000 pages (about 40 MB) rather than 2,000 gave
    // 20-22k against 18-19k events/s at 64 connections (docs/performance.md).
    conn.pragma_update(None, "wal_autocheckpoint", 10_000)
        .map_err(open)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// [`open_read_only`], saying why it failed: a file of something else is found here, since the
/// first read is made on opening.
/// A database file that SQLite finds damaged as it opens it.
fn damaged(path: &Path, err: &rusqlite::Error) -> StoreError {
    StoreError::Damaged(format!(
        "{} is damaged: {err} (it may have been cut short or overwritten)",
        path.display()
    ))
}

fn read_only_or_say_why(path: &Path) -> Result<Connection, StoreError> {
    open_read_only(path).map_err(|err| {
        if err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt) {
            damaged(path, &err)
        } else if err.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
            StoreError::Internal(format!(
                "{} is not a provtrail database: {err}",
                path.display()
            ))
        } else {
            StoreError::Internal(format!("cannot open {} for reading: {err}", path.display()))
        }
    })
}

/// Refuses, as opening the store would, a file at `path` that is not a database this store may
/// open (another application's, one a newer provtrail made, or no database at all), reading it
/// only; a path with no file yet is fine (the store is created there).
pub fn check_database_file(path: &Path) -> Result<(), StoreError> {
    if !path.is_file() {
        return Ok(());
    }
    let conn = read_only_or_say_why(path)?;
    let unreadable = |err: rusqlite::Error| {
        StoreError::Unavailable(format!("cannot read {}: {err}", path.display()))
    };
    refuse_foreign_database(&conn, path).map_err(|refused| match refused {
        ForeignOrNot::Foreign(err) => err,
        ForeignOrNot::Unreadable(err) => unreadable(err),
    })?;
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(unreadable)?;
    refuse_newer_schema(path, version)
}

/// Refuses a database whose schema a newer provtrail made: this build cannot tell what its
/// tables hold, nor migrate it back.
fn refuse_newer_schema(path: &Path, version: u32) -> Result<(), StoreError> {
    if version > schema::CURRENT_VERSION {
        return Err(StoreError::Internal(format!(
            "{} has schema version {version}, newer than this build knows ({}); use a newer \
             provtrail",
            path.display(),
            schema::CURRENT_VERSION
        )));
    }
    Ok(())
}

/// Why [`refuse_foreign_database`] refused, or could not tell.
enum ForeignOrNot {
    Foreign(StoreError),
    Unreadable(rusqlite::Error),
}

/// Refuses an SQLite database of another application before anything is written to it (not
/// even its journal mode changes): one that names an application of its own
/// (`application_id`), one with tables but no schema version of provtrail's, or one whose
/// schema version is not backed by provtrail's tables. A store's migrations would otherwise
/// add provtrail's tables to it and take it over, or fail half-way after changing it.
fn refuse_foreign_database(conn: &Connection, path: &Path) -> Result<(), ForeignOrNot> {
    let pragma = |name: &str| -> Result<i64, ForeignOrNot> {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .map_err(ForeignOrNot::Unreadable)
    };
    let foreign = |why: String| {
        ForeignOrNot::Foreign(StoreError::Internal(format!(
            "{} is not a provtrail database: {why}; give provtrail a file of its own",
            path.display()
        )))
    };
    let application = pragma("application_id")?;
    if application != 0 {
        return Err(foreign(format!(
            "it names another application (application_id {application})"
        )));
    }
    let version = pragma("user_version")?;
    if version != 0 {
        let events: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('events', 'meta')",
                [],
                |row| row.get(0),
            )
            .map_err(ForeignOrNot::Unreadable)?;
        if events < 2 {
            return Err(foreign(format!(
                "it has schema version {version} but not provtrail's tables"
            )));
        }
        return Ok(());
    }
    let mut statement = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
             ORDER BY name LIMIT 4",
        )
        .map_err(ForeignOrNot::Unreadable)?;
    let names: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .and_then(Iterator::collect)
        .map_err(ForeignOrNot::Unreadable)?;
    if names.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = names
        .iter()
        .take(3)
        .map(|name| format!("`{}`", crate::visible::escape_hidden(name, |_| false)))
        .collect();
    Err(foreign(format!(
        "it holds another application's tables ({}{})",
        shown.join(", "),
        if names.len() > 3 { ", …" } else { "" }
    )))
}

/// Caps the database's size (`store.max_size`), once its schema is in place, at the cap and its
/// reserve ([`SqliteSettings::cap_reserve`]): past the cap itself the writer takes no documents
/// ([`documents_refused_for_size`]), and the reserve is for delivery records. SQLite keeps a
/// database that is already larger at its size, and fills the room left in its pages.
pub(crate) fn apply_size_cap(
    conn: &Connection,
    settings: &SqliteSettings,
) -> Result<(), StoreError> {
    let Some(max) = settings.max_size_bytes else {
        return Ok(());
    };
    let cap = |err: rusqlite::Error| {
        StoreError::Unavailable(format!(
            "cannot cap the size of the database {}: {err}",
            settings.path.display()
        ))
    };
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |row| row.get(0))
        .map_err(cap)?;
    let max_bytes = i64::try_from(max.saturating_add(settings.cap_reserve())).unwrap_or(i64::MAX);
    let pages = (max_bytes / page_size.max(1)).max(1);
    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |row| {
        row.get::<_, i64>(0)
    })
    .map_err(cap)?;
    Ok(())
}

/// Why no document may go into the database now, when its pages in use (those not free for
/// reuse) have reached its size cap (`store.max_size`).
pub(crate) fn documents_refused_for_size(
    conn: &Connection,
    settings: &SqliteSettings,
) -> Option<String> {
    let max = settings.max_size_bytes?;
    let pragma = |name: &str| -> Option<u64> {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0))
            .ok()
            .and_then(|value| u64::try_from(value).ok())
    };
    let page_size = pragma("page_size")?;
    let used = pragma("page_count")?.saturating_sub(pragma("freelist_count")?) * page_size;
    (used >= max).then(|| {
        format!(
            "the database {} holds {used} bytes, at or over its size limit ({max} bytes, \
             store.max_size): it takes no more events until the limit is raised (provtrail \
             deletes no event)",
            settings.path.display()
        )
    })
}

/// Whether reading a row failed for damage to what is stored (a page SQLite finds corrupt, or
/// a value no longer of its column's type, such as text that is not UTF-8) rather than for the
/// database being busy or out of reach.
pub(super) fn row_damaged(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..)
    ) || err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt)
}

/// The columns of an exported event; the client that delivered it is kept in the delivery log
/// only.
const EXPORT_COLUMNS: &str = "id, received_at, remote_addr, channel, method, path, raw_size,
    invocation_id, raw_codec, raw, validation_warnings, tracking_number, outcome,
    (SELECT user_agent FROM deliveries
     WHERE event_id = events.id AND outcome = 'accepted' ORDER BY id LIMIT 1)";

/// [`EXPORT_COLUMNS`] without the client, for a row whose delivery record cannot be read.
const EXPORT_COLUMNS_ALONE: &str = "id, received_at, remote_addr, channel, method, path, raw_size,
    invocation_id, raw_codec, raw, validation_warnings, tracking_number, outcome, NULL";

/// An exported event's row as read, its body not yet decoded.
type ExportRow = (
    i64,
    Receipt,
    Option<String>,
    i64,
    Vec<u8>,
    Option<String>,
    String,
    String,
);

fn export_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ExportRow> {
    Ok((
        row.get::<_, i64>(0)?,
        Receipt {
            received_at: row.get(1)?,
            remote_addr: row.get(2)?,
            channel: row.get(3)?,
            method: row.get(4)?,
            path: row.get(5)?,
            size: row.get::<_, i64>(6)? as u64,
            user_agent: row.get(13)?,
        },
        row.get::<_, Option<String>>(7)?,
        row.get::<_, i64>(8)?,
        row.get::<_, Vec<u8>>(9)?,
        row.get::<_, Option<String>>(10)?,
        row.get::<_, String>(11)?,
        row.get::<_, String>(12)?,
    ))
}

/// The event of a row, its body decoded (the length as recorded: a damaged one, negative, is
/// told as such).
fn exported(conn: &Connection, row: ExportRow) -> Result<StoredEvent, StoreError> {
    let (id, receipt, invocation_id, codec, stored, warnings, tracking, outcome) = row;
    let raw = codec::decode_event(conn, id, codec, stored, receipt.size as i64)?;
    Ok(StoredEvent {
        id,
        raw,
        receipt,
        invocation_id,
        warnings: parse_issues(warnings.as_deref()),
        tracking_number: tracking,
        outcome,
    })
}

/// Events with ids after `after_id` received in `[since, until)`, oldest first, bodies decoded.
///
/// A row SQLite cannot read is named by its id ([`StoreError::Unreadable`]), so that a reader
/// steps over it. Where the damage is in the pages that lead to the rows (a scan in id order
/// stops there), the rows beyond it are looked up one id at a time, each through its own path
/// from the table's root: export saves what still reads back from a damaged store.
fn export_page(
    conn: &Connection,
    since: i64,
    until: i64,
    after_id: i64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {EXPORT_COLUMNS} FROM events
             WHERE id > ?1 AND received_at >= ?2 AND received_at < ?3
             ORDER BY id LIMIT ?4"
        ))
        .map_err(read_error)?;
    let rows = statement
        .query_map(params![after_id, since, until, limit as i64], export_row)
        .map_err(read_error)?;
    let mut events: Vec<StoredEvent> = Vec::new();
    for row in rows {
        match row {
            Ok(row) => events.push(exported(conn, row)?),
            Err(err) if row_damaged(&err) => {
                let after = events.last().map_or(after_id, |event| event.id);
                let Some((after, last)) = salvage_bounds(conn, since, until, after) else {
                    return Err(StoreError::Damaged(format!(
                        "the database is damaged: {err} (and no newest event id can be read)"
                    )));
                };
                return salvage_page(conn, since, until, after, last, limit, events);
            }
            Err(err) => return Err(read_error(err)),
        }
    }
    // A scan can also end early without an error, where a damaged page still looks like one:
    // the range's newest event, found through the time index, says whether it did.
    if events.len() < limit {
        let after = events.last().map_or(after_id, |event| event.id);
        if newest_by_time(conn, since, until).is_some_and(|newest| newest > after) {
            if let Some((after, last)) = salvage_bounds(conn, since, until, after) {
                return salvage_page(conn, since, until, after, last, limit, events);
            }
        }
    }
    Ok(events)
}

/// [`export_page`] past a scan that failed or ended early, from the event after `after` up to
/// `last`, one id at a time.
fn salvage_page(
    conn: &Connection,
    since: i64,
    until: i64,
    after: i64,
    last: i64,
    limit: usize,
    mut events: Vec<StoredEvent>,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut with_agent = conn
        .prepare_cached(&format!(
            "SELECT {EXPORT_COLUMNS} FROM events
             WHERE id = ?1 AND received_at >= ?2 AND received_at < ?3"
        ))
        .map_err(read_error)?;
    // The client's name comes from the delivery log, whose own pages may be the damaged ones.
    let mut alone = conn
        .prepare_cached(&format!(
            "SELECT {EXPORT_COLUMNS_ALONE} FROM events
             WHERE id = ?1 AND received_at >= ?2 AND received_at < ?3"
        ))
        .map_err(read_error)?;
    let mut id = after;
    // A bound read from a damaged store may be wrong: the lookups also stop after this many ids
    // in a row that hold no event of the range.
    let mut missed = 0;
    while events.len() < limit && id < last && missed < MAX_MISSED_IDS {
        id += 1;
        let found = match with_agent
            .query_row(params![id, since, until], export_row)
            .optional()
        {
            Err(first) if row_damaged(&first) => alone
                .query_row(params![id, since, until], export_row)
                .optional(),
            found => found,
        };
        match found {
            Ok(Some(row)) => match exported(conn, row) {
                Ok(event) => events.push(event),
                Err(unreadable) if events.is_empty() => return Err(unreadable),
                // Said by the next page, which begins with it.
                Err(_) => break,
            },
            Ok(None) => missed += 1,
            Err(damaged) if row_damaged(&damaged) => {
                if events.is_empty() {
                    return Err(StoreError::Unreadable {
                        id,
                        reason: format!("SQLite cannot read its row: {damaged}"),
                    });
                }
                break;
            }
            Err(other) => return Err(read_error(other)),
        }
    }
    Ok(events)
}

/// The id of the newest event received in `[since, until)`, by the time index: one seek.
fn newest_by_time(conn: &Connection, since: i64, until: i64) -> Option<i64> {
    conn.query_row(
        "SELECT id FROM events WHERE received_at >= ?1 AND received_at < ?2
         ORDER BY received_at DESC, id DESC LIMIT 1",
        params![since, until],
        |row| row.get::<_, i64>(0),
    )
    .ok()
}

/// Ids in a row holding no event of the range after which a salvage stops.
const MAX_MISSED_IDS: u32 = 1_000_000;

/// Where a salvage of `[since, until)` after `after` starts and ends, as a damaged store still
/// tells them: from the last event received before the range (less the slack by which ids may
/// trail receipt times, and only while they follow them), to the table's highest id, or where
/// that cannot be read, the newest the time index and the delivery log name (plus the slack's
/// worth of later receipts). `None` when no end can be read.
fn salvage_bounds(conn: &Connection, since: i64, until: i64, after: i64) -> Option<(i64, i64)> {
    let in_order = conn
        .query_row(
            "SELECT 1 FROM meta WHERE key = ?1",
            params![TIME_ORDER_MIXED],
            |_| Ok(()),
        )
        .optional()
        .is_ok_and(|mixed| mixed.is_none());
    let start = if in_order && since > i64::MIN {
        conn.query_row(
            "SELECT id FROM events WHERE received_at < ?1
             ORDER BY received_at DESC, id DESC LIMIT 1",
            params![since.saturating_sub(crate::store::ORDER_SLACK_MS)],
            |row| row.get::<_, i64>(0),
        )
        .map_or(after, |before| before.max(after))
    } else {
        after
    };
    let highest = conn
        .query_row("SELECT max(id) FROM events", [], |row| {
            row.get::<_, Option<i64>>(0)
        })
        .ok()
        .flatten();
    let end = highest.or_else(|| {
        let slack_later = until.saturating_add(crate::store::ORDER_SLACK_MS);
        [
            newest_by_time(conn, since, slack_later),
            conn.query_row(
                "SELECT max(event_id) FROM deliveries WHERE event_id IS NOT NULL",
                [],
                |row| row.get::<_, Option<i64>>(0),
            )
            .ok()
            .flatten(),
        ]
        .into_iter()
        .flatten()
        .max()
    })?;
    Some((start, end))
}

/// Key in `meta` set once the store holds a row whose receipt time is older, by more than
/// [`ORDER_SLACK_MS`](crate::store::ORDER_SLACK_MS), than a row stored before it (an event
/// restored from an export): ids no longer follow times, and readers stop relying on it.
pub(crate) const TIME_ORDER_MIXED: &str = "ids_out_of_time_order";

/// Opens a database file for reading only. A store kept where nothing can be written (a backup
/// on read-only media, a directory without write permission) cannot get the shared-memory file
/// that SQLite reads a write-ahead-log database through: it is then opened as immutable, which
/// is exact when no log beside it holds changes the file lacks. With such a log, the error says
/// to copy the files somewhere writable rather than read the file without them.
pub(crate) fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Opening is lazy: the first read is what needs the shared memory.
    match conn.query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0)) {
        Ok(_) => Ok(conn),
        Err(err) if cannot_share(&err) && path.is_file() => {
            drop(conn);
            if holds_unmerged_log(path) {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!(
                        "{err}: its directory cannot be written, and its write-ahead log holds \
                         changes not yet in the database file; copy the database with its \
                         -wal file to a writable directory and read it there"
                    )),
                ));
            }
            Connection::open_with_flags(
                immutable_uri(path),
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )
        }
        Err(err) => Err(err),
    }
}

/// The bytes of the database at `path` in use, as SQLite counts them (its pages, less those
/// free for reuse, times the page size), which is what the size cap (`store.max_size`) is held
/// to: a new store's pages may still be in its write-ahead log rather than in the file. None
/// when it cannot be read.
pub fn database_size_in_use(path: &Path) -> Option<u64> {
    let conn = open_read_only(path).ok()?;
    let pragma = |name: &str| -> Option<u64> {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0))
            .ok()
            .and_then(|value| u64::try_from(value).ok())
    };
    let pages = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
    Some(pages.saturating_mul(pragma("page_size")?))
}

/// Whether a read failed for want of the files beside the database (its shared memory), not
/// for what the database holds.
fn cannot_share(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
    )
}

/// Whether a write-ahead log beside `path` holds frames (changes the database file may lack).
fn holds_unmerged_log(path: &Path) -> bool {
    let mut log = path.as_os_str().to_owned();
    log.push("-wal");
    std::fs::metadata(PathBuf::from(log)).is_ok_and(|meta| meta.len() > 0)
}

/// `file:` URI of `path` read as immutable (no locks, no shared memory, no log).
fn immutable_uri(path: &Path) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut uri = String::from("file:");
    for &byte in absolute.as_os_str().as_encoded_bytes() {
        match byte {
            b'?' | b'#' | b'%' => uri.push_str(&format!("%{byte:02X}")),
            byte if byte.is_ascii() => uri.push(char::from(byte)),
            byte => uri.push_str(&format!("%{byte:02X}")),
        }
    }
    format!("{uri}?immutable=1")
}

/// Attaches the search index at `index` as `search` to a read-only connection, as immutable
/// when its directory cannot be written (see [`open_read_only`]).
fn attach_search_index(conn: &Connection, index: &Path) -> rusqlite::Result<()> {
    let probe = || {
        conn.query_row("SELECT count(*) FROM search.sqlite_master", [], |row| {
            row.get::<_, i64>(0)
        })
    };
    let attached = conn
        .execute(
            "ATTACH DATABASE ?1 AS search",
            [index.to_string_lossy().as_ref()],
        )
        .and_then(|_| probe());
    match attached {
        Ok(_) => Ok(()),
        Err(err) if cannot_share(&err) && !holds_unmerged_log(index) => {
            let _ = conn.execute("DETACH DATABASE search", []);
            conn.execute("ATTACH DATABASE ?1 AS search", [immutable_uri(index)])?;
            probe().map(|_| ())
        }
        Err(err) => {
            let _ = conn.execute("DETACH DATABASE search", []);
            Err(err)
        }
    }
}

/// Stored events read straight from a database file for `provtrail export`: one read-only
/// connection, no writer, indexer or checkpointer started and nothing written, so that
/// exporting a copy of a store, or the file of a running server, changes no file.
#[derive(Debug)]
pub struct EventFile {
    conn: Connection,
}

impl EventFile {
    /// Opens `path` for reading. `Ok(None)` when its schema is older than this build's: it
    /// must be brought up to date (by opening it as a [`SqliteStore`]) before it can be read.
    pub fn open(path: &Path) -> Result<Option<EventFile>, StoreError> {
        // SQLite says only "disk I/O error" of a directory.
        if path.is_dir() {
            return Err(StoreError::Internal(format!(
                "{} is a directory, not a database file",
                path.display()
            )));
        }
        let conn = read_only_or_say_why(path)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(read_error)?;
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|err| {
                if err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt) {
                    return damaged(path, &err);
                }
                StoreError::Internal(format!(
                    "{} is not a provtrail database: {err}",
                    path.display()
                ))
            })?;
        if version == 0 {
            return Err(StoreError::Internal(format!(
                "{} is not a provtrail database",
                path.display()
            )));
        }
        refuse_newer_schema(path, version)?;
        if version < schema::CURRENT_VERSION {
            return Ok(None);
        }
        codec::learn(&conn)?;
        Ok(Some(EventFile { conn }))
    }

    /// Events and quarantined documents in the file: what [`EventFile::verify`] reads back.
    pub fn documents(&self) -> Result<u64, StoreError> {
        verify::documents(&self.conn)
    }

    /// SQLite's check of the file (`quick`: pages and records only, not every index entry),
    /// then every stored body read back, `progress` told the documents read after each page.
    pub fn verify(
        &self,
        quick: bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Verification, StoreError> {
        verify::verify(&self.conn, quick, progress)
    }

    /// Up to `limit` events after `after_id` in `range`, oldest first.
    pub fn export_events(
        &self,
        range: &ExportRange,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        export_page(
            &self.conn,
            range.since.unwrap_or(i64::MIN),
            range.until.unwrap_or(i64::MAX),
            after_id,
            limit,
        )
    }
}

/// The page cache of the writing connection, in KiB (SQLite's negative `cache_size`).
const WRITER_CACHE_KIB: i64 = -1_000;

/// How long [`SqliteStore::open_reader`] waits for a running server's indexer to reach the
/// events stored when it began, before it leaves the search to a full open.
const READER_INDEX_WAIT: Duration = Duration::from_secs(2);

/// SQLite's virtual machine steps between two checks whether a read is to stop.
const PROGRESS_STEPS: std::ffi::c_int = 10_000;

/// Longest one read made for a client (a search, a list of the delivery log, statistics, an
/// event) may run: a filter no index serves reads a whole table, and must not hold a core for
/// minutes.
const CLIENT_READ_TIME_LIMIT: Duration = Duration::from_secs(10);

/// How many reads for clients (searches included) run at once; the others wait for a place.
/// Ingest's threads, the writer and the indexer share the same cores: a read token must not be
/// able to take them all with requests that each read for seconds.
const CLIENT_READS_AT_ONCE: usize = 4;

/// Runs `query` on `conn` stopped by SQLite once `stop` is set or `deadline` passes, and gives
/// the connection back without the stop (it goes back to the pool).
fn interruptible<R>(
    conn: &Connection,
    stop: Arc<AtomicBool>,
    deadline: Instant,
    query: impl FnOnce(&Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    let interrupt = move || stop.load(Ordering::Relaxed) || Instant::now() >= deadline;
    conn.progress_handler(PROGRESS_STEPS, Some(interrupt))
        .map_err(read_error)?;
    let result = query(conn);
    let removed = conn.progress_handler(0, None::<fn() -> bool>);
    result.and_then(|found| removed.map(|()| found).map_err(read_error))
}

/// Read-only connections, reused across queries.
#[derive(Debug)]
struct ReadPool {
    path: PathBuf,
    busy_timeout: Duration,
    /// Attach the search index to each connection (not for a reader that was opened without it).
    attach_index: bool,
    /// Idle connections, each with the index file it attached.
    idle: Mutex<Vec<(Connection, Option<FileIdentity>)>>,
    /// Places for the reads made for clients of the read API and the web UI
    /// ([`SqliteStore::client_read`]).
    client_places: tokio::sync::Semaphore,
}

/// A file's device and inode ([`crate::store::file_identity`]).
type FileIdentity = (u64, u64);

impl ReadPool {
    const MAX_IDLE: usize = 8;

    fn new(path: PathBuf, busy_timeout: Duration, attach_index: bool) -> Self {
        ReadPool {
            path,
            busy_timeout,
            attach_index,
            idle: Mutex::new(Vec::new()),
            client_places: tokio::sync::Semaphore::new(CLIENT_READS_AT_ONCE),
        }
    }

    fn with<R>(
        &self,
        query: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.with_index(|conn, _| query(conn))
    }

    /// [`ReadPool::with`], telling the query which index file its connection attached.
    fn with_index<R>(
        &self,
        query: impl FnOnce(&Connection, Option<FileIdentity>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        // A connection reads the index file it attached, even once that file is removed or
        // replaced (and the indexer has moved to the file now at its path): it is opened anew.
        let index = self
            .attach_index
            .then(|| crate::store::file_identity(&indexer::index_path(&self.path)))
            .flatten();
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let (conn, attached) = match idle {
            Some((conn, attached)) if attached == index => (conn, attached),
            _ => (self.open()?, index),
        };
        let result = query(&conn, attached);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < Self::MAX_IDLE {
                idle.push((conn, attached));
            }
        }
        result
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = open_read_only(&self.path).map_err(|err| {
            StoreError::Unavailable(format!("cannot open the database for reading: {err}"))
        })?;
        conn.busy_timeout(self.busy_timeout).map_err(read_error)?;
        // Without the index file (removed while the server runs), everything but index searches
        // still works; those fail with an error until the indexer has made the file anew.
        let index = indexer::index_path(&self.path);
        if !self.attach_index {
            conn.set_prepared_statement_cache_capacity(64);
            return Ok(conn);
        }
        if let Err(err) = attach_search_index(&conn, &index) {
            tracing::warn!(error = %err, path = %index.display(),
                "cannot open the search index for reading");
        }
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query without end (a filter no index serves, over a huge table) stops at its deadline,
    /// and the connection goes back to the pool able to run the next query to its end.
    #[test]
    fn a_read_past_its_deadline_stops_and_leaves_the_connection_usable() {
        let conn = Connection::open_in_memory().unwrap();
        let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)
                       SELECT count(*) FROM n";
        let started = Instant::now();
        let stopped = interruptible(
            &conn,
            Arc::new(AtomicBool::new(false)),
            Instant::now() + Duration::from_millis(100),
            |conn| {
                conn.query_row(endless, [], |row| row.get::<_, i64>(0))
                    .map_err(read_error)
            },
        );
        assert!(stopped.is_err(), "{stopped:?}");
        assert!(started.elapsed() < Duration::from_secs(60));
        // Stopped by its client leaving, whatever the deadline.
        let stop = Arc::new(AtomicBool::new(true));
        let left = interruptible(
            &conn,
            stop,
            Instant::now() + Duration::from_secs(3600),
            |conn| {
                conn.query_row(endless, [], |row| row.get::<_, i64>(0))
                    .map_err(read_error)
            },
        );
        assert!(left.is_err(), "{left:?}");
        // The next query, after both deadlines, runs through.
        std::thread::sleep(Duration::from_millis(150));
        let counted: i64 = conn
            .query_row(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
                 SELECT count(*) FROM n",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(counted, 200_000);
    }
}
