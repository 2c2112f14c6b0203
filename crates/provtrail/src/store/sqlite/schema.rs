//! The SQLite schema as a list of versioned migrations, applied in order on start.
//!
//! A migration is never edited once released: changes go into a new one. `PRAGMA user_version`
//! records how many have been applied.

use rusqlite::Connection;

use crate::store::StoreError;

/// Migration `n` (1-based) brings the schema from version `n - 1` to `n`.
const MIGRATIONS: &[&str] = &[
    // 1: events, the search index and statistics rollups, the quarantine and the delivery log
    // (one row for every request, whatever its outcome).
    r#"
    CREATE TABLE events (
        id                  INTEGER PRIMARY KEY,
        received_at         INTEGER NOT NULL,
        dedup_key           BLOB    NOT NULL,
        invocation_id       TEXT,
        tracking_number     TEXT    NOT NULL,
        action              TEXT,
        recipient_id        TEXT    NOT NULL,
        recipient_name      TEXT    NOT NULL,
        requester_id        TEXT,
        requester_name      TEXT,
        sources             TEXT    NOT NULL,
        outcome             TEXT    NOT NULL,
        account_count       INTEGER NOT NULL,
        failed_count        INTEGER NOT NULL,
        errors              TEXT,
        warnings            TEXT,
        validation_warnings TEXT,
        channel             TEXT,
        remote_addr         TEXT,
        method              TEXT    NOT NULL,
        path                TEXT    NOT NULL,
        raw_codec           INTEGER NOT NULL,
        raw_size            INTEGER NOT NULL,
        raw                 BLOB    NOT NULL
    );
    CREATE UNIQUE INDEX events_dedup_key ON events (dedup_key);
    CREATE INDEX events_received_at ON events (received_at);

    -- The search index: one document per event (rowid = event id) holding a hashed token for
    -- every exact key (see `keys.rs`) and the words of its free text. Full-text indexes write
    -- one sorted segment per commit and merge segments later, so indexing many random keys costs
    -- far less at ingest than one B-tree index per key would.
    CREATE VIRTUAL TABLE events_index USING fts5(
        doc,
        content = '',
        contentless_delete = 1,
        detail = 'none',
        tokenize = 'unicode61 remove_diacritics 2'
    );

    -- Hourly counts, kept up to date at ingest, so that statistics over months read a few
    -- thousand rows rather than every event.
    CREATE TABLE rollup_requests (
        hour     INTEGER NOT NULL,
        channel  TEXT    NOT NULL,
        source   TEXT    NOT NULL,
        result   TEXT    NOT NULL,
        requests INTEGER NOT NULL,
        PRIMARY KEY (hour, channel, source, result)
    ) WITHOUT ROWID;
    CREATE TABLE rollup_events (
        hour    INTEGER NOT NULL,
        channel TEXT    NOT NULL,
        outcome TEXT    NOT NULL,
        events  INTEGER NOT NULL,
        PRIMARY KEY (hour, channel, outcome)
    ) WITHOUT ROWID;
    CREATE TABLE rollup_errors (
        hour    INTEGER NOT NULL,
        channel TEXT    NOT NULL,
        message TEXT    NOT NULL,
        events  INTEGER NOT NULL,
        PRIMARY KEY (hour, channel, message)
    ) WITHOUT ROWID;

    CREATE TABLE quarantine (
        id            INTEGER PRIMARY KEY,
        received_at   INTEGER NOT NULL,
        dedup_key     BLOB    NOT NULL,
        invocation_id TEXT,
        reason        TEXT    NOT NULL,
        errors        TEXT    NOT NULL,
        channel       TEXT,
        remote_addr   TEXT,
        method        TEXT    NOT NULL,
        path          TEXT    NOT NULL,
        raw_codec     INTEGER NOT NULL,
        raw_size      INTEGER NOT NULL,
        raw           BLOB    NOT NULL
    );
    CREATE UNIQUE INDEX quarantine_dedup_key ON quarantine (dedup_key);
    CREATE INDEX quarantine_received_at ON quarantine (received_at);

    CREATE TABLE deliveries (
        id            INTEGER PRIMARY KEY,
        received_at   INTEGER NOT NULL,
        remote_addr   TEXT,
        method        TEXT    NOT NULL,
        path          TEXT    NOT NULL,
        channel       TEXT,
        status        INTEGER NOT NULL,
        outcome       TEXT    NOT NULL,
        reason        TEXT,
        size          INTEGER NOT NULL,
        user_agent    TEXT,
        invocation_id TEXT,
        event_id      INTEGER,
        quarantine_id INTEGER
    );
    CREATE INDEX deliveries_received_at ON deliveries (received_at);
    CREATE INDEX deliveries_event_id ON deliveries (event_id) WHERE event_id IS NOT NULL;
    -- "What was refused?" must not read every accepted delivery: the log filtered by outcome
    -- walks this index, which leaves the accepted majority out.
    CREATE INDEX deliveries_outcome ON deliveries (outcome, id) WHERE outcome <> 'accepted';

    -- zstd dictionaries that stored bodies were compressed with (raw_codec 2), by dictionary id.
    CREATE TABLE dictionaries (
        id   INTEGER PRIMARY KEY,
        data BLOB    NOT NULL
    );

    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 2: routes. The outbox holds one delivery per (event, route) match, inserted in the same
    // transaction as the event; workers record every attempt. State: 0 pending, 1 delivered,
    // 2 dead. The partial indexes hold only pending and dead rows, so that finding due work and
    // listing dead letters stay cheap however many deliveries have completed.
    r#"
    CREATE TABLE route_deliveries (
        id              INTEGER PRIMARY KEY,
        event_id        INTEGER NOT NULL,
        route           TEXT    NOT NULL,
        state           INTEGER NOT NULL DEFAULT 0,
        attempts        INTEGER NOT NULL DEFAULT 0,
        attempts_base   INTEGER NOT NULL DEFAULT 0,
        origin          TEXT    NOT NULL,
        created_at      INTEGER NOT NULL,
        due_since       INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        delivered_at    INTEGER,
        last_status     INTEGER,
        last_error      TEXT
    );
    CREATE INDEX route_deliveries_due ON route_deliveries (route, next_attempt_at)
        WHERE state = 0;
    CREATE INDEX route_deliveries_dead ON route_deliveries (route, id) WHERE state = 2;
    CREATE INDEX route_deliveries_event ON route_deliveries (event_id);

    CREATE TABLE route_attempts (
        delivery_id INTEGER NOT NULL,
        attempt     INTEGER NOT NULL,
        started_at  INTEGER NOT NULL,
        latency_us  INTEGER NOT NULL,
        outcome     TEXT    NOT NULL,
        status      INTEGER,
        error       TEXT,
        PRIMARY KEY (delivery_id, attempt)
    ) WITHOUT ROWID;

    -- Running totals per route, updated once per group commit.
    CREATE TABLE route_stats (
        route             TEXT PRIMARY KEY,
        matched           INTEGER NOT NULL DEFAULT 0,
        delivered         INTEGER NOT NULL DEFAULT 0,
        failed_attempts   INTEGER NOT NULL DEFAULT 0,
        dead              INTEGER NOT NULL DEFAULT 0,
        last_error        TEXT,
        last_error_at     INTEGER,
        last_delivered_at INTEGER
    ) WITHOUT ROWID;
    "#,
    // 3: the search index moves to its own file, written behind the commits (`indexer.rs`),
    // which rebuilds it from the events.
    r#"
    DROP TABLE events_index;
    "#,
    // 4: a quarantined event's warnings (lenient validation's notes) apart from the errors
    // that put it there; older entries hold both in `errors`.
    r#"
    ALTER TABLE quarantine ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]';
    "#,
    // 5: the attempts a delivery had when it was last retried from the dead letters, from which
    // its backoff grows again (`attempts_base` also moves up with every attempt that found the
    // sink down, which must not keep the backoff at its first step).
    r#"
    ALTER TABLE route_deliveries ADD COLUMN backoff_base INTEGER NOT NULL DEFAULT 0;
    UPDATE route_deliveries SET backoff_base = attempts_base WHERE state <> 1;
    "#,
    // 6: one route's deliveries, newest first, without reading those of every other route (a
    // quiet route beside a busy one would read the whole outbox for each page of its list).
    r#"
    CREATE INDEX route_deliveries_route ON route_deliveries (route, id);
    "#,
];

/// The schema version this build writes.
pub const CURRENT_VERSION: u32 = MIGRATIONS.len() as u32;

/// A random number that names this database, kept in its `meta` table from its first open by
/// a writer on. The search index, a file of its own derived from the events, carries it, so that
/// an index left from another database is known as such and rebuilt.
pub fn store_id(conn: &Connection) -> Result<i64, StoreError> {
    let failed = |err: rusqlite::Error| {
        StoreError::Unavailable(format!("cannot read or keep the store's id: {err}"))
    };
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?1)",
        [rand::random::<i64>().to_string()],
    )
    .map_err(failed)?;
    let text: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |row| {
            row.get(0)
        })
        .map_err(failed)?;
    text.parse()
        .map_err(|_| StoreError::Internal(format!("the store's id {text:?} is not a number")))
}

/// [`store_id`] of a database opened only to read: `None` until a writer has kept one.
pub fn read_store_id(conn: &Connection) -> Option<i64> {
    conn.query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |row| {
        row.get::<_, String>(0)
    })
    .ok()?
    .parse()
    .ok()
}

/// Brings the database to the current schema, one migration per transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version = schema_version(conn)?;
    if version > CURRENT_VERSION {
        return Err(newer_than_known(version));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let next = index + 1;
        // IMMEDIATE: the write lock is taken before the version is read again, so that of two
        // processes opening a new database at once (a server and an import), one migrates and
        // the other finds the work done, rather than creating the tables a second time.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|err| StoreError::Unavailable(format!("cannot start a migration: {err}")))?;
        let now = schema_version(&tx)?;
        if now > CURRENT_VERSION {
            return Err(newer_than_known(now));
        }
        if now as usize >= next {
            continue;
        }
        // A migration that builds an index reads a whole table: on a large store, a while.
        tracing::info!(version = next, "applying schema migration");
        tx.execute_batch(sql)
            .and_then(|()| tx.pragma_update(None, "user_version", next as i64))
            .and_then(|()| tx.commit())
            .map_err(|err| {
                StoreError::Internal(format!("migration to schema version {next} failed: {err}"))
            })?;
        tracing::info!(version = next, "applied schema migration");
    }
    Ok(())
}

fn schema_version(conn: &Connection) -> Result<u32, StoreError> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|err| StoreError::Internal(format!("cannot read the schema version: {err}")))
}

fn newer_than_known(version: u32) -> StoreError {
    StoreError::Internal(format!(
        "the database has schema version {version}, newer than this build knows \
         ({CURRENT_VERSION}); use a newer provtrail"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_opening_a_new_database_at_once_migrate_it_once() {
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("new.db");
            let start = std::sync::Barrier::new(4);
            std::thread::scope(|scope| {
                let openers: Vec<_> = (0..4)
                    .map(|_| {
                        scope.spawn(|| {
                            let mut conn = Connection::open(&path).unwrap();
                            conn.busy_timeout(std::time::Duration::from_secs(10))
                                .unwrap();
                            start.wait();
                            migrate(&mut conn)
                        })
                    })
                    .collect();
                for opener in openers {
                    let migrated = opener.join().unwrap();
                    assert!(migrated.is_ok(), "round {round}: {migrated:?}");
                }
            });
            let conn = Connection::open(&path).unwrap();
            assert_eq!(schema_version(&conn).unwrap(), CURRENT_VERSION);
        }
    }
}
