//! Signed-in browsers: opaque server-side sessions.
//!
//! Signing in exchanges a read token for a random session id, kept in an `HttpOnly`,
//! `SameSite=Strict` cookie. The token itself never leaves the sign-in request: it is not in the
//! cookie, in a URL or in a log line, and a leaked session id stops working when it expires, when
//! its holder signs out, or when the server restarts. Sessions live in memory only: provtrail runs
//! as one process per store, and a restart asking people to sign in again is acceptable.
//!
//! Each session also carries a CSRF token for the forms that change state (signing out); the sign-in
//! form itself is guarded by an `Origin` check, since there is no session yet.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Name of the session cookie.
pub const COOKIE: &str = "provtrail_session";

/// A session ends after this long without a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// A session ends this long after sign-in, however active.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

/// Most sessions kept at once; beyond, the least recently used one is dropped. Only holders of a
/// read token can make sessions, so this bounds memory rather than defends against anyone.
const MAX_SESSIONS: usize = 10_000;

/// What the server knows of a signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// Token that the state-changing forms of this session must carry.
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// The sessions of one server.
#[derive(Debug, Default)]
pub struct Sessions {
    // Keyed by a digest of the id, so that the map holds nothing a cookie could be made from.
    map: Mutex<HashMap<[u8; 32], Session>>,
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Sessions {
    /// Starts a session; returns its id (the cookie value).
    pub fn create(&self) -> String {
        self.create_at(Instant::now())
    }

    fn create_at(&self, now: Instant) -> String {
        let id = random_token();
        let session = Session {
            csrf: random_token(),
            created: now,
            last_seen: now,
        };
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, session| live(session, now));
        }
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, session)| session.last_seen)
                .map(|(key, _)| *key)
            {
                map.remove(&oldest);
            }
        }
        map.insert(key(&id), session);
        id
    }

    /// The live session with this id, marked as used now.
    pub fn touch(&self, id: &str) -> Option<Session> {
        self.touch_at(id, Instant::now())
    }

    fn touch_at(&self, id: &str, now: Instant) -> Option<Session> {
        let key = key(id);
        let mut map = self.lock();
        let session = map.get_mut(&key)?;
        if !live(session, now) {
            map.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.lock().remove(&key(id));
    }

    /// Sessions kept now (expired ones included until they are next looked at).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // A panic while holding the lock cannot leave the map half-updated (every update is one
        // call), so a poisoned lock is still safe to use.
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn live(session: &Session, now: Instant) -> bool {
    now.duration_since(session.last_seen) < IDLE_TIMEOUT
        && now.duration_since(session.created) < ABSOLUTE_TIMEOUT
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        self.csrf.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value.trim_matches('"'))
    })
}

/// The `Set-Cookie` value that stores a session id.
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        ABSOLUTE_TIMEOUT.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_and_ends_on_sign_out() {
        let sessions = Sessions::default();
        let id = sessions.create();
        assert!(id.len() >= 40);
        let session = sessions.touch(&id).unwrap();
        assert!(session.csrf_matches(&session.csrf));
        assert!(!session.csrf_matches("forged"));
        assert!(sessions.touch("not-a-session").is_none());
        sessions.remove(&id);
        assert!(sessions.touch(&id).is_none());
    }

    #[test]
    fn sessions_expire_when_idle_and_after_the_absolute_limit() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let id = sessions.create_at(start);
        assert!(sessions.touch_at(&id, start + IDLE_TIMEOUT / 2).is_some());
        assert!(
            sessions
                .touch_at(&id, start + IDLE_TIMEOUT / 2 + IDLE_TIMEOUT)
                .is_none()
        );

        // Kept busy, a session still ends at the absolute limit.
        let id = sessions.create_at(start);
        let mut at = start;
        while at < start + ABSOLUTE_TIMEOUT - IDLE_TIMEOUT / 2 {
            at += IDLE_TIMEOUT / 2;
            assert!(sessions.touch_at(&id, at).is_some());
        }
        assert!(
            sessions
                .touch_at(&id, start + ABSOLUTE_TIMEOUT + Duration::from_secs(1))
                .is_none()
        );
    }

    #[test]
    fn the_session_map_stays_bounded() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let first = sessions.create_at(start);
        let later = start + Duration::from_secs(1);
        for _ in 0..MAX_SESSIONS {
            sessions.create_at(later);
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(
            sessions.touch_at(&first, later).is_none(),
            "the least recently used session went"
        );
    }

    #[test]
    fn cookies_are_read_and_written_with_their_protections() {
        assert_eq!(
            cookie_value("a=1; provtrail_session=abc; b=2", COOKIE),
            Some("abc")
        );
        assert_eq!(cookie_value("provtrail_sessionx=abc", COOKIE), None);
        let cookie = set_cookie("abc", true);
        for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert!(!set_cookie("abc", false).contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
