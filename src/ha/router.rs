//! The running VRRPv3 virtual routers: the election loop and the task that takes and gives up
//! the VIPs when its state changes. A node whose VIPs are of both families runs one virtual
//! router per family with the same `[vrrp]` settings (as keepalived runs one `vrrp_instance`
//! per family): VRRP for IPv4 and for IPv6 are separate protocols on the wire (RFC 9568
//! section 4.2), and each elects its own master.
//!
//! Owns: feeding the [`Machine`] with adverts and timer expiries, the receive checks that need
//! configuration (our VRID, our own adverts, unicast peers only, the announced addresses),
//! sending adverts, the graceful hand-over on stop and on a tracked fault, and polling the
//! tracked conditions and the interface's link once per advert interval (without a link the
//! router is in Fault and sends nothing; `link` says why). Does not own: the election rules
//! (`machine`), what tracking makes of the priority (`track`), the wire format (`packet`), the
//! sockets (`socket`) or ARP (`l2`).
//!
//! Two tasks on two threads of their own (`thread`), never on a proxy worker: the elections
//! run on `vipgate-vrrp` and the holders on `vipgate-vip`, so neither the proxy's load nor
//! taking the VIPs (netlink, sysctls, a packet socket: milliseconds) delays an advert or the
//! reading of one. The election loop publishes "should hold the VIPs" on a watch channel and
//! the holder task starts or stops the [`Announcer`]s to match. An advert that arrives while
//! the loop is busy is read before a timer is acted on, so a late read can never look like a
//! dead master. What the election reads from the rest of the daemon (the tracking probe, the
//! metrics it writes) is atomics or a lock held for a few instructions, never one the proxy
//! or a `/metrics` scrape holds across I/O.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::num::NonZeroU8;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, trace, warn};

use super::link;
use super::machine::{Effective, Event, Heard, Machine, Params, State, Step};
use super::socket::{Datagram, V6Meta, VrrpSocket};
use super::thread::Loop;
use super::track::{Probe, Tracked};
use super::HaError;
use crate::config::{Track, Vip, Vrrp};
use crate::l2::{self, Announcer};
use crate::wire::vrrp::{self, AdvertRepr, Received};

/// At most one warning per kind of bad advert per this period: a misconfigured neighbour
/// sending ten adverts a second must not flood the log.
const WARN_PERIOD: Duration = Duration::from_secs(10);
/// Pause after a socket error, so an error that keeps coming back cannot spin the loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// How often the holder retries taking the VIPs after a failure, while still master.
const RETRY_TAKE: Duration = Duration::from_secs(1);
/// On a graceful stop, how much longer than one advert interval to wait for a backup to take
/// over before giving up the VIPs anyway: its Skew_Time is under one interval.
const HANDOVER_MARGIN: Duration = Duration::from_millis(50);
/// After the successor's advert, how long to wait for its gratuitous ARPs: it sends them as
/// soon as it has installed its route, milliseconds later.
const HANDOVER_GARP_WAIT: Duration = Duration::from_millis(200);
const HANDOVER_POLL: Duration = Duration::from_millis(1);
/// Largest datagram read: IPv4 header with options and the largest advert.
const RECV_LEN: usize = 60 + vrrp::MAX_LEN;

/// The running virtual routers, one per address family of the VIPs. Stop them with
/// [`Router::stop`].
pub struct Router {
    elections: Vec<Running>,
    /// After `elections`: dropped once their tasks have ended.
    threads: Threads,
}

/// The threads the elections and the holders run on.
struct Threads {
    election: Loop,
    holder: Loop,
}

/// One virtual router's election task.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    tracks: watch::Sender<Vec<Track>>,
    status: watch::Receiver<(State, u8)>,
}

impl Router {
    /// Opens the VRRP sockets, removes any local route a crashed earlier run left for the VIPs
    /// (this node starts as backup and must not accept the VIPs' traffic), and starts the
    /// election: one virtual router for the IPv4 VIPs and one for the IPv6 VIPs, each only if
    /// there are such VIPs. The VIPs are taken only once this node becomes master. `probe` tells
    /// whether a `[[vrrp.track]]` condition holds; each virtual router asks it once per advert
    /// interval, so both families lower their priority together.
    pub async fn start(vrrp: &Vrrp, vips: &[Vip], probe: Probe) -> Result<Router, HaError> {
        let threads = Threads {
            election: Loop::spawn("vipgate-vrrp").map_err(HaError::Thread)?,
            holder: Loop::spawn("vipgate-vip").map_err(HaError::Thread)?,
        };
        let mut router = Router {
            elections: Vec::with_capacity(2),
            threads,
        };
        for v6 in [false, true] {
            let family: Vec<Vip> = vips
                .iter()
                .filter(|v| v.address.is_ipv6() == v6)
                .cloned()
                .collect();
            if family.is_empty() {
                continue;
            }
            // Opened on the election thread: the receiving socket belongs to its reactor.
            let started = router
                .threads
                .election
                .handle()
                .spawn(start_one(
                    vrrp.clone(),
                    family,
                    probe.clone(),
                    router.threads.holder.handle().clone(),
                ))
                .await
                .unwrap_or_else(|e| Err(HaError::Thread(io::Error::other(e))));
            match started {
                Ok(running) => router.elections.push(running),
                Err(e) => {
                    router.stop().await;
                    return Err(e);
                }
            }
        }
        Ok(router)
    }

    /// Track these conditions from now on (a reload that changed only `[[vrrp.track]]`); the
    /// elections go on, with the priority they make at once.
    pub fn set_tracks(&self, tracks: Vec<Track>) {
        for e in &self.elections {
            e.tracks.send_replace(tracks.clone());
        }
    }

    /// The state and the advertised priority (0 in fault) of the first virtual router (IPv4
    /// when there are IPv4 VIPs), changed whenever either changes. Tracking moves both
    /// families together, so one is enough to know when to refresh the status line.
    pub fn subscribe(&self) -> Option<watch::Receiver<(State, u8)>> {
        let mut rx = self.elections.first()?.status.clone();
        rx.mark_unchanged();
        Some(rx)
    }

    /// Leaves the election: as master, sends a priority 0 advert and keeps the VIPs until a
    /// backup announces itself (at most one advert interval and a little), then gives them up.
    /// Both families hand over at the same time.
    pub async fn stop(mut self) {
        for e in &mut self.elections {
            if let Some(stop) = e.stop.take() {
                let _ = stop.send(());
            }
        }
        for e in self.elections {
            if let Err(e) = e.task.await {
                error!(error = %e, "the VRRP task failed");
            }
        }
    }
}

/// Starts the virtual router of `vips`, which are all of one family, on the current runtime
/// (the election thread's); its holder goes to `holder`.
async fn start_one(
    vrrp: Vrrp,
    vips: Vec<Vip>,
    probe: Probe,
    holder: tokio::runtime::Handle,
) -> Result<Running, HaError> {
    {
        let v6 = vips.first().is_some_and(|v| v.address.is_ipv6());
        let (index, primary) = interface_source(&vrrp.interface, v6)?;
        let peers: Vec<IpAddr> = vrrp
            .peers
            .iter()
            .copied()
            .filter(|p| p.is_ipv6() == v6)
            .collect();
        let socket =
            VrrpSocket::open(&vrrp.interface, index, primary, &peers).map_err(|source| {
                HaError::Socket {
                    interface: vrrp.interface.clone(),
                    source,
                }
            })?;
        for vip in &vips {
            l2::release(vip).await?;
        }

        let params = Params {
            priority: vrrp.priority.get(),
            advert_interval: vrrp.advert_interval.duration(),
            preempt: vrrp.preempt,
            preempt_delay: vrrp.preempt_delay,
            startup_listen: vrrp.startup_listen,
            primary_ip: primary,
        };
        let addresses: Vec<IpAddr> = vips.iter().map(|v| v.address).collect();
        let (hold_tx, hold_rx) = watch::channel(Hold::default());
        let holder = holder.spawn(hold(vips.clone(), hold_rx, vrrp.garp_refresh));
        let (tracks_tx, tracks_rx) = watch::channel(vrrp.track.clone());
        let (status_tx, status_rx) = watch::channel((State::Initialize, params.priority));
        let election = Election {
            machine: Machine::new(params),
            socket,
            vrid: vrrp.vrid.get(),
            interval_cs: vrrp.advert_interval.centiseconds(),
            addresses: addresses.clone(),
            address_set: addresses.into_iter().collect(),
            peers: peers.clone(),
            hold: hold_tx,
            warned: Warned::default(),
            base_priority: vrrp.priority,
            interface: vrrp.interface.clone(),
            link_up: true,
            tracked: Tracked::new(vrrp.track.clone(), probe),
            tracks: Some(tracks_rx),
            status: status_tx,
        };
        info!(interface = %vrrp.interface, source = %primary, vrid = vrrp.vrid.get(),
            priority = params.priority, advert_interval = ?params.advert_interval,
            preempt = params.preempt, preempt_delay = ?params.preempt_delay,
            startup_listen = ?params.startup_listen,
            peers = ?peers, family = if v6 { "IPv6" } else { "IPv4" },
            tracks = vrrp.track.len(), "VRRP started, as backup");
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(election.run(stop_rx, holder));
        Ok(Running {
            stop: Some(stop_tx),
            task,
            tracks: tracks_tx,
            status: status_rx,
        })
    }
}

/// The interface's index and the source of our adverts, which is also the tie-break (RFC 9568
/// calls it the primary address): its first IPv4 address, or for IPv6 its link-local address
/// (section 5.1.2.1).
fn interface_source(name: &str, v6: bool) -> Result<(u32, IpAddr), HaError> {
    let iface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| HaError::InterfaceNotFound {
            interface: name.to_owned(),
        })?;
    let ip = iface.ips.iter().map(|n| n.ip()).find(|ip| match ip {
        IpAddr::V4(_) => !v6,
        IpAddr::V6(a) => v6 && a.is_unicast_link_local(),
    });
    match ip {
        Some(ip) => Ok((iface.index, ip)),
        None if v6 => Err(HaError::NoLinkLocal {
            interface: name.to_owned(),
        }),
        None => Err(HaError::NoIpv4 {
            interface: name.to_owned(),
        }),
    }
}

/// When each kind of warning was last logged.
#[derive(Default)]
struct Warned {
    invalid: Option<Instant>,
    stranger: Option<Instant>,
    addresses: Option<Instant>,
    send: Option<Instant>,
}

fn due(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_none_or(|t| now.duration_since(t) >= WARN_PERIOD) {
        *last = Some(now);
        true
    } else {
        false
    }
}

enum Wake {
    Stop,
    Datagram(io::Result<Datagram>),
    Timer,
    Poll,
    Tracks(bool),
}

struct Election {
    machine: Machine,
    socket: VrrpSocket,
    vrid: u8,
    interval_cs: u16,
    /// The VIPs, in the order adverts carry them.
    addresses: Vec<IpAddr>,
    address_set: BTreeSet<IpAddr>,
    /// The unicast peers of this family.
    peers: Vec<IpAddr>,
    hold: watch::Sender<Hold>,
    warned: Warned,
    base_priority: NonZeroU8,
    interface: String,
    /// The interface had a carrier at the last look (or it cannot be told).
    link_up: bool,
    tracked: Tracked,
    /// New `[[vrrp.track]]` lists from reloads; `None` once the [`Router`] is gone.
    tracks: Option<watch::Receiver<Vec<Track>>>,
    status: watch::Sender<(State, u8)>,
}

/// What the election asks of the holder task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Hold {
    /// Hold the VIPs (master) or not.
    master: bool,
    /// Bumped to ask for one gratuitous ARP per VIP now.
    reassert: u64,
    /// With `master` false: a successor has advertised; keep answering until its gratuitous
    /// ARPs are seen, so clients never ask in a moment when nobody answers.
    handover: bool,
}

impl Election {
    async fn run(mut self, mut stop: oneshot::Receiver<()>, holder: JoinHandle<()>) {
        let mut buf = vec![0u8; RECV_LEN];
        // A condition that already holds counts from the start: a faulty node never becomes
        // master, not even once.
        self.tracked.poll();
        self.check_link();
        self.retrack("start-up");
        self.apply(Event::Startup, "start-up");
        let mut poll = tokio::time::interval(self.machine.params().advert_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.machine.deadline().map(tokio::time::Instant::from_std);
            let wake = tokio::select! {
                biased;
                _ = &mut stop => Wake::Stop,
                r = self.socket.recv(&mut buf) => Wake::Datagram(r),
                _ = sleep_until(deadline) => Wake::Timer,
                _ = poll.tick() => Wake::Poll,
                r = tracks_changed(&mut self.tracks) => Wake::Tracks(r),
            };
            match wake {
                Wake::Stop => break,
                Wake::Datagram(Ok(d)) => self.datagram(&buf, d),
                Wake::Datagram(Err(e)) => {
                    warn!(error = %e, "reading VRRP adverts failed; retrying");
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
                Wake::Timer => {
                    self.drain(&mut buf);
                    self.apply(Event::Timer, "timer");
                }
                Wake::Poll => {
                    let tracks = self.tracked.poll();
                    if self.check_link() {
                        self.retrack("link");
                    } else if tracks {
                        self.retrack("tracking");
                    }
                }
                Wake::Tracks(true) => {
                    if let Some(rx) = &mut self.tracks {
                        let tracks = rx.borrow_and_update().clone();
                        info!(tracks = tracks.len(), "VRRP tracking reloaded");
                        self.tracked.set_tracks(tracks);
                        self.tracked.poll();
                        self.retrack("reload");
                    }
                }
                Wake::Tracks(false) => self.tracks = None,
            }
        }

        let was_master = self.machine.state() == State::Master;
        self.apply(Event::Shutdown, "stop");
        let handover = was_master && self.await_successor(&mut buf).await;
        self.hold.send_modify(|h| {
            h.master = false;
            h.handover = handover;
        });
        drop(self.hold);
        if let Err(e) = holder.await {
            error!(error = %e, "the VIP holder task failed");
        }
        info!("VRRP stopped");
    }

    /// After our priority 0 advert: keep the VIPs until another router advertises as master
    /// (it sends its gratuitous ARPs right after), so clients are never left without an
    /// answerer; at most one advert interval and a margin, in case there is no backup.
    /// Returns whether one did.
    async fn await_successor(&mut self, buf: &mut [u8]) -> bool {
        let started = Instant::now();
        let limit = self.machine.params().advert_interval + HANDOVER_MARGIN;
        let until = tokio::time::Instant::from_std(started + limit);
        loop {
            let read = tokio::select! {
                r = self.socket.recv(buf) => r,
                _ = tokio::time::sleep_until(until) => {
                    info!(waited = ?limit, "no backup took over; releasing the VIPs");
                    return false;
                }
            };
            let Ok(d) = read else { continue };
            if let Some(heard) = self.accept(buf, d) {
                if heard.priority > 0 {
                    info!(successor = %heard.src, priority = heard.priority,
                        after = ?started.elapsed(), "a backup took over");
                    return true;
                }
            }
        }
    }

    /// Reads every advert already queued, so a timer is only acted on after them.
    fn drain(&mut self, buf: &mut [u8]) {
        loop {
            match self.socket.try_recv(buf) {
                Ok(d) => self.datagram(buf, d),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    debug!(error = %e, "reading queued VRRP adverts failed");
                    return;
                }
            }
        }
    }

    fn datagram(&mut self, buf: &[u8], d: Datagram) {
        if let Some(heard) = self.accept(buf, d) {
            self.apply(Event::Advert(heard), "advert");
        }
    }

    /// The receive checks that need our configuration; `None` for adverts to ignore. `buf`
    /// holds the datagram `d` describes.
    fn accept(&mut self, buf: &[u8], d: Datagram) -> Option<Heard> {
        let bytes = buf.get(..d.len).unwrap_or(buf);
        let parsed = match d.v6 {
            None => vrrp::parse_datagram(bytes),
            Some(V6Meta {
                src,
                dst,
                hop_limit,
            }) => vrrp::parse_v6(bytes, src, dst, hop_limit),
        };
        let Received { src, dst, advert } = match parsed {
            Ok(r) => r,
            Err(e) => {
                if due(&mut self.warned.invalid) {
                    warn!(error = %e, "invalid VRRP packet dropped");
                } else {
                    debug!(error = %e, "invalid VRRP packet dropped");
                }
                return None;
            }
        };
        if advert.vrid != self.vrid {
            trace!(%src, vrid = advert.vrid, "advert for another virtual router ignored");
            return None;
        }
        if src == self.socket.source() {
            return None;
        }
        if !self.peers.is_empty() && !self.peers.contains(&src) {
            if due(&mut self.warned.stranger) {
                warn!(%src, %dst, "advert from a router that is not in `peers` dropped");
            }
            return None;
        }
        if advert.interval_cs == 0 {
            if due(&mut self.warned.invalid) {
                warn!(%src, "advert with a zero interval dropped");
            }
            return None;
        }
        if advert.addresses.iter().copied().collect::<BTreeSet<_>>() != self.address_set
            && due(&mut self.warned.addresses)
        {
            // RFC 9568 7.1: log it; the election still counts the advert, as keepalived does.
            warn!(%src, theirs = ?advert.addresses, ours = ?self.addresses,
                "a router of the same VRID announces other addresses: misconfiguration");
        }
        Some(Heard {
            src,
            priority: advert.priority,
            interval: Duration::from_millis(u64::from(advert.interval_cs) * 10),
        })
    }

    /// Looks at the interface's carrier; returns whether it changed.
    fn check_link(&mut self) -> bool {
        let up = link::carrier(&self.interface) != Some(false);
        if up == self.link_up {
            return false;
        }
        self.link_up = up;
        if up {
            info!(interface = %self.interface, "VRRP interface has its link back; rejoining the election as backup");
        } else {
            warn!(interface = %self.interface, "VRRP interface lost its link; leaving the election (fault) until it returns");
        }
        true
    }

    /// Runs the election with the priority the tracked conditions and the link make now.
    fn retrack(&mut self, cause: &'static str) {
        let before = self.machine.state();
        let was = self.machine.priority();
        let effective = if self.link_up {
            self.tracked.effective(self.base_priority)
        } else {
            Effective::Fault
        };
        let step = self.machine.set_effective(Instant::now(), effective);
        let now = self.machine.priority();
        super::metrics::vrrp().tracking(now, self.tracked.states());
        if now != was {
            let failed = self.tracked.failed();
            info!(priority = now, configured = self.base_priority.get(), ?failed,
                state = ?self.machine.state(), "VRRP priority changed");
        }
        self.act(before, step, None, cause);
    }

    fn apply(&mut self, event: Event, cause: &'static str) {
        let before = self.machine.state();
        let step = self.machine.handle(Instant::now(), event);
        self.act(before, step, Some(event), cause);
    }

    /// Carries out what the machine asked for after `event` (`None`: a change of priority).
    fn act(&mut self, before: State, step: Step, event: Option<Event>, cause: &'static str) {
        let Step {
            send,
            became,
            reassert,
        } = step;
        if let Some(state) = became {
            // Telemetry hook: vipgate_vrrp_state and vipgate_vrrp_transitions_total.
            let v6 = self.addresses.first().is_some_and(IpAddr::is_ipv6);
            super::metrics::vrrp().state(self.vrid, v6, state, state != before);
        }
        if let Some(priority) = send {
            self.send(priority);
        }
        if let Some(state) = became {
            match (state, event) {
                (_, Some(Event::Advert(h))) => info!(from = ?before, to = ?state, cause,
                    master = %h.src, master_priority = h.priority, "VRRP state changed"),
                _ => info!(from = ?before, to = ?state, cause,
                    master_down_interval = ?self.machine.master_down_interval(),
                    "VRRP state changed"),
            }
            // Leaving for Initialize is a stop: `run` hands the VIPs over itself, after a
            // successor has shown up.
            if state != State::Initialize {
                self.hold.send_modify(|h| {
                    h.master = state == State::Master;
                    // A master that gives up for a fault hands over as on a stop: its
                    // priority 0 advert just went out.
                    h.handover = before == State::Master && state == State::Fault;
                });
            }
        }
        self.status.send_if_modified(|s| {
            let now = (self.machine.state(), self.machine.priority());
            std::mem::replace(s, now) != now
        });
        if reassert {
            if let Some(Event::Advert(h)) = event {
                info!(other = %h.src, other_priority = h.priority,
                    "another router acts as master with a lower priority; re-announcing the VIPs");
            }
            self.hold.send_modify(|h| h.reassert += 1);
        }
    }

    fn send(&mut self, priority: u8) {
        // Not into a link without carrier, also between two polls: with unicast peers every
        // such advert leaves a neighbour entry resolving that delays the adverts after the
        // link returns (`link`).
        if link::carrier(&self.interface) == Some(false) {
            trace!(priority, "no carrier: advert not sent");
            return;
        }
        let advert = AdvertRepr {
            vrid: self.vrid,
            priority,
            interval_cs: self.interval_cs,
            addresses: self.addresses.clone(),
        };
        match self.socket.send(&advert) {
            Ok(()) => trace!(priority, "advert sent"),
            Err(e) => {
                if due(&mut self.warned.send) {
                    warn!(error = %e, priority, "sending VRRP advert failed");
                }
            }
        }
    }
}

/// The next reload of the tracks: `true` when one came, `false` when the [`Router`] is gone.
async fn tracks_changed(rx: &mut Option<watch::Receiver<Vec<Track>>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The holder task: holds the VIPs (answers ARP, has the local route) exactly while the
/// election says so, sends gratuitous ARPs when asked and every `refresh` while holding, and
/// gives the VIPs up when the channel closes.
async fn hold(vips: Vec<Vip>, mut should: watch::Receiver<Hold>, refresh: Option<Duration>) {
    let mut held: Vec<Announcer> = Vec::new();
    let mut failed = false;
    let mut reasserted = should.borrow().reassert;
    // A re-assertion is a burst like the one at takeover (one GARP can be lost, or ignored by
    // a client whose entry changed less than `locktime`, 1 s, ago).
    let burst = vips
        .first()
        .map(|v| v.garp)
        .unwrap_or(crate::config::GarpBurst {
            count: crate::config::DEFAULT_GARP_COUNT,
            interval: crate::config::DEFAULT_GARP_INTERVAL,
        });
    let mut burst_left = 0;
    let mut next_garp: Option<tokio::time::Instant> = None;
    loop {
        let want = *should.borrow_and_update();
        if want.master && held.is_empty() {
            match l2::start_all(&vips).await {
                Ok(announcers) => {
                    held = announcers;
                    failed = false;
                    burst_left = 0;
                    next_garp = refresh.map(|r| tokio::time::Instant::now() + r);
                }
                Err(e) => {
                    error!(error = %e, retry_in = ?RETRY_TAKE, "taking the VIPs as master failed");
                    failed = true;
                }
            }
        } else if !want.master && !held.is_empty() {
            if want.handover {
                await_successor_garp(&held).await;
            }
            l2::stop_all(std::mem::take(&mut held)).await;
            next_garp = None;
        }
        if want.reassert != reasserted {
            reasserted = want.reassert;
            if !held.is_empty() {
                burst_left = burst.count;
                next_garp = Some(tokio::time::Instant::now());
            }
        }
        let retry = (failed && want.master).then(|| tokio::time::Instant::now() + RETRY_TAKE);
        let wake = match (retry, next_garp) {
            (Some(r), _) => Some(r),
            (None, g) => g,
        };
        let changed = match wake {
            Some(at) => tokio::select! {
                r = should.changed() => Some(r.is_ok()),
                _ = tokio::time::sleep_until(at) => None,
            },
            None => Some(should.changed().await.is_ok()),
        };
        match changed {
            Some(true) => {}
            Some(false) => break,
            // A retry happens at the top of the loop.
            None if retry.is_some() => {}
            None => {
                garp(&held);
                let now = tokio::time::Instant::now();
                next_garp = if burst_left > 1 {
                    burst_left -= 1;
                    Some(now + burst.interval)
                } else {
                    burst_left = 0;
                    refresh.map(|r| now + r)
                };
            }
        }
    }
    l2::stop_all(held).await;
}

/// Waits until another station has claimed every held VIP (its gratuitous ARP shows as a
/// conflict to our ARP thread), at most [`HANDOVER_GARP_WAIT`].
async fn await_successor_garp(held: &[Announcer]) {
    let before: Vec<u64> = held
        .iter()
        .map(|a| a.stats().snapshot().conflicts_seen)
        .collect();
    let started = Instant::now();
    while started.elapsed() < HANDOVER_GARP_WAIT {
        let all_claimed = held
            .iter()
            .zip(&before)
            .all(|(a, b)| a.stats().snapshot().conflicts_seen > *b);
        if all_claimed {
            info!(after = ?started.elapsed(), "the successor announced the VIPs; releasing them");
            return;
        }
        tokio::time::sleep(HANDOVER_POLL).await;
    }
    info!(waited = ?HANDOVER_GARP_WAIT, "no gratuitous ARP from the successor seen; releasing the VIPs");
}

/// One gratuitous ARP for each held VIP.
fn garp(held: &[Announcer]) {
    for a in held {
        if let Err(e) = a.send_garp() {
            warn!(vip = %a.vip(), error = %e, "sending gratuitous ARP failed");
        }
    }
}
