//! Which events are already stored, by deduplication key, kept in two tiers so that a new event
//! does not write a page of a large random index.
//!
//! Why: deduplication keys are hashes, so a unique index over them takes each new key on a random
//! page. With the write-ahead log, every page a commit changes is written whole (4 KiB) to the log,
//! synced, and copied back by the checkpoint; once the index is larger than a commit's batch,
//! every event dirtied a page of its own. It was 42 % of the pages a commit wrote.
//!
//! How: the `dedup` table (key → event id, `WITHOUT ROWID`) holds the keys of every event up to
//! the watermark `meta.dedup_merged_through`. The keys of later events are read from their event
//! rows into memory when the writer opens the database (`Recent`), so that a new event adds only
//! its event row, which is appended. Now and then the writer moves the keys of the oldest recent
//! events into `dedup` in key order, in one statement (`merge`), so that a merge of many keys
//! writes each touched page once; it does this when nothing is waiting, or when the recent keys
//! pass a bound, a slice at a time.
//!
//! Invariant: an event with id ≤ the watermark has its key in `dedup`; one above it is in
//! `Recent` once its commit succeeded. Both change only in the writer's transactions, and the
//! in-memory part only after the transaction that changed the database committed.

use std::collections::{HashMap, VecDeque};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// When recent keys are merged into the `dedup` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupLimits {
    /// A merge is made when nothing waits for the writer and at least this many keys are recent.
    pub merge_when_idle: usize,
    /// Past this many recent keys, merges are made even under load.
    pub merge_always: usize,
    /// Most keys one merge moves (about the most pages of `dedup` one commit writes).
    pub merge_slice: usize,
}

impl Default for DedupLimits {
    /// About 4 MB of memory at most; a merge of 16,384 keys into a table of fewer pages writes
    /// each of its pages once, a tenth of a page per event or less at up to ~2.4 million events.
    fn default() -> Self {
        DedupLimits {
            merge_when_idle: 16_384,
            merge_always: 65_536,
            merge_slice: 16_384,
        }
    }
}

pub(super) type Key = [u8; 16];

/// The keys of the events above the watermark, in memory.
#[derive(Debug)]
pub(super) struct Recent {
    by_key: HashMap<Key, i64>,
    /// The same keys in event-id order, so that a merge removes the oldest cheaply.
    by_id: VecDeque<(i64, Key)>,
    merged_through: i64,
    limits: DedupLimits,
}

/// What one transaction adds to [`Recent`]; applied only once the transaction has committed.
#[derive(Debug, Default)]
pub(super) struct Staged {
    added: HashMap<Key, i64>,
    /// Set when this transaction merged: the new watermark.
    merged_through: Option<i64>,
}

impl Recent {
    /// Reads the watermark and the keys of the events above it.
    pub fn load(conn: &Connection, limits: DedupLimits) -> rusqlite::Result<Self> {
        let merged_through: i64 = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'dedup_merged_through'",
                [],
                |row| row.get::<_, String>(0),
            )
            .optional()?
            .and_then(|value| value.parse().ok())
            .unwrap_or(0);
        let mut recent = Recent {
            by_key: HashMap::new(),
            by_id: VecDeque::new(),
            merged_through,
            limits,
        };
        let mut statement =
            conn.prepare("SELECT id, dedup_key FROM events WHERE id > ?1 ORDER BY id")?;
        let mut rows = statement.query(params![merged_through])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let key: Vec<u8> = row.get(1)?;
            if let Ok(key) = Key::try_from(key.as_slice()) {
                recent.by_key.insert(key, id);
                recent.by_id.push_back((id, key));
            }
        }
        Ok(recent)
    }

    /// The id of the stored event with this key, if there is one (this transaction's included).
    pub fn find(
        &self,
        tx: &Transaction<'_>,
        staged: &Staged,
        key: &Key,
    ) -> rusqlite::Result<Option<i64>> {
        if let Some(id) = staged.added.get(key).or_else(|| self.by_key.get(key)) {
            return Ok(Some(*id));
        }
        tx.prepare_cached("SELECT event_id FROM dedup WHERE dedup_key = ?1")?
            .query_row(params![&key[..]], |row| row.get(0))
            .optional()
    }

    /// Moves the oldest recent keys into `dedup` when it is time (see the constants); called
    /// after the transaction's events are inserted.
    pub fn maybe_merge(
        &self,
        tx: &Transaction<'_>,
        staged: &mut Staged,
        idle: bool,
    ) -> rusqlite::Result<()> {
        let limits = self.limits;
        let count = self.by_id.len() + staged.added.len();
        if count < limits.merge_always && !(idle && count >= limits.merge_when_idle) {
            return Ok(());
        }
        // The oldest `merge_slice` recent keys; or, when there are fewer, all of them and this
        // transaction's, whose ids come after every recent one.
        let slice = limits.merge_slice.max(1);
        let through = if self.by_id.len() >= slice {
            self.by_id[slice - 1].0
        } else {
            staged
                .added
                .values()
                .copied()
                .max()
                .or_else(|| self.by_id.back().map(|(id, _)| *id))
                .unwrap_or(self.merged_through)
        };
        if through <= self.merged_through {
            return Ok(());
        }
        // Sorted by key, so that the B-tree takes the keys page by page. `OR IGNORE`: a key
        // already there (which the invariant rules out) must not stop ingest.
        tx.prepare_cached(
            "INSERT OR IGNORE INTO dedup (dedup_key, event_id)
             SELECT dedup_key, id FROM events WHERE id > ?1 AND id <= ?2 ORDER BY dedup_key",
        )?
        .execute(params![self.merged_through, through])?;
        tx.prepare_cached(
            "INSERT INTO meta (key, value) VALUES ('dedup_merged_through', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![through.to_string()])?;
        staged.merged_through = Some(through);
        Ok(())
    }

    /// The transaction committed: takes in what it added and merged.
    pub fn committed(&mut self, staged: Staged) {
        let mut added: Vec<(i64, Key)> = staged
            .added
            .into_iter()
            .map(|(key, id)| (id, key))
            .collect();
        added.sort_unstable_by_key(|(id, _)| *id);
        for (id, key) in added {
            self.by_key.insert(key, id);
            self.by_id.push_back((id, key));
        }
        if let Some(through) = staged.merged_through {
            while let Some((id, key)) = self.by_id.front().copied() {
                if id > through {
                    break;
                }
                self.by_id.pop_front();
                self.by_key.remove(&key);
            }
            self.merged_through = through;
        }
    }
}

impl Staged {
    /// Records a new event of this transaction.
    pub fn add(&mut self, key: Key, id: i64) {
        self.added.insert(key, id);
    }
}
