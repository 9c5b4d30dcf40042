//! The HTTP/1 front on loopback, without root: real sockets, a small real backend, and raw
//! clients, pinning keep-alive, pipelining, body framing both ways and the local statuses.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use vipgate::proxy::drain::Drain;
use vipgate::proxy::http1::chunked::ChunkedDecoder;
use vipgate::proxy::{listener, Snapshot};

/// A backend that answers by path: `/until-close` without framing, `/chunked` chunked,
/// anything else with Content-Length; every body names the backend and echoes what it got.
async fn backend(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let head_end = loop {
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let lower = head.to_ascii_lowercase();
                let mut body = buf[head_end..].to_vec();
                if let Some(cl) = lower
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                {
                    let n: usize = cl.trim().parse().unwrap();
                    while body.len() < n {
                        let mut chunk = [0u8; 4096];
                        let r = s.read(&mut chunk).await.unwrap();
                        body.extend_from_slice(&chunk[..r]);
                    }
                } else if lower.contains("transfer-encoding: chunked") {
                    let mut d = ChunkedDecoder::new();
                    let mut payload = Vec::new();
                    let mut pending = std::mem::take(&mut body);
                    loop {
                        let p = d.feed(&pending, |b| payload.extend_from_slice(b)).unwrap();
                        if p.done {
                            break;
                        }
                        let mut chunk = [0u8; 4096];
                        let r = s.read(&mut chunk).await.unwrap();
                        pending = chunk[..r].to_vec();
                    }
                    body = payload;
                }
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                let xff = lower
                    .lines()
                    .find_map(|l| l.strip_prefix("x-forwarded-for: "))
                    .unwrap_or("-")
                    .trim()
                    .to_string();
                let text = format!(
                    "backend={name} path={path} body={} xff={xff}\n",
                    String::from_utf8_lossy(&body)
                );
                let resp = match path.as_str() {
                    "/until-close" => format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{text}"),
                    "/chunked" => format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab\r\n\r\n{:x}\r\n{text}\r\n0\r\n\r\n", text.len()),
                    _ => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}", text.len()),
                };
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

async fn start_proxy() -> (SocketAddr, watch::Sender<bool>) {
    let web1 = backend("web1").await;
    let web2 = backend("web2").await;
    let was = backend("was").await;
    // A port that was just free: connecting to it is refused.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let text = format!(
        r#"
[[listener]]
bind = "127.0.0.1:1"
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
[pool.web]
backends = ["{web1}", "{web2}"]
[pool.was]
backends = ["{was}"]
[pool.dead]
backends = ["{dead}"]
"#
    );
    let config = vipgate::config::parse(Path::new("test.toml"), &text).unwrap();
    let l = listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let shared = Arc::new(ArcSwap::from_pointee(Snapshot::build(&config)));
    let (tx, rx) = watch::channel(false);
    tokio::spawn(listener::serve(l, shared, rx, Drain::new()));
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
    let mut body = Vec::new();
    if (100..200).contains(&status) || status == 204 || status == 304 {
        // No body, whatever the head says.
    } else if let Some(cl) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        let n: usize = cl.trim().parse().unwrap();
        while buf.len() < n {
            let mut chunk = [0u8; 4096];
            let r = s.read(&mut chunk).await.unwrap();
            assert!(r > 0);
            buf.extend_from_slice(&chunk[..r]);
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
            let mut chunk = [0u8; 4096];
            let r = s.read(&mut chunk).await.unwrap();
            assert!(r > 0);
            buf.extend_from_slice(&chunk[..r]);
        }
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
}
