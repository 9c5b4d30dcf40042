//! The VIPs' metrics: whether this node holds each one, and its ARP counters, kept across
//! announcer restarts (so they only grow) and rendered with `telemetry`'s encoder.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::Config;
use crate::telemetry::metrics::{header, Registry};

/// One VIP's state: whether this node holds it now, and its ARP counters (kept across
/// announcer restarts, so they only grow).
#[derive(Debug, Default)]
pub struct VipStats {
    pub owned: AtomicBool,
    pub arp: Arc<ArpStats>,
}

/// Counters of one announced VIP, shared with the ARP threads; read them with
/// [`ArpStats::snapshot`]. They survive [`Announcer::stop`](super::Announcer::stop).
#[derive(Debug, Default)]
pub struct ArpStats {
    pub(super) replies_sent: AtomicU64,
    pub(super) garps_sent: AtomicU64,
    pub(super) requests_seen: AtomicU64,
    pub(super) conflicts_seen: AtomicU64,
    pub(super) send_errors: AtomicU64,
}

/// One reading of [`ArpStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArpStatsSnapshot {
    /// ARP replies for the VIP sent.
    pub replies_sent: u64,
    /// Gratuitous ARPs sent.
    pub garps_sent: u64,
    /// ARP requests for the VIP from other stations, answered or not.
    pub requests_seen: u64,
    /// Frames from another station using the VIP as its sender address.
    pub conflicts_seen: u64,
    /// Replies or GARPs the socket refused.
    pub send_errors: u64,
}

impl ArpStats {
    pub fn snapshot(&self) -> ArpStatsSnapshot {
        ArpStatsSnapshot {
            replies_sent: self.replies_sent.load(Ordering::Relaxed),
            garps_sent: self.garps_sent.load(Ordering::Relaxed),
            requests_seen: self.requests_seen.load(Ordering::Relaxed),
            conflicts_seen: self.conflicts_seen.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
        }
    }
}

static VIPS: Registry<IpAddr, VipStats> = Registry::new();

/// The counters of `vip`, created on first use.
pub fn vip(vip: IpAddr) -> Arc<VipStats> {
    VIPS.get_or(&vip, VipStats::default)
}

pub fn render(out: &mut String, config: &Config) {
    let stats: Vec<(IpAddr, Arc<VipStats>)> = config
        .vips
        .iter()
        .map(|v| (v.address, vip(v.address)))
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
    type Get = fn(&ArpStatsSnapshot) -> u64;
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
