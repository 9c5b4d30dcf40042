//! vipgate: one daemon that owns a virtual IP on a LAN segment and routes the HTTP that arrives
//! at it.
//!
//! # Layout
//!
//! Data flows one way, from configuration to the edges that touch the network:
//!
//! - [`config`]: the TOML schema, loading and validation into a [`config::Config`] that cannot
//!   name a pool that does not exist.
//! - [`l2`]: owning the VIP on the LAN: ARP answers and gratuitous ARP on an AF_PACKET socket,
//!   the local route that makes the kernel deliver the VIP's packets, the ARP sysctls.
//! - [`proxy`]: the front: listeners, the protocol-independent request pipeline (`exchange`,
//!   with one error type, `error`), HTTP/1.x (`http1`: wire format and connection driver), the
//!   Host/path table (`route`) and backend pools (`upstream`).
//! - [`ha`]: which node holds the VIPs: VRRPv3 election with keepalived and routers as peers.
//! - [`bgp`]: VIPs announced from every healthy node through the local BGP daemon (BIRD), by a
//!   kernel table it learns; health-gated with rise/fall, withdrawn before the drain.
//! - [`acme`]: certificates by ACME (RFC 8555): account, orders, renewal, and the HTTP-01 and
//!   TLS-ALPN-01 answers the listeners give.
//! - [`tls`]: certificate, key and CA files for TLS on both sides of the proxy, checked.
//! - [`telemetry`]: logging set-up.
//! - [`istio`]: `import-istio`, Istio Gateway/VirtualService/DestinationRule YAML to vipgate TOML.
//! - [`wire`]: wire formats and protocol rules over bytes (ARP, NDP, VRRP, checksums, PROXY
//!   protocol, path normalisation), pure, a leaf.
//! - [`sys`]: the system calls no safe crate wraps: the crate's only `unsafe` code, a leaf.
//! - [`daemon`]: the `run`, `check` and `release` commands: start everything in order, reload on
//!   SIGHUP, drain and stop in reverse on SIGTERM/SIGINT, and tell systemd (sd_notify).
//!
//! Packet and protocol code (`wire`, `proxy::http1`, `proxy::route`) is pure functions over
//! byte slices and data; sockets live at the edges (`l2::announcer`, `proxy::listener`,
//! `proxy::http1::conn`, `proxy::http1::relay`).

pub mod acme;
pub mod bgp;
pub mod config;
pub mod daemon;
pub mod ha;
pub mod istio;
pub mod l2;
pub mod proxy;
pub mod resolve;
#[allow(unsafe_code)] // the one audited module; see its top comment
pub mod sys;
pub mod telemetry;
pub mod tls;
pub mod wire;
