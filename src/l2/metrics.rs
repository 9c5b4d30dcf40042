//! The VIPs' metrics: whether this node holds each one, and its ARP counters, kept across
//! announcer restarts (so they only grow) and rendered with `telemetry`'s encoder.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{ArpStats, ArpStatsSnapshot};
use crate::config::Config;
use crate::telemetry::metrics::{header, Registry};

/// One VIP's state: whether this node holds it now, and its ARP counters (kept across
/// announcer restarts, so they only grow).
#[derive(Debug, Default)]
pub struct VipStats {
    pub owned: AtomicBool,
    pub arp: Arc<ArpStats>,
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
