//! Who the client really is, and what the backend is told about the request's path to us.
//!
//! Owns the trust rule: forwarded-for claims are believed only from `trusted_proxies`, and then
//! only as far back as the chain stays trusted (the rightmost address that is not a trusted
//! proxy is the client, as nginx's `real_ip_recursive` does). Pure: headers in, address out.

use std::net::IpAddr;

use crate::config::{ClientIpHeader, ProxySettings};
use crate::proxy::http1::tokens;

fn trusted(settings: &ProxySettings, ip: IpAddr) -> bool {
    settings.trusted_proxies.iter().any(|c| c.contains(ip))
}

/// Whether the TCP peer is a front we trust (a CDN, a router): its headers are believed.
pub fn peer_is_trusted(settings: &ProxySettings, peer: IpAddr) -> bool {
    trusted(settings, peer)
}

/// The real client address of a request that arrived from `peer`.
pub fn client_ip(
    settings: &ProxySettings,
    peer: IpAddr,
    headers: &[httparse::Header<'_>],
) -> IpAddr {
    if !trusted(settings, peer) {
        return peer;
    }
    match settings.client_ip_header {
        ClientIpHeader::CfConnectingIp => headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("cf-connecting-ip"))
            .and_then(|h| parse_ip(tokens::trim(h.value)))
            .unwrap_or(peer),
        ClientIpHeader::XForwardedFor => {
            let mut chain: Vec<IpAddr> = Vec::new();
            for h in headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
            {
                for item in tokens::list(h.value) {
                    match parse_ip(item) {
                        Some(ip) => chain.push(ip),
                        // A garbled element ends what can be believed: start over after it.
                        None => chain.clear(),
                    }
                }
            }
            let mut client = peer;
            for ip in chain.into_iter().rev() {
                client = ip;
                if !trusted(settings, ip) {
                    break;
                }
            }
            client
        }
    }
}

fn parse_ip(s: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(s).ok()?;
    // "[2001:db8::1]:443" and "192.0.2.1:443" appear in the wild; the port is not ours.
    let s = s
        .strip_prefix('[')
        .and_then(|r| r.split(']').next())
        .unwrap_or(s);
    s.parse()
        .ok()
        .or_else(|| s.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;

    fn settings(header: ClientIpHeader) -> ProxySettings {
        ProxySettings {
            trusted_proxies: vec![
                Cidr::new("203.0.113.0".parse().unwrap(), 24).unwrap(),
                Cidr::new("198.51.100.7".parse().unwrap(), 32).unwrap(),
            ],
            client_ip_header: header,
            ..ProxySettings::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let s = settings(ClientIpHeader::XForwardedFor);
        let h = [httparse::Header {
            name: "X-Forwarded-For",
            value: b"192.0.2.99, 198.51.100.7",
        }];
        let cases = [
            ("192.0.2.10", "192.0.2.10"),  // untrusted peer: its claim is ignored
            ("203.0.113.5", "192.0.2.99"), // trusted peer, trusted hop, then the client
        ];
        for (peer, want) in cases {
            assert_eq!(client_ip(&s, ip(peer), &h), ip(want), "{peer}");
        }
        let forged = [
            httparse::Header {
                name: "X-Forwarded-For",
                value: b"10.9.9.9",
            },
            httparse::Header {
                name: "x-forwarded-for",
                value: b"192.0.2.50",
            },
        ];
        // The rightmost untrusted address wins; a client cannot hide behind a prepended one.
        assert_eq!(client_ip(&s, ip("203.0.113.5"), &forged), ip("192.0.2.50"));
        let garbled = [httparse::Header {
            name: "X-Forwarded-For",
            value: b"192.0.2.1, junk",
        }];
        assert_eq!(
            client_ip(&s, ip("203.0.113.5"), &garbled),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn cf_connecting_ip() {
        let s = settings(ClientIpHeader::CfConnectingIp);
        let h = [httparse::Header {
            name: "CF-Connecting-IP",
            value: b" 2001:db8::5 ",
        }];
        assert_eq!(client_ip(&s, ip("203.0.113.5"), &h), ip("2001:db8::5"));
        assert_eq!(client_ip(&s, ip("192.0.2.1"), &h), ip("192.0.2.1"));
        assert_eq!(client_ip(&s, ip("203.0.113.5"), &[]), ip("203.0.113.5"));
    }
}
