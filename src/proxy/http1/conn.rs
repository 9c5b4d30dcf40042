//! One HTTP/1.x client connection, from accept to close, and the HTTP/1.1 side of its
//! exchanges with HTTP/1.1 backends.
//!
//! Owns the connection's loop and its states: `Idle` (waiting for the next request; buffers
//! given back after a second), `ReadingHead` (within `head_timeout` from the first byte),
//! then the protocol-independent `exchange` phases (decide, try, retry, track), and for each
//! try the HTTP/1.1 phases: `open` (a pooled or new backend connection), `send_request` (head,
//! `100 Continue`, body), `read_response_head` (interim responses passed on), and
//! `relay_response` (head and small bodies in one write, the rest in the framing the client
//! reads; a tunnel after a 101). Requests are handled one at a time, so pipelined requests are
//! answered in order. A backend connection goes back to its pool only after an exchange that
//! ended exactly at a message boundary. It does not own the wire rules (`request`,
//! `response`, `chunked`), the copy loops (`relay`) or any decision about the request
//! (`exchange`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tracing::debug;

use super::chunked::ChunkedDecoder;
use super::relay::{self, send, Chunks, Direction};
use super::request::{self, Forwarding};
use super::response::{self, ClientFraming};
use super::{local, Framing, Version};
use crate::proxy::client::{ClientStream, Front};
use crate::proxy::deadline::Deadline;
use crate::proxy::drain::ConnGuard;
use crate::proxy::error::{Error, Kind, Result};
use crate::proxy::exchange::{
    self, decide, Attempts, Body, Decision, Finish, Head, Progress, Relayed, Routed, Track, Try,
};
use crate::proxy::forwarded;
use crate::proxy::http2;
use crate::proxy::tls::Prefixed;
use crate::proxy::upstream::backend::Backend;
use crate::proxy::upstream::stream::{self, TlsFailure, UpstreamStream};
use crate::proxy::{Shared, Snapshot};
use crate::telemetry::counted::Counted;

/// Room made for reading a head: most heads fit, and ten thousand connections reading heads
/// at once stay small.
const HEAD_CHUNK: usize = 4 * 1024;
/// Buffers grown past this by a large body are dropped after the exchange.
const KEEP_BUFFER: usize = 16 * 1024;
/// A keep-alive connection idle this long releases its buffers.
const BUFFER_RELEASE_AFTER: Duration = Duration::from_secs(1);
/// Response bytes up to this size, already read with the head, are written with it.
const MERGE_LIMIT: usize = 64 * 1024;

/// Serve one client connection. `early` holds bytes already read from it (what followed a
/// PROXY protocol header); `peer` is the real client; `guard` counts it for a graceful stop.
pub async fn serve<S: ClientStream>(
    client: S,
    peer: SocketAddr,
    early: BytesMut,
    shared: Shared,
    guard: ConnGuard,
    front: Front,
) {
    let snap = shared.load_full();
    let mut conn = Conn {
        client: Counted::new(client),
        front,
        peer,
        shared,
        snap,
        guard,
        rbuf: early,
        wbuf: BytesMut::new(),
        uhead: BytesMut::new(),
        ubuf: BytesMut::new(),
        path: String::new(),
        track: Track::default(),
        marks: Marks::default(),
        timer: Deadline::new(),
        clock: Instant::now(),
        http2: false,
    };
    if let Err(e) = conn.run().await {
        debug!(%peer, error = %e, "connection ended");
    }
    if conn.http2 {
        // Prior knowledge: the client spoke HTTP/2 from its first byte.
        let Conn {
            client,
            rbuf,
            shared,
            guard,
            front,
            ..
        } = conn;
        let io = Prefixed::new(rbuf, client.into_inner());
        Box::pin(http2::serve(io, peer, shared, guard, front)).await;
    }
}

pub(super) struct Conn<S> {
    /// Counts bytes both ways for the request metrics and the access log.
    pub(super) client: Counted<S>,
    front: Front,
    peer: SocketAddr,
    shared: Shared,
    /// The configuration this connection's current request runs on. Refreshed between
    /// requests, so a request in flight finishes on the configuration it started with.
    pub(super) snap: Arc<Snapshot>,
    /// Counts this connection for a graceful stop, and says when to finish.
    pub(super) guard: ConnGuard,
    /// Bytes read from the client and not yet consumed (the next pipelined request, if any).
    pub(super) rbuf: BytesMut,
    /// A head or local response on its way to the client.
    pub(super) wbuf: BytesMut,
    /// The head on its way to the backend; kept until the exchange ends, for a retry.
    pub(super) uhead: BytesMut,
    /// Bytes read from the backend and not yet relayed.
    ubuf: BytesMut,
    /// The current request's path in normal form, when that differs from the one received.
    path: String,
    /// Telemetry hook: what the current request did, for its metrics and access log line.
    pub(super) track: Track,
    marks: Marks,
    /// The time limit of whichever wait is current (idle, head, response head).
    timer: Deadline,
    /// The latest clock reading: taken when a request's first bytes are at hand and when it
    /// ends, and reused for what is computed between (the idle and head deadlines), rather
    /// than read again for each.
    clock: Instant,
    /// The connection began with the HTTP/2 preface (`http` listeners with `http2`): its
    /// bytes are in `rbuf`, for `http2` to serve.
    http2: bool,
}

/// Where the current request's bytes begin in the connection's counts.
#[derive(Default)]
struct Marks {
    read: u64,
    written: u64,
    /// Unconsumed `rbuf` bytes when the request began (read before it, counted for it).
    leftover: usize,
}

/// What the HTTP/1.1 framing of one request says, kept once its head's buffer is consumed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Framed {
    pub(super) framing: Framing,
    pub(super) version: Version,
    pub(super) keep_alive: bool,
    pub(super) expect_continue: bool,
    pub(super) head_request: bool,
    /// The client asked to upgrade (WebSocket): a 101 turns the connection into a tunnel.
    upgrade: bool,
}

impl Framed {
    /// A head that could not be parsed: nothing about it is known.
    const BROKEN: Framed = Framed {
        framing: Framing::Empty,
        version: Version::Http11,
        keep_alive: false,
        expect_continue: false,
        head_request: false,
        upgrade: false,
    };

    fn of(req: &request::Request<'_, '_>) -> Framed {
        Framed {
            framing: req.framing,
            version: req.version,
            keep_alive: req.keep_alive,
            expect_continue: req.expect_continue && req.version == Version::Http11,
            head_request: req.method == "HEAD",
            upgrade: req.upgrade.is_some(),
        }
    }

    /// Whether the connection can carry another request after a local answer: there is no
    /// unread body and the client keeps the connection.
    fn keep(&self) -> bool {
        self.framing == Framing::Empty && self.keep_alive
    }
}

enum Next {
    KeepOpen,
    Close,
}

impl<S: ClientStream> Conn<S> {
    async fn run(&mut self) -> Result<()> {
        loop {
            let current = self.shared.load();
            if !Arc::ptr_eq(&current, &self.snap) {
                self.snap = arc_swap::Guard::into_inner(current);
            }
            self.track = Track::default();
            self.marks = Marks {
                read: self.client.read,
                written: self.client.written,
                leftover: self.rbuf.len(),
            };
            let Some((decision, framed)) = self.read_request().await? else {
                return Ok(());
            };
            let result = match decision {
                Decision::Local {
                    status,
                    body,
                    malformed,
                } => self.local(status, body, malformed || !framed.keep()).await,
                Decision::Redirect { status, location } => {
                    self.redirect(status, &location, !framed.keep()).await
                }
                Decision::Challenge(key_authorization) => {
                    self.challenge(&key_authorization, !framed.keep()).await
                }
                Decision::Forward(routed) => {
                    self.track.routed = Some((routed.target, routed.pool));
                    self.exchange(&routed, framed).await
                }
            };
            self.finish_request();
            let next = result?;
            // Draining: the response just sent was the last one (its head said so if it was
            // written after the drain began).
            if matches!(next, Next::Close) || self.guard.is_draining() {
                let _ = self.client.shutdown().await;
                return Ok(());
            }
            if self.ubuf.capacity() > KEEP_BUFFER {
                self.ubuf = BytesMut::new();
            }
            if self.rbuf.is_empty() && self.rbuf.capacity() > KEEP_BUFFER {
                self.rbuf = BytesMut::new();
            }
        }
    }

    /// `ReadingHead`: read and decide the next request; `None` when the client closed or
    /// idled out between requests.
    async fn read_request(&mut self) -> Result<Option<(Decision, Framed)>> {
        let settings = &self.snap.settings;
        let limits = request::Limits {
            max_request_line: settings.max_request_line,
            max_head_size: settings.max_head_size,
            max_headers: settings.max_headers,
        };
        let mut started = !self.rbuf.is_empty();
        // Fresh: the previous request just ended (or the connection just began).
        let now = self.clock;
        if started {
            self.track.start = Some(now);
        }
        // The head limit runs from its first byte: a keep-alive client may idle first.
        let mut deadline = now + settings.head_timeout;
        let head_timeout = settings.head_timeout;
        let idle = settings.client_idle_timeout;
        loop {
            if started {
                // Only a connection's first bytes can be a preface: nothing was answered yet.
                let preface = self.front.http2
                    && self.client.written == 0
                    && http2::starts_with_preface(&self.rbuf);
                if preface && self.rbuf.len() >= http2::PREFACE.len() {
                    self.http2 = true;
                    return Ok(None);
                }
                if !preface {
                    if let Some(decided) = self.parse_and_decide(&limits) {
                        return Ok(Some(decided));
                    }
                }
            }
            let read = if started {
                self.rbuf.reserve(HEAD_CHUNK);
                match self
                    .timer
                    .run(deadline, self.client.read_buf(&mut self.rbuf))
                    .await
                {
                    Ok(r) => r.map_err(Error::client)?,
                    Err(_) => {
                        let late = Decision::Local {
                            status: 408,
                            body: "request head not received in time",
                            malformed: true,
                        };
                        return Ok(Some((late, Framed::BROKEN)));
                    }
                }
            } else {
                match self.wait_for_request(idle).await? {
                    Some(read) => read,
                    None => return Ok(None),
                }
            };
            if read == 0 {
                // EOF: clean between requests; mid-head the client gave up, nothing to answer.
                return Ok(None);
            }
            if !started {
                self.track.start = Some(self.clock);
                deadline = self.clock + head_timeout;
            }
            started = true;
        }
    }

    /// Parse the buffered head and decide it; `None` while the head is incomplete. A decided
    /// head is consumed from `rbuf`; a forwarded one leaves its upstream head in `uhead`.
    fn parse_and_decide(&mut self, limits: &request::Limits) -> Option<(Decision, Framed)> {
        let mut headers = super::headers();
        let req = match request::parse(&self.rbuf, &mut headers, limits) {
            Ok(Some(req)) => req,
            Ok(None) => return None,
            Err(e) => {
                debug!(peer = %self.peer, error = %e, "refused request head");
                self.track.log_refused(&self.snap, &self.front, self.peer);
                let refused = Decision::Local {
                    status: e.status(),
                    body: match e.status() {
                        414 => "request line too long",
                        431 => "request head too large",
                        501 => "transfer coding not implemented",
                        _ => "bad request",
                    },
                    malformed: true,
                };
                return Some((refused, Framed::BROKEN));
            }
        };
        let framed = Framed::of(&req);
        let head_len = req.head_len;
        let received = req.path;
        let rules = self.snap.settings.path;
        let (snap, front, peer) = (&self.snap, &self.front, self.peer);
        let challenge = decide::acme_challenge(
            front,
            req.method,
            received.as_bytes(),
            crate::acme::challenge::challenges(),
        );
        let decision = match challenge {
            Some(answer) => {
                self.track
                    .log_head(snap, front, peer, &head_of(&req), received, &answer);
                answer
            }
            None => match decide::normal_path(peer, received, rules, &mut self.path) {
                // Everything after this sees the path in normal form, the backend too.
                Ok(path) => {
                    let mut req = req;
                    req.path = path;
                    let head = head_of(&req);
                    let decision = decide::decide(snap, front, peer, &head);
                    if let Decision::Forward(routed) = &decision {
                        write_upstream_head(snap, front, peer, &req, routed, &mut self.uhead);
                    }
                    self.track
                        .log_head(snap, front, peer, &head, received, &decision);
                    decision
                }
                Err(not_normal) => {
                    let decision = not_normal.answer(&self.path);
                    self.track
                        .log_head(snap, front, peer, &head_of(&req), received, &decision);
                    decision
                }
            },
        };
        self.rbuf.advance(head_len);
        Some((decision, framed))
    }

    /// `Idle`: wait until the client sends the next request and read its first bytes;
    /// `Ok(None)` when `idle` passes first. A connection that stays idle past
    /// `BUFFER_RELEASE_AFTER` gives its buffers back, so ten thousand idle keep-alive clients
    /// cost little more than their sockets; until then the wait is the read itself, one
    /// readiness poll fewer per request. An idle keep-alive connection is closed at once when
    /// a graceful stop begins; a request that has already arrived is still answered.
    async fn wait_for_request(&mut self, idle: Duration) -> Result<Option<usize>> {
        let since = self.clock;
        let first = idle.min(BUFFER_RELEASE_AFTER);
        self.rbuf.reserve(HEAD_CHUNK);
        let read = tokio::select! {
            biased;
            r = self.timer.run(since + first, self.client.read_buf(&mut self.rbuf)) => r.ok(),
            () = self.guard.draining() => return Ok(None),
        };
        let read = match read {
            Some(r) => r.map_err(Error::client)?,
            None if first >= idle => return Ok(None),
            None => {
                self.rbuf = BytesMut::new();
                self.wbuf = BytesMut::new();
                self.uhead = BytesMut::new();
                self.ubuf = BytesMut::new();
                match self.readable_within(since + idle).await {
                    Some(Ok(true)) => {}
                    Some(Ok(false)) | None => return Ok(None),
                    Some(Err(e)) => return Err(Error::client(e)),
                }
                self.rbuf.reserve(HEAD_CHUNK);
                // Readable now; the timeout only guards a spurious wake-up.
                match self
                    .timer
                    .run(Instant::now() + idle, self.client.read_buf(&mut self.rbuf))
                    .await
                {
                    Ok(r) => r.map_err(Error::client)?,
                    Err(_) => return Ok(None),
                }
            }
        };
        self.clock = Instant::now();
        Ok(Some(read))
    }

    /// `Some(Ok(true))` when the client sent something, `Some(Ok(false))` when draining began,
    /// `None` when `deadline` passed.
    async fn readable_within(&mut self, deadline: Instant) -> Option<std::io::Result<bool>> {
        tokio::select! {
            biased;
            r = self.timer.run(deadline, self.client.inner_mut().readable()) => r.ok().map(|r| r.map(|()| true)),
            () = self.guard.draining() => Some(Ok(false)),
        }
    }

    async fn local(&mut self, status: u16, body: &'static str, close: bool) -> Result<Next> {
        self.track.status = status;
        self.wbuf.clear();
        local::write_error(status, body, close, &mut self.wbuf);
        send(&mut self.client, &self.wbuf)
            .await
            .map_err(Error::client)?;
        Ok(if close { Next::Close } else { Next::KeepOpen })
    }

    async fn challenge(&mut self, key_authorization: &str, close: bool) -> Result<Next> {
        self.track.status = 200;
        self.wbuf.clear();
        local::write_text(key_authorization, close, &mut self.wbuf);
        send(&mut self.client, &self.wbuf)
            .await
            .map_err(Error::client)?;
        crate::acme::metrics::answered(false);
        Ok(if close { Next::Close } else { Next::KeepOpen })
    }

    async fn redirect(&mut self, status: u16, location: &str, close: bool) -> Result<Next> {
        self.track.status = status;
        self.wbuf.clear();
        local::write_redirect(status, location, close, &mut self.wbuf);
        send(&mut self.client, &self.wbuf)
            .await
            .map_err(Error::client)?;
        Ok(if close { Next::Close } else { Next::KeepOpen })
    }

    /// Run the exchange of a forwarded request (its head is in `uhead`) and answer what it
    /// could not relay.
    async fn exchange(&mut self, routed: &Routed, framed: Framed) -> Result<Next> {
        let snap = self.snap.clone();
        let mut ex = Exchanging {
            conn: self,
            req: framed,
            progress: Progress::Nothing,
            continue_sent: false,
        };
        let finish = exchange::run(&mut ex, &snap, routed).await?;
        let progress = ex.progress;
        match finish {
            Finish::Relayed(r) => {
                self.track.status = r.status;
                Ok(if r.keep { Next::KeepOpen } else { Next::Close })
            }
            Finish::Failed(e) => {
                let (status, body) = e.answer().unwrap_or((502, "backend unavailable"));
                // A try cut short by the route's deadline may have left anything half read.
                let close =
                    !framed.keep() || progress != Progress::Nothing || e.kind == Kind::RouteTimeout;
                self.local(status, body, close).await
            }
            // The client's response is half sent: closing is the only honest signal left.
            Finish::Cut(e) => {
                debug!(peer = %self.peer, error = %e, "response cut short");
                self.track.status = if e.kind == Kind::RouteTimeout {
                    504
                } else {
                    502
                };
                Ok(Next::Close)
            }
        }
    }

    /// Telemetry hook: count the request that just ended and hand its access log line over.
    fn finish_request(&mut self) {
        if self.track.start.is_none() {
            return;
        }
        let now = Instant::now();
        self.clock = now;
        let m = &self.marks;
        let bytes_in =
            (self.client.read - m.read + m.leftover as u64).saturating_sub(self.rbuf.len() as u64);
        let bytes_out = self.client.written - m.written;
        self.track.finish(&self.snap, now, bytes_in, bytes_out);
    }

    /// After a 101 the two connections carry another protocol (WebSocket): move bytes both
    /// ways until either side closes, starting with what each side already sent us.
    async fn tunnel(&mut self, mut upstream: UpstreamStream) {
        let early_client = std::mem::take(&mut self.rbuf);
        let early_backend = std::mem::take(&mut self.ubuf);
        if (!early_client.is_empty() && upstream.write_all(&early_client).await.is_err())
            || (!early_backend.is_empty() && send(&mut self.client, &early_backend).await.is_err())
        {
            return;
        }
        match tokio::io::copy_bidirectional(&mut self.client, &mut upstream).await {
            Ok((up, down)) => debug!(peer = %self.peer, up, down, "tunnel closed"),
            Err(e) => debug!(peer = %self.peer, error = %e, "tunnel ended"),
        }
    }
}

/// `open` when no pooled connection is idle: a new connection to `backend`, for every
/// protocol's tries against HTTP/1.1 backends.
pub(crate) async fn connect(backend: &Backend, limit: Duration) -> Result<UpstreamStream> {
    // Boxed: a connect's state (a TLS handshake's included) is bigger than the rest of an
    // exchange, and inline it would be carried by every connection's task, idle ones too.
    // New backend connections are rare next to the pooled ones.
    match Box::pin(stream::connect(backend, limit, &[])).await {
        Ok(s) => Ok(s),
        Err(e) => {
            debug!(backend = %backend.address, error = %e, "connect failed");
            Err(Error::new(Kind::Connect))
        }
    }
}

/// The head to send to the backend, from the client's (path in normal form) and the decision.
pub(crate) fn write_upstream_head(
    snap: &Snapshot,
    front: &Front,
    peer: SocketAddr,
    req: &request::Request<'_, '_>,
    routed: &Routed,
    uhead: &mut BytesMut,
) {
    let id = routed.request_id.map(|id| id.hex());
    uhead.clear();
    request::write_upstream_head(req, &forwarding(snap, front, peer, routed, &id), uhead);
}

/// What the forwarding fields say of a request, for every protocol's upstream head; `id` is
/// the request id's text.
pub(crate) fn forwarding<'a>(
    snap: &Snapshot,
    front: &Front,
    peer: SocketAddr,
    routed: &Routed,
    id: &'a Option<[u8; 32]>,
) -> Forwarding<'a> {
    Forwarding {
        peer: peer.ip(),
        client: routed.client_ip,
        peer_trusted: forwarded::peer_is_trusted(&snap.settings, peer.ip()),
        proto: if front.tls.is_some() { "https" } else { "http" },
        request_id: id.as_ref().map(decide::hex_str),
    }
}

/// What one read of a response head did: `Ok(true)` when bytes came. `got_any`: some of
/// this head had come before; `lost`: what a connection that closed before answering means.
pub(crate) fn head_read(
    read: std::result::Result<std::io::Result<usize>, crate::proxy::deadline::Elapsed>,
    got_any: bool,
    reused: bool,
    lost: Kind,
    backend: &Backend,
) -> Result<bool> {
    match read {
        Ok(Ok(0)) if !got_any => Err(Error::io(lost, std::io::ErrorKind::UnexpectedEof.into())),
        Ok(Ok(0)) => Err(Error::new(Kind::BadResponse)),
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) if !got_any => {
            // A TLS 1.3 backend refuses a client certificate only after our side of the
            // handshake is done: its alert is the first thing we read.
            let refused = (!reused).then(|| TlsFailure::of_first_read(&e)).flatten();
            if let (Some(reason), Some(origin)) = (refused, backend.tls()) {
                backend.tls_failed(&origin.pool, reason, &e);
                return Err(Error::io(Kind::Connect, e));
            }
            Err(Error::io(lost, e))
        }
        Ok(Err(e)) => Err(Error::io(Kind::BadResponse, e)),
        Err(_) => Err(Error::new(Kind::UpstreamTimeout)),
    }
}

/// The protocol-independent view of an HTTP/1 request head.
fn head_of<'a>(req: &'a request::Request<'a, '_>) -> Head<'a> {
    Head {
        method: req.method,
        protocol: req.version.name(),
        authority: req.authority,
        path: req.path,
        fields: req.headers,
        body: match req.framing {
            Framing::Empty => Body::None,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked | Framing::UntilClose => Body::Streamed,
        },
    }
}

/// One exchange of a connection: its tries against the pool's backends (HTTP/2 ones in
/// `to_http2`).
pub(super) struct Exchanging<'c, S> {
    pub(super) conn: &'c mut Conn<S>,
    pub(super) req: Framed,
    pub(super) progress: Progress,
    /// `100 Continue` went to the client (once, whatever the number of tries).
    pub(super) continue_sent: bool,
}

/// A final response head from the backend, its client head written into `wbuf`.
struct ResponseHead {
    status: u16,
    backend_framing: Framing,
    client_framing: ClientFraming,
    /// The client connection can carry another request after this response.
    keep: bool,
    /// The backend connection can, if the body ends at the message boundary.
    reusable: bool,
    /// When the head was complete.
    at: Instant,
}

/// What one parse of the backend's buffered bytes found.
enum Parsed {
    Incomplete,
    /// A 1xx: its client head is in `wbuf`.
    Interim,
    Final(ResponseHead),
}

impl<S: ClientStream> Attempts for Exchanging<'_, S> {
    fn attempt<'a>(
        &'a mut self,
        backend: &'a Backend,
        t: &'a Try<'a>,
    ) -> impl Future<Output = Result<Relayed>> + Send + 'a {
        self.try_backend(backend, t)
    }

    fn progress(&self) -> Progress {
        self.progress
    }

    fn track(&mut self) -> &mut Track {
        &mut self.conn.track
    }
}

impl<S: ClientStream> Exchanging<'_, S> {
    /// One try, in its phases. The common case (a pooled connection, no request body, a
    /// response body that came with its head) runs here without entering the phases' own
    /// futures: each costs its state's setup on every request that enters it.
    async fn try_backend(&mut self, backend: &Backend, t: &Try<'_>) -> Result<Relayed> {
        if backend.speaks_http2() {
            // Boxed: its state would otherwise size every HTTP/1.1 exchange's future.
            return Box::pin(self.try_http2(backend, t)).await;
        }
        // `open`: a pooled connection, else a new one.
        let (mut upstream, reused) = match backend.checkout(t.started.into_std()) {
            Some(s) => (s, true),
            None => (
                connect(backend, self.conn.snap.settings.connect_timeout).await?,
                false,
            ),
        };
        // What a failure before the response means: a pooled connection may just have been
        // closed by the backend, which says nothing about its health.
        let lost = if reused {
            Kind::Stale
        } else {
            Kind::UpstreamLost
        };
        // `send_request`: the head, then the body.
        upstream
            .write_all(&self.conn.uhead)
            .await
            .map_err(|e| Error::io(lost, e))?;
        if self.req.framing != Framing::Empty {
            self.send_body(&mut upstream, t.max_body).await?;
        }
        // TLS keeps what did not fit the socket in its own buffer until flushed.
        upstream.flush().await.map_err(|e| Error::io(lost, e))?;
        // `read_response_head`: until a final head, each within one limit; interim (1xx) ones
        // are passed on. Only a head went out, on a pooled connection, without waiting on
        // anything: the try's start is as good a clock reading for the first head's limit as
        // a new one.
        let mut head_from = (reused && self.req.framing == Framing::Empty).then_some(t.started);
        let head_timeout = t
            .per_try_timeout
            .unwrap_or(self.conn.snap.settings.backend_timeout);
        self.conn.wbuf.clear();
        self.conn.ubuf.clear();
        let head = 'head: loop {
            let deadline = head_from.take().unwrap_or_else(Instant::now) + head_timeout;
            let mut got_any = false;
            loop {
                match self.parse_response(t)? {
                    Parsed::Incomplete => {}
                    Parsed::Final(head) => break 'head head,
                    Parsed::Interim => {
                        self.pass_interim().await?;
                        break;
                    }
                }
                let c = &mut *self.conn;
                c.ubuf.reserve(HEAD_CHUNK);
                let read = c.timer.run(deadline, upstream.read_buf(&mut c.ubuf)).await;
                got_any = head_read(read, got_any, reused, lost, backend)?;
            }
        };
        self.conn.track.upstream = Some(head.at.saturating_duration_since(t.started));
        // `relay_response`: the head with as much of the body as came with it, in one write.
        let (rest, decoder) = self.merge_body(&head, backend)?;
        self.progress = Progress::ResponseStarted;
        let c = &mut *self.conn;
        send(&mut c.client, &c.wbuf).await.map_err(Error::client)?;
        if head.status == 101 {
            c.tunnel(upstream).await;
            return Ok(Relayed {
                status: head.status,
                keep: false,
            });
        }
        // The whole body came with the head: the backend has been idle since then.
        let body_in_head = matches!(rest, Framing::Empty | Framing::Length(0));
        if !body_in_head {
            self.relay_body(&mut upstream, rest, head.client_framing, decoder)
                .await?;
        }
        // Only a connection that ended exactly at the message boundary can carry the next
        // request: leftover bytes would be read as its response.
        if head.reusable && head.backend_framing != Framing::UntilClose && self.conn.ubuf.is_empty()
        {
            let idle_since = if body_in_head {
                head.at
            } else {
                Instant::now()
            };
            backend.checkin(upstream, idle_since.into_std());
        }
        Ok(Relayed {
            status: head.status,
            keep: head.keep,
        })
    }

    /// `send_request`'s body: after a `100 Continue` of our own, the body as framed.
    async fn send_body(
        &mut self,
        upstream: &mut UpstreamStream,
        max_body: Option<u64>,
    ) -> Result<()> {
        let c = &mut *self.conn;
        if self.req.expect_continue && !self.continue_sent {
            // We ask for the body ourselves rather than wait for the backend's 100, so the
            // backend never sees Expect and the client never stalls on us.
            send(&mut c.client, local::CONTINUE)
                .await
                .map_err(Error::client)?;
            self.continue_sent = true;
        }
        let idle = c.snap.settings.backend_timeout;
        let body = Direction::Request;
        self.progress = self.progress.max(Progress::BodyTaken);
        match self.req.framing {
            Framing::Empty | Framing::UntilClose => Ok(()),
            Framing::Length(n) => {
                relay::copy_exact(&mut c.rbuf, &mut c.client, upstream, n, idle, body).await
            }
            Framing::Chunked => {
                relay::copy_chunked(
                    &mut c.rbuf,
                    &mut c.client,
                    upstream,
                    ChunkedDecoder::new(),
                    Chunks::Keep,
                    max_body,
                    idle,
                    body,
                )
                .await
            }
        }
    }

    /// Pass an interim (1xx) response head on: it means nothing to an HTTP/1.0 client (RFC
    /// 9110 §15.2).
    async fn pass_interim(&mut self) -> Result<()> {
        if self.req.version == Version::Http11 {
            send(&mut self.conn.client, &self.conn.wbuf)
                .await
                .map_err(Error::client)?;
        }
        self.conn.wbuf.clear();
        Ok(())
    }

    /// Parse the buffered response bytes; a complete head is consumed from `ubuf` and its
    /// client head written into `wbuf`, unless it is a status dropped for a retry.
    fn parse_response(&mut self, t: &Try<'_>) -> Result<Parsed> {
        let c = &mut *self.conn;
        let req = self.req;
        // The header array (3 KB) lives only in this call: across the read that follows it
        // would sit in every connection's task for its whole life.
        let mut headers = super::headers();
        let resp = match response::parse(&c.ubuf, &mut headers, req.head_request) {
            Ok(Some(resp)) => resp,
            Ok(None) => return Ok(Parsed::Incomplete),
            Err(e) => {
                debug!(error = %e, "bad response head");
                return Err(Error::new(Kind::BadResponse));
            }
        };
        if resp.is_switching() && !req.upgrade {
            debug!("101 without an upgrade request");
            return Err(Error::new(Kind::BadResponse));
        }
        let interim = resp.is_interim();
        if !interim {
            if let Some(dropped) = t.dropped(resp.status) {
                return Err(dropped);
            }
        }
        c.wbuf.clear();
        // Once draining, tell the client this is the connection's last response.
        let keep_alive = req.keep_alive && !c.guard.is_draining();
        let client_framing =
            response::write_client_head(&resp, req.version, keep_alive, &mut c.wbuf);
        let head = ResponseHead {
            status: resp.status,
            backend_framing: resp.framing,
            client_framing,
            keep: response::client_may_keep(&resp, client_framing, keep_alive),
            reusable: !resp.close,
            at: Instant::now(),
        };
        let head_len = resp.head_len;
        c.ubuf.advance(head_len);
        Ok(if interim {
            Parsed::Interim
        } else {
            Parsed::Final(head)
        })
    }

    /// `relay_response`'s first step: move the body bytes read with the head (up to
    /// `MERGE_LIMIT`) behind the client head in `wbuf`. Returns what of the body is left to
    /// relay and the chunked decoder's state part-way through it.
    fn merge_body(
        &mut self,
        head: &ResponseHead,
        backend: &Backend,
    ) -> Result<(Framing, ChunkedDecoder)> {
        let c = &mut *self.conn;
        let mut rest = head.backend_framing;
        let mut decoder = ChunkedDecoder::new();
        if c.ubuf.len() <= MERGE_LIMIT && head.status != 101 {
            match (head.backend_framing, head.client_framing) {
                (Framing::Length(n), _) => {
                    let take = (c.ubuf.len() as u64).min(n) as usize;
                    c.wbuf.extend_from_slice(&c.ubuf[..take]);
                    c.ubuf.advance(take);
                    rest = Framing::Length(n - take as u64);
                }
                (Framing::Chunked, ClientFraming::Same) => {
                    let p = decoder.feed(&c.ubuf, |_| {}).map_err(|e| {
                        debug!(backend = %backend.address, error = %e, "bad chunked response");
                        Error::new(Kind::BadResponse)
                    })?;
                    c.wbuf.extend_from_slice(&c.ubuf[..p.consumed]);
                    c.ubuf.advance(p.consumed);
                    if p.done {
                        rest = Framing::Empty;
                    }
                }
                _ => {}
            }
        }
        Ok((rest, decoder))
    }

    /// `relay_response`'s second step, when the body did not all come with the head: the
    /// rest of it, in the framing the client reads.
    async fn relay_body(
        &mut self,
        upstream: &mut UpstreamStream,
        rest: Framing,
        client_framing: ClientFraming,
        decoder: ChunkedDecoder,
    ) -> Result<()> {
        let c = &mut *self.conn;
        let io_timeout = c.snap.settings.backend_timeout;
        let (buf, client) = (&mut c.ubuf, &mut c.client);
        let dir = Direction::Response;
        match (rest, client_framing) {
            (Framing::Empty, _) | (Framing::Length(0), _) => Ok(()),
            (Framing::Length(n), _) => {
                relay::copy_exact(buf, upstream, client, n, io_timeout, dir).await
            }
            (Framing::Chunked, ClientFraming::Dechunk) => {
                relay::copy_chunked(
                    buf,
                    upstream,
                    client,
                    ChunkedDecoder::new(),
                    Chunks::Strip,
                    None,
                    io_timeout,
                    dir,
                )
                .await
            }
            (Framing::Chunked, _) => {
                relay::copy_chunked(
                    buf,
                    upstream,
                    client,
                    decoder,
                    Chunks::Keep,
                    None,
                    io_timeout,
                    dir,
                )
                .await
            }
            (Framing::UntilClose, ClientFraming::Rechunk) => {
                relay::rechunk_until_close(buf, upstream, client, io_timeout).await
            }
            (Framing::UntilClose, _) => {
                relay::copy_until_close(buf, upstream, client, io_timeout).await
            }
        }
    }
}
