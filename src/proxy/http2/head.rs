//! HTTP/2 heads as the proxy reads and writes them: pure, no I/O.
//!
//! Owns the RFC 9113 §8 rules that the `h2` crate leaves to its user, and the translation of
//! heads between HTTP/2 clients and HTTP/1.1 backends. `h2` itself refuses, with a stream
//! error PROTOCOL_ERROR and before the request reaches us: connection-specific fields
//! (`Connection`, `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`), `TE` other
//! than `trailers`, upper-case names, a missing or empty `:method`, `:scheme` or `:path`,
//! `:status` in a request, unparsable or conflicting `content-length`, DATA that disagrees
//! with `content-length`, and field values with CR, LF or NUL. This module refuses the rest
//! (§8.2.1 whitespace around a value, §8.3.1 a `:path` that is neither absolute nor `*` for
//! OPTIONS, a `Host` that names another authority than `:authority`), joins split `cookie`
//! fields for HTTP/1.1 (§8.2.3), and turns a backend's HTTP/1.1 response head into an
//! HTTP/2 one without its connection-specific fields.

use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::proxy::exchange::Body;
use crate::proxy::http1::request::Forwarding;
use crate::proxy::http1::response::Response as Http1Response;
use crate::proxy::http1::tokens::{self, Field};
use crate::proxy::http1::Framing;

/// Why a request head is not proxied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed (RFC 9113 §8.1.1): a stream error of type PROTOCOL_ERROR.
    Malformed(&'static str),
    /// Well-formed, but answered with this status and body.
    Answer(u16, &'static str),
}

/// The parts of an HTTP/2 request head the exchange reads, borrowed from it.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// `:authority`, else `Host`.
    pub authority: Option<&'a [u8]>,
    /// `:path`, query included, as received.
    pub path: &'a str,
    /// Every regular field, `cookie` fields joined into one.
    pub fields: Vec<httparse::Header<'a>>,
    pub body: Body,
}

/// Read and check a request head. `end_stream`: the HEADERS frame ended the stream (no
/// body); `cookie` is room for the joined `cookie` value.
pub fn request<'a>(
    parts: &'a http::request::Parts,
    end_stream: bool,
    max_fields: usize,
    cookie: &'a mut String,
) -> Result<Request<'a>, Refusal> {
    if parts.method == Method::CONNECT {
        return Err(Refusal::Answer(501, "CONNECT is not proxied"));
    }
    let path = parts.uri.path_and_query().map_or("", |p| p.as_str());
    let path_ok = path.starts_with('/') || (path == "*" && parts.method == Method::OPTIONS);
    if !path_ok {
        return Err(Refusal::Malformed(":path is not an absolute path"));
    }
    let mut host = None;
    let mut length = None;
    let mut cookies = 0;
    for (name, value) in &parts.headers {
        let v = value.as_bytes();
        if matches!(v.first(), Some(b' ' | b'\t')) || matches!(v.last(), Some(b' ' | b'\t')) {
            return Err(Refusal::Malformed(
                "field value with surrounding whitespace",
            ));
        }
        match Field::of(name.as_str().as_bytes()) {
            Field::Host => host = Some(v),
            // `h2` checked that every content-length is digits and that they agree.
            Field::ContentLength => {
                length = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok())
            }
            _ if name == http::header::COOKIE => cookies += 1,
            _ => {}
        }
    }
    let authority = parts.uri.authority().map(|a| a.as_str().as_bytes());
    if let (Some(a), Some(h)) = (authority, host) {
        if !a.eq_ignore_ascii_case(h) {
            return Err(Refusal::Malformed("Host differs from :authority"));
        }
    }
    let mut fields = Vec::with_capacity(parts.headers.len().min(max_fields + 1));
    if cookies > 1 {
        for (i, v) in parts
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .enumerate()
        {
            if i > 0 {
                cookie.push_str("; ");
            }
            cookie.push_str(v.to_str().unwrap_or_default());
        }
    }
    let mut cookie_written = false;
    for (name, value) in &parts.headers {
        if cookies > 1 && name == http::header::COOKIE {
            if cookie_written {
                continue;
            }
            cookie_written = true;
            fields.push(httparse::Header {
                name: name.as_str(),
                value: cookie.as_bytes(),
            });
        } else {
            fields.push(httparse::Header {
                name: name.as_str(),
                value: value.as_bytes(),
            });
        }
        if fields.len() > max_fields {
            return Err(Refusal::Answer(431, "too many header fields"));
        }
    }
    let body = match (end_stream, length) {
        (true, _) => Body::None,
        (false, Some(n)) => Body::Length(n),
        (false, None) => Body::Streamed,
    };
    Ok(Request {
        method: parts.method.as_str(),
        authority: authority.or(host),
        path,
        fields,
        body,
    })
}

/// How the request goes to an HTTP/1.1 backend.
pub fn framing(body: Body) -> Framing {
    match body {
        Body::None => Framing::Empty,
        Body::Length(n) => Framing::Length(n),
        Body::Streamed => Framing::Chunked,
    }
}

/// The HTTP/2 response head for a backend's HTTP/1.1 one: its status and end-to-end fields.
/// `None` when a field cannot be carried (the HTTP/1.1 parser lets through names HTTP/2
/// cannot encode, such as upper-case ones, which are lower-cased here instead).
pub fn response(resp: &Http1Response<'_, '_>) -> Option<http::Response<()>> {
    let mut out = http::Response::new(());
    *out.status_mut() = StatusCode::from_u16(resp.status).ok()?;
    let headers = out.headers_mut();
    headers.reserve(resp.headers.len());
    for h in resp.headers {
        let field = Field::of(h.name.as_bytes());
        let hop = field.is_hop_by_hop()
            || field == Field::TransferEncoding
            || (resp.connection_names_fields && tokens::named_by_connection(resp.headers, h.name));
        if hop {
            continue;
        }
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        headers.append(name, value);
    }
    Some(out)
}

/// The HTTP/2 request for a backend of an `http2` pool: the client's method, `authority`
/// and `path` (in normal form), its fields with the forwarding rules `write_upstream_head`
/// applies for HTTP/1.1 backends (X-Forwarded-For appended to, X-Real-IP set,
/// X-Forwarded-Proto/-Host set unless a trusted peer sent them, X-Request-Id added), `host`
/// dropped (`:authority` says it) and `te: trailers` kept (gRPC needs it). `None` when the
/// authority or path cannot form a URI.
pub fn upstream_request(
    parts: &http::request::Parts,
    authority: Option<&[u8]>,
    path: &str,
    scheme: &str,
    fwd: &Forwarding<'_>,
) -> Option<http::Request<()>> {
    use http::header::{self as h, HeaderMap};
    let mut uri = http::Uri::builder().scheme(scheme).path_and_query(path);
    if let Some(a) = authority {
        uri = uri.authority(a);
    }
    let mut out = http::Request::new(());
    *out.method_mut() = parts.method.clone();
    *out.uri_mut() = uri.build().ok()?;
    let xff = HeaderName::from_static("x-forwarded-for");
    let xfp = HeaderName::from_static("x-forwarded-proto");
    let xfh = HeaderName::from_static("x-forwarded-host");
    let real = HeaderName::from_static("x-real-ip");
    let rid = HeaderName::from_static("x-request-id");
    let mut headers = HeaderMap::with_capacity(parts.headers.len() + 4);
    let mut forwarded_for = String::new();
    for (name, value) in &parts.headers {
        if name == h::HOST || *name == real {
            continue;
        }
        if (*name == xfp || *name == xfh) && !fwd.peer_trusted {
            continue;
        }
        if *name == xff {
            // One field: every X-Forwarded-For value in order, then the peer.
            forwarded_for.push_str(value.to_str().ok()?);
            forwarded_for.push_str(", ");
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    forwarded_for.push_str(&fwd.peer.to_string());
    headers.insert(xff, HeaderValue::from_str(&forwarded_for).ok()?);
    if !headers.contains_key(&xfp) {
        headers.insert(xfp, HeaderValue::from_str(fwd.proto).ok()?);
    }
    if let (false, Some(a)) = (headers.contains_key(&xfh), authority) {
        headers.insert(xfh, HeaderValue::from_bytes(a).ok()?);
    }
    headers.insert(real, HeaderValue::from_str(&fwd.client.to_string()).ok()?);
    if let (false, Some(id)) = (headers.contains_key(&rid), fwd.request_id) {
        headers.insert(rid, HeaderValue::from_str(id).ok()?);
    }
    *out.headers_mut() = headers;
    Some(out)
}

/// Whether a request is a gRPC call (`content-type: application/grpc`, `+proto` and the
/// like): vipgate's own answers to it are then gRPC statuses.
pub fn is_grpc(parts: &http::request::Parts) -> bool {
    parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC status of an answer vipgate makes itself with HTTP `status`, sent in a
/// trailers-only response (HTTP 200) as Envoy does, so a gRPC client sees a real status rather
/// than a protocol error: no route NOT_FOUND (5), access denied PERMISSION_DENIED (7), too
/// large RESOURCE_EXHAUSTED (8), no backend or a broken one UNAVAILABLE (14), too late
/// DEADLINE_EXCEEDED (4), a refused request INTERNAL (13), a method vipgate does not carry
/// UNIMPLEMENTED (12), else UNKNOWN (2).
pub fn grpc_status(status: u16) -> u8 {
    match status {
        404 => 5,
        401 => 16,
        403 => 7,
        413 | 431 => 8,
        421 | 429 | 502 | 503 => 14,
        408 | 504 => 4,
        400 => 13,
        501 => 12,
        _ => 2,
    }
}

/// Whether a response with this status and framing has no body to send.
pub fn bodiless(status: u16, framing: Framing, head_request: bool) -> bool {
    head_request
        || status == 204
        || status == 304
        || matches!(framing, Framing::Empty | Framing::Length(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, fields: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (n, v) in fields {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn check(
        p: &http::request::Parts,
        end: bool,
    ) -> Result<(Vec<(String, String)>, Body), Refusal> {
        let mut cookie = String::new();
        let r = request(p, end, 100, &mut cookie)?;
        let fields = r
            .fields
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        Ok((fields, r.body))
    }

    #[test]
    fn a_plain_request_keeps_its_fields_authority_and_body_kind() {
        let p = parts(
            "GET",
            "https://blog.example.test/a?b=1",
            &[("accept", "*/*")],
        );
        let mut cookie = String::new();
        let r = request(&p, true, 100, &mut cookie).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.authority, Some(&b"blog.example.test"[..]));
        assert_eq!(r.path, "/a?b=1");
        assert_eq!(r.body, Body::None);
        assert_eq!(r.fields.len(), 1);
        let p = parts("POST", "https://a.test/", &[("content-length", "5")]);
        assert_eq!(check(&p, false).unwrap().1, Body::Length(5));
        let p = parts("POST", "https://a.test/", &[]);
        assert_eq!(check(&p, false).unwrap().1, Body::Streamed);
    }

    #[test]
    fn host_serves_when_there_is_no_authority_and_must_agree_when_there_is() {
        let p = parts("GET", "/x", &[("host", "b.test")]);
        let mut cookie = String::new();
        assert_eq!(
            request(&p, true, 100, &mut cookie).unwrap().authority,
            Some(&b"b.test"[..])
        );
        let p = parts("GET", "https://a.test/x", &[("host", "A.TEST")]);
        assert!(check(&p, true).is_ok());
        let p = parts("GET", "https://a.test/x", &[("host", "admin.test")]);
        assert_eq!(
            check(&p, true),
            Err(Refusal::Malformed("Host differs from :authority"))
        );
    }

    #[test]
    fn malformed_heads_are_refused_with_the_reason() {
        let p = parts("GET", "https://a.test/x", &[("x-a", " padded")]);
        assert!(matches!(check(&p, true), Err(Refusal::Malformed(_))));
        let p = parts("GET", "https://a.test/x", &[("x-a", "padded\t")]);
        assert!(matches!(check(&p, true), Err(Refusal::Malformed(_))));
        let p = parts("GET", "*", &[]);
        assert!(matches!(check(&p, true), Err(Refusal::Malformed(_))));
        let p = parts("OPTIONS", "*", &[]);
        assert!(check(&p, true).is_ok());
        let p = parts("CONNECT", "a.test:443", &[]);
        assert_eq!(
            check(&p, true),
            Err(Refusal::Answer(501, "CONNECT is not proxied"))
        );
    }

    #[test]
    fn split_cookies_are_joined_once_for_http1() {
        let p = parts(
            "GET",
            "https://a.test/",
            &[("cookie", "a=1"), ("accept", "*/*"), ("cookie", "b=2")],
        );
        let (fields, _) = check(&p, true).unwrap();
        let cookies: Vec<_> = fields.iter().filter(|(n, _)| n == "cookie").collect();
        assert_eq!(cookies, [&("cookie".to_owned(), "a=1; b=2".to_owned())]);
        assert_eq!(fields.len(), 2);
    }

    #[test]
    fn too_many_fields_get_431() {
        let many: Vec<(String, String)> = (0..5).map(|i| (format!("x-{i}"), "v".into())).collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let p = parts("GET", "https://a.test/", &refs);
        let mut cookie = String::new();
        assert_eq!(
            request(&p, true, 4, &mut cookie).map(|_| ()),
            Err(Refusal::Answer(431, "too many header fields"))
        );
        assert!(request(&p, true, 5, &mut cookie).is_ok());
    }

    #[test]
    fn a_backend_response_loses_its_connection_specific_fields() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n";
        let mut h = crate::proxy::http1::headers();
        let resp = crate::proxy::http1::response::parse(raw, &mut h, false)
            .unwrap()
            .unwrap();
        let out = response(&resp).unwrap();
        assert_eq!(out.status(), 200);
        let names: Vec<_> = out.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "set-cookie"]);
        assert_eq!(out.headers().get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn the_upstream_request_carries_the_forwarding_fields_http1_backends_get() {
        let p = parts(
            "POST",
            "https://a.test/x",
            &[
                ("x-forwarded-for", "203.0.113.1"),
                ("x-forwarded-proto", "gopher"),
                ("x-real-ip", "203.0.113.99"),
                ("te", "trailers"),
                ("content-type", "application/grpc"),
            ],
        );
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let fwd = Forwarding {
            peer: ip("192.0.2.10"),
            client: ip("192.0.2.10"),
            peer_trusted: false,
            proto: "https",
            request_id: Some("0123456789abcdef0123456789abcdef"),
        };
        let r = upstream_request(&p, Some(b"a.test"), "/x/y?z", "http", &fwd).unwrap();
        assert_eq!(r.uri(), "http://a.test/x/y?z");
        assert_eq!(r.method(), "POST");
        let h = r.headers();
        assert_eq!(h["x-forwarded-for"], "203.0.113.1, 192.0.2.10");
        assert_eq!(
            h["x-forwarded-proto"], "https",
            "an untrusted peer's proto is replaced"
        );
        assert_eq!(h["x-forwarded-host"], "a.test");
        assert_eq!(h["x-real-ip"], "192.0.2.10");
        assert_eq!(h["x-request-id"], "0123456789abcdef0123456789abcdef");
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["content-type"], "application/grpc");
        assert!(!h.contains_key("host"));
        // The same request as HTTP/1.1 gets the same forwarding values.
        let raw = b"POST /x/y?z HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 203.0.113.1\r\nX-Forwarded-Proto: gopher\r\nX-Real-IP: 203.0.113.99\r\nContent-Length: 0\r\n\r\n";
        let mut hs = crate::proxy::http1::headers();
        let limits = crate::proxy::http1::request::Limits {
            max_request_line: 8192,
            max_head_size: 65536,
            max_headers: 100,
        };
        let req = crate::proxy::http1::request::parse(raw, &mut hs, &limits)
            .unwrap()
            .unwrap();
        let mut out = bytes::BytesMut::new();
        crate::proxy::http1::request::write_upstream_head(&req, &fwd, &mut out);
        let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
        for name in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-real-ip",
            "x-request-id",
        ] {
            let line = format!("{name}: {}\r\n", h[name].to_str().unwrap());
            assert!(text.contains(&line), "HTTP/1.1 head lacks {line:?}: {text}");
        }
    }

    #[test]
    fn grpc_calls_and_their_statuses() {
        let p = parts(
            "POST",
            "http://a.test/x.Y/Z",
            &[("content-type", "application/grpc+proto")],
        );
        assert!(is_grpc(&p));
        assert!(!is_grpc(&parts(
            "POST",
            "http://a.test/",
            &[("content-type", "text/plain")]
        )));
        let table = [
            (404, 5),
            (403, 7),
            (413, 8),
            (503, 14),
            (502, 14),
            (504, 4),
            (400, 13),
            (501, 12),
            (500, 2),
        ];
        for (http, grpc) in table {
            assert_eq!(grpc_status(http), grpc, "{http}");
        }
    }

    #[test]
    fn bodiless_responses() {
        assert!(bodiless(204, Framing::Length(10), false));
        assert!(bodiless(200, Framing::Length(10), true));
        assert!(bodiless(200, Framing::Length(0), false));
        assert!(!bodiless(200, Framing::Chunked, false));
    }
}
