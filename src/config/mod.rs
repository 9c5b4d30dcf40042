//! Configuration: the TOML schema, loading it from a file, and validating it into a `Config`.
//!
//! Owns every rule about what a valid configuration is and every message that explains why a
//! file was refused (always `FILE:LINE:COLUMN: error: REASON`). It does not act on the config:
//! the announcer, the proxy and the daemon consume the validated `Config`.

mod error;
mod load;
mod model;
mod schema;
mod validate;

pub use error::ConfigError;
pub use load::{load, parse};
pub use model::*;

#[cfg(test)]
mod tests;
