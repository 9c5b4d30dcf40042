//! The front: listeners, the request pipeline, the protocol drivers, and the data they consult.
//!
//! Owns accepting connections on the configured addresses and relaying each request to the
//! backend its route names. Submodules: `listener` (sockets), `client` (the client stream and
//! what its listener says), `tls` (https listeners: certificates by SNI, handshakes),
//! `exchange` (one request's protocol-independent phases: decide, try and retry, track),
//! `error` (the request path's one error type), `http1` (wire format, and a client
//! connection's loop), `http2` (HTTP/2 client connections and their streams, over `h2`), `route` (Host and path table, pure), `upstream` (pools and balancing),
//! `l4` (tcp listeners), `drain` (counting connections and telling them to finish on stop),
//! `workers` (the per-core worker threads). It does not own the VIP: `l2` makes the kernel deliver VIP traffic here.

pub mod client;
pub mod deadline;
pub mod drain;
pub mod error;
pub mod exchange;
pub mod forwarded;
pub mod http1;
pub mod http2;
pub mod l4;
pub mod listener;
pub mod metrics;
pub mod route;
pub mod tls;
pub mod upstream;
pub mod workers;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Config, Listener, ProxySettings};
use crate::telemetry::access_log::AccessLog;
use metrics::ProxyMetrics;

/// Pending connections per listener (the kernel caps it at net.core.somaxconn).
pub const LISTEN_BACKLOG: i32 = 1024;

/// Everything a request consults, built from one config and swapped whole on reload.
#[derive(Debug)]
pub struct Snapshot {
    pub routes: route::RouteTable,
    pub pools: upstream::Pools,
    pub settings: ProxySettings,
    /// The listeners' settings, found by bind address when a connection is accepted.
    pub listeners: Vec<Listener>,
    /// Request counters per host × route × pool, made with their labels here so the request
    /// path only bumps atomics (telemetry hook).
    pub metrics: ProxyMetrics,
    /// `None` when the access log is off.
    pub access_log: Option<AccessLog>,
    /// Certificates and the rustls configuration of each https listener.
    pub tls: tls::TlsFront,
}

impl Snapshot {
    pub fn build(config: &Config) -> Snapshot {
        Self::with_pools(config, upstream::Pools::build(config), None)
    }

    /// The snapshot of a reloaded `config`: backends that stay keep their health, ejection
    /// and idle connections from `previous`.
    pub fn rebuild(config: &Config, previous: &Snapshot) -> Snapshot {
        Self::with_pools(
            config,
            upstream::Pools::rebuild(config, &previous.pools),
            Some(previous),
        )
    }

    /// The snapshot of `config` when only the addresses its names resolve to changed
    /// (`resolve`): the pools are rebuilt as on reload, and the TLS front is `previous`'s as
    /// it stands (certificates the file watcher swapped in stay).
    pub fn with_backends(config: &Config, previous: &Snapshot) -> Snapshot {
        let pools = upstream::Pools::rebuild(config, &previous.pools);
        Self::assemble(config, pools, Some(previous), previous.tls.clone())
    }

    fn with_pools(
        config: &Config,
        pools: upstream::Pools,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let tls = tls::TlsFront::build(config, previous.map(|p| &p.tls));
        Self::assemble(config, pools, previous, tls)
    }

    fn assemble(
        config: &Config,
        pools: upstream::Pools,
        previous: Option<&Snapshot>,
        tls: tls::TlsFront,
    ) -> Snapshot {
        let routes = route::RouteTable::build(config);
        let metrics = ProxyMetrics::build(&routes, &pools, previous.map(|p| &p.metrics));
        Snapshot {
            routes,
            pools,
            settings: config.proxy.clone(),
            listeners: config.listeners.clone(),
            metrics,
            access_log: config.access_log.as_ref().map(AccessLog::stdout),
            tls,
        }
    }
}

/// The snapshot as connections see it: read with `load()`, no lock, no refcount on the hot path.
pub type Shared = Arc<ArcSwap<Snapshot>>;
