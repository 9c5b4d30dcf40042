//! IPv6 Neighbor Discovery (RFC 4861) for a VIP: the wire format of Neighbor Solicitations and
//! Advertisements over Ethernet, and the rule for which solicitations the owner of a VIP
//! answers. The IPv6 counterpart of `arp`.
//!
//! Owns: NS/NA as a checked view over the ICMPv6 bytes ([`NdpPacket`]) and as a value
//! ([`NdpRepr`]); the receive checks of RFC 4861 sections 7.1.1 and 7.1.2 (hop limit 255, code
//! 0, the checksum over the IPv6 pseudo-header, a unicast target, option lengths, the rules for
//! an unspecified source); the 86-byte frames vipgate sends (solicited and unsolicited
//! advertisements); and [`decide`], the pure decision whether a received frame gets an answer.
//! Does not own: sockets, the timing of the unsolicited burst, counters (`announcer`), nor
//! whether this node should own the VIP (`ha`).
//!
//! Invariants:
//! - Nothing here panics on network input: [`NdpPacket::new_checked`] checks the length once
//!   and every accessor reads inside it; options are walked with bounds checks.
//! - Only an ICMPv6 message right after the fixed IPv6 header is understood. NDP messages with
//!   extension headers exist in theory; no stack sends them, and guessing is worse than
//!   refusing ([`NdpError::NextHeader`]).
//! - Frames built here are exactly [`FRAME_LEN`] bytes, with traffic class and flow label 0,
//!   as the kernel sends its own advertisements.

use std::net::{IpAddr, Ipv6Addr};
use std::ops::Range;

use super::arp::{EthernetAddrs, MacAddr, ETHERNET_HEADER_LEN};
use super::checksum;

/// The IPv6 ethertype.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Length of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// IPv6 next header value of ICMPv6.
pub const NEXT_HEADER_ICMPV6: u8 = 58;
/// ICMPv6 types of Neighbor Solicitation and Neighbor Advertisement.
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;
/// NDP messages are sent with hop limit 255 and one received with any other value was
/// forwarded by a router, so it did not come from this link (RFC 4861 section 7.1).
pub const HOP_LIMIT: u8 = 255;
/// The fixed part of NS and NA: type, code, checksum, flags/reserved, target.
pub const MESSAGE_LEN: usize = 24;
/// NS and NA with one link-layer address option, as vipgate sends them.
pub const MESSAGE_WITH_LLA_LEN: usize = MESSAGE_LEN + 8;
/// Length of every frame vipgate sends: Ethernet, IPv6, NA with a target link-layer option.
pub const FRAME_LEN: usize = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + MESSAGE_WITH_LLA_LEN;

/// An Ethernet frame carrying a Neighbor Advertisement, as vipgate builds it.
pub type Frame = [u8; FRAME_LEN];

/// ff02::1, all nodes on the link.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

const OPTION_SOURCE_LLA: u8 = 1;
const OPTION_TARGET_LLA: u8 = 2;

const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// The solicited-node multicast address of `ip` (RFC 4291 section 2.7.1): ff02::1:ffXX:XXXX
/// with the low 24 bits of `ip`. Resolving an address sends the NS there.
pub fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// The Ethernet group address an IPv6 multicast address maps to (RFC 2464 section 7):
/// 33:33 and the address's low 32 bits.
pub fn multicast_mac(group: Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// Why bytes are not an acceptable NS or NA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NdpError {
    #[error("Ethernet frame truncated: {len} bytes")]
    FrameTruncated { len: usize },
    #[error("ethertype {0:#06x} is not IPv6 (0x86dd)")]
    NotIpv6(u16),
    #[error("IPv6 header truncated or not version 6")]
    IpHeader,
    #[error("IPv6 payload length {payload} larger than the {len} bytes received")]
    IpTruncated { payload: usize, len: usize },
    #[error("IPv6 next header {0} is not ICMPv6 (58)")]
    NextHeader(u8),
    #[error("hop limit {0} is not 255: sent from beyond this link")]
    HopLimit(u8),
    #[error("ICMPv6 message of {len} bytes is shorter than an NS/NA ({MESSAGE_LEN})")]
    Truncated { len: usize },
    #[error("ICMPv6 type {0} is not a Neighbor Solicitation or Advertisement")]
    NotNdp(u8),
    #[error("ICMPv6 code {0} is not 0")]
    Code(u8),
    #[error("ICMPv6 checksum {got:#06x}, expected {want:#06x}")]
    Checksum { got: u16, want: u16 },
    #[error("target {0} is a multicast address")]
    MulticastTarget(Ipv6Addr),
    #[error("an option has length 0 or runs past the message")]
    OptionLength,
    #[error("source {0} is a multicast address")]
    MulticastSource(Ipv6Addr),
    #[error("a DAD solicitation (unspecified source) to {0}, not a solicited-node address")]
    DadDestination(Ipv6Addr),
    #[error("a DAD solicitation (unspecified source) with a source link-layer option")]
    DadWithSourceLla,
    #[error("an advertisement to multicast {0} with the Solicited flag")]
    SolicitedToMulticast(Ipv6Addr),
}

mod field {
    use std::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const FLAGS: usize = 4;
    pub const TARGET: Range<usize> = 8..24;
    pub const OPTIONS: usize = 24;
}

/// A view of an ICMPv6 NS or NA message whose length was checked, so every accessor is
/// panic-free. It checks only the length; [`NdpRepr::parse`] applies the rules.
#[derive(Debug, Clone)]
pub struct NdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NdpPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self, NdpError> {
        let len = buffer.as_ref().len();
        if len < MESSAGE_LEN {
            return Err(NdpError::Truncated { len });
        }
        Ok(NdpPacket { buffer })
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn msg_type(&self) -> u8 {
        self.bytes()[field::TYPE]
    }

    pub fn code(&self) -> u8 {
        self.bytes()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        let b = &self.bytes()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The R, S, O bits of an NA (reserved, zero, in an NS).
    pub fn flags(&self) -> u8 {
        self.bytes()[field::FLAGS]
    }

    pub fn target(&self) -> Ipv6Addr {
        let mut o = [0u8; 16];
        o.copy_from_slice(&self.bytes()[field::TARGET]);
        Ipv6Addr::from(o)
    }

    /// The link-layer address in the first option of `kind` (6 bytes at the start of its data,
    /// RFC 2464 section 8). Every option is walked: one with length 0 or running past the end
    /// makes the whole message invalid (RFC 4861 section 7.1.1).
    pub fn link_layer_option(&self, kind: u8) -> Result<Option<MacAddr>, NdpError> {
        let bytes = self.bytes();
        let mut at = field::OPTIONS;
        let mut found = None;
        while at < bytes.len() {
            let (Some(&this), Some(&units)) = (bytes.get(at), bytes.get(at + 1)) else {
                return Err(NdpError::OptionLength);
            };
            let len = usize::from(units) * 8;
            let Some(option) = bytes.get(at..at + len).filter(|_| len > 0) else {
                return Err(NdpError::OptionLength);
            };
            if this == kind && found.is_none() {
                found = option
                    .get(2..8)
                    .map(|b| MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]]));
            }
            at += len;
        }
        Ok(found)
    }
}

/// The flags of a Neighbor Advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdvertFlags {
    pub router: bool,
    pub solicited: bool,
    pub override_: bool,
}

impl AdvertFlags {
    fn from_byte(b: u8) -> AdvertFlags {
        AdvertFlags {
            router: b & FLAG_ROUTER != 0,
            solicited: b & FLAG_SOLICITED != 0,
            override_: b & FLAG_OVERRIDE != 0,
        }
    }

    fn to_byte(self) -> u8 {
        (if self.router { FLAG_ROUTER } else { 0 })
            | (if self.solicited { FLAG_SOLICITED } else { 0 })
            | (if self.override_ { FLAG_OVERRIDE } else { 0 })
    }
}

/// An NS or NA as a value (the link-layer options vipgate reads or writes; others are
/// skipped on receive, such as the DAD nonce of RFC 7527).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpRepr {
    Solicit {
        target: Ipv6Addr,
        source_mac: Option<MacAddr>,
    },
    Advert {
        flags: AdvertFlags,
        target: Ipv6Addr,
        target_mac: Option<MacAddr>,
    },
}

impl NdpRepr {
    /// Parses an ICMPv6 message sent from `src` to `dst` and checks it as RFC 4861 sections
    /// 7.1.1 and 7.1.2 say (the hop limit is the caller's: it is in the IPv6 header).
    pub fn parse(message: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> Result<NdpRepr, NdpError> {
        let packet = NdpPacket::new_checked(message)?;
        let kind = packet.msg_type();
        if kind != TYPE_NEIGHBOR_SOLICIT && kind != TYPE_NEIGHBOR_ADVERT {
            return Err(NdpError::NotNdp(kind));
        }
        if packet.code() != 0 {
            return Err(NdpError::Code(packet.code()));
        }
        let sum = |m: &[u8]| {
            checksum::pseudo_header(IpAddr::V6(src), IpAddr::V6(dst), NEXT_HEADER_ICMPV6, m)
        };
        if sum(message) != 0 {
            let mut zeroed = message.to_vec();
            zeroed[field::CHECKSUM].fill(0);
            return Err(NdpError::Checksum {
                got: packet.checksum(),
                want: sum(&zeroed),
            });
        }
        let target = packet.target();
        if target.is_multicast() {
            return Err(NdpError::MulticastTarget(target));
        }
        if src.is_multicast() {
            return Err(NdpError::MulticastSource(src));
        }
        if kind == TYPE_NEIGHBOR_SOLICIT {
            let source_mac = packet.link_layer_option(OPTION_SOURCE_LLA)?;
            if src.is_unspecified() {
                if solicited_node(dst) != dst {
                    return Err(NdpError::DadDestination(dst));
                }
                if source_mac.is_some() {
                    return Err(NdpError::DadWithSourceLla);
                }
            }
            Ok(NdpRepr::Solicit { target, source_mac })
        } else {
            let flags = AdvertFlags::from_byte(packet.flags());
            if dst.is_multicast() && flags.solicited {
                return Err(NdpError::SolicitedToMulticast(dst));
            }
            Ok(NdpRepr::Advert {
                flags,
                target,
                target_mac: packet.link_layer_option(OPTION_TARGET_LLA)?,
            })
        }
    }

    /// Writes the message with one link-layer option (the source's for an NS, the target's for
    /// an NA; an absent one is written as zeros, which vipgate never does) and the checksum for
    /// `src` → `dst`.
    pub fn emit(&self, src: Ipv6Addr, dst: Ipv6Addr, out: &mut [u8; MESSAGE_WITH_LLA_LEN]) {
        out.fill(0);
        let (kind, flags, target, option, mac) = match *self {
            NdpRepr::Solicit { target, source_mac } => (
                TYPE_NEIGHBOR_SOLICIT,
                0,
                target,
                OPTION_SOURCE_LLA,
                source_mac,
            ),
            NdpRepr::Advert {
                flags,
                target,
                target_mac,
            } => (
                TYPE_NEIGHBOR_ADVERT,
                flags.to_byte(),
                target,
                OPTION_TARGET_LLA,
                target_mac,
            ),
        };
        out[field::TYPE] = kind;
        out[field::FLAGS] = flags;
        out[field::TARGET].copy_from_slice(&target.octets());
        out[field::OPTIONS] = option;
        out[field::OPTIONS + 1] = 1;
        out[field::OPTIONS + 2..].copy_from_slice(&mac.unwrap_or(MacAddr::ZERO).0);
        let sum =
            checksum::pseudo_header(IpAddr::V6(src), IpAddr::V6(dst), NEXT_HEADER_ICMPV6, out);
        out[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    }
}

/// The IPv6 addresses of a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Addrs {
    pub source: Ipv6Addr,
    pub destination: Ipv6Addr,
}

fn ipv6_at(bytes: &[u8], at: usize) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&bytes[at..at + 16]);
    Ipv6Addr::from(o)
}

/// Parses an Ethernet II frame carrying an NS or NA directly after the IPv6 header. Trailing
/// bytes past the IPv6 payload length (Ethernet padding) are ignored.
pub fn parse_frame(frame: &[u8]) -> Result<(EthernetAddrs, Ipv6Addrs, NdpRepr), NdpError> {
    if frame.len() < ETHERNET_HEADER_LEN {
        return Err(NdpError::FrameTruncated { len: frame.len() });
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    if ethertype != ETHERTYPE_IPV6 {
        return Err(NdpError::NotIpv6(ethertype));
    }
    let mac = |r: Range<usize>| {
        let b = &frame[r];
        MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
    };
    let eth = EthernetAddrs {
        destination: mac(0..6),
        source: mac(6..12),
    };
    let ip = &frame[ETHERNET_HEADER_LEN..];
    if ip.len() < IPV6_HEADER_LEN || ip[0] >> 4 != 6 {
        return Err(NdpError::IpHeader);
    }
    let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let available = ip.len() - IPV6_HEADER_LEN;
    if payload > available {
        return Err(NdpError::IpTruncated {
            payload,
            len: available,
        });
    }
    if ip[6] != NEXT_HEADER_ICMPV6 {
        return Err(NdpError::NextHeader(ip[6]));
    }
    if ip[7] != HOP_LIMIT {
        return Err(NdpError::HopLimit(ip[7]));
    }
    let addrs = Ipv6Addrs {
        source: ipv6_at(ip, 8),
        destination: ipv6_at(ip, 24),
    };
    let message = &ip[IPV6_HEADER_LEN..IPV6_HEADER_LEN + payload];
    let ndp = NdpRepr::parse(message, addrs.source, addrs.destination)?;
    Ok((eth, addrs, ndp))
}

/// Builds a complete frame: Ethernet, IPv6 (hop limit 255, traffic class and flow label 0),
/// and `ndp` from `src` to `dst`.
pub fn emit_frame(
    eth_dst: MacAddr,
    eth_src: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ndp: &NdpRepr,
) -> Frame {
    let mut frame = [0u8; FRAME_LEN];
    frame[0..6].copy_from_slice(&eth_dst.0);
    frame[6..12].copy_from_slice(&eth_src.0);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let ip = &mut frame[ETHERNET_HEADER_LEN..];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(MESSAGE_WITH_LLA_LEN as u16).to_be_bytes());
    ip[6] = NEXT_HEADER_ICMPV6;
    ip[7] = HOP_LIMIT;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let mut message = [0u8; MESSAGE_WITH_LLA_LEN];
    ndp.emit(src, dst, &mut message);
    ip[IPV6_HEADER_LEN..].copy_from_slice(&message);
    frame
}

/// An advertisement of `vip` at `our_mac` from the VIP, with Override (the VIP is no anycast
/// address: our answer should replace what a neighbour cached, RFC 4861 section 7.2.4).
fn advert(
    our_mac: MacAddr,
    vip: Ipv6Addr,
    eth_dst: MacAddr,
    dst: Ipv6Addr,
    solicited: bool,
) -> Frame {
    let na = NdpRepr::Advert {
        flags: AdvertFlags {
            router: false,
            solicited,
            override_: true,
        },
        target: vip,
        target_mac: Some(our_mac),
    };
    emit_frame(eth_dst, our_mac, vip, dst, &na)
}

/// An unsolicited advertisement, byte for byte as keepalived sends it on takeover: to ff02::1
/// (33:33:00:00:00:01), from the VIP, Solicited 0, Override 1, target link-layer option = our
/// MAC. Neighbours that have an entry for the VIP update it (RFC 4861 section 7.2.6); the
/// IPv6 analogue of the gratuitous ARP.
pub fn build_unsolicited(our_mac: MacAddr, vip: Ipv6Addr) -> Frame {
    advert(our_mac, vip, multicast_mac(ALL_NODES), ALL_NODES, false)
}

/// Why a received frame gets no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not an NS or NA that passes the RFC 4861 checks.
    Malformed(NdpError),
    /// Sent by us: an `AF_PACKET` socket also sees the frames this host transmits.
    OwnFrame,
    /// Another station advertises the VIP, or uses it as its source: it claims the VIP (the
    /// other node's unsolicited NAs after a takeover). Counted, never answered.
    Conflict { mac: MacAddr },
    /// An advertisement for another address.
    NotSolicit,
    /// A solicitation for some other address.
    NotForVip,
    /// A solicitation for the VIP sent to neither the VIP nor its solicited-node group, or to
    /// another station's MAC.
    NotAddressedToUs,
    /// A solicitation for the VIP whose answer would go to a group or zero MAC.
    BogusSender,
}

impl Ignored {
    /// Whether the frame was a solicitation for the VIP from another station.
    pub fn is_request_for_vip(&self) -> bool {
        matches!(self, Ignored::NotAddressedToUs | Ignored::BogusSender)
    }
}

/// What to do with a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Reply(Frame),
    Ignore(Ignored),
}

/// Decides whether `frame`, received on the VIP's interface, gets an advertisement, and
/// builds it. The rules, in order (each names the [`Ignored`] variant it produces):
/// 1. It must parse and pass RFC 4861's checks (`Malformed`).
/// 2. Neither the Ethernet source nor a link-layer option may be our MAC (`OwnFrame`).
/// 3. No other station may advertise the VIP or send from it (`Conflict`).
/// 4. It must be a solicitation (`NotSolicit`) for the VIP (`NotForVip`).
/// 5. It must be sent to our MAC or the VIP's solicited-node group MAC, and to the VIP itself
///    (a unicast NUD probe) or its solicited-node address (`NotAddressedToUs`).
/// 6. From the unspecified address (duplicate address detection, RFC 4862): we defend the VIP
///    with an advertisement to all nodes, Solicited 0, as RFC 4861 section 7.2.4 says.
/// 7. Otherwise the answer goes unicast to the solicitor, at its source link-layer option or
///    else its Ethernet source, which must be a unicast MAC (`BogusSender`), with Solicited 1
///    and Override 1.
pub fn decide(frame: &[u8], our_mac: MacAddr, vip: Ipv6Addr) -> Decision {
    let (eth, ip, ndp) = match parse_frame(frame) {
        Ok(parsed) => parsed,
        Err(e) => return Decision::Ignore(Ignored::Malformed(e)),
    };
    let option_mac = match ndp {
        NdpRepr::Solicit { source_mac, .. } => source_mac,
        NdpRepr::Advert { target_mac, .. } => target_mac,
    };
    if eth.source == our_mac || option_mac == Some(our_mac) {
        return Decision::Ignore(Ignored::OwnFrame);
    }
    let claims = match ndp {
        NdpRepr::Advert { target, .. } => target == vip || ip.source == vip,
        NdpRepr::Solicit { .. } => ip.source == vip,
    };
    if claims {
        return Decision::Ignore(Ignored::Conflict {
            mac: option_mac.unwrap_or(eth.source),
        });
    }
    let NdpRepr::Solicit { target, source_mac } = ndp else {
        return Decision::Ignore(Ignored::NotSolicit);
    };
    if target != vip {
        return Decision::Ignore(Ignored::NotForVip);
    }
    let group = solicited_node(vip);
    let to_us = (eth.destination == our_mac || eth.destination == multicast_mac(group))
        && (ip.destination == vip || ip.destination == group);
    if !to_us {
        return Decision::Ignore(Ignored::NotAddressedToUs);
    }
    if ip.source.is_unspecified() {
        return Decision::Reply(build_unsolicited(our_mac, vip));
    }
    let reply_mac = source_mac.unwrap_or(eth.source);
    if !reply_mac.is_unicast() {
        return Decision::Ignore(Ignored::BogusSender);
    }
    Decision::Reply(advert(our_mac, vip, reply_mac, ip.source, true))
}

/// The answer to `frame`, if it deserves one; see [`decide`] for the rules.
pub fn answer(frame: &[u8], our_mac: MacAddr, vip: Ipv6Addr) -> Option<Frame> {
    match decide(frame, our_mac, vip) {
        Decision::Reply(reply) => Some(reply),
        Decision::Ignore(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixtures captured on this machine with `tcpdump -xx -e` in B on a veth pair between two
    // network namespaces: A is 2001:db8::1 / fe80::ff:fe00:1 at 02:00:00:00:00:01, B is
    // 2001:db8::2 / fe80::ff:fe00:2 at 02:00:00:00:00:02. veth does not pad.
    const A_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const B_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
    const A_IP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const A_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 1);
    const B_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 2);
    const B_IP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
    const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x200);
    const OTHER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x99]);

    /// `ndisc6 -1 2001:db8::1 eth0` from B: multicast NS to ff02::1:ff00:1 from B's link-local
    /// address, with a source link-layer option.
    static NDISC6_NS_FOR_A: [u8; 86] = [
        0x33, 0x33, 0xff, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x86, 0xdd, 0x60,
        0x0c, 0x13, 0xa5, 0x00, 0x20, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x02, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x00, 0x00, 0x01, 0x87, 0x00, 0x4c, 0x5f, 0x00, 0x00,
        0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x01, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
    ];

    /// The kernel of A answering `NDISC6_NS_FOR_A`: unicast, S=1 O=1, target link-layer option.
    static KERNEL_NA_FROM_A: [u8; 86] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x02, 0x88, 0x00, 0xba, 0xab, 0x60, 0x00,
        0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x01, 0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    ];

    /// `ndisc6 2001:db8::200 eth0` from B while A has only `local 2001:db8::200/128 dev lo`: the
    /// kernel of A did not answer it (ndisc6 timed out twice).
    static NDISC6_NS_FOR_VIP: [u8; 86] = [
        0x33, 0x33, 0xff, 0x00, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x86, 0xdd, 0x60,
        0x00, 0x81, 0x1c, 0x00, 0x20, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x02, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x00, 0x02, 0x00, 0x87, 0x00, 0x48, 0x61, 0x00, 0x00,
        0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x02, 0x00, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
    ];

    /// The kernel of B resolving 2001:db8::99 for a TCP connect: multicast NS from its global
    /// address 2001:db8::2.
    static KERNEL_NS_FOR_99: [u8; 86] = [
        0x33, 0x33, 0xff, 0x00, 0x00, 0x99, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x00, 0x00, 0x99, 0x87, 0x00, 0x1a, 0xf7, 0x00, 0x00,
        0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x99, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
    ];

    /// The kernel of B's duplicate address detection for 2001:db8::3 (`ip addr add`): from ::, no
    /// source link-layer option, a nonce option (type 14, RFC 7527).
    static KERNEL_DAD_NS: [u8; 86] = [
        0x33, 0x33, 0xff, 0x00, 0x00, 0x03, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x00, 0x00, 0x03, 0x87, 0x00, 0x26, 0xbe, 0x00, 0x00,
        0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x03, 0x0e, 0x01, 0xb0, 0x7d, 0xce, 0x4f, 0x99, 0x54,
    ];

    /// The kernel of A probing B's link-local address (NUD): unicast NS, with a source
    /// link-layer option.
    static KERNEL_NUD_NS: [u8; 86] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x01, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x02, 0x87, 0x00, 0x7d, 0x1b, 0x00, 0x00,
        0x00, 0x00, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xfe,
        0x00, 0x00, 0x02, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    ];

    /// The kernel of B answering `KERNEL_NUD_NS`: S=1, O=0 and no option (Linux leaves both out
    /// for a unicast NS; RFC 4861 7.2.4 allows it).
    static KERNEL_NUD_NA: [u8; 78] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x18, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x02, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x01, 0x88, 0x00, 0x3f, 0x25, 0x40, 0x00,
        0x00, 0x00, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xfe,
        0x00, 0x00, 0x02,
    ];

    /// The kernel of A's unsolicited NA for its link-local address (`ndisc_notify=1`, link up).
    static KERNEL_UNSOLICITED_NA: [u8; 86] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0x01, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0x00, 0x59, 0x9b, 0x20, 0x00,
        0x00, 0x00, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xfe,
        0x00, 0x00, 0x01, 0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    ];

    /// keepalived 2.2.7 becoming master of an IPv6 instance with VIP 2001:db8::200 on A: one of
    /// its five unsolicited NAs.
    static KEEPALIVED_NA: [u8; 86] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0x00, 0xf5, 0x2c, 0x20, 0x00,
        0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x02, 0x00, 0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    ];

    fn edited(frame: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = frame.to_vec();
        edit(&mut v);
        v
    }

    /// Re-computes the ICMPv6 checksum after an edit, so a case tests the rule it names and
    /// not the checksum.
    fn resum(v: &mut [u8]) {
        let ip = ETHERNET_HEADER_LEN;
        let (src, dst) = (ipv6_at(v, ip + 8), ipv6_at(v, ip + 24));
        let msg = ip + IPV6_HEADER_LEN;
        let payload = usize::from(u16::from_be_bytes([v[ip + 4], v[ip + 5]]));
        v[msg + 2..msg + 4].fill(0);
        let sum = checksum::pseudo_header(
            IpAddr::V6(src),
            IpAddr::V6(dst),
            NEXT_HEADER_ICMPV6,
            &v[msg..msg + payload],
        );
        v[msg + 2..msg + 4].copy_from_slice(&sum.to_be_bytes());
    }

    #[test]
    fn parses_captured_solicitations_and_advertisements() {
        let (eth, ip, ns) = parse_frame(&NDISC6_NS_FOR_A).unwrap();
        assert_eq!(
            (eth.source, eth.destination),
            (B_MAC, multicast_mac(solicited_node(A_IP)))
        );
        assert_eq!((ip.source, ip.destination), (B_LL, solicited_node(A_IP)));
        assert_eq!(
            ns,
            NdpRepr::Solicit {
                target: A_IP,
                source_mac: Some(B_MAC)
            }
        );

        let (_, ip, na) = parse_frame(&KERNEL_NA_FROM_A).unwrap();
        assert_eq!((ip.source, ip.destination), (A_IP, B_LL));
        let flags = AdvertFlags {
            router: false,
            solicited: true,
            override_: true,
        };
        assert_eq!(
            na,
            NdpRepr::Advert {
                flags,
                target: A_IP,
                target_mac: Some(A_MAC)
            }
        );

        let (_, ip, dad) = parse_frame(&KERNEL_DAD_NS).unwrap();
        assert!(ip.source.is_unspecified());
        let three = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3);
        assert_eq!(
            dad,
            NdpRepr::Solicit {
                target: three,
                source_mac: None
            }
        );

        let (_, _, nud) = parse_frame(&KERNEL_NUD_NA).unwrap();
        let flags = AdvertFlags {
            router: false,
            solicited: true,
            override_: false,
        };
        assert_eq!(
            nud,
            NdpRepr::Advert {
                flags,
                target: B_LL,
                target_mac: None
            }
        );

        for frame in [
            &NDISC6_NS_FOR_VIP,
            &KERNEL_NS_FOR_99,
            &KERNEL_NUD_NS,
            &KERNEL_UNSOLICITED_NA,
            &KEEPALIVED_NA,
        ] {
            assert!(parse_frame(frame).is_ok());
        }
    }

    #[test]
    fn solicited_node_and_its_mac() {
        assert_eq!(solicited_node(VIP).to_string(), "ff02::1:ff00:200");
        assert_eq!(
            multicast_mac(solicited_node(VIP)).to_string(),
            "33:33:ff:00:02:00"
        );
        assert_eq!(multicast_mac(ALL_NODES).to_string(), "33:33:00:00:00:01");
    }

    #[test]
    fn reply_to_a_multicast_solicitation_is_byte_identical_to_the_kernels() {
        // A owning 2001:db8::1 as a VIP answers exactly as A's kernel did.
        assert_eq!(
            decide(&NDISC6_NS_FOR_A, A_MAC, A_IP),
            Decision::Reply(KERNEL_NA_FROM_A)
        );
    }

    #[test]
    fn unsolicited_is_byte_identical_to_keepalived_and_the_kernel() {
        assert_eq!(build_unsolicited(A_MAC, VIP), KEEPALIVED_NA);
        assert_eq!(build_unsolicited(A_MAC, A_LL), KERNEL_UNSOLICITED_NA);
    }

    #[test]
    fn unicast_nud_probe_gets_a_unicast_solicited_override_answer() {
        // B owning its link-local address as a VIP; the kernel answered O=0 without an option,
        // vipgate sets O and names its MAC.
        let Decision::Reply(reply) = decide(&KERNEL_NUD_NS, B_MAC, B_LL) else {
            panic!("no reply")
        };
        let (eth, ip, na) = parse_frame(&reply).unwrap();
        assert_eq!((eth.source, eth.destination), (B_MAC, A_MAC));
        assert_eq!((ip.source, ip.destination), (B_LL, A_LL));
        let flags = AdvertFlags {
            router: false,
            solicited: true,
            override_: true,
        };
        assert_eq!(
            na,
            NdpRepr::Advert {
                flags,
                target: B_LL,
                target_mac: Some(B_MAC)
            }
        );
        // Same addresses and flags as the kernel's, apart from O and the option.
        assert_eq!(
            reply[..ETHERNET_HEADER_LEN],
            KERNEL_NUD_NA[..ETHERNET_HEADER_LEN]
        );
    }

    #[test]
    fn dad_probe_is_defended_to_all_nodes_without_solicited() {
        let three = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3);
        assert_eq!(
            decide(&KERNEL_DAD_NS, A_MAC, three),
            Decision::Reply(build_unsolicited(A_MAC, three))
        );
    }

    #[test]
    fn kernel_resolution_from_a_global_address_is_answered() {
        let v = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99);
        let Decision::Reply(reply) = decide(&KERNEL_NS_FOR_99, A_MAC, v) else {
            panic!("no reply")
        };
        let (eth, ip, _) = parse_frame(&reply).unwrap();
        assert_eq!((eth.destination, ip.destination), (B_MAC, B_IP));
    }

    #[test]
    fn emitted_frames_parse_back() {
        let flags = AdvertFlags {
            router: true,
            solicited: false,
            override_: true,
        };
        for repr in [
            NdpRepr::Solicit {
                target: VIP,
                source_mac: Some(B_MAC),
            },
            NdpRepr::Advert {
                flags,
                target: VIP,
                target_mac: Some(A_MAC),
            },
        ] {
            let frame = emit_frame(A_MAC, B_MAC, B_LL, A_LL, &repr);
            assert_eq!(parse_frame(&frame).map(|p| p.2), Ok(repr));
        }
    }

    /// Every accept and reject rule of `decide`, with A owning VIP.
    #[test]
    fn decide_rules() {
        let ns = &NDISC6_NS_FOR_VIP[..];
        type Case = (&'static str, Vec<u8>, Option<Ignored>);
        let msg = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN;
        let cases: Vec<Case> = vec![
            ("ndisc6 for the VIP", ns.to_vec(), None),
            (
                "padded to 60+ bytes",
                edited(ns, |v| v.resize(100, 0)),
                None,
            ),
            (
                "unicast NUD probe to the VIP at our MAC",
                edited(ns, |v| {
                    v[0..6].copy_from_slice(&A_MAC.0);
                    v[38..54].copy_from_slice(&VIP.octets());
                    resum(v);
                }),
                None,
            ),
            (
                "no source link-layer option: answered at the Ethernet source",
                edited(ns, |v| {
                    v.truncate(msg + MESSAGE_LEN);
                    v[18..20].copy_from_slice(&24u16.to_be_bytes());
                    resum(v);
                }),
                None,
            ),
            (
                "not IPv6",
                edited(ns, |v| v[12..14].copy_from_slice(&[0x08, 0x00])),
                Some(Ignored::Malformed(NdpError::NotIpv6(0x0800))),
            ),
            (
                "runt",
                ns[..20].to_vec(),
                Some(Ignored::Malformed(NdpError::IpHeader)),
            ),
            (
                "IPv6 payload past the end",
                ns[..80].to_vec(),
                Some(Ignored::Malformed(NdpError::IpTruncated {
                    payload: 32,
                    len: 26,
                })),
            ),
            (
                "hop limit 64: from beyond the link",
                edited(ns, |v| v[21] = 64),
                Some(Ignored::Malformed(NdpError::HopLimit(64))),
            ),
            (
                "extension header",
                edited(ns, |v| v[20] = 0),
                Some(Ignored::Malformed(NdpError::NextHeader(0))),
            ),
            (
                "code 1",
                edited(ns, |v| {
                    v[msg + 1] = 1;
                    resum(v)
                }),
                Some(Ignored::Malformed(NdpError::Code(1))),
            ),
            (
                "router solicitation",
                edited(ns, |v| {
                    v[msg] = 133;
                    resum(v)
                }),
                Some(Ignored::Malformed(NdpError::NotNdp(133))),
            ),
            (
                "flipped target bit",
                edited(ns, |v| v[msg + 23] ^= 1),
                Some(Ignored::Malformed(NdpError::Checksum {
                    got: 0x4861,
                    want: 0x4860,
                })),
            ),
            (
                "multicast target",
                edited(ns, |v| {
                    v[msg + 8] = 0xff;
                    resum(v)
                }),
                Some(Ignored::Malformed(NdpError::MulticastTarget(
                    Ipv6Addr::new(0xff01, 0xdb8, 0, 0, 0, 0, 0, 0x200),
                ))),
            ),
            (
                "option of length 0",
                edited(ns, |v| {
                    v[msg + 25] = 0;
                    resum(v)
                }),
                Some(Ignored::Malformed(NdpError::OptionLength)),
            ),
            (
                "option past the end",
                edited(ns, |v| {
                    v[msg + 25] = 2;
                    resum(v)
                }),
                Some(Ignored::Malformed(NdpError::OptionLength)),
            ),
            (
                "DAD with a source link-layer option",
                edited(ns, |v| {
                    v[22..38].fill(0);
                    resum(v)
                }),
                Some(Ignored::Malformed(NdpError::DadWithSourceLla)),
            ),
            (
                "DAD to a unicast destination",
                edited(&KERNEL_DAD_NS, |v| {
                    v[38..54].copy_from_slice(&A_IP.octets());
                    resum(v)
                }),
                Some(Ignored::Malformed(NdpError::DadDestination(A_IP))),
            ),
            (
                "our own frame looped back",
                edited(ns, |v| v[6..12].copy_from_slice(&A_MAC.0)),
                Some(Ignored::OwnFrame),
            ),
            (
                "our own advertisement",
                build_unsolicited(A_MAC, VIP).to_vec(),
                Some(Ignored::OwnFrame),
            ),
            (
                "keepalived's advertisement of the VIP",
                edited(&KEEPALIVED_NA, |v| {
                    v[6..12].copy_from_slice(&OTHER_MAC.0);
                    v[msg + 26..msg + 32].copy_from_slice(&OTHER_MAC.0);
                    resum(v)
                }),
                Some(Ignored::Conflict { mac: OTHER_MAC }),
            ),
            (
                "an advertisement for another address",
                KERNEL_NUD_NA.to_vec(),
                Some(Ignored::NotSolicit),
            ),
            (
                "a solicitation for A's own address",
                NDISC6_NS_FOR_A.to_vec(),
                Some(Ignored::NotForVip),
            ),
            (
                "to another station's MAC",
                edited(ns, |v| v[0..6].copy_from_slice(&OTHER_MAC.0)),
                Some(Ignored::NotAddressedToUs),
            ),
            (
                "to another address's solicited-node group",
                edited(ns, |v| {
                    v[53] = 0x01;
                    resum(v)
                }),
                Some(Ignored::NotAddressedToUs),
            ),
            (
                "source link-layer option is a group MAC",
                edited(ns, |v| {
                    v[msg + 26] = 0x33;
                    resum(v)
                }),
                Some(Ignored::BogusSender),
            ),
        ];
        for (name, frame, want) in cases {
            let got = decide(&frame, A_MAC, VIP);
            match want {
                None => {
                    let Decision::Reply(reply) = got else {
                        panic!("{name}: {got:?}")
                    };
                    let (eth, ip, na) = parse_frame(&reply).unwrap();
                    assert_eq!(eth.source, A_MAC, "{name}");
                    assert_eq!(ip.source, VIP, "{name}");
                    let flags = AdvertFlags {
                        router: false,
                        solicited: true,
                        override_: true,
                    };
                    assert_eq!(
                        na,
                        NdpRepr::Advert {
                            flags,
                            target: VIP,
                            target_mac: Some(A_MAC)
                        },
                        "{name}"
                    );
                    assert_eq!((eth.destination, ip.destination), (B_MAC, B_LL), "{name}");
                }
                Some(reason) => assert_eq!(got, Decision::Ignore(reason), "{name}"),
            }
        }
    }
}
