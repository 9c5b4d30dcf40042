//! Backend pools: choosing a backend for a request, and learning from the result.
//!
//! Owns balancing (round robin by weight, least request, Maglev hashing), skipping backends that
//! are unhealthy, ejected or suspect and taking them back as a last resort or in panic (the
//! rule is `balance::pick_order`), outlier ejection from request results, the retry budget,
//! and the active health checkers' lifetime (they stop when the pools are dropped). Dialling a backend
//! (plain or TLS) is `stream`'s. It does not speak HTTP to serve requests: `conn` relays;
//! `health` probes.

pub mod backend;
pub mod balance;
mod health;
pub mod stream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{BackendProtocol, Balance, Config, HashKey, Outlier, PoolId, ProxySettings};
use backend::{now_ms, Backend, Outcome};
use balance::{maglev_table, Standing, WeightedCycle, MAGLEV_TABLE_SIZE};

#[derive(Debug)]
pub struct PoolState {
    pub name: String,
    /// Its backends are spoken to over HTTP/2 (`protocol = "http2"`).
    pub http2: bool,
    backends: Vec<Arc<Backend>>,
    picker: Picker,
    outlier: Outlier,
    panic_threshold_percent: u8,
    /// Non-zero once some backend may not be available (bumped after each change that takes
    /// one out; reset by a pick that sees all available): while zero, a pick costs what a
    /// plain balancer does. Shared with the pool's health checkers.
    unsettled: Arc<AtomicU64>,
    /// Kept across reloads, so the counter never goes back and one panic logs once.
    panic: Arc<Panic>,
    /// Requests and retries in flight, for the retry budget.
    active: AtomicUsize,
    retrying: AtomicUsize,
}

#[derive(Debug)]
enum Picker {
    RoundRobin(WeightedCycle),
    LeastRequest,
    Maglev { key: HashKey, table: Vec<u32> },
}

#[derive(Debug, Default)]
struct Panic {
    active: AtomicBool,
    entered: AtomicU64,
}

/// What a request offers for hashing.
pub struct HashInput<'a> {
    pub client_ip: std::net::IpAddr,
    pub headers: &'a [httparse::Header<'a>],
}

#[derive(Debug)]
pub struct Pools {
    pools: Vec<PoolState>,
    retry_budget_percent: u32,
    health_tasks: Vec<JoinHandle<()>>,
}

impl Drop for Pools {
    fn drop(&mut self) {
        for t in &self.health_tasks {
            t.abort();
        }
    }
}

impl Pools {
    /// Build the pools of `config`. With active health checks configured this spawns their
    /// tasks, so it must run inside a Tokio runtime; they end when the `Pools` is dropped.
    pub fn build(config: &Config) -> Pools {
        Self::build_from(config, None)
    }

    /// Build the pools of a reloaded `config`, keeping the live state (health, ejection, idle
    /// connections) of every backend that stays in a pool of the same name.
    pub fn rebuild(config: &Config, previous: &Pools) -> Pools {
        Self::build_from(config, Some(previous))
    }

    fn build_from(config: &Config, previous: Option<&Pools>) -> Pools {
        let settings: &ProxySettings = &config.proxy;
        let mut health_tasks = Vec::new();
        let pools: Vec<PoolState> = config
            .pools
            .iter()
            .map(|p| {
                let tls = p.tls.as_ref().map(|t| {
                    if t.insecure_skip_verify {
                        warn!(pool = %p.name, "insecure_skip_verify = true: the backends' certificates are not verified; anyone on the path can pose as them");
                    }
                    Arc::new(stream::TlsOrigin::new(&p.name, t))
                });
                let backends: Vec<Arc<Backend>> = p
                    .backends
                    .iter()
                    .map(|b| {
                        let kept = previous
                            .and_then(|old| old.pools.iter().find(|op| op.name == p.name))
                            .and_then(|op| {
                                op.backends.iter().find(|ob| {
                                    ob.address == b.address
                                        && ob.has_idle_settings(
                                            settings.backend_max_idle,
                                            settings.backend_idle_timeout,
                                        )
                                })
                            });
                        match kept {
                            Some(k) => {
                                // Without checks now, a verdict of the old checks must not
                                // keep the backend out for good.
                                if p.health.is_none() {
                                    k.set_healthy(true);
                                }
                                k.set_tls(tls.clone());
                                k.set_http2(p.protocol == BackendProtocol::Http2);
                                k.clone()
                            }
                            None => {
                                let fresh = Arc::new(Backend::new(
                                    b.address,
                                    settings.backend_max_idle,
                                    settings.backend_idle_timeout,
                                    tls.clone(),
                                    crate::proxy::workers::count(settings),
                                )
                                .named(b.name.as_deref())
                                .http2(p.protocol == BackendProtocol::Http2));
                                // An address a name gave a running pool gets traffic only once
                                // its checks pass (a pod that is still starting).
                                if previous.is_some() && p.health.is_some() && b.name.is_some() {
                                    fresh.set_healthy(false);
                                }
                                fresh
                            }
                        }
                    })
                    .collect();
                let weights: Vec<u32> = p.backends.iter().map(|b| b.weight).collect();
                let picker = match &p.balance {
                    Balance::RoundRobin => Picker::RoundRobin(WeightedCycle::new(&weights)),
                    Balance::LeastRequest => Picker::LeastRequest,
                    Balance::Maglev(key) => {
                        let names: Vec<String> =
                            backends.iter().map(|b| b.address.to_string()).collect();
                        let keys: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
                        Picker::Maglev {
                            key: key.clone(),
                            table: maglev_table(&keys, &weights, MAGLEV_TABLE_SIZE),
                        }
                    }
                };
                // Kept backends may be out: the first pick looks.
                let unsettled = Arc::new(AtomicU64::new(1));
                if let Some(check) = &p.health {
                    for b in &backends {
                        health_tasks.push(tokio::spawn(health::run(
                            p.name.clone(),
                            b.clone(),
                            check.clone(),
                            unsettled.clone(),
                        )));
                    }
                }
                let panic = previous
                    .and_then(|old| old.pools.iter().find(|op| op.name == p.name))
                    .map_or_else(Arc::default, |op| op.panic.clone());
                PoolState {
                    name: p.name.clone(),
                    http2: p.protocol == BackendProtocol::Http2,
                    backends,
                    picker,
                    outlier: p.outlier,
                    panic_threshold_percent: p.panic_threshold_percent,
                    unsettled,
                    panic,
                    active: AtomicUsize::new(0),
                    retrying: AtomicUsize::new(0),
                }
            })
            .collect();
        if let Some(old) = previous {
            drain_removed(old, &pools);
        }
        Pools {
            pools,
            retry_budget_percent: settings.retry_budget_percent,
            health_tasks,
        }
    }

    /// Every pool, in configuration order (for metrics).
    pub fn iter(&self) -> impl Iterator<Item = &PoolState> {
        self.pools.iter()
    }

    pub fn get(&self, id: PoolId) -> &PoolState {
        // PoolIds come from the same Config these pools were built from.
        &self.pools[id.index()]
    }

    /// Whether one more retry fits the budget of `pool`: retries in flight may be at most
    /// `retry_budget_percent` of its requests in flight, and at least 3 (so a quiet pool can
    /// still retry), which keeps retries from multiplying an outage's load.
    pub fn try_begin_retry<'a>(&self, pool: &'a PoolState) -> Option<RetryGuard<'a>> {
        let active = pool.active.load(Ordering::Relaxed);
        let allowed = (active * self.retry_budget_percent as usize / 100).max(3);
        if self.retry_budget_percent == 0 {
            return None;
        }
        let prev = pool.retrying.fetch_add(1, Ordering::Relaxed);
        if prev >= allowed {
            pool.retrying.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(RetryGuard(pool))
    }
}

pub struct RetryGuard<'a>(&'a PoolState);

impl Drop for RetryGuard<'_> {
    fn drop(&mut self) {
        self.0.retrying.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct PoolActiveGuard<'a>(&'a PoolState);

impl Drop for PoolActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PoolState {
    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// Count a request against this pool until the guard drops.
    pub fn begin(&self) -> PoolActiveGuard<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        PoolActiveGuard(self)
    }

    /// The request's hash for Maglev pools (0 for the others, which ignore it).
    pub fn hash(&self, input: &HashInput<'_>) -> u64 {
        match &self.picker {
            Picker::Maglev { key, .. } => hash_key(key, input),
            _ => 0,
        }
    }

    /// Choose a backend, other than `avoid` (the one that just failed this request) unless it
    /// is the only one left. Available backends first; then, in the order of
    /// `balance::pick_order`, ejected and known-dead ones. `None` when nothing may be tried:
    /// the caller answers 503 at once.
    pub fn pick(&self, hash: u64, avoid: Option<SocketAddr>) -> Option<&Arc<Backend>> {
        // The clock is read only if some backend was ever ejected.
        let now = std::cell::OnceCell::new();
        let now = || *now.get_or_init(now_ms);
        if self.backends.is_empty() {
            // A pool by name whose name gives no address (yet): 503, as with none healthy.
            return None;
        }
        if self.unsettled.load(Ordering::Acquire) == 0 {
            // Every backend was available when last looked: today's balancer.
            let ok = |b: &Backend| Some(b.address) != avoid && b.is_available_at(&now);
            if let Some(b) = self.select(hash, ok) {
                return Some(b);
            }
        }
        self.pick_unsettled(hash, avoid, now())
    }

    #[cold]
    fn pick_unsettled(
        &self,
        hash: u64,
        avoid: Option<SocketAddr>,
        now: u64,
    ) -> Option<&Arc<Backend>> {
        let seen = self.unsettled.load(Ordering::Acquire);
        let mut counts = [0usize; Standing::COUNT];
        for b in &self.backends {
            counts[b.standing(now).index()] += 1;
        }
        let total = self.backends.len();
        let available = counts[Standing::Available.index()];
        if available == total {
            // Fails if a change came in meanwhile, which then keeps the slow path on.
            let _ = self
                .unsettled
                .compare_exchange(seen, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
        self.note_panic(
            balance::in_panic(available, total, self.panic_threshold_percent),
            available,
        );
        let order = balance::pick_order(&counts, self.panic_threshold_percent);
        let take = |b: &Backend, group: &[Standing], other: bool| {
            (!other || Some(b.address) != avoid) && group.contains(&b.standing(now))
        };
        order
            .iter()
            .find_map(|g| self.select(hash, |b| take(b, g, true)))
            // The backend that just failed is still better than none, if it may be tried.
            .or_else(|| {
                avoid.and_then(|_| {
                    order
                        .iter()
                        .find_map(|g| self.select(hash, |b| take(b, g, false)))
                })
            })
    }

    /// Log a panic's start and end once each, and count its starts.
    fn note_panic(&self, panic: bool, available: usize) {
        if self.panic.active.load(Ordering::Relaxed) == panic
            || self
                .panic
                .active
                .compare_exchange(!panic, panic, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let (total, threshold) = (self.backends.len(), self.panic_threshold_percent);
        if panic {
            self.panic.entered.fetch_add(1, Ordering::Relaxed);
            warn!(pool = %self.name, available, total, threshold_percent = threshold, "pool in panic: too few backends available, balancing over the ejected ones too");
        } else {
            info!(pool = %self.name, available, total, threshold_percent = threshold, "pool out of panic");
        }
    }

    /// Times the pool went into panic (for metrics).
    pub fn panics(&self) -> u64 {
        self.panic.entered.load(Ordering::Relaxed)
    }

    /// Whether the pool is in panic now, from the live state (for metrics).
    pub fn in_panic(&self, now: u64) -> bool {
        let available = self
            .backends
            .iter()
            .filter(|b| b.standing(now) == Standing::Available)
            .count();
        balance::in_panic(available, self.backends.len(), self.panic_threshold_percent)
    }

    /// The first backend the picker offers that `ok` accepts.
    fn select(&self, hash: u64, ok: impl Fn(&Backend) -> bool) -> Option<&Arc<Backend>> {
        let n = self.backends.len();
        match &self.picker {
            Picker::RoundRobin(cycle) => {
                // A full cycle visits every backend with weight > 0 at least once.
                (0..n.max(cycle.len()) * 2)
                    .map(|_| &self.backends[cycle.next()])
                    .find(|b| ok(b))
            }
            Picker::LeastRequest => {
                // Two distinct backends (when there are two): drawing with replacement would
                // hand a slow backend of a pair a quarter of the load anyway.
                let i = random_below(n);
                let j = if n > 1 {
                    (i + 1 + random_below(n - 1)) % n
                } else {
                    i
                };
                let (a, b) = (&self.backends[i], &self.backends[j]);
                match (ok(a), ok(b)) {
                    (true, true) => Some(if b.active() < a.active() { b } else { a }),
                    (true, false) => Some(a),
                    (false, true) => Some(b),
                    (false, false) => {
                        let start = random_below(n);
                        (0..n)
                            .map(|i| &self.backends[(start + i) % n])
                            .find(|b| ok(b))
                    }
                }
            }
            Picker::Maglev { table, .. } => {
                let h = hash as usize;
                // Walking on from the key's slot keeps every other key where it was.
                (0..table.len())
                    .map(|i| &self.backends[table[(h + i) % table.len()] as usize])
                    .find(|b| ok(b))
            }
        }
    }

    /// Learn from a try: consecutive failures eject the backend for a while, but never more
    /// than `max_ejection_percent` of the pool at once; an unreachable backend of a pool with
    /// others is a suspect for `SUSPECT_MS` whether ejected or not (so the live ones take the
    /// traffic at once); an ejected backend that answers is back at once.
    pub fn report(&self, backend: &Backend, outcome: Outcome) {
        let failures = backend.record(outcome);
        if outcome == Outcome::Success {
            // Only a panic or last-resort pick reaches an ejected backend.
            if backend.was_ever_ejected() && backend.unject(now_ms()) {
                info!(pool = %self.name, backend = %backend.address, "ejected backend answered: back in rotation");
            }
            return;
        }
        let now = now_ms();
        if outcome == Outcome::Unreachable && self.backends.len() > 1 {
            // A single backend is never passed over: there is nothing to prefer to it.
            backend.mark_suspect(now);
            self.unsettled.fetch_add(1, Ordering::Release);
        }
        let limit = self.outlier.consecutive_failures;
        if limit == 0 || failures < limit {
            return;
        }
        let ejected = self.backends.iter().filter(|b| b.is_ejected(now)).count();
        let max = self.backends.len() * usize::from(self.outlier.max_ejection_percent) / 100;
        if ejected >= max || backend.is_ejected(now) {
            return;
        }
        let d = backend.eject(now, self.outlier.base_ejection, self.outlier.max_ejection);
        self.unsettled.fetch_add(1, Ordering::Release);
        warn!(pool = %self.name, backend = %backend.address, failures, ejected_for_ms = d.as_millis() as u64, "backend ejected");
    }
}

fn hash_key(key: &HashKey, input: &HashInput<'_>) -> u64 {
    use balance::fnv1a;
    const BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    match key {
        HashKey::ClientIp => match input.client_ip {
            std::net::IpAddr::V4(a) => fnv1a(&a.octets(), BASIS),
            std::net::IpAddr::V6(a) => fnv1a(&a.octets(), BASIS),
        },
        HashKey::Header(name) => input
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map_or(0, |h| fnv1a(h.value, BASIS)),
        HashKey::Cookie(name) => input
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .flat_map(|h| h.value.split(|&b| b == b';'))
            .find_map(|pair| {
                let pair = crate::proxy::http1::tokens::trim(pair);
                let eq = pair.iter().position(|&b| b == b'=')?;
                (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
            })
            .map_or(0, |v| fnv1a(v, BASIS)),
    }
}

/// Close the idle connections of the backends of `old` that no pool of `new` kept (a name
/// stopped giving the address, or the file dropped it): requests in flight on them finish on
/// their own connections, no new request is sent, and nothing waits in the idle queue to be
/// closed only when the last old snapshot is released.
fn drain_removed(old: &Pools, new: &[PoolState]) {
    for b in old.pools.iter().flat_map(|p| p.backends.iter()) {
        let kept = new
            .iter()
            .flat_map(|p| p.backends.iter())
            .any(|n| Arc::ptr_eq(n, b));
        if !kept {
            b.drop_idle();
        }
    }
}

/// Uniform in `0..n` (0 for `n` = 0), from the thread's generator: `fastrand` keeps one
/// wyrand state per thread, seeded from the OS's randomness, so a pick costs no lock and no
/// system call, and neither threads nor restarts repeat each other's sequences.
fn random_below(n: usize) -> usize {
    fastrand::usize(..n.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn pools(pool_toml: &str) -> (Config, Pools) {
        let text = format!(
            "[[listener]]\nbind = \"0.0.0.0:80\"\n[[host]]\nnames = [\"a.test\"]\n[[host.route]]\nprefix = \"/\"\npool = \"p\"\n[pool.p]\n{pool_toml}"
        );
        let config = crate::config::parse(Path::new("t.toml"), &text).unwrap();
        let pools = Pools::build(&config);
        (config, pools)
    }

    #[test]
    fn round_robin_follows_weights_and_skips_the_unavailable() {
        let (c, p) =
            pools("backends = [\"192.0.2.1:80\", { address = \"192.0.2.2:80\", weight = 3 }]\n");
        let pool = p.get(c.hosts[0].routes[0].split[0].pool);
        let picks: Vec<SocketAddr> = (0..400)
            .map(|_| pool.pick(0, None).unwrap().address)
            .collect();
        let heavy = picks
            .iter()
            .filter(|a| a.to_string() == "192.0.2.2:80")
            .count();
        assert_eq!(heavy, 300);
        pool.backends()[1].set_healthy(false);
        assert!((0..10).all(|_| pool.pick(0, None).unwrap().address.to_string() == "192.0.2.1:80"));
        pool.backends()[0].set_healthy(false);
        assert!(pool.pick(0, None).is_none());
    }

    #[test]
    fn avoid_prefers_another_backend() {
        let (c, p) = pools("backends = [\"192.0.2.1:80\", \"192.0.2.2:80\"]\n");
        let pool = p.get(c.hosts[0].routes[0].split[0].pool);
        let first: SocketAddr = "192.0.2.1:80".parse().unwrap();
        assert!((0..10).all(|_| pool.pick(0, Some(first)).unwrap().address != first));
        // The other is down by its checks: a last resort rather than the one that just failed.
        pool.backends()[1].set_healthy(false);
        assert_eq!(
            pool.pick(0, Some(first)).unwrap().address,
            pool.backends()[1].address
        );
        // Both down by their checks: nothing to try.
        pool.backends()[0].set_healthy(false);
        assert!(pool.pick(0, Some(first)).is_none());
    }

    #[test]
    fn a_lone_backend_is_retried_and_never_suspect() {
        let (c, p) = pools("backends = [\"192.0.2.1:80\"]\n");
        let pool = p.get(c.hosts[0].routes[0].split[0].pool);
        let only = pool.backends()[0].clone();
        pool.report(&only, Outcome::Unreachable);
        assert_eq!(only.standing(now_ms()), Standing::Available);
        assert_eq!(
            pool.pick(0, Some(only.address)).unwrap().address,
            only.address
        );
    }

    const ROLLING: &str = "backends = [\"192.0.2.1:80\", \"192.0.2.2:80\"]\n[pool.p.outlier]\nconsecutive_failures = 2\nbase_ejection_ms = 60000\n";

    #[test]
    fn rolling_restart_turns_to_the_ejected_backend_and_takes_it_back() {
        let (c, p) = pools(ROLLING);
        let pool = p.get(c.hosts[0].routes[0].split[0].pool);
        let (one, two) = (pool.backends()[0].clone(), pool.backends()[1].clone());
        pool.report(&one, Outcome::Unreachable);
        pool.report(&one, Outcome::Unreachable);
        assert!(one.is_ejected(now_ms()), "web-1 ejected");
        // web-1's suspect mark lapses (it is back) but the ejection stands: web-2 takes all.
        one.record(Outcome::Success);
        assert!((0..10).all(|_| pool.pick(0, None).unwrap().address == two.address));
        assert!(
            !pool.in_panic(now_ms()),
            "1 of 2 available is not below 50%"
        );
        // web-2 dies; max_ejection_percent keeps it in, but it is a suspect now.
        pool.report(&two, Outcome::Unreachable);
        assert!(!two.is_ejected(now_ms()));
        assert!(pool.in_panic(now_ms()));
        assert_eq!(
            pool.pick(0, Some(two.address)).unwrap().address,
            one.address,
            "the retry"
        );
        assert_eq!(
            pool.pick(0, None).unwrap().address,
            one.address,
            "the next request"
        );
        assert_eq!(pool.panics(), 1);
        // web-1 answers: back at once, and the pool out of panic.
        pool.report(&one, Outcome::Success);
        assert!(!one.is_ejected(now_ms()));
        assert!(!pool.in_panic(now_ms()));
        assert!((0..10).all(|_| pool.pick(0, None).unwrap().address == one.address));
        assert_eq!(pool.panics(), 1, "counted once");
    }

    #[test]
    fn panic_balances_over_ejected_backends_and_zero_disables_it() {
        let four =
            "backends = [\"192.0.2.1:80\", \"192.0.2.2:80\", \"192.0.2.3:80\", \"192.0.2.4:80\"]\n";
        for (threshold, want) in [(50, 4), (0, 1)] {
            let (c, p) = pools(&format!("{four}panic_threshold_percent = {threshold}\n"));
            let pool = p.get(c.hosts[0].routes[0].split[0].pool);
            let d = std::time::Duration::from_secs(60);
            for b in &pool.backends()[1..] {
                b.eject(now_ms(), d, d);
            }
            let seen: std::collections::HashSet<SocketAddr> = (0..40)
                .map(|_| pool.pick(0, None).unwrap().address)
                .collect();
            assert_eq!(seen.len(), want, "threshold {threshold}: {seen:?}");
        }
    }

    #[test]
    fn a_pool_whose_backends_all_refused_is_not_tried_again_at_once() {
        let (c, p) = pools(ROLLING);
        let pool = p.get(c.hosts[0].routes[0].split[0].pool);
        let (one, two) = (pool.backends()[0].clone(), pool.backends()[1].clone());
        pool.report(&one, Outcome::Unreachable);
        assert_eq!(
            pool.pick(0, Some(one.address)).unwrap().address,
            two.address
        );
        pool.report(&two, Outcome::Unreachable);
        assert!(pool.pick(0, Some(two.address)).is_none());
        assert!(pool.pick(0, None).is_none());
    }

    #[test]
    fn with_checks_a_stale_down_verdict_is_the_last_resort() {
        let (c, p) = pools("backends = [\"192.0.2.1:80\", \"192.0.2.2:80\"]\n[pool.p.outlier]\nconsecutive_failures = 0\n");
        let pool = p.get(c.hosts[0].routes[0].split[0].pool);
        let (one, two) = (pool.backends()[0].clone(), pool.backends()[1].clone());
        one.set_healthy(false);
        pool.report(&two, Outcome::Unreachable);
        assert_eq!(
            pool.pick(0, Some(two.address)).unwrap().address,
            one.address
        );
        assert_eq!(pool.pick(0, None).unwrap().address, one.address);
    }

    #[test]
    fn least_request_prefers_the_idle_backend() {
        let (c, p) =
            pools("backends = [\"192.0.2.1:80\", \"192.0.2.2:80\"]\nbalance = \"least_request\"\n");
        let pool = p.get(c.hosts[0].routes[0].split[0].pool);
        let busy = &pool.backends()[0];
        let _g: Vec<_> = (0..5).map(|_| busy.begin()).collect();
        let picks = (0..200)
            .filter(|_| pool.pick(0, None).unwrap().address == busy.address)
            .count();
        // Two distinct draws out of two: the idle one always wins.
        assert_eq!(picks, 0);
    }

    #[test]
    fn maglev_keeps_a_key_on_its_backend() {
        let (c, p) = pools("backends = [\"192.0.2.1:80\", \"192.0.2.2:80\", \"192.0.2.3:80\"]\nbalance = \"maglev\"\nhash_key = \"header:x-user\"\n");
        let pool = p.get(c.hosts[0].routes[0].split[0].pool);
        let headers = [httparse::Header {
            name: "X-User",
            value: b"alice",
        }];
        let inp = HashInput {
            client_ip: "192.0.2.10".parse().unwrap(),
            headers: &headers,
        };
        let first = pool.pick(pool.hash(&inp), None).unwrap().address;
        assert!((0..20).all(|_| pool.pick(pool.hash(&inp), None).unwrap().address == first));
        let spread: std::collections::HashSet<SocketAddr> = (0..50)
            .map(|i| {
                let v = format!("user{i}");
                let headers = [httparse::Header {
                    name: "x-user",
                    value: v.as_bytes(),
                }];
                pool.pick(
                    pool.hash(&HashInput {
                        client_ip: "192.0.2.10".parse().unwrap(),
                        headers: &headers,
                    }),
                    None,
                )
                .unwrap()
                .address
            })
            .collect();
        assert_eq!(spread.len(), 3);
    }

    #[test]
    fn outlier_ejection_is_capped_by_percent() {
        let (c, p) = pools(
            "backends = [\"192.0.2.1:80\", \"192.0.2.2:80\"]\n[pool.p.outlier]\nconsecutive_failures = 2\nmax_ejection_percent = 50\n",
        );
        let pool = p.get(c.hosts[0].routes[0].split[0].pool);
        let (a, b) = (&pool.backends()[0], &pool.backends()[1]);
        pool.report(a, Outcome::Failure);
        assert!(a.is_available(now_ms()));
        pool.report(a, Outcome::Failure);
        assert!(!a.is_available(now_ms()), "ejected after 2");
        pool.report(b, Outcome::Failure);
        pool.report(b, Outcome::Failure);
        assert!(b.is_available(now_ms()), "50% of 2 = 1 may be ejected");
    }

    #[test]
    fn a_rebuild_keeps_the_state_of_backends_that_stay() {
        let (c, p) = pools("backends = [\"192.0.2.1:80\", \"192.0.2.2:80\"]\n");
        let pool = p.get(c.hosts[0].routes[0].split[0].pool);
        pool.backends()[0].eject(
            now_ms(),
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(60),
        );
        let text = "[[listener]]\nbind = \"0.0.0.0:80\"\n[[host]]\nnames = [\"a.test\"]\n[[host.route]]\nprefix = \"/\"\npool = \"p\"\n[pool.p]\nbackends = [\"192.0.2.1:80\", \"192.0.2.3:80\"]\n";
        let c2 = crate::config::parse(std::path::Path::new("t.toml"), text).unwrap();
        let p2 = Pools::rebuild(&c2, &p);
        let pool2 = p2.get(c2.hosts[0].routes[0].split[0].pool);
        assert!(Arc::ptr_eq(&pool.backends()[0], &pool2.backends()[0]));
        assert!(
            pool2.backends()[0].is_ejected(now_ms()),
            "the ejection carries over"
        );
        assert!(
            pool2.backends()[1].is_available(now_ms()),
            "a new backend starts fresh"
        );
    }

    #[test]
    fn a_pool_by_name_with_no_address_yet_picks_nothing() {
        for balance in [
            "round_robin",
            "least_request",
            "maglev\"\nhash_key = \"client_ip",
        ] {
            let (c, p) = pools(&format!(
                "backends = [\"web.test:80\"]\nbalance = \"{balance}\"\n"
            ));
            let pool = p.get(c.hosts[0].routes[0].split[0].pool);
            assert!(pool.backends().is_empty());
            assert!(pool.pick(0, None).is_none(), "{balance}");
            assert!(!pool.in_panic(now_ms()));
        }
    }

    /// `pool_toml` with `web.test:80` resolved to `addrs` (192.0.2.X for each X).
    fn by_name(pool_toml: &str, addrs: &[u8]) -> Config {
        use crate::resolve::{answer, expand, Answers};
        let text = format!(
            "[[listener]]\nbind = \"0.0.0.0:80\"\n[[host]]\nnames = [\"a.test\"]\n[[host.route]]\nprefix = \"/\"\npool = \"p\"\n[pool.p]\nbackends = [\"web.test:80\"]\n{pool_toml}"
        );
        let config = crate::config::parse(Path::new("t.toml"), &text).unwrap();
        let set = addrs
            .iter()
            .map(|x| answer::Endpoint {
                addr: format!("192.0.2.{x}:80").parse().unwrap(),
                name: "web.test".into(),
                weight: 1,
            })
            .collect();
        let mut answers = Answers::default();
        answers
            .sets
            .insert(config.lookups().remove(0), answer::normalize(set));
        expand(&config, &answers)
    }

    #[test]
    fn an_address_a_name_adds_waits_for_its_checks_and_one_it_drops_is_gone() {
        let health = "[pool.p.health]\ntype = \"tcp\"\ninterval_ms = 60000\n";
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let first = Pools::build(&by_name(health, &[1, 2]));
            let c2 = by_name(health, &[2, 3]);
            let next = Pools::rebuild(&c2, &first);
            let (old, new) = (&first.pools[0], &next.pools[0]);
            assert!(Arc::ptr_eq(&old.backends[1], &new.backends[0]), ".2 stays");
            assert!(
                new.backends[0].is_healthy(),
                "a backend that stays keeps its state"
            );
            assert_eq!(new.backends[1].address.to_string(), "192.0.2.3:80");
            assert!(
                !new.backends[1].is_healthy(),
                "a new address waits for its checks"
            );
            assert_eq!(new.backends.len(), 2, ".1 is gone");
        });
        // Without checks a new address takes traffic at once.
        let next = Pools::rebuild(&by_name("", &[2, 3]), &Pools::build(&by_name("", &[2])));
        assert!(next.pools[0].backends.iter().all(|b| b.is_healthy()));
    }

    #[test]
    fn maglev_keeps_the_keys_of_backends_that_stay_when_a_name_adds_one() {
        let maglev = "balance = \"maglev\"\nhash_key = \"client_ip\"\n";
        let before = Pools::build(&by_name(maglev, &[1, 2, 3, 4]));
        let after = Pools::rebuild(&by_name(maglev, &[1, 2, 3, 4, 5]), &before);
        let (a, b) = (&before.pools[0], &after.pools[0]);
        let (mut stayed, mut moved) = (0, 0);
        for key in 0..2000u64 {
            let h = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let was = a.pick(h, None).unwrap().address;
            let is = b.pick(h, None).unwrap().address;
            if is.to_string() == "192.0.2.5:80" {
                continue;
            }
            if was == is {
                stayed += 1;
            } else {
                moved += 1;
            }
        }
        // Maglev's promise is minimal disruption, not none: a few per cent of the others move.
        assert!(
            moved * 100 <= (stayed + moved) * 5,
            "{moved} of {} moved",
            stayed + moved
        );
    }

    #[test]
    fn retry_budget_allows_three_when_quiet() {
        let (c, p) = pools("backends = [\"192.0.2.1:80\"]\n");
        let pool = p.get(c.hosts[0].routes[0].split[0].pool);
        let g: Vec<_> = (0..3)
            .map(|_| p.try_begin_retry(pool).expect("within budget"))
            .collect();
        assert!(p.try_begin_retry(pool).is_none());
        drop(g);
        assert!(p.try_begin_retry(pool).is_some());
    }
}
