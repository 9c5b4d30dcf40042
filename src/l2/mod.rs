//! Layer 2: holding a VIP on the LAN the way MetalLB's layer-2 mode does, from userspace.
//!
//! Owns: answering ARP (IPv4) or Neighbor Solicitations (IPv6) for the VIP on its interface and
//! the gratuitous-ARP / unsolicited-NA burst that moves the LAN's caches to us (`wire::arp` and
//! `wire::ndp` for the packets and the rules, `announcer` for the socket and threads), and the kernel state that goes with it (`route`): a `local VIP/32 dev lo` route in
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
//! - The packets and the answer rules are `wire::arp` and `wire::ndp` (pure, no I/O).
//! - [`route`]: the local route over rtnetlink and the two sysctls.
//! - [`announcer`]: [`Announcer`], the lifecycle of one announced VIP, and [`release`] for
//!   cleanup after a crash; `filter`: the BPF programs on its socket; [`metrics`]: the VIP's
//!   counters ([`ArpStats`]) and their exposition.
//! - [`sched`]: the raised scheduling priority of the threads that keep a VIP on the LAN
//!   (these and `ha`'s) and the socket priority of what they send.

pub mod announcer;
mod error;
mod filter;
pub mod metrics;
pub mod route;
pub mod sched;

pub use crate::wire::arp::MacAddr;
pub use announcer::{release, start_all, stop_all, Announcer};
pub use error::L2Error;
pub use metrics::{ArpStats, ArpStatsSnapshot};
