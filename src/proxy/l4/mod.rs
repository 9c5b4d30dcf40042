//! Layer 4: whole TCP connections forwarded to a pool (`protocol = "tcp"` listeners).
//!
//! Owns choosing a backend for a connection (the pool's balancing, health, ejection and panic
//! rules, a retry on another backend when connecting or the TLS handshake fails, which also
//! marks the failed one a suspect), the optional PROXY v2 header
//! towards the backend (before any TLS), and the relay: zero-copy (`splice`) for plain pools,
//! copied through rustls for a pool with `[pool.NAME.tls]`. It does not look inside the stream.

pub mod splice;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::debug;

use super::upstream::backend::Outcome;
use super::upstream::stream::{self, UpstreamStream};
use super::upstream::HashInput;
use super::Snapshot;
use crate::config::PoolId;
use crate::wire::proxy_protocol;

/// Tries per connection: the first backend and, if connecting fails, one other.
const CONNECT_TRIES: usize = 2;

/// Forward `client` (whose real source is `peer` and which connected to `local`) to a backend of
/// `pool`. `early` holds bytes already read from the client (after a PROXY header).
pub async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    early: BytesMut,
    snap: Arc<Snapshot>,
    pool_id: PoolId,
    send_proxy_v2: bool,
) {
    let pool = snap.pools.get(pool_id);
    let _counted = pool.begin();
    let hash = pool.hash(&HashInput {
        client_ip: peer.ip(),
        headers: &[],
    });
    let mut avoid = None;
    for _ in 0..CONNECT_TRIES {
        let Some(backend) = pool.pick(hash, avoid) else {
            debug!(%peer, pool = %pool.name, "no healthy backend; closing");
            return;
        };
        let backend = backend.clone();
        let _active = backend.begin();
        let mut header = BytesMut::new();
        if send_proxy_v2 {
            proxy_protocol::build_v2(peer, local, &mut header);
        }
        let upstream = match stream::connect(&backend, snap.settings.connect_timeout, &header).await
        {
            Ok(s) => s,
            Err(e) => {
                debug!(%peer, backend = %backend.address, error = %e, "connect failed");
                pool.report(&backend, Outcome::Unreachable);
                avoid = Some(backend.address);
                continue;
            }
        };
        pool.report(&backend, Outcome::Success);
        let mut upstream = upstream;
        // The client's bytes that came with its PROXY header, inside any TLS.
        if !early.is_empty()
            && (upstream.write_all(&early).await.is_err() || upstream.flush().await.is_err())
        {
            return;
        }
        let relayed = match upstream {
            UpstreamStream::Plain(tcp) => splice::relay(&client, &tcp).await,
            UpstreamStream::Tls(mut tls) => {
                let mut client = client;
                tokio::io::copy_bidirectional(&mut client, tls.as_mut()).await
            }
        };
        match relayed {
            Ok((up, down)) => {
                debug!(%peer, backend = %backend.address, up, down, "tcp stream closed")
            }
            Err(e) => debug!(%peer, backend = %backend.address, error = %e, "tcp stream ended"),
        }
        return;
    }
}
