//! Secrets in route settings: `${env:NAME}` and `${file:/path}` references, resolved once at start,
//! and a [`Redactor`] that takes every secret value out of text before it is logged, stored as a
//! delivery error or answered by the API.
//!
//! Why a redactor rather than only careful formatting: errors come from libraries (HTTP client,
//! NATS client, I/O) that may quote a URL, a header or a server's answer; scrubbing the finished
//! text is the one place that cannot be forgotten.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// What replaces a secret in text.
pub const REDACTED: &str = "***";

/// Secret values shorter than this are not scrubbed from text: replacing every `a` or `42` would
/// make messages unreadable, and such values are not secrets worth the name.
const MIN_SECRET_LEN: usize = 4;

/// Why a reference cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// `${env:NAME}` names a variable that is not set (or not UTF-8).
    #[error("the environment variable {0} is not set")]
    MissingEnv(String),
    /// `${file:PATH}` names a file that cannot be read.
    #[error("cannot read the secret file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// `${…}` that is not one of the known forms. The text is not quoted: it may be a literal
    /// secret that happens to hold `${`.
    #[error(
        "a `${{` starts {0}; use ${{env:NAME}} or ${{file:/path}}, or write `$${{` for a literal `${{`"
    )]
    Malformed(&'static str),
    /// A secret that resolves to nothing: an exported but empty variable, an empty file, or
    /// `""` written in the file. Sent as it is, it would only fail at every delivery (an empty
    /// `Bearer`), or not fail at all where a receiver takes no credential for none.
    #[error("{0} is empty")]
    Empty(String),
}

/// Scrubs known secret values from text. Shared by every route; cheap to clone.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<Secret>>>,
}

/// A value to scrub.
struct Secret {
    text: String,
    /// Runs of it cut short are scrubbed too (see [`MIN_PARTIAL_LEN`]); not for values made of
    /// several parts (a URL's whole query), whose parts may be plain words.
    partial: bool,
    /// Where each byte value occurs in `text`: an echo can only start at those offsets.
    offsets: HashMap<u8, Vec<usize>>,
}

// The secrets themselves are never printed.
impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known = self.secrets.read().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("Redactor").field("secrets", &known).finish()
    }
}

/// A run of at least this many bytes of a secret, and at least half of it, is scrubbed too: a
/// receiver that quotes a token back may cut it short ("token abc123… is not valid").
const MIN_PARTIAL_LEN: usize = 8;

/// Most bytes of a text that are scrubbed; the rest is cut off. Texts redacted are messages, the
/// start of receivers' answers (16 KiB at most) and previews of templated bodies (an event is at
/// most 1 MiB); the bound keeps the work bounded whatever a text holds.
const MAX_REDACTED_LEN: usize = 1024 * 1024;

/// Steps of matching one text may take. Text that secrets full of repeated bytes would make
/// costly to check (a receiver's answer built for it) is cut where the budget runs out, rather
/// than shown unchecked.
const MAX_REDACTION_STEPS: usize = 4_000_000;

impl Redactor {
    /// Adds a value to scrub from now on: whole, or a run of it cut short.
    pub fn add(&self, secret: &str) {
        self.insert(secret, true);
    }

    /// Adds a value to scrub only whole (in any escaped form): for a value made of parts that
    /// may be plain words, such as a URL's query (`source=provtrail`), whose secret parts are
    /// added on their own.
    pub fn add_whole(&self, secret: &str) {
        self.insert(secret, false);
    }

    fn insert(&self, secret: &str, partial: bool) {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        // A secret that JSON escapes (a tab, a quote) is sent in a JSON body as its escaped
        // text, and a receiver that echoes that body in JSON of its own escapes it again
        // (`\\t`): the escaped text is a secret of its own, found in every form as the secret
        // is.
        // A receiver may echo what it was sent in JSON of its own more than once over, so the
        // secret is known escaped up to three times.
        let mut text = secret.to_owned();
        for _ in 0..3 {
            let quoted = serde_json::Value::from(text.as_str()).to_string();
            let escaped = &quoted[1..quoted.len() - 1];
            if escaped == text {
                break;
            }
            self.insert_text(escaped, partial);
            text = escaped.to_owned();
        }
        self.insert_text(secret, partial);
    }

    fn insert_text(&self, secret: &str, partial: bool) {
        if let Ok(mut secrets) = self.secrets.write() {
            if let Some(known) = secrets.iter_mut().find(|known| known.text == secret) {
                known.partial |= partial;
                return;
            }
            let mut offsets: HashMap<u8, Vec<usize>> = HashMap::new();
            // By lower-case byte: an echo may change the case of letters (see `echo_lens`).
            for (offset, &byte) in secret.as_bytes().iter().enumerate() {
                offsets
                    .entry(byte.to_ascii_lowercase())
                    .or_default()
                    .push(offset);
            }
            secrets.push(Secret {
                text: secret.to_owned(),
                partial,
                offsets,
            });
        }
    }

    /// `text` with every echo of a known secret replaced by [`REDACTED`]: the whole secret, or
    /// (for most secrets) a run of at least [`MIN_PARTIAL_LEN`] bytes and half of it, each of
    /// its characters written as itself or in any of the escaped forms a receiver may quote it
    /// in (see [`echo_lens`]). Matching the forms character by character, rather than a list of
    /// whole encoded forms, also catches encoders that escape only some characters, and
    /// mixtures. Text past [`MAX_REDACTED_LEN`] bytes is cut off.
    pub fn redact(&self, text: &str) -> String {
        self.redact_cut(text, false)
    }

    /// As [`Redactor::redact`], for `text` that is the beginning of something longer when
    /// `cut_before` (an answer read up to a limit): an echo of a secret's beginning that runs
    /// to the end of what is here (the rest of the secret was cut off) is removed too, however
    /// short.
    pub fn redact_cut(&self, text: &str, cut_before: bool) -> String {
        let whole = text.len();
        let text = &text[..char_floor(text, MAX_REDACTED_LEN)];
        let Ok(secrets) = self.secrets.read() else {
            return text.to_owned();
        };
        let mut spans = Vec::new();
        let mut budget = MAX_REDACTION_STEPS;
        let mut checked = text.len();
        for secret in secrets.iter() {
            checked = checked.min(echoes(&text[..checked], secret, &mut spans, &mut budget));
        }
        spans.retain(|&(_, end)| end <= checked);
        let cut = cut_before || checked < whole;
        let text = &text[..checked];
        if cut {
            for secret in secrets.iter() {
                spans.extend(cut_echo(text, secret, &mut budget));
            }
        }
        if spans.is_empty() {
            return if cut {
                format!("{text}[…]")
            } else {
                text.to_owned()
            };
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for (start, end) in spans {
            if end <= copied {
                continue;
            }
            if start >= copied {
                out.push_str(&text[copied..start]);
                out.push_str(REDACTED);
            }
            copied = end;
        }
        out.push_str(&text[copied..]);
        if cut {
            out.push_str("[…]");
        }
        out
    }
}

/// Adds to `spans` the byte ranges of `text` (on character boundaries) that echo `secret`. At
/// each position only the offsets of the secret whose byte the text can be echoing there are
/// tried, so the work is about the text's length times the few offsets that share a byte. Each
/// step of matching takes one from `budget`; returns how much of the text was checked (all of
/// it, unless the budget ran out).
fn echoes(
    text: &str,
    secret: &Secret,
    spans: &mut Vec<(usize, usize)>,
    budget: &mut usize,
) -> usize {
    let (text_bytes, secret_bytes) = (text.as_bytes(), secret.text.as_bytes());
    let least = if secret.partial {
        MIN_PARTIAL_LEN.max(secret_bytes.len().div_ceil(2))
    } else {
        secret_bytes.len()
    };
    let mut at = 0;
    while at < text_bytes.len() {
        let mut longest = None;
        if text.is_char_boundary(at) {
            for byte in echoed_bytes(text_bytes, at).into_iter().flatten() {
                let Some(offsets) = secret.offsets.get(&byte.to_ascii_lowercase()) else {
                    continue;
                };
                for &offset in offsets {
                    // Past the start, only runs that can still be long enough.
                    if offset > 0 && (!secret.partial || secret_bytes.len() - offset < least) {
                        break;
                    }
                    let Some(left) = budget.checked_sub(1) else {
                        return char_floor(text, at);
                    };
                    *budget = left;
                    let (matched, end) = echo_run(text_bytes, at, &secret_bytes[offset..], budget);
                    if *budget == 0 {
                        // This try may have stopped short: nothing from here on is checked.
                        return char_floor(text, at);
                    }
                    let whole = offset == 0 && matched == secret_bytes.len();
                    if (whole || matched >= least)
                        && text.is_char_boundary(end)
                        && longest.is_none_or(|longest| end > longest)
                    {
                        longest = Some(end);
                    }
                }
            }
        }
        match longest {
            Some(end) => {
                spans.push((at, end));
                at = end;
            }
            None => at += 1,
        }
    }
    text.len()
}

/// Where `text` ends with an echo of the beginning of `secret` (its end cut off), however short.
fn cut_echo(text: &str, secret: &Secret, budget: &mut usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    // The longest escaped form of a byte (`\u00XX`) is six bytes.
    let from = bytes
        .len()
        .saturating_sub(secret.text.len().saturating_mul(6));
    (from..bytes.len())
        .filter(|&at| text.is_char_boundary(at))
        .find(|&at| {
            let (matched, end) = echo_run(bytes, at, secret.text.as_bytes(), budget);
            matched > 0 && end == bytes.len()
        })
        .map(|at| (at, bytes.len()))
}

/// The last character boundary of `text` at or before `at`.
fn char_floor(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The bytes an echo may be writing at `at`: the byte itself, and the one an escape starting
/// there stands for (`%2B`, `\u002b`, `\/`, `&amp;`), or a space for `+`.
fn echoed_bytes(text: &[u8], at: usize) -> [Option<u8>; 2] {
    let Some(rest) = text.get(at..) else {
        return [None, None];
    };
    let Some(&first) = rest.first() else {
        return [None, None];
    };
    let value = match first {
        b'+' => Some(u32::from(b' ')),
        b'%' => rest.get(1..3).and_then(hex_value),
        b'\\' => match rest.get(1) {
            Some(b'u') => rest.get(2..6).and_then(hex_value),
            Some(b'x') => rest.get(2..4).and_then(hex_value),
            Some(&letter) => short_escape(letter).map(u32::from),
            None => None,
        },
        b'&' => html_reference(rest).map(|(value, _)| value),
        _ => None,
    };
    [
        Some(first),
        value.and_then(|value| u8::try_from(value).ok()),
    ]
}

/// Ways an echo may have gone: at most this many at once (two per step when a byte is written
/// in two ways that start alike; more is not met in practice and is cut).
const MAX_ECHO_ENDS: usize = 8;

/// How many leading bytes of `secret` the text at `at` echoes, and where that echo ends (the
/// furthest, when it can end in more than one place). A byte may be written in two ways that
/// start alike (`&` and `&amp;`, `\` and `\\`), so every way is followed, step by step.
fn echo_run(text: &[u8], at: usize, secret: &[u8], budget: &mut usize) -> (usize, usize) {
    let mut ends = [0usize; MAX_ECHO_ENDS];
    let mut count = 1;
    ends[0] = at;
    let mut matched = 0;
    for &byte in secret {
        let Some(left) = budget.checked_sub(count) else {
            break;
        };
        *budget = left;
        let mut next = [0usize; MAX_ECHO_ENDS];
        let mut next_count = 0;
        for &end in &ends[..count] {
            for len in echo_lens(text, end, byte).into_iter().flatten() {
                let candidate = end + len;
                if next_count < MAX_ECHO_ENDS && !next[..next_count].contains(&candidate) {
                    next[next_count] = candidate;
                    next_count += 1;
                }
            }
        }
        if next_count == 0 {
            break;
        }
        (ends, count) = (next, next_count);
        matched += 1;
    }
    (matched, ends[..count].iter().copied().max().unwrap_or(at))
}

/// The lengths `byte` may have written at `at` in `text`: as itself; percent-encoded (either
/// case of hex; a space also as `+`, as forms write it); as a JSON `\u00XX` escape or a
/// backslash escape (`\/`, as PHP writes it, `\"`, `\\`); or as an HTML character reference.
/// A letter matches in either case: a receiver that lower-cases what it quotes back still gives
/// the secret away.
fn echo_lens(text: &[u8], at: usize, byte: u8) -> [Option<usize>; 2] {
    let Some(rest) = text.get(at..) else {
        return [None, None];
    };
    let Some(&first) = rest.first() else {
        return [None, None];
    };
    let is_byte =
        |value: u32| u8::try_from(value).is_ok_and(|value| value.eq_ignore_ascii_case(&byte));
    let literal =
        (first.eq_ignore_ascii_case(&byte) || (byte == b' ' && first == b'+')).then_some(1);
    let escaped = match first {
        b'%' => rest
            .get(1..3)
            .and_then(hex_value)
            .filter(|&value| is_byte(value))
            .map(|_| 3),
        b'\\' => match rest.get(1) {
            Some(b'u') => rest
                .get(2..6)
                .and_then(hex_value)
                .filter(|&value| is_byte(value))
                .map(|_| 6),
            // C, Python and JavaScript write control characters as `\x09`.
            Some(b'x') => rest
                .get(2..4)
                .and_then(hex_value)
                .filter(|&value| is_byte(value))
                .map(|_| 4),
            Some(&letter) => (short_escape(letter) == Some(byte)).then_some(2),
            None => None,
        },
        b'&' => html_reference(rest)
            .filter(|&(value, _)| is_byte(value))
            .map(|(_, len)| len),
        _ => None,
    };
    [literal, escaped]
}

/// The byte a two-character backslash escape stands for: JSON's (`\n`, `\t`, `\"` …) and PHP's
/// `\/`.
fn short_escape(letter: u8) -> Option<u8> {
    Some(match letter {
        b'/' | b'"' | b'\\' => letter,
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        _ => return None,
    })
}

/// The character an HTML reference at the start of `text` stands for (`&amp;`, `&#38;`,
/// `&#x26;` …), and its length.
fn html_reference(text: &[u8]) -> Option<(u32, usize)> {
    // A numeric reference may end without its `;`, which HTML reads all the same (`&#9cd`).
    if text.get(1) == Some(&b'#') {
        let hex = matches!(text.get(2), Some(b'x' | b'X'));
        let start = if hex { 3 } else { 2 };
        let digits = text
            .iter()
            .skip(start)
            .take(8)
            .take_while(|b| {
                if hex {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
            .count();
        if digits == 0 {
            return None;
        }
        let number = &text[start..start + digits];
        let value = if hex {
            hex_value(number)?
        } else {
            std::str::from_utf8(number).ok()?.parse().ok()?
        };
        let end = start + digits;
        return Some((value, end + usize::from(text.get(end) == Some(&b';'))));
    }
    let end = text.iter().take(10).position(|&b| b == b';')?;
    let value = match text.get(1..end)? {
        b"amp" => u32::from(b'&'),
        b"lt" => u32::from(b'<'),
        b"gt" => u32::from(b'>'),
        b"quot" => u32::from(b'"'),
        b"apos" => u32::from(b'\''),
        b"Tab" => u32::from(b'\t'),
        b"NewLine" => u32::from(b'\n'),
        _ => return None,
    };
    Some((value, end + 1))
}

/// The value of hex digits (either case); `None` for anything else or nothing.
fn hex_value(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 6 {
        return None;
    }
    digits.iter().try_fold(0u32, |value, &digit| {
        Some(value * 16 + char::from(digit).to_digit(16)?)
    })
}

/// What an unavailable secret resolves to where [`Secrets::standing_in`] lets it.
pub const STAND_IN: &str = "unset-secret";

/// The stand-ins tried in turn, until the routes compile: a secret that is a whole URL (a Slack
/// webhook's) must stand in as one, a port as a number.
pub const STAND_INS: [&str; 3] = [STAND_IN, "https://unset-secret.invalid/", "1"];

/// Resolves references and remembers every secret it produced.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    redactor: Redactor,
    /// Set for commands that read routes but deliver nothing (`routes list`, `deadletter`,
    /// `replay`): a variable or file that only the server's environment has then resolves to
    /// the stand-in, and why is noted here, instead of failing the command.
    stand_ins: Option<Arc<std::sync::Mutex<Vec<SecretError>>>>,
    /// The stand-in: one of [`STAND_INS`].
    stand_in: &'static str,
}

impl Secrets {
    /// Resolves into the given redactor.
    pub fn new(redactor: Redactor) -> Self {
        Secrets {
            redactor,
            stand_ins: None,
            stand_in: STAND_IN,
        }
    }

    /// Resolves like [`Secrets::new`], except that a variable that is not set or a file that
    /// cannot be read resolves to `stand_in`; [`Secrets::stood_in`] says which.
    pub fn standing_in(redactor: Redactor, stand_in: &'static str) -> Self {
        Secrets {
            redactor,
            stand_ins: Some(Arc::default()),
            stand_in,
        }
    }

    /// The references that resolved to [`STAND_IN`], each once.
    pub fn stood_in(&self) -> Vec<SecretError> {
        self.stand_ins
            .as_ref()
            .and_then(|notes| notes.lock().ok().map(|notes| notes.clone()))
            .unwrap_or_default()
    }

    fn lookup(&self, kind: &str, name: &str) -> Result<String, SecretError> {
        match (lookup(kind, name), &self.stand_ins) {
            (Err(err @ (SecretError::MissingEnv(_) | SecretError::File { .. })), Some(notes)) => {
                if let Ok(mut notes) = notes.lock()
                    && !notes.contains(&err)
                {
                    notes.push(err);
                }
                Ok(self.stand_in.to_owned())
            }
            (outcome, _) => outcome,
        }
    }

    /// The redactor that knows every secret resolved so far.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Resolves the references in a value that is not itself secret (a URL, a subject): the
    /// values of its references are secrets, the text around them is not.
    pub fn resolve(&self, text: &str) -> Result<String, SecretError> {
        resolve_with(text, &|kind, name| {
            let value = self.lookup(kind, name)?;
            self.redactor.add(&value);
            Ok(value)
        })
    }

    /// Resolves like [`Secrets::resolve`], and also returns a redactor that knows only the values
    /// of this text's references: what is shown of the value (a route's target) can hide exactly
    /// those parts, without the secrets of every other route blotting out ordinary words in it.
    pub fn resolve_scoped(&self, text: &str) -> Result<(String, Redactor), SecretError> {
        self.resolve_scoped_as(text, &|value| value.to_owned())
    }

    /// Resolves like [`Secrets::resolve_scoped`], with each value written into the text as
    /// `encode` gives it (escaped for a JSON string, say); the redactor knows the values as
    /// resolved, and finds their escaped forms.
    pub fn resolve_scoped_as(
        &self,
        text: &str,
        encode: &dyn Fn(&str) -> String,
    ) -> Result<(String, Redactor), SecretError> {
        let scoped = Redactor::default();
        let value = resolve_with(text, &|kind, name| {
            let value = self.lookup(kind, name)?;
            self.redactor.add(&value);
            scoped.add(&value);
            Ok(encode(&value))
        })?;
        Ok((value, scoped))
    }

    /// Resolves a value that is secret as a whole (a token, a password, a header value): the
    /// resolved text is scrubbed from messages even when it was written literally in the file.
    pub fn resolve_secret(&self, text: &str) -> Result<String, SecretError> {
        let value = self.resolve(text)?;
        if value.trim().is_empty() {
            return Err(SecretError::Empty("the value".to_owned()));
        }
        self.redactor.add(&value);
        Ok(value)
    }
}

/// True when `text` holds a `${…}` reference.
pub fn has_reference(text: &str) -> bool {
    text.contains("${")
}

fn lookup(kind: &str, name: &str) -> Result<String, SecretError> {
    let (value, what) = match kind {
        "env" => (
            std::env::var(name).map_err(|_| SecretError::MissingEnv(name.to_owned()))?,
            "the environment variable",
        ),
        "file" => (
            read_secret_file(Path::new(name))
                // A trailing newline is how editors and `echo` end files; it is never part of a
                // token.
                .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|err| SecretError::File {
                    path: name.to_owned(),
                    message: err.to_string(),
                })?,
            "the secret file",
        ),
        _ => {
            return Err(SecretError::Malformed(
                "a reference of an unknown kind (only env and file are known)",
            ));
        }
    };
    if value.trim().is_empty() {
        return Err(SecretError::Empty(format!("{what} {name}")));
    }
    Ok(value)
}

/// Longest secret file read: a token, a password or a certificate's worth. A reference to
/// something else (`/dev/zero`, a log file named by mistake) is refused rather than read into
/// memory without end.
const MAX_SECRET_FILE: u64 = 64 * 1024;

fn read_secret_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    use std::os::unix::fs::FileTypeExt as _;
    // Opening a named pipe waits for a writer, which may never come: the start would hang.
    if std::fs::metadata(path)?.file_type().is_fifo() {
        return Err(std::io::Error::other(
            "a named pipe, not a file: reading it would wait for a writer",
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_SECRET_FILE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SECRET_FILE {
        return Err(std::io::Error::other(format!(
            "longer than the {} KiB a secret file may hold; is it the file meant?",
            MAX_SECRET_FILE / 1024
        )));
    }
    Ok(text)
}

fn resolve_with(
    text: &str,
    lookup: &dyn Fn(&str, &str) -> Result<String, SecretError>,
) -> Result<String, SecretError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        // `$${` is a literal `${`, for a password that holds one.
        if let Some(before) = start
            .checked_sub(1)
            .filter(|&at| rest.as_bytes()[at] == b'$')
        {
            out.push_str(&rest[..before]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(SecretError::Malformed(
                "no reference: it has no closing `}`",
            ));
        };
        let reference = &after[..end];
        let Some((kind, name)) = reference.split_once(':') else {
            return Err(SecretError::Malformed(
                "no reference: it has no `kind:` part",
            ));
        };
        let (kind, name) = (kind.trim(), name.trim());
        if name.is_empty() {
            return Err(SecretError::Malformed("a reference without a name"));
        }
        out.push_str(&lookup(kind, name)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_and_their_values_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cr3t-from-file\n").unwrap();
        let secrets = Secrets::default();
        let text = format!("Bearer ${{file:{}}}", file.display());
        assert_eq!(secrets.resolve(&text).unwrap(), "Bearer s3cr3t-from-file");
        assert_eq!(
            secrets
                .redactor()
                .redact("failed: Bearer s3cr3t-from-file rejected"),
            "failed: Bearer *** rejected"
        );
        assert_eq!(secrets.resolve("plain").unwrap(), "plain");
        assert_eq!(secrets.redactor().redact("plain"), "plain");
    }

    #[test]
    fn a_secret_file_that_never_ends_or_is_too_long_is_refused_not_read_whole() {
        let secrets = Secrets::default();
        let endless = secrets
            .resolve("${file:/dev/zero}")
            .unwrap_err()
            .to_string();
        assert!(endless.contains("longer than the 64 KiB"), "{endless}");
        let dir = tempfile::tempdir().unwrap();
        let (fits, long) = (dir.path().join("fits"), dir.path().join("long"));
        std::fs::write(&fits, "t".repeat(64 * 1024)).unwrap();
        std::fs::write(&long, "t".repeat(64 * 1024 + 1)).unwrap();
        let read = |path: &Path| secrets.resolve(&format!("${{file:{}}}", path.display()));
        assert_eq!(read(&fits).unwrap().len(), 64 * 1024);
        assert!(read(&long).is_err());
        // A named pipe without a writer is refused at once rather than waited on.
        let pipe = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&pipe)
            .status()
            .unwrap();
        assert!(made.success());
        let refused = read(&pipe).unwrap_err().to_string();
        assert!(refused.contains("a named pipe, not a file"), "{refused}");
    }

    #[test]
    fn literal_secrets_are_redacted_too() {
        let secrets = Secrets::default();
        secrets.resolve_secret("literal-password").unwrap();
        assert_eq!(secrets.redactor().redact("x literal-password y"), "x *** y");
    }

    #[test]
    fn echoes_in_other_encodings_or_cut_short_are_redacted() {
        let redactor = Redactor::default();
        redactor.add("Br3r/Tok+Sec&ret==");
        for (echo, shown) in [
            // Python's quote() keeps `/`; lower-case hex; HTML; Go-style and full \u escapes.
            ("pyquote=Br3r/Tok%2BSec%26ret%3D%3D", "pyquote=***"),
            ("lowerpct=Br3r%2fTok%2bSec%26ret%3d%3d", "lowerpct=***"),
            (
                "htmlesc=Bearer Br3r/Tok+Sec&amp;ret==",
                "htmlesc=Bearer ***",
            ),
            (
                r#"{"auth":"Bearer Br3r/Tok\u002bSec\u0026ret=="}"#,
                r#"{"auth":"Bearer ***"}"#,
            ),
            (r#"{"go":"Br3r/Tok+Sec\u0026ret=="}"#, r#"{"go":"***"}"#),
            // Cut short, at either end.
            ("prefix=Br3r/Tok+Sec (truncated)", "prefix=*** (truncated)"),
            ("…Sec&ret== expired", "…*** expired"),
            // In another case, as a receiver that lower- or upper-cases what it quotes.
            ("lower=br3r/tok+sec&ret==", "lower=***"),
            ("UPPER=BR3R%2FTOK%2BSEC%26RET%3D%3D", "UPPER=***"),
        ] {
            assert_eq!(redactor.redact(echo), shown, "{echo}");
        }
        // Short runs of it are ordinary text.
        assert_eq!(redactor.redact("Tok+ and ret=="), "Tok+ and ret==");
    }

    #[test]
    fn the_beginning_of_a_secret_at_the_end_of_an_answer_cut_short_is_redacted() {
        let redactor = Redactor::default();
        redactor.add("BearerSecret-4242-XyZzY");
        // Far shorter than the runs found inside a text: only its cut end says it is a secret.
        assert_eq!(
            redactor.redact_cut("denied: Bearer BearerSecre", true),
            "denied: Bearer ***[…]"
        );
        assert_eq!(
            redactor.redact_cut("denied: Bearer Be%61rerSec", true),
            "denied: Bearer ***[…]"
        );
        // Whole, the answer says what it says.
        assert_eq!(
            redactor.redact_cut("denied: Bearer BearerSecre", false),
            "denied: Bearer BearerSecre"
        );
        assert_eq!(
            redactor.redact_cut("denied: no token", true),
            "denied: no token[…]"
        );
    }

    #[test]
    fn a_long_answer_is_redacted_in_bounded_work_and_cut_at_the_limit() {
        let redactor = Redactor::default();
        for n in 0..40 {
            redactor.add(&format!("secret-{n:02}-%%&&\\\\aaaaaaaaaaaaaaaaaaaa"));
        }
        // Every byte a near miss: escapes and bytes the secrets are full of.
        let answer = "%61&amp;\\u0061a".repeat(70_000);
        let redacted = redactor.redact(&answer);
        assert!(redacted.len() <= MAX_REDACTED_LEN + 8, "{}", redacted.len());
        assert!(redacted.ends_with("[…]"), "cut at the limit");
        let echo = format!("x {} y", "secret-07-%%&&\\\\aaaaaaaaaaaaaaaaaaaa");
        assert_eq!(redactor.redact(&echo), "x *** y");
    }

    #[test]
    fn escaped_and_percent_encoded_forms_are_redacted() {
        let redactor = Redactor::default();
        redactor.add(r#"eyJhbGciOi/SECRETJWT+part/xyz=="#);
        redactor.add(r#"pa"ss\word"#);
        // PHP's json_encode escapes `/`.
        assert_eq!(
            redactor.redact(r#"{"echo":"Bearer eyJhbGciOi\/SECRETJWT+part\/xyz=="}"#),
            r#"{"echo":"Bearer ***"}"#
        );
        assert_eq!(
            redactor.redact("GET /cb?t=eyJhbGciOi%2FSECRETJWT%2Bpart%2Fxyz%3D%3D"),
            "GET /cb?t=***"
        );
        // serde_json and most others escape `"` and `\` only.
        assert_eq!(
            redactor.redact(r#"{"sent":"pa\"ss\\word"}"#),
            r#"{"sent":"***"}"#
        );
        assert_eq!(redactor.redact("p=pa%22ss%5Cword"), "p=***");
        assert_eq!(redactor.redact(r#"raw pa"ss\word"#), "raw ***");
        // Control characters as JSON writes them: `\t`, `\n`, `\r`, `\b`, `\f`.
        let controls = "ab\tcd\nef\rgh\u{8}ij\u{c}kl";
        redactor.add(controls);
        let echoed = serde_json::json!({ "sent": controls }).to_string();
        assert_eq!(redactor.redact(&echoed), r#"{"sent":"***"}"#, "{echoed}");
        assert_eq!(redactor.redact(controls), "***");
        // Escaped twice: a receiver that quotes, in JSON of its own, the JSON body it was sent.
        let twice = serde_json::json!({ "body": echoed }).to_string();
        assert_eq!(
            redactor.redact(&twice),
            r#"{"body":"{\"sent\":\"***\"}"}"#,
            "{twice}"
        );
        // `\x09` escapes, and HTML's named references for a tab and a line break.
        let tabs = "ab\tcd\tef\tgh\tij";
        redactor.add(tabs);
        assert_eq!(
            redactor.redact(r"Bearer ab\x09cd\x09ef\x09gh\x09ij"),
            "Bearer ***"
        );
        assert_eq!(redactor.redact("ab&Tab;cd&Tab;ef&Tab;gh&Tab;ij!"), "***!");
        // Numeric references without their `;`, which HTML reads alike.
        assert_eq!(redactor.redact("ab&#9cd&#x9;ef&#09gh&#9;ij!"), "***!");
        // Escaped three times over: a body quoted in JSON twice by the receiver.
        let thrice = serde_json::Value::from(twice.as_str()).to_string();
        let shown = redactor.redact(&thrice);
        assert!(
            shown.contains("***") && !shown.contains("gh") && !shown.contains("ij"),
            "{thrice} -> {shown}"
        );
        assert_eq!(
            redactor.redact(r#"key "abc\tdefghijk" refused"#),
            r#"key "abc\tdefghijk" refused"#,
            "an unknown value stays"
        );
        redactor.add("abc\tdefghijk");
        assert_eq!(
            redactor.redact(r#"key "abc\tdefghijk" refused"#),
            r#"key "***" refused"#
        );
    }

    #[test]
    fn a_scoped_resolution_knows_only_its_own_references() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host");
        std::fs::write(&file, "hidden-host.example.com\n").unwrap();
        let secrets = Secrets::default();
        secrets.resolve_secret("hook").unwrap();
        let (value, scoped) = secrets
            .resolve_scoped(&format!("https://${{file:{}}}/hook", file.display()))
            .unwrap();
        assert_eq!(value, "https://hidden-host.example.com/hook");
        assert_eq!(scoped.redact(&value), "https://***/hook");
        // The shared redactor learnt the value too.
        assert_eq!(secrets.redactor().redact(&value), "https://***/***");
    }

    #[test]
    fn bad_references_are_errors() {
        let secrets = Secrets::default();
        // A literal `${` is written `$${`; the text of a bad one is never quoted back.
        assert_eq!(secrets.resolve("pa$${ss}word").unwrap(), "pa${ss}word");
        let err = secrets.resolve("Zq8${SECRETPART}").unwrap_err().to_string();
        assert!(!err.contains("SECRETPART"), "{err}");
        assert!(matches!(
            secrets.resolve("${env:PROVTRAIL_TEST_SURELY_UNSET_VARIABLE}"),
            Err(SecretError::MissingEnv(_))
        ));
        assert!(matches!(
            secrets.resolve("${vault:x}"),
            Err(SecretError::Malformed(_))
        ));
        assert!(matches!(
            secrets.resolve("${env:X"),
            Err(SecretError::Malformed(_))
        ));
        assert!(matches!(
            secrets.resolve("${file:/nonexistent/provtrail/secret}"),
            Err(SecretError::File { .. })
        ));
    }

    #[test]
    fn a_secret_that_resolves_to_nothing_is_an_error() {
        let secrets = Secrets::default();
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("token");
        std::fs::write(&empty, "\n").unwrap();
        let reference = format!("${{file:{}}}", empty.display());
        let err = secrets.resolve_secret(&reference).unwrap_err();
        assert!(matches!(err, SecretError::Empty(_)), "{err}");
        assert!(err.to_string().contains("secret file") && err.to_string().contains("empty"));
        // In a value that is not itself secret (a URL) too.
        let url = format!("https://hooks.example.com/{reference}");
        assert!(matches!(secrets.resolve(&url), Err(SecretError::Empty(_))));
        assert!(matches!(
            secrets.resolve_secret(""),
            Err(SecretError::Empty(_))
        ));
        assert!(matches!(
            secrets.resolve_secret("  "),
            Err(SecretError::Empty(_))
        ));
    }
}
