//! What `[[vrrp.track]]` conditions look at in a running daemon: whether a pool has an
//! available backend (the health checks' and outlier ejection's verdicts, read from the
//! current [`Snapshot`](crate::proxy::Snapshot) through atomics, without locks on the request
//! path), and which listeners failed (could not be bound, or their accept loop ended on its
//! own).
//!
//! Owns the [`ListenerFailures`] register and the [`Probe`] the election polls. The probe runs
//! on the election's thread (`ha::router`) and must never wait for the proxy: it reads the
//! snapshot through `ArcSwap::load` (lock-free) and atomics only. Does not own
//! what a failed condition does to the election (`ha::track`, `ha::machine`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tracing::{error, info};

use crate::config::TrackCondition;
use crate::ha::track::Probe;
use crate::proxy::upstream::backend::now_ms;
use crate::proxy::Shared;

/// The listeners that failed, by bind address. Written when a listener fails or comes back;
/// the probe, which the election polls once per advert interval, reads only the count (an
/// atomic), so it never waits for a writer.
#[derive(Debug, Clone, Default)]
pub(super) struct ListenerFailures(Arc<Failures>);

#[derive(Debug, Default)]
struct Failures {
    list: Mutex<Vec<SocketAddr>>,
    /// `list.len()`, for the probe.
    count: AtomicUsize,
}

impl ListenerFailures {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SocketAddr>> {
        // A list of addresses: a panic elsewhere cannot leave it half-written.
        self.0.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn fail(&self, addr: SocketAddr, why: &str) {
        {
            let mut l = self.lock();
            if !l.contains(&addr) {
                l.push(addr);
            }
            self.0.count.store(l.len(), Ordering::Release);
        }
        error!(%addr, reason = why, "listener failed");
    }

    /// The listener at `addr` serves again, or was removed.
    pub fn clear(&self, addr: SocketAddr) {
        let removed = {
            let mut l = self.lock();
            let i = l.iter().position(|a| *a == addr);
            if let Some(i) = i {
                l.remove(i);
            }
            self.0.count.store(l.len(), Ordering::Release);
            i.is_some()
        };
        if removed {
            info!(%addr, "listener no longer failed");
        }
    }

    pub fn any(&self) -> bool {
        self.0.count.load(Ordering::Acquire) > 0
    }

    pub fn list(&self) -> Vec<SocketAddr> {
        self.lock().clone()
    }
}

/// The probe of every tracked condition, on the daemon's live state.
pub(super) fn probe(shared: Shared, listeners: ListenerFailures) -> Probe {
    Arc::new(move |condition| match condition {
        TrackCondition::PoolDown(name) => {
            let snap = shared.load();
            let now = now_ms();
            // A pool missing from the snapshot (a reload between the two) is not a failure.
            let down = snap
                .pools
                .iter()
                .find(|p| p.name == *name)
                .is_some_and(|p| !p.backends().iter().any(|b| b.is_available(now)));
            down
        }
        TrackCondition::ListenerFailed => listeners.any(),
    })
}
