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
    fn bodiless_responses() {
        assert!(bodiless(204, Framing::Length(10), false));
        assert!(bodiless(200, Framing::Length(10), true));
        assert!(bodiless(200, Framing::Length(0), false));
        assert!(!bodiless(200, Framing::Chunked, false));
    }
}
