//! VRRPv3 advertisements for IPv4 (RFC 9568 section 5, which keeps RFC 5798's format): the wire
//! format, its checksum, and the receive checks of RFC 9568 section 7.1 that can be made on the
//! bytes alone.
//!
//! Owns: the advertisement as a checked view over bytes ([`AdvertPacket`]) and as a value
//! ([`AdvertRepr`]) with `parse`/`emit`; the checksum over the IPv4 pseudo-header; and
//! [`parse_datagram`], which takes a whole IPv4 datagram as a raw socket hands it up and checks
//! protocol, fragmentation, TTL 255, version, type, length and checksum. Does not own: sockets
//! (`socket`), which VRID or sender this node listens to (`router`), or what an advertisement
//! means for the election (`machine`).
//!
//! Invariants: nothing here panics on network input. [`AdvertPacket::new_checked`] checks the
//! length against the address count once, and every accessor reads inside that length.

use std::net::Ipv4Addr;

use etherparse::Ipv4HeaderSlice;

/// IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// The IPv4 multicast group adverts go to unless unicast peers are configured.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// Adverts are sent with TTL 255 and a received one with any other TTL has crossed a router.
pub const TTL: u8 = 255;
/// Type of service keepalived and routers send adverts with: DSCP CS6 (network control).
pub const TOS: u8 = 0xc0;
/// The fixed part: version/type, VRID, priority, count, interval, checksum.
pub const HEADER_LEN: usize = 8;
/// Bytes per IPv4 address in an advert.
pub const IPV4_ADDR_LEN: usize = 4;
/// Largest advert this crate builds or reads: the count field is one byte.
pub const MAX_LEN: usize = HEADER_LEN + 255 * IPV4_ADDR_LEN;

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
    #[error("TTL {0} is not 255: sent from beyond this link")]
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
}

impl<T: AsRef<[u8]>> AdvertPacket<T> {
    /// Checks that the header is there and that the addresses it counts fit. Trailing bytes
    /// (authentication data of older versions) are allowed and are covered by the checksum.
    pub fn new_checked(buffer: T) -> Result<Self, PacketError> {
        let bytes = buffer.as_ref();
        let len = bytes.len();
        if len < HEADER_LEN {
            return Err(PacketError::Truncated { len });
        }
        let count = bytes[field::COUNT];
        if len < HEADER_LEN + usize::from(count) * IPV4_ADDR_LEN {
            return Err(PacketError::Addresses { count, len });
        }
        Ok(AdvertPacket { buffer })
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

    /// The announced IPv4 addresses.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.bytes()[HEADER_LEN..HEADER_LEN + usize::from(self.count()) * IPV4_ADDR_LEN]
            .chunks_exact(IPV4_ADDR_LEN)
            .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    }
}

/// An IPv4 VRRPv3 advertisement as a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertRepr {
    pub vrid: u8,
    /// 0 means the sender is leaving the master role; 255 that it owns the addresses.
    pub priority: u8,
    /// Max Advertise Interval in centiseconds (12 bits).
    pub interval_cs: u16,
    pub addresses: Vec<Ipv4Addr>,
}

impl AdvertRepr {
    /// Parses a VRRP message (the IP payload) and verifies its checksum against the IPv4
    /// pseudo-header of `src` and `dst`.
    pub fn parse(message: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<AdvertRepr, PacketError> {
        let packet = AdvertPacket::new_checked(message)?;
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
        HEADER_LEN + self.addresses.len().min(255) * IPV4_ADDR_LEN
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the message for sending from `src` to `dst` (the checksum covers both) into
    /// `out`, replacing what was there. At most 255 addresses are written: the count is a byte.
    pub fn emit(&self, src: Ipv4Addr, dst: Ipv4Addr, out: &mut Vec<u8>) {
        let count = self.addresses.len().min(255);
        out.clear();
        out.push((VERSION << 4) | TYPE_ADVERTISEMENT);
        out.push(self.vrid);
        out.push(self.priority);
        out.push(count as u8);
        out.extend_from_slice(&(self.interval_cs & INTERVAL_MASK).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        for a in &self.addresses[..count] {
            out.extend_from_slice(&a.octets());
        }
        let sum = checksum(src, dst, out);
        out[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    }
}

/// The Internet checksum (RFC 1071) of the IPv4 pseudo-header (source, destination, zero,
/// protocol 112, message length) followed by `message`, as RFC 9568 section 5.2.8 defines it.
/// Over a message whose checksum field is zero it is the value to put there; over a received
/// message it is zero when the field is right.
pub fn checksum(src: Ipv4Addr, dst: Ipv4Addr, message: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = match *pair {
                [hi, lo] => u16::from_be_bytes([hi, lo]),
                [hi] => u16::from_be_bytes([hi, 0]),
                _ => 0,
            };
            sum += u32::from(word);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&[0, PROTOCOL]);
    // MAX_LEN-bounded in practice; a larger message is not ours to sum correctly anyway.
    add(&(message.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A received advertisement with the IPv4 header fields the election needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
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
    let (src, dst) = (ip.source_addr(), ip.destination_addr());
    let advert = AdvertRepr::parse(&datagram[header_len..total], src, dst)?;
    Ok(Received { src, dst, advert })
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
            addresses: vec![VIP],
        }
    }

    #[test]
    fn parses_keepalived_adverts() {
        let m = parse_datagram(&KEEPALIVED_MULTICAST).expect("multicast advert");
        assert_eq!((m.src, m.dst), (KA_SRC, MULTICAST_V4));
        assert_eq!(m.advert, keepalived_advert());
        let u = parse_datagram(&KEEPALIVED_UNICAST).expect("unicast advert");
        assert_eq!((u.src, u.dst), (KA_SRC, Ipv4Addr::new(192, 0, 2, 10)));
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
            addresses: (1..=20).map(|i| Ipv4Addr::new(198, 51, 100, i)).collect(),
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

    #[test]
    fn odd_length_checksum_pads_with_zero() {
        // RFC 1071: an odd trailing byte is summed as the high byte of a word.
        let s = Ipv4Addr::new(0, 0, 0, 0);
        assert_eq!(checksum(s, s, &[0xab]), !(u16::from(PROTOCOL) + 1 + 0xab00));
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
}
