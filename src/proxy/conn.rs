//! One client connection, from accept to close.
//!
//! Owns the request loop: read a head, decide (route, access, limits), relay the request to a
//! backend chosen by its pool and the response back, retry where that is safe, and decide
//! whether the connection stays open. Requests are handled one at a time, so pipelined requests
//! are answered in order. Backend connections come from the backend's keep-alive pool and go
//! back only after an exchange that ended cleanly at a message boundary. Any failure of a
//! backend ends in a status for the client, or in closing the client connection if the response
//! had already started; it never reaches beyond this task.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use tracing::debug;

use super::deadline::Deadline;
use super::drain::ConnGuard;
use super::forwarded;
use super::http1::chunked::ChunkedDecoder;
use super::http1::request::{self, Forwarding};
use super::http1::response::{self, ClientFraming};
use super::http1::{local, Framing, Version};
use super::route::{Miss, Target};
use super::tls::TlsInfo;
use super::upstream::backend::{Backend, Outcome};
use super::upstream::stream::{self, TlsFailure, UpstreamStream};
use super::upstream::HashInput;
use super::{Shared, Snapshot};
use crate::config::{PoolId, RetryOn};
use crate::telemetry::access_log::{Record, RequestInfo};
use crate::telemetry::counted::Counted;
use crate::telemetry::metrics::Finished;
use crate::wire::path::{self, Normal};

/// Room made for reading a head: most heads fit, and ten thousand connections reading heads
/// at once stay small.
const HEAD_CHUNK: usize = 4 * 1024;
/// Room made for streaming a body, where fewer, larger reads pay off.
const BODY_CHUNK: usize = 64 * 1024;
/// Buffers grown past this by a large body are dropped after the exchange.
const KEEP_BUFFER: usize = 16 * 1024;
/// A keep-alive connection idle this long releases its buffers.
const BUFFER_RELEASE_AFTER: Duration = Duration::from_secs(1);
/// Response bytes up to this size, already read with the head, are written with it.
const MERGE_LIMIT: usize = 64 * 1024;

/// The client side of a connection: plain TCP, or TLS over it (`super::tls`).
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Resolves when a read would make progress (data, EOF or an error), without reading.
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_;
}

impl ClientStream for TcpStream {
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        TcpStream::readable(self)
    }
}

/// What the listener a connection arrived on tells the request loop.
#[derive(Debug, Clone, Default)]
pub struct Front {
    /// Set on https listeners: the handshake's SNI, version, cipher and client subject.
    pub tls: Option<Arc<TlsInfo>>,
    /// `http` listeners with `redirect_https`: every request gets this redirect.
    pub redirect_https: Option<u16>,
}

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
        req: Track::default(),
        timer: Deadline::new(),
        clock: Instant::now(),
    };
    if let Err(e) = conn.run().await {
        debug!(%peer, error = %e, "connection ended");
    }
}

struct Conn<S> {
    /// Counts bytes both ways for the request metrics and the access log.
    client: Counted<S>,
    front: Front,
    peer: SocketAddr,
    shared: Shared,
    /// The configuration this connection's current request runs on. Refreshed between
    /// requests, so a request in flight finishes on the configuration it started with.
    snap: Arc<Snapshot>,
    /// Counts this connection for a graceful stop, and says when to finish.
    guard: ConnGuard,
    /// Bytes read from the client and not yet consumed (the next pipelined request, if any).
    rbuf: BytesMut,
    /// A head or local response on its way to the client.
    wbuf: BytesMut,
    /// The head on its way to the backend; kept until the exchange ends, for a retry.
    uhead: BytesMut,
    /// Bytes read from the backend and not yet relayed.
    ubuf: BytesMut,
    /// The current request's path in normal form, when that differs from the one received.
    path: String,
    /// Telemetry hook: what the current request did, for its metrics and access log line.
    req: Track,
    /// The time limit of whichever wait is current (idle, head, response head).
    timer: Deadline,
    /// The latest clock reading: taken when a request's first bytes are at hand and when it
    /// ends, and reused for what is computed between (the idle and head deadlines), rather
    /// than read again for each.
    clock: Instant,
}

/// The current request as telemetry sees it. Reset per request without allocating; the access
/// log record is built only for a sampled request.
#[derive(Default)]
struct Track {
    /// When the first byte of the head was at hand.
    start: Option<Instant>,
    /// `client.read` / `client.written` and the unconsumed `rbuf` bytes when the request began.
    read_mark: u64,
    written_mark: u64,
    leftover: usize,
    routed: Option<(Target, PoolId)>,
    backend: Option<SocketAddr>,
    status: u16,
    upstream: Option<Duration>,
    retries: u32,
    log: Option<Record>,
}

/// Requests in a bad head cannot be logged with their method and path.
const EMPTY_INFO: RequestInfo<'static> = RequestInfo {
    client: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    method: "",
    protocol: "-",
    host: b"",
    path: "",
    normalized_path: "",
    user_agent: b"",
    referer: b"",
    request_id: b"",
};

/// What to do with one request, decided while the head is still borrowed from `rbuf`.
enum Decision {
    Forward(Exchange),
    /// Answer locally; `close` when the connection cannot continue (unread body, bad head).
    Local {
        status: u16,
        body: &'static str,
        close: bool,
    },
    /// `redirect_https`: the status (301 or 308) and the Location.
    Redirect {
        status: u16,
        location: String,
        close: bool,
    },
}

/// A request to relay; the backend head is already in `uhead`.
struct Exchange {
    target: Target,
    pool: PoolId,
    hash: u64,
    framing: Framing,
    version: Version,
    keep_alive: bool,
    expect_continue: bool,
    head_request: bool,
    /// Idempotent and without a body: may be sent again after a failure past connecting.
    replayable: bool,
    /// The client asked to upgrade (WebSocket): a 101 turns the connection into a tunnel.
    upgrade: bool,
    /// The `X-Request-Id` vipgate added, for the access log.
    request_id: Option<[u8; 32]>,
}

enum Next {
    KeepOpen,
    Close,
}

/// How one try against one backend ended.
enum Attempt {
    /// The response was relayed (or a local answer given); the status is for outlier detection.
    Done { next: Next, status: u16 },
    /// Failed before anything reached the client; may be retried.
    Failed { failure: Failure, body_sent: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Connect,
    /// A pooled connection the backend had closed: says nothing about the backend's health.
    Stale,
    Reset,
    Timeout,
    BadResponse,
    Status(u16),
}

impl Failure {
    fn retry_allowed(self, on: &RetryOn, replayable: bool) -> bool {
        match self {
            // Nothing reached the backend: any request may go elsewhere.
            Failure::Connect => on.connect_failure,
            Failure::Stale => replayable,
            Failure::Reset => on.reset && replayable,
            Failure::Timeout => on.timeout && replayable,
            Failure::BadResponse => false,
            Failure::Status(s) => {
                replayable && (on.server_error || (on.gateway_error && (502..=504).contains(&s)))
            }
        }
    }

    fn answer(self) -> (u16, &'static str) {
        match self {
            Failure::Timeout => (504, "backend did not answer in time"),
            Failure::BadResponse => (502, "bad response from backend"),
            // The backend's own status, though its body is gone: it was dropped for a retry
            // that then could not be made.
            Failure::Status(s) => (s, "backend error"),
            _ => (502, "backend unavailable"),
        }
    }
}

impl<S: ClientStream> Conn<S> {
    async fn run(&mut self) -> io::Result<()> {
        loop {
            let current = self.shared.load();
            if !Arc::ptr_eq(&current, &self.snap) {
                self.snap = arc_swap::Guard::into_inner(current);
            }
            self.req = Track {
                read_mark: self.client.read,
                written_mark: self.client.written,
                leftover: self.rbuf.len(),
                ..Track::default()
            };
            let Some(decision) = self.read_request().await? else {
                return Ok(());
            };
            let result = match decision {
                Decision::Local {
                    status,
                    body,
                    close,
                } => self.local(status, body, close).await,
                Decision::Redirect {
                    status,
                    location,
                    close,
                } => self.redirect(status, &location, close).await,
                Decision::Forward(ex) => {
                    self.req.routed = Some((ex.target, ex.pool));
                    self.exchange(ex).await
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

    /// Read and decide the next request; `None` when the client closed or idled out between
    /// requests.
    async fn read_request(&mut self) -> io::Result<Option<Decision>> {
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
            self.req.start = Some(now);
        }
        // The head limit runs from its first byte: a keep-alive client may idle first.
        let mut deadline = now + settings.head_timeout;
        let head_timeout = settings.head_timeout;
        let idle = settings.client_idle_timeout;
        let path_rules = settings.path;
        loop {
            if started {
                let mut headers = super::http1::headers();
                match request::parse(&self.rbuf, &mut headers, &limits) {
                    Ok(Some(req)) => {
                        let head_len = req.head_len;
                        let received = req.path;
                        // Everything after this sees the path in normal form, the backend too.
                        let normal = path::normalize(received, path_rules, &mut self.path);
                        let req = match normal {
                            Ok(Normal::Changed | Normal::Redirect) => request::Request {
                                path: &self.path,
                                ..req
                            },
                            _ => req,
                        };
                        let decision = match normal {
                            Err(e) => {
                                debug!(peer = %self.peer, path = received, error = %e, "refused request path");
                                Decision::Local {
                                    status: 400,
                                    body: "bad request path",
                                    close: true,
                                }
                            }
                            Ok(Normal::Redirect) => Decision::Redirect {
                                status: 308,
                                location: req.path.to_owned(),
                                close: req.framing != Framing::Empty || !req.keep_alive,
                            },
                            Ok(_) => {
                                decide(&self.snap, &self.front, self.peer, &req, &mut self.uhead)
                            }
                        };
                        self.req.log = access_record(
                            &self.snap,
                            &self.front,
                            self.peer,
                            &req,
                            received,
                            &decision,
                        );
                        self.rbuf.advance(head_len);
                        return Ok(Some(decision));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        debug!(peer = %self.peer, error = %e, "refused request head");
                        self.req.log =
                            self.snap
                                .access_log
                                .as_ref()
                                .filter(|l| l.sampled())
                                .map(|l| {
                                    Record::new(
                                        l.format,
                                        &RequestInfo {
                                            client: self.peer.ip(),
                                            ..EMPTY_INFO
                                        },
                                    )
                                });
                        return Ok(Some(Decision::Local {
                            status: e.status(),
                            body: match e.status() {
                                414 => "request line too long",
                                431 => "request head too large",
                                501 => "transfer coding not implemented",
                                _ => "bad request",
                            },
                            close: true,
                        }));
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
                self.req.start = Some(self.clock);
                deadline = self.clock + head_timeout;
            }
            started = true;
        }
    }

    /// Wait until the client sends the next request and read its first bytes; `Ok(None)` when
    /// `idle` passes first. A connection that stays idle past `BUFFER_RELEASE_AFTER` gives its
    /// buffers back, so ten thousand idle keep-alive clients cost little more than their
    /// sockets; until then the wait is the read itself, one readiness poll fewer per request.
    /// An idle keep-alive connection is closed at once when a graceful stop begins; a request
    /// that has already arrived is still answered.
    async fn wait_for_request(&mut self, idle: Duration) -> io::Result<Option<usize>> {
        let since = self.clock;
        let first = idle.min(BUFFER_RELEASE_AFTER);
        self.rbuf.reserve(HEAD_CHUNK);
        let read = tokio::select! {
            biased;
            r = self.timer.run(since + first, self.client.read_buf(&mut self.rbuf)) => r.ok(),
            () = self.guard.draining() => return Ok(None),
        };
        let read = match read {
            Some(r) => r?,
            None if first >= idle => return Ok(None),
            None => {
                self.rbuf = BytesMut::new();
                self.wbuf = BytesMut::new();
                self.uhead = BytesMut::new();
                self.ubuf = BytesMut::new();
                match self.readable_within(since + idle).await {
                    Some(Ok(true)) => {}
                    Some(Ok(false)) | None => return Ok(None),
                    Some(Err(e)) => return Err(e),
                }
                self.rbuf.reserve(HEAD_CHUNK);
                // Readable now; the timeout only guards a spurious wake-up.
                match self
                    .timer
                    .run(Instant::now() + idle, self.client.read_buf(&mut self.rbuf))
                    .await
                {
                    Ok(r) => r?,
                    Err(_) => return Ok(None),
                }
            }
        };
        self.clock = Instant::now();
        Ok(Some(read))
    }

    /// `Some(Ok(true))` when the client sent something, `Some(Ok(false))` when draining began,
    /// `None` when `deadline` passed.
    async fn readable_within(&mut self, deadline: Instant) -> Option<io::Result<bool>> {
        tokio::select! {
            biased;
            r = self.timer.run(deadline, self.client.inner_mut().readable()) => r.ok().map(|r| r.map(|()| true)),
            () = self.guard.draining() => Some(Ok(false)),
        }
    }

    async fn local(&mut self, status: u16, body: &'static str, close: bool) -> io::Result<Next> {
        self.req.status = status;
        self.wbuf.clear();
        local::write_error(status, body, close, &mut self.wbuf);
        send(&mut self.client, &self.wbuf).await?;
        Ok(if close { Next::Close } else { Next::KeepOpen })
    }

    async fn redirect(&mut self, status: u16, location: &str, close: bool) -> io::Result<Next> {
        self.req.status = status;
        self.wbuf.clear();
        local::write_redirect(status, location, close, &mut self.wbuf);
        send(&mut self.client, &self.wbuf).await?;
        Ok(if close { Next::Close } else { Next::KeepOpen })
    }

    async fn exchange(&mut self, ex: Exchange) -> io::Result<Next> {
        let snap = self.snap.clone();
        let route = snap.routes.route(ex.target);
        let pool = snap.pools.get(ex.pool);
        let _counted = pool.begin();
        let has_body = ex.framing != Framing::Empty;
        let deadline = route.timeout.map(|t| Instant::now() + t);
        let mut retries_left = route.retry.retries;
        let mut stale_retry_used = false;
        let mut avoid = None;
        let mut _retry_budget = None;
        let mut continue_sent = false;
        loop {
            let Some(backend) = pool.pick(ex.hash, avoid) else {
                return self
                    .local(503, "no healthy backend", has_body || !ex.keep_alive)
                    .await;
            };
            let backend = backend.clone();
            self.req.backend = Some(backend.address);
            let _active = backend.begin();
            let may_retry_status = (retries_left > 0).then_some((&route.retry.on, ex.replayable));
            let attempt = self.try_backend(
                &backend,
                &ex,
                route.max_body_bytes,
                route.retry.per_try_timeout,
                may_retry_status,
                &mut continue_sent,
            );
            let attempt = match deadline {
                Some(d) => match timeout_at(d, attempt).await {
                    Ok(a) => a?,
                    // The whole-route limit passed: 504 if the client has seen nothing yet.
                    Err(_) if !self.response_started() => Attempt::Failed {
                        failure: Failure::Timeout,
                        body_sent: true,
                    },
                    Err(_) => return Ok(Next::Close),
                },
                None => attempt.await?,
            };
            match attempt {
                Attempt::Done { next, status } => {
                    self.req.status = status;
                    pool.report(
                        &backend,
                        if status >= 500 {
                            Outcome::Failure
                        } else {
                            Outcome::Success
                        },
                    );
                    return Ok(next);
                }
                Attempt::Failed { failure, body_sent } => {
                    debug!(backend = %backend.address, ?failure, "try failed");
                    match failure {
                        Failure::Stale => {}
                        Failure::Connect | Failure::Reset => {
                            pool.report(&backend, Outcome::Unreachable)
                        }
                        _ => pool.report(&backend, Outcome::Failure),
                    }
                    let in_time = deadline.is_none_or(|d| Instant::now() < d);
                    let allowed = !body_sent
                        && in_time
                        && failure.retry_allowed(&route.retry.on, ex.replayable);
                    if allowed && failure == Failure::Stale && !stale_retry_used {
                        // Reusing a connection the backend had just closed is our race, not the
                        // backend's fault: one free try on a fresh connection.
                        stale_retry_used = true;
                        continue;
                    }
                    if allowed && retries_left > 0 {
                        if let Some(g) = snap.pools.try_begin_retry(pool) {
                            _retry_budget = Some(g);
                            retries_left -= 1;
                            self.req.retries += 1;
                            avoid = Some(backend.address);
                            continue;
                        }
                    }
                    let (status, body) = failure.answer();
                    return self
                        .local(status, body, body_sent || has_body || !ex.keep_alive)
                        .await;
                }
            }
        }
    }

    /// Telemetry hook: count the request that just ended and hand its access log line over.
    /// A request the client abandoned before any status was decided counts as 499.
    fn finish_request(&mut self) {
        let t = &mut self.req;
        let Some(start) = t.start else { return };
        let snap = &self.snap;
        let now = Instant::now();
        self.clock = now;
        let stats = match t.routed {
            Some((target, pool)) => snap.metrics.series(target, pool),
            None => snap.metrics.unrouted(),
        };
        let f = Finished {
            status: if t.status == 0 { 499 } else { t.status },
            duration: now.saturating_duration_since(start),
            upstream: t.upstream,
            bytes_in: (self.client.read - t.read_mark + t.leftover as u64)
                .saturating_sub(self.rbuf.len() as u64),
            bytes_out: self.client.written - t.written_mark,
            retries: t.retries,
        };
        stats.record(&f);
        if let (Some(mut r), Some(log)) = (t.log.take(), &snap.access_log) {
            r.time = std::time::SystemTime::now();
            r.series = t.routed.map(|_| stats.clone());
            r.backend = t.backend;
            r.status = f.status;
            r.bytes_in = f.bytes_in;
            r.bytes_out = f.bytes_out;
            r.duration = f.duration;
            r.upstream = f.upstream;
            r.retries = f.retries;
            log.send(r);
        }
    }

    fn response_started(&self) -> bool {
        // `wbuf` holds the client head from the moment it is written until the next request.
        !self.wbuf.is_empty()
    }

    async fn try_backend(
        &mut self,
        backend: &Backend,
        ex: &Exchange,
        max_body: Option<u64>,
        per_try_timeout: Option<std::time::Duration>,
        may_retry_status: Option<(&RetryOn, bool)>,
        continue_sent: &mut bool,
    ) -> io::Result<Attempt> {
        let settings = &self.snap.settings;
        let connect_timeout = settings.connect_timeout;
        let head_timeout = per_try_timeout.unwrap_or(settings.backend_timeout);
        let io_timeout = settings.backend_timeout;
        self.wbuf.clear();
        let tried_at = Instant::now();
        let (mut upstream, reused) = match backend.checkout(tried_at.into_std()) {
            Some(s) => (s, true),
            // Boxed: a connect's state (a TLS handshake's included) is bigger than the rest of
            // an exchange, and inline it would be carried by every connection's task, idle
            // ones too. New backend connections are rare next to the pooled ones.
            None => match Box::pin(stream::connect(backend, connect_timeout, &[])).await {
                Ok(s) => (s, false),
                Err(e) => {
                    debug!(backend = %backend.address, error = %e, "connect failed");
                    return Ok(Attempt::Failed {
                        failure: Failure::Connect,
                        body_sent: false,
                    });
                }
            },
        };
        let lost = if reused {
            Failure::Stale
        } else {
            Failure::Reset
        };
        if upstream.write_all(&self.uhead).await.is_err() {
            return Ok(Attempt::Failed {
                failure: lost,
                body_sent: false,
            });
        }
        if ex.expect_continue && !*continue_sent {
            // We ask for the body ourselves rather than wait for the backend's 100, so the
            // backend never sees Expect and the client never stalls on us.
            send(&mut self.client, local::CONTINUE).await?;
            *continue_sent = true;
        }
        let body_sent = ex.framing != Framing::Empty;
        match self
            .relay_request_body(&mut upstream, ex.framing, max_body)
            .await
        {
            Ok(()) => {}
            Err(RelayError::Client(e)) if e.kind() == io::ErrorKind::FileTooLarge => {
                return Ok(Attempt::Done {
                    next: self.local(413, "request body too large", true).await?,
                    status: 413,
                });
            }
            // The chunked decoder refused the body (bad size, extension or CRLF): the client
            // gets its 400 like any other malformed request rather than a bare close.
            Err(RelayError::Client(e)) if e.kind() == io::ErrorKind::InvalidData => {
                return Ok(Attempt::Done {
                    next: self.local(400, "malformed chunked body", true).await?,
                    status: 400,
                });
            }
            Err(RelayError::Client(e)) => return Err(e),
            Err(RelayError::Upstream(e)) => {
                debug!(backend = %backend.address, error = %e, "sending request body failed");
                return Ok(Attempt::Failed {
                    failure: Failure::Reset,
                    body_sent,
                });
            }
        }
        // TLS keeps what did not fit the socket in its own buffer until flushed.
        if upstream.flush().await.is_err() {
            return Ok(Attempt::Failed {
                failure: lost,
                body_sent,
            });
        }
        self.ubuf.clear();
        // Only a head went out, on a pooled connection, without waiting on anything: the
        // try's start is as good a clock reading for the first head's limit as a new one.
        let mut head_from = (reused && ex.framing == Framing::Empty).then_some(tried_at);
        loop {
            // Read until one complete head is buffered, within one limit for the whole head.
            let head_deadline = head_from.take().unwrap_or_else(Instant::now) + head_timeout;
            let mut got_any = false;
            let parsed = loop {
                // In a block of its own: the header array (3 KB) must not be live across the
                // read below, or it would sit in every connection's task for its whole life.
                {
                    let mut headers = super::http1::headers();
                    match response::parse(&self.ubuf, &mut headers, ex.head_request) {
                        Ok(Some(resp)) => {
                            if resp.is_switching() && !ex.upgrade {
                                break Err((
                                    Failure::BadResponse,
                                    "101 without an upgrade request".into(),
                                ));
                            }
                            let interim = resp.is_interim();
                            let retry = !interim
                                && resp.status >= 500
                                && may_retry_status.is_some_and(|(on, replayable)| {
                                    Failure::Status(resp.status).retry_allowed(on, replayable)
                                });
                            // A response dropped for a retry never reaches the client.
                            let (framing, keep, reusable) = if retry {
                                (ClientFraming::Same, false, false)
                            } else {
                                self.wbuf.clear();
                                // Once draining, tell the client this is the connection's last
                                // response.
                                let keep_alive = ex.keep_alive && !self.guard.is_draining();
                                let framing = response::write_client_head(
                                    &resp,
                                    ex.version,
                                    keep_alive,
                                    &mut self.wbuf,
                                );
                                let keep = response::client_may_keep(&resp, framing, keep_alive);
                                (framing, keep, !resp.close)
                            };
                            break Ok((
                                resp.status,
                                resp.head_len,
                                interim,
                                retry,
                                resp.framing,
                                framing,
                                keep,
                                reusable,
                            ));
                        }
                        Ok(None) => {}
                        Err(e) => break Err((Failure::BadResponse, e.to_string())),
                    }
                }
                self.ubuf.reserve(HEAD_CHUNK);
                match self
                    .timer
                    .run(head_deadline, upstream.read_buf(&mut self.ubuf))
                    .await
                {
                    Ok(Ok(0)) if !got_any => break Err((lost, "closed before responding".into())),
                    Ok(Ok(0)) => {
                        break Err((
                            Failure::BadResponse,
                            "closed inside the response head".into(),
                        ))
                    }
                    Ok(Ok(_)) => got_any = true,
                    Ok(Err(e)) if !got_any => {
                        // A TLS 1.3 backend refuses a client certificate only after our side
                        // of the handshake is done: its alert is the first thing we read.
                        let refused = (!reused).then(|| TlsFailure::of_first_read(&e)).flatten();
                        if let (Some(reason), Some(origin)) = (refused, backend.tls()) {
                            backend.tls_failed(&origin.pool, reason, &e);
                            break Err((Failure::Connect, e.to_string()));
                        }
                        break Err((lost, e.to_string()));
                    }
                    Ok(Err(e)) => break Err((Failure::BadResponse, e.to_string())),
                    Err(_) => break Err((Failure::Timeout, "no response head in time".into())),
                }
            };
            let (status, head_len, interim, retry, backend_framing, client_framing, keep, reusable) =
                match parsed {
                    Ok(p) => p,
                    Err((failure, why)) => {
                        debug!(backend = %backend.address, error = %why, "no usable response");
                        return Ok(Attempt::Failed { failure, body_sent });
                    }
                };
            if retry {
                return Ok(Attempt::Failed {
                    failure: Failure::Status(status),
                    body_sent,
                });
            }
            self.ubuf.advance(head_len);
            let head_at = Instant::now();
            if !interim {
                self.req.upstream = Some(head_at.saturating_duration_since(tried_at));
            }
            if interim {
                // 1xx interim responses mean nothing to an HTTP/1.0 client (RFC 9110 §15.2).
                if ex.version == Version::Http11 {
                    send(&mut self.client, &self.wbuf).await?;
                }
                self.wbuf.clear();
                continue;
            }
            // Body bytes already read go out with the head in one write: for small responses
            // that is the whole exchange in one syscall each way.
            let mut rest = backend_framing;
            let mut decoder = ChunkedDecoder::new();
            if self.ubuf.len() <= MERGE_LIMIT && status != 101 {
                match (backend_framing, client_framing) {
                    (Framing::Length(n), _) => {
                        let take = (self.ubuf.len() as u64).min(n) as usize;
                        self.wbuf.extend_from_slice(&self.ubuf[..take]);
                        self.ubuf.advance(take);
                        rest = Framing::Length(n - take as u64);
                    }
                    (Framing::Chunked, ClientFraming::Same) => {
                        match decoder.feed(&self.ubuf, |_| {}) {
                            Ok(p) => {
                                self.wbuf.extend_from_slice(&self.ubuf[..p.consumed]);
                                self.ubuf.advance(p.consumed);
                                if p.done {
                                    rest = Framing::Empty;
                                }
                            }
                            Err(e) => {
                                debug!(backend = %backend.address, error = %e, "bad chunked response");
                                return Ok(Attempt::Failed {
                                    failure: Failure::BadResponse,
                                    body_sent,
                                });
                            }
                        }
                    }
                    _ => {}
                }
            }
            send(&mut self.client, &self.wbuf).await?;
            if status == 101 {
                self.tunnel(upstream).await;
                return Ok(Attempt::Done {
                    next: Next::Close,
                    status,
                });
            }
            // The whole body came with the head: the backend has been idle since then.
            let body_in_head = matches!(rest, Framing::Empty | Framing::Length(0));
            let relayed = match (rest, client_framing) {
                (Framing::Empty, _) | (Framing::Length(0), _) => Ok(()),
                (Framing::Length(n), _) => {
                    copy_exact(
                        &mut self.ubuf,
                        &mut upstream,
                        &mut self.client,
                        n,
                        io_timeout,
                    )
                    .await
                }
                (Framing::Chunked, ClientFraming::Dechunk) => {
                    copy_chunked(
                        &mut self.ubuf,
                        &mut upstream,
                        &mut self.client,
                        ChunkedDecoder::new(),
                        true,
                        None,
                        io_timeout,
                    )
                    .await
                }
                (Framing::Chunked, _) => {
                    copy_chunked(
                        &mut self.ubuf,
                        &mut upstream,
                        &mut self.client,
                        decoder,
                        false,
                        None,
                        io_timeout,
                    )
                    .await
                }
                (Framing::UntilClose, ClientFraming::Rechunk) => {
                    rechunk_until_close(&mut self.ubuf, &mut upstream, &mut self.client, io_timeout)
                        .await
                }
                (Framing::UntilClose, _) => {
                    copy_until_close(&mut self.ubuf, &mut upstream, &mut self.client, io_timeout)
                        .await
                }
            }
            .map_err(RelayError::flip);
            let next = match relayed {
                Ok(()) => {
                    // Only a connection that ended exactly at the message boundary can carry
                    // the next request: leftover bytes would be read as its response.
                    if reusable && backend_framing != Framing::UntilClose && self.ubuf.is_empty() {
                        let idle_since = if body_in_head {
                            head_at
                        } else {
                            Instant::now()
                        };
                        backend.checkin(upstream, idle_since.into_std());
                    }
                    if keep {
                        Next::KeepOpen
                    } else {
                        Next::Close
                    }
                }
                // The client's response is half sent: closing is the only honest signal left.
                Err(RelayError::Upstream(e)) => {
                    debug!(backend = %backend.address, error = %e, "response body cut short");
                    return Ok(Attempt::Done {
                        next: Next::Close,
                        status: 502,
                    });
                }
                Err(RelayError::Client(e)) => return Err(e),
            };
            return Ok(Attempt::Done { next, status });
        }
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

    async fn relay_request_body(
        &mut self,
        upstream: &mut UpstreamStream,
        framing: Framing,
        max: Option<u64>,
    ) -> Result<(), RelayError> {
        let idle = self.snap.settings.backend_timeout;
        match framing {
            Framing::Empty | Framing::UntilClose => Ok(()),
            Framing::Length(n) => {
                copy_exact(&mut self.rbuf, &mut self.client, upstream, n, idle).await
            }
            Framing::Chunked => {
                copy_chunked(
                    &mut self.rbuf,
                    &mut self.client,
                    upstream,
                    ChunkedDecoder::new(),
                    false,
                    max,
                    idle,
                )
                .await
            }
        }
    }
}

fn decide(
    snap: &Snapshot,
    front: &Front,
    peer: SocketAddr,
    req: &request::Request<'_, '_>,
    uhead: &mut BytesMut,
) -> Decision {
    let has_body = req.framing != Framing::Empty;
    let keep = !has_body && req.keep_alive;
    let Some(authority) = req.authority else {
        return Decision::Local {
            status: 400,
            body: "missing Host",
            close: true,
        };
    };
    if let Some(status) = front.redirect_https {
        return match https_location(authority, req.path) {
            // A request body is not read: the connection closes after the redirect.
            Some(location) => Decision::Redirect {
                status,
                location,
                close: !keep,
            },
            None => Decision::Local {
                status: 400,
                body: "invalid Host",
                close: true,
            },
        };
    }
    let tls = front.tls.as_deref();
    if let Some(sni) = tls.and_then(|t| t.sni.as_deref()) {
        if !same_host(authority, sni) {
            debug!(%peer, sni, host = %String::from_utf8_lossy(authority), "Host does not match SNI");
            return Decision::Local {
                status: 421,
                body: "misdirected request: the Host does not match the TLS server name",
                close: !keep,
            };
        }
    }
    let target = match snap.routes.lookup(authority, req.path) {
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
                close: !keep,
            }
        }
        Err(Miss::NoRoute) => {
            return Decision::Local {
                status: 404,
                body: "no route for this path",
                close: !keep,
            }
        }
    };
    let settings = &snap.settings;
    let client_ip = forwarded::client_ip(settings, peer.ip(), req.headers);
    let route = snap.routes.route(target);
    if !snap.routes.host_access(target).admits(client_ip) || !route.access.admits(client_ip) {
        debug!(%peer, %client_ip, "denied by access list");
        return Decision::Local {
            status: 403,
            body: "forbidden",
            close: !keep,
        };
    }
    if !snap
        .routes
        .admits_client(target, tls.and_then(|t| t.client_subject.as_deref()))
    {
        debug!(%peer, subject = ?tls.and_then(|t| t.client_subject.as_deref()), "client certificate subject not allowed");
        return Decision::Local {
            status: 403,
            body: "forbidden: client certificate required",
            close: !keep,
        };
    }
    if let (Some(max), Framing::Length(n)) = (route.max_body_bytes, req.framing) {
        if n > max {
            return Decision::Local {
                status: 413,
                body: "request body too large",
                close: true,
            };
        }
    }
    let pool_id = route.pool();
    let pool = snap.pools.get(pool_id);
    let hash = pool.hash(&HashInput {
        client_ip,
        headers: req.headers,
    });
    debug!(
        %peer,
        host = snap.routes.host_label(target.host),
        prefix = &*route.prefix,
        pool = %pool.name,
        method = req.method,
        path = req.path,
        "route"
    );
    let mut id_buf = [0u8; 32];
    let request_id = settings.request_id.then(|| new_request_id(&mut id_buf));
    uhead.clear();
    request::write_upstream_head(
        req,
        &Forwarding {
            peer: peer.ip(),
            client: client_ip,
            peer_trusted: forwarded::peer_is_trusted(settings, peer.ip()),
            proto: if tls.is_some() { "https" } else { "http" },
            request_id,
        },
        uhead,
    );
    let request_id = request_id.is_some().then_some(id_buf);
    Decision::Forward(Exchange {
        target,
        pool: pool_id,
        hash,
        framing: req.framing,
        version: req.version,
        keep_alive: req.keep_alive,
        expect_continue: req.expect_continue && req.version == Version::Http11,
        head_request: req.method == "HEAD",
        replayable: !has_body && request::is_idempotent(req.method),
        upgrade: req.upgrade.is_some(),
        request_id,
    })
}

/// Telemetry hook: the access log record of a sampled request, with what only the head knows.
/// `received` is the path as the client sent it; `req.path` is in normal form.
fn access_record(
    snap: &Snapshot,
    front: &Front,
    peer: SocketAddr,
    req: &request::Request<'_, '_>,
    received: &str,
    decision: &Decision,
) -> Option<Record> {
    let log = snap.access_log.as_ref().filter(|l| l.sampled())?;
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map_or(&[][..], |h| h.value)
    };
    let id = match decision {
        Decision::Forward(Exchange {
            request_id: Some(id),
            ..
        }) => &id[..],
        _ => header("x-request-id"),
    };
    let mut record = Record::new(
        log.format,
        &RequestInfo {
            client: forwarded::client_ip(&snap.settings, peer.ip(), req.headers),
            method: req.method,
            protocol: req.version.name(),
            host: req.authority.unwrap_or_default(),
            path: received,
            normalized_path: if req.path == received { "" } else { req.path },
            user_agent: header("user-agent"),
            referer: header("referer"),
            request_id: id,
        },
    );
    record.tls = front.tls.clone();
    Some(record)
}

/// The host part of an authority (`Host` value): without the port and a trailing dot.
fn host_part(authority: &[u8]) -> &[u8] {
    let host = if authority.first() == Some(&b'[') {
        // An IPv6 literal: up to and with the closing bracket.
        match authority.iter().position(|&b| b == b']') {
            Some(end) => &authority[..=end],
            None => authority,
        }
    } else {
        match authority.iter().rposition(|&b| b == b':') {
            Some(colon) => &authority[..colon],
            None => authority,
        }
    };
    host.strip_suffix(b".").unwrap_or(host)
}

/// Whether the request's Host names the TLS server name: case-insensitive, port ignored.
fn same_host(authority: &[u8], sni: &str) -> bool {
    host_part(authority).eq_ignore_ascii_case(sni.as_bytes())
}

/// `https://HOST/PATH?QUERY` for a redirect, or `None` if the Host holds bytes that have no
/// place in a Location field.
fn https_location(authority: &[u8], path: &str) -> Option<String> {
    let host = host_part(authority);
    let ok = !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
    if !ok {
        return None;
    }
    let path = if path.starts_with('/') { path } else { "/" };
    let mut location = String::with_capacity(8 + host.len() + path.len());
    location.push_str("https://");
    location.push_str(std::str::from_utf8(host).ok()?);
    location.push_str(path);
    Some(location)
}

/// Write all of `data` to the client and push it out: TLS may hold the tail of a write back
/// until flushed, and nobody would flush it while we wait for the next request.
async fn send<W: AsyncWrite + Unpin>(dst: &mut W, data: &[u8]) -> io::Result<()> {
    dst.write_all(data).await?;
    dst.flush().await
}

/// 32 hex digits that no other request of this process shares and that other processes and
/// nodes are unlikely to repeat: 64 bits drawn from the thread's generator (`fastrand`, seeded
/// from the OS), then the thread's own sequence from a random start. Not a secret: nothing
/// trusts an id for more than telling requests apart.
fn new_request_id(buf: &mut [u8; 32]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    thread_local! {
        static SEQUENCE: std::cell::Cell<u64> = std::cell::Cell::new(fastrand::u64(..));
    }
    let a = fastrand::u64(..);
    let b = SEQUENCE.with(|s| {
        let n = s.get().wrapping_add(1);
        s.set(n);
        n
    });
    for (i, byte) in buf.iter_mut().enumerate() {
        let word = if i < 16 { a } else { b };
        *byte = HEX[((word >> ((i % 16) * 4)) & 0xf) as usize];
    }
    // Only ASCII hex digits were written.
    std::str::from_utf8(buf).unwrap_or("0")
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
    idle: Duration,
) -> Result<(), RelayError> {
    buf.reserve(BODY_CHUNK);
    match timeout(idle, src.read_buf(buf)).await {
        Ok(Ok(0)) => Err(RelayError::Client(io::ErrorKind::UnexpectedEof.into())),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(RelayError::Client(e)),
        Err(_) => Err(RelayError::Client(io::ErrorKind::TimedOut.into())),
    }
}

async fn write<W: AsyncWrite + Unpin>(dst: &mut W, data: &[u8]) -> Result<(), RelayError> {
    send(dst, data).await.map_err(RelayError::Upstream)
}

/// Copy exactly `n` body bytes: first those already in `buf`, then from `src`. Bytes beyond
/// the body stay in `buf`.
async fn copy_exact<R, W>(
    buf: &mut BytesMut,
    src: &mut R,
    dst: &mut W,
    mut n: u64,
    idle: Duration,
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
        read_more(src, buf, idle).await?;
    }
}

/// Relay a chunked body, validated by the decoder: as is, or (`dechunk`) payload only. With
/// `max`, a payload larger than that fails with `FileTooLarge` on the reading side.
async fn copy_chunked<R, W>(
    buf: &mut BytesMut,
    src: &mut R,
    dst: &mut W,
    mut decoder: ChunkedDecoder,
    dechunk: bool,
    max: Option<u64>,
    idle: Duration,
) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut payload = BytesMut::new();
    let mut total = 0u64;
    loop {
        if !buf.is_empty() {
            let progress = decoder
                .feed(buf, |data| {
                    total += data.len() as u64;
                    if dechunk {
                        payload.extend_from_slice(data)
                    }
                })
                .map_err(|e| RelayError::Client(io::Error::new(io::ErrorKind::InvalidData, e)))?;
            if max.is_some_and(|m| total > m) {
                return Err(RelayError::Client(io::ErrorKind::FileTooLarge.into()));
            }
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
        read_more(src, buf, idle).await?;
    }
}

/// Relay a body that ends when the backend closes, unchanged.
async fn copy_until_close<R, W>(
    buf: &mut BytesMut,
    src: &mut R,
    dst: &mut W,
    idle: Duration,
) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        write(dst, buf).await?;
        buf.clear();
        match read_more(src, buf, idle).await {
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
    idle: Duration,
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
        match read_more(src, buf, idle).await {
            Err(RelayError::Client(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return write(dst, b"0\r\n\r\n").await;
            }
            r => r?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_compared_with_sni_without_port_or_case() {
        let cases: &[(&[u8], &str, bool)] = &[
            (b"a.test", "a.test", true),
            (b"A.Test:443", "a.test", true),
            (b"a.test.", "a.test", true),
            (b"a.test:8443", "a.test", true),
            (b"b.test", "a.test", false),
            (b"a.test.evil", "a.test", false),
            (b"x.a.test", "a.test", false),
            (b"[2001:db8::1]:443", "[2001:db8::1]", true),
        ];
        for (host, sni, want) in cases {
            assert_eq!(
                same_host(host, sni),
                *want,
                "{}",
                String::from_utf8_lossy(host)
            );
        }
    }

    #[test]
    fn redirect_location_keeps_path_and_query_and_drops_the_port() {
        let cases: &[(&[u8], &str, Option<&str>)] = &[
            (b"a.test", "/x?y=1", Some("https://a.test/x?y=1")),
            (b"a.test:80", "/", Some("https://a.test/")),
            (b"A.test", "*", Some("https://A.test/")),
            (b"[2001:db8::1]:80", "/p", Some("https://[2001:db8::1]/p")),
            (b"a test", "/", None),
            (b"a.test\"><", "/", None),
            (b"", "/", None),
        ];
        for (host, path, want) in cases {
            assert_eq!(
                https_location(host, path).as_deref(),
                *want,
                "{}",
                String::from_utf8_lossy(host)
            );
        }
    }
}
