//! The daemon: ties config, announcer and proxy together for the `run` and `check` commands.
//!
//! Owns start-up order (bind every listener before announcing anything, so a port conflict
//! never leaves a VIP announced with nobody serving it), the signal handling, and stopping in
//! reverse order (stop answering ARP and remove the route first, then stop accepting).

mod check;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::ha::{HaError, Ownership};
use crate::proxy::{listener, Snapshot};

pub use check::describe;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Announce(#[from] HaError),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] io::Error),
}

/// Run until SIGTERM or SIGINT, then release the VIPs and return.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;

    let mut listeners = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let bound = listener::bind(l.bind).map_err(|source| DaemonError::Bind {
            addr: l.bind,
            source,
        })?;
        listeners.push((l.bind, bound));
    }

    let ownership = Ownership::start(&config).await?;

    let shared = Arc::new(ArcSwap::from_pointee(Snapshot::build(&config)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut accept_tasks = Vec::with_capacity(listeners.len());
    for (addr, l) in listeners {
        info!(%addr, "listening");
        accept_tasks.push(tokio::spawn(listener::serve(
            l,
            shared.clone(),
            stop_rx.clone(),
        )));
    }
    info!(
        vips = config.vips.len(),
        listeners = config.listeners.len(),
        hosts = config.hosts.len(),
        config = %config.source.display(),
        "ready"
    );

    loop {
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => warn!("SIGHUP: configuration reload is not implemented yet; keeping the running configuration"),
        }
    }

    // Stop claiming the VIP first so clients move on while we close the door.
    ownership.stop().await;
    let _ = stop_tx.send(true);
    for t in accept_tasks {
        let _ = t.await;
    }
    info!("stopped");
    Ok(())
}
