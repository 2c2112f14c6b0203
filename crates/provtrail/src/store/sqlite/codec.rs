//! How raw bodies are kept on disk. Bodies are stored compressed when that saves space; the codec
//! is recorded per row so that old rows stay readable when the choice changes.

use std::cell::RefCell;

use bytes::Bytes;

use crate::store::StoreError;

/// Stored as received.
pub const IDENTITY: i64 = 0;
/// zstd frame.
pub const ZSTD: i64 = 1;

/// Compression level: fast enough to run on every request, most of the gain of higher levels on
/// small JSON documents.
const LEVEL: i32 = 3;

/// Bodies smaller than this are not worth a compression attempt.
const MIN_SIZE: usize = 128;

thread_local! {
    // Creating a zstd context allocates and clears several hundred kilobytes: far more than
    // compressing a 1 KB event. Each thread keeps one.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// Encodes a body for storage: compressed when that makes it smaller.
pub fn encode(raw: &Bytes) -> (i64, Bytes) {
    if raw.len() >= MIN_SIZE {
        let compressed = COMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = zstd::bulk::Compressor::new(LEVEL).ok();
            }
            slot.as_mut()?.compress(raw).ok()
        });
        if let Some(compressed) = compressed {
            if compressed.len() < raw.len() {
                return (ZSTD, Bytes::from(compressed));
            }
        }
    }
    (IDENTITY, raw.clone())
}

/// Decodes a stored body; `size` is the original length recorded with it.
pub fn decode(codec: i64, stored: Vec<u8>, size: usize) -> Result<Bytes, StoreError> {
    match codec {
        IDENTITY => Ok(Bytes::from(stored)),
        ZSTD => zstd::bulk::decompress(&stored, size.max(1))
            .map(Bytes::from)
            .map_err(|err| {
                StoreError::Internal(format!("a stored body cannot be decompressed: {err}"))
            }),
        other => Err(StoreError::Internal(format!(
            "a stored body has an unknown codec {other}; use a newer provtrail"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_through_every_codec() {
        for body in [&b"{}"[..], &[b'x'; 4096][..], "é".repeat(300).as_bytes()] {
            let raw = Bytes::copy_from_slice(body);
            let (codec, stored) = encode(&raw);
            assert_eq!(decode(codec, stored.to_vec(), raw.len()).unwrap(), raw);
        }
    }

    #[test]
    fn repetitive_bodies_are_compressed() {
        let raw = Bytes::from(vec![b'a'; 10_000]);
        let (codec, stored) = encode(&raw);
        assert_eq!(codec, ZSTD);
        assert!(stored.len() < 100);
    }
}
