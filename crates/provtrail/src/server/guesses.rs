//! Wrong tokens per client address, counted by every place that takes a read or an admin token:
//! the read API, the routes API, the web UI's pages (a token in a header) and its sign-in form.
//! A client that sent too many in a minute is refused (429) wherever it sends one, so that no
//! way in lets a token be guessed at the speed of the network. Generated tokens are far too long
//! to guess anyway; this is for tokens chosen by hand.
//!
//! Ingest is not limited: ISC's deliveries must never be turned away for someone else's
//! guesses, and its credential is checked before its body is read.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::header;
use axum::http::request::Parts;

use crate::auth::AuthError;

/// Wrong tokens a client address may send per [`FAILURE_WINDOW`] by default; then every request
/// of its that carries a token is refused until the window ends.
pub const MAX_FAILURES: u32 = 10;
/// How long the count of an address's wrong tokens lasts.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most (some 6 MB): more than the /64s of an IPv6 /48, so that one
/// network's prefixes cannot crowd out the addresses already refused. Beyond, windows that
/// ended are forgotten, then addresses still allowed guesses, then the refused ones whose
/// windows end first.
const MAX_REMEMBERED: usize = 100_000;

/// Wrong tokens per client address (an IPv6 client by its /64) in the current window.
#[derive(Debug)]
pub struct TokenGuesses {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// Wrong tokens allowed per window; 0: no limit.
    limit: u32,
}

impl Default for TokenGuesses {
    fn default() -> Self {
        TokenGuesses::with_limit(MAX_FAILURES)
    }
}

impl TokenGuesses {
    /// A count that refuses an address after `limit` wrong tokens in a window (0: never).
    pub fn with_limit(limit: u32) -> Self {
        TokenGuesses {
            failures: Mutex::default(),
            limit,
        }
    }

    /// How long `client` must wait before it may send a token again, when it used up its
    /// wrong ones.
    pub fn wait(&self, client: IpAddr) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let failures = self.failures.lock().ok()?;
        let (count, since) = failures.get(&client)?;
        let left = FAILURE_WINDOW.checked_sub(since.elapsed())?;
        (*count >= self.limit).then_some(left)
    }

    /// Counts a wrong token from `client`.
    pub fn note(&self, client: IpAddr) {
        if self.limit == 0 {
            return;
        }
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if failures.len() >= MAX_REMEMBERED && !failures.contains_key(&client) {
            make_room(&mut failures, self.limit);
        }
        let entry = failures.entry(client).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    /// Before a request's `Authorization` header is checked: how long its client must wait,
    /// when it may not send a token now. Requests without one are never held up.
    pub fn refusal(
        &self,
        parts: &Parts,
        proxies: &super::forwarded::TrustedProxies,
    ) -> Option<Duration> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return None;
        }
        client(parts, proxies).and_then(|client| self.wait(client))
    }
}

/// Forgets addresses until there is room for one more (in ever fewer steps: each frees a good
/// part of the table). A refused address is forgotten last: forgetting it would give it its
/// guesses back at once, which clients that rotate through many addresses would otherwise
/// bring about on purpose.
fn make_room(failures: &mut HashMap<IpAddr, (u32, Instant)>, limit: u32) {
    // Each step must free a tenth of the table at least, or the next address would pay for
    // another pass over all of it.
    let enough = MAX_REMEMBERED - MAX_REMEMBERED / 10;
    failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
    if failures.len() <= enough {
        return;
    }
    failures.retain(|_, (count, _)| *count >= limit);
    if failures.len() <= enough {
        return;
    }
    let mut starts: Vec<Instant> = failures.values().map(|(_, since)| *since).collect();
    let middle = starts.len() / 2;
    let (_, cut, _) = starts.select_nth_unstable(middle);
    let cut = *cut;
    failures.retain(|_, (_, since)| *since > cut);
}

/// After a request's `Authorization` header was refused: counts it as a guess, unless there was
/// none, or it holds a credential of this server meant for another door (the ingest token sent
/// to the read API, an admin token to a page): a client set up with the wrong one of its own
/// credentials is not guessing.
pub fn note_refused(state: &super::SharedState, parts: &Parts, err: &AuthError) {
    if matches!(err, AuthError::Missing) {
        return;
    }
    let own = parts
        .headers
        .get(header::AUTHORIZATION)
        .is_some_and(|value| is_own_credential(state, value.as_bytes()));
    if own {
        return;
    }
    if let Some(client) = client(parts, &state.trusted_proxies) {
        state.token_guesses.note(client);
    }
}

/// Whether an `Authorization` value holds one of this server's credentials (ingest, read or
/// admin), wherever it was sent.
pub fn is_own_credential(state: &super::SharedState, authorization: &[u8]) -> bool {
    [
        &state.ingest_credentials,
        &state.read_credentials,
        &state.admin_credentials,
    ]
    .iter()
    .any(|credentials| !credentials.is_open() && credentials.check(Some(authorization)).is_ok())
}

/// The client a request comes from (named by a trusted proxy, or the peer), as the
/// per-address connection cap counts clients: an IPv6 client by its /64.
pub fn client(parts: &Parts, proxies: &super::forwarded::TrustedProxies) -> Option<IpAddr> {
    proxies
        .origin(parts)
        .map(|origin| super::listener::client_of(origin.ip()))
}

/// Seconds to say in `Retry-After` for a wait (at least one).
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_wrong_tokens_and_others_are_not() {
        let guesses = TokenGuesses::default();
        let (one, other): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..MAX_FAILURES - 1 {
            guesses.note(one);
        }
        assert_eq!(guesses.wait(one), None);
        guesses.note(one);
        let wait = guesses.wait(one).unwrap();
        assert!(wait <= FAILURE_WINDOW && wait > FAILURE_WINDOW / 2);
        assert_eq!(guesses.wait(other), None);
        // Off: never refused.
        let off = TokenGuesses::with_limit(0);
        for _ in 0..100 {
            off.note(one);
        }
        assert_eq!(off.wait(one), None);
    }

    /// Clients rotating through more addresses than are remembered (the /64s of an IPv6 /48,
    /// say) do not make the refused ones forgotten.
    #[test]
    fn a_refused_address_stays_refused_while_many_others_guess() {
        let guesses = TokenGuesses::default();
        let refused: IpAddr = "2001:db8:1::".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            guesses.note(refused);
        }
        assert!(guesses.wait(refused).is_some());
        for n in 0..(MAX_REMEMBERED as u32 + 5_000) {
            let other = IpAddr::V6(std::net::Ipv6Addr::from(
                (0x2001_0db8_0002_u128 << 80) | (u128::from(n) << 64),
            ));
            guesses.note(other);
        }
        assert!(
            guesses.wait(refused).is_some(),
            "the refused address was forgotten"
        );
        assert!(guesses.failures.lock().unwrap().len() <= MAX_REMEMBERED);
    }
}
