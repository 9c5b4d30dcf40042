//! Hot reload: moving a running daemon to a new configuration without dropping a request.
//!
//! Owns the difference between two configurations ([`Plan`], pure) and applying it in an order
//! that keeps the old configuration whole when anything fails before the switch:
//!
//! 1. read and validate the file: refused → keep running, report `FILE:LINE:COLUMN: error: …`;
//! 2. bind the added listeners and start announcing the added VIPs: a failure undoes these
//!    two and keeps running as before;
//! 3. switch: swap the proxy's [`Snapshot`] (one atomic pointer store), serve the new
//!    listeners, stop announcing removed VIPs, close removed listeners.
//!
//! A request routed before the swap carries its backend address with it, so it finishes on the
//! configuration it started with; the next request on a keep-alive connection is routed by the
//! new one. A VIP whose address and interface stay keeps its announcer (no GARP, no gap); one
//! whose interface changed is stopped and started again. Connections accepted by a removed
//! listener stay open until they finish (they are routed by the new configuration).
//!
//! BGP VIPs (`announce = "bgp"`) are the BGP speaker's: added ones are announced once healthy,
//! removed ones withdrawn at once and still delivered for `[daemon] drain_timeout_ms`.
//!
//! With `[vrrp]`, a change of the election or of the VIPs restarts the election (a master
//! hands over first); a change of `[[vrrp.track]]` alone is applied to the running election,
//! which keeps its state and re-evaluates its priority at once.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use tracing::{error, info, warn};

use super::running::{bind_all, own, Running, ServedListener};
use super::DaemonError;
use crate::config::{self, Config, ConfigError, Vip};
use crate::l2;
use crate::proxy::Snapshot;
use crate::resolve::{self, Resolver};

/// What a reload changes beyond routes and pools (which are always swapped whole).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub listeners_added: Vec<SocketAddr>,
    pub listeners_removed: Vec<SocketAddr>,
    pub vips_added: Vec<Vip>,
    pub vips_removed: Vec<IpAddr>,
    /// Same address on another interface: stopped, then started on the new one.
    pub vips_moved: Vec<Vip>,
}

impl Plan {
    pub fn between(old: &Config, new: &Config) -> Plan {
        let old_binds: Vec<SocketAddr> = old.listeners.iter().map(|l| l.bind).collect();
        let new_binds: Vec<SocketAddr> = new.listeners.iter().map(|l| l.bind).collect();
        let find = |vips: &[Vip], a: IpAddr| vips.iter().find(|v| v.address == a).cloned();
        let mut plan = Plan {
            listeners_added: new_binds
                .iter()
                .filter(|b| !old_binds.contains(b))
                .copied()
                .collect(),
            listeners_removed: old_binds
                .iter()
                .filter(|b| !new_binds.contains(b))
                .copied()
                .collect(),
            ..Plan::default()
        };
        for v in &new.vips {
            match find(&old.vips, v.address) {
                None => plan.vips_added.push(v.clone()),
                Some(o) if o.interface != v.interface => plan.vips_moved.push(v.clone()),
                // A changed GARP burst applies at the next takeover; re-announcing now would
                // only flood the LAN.
                Some(_) => {}
            }
        }
        plan.vips_removed = old
            .vips
            .iter()
            .filter(|o| find(&new.vips, o.address).is_none())
            .map(|o| o.address)
            .collect();
        plan
    }

    pub fn is_empty(&self) -> bool {
        *self == Plan::default()
    }

    /// One line for `POST /reload`'s answer.
    pub fn summary(&self) -> String {
        format!(
            "listeners added {}, removed {}; VIPs added {}, removed {}, moved {}",
            self.listeners_added.len(),
            self.listeners_removed.len(),
            self.vips_added.len(),
            self.vips_removed.len(),
            self.vips_moved.len()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Apply(#[from] DaemonError),
}

impl Running {
    /// Reload from `path`. On error nothing changed; the error says why.
    pub async fn reload(&mut self, path: &Path) -> Result<Plan, ReloadError> {
        let result = self.try_reload(path).await;
        match &result {
            Ok(plan) => {
                self.reloads.ok += 1;
                self.reloads.last_error = None;
                // Telemetry hooks: reload counters, the log level (the admin's config view was
                // swapped with the snapshot).
                crate::telemetry::metrics::process().reload_done(true);
                crate::telemetry::set_level(&self.config.log.level);
                if self.admin.as_ref().map(|a| a.addr) != self.config.admin.map(|a| a.bind) {
                    warn!("the [admin] listener changes at the next restart, not on reload");
                }
                info!(config = %path.display(),
                    listeners_added = plan.listeners_added.len(),
                    listeners_removed = plan.listeners_removed.len(),
                    vips_added = plan.vips_added.len(),
                    vips_removed = plan.vips_removed.len(),
                    vips_moved = plan.vips_moved.len(),
                    hosts = self.config.hosts.len(),
                    pools = self.config.pools.len(),
                    "configuration reloaded");
            }
            Err(e) => {
                crate::telemetry::metrics::process().reload_done(false);
                self.reloads.failed += 1;
                self.reloads.last_error = Some(e.to_string());
                error!("reload refused, keeping the running configuration: {e}");
            }
        }
        result
    }

    async fn try_reload(&mut self, path: &Path) -> Result<Plan, ReloadError> {
        let mut new = config::load(path)?;
        // The threads run as they started: a reload cannot re-thread the process.
        if (new.proxy.runtime, new.proxy.worker_threads)
            != (self.config.proxy.runtime, self.config.proxy.worker_threads)
        {
            warn!("[proxy] runtime and worker_threads change at the next restart, not on reload");
            new.proxy.runtime = self.config.proxy.runtime;
            new.proxy.worker_threads = self.config.proxy.worker_threads;
        }
        let plan = Plan::between(&self.config, &new);
        // The names of the new file, with the answers had so far for those that stay (dropped,
        // and its lookups stopped, if anything below fails).
        let resolver = Resolver::start(&new.resolver, new.lookups(), &self.resolver.current())
            .map_err(DaemonError::from)?;

        // With VRRP on either side, a change of the election or of its VIPs restarts the
        // election (a master hands over first); the VIPs are then not touched one by one.
        // Tracks alone are handed to the running election.
        let elected = self.config.vrrp.is_some() || new.vrrp.is_some();
        let same_election = match (&self.config.vrrp, &new.vrrp) {
            (Some(old), Some(new)) => old.same_election(new),
            (None, None) => true,
            _ => false,
        };
        let restart_election = elected && (!same_election || self.config.vips != new.vips);

        // Everything that can fail, before anything the old configuration relies on changes.
        let bound = bind_all(
            plan.listeners_added.iter().copied(),
            self.workers.handles().len(),
        )?;
        let added = if elected {
            Vec::new()
        } else {
            l2::start_all(&plan.vips_added)
                .await
                .map_err(DaemonError::from)?
        };

        // The switch. Requests already routed keep the backend they were given.
        let effective = resolve::expand(&new, &resolver.current());
        let next = Snapshot::rebuild(&effective, &self.shared.load());
        self.resolver = resolver;
        // What the proxy runs, also what `apply_answers` compares the next answers with.
        self.admin_state.config.store(Arc::new(effective));
        self.shared.store(Arc::new(next));
        for (addr, l) in bound {
            self.listeners.push(ServedListener::spawn(
                addr,
                l,
                &self.shared,
                &self.drain,
                &self.workers,
                &self.listener_failures,
            ));
        }
        self.announcers.extend(added);
        if restart_election {
            if let Some(router) = self.router.take() {
                router.stop().await;
            }
            l2::stop_all(std::mem::take(&mut self.announcers)).await;
            // Past the switch there is no going back: a failure is reported, and this node then
            // holds no VIP until the next good reload.
            match own(&new, self.probe.clone()).await {
                Ok((announcers, router)) => {
                    self.announcers = announcers;
                    self.router = router;
                }
                Err(e) => {
                    error!(error = %e, "cannot take the VIPs as the new configuration says; holding none")
                }
            }
        }
        for vip in plan
            .vips_removed
            .iter()
            .chain(plan.vips_moved.iter().map(|v| &v.address))
            .filter(|_| !elected)
        {
            if let Some(i) = self.announcers.iter().position(|a| a.vip() == *vip) {
                l2::stop_all(vec![self.announcers.remove(i)]).await;
            }
        }
        for vip in plan.vips_moved.iter().filter(|_| !elected) {
            // Past the switch there is no going back: a VIP that cannot move is reported and
            // left unannounced rather than announced on the interface the file no longer names.
            match l2::start_all(std::slice::from_ref(vip)).await {
                Ok(a) => self.announcers.extend(a),
                Err(e) => error!(vip = %vip.address, interface = %vip.interface, error = %e,
                    "cannot announce the VIP on its new interface; it is not announced"),
            }
        }
        if !restart_election {
            if let (Some(router), Some(v)) = (&self.router, &new.vrrp) {
                if self.config.vrrp.as_ref().map(|o| &o.track) != Some(&v.track) {
                    router.set_tracks(v.track.clone());
                }
            }
        }
        self.reload_bgp(&new).await;
        for addr in &plan.listeners_removed {
            if let Some(i) = self.listeners.iter().position(|l| l.addr == *addr) {
                self.listeners.remove(i).stop().await;
            }
            self.unbound.retain(|a| a != addr);
            self.listener_failures.clear(*addr);
        }
        self.config = new;
        Ok(plan)
    }
}

impl Running {
    /// BGP VIPs added, removed or re-tracked: handed to the running speaker (a removed VIP is
    /// withdrawn at once and delivered for the drain time), or a speaker started for the first
    /// ones. Past the switch: a failure is reported and the VIPs are not announced.
    async fn reload_bgp(&mut self, new: &Config) {
        let drain = new.daemon.drain_timeout;
        match (&self.bgp, &new.bgp, &self.config.bgp) {
            (Some(speaker), Some(b), _) => speaker.reload(b.clone(), drain).await,
            (Some(speaker), None, Some(old)) => {
                let none = config::Bgp {
                    vips: Vec::new(),
                    ..old.clone()
                };
                speaker.reload(none, drain).await;
            }
            (None, Some(b), _) => match crate::bgp::Speaker::start(b, self.probe.clone()).await {
                Ok(s) => self.bgp = Some(s),
                Err(e) => error!(error = %e, "cannot announce the BGP VIPs; none is announced"),
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vips: &[(&str, &str)], binds: &[&str]) -> Config {
        let mut text = String::new();
        for (a, i) in vips {
            text.push_str(&format!(
                "[[vip]]\naddress = \"{a}\"\ninterface = \"{i}\"\n"
            ));
        }
        for b in binds {
            text.push_str(&format!("[[listener]]\nbind = \"{b}\"\n"));
        }
        text.push_str("[[host]]\nnames = [\"*\"]\n[[host.route]]\nprefix = \"/\"\npool = \"p\"\n[pool.p]\nbackends = [\"192.0.2.21:80\"]\n");
        config::parse(Path::new("t.toml"), &text).unwrap()
    }

    #[test]
    fn plan_table() {
        let a = ("192.0.2.200", "eth0");
        let b = ("192.0.2.201", "eth0");
        let a_moved = ("192.0.2.200", "eth1");
        let l80 = "192.0.2.200:80";
        let l81 = "0.0.0.0:81";
        // (old vips, old binds, new vips, new binds, added binds, removed binds, added vips,
        //  removed vips, moved vips)
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            &'a [&'a str],
            &'a [(&'a str, &'a str)],
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
        );
        let cases: &[Case<'_>] = &[
            (&[a], &[l80], &[a], &[l80], &[], &[], &[], &[], &[]),
            (
                &[a],
                &[l80],
                &[a, b],
                &[l80, l81],
                &[l81],
                &[],
                &[b.0],
                &[],
                &[],
            ),
            (
                &[a, b],
                &[l80, l81],
                &[a],
                &[l80],
                &[],
                &[l81],
                &[],
                &[b.0],
                &[],
            ),
            (&[a], &[l80], &[a_moved], &[l80], &[], &[], &[], &[], &[a.0]),
            (
                &[a],
                &[l80],
                &[b],
                &[l81],
                &[l81],
                &[l80],
                &[b.0],
                &[a.0],
                &[],
            ),
        ];
        for (i, (ov, ob, nv, nb, la, lr, va, vr, vm)) in cases.iter().enumerate() {
            let p = Plan::between(&cfg(ov, ob), &cfg(nv, nb));
            let s = |v: &[SocketAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
            let ip = |v: &[IpAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
            let vs = |v: &[Vip]| v.iter().map(|v| v.address.to_string()).collect::<Vec<_>>();
            assert_eq!(s(&p.listeners_added), *la, "case {i}");
            assert_eq!(s(&p.listeners_removed), *lr, "case {i}");
            assert_eq!(vs(&p.vips_added), *va, "case {i}");
            assert_eq!(ip(&p.vips_removed), *vr, "case {i}");
            assert_eq!(vs(&p.vips_moved), *vm, "case {i}");
            assert_eq!(p.is_empty(), i == 0, "case {i}");
        }
    }

    #[test]
    fn a_changed_garp_burst_keeps_the_announcer() {
        let old = cfg(&[("192.0.2.200", "eth0")], &["192.0.2.200:80"]);
        let mut new = old.clone();
        new.vips[0].garp.count = 1;
        assert!(Plan::between(&old, &new).is_empty());
    }
}
