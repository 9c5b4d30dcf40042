//! The validated configuration: what the rest of vipgate consumes.
//!
//! Owns the types only. A value of these types exists only after `validate` accepted the file,
//! so a route always names a pool that exists (`PoolId` cannot be built outside this module
//! tree) and every address has been parsed. Parsing TOML and reporting errors live in `load`
//! and `validate`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU8;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::wire::path::{EscapedSlashes, PathRules};

/// Gratuitous ARPs sent when a VIP is taken over (keepalived sends 5, back to back).
pub const DEFAULT_GARP_COUNT: u32 = 5;
/// Spacing of the takeover burst; a little spacing survives a switch that drops a back-to-back
/// burst while still refreshing every cache within half a second.
pub const DEFAULT_GARP_INTERVAL: Duration = Duration::from_millis(100);

/// How long a stopping daemon lets in-flight requests finish (HAProxy's `hard-stop-after`,
/// nginx's `worker_shutdown_timeout`); below systemd's default stop timeout of 90 s.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// VRRP priority when `priority` is not set (RFC 9568's default for a backup).
pub const DEFAULT_VRRP_PRIORITY: NonZeroU8 = NonZeroU8::new(100).unwrap();
/// Advertisement interval when `advert_interval` is not set (RFC 9568's default, 100 cs).
pub const DEFAULT_ADVERT_INTERVAL: AdvertInterval = AdvertInterval(100);

/// Gratuitous ARP refresh while master: well inside the ~300 s after which switches forget
/// where a MAC is, so a quiet VIP stays reachable without flooding.
pub const DEFAULT_GARP_REFRESH: Duration = Duration::from_secs(60);
/// `[vrrp] startup_listen` when not set: how much longer than Master_Down_Interval a node of
/// priority 1 listens at start-up before it may first become master (a higher priority
/// listens less, in proportion). Chosen from scripts/failover-bench's simultaneous starts,
/// see docs/ha.md.
pub const DEFAULT_STARTUP_LISTEN: Duration = Duration::from_secs(1);

/// A whole, valid configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, for messages.
    pub source: PathBuf,
    pub vips: Vec<Vip>,
    pub listeners: Vec<Listener>,
    pub hosts: Vec<Host>,
    pub pools: Vec<Pool>,
    pub proxy: ProxySettings,
    pub daemon: Daemon,
    /// The VRRP election this node takes part in; without it the node owns its VIPs alone.
    pub vrrp: Option<Vrrp>,
    /// The VIPs announced over BGP (`announce = "bgp"`) and how; `None` without any. Those VIPs
    /// are not in `vips`, which holds the ones announced with ARP/NDP.
    pub bgp: Option<Bgp>,
    /// The admin listener (`[admin]`); `None` when `enabled = false`.
    pub admin: Option<Admin>,
    /// The access log (`[access_log]`); `None` without the table or with `enabled = false`.
    pub access_log: Option<AccessLogSettings>,
    pub log: LogSettings,
    /// `[[certificate]]`, in file order; loaded and checked (see [`Certificate`]).
    pub certificates: Vec<Certificate>,
    /// `[resolver]`: how the names of [`Pool::names`] are looked up.
    pub resolver: ResolverSettings,
    /// `[acme]`; `None` without the table (then no certificate has `acme`).
    pub acme: Option<Acme>,
}

impl Config {
    /// Every distinct name the pools look up, in a stable order.
    pub fn lookups(&self) -> Vec<Lookup> {
        let mut all: Vec<Lookup> = self
            .pools
            .iter()
            .flat_map(|p| p.names.iter().map(|n| n.lookup.clone()))
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// A certificate chain and key for `https` listeners, read and checked when the file was
/// validated (parses, key matches, not expired).
#[derive(Debug, Clone)]
pub struct Certificate {
    /// Paths as resolved against the config file's directory.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The names written in `names`; `None`: the certificate's DNS subjectAltNames (taken
    /// again from the file whenever it is reloaded).
    pub names: Option<Vec<HostName>>,
    /// Served when SNI is missing or matches no certificate (and the listener allows it).
    pub default: bool,
    pub loaded: crate::tls::LoadedCert,
    /// Obtained by ACME: `cert` and `key` are one file in the `[acme]` storage (written
    /// there when issued), and `loaded` is a placeholder until it exists.
    pub acme: bool,
}

impl Certificate {
    /// The names this certificate is chosen for, lower-case, wildcards as `*.suffix`.
    pub fn serves(&self) -> Vec<String> {
        match &self.names {
            Some(names) => names.iter().map(ToString::to_string).collect(),
            None => self.loaded.dns_names.clone(),
        }
    }
}

/// Where the admin listener (metrics, health, config view, reload) listens.
pub const DEFAULT_ADMIN_BIND: SocketAddr =
    SocketAddr::V4(std::net::SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9901));
/// The daemon's log level when neither `[log] level` nor RUST_LOG says otherwise.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// `[admin]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admin {
    pub bind: SocketAddr,
}

/// `[access_log]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccessLogSettings {
    pub format: AccessLogFormat,
    /// The share of requests logged, 0.0 to 1.0.
    pub sample: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    Json,
    Logfmt,
    /// Apache/nginx combined, then vipgate's fields as key=value.
    Combined,
}

impl AccessLogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLogFormat::Json => "json",
            AccessLogFormat::Logfmt => "logfmt",
            AccessLogFormat::Combined => "combined",
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// A level or a RUST_LOG-style directive list, checked when the file is validated.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: DEFAULT_LOG_LEVEL.to_owned(),
        }
    }
}

/// Process-wide settings (`[daemon]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Daemon {
    /// On SIGTERM, how long in-flight requests may take to finish before the process exits.
    pub drain_timeout: Duration,
}

impl Default for Daemon {
    fn default() -> Daemon {
        Daemon {
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

/// One virtual IP this node owns and announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    /// IPv4 (answered with ARP) or IPv6 (answered with NDP); never link-local, loopback,
    /// multicast or unspecified.
    pub address: IpAddr,
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
    /// HTTP/1, routed by `[[host]]`.
    Http,
    /// Whole TCP connections forwarded to one pool (layer 4).
    Tcp {
        pool: PoolId,
        /// Open each backend connection with a PROXY protocol v2 header naming the client.
        send_proxy_v2: bool,
    },
    /// HTTP/1 over TLS, routed by `[[host]]`; the TLS settings are in `Listener::tls`.
    Https,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Tcp { .. } => "tcp",
            Protocol::Https => "https",
        }
    }

    /// Whether connections carry HTTP requests routed by `[[host]]`.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub bind: SocketAddr,
    pub protocol: Protocol,
    /// Expect a PROXY protocol (v1 or v2) header from peers in `[proxy] trusted_proxies`; a
    /// connection from any other peer, or without the header, is refused.
    pub accept_proxy_protocol: bool,
    /// `https` listeners: always `Some`; others `None`.
    pub tls: Option<ListenerTls>,
    /// `http` listeners: answer every request with this redirect (301 or 308) to `https://`.
    pub redirect_https: Option<u16>,
    /// Client connections open at once on this listener (all workers together); more wait in
    /// the kernel's accept queue.
    pub max_connections: usize,
    /// `http` listeners: HTTP/2 with prior knowledge besides HTTP/1.x; `https` listeners: ALPN
    /// `h2` offered before `http/1.1`. Always false on `tcp` listeners.
    pub http2: bool,
}

/// The TLS settings of an `https` listener. Certificates are shared by every `https`
/// listener (`Config::certificates`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    pub sni_fallback: SniFallback,
    pub min_version: TlsVersion,
    pub client_auth: Option<ClientAuth>,
}

/// What a handshake gets when its SNI names no certificate (or it sent none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SniFallback {
    /// The `default = true` certificate (else the first one).
    Default,
    /// No certificate: the handshake fails.
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }
}

/// Client certificates checked against a CA bundle.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    pub ca: PathBuf,
    pub roots: std::sync::Arc<rustls::RootCertStore>,
    /// `false`: a client without a certificate is let in (with no subject).
    pub required: bool,
}

impl PartialEq for ClientAuth {
    fn eq(&self, other: &Self) -> bool {
        self.ca == other.ca && self.required == other.required
    }
}

impl Eq for ClientAuth {}

/// A set of host names sharing one list of routes.
#[derive(Debug, Clone)]
pub struct Host {
    pub names: Vec<HostName>,
    /// Applies to every route of the host, before the route's own list.
    pub access: AccessList,
    /// In file order; the route table ranks them by prefix length.
    pub routes: Vec<Route>,
    /// Non-empty: only requests on TLS connections whose verified client certificate has
    /// one of these subjects (RFC 4514, as `CN=client,O=example`) may use the host (else 403).
    pub allow_client_subjects: Vec<String>,
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
    /// Never empty, every weight at least 1: one entry for `pool = ...`, several for `split`.
    pub split: Vec<WeightedPool>,
    pub retry: RetryPolicy,
    /// Whole exchange, from the request head to the end of the response; `None`: no limit.
    pub timeout: Option<Duration>,
    /// Largest request body accepted (413 beyond); `None`: no limit.
    pub max_body_bytes: Option<u64>,
    pub access: AccessList,
    /// Match the prefix without regard to ASCII case (`/Admin` meets `/admin`), for backends
    /// that treat paths so.
    pub ignore_case: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightedPool {
    pub pool: PoolId,
    pub weight: u32,
}

/// When a failed try may be repeated on another backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra tries after the first; 0 disables retries.
    pub retries: u32,
    pub on: RetryOn,
    /// Limit for one try's wait for the response head; `None`: the backend timeout.
    pub per_try_timeout: Option<Duration>,
}

/// Conditions that allow a retry. A connect failure is always safe to retry (nothing was sent);
/// the others only for idempotent methods without a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn {
    pub connect_failure: bool,
    /// Connection reset or closed before a response head arrived.
    pub reset: bool,
    /// The try's timeout passed before a response head arrived.
    pub timeout: bool,
    /// A 502, 503 or 504 from the backend.
    pub gateway_error: bool,
    /// Any 5xx from the backend.
    pub server_error: bool,
}

/// Allow and deny lists on the real client address. Deny wins; a non-empty allow list admits
/// only what it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl AccessList {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    pub fn admits(&self, ip: IpAddr) -> bool {
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }
}

/// An address block such as `192.0.2.0/24` or `2001:db8::/32`; host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// `None` if `len` is too long for the family or host bits are set.
    pub fn new(addr: IpAddr, len: u8) -> Option<Cidr> {
        let c = Cidr { addr, len };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (len <= max && c.contains(addr) && c.network() == addr).then_some(c)
    }

    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(self.len))),
            IpAddr::V6(a) => {
                IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a) & mask128(self.len)))
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped client (::ffff:a.b.c.d from a dual-stack socket) is its IPv4 self.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => u32::from(a) & mask32(self.len) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(a) & mask128(self.len) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
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
    /// Addresses unique. As validated: the `"IP:PORT"` backends only (empty when the pool
    /// has only names); in a configuration expanded by `resolve::expand`, also every address
    /// its names resolve to now (then [`Backend::name`] says which name).
    pub backends: Vec<Backend>,
    /// Backends given by name (`"NAME:PORT"`, or the pool's `srv`); this and `backends` are
    /// never both empty as validated.
    pub names: Vec<NamedBackend>,
    pub balance: Balance,
    pub health: Option<HealthCheck>,
    pub outlier: Outlier,
    /// Below this share of available backends (percent) the pool balances over its ejected
    /// backends too; 0: never.
    pub panic_threshold_percent: u8,
    /// `[pool.NAME.tls]`: dial the backends with TLS; `None`: plain TCP.
    pub tls: Option<PoolTls>,
    /// What is spoken to the backends.
    pub protocol: BackendProtocol,
}

/// The HTTP version a pool's backends are spoken to in (`[pool.NAME] protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendProtocol {
    /// HTTP/1.1, one request at a time per connection, connections pooled.
    #[default]
    Http1,
    /// HTTP/2: prior knowledge on plain TCP (h2c), ALPN `h2` with TLS; many streams on one
    /// connection per backend and worker. What gRPC backends need.
    Http2,
}

impl BackendProtocol {
    pub fn name(self) -> &'static str {
        match self {
            BackendProtocol::Http1 => "http1",
            BackendProtocol::Http2 => "http2",
        }
    }
}

/// TLS to a pool's backends, with its files already read and checked and the rustls client
/// configuration built from them (once per validated file, shared by every connection).
#[derive(Debug, Clone)]
pub struct PoolTls {
    /// The CA bundle the backends' certificates must chain to; `None` only with
    /// `insecure_skip_verify = true`.
    pub ca: Option<PathBuf>,
    /// Verified against the certificate and sent as SNI; `None`: each backend's IP address
    /// (verified against the certificate's IP address SAN, no SNI).
    pub server_name: Option<rustls_pki_types::ServerName<'static>>,
    /// The client certificate for mutual TLS.
    pub client_cert: Option<ClientCertFiles>,
    pub alpn: Vec<String>,
    pub insecure_skip_verify: bool,
    pub client_config: std::sync::Arc<rustls::ClientConfig>,
    /// What was read from the files, so a reload can tell whether the certificates behind
    /// unchanged paths changed.
    pub(super) roots: Option<std::sync::Arc<rustls::RootCertStore>>,
    pub(super) client_key: Option<std::sync::Arc<rustls::sign::CertifiedKey>>,
}

impl PoolTls {
    /// Whether connections made with `self` are as good as ones made with `other`: the same
    /// settings and the same certificates.
    pub fn same_as(&self, other: &PoolTls) -> bool {
        self.ca == other.ca
            && self.server_name == other.server_name
            && self.client_cert == other.client_cert
            && self.alpn == other.alpn
            && self.insecure_skip_verify == other.insecure_skip_verify
            && self.roots.as_ref().map(|r| &r.roots) == other.roots.as_ref().map(|r| &r.roots)
            && self.client_key.as_ref().map(|k| &k.cert)
                == other.client_key.as_ref().map(|k| &k.cert)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The leaf's subject, for `check` and `/config`.
    pub subject: String,
    /// Unix seconds.
    pub not_after: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub address: SocketAddr,
    /// 1 to 1000.
    pub weight: u32,
    /// The DNS name this address was resolved from (for an SRV pool: the target's name);
    /// `None` for an `"IP:PORT"` backend.
    pub name: Option<std::sync::Arc<str>>,
}

/// A backend given by name: each address the name resolves to is a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedBackend {
    pub lookup: Lookup,
    /// Each resolved address's weight (for SRV: multiplied by the record's weight, at least 1).
    pub weight: u32,
}

/// What is asked of DNS for a pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lookup {
    /// A and/or AAAA records of `name` (lower case), each address with `port`.
    Host { name: String, port: u16 },
    /// The SRV record `name`: its targets (resolved by A/AAAA) with the ports it gives.
    Srv { name: String },
}

impl Lookup {
    pub fn name(&self) -> &str {
        match self {
            Lookup::Host { name, .. } | Lookup::Srv { name } => name,
        }
    }
}

impl std::fmt::Display for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lookup::Host { name, port } => write!(f, "{name}:{port}"),
            Lookup::Srv { name } => write!(f, "srv {name}"),
        }
    }
}

/// Which address records a name's backends come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A and AAAA: every address is a backend.
    Any,
    Ipv4,
    Ipv6,
}

/// Let's Encrypt's production directory: what `[acme] directory` is without the key.
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Where accounts and certificates are kept without `[acme] storage`.
pub const DEFAULT_ACME_STORAGE: &str = "/var/lib/vipgate/acme";
/// Renew when this share of a certificate's lifetime is left (a third, as Let's Encrypt
/// advises for 90-day certificates: 30 days ahead).
pub const DEFAULT_ACME_RENEW_REMAINING_PERCENT: u32 = 33;
/// The first wait after a failed order or account request; doubled per failure up to the max.
pub const DEFAULT_ACME_RETRY_INITIAL: Duration = Duration::from_secs(60);
/// Never longer than this between attempts (Let's Encrypt's failed-validation limit is 5 an
/// hour per name: a 6 h ceiling stays far below it).
pub const DEFAULT_ACME_RETRY_MAX: Duration = Duration::from_secs(6 * 3600);

/// How the ACME server checks that this node answers for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// A token at `http://NAME/.well-known/acme-challenge/`, on an `http` listener (port 80).
    Http01,
    /// A TLS handshake with ALPN `acme-tls/1` on an `https` listener (port 443).
    TlsAlpn01,
}

impl AcmeChallenge {
    pub fn as_str(self) -> &'static str {
        match self {
            AcmeChallenge::Http01 => "http-01",
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// `[acme]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acme {
    /// The RFC 8555 directory URL.
    pub directory: String,
    /// `mailto:` URLs given to the account.
    pub contact: Vec<String>,
    /// The directory holding the account and the certificates (created mode 0700).
    pub storage: PathBuf,
    pub challenge: AcmeChallenge,
    /// A CA bundle for the ACME server's own HTTPS certificate; `None`: the system's roots.
    pub server_ca: Option<PathBuf>,
    pub renew_remaining_percent: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl Acme {
    /// The one file (chain, then key; mode 0600) of the ACME certificate whose first name is
    /// `name`. A wildcard's `*` is written `_`.
    pub fn cert_path(&self, name: &str) -> PathBuf {
        self.storage
            .join("certs")
            .join(format!("{}.pem", name.replace('*', "_")))
    }

    /// The account's credentials (its key included; mode 0600).
    pub fn account_path(&self) -> PathBuf {
        self.storage.join("account.json")
    }
}

/// `[resolver]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSettings {
    /// `IP:PORT` of each name server, tried in order; empty: those of /etc/resolv.conf (with
    /// its search domains and ndots).
    pub nameservers: Vec<SocketAddr>,
    /// Per query and name server.
    pub timeout: Duration,
    pub attempts: u32,
    /// A name is queried again after its answer's TTL, but never sooner than the floor (a TTL
    /// of 0 is not a query storm) and never later than the ceiling.
    pub ttl_floor: Duration,
    pub ttl_ceiling: Duration,
    /// How long a failing name server (SERVFAIL, timeout, unreachable) leaves the last good
    /// answer in place; past it the name's backends are dropped.
    pub grace: Duration,
    pub family: Family,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        use defaults::*;
        ResolverSettings {
            nameservers: Vec::new(),
            timeout: RESOLVER_TIMEOUT,
            attempts: RESOLVER_ATTEMPTS,
            ttl_floor: RESOLVER_TTL_FLOOR,
            ttl_ceiling: RESOLVER_TTL_CEILING,
            grace: RESOLVER_GRACE,
            family: Family::Any,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// In turn, in proportion to the weights.
    RoundRobin,
    /// Power of two choices: the less busy of two backends drawn at random (weights ignored).
    LeastRequest,
    /// Maglev consistent hashing on a key, so one key keeps its backend while the pool changes
    /// little (weights scale each backend's share of the table).
    Maglev(HashKey),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    /// A request header, by lower-case name.
    Header(String),
    /// A cookie, by name.
    Cookie(String),
}

/// Active health checking of every backend of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: HealthKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that bring a backend back.
    pub healthy_threshold: u32,
    /// Consecutive failures that take it out.
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthKind {
    /// A TCP connect that completes within the timeout.
    Tcp,
    /// `GET path` answered with a 2xx or 3xx within the timeout.
    Http { path: String, host: Option<String> },
}

/// Passive outlier ejection from the results of real requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outlier {
    /// Consecutive failures (connect errors, resets, 5xx) that eject a backend; 0 disables.
    pub consecutive_failures: u32,
    /// First ejection lasts this long; each further one of the same backend lasts one base more.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// Never eject more than this share of a pool (percent, rounded down but at least one
    /// backend may be ejected unless the pool has one backend).
    pub max_ejection_percent: u8,
}

/// Front-wide settings (`[proxy]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    pub head_timeout: Duration,
    pub client_idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub backend_timeout: Duration,
    pub backend_idle_timeout: Duration,
    pub backend_max_idle: u32,
    pub max_request_line: usize,
    pub max_head_size: usize,
    pub max_headers: usize,
    /// Streams one HTTP/2 client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub http2_max_concurrent_streams: u32,
    /// Clients whose forwarded-for claims are believed.
    pub trusted_proxies: Vec<Cidr>,
    pub client_ip_header: ClientIpHeader,
    /// Add `X-Request-Id` when the request has none.
    pub request_id: bool,
    /// Retries in flight may be at most this percent of active requests (at least 3).
    pub retry_budget_percent: u32,
    /// Threads of the proxy runtime; 0: one per CPU. Read at start only.
    pub worker_threads: usize,
    /// How those threads share the work. Read at start only.
    pub runtime: RuntimeKind,
    /// How request paths are normalised before routing (`merge_slashes`, `escaped_slashes`).
    pub path: PathRules,
}

/// How the proxy's worker threads are organised (`[proxy] runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// One single-threaded runtime per worker thread, each accepting on its own
    /// `SO_REUSEPORT` socket per listener: a connection stays on the thread that accepted it,
    /// with no work stealing and no wake-ups across threads.
    PerCore,
    /// One multi-threaded runtime whose workers share every listener and steal each other's
    /// tasks.
    Shared,
}

impl RuntimeKind {
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::PerCore => "per-core",
            RuntimeKind::Shared => "shared",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIpHeader {
    /// The last address of `X-Forwarded-For` not in `trusted_proxies`.
    XForwardedFor,
    /// `CF-Connecting-IP`, as a Cloudflare front sets it.
    CfConnectingIp,
}

impl Config {
    pub fn pool(&self, id: PoolId) -> &Pool {
        // PoolId is only minted by validation for this config's pool list.
        &self.pools[id.0]
    }
}

/// Defaults of `[proxy]`, one place for the numbers docs/configuration.md lists.
pub mod defaults {
    use std::time::Duration;

    /// One DNS query's wait per name server (resolv.conf's default is 5 s; a proxy wants to
    /// fall back to the next server sooner).
    pub const RESOLVER_TIMEOUT: Duration = Duration::from_secs(2);
    pub const RESOLVER_ATTEMPTS: u32 = 2;
    /// Kubernetes' CoreDNS answers with TTL 5 (and headless services with 0 under some
    /// plugins): one query a second per name at most.
    pub const RESOLVER_TTL_FLOOR: Duration = Duration::from_secs(1);
    /// A long TTL still sees a change within half a minute.
    pub const RESOLVER_TTL_CEILING: Duration = Duration::from_secs(30);
    /// A DNS outage of up to five minutes leaves the pools as they were.
    pub const RESOLVER_GRACE: Duration = Duration::from_secs(300);

    /// Time to receive a complete request head once it started; slower gets 408.
    pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
    /// Idle keep-alive client connections are closed after this (nginx 75 s, HAProxy 60 s
    /// typical).
    pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
    /// Wait for a response head, and the longest pause inside a body in either direction.
    pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(60);
    /// Idle pooled backend connections are dropped after this: below the 60 s and 75 s that
    /// common backends keep idle connections, so we rarely reuse one the backend is closing.
    pub const BACKEND_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
    pub const BACKEND_MAX_IDLE: u32 = 64;
    pub const MAX_REQUEST_LINE: usize = 8 * 1024;
    /// Largest request or response head (a response's is not configurable).
    pub const MAX_HEAD_SIZE: usize = 64 * 1024;
    /// Most header fields in one head: the default of `max_headers` and its largest value
    /// (the size of the parser's array). Matches nginx and HAProxy (about 100).
    pub const MAX_HEADERS: usize = 100;
    pub const RETRY_BUDGET_PERCENT: u32 = 20;
    /// Envoy's, nginx's and HAProxy's default (RFC 9113 §6.5.2 asks for at least 100).
    pub const HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;

    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
    pub const HEALTHY_THRESHOLD: u32 = 2;
    pub const UNHEALTHY_THRESHOLD: u32 = 3;

    pub const OUTLIER_CONSECUTIVE_FAILURES: u32 = 5;
    pub const OUTLIER_BASE_EJECTION: Duration = Duration::from_secs(10);
    pub const OUTLIER_MAX_EJECTION: Duration = Duration::from_secs(300);
    pub const OUTLIER_MAX_EJECTION_PERCENT: u8 = 50;
    /// Envoy's default: below half the pool available, a suspected backend beats a certain 502.
    pub const PANIC_THRESHOLD_PERCENT: u8 = 50;

    /// One extra try, on connect failure only: always safe, since nothing reached a backend.
    pub const RETRIES: u32 = 1;

    /// Client connections open at once per listener: 16,384 proxied connections hold 32,768
    /// descriptors, half the unit's `LimitNOFILE=65536`, and about 160 MiB when idle (10 KiB
    /// each), so one listener cannot starve the others or the process of descriptors.
    pub const MAX_CONNECTIONS: usize = 16_384;
    /// The largest `max_connections` accepted.
    pub const MAX_CONNECTIONS_LIMIT: i64 = 1_000_000;
}

impl Default for ProxySettings {
    fn default() -> Self {
        use defaults::*;
        ProxySettings {
            head_timeout: HEAD_TIMEOUT,
            client_idle_timeout: CLIENT_IDLE_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
            backend_timeout: BACKEND_TIMEOUT,
            backend_idle_timeout: BACKEND_IDLE_TIMEOUT,
            backend_max_idle: BACKEND_MAX_IDLE,
            max_request_line: MAX_REQUEST_LINE,
            max_head_size: MAX_HEAD_SIZE,
            max_headers: MAX_HEADERS,
            http2_max_concurrent_streams: HTTP2_MAX_CONCURRENT_STREAMS,
            trusted_proxies: Vec::new(),
            client_ip_header: ClientIpHeader::XForwardedFor,
            request_id: false,
            retry_budget_percent: RETRY_BUDGET_PERCENT,
            worker_threads: 0,
            runtime: RuntimeKind::PerCore,
            path: PathRules::default(),
        }
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
    /// 224.0.0.18 (ff02::12 for IPv6) and adverts from anyone on the link. IPv4 peers serve
    /// the IPv4 virtual router, IPv6 ones (link-local) the IPv6 one.
    pub peers: Vec<IpAddr>,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// At start-up, listened for on top of Master_Down_Interval, times
    /// `(255 - priority) / 255`, before this node may first become master.
    pub startup_listen: Duration,
    /// Where adverts are sent and received; its first IPv4 address (IPv6: its link-local
    /// address) is the source.
    pub interface: String,
    /// While master, one gratuitous ARP per VIP this often (`None`: only at takeover).
    pub garp_refresh: Option<Duration>,
    /// `[[vrrp.track]]`, in file order; empty when nothing is tracked. Never with priority 255.
    pub track: Vec<Track>,
}

impl Vrrp {
    /// Whether `other` is the same election apart from what is tracked: a reload that changes
    /// only the tracks applies them to the running election instead of restarting it.
    pub fn same_election(&self, other: &Vrrp) -> bool {
        Vrrp {
            track: Vec::new(),
            ..self.clone()
        } == Vrrp {
            track: Vec::new(),
            ..other.clone()
        }
    }
}

/// `[bgp] table` when not set: the kernel routing table the announced VIPs are put in, for
/// the BGP daemon to learn (the same number as [`crate::l2::route::RTPROT_VIPGATE`], easy to
/// recognise; no rule looks it up, so it routes nothing on this host).
pub const DEFAULT_BGP_TABLE: u32 = 86;
/// `[bgp] check_interval`: how often the tracked conditions are read and the announcements
/// re-asserted.
pub const DEFAULT_BGP_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// `[bgp] rise`: consecutive good checks before the VIPs are announced (again).
pub const DEFAULT_BGP_RISE: u32 = 3;
/// `[bgp] fall`: consecutive failed checks before they are withdrawn.
pub const DEFAULT_BGP_FALL: u32 = 2;
/// `[bgp] withdraw_wait`: on stop, after the withdrawal, how long the listeners keep accepting
/// before the drain: the router still sends new flows until it has the update (measured here:
/// ~10 ms from route removal to the router's FIB), more on a loaded router.
pub const DEFAULT_BGP_WITHDRAW_WAIT: Duration = Duration::from_secs(1);
/// `[bgp] bird_protocol`: the BIRD `kernel` protocol that learns `table` (the template's name).
pub const DEFAULT_BIRD_PROTOCOL: &str = "vipgate";

/// `[bgp]` with the VIPs that have `announce = "bgp"`: announced by putting `VIP/32 dev lo`
/// (`/128`) into the kernel table `table`, which the local BIRD learns and exports over BGP,
/// while the tracked conditions allow (with `rise`/`fall` hysteresis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bgp {
    /// In file order; never empty.
    pub vips: Vec<IpAddr>,
    /// 1 to 2^32-1 except 253, 254, 255 (default, main, local).
    pub table: u32,
    pub check_interval: Duration,
    pub rise: u32,
    pub fall: u32,
    pub withdraw_wait: Duration,
    /// BIRD's control socket: read for the sessions' state and to re-enable `bird_protocol`
    /// when someone disabled it; `None`: vipgate only writes the table.
    pub bird_socket: Option<PathBuf>,
    pub bird_protocol: String,
    /// `[[bgp.track]]`, plus the listeners (always tracked when there are listeners); every
    /// action is [`TrackAction::Fault`]: a failed condition withdraws.
    pub track: Vec<Track>,
}

/// A condition the election watches (`[[vrrp.track]]`) and what it does while it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub condition: TrackCondition,
    pub action: TrackAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackCondition {
    /// Every backend of this pool (a pool of the config, with active health checks) is
    /// unhealthy or ejected.
    PoolDown(String),
    /// A listener could not be bound, or its accept loop ended on its own.
    ListenerFailed,
}

impl TrackCondition {
    /// The label of its metric series and log lines: `pool:NAME` or `listeners`.
    pub fn label(&self) -> String {
        match self {
            TrackCondition::PoolDown(name) => format!("pool:{name}"),
            TrackCondition::ListenerFailed => "listeners".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackAction {
    /// Lower the advertised priority by this much (1 to 254); the result is never below 1.
    Lower(NonZeroU8),
    /// Give up mastership: advertise priority 0 once, then stay out of the election (fault)
    /// until the condition clears.
    Fault,
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
