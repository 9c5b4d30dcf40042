//! Layer 2: holding a VIP on the LAN the way MetalLB's layer-2 mode does, from userspace.
//!
//! Owns: answering ARP (IPv4) or Neighbor Solicitations (IPv6) for the VIP on its interface and
//! the gratuitous-ARP / unsolicited-NA burst that moves the LAN's caches to us (`arp` and `ndp`
//! for the packets and the rules, `announcer` for the socket and threads), and the kernel state that goes with it (`route`): a `local VIP/32 dev lo` route in
//! table local so the kernel delivers the VIP's packets to our listeners without the VIP being
//! an interface address, and `arp_ignore=1` / `arp_announce=2` on the interface so the kernel
//! neither answers ARP for the VIP nor uses it as an ARP sender address.
//!
//! Does not own: deciding which node should hold the VIP, or when (that is `ha`, which calls
//! [`Announcer::start`] and [`Announcer::stop`]); listening sockets (`proxy`).
//!
//! Requires CAP_NET_RAW (packet socket) and CAP_NET_ADMIN (route, sysctls).
//!
//! # Layout
//! - [`arp`]: Ethernet/IPv4 ARP as a checked view and a `Repr`, frame builders, and `decide`,
//!   the pure answer rule. No I/O.
//! - [`ndp`]: IPv6 Neighbor Solicitation/Advertisement over Ethernet, the same way: checked
//!   view, `Repr`, frame builders and `decide`. No I/O.
//! - [`checksum`]: the Internet checksum over an IPv4 or IPv6 pseudo-header (NDP, VRRP).
//! - [`route`]: the local route over rtnetlink and the two sysctls.
//! - [`announcer`]: [`Announcer`], the lifecycle of one announced VIP, and [`release`] for
//!   cleanup after a crash.
//! - [`sched`]: the raised scheduling priority of the threads that keep a VIP on the LAN
//!   (these and `ha`'s) and the socket priority of what they send.

pub mod announcer;
pub mod arp;
pub mod checksum;
mod error;
pub mod metrics;
pub mod ndp;
pub mod route;
pub mod sched;

pub use announcer::{release, start_all, stop_all, Announcer, ArpStats, ArpStatsSnapshot};
pub use arp::MacAddr;
pub use error::L2Error;
