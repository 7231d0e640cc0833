//! Who is calling: the client address behind trusted proxies, and the optional allow-list.
//!
//! `X-Forwarded-For` and `Forwarded` are written by whoever sends the request, so only the one
//! header the operator's proxy sets (`auth.forwarded_header`) is read, only when the connection
//! comes from a configured trusted proxy, and then only up to the first address that is not
//! itself a trusted proxy (walking from the nearest hop back). The other header is ignored: a
//! proxy that sets one passes the other through from the client untouched.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use axum::http::header::FORWARDED;
use ipnet::IpNet;

use crate::config::ForwardedHeader;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

#[derive(Debug, Clone, Default)]
pub struct SourcePolicy {
    /// Empty: every address may call.
    allowed: Vec<IpNet>,
    trusted_proxies: Vec<IpNet>,
    forwarded_header: ForwardedHeader,
}

impl SourcePolicy {
    pub fn new(
        allowed: &[IpNet],
        trusted_proxies: &[IpNet],
        forwarded_header: ForwardedHeader,
    ) -> Self {
        Self {
            allowed: allowed.to_vec(),
            trusted_proxies: trusted_proxies.to_vec(),
            forwarded_header,
        }
    }

    fn trusted(&self, address: IpAddr) -> bool {
        self.trusted_proxies
            .iter()
            .any(|network| network.contains(&address))
    }

    /// The caller's address: the peer, unless the peer is a trusted proxy, in which case the
    /// nearest forwarded address that is not a trusted proxy.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.ip().to_canonical();
        if !self.trusted(peer) {
            return peer;
        }
        let hops = forwarded_hops(headers, self.forwarded_header);
        hops.iter()
            .rev()
            .copied()
            .find(|hop| !self.trusted(*hop))
            .or_else(|| hops.first().copied())
            .unwrap_or(peer)
    }

    /// Without a known peer address (a router served without connection info), only an open
    /// policy lets the request in.
    pub fn allows_unknown(&self) -> bool {
        self.allowed.is_empty()
    }

    pub fn allows(&self, client: IpAddr) -> bool {
        self.allowed.is_empty() || self.allowed.iter().any(|network| network.contains(&client))
    }
}

/// Forwarded addresses, farthest first, from the one configured header: `Forwarded: for=`
/// (RFC 7239) or `X-Forwarded-For`. A hop that is not an address (`unknown`, an obfuscated
/// name) ends the chain there, since nothing before it can be attributed.
fn forwarded_hops(headers: &HeaderMap, header: ForwardedHeader) -> Vec<IpAddr> {
    let name = match header {
        ForwardedHeader::XForwardedFor => X_FORWARDED_FOR,
        ForwardedHeader::Forwarded => FORWARDED.as_str(),
    };
    let elements = headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    let hops: Vec<String> = match header {
        ForwardedHeader::XForwardedFor => elements.map(|hop| hop.trim().to_owned()).collect(),
        ForwardedHeader::Forwarded => elements
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.eq_ignore_ascii_case("for")
                        .then(|| value.trim().trim_matches('"').to_owned())
                })
            })
            .collect(),
    };
    let mut parsed = Vec::with_capacity(hops.len());
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(address) => parsed.push(address),
            None => break,
        }
    }
    parsed.reverse();
    parsed
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]`, `[2001:db8::1]:443` or `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(address) = hop.parse::<IpAddr>() {
        return Some(address.to_canonical());
    }
    if let Ok(socket) = hop.parse::<SocketAddr>() {
        return Some(socket.ip().to_canonical());
    }
    hop.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(address, _)| address.parse::<IpAddr>().ok())
        .map(|address| address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|net| net.parse().expect("CIDR")).collect()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("header value"));
        }
        map
    }

    fn peer(address: &str) -> SocketAddr {
        SocketAddr::new(address.parse().expect("address"), 40_000)
    }

    #[test]
    fn forwarding_headers_are_ignored_unless_the_peer_is_a_trusted_proxy() {
        let policy = SourcePolicy::new(&[], &nets(&["10.0.0.0/8"]), ForwardedHeader::default());
        let spoofed = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            policy.client_ip(peer("198.51.100.7"), &spoofed),
            "198.51.100.7".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(
            policy.client_ip(peer("10.1.2.3"), &spoofed),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
        let by_default = SourcePolicy::default();
        assert_eq!(
            by_default.client_ip(peer("10.1.2.3"), &spoofed),
            "10.1.2.3".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_hop_not_the_first_one_claimed() {
        let policy = SourcePolicy::new(
            &[],
            &nets(&["10.0.0.0/8", "192.168.0.0/16"]),
            ForwardedHeader::XForwardedFor,
        );
        // A client forged "1.1.1.1"; the real client 203.0.113.9 went through two proxies.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 192.168.1.1")]);
        assert_eq!(
            policy.client_ip(peer("10.0.0.2"), &chain),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
        let split = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(
            policy.client_ip(peer("10.0.0.2"), &split),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn only_the_configured_header_is_read_the_other_is_the_clients_word() {
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        let both = headers(&[
            ("x-forwarded-for", "198.51.100.9"),
            ("forwarded", "for=203.0.113.5"),
        ]);
        let by_xff = SourcePolicy::new(&[], &nets(&["127.0.0.0/8"]), ForwardedHeader::default());
        assert_eq!(
            by_xff.client_ip(peer("127.0.0.1"), &both),
            ip("198.51.100.9")
        );
        let by_forwarded =
            SourcePolicy::new(&[], &nets(&["127.0.0.0/8"]), ForwardedHeader::Forwarded);
        assert_eq!(
            by_forwarded.client_ip(peer("127.0.0.1"), &both),
            ip("203.0.113.5")
        );
        let xff_only = headers(&[("x-forwarded-for", "198.51.100.9")]);
        assert_eq!(
            by_forwarded.client_ip(peer("127.0.0.1"), &xff_only),
            ip("127.0.0.1"),
            "X-Forwarded-For is ignored when the proxy sets Forwarded"
        );
    }

    #[test]
    fn rfc_7239_forwarded_understands_ports_and_ipv6() {
        let policy = SourcePolicy::new(&[], &nets(&["10.0.0.0/8"]), ForwardedHeader::Forwarded);
        let forwarded = headers(&[
            (
                "forwarded",
                r#"for="[2001:db8::7]:4711";proto=https, for=10.0.0.9"#,
            ),
            ("x-forwarded-for", "1.1.1.1"),
        ]);
        assert_eq!(
            policy.client_ip(peer("10.0.0.2"), &forwarded),
            "2001:db8::7".parse::<IpAddr>().expect("ip")
        );
        let unknown = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(
            policy.client_ip(peer("10.0.0.2"), &unknown),
            "10.0.0.2".parse::<IpAddr>().expect("ip"),
            "an unattributable hop leaves the proxy as the client"
        );
    }

    #[test]
    fn the_allow_list_takes_ipv4_ipv6_and_mapped_addresses() {
        let policy = SourcePolicy::new(
            &nets(&["203.0.113.0/24", "2001:db8::/32"]),
            &[],
            ForwardedHeader::default(),
        );
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        assert!(policy.allows(ip("203.0.113.200")));
        assert!(policy.allows(ip("2001:db8:1::5")));
        assert!(!policy.allows(ip("198.51.100.1")));
        assert_eq!(
            policy.client_ip(peer("::ffff:203.0.113.5"), &HeaderMap::new()),
            ip("203.0.113.5")
        );
        assert!(SourcePolicy::default().allows(ip("198.51.100.1")));
    }
}
