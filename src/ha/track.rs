//! Health tracking (`[[vrrp.track]]`): turning the conditions this node watches into the
//! priority its election runs with.
//!
//! Owns: what a set of conditions makes of the configured priority ([`effective`], pure: the
//! failed weights are subtracted, never below 1; any failed condition without a weight is a
//! fault), and each condition's last state with the log line when it changes ([`Tracked`]).
//! Does not own: how a condition is checked — the caller supplies a [`Probe`] (the daemon
//! reads the pools' health and the listeners' state, without locks on the request path) —
//! nor what the election does with the result (`machine`).
//!
//! The router polls the probe once per advert interval, so a change is advertised at the
//! latest one interval after the health checks decided it.

use std::num::NonZeroU8;
use std::sync::Arc;

use tracing::{info, warn};

use super::machine::Effective;
use crate::config::{Track, TrackAction, TrackCondition};

/// Whether a tracked condition holds now (true: failed). Called from the election task once
/// per advert interval; it must not block.
pub type Probe = Arc<dyn Fn(&TrackCondition) -> bool + Send + Sync>;

/// The priority `base` becomes while the conditions in `tracks` marked in `failed` hold.
pub fn effective(base: NonZeroU8, tracks: &[Track], failed: &[bool]) -> Effective {
    let mut lowered = 0u32;
    for (track, _) in tracks.iter().zip(failed).filter(|(_, f)| **f) {
        match track.action {
            TrackAction::Fault => return Effective::Fault,
            TrackAction::Lower(w) => lowered += u32::from(w.get()),
        }
    }
    let p = u32::from(base.get()).saturating_sub(lowered).max(1);
    Effective::Priority(
        u8::try_from(p)
            .ok()
            .and_then(NonZeroU8::new)
            .unwrap_or(NonZeroU8::MIN),
    )
}

/// The tracked conditions and their last seen states.
pub struct Tracked {
    tracks: Vec<Track>,
    failed: Vec<bool>,
    probe: Probe,
}

impl Tracked {
    /// Nothing is failed until the first [`Tracked::poll`].
    pub fn new(tracks: Vec<Track>, probe: Probe) -> Tracked {
        let failed = vec![false; tracks.len()];
        Tracked {
            tracks,
            failed,
            probe,
        }
    }

    /// Replace the tracked conditions (a reload): kept conditions keep their state until the
    /// next poll.
    pub fn set_tracks(&mut self, tracks: Vec<Track>) {
        self.failed = tracks
            .iter()
            .map(|t| {
                self.tracks
                    .iter()
                    .zip(&self.failed)
                    .any(|(old, f)| old.condition == t.condition && *f)
            })
            .collect();
        self.tracks = tracks;
    }

    /// Checks every condition; logs each that changed. Returns whether any did.
    pub fn poll(&mut self) -> bool {
        let mut changed = false;
        for (track, failed) in self.tracks.iter().zip(self.failed.iter_mut()) {
            let now = (self.probe)(&track.condition);
            if now == *failed {
                continue;
            }
            *failed = now;
            changed = true;
            let action = match track.action {
                TrackAction::Fault => "fault".to_owned(),
                TrackAction::Lower(w) => format!("priority -{w}"),
            };
            if now {
                warn!(track = %track.condition.label(), %action, "tracked condition failed");
            } else {
                info!(track = %track.condition.label(), %action, "tracked condition cleared");
            }
        }
        changed
    }

    /// The priority `base` becomes with the states last polled.
    pub fn effective(&self, base: NonZeroU8) -> Effective {
        effective(base, &self.tracks, &self.failed)
    }

    /// The labels of the conditions that failed at the last poll, in configuration order.
    pub fn failed(&self) -> Vec<String> {
        self.tracks
            .iter()
            .zip(&self.failed)
            .filter(|(_, f)| **f)
            .map(|(t, _)| t.condition.label())
            .collect()
    }

    /// Each condition's label and whether it failed, in configuration order.
    pub fn states(&self) -> Vec<(String, bool)> {
        self.tracks
            .iter()
            .zip(&self.failed)
            .map(|(t, f)| (t.condition.label(), *f))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn nz(n: u8) -> NonZeroU8 {
        NonZeroU8::new(n).unwrap()
    }

    fn pool(name: &str, action: TrackAction) -> Track {
        Track {
            condition: TrackCondition::PoolDown(name.to_owned()),
            action,
        }
    }

    #[test]
    fn effective_priority_table() {
        let tracks = [
            pool("web", TrackAction::Lower(nz(50))),
            pool("api", TrackAction::Lower(nz(30))),
            Track {
                condition: TrackCondition::ListenerFailed,
                action: TrackAction::Fault,
            },
        ];
        // (base, failed, expected)
        let cases: &[(u8, [bool; 3], Effective)] = &[
            (150, [false, false, false], Effective::Priority(nz(150))),
            (150, [true, false, false], Effective::Priority(nz(100))),
            (150, [true, true, false], Effective::Priority(nz(70))),
            (60, [true, true, false], Effective::Priority(nz(1))),
            (1, [false, true, false], Effective::Priority(nz(1))),
            (150, [false, false, true], Effective::Fault),
            (150, [true, true, true], Effective::Fault),
        ];
        for (base, failed, expected) in cases {
            assert_eq!(
                effective(nz(*base), &tracks, failed),
                *expected,
                "{base} {failed:?}"
            );
        }
        assert_eq!(effective(nz(150), &[], &[]), Effective::Priority(nz(150)));
    }

    #[test]
    fn poll_reports_changes_and_reload_keeps_the_state_of_kept_conditions() {
        let down = Arc::new(AtomicBool::new(false));
        let d = down.clone();
        let probe: Probe = Arc::new(move |c| {
            matches!(c, TrackCondition::PoolDown(n) if n == "web") && d.load(Ordering::Relaxed)
        });
        let mut t = Tracked::new(vec![pool("web", TrackAction::Lower(nz(50)))], probe);
        assert!(!t.poll(), "nothing failed, nothing changed");
        down.store(true, Ordering::Relaxed);
        assert!(t.poll());
        assert!(!t.poll(), "a change is reported once");
        assert_eq!(t.effective(nz(150)), Effective::Priority(nz(100)));
        assert_eq!(t.states(), vec![("pool:web".to_owned(), true)]);
        assert_eq!(t.failed(), vec!["pool:web".to_owned()]);
        // Reload: the same pool as a fault keeps its failed state; a new one starts clear.
        t.set_tracks(vec![
            pool("api", TrackAction::Lower(nz(10))),
            pool("web", TrackAction::Fault),
        ]);
        assert_eq!(t.effective(nz(150)), Effective::Fault);
        assert!(!t.poll());
        down.store(false, Ordering::Relaxed);
        assert!(t.poll());
        assert_eq!(t.effective(nz(150)), Effective::Priority(nz(150)));
    }
}
