//! What `[[vrrp.track]]` conditions look at in a running daemon: whether a pool has an
//! available backend (the health checks' and outlier ejection's verdicts, read from the
//! current [`Snapshot`](crate::proxy::Snapshot) through atomics, without locks on the request
//! path), and which listeners failed (could not be bound, or their accept loop ended on its
//! own).
//!
//! Owns the [`ListenerFailures`] register and the [`Probe`] the election polls. Does not own
//! what a failed condition does to the election (`ha::track`, `ha::machine`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tracing::{error, info};

use crate::config::TrackCondition;
use crate::ha::track::Probe;
use crate::proxy::upstream::backend::now_ms;
use crate::proxy::Shared;

/// The listeners that failed, by bind address. Written when a listener fails or comes back,
/// read once per advert interval by the probe: never on the request path.
#[derive(Debug, Clone, Default)]
pub(super) struct ListenerFailures(Arc<Mutex<Vec<SocketAddr>>>);

impl ListenerFailures {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SocketAddr>> {
        // A list of addresses: a panic elsewhere cannot leave it half-written.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn fail(&self, addr: SocketAddr, why: &str) {
        let mut l = self.lock();
        if !l.contains(&addr) {
            l.push(addr);
        }
        error!(%addr, reason = why, "listener failed");
    }

    /// The listener at `addr` serves again, or was removed.
    pub fn clear(&self, addr: SocketAddr) {
        let mut l = self.lock();
        if let Some(i) = l.iter().position(|a| *a == addr) {
            l.remove(i);
            info!(%addr, "listener no longer failed");
        }
    }

    pub fn any(&self) -> bool {
        !self.lock().is_empty()
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
