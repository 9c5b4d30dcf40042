//! Metrics: the counters and gauges vipgate keeps, and their Prometheus text exposition.
//!
//! Owns two kinds of state and how they are read out:
//! - per request, [`RequestStats`] for each host × route × pool, pre-created with their labels
//!   when a [`crate::proxy::Snapshot`] is built ([`ProxyMetrics`]) and carried over by label on
//!   reload, so a counter never goes back. The request path finds its series by index and bumps
//!   atomics: no allocation, no lock, no label formatting.
//! - process-wide, [`Process`]: reloads, the VRRP state, per VIP ownership and ARP counters,
//!   accepted connections per listener and the access log's own counters. Registering a VIP or
//!   a listener takes a lock (once, at start); counting never does.
//!
//! Backend health, ejections, requests in flight and pool sizes are not copied anywhere: they
//! are read from the live `upstream` state when scraped. Does not own serving the text (that
//! is `admin`) nor deciding what a request's status is (`proxy::conn`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::PoolId;
use crate::ha::machine::State as VrrpState;
use crate::l2::ArpStats;
use crate::proxy::route::{RouteTable, Target};
use crate::proxy::upstream::backend::now_ms;
use crate::proxy::upstream::Pools;

/// Upper bounds of the latency buckets, in microseconds (0.5 ms to 10 s, then +Inf).
pub const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];
const NBUCKETS: usize = BUCKETS_US.len() + 1;

/// A latency histogram over atomics: one bucket and the sum are bumped per observation
/// (the buckets are stored apart and made cumulative when read).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; NBUCKETS],
    sum_us: AtomicU64,
}

/// One reading of a [`Histogram`]: cumulative counts per bucket (the last is +Inf).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramReading {
    pub cumulative: [u64; NBUCKETS],
    pub sum_seconds: f64,
}

impl HistogramReading {
    pub fn count(&self) -> u64 {
        self.cumulative[NBUCKETS - 1]
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(NBUCKETS - 1);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn read(&self) -> HistogramReading {
        let mut cumulative = [0u64; NBUCKETS];
        let mut total = 0;
        for (c, b) in cumulative.iter_mut().zip(&self.buckets) {
            total += b.load(Ordering::Relaxed);
            *c = total;
        }
        HistogramReading {
            cumulative,
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// The status classes requests are counted by.
pub const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_index(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// The counters of one host × route × pool. `host`, `route` and `pool` are empty for requests
/// refused before they were routed (bad head, unknown host, no route).
#[derive(Debug, Default)]
pub struct RequestStats {
    pub host: Box<str>,
    pub route: Box<str>,
    pub pool: Box<str>,
    requests: [AtomicU64; 5],
    duration: Histogram,
    upstream: Histogram,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    retries: AtomicU64,
}

/// What the request path reports when a request ends.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    pub status: u16,
    pub duration: Duration,
    /// From the try that answered: connecting (or reusing) to its response head.
    pub upstream: Option<Duration>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub retries: u32,
}

impl RequestStats {
    pub fn labelled(host: &str, route: &str, pool: &str) -> RequestStats {
        RequestStats {
            host: host.into(),
            route: route.into(),
            pool: pool.into(),
            ..RequestStats::default()
        }
    }

    pub fn record(&self, f: &Finished) {
        self.requests[class_index(f.status)].fetch_add(1, Ordering::Relaxed);
        self.duration.observe(f.duration);
        if let Some(u) = f.upstream {
            self.upstream.observe(u);
        }
        self.bytes_in.fetch_add(f.bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(f.bytes_out, Ordering::Relaxed);
        if f.retries > 0 {
            self.retries
                .fetch_add(u64::from(f.retries), Ordering::Relaxed);
        }
    }

    pub fn requests(&self, class: usize) -> u64 {
        self.requests[class].load(Ordering::Relaxed)
    }
}

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

/// One VIP's state: whether this node holds it now, and its ARP counters (kept across
/// announcer restarts, so they only grow).
#[derive(Debug, Default)]
pub struct VipStats {
    pub owned: AtomicBool,
    pub arp: Arc<ArpStats>,
}

/// Process-wide counters; see [`process`].
#[derive(Debug)]
pub struct Process {
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// 1 until a reload is refused, then 0 until one succeeds.
    pub last_reload_ok: AtomicBool,
    pub last_reload_success_unix: AtomicU64,
    pub access_log_lines: AtomicU64,
    pub access_log_dropped: AtomicU64,
    /// 0 without `[vrrp]`.
    vrrp_vrid: AtomicU32,
    /// The state and transitions of the IPv4 (index 0) and IPv6 (1) virtual routers: one per
    /// family of the VIPs, each with its own election.
    vrrp_families: [VrrpFamily; 2],
    /// The priority advertised now (lowered by tracking; 0 in fault).
    vrrp_priority: AtomicU32,
    /// Each `[[vrrp.track]]` condition's label and whether it failed.
    vrrp_tracks: Mutex<Vec<(String, bool)>>,
    vips: Mutex<Vec<(IpAddr, Arc<VipStats>)>>,
    /// What the BGP speaker last saw (`None` without BGP VIPs).
    bgp: Mutex<Option<BgpStatus>>,
    /// Changes between announced and withdrawn since the process started.
    bgp_transitions: AtomicU64,
    listeners: Mutex<Vec<(SocketAddr, Arc<AtomicU64>)>>,
    start_unix: AtomicU64,
    /// Completed TLS handshakes on https listeners.
    pub tls_handshakes: AtomicU64,
    tls_failures: [AtomicU64; TlsFailure::ALL.len()],
    /// Certificate files re-read after they changed on disk: accepted, refused.
    pub certificate_reloads: [AtomicU64; 2],
    /// (first name, file, not_after) of each certificate served.
    tls_certificates: Mutex<Vec<(String, String, i64)>>,
}

/// The BGP announcements as the speaker (`bgp::Speaker`) last saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpStatus {
    /// `healthy` (announced), `rising`, `tracking`, `stopping` (`bgp::gate::Why`).
    pub why: &'static str,
    /// Each VIP and whether the announcement table holds it now.
    pub announced: Vec<(IpAddr, bool)>,
    /// Each tracked condition's label and whether it failed.
    pub tracks: Vec<(String, bool)>,
    /// BIRD's BGP sessions at the last look, or why BIRD could not be read; `None` before the
    /// first look or without `[bgp] bird_socket`.
    pub bird: Option<Result<Vec<BgpSession>, String>>,
    /// Times vipgate's kernel protocol in BIRD was found not up and enabled.
    pub reenabled: u64,
}

impl BgpStatus {
    /// One phrase for the status line and `/readyz`: `announced`, or `withdrawn (why: …)`.
    pub fn phrase(&self) -> String {
        if self.why == "healthy" && self.announced.iter().all(|(_, a)| *a) {
            return "announced".to_owned();
        }
        let failed: Vec<&str> = self
            .tracks
            .iter()
            .filter(|(_, f)| *f)
            .map(|(l, _)| l.as_str())
            .collect();
        match (self.why, failed.is_empty()) {
            ("healthy", _) => "not in the announcement table (netlink failing)".to_owned(),
            (why, true) => format!("withdrawn ({why})"),
            (why, false) => format!("withdrawn ({why}: {})", failed.join(" ")),
        }
    }

    /// `N/M BGP sessions established`, `BIRD unreachable: …`, or nothing.
    pub fn bird_phrase(&self) -> Option<String> {
        match self.bird.as_ref()? {
            Ok(s) => Some(format!(
                "{}/{} BGP session(s) established",
                s.iter().filter(|s| s.established).count(),
                s.len()
            )),
            Err(e) => Some(format!("BIRD unreachable ({e})")),
        }
    }
}

/// One BGP protocol of the local BIRD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpSession {
    pub name: String,
    pub established: bool,
    /// BIRD's info column (`Established`, `Active Socket: …`).
    pub info: String,
}

/// Why a TLS handshake failed, the `reason` label of `vipgate_tls_handshake_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
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

impl TlsFailure {
    pub const ALL: [TlsFailure; 8] = [
        TlsFailure::Timeout,
        TlsFailure::Closed,
        TlsFailure::NoCertificate,
        TlsFailure::ClientCertificate,
        TlsFailure::AlertReceived,
        TlsFailure::Incompatible,
        TlsFailure::Protocol,
        TlsFailure::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TlsFailure::Timeout => "timeout",
            TlsFailure::Closed => "closed",
            TlsFailure::NoCertificate => "no_certificate",
            TlsFailure::ClientCertificate => "client_certificate",
            TlsFailure::AlertReceived => "alert_received",
            TlsFailure::Incompatible => "incompatible",
            TlsFailure::Protocol => "protocol",
            TlsFailure::Other => "other",
        }
    }
}

static PROCESS: Process = Process {
    reloads_ok: AtomicU64::new(0),
    reloads_failed: AtomicU64::new(0),
    last_reload_ok: AtomicBool::new(true),
    last_reload_success_unix: AtomicU64::new(0),
    access_log_lines: AtomicU64::new(0),
    access_log_dropped: AtomicU64::new(0),
    vrrp_vrid: AtomicU32::new(0),
    vrrp_families: [const {
        VrrpFamily {
            state: AtomicU8::new(0),
            transitions: AtomicU64::new(0),
        }
    }; 2],
    vrrp_priority: AtomicU32::new(0),
    vrrp_tracks: Mutex::new(Vec::new()),
    vips: Mutex::new(Vec::new()),
    bgp: Mutex::new(None),
    bgp_transitions: AtomicU64::new(0),
    listeners: Mutex::new(Vec::new()),
    start_unix: AtomicU64::new(0),
    tls_handshakes: AtomicU64::new(0),
    tls_failures: [const { AtomicU64::new(0) }; TlsFailure::ALL.len()],
    certificate_reloads: [const { AtomicU64::new(0) }; 2],
    tls_certificates: Mutex::new(Vec::new()),
};

/// The process-wide counters.
pub fn process() -> &'static Process {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| PROCESS.start_unix.store(unix_now(), Ordering::Relaxed));
    &PROCESS
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data is a list of Arcs: a panic elsewhere cannot leave it half-written.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One virtual router's state code (`vrrp_code`; 0 before it started) and its changes of state.
#[derive(Debug)]
struct VrrpFamily {
    state: AtomicU8,
    transitions: AtomicU64,
}

fn vrrp_code(s: VrrpState) -> u8 {
    match s {
        VrrpState::Initialize => 1,
        VrrpState::Backup => 2,
        VrrpState::Master => 3,
        VrrpState::Fault => 4,
    }
}

const VRRP_STATES: [(u8, &str); 4] = [
    (1, "initialize"),
    (2, "backup"),
    (3, "master"),
    (4, "fault"),
];

impl Process {
    /// The counters of `vip`, created on first use.
    pub fn vip(&self, vip: IpAddr) -> Arc<VipStats> {
        let mut vips = lock(&self.vips);
        if let Some((_, s)) = vips.iter().find(|(a, _)| *a == vip) {
            return s.clone();
        }
        let s = Arc::new(VipStats::default());
        vips.push((vip, s.clone()));
        s
    }

    /// The accepted-connections counter of the listener bound to `bind`.
    pub fn listener(&self, bind: SocketAddr) -> Arc<AtomicU64> {
        let mut ls = lock(&self.listeners);
        if let Some((_, c)) = ls.iter().find(|(a, _)| *a == bind) {
            return c.clone();
        }
        let c = Arc::new(AtomicU64::new(0));
        ls.push((bind, c.clone()));
        c
    }

    pub fn tls_failure(&self, reason: TlsFailure) {
        self.tls_failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn tls_failures(&self, reason: TlsFailure) -> u64 {
        self.tls_failures[reason as usize].load(Ordering::Relaxed)
    }

    pub fn certificate_reload_done(&self, ok: bool) {
        self.certificate_reloads[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// The certificates served now: (first name, file, not_after in Unix seconds).
    pub fn tls_certificates(&self, certs: Vec<(String, String, i64)>) {
        *lock(&self.tls_certificates) = certs;
    }

    pub fn reload_done(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
            self.last_reload_success_unix
                .store(unix_now(), Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.last_reload_ok.store(ok, Ordering::Relaxed);
    }

    /// The election of `vrid` for IPv6 VIPs (`v6`) or IPv4 ones entered `state`
    /// (`transition`: from another state).
    pub fn vrrp_state(&self, vrid: u8, v6: bool, state: VrrpState, transition: bool) {
        self.vrrp_vrid.store(u32::from(vrid), Ordering::Relaxed);
        let family = &self.vrrp_families[usize::from(v6)];
        family.state.store(vrrp_code(state), Ordering::Relaxed);
        if transition {
            family.transitions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The election advertises `priority` now (0 in fault), with `tracks` (label, failed).
    pub fn vrrp_tracking(&self, priority: u8, tracks: Vec<(String, bool)>) {
        self.vrrp_priority
            .store(u32::from(priority), Ordering::Relaxed);
        *lock(&self.vrrp_tracks) = tracks;
    }

    /// The VRRP state's name (`backup`, `master`, …) and the priority advertised now, for the
    /// status line: with VIPs of both families, the IPv4 router's (the line has room for one).
    pub fn vrrp_now(&self) -> (&'static str, u32) {
        let code = self
            .vrrp_families
            .iter()
            .map(|f| f.state.load(Ordering::Relaxed))
            .find(|&c| c != 0)
            .unwrap_or(0);
        let name = VRRP_STATES
            .iter()
            .find(|(c, _)| *c == code)
            .map_or("initialize", |(_, n)| n);
        (name, self.vrrp_priority.load(Ordering::Relaxed))
    }

    /// The BGP speaker's view, replaced at every check.
    pub fn bgp_status(&self, status: BgpStatus) {
        *lock(&self.bgp) = Some(status);
    }

    pub fn bgp_now(&self) -> Option<BgpStatus> {
        lock(&self.bgp).clone()
    }

    pub fn bgp_transition(&self) {
        self.bgp_transitions.fetch_add(1, Ordering::Relaxed);
    }

    /// The failed `[[vrrp.track]]` conditions' labels.
    pub fn vrrp_tracks_failed(&self) -> Vec<String> {
        lock(&self.vrrp_tracks)
            .iter()
            .filter(|(_, f)| *f)
            .map(|(l, _)| l.clone())
            .collect()
    }
}

/// What a scrape reads besides the process-wide counters.
pub struct View<'a> {
    pub snapshot: &'a crate::proxy::Snapshot,
    pub config: &'a crate::config::Config,
    /// Client connections open now (HTTP and TCP).
    pub connections_active: usize,
}

/// A label value escaped for the text format (backslash, double quote, newline).
struct Esc<'a>(&'a str);

impl std::fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A float as the text format wants it (`+Inf`, integers without a fraction).
fn num(v: f64) -> String {
    if v.is_infinite() {
        "+Inf".into()
    } else {
        format!("{v}")
    }
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramReading) {
    for (i, c) in h.cumulative.iter().enumerate() {
        let le = BUCKETS_US
            .get(i)
            .map_or(f64::INFINITY, |&us| us as f64 / 1e6);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{}\"}} {c}", num(le));
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", num(h.sum_seconds));
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count());
}

/// The whole exposition, in Prometheus text format 0.0.4.
pub fn render(view: &View<'_>) -> String {
    let p = process();
    let mut out = String::with_capacity(16 * 1024);

    header(
        &mut out,
        "vipgate_build_info",
        "gauge",
        "Always 1; the version in a label.",
    );
    let _ = writeln!(
        out,
        "vipgate_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    header(
        &mut out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch.",
    );
    let _ = writeln!(
        out,
        "process_start_time_seconds {}",
        p.start_unix.load(Ordering::Relaxed)
    );

    let series: Vec<&Arc<RequestStats>> = view.snapshot.metrics.all().collect();
    let labels = |s: &RequestStats| {
        format!(
            "host=\"{}\",route=\"{}\",pool=\"{}\"",
            Esc(&s.host),
            Esc(&s.route),
            Esc(&s.pool)
        )
    };
    header(
        &mut out,
        "vipgate_http_requests_total",
        "counter",
        "HTTP requests answered, by host, route, pool and status class (empty labels: refused before routing).",
    );
    for s in &series {
        let l = labels(s);
        for (i, class) in CODE_CLASSES.iter().enumerate() {
            let _ = writeln!(
                out,
                "vipgate_http_requests_total{{{l},code_class=\"{class}\"}} {}",
                s.requests(i)
            );
        }
    }
    header(
        &mut out,
        "vipgate_http_request_duration_seconds",
        "histogram",
        "From the first byte of the request head to the end of the response.",
    );
    for s in &series {
        histogram(
            &mut out,
            "vipgate_http_request_duration_seconds",
            &labels(s),
            &s.duration.read(),
        );
    }
    header(
        &mut out,
        "vipgate_http_upstream_duration_seconds",
        "histogram",
        "From connecting to (or reusing a connection to) the backend to its response head, for the try that answered.",
    );
    for s in &series {
        histogram(
            &mut out,
            "vipgate_http_upstream_duration_seconds",
            &labels(s),
            &s.upstream.read(),
        );
    }
    for (name, help, get) in [
        (
            "vipgate_http_request_bytes_total",
            "Bytes received from clients (request heads and bodies).",
            &s_bytes_in as &dyn Fn(&RequestStats) -> u64,
        ),
        (
            "vipgate_http_response_bytes_total",
            "Bytes sent to clients (response heads and bodies).",
            &s_bytes_out,
        ),
        (
            "vipgate_http_retries_total",
            "Tries sent to another backend after a failed one.",
            &s_retries,
        ),
    ] {
        header(&mut out, name, "counter", help);
        for s in &series {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(s), get(s));
        }
    }

    header(
        &mut out,
        "vipgate_connections_active",
        "gauge",
        "Client connections open now (HTTP and TCP listeners).",
    );
    let _ = writeln!(
        out,
        "vipgate_connections_active {}",
        view.connections_active
    );
    header(
        &mut out,
        "vipgate_connections_total",
        "counter",
        "Client connections accepted, by listener.",
    );
    {
        let ls = lock(&p.listeners);
        for l in &view.config.listeners {
            if let Some((_, c)) = ls.iter().find(|(a, _)| *a == l.bind) {
                let _ = writeln!(
                    out,
                    "vipgate_connections_total{{listener=\"{}\"}} {}",
                    l.bind,
                    c.load(Ordering::Relaxed)
                );
            }
        }
    }

    render_backends(&mut out, view);
    render_vips(&mut out, view);

    header(
        &mut out,
        "vipgate_vrrp_state",
        "gauge",
        "1 for the state the VRRP election is in (initialize, backup, master, fault).",
    );
    let vrid = p.vrrp_vrid.load(Ordering::Relaxed);
    if let Some(v) = &view.config.vrrp {
        // One virtual router per family of the configured VIPs (see ha::router).
        let families: Vec<(bool, &str)> = [(false, "ipv4"), (true, "ipv6")]
            .into_iter()
            .filter(|(v6, _)| view.config.vips.iter().any(|a| a.address.is_ipv6() == *v6))
            .collect();
        for &(v6, family) in &families {
            let code = match p.vrrp_families[usize::from(v6)]
                .state
                .load(Ordering::Relaxed)
            {
                c if vrid == u32::from(v.vrid.get()) && c != 0 => c,
                _ => 1,
            };
            for (c, name) in VRRP_STATES {
                let _ = writeln!(
                    out,
                    "vipgate_vrrp_state{{vrid=\"{}\",state=\"{name}\",family=\"{family}\"}} {}",
                    v.vrid.get(),
                    u8::from(code == c)
                );
            }
        }
        header(
            &mut out,
            "vipgate_vrrp_transitions_total",
            "counter",
            "Changes of VRRP state since the process started.",
        );
        for &(v6, family) in &families {
            let _ = writeln!(
                out,
                "vipgate_vrrp_transitions_total{{vrid=\"{}\",family=\"{family}\"}} {}",
                v.vrid.get(),
                p.vrrp_families[usize::from(v6)]
                    .transitions
                    .load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "vipgate_vrrp_priority",
            "gauge",
            "The priority this node advertises now: the configured one lowered by failed [[vrrp.track]] conditions; 0 in fault.",
        );
        let _ = writeln!(
            out,
            "vipgate_vrrp_priority{{vrid=\"{}\",configured=\"{}\"}} {}",
            v.vrid.get(),
            v.priority.get(),
            p.vrrp_priority.load(Ordering::Relaxed)
        );
        if !v.track.is_empty() {
            header(
                &mut out,
                "vipgate_vrrp_track_failed",
                "gauge",
                "1 while a [[vrrp.track]] condition holds (pool:NAME has no available backend; listeners: one failed).",
            );
            let states = lock(&p.vrrp_tracks);
            for t in &v.track {
                let label = t.condition.label();
                let failed = states.iter().any(|(l, f)| *l == label && *f);
                let _ = writeln!(
                    out,
                    "vipgate_vrrp_track_failed{{vrid=\"{}\",track=\"{}\"}} {}",
                    v.vrid.get(),
                    Esc(&label),
                    u8::from(failed)
                );
            }
        }
    }

    render_bgp(&mut out, view);

    header(
        &mut out,
        "vipgate_config_reloads_total",
        "counter",
        "Configuration reloads (SIGHUP or POST /reload), by result.",
    );
    let _ = writeln!(
        out,
        "vipgate_config_reloads_total{{result=\"success\"}} {}\nvipgate_config_reloads_total{{result=\"failure\"}} {}",
        p.reloads_ok.load(Ordering::Relaxed),
        p.reloads_failed.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "vipgate_config_last_reload_successful",
        "gauge",
        "0 while the file on disk was refused by the last reload, 1 otherwise.",
    );
    let _ = writeln!(
        out,
        "vipgate_config_last_reload_successful {}",
        u8::from(p.last_reload_ok.load(Ordering::Relaxed))
    );
    header(
        &mut out,
        "vipgate_config_last_reload_success_timestamp_seconds",
        "gauge",
        "When the configuration was last reloaded successfully (0: never).",
    );
    let _ = writeln!(
        out,
        "vipgate_config_last_reload_success_timestamp_seconds {}",
        p.last_reload_success_unix.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "vipgate_access_log_lines_total",
        "counter",
        "Access log lines written.",
    );
    let _ = writeln!(
        out,
        "vipgate_access_log_lines_total {}",
        p.access_log_lines.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "vipgate_access_log_dropped_total",
        "counter",
        "Access log lines dropped because the writer was behind (the request path never waits).",
    );
    let _ = writeln!(
        out,
        "vipgate_access_log_dropped_total {}",
        p.access_log_dropped.load(Ordering::Relaxed)
    );
    render_tls(&mut out, p);
    out
}

fn render_tls(out: &mut String, p: &Process) {
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
    for r in TlsFailure::ALL {
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

fn s_bytes_in(s: &RequestStats) -> u64 {
    s.bytes_in.load(Ordering::Relaxed)
}
fn s_bytes_out(s: &RequestStats) -> u64 {
    s.bytes_out.load(Ordering::Relaxed)
}
fn s_retries(s: &RequestStats) -> u64 {
    s.retries.load(Ordering::Relaxed)
}

fn render_backends(out: &mut String, view: &View<'_>) {
    let now = now_ms();
    let pools = &view.snapshot.pools;
    let all: Vec<_> = pools.iter().collect();
    type Get = fn(&crate::proxy::upstream::backend::Backend, u64) -> u64;
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
    render_upstream_tls(out, &all, view.config);
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
    type PoolGet = fn(&crate::proxy::upstream::PoolState, u64) -> u64;
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
fn render_upstream_tls(
    out: &mut String,
    pools: &[&crate::proxy::upstream::PoolState],
    config: &crate::config::Config,
) {
    use crate::proxy::upstream::stream::TlsFailure;
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

fn render_bgp(out: &mut String, view: &View<'_>) {
    let Some(bgp) = &view.config.bgp else {
        return;
    };
    let p = process();
    let status = p.bgp_now().unwrap_or_default();
    header(
        out,
        "vipgate_bgp_announced",
        "gauge",
        "1 while the VIP is in the announcement table the local BGP daemon exports.",
    );
    for vip in &bgp.vips {
        let on = status.announced.iter().any(|(v, a)| v == vip && *a);
        let _ = writeln!(
            out,
            "vipgate_bgp_announced{{vip=\"{vip}\"}} {}",
            u8::from(on)
        );
    }
    header(
        out,
        "vipgate_bgp_state",
        "gauge",
        "1 for why the BGP VIPs are announced or not: healthy (announced), rising (not yet [bgp] rise good checks), tracking (a [[bgp.track]] condition failed), stopping.",
    );
    for why in crate::bgp::gate::Why::ALL {
        let _ = writeln!(
            out,
            "vipgate_bgp_state{{state=\"{}\"}} {}",
            why.as_str(),
            u8::from(status.why == why.as_str())
        );
    }
    header(
        out,
        "vipgate_bgp_transitions_total",
        "counter",
        "Changes between announced and withdrawn since the process started.",
    );
    let _ = writeln!(
        out,
        "vipgate_bgp_transitions_total {}",
        p.bgp_transitions.load(Ordering::Relaxed)
    );
    header(
        out,
        "vipgate_bgp_track_failed",
        "gauge",
        "1 while a [[bgp.track]] condition holds (pool:NAME has no available backend; listeners: one failed).",
    );
    for (label, failed) in &status.tracks {
        let _ = writeln!(
            out,
            "vipgate_bgp_track_failed{{track=\"{}\"}} {}",
            Esc(label),
            u8::from(*failed)
        );
    }
    if bgp.bird_socket.is_some() {
        header(
            out,
            "vipgate_bird_up",
            "gauge",
            "1 if the local BIRD answered on [bgp] bird_socket at the last look (once a second).",
        );
        let up = matches!(status.bird, Some(Ok(_)));
        let _ = writeln!(out, "vipgate_bird_up {}", u8::from(up));
        header(
            out,
            "vipgate_bird_bgp_session_established",
            "gauge",
            "1 for each BGP protocol of the local BIRD whose session is Established, as vipgate last saw it.",
        );
        if let Some(Ok(sessions)) = &status.bird {
            for s in sessions {
                let _ = writeln!(
                    out,
                    "vipgate_bird_bgp_session_established{{session=\"{}\"}} {}",
                    Esc(&s.name),
                    u8::from(s.established)
                );
            }
        }
        header(
            out,
            "vipgate_bird_protocol_reenabled_total",
            "counter",
            "Times vipgate found its kernel protocol ([bgp] bird_protocol) in BIRD not up and enabled it.",
        );
        let _ = writeln!(
            out,
            "vipgate_bird_protocol_reenabled_total {}",
            status.reenabled
        );
    }
}

fn render_vips(out: &mut String, view: &View<'_>) {
    let p = process();
    let stats: Vec<(IpAddr, Arc<VipStats>)> = view
        .config
        .vips
        .iter()
        .map(|v| (v.address, p.vip(v.address)))
        .collect();
    header(
        out,
        "vipgate_vip_owned",
        "gauge",
        "1 while this node holds the VIP (answers ARP for it, has its local route).",
    );
    for (vip, s) in &stats {
        let _ = writeln!(
            out,
            "vipgate_vip_owned{{vip=\"{vip}\"}} {}",
            u8::from(s.owned.load(Ordering::Relaxed))
        );
    }
    type Get = fn(&crate::l2::ArpStatsSnapshot) -> u64;
    let counters: [(&str, &str, Get); 5] = [
        (
            "vipgate_arp_replies_sent_total",
            "ARP replies sent for the VIP.",
            |s| s.replies_sent,
        ),
        (
            "vipgate_arp_requests_seen_total",
            "ARP requests for the VIP seen from other stations.",
            |s| s.requests_seen,
        ),
        (
            "vipgate_garps_sent_total",
            "Gratuitous ARPs sent for the VIP.",
            |s| s.garps_sent,
        ),
        (
            "vipgate_arp_conflicts_total",
            "Frames from another station using the VIP as its sender address.",
            |s| s.conflicts_seen,
        ),
        (
            "vipgate_arp_send_errors_total",
            "ARP replies or gratuitous ARPs the socket refused.",
            |s| s.send_errors,
        ),
    ];
    let readings: Vec<_> = stats.iter().map(|(v, s)| (v, s.arp.snapshot())).collect();
    for (name, help, get) in counters {
        header(out, name, "counter", help);
        for (vip, r) in &readings {
            let _ = writeln!(out, "{name}{{vip=\"{vip}\"}} {}", get(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_bounded_inclusively() {
        let h = Histogram::default();
        for us in [0, 500, 501, 1_000, 20_000_000] {
            h.observe(Duration::from_micros(us));
        }
        let r = h.read();
        assert_eq!(r.cumulative[0], 2, "0 and 500 µs are <= 0.0005 s");
        assert_eq!(r.cumulative[1], 4);
        assert_eq!(r.cumulative[NBUCKETS - 2], 4);
        assert_eq!(r.count(), 5, "20 s lands in +Inf only");
        assert!((r.sum_seconds - 20.002001).abs() < 1e-9);
        assert!(r.cumulative.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn status_classes() {
        for (status, class) in [
            (100, 0),
            (101, 0),
            (200, 1),
            (304, 2),
            (404, 3),
            (499, 3),
            (502, 4),
            (0, 0),
            (999, 4),
        ] {
            assert_eq!(class_index(status), class, "{status}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(Esc("a\"b\\c\nd").to_string(), "a\\\"b\\\\c\\nd");
        assert_eq!(Esc("/api").to_string(), "/api");
    }

    #[test]
    fn histogram_text_has_le_labels_sum_and_count() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        let mut out = String::new();
        histogram(&mut out, "x_seconds", "a=\"b\"", &h.read());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "x_seconds_bucket{a=\"b\",le=\"0.0005\"} 0");
        assert_eq!(lines[3], "x_seconds_bucket{a=\"b\",le=\"0.005\"} 1");
        assert_eq!(
            lines[NBUCKETS - 1],
            "x_seconds_bucket{a=\"b\",le=\"+Inf\"} 1"
        );
        assert_eq!(lines[NBUCKETS], "x_seconds_sum{a=\"b\"} 0.003");
        assert_eq!(lines[NBUCKETS + 1], "x_seconds_count{a=\"b\"} 1");
    }
}
