//! Listening sockets and the accept loop.
//!
//! Owns socket options (why each is set) and turning accepted connections into `conn` tasks.
//! Stopping is driven from outside through a `watch` channel.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::drain::Drain;
use super::{conn, Shared, LISTEN_BACKLOG};

/// Bind a listener for `addr`.
///
/// SO_REUSEADDR so a restart does not wait out TIME_WAIT; IP_FREEBIND so the daemon can bind the
/// VIP before the announcer has installed its local route (and keep the socket when a later
/// failover removes the route).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
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
    TcpListener::from_std(socket.into())
}

/// Accept until `stop` turns true; each connection runs in its own task, counted by `drain`.
/// Returning drops the socket, so the kernel refuses new connections from then on.
pub async fn serve(
    listener: TcpListener,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
    drain: Drain,
) {
    loop {
        tokio::select! {
            // The guard wait_for returns is not Send; drop it inside the branch future.
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    debug!(%peer, "accepted");
                    tokio::spawn(conn::serve(stream, peer, shared.clone(), drain.guard()));
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
