//! What to do with one request, from its head alone: pure, no I/O, the same for every protocol.
//!
//! Owns the order of the checks and the answer of each: the path in normal form (or 400, or
//! the `escaped_slashes = "redirect"` 308), `redirect_https`, a Host that must agree with the
//! TLS server name (421), the route (404, 400), the host's and the route's access lists and
//! client certificate subjects (403), the declared body length (413), then the pool, its hash
//! and the request id. It does not write any head: the protocol side does that from the
//! `Routed` it gets back.

use std::net::{IpAddr, SocketAddr};

use tracing::debug;

use super::{Body, Head};
use crate::proxy::client::Front;
use crate::proxy::forwarded;
use crate::proxy::route::{normalize_host, Miss, Target, MAX_HOST};
use crate::proxy::upstream::HashInput;
use crate::proxy::Snapshot;
use crate::wire::path::{self, Normal, PathRules};

/// The decision on one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Forward(Routed),
    /// Answer locally. `malformed`: the request itself is broken, so on HTTP/1.1 nothing after
    /// it on the connection can be trusted.
    Local {
        status: u16,
        body: &'static str,
        malformed: bool,
    },
    /// A redirect (`redirect_https`, or a path to write in normal form): status and Location.
    Redirect {
        status: u16,
        location: String,
    },
    /// The key authorization of an open ACME HTTP-01 check (RFC 8555 section 8.3), as the
    /// body of a 200. Found before routing and before `redirect_https` by the connection
    /// ([`acme_challenge`]), never by [`decide`].
    Challenge(Box<str>),
}

/// An ACME HTTP-01 check on a plain-HTTP front: a `GET` for an open token under
/// `/.well-known/acme-challenge/` (the path as received: the ACME server sends it as is).
/// Any other request costs one prefix compare.
pub fn acme_challenge(
    front: &Front,
    method: &str,
    path: &[u8],
    open: &crate::acme::challenge::Challenges,
) -> Option<Decision> {
    if front.tls.is_some() || method != "GET" {
        return None;
    }
    open.http01(path).map(Decision::Challenge)
}

/// A request that goes to a pool.
#[derive(Debug, PartialEq, Eq)]
pub struct Routed {
    pub target: Target,
    pub pool: crate::config::PoolId,
    /// The pool's hash of the request (Maglev), 0 for other balancing.
    pub hash: u64,
    /// The real client, after the trusted-proxy rules.
    pub client_ip: IpAddr,
    /// Idempotent and without a body: may be sent again after a failure past connecting.
    pub replayable: bool,
    /// The `X-Request-Id` vipgate adds, when `[proxy] request_id` is on.
    pub request_id: Option<RequestId>,
}

/// A request id: 128 bits, written as 32 hex digits only where it is sent or logged (the
/// decision stays small: it is moved several times per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(u64, u64);

impl RequestId {
    pub fn hex(self) -> [u8; 32] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 32];
        for (i, byte) in buf.iter_mut().enumerate() {
            let word = if i < 16 { self.0 } else { self.1 };
            *byte = HEX[((word >> ((i % 16) * 4)) & 0xf) as usize];
        }
        buf
    }
}

/// `hex` as text, for the header writer.
pub fn hex_str(hex: &[u8; 32]) -> &str {
    // Only ASCII hex digits are ever written.
    std::str::from_utf8(hex).unwrap_or("0")
}

const fn local(status: u16, body: &'static str, malformed: bool) -> Decision {
    Decision::Local {
        status,
        body,
        malformed,
    }
}

/// Why a path cannot be routed as it came. Small, so the path's `Result` stays in registers
/// on the hot path; `answer` builds the decision only when it is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotNormal {
    /// Refused (400).
    Refused,
    /// `escaped_slashes = "redirect"`: its normal form, in the buffer, is where to go (308).
    Redirect,
}

impl NotNormal {
    /// The answer, with `normal` the buffer `normal_path` wrote.
    pub fn answer(self, normal: &str) -> Decision {
        match self {
            NotNormal::Refused => local(400, "bad request path", true),
            NotNormal::Redirect => Decision::Redirect {
                status: 308,
                location: normal.to_owned(),
            },
        }
    }
}

/// The path to route, check and forward: `received` itself when it is in normal form, else
/// its normal form written into `buf`.
#[inline]
pub fn normal_path<'a>(
    peer: SocketAddr,
    received: &'a str,
    rules: PathRules,
    buf: &'a mut String,
) -> Result<&'a str, NotNormal> {
    match path::normalize(received, rules, buf) {
        Ok(Normal::Unchanged) => Ok(received),
        Ok(Normal::Changed) => Ok(buf),
        Ok(Normal::Redirect) => Err(NotNormal::Redirect),
        Err(e) => {
            debug!(%peer, path = received, error = %e, "refused request path");
            Err(NotNormal::Refused)
        }
    }
}

/// Decide a request whose path is already in normal form (`normal_path`). Inlined: one call
/// per protocol, on the hot path.
#[inline]
pub fn decide(snap: &Snapshot, front: &Front, peer: SocketAddr, head: &Head<'_>) -> Decision {
    let Some(authority) = head.authority else {
        return local(400, "missing Host", true);
    };
    if let Some(status) = front.redirect_https {
        return match https_location(authority, head.path) {
            Some(location) => Decision::Redirect { status, location },
            None => local(400, "invalid Host", true),
        };
    }
    let tls = front.tls.as_deref();
    if let Some(sni) = tls.and_then(|t| t.sni.as_deref()) {
        if !same_host(authority, sni) {
            debug!(%peer, sni, host = %String::from_utf8_lossy(authority), "Host does not match SNI");
            return local(
                421,
                "misdirected request: the Host does not match the TLS server name",
                false,
            );
        }
    }
    let target = match snap.routes.lookup(authority, head.path) {
        Ok(t) => t,
        Err(Miss::BadHost) => return local(400, "invalid Host", true),
        Err(Miss::UnknownHost) => return local(404, "unknown host", false),
        Err(Miss::NoRoute) => return local(404, "no route for this path", false),
    };
    let settings = &snap.settings;
    let client_ip = forwarded::client_ip(settings, peer.ip(), head.fields);
    let route = snap.routes.route(target);
    if !snap.routes.host_access(target).admits(client_ip) || !route.access.admits(client_ip) {
        debug!(%peer, %client_ip, "denied by access list");
        return local(403, "forbidden", false);
    }
    let subject = tls.and_then(|t| t.client_subject.as_deref());
    if !snap.routes.admits_client(target, subject) {
        debug!(%peer, ?subject, "client certificate subject not allowed");
        return local(403, "forbidden: client certificate required", false);
    }
    if let (Some(max), Body::Length(n)) = (route.max_body_bytes, head.body) {
        if n > max {
            // Not `malformed`, but its body is not read: HTTP/1.1 closes after it anyway.
            return local(413, "request body too large", false);
        }
    }
    let pool_id = route.pool();
    let pool = snap.pools.get(pool_id);
    let hash = pool.hash(&HashInput {
        client_ip,
        headers: head.fields,
    });
    debug!(
        %peer,
        host = snap.routes.host_label(target.host),
        prefix = &*route.prefix,
        pool = %pool.name,
        method = head.method,
        path = head.path,
        "route"
    );
    Decision::Forward(Routed {
        target,
        pool: pool_id,
        hash,
        client_ip,
        replayable: head.body == Body::None && is_idempotent(head.method),
        request_id: settings.request_id.then(new_request_id),
    })
}

/// Methods that RFC 9110 §9.2.2 calls idempotent: a retry cannot do twice what the first try
/// did once.
pub fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// Whether the request's Host names the TLS server name: the route table's host rules (case,
/// port, trailing dot), so the two can never disagree on what a host is.
fn same_host(authority: &[u8], sni: &str) -> bool {
    let mut buf = [0u8; MAX_HOST];
    normalize_host(authority, &mut buf).is_some_and(|h| h.eq_ignore_ascii_case(sni.as_bytes()))
}

/// `https://HOST/PATH?QUERY` for a redirect (the host as the route table normalises it), or
/// `None` if the Host is not a host name.
fn https_location(authority: &[u8], path: &str) -> Option<String> {
    let mut buf = [0u8; MAX_HOST];
    let host = std::str::from_utf8(normalize_host(authority, &mut buf)?).ok()?;
    let path = if path.starts_with('/') { path } else { "/" };
    let mut location = String::with_capacity(8 + host.len() + path.len());
    location.push_str("https://");
    location.push_str(host);
    location.push_str(path);
    Some(location)
}

/// An id that no other request of this process shares and that other processes and nodes are
/// unlikely to repeat: 64 bits drawn from the thread's generator (`fastrand`, seeded from the
/// OS), then the thread's own sequence from a random start. Not a secret: nothing trusts an id
/// for more than telling requests apart.
fn new_request_id() -> RequestId {
    thread_local! {
        static SEQUENCE: std::cell::Cell<u64> = std::cell::Cell::new(fastrand::u64(..));
    }
    let a = fastrand::u64(..);
    let b = SEQUENCE.with(|s| {
        let n = s.get().wrapping_add(1);
        s.set(n);
        n
    });
    RequestId(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Arc;

    use crate::proxy::tls::TlsInfo;

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
            (b"a.test:x", "a.test", false),
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
            (b"A.test", "*", Some("https://a.test/")),
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

    const CONFIG: &str = r#"
[[listener]]
bind = "0.0.0.0:80"

[proxy]
trusted_proxies = ["192.0.2.1/32"]

[[host]]
names = ["app.test"]
allow = ["198.51.100.0/24", "192.0.2.0/24"]
[[host.route]]
prefix = "/admin"
pool = "web"
allow = ["198.51.100.7/32"]
[[host.route]]
prefix = "/upload"
pool = "web"
max_body_bytes = 10
[[host.route]]
prefix = "/"
pool = "web"

[[host]]
names = ["certs.test"]
allow_client_subjects = ["CN=ops"]
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["192.0.2.21:8080"]
"#;

    fn head<'a>(
        method: &'a str,
        host: &'a str,
        path: &'a str,
        fields: &'a [httparse::Header<'a>],
        body: Body,
    ) -> Head<'a> {
        Head {
            method,
            protocol: "HTTP/1.1",
            authority: (!host.is_empty()).then_some(host.as_bytes()),
            path,
            fields,
            body,
        }
    }

    /// Every answer `decide` can give, in the order its checks run.
    #[test]
    fn decision_table() {
        let config = crate::config::parse(Path::new("t.toml"), CONFIG).unwrap();
        let snap = Snapshot::build(&config);
        let plain = Front::default();
        let redirect = Front {
            tls: None,
            redirect_https: Some(301),
            http2: false,
        };
        let tls = |sni: &str, subject: Option<&str>| Front {
            tls: Some(Arc::new(TlsInfo {
                sni: Some(sni.into()),
                version: "TLSv1.3",
                cipher: "TLS13_AES_128_GCM_SHA256",
                http2: false,
                client_subject: subject.map(Into::into),
            })),
            redirect_https: None,
            http2: false,
        };
        let inside: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        let other: SocketAddr = "198.51.100.8:5000".parse().unwrap();
        let outside: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let cdn: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let xff = [httparse::Header {
            name: "X-Forwarded-For",
            value: b"198.51.100.7",
        }];
        let none: &[httparse::Header] = &[];
        // front, peer, method, host, path, fields, body, status (200: forwarded)
        type Case<'a> = (
            &'a Front,
            SocketAddr,
            &'a str,
            &'a str,
            &'a str,
            &'a [httparse::Header<'a>],
            Body,
            u16,
        );
        let cases: &[Case] = &[
            (
                &plain,
                inside,
                "GET",
                "app.test",
                "/",
                none,
                Body::None,
                200,
            ),
            (&plain, inside, "GET", "", "/", none, Body::None, 400),
            (
                &redirect,
                inside,
                "GET",
                "app.test",
                "/",
                none,
                Body::None,
                301,
            ),
            (&redirect, inside, "GET", "a b", "/", none, Body::None, 400),
            (
                &tls("app.test", None),
                inside,
                "GET",
                "APP.test:443",
                "/",
                none,
                Body::None,
                200,
            ),
            (
                &tls("other.test", None),
                inside,
                "GET",
                "app.test",
                "/",
                none,
                Body::None,
                421,
            ),
            (
                &plain,
                inside,
                "GET",
                "nope.test",
                "/",
                none,
                Body::None,
                404,
            ),
            (
                &plain,
                inside,
                "GET",
                "bad host",
                "/",
                none,
                Body::None,
                400,
            ),
            (
                &plain,
                outside,
                "GET",
                "app.test",
                "/",
                none,
                Body::None,
                403,
            ),
            (
                &plain,
                other,
                "GET",
                "app.test",
                "/admin",
                none,
                Body::None,
                403,
            ),
            (
                &plain,
                inside,
                "GET",
                "app.test",
                "/admin",
                none,
                Body::None,
                200,
            ),
            // A trusted front's X-Forwarded-For names the client the lists judge.
            (
                &plain,
                cdn,
                "GET",
                "app.test",
                "/admin",
                &xff,
                Body::None,
                200,
            ),
            (
                &plain,
                outside,
                "GET",
                "app.test",
                "/admin",
                &xff,
                Body::None,
                403,
            ),
            (
                &plain,
                inside,
                "POST",
                "app.test",
                "/upload",
                none,
                Body::Length(10),
                200,
            ),
            (
                &plain,
                inside,
                "POST",
                "app.test",
                "/upload",
                none,
                Body::Length(11),
                413,
            ),
            (
                &plain,
                inside,
                "POST",
                "app.test",
                "/upload",
                none,
                Body::Streamed,
                200,
            ),
            (
                &tls("certs.test", None),
                outside,
                "GET",
                "certs.test",
                "/",
                none,
                Body::None,
                403,
            ),
            (
                &tls("certs.test", Some("CN=ops")),
                outside,
                "GET",
                "certs.test",
                "/",
                none,
                Body::None,
                200,
            ),
        ];
        for (i, &(front, peer, method, host, path, fields, body, want)) in cases.iter().enumerate()
        {
            let got = match decide(&snap, front, peer, &head(method, host, path, fields, body)) {
                Decision::Forward(r) => {
                    assert_eq!(snap.pools.get(r.pool).name, "web");
                    assert_eq!(r.replayable, method == "GET", "case {i}");
                    200
                }
                Decision::Local { status, .. } | Decision::Redirect { status, .. } => status,
                // Never made by decide: the connection looks for ACME tokens before it.
                Decision::Challenge(_) => 0,
            };
            assert_eq!(got, want, "case {i}: {method} {host} {path} from {peer}");
        }
    }

    #[test]
    fn acme_tokens_are_answered_on_plain_http_gets_only() {
        let open = crate::acme::challenge::Challenges::default();
        open.add_http01("tok", "tok.thumb");
        let plain = Front::default();
        let tls = Front {
            tls: Some(Arc::new(TlsInfo {
                sni: Some("a.test".into()),
                version: "TLSv1.3",
                cipher: "TLS13_AES_128_GCM_SHA256",
                http2: false,
                client_subject: None,
            })),
            redirect_https: None,
            http2: false,
        };
        // A redirect_https listener answers tokens too: HTTP-01 comes before the redirect.
        let redirecting = Front {
            tls: None,
            redirect_https: Some(301),
            http2: false,
        };
        let path = b"/.well-known/acme-challenge/tok";
        let cases: &[(&Front, &str, &[u8], Option<&str>)] = &[
            (&plain, "GET", path, Some("tok.thumb")),
            (&plain, "POST", path, None),
            (&plain, "GET", b"/.well-known/acme-challenge/other", None),
            (&plain, "GET", b"/", None),
            (&redirecting, "GET", path, Some("tok.thumb")),
            // TLS-ALPN-01 is answered in the handshake; HTTP-01 only over plain HTTP.
            (&tls, "GET", path, None),
        ];
        for (front, method, path, want) in cases {
            let got = match acme_challenge(front, method, path, &open) {
                Some(Decision::Challenge(body)) => Some(body),
                Some(_) => panic!("not a challenge answer"),
                None => None,
            };
            assert_eq!(
                got.as_deref(),
                *want,
                "{method} {:?}",
                String::from_utf8_lossy(path)
            );
        }
    }

    #[test]
    fn the_client_ip_is_the_forwarded_one_from_a_trusted_front() {
        let config = crate::config::parse(Path::new("t.toml"), CONFIG).unwrap();
        let snap = Snapshot::build(&config);
        let xff = [httparse::Header {
            name: "x-forwarded-for",
            value: b"198.51.100.7",
        }];
        let d = decide(
            &snap,
            &Front::default(),
            "192.0.2.1:1".parse().unwrap(),
            &head("GET", "app.test", "/", &xff, Body::None),
        );
        let Decision::Forward(r) = d else {
            panic!("{d:?}")
        };
        assert_eq!(r.client_ip, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(r.request_id, None);
    }

    #[test]
    fn paths_not_in_normal_form() {
        let peer: SocketAddr = "192.0.2.9:1".parse().unwrap();
        let mut buf = String::new();
        let rules = PathRules::default();
        assert_eq!(normal_path(peer, "/a/b", rules, &mut buf), Ok("/a/b"));
        assert_eq!(normal_path(peer, "/a/../b", rules, &mut buf), Ok("/b"));
        assert_eq!(
            normal_path(peer, "/../b", rules, &mut buf),
            Err(NotNormal::Refused)
        );
        assert_eq!(
            NotNormal::Refused.answer(""),
            local(400, "bad request path", true)
        );
    }

    #[test]
    fn request_ids_are_hex_and_differ() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert!(a.hex().iter().all(u8::is_ascii_hexdigit));
        // Least significant digit first, each half.
        assert_eq!(
            hex_str(&RequestId(0xab, 1).hex()),
            format!("ba{}1{}", "0".repeat(14), "0".repeat(15))
        );
    }
}
