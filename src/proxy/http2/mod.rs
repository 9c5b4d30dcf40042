//! HTTP/2 from clients: ALPN `h2` on https listeners, prior knowledge on http listeners.
//!
//! Owns one HTTP/2 client connection (`serve`: the handshake within `head_timeout`, the
//! SETTINGS vipgate offers, the accept loop, closing an idle connection, GOAWAY when a
//! graceful stop begins) and each of its streams (`stream`: a task of its own that builds the
//! protocol-independent `exchange::Head`, runs the same decision, backend choice, retries,
//! metrics and access log as HTTP/1.1, and speaks HTTP/1.1 to the backend). The rules on heads
//! are pure functions in `head`. The framing, HPACK, flow control and the protocol's own
//! defences (rapid reset, CONTINUATION floods, SETTINGS and PING floods, oversized header
//! lists) are the `h2` crate's, configured here: hyperium's `h2` is what hyper, and through it
//! most of the Rust ecosystem, serves HTTP/2 with, and its defences have been tested against
//! each published attack. Does not own HTTP/1.1 (`http1`) or the decision (`exchange`).

pub mod head;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::debug;

use super::client::Front;
use super::drain::ConnGuard;
use super::Shared;

/// The connection preface a client with prior knowledge starts with (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Each stream may have this much request body in flight before the client waits for a
/// WINDOW_UPDATE: enough for a fast upload over a LAN or a CDN's link (256 KiB at 1 ms is
/// 2 Gbit/s) while the stream's buffer stays bounded; Envoy's default is 256 KiB too.
const STREAM_WINDOW: u32 = 256 * 1024;
/// The connection's receive window: four streams uploading at full speed at once.
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Response bytes queued per stream for a slow client before sending waits for its window.
const SEND_BUFFER: usize = 256 * 1024;
/// Streams the client resets before we accept them, at most, before the connection is closed
/// with ENHANCE_YOUR_CALM (CVE-2023-44487, "rapid reset"); `h2`'s default.
const PENDING_ACCEPT_RESETS: usize = 20;
/// Streams our side may reset because the client's frames were wrong, at most, before the
/// connection is closed (CVE-2025-8671, "MadeYouReset"); `h2`'s default.
const LOCAL_ERROR_RESETS: usize = 1024;

/// What every stream of a connection shares.
struct Conn {
    peer: SocketAddr,
    front: Front,
    shared: Shared,
}

/// The client starts with the HTTP/2 preface: `early` holds what has been read of it (and
/// after it), up to all of it.
pub fn starts_with_preface(early: &[u8]) -> bool {
    let n = early.len().min(PREFACE.len());
    n > 0 && early[..n] == PREFACE[..n]
}

/// Serve one HTTP/2 client connection to its end.
pub async fn serve<S>(io: S, peer: SocketAddr, shared: Shared, mut guard: ConnGuard, front: Front)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let snap = shared.load_full();
    let settings = &snap.settings;
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(settings.http2_max_concurrent_streams)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(u32::try_from(settings.max_head_size).unwrap_or(u32::MAX))
        .max_send_buffer_size(SEND_BUFFER)
        .max_pending_accept_reset_streams(PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(Some(LOCAL_ERROR_RESETS));
    let (head_timeout, idle) = (settings.head_timeout, settings.client_idle_timeout);
    drop(snap);
    let mut conn = match tokio::time::timeout(head_timeout, builder.handshake::<_, Bytes>(io)).await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            debug!(%peer, "HTTP/2 preface not received in time");
            return;
        }
    };
    let shared_conn = Arc::new(Conn {
        peer,
        front,
        shared,
    });
    let mut closing = false;
    let mut last_active = Instant::now();
    loop {
        let idle_check = tokio::time::sleep_until(last_active + idle);
        tokio::select! {
            biased;
            accepted = conn.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    last_active = Instant::now();
                    tokio::spawn(stream::serve(request, respond, shared_conn.clone()));
                }
                Some(Err(e)) => {
                    debug!(%peer, error = %e, "HTTP/2 connection ended");
                    break;
                }
                None => break,
            },
            () = guard.draining(), if !closing => {
                // GOAWAY: streams already open finish; the client opens new ones elsewhere.
                conn.graceful_shutdown();
                closing = true;
            }
            () = idle_check => {
                if conn.has_streams() {
                    last_active = Instant::now();
                } else if !closing {
                    debug!(%peer, "HTTP/2 connection idle; closing");
                    conn.graceful_shutdown();
                    closing = true;
                    last_active = Instant::now();
                } else {
                    // The client did not close after our GOAWAY.
                    break;
                }
            }
        }
    }
}
