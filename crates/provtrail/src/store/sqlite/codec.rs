//! How raw bodies are kept on disk. A body is stored compressed with zstd and a dictionary trained
//! on Provisioning Completed events (an event is about 1 KB: without a dictionary zstd finds little
//! to share inside one; with it, the keys and structure every event repeats cost almost nothing).
//! The codec is recorded per row, and a zstd frame names its dictionary, so rows stay readable
//! when the choice changes; every dictionary ever used is kept in the database itself.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use bytes::Bytes;
use rusqlite::{Connection, params};

use crate::store::StoreError;

/// Stored as received.
pub const IDENTITY: i64 = 0;
/// zstd frame without a dictionary.
pub const ZSTD: i64 = 1;
/// zstd frame with a dictionary (named by the frame).
pub const ZSTD_DICTIONARY: i64 = 2;

/// The dictionary new bodies are compressed with; regenerate with `provtrail-bench train-dict`.
const BUILTIN: &[u8] = include_bytes!("../../../assets/events.dict");

/// Fast enough to run on every request; with a dictionary, higher levels gain little on 1 KB.
const LEVEL: i32 = 1;

/// Bodies smaller than this are not worth compressing.
const MIN_SIZE: usize = 64;

fn encoder() -> &'static zstd::dict::EncoderDictionary<'static> {
    static ENCODER: OnceLock<zstd::dict::EncoderDictionary<'static>> = OnceLock::new();
    ENCODER.get_or_init(|| zstd::dict::EncoderDictionary::copy(BUILTIN, LEVEL))
}

/// Every dictionary this process can decode with, by id. Dictionaries are few and live as long
/// as the process, so they are leaked to get `'static` decompressors.
fn decoders() -> &'static RwLock<HashMap<u32, &'static zstd::dict::DecoderDictionary<'static>>> {
    static DECODERS: OnceLock<
        RwLock<HashMap<u32, &'static zstd::dict::DecoderDictionary<'static>>>,
    > = OnceLock::new();
    DECODERS.get_or_init(|| {
        let mut map = HashMap::new();
        map.insert(dictionary_id(BUILTIN), leak(BUILTIN));
        RwLock::new(map)
    })
}

fn leak(dictionary: &[u8]) -> &'static zstd::dict::DecoderDictionary<'static> {
    Box::leak(Box::new(zstd::dict::DecoderDictionary::copy(dictionary)))
}

fn dictionary_id(dictionary: &[u8]) -> u32 {
    zstd::zstd_safe::get_dict_id_from_dict(dictionary).map_or(0, |id| id.get())
}

/// Records this build's dictionary in the database and learns every dictionary the database
/// holds, so that bodies written by earlier or later builds stay readable. Runs on open.
pub fn register(conn: &Connection) -> Result<(), StoreError> {
    let failed = |err: rusqlite::Error| {
        StoreError::Unavailable(format!(
            "cannot read or record compression dictionaries: {err}"
        ))
    };
    conn.execute(
        "INSERT INTO dictionaries (id, data) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
        params![i64::from(dictionary_id(BUILTIN)), BUILTIN],
    )
    .map_err(failed)?;
    learn(conn)
}

/// Learns every dictionary the database holds, writing nothing: enough to read its bodies.
pub fn learn(conn: &Connection) -> Result<(), StoreError> {
    // Only a lock is a passing trouble: a body that needs the dictionary is read again later.
    // Anything else (damage, an I/O error of a bad sector) would fail the same way every time,
    // and such a body is told unreadable rather than stall whatever reads it.
    let failed = |err: rusqlite::Error| {
        let message = format!("cannot read the compression dictionaries: {err}");
        if matches!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        ) {
            StoreError::Unavailable(message)
        } else if super::row_damaged(&err) {
            StoreError::Damaged(message)
        } else {
            StoreError::Internal(message)
        }
    };
    let mut statement = conn
        .prepare("SELECT id, data FROM dictionaries")
        .map_err(failed)?;
    let rows = statement
        .query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .map_err(failed)?;
    for row in rows {
        let (id, data) = row.map_err(failed)?;
        let Ok(id) = u32::try_from(id) else { continue };
        let known = decoders()
            .read()
            .map(|map| map.contains_key(&id))
            .unwrap_or(true);
        if !known {
            if let Ok(mut map) = decoders().write() {
                map.entry(id).or_insert_with(|| leak(&data));
            }
        }
    }
    Ok(())
}

thread_local! {
    // Creating a zstd context allocates and clears far more memory than compressing one event:
    // each thread keeps one, bound to the dictionary.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSORS: RefCell<HashMap<u32, zstd::bulk::Decompressor<'static>>> =
        RefCell::new(HashMap::new());
}

/// Encodes a body for storage: compressed when that makes it smaller.
pub fn encode(raw: &Bytes) -> (i64, Bytes) {
    if raw.len() >= MIN_SIZE {
        let compressed = COMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = zstd::bulk::Compressor::with_prepared_dictionary(encoder()).ok();
            }
            slot.as_mut()?.compress(raw).ok()
        });
        if let Some(compressed) = compressed {
            if compressed.len() < raw.len() {
                return (ZSTD_DICTIONARY, Bytes::from(compressed));
            }
        }
    }
    (IDENTITY, raw.clone())
}

/// Decodes the stored body of event `id`: as [`decode`], failing as
/// [`StoreError::Unreadable`], which names the event.
pub fn decode_event(
    conn: &Connection,
    id: i64,
    codec: i64,
    stored: Vec<u8>,
    size: i64,
) -> Result<Bytes, StoreError> {
    decode(conn, codec, stored, size).map_err(|err| match err {
        // The dictionaries could not be read just now: not this body's fault.
        StoreError::Unavailable(_) => err,
        StoreError::Internal(reason) => StoreError::Unreadable { id, reason },
        other => StoreError::Unreadable {
            id,
            reason: other.to_string(),
        },
    })
}

/// The largest body a store holds (the largest `ingest.max_body` a server takes): a recorded
/// length past it is damage, and decompressing into room for it could take all the memory.
const LARGEST_BODY: usize = 1 << 30;

/// Decodes a stored body read through `conn`; `size` is the original length recorded with it,
/// which the decoded body must have: a body that reads back otherwise (a damaged row) is an
/// error, never passed on as the document that arrived.
pub fn decode(
    conn: &Connection,
    codec: i64,
    stored: Vec<u8>,
    size: i64,
) -> Result<Bytes, StoreError> {
    let expected = usize::try_from(size).map_err(|_| {
        StoreError::Internal(format!("its recorded length ({size}) is not a length"))
    })?;
    if expected > LARGEST_BODY {
        return Err(StoreError::Internal(format!(
            "its recorded length ({size}) is past the largest body a store holds (1 GiB)"
        )));
    }
    let body = decode_within(conn, codec, stored, expected)?;
    if body.len() != expected {
        return Err(StoreError::Internal(format!(
            "its body reads back as {} bytes, {expected} arrived",
            body.len()
        )));
    }
    Ok(body)
}

/// Whether this process has the dictionary a zstd frame names.
#[cfg(test)]
fn knows_dictionary_of(frame: &[u8]) -> bool {
    let id = zstd::zstd_safe::get_dict_id_from_frame(frame).map_or(0, |id| id.get());
    decoders().read().map_or(true, |map| map.contains_key(&id))
}

/// Decodes a stored body of at most `size` bytes.
fn decode_within(
    conn: &Connection,
    codec: i64,
    stored: Vec<u8>,
    size: usize,
) -> Result<Bytes, StoreError> {
    let broken = |err: std::io::Error| {
        StoreError::Internal(format!("a stored body cannot be decompressed: {err}"))
    };
    match codec {
        IDENTITY => Ok(Bytes::from(stored)),
        ZSTD => zstd::bulk::decompress(&stored, size.max(1))
            .map(Bytes::from)
            .map_err(broken),
        ZSTD_DICTIONARY => {
            let id = zstd::zstd_safe::get_dict_id_from_frame(&stored).map_or(0, |id| id.get());
            let known = || decoders().read().ok()?.get(&id).copied();
            let dictionary = match known() {
                Some(dictionary) => Some(dictionary),
                None => {
                    // Another process on the same database (a later build's `provtrail ingest`
                    // beside this server) may have added it since this one opened it. A read
                    // that fails (busy, an I/O error) is said as such: the body is not
                    // unreadable for good, and whoever reads it tries again.
                    learn(conn)?;
                    known()
                }
            }
            .ok_or_else(|| {
                StoreError::Internal(format!(
                    "a stored body was compressed with dictionary {id}, which neither this \
                         build nor the database has"
                ))
            })?;
            DECOMPRESSORS
                .with(|cell| {
                    let mut map = cell.borrow_mut();
                    let decompressor = match map.entry(id) {
                        std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                        std::collections::hash_map::Entry::Vacant(entry) => entry.insert(
                            zstd::bulk::Decompressor::with_prepared_dictionary(dictionary)?,
                        ),
                    };
                    decompressor.decompress(&stored, size.max(1))
                })
                .map(Bytes::from)
                .map_err(broken)
        }
        other => Err(StoreError::Internal(format!(
            "a stored body has an unknown codec {other}; use a newer provtrail"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection to a database with a `dictionaries` table, this build's registered.
    fn database() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE dictionaries (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
        )
        .unwrap();
        register(&conn).unwrap();
        conn
    }

    #[test]
    fn bodies_round_trip_through_every_codec() {
        let conn = database();
        for body in [&b"{}"[..], &[b'x'; 4096][..], "é".repeat(300).as_bytes()] {
            let raw = Bytes::copy_from_slice(body);
            let (codec, stored) = encode(&raw);
            assert_eq!(
                decode(&conn, codec, stored.to_vec(), raw.len() as i64).unwrap(),
                raw
            );
        }
        let plain = zstd::bulk::compress(b"plain zstd frame", 3).unwrap();
        assert_eq!(
            decode(&conn, ZSTD, plain, 16).unwrap(),
            Bytes::from_static(b"plain zstd frame")
        );
    }

    #[test]
    fn an_event_shrinks_to_well_under_half_with_the_dictionary() {
        let raw = Bytes::from(
            crate::synth::Generator::new(&crate::synth::SynthOptions::default()).next_json(),
        );
        let (codec, stored) = encode(&raw);
        assert_eq!(codec, ZSTD_DICTIONARY);
        assert!(
            stored.len() * 2 < raw.len(),
            "{} of {}",
            stored.len(),
            raw.len()
        );
    }

    #[test]
    fn corrupt_bodies_are_errors_not_panics() {
        let conn = database();
        assert!(decode(&conn, ZSTD_DICTIONARY, vec![1, 2, 3], 10).is_err());
        assert!(decode(&conn, ZSTD, vec![1, 2, 3], 10).is_err());
        assert!(decode(&conn, 99, vec![], 0).is_err());
    }

    #[test]
    fn a_dictionary_added_to_the_database_after_it_was_opened_is_learned_when_a_body_needs_it() {
        let conn = database();
        // What a later build with a dictionary of its own leaves in a database this process
        // has open: its dictionary, and bodies compressed with it.
        let samples: Vec<Vec<u8>> = (0..400)
            .map(|n| {
                format!(
                    r#"{{"later":"build","serial":{n},"name":"identity {n}","items":[{n},{}]}}"#,
                    n * 7
                )
                .into_bytes()
            })
            .collect();
        let later = zstd::dict::from_samples(&samples, 2_048).unwrap();
        let id = dictionary_id(&later);
        assert_ne!(id, dictionary_id(BUILTIN));
        let body = br#"{"later":"build","serial":123456,"name":"identity 123456","items":[1,2]}"#;
        let stored = zstd::bulk::Compressor::with_dictionary(3, &later)
            .unwrap()
            .compress(body)
            .unwrap();
        assert!(!knows_dictionary_of(&stored));
        conn.execute(
            "INSERT INTO dictionaries (id, data) VALUES (?1, ?2)",
            params![i64::from(id), later],
        )
        .unwrap();
        let read = decode(&conn, ZSTD_DICTIONARY, stored, body.len() as i64).unwrap();
        assert_eq!(&read[..], &body[..]);
    }

    #[test]
    fn a_dictionary_that_cannot_be_read_just_now_is_not_taken_for_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let reader = Connection::open(&path).unwrap();
        reader.busy_timeout(std::time::Duration::ZERO).unwrap();
        reader
            .execute_batch("CREATE TABLE dictionaries (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
            .unwrap();
        let samples: Vec<Vec<u8>> = (0..400)
            .map(|n| format!(r#"{{"busy":"writer","row":{n},"who":"person {n}"}}"#).into_bytes())
            .collect();
        let dictionary = zstd::dict::from_samples(&samples, 2_048).unwrap();
        let body = br#"{"busy":"writer","row":98765,"who":"person 98765"}"#;
        let stored = zstd::bulk::Compressor::with_dictionary(3, &dictionary)
            .unwrap()
            .compress(body)
            .unwrap();
        assert!(!knows_dictionary_of(&stored));
        // Another process adds the dictionary and still holds the database when the body is
        // read: the body is not unreadable (which would fail its deliveries for good), only not
        // readable yet.
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
        writer
            .execute(
                "INSERT INTO dictionaries (id, data) VALUES (?1, ?2)",
                params![i64::from(dictionary_id(&dictionary)), dictionary],
            )
            .unwrap();
        let len = body.len() as i64;
        let err = decode_event(&reader, 7, ZSTD_DICTIONARY, stored.clone(), len).unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        writer.execute_batch("COMMIT").unwrap();
        let read = decode_event(&reader, 7, ZSTD_DICTIONARY, stored, len).unwrap();
        assert_eq!(&read[..], &body[..]);
    }
}
