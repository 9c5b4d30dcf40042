//! The resolver's metrics: per looked-up name, its query rounds, failed rounds and the
//! addresses it gives now, kept across reloads and rendered with `telemetry`'s encoder.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::telemetry::metrics::{header, Esc, Registry};

/// One name's resolutions; the label is the lookup as written (`NAME:PORT` or `srv NAME`).
#[derive(Debug, Default)]
pub struct DnsStats {
    /// Query rounds that got an authoritative answer (records, NXDOMAIN or none).
    pub resolutions: AtomicU64,
    /// Rounds that got none (SERVFAIL, timeout, unreachable server): the last set stays.
    pub failures: AtomicU64,
    /// Addresses the name gives now.
    pub addresses: AtomicU64,
}

static NAMES: Registry<String, DnsStats> = Registry::new();

/// The counters of the looked-up name `label`, created on first use.
pub fn dns(label: &str) -> Arc<DnsStats> {
    NAMES.get_or(&label.to_string(), DnsStats::default)
}

/// The DNS families, when any name was looked up.
pub fn render(out: &mut String) {
    let all = NAMES.entries();
    if all.is_empty() {
        return;
    }
    type Get = fn(&DnsStats) -> &AtomicU64;
    let series: [(&str, &str, &str, Get); 3] = [
        (
            "vipgate_dns_resolutions_total",
            "counter",
            "Query rounds for a backend name that got an answer (records, NXDOMAIN or none).",
            |d| &d.resolutions,
        ),
        (
            "vipgate_dns_failures_total",
            "counter",
            "Query rounds for a backend name that got no answer (SERVFAIL, timeout, unreachable server); the last good addresses stay.",
            |d| &d.failures,
        ),
        (
            "vipgate_dns_addresses",
            "gauge",
            "Addresses a backend name gives now.",
            |d| &d.addresses,
        ),
    ];
    for (name, kind, help, get) in series {
        header(out, name, kind, help);
        for (label, d) in &all {
            let _ = writeln!(
                out,
                "{name}{{name=\"{}\"}} {}",
                Esc(label),
                get(d).load(Ordering::Relaxed)
            );
        }
    }
}
