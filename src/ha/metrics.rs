//! The VRRP election's metrics: each virtual router's state and transitions, the priority
//! advertised and the `[[vrrp.track]]` conditions, rendered with `telemetry`'s encoder and read
//! for the systemd status line.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use super::machine::State as VrrpState;
use crate::config::Config;
use crate::telemetry::metrics::{header, lock, Esc};

/// What the election last reported; see [`vrrp`].
#[derive(Debug)]
pub struct Vrrp {
    /// 0 without `[vrrp]`.
    vrid: AtomicU32,
    /// The state and transitions of the IPv4 (index 0) and IPv6 (1) virtual routers: one per
    /// family of the VIPs, each with its own election.
    families: [VrrpFamily; 2],
    /// The priority advertised now (lowered by tracking; 0 in fault).
    priority: AtomicU32,
    /// Each `[[vrrp.track]]` condition's label and whether it failed.
    tracks: Mutex<Vec<(String, bool)>>,
}

static VRRP: Vrrp = Vrrp {
    vrid: AtomicU32::new(0),
    families: [const {
        VrrpFamily {
            state: AtomicU8::new(0),
            transitions: AtomicU64::new(0),
        }
    }; 2],
    priority: AtomicU32::new(0),
    tracks: Mutex::new(Vec::new()),
};

/// The election's counters (process-wide: they outlive a reload's new router).
pub fn vrrp() -> &'static Vrrp {
    &VRRP
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

impl Vrrp {
    /// The election of `vrid` for IPv6 VIPs (`v6`) or IPv4 ones entered `state`
    /// (`transition`: from another state).
    pub fn state(&self, vrid: u8, v6: bool, state: VrrpState, transition: bool) {
        self.vrid.store(u32::from(vrid), Ordering::Relaxed);
        let family = &self.families[usize::from(v6)];
        family.state.store(vrrp_code(state), Ordering::Relaxed);
        if transition {
            family.transitions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The election advertises `priority` now (0 in fault), with `tracks` (label, failed).
    pub fn tracking(&self, priority: u8, tracks: Vec<(String, bool)>) {
        self.priority.store(u32::from(priority), Ordering::Relaxed);
        *lock(&self.tracks) = tracks;
    }

    /// The VRRP state's name (`backup`, `master`, …) and the priority advertised now, for the
    /// status line: with VIPs of both families, the IPv4 router's (the line has room for one).
    pub fn now(&self) -> (&'static str, u32) {
        let code = self
            .families
            .iter()
            .map(|f| f.state.load(Ordering::Relaxed))
            .find(|&c| c != 0)
            .unwrap_or(0);
        let name = VRRP_STATES
            .iter()
            .find(|(c, _)| *c == code)
            .map_or("initialize", |(_, n)| n);
        (name, self.priority.load(Ordering::Relaxed))
    }

    /// The virtual router of IPv6 VIPs (`v6`) or IPv4 ones: its state's name (`None` before
    /// it started) and its changes of state since the process started.
    pub fn family(&self, v6: bool) -> (Option<&'static str>, u64) {
        let f = &self.families[usize::from(v6)];
        let code = f.state.load(Ordering::Relaxed);
        let name = VRRP_STATES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, n)| *n);
        (name, f.transitions.load(Ordering::Relaxed))
    }

    /// Each `[[vrrp.track]]` condition's label and whether it failed.
    pub fn tracks(&self) -> Vec<(String, bool)> {
        lock(&self.tracks).clone()
    }

    /// The failed `[[vrrp.track]]` conditions' labels.
    pub fn tracks_failed(&self) -> Vec<String> {
        lock(&self.tracks)
            .iter()
            .filter(|(_, f)| *f)
            .map(|(l, _)| l.clone())
            .collect()
    }
}

/// The VRRP families, for the virtual routers `config` runs (none without `[vrrp]`).
pub fn render(out: &mut String, config: &Config) {
    let p = vrrp();
    header(
        out,
        "vipgate_vrrp_state",
        "gauge",
        "1 for the state the VRRP election is in (initialize, backup, master, fault).",
    );
    let vrid = p.vrid.load(Ordering::Relaxed);
    if let Some(v) = &config.vrrp {
        // One virtual router per family of the configured VIPs (see ha::router).
        let families: Vec<(bool, &str)> = [(false, "ipv4"), (true, "ipv6")]
            .into_iter()
            .filter(|(v6, _)| config.vips.iter().any(|a| a.address.is_ipv6() == *v6))
            .collect();
        for &(v6, family) in &families {
            let code = match p.families[usize::from(v6)].state.load(Ordering::Relaxed) {
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
            out,
            "vipgate_vrrp_transitions_total",
            "counter",
            "Changes of VRRP state since the process started.",
        );
        for &(v6, family) in &families {
            let _ = writeln!(
                out,
                "vipgate_vrrp_transitions_total{{vrid=\"{}\",family=\"{family}\"}} {}",
                v.vrid.get(),
                p.families[usize::from(v6)]
                    .transitions
                    .load(Ordering::Relaxed)
            );
        }
        header(
            out,
            "vipgate_vrrp_priority",
            "gauge",
            "The priority this node advertises now: the configured one lowered by failed [[vrrp.track]] conditions; 0 in fault.",
        );
        let _ = writeln!(
            out,
            "vipgate_vrrp_priority{{vrid=\"{}\",configured=\"{}\"}} {}",
            v.vrid.get(),
            v.priority.get(),
            p.priority.load(Ordering::Relaxed)
        );
        if !v.track.is_empty() {
            header(
                out,
                "vipgate_vrrp_track_failed",
                "gauge",
                "1 while a [[vrrp.track]] condition holds (pool:NAME has no available backend; listeners: one failed).",
            );
            let states = lock(&p.tracks);
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
}
