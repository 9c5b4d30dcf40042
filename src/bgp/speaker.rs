//! The running BGP announcement: the reconcile loop that makes the kernel table hold exactly
//! the VIPs this node should announce, and the local routes that deliver them.
//!
//! Owns: the local route (`local VIP/32 dev lo`) of every BGP VIP from start to stop (also
//! while withdrawn: connections the router sent before a withdrawal finish), the ARP sysctls
//! on `all` (the kernel must not answer ARP for a BGP VIP on any interface), polling the tracked
//! conditions through the [`Gate`] once per `check_interval`, re-asserting the table then
//! (whatever removed or added a route there: a restart, an operator), looking at BIRD once a
//! second when `bird_socket` is set (sessions for metrics; `enable` of vipgate's kernel
//! protocol when it is not up), withdrawing first on stop, and VIPs leaving the configuration
//! on reload (withdrawn at once, delivered until the drain time has passed). Does not own the
//! hysteresis (`gate`), the control socket's format (`bird`) or netlink (`l2::route`).
//!
//! It runs on the daemon's runtime: nothing here is timed finer than a check interval, and BFD
//! (sub-second failure detection) is BIRD's, which runs in its own process.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::gate::{diff, Gate, Why};
use super::metrics::{bgp_metrics, BgpSession, BgpStatus};
use super::{bird, device};
use crate::config::Bgp;
use crate::ha::track::{Probe, Tracked};
use crate::l2::{route, L2Error};

/// How often BIRD is looked at (when `bird_socket` is set): a session's state is for metrics,
/// and re-enabling a protocol someone disabled need not be faster.
const BIRD_PERIOD: Duration = Duration::from_secs(1);

enum Command {
    /// A reload: the new settings; VIPs no longer in them are withdrawn now and delivered until
    /// `drain` has passed.
    Reload { bgp: Bgp, drain: Duration },
    /// Withdraw everything for good; answered once the table no longer holds them.
    Withdraw(oneshot::Sender<()>),
}

/// The running announcement. Withdraw with [`Speaker::withdraw`], end with [`Speaker::stop`].
pub struct Speaker {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<Loop>,
    /// Why the VIPs are announced or not ([`Why::as_str`]), changed on every transition.
    why: watch::Receiver<&'static str>,
}

impl Speaker {
    /// Installs the local routes of `bgp.vips` (replacing stale ones of ours) and the ARP
    /// sysctls, then starts the loop. Nothing is announced before `rise` good checks; the
    /// daemon starts this after its listeners are bound.
    pub async fn start(bgp: &Bgp, probe: Probe) -> Result<Speaker, L2Error> {
        if bgp.vips.iter().any(IpAddr::is_ipv4) {
            route::set_arp_sysctls("all")?;
        }
        let mut delivered = Vec::new();
        for vip in &bgp.vips {
            if let Err(e) = deliver(*vip).await {
                for v in delivered {
                    let _ = route::remove_local_route(v).await;
                }
                return Err(e);
            }
            delivered.push(*vip);
        }
        // Start withdrawn, whatever an earlier run left (on another device, perhaps).
        for vip in &bgp.vips {
            route::remove_table_route(*vip, bgp.table).await?;
        }
        let device = match device::open().await {
            Ok(d) => {
                info!(device = device::NAME, index = d.index,
                    "announcement routes on a device of this process: they go when it ends, a crash included");
                Some(d)
            }
            Err(e) => {
                warn!(device = device::NAME, error = %e,
                    "no TUN device (needs /dev/net/tun): announcement routes on lo, where a crash leaves them until `vipgate release`");
                None
            }
        };
        let mut lp = Loop {
            device,
            tracked: Tracked::new(bgp.track.clone(), probe),
            gate: Gate::new(bgp.rise, bgp.fall),
            bgp: bgp.clone(),
            leaving: Vec::new(),
            status: BgpStatus::default(),
            table_error: false,
            expect_change: true,
            why: watch::channel(Why::Rising.as_str()).0,
        };
        lp.reconcile().await;
        info!(vips = ?bgp.vips, table = bgp.table, rise = bgp.rise, fall = bgp.fall,
            check_interval = ?bgp.check_interval, tracks = bgp.track.len(),
            bird_socket = ?bgp.bird_socket, "BGP announcements started (withdrawn until healthy)");
        let (commands, rx) = mpsc::channel(4);
        let why = lp.why.subscribe();
        let task = tokio::spawn(lp.run(rx));
        Ok(Speaker {
            commands,
            task,
            why,
        })
    }

    /// Changes whenever the announcement changes (announced, withdrawn and why): for the
    /// status line. Marked seen when returned.
    pub fn subscribe(&self) -> watch::Receiver<&'static str> {
        let mut rx = self.why.clone();
        rx.mark_unchanged();
        rx
    }

    /// A reload with these settings (`drain`: how long VIPs leaving the configuration stay
    /// delivered after their withdrawal).
    pub async fn reload(&self, bgp: Bgp, drain: Duration) {
        let _ = self.commands.send(Command::Reload { bgp, drain }).await;
    }

    /// Withdraws every VIP from the table now and for good (the start of a graceful stop);
    /// returns once they are gone from it. The local routes stay until [`Speaker::stop`].
    pub async fn withdraw(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Withdraw(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Withdraws (if not yet) and removes the local routes: after the drain.
    pub async fn stop(self) {
        self.withdraw().await;
        drop(self.commands);
        match self.task.await {
            Ok(lp) => lp.undeliver_all().await,
            Err(e) => error!(error = %e, "the BGP task failed"),
        }
    }
}

/// Installs the local route of `vip`, replacing a stale one of ours.
async fn deliver(vip: IpAddr) -> Result<(), L2Error> {
    if route::remove_local_route(vip).await? {
        info!(%vip, "removed a stale local route left by an earlier run");
    }
    route::install_local_route(vip).await
}

struct Loop {
    /// What the table routes point at (`None`: lo); dropped last, with the loop.
    device: Option<device::Device>,
    bgp: Bgp,
    tracked: Tracked,
    gate: Gate,
    /// VIPs removed by a reload, delivered until the instant.
    leaving: Vec<(IpAddr, Instant)>,
    status: BgpStatus,
    /// The last table operation failed (logged once until one succeeds).
    table_error: bool,
    /// The wanted routes changed since the last reconcile (a transition, a reload): changes
    /// to the table are ours, not a re-assertion.
    expect_change: bool,
    /// The gate's reason, published when it changes (the daemon's status line).
    why: watch::Sender<&'static str>,
}

impl Loop {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) -> Loop {
        let mut check = tokio::time::interval(self.bgp.check_interval);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // BIRD is looked at by a task of its own: a BIRD that answers slowly (up to the query
        // timeout) must never delay a check, which is what withdraws a failing node.
        let (socket_tx, socket_rx) = watch::channel(
            self.bgp
                .bird_socket
                .clone()
                .map(|s| (s, self.bgp.bird_protocol.clone())),
        );
        let (seen_tx, mut seen_rx) = mpsc::channel(1);
        let looker = tokio::spawn(look_at_bird(socket_rx, seen_tx));
        loop {
            tokio::select! {
                c = commands.recv() => match c {
                    None => break,
                    Some(Command::Withdraw(done)) => {
                        if self.gate.stop() {
                            self.expect_change = true;
                            info!(vips = ?self.bgp.vips, "withdrawing the BGP VIPs (stopping)");
                            bgp_metrics().transition();
                        }
                        self.reconcile().await;
                        let _ = done.send(());
                    }
                    Some(Command::Reload { bgp, drain }) => {
                        self.reload(bgp, drain).await;
                        socket_tx.send_replace(self.bgp.bird_socket.clone().map(|s| (s, self.bgp.bird_protocol.clone())));
                        check = tokio::time::interval(self.bgp.check_interval);
                        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                },
                _ = check.tick() => self.check().await,
                Some(seen) = seen_rx.recv() => self.bird_seen(seen),
            }
        }
        looker.abort();
        self
    }

    async fn check(&mut self) {
        let started = Instant::now();
        self.check_once().await;
        if started.elapsed() > self.bgp.check_interval {
            warn!(took = ?started.elapsed(), check_interval = ?self.bgp.check_interval,
                "a BGP check took longer than its interval (netlink slow?)");
        }
    }

    async fn check_once(&mut self) {
        self.tracked.poll();
        let failed = self.tracked.failed();
        if self.gate.check(failed.is_empty()) {
            self.expect_change = true;
            bgp_metrics().transition();
            if self.gate.why().announced() {
                info!(vips = ?self.bgp.vips, rise = self.bgp.rise, "announcing the BGP VIPs");
            } else {
                warn!(vips = ?self.bgp.vips, ?failed, fall = self.bgp.fall,
                    "withdrawing the BGP VIPs: a tracked condition failed");
            }
        }
        let now = Instant::now();
        let mut ended = Vec::new();
        self.leaving.retain(|(vip, until)| {
            let keep = *until > now;
            if !keep {
                ended.push(*vip);
            }
            keep
        });
        for vip in ended {
            match route::remove_local_route(vip).await {
                Ok(_) => {
                    info!(%vip, "the removed VIP's drain time passed; its local route is gone")
                }
                Err(e) => error!(%vip, error = %e, "removing the local route failed"),
            }
        }
        self.reconcile().await;
    }

    /// Makes the table hold exactly what the gate wants, and publishes the state.
    async fn reconcile(&mut self) {
        let wanted: BTreeSet<IpAddr> = if self.gate.why().announced() {
            self.bgp.vips.iter().copied().collect()
        } else {
            BTreeSet::new()
        };
        let result = async {
            let present: BTreeSet<IpAddr> = route::table_routes(self.bgp.table)
                .await?
                .into_iter()
                .collect();
            let (add, remove) = diff(&wanted, &present);
            for vip in &remove {
                route::remove_table_route(*vip, self.bgp.table).await?;
            }
            for vip in &add {
                let oif = self.device.as_ref().map(|d| d.index);
                route::install_table_route(*vip, self.bgp.table, oif).await?;
            }
            Ok::<_, L2Error>((add, remove))
        }
        .await;
        let present: BTreeSet<IpAddr> = match result {
            Ok((add, remove)) => {
                if self.table_error {
                    info!(
                        table = self.bgp.table,
                        "the announcement table is writable again"
                    );
                    self.table_error = false;
                }
                // Routes changed that the loop did not change: someone else touched the table
                // (or BIRD, or an earlier run of vipgate).
                if !self.expect_change && (!add.is_empty() || !remove.is_empty()) {
                    warn!(table = self.bgp.table, added = ?add, removed = ?remove,
                        "re-asserted the announcement table (changed from outside vipgate)");
                }
                self.expect_change = false;
                wanted.clone()
            }
            Err(e) => {
                if !self.table_error {
                    error!(error = %e, "cannot update the announcement table; retrying every check");
                    self.table_error = true;
                }
                BTreeSet::new()
            }
        };
        self.status.why = self.gate.why().as_str();
        self.status.announced = self
            .bgp
            .vips
            .iter()
            .map(|v| (*v, present.contains(v)))
            .collect();
        self.status.tracks = self.tracked.states();
        bgp_metrics().set(self.status.clone());
        // After the metrics: the status line reads them when this wakes it.
        let why = self.status.why;
        self.why
            .send_if_modified(|w| std::mem::replace(w, why) != why);
    }

    /// What the BIRD looker found (`None`: `bird_socket` is not set any more).
    fn bird_seen(&mut self, seen: Option<Result<bird::Seen, String>>) {
        let Some(seen) = seen else {
            self.status.bird = None;
            bgp_metrics().set(self.status.clone());
            return;
        };
        let now = seen.map(|seen| {
            if seen.reenabled {
                warn!(protocol = %self.bgp.bird_protocol,
                    "BIRD's kernel protocol for vipgate's table was not up; enabled it");
                self.status.reenabled += 1;
            }
            seen.protocols
                .into_iter()
                .filter(bird::Protocol::is_bgp)
                .map(|p| BgpSession {
                    established: p.is_up() && p.info.starts_with("Established"),
                    name: p.name,
                    info: p.info,
                })
                .collect::<Vec<_>>()
        });
        log_bird_change(self.status.bird.as_ref(), &now);
        self.status.bird = Some(now);
        bgp_metrics().set(self.status.clone());
    }

    async fn reload(&mut self, bgp: Bgp, drain: Duration) {
        let until = Instant::now() + drain;
        for vip in bgp.vips.iter().filter(|v| !self.bgp.vips.contains(v)) {
            // A VIP that comes back while still leaving keeps its route.
            self.leaving.retain(|(v, _)| v != vip);
            if let Err(e) = deliver(*vip).await {
                error!(%vip, error = %e, "cannot deliver the added BGP VIP; it is not announced");
            }
        }
        for vip in self.bgp.vips.iter().filter(|v| !bgp.vips.contains(v)) {
            info!(%vip, ?drain, "VIP removed from the configuration: withdrawn now, delivered for the drain time");
            self.leaving.push((*vip, until));
        }
        if bgp.table != self.bgp.table {
            for vip in std::mem::take(&mut self.status.announced) {
                let _ = route::remove_table_route(vip.0, self.bgp.table).await;
            }
        }
        // The state stays; the new counts apply from the next check.
        self.gate.set_counts(bgp.rise, bgp.fall);
        if bgp.track != self.bgp.track {
            self.tracked.set_tracks(bgp.track.clone());
        }
        self.bgp = bgp;
        self.expect_change = true;
        self.reconcile().await;
    }

    /// Removes the local routes (the drain is over) and what the table still holds of ours.
    async fn undeliver_all(self) {
        for vip in self
            .bgp
            .vips
            .iter()
            .copied()
            .chain(self.leaving.iter().map(|(v, _)| *v))
        {
            let _ = route::remove_table_route(vip, self.bgp.table).await;
            if let Err(e) = route::remove_local_route(vip).await {
                error!(%vip, error = %e, "removing the local route failed");
            }
        }
        info!(vips = ?self.bgp.vips, "BGP VIPs released");
    }
}

/// Looks at BIRD every [`BIRD_PERIOD`] while a socket is set, and sends what it found.
async fn look_at_bird(
    mut socket: watch::Receiver<Option<(std::path::PathBuf, String)>>,
    seen: mpsc::Sender<Option<Result<bird::Seen, String>>>,
) {
    let mut tick = tokio::time::interval(BIRD_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = socket.changed() => if r.is_err() { return },
        }
        let target = socket.borrow_and_update().clone();
        let found = match target {
            Some((path, protocol)) => Some(
                bird::query(&path, &protocol)
                    .await
                    .map_err(|e| e.to_string()),
            ),
            None => None,
        };
        if seen.send(found).await.is_err() {
            return;
        }
    }
}

fn log_bird_change(
    before: Option<&Result<Vec<BgpSession>, String>>,
    now: &Result<Vec<BgpSession>, String>,
) {
    match (before, now) {
        (Some(Err(a)), Err(b)) if a == b => {}
        (_, Err(e)) => warn!(error = %e, "BIRD cannot be read"),
        (before, Ok(sessions)) => {
            for s in sessions {
                let was = match before {
                    Some(Ok(old)) => old.iter().find(|o| o.name == s.name).map(|o| o.established),
                    _ => None,
                };
                if was != Some(s.established) {
                    if s.established {
                        info!(session = %s.name, "BGP session established (seen in BIRD)");
                    } else {
                        warn!(session = %s.name, info = %s.info, "BGP session not established (seen in BIRD)");
                    }
                }
            }
        }
    }
}

/// Removes what a run that died left for `bgp`'s VIPs: their table routes and local routes.
/// Returns, per VIP, whether anything was removed.
pub async fn release(bgp: &Bgp) -> Result<Vec<(IpAddr, bool)>, L2Error> {
    let mut out = Vec::with_capacity(bgp.vips.len());
    for vip in &bgp.vips {
        let announced = route::remove_table_route(*vip, bgp.table).await?;
        let local = route::remove_local_route(*vip).await?;
        out.push((*vip, announced || local));
    }
    Ok(out)
}
