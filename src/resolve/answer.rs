//! What one name's answers do to its backends: pure, driven by outcomes and the time.
//!
//! Invariants: a set is kept sorted and without duplicates, so an answer that only changed its
//! order compares equal and changes nothing (no pool rebuild, no Maglev table churn); only an
//! authoritative answer (records, or NXDOMAIN / no records) replaces the set; a failure
//! (SERVFAIL, timeout, unreachable server) keeps the last good set until the grace period
//! since the first failure in a row has passed; the next query is never sooner than the TTL
//! floor and never later than the ceiling.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::ResolverSettings;

/// One resolved backend: its address, the name it came from (the SRV target for an SRV
/// lookup) and its weight from DNS (1 for A/AAAA; the SRV weight, at least 1).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub name: Arc<str>,
    pub weight: u32,
}

/// What a query round for one name came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Records (in any order, duplicates allowed) and the smallest TTL among them.
    Records {
        endpoints: Vec<Endpoint>,
        ttl: Duration,
    },
    /// NXDOMAIN or an answer without records: the name has no backends.
    Empty,
    /// No authoritative answer; why.
    Failed(String),
}

/// What a step decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The set changed: the pools must be rebuilt.
    pub changed: bool,
    /// When to ask again.
    pub next: Duration,
    /// The grace period ran out on this step and the set was emptied.
    pub expired: bool,
}

/// One name's current set and failure streak.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracker {
    /// `None` until the first authoritative answer.
    set: Option<Vec<Endpoint>>,
    /// Time (since any fixed origin) of the first failure of the current streak.
    failing_since: Option<Duration>,
}

impl Tracker {
    /// A tracker that starts from a set already known (a reload keeps the answers of names
    /// that stay).
    pub fn seeded(set: Vec<Endpoint>) -> Tracker {
        Tracker {
            set: Some(normalize(set)),
            failing_since: None,
        }
    }

    /// The set in force: empty until the name first resolved.
    pub fn set(&self) -> &[Endpoint] {
        self.set.as_deref().unwrap_or(&[])
    }

    /// Whether an authoritative answer was ever had.
    pub fn resolved(&self) -> bool {
        self.set.is_some()
    }

    /// Apply the outcome of a query round made at `now`.
    pub fn step(&mut self, outcome: Outcome, now: Duration, s: &ResolverSettings) -> Step {
        let clamp = |ttl: Duration| ttl.clamp(s.ttl_floor, s.ttl_ceiling);
        let (new, next) = match outcome {
            Outcome::Records { endpoints, ttl } => (normalize(endpoints), clamp(ttl)),
            // The negative TTL is not asked for: an empty name is polled as often as the floor
            // allows, so the pool fills soon after the name appears.
            Outcome::Empty => (Vec::new(), s.ttl_floor),
            Outcome::Failed(_) => {
                let since = *self.failing_since.get_or_insert(now);
                let expired = now.saturating_sub(since) >= s.grace && !self.set().is_empty();
                if expired {
                    self.set = Some(Vec::new());
                }
                return Step {
                    changed: expired,
                    next: s.ttl_floor,
                    expired,
                };
            }
        };
        self.failing_since = None;
        let changed = self.set.as_ref() != Some(&new);
        self.set = Some(new);
        Step {
            changed,
            next,
            expired: false,
        }
    }
}

/// Sorted by address, one endpoint per address (the first name that gave it).
pub fn normalize(mut set: Vec<Endpoint>) -> Vec<Endpoint> {
    set.sort();
    set.dedup_by(|a, b| a.addr == b.addr);
    set
}

/// Addresses in `new` and not in `old`, and in `old` and not in `new` (both normalized).
pub fn diff(old: &[Endpoint], new: &[Endpoint]) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let has = |set: &[Endpoint], a: SocketAddr| set.binary_search_by(|e| e.addr.cmp(&a)).is_ok();
    let added = new
        .iter()
        .map(|e| e.addr)
        .filter(|&a| !has(old, a))
        .collect();
    let removed = old
        .iter()
        .map(|e| e.addr)
        .filter(|&a| !has(new, a))
        .collect();
    (added, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(a: &str) -> Endpoint {
        Endpoint {
            addr: a.parse().unwrap(),
            name: "web.test".into(),
            weight: 1,
        }
    }

    fn records(addrs: &[&str], ttl_s: u64) -> Outcome {
        Outcome::Records {
            endpoints: addrs.iter().map(|a| ep(a)).collect(),
            ttl: Duration::from_secs(ttl_s),
        }
    }

    fn settings() -> ResolverSettings {
        ResolverSettings {
            ttl_floor: Duration::from_secs(1),
            ttl_ceiling: Duration::from_secs(30),
            grace: Duration::from_secs(10),
            ..ResolverSettings::default()
        }
    }

    const A: &str = "192.0.2.1:80";
    const B: &str = "192.0.2.2:80";
    const C: &str = "192.0.2.3:80";

    #[test]
    fn a_new_order_or_a_duplicate_changes_nothing() {
        let s = settings();
        let mut t = Tracker::default();
        let t0 = Duration::ZERO;
        assert!(t.step(records(&[A, B], 5), t0, &s).changed);
        assert!(!t.step(records(&[B, A], 5), t0, &s).changed);
        assert!(!t.step(records(&[B, A, B], 5), t0, &s).changed);
        assert_eq!(t.set().len(), 2);
        assert!(t.step(records(&[B, C], 5), t0, &s).changed);
    }

    #[test]
    fn the_ttl_is_clamped_to_floor_and_ceiling() {
        let s = settings();
        let mut t = Tracker::default();
        let next = |t: &mut Tracker, ttl| t.step(records(&[A], ttl), Duration::ZERO, &s).next;
        assert_eq!(
            next(&mut t, 0),
            Duration::from_secs(1),
            "TTL 0 is the floor"
        );
        assert_eq!(next(&mut t, 5), Duration::from_secs(5));
        assert_eq!(next(&mut t, 86_400), Duration::from_secs(30));
    }

    #[test]
    fn failures_keep_the_last_good_set_for_the_grace_period() {
        let s = settings();
        let mut t = Tracker::default();
        let at = Duration::from_secs;
        t.step(records(&[A, B], 5), at(0), &s);
        let fail = || Outcome::Failed("SERVFAIL".into());
        for now in [1, 5, 10] {
            let step = t.step(fail(), at(now), &s);
            assert!(!step.changed, "at {now} s");
            assert_eq!(step.next, s.ttl_floor, "failures are retried at the floor");
            assert_eq!(t.set().len(), 2);
        }
        // 10 s after the first failure of the streak (at 1 s): dropped.
        let step = t.step(fail(), at(11), &s);
        assert!(step.changed && step.expired);
        assert!(t.set().is_empty());
        assert!(!t.step(fail(), at(12), &s).changed, "dropped once");
    }

    #[test]
    fn an_answer_ends_the_failure_streak() {
        let s = settings();
        let mut t = Tracker::default();
        let at = Duration::from_secs;
        t.step(records(&[A], 5), at(0), &s);
        t.step(Outcome::Failed("timeout".into()), at(1), &s);
        t.step(records(&[A], 5), at(9), &s);
        // A new streak starts at 10 s: still inside its grace at 19 s.
        t.step(Outcome::Failed("timeout".into()), at(10), &s);
        assert!(
            !t.step(Outcome::Failed("timeout".into()), at(19), &s)
                .changed
        );
        assert_eq!(t.set().len(), 1);
    }

    #[test]
    fn nxdomain_empties_and_a_failure_before_any_answer_leaves_it_unresolved() {
        let s = settings();
        let mut t = Tracker::default();
        let t0 = Duration::ZERO;
        assert!(!t.step(Outcome::Failed("timeout".into()), t0, &s).changed);
        assert!(!t.resolved());
        t.step(records(&[A], 5), t0, &s);
        let step = t.step(Outcome::Empty, t0, &s);
        assert!(step.changed && t.set().is_empty() && t.resolved());
        assert_eq!(step.next, s.ttl_floor);
        assert!(!t.step(Outcome::Empty, t0, &s).changed);
    }

    #[test]
    fn a_seeded_tracker_keeps_its_set_on_the_same_answer() {
        let s = settings();
        let mut t = Tracker::seeded(vec![ep(B), ep(A)]);
        assert!(!t.step(records(&[A, B], 5), Duration::ZERO, &s).changed);
    }

    #[test]
    fn diff_names_the_added_and_removed_addresses() {
        let old = normalize(vec![ep(A), ep(B)]);
        let new = normalize(vec![ep(C), ep(B)]);
        let (added, removed) = diff(&old, &new);
        assert_eq!(added, vec![C.parse::<SocketAddr>().unwrap()]);
        assert_eq!(removed, vec![A.parse::<SocketAddr>().unwrap()]);
        assert_eq!(diff(&new, &new), (vec![], vec![]));
    }
}
