//! HTTP/2 to backends (`[pool.NAME] protocol = "http2"`): one multiplexed connection per
//! backend and worker, and relaying DATA and trailers between two HTTP/2 streams.
//!
//! Owns opening that connection (TCP, or TLS with ALPN `h2`, then the `h2` client handshake;
//! the connection runs as a task of its own), finding it again for the next stream and
//! replacing it when it broke or is full, what an `h2` error on the backend's side means to
//! the retry policy (`upstream_error`), and the copy loops (`pump`, `relay_response`) that
//! move DATA within both sides' flow-control windows and pass trailers on, which gRPC needs
//! for its status. Does not own the decision, the retries (`exchange`) or the client's
//! connection (`super`).

use std::future::poll_fn;
use std::time::Duration;

use bytes::Bytes;
use h2::{Reason, RecvStream, SendStream};
use tokio::time::timeout;
use tracing::debug;

use crate::proxy::error::{Error, Kind, Result};
use crate::proxy::http1::conn::connect;
use crate::proxy::upstream::backend::{Backend, H2Sender};

/// Each stream's window towards vipgate: the backend may send this much response before it
/// waits for the client to take it.
const STREAM_WINDOW: u32 = 256 * 1024;
/// The connection's window: several streams relaying at full speed.
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;

/// A stream can be opened on this worker's connection to `backend` (`true`: an existing one),
/// or on a new one. A connection that broke, or that stays at the backend's stream limit for
/// `wait`, is replaced.
pub async fn sender(backend: &Backend, wait: Duration) -> Result<(H2Sender, bool)> {
    if let Some(tx) = backend.h2_sender() {
        match timeout(wait, tx.ready()).await {
            Ok(Ok(tx)) => return Ok((tx, true)),
            Ok(Err(e)) => debug!(backend = %backend.address, error = %e, "HTTP/2 connection gone"),
            Err(_) => debug!(backend = %backend.address, "HTTP/2 connection full; opening another"),
        }
        backend.set_h2_sender(None);
    }
    let io = connect(backend, wait).await?;
    let handshake = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(io);
    let (tx, conn) = match timeout(wait, handshake).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            debug!(backend = %backend.address, error = %e, "HTTP/2 handshake with the backend failed");
            return Err(Error::io(Kind::Connect, std::io::Error::other(e)));
        }
        Err(_) => return Err(Error::new(Kind::Connect)),
    };
    let address = backend.address;
    // Ends when the backend closes it, or when no sender and no stream is left.
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(backend = %address, error = %e, "HTTP/2 connection to the backend ended");
        }
    });
    let tx = match timeout(wait, tx.ready()).await {
        Ok(Ok(tx)) => tx,
        _ => return Err(Error::new(Kind::Connect)),
    };
    backend.set_h2_sender(Some(tx.clone()));
    Ok((tx, false))
}

/// What an `h2` error on the backend's side means. A stream the backend refused, or one a
/// GOAWAY says it never processed, is like a stale pooled connection: nothing happened.
pub fn upstream_error(e: h2::Error) -> Error {
    let kind = match e.reason() {
        Some(Reason::REFUSED_STREAM) => Kind::Stale,
        _ if e.is_go_away() && e.is_remote() => Kind::Stale,
        _ => Kind::UpstreamLost,
    };
    Error::io(kind, std::io::Error::other(e))
}

/// A failure on the client's stream: the client is gone.
pub fn client_error(e: h2::Error) -> Error {
    Error::client(std::io::Error::other(e))
}

/// Send `data` on `tx` as its window allows; `end` ends the stream with the last of it.
/// `who` says whose failure a broken or stalled stream is.
pub async fn send_data(
    tx: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    idle: Duration,
    who: fn(h2::Error) -> Error,
    stalled: Kind,
) -> Result<()> {
    if data.is_empty() {
        return if end {
            tx.send_data(data, true).map_err(who)
        } else {
            Ok(())
        };
    }
    while !data.is_empty() {
        tx.reserve_capacity(data.len());
        let granted = match timeout(idle, poll_fn(|cx| tx.poll_capacity(cx))).await {
            Ok(Some(Ok(n))) => n,
            Ok(Some(Err(e))) => return Err(who(e)),
            Ok(None) | Err(_) => return Err(Error::new(stalled)),
        };
        if granted == 0 {
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        tx.send_data(chunk, end && data.is_empty()).map_err(who)?;
    }
    Ok(())
}

/// Copy the client's request DATA (and trailers) to the backend's stream, giving the client
/// its window back as the backend takes it. Returns the body's length.
pub async fn pump(
    body: &mut RecvStream,
    tx: &mut SendStream<Bytes>,
    max_body: Option<u64>,
    idle: Duration,
) -> Result<u64> {
    let mut total = 0u64;
    loop {
        let next = match timeout(idle, body.data()).await {
            Ok(next) => next,
            Err(_) => return Err(Error::new(Kind::ClientLost)),
        };
        match next {
            None => break,
            Some(Ok(data)) => {
                let n = data.len();
                total += n as u64;
                if max_body.is_some_and(|max| total > max) {
                    return Err(Error::new(Kind::BodyTooLarge));
                }
                send_data(tx, data, false, idle, upstream_error, Kind::UpstreamTimeout).await?;
                let _ = body.flow_control().release_capacity(n);
            }
            Some(Err(e)) => return Err(super::stream::body_error(e)),
        }
    }
    match timeout(idle, body.trailers()).await {
        Ok(Ok(Some(trailers))) => tx.send_trailers(trailers).map_err(upstream_error)?,
        Ok(Ok(None)) => tx.send_data(Bytes::new(), true).map_err(upstream_error)?,
        Ok(Err(e)) => return Err(super::stream::body_error(e)),
        Err(_) => return Err(Error::new(Kind::ClientLost)),
    }
    Ok(total)
}

/// Copy the backend's response DATA and trailers to the client's stream. Returns the bytes
/// relayed.
pub async fn relay_response(
    from: &mut RecvStream,
    to: &mut SendStream<Bytes>,
    idle: Duration,
) -> Result<u64> {
    let mut total = 0u64;
    loop {
        let next = match timeout(idle, from.data()).await {
            Ok(next) => next,
            Err(_) => return Err(Error::new(Kind::UpstreamTimeout)),
        };
        match next {
            None => break,
            Some(Ok(data)) => {
                let n = data.len();
                total += n as u64;
                send_data(to, data, false, idle, client_error, Kind::ClientLost).await?;
                let _ = from.flow_control().release_capacity(n);
            }
            Some(Err(e)) => return Err(upstream_error(e)),
        }
    }
    match timeout(idle, from.trailers()).await {
        Ok(Ok(Some(trailers))) => to.send_trailers(trailers).map_err(client_error)?,
        Ok(Ok(None)) => to.send_data(Bytes::new(), true).map_err(client_error)?,
        Ok(Err(e)) => return Err(upstream_error(e)),
        Err(_) => return Err(Error::new(Kind::UpstreamTimeout)),
    }
    Ok(total)
}
