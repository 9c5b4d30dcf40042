//! What a running daemon holds: the bound listeners and their accept tasks, the VIP announcers,
//! the snapshot the proxy reads, and the drain handle; with start-up and shutdown order.
//!
//! Owns the order of both: start binds every listener before announcing any VIP (a port
//! conflict never leaves a VIP announced with nobody serving it); shutdown stops announcing
//! first (clients move on while we close the door), then stops accepting, then lets in-flight
//! requests finish up to `[daemon] drain_timeout_ms`. Changing a running daemon to a new
//! configuration is `reload`'s; talking to systemd is `notify`'s.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::DaemonError;
use crate::config::Config;
use crate::ha::Router;
use crate::l2::{self, Announcer};
use crate::proxy::drain::Drain;
use crate::proxy::workers::Workers;
use crate::proxy::{listener, Shared, Snapshot};
use crate::telemetry::admin::{AdminServer, AdminState, ReloadRequest};

/// One listening address being served: one socket per worker.
pub(super) struct ServedListener {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ServedListener {
    /// Start accepting on already bound sockets, the i-th on worker i: each worker accepts
    /// and serves its own connections.
    pub fn spawn(
        addr: SocketAddr,
        sockets: Vec<std::net::TcpListener>,
        shared: &Shared,
        drain: &Drain,
        workers: &Workers,
    ) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        info!(%addr, sockets = sockets.len(), "listening");
        let tasks = sockets
            .into_iter()
            .zip(workers.handles().iter().cycle())
            .map(|(socket, worker)| {
                let (shared, stop_rx, drain) = (shared.clone(), stop_rx.clone(), drain.clone());
                worker.spawn(async move {
                    // Registered here, so the socket belongs to this worker's reactor.
                    match TcpListener::from_std(socket) {
                        Ok(l) => listener::serve(l, addr, shared, stop_rx, drain).await,
                        Err(e) => error!(%addr, error = %e, "cannot serve the listener"),
                    }
                })
            })
            .collect();
        ServedListener { addr, stop, tasks }
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
    pub reloads: ReloadCount,
    /// The proxy's worker threads (under `runtime = "per-core"`); fixed at start.
    pub workers: Workers,
    /// What the admin listener reads (also when it is disabled: it costs nothing).
    pub admin_state: Arc<AdminState>,
    pub admin: Option<AdminServer>,
    /// `POST /reload` requests; the event loop takes it.
    pub admin_reloads: Option<tokio::sync::mpsc::Receiver<ReloadRequest>>,
}

/// Take the VIPs as `config` says: join the election, or announce them all now.
pub(super) async fn own(config: &Config) -> Result<(Vec<Announcer>, Option<Router>), DaemonError> {
    match &config.vrrp {
        Some(vrrp) => Ok((Vec::new(), Some(Router::start(vrrp, &config.vips).await?))),
        None => Ok((l2::start_all(&config.vips).await?, None)),
    }
}

impl Running {
    pub async fn start(config: Config) -> Result<Running, DaemonError> {
        let bound = bind_all(
            config.listeners.iter().map(|l| l.bind),
            crate::proxy::workers::count(&config.proxy),
        )?;
        // The admin port too, before anything is announced.
        let admin_socket = match &config.admin {
            Some(a) => Some(listener::bind(a.bind).map_err(|source| DaemonError::Bind {
                addr: a.bind,
                source,
            })?),
            None => None,
        };
        let (announcers, router) = own(&config).await?;
        let shared = Arc::new(ArcSwap::from_pointee(Snapshot::build(&config)));
        let drain = Drain::new();
        let workers = Workers::start(&config.proxy).map_err(DaemonError::Workers)?;
        let listeners = bound
            .into_iter()
            .map(|(addr, l)| ServedListener::spawn(addr, l, &shared, &drain, &workers))
            .collect();
        let (admin_state, admin_reloads) =
            AdminState::new(shared.clone(), drain.clone(), config.clone());
        let admin = admin_socket.map(|l| AdminServer::spawn(l, admin_state.clone()));
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
            reloads: ReloadCount::default(),
            workers,
            admin_state,
            admin,
            admin_reloads: Some(admin_reloads),
        })
    }

    pub fn announced(&self) -> Vec<Ipv4Addr> {
        self.announcers.iter().map(Announcer::vip).collect()
    }

    /// One line for `systemctl status` (sd_notify STATUS=).
    pub fn status(&self) -> String {
        let vips: Vec<String> = match &self.router {
            // Held only while master; the election logs every change of state.
            Some(_) => self
                .config
                .vips
                .iter()
                .map(|v| format!("{} (vrrp)", v.address))
                .collect(),
            None => self.announced().iter().map(ToString::to_string).collect(),
        };
        let mut s = format!(
            "serving: {} VIP(s) [{}], {} listener(s), {} host(s), {} pool(s); {} connection(s)",
            vips.len(),
            vips.join(" "),
            self.listeners.len(),
            self.config.hosts.len(),
            self.config.pools.len(),
            self.drain.active(),
        );
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
        self.drain.start();
        let open = self.drain.active();
        let deadline = if elected {
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
        if let Some(admin) = self.admin.take() {
            admin.stop().await;
        }
        left
    }
}
