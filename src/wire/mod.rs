//! Protocol rules over bytes that more than one layer needs, with no dependency on the rest of
//! the crate (a leaf of the module graph): the configuration checks its values with them and
//! the proxy applies them to traffic.
//!
//! - [`path`]: request path normalisation (RFC 3986 §6.2.2), for HTTP/1.1 targets and HTTP/2
//!   `:path` alike.

pub mod path;
