//! The daemon: ties config, announcer and proxy together for the `run` and `check` commands.
//!
//! Owns the event loop of `run`: signals (SIGHUP reloads, SIGTERM/SIGINT stop), the systemd
//! watchdog keep-alive, and which state is reported to systemd when. What runs and in what order
//! it starts and stops is `running`'s; moving to a new configuration is `reload`'s; the
//! sd_notify wire protocol is `notify`'s; `check`'s printed table is `check`'s; `release`
//! cleans up after a crash.

pub mod admin;
mod check;
pub mod notify;
mod release;
pub mod reload;
mod running;
pub mod status;
mod track;

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::signal::unix::{signal, SignalKind};
use tokio::time::{interval, Interval, MissedTickBehavior};
use tracing::info;

use crate::config::Config;
use crate::ha::HaError;
use crate::l2::L2Error;
use notify::{Notifier, State};
use running::Running;

pub use check::{check, describe};
pub use release::release;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Announce(#[from] L2Error),
    #[error(transparent)]
    Election(#[from] HaError),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] io::Error),
    #[error("cannot start the worker threads: {0}")]
    Workers(#[source] io::Error),
    #[error(transparent)]
    Resolver(#[from] crate::resolve::ResolveError),
}

/// Run until SIGTERM or SIGINT, reloading on SIGHUP; then release the VIPs, drain and return.
/// Notifies systemd when `NOTIFY_SOCKET` is set.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    run_with(config, Notifier::from_env()).await
}

pub async fn run_with(config: Config, notifier: Notifier) -> Result<(), DaemonError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;

    let path = config.source.clone();
    let mut running = Running::start(config).await?;
    info!(
        vips = running.config.vips.len(),
        listeners = running.config.listeners.len(),
        hosts = running.config.hosts.len(),
        config = %path.display(),
        watchdog = ?notifier.watchdog_interval(),
        "ready"
    );
    notifier.notify(State::Ready {
        status: &running.status(),
    });

    let mut watchdog = notifier.watchdog_interval().map(watchdog_timer);
    let mut admin_reloads = running.admin_reloads.take();
    let mut heal = interval(HEAL_PERIOD);
    heal.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut vrrp_status = running
        .router
        .as_ref()
        .and_then(crate::ha::Router::subscribe);
    let mut bgp_status = running.bgp.as_ref().map(crate::bgp::Speaker::subscribe);
    loop {
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => {
                info!(config = %path.display(), "SIGHUP: reloading");
                // Refusals are logged and counted by `reload`; the daemon carries on either way.
                let _ = reload(&mut running, &path, &notifier).await;
                vrrp_status = running.router.as_ref().and_then(crate::ha::Router::subscribe);
                bgp_status = running.bgp.as_ref().map(crate::bgp::Speaker::subscribe);
            }
            Some(reply) = next_reload_request(&mut admin_reloads) => {
                info!(config = %path.display(), "POST /reload: reloading");
                let outcome = reload(&mut running, &path, &notifier).await;
                let _ = reply.send(outcome);
                vrrp_status = running.router.as_ref().and_then(crate::ha::Router::subscribe);
                bgp_status = running.bgp.as_ref().map(crate::bgp::Speaker::subscribe);
            }
            // The election's state or priority changed: systemctl status shows it.
            alive = changed(&mut vrrp_status) => {
                if alive {
                    notifier.notify(State::Status { status: &running.status() });
                } else {
                    vrrp_status = None;
                }
            }
            // A backend name's addresses changed: the pools follow, without a reload.
            _ = running.resolver.changed() => running.apply_answers(),
            // The BGP VIPs were announced or withdrawn: so does the status line.
            alive = changed(&mut bgp_status) => {
                if alive {
                    notifier.notify(State::Status { status: &running.status() });
                } else {
                    bgp_status = None;
                }
            }
            _ = heal.tick() => {
                if running.has_unserved_listeners() {
                    running.heal_listeners().await;
                    notifier.notify(State::Status { status: &running.status() });
                }
            }
            // From this loop and not a timer task of its own, so a stuck loop stops the
            // keep-alives and systemd restarts us.
            _ = tick(&mut watchdog) => notifier.notify(State::Watchdog),
        }
    }

    notifier.notify(State::Stopping {
        status: &format!(
            "stopping: draining {} connection(s)",
            running.drain.active()
        ),
    });
    let left = with_watchdog(&notifier, watchdog, running.shutdown()).await;
    info!(connections_cut = left, "stopped");
    Ok(())
}

/// Reload as SIGHUP and `POST /reload` both do, telling systemd around it.
async fn reload(
    running: &mut Running,
    path: &std::path::Path,
    notifier: &Notifier,
) -> admin::ReloadOutcome {
    notifier.notify(State::Reloading);
    let outcome = running
        .reload(path)
        .await
        .map(|plan| plan.summary())
        .map_err(|e| e.to_string());
    running.admin_state.history.reload(&outcome);
    notifier.notify(State::Ready {
        status: &running.status(),
    });
    outcome
}

/// The next `POST /reload`, or never when the admin listener is off.
async fn next_reload_request(
    rx: &mut Option<tokio::sync::mpsc::Receiver<admin::ReloadRequest>>,
) -> Option<admin::ReloadRequest> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// How often a listener that is not served (not bound, or its accept loop ended) is retried.
const HEAL_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// The next change of a watched value: `true`, or `false` once its sender is gone; never
/// without one.
async fn changed<T>(rx: &mut Option<tokio::sync::watch::Receiver<T>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

fn watchdog_timer(period: std::time::Duration) -> Interval {
    let mut t = interval(period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

async fn tick(t: &mut Option<Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Keep the watchdog fed while a drain runs (it may take up to `drain_timeout_ms`).
async fn with_watchdog<F: Future>(
    notifier: &Notifier,
    mut watchdog: Option<Interval>,
    fut: F,
) -> F::Output {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick(&mut watchdog) => notifier.notify(State::Watchdog),
        }
    }
}
