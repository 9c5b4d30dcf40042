//! Backend pools and the choice of backend for a request.
//!
//! Owns per-pool balancing state (today round robin). It does not connect: the connection
//! driver dials the address it is given. Built per configuration alongside the route table.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::{Config, PoolId};

#[derive(Debug)]
pub struct PoolState {
    pub name: String,
    backends: Vec<SocketAddr>,
    next: AtomicUsize,
}

#[derive(Debug)]
pub struct Pools {
    pools: Vec<PoolState>,
}

impl Pools {
    pub fn build(config: &Config) -> Pools {
        Pools {
            pools: config
                .pools
                .iter()
                .map(|p| PoolState {
                    name: p.name.clone(),
                    backends: p.backends.clone(),
                    next: AtomicUsize::new(0),
                })
                .collect(),
        }
    }

    pub fn get(&self, id: PoolId) -> &PoolState {
        // PoolIds come from the same Config these pools were built from.
        &self.pools[id.index()]
    }
}

impl PoolState {
    /// Round robin. Relaxed is enough: the counter only spreads load, it orders nothing.
    pub fn pick(&self) -> SocketAddr {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Validation guarantees at least one backend.
        self.backends[n % self.backends.len()]
    }

    pub fn backends(&self) -> &[SocketAddr] {
        &self.backends
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn round_robin_visits_every_backend_in_turn() {
        let config = crate::config::parse(
            Path::new("t.toml"),
            "[[listener]]\nbind = \"0.0.0.0:80\"\n[[host]]\nnames = [\"a.test\"]\n[[host.route]]\nprefix = \"/\"\npool = \"p\"\n[pool.p]\nbackends = [\"192.0.2.1:80\", \"192.0.2.2:80\", \"192.0.2.3:80\"]\n",
        )
        .unwrap();
        let pools = Pools::build(&config);
        let p = pools.get(config.hosts[0].routes[0].pool);
        let picks: Vec<SocketAddr> = (0..6).map(|_| p.pick()).collect();
        assert_eq!(picks[..3], picks[3..]);
        let mut distinct = picks[..3].to_vec();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 3);
    }
}
