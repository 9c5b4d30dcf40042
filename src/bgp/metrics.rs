//! The BGP announcements' metrics: per VIP announced or not and why, the transitions, the
//! tracked conditions and the local BIRD's sessions as vipgate last saw them, rendered with
//! `telemetry`'s encoder and read by `/readyz` and the systemd status line.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::gate::Why;
use crate::config::Config;
use crate::telemetry::metrics::{header, lock, Esc};

/// What the speaker last published; see [`bgp_metrics`].
#[derive(Debug)]
pub struct BgpMetrics {
    /// `None` before a speaker ran.
    status: Mutex<Option<BgpStatus>>,
    /// Changes between announced and withdrawn since the process started.
    transitions: AtomicU64,
}

static BGP: BgpMetrics = BgpMetrics {
    status: Mutex::new(None),
    transitions: AtomicU64::new(0),
};

/// The announcements' state (process-wide: it outlives a reload's changes).
pub fn bgp_metrics() -> &'static BgpMetrics {
    &BGP
}

impl BgpMetrics {
    /// The speaker's view, replaced at every check and every look at BIRD.
    pub fn set(&self, status: BgpStatus) {
        *lock(&self.status) = Some(status);
    }

    pub fn now(&self) -> Option<BgpStatus> {
        lock(&self.status).clone()
    }

    pub fn transition(&self) {
        self.transitions.fetch_add(1, Ordering::Relaxed);
    }
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

/// The BGP families, for the VIPs `config` announces over BGP (none without `[bgp]`).
pub fn render(out: &mut String, config: &Config) {
    let Some(bgp) = &config.bgp else {
        return;
    };
    let p = bgp_metrics();
    let status = p.now().unwrap_or_default();
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
    for why in Why::ALL {
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
        p.transitions.load(Ordering::Relaxed)
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
