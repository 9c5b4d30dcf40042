//! Protocol rules and wire formats over bytes, with no dependency on the rest of the crate (a
//! leaf of the module graph): pure functions, unit-tested with captured bytes; the layers that
//! own sockets (`l2`, `ha`, `proxy`) and the configuration checks use them.
//!
//! - [`arp`]: Ethernet/IPv4 ARP as a checked view and a `Repr`, frame builders, and `decide`,
//!   the answer rule (`l2::announcer` runs it).
//! - [`ndp`]: IPv6 Neighbor Solicitation/Advertisement over Ethernet, the same way.
//! - [`checksum`]: the Internet checksum over an IPv4 or IPv6 pseudo-header (NDP, VRRP).
//! - [`vrrp`]: VRRPv3 adverts for IPv4 and IPv6: parse, build, checksum (`ha` runs the
//!   election).
//! - [`proxy_protocol`]: PROXY protocol v1/v2 parse and v2 build (`proxy::listener`,
//!   `proxy::l4`).
//! - [`path`]: request path normalisation (RFC 3986 §6.2.2), for HTTP/1.1 targets and HTTP/2
//!   `:path` alike.

pub mod arp;
pub mod checksum;
pub mod ndp;
pub mod path;
pub mod proxy_protocol;
pub mod vrrp;
