//! TLS to backends on loopback: a real rustls server that requires a client certificate signed
//! by a test CA (rcgen), and the proxy in front of it with `[pool.NAME.tls]` set right and set
//! wrong. Pins mutual TLS, keep-alive reuse of TLS connections, health checks over TLS, tunnels
//! over TLS, and each handshake failure as a 502 with its reason counted.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure here is the report

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use vipgate::proxy::drain::Drain;
use vipgate::proxy::upstream::stream::TlsFailure;
use vipgate::proxy::{listener, Shared, Snapshot};
use vipgate::wire::proxy_protocol;

/// The test PKI: a CA, the backend's certificate (for `was.internal` and 127.0.0.1), a client
/// certificate, and a second CA that signed nothing here; PEM files in a temporary directory.
struct Pki {
    dir: PathBuf,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivatePkcs8KeyDer<'static>,
    ca_der: CertificateDer<'static>,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap(), key)
}

fn leaf(
    names: &[&str],
    client: bool,
    issuer: &Issuer<'_, KeyPair>,
) -> (rcgen::Certificate, KeyPair) {
    let mut p = if client {
        CertificateParams::new(Vec::<String>::new()).unwrap()
    } else {
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    };
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0]);
    p.distinguished_name = dn;
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().unwrap();
    (p.signed_by(&key, issuer).unwrap(), key)
}

fn pki(tag: &str) -> Pki {
    let dir =
        std::env::temp_dir().join(format!("vipgate-upstream-tls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ca_cert, ca_key) = ca("vipgate test CA");
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let (server, server_key) = leaf(&["was.internal", "127.0.0.1"], false, &issuer);
    let (client, client_key) = leaf(&["vipgate-client"], true, &issuer);
    let (other_ca, _) = ca("another CA");
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write("ca.pem", &ca_pem);
    write("other-ca.pem", &other_ca.pem());
    write("client.pem", &format!("{}{}", client.pem(), ca_pem));
    write("client.key", &client_key.serialize_pem());
    Pki {
        server_chain: vec![server.der().clone(), ca_cert.der().clone()],
        server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()),
        ca_der: ca_cert.der().clone(),
        dir,
    }
}

/// A TLS backend that requires a client certificate from the CA. Keeps connections alive;
/// answers `conn=N req=M path=P client=yes|no`, an `Upgrade: echo` with a 101 and an echo.
/// Counts health checks (User-Agent vipgate-health) in `health`.
async fn tls_backend(pki: &Pki, health: Arc<AtomicUsize>) -> SocketAddr {
    let acceptor = acceptor(pki);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (acceptor, conns, health) = (acceptor.clone(), conns.clone(), health.clone());
            tokio::spawn(async move {
                // A refused handshake (no or a bad client certificate) just ends here.
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let conn = conns.fetch_add(1, Ordering::Relaxed) + 1;
                let client = if s.get_ref().1.peer_certificates().is_some() {
                    "yes"
                } else {
                    "no"
                };
                let mut buf = Vec::new();
                for req in 1.. {
                    let Some(head) = read_head(&mut s, &mut buf).await else {
                        return;
                    };
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    let lower = head.to_ascii_lowercase();
                    if lower.contains("user-agent: vipgate-health") {
                        health.fetch_add(1, Ordering::Relaxed);
                    }
                    if lower.contains("\r\nupgrade: echo") {
                        let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n").await;
                        let _ = s.write_all(&buf).await;
                        let _ = s.flush().await;
                        let mut chunk = [0u8; 1024];
                        while let Ok(n) = s.read(&mut chunk).await {
                            if n == 0
                                || s.write_all(&chunk[..n]).await.is_err()
                                || s.flush().await.is_err()
                            {
                                break;
                            }
                        }
                        return;
                    }
                    let body = format!("conn={conn} req={req} path={path} client={client}\n");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() || s.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The backends' TLS side: their certificate, and a client certificate from the CA required.
fn acceptor(pki: &Pki) -> TlsAcceptor {
    let provider = vipgate::tls::provider();
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            pki.server_chain.clone(),
            PrivateKeyDer::Pkcs8(pki.server_key.clone_key()),
        )
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// A request head (requests here have no body); `None` at EOF or on an error.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).to_string();
            buf.drain(..i + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The proxy on a loopback port with `pools` (TOML for `[pool.was]` and more) behind the host
/// `was.example.test`; the config file is taken to live in the PKI's directory.
fn proxy(dir: &Path, pools: &str) -> (SocketAddr, Shared, watch::Sender<bool>) {
    let text = format!(
        "[[listener]]\nbind = \"127.0.0.1:1\"\n[[host]]\nnames = [\"was.example.test\"]\n[[host.route]]\nprefix = \"/\"\npool = \"was\"\nretries = 0\n{pools}"
    );
    let config = vipgate::config::parse(&dir.join("vipgate.toml"), &text).unwrap();
    let l = listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let shared: Shared = Arc::new(ArcSwap::from_pointee(Snapshot::build(&config)));
    let (tx, rx) = watch::channel(false);
    tokio::spawn(listener::serve(
        l,
        "127.0.0.1:1".parse().unwrap(),
        shared.clone(),
        rx,
        Drain::new(),
    ));
    (addr, shared, tx)
}

/// One request on `s`; (status, body). Responses here carry Content-Length.
async fn request<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, path: &str) -> (u16, String) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: was.example.test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(s, &mut buf))
        .await
        .expect("a response in time")
        .expect("a response head");
    let status: u16 = head[9..12].parse().unwrap();
    let len: usize = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < len {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed inside the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    (status, String::from_utf8_lossy(&buf[..len]).to_string())
}

fn failures(shared: &Shared, reason: TlsFailure) -> u64 {
    shared
        .load()
        .pools
        .iter()
        .flat_map(|p| p.backends())
        .map(|b| b.tls_failures(reason))
        .sum()
}

fn handshakes(shared: &Shared) -> u64 {
    shared
        .load()
        .pools
        .iter()
        .flat_map(|p| p.backends())
        .map(|b| b.tls_handshakes())
        .sum()
}

#[tokio::test]
async fn mutual_tls_requests_reuse_one_backend_connection() {
    let pki = pki("mtls");
    let backend = tls_backend(&pki, Arc::default()).await;
    let (addr, shared, _stop) = proxy(
        &pki.dir,
        &format!("[pool.was]\nbackends = [\"{backend}\"]\n[pool.was.tls]\nca = \"ca.pem\"\nserver_name = \"was.internal\"\ncert = \"client.pem\"\nkey = \"client.key\"\nalpn = [\"http/1.1\"]\n"),
    );
    let mut c = TcpStream::connect(addr).await.unwrap();
    for req in 1..=3 {
        let (status, body) = request(&mut c, "/a").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, format!("conn=1 req={req} path=/a client=yes\n"));
    }
    // Another client connection takes the same pooled TLS connection.
    let mut d = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        request(&mut d, "/b").await.1,
        "conn=1 req=4 path=/b client=yes\n"
    );
    assert_eq!(handshakes(&shared), 1);
}

#[tokio::test]
async fn without_server_name_the_backend_ip_is_verified() {
    let pki = pki("ip");
    let backend = tls_backend(&pki, Arc::default()).await;
    let (addr, _shared, _stop) = proxy(
        &pki.dir,
        &format!("[pool.was]\nbackends = [\"{backend}\"]\n[pool.was.tls]\nca = \"ca.pem\"\ncert = \"client.pem\"\nkey = \"client.key\"\n"),
    );
    let mut c = TcpStream::connect(addr).await.unwrap();
    assert_eq!(request(&mut c, "/").await.0, 200);
}

#[tokio::test]
async fn handshake_failures_are_502_with_their_reason_counted() {
    let pki = pki("fail");
    let backend = tls_backend(&pki, Arc::default()).await;
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_addr = plain.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = plain.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    let cases: [(String, TlsFailure); 5] = [
        // No client certificate: the backend's TLS 1.3 alert arrives on the first read.
        (
            format!("backends = [\"{backend}\"]\n[pool.was.tls]\nca = \"ca.pem\"\nserver_name = \"was.internal\"\n"),
            TlsFailure::ClientCertRequired,
        ),
        (
            format!("backends = [\"{backend}\"]\n[pool.was.tls]\nca = \"ca.pem\"\nserver_name = \"other.internal\"\ncert = \"client.pem\"\nkey = \"client.key\"\n"),
            TlsFailure::NameMismatch,
        ),
        (
            format!("backends = [\"{backend}\"]\n[pool.was.tls]\nca = \"other-ca.pem\"\nserver_name = \"was.internal\"\ncert = \"client.pem\"\nkey = \"client.key\"\n"),
            TlsFailure::UnknownCa,
        ),
        (
            format!("backends = [\"{plain_addr}\"]\n[pool.was.tls]\nca = \"ca.pem\"\n"),
            TlsFailure::Protocol,
        ),
        (
            format!("backends = [\"{backend}\"]\n[pool.was.tls]\ninsecure_skip_verify = true\nserver_name = \"was.internal\"\n"),
            TlsFailure::ClientCertRequired,
        ),
    ];
    for (pool, reason) in cases {
        let (addr, shared, _stop) = proxy(&pki.dir, &format!("[pool.was]\n{pool}"));
        for _ in 0..2 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let (status, body) = request(&mut c, "/").await;
            assert_eq!(status, 502, "{pool}: {body}");
        }
        assert_eq!(failures(&shared, reason), 2, "{pool}: {reason:?}");
        let other: u64 = TlsFailure::ALL
            .iter()
            .filter(|r| **r != reason)
            .map(|r| failures(&shared, *r))
            .sum();
        assert_eq!(other, 0, "{pool}: only {reason:?}");
        assert_eq!(
            handshakes(&shared),
            if reason == TlsFailure::ClientCertRequired {
                2
            } else {
                0
            }
        );
    }
    // insecure_skip_verify with the client certificate: any server certificate is taken.
    let (addr, _shared, _stop) = proxy(
        &pki.dir,
        &format!("[pool.was]\nbackends = [\"{backend}\"]\n[pool.was.tls]\ninsecure_skip_verify = true\nserver_name = \"not-the-name.internal\"\ncert = \"client.pem\"\nkey = \"client.key\"\n"),
    );
    let mut c = TcpStream::connect(addr).await.unwrap();
    assert_eq!(request(&mut c, "/").await.0, 200);
}

#[tokio::test]
async fn a_failing_handshake_ejects_the_backend_like_a_refused_connect_and_it_stays_the_last_resort(
) {
    let pki = pki("eject");
    let backend = tls_backend(&pki, Arc::default()).await;
    let (addr, shared, _stop) = proxy(
        &pki.dir,
        &format!("[pool.was]\nbackends = [\"{backend}\"]\n[pool.was.tls]\nca = \"other-ca.pem\"\n[pool.was.outlier]\nconsecutive_failures = 2\nmax_ejection_percent = 100\n"),
    );
    for _ in 0..2 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert_eq!(request(&mut c, "/").await.0, 502);
    }
    let ejections: u32 = shared
        .load()
        .pools
        .iter()
        .flat_map(|p| p.backends())
        .map(|b| b.ejections())
        .sum();
    assert_eq!(ejections, 1, "ejected after two failed handshakes");
    // Alone in its pool, the ejected backend is still the last resort: tried, not skipped.
    let mut c = TcpStream::connect(addr).await.unwrap();
    assert_eq!(request(&mut c, "/").await.0, 502);
    assert_eq!(failures(&shared, TlsFailure::UnknownCa), 3);
}

#[tokio::test]
async fn health_checks_and_tunnels_go_over_tls() {
    let pki = pki("health");
    let health = Arc::new(AtomicUsize::new(0));
    let backend = tls_backend(&pki, health.clone()).await;
    let (addr, _shared, _stop) = proxy(
        &pki.dir,
        &format!("[pool.was]\nbackends = [\"{backend}\"]\n[pool.was.tls]\nca = \"ca.pem\"\nserver_name = \"was.internal\"\ncert = \"client.pem\"\nkey = \"client.key\"\n[pool.was.health]\ntype = \"http\"\npath = \"/healthz\"\ninterval_ms = 100\ntimeout_ms = 100\n"),
    );
    tokio::time::timeout(Duration::from_secs(5), async {
        while health.load(Ordering::Relaxed) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("two health checks over mutual TLS within 5 s");
    let mut c = TcpStream::connect(addr).await.unwrap();
    assert_eq!(request(&mut c, "/").await.0, 200);

    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: was.example.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nping1")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let head = read_head(&mut s, &mut buf).await.expect("101");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
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
}

#[tokio::test]
async fn an_http_health_check_without_the_client_certificate_fails() {
    let pki = pki("health-fail");
    let health = Arc::new(AtomicUsize::new(0));
    let backend = tls_backend(&pki, health.clone()).await;
    let (addr, shared, _stop) = proxy(
        &pki.dir,
        &format!("[pool.was]\nbackends = [\"{backend}\"]\n[pool.was.tls]\nca = \"ca.pem\"\nserver_name = \"was.internal\"\n[pool.was.health]\ntype = \"http\"\npath = \"/healthz\"\ninterval_ms = 100\ntimeout_ms = 100\nunhealthy_threshold = 1\n"),
    );
    tokio::time::timeout(Duration::from_secs(5), async {
        while shared
            .load()
            .pools
            .iter()
            .flat_map(|p| p.backends())
            .any(|b| b.is_healthy())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("marked unhealthy within 5 s");
    assert_eq!(health.load(Ordering::Relaxed), 0, "no check got through");
    let mut c = TcpStream::connect(addr).await.unwrap();
    assert_eq!(request(&mut c, "/").await.0, 503);
}

/// A TCP backend that reads a PROXY v2 header in clear, then a TLS handshake that requires the
/// client certificate, says `proxied=SRC client=yes` over TLS and echoes until the client ends.
async fn proxy_then_tls_echo_backend(pki: &Pki) -> SocketAddr {
    let acceptor = acceptor(pki);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 28];
                if tcp.read_exact(&mut head).await.is_err() {
                    return;
                }
                let Ok(Some(h)) = proxy_protocol::parse(&head) else {
                    return;
                };
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let client = s.get_ref().1.peer_certificates().is_some();
                let Some((source, _)) = h.addrs else {
                    return;
                };
                let hello = format!("proxied={source} client={client}\n");
                if s.write_all(hello.as_bytes()).await.is_err() || s.flush().await.is_err() {
                    return;
                }
                let mut chunk = [0u8; 4096];
                while let Ok(n) = s.read(&mut chunk).await {
                    if n == 0 || s.write_all(&chunk[..n]).await.is_err() || s.flush().await.is_err()
                    {
                        break;
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_tcp_listener_originates_tls_after_the_proxy_header() {
    let pki = pki("l4");
    let backend = proxy_then_tls_echo_backend(&pki).await;
    let text = format!(
        "[[listener]]\nbind = \"127.0.0.1:2\"\nprotocol = \"tcp\"\npool = \"db\"\nsend_proxy_protocol = \"v2\"\n[pool.db]\nbackends = [\"{backend}\"]\n[pool.db.tls]\nca = \"ca.pem\"\nserver_name = \"was.internal\"\ncert = \"client.pem\"\nkey = \"client.key\"\n"
    );
    let config = vipgate::config::parse(&pki.dir.join("vipgate.toml"), &text).unwrap();
    let l = listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let shared: Shared = Arc::new(ArcSwap::from_pointee(Snapshot::build(&config)));
    let (_stop, rx) = watch::channel(false);
    tokio::spawn(listener::serve(
        l,
        "127.0.0.1:2".parse().unwrap(),
        shared.clone(),
        rx,
        Drain::new(),
    ));
    let mut c = TcpStream::connect(addr).await.unwrap();
    let me = c.local_addr().unwrap();
    c.write_all(b"ping").await.unwrap();
    let want = format!("proxied={me} client=true\nping");
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut got))
        .await
        .expect("in time")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got), want);
    // The client's half-close ends the echo, and the backend's close reaches the client.
    c.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .unwrap();
    assert!(rest.is_empty());
    assert_eq!(handshakes(&shared), 1);

    // Without the client certificate the backend refuses: the client's connection is closed.
    let text = text.replace("cert = \"client.pem\"\nkey = \"client.key\"\n", "");
    let config = vipgate::config::parse(&pki.dir.join("vipgate.toml"), &text).unwrap();
    shared.store(Arc::new(Snapshot::build(&config)));
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"ping").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
        .await
        .expect("closed in time");
    assert!(rest.is_empty(), "{rest:?}");
}
