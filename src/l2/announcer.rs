//! The running side of holding a VIP on the LAN: one packet socket on the VIP's interface, a
//! thread answering ARP (IPv4) or Neighbor Solicitations (IPv6) for the VIP, a gratuitous-ARP
//! (unsolicited-NA) burst at start, and the kernel route and sysctls that go with it. "GARP" in
//! names here means either announcement: the unsolicited NA is the IPv6 gratuitous ARP.
//!
//! Owns: the lifecycle of an announced VIP ([`Announcer::start`], [`Announcer::stop`],
//! [`release`] after a crash); it bumps the VIP's counters (`metrics::ArpStats`) and attaches
//! the socket filter (`filter`). Does not own: the ARP and NDP
//! rules (`arp`, `ndp`), the route and sysctls themselves (`route`), nor deciding when this node should hold
//! the VIP (`ha`, which calls start and stop).
//!
//! Threads, not tasks: the packet socket is read through pnet, whose receive blocks in `poll`
//! for up to [`READ_TIMEOUT`], so it runs on its own thread and checks a stop flag between
//! reads. The GARP burst runs on a second thread so its spacing is exact and never delays an
//! answer; both share the one sender behind a mutex, held only for one `sendto`. Both raise
//! their scheduling priority (`sched`) and the socket sends at a high `SO_PRIORITY`, so a
//! proxy saturating the cores delays neither an answer nor a gratuitous ARP.

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pnet_datalink::{Channel, DataLinkReceiver, DataLinkSender, NetworkInterface};
use socket2::{Domain, Socket, Type};
use tracing::{debug, error, info, trace, warn};

use super::metrics::ArpStats;
use super::{route, L2Error};
use crate::config::{GarpBurst, Vip};
use crate::wire::arp::{self, ArpRepr, MacAddr};
use crate::wire::ndp;

/// How long one receive waits before the ARP thread looks at its stop flag again; this bounds
/// how long [`Announcer::stop`] waits for the thread.
pub const READ_TIMEOUT: Duration = Duration::from_millis(50);

/// How long a send waits for room in the interface queue before it counts as a send error.
const WRITE_TIMEOUT: Duration = Duration::from_millis(100);

/// Pause after a receive error, so an error that keeps coming back cannot spin the thread (see
/// `open_channel` for the one that does without care: ENETDOWN while the link is down).
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// At most one "another station claims the VIP" warning per this period: two owners answering
/// each other would otherwise log on every frame.
const CONFLICT_LOG_PERIOD: Duration = Duration::from_secs(10);

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What both threads need to know, fixed at start.
#[derive(Debug)]
struct Shared {
    vip: IpAddr,
    interface: String,
    mac: MacAddr,
    stop: AtomicBool,
    stats: Arc<ArpStats>,
}

/// pnet's sending half, shared by the ARP and GARP threads.
type SharedSender = Mutex<Box<dyn DataLinkSender>>;

/// The packet socket as pnet hands it out, plus our second descriptor of it.
struct PacketChannel {
    tx: Box<dyn DataLinkSender>,
    rx: Box<dyn DataLinkReceiver>,
    error_probe: Socket,
}

/// A VIP being announced on its interface. Stop it with [`Announcer::stop`]; dropping it stops
/// answering but leaves the route behind (see [`release`]).
#[derive(Debug)]
pub struct Announcer {
    shared: Arc<Shared>,
    /// Dropping it wakes the GARP thread at once, mid-spacing.
    garp_stop: Option<mpsc::Sender<()>>,
    /// Empty once stopped.
    threads: Vec<JoinHandle<()>>,
    /// For gratuitous ARPs outside the start-up burst ([`Announcer::send_garp`]).
    tx: Sender,
}

/// The shared sender, with a `Debug` that pnet's sender lacks.
struct Sender(Arc<SharedSender>);

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sender")
    }
}

impl Announcer {
    /// Starts announcing `vip`: raises the ARP sysctls of its interface, installs the local
    /// route (replacing a stale one of ours), then answers ARP for it and sends the GARP burst.
    ///
    /// The packet socket is opened first, before anything on the host changes, so the commonest
    /// failure (no CAP_NET_RAW) leaves nothing to undo.
    pub async fn start(vip: &Vip) -> Result<Announcer, L2Error> {
        let (iface, mac) = find_interface(&vip.interface)?;
        let channel = open_channel(&iface, vip.address).map_err(|source| L2Error::Socket {
            interface: vip.interface.clone(),
            source,
        })?;

        if vip.address.is_ipv4() {
            route::set_arp_sysctls(&iface.name)?;
        }
        if route::remove_local_route(vip.address).await? {
            info!(vip = %vip.address, "removed a stale local route left by an earlier run");
        }
        route::install_local_route(vip.address).await?;

        let shared = Arc::new(Shared {
            vip: vip.address,
            interface: iface.name.clone(),
            mac,
            stop: AtomicBool::new(false),
            // Telemetry hook: the VIP's counters outlive this announcer, so they only grow.
            stats: super::metrics::vip(vip.address).arp.clone(),
        });
        let PacketChannel {
            tx,
            rx,
            error_probe,
        } = channel;
        let tx: Arc<SharedSender> = Arc::new(Mutex::new(tx));
        let (garp_stop, garp_stopped) = mpsc::channel();
        let mut announcer = Announcer {
            shared: shared.clone(),
            garp_stop: Some(garp_stop),
            threads: Vec::with_capacity(2),
            tx: Sender(tx.clone()),
        };

        let spawned = spawn("vipgate-arp", {
            let (shared, tx) = (shared.clone(), tx.clone());
            move || {
                super::sched::raise_current("vipgate-arp");
                answer_loop(rx, &tx, &error_probe, &shared)
            }
        })
        .and_then(|answer| {
            announcer.threads.push(answer);
            spawn("vipgate-garp", {
                let burst = vip.garp;
                move || {
                    super::sched::raise_current("vipgate-garp");
                    garp_burst(&tx, &shared, burst, &garp_stopped)
                }
            })
        });
        match spawned {
            Ok(garp) => announcer.threads.push(garp),
            Err(source) => {
                // Undo the route and stop whatever thread did start; the spawn error is the
                // one worth reporting.
                let _ = announcer.stop().await;
                return Err(L2Error::Thread {
                    interface: vip.interface.clone(),
                    vip: vip.address,
                    source,
                });
            }
        }

        if let IpAddr::V4(v4) = vip.address {
            resolve_pending(&announcer.tx.0, &announcer.shared, v4);
        }
        if !iface.is_up() {
            warn!(vip = %vip.address, interface = %iface.name,
                "interface is down: ARP for the VIP is answered once it comes up");
        }
        info!(vip = %vip.address, interface = %iface.name, %mac,
            garp_count = vip.garp.count, garp_interval = ?vip.garp.interval,
            "announcing VIP");
        // Telemetry hook: vipgate_vip_owned.
        super::metrics::vip(vip.address)
            .owned
            .store(true, Ordering::Relaxed);
        Ok(announcer)
    }

    pub fn vip(&self) -> IpAddr {
        self.shared.vip
    }

    pub fn interface(&self) -> &str {
        &self.shared.interface
    }

    /// The MAC address the VIP is announced at.
    pub fn mac(&self) -> MacAddr {
        self.shared.mac
    }

    /// The live counters; the `Arc` can be kept for metrics after the announcer is gone.
    pub fn stats(&self) -> Arc<ArpStats> {
        self.shared.stats.clone()
    }

    /// Sends one gratuitous ARP for the VIP now, outside the start-up burst: for re-asserting
    /// the VIP when another station claimed it (a healed partition) and for periodic refresh.
    /// One `sendto` on the packet socket; it does not block on the ARP threads.
    pub fn send_garp(&self) -> io::Result<()> {
        let garp = Announcement::new(self.shared.mac, self.shared.vip);
        let sent = send(&self.tx.0, garp.bytes());
        match &sent {
            Ok(()) => bump(&self.shared.stats.garps_sent),
            Err(_) => bump(&self.shared.stats.send_errors),
        }
        sent
    }

    /// Stops answering ARP for the VIP (and any GARP still due) but keeps the local route, so
    /// connections already made to the VIP can finish while the LAN moves on: a graceful stop
    /// calls this, drains, then calls [`Announcer::stop`]. Calling it twice is harmless.
    pub async fn stop_answering(&mut self) -> Result<(), L2Error> {
        self.signal_stop();
        // Telemetry hook: vipgate_vip_owned.
        super::metrics::vip(self.shared.vip)
            .owned
            .store(false, Ordering::Relaxed);
        let threads = std::mem::take(&mut self.threads);
        if threads.is_empty() {
            return Ok(());
        }
        // Joining waits up to READ_TIMEOUT; keep that off the async worker.
        let panicked = tokio::task::spawn_blocking(move || {
            threads
                .into_iter()
                .map(JoinHandle::join)
                .filter(Result::is_err)
                .count()
        })
        .await
        .map_or(true, |count| count > 0);
        if panicked {
            return Err(L2Error::ThreadPanicked {
                interface: self.shared.interface.clone(),
                vip: self.shared.vip,
            });
        }
        Ok(())
    }

    /// Stops answering ARP for the VIP, then removes the local route.
    ///
    /// In that order, so no request is answered for a VIP this node no longer accepts packets
    /// for. The sysctls stay raised (see `route::set_arp_sysctls`).
    pub async fn stop(mut self) -> Result<(), L2Error> {
        let answering = self.stop_answering().await;

        let removed = route::remove_local_route(self.shared.vip).await;
        let stats = self.shared.stats.snapshot();
        info!(vip = %self.shared.vip, interface = %self.shared.interface, mac = %self.shared.mac,
            replies_sent = stats.replies_sent, garps_sent = stats.garps_sent,
            "stopped announcing VIP");
        answering?;
        removed.map(|_| ())
    }

    fn signal_stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.garp_stop = None;
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        // Threads end on their own within READ_TIMEOUT; the route needs async netlink, which a
        // destructor cannot run.
        self.signal_stop();
        warn!(vip = %self.shared.vip,
            "announcer dropped without stop(): the local route for the VIP stays until release()");
    }
}

/// Removes the local route a previous run left for `vip` (after a crash or a kill -9). Returns
/// whether there was one. Answering ARP needs no cleanup: it died with the process.
pub async fn release(vip: &Vip) -> Result<bool, L2Error> {
    let removed = route::remove_local_route(vip.address).await?;
    if removed {
        info!(vip = %vip.address, "removed a stale local route");
    }
    Ok(removed)
}

fn find_interface(name: &str) -> Result<(NetworkInterface, MacAddr), L2Error> {
    let iface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| L2Error::InterfaceNotFound {
            interface: name.to_owned(),
        })?;
    // pnet reports 00:00:00:00:00:00 for lo and for tunnels; neither can answer ARP.
    match iface.mac.map(|m| MacAddr(m.octets())) {
        Some(mac) if mac.is_unicast() => Ok((iface, mac)),
        _ => Err(L2Error::NoMac {
            interface: name.to_owned(),
        }),
    }
}

/// Opens the packet socket through pnet, with our filter attached before it sees any frame.
///
/// Returns, next to pnet's halves, a second descriptor of the same socket. When the link goes
/// down the kernel leaves ENETDOWN pending on the socket; pnet sees POLLERR without POLLIN,
/// returns "Unexpected poll event" without reading the error, and every later `next()` fails at
/// once (measured here: 300,000 failures in half a second of link-down). Reading SO_ERROR
/// through the second descriptor clears it, so the thread goes back to waiting in `poll`.
fn open_channel(iface: &NetworkInterface, vip: IpAddr) -> io::Result<PacketChannel> {
    // Protocol 0: the socket receives nothing until pnet binds it to the interface, so no frame
    // from another interface is queued between socket() and bind(), as it would be on the
    // ETH_P_ALL socket pnet opens by itself.
    let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
    socket.attach_filter(&super::filter::filter(vip))?;
    super::sched::prioritise_socket(&socket);
    if let IpAddr::V6(v6) = vip {
        join_solicited_node(&socket, iface.index, v6)?;
    }
    let error_probe = socket.try_clone()?;
    // The one ethertype the announcer reads. Bound to it, the socket is handed only incoming
    // frames of that type; bound to ETH_P_ALL, as pnet binds a layer-2 channel, it would be
    // handed every frame the interface carries, both ways, with each outgoing one cloned for
    // it before the filter drops it: four clones and filter runs per proxied request on the
    // LB's interface. pnet calls this `Layer3`, but it only chooses the protocol of the bind
    // (and of the address frames are sent to); the descriptor stays ours, SOCK_RAW, so frames
    // keep their Ethernet header both ways.
    let ethertype = match vip {
        IpAddr::V4(_) => etherparse::EtherType::ARP.0,
        IpAddr::V6(_) => ndp::ETHERTYPE_IPV6,
    };
    let config = pnet_datalink::Config {
        channel_type: pnet_datalink::ChannelType::Layer3(ethertype),
        read_timeout: Some(READ_TIMEOUT),
        write_timeout: Some(WRITE_TIMEOUT),
        // ARP requests are broadcast or unicast to us; promiscuous mode would only add frames
        // for other hosts, and change the interface for everyone else.
        promiscuous: false,
        // pnet closes the descriptor on every path, error or not, so it takes ownership here.
        socket_fd: Some(socket.into_raw_fd()),
        ..pnet_datalink::Config::default()
    };
    match pnet_datalink::channel(iface, config)? {
        Channel::Ethernet(tx, rx) => Ok(PacketChannel {
            tx,
            rx,
            error_probe,
        }),
        _ => Err(io::Error::other("pnet opened a non-Ethernet channel")),
    }
}

/// Adds the VIP's solicited-node group MAC to the interface's multicast filter for as long as
/// the socket is open (`ip maddr` shows it; the kernel drops it on close, also after a crash).
/// The kernel joins the groups of assigned addresses only, and the VIP is not one: without
/// this a NIC that filters multicast in hardware would never hand up solicitations for it.
/// (veth does not filter, so the netns tests see the membership but cannot need it.)
fn join_solicited_node(socket: &Socket, ifindex: u32, vip: Ipv6Addr) -> io::Result<()> {
    let mac = ndp::multicast_mac(ndp::solicited_node(vip));
    let mut address = [0u8; 8];
    address[..6].copy_from_slice(&mac.0);
    let mreq = libc::packet_mreq {
        mr_ifindex: i32::try_from(ifindex).map_err(io::Error::other)?,
        mr_type: libc::PACKET_MR_MULTICAST as u16,
        mr_alen: 6,
        mr_address: address,
    };
    crate::sys::setsockopt(socket, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
}

/// The announcement of a VIP: a gratuitous ARP or an unsolicited Neighbor Advertisement.
enum Announcement {
    Arp(arp::Frame),
    Ndp(ndp::Frame),
}

impl Announcement {
    fn new(mac: MacAddr, vip: IpAddr) -> Announcement {
        match vip {
            IpAddr::V4(v4) => Announcement::Arp(arp::build_gratuitous(mac, v4)),
            IpAddr::V6(v6) => Announcement::Ndp(ndp::build_unsolicited(mac, v6)),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Announcement::Arp(f) => f,
            Announcement::Ndp(f) => f,
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.to_owned()).spawn(f)
}

fn send(tx: &SharedSender, frame: &[u8]) -> io::Result<()> {
    // A thread that panicked while sending left nothing half-done in the sender worth refusing
    // the lock over.
    let mut tx = tx.lock().unwrap_or_else(PoisonError::into_inner);
    tx.send_to(frame, None)
        .unwrap_or_else(|| Err(io::Error::other("frame larger than pnet's write buffer")))
}

/// The ARP thread: answer every request for the VIP until told to stop.
fn answer_loop(
    mut rx: Box<dyn DataLinkReceiver>,
    tx: &SharedSender,
    error_probe: &Socket,
    shared: &Shared,
) {
    let mut failing = false;
    let mut last_conflict_log: Option<Instant> = None;
    while !shared.stop.load(Ordering::Acquire) {
        match rx.next() {
            Ok(frame) => {
                if failing {
                    info!(interface = %shared.interface, "packet socket receiving again");
                    failing = false;
                }
                handle_frame(frame, tx, shared, &mut last_conflict_log);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(e) => {
                // Reads and so clears the error pnet leaves pending (see `open_channel`).
                let pending = error_probe.take_error().ok().flatten();
                if !failing {
                    warn!(interface = %shared.interface, error = %e,
                        pending = ?pending.map(|p| p.to_string()),
                        "packet socket receive failed; retrying");
                    failing = true;
                }
                std::thread::sleep(ERROR_BACKOFF);
            }
        }
    }
    debug!(vip = %shared.vip, interface = %shared.interface, "ARP thread stopped");
}

/// What the answering thread makes of one frame, either family.
enum Verdict {
    Reply(Announcement),
    Conflict(MacAddr),
    Ignore { request_for_vip: bool },
}

fn verdict(frame: &[u8], shared: &Shared) -> Verdict {
    match shared.vip {
        IpAddr::V4(vip) => match arp::decide(frame, shared.mac, vip) {
            arp::Decision::Reply(r) => Verdict::Reply(Announcement::Arp(r)),
            arp::Decision::Ignore(arp::Ignored::Conflict { mac }) => Verdict::Conflict(mac),
            arp::Decision::Ignore(reason) => {
                trace!(?reason, "ARP frame ignored");
                Verdict::Ignore {
                    request_for_vip: reason.is_request_for_vip(),
                }
            }
        },
        IpAddr::V6(vip) => match ndp::decide(frame, shared.mac, vip) {
            ndp::Decision::Reply(r) => Verdict::Reply(Announcement::Ndp(r)),
            ndp::Decision::Ignore(ndp::Ignored::Conflict { mac }) => Verdict::Conflict(mac),
            ndp::Decision::Ignore(reason) => {
                trace!(?reason, "NDP frame ignored");
                Verdict::Ignore {
                    request_for_vip: reason.is_request_for_vip(),
                }
            }
        },
    }
}

/// The requester an answer goes to, read back from it for the log.
fn requester(reply: &Announcement) -> Option<(IpAddr, MacAddr)> {
    match reply {
        Announcement::Arp(f) => ArpRepr::parse(&f[arp::ETHERNET_HEADER_LEN..])
            .ok()
            .map(|r| (IpAddr::V4(r.target_ip), r.target_mac)),
        Announcement::Ndp(f) => ndp::parse_frame(f)
            .ok()
            .map(|(eth, ip, _)| (IpAddr::V6(ip.destination), eth.destination)),
    }
}

fn handle_frame(
    frame: &[u8],
    tx: &SharedSender,
    shared: &Shared,
    last_conflict_log: &mut Option<Instant>,
) {
    let stats = &shared.stats;
    match verdict(frame, shared) {
        Verdict::Reply(reply) => {
            bump(&stats.requests_seen);
            match send(tx, reply.bytes()) {
                Ok(()) => {
                    bump(&stats.replies_sent);
                    if tracing::enabled!(tracing::Level::DEBUG) {
                        let to = requester(&reply);
                        debug!(vip = %shared.vip, requester_ip = ?to.map(|r| r.0),
                            requester_mac = ?to.map(|r| r.1), "ARP reply / neighbor advertisement sent");
                    }
                }
                Err(e) => {
                    bump(&stats.send_errors);
                    warn!(vip = %shared.vip, interface = %shared.interface, error = %e,
                        "sending ARP reply / neighbor advertisement failed");
                }
            }
        }
        Verdict::Conflict(mac) => {
            bump(&stats.conflicts_seen);
            let due = last_conflict_log.is_none_or(|t| t.elapsed() >= CONFLICT_LOG_PERIOD);
            if due {
                *last_conflict_log = Some(Instant::now());
                warn!(vip = %shared.vip, interface = %shared.interface, other_mac = %mac,
                    "another station claims the VIP");
            }
        }
        Verdict::Ignore { request_for_vip } => {
            if request_for_vip {
                bump(&stats.requests_seen);
            }
        }
    }
}

/// The GARP thread: `burst.count` gratuitous ARPs, `burst.interval` apart, unless stopped.
fn garp_burst(tx: &SharedSender, shared: &Shared, burst: GarpBurst, stopped: &mpsc::Receiver<()>) {
    let garp = Announcement::new(shared.mac, shared.vip);
    let start = Instant::now();
    for i in 0..burst.count {
        // Deadlines from the start of the burst, so time spent sending does not stretch it.
        let Some(due) = burst
            .interval
            .checked_mul(i)
            .and_then(|offset| start.checked_add(offset))
        else {
            break;
        };
        match stopped.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            // Stop was signalled (the sender dropped), or a message, which nobody sends.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        match send(tx, garp.bytes()) {
            Ok(()) => bump(&shared.stats.garps_sent),
            Err(e) => {
                bump(&shared.stats.send_errors);
                warn!(vip = %shared.vip, interface = %shared.interface, error = %e,
                    "sending gratuitous ARP failed");
            }
        }
    }
    debug!(vip = %shared.vip, sent = shared.stats.garps_sent.load(Ordering::Relaxed),
        "GARP burst done");
}

/// Asks at once for every neighbour the kernel is still resolving on the interface.
///
/// Why: losing the carrier flushes the interface's ARP cache, and a packet sent while it is
/// down (a request in flight to a backend) leaves an INCOMPLETE entry that the kernel asks for
/// again only every `retrans_time_ms` (1 s). A node whose link returns becomes master within
/// a few advert intervals, but its requests to the backends then wait in that entry's queue
/// for the next retry: 0 to 1000 ms of outage, by the phase of that timer (measured 8-840 ms
/// with a 10 ms prober). The kernel takes the reply to our request as the answer to its own
/// (any ARP reply updates an existing entry) and sends what it had queued.
fn resolve_pending(tx: &SharedSender, shared: &Shared, vip: std::net::Ipv4Addr) {
    let Ok(table) = std::fs::read_to_string("/proc/net/arp") else {
        return;
    };
    for neighbour in arp::unresolved_neighbours(&table, &shared.interface) {
        let frame = arp::build_request(shared.mac, vip, neighbour);
        match send(tx, &frame) {
            Ok(()) => debug!(vip = %vip, %neighbour, "asked for an unresolved neighbour"),
            Err(e) => {
                bump(&shared.stats.send_errors);
                debug!(vip = %vip, %neighbour, error = %e, "asking for a neighbour failed");
            }
        }
    }
}

/// Starts an announcer for every VIP, or none: on a failure the ones started are stopped.
pub async fn start_all(vips: &[Vip]) -> Result<Vec<Announcer>, L2Error> {
    let mut announcers = Vec::with_capacity(vips.len());
    for vip in vips {
        match Announcer::start(vip).await {
            Ok(a) => announcers.push(a),
            Err(e) => {
                stop_all(announcers).await;
                return Err(e);
            }
        }
    }
    Ok(announcers)
}

/// Stops the announcers, last started first; a failure is logged, the rest still stop.
pub async fn stop_all(announcers: Vec<Announcer>) {
    for a in announcers.into_iter().rev() {
        let vip = a.vip();
        if let Err(e) = a.stop().await {
            error!(%vip, error = %e, "releasing VIP failed");
        }
    }
}
