//! One backend's live state: availability (active health and passive ejection), requests in
//! flight, and its idle keep-alive connections.
//!
//! Owns the rules for taking a backend out and bringing it back, and for which connections may
//! be reused, and the counts and reports of its TLS handshakes. Shared by the request path and
//! the health checker through atomics and a lock-free queue: no lock on the request path.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use crossbeam_queue::ArrayQueue;
use tracing::warn;

use super::balance::Standing;
use super::stream::{TlsFailure, TlsOrigin, UpstreamStream};
use crate::telemetry::metrics::lock;

/// A backend whose handshakes keep failing is reported at most this often; the line says how
/// many failures it stands for.
const TLS_REPORT_EVERY_MS: u64 = 10_000;

/// How long a backend that could not be reached (refused, reset, connect timeout) is passed
/// over while another can be picked. Short, because it is not capped by
/// `max_ejection_percent`: it only decides who goes first, and it lapses by itself, so a
/// backend that was only restarting is tried again a second later.
pub const SUSPECT_MS: u64 = 1_000;

/// Milliseconds on a process-wide monotonic clock, to keep deadlines in an `AtomicU64`.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[derive(Debug)]
pub struct Backend {
    pub address: SocketAddr,
    /// Set by active health checks; true until a check says otherwise.
    healthy: AtomicBool,
    /// `now_ms()` until which passive outlier detection keeps the backend out.
    ejected_until: AtomicU64,
    /// `now_ms()` until which it is passed over for being unreachable (0: never was).
    suspect_until: AtomicU64,
    consecutive_failures: AtomicU32,
    /// How many times it was ejected; each ejection lasts longer.
    ejections: AtomicU32,
    /// Requests in flight, for least-request balancing.
    active: AtomicUsize,
    /// One queue per worker (see `proxy::workers`): a connection is registered with the
    /// reactor of the worker that opened it, so only that worker reuses it. Empty when reuse
    /// is off.
    idle: Box<[ArrayQueue<IdleConn>]>,
    idle_timeout: Duration,
    /// How its pool dials it with TLS; empty for a plain pool. Replaced on reload.
    tls: ArcSwapOption<TlsOrigin>,
    /// Mirrors `tls.is_some()` for the idle check, without touching the `ArcSwap`.
    tls_on: AtomicBool,
    tls_handshakes: AtomicU64,
    tls_failures: [AtomicU64; TlsFailure::ALL.len()],
    /// `now_ms() + 1` of the last handshake failure report (0: none yet).
    tls_reported_at: AtomicU64,
    /// Failures since that report.
    tls_unreported: AtomicU64,
    /// The DNS name the address came from (`resolve`): what a TLS pool without `server_name`
    /// verifies and sends as SNI. `None`: an `"IP:PORT"` backend (verified by its IP).
    server_name: Option<rustls_pki_types::ServerName<'static>>,
    /// Its pool speaks HTTP/2 to it (`protocol = "http2"`). Replaced on reload.
    http2: AtomicBool,
    /// One HTTP/2 connection per worker, shared by that worker's streams to this backend
    /// (`http2::upstream`). A lock rather than a lock-free slot: the `h2` crate locks its
    /// connection's state for every stream anyway, and only `http2` pools touch it.
    h2: Box<[Mutex<Option<H2Sender>>]>,
}

/// A handle on an HTTP/2 connection to a backend, from which streams are opened.
pub type H2Sender = h2::client::SendRequest<bytes::Bytes>;

#[derive(Debug)]
struct IdleConn {
    stream: UpstreamStream,
    since: Instant,
}

/// Why a try against a backend failed, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// A failure that says the backend is likely gone (connect refused or timed out, reset
    /// before a response): besides counting, it makes the backend a suspect for `SUSPECT_MS`.
    Unreachable,
}

impl Backend {
    /// `max_idle` idle connections are kept per worker of `workers`.
    pub fn new(
        address: SocketAddr,
        max_idle: u32,
        idle_timeout: Duration,
        tls: Option<Arc<TlsOrigin>>,
        workers: usize,
    ) -> Backend {
        Backend {
            tls_on: AtomicBool::new(tls.is_some()),
            tls: ArcSwapOption::new(tls),
            tls_handshakes: AtomicU64::new(0),
            tls_failures: Default::default(),
            tls_reported_at: AtomicU64::new(0),
            tls_unreported: AtomicU64::new(0),
            address,
            healthy: AtomicBool::new(true),
            ejected_until: AtomicU64::new(0),
            suspect_until: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            active: AtomicUsize::new(0),
            idle: if max_idle > 0 {
                (0..workers.max(1))
                    .map(|_| ArrayQueue::new(max_idle as usize))
                    .collect()
            } else {
                Box::default()
            },
            idle_timeout,
            server_name: None,
            http2: AtomicBool::new(false),
            h2: (0..workers.max(1)).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The same backend, spoken to over HTTP/2.
    pub fn http2(self, on: bool) -> Backend {
        self.http2.store(on, Ordering::Relaxed);
        self
    }

    /// Whether its pool speaks HTTP/2 to it.
    pub fn speaks_http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    /// A reload's protocol for the pool; connections of the other protocol are dropped.
    pub fn set_http2(&self, on: bool) {
        if self.http2.swap(on, Ordering::Relaxed) != on {
            self.drop_idle();
        }
    }

    /// This worker's HTTP/2 connection to the backend, if it has one.
    pub fn h2_sender(&self) -> Option<H2Sender> {
        self.h2_here().and_then(|slot| lock(slot).clone())
    }

    /// Make `sender` this worker's HTTP/2 connection to the backend (`None`: forget it).
    pub fn set_h2_sender(&self, sender: Option<H2Sender>) {
        if let Some(slot) = self.h2_here() {
            *lock(slot) = sender;
        }
    }

    fn h2_here(&self) -> Option<&Mutex<Option<H2Sender>>> {
        match self.h2.len() {
            0 => None,
            n => self.h2.get(crate::proxy::workers::current() % n),
        }
    }

    /// The same backend, known by the DNS name `name` (ignored if it is not one).
    pub fn named(mut self, name: Option<&str>) -> Backend {
        self.server_name =
            name.and_then(|n| rustls_pki_types::ServerName::try_from(n.to_owned()).ok());
        self
    }

    /// What a TLS pool without `server_name` verifies this backend's certificate against.
    pub fn server_name(&self) -> Option<&rustls_pki_types::ServerName<'static>> {
        self.server_name.as_ref()
    }

    /// Whether this backend's idle pool was made for these settings (a reload that changes
    /// them starts the backend afresh).
    pub fn has_idle_settings(&self, max_idle: u32, idle_timeout: Duration) -> bool {
        let capacity = self.idle.first().map_or(0, ArrayQueue::capacity);
        capacity == max_idle as usize && self.idle_timeout == idle_timeout
    }

    /// The calling worker's idle connections, if reuse is on.
    fn idle_here(&self) -> Option<&ArrayQueue<IdleConn>> {
        match self.idle.len() {
            0 => None,
            n => self.idle.get(crate::proxy::workers::current() % n),
        }
    }

    pub fn is_available(&self, now: u64) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.is_ejected(now)
    }

    /// [`Backend::is_available`], reading the clock (`now`) only for a backend that was
    /// ever ejected.
    pub fn is_available_at(&self, now: &impl Fn() -> u64) -> bool {
        if !self.healthy.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || until <= now()
    }

    /// Where it stands for picking at `now`; the first that applies of: unreachable lately,
    /// down by its checks, ejected, available. Fresh evidence of a request comes first.
    pub fn standing(&self, now: u64) -> Standing {
        if self.suspect_until.load(Ordering::Relaxed) > now {
            Standing::Suspect
        } else if !self.is_healthy() {
            Standing::KnownDead
        } else if self.is_ejected(now) {
            Standing::Ejected
        } else {
            Standing::Available
        }
    }

    /// Whether an ejection ever began (no clock needed to say no).
    pub fn was_ever_ejected(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) != 0
    }

    pub fn mark_suspect(&self, now: u64) {
        self.suspect_until
            .store(now + SUSPECT_MS, Ordering::Relaxed);
    }

    /// End an ejection early (the backend just answered); false if it was not ejected.
    pub fn unject(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until > now
            && self
                .ejected_until
                .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// Returns whether the state changed.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        let was = self.healthy.swap(healthy, Ordering::Relaxed);
        if !healthy {
            self.drop_idle();
        }
        was != healthy
    }

    /// How many times outlier detection ejected it (for metrics).
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Idle keep-alive connections kept now, over every worker's queue (read by the status
    /// page; a queue's length is one atomic load).
    pub fn idle(&self) -> usize {
        self.idle.iter().map(ArrayQueue::len).sum()
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Count a request in flight until the guard drops.
    pub fn begin(&self) -> ActiveGuard<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self)
    }

    /// Record a try's result; returns the number of consecutive failures so far.
    pub fn record(&self, outcome: Outcome) -> u32 {
        match outcome {
            Outcome::Success => {
                self.consecutive_failures.store(0, Ordering::Relaxed);
                // Read first: the common case (never suspected) writes nothing more.
                if self.suspect_until.load(Ordering::Relaxed) != 0 {
                    self.suspect_until.store(0, Ordering::Relaxed);
                }
                0
            }
            Outcome::Failure | Outcome::Unreachable => {
                self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
            }
        }
    }

    /// Eject for `base × (previous ejections + 1)`, capped at `max`. Returns the duration.
    pub fn eject(&self, now: u64, base: Duration, max: Duration) -> Duration {
        let n = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let d = base.saturating_mul(n).min(max);
        self.ejected_until
            .store(now + d.as_millis() as u64, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.drop_idle();
        d
    }

    /// A pooled connection that is still open, if any. Connections idle for longer than the
    /// idle timeout, that the backend closed or wrote to while idle, or made before a reload
    /// switched the pool between plain and TLS, are dropped. `now` is a fresh clock reading.
    pub fn checkout(&self, now: Instant) -> Option<UpstreamStream> {
        let idle = self.idle_here()?;
        let tls = self.tls_on.load(Ordering::Relaxed);
        while let Some(mut c) = idle.pop() {
            if now.saturating_duration_since(c.since) < self.idle_timeout
                && c.stream.is_tls() == tls
                && c.stream.is_idle_and_open()
            {
                return Some(c.stream);
            }
        }
        None
    }

    /// Keep a connection whose last exchange ended cleanly at a message boundary; `since` is
    /// when the backend sent its last byte (a clock reading taken then or just after).
    pub fn checkin(&self, stream: UpstreamStream, since: Instant) {
        if let Some(idle) = self.idle_here() {
            if self.is_healthy() {
                let _ = idle.push(IdleConn { stream, since });
            }
        }
    }

    /// Every worker's: called from whichever thread saw the failure. A connection dropped
    /// here on another worker's thread only deregisters from that worker's reactor.
    pub(super) fn drop_idle(&self) {
        for idle in &*self.idle {
            while idle.pop().is_some() {}
        }
        // Streams open on them finish; new ones go on a new connection.
        for slot in &*self.h2 {
            *lock(slot) = None;
        }
    }
}

impl Backend {
    /// How its pool dials it with TLS, if it does.
    pub fn tls(&self) -> Option<Arc<TlsOrigin>> {
        self.tls.load_full()
    }

    pub fn uses_tls(&self) -> bool {
        self.tls_on.load(Ordering::Relaxed)
    }

    /// A reload's TLS settings for the pool. Idle connections made under different settings
    /// or certificates are dropped, so new files take effect at once.
    pub fn set_tls(&self, tls: Option<Arc<TlsOrigin>>) {
        let same = match (self.tls.load().as_deref(), tls.as_deref()) {
            (None, None) => true,
            (Some(a), Some(b)) => a.same_as(b),
            _ => false,
        };
        self.tls_on.store(tls.is_some(), Ordering::Relaxed);
        self.tls.store(tls);
        if !same {
            self.drop_idle();
        }
    }

    pub fn tls_handshake_done(&self) {
        self.tls_handshakes.fetch_add(1, Ordering::Relaxed);
    }

    /// Completed TLS handshakes, for metrics.
    pub fn tls_handshakes(&self) -> u64 {
        self.tls_handshakes.load(Ordering::Relaxed)
    }

    /// Failed TLS handshakes for `reason`, for metrics.
    pub fn tls_failures(&self, reason: TlsFailure) -> u64 {
        self.tls_failures[reason.index()].load(Ordering::Relaxed)
    }

    /// Count a failed handshake and report it, at most once per `TLS_REPORT_EVERY_MS`: a
    /// backend with a bad certificate fails every request, and one line per period says so
    /// as well as a thousand.
    pub fn tls_failed(&self, pool: &str, reason: TlsFailure, error: &dyn std::fmt::Display) {
        self.tls_failures[reason.index()].fetch_add(1, Ordering::Relaxed);
        let now = now_ms() + 1;
        let last = self.tls_reported_at.load(Ordering::Relaxed);
        let due = last == 0 || now >= last + TLS_REPORT_EVERY_MS;
        if due
            && self
                .tls_reported_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let more = self.tls_unreported.swap(0, Ordering::Relaxed);
            warn!(
                %pool,
                backend = %self.address,
                reason = %reason.label(),
                unreported_failures = more,
                "TLS handshake with the backend failed: {}: {error}",
                reason.explain()
            );
        } else {
            self.tls_unreported.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct ActiveGuard<'a>(&'a Backend);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_grows_and_is_capped() {
        let b = Backend::new(
            "192.0.2.1:80".parse().unwrap(),
            0,
            Duration::from_secs(1),
            None,
            1,
        );
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(25);
        assert_eq!(b.eject(1000, base, max), Duration::from_secs(10));
        assert!(b.is_ejected(1000 + 9_999) && !b.is_ejected(1000 + 10_000));
        assert_eq!(b.eject(0, base, max), Duration::from_secs(20));
        assert_eq!(b.eject(0, base, max), Duration::from_secs(25));
    }

    #[test]
    fn failures_count_until_a_success() {
        let b = Backend::new(
            "192.0.2.1:80".parse().unwrap(),
            0,
            Duration::from_secs(1),
            None,
            1,
        );
        assert_eq!(b.record(Outcome::Failure), 1);
        assert_eq!(b.record(Outcome::Failure), 2);
        assert_eq!(b.record(Outcome::Success), 0);
        assert_eq!(b.record(Outcome::Failure), 1);
    }
}
