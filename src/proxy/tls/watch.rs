//! Re-reading certificate files when they change on disk, without a reload.
//!
//! Owns the poll: every [`POLL_INTERVAL`] the files of the served certificates are stat'ed
//! (modification time, size, inode: a rename over the file and an in-place rewrite both show);
//! changed ones are read and checked, and a good set replaces the served one with one
//! `ArcSwap::store`. Connections already open keep their session; new handshakes get the new
//! certificate. A bad file (unparsable, key mismatch, expired) is logged once and the old
//! certificate stays. Polling rather than inotify: no new dependency, and it also sees files
//! replaced through symlinks (as cert-manager and certbot do). Does not own what a file must
//! be (`crate::tls`) or SIGHUP (`daemon::reload`, which rebuilds everything from the config).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::publish_expiry;
use crate::proxy::Shared;

/// How often certificate files are checked: a renewal is noticed within seconds, and a
/// few `stat` calls per interval cost nothing.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Poll the certificate files of whatever snapshot is current, until aborted.
pub fn spawn(shared: Shared) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let certs = shared.load().tls.certs.clone();
            let current = certs.load_full();
            if current.entries.is_empty() {
                continue;
            }
            // Reading a few small files: fine on a blocking-tolerant worker.
            let set = current.clone();
            let Ok(found) =
                tokio::task::spawn_blocking(move || set.reread(SystemTime::now())).await
            else {
                continue;
            };
            for e in &found.refused {
                warn!("certificate file refused, keeping the certificate served now: {e}");
                crate::proxy::metrics::counters().certificate_reload_done(false);
            }
            let next = match found.set {
                Some(set) => {
                    for e in found.changed.iter().filter_map(|&i| set.entries.get(i)) {
                        info!(cert = %e.cert.display(), subject = %e.loaded.subject,
                            not_after = %crate::tls::format_unix(e.loaded.not_after),
                            "certificate file changed; new handshakes get the new certificate");
                    }
                    publish_expiry(&set);
                    crate::proxy::metrics::counters().certificate_reload_done(true);
                    set
                }
                None if !found.stamps.is_empty() => current.with_stamps(&found.stamps),
                None => continue,
            };
            // A SIGHUP reload may have stored a new set meanwhile: that one wins.
            let _ = certs.compare_and_swap(&current, Arc::new(next));
        }
    })
}
