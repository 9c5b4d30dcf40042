//! The classic BPF programs the kernel runs on the announcer's packet socket, so only the
//! frames the announcer answers reach userspace: untagged ARP requests and replies to us or
//! broadcast (IPv4 VIPs), untagged ICMPv6 Neighbor Solicitations and Advertisements (IPv6
//! VIPs). Pure data and a builder, tested by running the programs on captured frames.

use std::net::IpAddr;

use socket2::SockFilter;

use crate::wire::ndp;

/// `skb->pkt_type` values from `linux/if_packet.h`: to us (0), broadcast, multicast. Another
/// host's (3, promiscuous mode) and our own outgoing frames (4) are above them.
const PACKET_BROADCAST: u32 = 1;
const PACKET_MULTICAST: u32 = 2;

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
const BPF_LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// Classic BPF ancillary loads address `skb` metadata at negative offsets (the wrap to u32 is
/// how the kernel ABI spells them).
const AD_PKTTYPE: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32;
const AD_VLAN_TAG_PRESENT: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_VLAN_TAG_PRESENT) as u32;

/// The in-kernel filter on the packet socket: pass only untagged ARP frames that are broadcast
/// or addressed to us. As `(code, jt, jf, k)`, jumps relative to the next instruction.
///
/// The socket is bound to ETH_P_ARP (see `open_channel`), so the kernel hands it incoming ARP
/// frames only; the filter keeps out those for other hosts, which reach it on a promiscuous
/// interface, so that they are not copied into this process. The VLAN check matters because
/// a frame whose 802.1Q tag the NIC (or veth) stripped into metadata arrives here looking
/// untagged: an ARP request from VLAN 100 would be answered on the untagged LAN.
const ARP_FILTER: [(u16, u8, u8, u32); 8] = [
    /* 0 */ (BPF_LD_W_ABS, 0, 0, AD_PKTTYPE),
    /* 1 */ (BPF_JGT_K, 5, 0, PACKET_BROADCAST), // multicast, other host, outgoing: 7
    /* 2 */ (BPF_LD_W_ABS, 0, 0, AD_VLAN_TAG_PRESENT),
    /* 3 */ (BPF_JEQ_K, 0, 3, 0), // tagged: 7
    /* 4 */ (BPF_LD_H_ABS, 0, 0, 12), // ethertype
    /* 5 */ (BPF_JEQ_K, 0, 1, 0x0806), // ARP: 6, else 7
    /* 6 */ (BPF_RET_K, 0, 0, 0x0004_0000),
    /* 7 */ (BPF_RET_K, 0, 0, 0),
];

/// The filter for an IPv6 VIP: untagged frames to us or to a multicast group (the solicited-
/// node group is one), carrying ICMPv6 right after the IPv6 header, of type 135 (Neighbor
/// Solicitation) or 136 (Neighbor Advertisement: another node claiming the VIP is counted as a
/// conflict, which the VRRP hand-over waits for). Offsets: ethertype 12, next header 14 + 6,
/// ICMPv6 type 14 + 40.
const NDP_FILTER: [(u16, u8, u8, u32); 13] = [
    /* 0 */ (BPF_LD_W_ABS, 0, 0, AD_PKTTYPE),
    /* 1 */ (BPF_JGT_K, 10, 0, PACKET_MULTICAST), // other host, outgoing: 12
    /* 2 */ (BPF_LD_W_ABS, 0, 0, AD_VLAN_TAG_PRESENT),
    /* 3 */ (BPF_JEQ_K, 0, 8, 0), // tagged: 12
    /* 4 */ (BPF_LD_H_ABS, 0, 0, 12),
    /* 5 */ (BPF_JEQ_K, 0, 6, ndp::ETHERTYPE_IPV6 as u32),
    /* 6 */ (BPF_LD_B_ABS, 0, 0, 20),
    /* 7 */ (BPF_JEQ_K, 0, 4, ndp::NEXT_HEADER_ICMPV6 as u32),
    /* 8 */ (BPF_LD_B_ABS, 0, 0, 54),
    /* 9 */ (BPF_JEQ_K, 1, 0, ndp::TYPE_NEIGHBOR_SOLICIT as u32), // 11
    /* 10 */ (BPF_JEQ_K, 0, 1, ndp::TYPE_NEIGHBOR_ADVERT as u32), // else 12
    /* 11 */ (BPF_RET_K, 0, 0, 0x0004_0000),
    /* 12 */ (BPF_RET_K, 0, 0, 0),
];

/// The program for `vip`'s family.
pub(super) fn filter(vip: IpAddr) -> Vec<SockFilter> {
    let program: &[(u16, u8, u8, u32)] = match vip {
        IpAddr::V4(_) => &ARP_FILTER,
        IpAddr::V6(_) => &NDP_FILTER,
    };
    program
        .iter()
        .map(|&(code, jt, jf, k)| SockFilter::new(code, jt, jf, k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    use crate::wire::arp::MacAddr;

    /// Enough of a classic BPF interpreter to run `ARP_FILTER` over a frame with the given
    /// skb metadata; returns the accepted length (0 = dropped).
    fn run_filter(frame: &[u8], pkt_type: u32, vlan_tagged: bool) -> u32 {
        run(&ARP_FILTER, frame, pkt_type, vlan_tagged)
    }

    fn run(program: &[(u16, u8, u8, u32)], frame: &[u8], pkt_type: u32, vlan_tagged: bool) -> u32 {
        let mut a: u32 = 0;
        let mut pc = 0;
        loop {
            let (code, jt, jf, k) = program[pc];
            pc += 1;
            match code {
                BPF_LD_W_ABS if k == AD_PKTTYPE => a = pkt_type,
                BPF_LD_W_ABS if k == AD_VLAN_TAG_PRESENT => a = u32::from(vlan_tagged),
                BPF_LD_H_ABS => {
                    let at = k as usize;
                    match frame.get(at..at + 2) {
                        Some(b) => a = u32::from(u16::from_be_bytes([b[0], b[1]])),
                        // The kernel drops the packet on an out-of-bounds load.
                        None => return 0,
                    }
                }
                BPF_LD_B_ABS => match frame.get(k as usize) {
                    Some(&b) => a = u32::from(b),
                    None => return 0,
                },
                BPF_JEQ_K => pc += usize::from(if a == k { jt } else { jf }),
                BPF_JGT_K => pc += usize::from(if a > k { jt } else { jf }),
                BPF_RET_K => return k,
                other => panic!("instruction {other:#x} not modelled"),
            }
        }
    }

    /// A broadcast ARP request (captured with arping, see `arp` tests).
    static ARP_REQUEST: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0xd2, 0xe2, 0xce, 0x1b, 0xc0, 0x82, 0xc0, 0x00,
        0x02, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0, 0x00, 0x02, 0xc8,
    ];

    #[test]
    fn filter_passes_only_untagged_arp_for_us() {
        const HOST: u32 = 0;
        const MULTICAST: u32 = 2;
        const OTHERHOST: u32 = 3;
        const OUTGOING: u32 = 4;
        let mut ipv4 = ARP_REQUEST.to_vec();
        ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut inline_tag = ARP_REQUEST.to_vec();
        inline_tag.splice(12..12, [0x81, 0x00, 0x00, 0x64]);

        let cases: [(&str, &[u8], u32, bool, bool); 9] = [
            ("broadcast ARP", &ARP_REQUEST, PACKET_BROADCAST, false, true),
            ("ARP unicast to us", &ARP_REQUEST, HOST, false, true),
            (
                "ARP to a multicast MAC",
                &ARP_REQUEST,
                MULTICAST,
                false,
                false,
            ),
            (
                "ARP for another host (promiscuous)",
                &ARP_REQUEST,
                OTHERHOST,
                false,
                false,
            ),
            ("our own outgoing ARP", &ARP_REQUEST, OUTGOING, false, false),
            (
                "ARP with the VLAN tag in metadata",
                &ARP_REQUEST,
                PACKET_BROADCAST,
                true,
                false,
            ),
            (
                "ARP with the VLAN tag in the frame",
                &inline_tag,
                PACKET_BROADCAST,
                false,
                false,
            ),
            ("IPv4", &ipv4, HOST, false, false),
            (
                "runt frame",
                &ARP_REQUEST[..12],
                PACKET_BROADCAST,
                false,
                false,
            ),
        ];
        for (name, frame, pkt_type, tagged, pass) in cases {
            assert_eq!(run_filter(frame, pkt_type, tagged) > 0, pass, "{name}");
        }
    }

    #[test]
    fn ndp_filter_passes_only_untagged_solicitations_and_advertisements() {
        const HOST: u32 = 0;
        const OTHERHOST: u32 = 3;
        const OUTGOING: u32 = 4;
        let vip: Ipv6Addr = "2001:db8::200".parse().unwrap();
        let mac = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
        let na = ndp::build_unsolicited(mac, vip);
        let ns = ndp::emit_frame(
            ndp::multicast_mac(ndp::solicited_node(vip)),
            MacAddr([0x02, 0, 0, 0, 0, 0x02]),
            "fe80::2".parse().unwrap(),
            ndp::solicited_node(vip),
            &ndp::NdpRepr::Solicit {
                target: vip,
                source_mac: Some(MacAddr([0x02, 0, 0, 0, 0, 0x02])),
            },
        );
        let mut router_solicit = ns.to_vec();
        router_solicit[54] = 133;
        let mut udp = ns.to_vec();
        udp[20] = 17;
        let cases: [(&str, &[u8], u32, bool, bool); 10] = [
            (
                "NS to the solicited-node group",
                &ns,
                PACKET_MULTICAST,
                false,
                true,
            ),
            ("NS unicast to us (NUD)", &ns, HOST, false, true),
            ("NA to all nodes", &na, PACKET_MULTICAST, false, true),
            (
                "router solicitation",
                &router_solicit,
                PACKET_MULTICAST,
                false,
                false,
            ),
            ("UDP", &udp, HOST, false, false),
            ("ARP", &ARP_REQUEST, PACKET_BROADCAST, false, false),
            (
                "NS for another host (promiscuous)",
                &ns,
                OTHERHOST,
                false,
                false,
            ),
            ("our own outgoing NA", &na, OUTGOING, false, false),
            (
                "NS with the VLAN tag in metadata",
                &ns,
                PACKET_MULTICAST,
                true,
                false,
            ),
            ("runt frame", &ns[..40], PACKET_MULTICAST, false, false),
        ];
        for (name, frame, pkt_type, tagged, pass) in cases {
            assert_eq!(
                run(&NDP_FILTER, frame, pkt_type, tagged) > 0,
                pass,
                "{name}"
            );
        }
    }
}
