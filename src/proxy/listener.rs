//! Listening sockets and the accept loop.
//!
//! Owns socket options (why each is set) and turning accepted connections into `conn` tasks.
//! Stopping is driven from outside through a `watch` channel.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::client::Front;
use super::drain::{ConnGuard, Drain};
use super::http1::conn;
use super::{forwarded, l4, tls, Shared, LISTEN_BACKLOG};
use crate::config::Protocol as ListenerProtocol;
use crate::telemetry::metrics::{lock, Registry};
use crate::wire::proxy_protocol;

/// Bind a listener for `addr`.
///
/// SO_REUSEADDR so a restart does not wait out TIME_WAIT; IP_FREEBIND so the daemon can bind the
/// VIP before the announcer has installed its local route (and keep the socket when a later
/// failover removes the route).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr, false)?)
}

/// Bind `count` listening sockets for `addr`, one per worker; more than one share the port
/// with SO_REUSEPORT, so the kernel spreads new connections over the workers. Not registered
/// with any runtime yet: each worker does that for its own.
pub fn bind_workers(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    (0..count.max(1))
        .map(|_| bind_std(addr, count > 1))
        .collect()
}

fn bind_std(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    match addr {
        SocketAddr::V4(_) => socket.set_freebind_v4(true)?,
        SocketAddr::V6(_) => {
            socket.set_only_v6(true)?;
            socket.set_freebind_v6(true)?;
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// The connection limit of one listener (`max_connections`), shared by its workers' sockets
/// and kept across reloads. A connection holds a permit for its whole life; without a free one
/// the listener stops accepting, so new connections wait in the kernel's accept queue (as
/// HAProxy's `maxconn` does) instead of taking descriptors from the other listeners.
#[derive(Debug)]
pub struct Limit {
    permits: Arc<Semaphore>,
    /// The permits that exist (free or held): the limit once every resize has caught up.
    size: Mutex<usize>,
    /// Times accepting paused because every permit was held.
    pub reached: AtomicU64,
}

static LIMITS: Registry<SocketAddr, Limit> = Registry::new();

/// The limit of the listener bound to `bind`, created (empty) on first use.
pub fn limit(bind: SocketAddr) -> Arc<Limit> {
    LIMITS.get_or(&bind, || Limit {
        permits: Arc::new(Semaphore::new(0)),
        size: Mutex::new(0),
        reached: AtomicU64::new(0),
    })
}

impl Limit {
    /// Make the limit `max`: a higher one at once, a lower one as held permits come back
    /// (each accept takes back what is free).
    fn resize(&self, max: usize) {
        let mut size = lock(&self.size);
        if max > *size {
            self.permits.add_permits(max - *size);
            *size = max;
        } else if max < *size {
            *size -= self.permits.forget_permits(*size - max);
        }
    }

    /// Connections holding a permit now, and the limit.
    pub fn open(&self) -> (usize, usize) {
        let size = *lock(&self.size);
        (size.saturating_sub(self.permits.available_permits()), size)
    }

    async fn acquire(&self) -> OwnedSemaphorePermit {
        if self.permits.available_permits() == 0 {
            self.reached.fetch_add(1, Ordering::Relaxed);
            debug!("max_connections reached; accepting resumes when one closes");
        }
        // The semaphore is never closed.
        match self.permits.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => std::future::pending().await,
        }
    }
}

/// Accept on the listener configured as `bind` until `stop` turns true; each connection runs
/// in its own task, counted by `drain`, on the snapshot current when it was accepted. The
/// listener's settings are read from that snapshot too, so a reload that changes them applies
/// to new connections. Returning drops the socket, so the kernel refuses new connections.
///
/// Ends with an error only when the socket itself is unusable (EBADF, EINVAL, ENOTSOCK):
/// retrying those would never accept again. Running out of descriptors or memory, and the
/// network errors accept(2) passes on from the new connection, are waited out.
pub async fn serve(
    listener: TcpListener,
    bind: SocketAddr,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
    drain: Drain,
) -> io::Result<()> {
    // Telemetry hook: accepted connections per listener.
    let accepted_total = super::metrics::counters().listener(bind);
    let limit = limit(bind);
    loop {
        let max = shared
            .load()
            .listeners
            .iter()
            .find(|l| l.bind == bind)
            .map_or(crate::config::defaults::MAX_CONNECTIONS, |l| {
                l.max_connections
            });
        limit.resize(max);
        let permit = tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return Ok(()),
            p = limit.acquire() => p,
        };
        tokio::select! {
            // The guard wait_for returns is not Send; drop it inside the branch future.
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    debug!(%peer, "accepted");
                    accepted_total.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(dispatch(stream, peer, bind, shared.clone(), drain.guard(), permit));
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK)) => {
                    return Err(e);
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on a full table.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn dispatch(
    stream: TcpStream,
    peer: SocketAddr,
    bind: SocketAddr,
    shared: Shared,
    guard: ConnGuard,
    permit: OwnedSemaphorePermit,
) {
    // Held for the connection's whole life: it counts against the listener's max_connections.
    let _permit = permit;
    let snap = shared.load_full();
    let Some(spec) = snap.listeners.iter().find(|l| l.bind == bind).cloned() else {
        // The listener was removed by a reload after this connection was accepted.
        return;
    };
    let local = stream.local_addr().unwrap_or(bind);
    let (peer, local, early) = if spec.accept_proxy_protocol {
        if !forwarded::peer_is_trusted(&snap.settings, peer.ip()) {
            debug!(%peer, "PROXY protocol expected from trusted proxies only; closing");
            return;
        }
        match read_proxy_header(&stream, snap.settings.head_timeout).await {
            Ok((addrs, early)) => {
                let (p, l) = addrs.unwrap_or((peer, local));
                (p, l, early)
            }
            Err(e) => {
                debug!(%peer, error = %e, "bad PROXY protocol header; closing");
                return;
            }
        }
    } else {
        (peer, local, BytesMut::new())
    };
    if spec.protocol.is_http() {
        // Small heads and responses should leave at once rather than wait for Nagle.
        let _ = stream.set_nodelay(true);
    }
    match spec.protocol {
        ListenerProtocol::Http => {
            let front = Front {
                tls: None,
                redirect_https: spec.redirect_https,
                http2: spec.http2,
            };
            conn::serve(stream, peer, early, shared, guard, front).await
        }
        ListenerProtocol::Https => {
            let Some(acceptor) = snap.tls.acceptor(bind) else {
                return;
            };
            let limit = snap.settings.head_timeout;
            drop(snap);
            // The handshake counts as part of the connection for a graceful stop.
            let Some((stream, info)) = tls::handshake(acceptor, stream, early, limit, peer).await
            else {
                return;
            };
            let http2 = info.http2;
            let front = Front {
                tls: Some(std::sync::Arc::new(info)),
                redirect_https: None,
                http2: false,
            };
            if http2 {
                return Box::pin(super::http2::serve(stream, peer, shared, guard, front)).await;
            }
            // Boxed: a TLS connection's state is ~2.5 KB bigger, and kept inline it would size
            // every plain connection's task too (each idle one costs its whole task).
            Box::pin(conn::serve(
                stream,
                peer,
                BytesMut::new(),
                shared,
                guard,
                front,
            ))
            .await
        }
        ListenerProtocol::Tcp {
            pool,
            send_proxy_v2,
        } => {
            // A stream is counted until it ends; a graceful stop waits for it up to the drain
            // deadline.
            let _guard = guard;
            l4::serve(stream, peer, local, early, snap, pool, send_proxy_v2).await
        }
    }
}

/// Read a PROXY protocol header; returns its addresses and whatever followed it.
async fn read_proxy_header(
    stream: &TcpStream,
    limit: Duration,
) -> io::Result<(Option<(SocketAddr, SocketAddr)>, BytesMut)> {
    let mut buf = BytesMut::with_capacity(256);
    let read = async {
        loop {
            match proxy_protocol::parse(&buf) {
                Ok(Some(h)) => {
                    let _ = buf.split_to(h.len);
                    return Ok(h.addrs);
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            stream.readable().await?;
            let mut chunk = [0u8; 512];
            match stream.try_read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    };
    let addrs = tokio::time::timeout(limit, read)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    Ok((addrs, buf))
}
