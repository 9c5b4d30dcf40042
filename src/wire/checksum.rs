//! The Internet checksum (RFC 1071) over an IP pseudo-header and a message, for both families:
//! ICMPv6 (NDP, `ndp`) and VRRP (`vrrp`) are both checksummed this way.
//!
//! Owns: the one's-complement sum and the two pseudo-header layouts (IPv4: RFC 768 style, as
//! RFC 9568 section 5.2.8 uses it; IPv6: RFC 8200 section 8.1). Does not own: where the field
//! sits in a message.

use std::net::{IpAddr, Ipv6Addr};

/// The checksum of the pseudo-header (`src`, `dst`, `next_header`, the message length) followed
/// by `message`. Over a message whose checksum field is zero it is the value to put there; over
/// a received message it is zero when the field is right.
///
/// Mixed families cannot occur on the wire; they are summed in the IPv6 layout with the IPv4
/// address mapped, which can only make a received message fail its check.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, next_header: u8, message: &[u8]) -> u16 {
    let mut sum = Sum::default();
    let len = message.len();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum.add(&s.octets());
            sum.add(&d.octets());
            sum.add(&[0, next_header]);
            sum.add(&(len.min(usize::from(u16::MAX)) as u16).to_be_bytes());
        }
        (s, d) => {
            sum.add(&v6(s).octets());
            sum.add(&v6(d).octets());
            // Upper-layer length as 32 bits, then three zero bytes and the next header.
            sum.add(&(len.min(u32::MAX as usize) as u32).to_be_bytes());
            sum.add(&[0, 0, 0, next_header]);
        }
    }
    sum.add(message);
    sum.finish()
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// A running one's-complement sum; every part added here has an even length except possibly
/// the message, which comes last (RFC 1071: an odd trailing byte is the high byte of a word).
#[derive(Default)]
struct Sum(u32);

impl Sum {
    fn add(&mut self, bytes: &[u8]) {
        for pair in bytes.chunks(2) {
            let word = match *pair {
                [hi, lo] => u16::from_be_bytes([hi, lo]),
                [hi] => u16::from_be_bytes([hi, 0]),
                _ => 0,
            };
            // Folding as we go keeps the u32 from overflowing on any message length.
            self.0 += u32::from(word);
            self.0 = (self.0 & 0xffff) + (self.0 >> 16);
        }
    }

    fn finish(self) -> u16 {
        let mut sum = self.0;
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn odd_length_pads_with_zero() {
        let s = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert_eq!(pseudo_header(s, s, 112, &[0xab]), !(112 + 1 + 0xab00));
    }

    #[test]
    fn ipv6_pseudo_header_counts_length_and_next_header() {
        let s = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        // Sum of the pseudo-header: length 2 and next header 58, then the word 0x0001.
        assert_eq!(pseudo_header(s, s, 58, &[0, 1]), !(2 + 58 + 1));
    }
}
