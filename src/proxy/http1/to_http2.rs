//! The HTTP/1.1 client side of a try against an HTTP/2 backend (`protocol = "http2"` pools).
//!
//! Owns turning the upstream head `http1::request` wrote (forwarding fields and all) into an
//! HTTP/2 request, sending the client's body (as framed, de-chunked) as DATA, and turning the
//! backend's HTTP/2 response into the head an HTTP/1.x client reads: the response is written
//! as an HTTP/1.1 head and handed to `response::parse` and `response::write_client_head`, so
//! the client gets exactly the framing and keep-alive rules of an HTTP/1.1 backend's response
//! (a body without `content-length` re-chunked, or sent until close to an HTTP/1.0 client).
//! Trailers from the backend are dropped: an HTTP/1.1 client that wants them (gRPC-Web aside,
//! none do) should speak HTTP/2. An upgrade (WebSocket) cannot cross to an HTTP/2 backend and
//! gets 502. Does not own the HTTP/2 connection (`http2::upstream`).

use std::fmt::Write as _;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::time::{timeout, Instant};
use tracing::debug;

use super::chunked::ChunkedDecoder;
use super::conn::Exchanging;
use super::relay::send;
use super::request::Fmt;
use super::response::{self, ClientFraming};
use super::tokens::Field;
use super::{local, Framing, MAX_HEADERS};
use crate::proxy::client::ClientStream;
use crate::proxy::error::{Error, Kind, Result};
use crate::proxy::exchange::{Progress, Relayed, Try};
use crate::proxy::http2::upstream::{self, upstream_error};
use crate::proxy::upstream::backend::Backend;

/// Room made for each read of the request body.
const READ_CHUNK: usize = 16 * 1024;

/// The HTTP/2 request for the HTTP/1.1 head in `uhead` (as `write_upstream_head` wrote it).
/// `None` for what HTTP/2 cannot carry (an upgrade, a Host that is no authority).
fn request_of(uhead: &[u8], tls: bool) -> Option<http::Request<()>> {
    let mut fields = vec![httparse::EMPTY_HEADER; MAX_HEADERS + 16];
    let mut req = httparse::Request::new(&mut fields);
    let httparse::Status::Complete(_) = req.parse(uhead).ok()? else {
        return None;
    };
    let mut out = http::Request::new(());
    *out.method_mut() = http::Method::from_bytes(req.method?.as_bytes()).ok()?;
    let mut uri = http::Uri::builder()
        .scheme(if tls { "https" } else { "http" })
        .path_and_query(req.path?);
    let headers = out.headers_mut();
    for h in req.headers.iter() {
        match Field::of(h.name.as_bytes()) {
            Field::Host => uri = uri.authority(h.value),
            Field::Upgrade | Field::Connection => return None,
            Field::TransferEncoding => {}
            _ => {
                let name = http::HeaderName::from_bytes(h.name.as_bytes()).ok()?;
                headers.append(name, http::HeaderValue::from_bytes(h.value).ok()?);
            }
        }
    }
    *out.uri_mut() = uri.build().ok()?;
    Some(out)
}

/// The backend's response as the HTTP/1.1 head `response::parse` reads.
fn http1_head(resp: &http::response::Parts, out: &mut BytesMut) {
    let status = resp.status.as_u16();
    let reason = resp.status.canonical_reason().unwrap_or("");
    let _ = write!(Fmt(out), "HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in &resp.headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

impl<S: ClientStream> Exchanging<'_, S> {
    /// One try against an HTTP/2 backend: a stream on its connection, the body sent, the
    /// response head written as HTTP/1.1, its DATA relayed in the client's framing.
    pub(super) async fn try_http2(&mut self, backend: &Backend, t: &Try<'_>) -> Result<Relayed> {
        let settings = &self.conn.snap.settings;
        let (idle, connect_timeout) = (settings.backend_timeout, settings.connect_timeout);
        let head_timeout = t.per_try_timeout.unwrap_or(idle);
        let Some(request) = request_of(&self.conn.uhead, backend.uses_tls()) else {
            debug!("request HTTP/2 cannot carry (an upgrade?)");
            return Err(Error::new(Kind::BadResponse));
        };
        let (mut sender, reused) = upstream::sender(backend, connect_timeout).await?;
        let has_body = self.req.framing != Framing::Empty;
        let (response, mut up_tx) = sender.send_request(request, !has_body).map_err(|e| {
            if reused {
                upstream_error(e)
            } else {
                Error::new(Kind::Connect)
            }
        })?;
        if has_body {
            self.send_body_http2(&mut up_tx, t.max_body).await?;
        }
        let resp = match timeout(head_timeout, response).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(upstream_error(e)),
            Err(_) => return Err(Error::new(Kind::UpstreamTimeout)),
        };
        let status = resp.status().as_u16();
        if let Some(dropped) = t.dropped(status) {
            return Err(dropped);
        }
        self.conn.track.upstream = Some(Instant::now().saturating_duration_since(t.started));
        let (parts, mut from) = resp.into_parts();
        let mut raw = BytesMut::new();
        http1_head(&parts, &mut raw);
        let c = &mut *self.conn;
        let mut fields = super::headers();
        let Ok(Some(head)) = response::parse(&raw, &mut fields, self.req.head_request) else {
            debug!(
                status,
                "HTTP/2 response head an HTTP/1.1 client cannot be given"
            );
            return Err(Error::new(Kind::BadResponse));
        };
        let keep_alive = self.req.keep_alive && !c.guard.is_draining();
        c.wbuf.clear();
        let framing = response::write_client_head(&head, self.req.version, keep_alive, &mut c.wbuf);
        let keep = response::client_may_keep(&head, framing, keep_alive);
        let body = head.framing;
        self.progress = Progress::ResponseStarted;
        send(&mut c.client, &c.wbuf).await.map_err(Error::client)?;
        if body == Framing::Empty {
            return Ok(Relayed { status, keep });
        }
        let rechunk = framing == ClientFraming::Rechunk;
        let mut chunk_line = BytesMut::new();
        loop {
            let next = timeout(idle, from.data())
                .await
                .map_err(|_| Error::new(Kind::UpstreamTimeout))?;
            let data = match next {
                None => break,
                Some(Ok(d)) => d,
                Some(Err(e)) => return Err(upstream_error(e)),
            };
            let n = data.len();
            if n == 0 {
                continue;
            }
            if rechunk {
                chunk_line.clear();
                let _ = write!(Fmt(&mut chunk_line), "{n:x}\r\n");
                send(&mut c.client, &chunk_line)
                    .await
                    .map_err(Error::client)?;
            }
            send(&mut c.client, &data).await.map_err(Error::client)?;
            if rechunk {
                send(&mut c.client, b"\r\n").await.map_err(Error::client)?;
            }
            let _ = from.flow_control().release_capacity(n);
        }
        if rechunk {
            send(&mut c.client, b"0\r\n\r\n")
                .await
                .map_err(Error::client)?;
        }
        Ok(Relayed { status, keep })
    }

    /// The client's body (`Content-Length` bytes, or chunked, de-chunked) as DATA, after a
    /// `100 Continue` of our own if the client waits for one.
    async fn send_body_http2(
        &mut self,
        tx: &mut h2::SendStream<Bytes>,
        max_body: Option<u64>,
    ) -> Result<()> {
        let c = &mut *self.conn;
        if self.req.expect_continue && !self.continue_sent {
            send(&mut c.client, local::CONTINUE)
                .await
                .map_err(Error::client)?;
            self.continue_sent = true;
        }
        self.progress = self.progress.max(Progress::BodyTaken);
        let idle = c.snap.settings.backend_timeout;
        let mut left = match self.req.framing {
            Framing::Length(n) => Some(n),
            _ => None,
        };
        let mut decoder = ChunkedDecoder::new();
        let mut payload = BytesMut::new();
        let mut total = 0u64;
        loop {
            let done = match &mut left {
                Some(n) => {
                    let take = (c.rbuf.len() as u64).min(*n) as usize;
                    payload.extend_from_slice(&c.rbuf[..take]);
                    c.rbuf.advance(take);
                    *n -= take as u64;
                    *n == 0
                }
                None => {
                    let p = decoder
                        .feed(&c.rbuf, |d| payload.extend_from_slice(d))
                        .map_err(|_| Error::new(Kind::BadRequestBody))?;
                    c.rbuf.advance(p.consumed);
                    p.done
                }
            };
            total += payload.len() as u64;
            if max_body.is_some_and(|max| total > max) {
                return Err(Error::new(Kind::BodyTooLarge));
            }
            if !payload.is_empty() || done {
                let data = payload.split().freeze();
                upstream::send_data(tx, data, done, idle, upstream_error, Kind::UpstreamTimeout)
                    .await?;
            }
            if done {
                return Ok(());
            }
            c.rbuf.reserve(READ_CHUNK);
            let read = timeout(idle, c.client.read_buf(&mut c.rbuf))
                .await
                .map_err(|_| Error::new(Kind::ClientLost))?
                .map_err(Error::client)?;
            if read == 0 {
                return Err(Error::new(Kind::ClientLost));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::http1::Version;

    #[test]
    fn the_upstream_head_becomes_an_http2_request() {
        let uhead = b"POST /api/x?y=1 HTTP/1.1\r\nHost: a.test\r\nContent-Type: text/plain\r\nX-Forwarded-For: 192.0.2.10\r\nX-Real-IP: 192.0.2.10\r\nContent-Length: 5\r\n\r\n";
        let r = request_of(uhead, false).unwrap();
        assert_eq!(r.method(), "POST");
        assert_eq!(r.uri(), "http://a.test/api/x?y=1");
        let names: Vec<_> = r.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "x-forwarded-for",
                "x-real-ip",
                "content-length"
            ]
        );
        let chunked = b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(!request_of(chunked, true)
            .unwrap()
            .headers()
            .contains_key("transfer-encoding"));
        let ws =
            b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert!(request_of(ws, false).is_none());
    }

    #[test]
    fn the_response_reads_as_an_http1_head_with_the_same_framing_rules() {
        let resp = http::Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .body(())
            .unwrap();
        let (parts, ()) = resp.into_parts();
        let mut raw = BytesMut::new();
        http1_head(&parts, &mut raw);
        let mut fields = crate::proxy::http1::headers();
        let head = response::parse(&raw, &mut fields, false).unwrap().unwrap();
        // No content-length: the body runs until the stream ends, re-chunked for HTTP/1.1.
        assert_eq!(head.framing, Framing::UntilClose);
        let mut out = BytesMut::new();
        let framing = response::write_client_head(&head, Version::Http11, true, &mut out);
        assert_eq!(framing, ClientFraming::Rechunk);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
    }
}
