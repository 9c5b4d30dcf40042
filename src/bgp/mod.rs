//! BGP mode: VIPs announced from every healthy node at once (active-active), through the BGP
//! daemon of the host (BIRD 2), and spread over the nodes by the upstream router's ECMP.
//!
//! vipgate speaks no BGP itself. It puts `VIP/32 dev vipgate-bgp` (`/128`; a TUN device of the
//! process, `device`, so that the routes vanish when vipgate dies) into a kernel table of its
//! own (`[bgp] table`, 86 by default) while this node should announce the VIP; BIRD's `kernel`
//! protocol learns that table (`learn`, netlink notifications: ~10 ms measured) and its BGP
//! sessions export the routes with `next hop self`. Why a table and not BIRD commands: see
//! docs/architecture.md (the table survives BIRD restarts, BIRD re-learns it when it starts,
//! any daemon that imports a kernel table — FRR, GoBGP with zebra — reads the same thing, and
//! vipgate needs no BIRD configuration per VIP).
//!
//! Owns: the hysteresis and the wanted routes (`gate`, pure), BIRD's control socket (`bird`,
//! the reply parser pure), the device the routes point at (`device`), and the running
//! reconcile loop (`speaker`), and its metrics (`metrics`). Does not own the
//! routes' netlink calls (`l2::route`), what tracked conditions read (`daemon::track`), nor
//! the VIPs announced with ARP (`l2`, `ha`).
//!
//! Requires CAP_NET_ADMIN (routes, sysctls); the control socket needs write access to it.

pub mod bird;
mod device;
pub mod gate;
pub mod metrics;
mod speaker;

pub use speaker::{release, Speaker};
