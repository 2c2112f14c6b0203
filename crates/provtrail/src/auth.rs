//! Credentials as ISC sends them: `Authorization: Bearer <token>` or `Basic base64(user:password)`.
//!
//! Secrets are kept only as SHA-256 digests, and a presented credential is compared with every
//! configured one in constant time, without stopping at the first match, so that neither the
//! content nor the length of a secret leaks through timing.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no credentials: send an Authorization header (Bearer token or Basic user:password)")]
    Missing,
    /// A header that is not `Bearer …` or `Basic …` with valid base64.
    #[error("malformed Authorization header")]
    Malformed,
    /// Well-formed credentials that match none of the configured ones.
    #[error("invalid credentials")]
    Invalid,
    /// More than one `Authorization` header: which one a proxy or a framework would read is
    /// anybody's guess, so neither is taken.
    #[error("more than one Authorization header")]
    Repeated,
}

impl AuthError {
    /// What is wrong, without the ingest endpoints' hint at the credentials they take (Basic
    /// among them), for the APIs that take tokens only.
    pub fn without_ingest_hint(&self) -> String {
        match self {
            AuthError::Missing => "no credentials".to_owned(),
            other => other.to_string(),
        }
    }
}

/// The credentials a listener accepts. Several of each kind may be configured at once, so that a
/// secret can be rotated without downtime.
#[derive(Clone, Default)]
pub struct Credentials {
    bearer: Vec<[u8; 32]>,
    basic: Vec<[u8; 32]>,
    open: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("bearer_tokens", &self.bearer.len())
            .field("basic_users", &self.basic.len())
            .field("open", &self.open)
            .finish()
    }
}

fn digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

impl Credentials {
    /// Accepts every request: for local use only.
    pub fn open() -> Self {
        Credentials {
            open: true,
            ..Credentials::default()
        }
    }

    /// Adds an accepted bearer token.
    pub fn add_bearer(&mut self, token: &str) {
        self.bearer.push(digest(token.as_bytes()));
    }

    /// Adds an accepted `user:password` pair (given in that form).
    pub fn add_basic(&mut self, user_password: &str) -> Result<(), String> {
        if !user_password.contains(':') {
            return Err("a Basic credential must be written user:password".to_owned());
        }
        self.basic.push(digest(user_password.as_bytes()));
        Ok(())
    }

    /// True when requests are accepted without credentials.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// True when no credential is configured and the listener is not open.
    pub fn is_empty(&self) -> bool {
        !self.open && self.bearer.is_empty() && self.basic.is_empty()
    }

    /// The `WWW-Authenticate` challenge for a 401.
    pub fn challenge(&self) -> String {
        match (self.bearer.is_empty(), self.basic.is_empty()) {
            (false, true) => r#"Bearer realm="provtrail""#.to_owned(),
            (true, false) => r#"Basic realm="provtrail", charset="UTF-8""#.to_owned(),
            _ => r#"Bearer realm="provtrail", Basic realm="provtrail", charset="UTF-8""#.to_owned(),
        }
    }

    /// Checks a request's `Authorization` header; a request with two is refused.
    pub fn check_headers(&self, headers: &axum::http::HeaderMap) -> Result<(), AuthError> {
        if self.open {
            return Ok(());
        }
        let mut values = headers.get_all(axum::http::header::AUTHORIZATION).iter();
        let authorization = values.next().map(axum::http::HeaderValue::as_bytes);
        if values.next().is_some() {
            return Err(AuthError::Repeated);
        }
        self.check(authorization)
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), AuthError> {
        if self.open {
            return Ok(());
        }
        let header = authorization.ok_or(AuthError::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| AuthError::Malformed)?;
        // Only the spaces and tabs HTTP allows around a value: Unicode whitespace (a no-break
        // space, say) is part of what was sent, not padding.
        let blank = |c: char| c == ' ' || c == '\t';
        let (scheme, rest) = header
            .trim_matches(blank)
            .split_once(' ')
            .ok_or(AuthError::Malformed)?;
        let value = rest.trim_matches(blank);
        let (candidates, secret) = if scheme.eq_ignore_ascii_case("bearer") {
            (&self.bearer, value.as_bytes().to_vec())
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD.decode(value).map_err(|_| AuthError::Malformed)?;
            (&self.basic, decoded)
        } else {
            return Err(AuthError::Malformed);
        };
        let presented = digest(&secret);
        let mut matched = subtle::Choice::from(0u8);
        for candidate in candidates {
            matched |= candidate.ct_eq(&presented);
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(AuthError::Invalid)
        }
    }
}

/// A new random token: 32 bytes from the operating system's generator, URL-safe base64, after a
/// prefix that says what it is for (`ptk` ingest, `ptr` read).
pub fn generate_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic_header(user_password: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(user_password)).into_bytes()
    }

    #[test]
    fn every_configured_credential_is_accepted_during_rotation() {
        let mut credentials = Credentials::default();
        credentials.add_bearer("old-token");
        credentials.add_bearer("new-token");
        credentials.add_basic("isc:secret").unwrap();
        assert_eq!(credentials.check(Some(b"Bearer old-token")), Ok(()));
        assert_eq!(credentials.check(Some(b"bearer new-token")), Ok(()));
        assert_eq!(credentials.check(Some(b"Bearer \tnew-token ")), Ok(()));
        assert_eq!(
            credentials.check(Some("Bearer new-token\u{a0}".as_bytes())),
            Err(AuthError::Invalid)
        );
        assert_eq!(credentials.check(Some(&basic_header("isc:secret"))), Ok(()));
    }

    #[test]
    fn wrong_missing_and_malformed_credentials_are_refused() {
        let mut credentials = Credentials::default();
        credentials.add_bearer("token");
        credentials.add_basic("isc:secret").unwrap();
        assert_eq!(credentials.check(None), Err(AuthError::Missing));
        assert_eq!(
            credentials.check(Some(b"Bearer tokens")),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            credentials.check(Some(b"Bearer")),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            credentials.check(Some(b"Token token")),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            credentials.check(Some(b"Basic !!!")),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            credentials.check(Some(&basic_header("isc:wrong"))),
            Err(AuthError::Invalid)
        );
        // A bearer token is not accepted as a Basic password and the other way round.
        assert_eq!(
            credentials.check(Some(&basic_header("token"))),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            credentials.check(Some(b"Bearer isc:secret")),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn open_listener_accepts_anything_and_empty_one_nothing() {
        assert_eq!(Credentials::open().check(None), Ok(()));
        let empty = Credentials::default();
        assert!(empty.is_empty());
        assert_eq!(empty.check(Some(b"Bearer x")), Err(AuthError::Invalid));
    }

    #[test]
    fn generated_tokens_are_long_and_distinct() {
        let a = generate_token("ptk");
        let b = generate_token("ptk");
        assert_ne!(a, b);
        assert!(a.len() >= 40);
    }
}
