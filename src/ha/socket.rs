//! The raw IP sockets VRRP speaks over: one to receive adverts, one to send them, for IPv4 or
//! IPv6.
//!
//! Owns: opening them on the VRRP interface with the options RFC 9568 needs (protocol 112,
//! TTL / hop limit 255, DSCP CS6, socket priority TC_PRIO_CONTROL, membership of 224.0.0.18 or ff02::12 when no unicast peers
//! are listed, no loopback of our own multicast), and moving bytes; for IPv6, whose raw sockets
//! hand up no IP header, also the sender, destination and hop limit of each advert (from the
//! source address and IPV6_PKTINFO / IPV6_HOPLIMIT ancillary data). Does not own: what the
//! bytes mean (`packet`) nor when to send (`router`).
//!
//! Why two sockets: the sending one is bound to the primary address so the kernel uses it as
//! the source, which the checksum covers; but a raw socket bound to a unicast address only
//! receives datagrams addressed to it, which would lose the multicast adverts. The sending
//! socket gets a filter that drops everything, so nothing queues up on it unread.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::wire::vrrp::{self, AdvertRepr};

/// Receive buffer of the listening socket: a few hundred adverts, so a burst while the router
/// is busy taking the VIPs is read late rather than lost.
const RECV_BUFFER: usize = 256 * 1024;

const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// What an IPv6 raw socket reports beside the advert: the IP header fields the checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Meta {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
}

/// One received datagram: for IPv4 the whole datagram (header included) is in the buffer, for
/// IPv6 the advert alone and the header fields here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    pub len: usize,
    pub v6: Option<V6Meta>,
}

pub struct VrrpSocket {
    rx: AsyncFd<Socket>,
    tx: Socket,
    source: IpAddr,
    /// The interface index: the scope of IPv6 link-local and ff02:: destinations.
    index: u32,
    /// 224.0.0.18 or ff02::12, or the unicast peers.
    destinations: Vec<IpAddr>,
    scratch: Vec<u8>,
}

impl VrrpSocket {
    /// Opens both sockets on `interface` (index `index`), sending from `source` to the
    /// multicast group of its family, or to each of `peers` when there are any (all of that
    /// family). Needs CAP_NET_RAW and a tokio runtime.
    pub fn open(
        interface: &str,
        index: u32,
        source: IpAddr,
        peers: &[IpAddr],
    ) -> io::Result<VrrpSocket> {
        let domain = match source {
            IpAddr::V4(_) => Domain::IPV4,
            IpAddr::V6(_) => Domain::IPV6,
        };
        let raw = || {
            Socket::new(
                domain,
                Type::RAW,
                Some(Protocol::from(i32::from(vrrp::PROTOCOL))),
            )
        };

        let rx = raw()?;
        rx.bind_device(Some(interface.as_bytes()))?;
        // Only the groups this socket joined: without this Linux delivers every group any
        // socket on the host joined.
        match source {
            IpAddr::V4(_) => {
                rx.set_multicast_all_v4(false)?;
                if peers.is_empty() {
                    rx.join_multicast_v4_n(
                        &vrrp::MULTICAST_V4,
                        &InterfaceIndexOrAddress::Index(index),
                    )?;
                }
            }
            IpAddr::V6(_) => {
                rx.set_multicast_all_v6(false)?;
                if peers.is_empty() {
                    rx.join_multicast_v6(&vrrp::MULTICAST_V6, index)?;
                }
                rx.set_recv_hoplimit_v6(true)?;
                set_int(&rx, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
            }
        }
        // Best effort: the kernel caps it at rmem_max, which is fine too.
        let _ = rx.set_recv_buffer_size(RECV_BUFFER);
        rx.set_nonblocking(true)?;

        let tx = raw()?;
        tx.attach_filter(&[SockFilter::new(BPF_RET_K, 0, 0, 0)])?;
        tx.bind_device(Some(interface.as_bytes()))?;
        match source {
            IpAddr::V4(v4) => {
                tx.set_multicast_all_v4(false)?;
                tx.bind(&SockAddr::from(SocketAddrV4::new(v4, 0)))?;
                tx.set_ttl_v4(u32::from(vrrp::TTL))?;
                tx.set_multicast_ttl_v4(u32::from(vrrp::TTL))?;
                tx.set_multicast_loop_v4(false)?;
                tx.set_multicast_if_v4(&v4)?;
                tx.set_tos_v4(u32::from(vrrp::TOS))?;
            }
            IpAddr::V6(v6) => {
                tx.set_multicast_all_v6(false)?;
                // The link-local address is tentative for a second or more after the link comes
                // up (duplicate address detection), which is when a daemon starts at boot;
                // without IPV6_FREEBIND bind() refuses it (EADDRNOTAVAIL).
                tx.set_freebind_v6(true)?;
                tx.bind(&SockAddr::from(SocketAddrV6::new(v6, 0, 0, index)))?;
                tx.set_unicast_hops_v6(u32::from(vrrp::TTL))?;
                tx.set_multicast_hops_v6(u32::from(vrrp::TTL))?;
                tx.set_multicast_loop_v6(false)?;
                tx.set_multicast_if_v6(index)?;
                tx.set_tclass_v6(u32::from(vrrp::TOS))?;
            }
        }
        // After the TOS: setting IP_TOS resets the socket priority to the one the TOS maps
        // to (0 for CS6). A high priority puts adverts in the qdisc's first band, ahead of
        // the proxy's own traffic on the same interface.
        crate::l2::sched::prioritise_socket(&tx);
        tx.set_nonblocking(true)?;

        let destinations = if peers.is_empty() {
            vec![match source {
                IpAddr::V4(_) => IpAddr::V4(vrrp::MULTICAST_V4),
                IpAddr::V6(_) => IpAddr::V6(vrrp::MULTICAST_V6),
            }]
        } else {
            peers.to_vec()
        };
        let rx = crate::sys::async_socket(rx)?;
        Ok(VrrpSocket {
            rx,
            tx,
            source,
            index,
            destinations,
            scratch: Vec::with_capacity(vrrp::MAX_LEN),
        })
    }

    pub fn source(&self) -> IpAddr {
        self.source
    }

    /// Waits for the next datagram.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Datagram> {
        loop {
            let mut guard = self.rx.readable().await?;
            match guard.try_io(|fd| read(fd.get_ref(), self.source, buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// A datagram already queued, or `WouldBlock`.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Datagram> {
        read(self.rx.get_ref(), self.source, buf)
    }

    /// Sends `advert` to every destination (the checksum is per destination). Returns the
    /// first error after trying them all: one unreachable peer must not silence the others.
    pub fn send(&mut self, advert: &AdvertRepr) -> io::Result<()> {
        let mut first_error = None;
        for &dst in &self.destinations {
            advert.emit(self.source, dst, &mut self.scratch);
            let to = match dst {
                IpAddr::V4(v4) => SockAddr::from(SocketAddrV4::new(v4, 0)),
                // Link-local and ff02:: destinations need the interface as their scope.
                IpAddr::V6(v6) => SockAddr::from(SocketAddrV6::new(v6, 0, 0, self.index)),
            };
            if let Err(e) = self.tx.send_to(&self.scratch, &to) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn read(socket: &Socket, source: IpAddr, buf: &mut [u8]) -> io::Result<Datagram> {
    match source {
        IpAddr::V4(_) => {
            let mut s = socket;
            Ok(Datagram {
                len: s.read(buf)?,
                v6: None,
            })
        }
        IpAddr::V6(_) => recv_v6(socket, buf),
    }
}

fn set_int(socket: &Socket, level: i32, name: i32, value: libc::c_int) -> io::Result<()> {
    crate::sys::setsockopt(socket, level, name, &value)
}

/// One `recvmsg` on the IPv6 socket: the advert into `buf`, and its sender, destination (from
/// IPV6_PKTINFO) and hop limit (IPV6_HOPLIMIT). A datagram without them cannot be checked, so
/// it is an error (the options are set at open, so it does not happen).
fn recv_v6(socket: &Socket, buf: &mut [u8]) -> io::Result<Datagram> {
    let d = crate::sys::recv_v6(socket, buf)?;
    let (n, src, hop_limit, dst) = (d.len, d.src, d.hop_limit, d.dst);
    match (dst, hop_limit) {
        (Some(dst), Some(hop_limit)) => Ok(Datagram {
            len: n,
            v6: Some(V6Meta {
                src,
                dst,
                hop_limit,
            }),
        }),
        _ => Err(io::Error::other(format!(
            "VRRP datagram from {} without its destination or hop limit",
            SocketAddr::from(SocketAddrV6::new(src, 0, 0, d.scope_id))
        ))),
    }
}
