//! Logging set-up. Owns where daemon logs go and how their level is chosen; it does not decide
//! what is logged (each module does).

use tracing_subscriber::EnvFilter;

/// Log to stderr (journald picks it up under systemd); the level comes from RUST_LOG, `info`
/// when unset.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
