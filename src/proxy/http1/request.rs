//! Parsing and validating a request head straight from the connection's read buffer.
//!
//! Owns the decision whether a head is acceptable and how its body is framed (RFC 9112 §6),
//! and the writing of the head that goes to the backend. It borrows the read buffer and copies
//! nothing before routing: the route decision reads `host` and `path` in place.

use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::{BufMut, BytesMut};

use super::lines::LineCopy;
use super::tokens::{self, ConnectionOptions, Field};
use super::{Framing, Headers, Version, MAX_HEADERS, MAX_HEAD_SIZE};

/// Why a request head was refused; each maps to the status the client gets, after which the
/// connection is closed (the framing of anything behind a bad head cannot be trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
    #[error("request line too long")]
    RequestLineTooLong,
    #[error("request head too large")]
    HeadTooLarge,
    #[error("too many header fields")]
    TooManyHeaders,
    #[error("transfer coding not implemented")]
    UnsupportedTransferCoding,
}

impl RequestError {
    pub fn status(self) -> u16 {
        match self {
            RequestError::Malformed(_) => 400,
            RequestError::RequestLineTooLong => 414,
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => 431,
            RequestError::UnsupportedTransferCoding => 501,
        }
    }
}

/// A parsed head, borrowing the read buffer (`'b`) and the caller's header array (`'h`).
#[derive(Debug)]
pub struct Request<'b, 'h> {
    pub method: &'b str,
    /// The target as sent (origin-form or absolute-form).
    pub target: &'b str,
    /// The path and query to route on and to send to the backend (origin-form).
    pub path: &'b str,
    /// The authority to route on: the absolute-form target's if present (RFC 9112 §3.2.2
    /// says it wins over Host), else the Host field. Not yet normalised.
    pub authority: Option<&'b [u8]>,
    pub version: Version,
    pub headers: &'h [httparse::Header<'b>],
    /// The received head's bytes, which `headers` point into.
    pub head: &'b [u8],
    /// Bytes of the head including the blank line.
    pub head_len: usize,
    pub framing: Framing,
    /// Whether the client lets us keep the connection after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on a request with a body.
    pub expect_continue: bool,
    /// The `Upgrade` field of an HTTP/1.1 request whose `Connection` asks for an upgrade
    /// (WebSocket): forwarded so the backend may answer 101 and the connection become a tunnel.
    pub upgrade: Option<&'b [u8]>,
    /// A `Connection` field names fields beyond the hop-by-hop ones, which must then be
    /// dropped too.
    pub connection_names_fields: bool,
}

/// Size limits on a request head (`[proxy]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_request_line: usize,
    pub max_head_size: usize,
    /// At most `MAX_HEADERS`, the size of the parse array.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_head_size: MAX_HEAD_SIZE,
            max_headers: MAX_HEADERS,
        }
    }
}

/// Parse the head at the start of `buf`. `Ok(None)` means more bytes are needed.
pub fn parse<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut Headers<'b>,
    limits: &Limits,
) -> Result<Option<Request<'b, 'h>>, RequestError> {
    // The request line is judged first, so an over-long URI gets 414 rather than 431.
    let scan = &buf[..buf.len().min(limits.max_request_line + 1)];
    match scan.iter().position(|&b| b == b'\n') {
        None if scan.len() > limits.max_request_line => {
            return Err(RequestError::RequestLineTooLong)
        }
        Some(i) if i > limits.max_request_line => return Err(RequestError::RequestLineTooLong),
        _ => {}
    }
    let mut req = httparse::Request::new(&mut []);
    let status = match req.parse_with_uninit_headers(buf, headers) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        Err(e) => return Err(RequestError::Malformed(httparse_reason(e))),
    };
    let head_len = match status {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial if buf.len() >= limits.max_head_size => {
            return Err(RequestError::HeadTooLarge)
        }
        httparse::Status::Partial => return Ok(None),
    };
    if head_len > limits.max_head_size {
        return Err(RequestError::HeadTooLarge);
    }
    // httparse only returns Complete with all three set.
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(RequestError::Malformed("incomplete request line"));
    };
    let version = Version::from_minor(minor);
    let headers: &'h [httparse::Header<'b>] = req.headers;
    if headers.len() > limits.max_headers {
        return Err(RequestError::TooManyHeaders);
    }

    let (path, target_authority) = split_target(method, target)?;

    let mut host: Option<&'b [u8]> = None;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut has_te = false;
    let mut close = version == Version::Http10;
    let mut expect_continue = false;
    let mut connection_upgrade = false;
    let mut upgrade: Option<&'b [u8]> = None;
    let mut connection_names_fields = false;
    for h in headers {
        match Field::of(h.name.as_bytes()) {
            Field::Host => {
                if host.is_some() {
                    return Err(RequestError::Malformed("more than one Host field"));
                }
                host = Some(h.value);
            }
            Field::ContentLength => {
                // RFC 9112 §6.3 point 5: repeated or list-valued Content-Length is accepted only
                // when every value is the same valid number.
                for v in tokens::list(h.value) {
                    let n = parse_content_length(v)?;
                    if content_length.is_some_and(|seen| seen != n) {
                        return Err(RequestError::Malformed("conflicting Content-Length values"));
                    }
                    content_length = Some(n);
                }
                if tokens::list(h.value).next().is_none() {
                    return Err(RequestError::Malformed("empty Content-Length"));
                }
            }
            Field::TransferEncoding => {
                has_te = true;
                // Only the final coding decides framing; chunked anywhere but last is invalid
                // (RFC 9112 §6.1), and any other coding is one we do not implement.
                for coding in tokens::list(h.value) {
                    if chunked {
                        return Err(RequestError::Malformed(
                            "chunked is not the final transfer coding",
                        ));
                    }
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        chunked = true;
                    } else {
                        return Err(RequestError::UnsupportedTransferCoding);
                    }
                }
            }
            Field::Connection => {
                let o = ConnectionOptions::of(h.value);
                connection_upgrade |= o.upgrade;
                connection_names_fields |= o.names_fields;
                if o.close {
                    close = true;
                } else if o.keep_alive && version == Version::Http10 {
                    close = false;
                }
            }
            Field::Upgrade => upgrade = Some(h.value),
            Field::Expect => {
                if h.value.eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else {
                    // RFC 9110 §10.1.1: an expectation we cannot meet gets 417; we keep it simple
                    // and refuse it as malformed rather than forward an unknown expectation.
                    return Err(RequestError::Malformed("unsupported Expect value"));
                }
            }
            _ => {}
        }
    }
    if has_te {
        // A request smuggling vector: framing the front and the backend could read
        // differently (RFC 9112 §6.1 lets us reject, and we do).
        if content_length.is_some() {
            return Err(RequestError::Malformed(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        if version == Version::Http10 {
            return Err(RequestError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if !chunked {
            return Err(RequestError::Malformed("empty Transfer-Encoding"));
        }
    }
    if version == Version::Http11 && host.is_none() {
        return Err(RequestError::Malformed("missing Host field"));
    }
    if let (Some(t), Some(h)) = (target_authority, host) {
        // RFC 9112 §3.2.2 lets the target win, but a backend that reads Host would then route
        // differently from us: refuse the disagreement instead of choosing.
        if !same_authority(t, h, target) {
            return Err(RequestError::Malformed(
                "absolute-form target disagrees with Host",
            ));
        }
    }
    let framing = if chunked {
        Framing::Chunked
    } else {
        match content_length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    Ok(Some(Request {
        method,
        target,
        path,
        authority: target_authority.or(host),
        version,
        headers,
        head: &buf[..head_len],
        head_len,
        framing,
        keep_alive: !close,
        expect_continue: expect_continue && framing != Framing::Empty,
        // RFC 9110 §7.8: Upgrade counts only when Connection names it, and not in HTTP/1.0.
        // Never to h2c (RFC 9113 §3.1 deprecated it): a backend that took it would turn the
        // connection into an HTTP/2 tunnel whose requests vipgate never routes or checks
        // ("h2c smuggling"). Such a request goes on as a plain HTTP/1.1 one.
        upgrade: upgrade
            .filter(|v| connection_upgrade && version == Version::Http11 && !tokens::has(v, "h2c")),
        connection_names_fields,
    }))
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

fn parse_content_length(v: &[u8]) -> Result<u64, RequestError> {
    const BAD: RequestError = RequestError::Malformed("invalid Content-Length");
    if v.is_empty() || v.len() > 19 {
        return Err(BAD);
    }
    v.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .ok_or(BAD)
        } else {
            Err(BAD)
        }
    })
}

/// Split the request target into the origin-form path to forward and, for absolute-form, the
/// authority it names (RFC 9112 §3.2).
fn split_target<'b>(
    method: &str,
    target: &'b str,
) -> Result<(&'b str, Option<&'b [u8]>), RequestError> {
    if target.starts_with('/') {
        return Ok((target, None));
    }
    if target == "*" && method == "OPTIONS" {
        return Ok((target, None));
    }
    let rest = strip_scheme(target).ok_or(RequestError::Malformed("unsupported request target"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(RequestError::Malformed(
            "invalid authority in absolute-form target",
        ));
    }
    if path.starts_with('?') {
        // "http://h?q" has an empty path; the origin-form needs "/?q", which we cannot borrow.
        return Err(RequestError::Malformed(
            "absolute-form target without a path",
        ));
    }
    Ok((path, Some(authority.as_bytes())))
}

/// Authorities equal but for case and an explicit default port.
fn same_authority(a: &[u8], b: &[u8], target: &str) -> bool {
    let default = if target.len() >= 8 && target[..8].eq_ignore_ascii_case("https://") {
        &b":443"[..]
    } else {
        &b":80"[..]
    };
    let strip = |x: &[u8]| -> Vec<u8> {
        let x = tokens::trim(x);
        let x = if x.len() >= default.len() && x[x.len() - default.len()..] == *default {
            &x[..x.len() - default.len()]
        } else {
            x
        };
        x.to_ascii_lowercase()
    };
    strip(a) == strip(b)
}

fn strip_scheme(target: &str) -> Option<&str> {
    for scheme in ["http://", "https://"] {
        if target.len() >= scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(&target[scheme.len()..]);
        }
    }
    None
}

/// What the backend is told about how the request reached us.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    /// The TCP peer: appended to X-Forwarded-For.
    pub peer: IpAddr,
    /// The real client (after trusted-proxy rules): sent as X-Real-IP.
    pub client: IpAddr,
    /// Whether the peer's own X-Forwarded-Proto/-Host are believed.
    pub peer_trusted: bool,
    /// `http` or `https`, as the client spoke to us.
    pub proto: &'a str,
    /// A generated X-Request-Id to add when the request has none.
    pub request_id: Option<&'a str>,
}

/// Write the head to send to the backend into `out`: origin-form request line as HTTP/1.1,
/// end-to-end fields as received, hop-by-hop fields (and those named in Connection) dropped,
/// one normalised framing field, and the forwarding fields (X-Forwarded-For appended;
/// X-Forwarded-Proto, X-Forwarded-Host and X-Real-IP set unless a trusted peer set them).
/// The backend connection is kept alive (the HTTP/1.1 default), so no Connection field.
pub fn write_upstream_head(req: &Request<'_, '_>, fwd: &Forwarding<'_>, out: &mut BytesMut) {
    out.reserve(req.head_len + 128);
    put3(out, req.method.as_bytes(), b" ", req.path.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    let mut forwarded_for_written = false;
    let mut has_request_id = false;
    let mut has_host = false;
    // A trusted peer's own X-Forwarded-Proto/-Host stand (even if Connection drops them).
    let mut has_proto = false;
    let mut has_forwarded_host = false;
    // Where X-Forwarded-For got the peer's address, for X-Real-IP to copy.
    let mut peer_text = 0..0;
    let mut lines = LineCopy::new(req.head);
    for h in req.headers {
        let name = h.name;
        let field = Field::of(name.as_bytes());
        match field {
            Field::TransferEncoding | Field::ContentLength | Field::Expect | Field::XRealIp => {
                continue
            }
            Field::XForwardedProto => has_proto = true,
            Field::XForwardedHost => has_forwarded_host = true,
            f if f.is_hop_by_hop() => continue,
            _ => {}
        }
        if !fwd.peer_trusted && matches!(field, Field::XForwardedProto | Field::XForwardedHost) {
            continue;
        }
        if req.connection_names_fields && tokens::named_by_connection(req.headers, name) {
            continue;
        }
        if field == Field::XForwardedFor {
            if forwarded_for_written {
                continue;
            }
            // One field: every X-Forwarded-For value in order, then the peer.
            lines.flush(out);
            out.put_slice(b"X-Forwarded-For: ");
            let mut first = true;
            for v in req
                .headers
                .iter()
                .filter(|h| Field::of(h.name.as_bytes()) == Field::XForwardedFor)
            {
                if !first {
                    out.put_slice(b", ");
                }
                out.put_slice(v.value);
                first = false;
            }
            out.put_slice(b", ");
            peer_text = put_ip_at(out, fwd.peer);
            out.put_slice(b"\r\n");
            forwarded_for_written = true;
            continue;
        }
        has_request_id |= field == Field::XRequestId;
        has_host |= field == Field::Host;
        lines.keep(h, out);
    }
    lines.flush(out);
    if !has_host {
        if let Some(a) = req.authority {
            put3(out, b"Host: ", a, b"\r\n");
        }
    }
    if !forwarded_for_written {
        out.put_slice(b"X-Forwarded-For: ");
        peer_text = put_ip_at(out, fwd.peer);
        out.put_slice(b"\r\n");
    }
    if !(fwd.peer_trusted && has_proto) {
        put3(out, b"X-Forwarded-Proto: ", fwd.proto.as_bytes(), b"\r\n");
    }
    if !(fwd.peer_trusted && has_forwarded_host) {
        if let Some(a) = req.authority {
            put3(out, b"X-Forwarded-Host: ", a, b"\r\n");
        }
    }
    out.put_slice(b"X-Real-IP: ");
    if fwd.client == fwd.peer && !peer_text.is_empty() && peer_text.len() <= IP_TEXT_MAX {
        // Usually the peer itself: copy its text rather than format it again.
        let mut text = [0u8; IP_TEXT_MAX];
        let text = &mut text[..peer_text.len()];
        text.copy_from_slice(&out[peer_text]);
        out.put_slice(text);
    } else {
        put_ip(out, fwd.client);
    }
    out.put_slice(b"\r\n");
    if let Some(protocols) = req.upgrade {
        put3(out, b"Connection: upgrade\r\nUpgrade: ", protocols, b"\r\n");
    }
    if let (Some(id), false) = (fwd.request_id, has_request_id) {
        put3(out, b"X-Request-Id: ", id.as_bytes(), b"\r\n");
    }
    match req.framing {
        Framing::Empty => {
            if method_expects_length(req.method) {
                out.put_slice(b"Content-Length: 0\r\n");
            }
        }
        Framing::Length(n) => {
            out.put_slice(b"Content-Length: ");
            put_u64(out, n);
            out.put_slice(b"\r\n");
        }
        Framing::Chunked | Framing::UntilClose => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    out.put_slice(b"\r\n");
}

/// Methods whose empty body should still be framed explicitly so that the backend does not
/// wait for one (RFC 9110 §8.6: a user agent SHOULD send Content-Length for these).
fn method_expects_length(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH")
}

fn put3(out: &mut BytesMut, a: &[u8], b: &[u8], c: &[u8]) {
    out.put_slice(a);
    out.put_slice(b);
    out.put_slice(c);
}

/// A decimal number, without the formatting machinery (this runs for every request).
pub(crate) fn put_u64(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

/// The longest text of an address (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`).
const IP_TEXT_MAX: usize = 45;

/// [`put_ip`], returning where in `out` the text went.
fn put_ip_at(out: &mut BytesMut, ip: IpAddr) -> std::ops::Range<usize> {
    let at = out.len();
    put_ip(out, ip);
    at..out.len()
}

/// An address as `Display` writes it; IPv4 (every request's X-Forwarded-For and X-Real-IP)
/// without the formatting machinery.
pub(crate) fn put_ip(out: &mut BytesMut, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    text[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    text[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                text[len] = b'0' + octet % 10;
                len += 1;
            }
            out.put_slice(&text[..len]);
        }
        IpAddr::V6(_) => {
            let _ = write!(Fmt(out), "{ip}");
        }
    }
}

/// `fmt::Write` into a `BytesMut` without an intermediate `String`.
pub(crate) struct Fmt<'a>(pub &'a mut BytesMut);

impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses_are_written_as_display_writes_them() {
        for n in [0u64, 7, 10, 99, 200, 65535, u64::MAX] {
            let mut out = BytesMut::new();
            put_u64(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
        }
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "192.0.2.200",
            "255.255.255.255",
            "2001:db8::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = BytesMut::new();
            put_ip(&mut out, ip);
            assert_eq!(&out[..], ip.to_string().as_bytes());
        }
    }

    fn parse_ok(raw: &[u8]) -> (Framing, bool, Option<Vec<u8>>, String) {
        let mut headers = super::super::headers();
        let r = parse(raw, &mut headers, &Limits::default())
            .expect("valid")
            .expect("complete");
        (
            r.framing,
            r.keep_alive,
            r.authority.map(<[u8]>::to_vec),
            r.path.to_string(),
        )
    }

    #[test]
    fn an_upgrade_to_h2c_is_not_forwarded_and_websocket_is() {
        let upgrade_of = |raw: &[u8]| {
            let mut headers = super::super::headers();
            let r = parse(raw, &mut headers, &Limits::default())
                .unwrap()
                .unwrap();
            r.upgrade.map(<[u8]>::to_vec)
        };
        let ws =
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(upgrade_of(ws), Some(b"websocket".to_vec()));
        let h2c = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
        assert_eq!(upgrade_of(h2c), None);
        let both =
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket, H2C\r\n\r\n";
        assert_eq!(upgrade_of(both), None);
        let mut headers = super::super::headers();
        let req = parse(h2c, &mut headers, &Limits::default())
            .unwrap()
            .unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let fwd = Forwarding {
            peer: ip,
            client: ip,
            peer_trusted: false,
            proto: "http",
            request_id: None,
        };
        let mut out = BytesMut::new();
        write_upstream_head(&req, &fwd, &mut out);
        let sent = String::from_utf8_lossy(&out).to_ascii_lowercase();
        assert!(
            !sent.contains("upgrade") && !sent.contains("http2-settings"),
            "{sent}"
        );
    }

    fn parse_err(raw: &[u8]) -> RequestError {
        let mut headers = super::super::headers();
        parse(raw, &mut headers, &Limits::default()).expect_err("must be refused")
    }

    #[test]
    fn partial_heads_ask_for_more() {
        let mut headers = super::super::headers();
        assert!(parse(
            b"GET / HTTP/1.1\r\nHost: a\r\n",
            &mut headers,
            &Limits::default()
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn framing_and_connection_rules() {
        let cases: &[(&[u8], Framing, bool)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Framing::Empty, true),
            (b"GET / HTTP/1.0\r\n\r\n", Framing::Empty, false),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                Framing::Empty,
                true,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                Framing::Empty,
                false,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
                Framing::Length(5),
                true,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
                Framing::Length(5),
                true,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
                Framing::Chunked,
                true,
            ),
        ];
        for (raw, framing, keep_alive) in cases {
            let (f, k, _, _) = parse_ok(raw);
            assert_eq!(
                (f, k),
                (*framing, *keep_alive),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn refusals_and_their_status() {
        let cases: &[(&[u8], u16)] = &[
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", 400),
            (b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", 400),
        ];
        for (raw, status) in cases {
            assert_eq!(
                parse_err(raw).status(),
                *status,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn request_line_limit_gives_414_before_the_head_is_complete() {
        let limits = Limits {
            max_request_line: 64,
            ..Limits::default()
        };
        let mut headers = super::super::headers();
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(100));
        assert_eq!(
            parse(long.as_bytes(), &mut headers, &limits)
                .unwrap_err()
                .status(),
            414
        );
        let mut headers = super::super::headers();
        assert!(parse(b"GET /short HTTP/1.1\r\n", &mut headers, &limits)
            .unwrap()
            .is_none());
        let few = Limits {
            max_headers: 2,
            ..Limits::default()
        };
        let mut headers = super::super::headers();
        let three = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(parse(three, &mut headers, &few).unwrap_err().status(), 431);
    }

    #[test]
    fn head_limits() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert_eq!(parse_err(&raw), RequestError::TooManyHeaders);
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        big.resize(MAX_HEAD_SIZE + 10, b'a');
        assert_eq!(parse_err(&big), RequestError::HeadTooLarge);
    }

    #[test]
    fn absolute_form_authority_wins_over_host() {
        let (_, _, authority, path) = parse_ok(
            b"GET http://Blog.Example.test:80/api?x=1 HTTP/1.1\r\nHost: blog.example.TEST\r\n\r\n",
        );
        assert_eq!(authority.as_deref(), Some(&b"Blog.Example.test:80"[..]));
        assert_eq!(path, "/api?x=1");
        let (_, _, _, path) = parse_ok(b"GET http://a HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(path, "/");
    }

    #[test]
    fn upstream_head_drops_hop_by_hop_and_normalises_framing() {
        let raw = b"POST /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 203.0.113.9\r\nAccept: */*\r\n\r\n";
        let mut headers = super::super::headers();
        let req = parse(raw, &mut headers, &Limits::default())
            .unwrap()
            .unwrap();
        let mut out = BytesMut::new();
        let fwd = Forwarding {
            peer: "192.0.2.10".parse().unwrap(),
            client: "192.0.2.10".parse().unwrap(),
            peer_trusted: false,
            proto: "http",
            request_id: Some("abc"),
        };
        write_upstream_head(&req, &fwd, &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "POST /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.9, 192.0.2.10\r\nAccept: */*\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\nX-Real-IP: 192.0.2.10\r\nX-Request-Id: abc\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_stay_in_bounds(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let mut headers = super::super::headers();
            if let Ok(Some(req)) = parse(&input, &mut headers, &Limits::default()) {
                proptest::prop_assert!(req.head_len <= input.len());
                let mut out = BytesMut::new();
                let ip: IpAddr = "192.0.2.1".parse().unwrap();
                let fwd = Forwarding { peer: ip, client: ip, peer_trusted: false, proto: "http", request_id: None };
                write_upstream_head(&req, &fwd, &mut out);
                proptest::prop_assert!(out.ends_with(b"\r\n\r\n"));
            }
        }

        #[test]
        fn mutated_valid_heads_never_panic(cut in 0usize..120, flip in 0usize..120, byte in proptest::prelude::any::<u8>()) {
            let mut raw = b"POST http://a.test/x?y HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n".to_vec();
            let flip = flip % raw.len();
            raw[flip] = byte;
            raw.truncate(cut.max(1).min(raw.len()));
            let mut headers = super::super::headers();
            let _ = parse(&raw, &mut headers, &Limits::default());
        }
    }
}
