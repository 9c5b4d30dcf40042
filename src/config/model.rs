//! The validated configuration: what the rest of vipgate consumes.
//!
//! Owns the types only. A value of these types exists only after `validate` accepted the file,
//! so a route always names a pool that exists (`PoolId` cannot be built outside this module
//! tree) and every address has been parsed. Parsing TOML and reporting errors live in `load`
//! and `validate`.

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU8;
use std::path::PathBuf;
use std::time::Duration;

/// Gratuitous ARPs sent when a VIP is taken over (keepalived sends 5, back to back).
pub const DEFAULT_GARP_COUNT: u32 = 5;
/// Spacing of the takeover burst; a little spacing survives a switch that drops a back-to-back
/// burst while still refreshing every cache within half a second.
pub const DEFAULT_GARP_INTERVAL: Duration = Duration::from_millis(100);

/// VRRP priority when `priority` is not set (RFC 9568's default for a backup).
pub const DEFAULT_VRRP_PRIORITY: NonZeroU8 = NonZeroU8::new(100).unwrap();
/// Advertisement interval when `advert_interval` is not set (RFC 9568's default, 100 cs).
pub const DEFAULT_ADVERT_INTERVAL: AdvertInterval = AdvertInterval(100);

/// Gratuitous ARP refresh while master: well inside the ~300 s after which switches forget
/// where a MAC is, so a quiet VIP stays reachable without flooding.
pub const DEFAULT_GARP_REFRESH: Duration = Duration::from_secs(60);

/// A whole, valid configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, for messages.
    pub source: PathBuf,
    pub vips: Vec<Vip>,
    pub listeners: Vec<Listener>,
    pub hosts: Vec<Host>,
    pub pools: Vec<Pool>,
    /// The VRRP election this node takes part in; without it the node owns its VIPs alone.
    pub vrrp: Option<Vrrp>,
}

/// One virtual IP this node owns and announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    pub address: Ipv4Addr,
    /// The LAN interface on which ARP for the VIP is answered.
    pub interface: String,
    pub garp: GarpBurst,
}

/// The gratuitous ARP burst sent on takeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GarpBurst {
    pub count: u32,
    pub interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub bind: SocketAddr,
    pub protocol: Protocol,
}

/// A set of host names sharing one list of routes.
#[derive(Debug, Clone)]
pub struct Host {
    pub names: Vec<HostName>,
    /// In file order; the route table ranks them by prefix length.
    pub routes: Vec<Route>,
}

/// A host name pattern, stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostName {
    /// `blog.example.test`
    Exact(String),
    /// `*.example.test`, stored as the suffix `.example.test`: matches one or more labels in
    /// front of it, never the bare `example.test`.
    Wildcard(String),
}

impl std::fmt::Display for HostName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostName::Exact(n) => f.write_str(n),
            HostName::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Starts with `/`. Matches whole path segments: `/api` matches `/api`, `/api/x` and
    /// `/api?q`, not `/apiary`; a prefix ending in `/` matches everything below it.
    pub prefix: String,
    pub pool: PoolId,
}

/// Index of a pool in `Config::pools`; only validation creates one, so it is always in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolId(pub(super) usize);

impl PoolId {
    pub fn index(self) -> usize {
        self.0
    }
}

#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    /// Never empty.
    pub backends: Vec<SocketAddr>,
}

impl Config {
    pub fn pool(&self, id: PoolId) -> &Pool {
        // PoolId is only minted by validation for this config's pool list.
        &self.pools[id.0]
    }
}

/// One VRRPv3 virtual router covering every `[[vip]]` of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vrrp {
    /// Virtual router id, 1 to 255; adverts for other ids are ignored.
    pub vrid: NonZeroU8,
    /// 1 to 255; 255 marks the owner, which takes the VIPs at once and always preempts.
    pub priority: NonZeroU8,
    pub advert_interval: AdvertInterval,
    /// Unicast peers to advertise to and to accept adverts from; empty means multicast to
    /// 224.0.0.18 and adverts from anyone on the link.
    pub peers: Vec<Ipv4Addr>,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// Where adverts are sent and received; its first IPv4 address is the source.
    pub interface: String,
    /// While master, one gratuitous ARP per VIP this often (`None`: only at takeover).
    pub garp_refresh: Option<Duration>,
}

/// The advertisement interval in centiseconds, 1 to 4095: what the 12-bit wire field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvertInterval(pub(super) u16);

impl AdvertInterval {
    pub fn centiseconds(self) -> u16 {
        self.0
    }

    pub fn duration(self) -> Duration {
        Duration::from_millis(u64::from(self.0) * 10)
    }
}
