//! High availability: deciding which node holds the VIPs, with VRRPv3 (RFC 9568, which
//! obsoletes RFC 5798 and keeps its wire format) so that routers and keepalived can be peers.
//!
//! Owns: the election and everything it needs: the advertisement format and checksum
//! (`packet`, pure), the Initialize/Backup/Master state machine with its timers (`machine`,
//! pure and time-driven), health tracking's effect on the priority (`track`), the raw sockets
//! (`socket`), the running virtual router that
//! takes and gives up the VIPs as its state changes (`router`), and the OS threads it runs on,
//! off the proxy's event loops (`thread`). The daemon holds a [`Router`]
//! when the configuration has `[vrrp]`, and announces the VIPs itself otherwise.
//!
//! Does not own: how a VIP is held on the LAN (ARP, GARP, the local route: `l2`, whose
//! [`Announcer`] is started on becoming master and stopped on leaving it), nor listening
//! sockets (`proxy`).
//!
//! Accept mode (RFC 9568 `Accept_Mode`): vipgate's master always accepts packets for the
//! VIPs, since serving them is its purpose; a backup has no local route for them and does not.
//!
//! Requires CAP_NET_RAW (raw IP sockets) and what `l2` requires.

mod error;
mod link;
pub mod machine;
pub mod metrics;
pub mod router;
mod socket;
mod thread;
pub mod track;

pub use error::HaError;
pub use router::Router;
