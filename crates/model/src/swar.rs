//! Many-bytes-at-a-time byte tests. This is what makes string scanning and whitespace skipping
//! cheap.
//!
//! The string scan tests sixteen bytes at a time. On x86-64 it uses SSE2 (part of every x86-64)
//! through `safe_arch`, whose safe wrappers let this crate keep `unsafe` forbidden: three byte
//! compares, one move mask, one trailing-zero count. Elsewhere the same test is written byte by
//! byte in a form that the compiler turns into vector compares. The rest
//! loads eight bytes as one little-endian `u64` and tests them together ("SIMD within a
//! register"): the tests use the classic "has a zero byte" trick, `(x - 0x01…01) & !x & 0x80…80`.
//! It can flag bytes *above* a true match (a borrow runs upwards), but never below the first
//! one, so the lowest flagged byte is always exact, which is all a search needs.

/// `0x0101…01`: one in every byte.
const ONES: u64 = u64::from_le_bytes([0x01; 8]);
/// `0x8080…80`: the high bit of every byte.
const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
/// Eight spaces.
pub(crate) const SPACES: u64 = u64::from_le_bytes([b' '; 8]);

/// The eight bytes at `at` as a little-endian word, if there are eight.
#[inline(always)]
pub(crate) fn load(bytes: &[u8], at: usize) -> Option<u64> {
    let chunk = bytes.get(at..)?.first_chunk::<8>()?;
    Some(u64::from_le_bytes(*chunk))
}

/// High bit set in (at least) the lowest byte of `word` that equals `byte`.
#[inline(always)]
fn equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// High bit set in (at least) the lowest byte of `word` that is below `limit` (`limit <= 0x80`).
#[inline(always)]
fn below(word: u64, limit: u8) -> u64 {
    word.wrapping_sub(ONES * u64::from(limit)) & !word & HIGHS
}

/// True for the bytes that end a run of plain JSON string content: the closing quote, a backslash
/// that starts an escape, and the control characters that JSON forbids raw in strings. serde_json
/// escapes exactly these bytes when it writes, so the same test also tells the writer when a
/// string can be copied as it is.
#[inline(always)]
pub(crate) fn is_string_special(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || byte < 0x20
}

/// Index of the first byte at or after `at` for which [`is_string_special`] holds, or
/// `bytes.len()` when there is none.
///
/// Sixteen bytes per step ([`special_mask`]): most strings in an event are shorter, so the loop
/// usually ends on its first step, which keeps its exit branch predictable. Not inlined: the result
/// comes back in a register, and the loop is not copied into every caller.
#[inline(never)]
pub(crate) fn string_special(bytes: &[u8], mut at: usize) -> usize {
    while let Some(chunk) = bytes.get(at..).and_then(<[u8]>::first_chunk::<16>) {
        let mask = special_mask(chunk);
        if mask != 0 {
            return at + mask.trailing_zeros() as usize;
        }
        at += 16;
    }
    // Fewer than sixteen bytes left.
    if let Some(word) = load(bytes, at) {
        let found = equal(word, b'"') | equal(word, b'\\') | below(word, 0x20);
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&byte) = bytes.get(at) {
        if is_string_special(byte) {
            return at;
        }
        at += 1;
    }
    at
}

/// True when one of the 32 bytes of `run` is special ([`is_string_special`]): a test of the whole
/// run at once, for a string whose length is guessed rather than found.
#[inline(always)]
pub(crate) fn has_special(run: &[u8; 32]) -> bool {
    let (low, high) = run.split_at(16);
    let low = low.first_chunk::<16>().map_or(1, special_mask);
    let high = high.first_chunk::<16>().map_or(1, special_mask);
    low | high != 0
}

/// Bit `i` set when byte `i` of `chunk` is special ([`is_string_special`]).
///
/// SSE2: bytes below 0x20 are those whose unsigned minimum with 0x1f is themselves.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn special_mask(chunk: &[u8; 16]) -> u32 {
    use safe_arch::{
        cmp_eq_mask_i8_m128i, load_unaligned_m128i, min_u8_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i,
    };
    let bytes = load_unaligned_m128i(chunk);
    let control = cmp_eq_mask_i8_m128i(min_u8_m128i(bytes, set_splat_i8_m128i(0x1f)), bytes);
    let quote = cmp_eq_mask_i8_m128i(bytes, set_splat_i8_m128i(b'"' as i8));
    let backslash = cmp_eq_mask_i8_m128i(bytes, set_splat_i8_m128i(b'\\' as i8));
    move_mask_i8_m128i(control | quote | backslash) as u32
}

/// Bit `i` set when byte `i` of `chunk` is special ([`is_string_special`]): the portable form.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn special_mask(chunk: &[u8; 16]) -> u32 {
    let lanes = special_lanes(chunk);
    if !any(&lanes) {
        return 0;
    }
    let mut mask = 0;
    for (i, lane) in lanes.iter().enumerate() {
        mask |= u32::from(*lane & 1) << i;
    }
    mask
}

/// `0xff` in each byte of the result whose byte of `chunk` is special ([`is_string_special`]), 0
/// in the others. Written byte by byte, with no data-dependent branch, so that the compiler turns
/// it into three vector compares of all sixteen bytes at once (SSE2, part of every x86-64): a
/// quarter of the instructions of the same test on a `u128` in two general registers.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn special_lanes(chunk: &[u8; 16]) -> [u8; 16] {
    let mut lanes = [0u8; 16];
    // Indexes, not iterators: the compiler vectorizes this form, and not the zipped one.
    #[allow(clippy::needless_range_loop)]
    for i in 0..16 {
        let byte = chunk[i];
        lanes[i] = u8::from((byte == b'"') | (byte == b'\\') | (byte < 0x20)).wrapping_neg();
    }
    lanes
}

/// True when a byte of `lanes` is not 0. An OR of all of them, which the compiler turns into one
/// vector move mask; testing the lanes as a `u128` instead goes through memory.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn any(lanes: &[u8; 16]) -> bool {
    let mut any = 0;
    #[allow(clippy::needless_range_loop)]
    for i in 0..16 {
        any |= lanes[i];
    }
    any != 0
}

/// Number of spaces at the start of the eight bytes at `at` (8 when all are spaces), or `None`
/// when fewer than eight bytes are left.
#[inline(always)]
pub(crate) fn leading_spaces(bytes: &[u8], at: usize) -> Option<usize> {
    let other = load(bytes, at)? ^ SPACES;
    Some((other.trailing_zeros() / 8) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(bytes: &[u8], at: usize) -> usize {
        (at..bytes.len())
            .find(|&i| is_string_special(bytes[i]))
            .unwrap_or(bytes.len())
    }

    #[test]
    fn string_special_finds_the_first_special_byte_at_every_offset() {
        let mut text = Vec::new();
        for i in 0..300u32 {
            text.push((i.wrapping_mul(37) % 256) as u8);
        }
        for at in 0..=text.len() {
            assert_eq!(string_special(&text, at), naive(&text, at), "at {at}");
        }
        // A borrow from a special byte must not hide an earlier one, nor invent one.
        for special in [b'"', b'\\', 0x00, 0x1f] {
            for position in 0..16 {
                let mut bytes = vec![b'a'; 16];
                bytes[position] = special;
                if position + 1 < 16 {
                    bytes[position + 1] = 0x01;
                }
                assert_eq!(string_special(&bytes, 0), position);
            }
        }
        let high = [0x80u8, 0xff, 0xc3, 0xa9, 0x7f, b' ', b'!', b'#', b'"'];
        assert_eq!(string_special(&high, 0), 8);
        assert_eq!(string_special(b"", 0), 0);
        assert_eq!(string_special(b"abc", 3), 3);
    }

    #[test]
    fn has_special_sees_every_byte_of_the_run() {
        assert!(!has_special(&[b'a'; 32]));
        for special in [b'"', b'\\', 0x00, 0x1f] {
            for position in 0..32 {
                let mut run = [b'a'; 32];
                run[position] = special;
                assert!(has_special(&run), "{special:#x} at {position}");
            }
        }
        // Neither high bytes nor the first printable ones are special.
        let mut run = [0x80u8; 32];
        run[..4].copy_from_slice(&[0xff, 0x20, 0x7f, b'!']);
        assert!(!has_special(&run));
    }

    #[test]
    fn leading_spaces_counts_up_to_eight() {
        assert_eq!(leading_spaces(b"        x", 0), Some(8));
        assert_eq!(leading_spaces(b"   x     ", 0), Some(3));
        assert_eq!(leading_spaces(b"x        ", 0), Some(0));
        assert_eq!(leading_spaces(b"  ", 0), None);
    }
}
