//! Server-side request forgery guard for webhook targets.
//!
//! A route's URL is written by whoever edits the configuration, but the addresses its host name
//! resolves to are decided by DNS, at every connection. The guard therefore works at two points:
//! an IP address written in the URL is checked when the route is compiled (the HTTP client does
//! not resolve literal addresses), and every host name is resolved through [`GuardedResolver`],
//! which drops forbidden addresses each time a connection is opened, so that a name that resolved
//! to a public address at start and to `127.0.0.1` later (DNS rebinding) still cannot reach
//! loopback. Redirects are not followed and proxies from the environment are not used, so the
//! resolver sees every host the client connects to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why an address may not be a webhook target, or `None` when it may.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified (0.0.0.0/8)")
    } else if ip.is_loopback() {
        Some("loopback (127.0.0.0/8)")
    } else if a == 10 || (a == 172 && (16..=31).contains(&b)) || (a == 192 && b == 168) {
        Some("private (RFC 1918)")
    } else if a == 100 && (64..=127).contains(&b) {
        Some("shared address space / CGNAT (100.64.0.0/10)")
    } else if ip.is_link_local() {
        Some("link-local (169.254.0.0/16)")
    } else if a == 192 && b == 0 && c == 0 {
        Some("IETF protocol assignments (192.0.0.0/24)")
    } else if a == 198 && (18..=19).contains(&b) {
        Some("benchmarking (198.18.0.0/15)")
    } else if (a == 192 && b == 0 && c == 2)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
    {
        // Not routed on the Internet (IANA: not globally reachable), like the ranges above; a
        // network that uses them inside is a private one.
        Some("documentation (TEST-NET: 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24)")
    } else if ip.is_multicast() {
        Some("multicast (224.0.0.0/4)")
    } else if a >= 240 {
        Some("reserved or broadcast (240.0.0.0/4)")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if ip.is_unspecified() {
        Some("unspecified (::)")
    } else if ip.is_loopback() {
        Some("loopback (::1)")
    } else if let Some(v4) = ip.to_ipv4_mapped() {
        // ::ffff:a.b.c.d reaches the IPv4 address.
        forbidden_v4(v4)
    } else if segments[..6] == [0, 0, 0, 0, 0, 0] || segments[..6] == [0, 0, 0, 0, 0xffff, 0] {
        // IPv4-compatible ::a.b.c.d (deprecated, still routed to the IPv4 address by some
        // stacks) and IPv4-translated ::ffff:0:a.b.c.d (SIIT) reach the IPv4 address.
        forbidden_v4(last_32_bits(ip))
    } else if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 reaches the embedded IPv4 address.
        forbidden_v4(last_32_bits(ip))
    } else if segments[..3] == [0x64, 0xff9b, 1] {
        // Local-use NAT64 (RFC 8215): the network picks the prefix length, and with it where the
        // IPv4 address sits (and bits around it may be anything), so the guard cannot tell where
        // it leads; no webhook receiver needs one.
        Some("local-use NAT64 (64:ff9b:1::/48)")
    } else if segments[..2] == [0x2001, 0] {
        // Teredo tunnels to the client's NAT mapping (the last 32 bits inverted) through relays
        // that the guard cannot see; no webhook receiver lives behind one, so none is allowed.
        Some("Teredo (2001::/32)")
    } else if segments[..2] == [0x2001, 0xdb8] || (segments[0] == 0x3fff && segments[1] < 0x1000) {
        // Not routed on the Internet, as the IPv4 documentation ranges.
        Some("documentation (2001:db8::/32, 3fff::/20)")
    } else if segments[..3] == [0x2001, 2, 0] {
        Some("benchmarking (2001:2::/48)")
    } else if segments[..4] == [0x100, 0, 0, 0] {
        Some("discard-only (100::/64)")
    } else if segments[0] & 0xfe00 == 0xfc00 {
        Some("unique local (fc00::/7)")
    } else if segments[0] & 0xffc0 == 0xfe80 {
        Some("link-local (fe80::/10)")
    } else if segments[0] & 0xffc0 == 0xfec0 {
        Some("site-local (fec0::/10, deprecated)")
    } else if segments[0] & 0xff00 == 0xff00 {
        Some("multicast (ff00::/8)")
    } else if segments[0] == 0x2002 {
        // 6to4 reaches the embedded IPv4 address.
        forbidden_v4(Ipv4Addr::new(
            (segments[1] >> 8) as u8,
            segments[1] as u8,
            (segments[2] >> 8) as u8,
            segments[2] as u8,
        ))
    } else {
        None
    }
}

/// The IPv4 address in the last 32 bits, where most IPv6 forms embed it.
fn last_32_bits(ip: Ipv6Addr) -> Ipv4Addr {
    let [.., a, b, c, d] = ip.octets();
    Ipv4Addr::new(a, b, c, d)
}

/// Resolves host names for the webhook client, keeping only addresses the route may reach.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// Allow private, loopback and link-local addresses (`allow_private = true` on the route).
    pub allow_private: bool,
}

/// A host name that resolved only to addresses the route may not reach.
#[derive(Debug, thiserror::Error)]
#[error(
    "refused: {host} resolves to {address}, an address in the {reason} range; set allow_private = true on \
     the route to allow it"
)]
pub struct Refused {
    host: String,
    address: IpAddr,
    reason: &'static str,
}

impl Refused {
    /// The refusal without the host or its address, for a host that is a secret.
    pub fn without_host(&self) -> String {
        format!(
            "refused: the host (given by reference, not shown) resolves to an address in the {} \
             range; set allow_private = true on the route to allow it",
            self.reason
        )
    }
}

/// Keeps the addresses of `host` the guard allows; an error names the first refused one when
/// none is left.
pub fn filter_addresses(
    host: &str,
    addresses: impl IntoIterator<Item = SocketAddr>,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, Refused> {
    let mut kept = Vec::new();
    let mut refused = None;
    for address in addresses {
        match forbidden(address.ip()) {
            Some(reason) if !allow_private => {
                refused.get_or_insert(Refused {
                    host: host.to_owned(),
                    address: address.ip(),
                    reason,
                });
            }
            _ => kept.push(address),
        }
    }
    match (kept.is_empty(), refused) {
        (true, Some(refused)) => Err(refused),
        _ => Ok(kept),
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept = filter_addresses(&host, found, allow_private)?;
            if kept.is_empty() {
                return Err(format!("{host} did not resolve to any address").into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(kept.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn private_loopback_link_local_and_friends_are_forbidden() {
        for text in [
            "127.0.0.1",
            "127.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(forbidden(ip(text)).is_some(), "{text} must be refused");
        }
    }

    #[test]
    fn ipv6_forms_embedding_a_forbidden_ipv4_address_are_forbidden() {
        for (text, reason) in [
            // IPv4-compatible (::/96).
            ("::127.0.0.1", "loopback"),
            ("::10.1.2.3", "private"),
            ("::169.254.169.254", "link-local"),
            ("::0.0.0.2", "unspecified"),
            // IPv4-translated (::ffff:0:0/96).
            ("::ffff:0:127.0.0.1", "loopback"),
            ("::ffff:0:192.168.1.1", "private"),
            // Local-use NAT64 (64:ff9b:1::/48), whatever it embeds: where the IPv4 address sits
            // depends on the network's prefix length, and a suffix can hide it.
            ("64:ff9b:1::7f00:1", "local-use NAT64"),
            ("64:ff9b:1:0:0a:0:5:0123", "local-use NAT64"),
            ("64:ff9b:1::808:808", "local-use NAT64"),
            // Teredo (2001::/32), whatever it embeds.
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo"),
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", "Teredo"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.255", "documentation"),
            ("2001:db8::1", "documentation"),
            ("3fff:1::1", "documentation"),
            ("::ffff:192.0.2.1", "documentation"),
            ("2001:2::1", "benchmarking"),
            ("100::1", "discard-only"),
        ] {
            let why = forbidden(ip(text));
            assert!(
                why.is_some_and(|why| why.contains(reason)),
                "{text} must be refused as {reason}, got {why:?}"
            );
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for text in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "::ffff:0:8.8.8.8",
            "64:ff9b::808:808",
            "2001:4860:4860::8888",
            "2001:2:1::1",
            "192.0.3.1",
            "203.0.114.1",
            "3ffe::1",
            "3fff:1000::1",
        ] {
            assert_eq!(forbidden(ip(text)), None, "{text} must be allowed");
        }
    }

    #[test]
    fn filtering_keeps_allowed_addresses_and_names_a_refused_one() {
        let private: SocketAddr = "10.0.0.1:0".parse().unwrap();
        let public: SocketAddr = "8.8.8.8:0".parse().unwrap();
        assert_eq!(
            filter_addresses("h", [private, public], false).unwrap(),
            vec![public]
        );
        let err = filter_addresses("h", [private], false).unwrap_err();
        assert!(err.to_string().contains("10.0.0.1"), "{err}");
        assert_eq!(
            filter_addresses("h", [private], true).unwrap(),
            vec![private]
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_of_loopback_unless_allowed() {
        use reqwest::dns::Resolve as _;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = match (GuardedResolver {
            allow_private: false,
        })
        .resolve(name)
        .await
        {
            Ok(_) => panic!("localhost was resolved for a route that does not allow it"),
            Err(err) => err.to_string(),
        };
        assert!(
            err.contains("localhost resolves to") && err.contains("loopback"),
            "{err}"
        );
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let found: Vec<SocketAddr> = GuardedResolver {
            allow_private: true,
        }
        .resolve(name)
        .await
        .unwrap()
        .collect();
        assert!(
            !found.is_empty() && found.iter().all(|address| address.ip().is_loopback()),
            "{found:?}"
        );
    }
}
