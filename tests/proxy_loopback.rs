//! The HTTP/1 front on loopback, without root: real sockets, a small real backend, and raw
//! clients, pinning keep-alive, pipelining, body framing both ways and the local statuses.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure here is the report

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use vipgate::proxy::drain::Drain;
use vipgate::proxy::http1::chunked::ChunkedDecoder;
use vipgate::proxy::{listener, Snapshot};

/// A small real backend. It keeps connections alive and answers by path: `/until-close`
/// without framing (then closes), `/chunked` chunked, `/status/NNN` with that status, anything
/// else with Content-Length. Every body names the backend and its connection number and echoes
/// what it got.
async fn backend(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let conn = conns.fetch_add(1, Ordering::Relaxed) + 1;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some((head, body)) = read_request(&mut s, &mut buf).await {
                    let lower = head.to_ascii_lowercase();
                    let field = |n: &str| {
                        lower
                            .lines()
                            .find_map(|l| l.strip_prefix(n))
                            .unwrap_or("-")
                            .trim()
                            .to_string()
                    };
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    if lower.contains("\r\nupgrade: echo") && lower.contains("connection: upgrade")
                    {
                        let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n").await;
                        let _ = s.write_all(&buf[..]).await;
                        let mut chunk = [0u8; 4096];
                        while let Ok(n) = s.read(&mut chunk).await {
                            if n == 0 || s.write_all(&chunk[..n]).await.is_err() {
                                break;
                            }
                        }
                        return;
                    }
                    let text = format!(
                        "backend={name} conn={conn} path={path} body={} xff={} realip={} proto={}\n",
                        String::from_utf8_lossy(&body),
                        field("x-forwarded-for: "),
                        field("x-real-ip: "),
                        field("x-forwarded-proto: "),
                    );
                    let resp = if path == "/until-close" {
                        format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{text}")
                    } else if path == "/chunked" {
                        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab\r\n\r\n{:x}\r\n{text}\r\n0\r\n\r\n", text.len())
                    } else if path.strip_prefix("/fail-on/") == Some(name) {
                        format!(
                            "HTTP/1.1 500 X\r\nContent-Length: {}\r\n\r\n{text}",
                            text.len()
                        )
                    } else if let Some(code) = path.strip_prefix("/status/") {
                        format!(
                            "HTTP/1.1 {code} X\r\nContent-Length: {}\r\n\r\n{text}",
                            text.len()
                        )
                    } else {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                            text.len()
                        )
                    };
                    if s.write_all(resp.as_bytes()).await.is_err() || path == "/until-close" {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One request from a backend connection: (head, decoded body); `None` at EOF.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_some(s, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end);
    let lower = head.to_ascii_lowercase();
    let body = read_body(s, buf, &lower).await?;
    Some((head, body))
}

/// The body a head (`lower`, lower-cased) announces, by Content-Length or chunked, read from
/// `buf` and then `s`; bytes after it stay in `buf`. `None` if the stream ends first.
async fn read_body(s: &mut TcpStream, buf: &mut Vec<u8>, lower: &str) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    if let Some(cl) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        let n: usize = cl.trim().parse().unwrap();
        while buf.len() < n {
            read_some(s, buf).await?;
        }
        body = buf.drain(..n).collect();
    } else if lower.contains("transfer-encoding: chunked") {
        let mut d = ChunkedDecoder::new();
        loop {
            let p = d.feed(buf, |b| body.extend_from_slice(b)).unwrap();
            buf.drain(..p.consumed);
            if p.done {
                break;
            }
            read_some(s, buf).await?;
        }
    }
    Some(body)
}

async fn read_some(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    let n = s.read(&mut chunk).await.unwrap_or(0);
    buf.extend_from_slice(&chunk[..n]);
    (n > 0).then_some(())
}

/// A port that was just free: connecting to it is refused.
async fn dead_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn start_proxy() -> (SocketAddr, watch::Sender<bool>) {
    let web1 = backend("web1").await;
    let web2 = backend("web2").await;
    let was = backend("was").await;
    let dead = dead_port().await;
    proxy_with(&format!(
        r#"
[[host]]
names = ["blog.example.test"]
[[host.route]]
prefix = "/api"
pool = "was"
[[host.route]]
prefix = "/"
pool = "web"
[[host]]
names = ["dead.example.test"]
[[host.route]]
prefix = "/"
pool = "dead"
retries = 0
[pool.web]
backends = ["{web1}", "{web2}"]
[pool.was]
backends = ["{was}"]
[pool.dead]
backends = ["{dead}"]
"#
    ))
}

/// Start the front on a loopback port with `hosts_and_pools` (a config without listeners).
fn proxy_with(hosts_and_pools: &str) -> (SocketAddr, watch::Sender<bool>) {
    serve_config(
        &format!("[[listener]]\nbind = \"127.0.0.1:1\"\n{hosts_and_pools}"),
        "127.0.0.1:1",
    )
}

/// Serve the listener configured as `bind` in `text` on a free loopback port instead.
fn serve_config(text: &str, bind: &str) -> (SocketAddr, watch::Sender<bool>) {
    let config = vipgate::config::parse(Path::new("test.toml"), text).unwrap();
    let l = listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let shared = Arc::new(ArcSwap::from_pointee(Snapshot::build(&config)));
    let (tx, rx) = watch::channel(false);
    tokio::spawn(listener::serve(
        l,
        bind.parse().unwrap(),
        shared,
        rx,
        Drain::new(),
    ));
    (addr, tx)
}

/// Read one response: (status, head, body). Handles Content-Length, chunked and until-close.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, String, Vec<u8>) {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed before a response head: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end);
    let status: u16 = head[9..12].parse().unwrap();
    let lower = head.to_ascii_lowercase();
    let body;
    if (100..200).contains(&status) || status == 204 || status == 304 {
        // No body, whatever the head says.
        body = Vec::new();
    } else if lower.contains("content-length: ") || lower.contains("transfer-encoding: chunked") {
        body = tokio::time::timeout(Duration::from_secs(5), read_body(s, buf, &lower))
            .await
            .expect("body in time")
            .expect("closed inside the body");
    } else {
        s.read_to_end(buf).await.unwrap();
        body = std::mem::take(buf);
    }
    (status, head, body)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[tokio::test]
async fn routes_by_host_and_prefix_on_one_kept_alive_connection() {
    let (addr, _stop) = start_proxy().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    for path in ["/", "/api/posts", "/", "/apiary"] {
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: Blog.Example.Test:80\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let (status, head, body) = read_response(&mut s, &mut buf).await;
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("Connection: keep-alive"), "{head}");
        seen.push(text(&body).split(' ').next().unwrap().to_string());
    }
    assert_eq!(seen[1], "backend=was");
    assert!(seen[0].starts_with("backend=web") && seen[2].starts_with("backend=web"));
    assert_ne!(seen[0], seen[2], "round robin alternates");
    assert!(
        seen[3].starts_with("backend=web"),
        "/apiary is not under /api"
    );
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (addr, _stop) = start_proxy().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /api/1 HTTP/1.1\r\nHost: blog.example.test\r\n\r\nGET /x/2 HTTP/1.1\r\nHost: blog.example.test\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let (_, _, a) = read_response(&mut s, &mut buf).await;
    let (_, _, b) = read_response(&mut s, &mut buf).await;
    assert!(text(&a).contains("path=/api/1"), "{}", text(&a));
    assert!(text(&b).contains("path=/x/2"), "{}", text(&b));
}

#[tokio::test]
async fn bodies_are_framed_both_ways() {
    let (addr, _stop) = start_proxy().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    s.write_all(b"POST /api HTTP/1.1\r\nHost: blog.example.test\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let (_, _, body) = read_response(&mut s, &mut buf).await;
    assert!(
        text(&body).contains("body=hello xff=127.0.0.1"),
        "{}",
        text(&body)
    );
    s.write_all(b"POST /api HTTP/1.1\r\nHost: blog.example.test\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").await.unwrap();
    let (status, _, _) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 100);
    let (status, _, body) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 200);
    assert!(text(&body).contains("body=abcde"), "{}", text(&body));
    s.write_all(b"GET /chunked HTTP/1.1\r\nHost: blog.example.test\r\n\r\n")
        .await
        .unwrap();
    let (_, head, body) = read_response(&mut s, &mut buf).await;
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    assert!(
        text(&body).starts_with("ab\r\nbackend=web"),
        "{}",
        text(&body)
    );
    // A body that ends by close is re-chunked, so this connection survives it.
    s.write_all(b"GET /until-close HTTP/1.1\r\nHost: blog.example.test\r\n\r\n")
        .await
        .unwrap();
    let (_, head, body) = read_response(&mut s, &mut buf).await;
    assert!(
        head.contains("Transfer-Encoding: chunked") && head.contains("Connection: keep-alive"),
        "{head}"
    );
    assert!(text(&body).contains("path=/until-close"));
    s.write_all(b"GET / HTTP/1.1\r\nHost: blog.example.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s, &mut buf).await.0, 200);
}

#[tokio::test]
async fn http10_client_gets_a_dechunked_body_and_a_close() {
    let (addr, _stop) = start_proxy().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /chunked HTTP/1.0\r\nHost: blog.example.test\r\n\r\n")
        .await
        .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let all = text(&all);
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
    assert!(
        all.contains("Connection: close\r\n\r\nab\r\nbackend=web"),
        "{all}"
    );
    assert!(
        !all.to_ascii_lowercase().contains("transfer-encoding"),
        "{all}"
    );
}

#[tokio::test]
async fn local_statuses() {
    let (addr, _stop) = start_proxy().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    s.write_all(b"GET / HTTP/1.1\r\nHost: nobody.example.test\r\n\r\n")
        .await
        .unwrap();
    let (status, head, _) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 404);
    assert!(
        head.contains("keep-alive"),
        "a 404 keeps the connection: {head}"
    );
    s.write_all(b"GET / HTTP/1.1\r\nHost: dead.example.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s, &mut buf).await.0, 502);
    s.write_all(b"GET / HTTP/1.1\r\nHost: blog.example.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut s, &mut buf).await.0,
        200,
        "still serving after a 502"
    );

    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GARBAGE\r\n\r\n").await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let all = text(&all);
    assert!(
        all.starts_with("HTTP/1.1 400 Bad Request\r\n") && all.contains("Connection: close"),
        "{all}"
    );

    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: blog.example.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n").await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    assert!(text(&all).starts_with("HTTP/1.1 400 "), "{}", text(&all));

    // A head that passes but a chunked body the decoder refuses: 400 and close, not a bare close.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: blog.example.test\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nx\r\n0\r\n\r\n").await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let all = text(&all);
    assert!(
        all.starts_with("HTTP/1.1 400 ") && all.contains("Connection: close"),
        "{all}"
    );
}

async fn get(addr: SocketAddr, host: &str, path: &str, extra: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let (status, _, body) = read_response(&mut s, &mut buf).await;
    (status, text(&body))
}

#[tokio::test]
async fn backend_connections_are_reused() {
    let (addr, _stop) = start_proxy().await;
    for _ in 0..6 {
        let (status, body) = get(addr, "blog.example.test", "/api", "").await;
        assert_eq!(status, 200);
        // Six requests from six client connections share the first backend connection.
        assert!(body.contains("conn=1 "), "{body}");
    }
    // A response that ends by close is never reused: the next request opens a new one.
    assert!(get(addr, "blog.example.test", "/until-close", "")
        .await
        .1
        .contains("backend=web"));
}

#[tokio::test]
async fn connect_failures_are_retried_on_another_backend_and_ejected() {
    let live = backend("live").await;
    let dead = dead_port().await;
    let (addr, _stop) = proxy_with(&format!(
        r#"
[[host]]
names = ["a.test"]
[[host.route]]
prefix = "/"
pool = "p"
[pool.p]
backends = ["{dead}", "{live}"]
[pool.p.outlier]
consecutive_failures = 1
"#
    ));
    for i in 0..20 {
        let (status, body) = get(addr, "a.test", &format!("/{i}"), "").await;
        assert_eq!(status, 200, "request {i}: {body}");
        assert!(body.contains("backend=live"));
    }
}

#[tokio::test]
async fn no_healthy_backend_is_a_quick_503() {
    let dead = dead_port().await;
    let (addr, _stop) = proxy_with(&format!(
        r#"
[[host]]
names = ["a.test"]
[[host.route]]
prefix = "/"
pool = "p"
[pool.p]
backends = ["{dead}"]
[pool.p.health]
type = "tcp"
interval_ms = 100
timeout_ms = 50
unhealthy_threshold = 1
"#
    ));
    // Until the first check lands the backend counts as healthy and connecting fails (502).
    let mut status = 0;
    for _ in 0..50 {
        status = get(addr, "a.test", "/", "").await.0;
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 503);
}

#[tokio::test]
async fn a_5xx_is_retried_only_when_configured_and_safe() {
    let a = backend("a").await;
    let b = backend("b").await;
    let (addr, _stop) = proxy_with(&format!(
        r#"
[[host]]
names = ["retry.test"]
[[host.route]]
prefix = "/"
pool = "p"
retries = 1
retry_on = ["5xx"]
[[host]]
names = ["plain.test"]
[[host.route]]
prefix = "/"
pool = "p"
[pool.p]
backends = ["{a}", "{b}"]
[pool.p.outlier]
consecutive_failures = 0
"#
    ));
    // Backend "a" fails /fail-on/a, "b" serves it: with the retry every request succeeds.
    for _ in 0..6 {
        let (status, body) = get(addr, "retry.test", "/fail-on/a", "").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("backend=b"));
    }
    // Without retry_on = 5xx round robin sends every other request to "a", whose 500 is
    // relayed as is.
    let statuses: Vec<u16> =
        futures_util::future::join_all((0..4).map(|_| get(addr, "plain.test", "/fail-on/a", "")))
            .await
            .into_iter()
            .map(|r| r.0)
            .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 500).count(),
        2,
        "{statuses:?}"
    );
    // Both answer 500 here: the retry is made and the second 500 relayed.
    assert_eq!(get(addr, "retry.test", "/status/500", "").await.0, 500);
    // A request with a body is never retried after it was sent.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /status/502 HTTP/1.1\r\nHost: retry.test\r\nContent-Length: 1\r\n\r\nx")
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut s, &mut buf).await.0, 502);
}

#[tokio::test]
async fn weighted_split_follows_the_weights() {
    let stable = backend("stable").await;
    let canary = backend("canary").await;
    let (addr, _stop) = proxy_with(&format!(
        r#"
[[host]]
names = ["a.test"]
[[host.route]]
prefix = "/"
split = [{{ pool = "stable", weight = 90 }}, {{ pool = "canary", weight = 10 }}]
[pool.stable]
backends = ["{stable}"]
[pool.canary]
backends = ["{canary}"]
"#
    ));
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    let mut canaries = 0;
    for _ in 0..1000 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .unwrap();
        let (_, _, body) = read_response(&mut s, &mut buf).await;
        canaries += usize::from(text(&body).contains("backend=canary"));
    }
    assert_eq!(canaries, 100, "exactly 10% over whole cycles");
}

#[tokio::test]
async fn access_lists_limits_and_forwarding_headers() {
    let be = backend("be").await;
    let (addr, _stop) = proxy_with(&format!(
        r#"
[proxy]
trusted_proxies = ["127.0.0.1"]
max_request_line = 200
[[host]]
names = ["a.test"]
deny = ["192.0.2.66"]
[[host.route]]
prefix = "/admin"
pool = "p"
allow = ["192.0.2.0/24"]
[[host.route]]
prefix = "/"
pool = "p"
max_body_bytes = 4
[pool.p]
backends = ["{be}"]
"#
    ));
    // We are 127.0.0.1, a trusted proxy: the client is the last untrusted X-Forwarded-For entry.
    let (status, body) = get(
        addr,
        "a.test",
        "/",
        "X-Forwarded-For: 203.0.113.9, 192.0.2.7\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("xff=203.0.113.9, 192.0.2.7, 127.0.0.1 realip=192.0.2.7 proto=http"),
        "{body}"
    );
    assert_eq!(
        get(addr, "a.test", "/", "X-Forwarded-For: 192.0.2.66\r\n")
            .await
            .0,
        403
    );
    assert_eq!(
        get(
            addr,
            "a.test",
            "/admin",
            "X-Forwarded-For: 198.51.100.1\r\n"
        )
        .await
        .0,
        403
    );
    assert_eq!(
        get(addr, "a.test", "/admin", "X-Forwarded-For: 192.0.2.1\r\n")
            .await
            .0,
        200
    );
    assert_eq!(
        get(addr, "a.test", &format!("/{}", "x".repeat(300)), "")
            .await
            .0,
        414
    );
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut s, &mut buf).await.0, 413);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut s, &mut buf).await.0, 413);
}

#[tokio::test]
async fn upgrade_becomes_a_tunnel_both_ways() {
    let (addr, _stop) = start_proxy().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The first frame rides in the same write as the head, as clients are allowed to do.
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: blog.example.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nping1")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (status, head, _) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 101, "{head}");
    assert!(
        head.contains("Upgrade: echo") && head.contains("Connection: upgrade"),
        "{head}"
    );
    while buf.len() < 5 {
        let mut chunk = [0u8; 64];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(&buf[..5], b"ping1");
    s.write_all(b"ping2").await.unwrap();
    let mut echo = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping2");
    // Without Connection: upgrade the Upgrade field is not forwarded and no tunnel is made.
    let (status, body) = get(addr, "blog.example.test", "/ws", "Upgrade: echo\r\n").await;
    assert_eq!(status, 200, "{body}");
}

/// A TCP backend that expects a PROXY v2 header, answers with the addresses it names, then
/// echoes every byte until the client half-closes, then closes.
async fn proxy_v2_echo_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = [0u8; 28];
                if s.read_exact(&mut head).await.is_err() {
                    return;
                }
                assert_eq!(&head[..12], b"\r\n\r\n\0\r\nQUIT\n", "v2 signature");
                assert_eq!(
                    &head[12..16],
                    &[0x21, 0x11, 0, 12],
                    "v2 PROXY, TCP over IPv4, 12 bytes"
                );
                let src = format!(
                    "{}.{}.{}.{}:{}",
                    head[16],
                    head[17],
                    head[18],
                    head[19],
                    u16::from_be_bytes([head[24], head[25]])
                );
                let dst = format!(
                    "{}.{}.{}.{}:{}",
                    head[20],
                    head[21],
                    head[22],
                    head[23],
                    u16::from_be_bytes([head[26], head[27]])
                );
                let hello = format!("src={src} dst={dst}\n");
                s.write_all(hello.as_bytes()).await.unwrap();
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn tcp_listener_forwards_streams_with_proxy_protocol_both_ways() {
    let be = proxy_v2_echo_backend().await;
    let dead = dead_port().await;
    let config_text = format!(
        r#"
[proxy]
trusted_proxies = ["127.0.0.1"]
[[listener]]
bind = "127.0.0.1:2"
protocol = "tcp"
pool = "echo"
send_proxy_protocol = "v2"
accept_proxy_protocol = true
[pool.echo]
backends = ["{dead}", "{be}"]
"#
    );
    let (addr, _stop) = serve_config(&config_text, "127.0.0.1:2");

    for _ in 0..2 {
        // Twice: one of the two starts on the dead backend and is retried on the live one.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PROXY TCP4 203.0.113.7 192.0.2.200 5555 80\r\nfirst")
            .await
            .unwrap();
        let mut hello = vec![0u8; "src=203.0.113.7:5555 dst=192.0.2.200:80\n".len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut hello))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(text(&hello), "src=203.0.113.7:5555 dst=192.0.2.200:80\n");
        // 8 MiB through splice both ways, then a half-close ends the echo.
        let payload: Vec<u8> = (0..8 * 1024 * 1024u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let (mut r, mut w) = s.into_split();
        let send = payload.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&send).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), 5 + payload.len());
        assert_eq!(&got[..5], b"first");
        assert!(got[5..] == payload[..], "echo differs");
    }

    // Without the PROXY header the connection is refused (closed at once).
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
}

/// The head limit starts with the head's first byte: a keep-alive client that idles longer than
/// `head_timeout_ms` (but less than the idle limit) and then sends its next head in two
/// segments is answered, while a head that stalls past the limit still gets 408.
#[tokio::test]
async fn head_limit_starts_when_the_head_does_not_when_the_idle_wait_does() {
    let web = backend("web").await;
    let (addr, _stop) = proxy_with(&format!(
        r#"
[proxy]
head_timeout_ms = 300
client_idle_timeout_ms = 5000
[[host]]
names = ["*"]
[[host.route]]
prefix = "/"
pool = "web"
[pool.web]
backends = ["{web}"]
"#
    ));
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s, &mut buf).await.0, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.write_all(b"GET /2 HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"Host: a\r\n\r\n").await.unwrap();
    let (status, head, _) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 200, "{head}");
    s.write_all(b"GET /3 HTTP/1.1\r\n").await.unwrap();
    let (status, _, _) = read_response(&mut s, &mut buf).await;
    assert_eq!(status, 408, "a head that stalls past the limit");
}

#[tokio::test]
async fn max_connections_pauses_accepting_until_one_closes() {
    let web = backend("web").await;
    // A bind of its own: the limit is kept per configured listener address.
    let bind = "127.0.0.1:2";
    let (addr, _stop) = serve_config(
        &format!(
            "[[listener]]\nbind = \"{bind}\"\nmax_connections = 2\n[[host]]\nnames = [\"a.test\"]\n[[host.route]]\nprefix = \"/\"\npool = \"web\"\n[pool.web]\nbackends = [\"{web}\"]\n"
        ),
        bind,
    );
    let request = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        assert_eq!(read_response(&mut s, &mut Vec::new()).await.0, 200);
        open.push(s);
    }
    // The kernel completes the third handshake, but vipgate does not accept it yet.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(request).await.unwrap();
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), third.read(&mut byte))
            .await
            .is_err(),
        "a third connection was served while two were open"
    );
    let limit = listener::limit(bind.parse().unwrap());
    assert_eq!(limit.open(), (2, 2));
    assert!(limit.reached.load(Ordering::Relaxed) >= 1);
    drop(open.pop());
    assert_eq!(read_response(&mut third, &mut Vec::new()).await.0, 200);
}
