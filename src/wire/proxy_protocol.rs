//! The PROXY protocol (HAProxy, versions 1 and 2): the header a front puts before a forwarded
//! TCP stream to say who the real client was.
//!
//! Owns parsing a received header (v1 text or v2 binary, from a trusted front) and building a v2
//! header for a backend. Pure functions over bytes; reading and writing happen in the
//! listeners.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, BytesMut};

/// The 12 bytes that open every v2 header (chosen so that no valid v1 or HTTP text starts so).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line is at most 107 bytes including CRLF (the specification's worst case, TCP6).
pub const V1_MAX: usize = 107;
/// Longest v2 header we accept: the fixed 16 bytes plus addresses and a generous TLV area.
pub const V2_MAX: usize = 16 + 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("not a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
}

/// A complete header: how many bytes it took, and the client and the address it connected to
/// (`None` for v1 UNKNOWN and v2 LOCAL, which say "use the connection's own addresses").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub addrs: Option<(SocketAddr, SocketAddr)>,
}

/// Parse a header at the start of `buf`. `Ok(None)`: more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<Header>, ProxyHeaderError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let sig = &V2_SIGNATURE[..buf.len().min(12)];
    if buf[..sig.len()] == *sig {
        return if buf.len() < 16 {
            Ok(None)
        } else {
            parse_v2(buf)
        };
    }
    let v1 = b"PROXY ";
    if buf[..buf.len().min(6)] == v1[..buf.len().min(6)] {
        return parse_v1(buf);
    }
    Err(ProxyHeaderError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Option<Header>, ProxyHeaderError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyHeaderError::Malformed("v1 line too long"))
        } else {
            Ok(None)
        };
    };
    let len = end + 2;
    if len > V1_MAX {
        return Err(ProxyHeaderError::Malformed("v1 line too long"));
    }
    let line = std::str::from_utf8(&buf[6..end])
        .map_err(|_| ProxyHeaderError::Malformed("v1 not ASCII"))?;
    let mut parts = line.split(' ');
    let family = parts.next().unwrap_or("");
    if family == "UNKNOWN" {
        return Ok(Some(Header { len, addrs: None }));
    }
    let bad = ProxyHeaderError::Malformed("v1 fields");
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(bad);
    };
    let port = |p: &str| -> Result<u16, ProxyHeaderError> {
        // Decimal without leading zeros, as the specification requires.
        if p.is_empty() || (p.len() > 1 && p.starts_with('0')) {
            return Err(bad);
        }
        p.parse().map_err(|_| bad)
    };
    let (src, dst): (IpAddr, IpAddr) = match family {
        "TCP4" => (
            src.parse::<Ipv4Addr>().map_err(|_| bad)?.into(),
            dst.parse::<Ipv4Addr>().map_err(|_| bad)?.into(),
        ),
        "TCP6" => (
            src.parse::<Ipv6Addr>().map_err(|_| bad)?.into(),
            dst.parse::<Ipv6Addr>().map_err(|_| bad)?.into(),
        ),
        _ => return Err(ProxyHeaderError::Malformed("v1 family")),
    };
    Ok(Some(Header {
        len,
        addrs: Some((
            SocketAddr::new(src, port(sport)?),
            SocketAddr::new(dst, port(dport)?),
        )),
    }))
}

fn parse_v2(buf: &[u8]) -> Result<Option<Header>, ProxyHeaderError> {
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed("v2 version"));
    }
    let body_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body_len;
    if len > V2_MAX {
        return Err(ProxyHeaderError::Malformed("v2 header too long"));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let body = &buf[16..len];
    match ver_cmd & 0x0f {
        // LOCAL: a health check from the front itself; the connection's addresses stand.
        0 => return Ok(Some(Header { len, addrs: None })),
        1 => {}
        _ => return Err(ProxyHeaderError::Malformed("v2 command")),
    }
    let addrs = match buf[13] {
        // TCP over IPv4 / IPv6. Other families (UDP, UNIX, UNSPEC) carry no address we can use.
        0x11 => {
            if body.len() < 12 {
                return Err(ProxyHeaderError::Malformed("v2 IPv4 addresses"));
            }
            let ip = |o: usize| IpAddr::from([body[o], body[o + 1], body[o + 2], body[o + 3]]);
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            Some((
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            ))
        }
        0x21 => {
            if body.len() < 36 {
                return Err(ProxyHeaderError::Malformed("v2 IPv6 addresses"));
            }
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[o..o + 16]);
                IpAddr::from(a)
            };
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            Some((
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            ))
        }
        _ => None,
    };
    Ok(Some(Header { len, addrs }))
}

/// Append a v2 PROXY header for a TCP stream from `src` to `dst`. Mixed families are written
/// as IPv6 with the IPv4 address mapped.
pub fn build_v2(src: SocketAddr, dst: SocketAddr, out: &mut BytesMut) {
    out.put_slice(&V2_SIGNATURE);
    out.put_u8(0x21); // version 2, PROXY
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.put_u8(0x11);
            out.put_u16(12);
            out.put_slice(&s.octets());
            out.put_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            out.put_u8(0x21);
            out.put_u16(36);
            out.put_slice(&v6(s).octets());
            out.put_slice(&v6(d).octets());
        }
    }
    out.put_u16(src.port());
    out.put_u16(dst.port());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_lines() {
        let h = parse(b"PROXY TCP4 192.0.2.10 192.0.2.200 56324 443\r\nGET /")
            .unwrap()
            .unwrap();
        assert_eq!(h.len, 45);
        assert_eq!(
            h.addrs,
            Some((sa("192.0.2.10:56324"), sa("192.0.2.200:443")))
        );
        let h = parse(b"PROXY TCP6 2001:db8::1 2001:db8::200 1 80\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            h.addrs,
            Some((sa("[2001:db8::1]:1"), sa("[2001:db8::200]:80")))
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().addrs, None);
        assert_eq!(parse(b"PROXY TCP4 192.0.2.10").unwrap(), None);
        assert_eq!(parse(b"PRO").unwrap(), None);
        for bad in [
            &b"PROXY TCP4 192.0.2.10 192.0.2.200 056324 443\r\n"[..],
            b"PROXY TCP4 2001:db8::1 192.0.2.200 1 2\r\n",
            b"PROXY TCP5 a b 1 2\r\n",
            b"PROXY TCP4 192.0.2.10 192.0.2.200 70000 443\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyHeaderError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyHeaderError::Missing));
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(parse(&long).is_err());
    }

    /// A v2 header for TCP over IPv4, 192.0.2.10:40000 → 192.0.2.200:80, written out byte by byte
    /// from the specification (section 2.2), independently of `build_v2`.
    static V2_IPV4: [u8; 28] = [
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00,
        0x0c, 0xc0, 0x00, 0x02, 0x0a, 0xc0, 0x00, 0x02, 0xc8, 0x9c, 0x40, 0x00, 0x50,
    ];

    #[test]
    fn v2_round_trip_and_fixture() {
        let h = parse(&V2_IPV4).unwrap().unwrap();
        assert_eq!(h.len, 28);
        assert_eq!(
            h.addrs,
            Some((sa("192.0.2.10:40000"), sa("192.0.2.200:80")))
        );
        let mut out = BytesMut::new();
        build_v2(sa("192.0.2.10:40000"), sa("192.0.2.200:80"), &mut out);
        assert_eq!(&out[..], &V2_IPV4[..]);
        let mut out = BytesMut::new();
        build_v2(sa("[2001:db8::1]:5"), sa("192.0.2.200:80"), &mut out);
        let h = parse(&out).unwrap().unwrap();
        assert_eq!(h.len, 52);
        assert_eq!(h.addrs.unwrap().1, sa("[::ffff:192.0.2.200]:80"));
        assert_eq!(parse(&V2_IPV4[..20]).unwrap(), None);
        let mut local = V2_IPV4;
        local[12] = 0x20;
        assert_eq!(parse(&local).unwrap().unwrap().addrs, None);
        let mut bad = V2_IPV4;
        bad[12] = 0x11;
        assert!(parse(&bad).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Ok(Some(h)) = parse(&input) {
                proptest::prop_assert!(h.len <= input.len());
            }
        }
    }
}
