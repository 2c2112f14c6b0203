//! Decimal numbers with Java `BigDecimal` semantics.
//!
//! Jayway compares numbers by turning each one into text with Java's `toString` and parsing that
//! with `new BigDecimal(text)`; equality and ordering are `compareTo` on those decimals, and a
//! number compared with a string is turned back into text with `BigDecimal.toString`. [`Dec`]
//! reproduces this exactly for numbers held as `i64`, `u64` and `f64` (whose Java text is
//! `Double.toString`, i.e. the shortest round-tripping digits laid out in Java's style) and for
//! number literals of any length, without heap allocation for document numbers.

use std::cmp::Ordering;
use std::fmt::Write as _;

const INLINE: usize = 40;

#[derive(Clone)]
enum Digits {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Digits {
    fn from_slice(d: &[u8]) -> Self {
        if d.len() <= INLINE {
            let mut buf = [b'0'; INLINE];
            buf[..d.len()].copy_from_slice(d);
            Digits::Inline {
                len: d.len() as u8,
                buf,
            }
        } else {
            Digits::Heap(d.into())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Digits::Inline { len, buf } => &buf[..*len as usize],
            Digits::Heap(b) => b,
        }
    }
}

/// A decimal `unscaled × 10^-scale`, as Java's `BigDecimal`.
#[derive(Clone)]
pub(crate) struct Dec {
    neg: bool,
    /// ASCII digits of |unscaled|, without leading zeros ("0" for zero).
    digits: Digits,
    scale: i64,
}

impl std::fmt::Debug for Dec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_java_string())
    }
}

fn strip_leading_zeros(d: &[u8]) -> &[u8] {
    let first = d
        .iter()
        .position(|c| *c != b'0')
        .unwrap_or(d.len().saturating_sub(1));
    d.get(first..).unwrap_or(b"0")
}

/// A small stack buffer for formatting numbers without allocating.
struct StackBuf {
    buf: [u8; 64],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let b = s.as_bytes();
        let end = self.len + b.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(b);
        self.len = end;
        Ok(())
    }
}

impl Dec {
    fn make(neg: bool, digits: &[u8], scale: i64) -> Dec {
        let d = strip_leading_zeros(digits);
        let d = if d.is_empty() { b"0".as_slice() } else { d };
        Dec {
            neg,
            digits: Digits::from_slice(d),
            scale,
        }
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.digits.as_slice().iter().all(|c| *c == b'0')
    }

    pub(crate) fn from_i64(v: i64) -> Dec {
        let mut b = StackBuf {
            buf: [0; 64],
            len: 0,
        };
        let _ = write!(b, "{}", v.unsigned_abs());
        Dec::make(v < 0, &b.buf[..b.len], 0)
    }

    pub(crate) fn from_u64(v: u64) -> Dec {
        let mut b = StackBuf {
            buf: [0; 64],
            len: 0,
        };
        let _ = write!(b, "{v}");
        Dec::make(false, &b.buf[..b.len], 0)
    }

    /// The decimal of Java's `Double.toString(v)` (shortest digits; plain notation between 10^-3
    /// and 10^7, scientific with at least one fraction digit elsewhere).
    pub(crate) fn from_f64(v: f64) -> Dec {
        let mut b = StackBuf {
            buf: [0; 64],
            len: 0,
        };
        if write!(b, "{:e}", v.abs()).is_err() || !v.is_finite() {
            return Dec::make(false, b"0", 0);
        }
        let s = &b.buf[..b.len];
        let epos = s.iter().position(|c| *c == b'e').unwrap_or(s.len());
        let mant = &s[..epos];
        let exp: i64 = std::str::from_utf8(s.get(epos + 1..).unwrap_or(b"0"))
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let mut digits = [0u8; 64];
        let mut n = 0;
        for c in mant.iter().filter(|c| c.is_ascii_digit()) {
            digits[n] = *c;
            n += 1;
        }
        let n = n.max(1);
        let neg = v.is_sign_negative();
        let a = v.abs();
        let n_i = n as i64;
        if a == 0.0 {
            return Dec::make(neg, b"0", 1);
        }
        if (1e-3..1e7).contains(&a) {
            let zeros = (exp - n_i + 2).max(0) as usize;
            let scale = (n_i - 1 - exp).max(1);
            let mut buf = [b'0'; 64];
            buf[..n].copy_from_slice(&digits[..n]);
            let total = (n + zeros).min(64);
            Dec::make(neg, &buf[..total], scale)
        } else {
            let frac = (n_i - 1).max(1);
            let mut buf = [b'0'; 64];
            buf[..n].copy_from_slice(&digits[..n]);
            let total = if n == 1 { 2 } else { n };
            Dec::make(neg, &buf[..total], frac - exp)
        }
    }

    /// The decimal Jayway makes of a document number (`new BigDecimal(number.toString())`),
    /// or `None` where json-smart reads the number as an infinite
    /// `Double` (a text of at most 18 characters past the double range, such as `1e400`) and
    /// Jayway's `new BigDecimal("Infinity")` throws. json-smart reads a longer text as a
    /// `BigDecimal`, which has no range to leave.
    pub(crate) fn from_document_number(n: &serde_json::Number) -> Option<Dec> {
        // Each number read once: this runs for every number a filter compares.
        if let Some(i) = n.as_i64() {
            return Some(Dec::from_i64(i));
        }
        if let Some(u) = n.as_u64() {
            return Some(Dec::from_u64(u));
        }
        if let Some(big) = big_integer(n) {
            return Some(big);
        }
        match n.as_f64() {
            Some(v) => Some(Dec::from_f64(v)),
            None => match past_double_range(n) {
                Some(PastRange::Decimal(dec)) => Some(dec),
                Some(PastRange::Double(_)) | None => None,
            },
        }
    }

    /// `new BigDecimal(text)`; `None` where Java throws `NumberFormatException`.
    pub(crate) fn parse_java(text: &str) -> Option<Dec> {
        let b = text.as_bytes();
        let mut i = 0;
        let mut neg = false;
        if let Some(c) = b.first() {
            if *c == b'-' || *c == b'+' {
                neg = *c == b'-';
                i = 1;
            }
        }
        let mut digits: Vec<u8> = Vec::new();
        let mut scale: i64 = 0;
        let mut seen_point = false;
        let mut any = false;
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_digit() {
                digits.push(c);
                any = true;
                if seen_point {
                    scale += 1;
                }
            } else if c == b'.' && !seen_point {
                seen_point = true;
            } else {
                break;
            }
            i += 1;
        }
        if !any {
            return None;
        }
        if i < b.len() {
            if b[i] != b'e' && b[i] != b'E' {
                return None;
            }
            let exp_text = std::str::from_utf8(&b[i + 1..]).ok()?;
            let eb = exp_text.as_bytes();
            let body = match eb.first() {
                Some(b'+') | Some(b'-') => &eb[1..],
                _ => eb,
            };
            if body.is_empty() || !body.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let exp: i64 = exp_text.parse::<i32>().ok()?.into();
            scale -= exp;
            if scale > i64::from(i32::MAX) || scale < i64::from(i32::MIN) {
                return None;
            }
        }
        Some(Dec::make(neg, &digits, scale))
    }

    fn adjusted(&self) -> i64 {
        self.digits.as_slice().len() as i64 - 1 - self.scale
    }

    fn signum(&self) -> i32 {
        if self.is_zero() {
            0
        } else if self.neg {
            -1
        } else {
            1
        }
    }

    /// `BigDecimal.compareTo`: by value, ignoring scale.
    pub(crate) fn compare(&self, other: &Dec) -> Ordering {
        let (sa, sb) = (self.signum(), other.signum());
        if sa != sb {
            return sa.cmp(&sb);
        }
        if sa == 0 {
            return Ordering::Equal;
        }
        let mag = self.compare_magnitude(other);
        if sa < 0 { mag.reverse() } else { mag }
    }

    fn compare_magnitude(&self, other: &Dec) -> Ordering {
        match self.adjusted().cmp(&other.adjusted()) {
            Ordering::Equal => {}
            o => return o,
        }
        let a = self.digits.as_slice();
        let b = other.digits.as_slice();
        let n = a.len().max(b.len());
        for i in 0..n {
            let x = a.get(i).copied().unwrap_or(b'0');
            let y = b.get(i).copied().unwrap_or(b'0');
            match x.cmp(&y) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        Ordering::Equal
    }

    /// `BigDecimal.intValue()`: the integer part, truncated to its low 32 bits.
    pub(crate) fn int_value(&self) -> i32 {
        let d = self.digits.as_slice();
        let int_len = d.len() as i64 - self.scale;
        if int_len <= 0 {
            return 0;
        }
        let mut acc: u32 = 0;
        let written = (int_len as usize).min(d.len());
        for c in &d[..written] {
            acc = acc.wrapping_mul(10).wrapping_add(u32::from(c - b'0'));
        }
        // Zeros past the digits (`1E+2000000000`): 10^32 is a multiple of 2^32, so more than 32
        // of them leave nothing in the low 32 bits, and are not multiplied in one by one.
        let zeros = (int_len - written as i64).min(32);
        for _ in 0..zeros {
            acc = acc.wrapping_mul(10);
        }
        let v = acc as i32;
        if self.neg { v.wrapping_neg() } else { v }
    }

    /// `BigDecimal.toString()`.
    pub(crate) fn to_java_string(&self) -> String {
        let coeff = std::str::from_utf8(self.digits.as_slice()).unwrap_or("0");
        let mut out = String::new();
        if self.neg && !self.is_zero() {
            out.push('-');
        }
        let len = coeff.len() as i64;
        let adjusted = -self.scale + (len - 1);
        if self.scale >= 0 && adjusted >= -6 {
            if self.scale == 0 {
                out.push_str(coeff);
            } else if len > self.scale {
                let p = (len - self.scale) as usize;
                out.push_str(&coeff[..p]);
                out.push('.');
                out.push_str(&coeff[p..]);
            } else {
                out.push_str("0.");
                for _ in 0..(self.scale - len) {
                    out.push('0');
                }
                out.push_str(coeff);
            }
        } else {
            out.push_str(&coeff[..1]);
            if len > 1 {
                out.push('.');
                out.push_str(&coeff[1..]);
            }
            if adjusted != 0 {
                out.push('E');
                if adjusted > 0 {
                    out.push('+');
                }
                let _ = write!(out, "{adjusted}");
            }
        }
        out
    }
}

/// Java's `Double.toString`.
pub(crate) fn java_double_string(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let a = v.abs();
    let sign = if v.is_sign_negative() { "-" } else { "" };
    if a == 0.0 {
        return format!("{sign}0.0");
    }
    if (1e-3..1e7).contains(&a) {
        let s = format!("{a}");
        if s.contains('.') {
            format!("{sign}{s}")
        } else {
            format!("{sign}{s}.0")
        }
    } else {
        let s = format!("{a:e}");
        let (m, e) = s.split_once('e').unwrap_or((s.as_str(), "0"));
        let m = if m.contains('.') {
            m.to_string()
        } else {
            format!("{m}.0")
        };
        format!("{sign}{m}E{e}")
    }
}

/// Whether a document number is an integer literal beyond 64 bits, which json-smart reads as a
/// `BigInteger` (exactly) rather than a double. serde_json keeps a literal's text when
/// `arbitrary_precision` is on (the event model turns it on); without it, such a number is
/// already a double and this is false.
pub(crate) fn is_big_integer(n: &serde_json::Number) -> bool {
    n.as_i64().is_none()
        && n.as_u64().is_none()
        && !n
            .to_string()
            .bytes()
            .any(|b| matches!(b, b'.' | b'e' | b'E'))
}

/// A document float past the double range (serde_json keeps its text with
/// `arbitrary_precision`, and has no `f64` for it), as json-smart reads it.
pub(crate) enum PastRange {
    /// At most 18 characters: a `Double`, infinite.
    Double(f64),
    /// Longer: a `BigDecimal`, exact.
    Decimal(Dec),
}

pub(crate) fn past_double_range(n: &serde_json::Number) -> Option<PastRange> {
    if n.as_f64().is_some() || is_big_integer(n) {
        return None;
    }
    let text = n.to_string();
    if text.len() > 18 {
        return Dec::parse_java(&text).map(PastRange::Decimal);
    }
    Some(PastRange::Double(if text.starts_with('-') {
        f64::NEG_INFINITY
    } else {
        f64::INFINITY
    }))
}

/// Java's `Number.doubleValue()` of a document number: infinite past the double range (for a
/// `BigDecimal` or `BigInteger` too), where serde_json gives no `f64`.
pub(crate) fn java_double_value(n: &serde_json::Number) -> f64 {
    n.as_f64()
        .or_else(|| n.to_string().parse().ok())
        .unwrap_or(0.0)
}

/// A [`is_big_integer`] number, exactly.
fn big_integer(n: &serde_json::Number) -> Option<Dec> {
    if is_big_integer(n) {
        Dec::parse_java(&n.to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Dec {
        Dec::parse_java(s).unwrap()
    }

    #[test]
    fn int_value_takes_the_low_32_bits_also_of_a_huge_exponent_at_once() {
        assert_eq!(d("123.9").int_value(), 123);
        assert_eq!(d("-7").int_value(), -7);
        assert_eq!(d("1e3").int_value(), 1000);
        // 10^10 mod 2^32.
        assert_eq!(d("1e10").int_value(), 1_410_065_408);
        assert_eq!(d("1e31").int_value(), i32::MIN);
        assert_eq!(d("1e32").int_value(), 0);
        assert_eq!(d("1e2000000000").int_value(), 0);
        assert_eq!(d("0.5").int_value(), 0);
    }

    #[test]
    fn big_decimal_text_round_trips_like_java() {
        assert_eq!(d("1.50").to_java_string(), "1.50");
        assert_eq!(d("1e3").to_java_string(), "1E+3");
        assert_eq!(d("-0.0").to_java_string(), "0.0");
        assert_eq!(d("0.0000001").to_java_string(), "1E-7");
        assert_eq!(d("123.456e-2").to_java_string(), "1.23456");
        assert!(Dec::parse_java("1-2").is_none());
        assert!(Dec::parse_java("").is_none());
        assert!(Dec::parse_java(".").is_none());
        assert!(Dec::parse_java("1e").is_none());
    }

    #[test]
    fn doubles_take_java_double_to_string_layout() {
        assert_eq!(Dec::from_f64(1.0).to_java_string(), "1.0");
        assert_eq!(Dec::from_f64(1e20).to_java_string(), "1.0E+20");
        assert_eq!(Dec::from_f64(0.001).to_java_string(), "0.001");
        assert_eq!(Dec::from_f64(1.5e-7).to_java_string(), "1.5E-7");
        assert_eq!(Dec::from_f64(1234567.0).to_java_string(), "1234567.0");
        assert_eq!(Dec::from_f64(12345678.0).to_java_string(), "12345678");
        assert_eq!(java_double_string(12345678.0), "1.2345678E7");
        assert_eq!(java_double_string(0.5), "0.5");
    }

    #[test]
    fn comparison_is_by_value_not_scale() {
        assert_eq!(d("1.0").compare(&Dec::from_i64(1)), Ordering::Equal);
        assert_eq!(d("-1e-10").compare(&Dec::from_f64(-1e-10)), Ordering::Equal);
        assert_eq!(d("0.1e10").compare(&Dec::from_f64(1e9)), Ordering::Equal);
        assert_eq!(d("-2").compare(&d("-1")), Ordering::Less);
        assert_eq!(d("10").compare(&d("9.99")), Ordering::Greater);
        assert_eq!(d("0").compare(&d("-0.0")), Ordering::Equal);
        assert_eq!(d("2.9").int_value(), 2);
        assert_eq!(d("-2.9").int_value(), -2);
    }
}
