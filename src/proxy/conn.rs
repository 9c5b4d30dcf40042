//! One client connection, from accept to close.
//!
//! Owns the request loop: read a head, route it, relay the request to a backend and the
//! response back, and decide whether the connection stays open. Requests are handled one at a
//! time, so pipelined requests are answered in order. Each backend exchange uses a fresh
//! connection (no upstream reuse yet). Any failure of a backend ends in a status for the
//! client, or in closing the client connection if the response had already started; it never
//! reaches beyond this task.

use std::io;
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::debug;

use super::drain::ConnGuard;
use super::http1::chunked::ChunkedDecoder;
use super::http1::response::{self, ClientFraming};
use super::http1::{local, request, Framing, Version, MAX_HEADERS};
use super::route::Miss;
use super::{
    Shared, BACKEND_CONNECT_TIMEOUT, BACKEND_IO_TIMEOUT, CLIENT_IDLE_TIMEOUT, HEAD_READ_TIMEOUT,
};

const READ_CHUNK: usize = 16 * 1024;

pub async fn serve(client: TcpStream, peer: SocketAddr, shared: Shared, guard: ConnGuard) {
    // Small heads and responses should leave at once rather than wait for Nagle.
    let _ = client.set_nodelay(true);
    let mut conn = Conn {
        client,
        peer,
        shared,
        guard,
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        wbuf: BytesMut::with_capacity(4096),
    };
    if let Err(e) = conn.run().await {
        debug!(%peer, error = %e, "connection ended");
    }
}

struct Conn {
    client: TcpStream,
    peer: SocketAddr,
    shared: Shared,
    /// Counts this connection for a graceful stop, and says when to finish.
    guard: ConnGuard,
    /// Bytes read from the client and not yet consumed (the next pipelined request, if any).
    rbuf: BytesMut,
    /// Head being written to the backend or a local response to the client.
    wbuf: BytesMut,
}

/// What to do with one request, decided while the head is still borrowed from `rbuf`.
enum Decision {
    Forward(Exchange),
    /// Answer locally; `close` when the connection cannot continue (unread body, bad head).
    Local {
        status: u16,
        body: &'static str,
        close: bool,
    },
}

/// A request to relay; the upstream head is already in `wbuf`.
struct Exchange {
    backend: SocketAddr,
    framing: Framing,
    version: Version,
    keep_alive: bool,
    expect_continue: bool,
    head_request: bool,
}

enum Next {
    KeepOpen,
    Close,
}

impl Conn {
    async fn run(&mut self) -> io::Result<()> {
        loop {
            let Some(decision) = self.read_request().await? else {
                return Ok(());
            };
            let next = match decision {
                Decision::Local {
                    status,
                    body,
                    close,
                } => {
                    self.wbuf.clear();
                    local::write_error(status, body, close, &mut self.wbuf);
                    self.client.write_all(&self.wbuf).await?;
                    if close {
                        Next::Close
                    } else {
                        Next::KeepOpen
                    }
                }
                Decision::Forward(ex) => self.exchange(ex).await?,
            };
            // Draining: the response just sent was the last one (its head said so if it was
            // written after the drain began).
            if matches!(next, Next::Close) || self.guard.is_draining() {
                let _ = self.client.shutdown().await;
                return Ok(());
            }
        }
    }

    /// Read and decide the next request; `None` when the client closed or idled out between
    /// requests.
    async fn read_request(&mut self) -> io::Result<Option<Decision>> {
        let mut started = !self.rbuf.is_empty();
        let deadline = tokio::time::Instant::now() + HEAD_READ_TIMEOUT;
        loop {
            if started {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match request::parse(&self.rbuf, &mut headers) {
                    Ok(Some(req)) => {
                        let head_len = req.head_len;
                        let decision = decide(&self.shared, self.peer, &req, &mut self.wbuf);
                        self.rbuf.advance(head_len);
                        return Ok(Some(decision));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        debug!(peer = %self.peer, error = %e, "refused request head");
                        return Ok(Some(Decision::Local {
                            status: e.status(),
                            body: match e.status() {
                                431 => "request head too large",
                                501 => "transfer coding not implemented",
                                _ => "bad request",
                            },
                            close: true,
                        }));
                    }
                }
            }
            self.rbuf.reserve(READ_CHUNK);
            let read = if started {
                match tokio::time::timeout_at(deadline, self.client.read_buf(&mut self.rbuf)).await
                {
                    Ok(r) => r?,
                    Err(_) => {
                        return Ok(Some(Decision::Local {
                            status: 408,
                            body: "request head not received in time",
                            close: true,
                        }))
                    }
                }
            } else {
                tokio::select! {
                    // A request that has arrived is answered even when draining has begun.
                    biased;
                    r = timeout(CLIENT_IDLE_TIMEOUT, self.client.read_buf(&mut self.rbuf)) => match r {
                        Ok(r) => r?,
                        Err(_) => return Ok(None),
                    },
                    // Idle keep-alive connection during a graceful stop: close it now.
                    () = self.guard.draining() => return Ok(None),
                }
            };
            if read == 0 {
                // EOF: clean between requests; mid-head the client gave up, nothing to answer.
                return Ok(None);
            }
            started = true;
        }
    }

    async fn exchange(&mut self, ex: Exchange) -> io::Result<Next> {
        let has_body = ex.framing != Framing::Empty;
        let mut upstream =
            match timeout(BACKEND_CONNECT_TIMEOUT, TcpStream::connect(ex.backend)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(backend = %ex.backend, error = %e, "backend connect failed");
                    return self
                        .local(502, "backend unavailable", has_body || !ex.keep_alive)
                        .await;
                }
                Err(_) => {
                    debug!(backend = %ex.backend, "backend connect timed out");
                    return self
                        .local(502, "backend unavailable", has_body || !ex.keep_alive)
                        .await;
                }
            };
        let _ = upstream.set_nodelay(true);
        if upstream.write_all(&self.wbuf).await.is_err() {
            return self.local(502, "backend unavailable", true).await;
        }
        if ex.expect_continue {
            // We ask for the body ourselves rather than wait for the backend's 100, so the
            // backend never sees Expect and the client never stalls on us.
            self.client.write_all(local::CONTINUE).await?;
        }
        match self.relay_request_body(&mut upstream, ex.framing).await {
            Ok(()) => {}
            Err(RelayError::Client(e)) => return Err(e),
            Err(RelayError::Upstream(e)) => {
                debug!(backend = %ex.backend, error = %e, "sending request body failed");
                return self.local(502, "backend unavailable", true).await;
            }
        }
        self.relay_response(&mut upstream, &ex).await
    }

    async fn local(&mut self, status: u16, body: &'static str, close: bool) -> io::Result<Next> {
        self.wbuf.clear();
        local::write_error(status, body, close, &mut self.wbuf);
        self.client.write_all(&self.wbuf).await?;
        Ok(if close { Next::Close } else { Next::KeepOpen })
    }

    async fn relay_request_body(
        &mut self,
        upstream: &mut TcpStream,
        framing: Framing,
    ) -> Result<(), RelayError> {
        match framing {
            Framing::Empty | Framing::UntilClose => Ok(()),
            Framing::Length(n) => copy_exact(&mut self.rbuf, &mut self.client, upstream, n).await,
            Framing::Chunked => {
                copy_chunked(&mut self.rbuf, &mut self.client, upstream, false).await
            }
        }
    }

    async fn relay_response(
        &mut self,
        upstream: &mut TcpStream,
        ex: &Exchange,
    ) -> io::Result<Next> {
        let mut ubuf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            // Read until one complete head is buffered.
            let parsed = loop {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match response::parse(&ubuf, &mut headers, ex.head_request) {
                    Ok(Some(resp)) => {
                        self.wbuf.clear();
                        // Once draining, tell the client this is the connection's last response.
                        let keep_alive = ex.keep_alive && !self.guard.is_draining();
                        let framing = response::write_client_head(
                            &resp,
                            ex.version,
                            keep_alive,
                            &mut self.wbuf,
                        );
                        break Ok((
                            resp.head_len,
                            resp.is_interim(),
                            resp.framing,
                            framing,
                            response::client_may_keep(&resp, framing, keep_alive),
                        ));
                    }
                    Ok(None) => {}
                    Err(e) => break Err(e.to_string()),
                }
                ubuf.reserve(READ_CHUNK);
                match timeout(BACKEND_IO_TIMEOUT, upstream.read_buf(&mut ubuf)).await {
                    Ok(Ok(0)) => break Err("backend closed before a complete response head".into()),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => break Err(e.to_string()),
                    Err(_) => {
                        return self
                            .local(504, "backend did not answer in time", true)
                            .await
                    }
                }
            };
            let (head_len, interim, backend_framing, client_framing, keep) = match parsed {
                Ok(p) => p,
                Err(why) => {
                    debug!(backend = %ex.backend, error = %why, "bad response");
                    return self.local(502, "bad response from backend", true).await;
                }
            };
            ubuf.advance(head_len);
            if interim {
                // 1xx interim responses mean nothing to an HTTP/1.0 client (RFC 9110 §15.2).
                if ex.version == Version::Http11 {
                    self.client.write_all(&self.wbuf).await?;
                }
                continue;
            }
            self.client.write_all(&self.wbuf).await?;
            let relayed = match (backend_framing, client_framing) {
                (Framing::Empty, _) => Ok(()),
                (Framing::Length(n), _) => copy_exact(&mut ubuf, upstream, &mut self.client, n)
                    .await
                    .map_err(RelayError::flip),
                (Framing::Chunked, ClientFraming::Dechunk) => {
                    copy_chunked(&mut ubuf, upstream, &mut self.client, true)
                        .await
                        .map_err(RelayError::flip)
                }
                (Framing::Chunked, _) => copy_chunked(&mut ubuf, upstream, &mut self.client, false)
                    .await
                    .map_err(RelayError::flip),
                (Framing::UntilClose, ClientFraming::Rechunk) => {
                    rechunk_until_close(&mut ubuf, upstream, &mut self.client)
                        .await
                        .map_err(RelayError::flip)
                }
                (Framing::UntilClose, _) => copy_until_close(&mut ubuf, upstream, &mut self.client)
                    .await
                    .map_err(RelayError::flip),
            };
            return match relayed {
                Ok(()) if keep => Ok(Next::KeepOpen),
                Ok(()) => Ok(Next::Close),
                // The client's response is half sent: closing is the only honest signal left.
                Err(RelayError::Upstream(e)) => {
                    debug!(backend = %ex.backend, error = %e, "response body cut short");
                    Ok(Next::Close)
                }
                Err(RelayError::Client(e)) => Err(e),
            };
        }
    }
}

fn decide(
    shared: &Shared,
    peer: SocketAddr,
    req: &request::Request<'_, '_>,
    wbuf: &mut BytesMut,
) -> Decision {
    let snapshot = shared.load();
    let has_body = req.framing != Framing::Empty;
    let Some(authority) = req.authority else {
        return Decision::Local {
            status: 400,
            body: "missing Host",
            close: true,
        };
    };
    let target = match snapshot.routes.lookup(authority, req.path) {
        Ok(t) => t,
        Err(Miss::BadHost) => {
            return Decision::Local {
                status: 400,
                body: "invalid Host",
                close: true,
            }
        }
        Err(Miss::UnknownHost) => {
            return Decision::Local {
                status: 404,
                body: "unknown host",
                close: has_body || !req.keep_alive,
            }
        }
        Err(Miss::NoRoute) => {
            return Decision::Local {
                status: 404,
                body: "no route for this path",
                close: has_body || !req.keep_alive,
            }
        }
    };
    let backend = snapshot.pools.get(target.pool).pick();
    debug!(
        peer = %peer,
        host = snapshot.routes.host_label(target.host),
        prefix = snapshot.routes.route_prefix(target),
        pool = %snapshot.pools.get(target.pool).name,
        %backend,
        method = req.method,
        path = req.path,
        "route"
    );
    wbuf.clear();
    request::write_upstream_head(req, peer.ip(), wbuf);
    Decision::Forward(Exchange {
        backend,
        framing: req.framing,
        version: req.version,
        keep_alive: req.keep_alive,
        expect_continue: req.expect_continue && req.version == Version::Http11,
        head_request: req.method == "HEAD",
    })
}

/// Which side of a relay failed: a client error ends the connection quietly, an upstream
/// error becomes a status (or a close, once the response has started).
#[derive(Debug)]
enum RelayError {
    /// The reading side (first argument of the copy helpers) failed or ended early.
    Client(io::Error),
    /// The writing side failed.
    Upstream(io::Error),
}

impl RelayError {
    /// The copy helpers name the source `Client` and the sink `Upstream`; for the response
    /// direction the roles are swapped.
    fn flip(self) -> RelayError {
        match self {
            RelayError::Client(e) => RelayError::Upstream(e),
            RelayError::Upstream(e) => RelayError::Client(e),
        }
    }
}

async fn read_more<R: AsyncRead + Unpin>(
    src: &mut R,
    buf: &mut BytesMut,
) -> Result<(), RelayError> {
    buf.reserve(READ_CHUNK);
    match timeout(BACKEND_IO_TIMEOUT, src.read_buf(buf)).await {
        Ok(Ok(0)) => Err(RelayError::Client(io::ErrorKind::UnexpectedEof.into())),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(RelayError::Client(e)),
        Err(_) => Err(RelayError::Client(io::ErrorKind::TimedOut.into())),
    }
}

async fn write<W: AsyncWrite + Unpin>(dst: &mut W, data: &[u8]) -> Result<(), RelayError> {
    dst.write_all(data).await.map_err(RelayError::Upstream)
}

/// Copy exactly `n` body bytes: first those already in `buf`, then from `src`. Bytes beyond
/// the body stay in `buf`.
async fn copy_exact<R, W>(
    buf: &mut BytesMut,
    src: &mut R,
    dst: &mut W,
    mut n: u64,
) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        if !buf.is_empty() {
            let take = (buf.len() as u64).min(n) as usize;
            write(dst, &buf[..take]).await?;
            buf.advance(take);
            n -= take as u64;
        }
        if n == 0 {
            return Ok(());
        }
        read_more(src, buf).await?;
    }
}

/// Relay a chunked body, validated by the decoder: as is, or (`dechunk`) payload only.
async fn copy_chunked<R, W>(
    buf: &mut BytesMut,
    src: &mut R,
    dst: &mut W,
    dechunk: bool,
) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut decoder = ChunkedDecoder::new();
    let mut payload = BytesMut::new();
    loop {
        if !buf.is_empty() {
            let progress = decoder
                .feed(buf, |data| {
                    if dechunk {
                        payload.extend_from_slice(data)
                    }
                })
                .map_err(|e| RelayError::Client(io::Error::new(io::ErrorKind::InvalidData, e)))?;
            if dechunk {
                write(dst, &payload).await?;
                payload.clear();
            } else {
                write(dst, &buf[..progress.consumed]).await?;
            }
            buf.advance(progress.consumed);
            if progress.done {
                return Ok(());
            }
        }
        read_more(src, buf).await?;
    }
}

/// Relay a body that ends when the backend closes, unchanged.
async fn copy_until_close<R, W>(
    buf: &mut BytesMut,
    src: &mut R,
    dst: &mut W,
) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        write(dst, buf).await?;
        buf.clear();
        match read_more(src, buf).await {
            Err(RelayError::Client(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            r => r?,
        }
    }
}

/// Relay a body that ends when the backend closes as chunks, so the client connection can
/// stay open.
async fn rechunk_until_close<R, W>(
    buf: &mut BytesMut,
    src: &mut R,
    dst: &mut W,
) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut size_line = BytesMut::with_capacity(20);
    loop {
        if !buf.is_empty() {
            size_line.clear();
            let _ = std::fmt::Write::write_fmt(
                &mut super::http1::request::Fmt(&mut size_line),
                format_args!("{:x}\r\n", buf.len()),
            );
            write(dst, &size_line).await?;
            write(dst, buf).await?;
            write(dst, b"\r\n").await?;
            buf.clear();
        }
        match read_more(src, buf).await {
            Err(RelayError::Client(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return write(dst, b"0\r\n\r\n").await;
            }
            r => r?,
        }
    }
}
