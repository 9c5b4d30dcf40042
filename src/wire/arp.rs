//! ARP for IPv4 over Ethernet (RFC 826): the wire format, and the rule for which frames the
//! owner of a VIP answers.
//!
//! Owns: the 28-byte Ethernet/IPv4 ARP payload as a checked view over bytes ([`ArpPacket`]) and
//! as an owned value ([`ArpRepr`]); the 42-byte frames vipgate sends (replies and gratuitous
//! ARPs); and [`decide`], the pure decision whether a received frame gets a reply. Does not own:
//! sockets, the timing of GARP bursts or counters (`announcer`), nor whether this node should own
//! the VIP at all (`ha`).
//!
//! Invariants:
//! - Nothing here panics on network input. [`ArpPacket::new_checked`] checks the length once and
//!   every accessor reads inside that length; the only way to build a view is through it.
//! - Only hardware type 1 (Ethernet), protocol 0x0800 (IPv4), hlen 6, plen 4 is understood;
//!   anything else is an [`ArpError`], never a guess.
//! - Received frames may carry trailing bytes: Ethernet pads short frames to 60 bytes on the
//!   wire, and a real NIC hands the padding up. Frames built here are exactly [`FRAME_LEN`]
//!   bytes; the NIC (or the veth peer, which does not care) adds the padding.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;

use etherparse::{EtherType, Ethernet2Header};

/// Ethernet header length: destination, source, ethertype.
pub const ETHERNET_HEADER_LEN: usize = Ethernet2Header::LEN;
/// Length of an Ethernet/IPv4 ARP payload.
pub const ARP_LEN: usize = 28;
/// Length of every frame vipgate sends: Ethernet header plus ARP payload, unpadded.
pub const FRAME_LEN: usize = ETHERNET_HEADER_LEN + ARP_LEN;

/// An Ethernet frame carrying ARP, as vipgate builds it.
pub type Frame = [u8; FRAME_LEN];

const HTYPE_ETHERNET: u16 = 1;
const PTYPE_IPV4: u16 = 0x0800;
const HLEN_ETHERNET: u8 = 6;
const PLEN_IPV4: u8 = 4;

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub fn is_broadcast(self) -> bool {
        self == Self::BROADCAST
    }

    /// The I/G bit of the first octet; broadcast is a multicast address too.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// An address a single station can have: neither group nor all-zero.
    pub fn is_unicast(self) -> bool {
        !self.is_multicast() && self != Self::ZERO
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why bytes are not an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArpError {
    #[error("Ethernet frame truncated: {len} bytes, the header needs {ETHERNET_HEADER_LEN}")]
    FrameTruncated { len: usize },
    #[error("ethertype {0:#06x} is not ARP (0x0806)")]
    NotArp(u16),
    #[error("ARP packet truncated: {len} bytes, Ethernet/IPv4 ARP needs {ARP_LEN}")]
    Truncated { len: usize },
    #[error("ARP hardware type {0} is not Ethernet (1)")]
    HardwareType(u16),
    #[error("ARP protocol type {0:#06x} is not IPv4 (0x0800)")]
    ProtocolType(u16),
    #[error("ARP address lengths hlen={hlen} plen={plen}, Ethernet/IPv4 needs 6 and 4")]
    AddressLengths { hlen: u8, plen: u8 },
}

/// The ARP operation field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    Request,
    Reply,
    /// RARP and InARP ops, or garbage: parsed so the caller can say what it ignored.
    Other(u16),
}

impl From<u16> for ArpOp {
    fn from(v: u16) -> Self {
        match v {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            other => ArpOp::Other(other),
        }
    }
}

impl From<ArpOp> for u16 {
    fn from(op: ArpOp) -> Self {
        match op {
            ArpOp::Request => 1,
            ArpOp::Reply => 2,
            ArpOp::Other(v) => v,
        }
    }
}

/// Byte offsets inside the ARP payload, fixed for Ethernet/IPv4 (RFC 826 "Packet format").
mod field {
    use std::ops::Range;

    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// A read (and, over mutable bytes, write) view of an ARP payload whose length was checked.
///
/// It checks only the length: the type and length fields are read as they are, so a caller
/// that wants Ethernet/IPv4 semantics goes through [`ArpRepr::parse`].
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` after checking it holds at least [`ARP_LEN`] bytes, which is what makes
    /// every accessor below panic-free.
    pub fn new_checked(buffer: T) -> Result<Self, ArpError> {
        let len = buffer.as_ref().len();
        if len < ARP_LEN {
            return Err(ArpError::Truncated { len });
        }
        Ok(ArpPacket { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buffer.as_ref()[range]
    }

    fn u16_at(&self, range: Range<usize>) -> u16 {
        let b = self.bytes(range);
        u16::from_be_bytes([b[0], b[1]])
    }

    fn mac_at(&self, range: Range<usize>) -> MacAddr {
        let b = self.bytes(range);
        MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    fn ip_at(&self, range: Range<usize>) -> Ipv4Addr {
        let b = self.bytes(range);
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    pub fn hardware_type(&self) -> u16 {
        self.u16_at(field::HTYPE)
    }

    pub fn protocol_type(&self) -> u16 {
        self.u16_at(field::PTYPE)
    }

    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    pub fn operation(&self) -> ArpOp {
        ArpOp::from(self.u16_at(field::OPER))
    }

    pub fn sender_hardware_addr(&self) -> MacAddr {
        self.mac_at(field::SHA)
    }

    pub fn sender_protocol_addr(&self) -> Ipv4Addr {
        self.ip_at(field::SPA)
    }

    pub fn target_hardware_addr(&self) -> MacAddr {
        self.mac_at(field::THA)
    }

    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        self.ip_at(field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    fn bytes_mut(&mut self, range: Range<usize>) -> &mut [u8] {
        &mut self.buffer.as_mut()[range]
    }

    /// Writes the Ethernet/IPv4 type and length fields.
    pub fn set_ethernet_ipv4(&mut self) {
        self.bytes_mut(field::HTYPE)
            .copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        self.bytes_mut(field::PTYPE)
            .copy_from_slice(&PTYPE_IPV4.to_be_bytes());
        self.buffer.as_mut()[field::HLEN] = HLEN_ETHERNET;
        self.buffer.as_mut()[field::PLEN] = PLEN_IPV4;
    }

    pub fn set_operation(&mut self, op: ArpOp) {
        self.bytes_mut(field::OPER)
            .copy_from_slice(&u16::from(op).to_be_bytes());
    }

    pub fn set_sender_hardware_addr(&mut self, mac: MacAddr) {
        self.bytes_mut(field::SHA).copy_from_slice(&mac.0);
    }

    pub fn set_sender_protocol_addr(&mut self, ip: Ipv4Addr) {
        self.bytes_mut(field::SPA).copy_from_slice(&ip.octets());
    }

    pub fn set_target_hardware_addr(&mut self, mac: MacAddr) {
        self.bytes_mut(field::THA).copy_from_slice(&mac.0);
    }

    pub fn set_target_protocol_addr(&mut self, ip: Ipv4Addr) {
        self.bytes_mut(field::TPA).copy_from_slice(&ip.octets());
    }
}

/// An Ethernet/IPv4 ARP packet as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub operation: ArpOp,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Parses an ARP payload (the bytes after the Ethernet header). Trailing bytes, such as
    /// Ethernet padding, are ignored.
    pub fn parse(payload: &[u8]) -> Result<ArpRepr, ArpError> {
        let packet = ArpPacket::new_checked(payload)?;
        if packet.hardware_type() != HTYPE_ETHERNET {
            return Err(ArpError::HardwareType(packet.hardware_type()));
        }
        if packet.protocol_type() != PTYPE_IPV4 {
            return Err(ArpError::ProtocolType(packet.protocol_type()));
        }
        // The field offsets above are only right for these lengths, so a mismatch is an error
        // rather than something to read around.
        if packet.hardware_len() != HLEN_ETHERNET || packet.protocol_len() != PLEN_IPV4 {
            return Err(ArpError::AddressLengths {
                hlen: packet.hardware_len(),
                plen: packet.protocol_len(),
            });
        }
        Ok(ArpRepr {
            operation: packet.operation(),
            sender_mac: packet.sender_hardware_addr(),
            sender_ip: packet.sender_protocol_addr(),
            target_mac: packet.target_hardware_addr(),
            target_ip: packet.target_protocol_addr(),
        })
    }

    /// Writes the payload; the array type is what guarantees the buffer is long enough.
    pub fn emit(&self, buffer: &mut [u8; ARP_LEN]) {
        let mut packet = ArpPacket {
            buffer: &mut buffer[..],
        };
        packet.set_ethernet_ipv4();
        packet.set_operation(self.operation);
        packet.set_sender_hardware_addr(self.sender_mac);
        packet.set_sender_protocol_addr(self.sender_ip);
        packet.set_target_hardware_addr(self.target_mac);
        packet.set_target_protocol_addr(self.target_ip);
    }
}

/// The Ethernet addresses of a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetAddrs {
    pub destination: MacAddr,
    pub source: MacAddr,
}

/// Parses an Ethernet II frame carrying ARP. The frame may be longer than [`FRAME_LEN`]
/// (padding); it must not carry an 802.1Q tag, which shows up as ethertype 0x8100 and is
/// refused as not ARP.
pub fn parse_frame(frame: &[u8]) -> Result<(EthernetAddrs, ArpRepr), ArpError> {
    let (eth, payload) = Ethernet2Header::from_slice(frame)
        .map_err(|_| ArpError::FrameTruncated { len: frame.len() })?;
    if eth.ether_type != EtherType::ARP {
        return Err(ArpError::NotArp(eth.ether_type.0));
    }
    let arp = ArpRepr::parse(payload)?;
    let addrs = EthernetAddrs {
        destination: MacAddr(eth.destination),
        source: MacAddr(eth.source),
    };
    Ok((addrs, arp))
}

/// Builds a complete frame from Ethernet addresses and an ARP value.
pub fn emit_frame(destination: MacAddr, source: MacAddr, arp: &ArpRepr) -> Frame {
    let mut frame = [0u8; FRAME_LEN];
    let eth = Ethernet2Header {
        destination: destination.0,
        source: source.0,
        ether_type: EtherType::ARP,
    };
    let (head, payload) = frame.split_at_mut(ETHERNET_HEADER_LEN);
    head.copy_from_slice(&eth.to_bytes());
    let mut body = [0u8; ARP_LEN];
    arp.emit(&mut body);
    payload.copy_from_slice(&body);
    frame
}

/// The reply to `request`: unicast to the requester, saying the VIP is at our MAC.
///
/// For an ARP probe (sender IP 0.0.0.0) the target IP is 0.0.0.0 as well, which is what the
/// Linux kernel sends when it defends an address (RFC 5227 2.1.1 lets the prober see it either
/// way; unicast keeps the rest of the segment out of it).
pub fn build_reply(our_mac: MacAddr, vip: Ipv4Addr, request: &ArpRepr) -> Frame {
    let reply = ArpRepr {
        operation: ArpOp::Reply,
        sender_mac: our_mac,
        sender_ip: vip,
        target_mac: request.sender_mac,
        target_ip: request.sender_ip,
    };
    emit_frame(request.sender_mac, our_mac, &reply)
}

/// A gratuitous ARP in request form, byte for byte as keepalived (and `arping -U`) sends it:
/// broadcast, op 1, sender = target = VIP, target MAC all-ones. The request form is used
/// because some hosts update their caches only from requests (RFC 5227 section 3).
pub fn build_gratuitous(our_mac: MacAddr, vip: Ipv4Addr) -> Frame {
    let garp = ArpRepr {
        operation: ArpOp::Request,
        sender_mac: our_mac,
        sender_ip: vip,
        target_mac: MacAddr::BROADCAST,
        target_ip: vip,
    };
    emit_frame(MacAddr::BROADCAST, our_mac, &garp)
}

/// An ARP request from us (`sender_ip`, `our_mac`) for `target`, broadcast.
pub fn build_request(our_mac: MacAddr, sender_ip: Ipv4Addr, target: Ipv4Addr) -> Frame {
    let request = ArpRepr {
        operation: ArpOp::Request,
        sender_mac: our_mac,
        sender_ip,
        target_mac: MacAddr([0; 6]),
        target_ip: target,
    };
    emit_frame(MacAddr::BROADCAST, our_mac, &request)
}

/// The IPv4 neighbours of `interface` the kernel is still resolving (INCOMPLETE: flags 0 in
/// `/proc/net/arp`, whose format is `IP HWtype Flags HWaddress Mask Device` after a header).
pub fn unresolved_neighbours(proc_net_arp: &str, interface: &str) -> Vec<Ipv4Addr> {
    proc_net_arp
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                [ip, _, "0x0", _, _, dev] if *dev == interface => ip.parse().ok(),
                _ => None,
            }
        })
        .collect()
}

/// Why a received frame gets no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not an Ethernet/IPv4 ARP frame.
    Malformed(ArpError),
    /// Sent by us: an `AF_PACKET` socket also sees the frames this host transmits, including
    /// our own replies and gratuitous ARPs.
    OwnFrame,
    /// Another station uses the VIP as its sender address: it claims the VIP (a gratuitous ARP
    /// or a reply from another owner). Worth a warning, never a reply: answering would start
    /// an ARP war the `ha` layer has to settle.
    Conflict { mac: MacAddr },
    /// Replies and other operations need no answer.
    NotRequest(ArpOp),
    /// A request for some other address.
    NotForVip,
    /// A request for the VIP unicast to a different station; seen only when the interface is
    /// promiscuous. The kernel drops these (PACKET_OTHERHOST) and so do we.
    NotAddressedToUs,
    /// A request for the VIP whose sender cannot be a host: a group or zero sender MAC (a reply
    /// would go to a group), or a multicast, broadcast or loopback sender IP.
    BogusSender,
}

impl Ignored {
    /// Whether the frame was an ARP request for the VIP from another station (counted as a
    /// request seen, replied to or not).
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

/// Decides whether `frame`, received on the VIP's interface, deserves a reply, and builds it.
///
/// The rules, in order (each one names the [`Ignored`] variant it produces):
/// 1. It must parse as Ethernet/IPv4 ARP (`Malformed`).
/// 2. Neither the Ethernet source nor the ARP sender may be our MAC (`OwnFrame`).
/// 3. No other station may use the VIP as sender address (`Conflict`). This also covers
///    gratuitous ARPs for the VIP from others; gratuitous ARPs for other addresses fall under 5.
/// 4. It must be a request, op 1 (`NotRequest`).
/// 5. Its target IP must be the VIP (`NotForVip`).
/// 6. It must be broadcast or unicast to our MAC (`NotAddressedToUs`).
/// 7. The sender must be a plausible host (`BogusSender`); sender IP 0.0.0.0 is fine, that is
///    an RFC 5227 probe, and we defend the VIP by answering it.
pub fn decide(frame: &[u8], our_mac: MacAddr, vip: Ipv4Addr) -> Decision {
    let (eth, arp) = match parse_frame(frame) {
        Ok(parsed) => parsed,
        Err(e) => return Decision::Ignore(Ignored::Malformed(e)),
    };
    if eth.source == our_mac || arp.sender_mac == our_mac {
        return Decision::Ignore(Ignored::OwnFrame);
    }
    if arp.sender_ip == vip {
        return Decision::Ignore(Ignored::Conflict {
            mac: arp.sender_mac,
        });
    }
    if arp.operation != ArpOp::Request {
        return Decision::Ignore(Ignored::NotRequest(arp.operation));
    }
    if arp.target_ip != vip {
        return Decision::Ignore(Ignored::NotForVip);
    }
    if !(eth.destination.is_broadcast() || eth.destination == our_mac) {
        return Decision::Ignore(Ignored::NotAddressedToUs);
    }
    let ip = arp.sender_ip;
    if !arp.sender_mac.is_unicast() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback() {
        return Decision::Ignore(Ignored::BogusSender);
    }
    Decision::Reply(build_reply(our_mac, vip, &arp))
}

/// The reply to `frame`, if it deserves one; see [`decide`] for the rules.
pub fn answer(frame: &[u8], our_mac: MacAddr, vip: Ipv4Addr) -> Option<Frame> {
    match decide(frame, our_mac, vip) {
        Decision::Reply(reply) => Some(reply),
        Decision::Ignore(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unresolved_neighbours_are_the_incomplete_entries_of_the_interface() {
        let table = "IP address       HW type     Flags       HW address            Mask     Device
192.0.2.21       0x1         0x0         00:00:00:00:00:00     *        eth0
192.0.2.10       0x1         0x2         02:00:c0:00:02:0a     *        eth0
192.0.2.22       0x1         0x0         00:00:00:00:00:00     *        eth1
192.0.2.23       0x1         0x0         00:00:00:00:00:00     *        eth0
";
        let want: Vec<Ipv4Addr> = vec![Ipv4Addr::new(192, 0, 2, 21), Ipv4Addr::new(192, 0, 2, 23)];
        assert_eq!(unresolved_neighbours(table, "eth0"), want);
        assert!(unresolved_neighbours("", "eth0").is_empty());
    }

    #[test]
    fn a_request_asks_for_the_target_from_us() {
        let mac = MacAddr([2, 0, 0xc0, 0, 2, 2]);
        let frame = build_request(
            mac,
            Ipv4Addr::new(192, 0, 2, 200),
            Ipv4Addr::new(192, 0, 2, 21),
        );
        let (eth, arp) = parse_frame(&frame).unwrap();
        assert_eq!(eth.destination, MacAddr::BROADCAST);
        assert_eq!((arp.operation, arp.sender_mac), (ArpOp::Request, mac));
        assert_eq!(arp.sender_ip, Ipv4Addr::new(192, 0, 2, 200));
        assert_eq!(arp.target_ip, Ipv4Addr::new(192, 0, 2, 21));
    }

    // Fixtures captured on this machine with `tcpdump -xx` on a veth pair between two network
    // namespaces: A is 192.0.2.1 at 82:8c:0e:ff:26:9c, B is 192.0.2.2 at d2:e2:ce:1b:c0:82.
    // veth does not pad, so these are 42 bytes; `padded` below adds what a NIC would.
    const A_MAC: MacAddr = MacAddr([0x82, 0x8c, 0x0e, 0xff, 0x26, 0x9c]);
    const B_MAC: MacAddr = MacAddr([0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82]);
    const A_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
    const OTHER_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x99]);

    /// `arping -c1 -I veth 192.0.2.200` from B (iputils puts ff:ff.. in the target MAC).
    static ARPING_REQUEST_FOR_VIP: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0xc0, 0x00,
        0x02, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0, 0x00, 0x02, 0xc8,
    ];

    /// The kernel of B resolving 192.0.2.200 for a TCP connect (target MAC all-zero).
    static KERNEL_REQUEST_FOR_VIP: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0xc0, 0x00,
        0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x02, 0xc8,
    ];

    /// `arping -D -c1 -I veth 192.0.2.200` from B: an RFC 5227 probe, sender IP 0.0.0.0.
    static PROBE_FOR_VIP: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0x00, 0x00,
        0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0, 0x00, 0x02, 0xc8,
    ];

    /// `arping -c1 -I veth 192.0.2.1` from B: a request for A's own address.
    static ARPING_REQUEST_FOR_A: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0xc0, 0x00,
        0x02, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0, 0x00, 0x02, 0x01,
    ];

    /// The kernel of A answering `ARPING_REQUEST_FOR_A`.
    static KERNEL_REPLY_FROM_A: [u8; 42] = [
        0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0x82, 0x8c, 0x0e, 0xff, 0x26, 0x9c, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x82, 0x8c, 0x0e, 0xff, 0x26, 0x9c, 0xc0, 0x00,
        0x02, 0x01, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0xc0, 0x00, 0x02, 0x02,
    ];

    /// `arping -D -c1 -I veth 192.0.2.1` from B: a probe for A's own address.
    static PROBE_FOR_A: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0x00, 0x00,
        0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0, 0x00, 0x02, 0x01,
    ];

    /// The kernel of A defending 192.0.2.1 against `PROBE_FOR_A`: unicast, target IP 0.0.0.0.
    static KERNEL_PROBE_REPLY_FROM_A: [u8; 42] = [
        0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0x82, 0x8c, 0x0e, 0xff, 0x26, 0x9c, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x82, 0x8c, 0x0e, 0xff, 0x26, 0x9c, 0xc0, 0x00,
        0x02, 0x01, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0x00, 0x00, 0x00, 0x00,
    ];

    /// `arping -U -c1 -I veth 192.0.2.2` from B: gratuitous ARP, request form (the keepalived
    /// format).
    static GARP_REQUEST_FROM_B: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0xc0, 0x00,
        0x02, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0, 0x00, 0x02, 0x02,
    ];

    /// `arping -A -c1 -I veth 192.0.2.2` from B: gratuitous ARP, reply form.
    static GARP_REPLY_FROM_B: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0xc0, 0x00,
        0x02, 0x02, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0xc0, 0x00, 0x02, 0x02,
    ];

    /// A copy of `frame` changed by `edit`, for cases no tool sends on purpose.
    fn edited(frame: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = frame.to_vec();
        edit(&mut v);
        v
    }

    /// `frame` padded with zeros to the 60-byte Ethernet minimum, as a NIC delivers it.
    fn padded(frame: &[u8]) -> Vec<u8> {
        edited(frame, |v| v.resize(60, 0))
    }

    fn set_eth_dst(v: &mut [u8], mac: MacAddr) {
        v[0..6].copy_from_slice(&mac.0);
    }

    fn set_eth_src(v: &mut [u8], mac: MacAddr) {
        v[6..12].copy_from_slice(&mac.0);
    }

    fn set_sender_mac(v: &mut [u8], mac: MacAddr) {
        v[22..28].copy_from_slice(&mac.0);
    }

    fn set_sender_ip(v: &mut [u8], ip: Ipv4Addr) {
        v[28..32].copy_from_slice(&ip.octets());
    }

    /// The reply we expect to `ARPING_REQUEST_FOR_VIP` when A owns the VIP.
    fn expected_vip_reply(target_ip: Ipv4Addr) -> Frame {
        let mut f = KERNEL_REPLY_FROM_A;
        f[28..32].copy_from_slice(&VIP.octets());
        f[38..42].copy_from_slice(&target_ip.octets());
        f
    }

    #[test]
    fn view_reads_fields_of_captured_request() {
        let p = ArpPacket::new_checked(&KERNEL_REQUEST_FOR_VIP[ETHERNET_HEADER_LEN..])
            .expect("28 bytes");
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), 0x0800);
        assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
        assert_eq!(p.operation(), ArpOp::Request);
        assert_eq!(p.sender_hardware_addr(), B_MAC);
        assert_eq!(p.sender_protocol_addr(), B_IP);
        assert_eq!(p.target_hardware_addr(), MacAddr::ZERO);
        assert_eq!(p.target_protocol_addr(), VIP);
    }

    #[test]
    fn view_refuses_short_buffer() {
        assert_eq!(
            ArpPacket::new_checked(&[0u8; 27][..]).err(),
            Some(ArpError::Truncated { len: 27 })
        );
    }

    #[test]
    fn repr_round_trips_every_fixture() {
        for frame in [
            &ARPING_REQUEST_FOR_VIP,
            &KERNEL_REQUEST_FOR_VIP,
            &PROBE_FOR_VIP,
            &ARPING_REQUEST_FOR_A,
            &KERNEL_REPLY_FROM_A,
            &PROBE_FOR_A,
            &KERNEL_PROBE_REPLY_FROM_A,
            &GARP_REQUEST_FROM_B,
            &GARP_REPLY_FROM_B,
        ] {
            let (eth, arp) = parse_frame(frame).expect("captured ARP parses");
            assert_eq!(&emit_frame(eth.destination, eth.source, &arp), frame);
        }
    }

    #[test]
    fn parse_frame_reads_addresses() {
        let (eth, arp) = parse_frame(&KERNEL_REPLY_FROM_A).expect("parses");
        assert_eq!(eth.destination, B_MAC);
        assert_eq!(eth.source, A_MAC);
        assert_eq!(
            arp,
            ArpRepr {
                operation: ArpOp::Reply,
                sender_mac: A_MAC,
                sender_ip: A_IP,
                target_mac: B_MAC,
                target_ip: B_IP,
            }
        );
    }

    #[test]
    fn parse_frame_accepts_ethernet_padding() {
        let plain = parse_frame(&ARPING_REQUEST_FOR_VIP).expect("parses");
        assert_eq!(parse_frame(&padded(&ARPING_REQUEST_FOR_VIP)), Ok(plain));
    }

    #[test]
    fn reply_is_byte_identical_to_the_kernels() {
        let (_, request) = parse_frame(&ARPING_REQUEST_FOR_A).expect("parses");
        assert_eq!(build_reply(A_MAC, A_IP, &request), KERNEL_REPLY_FROM_A);
    }

    #[test]
    fn probe_reply_is_byte_identical_to_the_kernels() {
        let (_, probe) = parse_frame(&PROBE_FOR_A).expect("parses");
        assert_eq!(build_reply(A_MAC, A_IP, &probe), KERNEL_PROBE_REPLY_FROM_A);
    }

    #[test]
    fn gratuitous_is_byte_identical_to_arping_unsolicited() {
        assert_eq!(build_gratuitous(B_MAC, B_IP), GARP_REQUEST_FROM_B);
    }

    #[test]
    fn mac_display_and_classes() {
        assert_eq!(A_MAC.to_string(), "82:8c:0e:ff:26:9c");
        assert!(A_MAC.is_unicast());
        assert!(!MacAddr::ZERO.is_unicast());
        assert!(MacAddr::BROADCAST.is_multicast() && MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]).is_multicast());
    }

    /// Every accept and reject rule of `decide`, with A as the VIP owner unless the case says
    /// otherwise.
    #[test]
    fn decide_rules() {
        use Ignored::*;
        let reply = |f: Frame| Decision::Reply(f);
        let ignore = |i: Ignored| Decision::Ignore(i);

        let cases: Vec<(&str, Vec<u8>, MacAddr, Ipv4Addr, Decision)> = vec![
            // Accepted.
            (
                "arping broadcast request for the VIP",
                ARPING_REQUEST_FOR_VIP.to_vec(),
                A_MAC,
                VIP,
                reply(expected_vip_reply(B_IP)),
            ),
            (
                "kernel request for the VIP (target MAC zero)",
                KERNEL_REQUEST_FOR_VIP.to_vec(),
                A_MAC,
                VIP,
                reply(expected_vip_reply(B_IP)),
            ),
            (
                "request padded to 60 bytes",
                padded(&KERNEL_REQUEST_FOR_VIP),
                A_MAC,
                VIP,
                reply(expected_vip_reply(B_IP)),
            ),
            (
                "unicast request to our MAC (cache refresh)",
                edited(&KERNEL_REQUEST_FOR_VIP, |v| set_eth_dst(v, A_MAC)),
                A_MAC,
                VIP,
                reply(expected_vip_reply(B_IP)),
            ),
            (
                "RFC 5227 probe for the VIP is defended",
                PROBE_FOR_VIP.to_vec(),
                A_MAC,
                VIP,
                reply(expected_vip_reply(Ipv4Addr::UNSPECIFIED)),
            ),
            (
                "request for A's address when that is the VIP: kernel's own reply",
                ARPING_REQUEST_FOR_A.to_vec(),
                A_MAC,
                A_IP,
                reply(KERNEL_REPLY_FROM_A),
            ),
            // Malformed.
            (
                "truncated ARP payload",
                KERNEL_REQUEST_FOR_VIP[..41].to_vec(),
                A_MAC,
                VIP,
                ignore(Malformed(ArpError::Truncated { len: 27 })),
            ),
            (
                "truncated Ethernet header",
                KERNEL_REQUEST_FOR_VIP[..10].to_vec(),
                A_MAC,
                VIP,
                ignore(Malformed(ArpError::FrameTruncated { len: 10 })),
            ),
            (
                "IPv4 ethertype",
                edited(&KERNEL_REQUEST_FOR_VIP, |v| {
                    v[12..14].copy_from_slice(&[0x08, 0x00])
                }),
                A_MAC,
                VIP,
                ignore(Malformed(ArpError::NotArp(0x0800))),
            ),
            (
                "802.1Q tagged ARP (another VLAN)",
                edited(&KERNEL_REQUEST_FOR_VIP, |v| {
                    v.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
                }),
                A_MAC,
                VIP,
                ignore(Malformed(ArpError::NotArp(0x8100))),
            ),
            (
                "hardware type IEEE 802",
                edited(&KERNEL_REQUEST_FOR_VIP, |v| {
                    v[14..16].copy_from_slice(&[0, 6])
                }),
                A_MAC,
                VIP,
                ignore(Malformed(ArpError::HardwareType(6))),
            ),
            (
                "protocol type IPv6",
                edited(&KERNEL_REQUEST_FOR_VIP, |v| {
                    v[16..18].copy_from_slice(&[0x86, 0xdd])
                }),
                A_MAC,
                VIP,
                ignore(Malformed(ArpError::ProtocolType(0x86dd))),
            ),
            (
                "hardware length 8",
                edited(&KERNEL_REQUEST_FOR_VIP, |v| v[18] = 8),
                A_MAC,
                VIP,
                ignore(Malformed(ArpError::AddressLengths { hlen: 8, plen: 4 })),
            ),
            // Our own frames, looped back by AF_PACKET.
            (
                "our own GARP",
                build_gratuitous(A_MAC, VIP).to_vec(),
                A_MAC,
                VIP,
                ignore(OwnFrame),
            ),
            (
                "our own reply",
                KERNEL_REPLY_FROM_A.to_vec(),
                A_MAC,
                A_IP,
                ignore(OwnFrame),
            ),
            (
                "Ethernet source is ours",
                edited(&KERNEL_REQUEST_FOR_VIP, |v| set_eth_src(v, A_MAC)),
                A_MAC,
                VIP,
                ignore(OwnFrame),
            ),
            (
                "ARP sender is ours",
                edited(&KERNEL_REQUEST_FOR_VIP, |v| set_sender_mac(v, A_MAC)),
                A_MAC,
                VIP,
                ignore(OwnFrame),
            ),
            // Someone else claims the VIP.
            (
                "gratuitous request for the VIP from another station",
                GARP_REQUEST_FROM_B.to_vec(),
                A_MAC,
                B_IP,
                ignore(Conflict { mac: B_MAC }),
            ),
            (
                "gratuitous reply for the VIP from another station",
                GARP_REPLY_FROM_B.to_vec(),
                A_MAC,
                B_IP,
                ignore(Conflict { mac: B_MAC }),
            ),
            (
                "reply from another owner of the VIP",
                KERNEL_REPLY_FROM_A.to_vec(),
                OTHER_MAC,
                A_IP,
                ignore(Conflict { mac: A_MAC }),
            ),
            // Not a request for the VIP.
            (
                "reply for another address",
                KERNEL_REPLY_FROM_A.to_vec(),
                OTHER_MAC,
                VIP,
                ignore(NotRequest(ArpOp::Reply)),
            ),
            (
                "RARP request op 3",
                edited(&KERNEL_REQUEST_FOR_VIP, |v| v[21] = 3),
                A_MAC,
                VIP,
                ignore(NotRequest(ArpOp::Other(3))),
            ),
            (
                "request for another address",
                ARPING_REQUEST_FOR_A.to_vec(),
                A_MAC,
                VIP,
                ignore(NotForVip),
            ),
            (
                "gratuitous request for another address",
                GARP_REQUEST_FROM_B.to_vec(),
                A_MAC,
                VIP,
                ignore(NotForVip),
            ),
            (
                "probe for another address",
                PROBE_FOR_A.to_vec(),
                OTHER_MAC,
                VIP,
                ignore(NotForVip),
            ),
            // A request for the VIP we still must not answer.
            (
                "unicast to another station (promiscuous interface)",
                edited(&KERNEL_REQUEST_FOR_VIP, |v| set_eth_dst(v, OTHER_MAC)),
                A_MAC,
                VIP,
                ignore(NotAddressedToUs),
            ),
            (
                "Ethernet multicast destination",
                edited(&KERNEL_REQUEST_FOR_VIP, |v| {
                    set_eth_dst(v, MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]))
                }),
                A_MAC,
                VIP,
                ignore(NotAddressedToUs),
            ),
            (
                "multicast sender MAC",
                edited(&KERNEL_REQUEST_FOR_VIP, |v| {
                    set_sender_mac(v, MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]))
                }),
                A_MAC,
                VIP,
                ignore(BogusSender),
            ),
            (
                "zero sender MAC",
                edited(&KERNEL_REQUEST_FOR_VIP, |v| {
                    set_sender_mac(v, MacAddr::ZERO)
                }),
                A_MAC,
                VIP,
                ignore(BogusSender),
            ),
            (
                "multicast sender IP",
                edited(&KERNEL_REQUEST_FOR_VIP, |v| {
                    set_sender_ip(v, Ipv4Addr::new(224, 0, 0, 1))
                }),
                A_MAC,
                VIP,
                ignore(BogusSender),
            ),
            (
                "broadcast sender IP",
                edited(&KERNEL_REQUEST_FOR_VIP, |v| {
                    set_sender_ip(v, Ipv4Addr::BROADCAST)
                }),
                A_MAC,
                VIP,
                ignore(BogusSender),
            ),
            (
                "loopback sender IP",
                edited(&KERNEL_REQUEST_FOR_VIP, |v| {
                    set_sender_ip(v, Ipv4Addr::LOCALHOST)
                }),
                A_MAC,
                VIP,
                ignore(BogusSender),
            ),
        ];

        for (name, frame, our_mac, vip, expected) in cases {
            let got = decide(&frame, our_mac, vip);
            assert_eq!(got, expected, "case: {name}");
            let want_reply = matches!(expected, Decision::Reply(_));
            assert_eq!(answer(&frame, our_mac, vip).is_some(), want_reply, "{name}");
        }
    }

    #[test]
    fn requests_for_vip_are_counted_even_when_ignored() {
        assert!(Ignored::NotAddressedToUs.is_request_for_vip());
        assert!(Ignored::BogusSender.is_request_for_vip());
        assert!(!Ignored::NotForVip.is_request_for_vip());
        assert!(!Ignored::OwnFrame.is_request_for_vip());
    }
}
