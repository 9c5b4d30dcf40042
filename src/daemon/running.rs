//! What a running daemon holds: the bound listeners and their accept tasks, the VIP announcers,
//! the snapshot the proxy reads, and the drain handle; with start-up and shutdown order.
//!
//! Owns the order of both: start binds every listener before announcing any VIP (a port
//! conflict never leaves a VIP announced with nobody serving it); shutdown stops announcing
//! first (clients move on while we close the door), then stops accepting, then lets in-flight
//! requests finish up to `[daemon] drain_timeout_ms`. Changing a running daemon to a new
//! configuration is `reload`'s; talking to systemd is `notify`'s.
//!
//! A listener that fails while running (its accept loop ends on its own) is bound again once
//! a second ([`Running::heal_listeners`]). With `[[vrrp.track]] listeners = true` a listener
//! that cannot be bound at start-up does not stop the start: it counts as failed (the
//! election lowers the priority or stays in fault) and is retried the same way.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::admin::{AdminServer, AdminState, ReloadRequest};
use super::track::{self, ListenerFailures};
use super::DaemonError;
use crate::bgp::Speaker;
use crate::config::{Config, TrackCondition};
use crate::ha::track::Probe;
use crate::ha::Router;
use crate::l2::{self, Announcer};
use crate::proxy::drain::Drain;
use crate::proxy::workers::Workers;
use crate::proxy::{listener, Shared, Snapshot};
use crate::resolve::{self, Answers, Resolver};

/// One listening address being served: one socket per worker.
pub(super) struct ServedListener {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ServedListener {
    /// Start accepting on already bound sockets, the i-th on worker i: each worker accepts
    /// and serves its own connections. If an accept loop ends on its own (an error, a panic),
    /// the listener is registered in `failures`.
    pub fn spawn(
        addr: SocketAddr,
        sockets: Vec<std::net::TcpListener>,
        shared: &Shared,
        drain: &Drain,
        workers: &Workers,
        failures: &ListenerFailures,
    ) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        info!(%addr, sockets = sockets.len(), "listening");
        let tasks = sockets
            .into_iter()
            .zip(workers.handles().iter().cycle())
            .map(|(socket, worker)| {
                let (shared, stop_rx, drain) = (shared.clone(), stop_rx.clone(), drain.clone());
                let serve = worker.spawn(async move {
                    // Registered here, so the socket belongs to this worker's reactor.
                    let l = TcpListener::from_std(socket)?;
                    listener::serve(l, addr, shared, stop_rx, drain).await
                });
                let failures = failures.clone();
                tokio::spawn(async move {
                    match serve.await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => failures.fail(addr, &format!("accept failed: {e}")),
                        Err(e) => failures.fail(addr, &format!("the accept loop ended: {e}")),
                    }
                })
            })
            .collect();
        ServedListener { addr, stop, tasks }
    }

    /// Whether an accept loop of this listener ended on its own.
    fn failed(&self) -> bool {
        self.tasks.iter().any(JoinHandle::is_finished)
    }

    /// Stop accepting and close the sockets; connections already accepted carry on.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        info!(addr = %self.addr, "stopped listening");
    }
}

/// Whether `config` tracks its listeners: then a listener that cannot be bound at start-up is
/// a failed condition for the election rather than a reason not to start.
fn tracks_listeners(config: &Config) -> bool {
    let tracked = |t: &[crate::config::Track]| {
        t.iter()
            .any(|t| t.condition == TrackCondition::ListenerFailed)
    };
    config.vrrp.as_ref().is_some_and(|v| tracked(&v.track))
        || config.bgp.as_ref().is_some_and(|b| tracked(&b.track))
}

/// Bind every address (`per_address` sockets each, one per worker), or none: on failure the
/// sockets bound so far are closed.
pub(super) fn bind_all(
    addrs: impl IntoIterator<Item = SocketAddr>,
    per_address: usize,
) -> Result<Vec<(SocketAddr, Vec<std::net::TcpListener>)>, DaemonError> {
    let mut bound = Vec::new();
    for addr in addrs {
        let l = listener::bind_workers(addr, per_address)
            .map_err(|source| DaemonError::Bind { addr, source })?;
        bound.push((addr, l));
    }
    Ok(bound)
}

/// Reload outcomes, for the status line.
#[derive(Debug, Default)]
pub(super) struct ReloadCount {
    pub ok: u64,
    pub failed: u64,
    /// The last failure's message while the running config is older than the file.
    pub last_error: Option<String>,
}

pub(super) struct Running {
    pub config: Config,
    pub shared: Shared,
    pub drain: Drain,
    pub listeners: Vec<ServedListener>,
    /// The VIPs announced on their own (no `[vrrp]`).
    pub announcers: Vec<Announcer>,
    /// With `[vrrp]`: the election, which announces the VIPs while this node is master.
    pub router: Option<Router>,
    /// With `announce = "bgp"` VIPs: their announcement through the local BGP daemon.
    pub bgp: Option<Speaker>,
    pub reloads: ReloadCount,
    /// The proxy's worker threads (under `runtime = "per-core"`); fixed at start.
    pub workers: Workers,
    /// What the admin listener reads (also when it is disabled: it costs nothing).
    pub admin_state: Arc<AdminState>,
    pub admin: Option<AdminServer>,
    /// `POST /reload` requests; the event loop takes it.
    pub admin_reloads: Option<tokio::sync::mpsc::Receiver<ReloadRequest>>,
    /// Re-reads certificate files that changed on disk (`proxy::tls::watch`).
    pub cert_watch: JoinHandle<()>,
    /// Orders and renews the `acme` certificates (`acme::client`); idle without `[acme]`.
    pub acme: JoinHandle<()>,
    /// Listeners of the configuration not being served (not bound yet, or their accept loop
    /// ended), retried by [`Running::heal_listeners`].
    pub unbound: Vec<SocketAddr>,
    pub listener_failures: ListenerFailures,
    /// What the election's `[[vrrp.track]]` conditions read.
    pub probe: Probe,
    /// Looks up the pools' names and re-resolves them (`resolve`).
    pub resolver: Resolver,
}

/// Take the VIPs as `config` says: join the election, or announce them all now.
pub(super) async fn own(
    config: &Config,
    probe: Probe,
) -> Result<(Vec<Announcer>, Option<Router>), DaemonError> {
    match &config.vrrp {
        Some(vrrp) => Ok((
            Vec::new(),
            Some(Router::start(vrrp, &config.vips, probe).await?),
        )),
        None => Ok((l2::start_all(&config.vips).await?, None)),
    }
}

impl Running {
    pub async fn start(config: Config) -> Result<Running, DaemonError> {
        // The start time is taken on first use: now, not at the first scrape
        // (`process_start_time_seconds`, the status page's "up since").
        crate::telemetry::metrics::process();
        let listener_failures = ListenerFailures::default();
        let per_address = crate::proxy::workers::count(&config.proxy);
        let mut unbound = Vec::new();
        let bound = if tracks_listeners(&config) {
            let mut bound = Vec::new();
            for addr in config.listeners.iter().map(|l| l.bind) {
                match listener::bind_workers(addr, per_address) {
                    Ok(l) => bound.push((addr, l)),
                    Err(e) => {
                        listener_failures
                            .fail(addr, &format!("cannot listen: {e}; retrying every second"));
                        unbound.push(addr);
                    }
                }
            }
            bound
        } else {
            bind_all(config.listeners.iter().map(|l| l.bind), per_address)?
        };
        // The admin port too, before anything is announced.
        let admin_socket = match &config.admin {
            Some(a) => Some(listener::bind(a.bind).map_err(|source| DaemonError::Bind {
                addr: a.bind,
                source,
            })?),
            None => None,
        };
        // Names first: the pools start with what their names give, if they answer in time.
        let mut resolver =
            Resolver::start(&config.resolver, config.lookups(), &Answers::default())?;
        resolver
            .first_round(resolve::first_round_limit(&config.resolver))
            .await;
        let effective = resolve::expand(&config, &resolver.current());
        // The snapshot before the election: tracked pools are read from it from the start.
        let shared = Arc::new(ArcSwap::from_pointee(Snapshot::build(&effective)));
        let probe = track::probe(shared.clone(), listener_failures.clone());
        let (announcers, router) = own(&config, probe.clone()).await?;
        let drain = Drain::new();
        let cert_watch = crate::proxy::tls::watch::spawn(shared.clone());
        let workers = Workers::start(&config.proxy).map_err(DaemonError::Workers)?;
        let listeners: Vec<ServedListener> = bound
            .into_iter()
            .map(|(addr, l)| {
                ServedListener::spawn(addr, l, &shared, &drain, &workers, &listener_failures)
            })
            .collect();
        // BGP VIPs only once the listeners accept (and then only after `rise` good checks).
        let bgp = match &config.bgp {
            Some(b) => match Speaker::start(b, probe.clone()).await {
                Ok(s) => Some(s),
                Err(e) => {
                    if let Some(r) = router {
                        r.stop().await;
                    }
                    l2::stop_all(announcers).await;
                    for l in listeners {
                        l.stop().await;
                    }
                    return Err(e.into());
                }
            },
            None => None,
        };
        let (admin_state, admin_reloads) =
            AdminState::new(shared.clone(), drain.clone(), effective);
        admin_state.watch_listeners(listener_failures.clone());
        let admin = admin_socket.map(|l| AdminServer::spawn(l, admin_state.clone()));
        // After the listeners: the ACME server's checks of this node need them answering.
        let acme = {
            let state = admin_state.clone();
            crate::acme::spawn(move || state.config.load_full())
        };
        // Listeners accept and the VIPs are announced (or the election joined): ready.
        admin_state
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(Running {
            config,
            shared,
            drain,
            listeners,
            announcers,
            router,
            bgp,
            reloads: ReloadCount::default(),
            workers,
            admin_state,
            admin,
            admin_reloads: Some(admin_reloads),
            cert_watch,
            acme,
            unbound,
            listener_failures,
            probe,
            resolver,
        })
    }

    /// The configuration the proxy runs: the file's, with the addresses its names give now.
    pub fn effective(&self) -> Config {
        resolve::expand(&self.config, &self.resolver.current())
    }

    /// A name's addresses changed: rebuild the pools (backends that stay keep their state;
    /// ones that went are drained as on reload) and swap the snapshot.
    pub fn apply_answers(&mut self) {
        let effective = self.effective();
        // A name's first answer after a start or reload is published even when it is what
        // the pools already have: nothing to rebuild then.
        let same = |a: &Config, b: &Config| {
            a.pools.len() == b.pools.len()
                && a.pools
                    .iter()
                    .zip(&b.pools)
                    .all(|(x, y)| x.backends == y.backends)
        };
        if same(&effective, &self.admin_state.config.load()) {
            return;
        }
        let next = Snapshot::with_backends(&effective, &self.shared.load());
        self.shared.store(Arc::new(next));
        self.admin_state.config.store(Arc::new(effective));
    }

    /// Whether a listener of the configuration is not being served.
    pub fn has_unserved_listeners(&self) -> bool {
        !self.unbound.is_empty() || self.listeners.iter().any(ServedListener::failed)
    }

    /// Serve again the listeners that are not served: those whose accept loop ended, and
    /// those not bound yet. Called once a second by the event loop; cheap when all is well.
    pub async fn heal_listeners(&mut self) {
        let mut i = 0;
        while i < self.listeners.len() {
            if self.listeners[i].failed() {
                // The other workers' sockets of this address go too: it is bound again whole.
                let dead = self.listeners.remove(i);
                let addr = dead.addr;
                dead.stop().await;
                self.unbound.push(addr);
            } else {
                i += 1;
            }
        }
        let mut still = Vec::new();
        for addr in std::mem::take(&mut self.unbound) {
            match listener::bind_workers(addr, self.workers.handles().len()) {
                Ok(l) => {
                    self.listeners.push(ServedListener::spawn(
                        addr,
                        l,
                        &self.shared,
                        &self.drain,
                        &self.workers,
                        &self.listener_failures,
                    ));
                    self.listener_failures.clear(addr);
                }
                Err(_) => still.push(addr),
            }
        }
        self.unbound = still;
    }

    pub fn announced(&self) -> Vec<IpAddr> {
        self.announcers.iter().map(Announcer::vip).collect()
    }

    /// One line for `systemctl status` (sd_notify STATUS=).
    pub fn status(&self) -> String {
        let vrrp = crate::ha::metrics::vrrp();
        let vips: Vec<String> = match &self.router {
            // Held only while master; the election logs every change of state.
            Some(_) => {
                let (state, priority) = vrrp.now();
                self.config
                    .vips
                    .iter()
                    .map(|v| format!("{} (vrrp {state}, priority {priority})", v.address))
                    .collect()
            }
            None => self.announced().iter().map(ToString::to_string).collect(),
        };
        let mut vips = vips;
        let bgp = crate::bgp::metrics::bgp_metrics().now();
        if let Some(b) = &self.config.bgp {
            let phrase = bgp
                .as_ref()
                .map_or_else(|| "withdrawn (rising)".to_owned(), |s| s.phrase());
            vips.extend(b.vips.iter().map(|v| format!("{v} (bgp {phrase})")));
        }
        let mut s = format!(
            "serving: {} VIP(s) [{}], {} listener(s), {} host(s), {} pool(s); {} connection(s)",
            vips.len(),
            vips.join(" "),
            self.listeners.len(),
            self.config.hosts.len(),
            self.config.pools.len(),
            self.drain.active(),
        );
        let tracks_failed = vrrp.tracks_failed();
        if self.router.is_some() && !tracks_failed.is_empty() {
            s.push_str(&format!("; tracking failed: {}", tracks_failed.join(" ")));
        }
        if let Some(bird) = bgp.as_ref().and_then(|b| b.bird_phrase()) {
            s.push_str(&format!("; {bird}"));
        }
        let failed = self.listener_failures.list();
        if !failed.is_empty() {
            let failed: Vec<String> = failed.iter().map(ToString::to_string).collect();
            s.push_str(&format!("; listener(s) failed: {}", failed.join(" ")));
        }
        if self.reloads.ok + self.reloads.failed > 0 {
            s.push_str(&format!(
                "; reloads: {} ok, {} failed",
                self.reloads.ok, self.reloads.failed
            ));
        }
        if let Some(e) = &self.reloads.last_error {
            s.push_str(&format!("; last reload refused: {e}"));
        }
        s
    }

    /// Stop answering ARP, stop accepting, drain, then remove the VIPs' local routes. Returns
    /// the connections still open at the deadline (they are cut when the process exits).
    ///
    /// The local route stays until the drain ends: without it the kernel no longer treats the
    /// VIP as local, so in-flight connections could neither send nor receive, and a client that
    /// still has our MAC cached would time out instead of being refused at once.
    ///
    /// With VRRP the election is left first (a priority 0 advert hands the VIPs to a backup at
    /// once): clients move to the new master, where connections made to us cannot follow.
    pub async fn shutdown(mut self) -> usize {
        // /readyz answers 503 from now on, so a balancer in front stops sending at once.
        self.admin_state
            .stopping
            .store(true, std::sync::atomic::Ordering::Release);
        // With VRRP the handover has already moved the VIP and its local route away: a
        // connection made to the VIP can neither send nor receive here any more, so waiting for
        // it would only hold the stop for the whole deadline.
        let elected = self.router.is_some();
        if let Some(router) = self.router.take() {
            router.stop().await;
        }
        // BGP: withdraw first, then keep accepting while the router converges (it sends new
        // flows here until it has the update), then drain what it sent.
        if let Some(bgp) = &self.bgp {
            bgp.withdraw().await;
            let wait = self
                .config
                .bgp
                .as_ref()
                .map_or(std::time::Duration::ZERO, |b| b.withdraw_wait);
            info!(
                ?wait,
                "BGP VIPs withdrawn; accepting until the router has converged"
            );
            tokio::time::sleep(wait).await;
        }
        for a in self.announcers.iter_mut().rev() {
            match a.stop_answering().await {
                Ok(()) => {
                    info!(vip = %a.vip(), "stopped answering ARP; the local route stays until the drain ends")
                }
                Err(e) => error!(vip = %a.vip(), error = %e, "stopping ARP answers failed"),
            }
        }
        for l in self.listeners {
            l.stop().await;
        }
        self.cert_watch.abort();
        self.acme.abort();
        self.drain.start();
        let open = self.drain.active();
        // With BGP VIPs as well, connections to them drain (the local route stays meanwhile).
        let deadline = if elected && self.bgp.is_none() {
            std::time::Duration::ZERO
        } else {
            self.config.daemon.drain_timeout
        };
        if open > 0 {
            info!(
                connections = open,
                ?deadline,
                "draining in-flight connections"
            );
        }
        let left = self.drain.wait(deadline).await;
        if left > 0 {
            warn!(
                connections = left,
                ?deadline,
                "drain deadline passed; closing the connections still open"
            );
        }
        l2::stop_all(self.announcers).await;
        if let Some(bgp) = self.bgp.take() {
            bgp.stop().await;
        }
        if let Some(admin) = self.admin.take() {
            admin.stop().await;
        }
        left
    }
}
