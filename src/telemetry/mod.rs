//! Telemetry: what vipgate tells its operators, apart from what it does.
//!
//! Owns where daemon logs go and how their level is chosen (this file), the metrics and their
//! Prometheus exposition (`metrics`) and the per-request access log (`access_log`). It does
//! not decide what is logged or counted: each module does, through the small hooks these
//! modules offer. The admin listener that serves them belongs to the daemon
//! (`daemon::admin`), since it also reloads.

pub mod access_log;
pub mod counted;
pub mod metrics;

use std::sync::OnceLock;

use tracing::warn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

type FilterHandle = reload::Handle<EnvFilter, Registry>;

/// Set when the level came from `[log] level`, so a reload may change it; RUST_LOG wins and
/// is never overridden.
static FILTER: OnceLock<FilterHandle> = OnceLock::new();

/// Log to stderr (journald picks it up under systemd). The level comes from RUST_LOG when set,
/// else from `level` (`[log] level`, already validated).
pub fn init(level: &str) {
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let filter = if from_env {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level))
    } else {
        EnvFilter::new(level)
    };
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
        && !from_env
    {
        let _ = FILTER.set(handle);
    }
}

/// Apply a reloaded `[log] level` (nothing when RUST_LOG set the level).
pub fn set_level(level: &str) {
    if let Some(h) = FILTER.get() {
        if let Err(e) = h.reload(EnvFilter::new(level)) {
            warn!(error = %e, "cannot change the log level");
        }
    }
}
