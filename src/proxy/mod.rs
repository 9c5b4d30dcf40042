//! The HTTP/1 front: listeners, the per-connection driver, and the data they consult.
//!
//! Owns accepting connections on the configured addresses and relaying each request to the
//! backend its route names. Submodules: `http1` (wire format, pure), `route` (Host and path
//! table, pure), `upstream` (pools and balancing), `listener` (sockets), `conn` (one client
//! connection's life), `drain` (counting connections and telling them to finish on stop). It does not own the VIP: `l2` makes the kernel deliver VIP traffic here.

pub mod conn;
pub mod drain;
pub mod http1;
pub mod listener;
pub mod route;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::Config;

/// Time a client has to send a complete request head once it started one; slower gets 408.
pub const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle keep-alive client connection is kept (nginx and HAProxy use 60 s/75 s).
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time to establish a backend connection before answering 502.
pub const BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time a backend has to start its response, and the longest pause inside a body in either
/// direction, before the exchange is abandoned (504 if nothing was sent yet).
pub const BACKEND_IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Pending connections per listener (the kernel caps it at net.core.somaxconn).
pub const LISTEN_BACKLOG: i32 = 1024;

/// Everything a request consults, built from one config and swapped whole on reload.
#[derive(Debug)]
pub struct Snapshot {
    pub routes: route::RouteTable,
    pub pools: upstream::Pools,
}

impl Snapshot {
    pub fn build(config: &Config) -> Snapshot {
        Snapshot {
            routes: route::RouteTable::build(config),
            pools: upstream::Pools::build(config),
        }
    }
}

/// The snapshot as connections see it: read with `load()`, no lock, no refcount on the hot path.
pub type Shared = Arc<ArcSwap<Snapshot>>;
