//! VRRPv3 advertisements for IPv4 and IPv6 (RFC 9568 section 5, which keeps RFC 5798's format):
//! the wire format, its checksum, and the receive checks of RFC 9568 section 7.1 that can be
//! made on the bytes alone.
//!
//! Owns: the advertisement as a checked view over bytes ([`AdvertPacket`]) and as a value
//! ([`AdvertRepr`]) with `parse`/`emit`; the checksum over the IPv4 or IPv6 pseudo-header;
//! [`parse_datagram`], which takes a whole IPv4 datagram as a raw socket hands it up and checks
//! protocol, fragmentation, TTL 255, version, type, length and checksum; and [`parse_v6`], the
//! same for an IPv6 advert, whose header a raw IPv6 socket does not hand up (the socket reads
//! the hop limit and destination from ancillary data). The address width (4 or 16 bytes)
//! follows the family of the sender's address. Does not own: sockets
//! (`socket`), which VRID or sender this node listens to (`router`), or what an advertisement
//! means for the election (`machine`).
//!
//! Invariants: nothing here panics on network input. [`AdvertPacket::new_checked`] checks the
//! length against the address count once, and every accessor reads inside that length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::Ipv4HeaderSlice;

/// IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// The IPv4 multicast group adverts go to unless unicast peers are configured.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group (RFC 9568 section 5.1.2.2), MAC 33:33:00:00:00:12.
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Adverts are sent with TTL 255 and a received one with any other TTL has crossed a router.
pub const TTL: u8 = 255;
/// Type of service keepalived and routers send adverts with: DSCP CS6 (network control).
pub const TOS: u8 = 0xc0;
/// The fixed part: version/type, VRID, priority, count, interval, checksum.
pub const HEADER_LEN: usize = 8;
/// Bytes per IPv4 address in an advert.
pub const IPV4_ADDR_LEN: usize = 4;
/// Bytes per IPv6 address in an advert.
pub const IPV6_ADDR_LEN: usize = 16;
/// Largest advert this crate builds or reads: the count field is one byte.
pub const MAX_LEN: usize = HEADER_LEN + 255 * IPV6_ADDR_LEN;

/// Bytes per address in an advert sent from `src`: the advert's family is the IP header's.
pub fn addr_len(src: IpAddr) -> usize {
    match src {
        IpAddr::V4(_) => IPV4_ADDR_LEN,
        IpAddr::V6(_) => IPV6_ADDR_LEN,
    }
}

const VERSION: u8 = 3;
const TYPE_ADVERTISEMENT: u8 = 1;
/// The interval field is the low 12 bits of its 16; the top 4 are reserved (sent as zero,
/// ignored on receive).
const INTERVAL_MASK: u16 = 0x0fff;
/// The largest advertisement interval the 12-bit field holds, in centiseconds.
pub const MAX_INTERVAL_CS: u16 = INTERVAL_MASK;

/// Why bytes are not an acceptable VRRPv3 advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("not an IPv4 datagram with a valid header")]
    IpHeader,
    #[error("IPv4 total length {total} larger than the {len} bytes received")]
    IpTruncated { total: usize, len: usize },
    #[error("IP protocol {0} is not VRRP (112)")]
    Protocol(u8),
    #[error("a fragment: adverts are never fragmented")]
    Fragment,
    #[error("TTL (hop limit) {0} is not 255: sent from beyond this link")]
    Ttl(u8),
    #[error("VRRP message truncated: {len} bytes, the header needs {HEADER_LEN}")]
    Truncated { len: usize },
    #[error("VRRP version {0} is not 3")]
    Version(u8),
    #[error("VRRP type {0} is not an advertisement (1)")]
    Type(u8),
    #[error("VRRP message of {len} bytes cannot hold the {count} addresses it announces")]
    Addresses { count: u8, len: usize },
    #[error("VRRP checksum {got:#06x}, expected {want:#06x}")]
    Checksum { got: u16, want: u16 },
}

mod field {
    pub const VERSION_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIORITY: usize = 2;
    pub const COUNT: usize = 3;
    pub const INTERVAL: std::ops::Range<usize> = 4..6;
    pub const CHECKSUM: std::ops::Range<usize> = 6..8;
}

/// A view of a VRRP message (the IP payload) whose length was checked against its address
/// count, so every accessor is panic-free.
#[derive(Debug, Clone)]
pub struct AdvertPacket<T: AsRef<[u8]>> {
    buffer: T,
    addr_len: usize,
}

impl<T: AsRef<[u8]>> AdvertPacket<T> {
    /// Checks that the header is there and that the addresses it counts fit, at `addr_len`
    /// bytes each ([`IPV4_ADDR_LEN`] or [`IPV6_ADDR_LEN`]). Trailing bytes (authentication
    /// data of older versions) are allowed and are covered by the checksum.
    pub fn new_checked(buffer: T, addr_len: usize) -> Result<Self, PacketError> {
        let bytes = buffer.as_ref();
        let len = bytes.len();
        if len < HEADER_LEN {
            return Err(PacketError::Truncated { len });
        }
        let count = bytes[field::COUNT];
        if len < HEADER_LEN + usize::from(count) * addr_len {
            return Err(PacketError::Addresses { count, len });
        }
        Ok(AdvertPacket { buffer, addr_len })
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn version(&self) -> u8 {
        self.bytes()[field::VERSION_TYPE] >> 4
    }

    pub fn kind(&self) -> u8 {
        self.bytes()[field::VERSION_TYPE] & 0x0f
    }

    pub fn vrid(&self) -> u8 {
        self.bytes()[field::VRID]
    }

    pub fn priority(&self) -> u8 {
        self.bytes()[field::PRIORITY]
    }

    pub fn count(&self) -> u8 {
        self.bytes()[field::COUNT]
    }

    /// Max Advertise Interval in centiseconds, reserved bits masked off.
    pub fn interval_cs(&self) -> u16 {
        let b = &self.bytes()[field::INTERVAL];
        u16::from_be_bytes([b[0], b[1]]) & INTERVAL_MASK
    }

    pub fn checksum(&self) -> u16 {
        let b = &self.bytes()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The announced addresses.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.bytes()[HEADER_LEN..HEADER_LEN + usize::from(self.count()) * self.addr_len]
            .chunks_exact(self.addr_len)
            .filter_map(|a| match a.len() {
                IPV4_ADDR_LEN => <[u8; 4]>::try_from(a).ok().map(IpAddr::from),
                _ => <[u8; 16]>::try_from(a).ok().map(IpAddr::from),
            })
    }
}

/// A VRRPv3 advertisement as a value. The addresses are of the family it is sent in (for
/// IPv6, RFC 5798 section 5.2.9 wants the virtual router's link-local address first; vipgate
/// has none, it answers at the interface's own MAC, and sends the VIPs as keepalived does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertRepr {
    pub vrid: u8,
    /// 0 means the sender is leaving the master role; 255 that it owns the addresses.
    pub priority: u8,
    /// Max Advertise Interval in centiseconds (12 bits).
    pub interval_cs: u16,
    pub addresses: Vec<IpAddr>,
}

impl AdvertRepr {
    /// Parses a VRRP message (the IP payload) and verifies its checksum against the pseudo-
    /// header of `src` and `dst` (both of one family, which sets the address width).
    pub fn parse(
        message: &[u8],
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
    ) -> Result<AdvertRepr, PacketError> {
        let (src, dst) = (src.into(), dst.into());
        let packet = AdvertPacket::new_checked(message, addr_len(src))?;
        if packet.version() != VERSION {
            return Err(PacketError::Version(packet.version()));
        }
        if packet.kind() != TYPE_ADVERTISEMENT {
            return Err(PacketError::Type(packet.kind()));
        }
        // A correct checksum field makes the sum over the whole message come out as zero.
        if checksum(src, dst, message) != 0 {
            let mut zeroed = message.to_vec();
            zeroed[field::CHECKSUM].fill(0);
            return Err(PacketError::Checksum {
                got: packet.checksum(),
                want: checksum(src, dst, &zeroed),
            });
        }
        Ok(AdvertRepr {
            vrid: packet.vrid(),
            priority: packet.priority(),
            interval_cs: packet.interval_cs(),
            addresses: packet.addresses().collect(),
        })
    }

    /// Length of the message `emit` writes.
    pub fn len(&self) -> usize {
        HEADER_LEN
            + self
                .addresses
                .iter()
                .take(255)
                .map(|a| addr_len(*a))
                .sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the message for sending from `src` to `dst` (the checksum covers both) into
    /// `out`, replacing what was there. At most 255 addresses are written: the count is a byte.
    /// Addresses of the other family than `src` cannot be in one advert and are left out.
    pub fn emit(&self, src: impl Into<IpAddr>, dst: impl Into<IpAddr>, out: &mut Vec<u8>) {
        let (src, dst) = (src.into(), dst.into());
        let addresses: Vec<IpAddr> = self
            .addresses
            .iter()
            .copied()
            .filter(|a| a.is_ipv4() == src.is_ipv4())
            .take(255)
            .collect();
        let count = addresses.len();
        out.clear();
        out.push((VERSION << 4) | TYPE_ADVERTISEMENT);
        out.push(self.vrid);
        out.push(self.priority);
        out.push(count as u8);
        out.extend_from_slice(&(self.interval_cs & INTERVAL_MASK).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        for a in &addresses {
            match a {
                IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
                IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
            }
        }
        let sum = checksum(src, dst, out);
        out[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    }
}

/// The Internet checksum (RFC 1071) of the pseudo-header (IPv4: source, destination, zero,
/// protocol 112, message length; IPv6: RFC 8200 section 8.1) followed by `message`, as RFC 9568
/// section 5.2.8 defines it. Over a message whose checksum field is zero it is the value to put
/// there; over a received message it is zero when the field is right.
pub fn checksum(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, message: &[u8]) -> u16 {
    super::checksum::pseudo_header(src.into(), dst.into(), PROTOCOL, message)
}

/// A received advertisement with the IPv4 header fields the election needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub advert: AdvertRepr,
}

/// Parses an IPv4 datagram as a raw IPv4 socket delivers it (header included) and applies the
/// checks RFC 9568 section 7.1 makes on the packet alone: TTL 255, version 3, type
/// advertisement, length, checksum. The VRID, the sender and the addresses are the caller's to
/// judge.
pub fn parse_datagram(datagram: &[u8]) -> Result<Received, PacketError> {
    let ip = Ipv4HeaderSlice::from_slice(datagram).map_err(|_| PacketError::IpHeader)?;
    let header_len = ip.slice().len();
    let total = usize::from(ip.total_len());
    if total > datagram.len() {
        return Err(PacketError::IpTruncated {
            total,
            len: datagram.len(),
        });
    }
    if total < header_len {
        return Err(PacketError::IpHeader);
    }
    if ip.protocol().0 != PROTOCOL {
        return Err(PacketError::Protocol(ip.protocol().0));
    }
    if ip.is_fragmenting_payload() {
        return Err(PacketError::Fragment);
    }
    if ip.ttl() != TTL {
        return Err(PacketError::Ttl(ip.ttl()));
    }
    let (src, dst) = (ip.source_addr().into(), ip.destination_addr().into());
    let advert = AdvertRepr::parse(&datagram[header_len..total], src, dst)?;
    Ok(Received { src, dst, advert })
}

/// Checks an IPv6 advert: `message` is the payload a raw IPv6 socket hands up, `src` its
/// sender, and `dst` and `hop_limit` what the kernel reported with it (IPV6_PKTINFO,
/// IPV6_HOPLIMIT). The same checks as [`parse_datagram`]: hop limit 255, version, type, length
/// and the checksum over the IPv6 pseudo-header.
pub fn parse_v6(
    message: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
) -> Result<Received, PacketError> {
    if hop_limit != TTL {
        return Err(PacketError::Ttl(hop_limit));
    }
    let advert = AdvertRepr::parse(message, src, dst)?;
    Ok(Received {
        src: src.into(),
        dst: dst.into(),
        advert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KA_SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
    const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);

    /// keepalived 2.2.7, `vrrp_version 3`, vrid 51, priority 150, `advert_int 1`, VIP
    /// 192.0.2.200, from 192.0.2.3 to 224.0.0.18: the IPv4 datagram as captured on the wire.
    static KEEPALIVED_MULTICAST: [u8; 32] = [
        0x45, 0xc0, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0x18, 0x97, 0xc0, 0x00, 0x02,
        0x03, 0xe0, 0x00, 0x00, 0x12, 0x31, 0x33, 0x96, 0x01, 0x00, 0x64, 0xd3, 0x0b, 0xc0, 0x00,
        0x02, 0xc8,
    ];
    /// The same instance with `unicast_peer { 192.0.2.10 }`: the checksum covers the unicast
    /// destination, so it differs from the multicast one.
    static KEEPALIVED_UNICAST: [u8; 32] = [
        0x45, 0xc0, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0x36, 0x9f, 0xc0, 0x00, 0x02,
        0x03, 0xc0, 0x00, 0x02, 0x0a, 0x31, 0x33, 0x96, 0x01, 0x00, 0x64, 0xf1, 0x13, 0xc0, 0x00,
        0x02, 0xc8,
    ];

    fn keepalived_advert() -> AdvertRepr {
        AdvertRepr {
            vrid: 51,
            priority: 150,
            interval_cs: 100,
            addresses: vec![VIP.into()],
        }
    }

    #[test]
    fn parses_keepalived_adverts() {
        let m = parse_datagram(&KEEPALIVED_MULTICAST).expect("multicast advert");
        assert_eq!((m.src, m.dst), (KA_SRC.into(), MULTICAST_V4.into()));
        assert_eq!(m.advert, keepalived_advert());
        let u = parse_datagram(&KEEPALIVED_UNICAST).expect("unicast advert");
        assert_eq!(
            (u.src, u.dst),
            (KA_SRC.into(), IpAddr::from(Ipv4Addr::new(192, 0, 2, 10)))
        );
        assert_eq!(u.advert, keepalived_advert());
    }

    #[test]
    fn emits_what_keepalived_sends() {
        let mut out = Vec::new();
        keepalived_advert().emit(KA_SRC, MULTICAST_V4, &mut out);
        assert_eq!(out, KEEPALIVED_MULTICAST[20..]);
        keepalived_advert().emit(KA_SRC, Ipv4Addr::new(192, 0, 2, 10), &mut out);
        assert_eq!(out, KEEPALIVED_UNICAST[20..]);
        assert_eq!(out.len(), keepalived_advert().len());
    }

    #[test]
    fn findings_advert_verifies_for_a_unicast_pair() {
        // FINDINGS.md quotes `31 33 96 01 00 64 f1 09 c0 00 02 c8` without its addresses. Its
        // checksum is ours from .3 to .10 (f1 13) minus 10, so it was sent between two
        // 192.0.2.x addresses whose last octets add up to 23, such as .3 and .20; the fields
        // read the same.
        let msg = [
            0x31, 0x33, 0x96, 0x01, 0x00, 0x64, 0xf1, 0x09, 0xc0, 0x00, 0x02, 0xc8,
        ];
        let r = AdvertRepr::parse(&msg, KA_SRC, Ipv4Addr::new(192, 0, 2, 20)).expect("valid");
        assert_eq!(r, keepalived_advert());
    }

    #[test]
    fn round_trips_many_addresses_and_priority_zero() {
        let a = AdvertRepr {
            vrid: 1,
            priority: 0,
            interval_cs: MAX_INTERVAL_CS,
            addresses: (1..=20)
                .map(|i| Ipv4Addr::new(198, 51, 100, i).into())
                .collect(),
        };
        let (src, dst) = (Ipv4Addr::new(203, 0, 113, 1), MULTICAST_V4);
        let mut out = Vec::new();
        a.emit(src, dst, &mut out);
        assert_eq!(out.len(), HEADER_LEN + 80);
        assert_eq!(AdvertRepr::parse(&out, src, dst), Ok(a));
    }

    #[test]
    fn reserved_interval_bits_are_ignored() {
        let mut msg = KEEPALIVED_MULTICAST[20..].to_vec();
        msg[4] |= 0xf0;
        msg[6..8].fill(0);
        let sum = checksum(KA_SRC, MULTICAST_V4, &msg);
        msg[6..8].copy_from_slice(&sum.to_be_bytes());
        let r = AdvertRepr::parse(&msg, KA_SRC, MULTICAST_V4).unwrap();
        assert_eq!(r.interval_cs, 100);
    }

    /// (name, how to damage the keepalived datagram, expected error)
    #[test]
    fn bad_datagrams_are_refused() {
        type Damage = fn(&mut Vec<u8>);
        let cases: [(&str, Damage, PacketError); 10] = [
            ("ttl 64", |d| d[8] = 64, PacketError::Ttl(64)),
            ("protocol 17", |d| d[9] = 17, PacketError::Protocol(17)),
            ("more fragments", |d| d[6] = 0x20, PacketError::Fragment),
            (
                "truncated ip",
                |d| d.truncate(30),
                PacketError::IpTruncated { total: 32, len: 30 },
            ),
            ("not ipv4", |d| d[0] = 0x65, PacketError::IpHeader),
            ("version 2", |d| d[20] = 0x21, PacketError::Version(2)),
            ("type 2", |d| d[20] = 0x32, PacketError::Type(2)),
            (
                "count beyond the end",
                |d| d[23] = 2,
                PacketError::Addresses { count: 2, len: 12 },
            ),
            (
                "short header",
                |d| {
                    d.truncate(26);
                    d[3] = 26;
                },
                PacketError::Truncated { len: 6 },
            ),
            (
                "flipped address bit",
                |d| d[31] ^= 1,
                PacketError::Checksum {
                    got: 0xd30b,
                    want: 0xd30a,
                },
            ),
        ];
        for (name, damage, want) in cases {
            let mut d = KEEPALIVED_MULTICAST.to_vec();
            damage(&mut d);
            assert_eq!(parse_datagram(&d), Err(want), "{name}");
        }
        assert_eq!(parse_datagram(&[]), Err(PacketError::IpHeader));
    }

    #[test]
    fn checksum_depends_on_the_destination() {
        // An advert replayed to another destination must not verify.
        let msg = &KEEPALIVED_UNICAST[20..];
        assert!(AdvertRepr::parse(msg, KA_SRC, MULTICAST_V4).is_err());
    }

    // keepalived 2.2.7 over IPv6, `vrrp_version 3`, vrid 51, priority 150, `advert_int 1`,
    // `virtual_ipaddress { 2001:db8::200/128 }`, on eth0 at 02:00:00:00:00:01 (fe80::ff:fe00:1)
    // in a network namespace; captured with `tcpdump -xx -e` from the veth peer. Ethernet
    // frames: the IPv6 header is at 14, the advert at 54. keepalived logged "the first IPv6
    // VIP address should be link local" and sent the VIP alone.
    const KA6_SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 1);
    const KA6_PEER: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 2);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x200);

    /// To ff02::12 (traffic class 0xc0, hop limit 255).
    static KEEPALIVED_V6_MULTICAST: [u8; 78] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x12, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x6c,
        0x00, 0xd2, 0x89, 0x00, 0x18, 0x70, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x01, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x31, 0x33, 0x96, 0x01, 0x00, 0x64,
        0x0b, 0x8f, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x02, 0x00,
    ];

    /// The priority 0 advert it sent on SIGTERM.
    static KEEPALIVED_V6_PRIO0: [u8; 78] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x12, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x6c,
        0x00, 0xd2, 0x89, 0x00, 0x18, 0x70, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x01, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x31, 0x33, 0x00, 0x01, 0x00, 0x64,
        0xa1, 0x8f, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x02, 0x00,
    ];

    /// With `unicast_peer { fe80::ff:fe00:2 }`: note hop limit 64 (byte 21), which RFC 9568
    /// 7.1 makes the receiver drop; keepalived 2.2.7 sets 255 only for multicast over IPv6.
    static KEEPALIVED_V6_UNICAST: [u8; 78] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x6c,
        0x04, 0x35, 0x0c, 0x00, 0x18, 0x70, 0x40, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x01, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x02, 0x31, 0x33, 0x96, 0x01, 0x00, 0x64,
        0x0d, 0x21, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x02, 0x00,
    ];

    fn ipv6_fields(frame: &[u8]) -> (Ipv6Addr, Ipv6Addr, u8, &[u8]) {
        let at = |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&frame[o..o + 16]).unwrap());
        (at(22), at(38), frame[21], &frame[54..])
    }

    fn keepalived_v6_advert(priority: u8) -> AdvertRepr {
        AdvertRepr {
            vrid: 51,
            priority,
            interval_cs: 100,
            addresses: vec![VIP6.into()],
        }
    }

    #[test]
    fn parses_keepalived_ipv6_adverts() {
        let (src, dst, hops, msg) = ipv6_fields(&KEEPALIVED_V6_MULTICAST);
        assert_eq!((src, dst, hops), (KA6_SRC, MULTICAST_V6, 255));
        let r = parse_v6(msg, src, dst, hops).expect("multicast advert");
        assert_eq!(r.advert, keepalived_v6_advert(150));
        assert_eq!(r.src, IpAddr::from(KA6_SRC));

        let (src, dst, hops, msg) = ipv6_fields(&KEEPALIVED_V6_PRIO0);
        assert_eq!(
            parse_v6(msg, src, dst, hops).map(|r| r.advert),
            Ok(keepalived_v6_advert(0))
        );

        let (src, dst, hops, msg) = ipv6_fields(&KEEPALIVED_V6_UNICAST);
        assert_eq!((src, dst), (KA6_SRC, KA6_PEER));
        assert_eq!(parse_v6(msg, src, dst, hops), Err(PacketError::Ttl(64)));
        // Everything but the hop limit is right.
        assert_eq!(
            AdvertRepr::parse(msg, src, dst),
            Ok(keepalived_v6_advert(150))
        );
    }

    #[test]
    fn emits_what_keepalived_sends_over_ipv6() {
        let mut out = Vec::new();
        for (frame, priority) in [(&KEEPALIVED_V6_MULTICAST, 150), (&KEEPALIVED_V6_PRIO0, 0)] {
            let (src, dst, _, msg) = ipv6_fields(frame);
            keepalived_v6_advert(priority).emit(src, dst, &mut out);
            assert_eq!(out, msg);
        }
        assert_eq!(keepalived_v6_advert(150).len(), HEADER_LEN + IPV6_ADDR_LEN);
    }

    #[test]
    fn ipv6_advert_checks() {
        let (src, dst, hops, msg) = ipv6_fields(&KEEPALIVED_V6_MULTICAST);
        // 16-byte addresses: a count of 2 does not fit in 24 bytes.
        let mut two = msg.to_vec();
        two[3] = 2;
        assert_eq!(
            parse_v6(&two, src, dst, hops),
            Err(PacketError::Addresses { count: 2, len: 24 })
        );
        // Replayed to another destination.
        assert!(parse_v6(msg, src, KA6_PEER, hops).is_err());
        // Mixed families never share an advert.
        let mut mixed = keepalived_v6_advert(150);
        mixed.addresses.push(Ipv4Addr::new(192, 0, 2, 200).into());
        let mut out = Vec::new();
        mixed.emit(src, dst, &mut out);
        assert_eq!(out, msg);
    }
}
