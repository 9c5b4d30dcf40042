//! One HTTP/2 stream, from its request head to its last DATA frame, against HTTP/1.1 backends.
//!
//! Owns the stream's phases: `check` (`head::request`; a malformed head is reset with
//! PROTOCOL_ERROR), `decide` (the exchange's, on the same `Head` HTTP/1.1 builds), a local
//! answer or `exchange::run`, whose tries (`Attempts`) write the HTTP/1.1 request head that
//! `http1` writes for its own clients, send the request DATA (re-framed as chunked when the
//! client gave no `content-length`), read the backend's head and relay its body as DATA
//! within the client's flow-control window. Does not own the connection (`super`), the
//! decision or the retry policy (`exchange`), or HTTP/1.1 wire rules (`http1`).

use std::future::{poll_fn, Future};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, Instant};
use tracing::debug;

use super::head::{self, Refusal};
use super::upstream::{self, client_error, pump, relay_response, upstream_error};
use super::Conn;
use crate::proxy::error::{Error, Kind, Result};
use crate::proxy::exchange::{
    self, decide, Attempts, Body, Decision, Finish, Head, Progress, Relayed, Routed, Track, Try,
};
use crate::proxy::http1::chunked::ChunkedDecoder;
use crate::proxy::http1::conn::{connect, forwarding, head_read, write_upstream_head};
use crate::proxy::http1::request;
use crate::proxy::http1::{response, Framing, Version};
use crate::proxy::upstream::backend::Backend;
use crate::proxy::upstream::stream::UpstreamStream;
use crate::proxy::Snapshot;

/// Room made for each read from the backend.
const READ_CHUNK: usize = 16 * 1024;

/// The protocol name the access log writes.
const PROTOCOL: &str = "HTTP/2";

/// Serve one stream to its end.
pub(super) async fn serve(
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    conn: Arc<Conn>,
) {
    let snap = conn.shared.load_full();
    let mut track = Track {
        start: Some(Instant::now()),
        ..Track::default()
    };
    let (parts, mut body) = request.into_parts();
    let grpc = head::is_grpc(&parts);
    let mut counts = Counts {
        // The fields' decoded size: what an HTTP/1.1 head of them would take, about.
        read: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().len() + v.len() + 4) as u64)
            .sum(),
        written: 0,
    };
    let mut cookie = String::new();
    let max_headers = snap.settings.max_headers;
    let req = match head::request(&parts, body.is_end_stream(), max_headers, &mut cookie) {
        Ok(r) => r,
        Err(refusal) => {
            track.log_refused(&snap, &conn.front, conn.peer);
            match refusal {
                Refusal::Malformed(why) => {
                    debug!(peer = %conn.peer, why, "malformed HTTP/2 request; stream reset");
                    respond.send_reset(Reason::PROTOCOL_ERROR);
                    track.status = 400;
                }
                Refusal::Answer(status, text) => {
                    track.status = status;
                    counts.written += answer_call(&mut respond, grpc, status, text);
                }
            }
            track.finish(&snap, Instant::now(), counts.read, counts.written);
            return;
        }
    };
    let mut normal = String::new();
    let (peer, front) = (conn.peer, &conn.front);
    let rules = snap.settings.path;
    let mut uhead = BytesMut::new();
    let mut h2_head = None;
    // The head as received, for the access log of an answer made before routing.
    let as_received = || Head {
        method: req.method,
        protocol: PROTOCOL,
        authority: req.authority,
        path: req.path,
        fields: &req.fields,
        body: req.body,
    };
    // An ACME HTTP-01 token (h2c with prior knowledge on an http listener), before routing.
    let challenge = decide::acme_challenge(
        front,
        req.method,
        req.path.as_bytes(),
        crate::acme::challenge::challenges(),
    );
    let decision = match challenge {
        Some(answer) => {
            track.log_head(&snap, front, peer, &as_received(), req.path, &answer);
            answer
        }
        None => match decide::normal_path(peer, req.path, rules, &mut normal) {
            Ok(path) => {
                let head = Head {
                    method: req.method,
                    protocol: PROTOCOL,
                    authority: req.authority,
                    path,
                    fields: &req.fields,
                    body: req.body,
                };
                let decision = decide::decide(&snap, front, peer, &head);
                if let Decision::Forward(routed) = &decision {
                    if snap.pools.get(routed.pool).http2 {
                        let id = routed.request_id.map(|id| id.hex());
                        let fwd = forwarding(&snap, front, peer, routed, &id);
                        h2_head = UpstreamHead::of(&parts, req.authority, path, &fwd);
                    } else {
                        let h1 = http1_request(&req, path);
                        write_upstream_head(&snap, front, peer, &h1, routed, &mut uhead);
                    }
                }
                track.log_head(&snap, front, peer, &head, req.path, &decision);
                decision
            }
            Err(not_normal) => {
                let decision = not_normal.answer(&normal);
                track.log_head(&snap, front, peer, &as_received(), req.path, &decision);
                decision
            }
        },
    };
    let body_kind = req.body;
    let head_request = req.method == "HEAD";
    drop(req);
    match decision {
        Decision::Local {
            status, body: text, ..
        } => {
            track.status = status;
            counts.written += answer_call(&mut respond, grpc, status, text);
        }
        Decision::Redirect { status, location } => {
            track.status = status;
            counts.written += answer(&mut respond, status, "", Some(&location));
        }
        Decision::Challenge(key_authorization) => {
            // RFC 8555 section 8.3: the server ignores the trailing newline `answer` adds.
            track.status = 200;
            counts.written += answer(&mut respond, 200, &key_authorization, None);
            crate::acme::metrics::answered(false);
        }
        Decision::Forward(routed) => {
            track.routed = Some((routed.target, routed.pool));
            let mut ex = Exchanging {
                snap: &snap,
                respond: &mut respond,
                sending: None,
                body: &mut body,
                body_kind,
                head_request,
                uhead: &uhead,
                h2_head: h2_head.as_ref(),
                ubuf: BytesMut::new(),
                progress: Progress::Nothing,
                track: &mut track,
                counts: &mut counts,
            };
            let finish = exchange::run(&mut ex, &snap, &routed).await;
            let sending = ex.sending.take();
            finish_exchange(
                finish,
                grpc,
                &routed,
                &mut respond,
                sending,
                &mut track,
                &mut counts,
            );
        }
    }
    track.finish(&snap, Instant::now(), counts.read, counts.written);
}

/// Bytes of this stream, each way, for its metrics and access-log line.
struct Counts {
    read: u64,
    written: u64,
}

/// What the client gets when the exchange did not relay a whole response.
fn finish_exchange(
    finish: Result<Finish>,
    grpc: bool,
    routed: &Routed,
    respond: &mut SendResponse<Bytes>,
    sending: Option<SendStream<Bytes>>,
    track: &mut Track,
    counts: &mut Counts,
) {
    match finish {
        Ok(Finish::Relayed(r)) => track.status = r.status,
        Ok(Finish::Failed(e)) => {
            let (status, text) = e.answer().unwrap_or((502, "backend unavailable"));
            debug!(pool = ?routed.pool, error = %e, status, "exchange failed");
            track.status = status;
            counts.written += answer_call(respond, grpc, status, text);
        }
        // The response had started: only a reset tells the client it is incomplete.
        Ok(Finish::Cut(e)) => {
            debug!(error = %e, "response cut short; stream reset");
            track.status = if e.kind == Kind::RouteTimeout {
                504
            } else {
                502
            };
            match sending {
                Some(mut s) => s.send_reset(Reason::INTERNAL_ERROR),
                None => respond.send_reset(Reason::INTERNAL_ERROR),
            }
        }
        // The client reset the stream or the connection went: nobody to answer (499).
        Err(e) => debug!(error = %e, "client gone"),
    }
}

/// Answer a gRPC call ourselves: HTTP 200, a trailers-only response with the gRPC status of
/// `status` and `text` as its message.
fn answer_grpc(respond: &mut SendResponse<Bytes>, status: u16, text: &str) {
    let resp = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .header("grpc-status", u16::from(head::grpc_status(status)))
        .header("grpc-message", text)
        .body(());
    match resp {
        Ok(resp) => {
            if let Err(e) = respond.send_response(resp, true) {
                debug!(error = %e, "stream gone before its answer");
            }
        }
        Err(_) => respond.send_reset(Reason::INTERNAL_ERROR),
    }
}

/// Answer the stream ourselves: a short text body (or none, with a `Location`); a gRPC call
/// (`grpc`) gets its gRPC status instead. Returns the body bytes written.
fn answer_call(respond: &mut SendResponse<Bytes>, grpc: bool, status: u16, text: &str) -> u64 {
    if grpc {
        answer_grpc(respond, status, text);
        0
    } else {
        answer(respond, status, text, None)
    }
}

/// Answer the stream ourselves: a short text body (or none, with a `Location`). Returns the
/// body bytes written.
fn answer(
    respond: &mut SendResponse<Bytes>,
    status: u16,
    text: &str,
    location: Option<&str>,
) -> u64 {
    let mut b = http::Response::builder()
        .status(status)
        .header("cache-control", "no-store");
    let body = if location.is_some() {
        Bytes::new()
    } else {
        b = b.header("content-type", "text/plain; charset=utf-8");
        let mut body = BytesMut::with_capacity(text.len() + 1);
        body.put_slice(text.as_bytes());
        body.put_u8(b'\n');
        body.freeze()
    };
    if let Some(l) = location {
        b = b.header("location", l);
    }
    let Ok(resp) = b.header("content-length", body.len()).body(()) else {
        respond.send_reset(Reason::INTERNAL_ERROR);
        return 0;
    };
    let len = body.len() as u64;
    match respond.send_response(resp, body.is_empty()) {
        Ok(mut s) if !body.is_empty() => {
            // A few bytes: within any window, so `h2` sends them without waiting.
            if s.send_data(body, true).is_err() {
                return 0;
            }
        }
        Ok(_) => {}
        Err(e) => {
            debug!(error = %e, "stream gone before its answer");
            return 0;
        }
    }
    len
}

/// The HTTP/1.1 request the backend gets for this stream, for `write_upstream_head`.
fn http1_request<'a, 'h>(req: &'h head::Request<'a>, path: &'a str) -> request::Request<'a, 'h> {
    request::Request {
        method: req.method,
        target: path,
        path,
        authority: req.authority,
        version: Version::Http11,
        headers: &req.fields,
        // The fields are not in a received head: each is written as `name: value`.
        head: &[],
        head_len: 0,
        framing: head::framing(req.body),
        keep_alive: true,
        expect_continue: false,
        upgrade: None,
        connection_names_fields: false,
    }
}

/// The HTTP/2 request for an `http2` pool's backends, kept for every try (an
/// `http::Request` cannot be cloned).
struct UpstreamHead {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
}

impl UpstreamHead {
    fn of(
        parts: &http::request::Parts,
        authority: Option<&[u8]>,
        path: &str,
        fwd: &crate::proxy::http1::request::Forwarding<'_>,
    ) -> Option<UpstreamHead> {
        // The scheme the backend is told is how the client reached us.
        let (p, ()) = head::upstream_request(parts, authority, path, fwd.proto, fwd)?.into_parts();
        Some(UpstreamHead {
            method: p.method,
            uri: p.uri,
            headers: p.headers,
        })
    }

    fn request(&self) -> http::Request<()> {
        let mut r = http::Request::new(());
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.headers_mut() = self.headers.clone();
        r
    }
}

/// One stream's exchange: its tries against the pool's backends.
struct Exchanging<'s> {
    snap: &'s Snapshot,
    respond: &'s mut SendResponse<Bytes>,
    /// The response's DATA side, once its head went out.
    sending: Option<SendStream<Bytes>>,
    body: &'s mut RecvStream,
    body_kind: Body,
    head_request: bool,
    /// The HTTP/1.1 head for the backend, the same for every try.
    uhead: &'s BytesMut,
    /// The HTTP/2 request for a backend of an `http2` pool, the same for every try.
    h2_head: Option<&'s UpstreamHead>,
    /// Bytes read from the backend and not yet relayed.
    ubuf: BytesMut,
    progress: Progress,
    track: &'s mut Track,
    counts: &'s mut Counts,
}

impl Attempts for Exchanging<'_> {
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
        self.track
    }
}

/// A final response head from the backend, turned into an HTTP/2 one.
struct ResponseHead {
    status: u16,
    response: http::Response<()>,
    framing: Framing,
    /// The backend connection can carry another request if the body ends at its boundary.
    reusable: bool,
    at: Instant,
}

impl Exchanging<'_> {
    /// One try: `open`, `send_request`, `read_response_head`, `relay_response`.
    async fn try_backend(&mut self, backend: &Backend, t: &Try<'_>) -> Result<Relayed> {
        if backend.speaks_http2() {
            return self.try_http2(backend, t).await;
        }
        let settings = &self.snap.settings;
        let (mut upstream, reused) = match backend.checkout(t.started.into_std()) {
            Some(s) => (s, true),
            None => (connect(backend, settings.connect_timeout).await?, false),
        };
        let lost = if reused {
            Kind::Stale
        } else {
            Kind::UpstreamLost
        };
        upstream
            .write_all(self.uhead)
            .await
            .map_err(|e| Error::io(lost, e))?;
        if self.body_kind != Body::None {
            self.send_body(&mut upstream, t.max_body, lost).await?;
        }
        upstream.flush().await.map_err(|e| Error::io(lost, e))?;
        let head_timeout = t.per_try_timeout.unwrap_or(settings.backend_timeout);
        let head = self
            .read_response_head(&mut upstream, t, head_timeout, reused, lost, backend)
            .await?;
        self.track.upstream = Some(head.at.saturating_duration_since(t.started));
        self.progress = Progress::ResponseStarted;
        let bodiless = head::bodiless(head.status, head.framing, self.head_request);
        let mut sending = self
            .respond
            .send_response(head.response, bodiless)
            .map_err(client_error)?;
        let idle = settings.backend_timeout;
        let ended = if bodiless {
            // A HEAD's or 304's framing describes a body that is not sent.
            self.ubuf.is_empty() || self.head_request
        } else {
            let r = self
                .relay_body(&mut upstream, head.framing, &mut sending, idle)
                .await;
            self.sending = Some(sending);
            r?;
            self.ubuf.is_empty()
        };
        if head.reusable && head.framing != Framing::UntilClose && ended {
            backend.checkin(upstream, Instant::now().into_std());
        }
        self.ubuf.clear();
        Ok(Relayed {
            status: head.status,
            keep: true,
        })
    }

    /// One try against an HTTP/2 backend: a stream on its connection, the request DATA
    /// pumped while the response is awaited and relayed (gRPC streams both ways at once), the
    /// trailers passed on.
    async fn try_http2(&mut self, backend: &Backend, t: &Try<'_>) -> Result<Relayed> {
        let settings = &self.snap.settings;
        let (idle, connect_timeout) = (settings.backend_timeout, settings.connect_timeout);
        let head_timeout = t.per_try_timeout.unwrap_or(idle);
        let Some(head) = self.h2_head else {
            // The pool changed protocol between the decision and this try (a reload).
            return Err(Error::new(Kind::Connect));
        };
        let (mut sender, reused) = upstream::sender(backend, connect_timeout).await?;
        let has_body = self.body_kind != Body::None;
        let (response, mut up_tx) =
            sender
                .send_request(head.request(), !has_body)
                .map_err(|e| {
                    let mut err = upstream_error(e);
                    if !reused {
                        err = Error::new(Kind::Connect);
                    }
                    err
                })?;
        if has_body {
            self.progress = self.progress.max(Progress::BodyTaken);
        }
        let body = &mut *self.body;
        let respond = &mut *self.respond;
        let counts = &mut *self.counts;
        let pump = async {
            if has_body {
                pump(body, &mut up_tx, t.max_body, idle).await
            } else {
                Ok(0)
            }
        };
        tokio::pin!(pump);
        let mut pumped = !has_body;
        let response = tokio::time::timeout(head_timeout, response);
        tokio::pin!(response);
        let resp = loop {
            tokio::select! {
                r = &mut pump, if !pumped => {
                    pumped = true;
                    counts.read += r?;
                }
                r = &mut response => break match r {
                    Ok(Ok(resp)) => resp,
                    Ok(Err(e)) => return Err(upstream_error(e)),
                    Err(_) => return Err(Error::new(Kind::UpstreamTimeout)),
                },
                _ = poll_fn(|cx| respond.poll_reset(cx)) => return Err(Error::new(Kind::ClientLost)),
            }
        };
        let status = resp.status().as_u16();
        if let Some(dropped) = t.dropped(status) {
            return Err(dropped);
        }
        self.track.upstream = Some(Instant::now().saturating_duration_since(t.started));
        self.progress = Progress::ResponseStarted;
        let (parts, mut from) = resp.into_parts();
        counts.written += parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().len() + v.len() + 4) as u64)
            .sum::<u64>();
        let end = from.is_end_stream() || self.head_request;
        let mut sending = respond
            .send_response(http::Response::from_parts(parts, ()), end)
            .map_err(client_error)?;
        let relayed = if end {
            Ok(())
        } else {
            let relay = relay_response(&mut from, &mut sending, idle);
            tokio::pin!(relay);
            loop {
                tokio::select! {
                    r = &mut pump, if !pumped => {
                        pumped = true;
                        match r {
                            Ok(n) => counts.read += n,
                            Err(e) => break Err(e),
                        }
                    }
                    r = &mut relay => break r.map(|n| counts.written += n),
                }
            }
        };
        self.sending = Some(sending);
        relayed?;
        Ok(Relayed { status, keep: true })
    }

    /// `send_request`'s body: the stream's DATA, as framed for the backend, each frame's
    /// window given back once it is written.
    async fn send_body(
        &mut self,
        upstream: &mut UpstreamStream,
        max_body: Option<u64>,
        lost: Kind,
    ) -> Result<()> {
        self.progress = self.progress.max(Progress::BodyTaken);
        let chunked = self.body_kind == Body::Streamed;
        let idle = self.snap.settings.backend_timeout;
        let mut total = 0u64;
        let mut line = BytesMut::new();
        loop {
            let next = match timeout(idle, self.body.data()).await {
                Ok(next) => next,
                Err(_) => return Err(Error::new(Kind::ClientLost)),
            };
            let data = match next {
                None => break,
                Some(Ok(d)) => d,
                Some(Err(e)) => return Err(body_error(e)),
            };
            total += data.len() as u64;
            self.counts.read += data.len() as u64;
            if max_body.is_some_and(|max| total > max) {
                return Err(Error::new(Kind::BodyTooLarge));
            }
            if data.is_empty() {
                continue;
            }
            let n = data.len();
            if chunked {
                line.clear();
                let _ = std::fmt::Write::write_fmt(
                    &mut request::Fmt(&mut line),
                    format_args!("{n:x}\r\n"),
                );
                upstream
                    .write_all(&line)
                    .await
                    .map_err(|e| Error::io(lost, e))?;
            }
            upstream
                .write_all(&data)
                .await
                .map_err(|e| Error::io(lost, e))?;
            if chunked {
                upstream
                    .write_all(b"\r\n")
                    .await
                    .map_err(|e| Error::io(lost, e))?;
            }
            let _ = self.body.flow_control().release_capacity(n);
        }
        if chunked {
            upstream
                .write_all(b"0\r\n\r\n")
                .await
                .map_err(|e| Error::io(lost, e))?;
        }
        Ok(())
    }

    /// `read_response_head`: until a final head (interim ones are dropped: HTTP/2 clients
    /// need none of them from a backend vipgate already asked for the body), each within
    /// `limit`; a client that resets the stream meanwhile ends the try.
    async fn read_response_head(
        &mut self,
        upstream: &mut UpstreamStream,
        t: &Try<'_>,
        limit: Duration,
        reused: bool,
        lost: Kind,
        backend: &Backend,
    ) -> Result<ResponseHead> {
        self.ubuf.clear();
        let mut deadline = Instant::now() + limit;
        let mut got_any = false;
        loop {
            if let Some(head) = self.parse_response(t)? {
                match head {
                    Some(head) => return Ok(head),
                    None => {
                        deadline = Instant::now() + limit;
                        got_any = false;
                        continue;
                    }
                }
            }
            self.ubuf.reserve(READ_CHUNK);
            let respond = &mut *self.respond;
            let read = tokio::select! {
                r = tokio::time::timeout_at(deadline, upstream.read_buf(&mut self.ubuf)) => r,
                _ = poll_fn(|cx| respond.poll_reset(cx)) => return Err(Error::new(Kind::ClientLost)),
            };
            let read = read.map_err(|_| crate::proxy::deadline::Elapsed);
            got_any = head_read(read, got_any, reused, lost, backend)?;
        }
    }

    /// Parse the buffered response bytes: `None` while incomplete, `Some(None)` for an
    /// interim head (consumed), `Some(Some(head))` for the final one.
    fn parse_response(&mut self, t: &Try<'_>) -> Result<Option<Option<ResponseHead>>> {
        let mut headers = crate::proxy::http1::headers();
        let resp = match response::parse(&self.ubuf, &mut headers, self.head_request) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(e) => {
                debug!(error = %e, "bad response head");
                return Err(Error::new(Kind::BadResponse));
            }
        };
        if resp.is_switching() {
            debug!("101 to an HTTP/2 stream");
            return Err(Error::new(Kind::BadResponse));
        }
        let head_len = resp.head_len;
        if resp.is_interim() {
            self.ubuf.advance(head_len);
            return Ok(Some(None));
        }
        if let Some(dropped) = t.dropped(resp.status) {
            return Err(dropped);
        }
        let Some(response) = head::response(&resp) else {
            debug!("response head HTTP/2 cannot carry");
            return Err(Error::new(Kind::BadResponse));
        };
        self.counts.written += head_len as u64;
        let head = ResponseHead {
            status: resp.status,
            response,
            framing: resp.framing,
            reusable: !resp.close,
            at: Instant::now(),
        };
        self.ubuf.advance(head_len);
        Ok(Some(Some(head)))
    }

    /// `relay_response`: the body as DATA frames, in the client's window; chunked framing
    /// removed (its trailers are dropped).
    async fn relay_body(
        &mut self,
        upstream: &mut UpstreamStream,
        framing: Framing,
        sending: &mut SendStream<Bytes>,
        idle: Duration,
    ) -> Result<()> {
        let mut left = match framing {
            Framing::Length(n) => Some(n),
            _ => None,
        };
        let mut decoder = (framing == Framing::Chunked).then(ChunkedDecoder::new);
        let mut payload = BytesMut::new();
        loop {
            // What is buffered, as payload; `done` once the body is complete.
            let done = match (&mut decoder, &mut left) {
                (Some(d), _) => {
                    let p = d
                        .feed(&self.ubuf, |data| payload.extend_from_slice(data))
                        .map_err(|e| {
                            debug!(error = %e, "bad chunked response");
                            Error::new(Kind::BadResponse)
                        })?;
                    self.ubuf.advance(p.consumed);
                    p.done
                }
                (None, Some(n)) => {
                    let take = (self.ubuf.len() as u64).min(*n) as usize;
                    payload.extend_from_slice(&self.ubuf[..take]);
                    self.ubuf.advance(take);
                    *n -= take as u64;
                    *n == 0
                }
                (None, None) => {
                    payload.extend_from_slice(&self.ubuf);
                    self.ubuf.clear();
                    false
                }
            };
            if !payload.is_empty() || done {
                self.counts.written += payload.len() as u64;
                let data = payload.split().freeze();
                upstream::send_data(sending, data, done, idle, client_error, Kind::ClientLost)
                    .await?;
            }
            if done {
                return Ok(());
            }
            self.ubuf.reserve(READ_CHUNK);
            let read = timeout(idle, upstream.read_buf(&mut self.ubuf))
                .await
                .map_err(|_| Error::new(Kind::UpstreamTimeout))?
                .map_err(|e| Error::io(Kind::UpstreamLost, e))?;
            if read == 0 {
                if decoder.is_none() && left.is_none() {
                    // Until close: the close is the end.
                    return sending.send_data(Bytes::new(), true).map_err(client_error);
                }
                return Err(Error::new(Kind::UpstreamLost));
            }
        }
    }
}

/// What a failed read of the request's DATA means: a body that broke its declared length is
/// the client's error (400); anything else, the client is gone.
pub(super) fn body_error(e: h2::Error) -> Error {
    if e.reason() == Some(Reason::PROTOCOL_ERROR) {
        Error::io(Kind::BadRequestBody, std::io::Error::other(e))
    } else {
        client_error(e)
    }
}
