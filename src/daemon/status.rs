//! The operator's view: what `GET /status.json` answers, the page at `GET /` and `/status`
//! that draws it, and what `vipgate status` prints from it.
//!
//! Owns the status model ([`Status`], its field names a public contract like the config keys:
//! add, never rename), putting it together from each layer's own state (`l2::metrics`,
//! `ha::metrics`, `bgp::metrics`, the proxy's snapshot and counters, `telemetry`'s process
//! counters), the bounded [`History`] behind the page's plots (one [`History::sample`] per
//! [`SAMPLE_EVERY`], of the request counters `/metrics` reads, so nothing is added to the
//! request path), the verdict of [`Status::problems`] and the text table. Does not own
//! serving it (`daemon::admin`) nor any of the state it reads.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::proxy::upstream::backend::now_ms;
use crate::proxy::Snapshot;
use crate::telemetry::metrics::{lock, unix_now, HistogramReading, BUCKETS_US};

/// How often the request counters are sampled for the plots.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Samples kept per series: five minutes at [`SAMPLE_EVERY`].
pub const SAMPLES_KEPT: usize = 150;
/// Ownership changes, reloads kept for the page.
const EVENTS_KEPT: usize = 50;
const RELOADS_KEPT: usize = 10;
/// The schema version in `/status.json`; raised only if a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;
/// How long `vipgate status` waits for an admin listener.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `/status.json` answer `vipgate status` reads.
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// The page: one file, no external assets (the script and styles are inline).
pub const PAGE: &str = include_str!("status.html");

/// Everything the page shows, as `GET /status.json` answers it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: u32,
    pub time_unix: u64,
    pub started_unix: u64,
    /// The configuration file the daemon runs.
    pub config: String,
    /// `starting`, `ready` or `stopping` (what `/readyz` says).
    pub phase: String,
    pub sample_interval_seconds: u64,
    /// Why `vipgate status` exits 1: a VIP nobody visible owns, a pool without an available
    /// backend. Empty when all is well.
    pub problems: Vec<String>,
    pub vips: Vec<VipStatus>,
    pub vrrp: Option<VrrpStatus>,
    pub bgp: Option<BgpView>,
    pub listeners: Vec<ListenerStatus>,
    pub routes: Vec<RouteStatus>,
    pub pools: Vec<PoolStatus>,
    pub certificates: Vec<CertStatus>,
    pub reloads: ReloadsStatus,
    /// Changes of ownership seen by the sampler, oldest first.
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VipStatus {
    pub address: IpAddr,
    /// `arp` (ARP/NDP, with or without VRRP) or `bgp`.
    pub announce: String,
    /// `None` for BGP VIPs.
    pub interface: Option<String>,
    /// This node holds (ARP) or announces (BGP) the VIP now.
    pub owned: bool,
    /// `self`, `peer` (VRRP backup: a master's adverts are heard) or `none`.
    pub owner: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VrrpStatus {
    pub vrid: u8,
    pub configured_priority: u8,
    /// Advertised now: lowered by failed tracks, 0 in fault.
    pub priority: u32,
    /// One virtual router per address family of the VIPs.
    pub routers: Vec<VrrpRouter>,
    pub tracks: Vec<TrackStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VrrpRouter {
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// `initialize`, `backup`, `master` or `fault`.
    pub state: String,
    pub transitions: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrackStatus {
    /// `pool:NAME` or `listeners`.
    pub condition: String,
    pub failed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BgpView {
    /// `announced`, or `withdrawn (why)`.
    pub phrase: String,
    pub tracks: Vec<TrackStatus>,
    /// BIRD's BGP sessions at the last look; empty without `bird_socket`.
    pub sessions: Vec<BgpSessionStatus>,
    /// Why BIRD could not be read, if it could not.
    pub bird_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BgpSessionStatus {
    pub name: String,
    pub established: bool,
    pub info: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListenerStatus {
    pub bind: SocketAddr,
    pub protocol: String,
    /// Not bound, or its accept loop ended (retried every second).
    pub failed: bool,
    pub connections_open: u64,
    pub max_connections: u64,
    pub accepted_total: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteStatus {
    pub host: String,
    pub route: String,
    pub pool: String,
    pub requests_total: u64,
    /// Answered 5xx.
    pub errors_total: u64,
    /// One point per sample interval, oldest first, all arrays of the same length.
    pub history: RouteHistory,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RouteHistory {
    /// End of each interval, Unix seconds.
    pub time_unix: Vec<u64>,
    /// Requests per second answered in the interval.
    pub requests_per_second: Vec<f64>,
    /// Share of those answered 5xx (0 to 1).
    pub error_ratio: Vec<f64>,
    /// Latency quantiles from the duration histogram's buckets (as Prometheus'
    /// `histogram_quantile` estimates them); `null` in an interval without requests.
    pub p50_ms: Vec<Option<f64>>,
    pub p99_ms: Vec<Option<f64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolStatus {
    pub name: String,
    pub backends_available: usize,
    /// Balancing over ejected backends too (fewer than panic_threshold_percent available).
    pub panic: bool,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendStatus {
    pub address: SocketAddr,
    /// Healthy and not ejected: takes requests.
    pub up: bool,
    /// The active health checks' verdict (true without checks).
    pub healthy: bool,
    /// Kept out by outlier detection now.
    pub ejected: bool,
    pub ejections_total: u32,
    pub active_requests: usize,
    pub idle_connections: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertStatus {
    /// The certificate's first name.
    pub name: String,
    pub file: String,
    pub not_after_unix: i64,
    pub days_left: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReloadsStatus {
    pub ok_total: u64,
    pub failed_total: u64,
    /// False from a refused reload until the next good one.
    pub last_successful: bool,
    /// 0: never reloaded.
    pub last_success_unix: u64,
    /// The latest reloads, oldest first.
    pub recent: Vec<ReloadEvent>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadEvent {
    pub time_unix: u64,
    pub ok: bool,
    /// The summary of a reload or why it was refused.
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub time_unix: u64,
    pub what: String,
}

/// One series' counters at one sample.
#[derive(Debug, Clone)]
struct Reading {
    at: Instant,
    total: u64,
    errors: u64,
    duration: HistogramReading,
}

/// host, route, pool.
type SeriesKey = (Box<str>, Box<str>, Box<str>);

#[derive(Debug)]
struct SeriesHistory {
    key: SeriesKey,
    last: Reading,
    points: RouteHistory,
}

/// The samples behind the plots and the recent events, bounded in size: at most
/// [`SAMPLES_KEPT`] points per route, [`EVENTS_KEPT`] events, [`RELOADS_KEPT`] reloads.
#[derive(Debug, Default)]
pub struct History(Mutex<Inner>);

#[derive(Debug, Default)]
struct Inner {
    series: Vec<SeriesHistory>,
    events: VecDeque<Event>,
    reloads: VecDeque<ReloadEvent>,
    /// Each VIP's owner at the last sample, to see it change.
    owners: Vec<(IpAddr, String)>,
    /// Each VRRP family's transitions and state at the last sample: a master for less than a
    /// sample (a short partition) shows as changes even when the owner looks the same.
    vrrp_seen: [Option<(u64, &'static str)>; 2],
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T, max: usize) {
    if q.len() == max {
        q.pop_front();
    }
    q.push_back(v);
}

impl RouteHistory {
    fn push(&mut self, p: (u64, f64, f64, Option<f64>, Option<f64>)) {
        if self.time_unix.len() == SAMPLES_KEPT {
            self.time_unix.remove(0);
            self.requests_per_second.remove(0);
            self.error_ratio.remove(0);
            self.p50_ms.remove(0);
            self.p99_ms.remove(0);
        }
        self.time_unix.push(p.0);
        self.requests_per_second.push(p.1);
        self.error_ratio.push(p.2);
        self.p50_ms.push(p.3);
        self.p99_ms.push(p.4);
    }
}

impl History {
    /// Read every request series of `snapshot` and each VIP's owner: a point per series (from
    /// the difference to the last sample) and an event per change of owner.
    pub fn sample(&self, snapshot: &Snapshot, config: &Config) {
        let now = Instant::now();
        let t = unix_now();
        let mut inner = lock(&self.0);
        // By label: the series of a reloaded configuration continue those of the last.
        let mut old: HashMap<SeriesKey, SeriesHistory> = std::mem::take(&mut inner.series)
            .into_iter()
            .map(|h| (h.key.clone(), h))
            .collect();
        let mut kept = Vec::new();
        for s in snapshot.metrics.all().filter(|s| !s.host.is_empty()) {
            let reading = Reading {
                at: now,
                total: (0..5).map(|c| s.requests(c)).sum(),
                errors: s.requests(4),
                duration: s.duration(),
            };
            let key = (s.host.clone(), s.route.clone(), s.pool.clone());
            kept.push(match old.remove(&key) {
                Some(mut h) => {
                    h.points.push(point(t, &h.last, &reading));
                    h.last = reading;
                    h
                }
                None => SeriesHistory {
                    key,
                    last: reading,
                    points: RouteHistory::default(),
                },
            });
        }
        inner.series = kept;
        let vips = vips(config);
        for v in &vips {
            let before = inner.owners.iter().find(|(a, _)| *a == v.address);
            if before.map(|(_, o)| o.as_str()) != Some(v.owner.as_str()) {
                let what = match before {
                    Some((_, o)) => format!("{}: owner {o} -> {}", v.address, v.owner),
                    None => format!("{}: owner {}", v.address, v.owner),
                };
                push_bounded(&mut inner.events, Event { time_unix: t, what }, EVENTS_KEPT);
            }
        }
        inner.owners = vips.into_iter().map(|v| (v.address, v.owner)).collect();
        if config.vrrp.is_some() {
            for (v6, family) in [(false, "ipv4"), (true, "ipv6")] {
                let (Some(state), n) = crate::ha::metrics::vrrp().family(v6) else {
                    continue;
                };
                let what = match inner.vrrp_seen[usize::from(v6)] {
                    None => format!("VRRP {family}: {state}"),
                    Some((before, _)) if before == n => continue,
                    Some((before, was)) => format!(
                        "VRRP {family}: {was} -> {state} ({} change{})",
                        n - before,
                        if n - before == 1 { "" } else { "s" }
                    ),
                };
                inner.vrrp_seen[usize::from(v6)] = Some((n, state));
                push_bounded(&mut inner.events, Event { time_unix: t, what }, EVENTS_KEPT);
            }
        }
    }

    /// A reload ended (from SIGHUP or `POST /reload`).
    pub fn reload(&self, outcome: &Result<String, String>) {
        let (ok, message) = match outcome {
            Ok(m) => (true, m.clone()),
            Err(e) => (false, e.clone()),
        };
        let event = ReloadEvent {
            time_unix: unix_now(),
            ok,
            message,
        };
        push_bounded(&mut lock(&self.0).reloads, event, RELOADS_KEPT);
    }
}

/// The point for the interval between two readings of one series.
fn point(t: u64, a: &Reading, b: &Reading) -> (u64, f64, f64, Option<f64>, Option<f64>) {
    let secs = b.at.saturating_duration_since(a.at).as_secs_f64().max(1e-3);
    let n = b.total.saturating_sub(a.total);
    let errors = b.errors.saturating_sub(a.errors);
    let ratio = if n == 0 {
        0.0
    } else {
        errors as f64 / n as f64
    };
    (
        t,
        milli(n as f64 / secs),
        milli(ratio),
        quantile(&a.duration, &b.duration, 0.5).map(milli),
        quantile(&a.duration, &b.duration, 0.99).map(milli),
    )
}

/// Three decimals are more than the plots show, and keep `/status.json` small (150 points a
/// route).
fn milli(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The `q` quantile in milliseconds of what was observed between two readings of a histogram,
/// interpolated linearly inside its bucket as Prometheus' `histogram_quantile` does; the
/// highest finite bound when it falls in +Inf. `None` without observations.
pub fn quantile(before: &HistogramReading, after: &HistogramReading, q: f64) -> Option<f64> {
    let count = after.count().saturating_sub(before.count());
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let mut below = 0u64;
    for (i, (a, b)) in after.cumulative.iter().zip(&before.cumulative).enumerate() {
        let cum = a.saturating_sub(*b);
        if cum as f64 >= rank {
            let Some(&upper) = BUCKETS_US.get(i) else {
                return BUCKETS_US.last().map(|&u| u as f64 / 1000.0);
            };
            let lower = if i == 0 { 0 } else { BUCKETS_US[i - 1] };
            let inside = (cum - below).max(1) as f64;
            let frac = (rank - below as f64) / inside;
            return Some((lower as f64 + (upper - lower) as f64 * frac) / 1000.0);
        }
        below = cum;
    }
    None
}

/// Each VIP of `config` and who owns it, as this node sees it.
fn vips(config: &Config) -> Vec<VipStatus> {
    let vrrp = crate::ha::metrics::vrrp();
    let mut out = Vec::new();
    for v in &config.vips {
        let owned = crate::l2::metrics::vip(v.address)
            .owned
            .load(std::sync::atomic::Ordering::Relaxed);
        let backup = config.vrrp.is_some() && vrrp.family(v.address.is_ipv6()).0 == Some("backup");
        out.push(VipStatus {
            address: v.address,
            announce: "arp".to_owned(),
            interface: Some(v.interface.clone()),
            owned,
            owner: owner(owned, backup).to_owned(),
        });
    }
    let announced = crate::bgp::metrics::bgp_metrics()
        .now()
        .map(|s| s.announced)
        .unwrap_or_default();
    for &address in config.bgp.iter().flat_map(|b| &b.vips) {
        let owned = announced.iter().any(|&(a, on)| a == address && on);
        out.push(VipStatus {
            address,
            announce: "bgp".to_owned(),
            interface: None,
            owned,
            owner: owner(owned, false).to_owned(),
        });
    }
    out
}

fn owner(owned: bool, peer: bool) -> &'static str {
    match (owned, peer) {
        (true, _) => "self",
        (false, true) => "peer",
        (false, false) => "none",
    }
}

/// What [`Status::now`] reads besides the layers' own state.
pub struct Inputs<'a> {
    pub snapshot: &'a Snapshot,
    pub config: &'a Config,
    pub history: &'a History,
    pub phase: &'a str,
    pub failed_listeners: &'a [SocketAddr],
}

impl Status {
    /// The status now.
    pub fn now(i: &Inputs<'_>) -> Status {
        let config = i.config;
        let process = crate::telemetry::metrics::process();
        let inner = lock(&i.history.0);
        let mut s = Status {
            version: SCHEMA_VERSION,
            time_unix: unix_now(),
            started_unix: process.started_unix(),
            config: config.source.display().to_string(),
            phase: i.phase.to_owned(),
            sample_interval_seconds: SAMPLE_EVERY.as_secs(),
            problems: Vec::new(),
            vips: vips(config),
            vrrp: vrrp(config),
            bgp: bgp(config),
            listeners: listeners(config, i.failed_listeners),
            routes: routes(i.snapshot, &inner.series),
            pools: pools(i.snapshot),
            certificates: certificates(),
            reloads: reloads(&inner.reloads),
            events: inner.events.iter().cloned().collect(),
        };
        s.problems = s.problems();
        s
    }

    /// What is wrong as this node sees it: a VIP owned by nobody it can see, a pool without a
    /// backend that takes requests.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in self.vips.iter().filter(|v| v.owner == "none") {
            out.push(format!(
                "VIP {} is owned by no node this one sees",
                v.address
            ));
        }
        for p in self.pools.iter().filter(|p| p.backends_available == 0) {
            out.push(format!("pool {} has no available backend", p.name));
        }
        out
    }
}

/// The problems of several nodes' statuses together: a VIP is fine when one node owns it
/// (and a problem when two do), a pool problem of any node stays one.
pub fn cluster_problems(nodes: &[(String, Status)]) -> Vec<String> {
    if let [(_, one)] = nodes {
        return one.problems();
    }
    let mut out = Vec::new();
    let mut seen: Vec<IpAddr> = Vec::new();
    for v in nodes.iter().flat_map(|(_, s)| &s.vips) {
        if seen.contains(&v.address) {
            continue;
        }
        seen.push(v.address);
        let owners: Vec<&str> = nodes
            .iter()
            .filter(|(_, s)| s.vips.iter().any(|w| w.address == v.address && w.owned))
            .map(|(n, _)| n.as_str())
            .collect();
        match owners.len() {
            0 => out.push(format!("VIP {} is owned by no node", v.address)),
            1 => {}
            _ if v.announce == "bgp" => {}
            _ => out.push(format!(
                "VIP {} is owned by {} nodes: {}",
                v.address,
                owners.len(),
                owners.join(", ")
            )),
        }
    }
    for (node, s) in nodes {
        for p in s.pools.iter().filter(|p| p.backends_available == 0) {
            out.push(format!("{node}: pool {} has no available backend", p.name));
        }
    }
    out
}

fn vrrp(config: &Config) -> Option<VrrpStatus> {
    let v = config.vrrp.as_ref()?;
    let m = crate::ha::metrics::vrrp();
    let routers = [(false, "ipv4"), (true, "ipv6")]
        .into_iter()
        .filter(|(v6, _)| config.vips.iter().any(|a| a.address.is_ipv6() == *v6))
        .map(|(v6, family)| {
            let (state, transitions) = m.family(v6);
            VrrpRouter {
                family: family.to_owned(),
                state: state.unwrap_or("initialize").to_owned(),
                transitions,
            }
        })
        .collect();
    Some(VrrpStatus {
        vrid: v.vrid.get(),
        configured_priority: v.priority.get(),
        priority: m.now().1,
        routers,
        tracks: tracks(m.tracks()),
    })
}

fn tracks(t: Vec<(String, bool)>) -> Vec<TrackStatus> {
    t.into_iter()
        .map(|(condition, failed)| TrackStatus { condition, failed })
        .collect()
}

fn bgp(config: &Config) -> Option<BgpView> {
    config.bgp.as_ref()?;
    let Some(s) = crate::bgp::metrics::bgp_metrics().now() else {
        return Some(BgpView {
            phrase: "withdrawn (rising)".to_owned(),
            tracks: Vec::new(),
            sessions: Vec::new(),
            bird_error: None,
        });
    };
    let (sessions, bird_error) = match &s.bird {
        Some(Ok(list)) => (
            list.iter()
                .map(|b| BgpSessionStatus {
                    name: b.name.clone(),
                    established: b.established,
                    info: b.info.clone(),
                })
                .collect(),
            None,
        ),
        Some(Err(e)) => (Vec::new(), Some(e.clone())),
        None => (Vec::new(), None),
    };
    Some(BgpView {
        phrase: s.phrase(),
        tracks: tracks(s.tracks.clone()),
        sessions,
        bird_error,
    })
}

fn listeners(config: &Config, failed: &[SocketAddr]) -> Vec<ListenerStatus> {
    let counters = crate::proxy::metrics::counters();
    config
        .listeners
        .iter()
        .map(|l| {
            let (open, max) = crate::proxy::listener::limit(l.bind).open();
            ListenerStatus {
                bind: l.bind,
                protocol: l.protocol.as_str().to_owned(),
                failed: failed.contains(&l.bind),
                connections_open: open as u64,
                max_connections: max as u64,
                accepted_total: counters.accepted(l.bind).unwrap_or(0),
            }
        })
        .collect()
}

fn routes(snapshot: &Snapshot, history: &[SeriesHistory]) -> Vec<RouteStatus> {
    let by_key: HashMap<(&str, &str, &str), &SeriesHistory> = history
        .iter()
        .map(|h| ((&*h.key.0, &*h.key.1, &*h.key.2), h))
        .collect();
    snapshot
        .metrics
        .all()
        .filter(|s| !s.host.is_empty())
        .map(|s| {
            let h = by_key.get(&(&*s.host, &*s.route, &*s.pool));
            RouteStatus {
                host: s.host.to_string(),
                route: s.route.to_string(),
                pool: s.pool.to_string(),
                requests_total: (0..5).map(|c| s.requests(c)).sum(),
                errors_total: s.requests(4),
                history: h.map(|h| h.points.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

fn pools(snapshot: &Snapshot) -> Vec<PoolStatus> {
    let now = now_ms();
    snapshot
        .pools
        .iter()
        .map(|p| {
            let backends: Vec<BackendStatus> = p
                .backends()
                .iter()
                .map(|b| BackendStatus {
                    address: b.address,
                    up: b.is_available(now),
                    healthy: b.is_healthy(),
                    ejected: b.is_ejected(now),
                    ejections_total: b.ejections(),
                    active_requests: b.active(),
                    idle_connections: b.idle(),
                })
                .collect();
            PoolStatus {
                name: p.name.clone(),
                backends_available: backends.iter().filter(|b| b.up).count(),
                panic: p.in_panic(now),
                backends,
            }
        })
        .collect()
}

fn certificates() -> Vec<CertStatus> {
    let now = unix_now() as i64;
    crate::proxy::metrics::counters()
        .certificates()
        .into_iter()
        .map(|(name, file, not_after)| CertStatus {
            name,
            file,
            not_after_unix: not_after,
            days_left: (not_after - now) as f64 / 86_400.0,
        })
        .collect()
}

fn reloads(recent: &VecDeque<ReloadEvent>) -> ReloadsStatus {
    use std::sync::atomic::Ordering::Relaxed;
    let p = crate::telemetry::metrics::process();
    ReloadsStatus {
        ok_total: p.reloads_ok.load(Relaxed),
        failed_total: p.reloads_failed.load(Relaxed),
        last_successful: p.last_reload_ok.load(Relaxed),
        last_success_unix: p.last_reload_success_unix.load(Relaxed),
        recent: recent.iter().cloned().collect(),
    }
}

/// Why `vipgate status` could not get a status.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach the admin listener at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the admin listener at {addr} answered {status}")]
    Status { addr: SocketAddr, status: String },
    #[error("the admin listener at {addr} sent no valid status: {reason}")]
    Invalid { addr: SocketAddr, reason: String },
}

/// `GET /status.json` from the admin listener at `addr` (plain HTTP/1.1, one request).
pub fn fetch(addr: SocketAddr) -> Result<Status, FetchError> {
    let connect = |source| FetchError::Connect { addr, source };
    let invalid = |reason: String| FetchError::Invalid { addr, reason };
    let mut s = TcpStream::connect_timeout(&addr, FETCH_TIMEOUT).map_err(connect)?;
    s.set_read_timeout(Some(FETCH_TIMEOUT)).map_err(connect)?;
    s.set_write_timeout(Some(FETCH_TIMEOUT)).map_err(connect)?;
    write!(
        s,
        "GET /status.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(connect)?;
    let mut answer = Vec::new();
    s.take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .map_err(connect)?;
    let text = String::from_utf8(answer).map_err(|e| invalid(e.to_string()))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("no end of the response head".to_owned()))?;
    let line = head.lines().next().unwrap_or_default();
    if line.split(' ').nth(1) != Some("200") {
        return Err(FetchError::Status {
            addr,
            status: line.to_owned(),
        });
    }
    serde_json::from_str(body).map_err(|e| invalid(e.to_string()))
}

/// What `vipgate status` prints for `nodes` (each named by its admin address) and the problems
/// that make it exit 1: text tables, or with `json` one object
/// `{"nodes": [{"admin": ADDR, "status": STATUS}], "problems": [...]}`.
pub fn report(nodes: &[(String, Status)], json: bool) -> (String, Vec<String>) {
    let problems = cluster_problems(nodes);
    if json {
        let nodes: Vec<serde_json::Value> = nodes
            .iter()
            .map(|(admin, s)| serde_json::json!({ "admin": admin, "status": s }))
            .collect();
        let v = serde_json::json!({ "nodes": nodes, "problems": problems });
        return (format!("{v:#}\n"), problems);
    }
    let mut out: Vec<String> = nodes.iter().map(|(n, s)| table(n, s)).collect();
    out.push(if problems.is_empty() {
        "\nOK: every VIP has an owner, every pool an available backend\n".to_owned()
    } else {
        let mut p = String::from("\nPROBLEMS:\n");
        for line in &problems {
            let _ = writeln!(p, "  {line}");
        }
        p
    });
    (out.join("\n"), problems)
}

/// The status as a few text tables, for a terminal.
pub fn table(node: &str, s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "node {node}: {} ({})", s.phase, s.config);
    let _ = writeln!(out, "\nVIP                        ANNOUNCE  OWNER");
    for v in &s.vips {
        let _ = writeln!(out, "{:<26} {:<9} {}", v.address, v.announce, v.owner);
    }
    if let Some(v) = &s.vrrp {
        let _ = write!(
            out,
            "VRRP vrid {}: priority {} (configured {})",
            v.vrid, v.priority, v.configured_priority
        );
        for r in &v.routers {
            let _ = write!(
                out,
                ", {} {} ({} transitions)",
                r.family, r.state, r.transitions
            );
        }
        out.push('\n');
        for t in v.tracks.iter().filter(|t| t.failed) {
            let _ = writeln!(out, "  track failed: {}", t.condition);
        }
    }
    if let Some(b) = &s.bgp {
        let _ = writeln!(out, "BGP: {}", b.phrase);
    }
    let _ = writeln!(
        out,
        "\nLISTENER                   PROTO  STATE   OPEN/MAX    ACCEPTED"
    );
    for l in &s.listeners {
        let _ = writeln!(
            out,
            "{:<26} {:<6} {:<7} {:>5}/{:<5} {}",
            l.bind,
            l.protocol,
            if l.failed { "FAILED" } else { "ok" },
            l.connections_open,
            l.max_connections,
            l.accepted_total
        );
    }
    let _ = writeln!(
        out,
        "\nPOOL / BACKEND             STATE    HEALTH     IN-FLIGHT  IDLE  EJECTIONS"
    );
    for p in &s.pools {
        let _ = writeln!(
            out,
            "{:<26} {}/{} up{}",
            p.name,
            p.backends_available,
            p.backends.len(),
            if p.panic { " (panic)" } else { "" }
        );
        for b in &p.backends {
            let state = if b.up { "up" } else { "DOWN" };
            let health = match (b.healthy, b.ejected) {
                (_, true) => "ejected",
                (true, false) => "healthy",
                (false, false) => "unhealthy",
            };
            let _ = writeln!(
                out,
                "  {:<24} {:<8} {:<10} {:>9}  {:>4}  {}",
                b.address.to_string(),
                state,
                health,
                b.active_requests,
                b.idle_connections,
                b.ejections_total
            );
        }
    }
    let _ = writeln!(
        out,
        "\nHOST ROUTE -> POOL                          REQ/S   5XX%    P50 ms   P99 ms"
    );
    for r in &s.routes {
        let h = &r.history;
        let last = |v: &[Option<f64>]| {
            v.last()
                .copied()
                .flatten()
                .map_or("-".to_owned(), |x| format!("{x:.1}"))
        };
        let _ = writeln!(
            out,
            "{:<42} {:>6.1} {:>6.1} {:>8} {:>8}",
            format!("{} {} -> {}", r.host, r.route, r.pool),
            h.requests_per_second.last().copied().unwrap_or(0.0),
            h.error_ratio.last().copied().unwrap_or(0.0) * 100.0,
            last(&h.p50_ms),
            last(&h.p99_ms)
        );
    }
    if !s.certificates.is_empty() {
        let _ = writeln!(out, "\nCERTIFICATE                DAYS LEFT  FILE");
        for c in &s.certificates {
            let _ = writeln!(out, "{:<26} {:>9.1}  {}", c.name, c.days_left, c.file);
        }
    }
    let r = &s.reloads;
    let _ = writeln!(
        out,
        "\nreloads: {} ok, {} refused{}",
        r.ok_total,
        r.failed_total,
        if r.last_successful {
            ""
        } else {
            " (the last was refused)"
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(counts: &[(usize, u64)]) -> HistogramReading {
        let mut per = [0u64; BUCKETS_US.len() + 1];
        for &(i, n) in counts {
            per[i] += n;
        }
        let mut cumulative = per;
        for i in 1..cumulative.len() {
            cumulative[i] += cumulative[i - 1];
        }
        HistogramReading {
            cumulative,
            sum_seconds: 0.0,
        }
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_of_the_interval() {
        let zero = reading(&[]);
        // 100 requests between 1 and 2.5 ms: the median half way into that bucket.
        let b = reading(&[(2, 100)]);
        assert_eq!(quantile(&zero, &b, 0.5), Some(1.75));
        assert_eq!(quantile(&zero, &b, 1.0), Some(2.5));
        // Only what happened between the readings counts.
        let c = reading(&[(2, 100), (10, 100)]); // + 100 in (500 ms, 1 s]
        assert_eq!(quantile(&b, &c, 0.5), Some(750.0));
        // In +Inf: the highest finite bound.
        let d = reading(&[(14, 10)]);
        assert_eq!(quantile(&zero, &d, 0.99), Some(10_000.0));
        assert_eq!(quantile(&b, &b, 0.5), None);
    }

    #[test]
    fn history_is_bounded() {
        let mut h = RouteHistory::default();
        for i in 0..(SAMPLES_KEPT as u64 + 20) {
            h.push((i, 1.0, 0.0, None, None));
        }
        assert_eq!(h.time_unix.len(), SAMPLES_KEPT);
        assert_eq!(h.p99_ms.len(), SAMPLES_KEPT);
        assert_eq!(h.time_unix[0], 20);
    }

    fn node(vips: &[(&str, bool, &str)], pool_up: usize) -> Status {
        Status {
            version: SCHEMA_VERSION,
            time_unix: 0,
            started_unix: 0,
            config: String::new(),
            phase: "ready".to_owned(),
            sample_interval_seconds: 2,
            problems: Vec::new(),
            vips: vips
                .iter()
                .map(|&(a, owned, owner)| VipStatus {
                    address: a.parse().unwrap(),
                    announce: "arp".to_owned(),
                    interface: None,
                    owned,
                    owner: owner.to_owned(),
                })
                .collect(),
            vrrp: None,
            bgp: None,
            listeners: Vec::new(),
            routes: Vec::new(),
            pools: vec![PoolStatus {
                name: "web".to_owned(),
                backends_available: pool_up,
                panic: false,
                backends: Vec::new(),
            }],
            certificates: Vec::new(),
            reloads: ReloadsStatus::default(),
            events: Vec::new(),
        }
    }

    #[test]
    fn problems_of_one_node_and_of_several() {
        let master = node(&[("192.0.2.200", true, "self")], 1);
        let backup = node(&[("192.0.2.200", false, "peer")], 1);
        assert!(master.problems().is_empty());
        assert!(backup.problems().is_empty());
        let alone = node(&[("192.0.2.200", false, "none")], 0);
        assert_eq!(
            alone.problems(),
            [
                "VIP 192.0.2.200 is owned by no node this one sees",
                "pool web has no available backend"
            ]
        );
        let pair = |a: &Status, b: &Status| {
            cluster_problems(&[("a".to_owned(), a.clone()), ("b".to_owned(), b.clone())])
        };
        assert!(pair(&master, &backup).is_empty());
        assert_eq!(
            pair(&master, &master),
            ["VIP 192.0.2.200 is owned by 2 nodes: a, b"]
        );
        assert_eq!(
            pair(&backup, &backup),
            ["VIP 192.0.2.200 is owned by no node"]
        );
    }
}
