//! Choosing among weighted items: the pure parts of balancing.
//!
//! Owns the arithmetic: a weighted cycle that hands out items in exact proportion and spread
//! out (used for weighted round robin and for route splits), the Maglev lookup table, and the
//! panic and last-resort rule ([`pick_order`]): which standings of backends a pick may take,
//! in which order. Reads no backend state: the pool counts standings and applies the order.

use std::sync::atomic::{AtomicU64, Ordering};

/// Hands out indices in proportion to their weights: over every `total` draws each index
/// appears exactly `weight` times, and the draws are spread rather than bunched (`n * stride mod
/// total` with `stride` coprime to `total` visits every slot once per cycle, in a scattered
/// order). Lock-free: one atomic counter.
#[derive(Debug)]
pub struct WeightedCycle {
    /// Cumulative weights: index i owns slots `[ends[i-1], ends[i])`.
    ends: Vec<u64>,
    total: u64,
    stride: u64,
    next: AtomicU64,
}

impl WeightedCycle {
    /// `weights` must not be empty and must not all be zero.
    pub fn new(weights: &[u32]) -> WeightedCycle {
        let mut ends = Vec::with_capacity(weights.len());
        let mut total = 0u64;
        for &w in weights {
            total += u64::from(w);
            ends.push(total);
        }
        let total = total.max(1);
        // Close to the golden ratio of the cycle, which scatters consecutive draws well.
        let mut stride = (total * 618 / 1000).max(1);
        while gcd(stride, total) != 1 {
            stride += 1;
        }
        WeightedCycle {
            ends,
            total,
            stride,
            next: AtomicU64::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The next index. Relaxed: the counter only spreads load, it orders nothing.
    pub fn next(&self) -> usize {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.index_of(n)
    }

    fn index_of(&self, n: u64) -> usize {
        let slot = ((n % self.total) * self.stride) % self.total;
        self.ends.partition_point(|&end| end <= slot)
    }
}

/// Where a backend stands for a pick, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Healthy by its checks (or unchecked), not ejected, not suspect.
    Available,
    /// Ejected by outlier detection, healthy by its checks: perhaps back already.
    Ejected,
    /// Down by its active checks: perhaps back already, if the checks lag.
    KnownDead,
    /// Refused, reset or timed out a connection within `SUSPECT_MS`: the freshest evidence.
    Suspect,
}

impl Standing {
    pub const COUNT: usize = 4;

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Whether a pool with `available` of `total` backends is in panic: below `threshold_percent`
/// available (0: never), it balances over its ejected backends as over the available ones.
pub fn in_panic(available: usize, total: usize, threshold_percent: u8) -> bool {
    available * 100 < total * usize::from(threshold_percent)
}

use Standing::{Available, Ejected, KnownDead};

/// The groups of standings a pick tries in turn, each group balanced by the pool's picker, from
/// the count of backends in each standing (indexed by [`Standing::index`]):
/// - available first; in panic, available and ejected together (Envoy's panic threshold);
/// - then ejected (a last resort rather than a 503 or 502);
/// - then the known dead, but only while some backend is not known dead: when every check
///   says down, nothing has shown otherwise, and the pool answers 503 at once;
/// - suspects never, so a pool whose backends all just refused answers 503 without trying
///   them again until their mark lapses (no retry storm against a dead pool).
pub fn pick_order(
    counts: &[usize; Standing::COUNT],
    threshold_percent: u8,
) -> &'static [&'static [Standing]] {
    let total: usize = counts.iter().sum();
    let panic = in_panic(counts[Available.index()], total, threshold_percent);
    let dead_too = counts[KnownDead.index()] < total;
    match (panic, dead_too) {
        (false, true) => &[&[Available], &[Ejected], &[KnownDead]],
        (false, false) => &[&[Available], &[Ejected]],
        (true, true) => &[&[Available, Ejected], &[KnownDead]],
        (true, false) => &[&[Available, Ejected]],
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Size of a Maglev lookup table: a prime well above 100 × the largest pool we expect, which
/// keeps each backend's share within about 1% of its weight (Maglev paper, §3.4).
pub const MAGLEV_TABLE_SIZE: usize = 65_537;

/// Build a Maglev lookup table (Eisenbud et al., NSDI 2016, §3.4) for backends named by
/// `keys` (stable identities, such as their addresses) with `weights`. Each entry is a backend
/// index. Backends take turns filling their next preferred free slot, a backend with weight w
/// taking w turns per round, so removing one backend moves only the keys that pointed at it.
pub fn maglev_table(keys: &[&[u8]], weights: &[u32], size: usize) -> Vec<u32> {
    assert_eq!(keys.len(), weights.len());
    let n = keys.len();
    let mut table = vec![u32::MAX; size];
    if n == 0 || size == 0 {
        return table;
    }
    let m = size as u64;
    let perms: Vec<(u64, u64)> = keys
        .iter()
        .map(|k| {
            let offset = fnv1a(k, 0xcbf2_9ce4_8422_2325) % m;
            let skip = fnv1a(k, 0x8422_2325_cbf2_9ce4) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; n];
    let mut filled = 0;
    let max_weight = weights.iter().copied().max().unwrap_or(1).max(1);
    'fill: loop {
        // Weighted turns: in each round backend i fills `weight` slots (scaled so the heaviest
        // takes max_weight turns).
        for turn in 0..max_weight {
            for i in 0..n {
                if weights[i] <= turn {
                    continue;
                }
                let (offset, skip) = perms[i];
                loop {
                    let c = ((offset + next[i] * skip) % m) as usize;
                    next[i] += 1;
                    if table[c] == u32::MAX {
                        table[c] = i as u32;
                        filled += 1;
                        break;
                    }
                }
                if filled == size {
                    break 'fill;
                }
            }
        }
    }
    table
}

/// FNV-1a, 64 bit: stable across runs and builds (unlike `std`'s randomly keyed hasher), so a
/// key maps to the same backend on every node and after every restart.
pub fn fnv1a(data: &[u8], basis: u64) -> u64 {
    let mut h = basis;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use Standing::Suspect;

    #[test]
    fn panic_is_below_the_threshold_share() {
        // (available, total, threshold, panic)
        let cases = [
            (2, 2, 50, false),
            (1, 2, 50, false), // exactly half is not below half
            (0, 2, 50, true),
            (4, 10, 50, true),
            (5, 10, 50, false),
            (0, 1, 50, true),
            (0, 2, 0, false), // 0 disables
            (9, 10, 100, true),
            (10, 10, 100, false),
        ];
        for (available, total, threshold, want) in cases {
            assert_eq!(
                in_panic(available, total, threshold),
                want,
                "{available}/{total} at {threshold}%"
            );
        }
    }

    #[test]
    fn pick_order_puts_ejected_then_known_dead_last_and_suspects_never() {
        type Order = &'static [&'static [Standing]];
        // counts: [available, ejected, known dead, suspect]
        let cases: [([usize; 4], u8, Order); 7] = [
            // All available: the common case.
            ([2, 0, 0, 0], 50, &[&[Available], &[Ejected], &[KnownDead]]),
            // Half ejected: not below 50%, so ejected only as a last resort.
            ([1, 1, 0, 0], 50, &[&[Available], &[Ejected], &[KnownDead]]),
            // The rolling restart: one ejected, the other just refused: panic.
            ([0, 1, 0, 1], 50, &[&[Available, Ejected], &[KnownDead]]),
            // The same with checks: the stale known-dead one is the last resort.
            ([0, 0, 1, 1], 50, &[&[Available, Ejected], &[KnownDead]]),
            // Panic disabled: the same backends, in the last-resort order.
            ([0, 1, 0, 1], 0, &[&[Available], &[Ejected], &[KnownDead]]),
            // Every check says down: nothing to try (503 at once).
            ([0, 0, 2, 0], 50, &[&[Available, Ejected]]),
            ([3, 0, 7, 0], 50, &[&[Available, Ejected], &[KnownDead]]),
        ];
        for (counts, threshold, want) in cases {
            let got = pick_order(&counts, threshold);
            assert_eq!(got, want, "{counts:?} at {threshold}%");
            assert!(got.iter().all(|g| !g.contains(&Suspect)));
        }
    }

    #[test]
    fn weighted_cycle_is_exact_per_cycle_and_spread() {
        let c = WeightedCycle::new(&[90, 10]);
        let draws: Vec<usize> = (0..100).map(|_| c.next()).collect();
        assert_eq!(draws.iter().filter(|&&i| i == 1).count(), 10);
        // Spread: no run of 10 draws holds more than 3 canaries.
        for w in draws.windows(10) {
            assert!(w.iter().filter(|&&i| i == 1).count() <= 3, "{draws:?}");
        }
        let c = WeightedCycle::new(&[1, 1, 1]);
        let draws: Vec<usize> = (0..3).map(|_| c.next()).collect();
        let mut sorted = draws.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2]);
    }

    #[test]
    fn weighted_cycle_skips_zero_weights() {
        let c = WeightedCycle::new(&[0, 3, 0, 1]);
        let draws: Vec<usize> = (0..400).map(|_| c.next()).collect();
        assert_eq!(draws.iter().filter(|&&i| i == 1).count(), 300);
        assert_eq!(draws.iter().filter(|&&i| i == 3).count(), 100);
    }

    #[test]
    fn maglev_shares_follow_weights_and_removal_moves_few_keys() {
        let names = [b"a".as_slice(), b"b", b"c", b"d"];
        let t = maglev_table(&names, &[1, 1, 1, 1], MAGLEV_TABLE_SIZE);
        let mut counts = [0usize; 4];
        for &e in &t {
            counts[e as usize] += 1;
        }
        for c in counts {
            let share = c as f64 / MAGLEV_TABLE_SIZE as f64;
            assert!((share - 0.25).abs() < 0.01, "{counts:?}");
        }
        // Remove "d": entries that pointed elsewhere mostly stay put.
        let t2 = maglev_table(&names[..3], &[1, 1, 1], MAGLEV_TABLE_SIZE);
        let moved = t
            .iter()
            .zip(&t2)
            .filter(|(a, b)| **a != 3 && **a != **b)
            .count();
        assert!(moved < MAGLEV_TABLE_SIZE / 20, "moved {moved}");
        let w = maglev_table(&names[..2], &[3, 1], MAGLEV_TABLE_SIZE);
        let heavy = w.iter().filter(|&&e| e == 0).count() as f64 / MAGLEV_TABLE_SIZE as f64;
        assert!((heavy - 0.75).abs() < 0.02, "{heavy}");
    }
}
