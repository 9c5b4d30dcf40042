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
use crate::config::{Config, Vip};
use crate::l2::Announcer;
use crate::proxy::drain::Drain;
use crate::proxy::{listener, Shared, Snapshot};

/// One listening socket being served.
pub(super) struct ServedListener {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ServedListener {
    /// Start accepting on an already bound socket.
    pub fn spawn(addr: SocketAddr, l: TcpListener, shared: &Shared, drain: &Drain) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        info!(%addr, "listening");
        let task = tokio::spawn(listener::serve(
            l,
            addr,
            shared.clone(),
            stop_rx,
            drain.clone(),
        ));
        ServedListener { addr, stop, task }
    }

    /// Stop accepting and close the socket; connections already accepted carry on.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        info!(addr = %self.addr, "stopped listening");
    }
}

/// Bind every address, or none: on failure the sockets bound so far are closed.
pub(super) fn bind_all(
    addrs: impl IntoIterator<Item = SocketAddr>,
) -> Result<Vec<(SocketAddr, TcpListener)>, DaemonError> {
    let mut bound = Vec::new();
    for addr in addrs {
        let l = listener::bind(addr).map_err(|source| DaemonError::Bind { addr, source })?;
        bound.push((addr, l));
    }
    Ok(bound)
}

/// Start announcing every VIP, or none: on failure those started are stopped again.
pub(super) async fn announce_all(vips: &[Vip]) -> Result<Vec<Announcer>, DaemonError> {
    let mut started: Vec<Announcer> = Vec::with_capacity(vips.len());
    for vip in vips {
        match Announcer::start(vip).await {
            Ok(a) => started.push(a),
            Err(e) => {
                release_all(started).await;
                return Err(e.into());
            }
        }
    }
    Ok(started)
}

/// Stop announcing, last started first.
pub(super) async fn release_all(announcers: Vec<Announcer>) {
    for a in announcers.into_iter().rev() {
        release(a).await;
    }
}

pub(super) async fn release(a: Announcer) {
    let vip = a.vip();
    if let Err(e) = a.stop().await {
        error!(%vip, error = %e, "releasing VIP failed");
    }
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
    pub announcers: Vec<Announcer>,
    pub reloads: ReloadCount,
}

impl Running {
    pub async fn start(config: Config) -> Result<Running, DaemonError> {
        let bound = bind_all(config.listeners.iter().map(|l| l.bind))?;
        let announcers = announce_all(&config.vips).await?;
        let shared = Arc::new(ArcSwap::from_pointee(Snapshot::build(&config)));
        let drain = Drain::new();
        let listeners = bound
            .into_iter()
            .map(|(addr, l)| ServedListener::spawn(addr, l, &shared, &drain))
            .collect();
        Ok(Running {
            config,
            shared,
            drain,
            listeners,
            announcers,
            reloads: ReloadCount::default(),
        })
    }

    pub fn announced(&self) -> Vec<Ipv4Addr> {
        self.announcers.iter().map(Announcer::vip).collect()
    }

    /// One line for `systemctl status` (sd_notify STATUS=).
    pub fn status(&self) -> String {
        let vips: Vec<String> = self.announced().iter().map(ToString::to_string).collect();
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
    pub async fn shutdown(mut self) -> usize {
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
        let deadline = self.config.daemon.drain_timeout;
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
        release_all(self.announcers).await;
        left
    }
}
