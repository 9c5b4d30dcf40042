//! Metrics: the counter and histogram types every layer counts with, the Prometheus text
//! encoder, and the process-wide counters no layer owns (start time, reloads, the access log).
//!
//! A leaf: it knows no other layer's types. Each layer keeps its own metrics beside the state
//! they describe and renders them with the encoder here — `proxy::metrics` (requests per
//! host × route × pool, connections, backends, pools, TLS), `l2::metrics` (VIP ownership, ARP),
//! `ha::metrics` (VRRP) — and `daemon::admin` puts the exposition together. Per request,
//! [`RequestStats`] are bumped through atomics found by index: no allocation, no lock, no label
//! formatting.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

    /// The request duration histogram as it stands now.
    pub fn duration(&self) -> HistogramReading {
        self.duration.read()
    }
}

/// Process-wide counters no layer owns; see [`process`].
#[derive(Debug)]
pub struct Process {
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// 1 until a reload is refused, then 0 until one succeeds.
    pub last_reload_ok: AtomicBool,
    pub last_reload_success_unix: AtomicU64,
    pub access_log_lines: AtomicU64,
    pub access_log_dropped: AtomicU64,
    start_unix: AtomicU64,
}

static PROCESS: Process = Process {
    reloads_ok: AtomicU64::new(0),
    reloads_failed: AtomicU64::new(0),
    last_reload_ok: AtomicBool::new(true),
    last_reload_success_unix: AtomicU64::new(0),
    access_log_lines: AtomicU64::new(0),
    access_log_dropped: AtomicU64::new(0),
    start_unix: AtomicU64::new(0),
};

/// The process-wide counters.
pub fn process() -> &'static Process {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| PROCESS.start_unix.store(unix_now(), Ordering::Relaxed));
    &PROCESS
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A registry's lock. Registries hold lists of Arcs: a panic elsewhere cannot leave one
/// half-written, so a poisoned lock is taken as it is.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Values by key, made on first use and kept for the process's life, so a key's counters
/// survive reloads and restarts of what counts with them (VIPs, listeners, looked-up names).
/// Finding or adding a key takes a lock, once per key and user; counting never does.
#[derive(Debug)]
pub struct Registry<K, V> {
    entries: Mutex<Vec<(K, Arc<V>)>>,
}

impl<K: PartialEq + Clone, V> Default for Registry<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: PartialEq + Clone, V> Registry<K, V> {
    pub const fn new() -> Self {
        Registry {
            entries: Mutex::new(Vec::new()),
        }
    }

    /// The value of `key`, made by `make` if there is none yet.
    pub fn get_or(&self, key: &K, make: impl FnOnce() -> V) -> Arc<V> {
        let mut all = lock(&self.entries);
        if let Some((_, v)) = all.iter().find(|(k, _)| k == key) {
            return v.clone();
        }
        let v = Arc::new(make());
        all.push((key.clone(), v.clone()));
        v
    }

    /// The value of `key`, if it was ever made.
    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        lock(&self.entries)
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// Every entry, in the order they were made.
    pub fn entries(&self) -> Vec<(K, Arc<V>)> {
        lock(&self.entries).clone()
    }
}

impl Process {
    /// When the process started (Unix seconds).
    pub fn started_unix(&self) -> u64 {
        self.start_unix.load(Ordering::Relaxed)
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
}

/// A label value escaped for the text format (backslash, double quote, newline).
pub struct Esc<'a>(pub &'a str);

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

pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A float as the text format wants it (`+Inf`, integers without a fraction).
pub fn num(v: f64) -> String {
    if v.is_infinite() {
        "+Inf".into()
    } else {
        format!("{v}")
    }
}

pub fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramReading) {
    for (i, c) in h.cumulative.iter().enumerate() {
        let le = BUCKETS_US
            .get(i)
            .map_or(f64::INFINITY, |&us| us as f64 / 1e6);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{}\"}} {c}", num(le));
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", num(h.sum_seconds));
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count());
}

/// The process's own families: build, start time, reloads, the access log's counters.
pub fn render_process(out: &mut String) {
    let p = process();

    header(
        out,
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
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch.",
    );
    let _ = writeln!(
        out,
        "process_start_time_seconds {}",
        p.start_unix.load(Ordering::Relaxed)
    );

    header(
        out,
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
        out,
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
        out,
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
        out,
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
        out,
        "vipgate_access_log_dropped_total",
        "counter",
        "Access log lines dropped because the writer was behind (the request path never waits).",
    );
    let _ = writeln!(
        out,
        "vipgate_access_log_dropped_total {}",
        p.access_log_dropped.load(Ordering::Relaxed)
    );
}

/// The request families of `series`, labelled host, route and pool.
pub fn render_requests(out: &mut String, series: &[&Arc<RequestStats>]) {
    let labels = |s: &RequestStats| {
        format!(
            "host=\"{}\",route=\"{}\",pool=\"{}\"",
            Esc(&s.host),
            Esc(&s.route),
            Esc(&s.pool)
        )
    };
    header(
        out,
        "vipgate_http_requests_total",
        "counter",
        "HTTP requests answered, by host, route, pool and status class (empty labels: refused before routing).",
    );
    for s in series {
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
        out,
        "vipgate_http_request_duration_seconds",
        "histogram",
        "From the first byte of the request head to the end of the response.",
    );
    for s in series {
        histogram(
            out,
            "vipgate_http_request_duration_seconds",
            &labels(s),
            &s.duration.read(),
        );
    }
    header(
        out,
        "vipgate_http_upstream_duration_seconds",
        "histogram",
        "From connecting to (or reusing a connection to) the backend to its response head, for the try that answered.",
    );
    for s in series {
        histogram(
            out,
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
        header(out, name, "counter", help);
        for s in series {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(s), get(s));
        }
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
    fn a_registry_keeps_one_value_per_key() {
        let r: Registry<u8, AtomicU64> = Registry::new();
        r.get_or(&1, || AtomicU64::new(0))
            .fetch_add(5, Ordering::Relaxed);
        let again = r.get_or(&1, || AtomicU64::new(100));
        assert_eq!(again.load(Ordering::Relaxed), 5, "made once, found after");
        r.get_or(&2, AtomicU64::default);
        assert!(r.get(&3).is_none());
        let keys: Vec<u8> = r.entries().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [1, 2]);
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
