//! Who a request comes from when provtrail runs behind reverse proxies: the peer of the
//! connection, or, when that peer is a proxy the operator trusts (`server.trusted_proxies`), the
//! client its `X-Forwarded-For` names. Behind a proxy every request comes from the proxy's
//! address: counted by it, one client's wrong tokens would lock every user out, and the delivery
//! log would name the proxy for every event.
//!
//! The header is read from its right end, where the trusted proxy wrote what it saw: the first
//! address that is not a trusted proxy is the client. What a client wrote there itself (further
//! left) is never believed, and a header from an untrusted peer is ignored; so are
//! `X-Forwarded-Host` and `X-Forwarded-Proto` (see [`TrustedProxies::from_trusted_proxy`]).

use std::net::{IpAddr, SocketAddr};

use axum::http::request::Parts;

/// The proxies whose `X-Forwarded-For` is believed: addresses or blocks (`10.0.0.0/8`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

/// Where a request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The peer of the connection.
    Direct(SocketAddr),
    /// The client a trusted proxy named.
    Forwarded(IpAddr),
}

impl Origin {
    /// The client's address.
    pub fn ip(self) -> IpAddr {
        match self {
            Origin::Direct(addr) => addr.ip(),
            Origin::Forwarded(ip) => ip,
        }
    }

    /// As the delivery log keeps it: `address:port` for a peer, the address alone for a client
    /// named by a proxy (its port there is the proxy's business).
    pub fn to_log(self) -> String {
        match self {
            Origin::Direct(addr) => addr.to_string(),
            Origin::Forwarded(ip) => ip.to_string(),
        }
    }
}

impl TrustedProxies {
    /// Reads `10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`; the error says which entry is wrong.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut blocks = Vec::with_capacity(entries.len());
        for entry in entries {
            let text = entry.trim();
            let (address, bits) = match text.split_once('/') {
                Some((address, bits)) => (address, Some(bits)),
                None => (text, None),
            };
            let written: IpAddr = address
                .parse()
                .map_err(|_| format!("{text:?} is not an IP address or a block like 10.0.0.0/8"))?;
            let most = if written.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => most,
                Some(bits) => bits
                    .parse::<u8>()
                    .ok()
                    .filter(|bits| *bits <= most)
                    .ok_or_else(|| {
                        format!("{text:?}: the block's size is a number of bits from 0 to {most}")
                    })?,
            };
            // An IPv4 block written as IPv6 (`::ffff:10.0.0.0/104`) is that IPv4 block, as the
            // addresses it is checked against are.
            let address = canonical(written);
            let bits = if written.is_ipv6() && address.is_ipv4() {
                bits.saturating_sub(96)
            } else {
                bits
            };
            blocks.push((address, bits));
        }
        Ok(TrustedProxies(blocks))
    }

    /// Whether a block holds every address of its kind (`0.0.0.0/0`): then any client that
    /// connects directly can name itself whatever it likes.
    pub fn trusts_everyone(&self) -> bool {
        self.0.iter().any(|&(_, bits)| bits == 0)
    }

    /// Whether no proxy is trusted (every request is its peer's).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0
            .iter()
            .any(|&(block, bits)| in_block(address, block, bits))
    }

    /// Whether the request's peer is a trusted proxy, whose `X-Forwarded-*` headers say what the
    /// client asked for; from any other peer they are the client's own claims.
    pub fn from_trusted_proxy(&self, parts: &Parts) -> bool {
        parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .is_some_and(|peer| !self.is_empty() && self.trusts(peer.0.ip()))
    }

    /// Where the request comes from (`None` without a known peer: a request not from a socket).
    pub fn origin(&self, parts: &Parts) -> Option<Origin> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()?
            .0;
        if self.is_empty() || !self.trusts(peer.ip()) {
            return Some(Origin::Direct(peer));
        }
        let named = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            // Bytes a client wrote that are no text must not hide what the proxy wrote after.
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect::<Vec<_>>();
        let mut named = named
            .iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        named.retain(|entry| !entry.is_empty());
        let mut client = None;
        for entry in named.iter().rev() {
            // An entry that is no address ends the trust: the last one read stands.
            let Some(address) = parse_entry(entry) else {
                break;
            };
            client = Some(address);
            if !self.trusts(address) {
                break;
            }
        }
        Some(client.map_or(Origin::Direct(peer), Origin::Forwarded))
    }
}

/// An address as proxies write it: `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]:4711`,
/// `203.0.113.7:4711`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .map(canonical)
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

fn in_block(address: IpAddr, block: IpAddr, bits: u8) -> bool {
    match (address, block) {
        (IpAddr::V4(address), IpAddr::V4(block)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(address) & mask == u32::from(block) & mask
        }
        (IpAddr::V6(address), IpAddr::V6(block)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(address) & mask == u128::from(block) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parts(peer: &str, forwarded: &[&str]) -> Parts {
        let mut request = axum::http::Request::builder().uri("/");
        for value in forwarded {
            request = request.header("x-forwarded-for", *value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        parts.extensions.insert(axum::extract::ConnectInfo(
            peer.parse::<SocketAddr>().unwrap(),
        ));
        parts
    }

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_trusted_proxys_header_names_the_client_and_no_one_elses_does() {
        let trusted = proxies(&["10.0.0.0/8", "::1"]);
        // The proxy names the client it saw.
        let from_proxy = parts("10.1.2.3:5000", &["203.0.113.7"]);
        assert_eq!(
            trusted.origin(&from_proxy),
            Some(Origin::Forwarded(ip("203.0.113.7")))
        );
        // A client's own claim (left) is not believed past the first untrusted address.
        let forged = parts("10.1.2.3:5000", &["198.51.100.1, 203.0.113.7"]);
        assert_eq!(
            trusted.origin(&forged),
            Some(Origin::Forwarded(ip("203.0.113.7")))
        );
        // Proxies behind proxies, headers given twice, ports and brackets.
        let chained = parts("[::1]:5000", &["203.0.113.7:4711", "10.9.9.9"]);
        assert_eq!(
            trusted.origin(&chained),
            Some(Origin::Forwarded(ip("203.0.113.7")))
        );
        let bracketed = parts("[::ffff:10.1.2.3]:5000", &["[2001:db8::1]:80"]);
        assert_eq!(
            trusted.origin(&bracketed),
            Some(Origin::Forwarded(ip("2001:db8::1")))
        );
        // An untrusted peer's header is ignored.
        let direct = parts("192.0.2.5:6000", &["203.0.113.7"]);
        assert_eq!(
            trusted.origin(&direct),
            Some(Origin::Direct("192.0.2.5:6000".parse().unwrap()))
        );
        // A trusted peer without the header, or with garbage, is the client itself.
        let bare = parts("10.1.2.3:5000", &[]);
        assert_eq!(
            trusted.origin(&bare),
            Some(Origin::Direct("10.1.2.3:5000".parse().unwrap()))
        );
        // Bytes that are no text, written by the client, do not hide what the proxy wrote.
        let mut not_text = parts("10.1.2.3:5000", &[]);
        not_text.headers.insert(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"\xff, 203.0.113.7").unwrap(),
        );
        assert_eq!(
            trusted.origin(&not_text),
            Some(Origin::Forwarded(ip("203.0.113.7")))
        );
        let garbage = parts("10.1.2.3:5000", &["unknown"]);
        assert_eq!(
            trusted.origin(&garbage),
            Some(Origin::Direct("10.1.2.3:5000".parse().unwrap()))
        );
        // Every named hop trusted: the farthest one.
        let all_trusted = parts("10.1.2.3:5000", &["10.7.7.7, 10.8.8.8"]);
        assert_eq!(
            trusted.origin(&all_trusted),
            Some(Origin::Forwarded(ip("10.7.7.7")))
        );
        // No proxy trusted: the header means nothing.
        assert_eq!(
            TrustedProxies::default().origin(&from_proxy),
            Some(Origin::Direct("10.1.2.3:5000".parse().unwrap()))
        );
    }

    #[test]
    fn entries_are_addresses_or_blocks() {
        assert!(TrustedProxies::parse(&["10.0.0.0/8".into(), "fd00::/8".into()]).is_ok());
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "proxy.example",
            "10.0.0.0/x",
            "",
        ] {
            let err = TrustedProxies::parse(&[bad.to_owned()]).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        // An IPv4 block written as IPv6.
        assert!(proxies(&["::ffff:10.0.0.0/104"]).trusts(ip("10.9.8.7")));
        assert!(!proxies(&["::ffff:10.0.0.0/104"]).trusts(ip("11.0.0.1")));
        let any = proxies(&["0.0.0.0/0"]);
        assert!(any.trusts_everyone());
        assert!(any.trusts(ip("203.0.113.7")));
        assert!(!any.trusts(ip("2001:db8::1")));
    }
}
