//! The raw IP sockets VRRP speaks over: one to receive adverts, one to send them.
//!
//! Owns: opening them on the VRRP interface with the options RFC 9568 needs (protocol 112,
//! TTL 255, DSCP CS6, the 224.0.0.18 membership when no unicast peers are listed, no loopback
//! of our own multicast), and moving bytes. Does not own: what the bytes mean (`packet`) nor
//! when to send (`router`).
//!
//! Why two sockets: the sending one is bound to the primary address so the kernel uses it as
//! the source, which the checksum covers; but a raw socket bound to a unicast address only
//! receives datagrams addressed to it, which would lose the multicast adverts. The sending
//! socket gets a filter that drops everything, so nothing queues up on it unread.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::packet::{self, AdvertRepr};

/// Receive buffer of the listening socket: a few hundred adverts, so a burst while the router
/// is busy taking the VIPs is read late rather than lost.
const RECV_BUFFER: usize = 256 * 1024;

const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

pub struct VrrpSocket {
    rx: AsyncFd<Socket>,
    tx: Socket,
    source: Ipv4Addr,
    /// 224.0.0.18, or the unicast peers.
    destinations: Vec<Ipv4Addr>,
    scratch: Vec<u8>,
}

impl VrrpSocket {
    /// Opens both sockets on `interface` (index `index`), sending from `source` to the
    /// multicast group, or to each of `peers` when there are any. Needs CAP_NET_RAW and a
    /// tokio runtime.
    pub fn open(
        interface: &str,
        index: u32,
        source: Ipv4Addr,
        peers: &[Ipv4Addr],
    ) -> io::Result<VrrpSocket> {
        let raw = || {
            Socket::new(
                Domain::IPV4,
                Type::RAW,
                Some(Protocol::from(i32::from(packet::PROTOCOL))),
            )
        };

        let rx = raw()?;
        rx.bind_device(Some(interface.as_bytes()))?;
        // Only the groups this socket joined: without this Linux delivers every group any
        // socket on the host joined.
        rx.set_multicast_all_v4(false)?;
        if peers.is_empty() {
            rx.join_multicast_v4_n(
                &packet::MULTICAST_V4,
                &InterfaceIndexOrAddress::Index(index),
            )?;
        }
        // Best effort: the kernel caps it at rmem_max, which is fine too.
        let _ = rx.set_recv_buffer_size(RECV_BUFFER);
        rx.set_nonblocking(true)?;

        let tx = raw()?;
        tx.attach_filter(&[SockFilter::new(BPF_RET_K, 0, 0, 0)])?;
        tx.set_multicast_all_v4(false)?;
        tx.bind_device(Some(interface.as_bytes()))?;
        tx.bind(&SockAddr::from(SocketAddrV4::new(source, 0)))?;
        tx.set_ttl_v4(u32::from(packet::TTL))?;
        tx.set_multicast_ttl_v4(u32::from(packet::TTL))?;
        tx.set_multicast_loop_v4(false)?;
        tx.set_multicast_if_v4(&source)?;
        tx.set_tos_v4(u32::from(packet::TOS))?;
        tx.set_nonblocking(true)?;

        let destinations = if peers.is_empty() {
            vec![packet::MULTICAST_V4]
        } else {
            peers.to_vec()
        };
        // SAFETY: the Socket owns its descriptor, which stays open and the same until the
        // AsyncFd (and with it the Socket) is dropped.
        let rx = unsafe { AsyncFd::register(rx) }?;
        Ok(VrrpSocket {
            rx,
            tx,
            source,
            destinations,
            scratch: Vec::with_capacity(packet::MAX_LEN),
        })
    }

    pub fn source(&self) -> Ipv4Addr {
        self.source
    }

    /// Waits for the next datagram (IPv4 header included) and returns its length.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.rx.readable().await?;
            match guard.try_io(|fd| fd.get_ref().read(buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// A datagram already queued, or `WouldBlock`.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.rx.get_ref().read(buf)
    }

    /// Sends `advert` to every destination (the checksum is per destination). Returns the
    /// first error after trying them all: one unreachable peer must not silence the others.
    pub fn send(&mut self, advert: &AdvertRepr) -> io::Result<()> {
        let mut first_error = None;
        for &dst in &self.destinations {
            advert.emit(self.source, dst, &mut self.scratch);
            let to = SockAddr::from(SocketAddrV4::new(dst, 0));
            if let Err(e) = self.tx.send_to(&self.scratch, &to) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
