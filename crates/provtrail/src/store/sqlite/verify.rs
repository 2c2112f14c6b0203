//! Checking a database file (`provtrail verify`): SQLite's own check of its pages and indexes,
//! then every stored body read back. SQLite's check proves the file's structure; only reading
//! each body back proves that what was acknowledged can still be given back as it arrived (a
//! body that no longer decompresses, or whose dictionary is gone, passes SQLite's check).

use rusqlite::{Connection, params};
use serde::Deserialize;

use super::{codec, read_error};
use crate::store::StoreError;

/// Problems listed one by one; the rest are counted.
pub const MAX_LISTED: usize = 100;

/// Rows read at a time.
const PAGE: i64 = 1_000;

/// What [`super::EventFile::verify`] found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Verification {
    /// What SQLite's check said, when it found anything (at most [`MAX_LISTED`] lines).
    pub structure: Vec<String>,
    /// Whether SQLite's check was the quick one (pages and records, not the indexes' entries).
    pub quick: bool,
    /// Events whose body was read back.
    pub events: u64,
    /// Quarantined documents whose body was read back.
    pub quarantined: u64,
    /// The first [`MAX_LISTED`] stored documents that cannot be given back as they arrived.
    pub problems: Vec<BodyProblem>,
    /// Problems past those listed.
    pub problems_unlisted: u64,
}

impl Verification {
    /// Whether nothing was found.
    pub fn intact(&self) -> bool {
        self.structure.is_empty() && self.problems.is_empty()
    }

    fn add(&mut self, problem: BodyProblem) {
        if self.problems.len() < MAX_LISTED {
            self.problems.push(problem);
        } else {
            self.problems_unlisted += 1;
        }
    }
}

/// A stored document that cannot be given back as it arrived.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BodyProblem {
    /// `event` or `quarantine`.
    pub kind: &'static str,
    /// Its id in that table.
    pub id: i64,
    /// What is wrong.
    pub problem: String,
}

/// The envelope of a stored event: all that is read of its body besides its being JSON. Any
/// value is taken: the model keeps an event whose `_metadata` is not an object (among its
/// unknown fields), and such an event has no invocation id.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "_metadata")]
    metadata: Option<serde_json::Value>,
}

/// Events and quarantined documents in the store: for the progress of a check.
pub fn documents(conn: &Connection) -> Result<u64, StoreError> {
    conn.query_row(
        "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM quarantine)",
        [],
        |row| row.get::<_, i64>(0),
    )
    .map(|count| count.max(0) as u64)
    .map_err(read_error)
}

/// Runs SQLite's check, then reads back every body, calling `progress` with the documents read
/// so far after each page.
pub fn verify(
    conn: &Connection,
    quick: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<Verification, StoreError> {
    let mut found = Verification {
        quick,
        ..Verification::default()
    };
    let pragma = if quick {
        format!("PRAGMA quick_check({MAX_LISTED})")
    } else {
        format!("PRAGMA integrity_check({MAX_LISTED})")
    };
    let said = conn.prepare(&pragma).and_then(|mut statement| {
        statement
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()
    });
    match said {
        Ok(said) if said == ["ok"] => {}
        // One row may hold several lines.
        Ok(said) => {
            found.structure = said
                .iter()
                .flat_map(|row| row.lines())
                .map(str::to_owned)
                .collect();
        }
        Err(err) => found.structure.push(damage(err)?),
    }
    // A file too damaged to be read to its end is a finding too: what could be read is checked.
    if let Err(err) = read_bodies(conn, Table::Events, &mut found, progress) {
        let damage = damage(err)?;
        found.structure.push(format!(
            "reading the events back stopped after {} of them: {damage}",
            found.events
        ));
    }
    if let Err(err) = read_bodies(conn, Table::Quarantine, &mut found, progress) {
        let damage = damage(err)?;
        found.structure.push(format!(
            "reading the quarantine back stopped after {} documents: {damage}",
            found.quarantined
        ));
    }
    Ok(found)
}

/// The error as a finding when it says the file is damaged; as the error it is otherwise (the
/// file locked, gone, unreadable).
fn damage(err: rusqlite::Error) -> Result<String, StoreError> {
    if super::row_damaged(&err)
        || err.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase)
    {
        Ok(err.to_string())
    } else {
        Err(read_error(err))
    }
}

/// Reads back every body of `table` (`events` or `quarantine`), a page at a time in id order.
fn read_bodies(
    conn: &Connection,
    table: Table,
    found: &mut Verification,
    progress: &mut dyn FnMut(u64),
) -> rusqlite::Result<()> {
    let (sql, kind) = match table {
        Table::Events => (
            "SELECT id, raw_codec, raw_size, raw, invocation_id, dedup_key FROM events
             WHERE id > ?1 ORDER BY id LIMIT ?2",
            "event",
        ),
        Table::Quarantine => (
            "SELECT id, raw_codec, raw_size, raw, invocation_id, dedup_key FROM quarantine
             WHERE id > ?1 ORDER BY id LIMIT ?2",
            "quarantine",
        ),
    };
    let mut statement = conn.prepare(sql)?;
    let mut after = i64::MIN;
    loop {
        // A row whose values are no longer of their columns' types (a damaged page SQLite still
        // reads) is a problem of its own, and the rows after it are still read.
        let page = statement
            .query_map(params![after, PAGE], |row| {
                let id = row.get::<_, i64>(0)?;
                let values = (|| {
                    Ok((
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, Vec<u8>>(3)?,
                        row.get::<_, Option<String>>(4)?,
                        row.get::<_, Vec<u8>>(5)?,
                    ))
                })();
                match values {
                    Ok(values) => Ok((id, Ok(values))),
                    Err(err) if super::row_damaged(&err) => Ok((id, Err(err.to_string()))),
                    Err(err) => Err(err),
                }
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.0;
        for (id, values) in page {
            let (codec, size, stored, invocation_id, key) = match values {
                Ok(values) => values,
                Err(err) => {
                    match table {
                        Table::Events => found.events += 1,
                        Table::Quarantine => found.quarantined += 1,
                    }
                    found.add(BodyProblem {
                        kind,
                        id,
                        problem: format!("its row is damaged: {err}"),
                    });
                    continue;
                }
            };
            let problem = match table {
                Table::Events => {
                    found.events += 1;
                    read_back(conn, codec, stored, size).map_or_else(Some, |body| {
                        event_problem(&body, invocation_id.as_deref(), &key)
                    })
                }
                // What was refused may be anything: only that it reads back as it came.
                Table::Quarantine => {
                    found.quarantined += 1;
                    read_back(conn, codec, stored, size).err()
                }
            };
            if let Some(problem) = problem {
                found.add(BodyProblem { kind, id, problem });
            }
        }
        progress(found.events + found.quarantined);
    }
}

/// The tables that hold bodies.
#[derive(Clone, Copy)]
enum Table {
    Events,
    Quarantine,
}

/// A stored body decoded, or why it cannot be: the length recorded when it arrived must be the
/// length decoded.
fn read_back(
    conn: &Connection,
    codec: i64,
    stored: Vec<u8>,
    size: i64,
) -> Result<bytes::Bytes, String> {
    codec::decode(conn, codec, stored, size).map_err(|err| match err {
        StoreError::Internal(reason) => reason,
        other => other.to_string(),
    })
}

/// What is wrong with a stored event's body read back: it must still be JSON, and carry the
/// invocation id it was recorded (and deduplicated) under.
fn event_problem(body: &[u8], invocation_id: Option<&str>, key: &[u8]) -> Option<String> {
    let envelope = match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) => envelope,
        Err(err) => return Some(format!("its body is no longer an event's JSON: {err}")),
    };
    // Without an id, the key is the body's hash, which older versions computed otherwise.
    let recorded = invocation_id?;
    let in_body = envelope
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.get("invocationId")?.as_str())
        .map(str::to_owned);
    if in_body.as_deref() != Some(recorded) {
        return Some(format!(
            "it was recorded with invocation id {recorded:?}, its body says {}",
            in_body.map_or_else(|| "none".to_owned(), |id| format!("{id:?}"))
        ));
    }
    if key != crate::ingest::invocation_key(recorded) {
        return Some(
            "its deduplication key is not its invocation id's: a copy of it sent again would be \
             stored twice"
                .to_owned(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::event_problem;
    use crate::ingest::invocation_key;

    #[test]
    fn an_event_must_keep_the_invocation_id_and_key_it_was_recorded_with() {
        let body = br#"{"trackingNumber":"t","_metadata":{"invocationId":"inv-1"}}"#;
        let key = invocation_key("inv-1");
        assert_eq!(event_problem(body, Some("inv-1"), &key), None);
        // Without an id, the key is the body's hash, which older versions computed otherwise.
        assert_eq!(event_problem(body, None, b"anything"), None);
        let other = event_problem(body, Some("inv-2"), &invocation_key("inv-2")).unwrap();
        assert!(other.contains(r#"recorded with invocation id "inv-2", its body says "inv-1""#));
        let rekeyed = event_problem(body, Some("inv-1"), &invocation_key("inv-2")).unwrap();
        assert!(rekeyed.contains("deduplication key"), "{rekeyed}");
        // An envelope that is not an object is kept by the model: not a problem in itself.
        let odd = br#"{"trackingNumber":"t","_metadata":"nope"}"#;
        assert_eq!(event_problem(odd, None, b"anything"), None);
        let broken = event_problem(b"{\"trackingNumber\":", Some("inv-1"), &key).unwrap();
        assert!(
            broken.starts_with("its body is no longer an event's JSON"),
            "{broken}"
        );
    }
}
