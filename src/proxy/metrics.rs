//! The proxy's metrics: request series per host × route × pool (pre-created with their labels
//! when a `Snapshot` is built, carried over by label on reload, so a counter never goes back),
//! accepted connections per listener, TLS handshakes and certificates, and the exposition of
//! those and of the live backend and pool state.
//!
//! Backend health, ejections, requests in flight and pool sizes are not copied anywhere: they
//! are read from the live `upstream` state when scraped. The counter types and the encoder are
//! `telemetry::metrics`'; putting the exposition together is `daemon::admin`'s.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::route::{RouteTable, Target};
use super::upstream::backend::now_ms;
use super::upstream::Pools;
use super::Snapshot;
use crate::config::{Config, PoolId};
use crate::telemetry::metrics::{header, lock, render_requests, Esc, Registry, RequestStats};

type SeriesKey = (Box<str>, Box<str>, Box<str>);
/// The pools one route can send to, each with its series.
type RouteSeries = Vec<(PoolId, Arc<RequestStats>)>;

/// Every request series of one configuration, indexed like its route table.
#[derive(Debug)]
pub struct ProxyMetrics {
    /// `[host][route]`: each pool the route can send to, with its series.
    routes: Vec<Vec<RouteSeries>>,
    unrouted: Arc<RequestStats>,
}

impl ProxyMetrics {
    /// The series for `table`'s routes; those whose labels existed in `previous` keep their
    /// counts.
    pub fn build(table: &RouteTable, pools: &Pools, previous: Option<&ProxyMetrics>) -> Self {
        let mut old: HashMap<SeriesKey, Arc<RequestStats>> = HashMap::new();
        if let Some(p) = previous {
            for s in p.all() {
                old.insert((s.host.clone(), s.route.clone(), s.pool.clone()), s.clone());
            }
        }
        let mut take = |host: &str, route: &str, pool: &str| {
            old.remove(&(host.into(), route.into(), pool.into()))
                .unwrap_or_else(|| Arc::new(RequestStats::labelled(host, route, pool)))
        };
        let unrouted = take("", "", "");
        let routes = table
            .describe()
            .map(|(host, routes)| {
                routes
                    .iter()
                    .map(|r| {
                        r.pools()
                            .iter()
                            .map(|w| (w.pool, take(host, &r.prefix, &pools.get(w.pool).name)))
                            .collect()
                    })
                    .collect()
            })
            .collect();
        ProxyMetrics { routes, unrouted }
    }

    /// The series of a routed request.
    pub fn series(&self, target: Target, pool: PoolId) -> &Arc<RequestStats> {
        self.routes
            .get(target.host)
            .and_then(|h| h.get(target.route))
            .and_then(|r| r.iter().find(|(p, _)| *p == pool))
            .map_or(&self.unrouted, |(_, s)| s)
    }

    /// The series of requests refused before routing.
    pub fn unrouted(&self) -> &Arc<RequestStats> {
        &self.unrouted
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<RequestStats>> {
        std::iter::once(&self.unrouted)
            .chain(self.routes.iter().flatten().flatten().map(|(_, s)| s))
    }
}

/// The proxy's process-wide counters; see [`counters`].
#[derive(Debug)]
pub struct Counters {
    listeners: Registry<SocketAddr, AtomicU64>,
    /// Completed TLS handshakes on https listeners.
    pub tls_handshakes: AtomicU64,
    tls_failures: [AtomicU64; ClientTlsFailure::ALL.len()],
    /// Certificate files re-read after they changed on disk: accepted, refused.
    pub certificate_reloads: [AtomicU64; 2],
    /// (first name, file, not_after) of each certificate served.
    tls_certificates: Mutex<Vec<(String, String, i64)>>,
}

static COUNTERS: Counters = Counters {
    listeners: Registry::new(),
    tls_handshakes: AtomicU64::new(0),
    tls_failures: [const { AtomicU64::new(0) }; ClientTlsFailure::ALL.len()],
    certificate_reloads: [const { AtomicU64::new(0) }; 2],
    tls_certificates: Mutex::new(Vec::new()),
};

/// The proxy's process-wide counters (they outlive every `Snapshot`).
pub fn counters() -> &'static Counters {
    &COUNTERS
}

/// Why a client's TLS handshake on an https listener failed, the `reason` label of
/// `vipgate_tls_handshake_failures_total` (a backend's handshake has its own reasons:
/// `upstream::stream::TlsFailure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTlsFailure {
    /// Not done within `[proxy] head_timeout_ms`.
    Timeout,
    /// The client closed or reset the connection during the handshake.
    Closed,
    /// SNI named no certificate and the listener has `sni_fallback = "refuse"`.
    NoCertificate,
    /// A client certificate was required and missing, or did not verify.
    ClientCertificate,
    /// The client sent a fatal alert (such as unknown_ca: it does not trust our certificate).
    AlertReceived,
    /// No protocol version, cipher suite or ALPN protocol in common.
    Incompatible,
    /// Malformed or unexpected TLS messages (including plain HTTP sent to an https port).
    Protocol,
    Other,
}

impl ClientTlsFailure {
    pub const ALL: [ClientTlsFailure; 8] = [
        ClientTlsFailure::Timeout,
        ClientTlsFailure::Closed,
        ClientTlsFailure::NoCertificate,
        ClientTlsFailure::ClientCertificate,
        ClientTlsFailure::AlertReceived,
        ClientTlsFailure::Incompatible,
        ClientTlsFailure::Protocol,
        ClientTlsFailure::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientTlsFailure::Timeout => "timeout",
            ClientTlsFailure::Closed => "closed",
            ClientTlsFailure::NoCertificate => "no_certificate",
            ClientTlsFailure::ClientCertificate => "client_certificate",
            ClientTlsFailure::AlertReceived => "alert_received",
            ClientTlsFailure::Incompatible => "incompatible",
            ClientTlsFailure::Protocol => "protocol",
            ClientTlsFailure::Other => "other",
        }
    }
}

impl Counters {
    /// The accepted-connections counter of the listener bound to `bind`.
    pub fn listener(&self, bind: SocketAddr) -> Arc<AtomicU64> {
        self.listeners.get_or(&bind, || AtomicU64::new(0))
    }

    pub fn tls_failure(&self, reason: ClientTlsFailure) {
        self.tls_failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn tls_failures(&self, reason: ClientTlsFailure) -> u64 {
        self.tls_failures[reason as usize].load(Ordering::Relaxed)
    }

    pub fn certificate_reload_done(&self, ok: bool) {
        self.certificate_reloads[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections accepted by the listener at `bind` (`None`: it never accepted).
    pub fn accepted(&self, bind: SocketAddr) -> Option<u64> {
        self.listeners.get(&bind).map(|c| c.load(Ordering::Relaxed))
    }

    /// The certificates served now, as [`Counters::tls_certificates`] last set them.
    pub fn certificates(&self) -> Vec<(String, String, i64)> {
        lock(&self.tls_certificates).clone()
    }

    /// The certificates served now: (first name, file, not_after in Unix seconds).
    pub fn tls_certificates(&self, certs: Vec<(String, String, i64)>) {
        *lock(&self.tls_certificates) = certs;
    }
}

/// The proxy's families: requests, connections (`connections_active`: open now), backends,
/// pools, TLS on both sides.
pub fn render(out: &mut String, snapshot: &Snapshot, config: &Config, connections_active: usize) {
    let series: Vec<&Arc<RequestStats>> = snapshot.metrics.all().collect();
    render_requests(out, &series);
    header(
        out,
        "vipgate_connections_active",
        "gauge",
        "Client connections open now (HTTP and TCP listeners).",
    );
    let _ = writeln!(out, "vipgate_connections_active {}", connections_active);
    header(
        out,
        "vipgate_connections_total",
        "counter",
        "Client connections accepted, by listener.",
    );
    for l in &config.listeners {
        if let Some(c) = counters().listeners.get(&l.bind) {
            let _ = writeln!(
                out,
                "vipgate_connections_total{{listener=\"{}\"}} {}",
                l.bind,
                c.load(Ordering::Relaxed)
            );
        }
    }
    render_limits(out, config);
    render_backends(out, snapshot, config);
    render_tls(out);
}

/// `max_connections` per listener: the limit, the connections holding it, the pauses.
fn render_limits(out: &mut String, config: &Config) {
    let limits: Vec<_> = config
        .listeners
        .iter()
        .map(|l| (l.bind, super::listener::limit(l.bind)))
        .collect();
    type Get = fn(&super::listener::Limit) -> u64;
    let families: [(&str, &str, &str, Get); 3] = [
        (
            "vipgate_listener_connections",
            "gauge",
            "Client connections open on the listener now (counted against max_connections).",
            |l| l.open().0 as u64,
        ),
        (
            "vipgate_listener_max_connections",
            "gauge",
            "The listener's max_connections.",
            |l| l.open().1 as u64,
        ),
        (
            "vipgate_listener_limit_reached_total",
            "counter",
            "Times the listener stopped accepting because max_connections were open (new connections waited in the kernel's queue).",
            |l| l.reached.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, get) in families {
        header(out, name, kind, help);
        for (bind, l) in &limits {
            let _ = writeln!(out, "{name}{{listener=\"{bind}\"}} {}", get(l));
        }
    }
}

fn render_tls(out: &mut String) {
    let p = counters();
    header(
        out,
        "vipgate_tls_handshakes_total",
        "counter",
        "TLS handshakes completed on https listeners.",
    );
    let _ = writeln!(
        out,
        "vipgate_tls_handshakes_total {}",
        p.tls_handshakes.load(Ordering::Relaxed)
    );
    header(
        out,
        "vipgate_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed, by reason.",
    );
    for r in ClientTlsFailure::ALL {
        let _ = writeln!(
            out,
            "vipgate_tls_handshake_failures_total{{reason=\"{}\"}} {}",
            r.as_str(),
            p.tls_failures(r)
        );
    }
    header(
        out,
        "vipgate_tls_certificate_reloads_total",
        "counter",
        "Certificate files re-read after they changed on disk, by result (refused: the old certificate stays).",
    );
    for (i, result) in ["ok", "refused"].iter().enumerate() {
        let _ = writeln!(
            out,
            "vipgate_tls_certificate_reloads_total{{result=\"{result}\"}} {}",
            p.certificate_reloads[i].load(Ordering::Relaxed)
        );
    }
    header(
        out,
        "vipgate_tls_certificate_not_after_seconds",
        "gauge",
        "When each certificate served expires (Unix time), by its first name and file.",
    );
    for (name, file, not_after) in lock(&p.tls_certificates).iter() {
        let _ = writeln!(
            out,
            "vipgate_tls_certificate_not_after_seconds{{name=\"{}\",file=\"{}\"}} {not_after}",
            Esc(name),
            Esc(file)
        );
    }
}

fn render_backends(out: &mut String, snapshot: &Snapshot, config: &Config) {
    let now = now_ms();
    let pools = &snapshot.pools;
    let all: Vec<_> = pools.iter().collect();
    type Get = fn(&super::upstream::backend::Backend, u64) -> u64;
    let per_backend: [(&str, &str, &str, Get); 5] = [
        (
            "vipgate_backend_up",
            "gauge",
            "1 if the backend takes requests (healthy and not ejected).",
            |b, now| u64::from(b.is_available(now)),
        ),
        (
            "vipgate_backend_healthy",
            "gauge",
            "The active health checks' verdict (1 without checks).",
            |b, _| u64::from(b.is_healthy()),
        ),
        (
            "vipgate_backend_ejected",
            "gauge",
            "1 while passive outlier detection keeps the backend out.",
            |b, now| u64::from(b.is_ejected(now)),
        ),
        (
            "vipgate_backend_ejections_total",
            "counter",
            "Times outlier detection ejected the backend.",
            |b, _| u64::from(b.ejections()),
        ),
        (
            "vipgate_backend_active_requests",
            "gauge",
            "Requests (and TCP streams) in flight to the backend.",
            |b, _| b.active() as u64,
        ),
    ];
    for (name, kind, help, get) in per_backend {
        header(out, name, kind, help);
        for pool in &all {
            for b in pool.backends() {
                let _ = writeln!(
                    out,
                    "{name}{{pool=\"{}\",backend=\"{}\"}} {}",
                    Esc(&pool.name),
                    b.address,
                    get(b, now)
                );
            }
        }
    }
    render_upstream_tls(out, &all, config);
    header(
        out,
        "vipgate_pool_backends",
        "gauge",
        "Backends configured in the pool.",
    );
    for pool in &all {
        let _ = writeln!(
            out,
            "vipgate_pool_backends{{pool=\"{}\"}} {}",
            Esc(&pool.name),
            pool.backends().len()
        );
    }
    header(
        out,
        "vipgate_pool_backends_available",
        "gauge",
        "Backends of the pool that take requests now.",
    );
    for pool in &all {
        let _ = writeln!(
            out,
            "vipgate_pool_backends_available{{pool=\"{}\"}} {}",
            Esc(&pool.name),
            pool.backends()
                .iter()
                .filter(|b| b.is_available(now))
                .count()
        );
    }
    type PoolGet = fn(&super::upstream::PoolState, u64) -> u64;
    let per_pool: [(&str, &str, &str, PoolGet); 2] = [
        (
            "vipgate_pool_panic",
            "gauge",
            "1 while fewer than panic_threshold_percent of the pool's backends are available, so it balances over the ejected ones too.",
            |p, now| u64::from(p.in_panic(now)),
        ),
        (
            "vipgate_pool_panics_total",
            "counter",
            "Times requests found the pool in panic after it was not.",
            |p, _| p.panics(),
        ),
    ];
    for (name, kind, help, get) in per_pool {
        header(out, name, kind, help);
        for pool in &all {
            let _ = writeln!(
                out,
                "{name}{{pool=\"{}\"}} {}",
                Esc(&pool.name),
                get(pool, now)
            );
        }
    }
}

/// TLS to backends, for the backends of pools with `[pool.NAME.tls]` only.
fn render_upstream_tls(out: &mut String, pools: &[&super::upstream::PoolState], config: &Config) {
    use super::upstream::stream::TlsFailure;
    header(
        out,
        "vipgate_upstream_tls_client_certificate_expiry_timestamp_seconds",
        "gauge",
        "When the pool's client certificate (mutual TLS to its backends) expires, Unix seconds.",
    );
    for p in &config.pools {
        if let Some(c) = p.tls.as_ref().and_then(|t| t.client_cert.as_ref()) {
            let _ = writeln!(
                out,
                "vipgate_upstream_tls_client_certificate_expiry_timestamp_seconds{{pool=\"{}\"}} {}",
                Esc(&p.name),
                c.not_after
            );
        }
    }
    header(
        out,
        "vipgate_upstream_tls_handshakes_total",
        "counter",
        "TLS handshakes completed with the backend.",
    );
    for pool in pools {
        for b in pool.backends().iter().filter(|b| b.uses_tls()) {
            let _ = writeln!(
                out,
                "vipgate_upstream_tls_handshakes_total{{pool=\"{}\",backend=\"{}\"}} {}",
                Esc(&pool.name),
                b.address,
                b.tls_handshakes()
            );
        }
    }
    header(
        out,
        "vipgate_upstream_tls_handshake_failures_total",
        "counter",
        "TLS handshakes with the backend that failed, by reason (each also a connect failure).",
    );
    for pool in pools {
        for b in pool.backends().iter().filter(|b| b.uses_tls()) {
            for reason in TlsFailure::ALL {
                let _ = writeln!(
                    out,
                    "vipgate_upstream_tls_handshake_failures_total{{pool=\"{}\",backend=\"{}\",reason=\"{}\"}} {}",
                    Esc(&pool.name),
                    b.address,
                    reason.label(),
                    b.tls_failures(reason)
                );
            }
        }
    }
}
