//! Whether the VRRP interface has a link (carrier), read from sysfs.
//!
//! Owns: reading `/sys/class/net/IF/carrier` and what its answers mean. Does not own what the
//! election does without a link (`router`: it leaves the election as keepalived's FAULT does).
//!
//! Why the election cares: a master whose cable is pulled keeps advertising into the dead
//! link. With unicast `peers`, each advert needs the peer's MAC; the kernel flushed its
//! neighbour entries when the carrier went, so the adverts leave an entry resolving
//! (INCOMPLETE) whose next ARP probe is up to `retrans_time` (1 s) away. When the link returns
//! the adverts queue behind that entry while the broadcast gratuitous ARPs go out at once:
//! clients follow the returning node, the other master does not hear it for up to a second,
//! and both answer (measured: 0.3–1.1 s outages at 100 ms adverts, two owners once at 1 s;
//! see docs/ha.md). A node that does not advertise while it has no link comes back as a
//! backup with no pending neighbour entry: its first advert resolves the peer at once.

use std::io;

/// The carrier of `interface`: `Some(true)` with a link, `Some(false)` without one (also when
/// the interface is administratively down, which the kernel reports as EINVAL), `None` when
/// it cannot be told (no such file: sysfs of another namespace, or no sysfs).
pub fn carrier(interface: &str) -> Option<bool> {
    match std::fs::read(format!("/sys/class/net/{interface}/carrier")) {
        Ok(bytes) => Some(parse(&bytes)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Some(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(_) => None,
    }
}

fn parse(bytes: &[u8]) -> bool {
    bytes.first() == Some(&b'1')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carrier_file_contents() {
        assert!(parse(b"1\n"));
        assert!(!parse(b"0\n"));
        assert!(!parse(b""));
        assert_eq!(carrier("no-such-if0"), None);
        // Loopback always has its carrier (where sysfs shows it at all).
        assert_ne!(carrier("lo"), Some(false));
    }
}
