//! Secrets in route settings: `${env:NAME}` and `${file:/path}` references, resolved once at start,
//! and a [`Redactor`] that takes every secret value out of text before it is logged, stored as a
//! delivery error or answered by the API.
//!
//! Why a redactor rather than only careful formatting: errors come from libraries (HTTP client,
//! NATS client, I/O) that may quote a URL, a header or a server's answer; scrubbing the finished
//! text is the one place that cannot be forgotten.

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
}

/// Scrubs known secret values from text. Shared by every route; cheap to clone.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

// The secrets themselves are never printed.
impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known = self.secrets.read().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("Redactor").field("secrets", &known).finish()
    }
}

impl Redactor {
    /// Adds a value to scrub from now on, with the escaped forms a receiver may echo it in.
    pub fn add(&self, secret: &str) {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        if let Ok(mut secrets) = self.secrets.write() {
            let mut added = false;
            for form in escaped_forms(secret) {
                if !secrets.contains(&form) {
                    secrets.push(form);
                    added = true;
                }
            }
            if added {
                // Longest first, so that a secret containing another is replaced whole.
                secrets.sort_by_key(|known| std::cmp::Reverse(known.len()));
            }
        }
    }

    /// `text` with every known secret replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        if let Ok(secrets) = self.secrets.read() {
            for secret in secrets.iter() {
                if out.contains(secret.as_str()) {
                    out = out.replace(secret.as_str(), REDACTED);
                }
            }
        }
        out
    }
}

/// `secret` and the forms it takes when a receiver quotes it back: inside a JSON string (with `/`
/// escaped as `\/`, as PHP does, or not) and percent-encoded (in a URL or a form it echoes).
/// Redaction matches bytes exactly, so a form that is not listed here would get through.
fn escaped_forms(secret: &str) -> Vec<String> {
    let json = secret.replace('\\', "\\\\").replace('"', "\\\"");
    let json_slashes = json.replace('/', "\\/");
    let percent = percent_encoded(secret);
    let mut forms = vec![secret.to_owned()];
    for form in [json, json_slashes, percent] {
        if !forms.contains(&form) {
            forms.push(form);
        }
    }
    forms
}

/// Every byte outside the unreserved characters of RFC 3986 as `%XX`.
fn percent_encoded(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    out
}

/// Resolves references and remembers every secret it produced.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    redactor: Redactor,
}

impl Secrets {
    /// Resolves into the given redactor.
    pub fn new(redactor: Redactor) -> Self {
        Secrets { redactor }
    }

    /// The redactor that knows every secret resolved so far.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Resolves the references in a value that is not itself secret (a URL, a subject): the
    /// values of its references are secrets, the text around them is not.
    pub fn resolve(&self, text: &str) -> Result<String, SecretError> {
        resolve_with(text, &|kind, name| {
            let value = lookup(kind, name)?;
            self.redactor.add(&value);
            Ok(value)
        })
    }

    /// Resolves like [`Secrets::resolve`], and also returns a redactor that knows only the values
    /// of this text's references: what is shown of the value (a route's target) can hide exactly
    /// those parts, without the secrets of every other route blotting out ordinary words in it.
    pub fn resolve_scoped(&self, text: &str) -> Result<(String, Redactor), SecretError> {
        let scoped = Redactor::default();
        let value = resolve_with(text, &|kind, name| {
            let value = lookup(kind, name)?;
            self.redactor.add(&value);
            scoped.add(&value);
            Ok(value)
        })?;
        Ok((value, scoped))
    }

    /// Resolves a value that is secret as a whole (a token, a password, a header value): the
    /// resolved text is scrubbed from messages even when it was written literally in the file.
    pub fn resolve_secret(&self, text: &str) -> Result<String, SecretError> {
        let value = self.resolve(text)?;
        self.redactor.add(&value);
        Ok(value)
    }
}

/// True when `text` holds a `${…}` reference.
pub fn has_reference(text: &str) -> bool {
    text.contains("${")
}

fn lookup(kind: &str, name: &str) -> Result<String, SecretError> {
    match kind {
        "env" => std::env::var(name).map_err(|_| SecretError::MissingEnv(name.to_owned())),
        "file" => std::fs::read_to_string(Path::new(name))
            // A trailing newline is how editors and `echo` end files; it is never part of a token.
            .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|err| SecretError::File {
                path: name.to_owned(),
                message: err.to_string(),
            }),
        _ => Err(SecretError::Malformed(
            "a reference of an unknown kind (only env and file are known)",
        )),
    }
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
    fn literal_secrets_are_redacted_too() {
        let secrets = Secrets::default();
        secrets.resolve_secret("literal-password").unwrap();
        assert_eq!(secrets.redactor().redact("x literal-password y"), "x *** y");
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
}
