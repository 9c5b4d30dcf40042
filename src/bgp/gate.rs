//! Whether this node announces its BGP VIPs, and what the kernel table must gain or lose for
//! that: pure, driven by one check result at a time.
//!
//! Owns: the rise/fall hysteresis ([`Gate`]: `rise` good checks in a row to announce, `fall`
//! failed ones in a row to withdraw, so a backend flapping once per check does not flap the
//! route), why the VIPs are or are not announced ([`Why`]), and the difference between the
//! wanted and the present announcements ([`diff`]). Does not own how a condition is checked
//! (`daemon::track`'s probe) nor the table itself (`table`).

use std::collections::BTreeSet;
use std::net::IpAddr;

/// Why the VIPs are announced or not, as `/metrics`, `/readyz` and the status line say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Every tracked condition is fine and has been for `rise` checks.
    Healthy,
    /// Not yet `rise` good checks in a row (at start-up, or after a failure cleared).
    Rising,
    /// A tracked condition failed `fall` checks in a row (it may have cleared since, and the
    /// node is rising again: then [`Why::Rising`]).
    Tracking,
    /// The daemon is stopping: withdrawn first, then drained.
    Stopping,
}

impl Why {
    pub const ALL: [Why; 4] = [Why::Healthy, Why::Rising, Why::Tracking, Why::Stopping];

    pub fn as_str(self) -> &'static str {
        match self {
            Why::Healthy => "healthy",
            Why::Rising => "rising",
            Why::Tracking => "tracking",
            Why::Stopping => "stopping",
        }
    }

    pub fn announced(self) -> bool {
        self == Why::Healthy
    }
}

/// The rise/fall hysteresis. Starts withdrawn: a starting node announces only after `rise`
/// good checks (its listeners are already up then: the daemon binds them first).
#[derive(Debug, Clone)]
pub struct Gate {
    rise: u32,
    fall: u32,
    /// Consecutive checks that disagree with the current state.
    run: u32,
    why: Why,
}

impl Gate {
    /// `rise` and `fall` are at least 1 (validation sees to it; 0 is read as 1).
    pub fn new(rise: u32, fall: u32) -> Gate {
        Gate {
            rise: rise.max(1),
            fall: fall.max(1),
            run: 0,
            why: Why::Rising,
        }
    }

    pub fn why(&self) -> Why {
        self.why
    }

    /// One check: `ok` when no tracked condition holds. Returns whether the announcement
    /// changed (announced ⇄ withdrawn).
    pub fn check(&mut self, ok: bool) -> bool {
        let was = self.why.announced();
        match (self.why, ok) {
            (Why::Stopping, _) => {}
            (Why::Healthy, true) => self.run = 0,
            (Why::Healthy, false) => {
                self.run += 1;
                if self.run >= self.fall {
                    self.run = 0;
                    self.why = Why::Tracking;
                }
            }
            (Why::Rising | Why::Tracking, true) => {
                self.run += 1;
                if self.run >= self.rise {
                    self.run = 0;
                    self.why = Why::Healthy;
                } else {
                    self.why = Why::Rising;
                }
            }
            // A failure while rising starts the count again; the reason says a condition holds.
            (Why::Rising | Why::Tracking, false) => {
                self.run = 0;
                self.why = Why::Tracking;
            }
        }
        was != self.why.announced()
    }

    /// New `rise` and `fall` (a reload): the state stays, the counting starts over.
    pub fn set_counts(&mut self, rise: u32, fall: u32) {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
        self.run = 0;
    }

    /// Withdraw for good (a graceful stop). Returns whether the VIPs were announced.
    pub fn stop(&mut self) -> bool {
        let was = self.why.announced();
        self.why = Why::Stopping;
        was
    }
}

/// The routes to add and to remove so that the table holds exactly `wanted`.
pub fn diff(wanted: &BTreeSet<IpAddr>, present: &BTreeSet<IpAddr>) -> (Vec<IpAddr>, Vec<IpAddr>) {
    (
        wanted.difference(present).copied().collect(),
        present.difference(wanted).copied().collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `checks` ('+' good, '-' failed) and returns the announcement after each one
    /// ('A' announced, '.' withdrawn).
    fn run(rise: u32, fall: u32, checks: &str) -> String {
        let mut g = Gate::new(rise, fall);
        checks
            .chars()
            .map(|c| {
                let before = g.why().announced();
                let changed = g.check(c == '+');
                assert_eq!(changed, before != g.why().announced());
                if g.why().announced() {
                    'A'
                } else {
                    '.'
                }
            })
            .collect()
    }

    #[test]
    fn hysteresis_table() {
        // (rise, fall, checks, announced after each)
        let cases: &[(u32, u32, &str, &str)] = &[
            (1, 1, "+-+", "A.A"),
            (3, 2, "+++", "..A"),
            (3, 2, "++-+++", ".....A"),
            (3, 2, "++-++", "....."),
            // One failed check among good ones does not withdraw with fall = 2.
            (3, 2, "+++-+-+", "..AAAAA"),
            (3, 2, "+++--", "..AA."),
            // A backend flapping every check: once announced it stays, once withdrawn it stays.
            (2, 2, "++-+-+-+", ".AAAAAAA"),
            (2, 2, "++---+-+-+", ".AA......."),
            (3, 2, "+++--+++", "..AA...A"),
        ];
        for (rise, fall, checks, expected) in cases {
            assert_eq!(
                run(*rise, *fall, checks),
                *expected,
                "rise {rise} fall {fall} {checks}"
            );
        }
    }

    #[test]
    fn reasons_follow_the_checks_and_stopping_is_final() {
        let mut g = Gate::new(2, 1);
        assert_eq!(g.why(), Why::Rising);
        g.check(false);
        assert_eq!(g.why(), Why::Tracking);
        g.check(true);
        assert_eq!(g.why(), Why::Rising, "cleared, not yet risen");
        assert!(g.check(true));
        assert_eq!(g.why(), Why::Healthy);
        assert!(g.stop(), "it was announced");
        assert_eq!(g.why(), Why::Stopping);
        assert!(!g.check(true), "nothing brings a stopping node back");
        assert_eq!(g.why(), Why::Stopping);
        assert!(!g.stop());
    }

    #[test]
    fn diff_adds_the_missing_and_removes_the_extra() {
        let set =
            |v: &[&str]| -> BTreeSet<IpAddr> { v.iter().map(|s| s.parse().unwrap()).collect() };
        let (add, del) = diff(
            &set(&["203.0.113.10", "2001:db8::10"]),
            &set(&["203.0.113.10", "203.0.113.99"]),
        );
        assert_eq!(add, ["2001:db8::10".parse::<IpAddr>().unwrap()]);
        assert_eq!(del, ["203.0.113.99".parse::<IpAddr>().unwrap()]);
        assert_eq!(diff(&set(&[]), &set(&[])), (vec![], vec![]));
    }
}
