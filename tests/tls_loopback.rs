//! `https` listeners on loopback, without root: certificates made here with rcgen (a CA and
//! leaves signed by it), a rustls client, a small real backend. Pins the certificate chosen by
//! SNI, the 421 on an SNI/Host mismatch, X-Forwarded-Proto, keep-alive and pipelining over
//! TLS, client certificates and the subjects a host admits, session resumption, the minimum
//! version, the redirect of an http listener, and a certificate swapped when its files change.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure here is the report

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use vipgate::proxy::drain::Drain;
use vipgate::proxy::{listener, Shared, Snapshot};

/// A backend that answers every request with what it saw: path, Host, X-Forwarded-Proto.
/// `/big` answers with 100 kB, to cross several TLS records.
async fn backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    buf.drain(..end + 4);
                    let field = |n: &str| {
                        head.lines()
                            .find_map(|l| l.strip_prefix(n))
                            .unwrap_or("-")
                            .trim()
                            .to_string()
                    };
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    let mut body = format!(
                        "path={path} host={} proto={}\n",
                        field("host: "),
                        field("x-forwarded-proto: ")
                    );
                    if path == "/big" {
                        body.push_str(&"x".repeat(100_000));
                        body.push('\n');
                    }
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A CA and leaves it signed, as PEM files in a temporary directory.
struct Pki {
    dir: PathBuf,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_der: CertificateDer<'static>,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir =
            std::env::temp_dir().join(format!("vipgate-tlsloop-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "loopback test CA");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        let ca_der = cert.der().clone();
        Pki {
            dir,
            ca: rcgen::Issuer::new(p, key),
            ca_der,
        }
    }

    /// `NAME.pem` / `NAME.key`: a server certificate for `names` (CN = the first), or with
    /// `client` a client certificate with CN = `names[0]`.
    fn leaf(
        &self,
        file: &str,
        names: &[&str],
        client: bool,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let sans: Vec<String> = if client {
            Vec::new()
        } else {
            names.iter().map(|s| s.to_string()).collect()
        };
        let mut p = rcgen::CertificateParams::new(sans).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        p.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.ca).unwrap();
        // Written elsewhere and renamed over the old files, as certbot and cert-manager do.
        let tmp = self.dir.join(format!("{file}.tmp"));
        std::fs::write(&tmp, cert.pem()).unwrap();
        std::fs::rename(&tmp, self.dir.join(format!("{file}.pem"))).unwrap();
        std::fs::write(&tmp, key.serialize_pem()).unwrap();
        std::fs::rename(&tmp, self.dir.join(format!("{file}.key"))).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
    }

    fn client(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let b = ClientConfig::builder_with_provider(vipgate::tls::provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut cfg = match auth {
            None => b.with_no_client_auth(),
            Some((chain, key)) => b.with_client_auth_cert(chain, key).unwrap(),
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConnector::from(Arc::new(cfg))
    }
}

const ALL: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Serve the listener configured as `bind` in `text` (read as if from the PKI's directory) on
/// a free loopback port.
fn serve(pki: &Pki, text: &str, bind: &str) -> (SocketAddr, Shared, watch::Sender<bool>) {
    let config = vipgate::config::parse(&pki.dir.join("test.toml"), text).unwrap();
    let l = listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let shared: Shared = Arc::new(ArcSwap::from_pointee(Snapshot::build(&config)));
    let (tx, rx) = watch::channel(false);
    tokio::spawn(listener::serve(
        l,
        bind.parse().unwrap(),
        shared.clone(),
        rx,
        Drain::new(),
    ));
    (addr, shared, tx)
}

async fn connect(
    c: &TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), c.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// The CN of the certificate the server presented.
fn presented_cn(s: &tokio_rustls::client::TlsStream<TcpStream>) -> String {
    let der = &s.get_ref().1.peer_certificates().unwrap()[0];
    vipgate::tls::subject_of(der).unwrap()
}

/// Send `req` and read one Content-Length response: (status, head, body).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    req: &str,
) -> (u16, String, String) {
    if !req.is_empty() {
        s.write_all(req.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
    }
    read_response(s, buf).await
}

async fn read_response<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> (u16, String, String) {
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end + 4]).to_string();
                let len: usize = head
                    .to_ascii_lowercase()
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buf.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                    buf.drain(..end + 4 + len);
                    return (head[9..12].parse().unwrap(), head, body);
                }
            }
            let mut chunk = [0u8; 16384];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "closed before a whole response: {:?}",
                String::from_utf8_lossy(buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("response in time")
}

fn config(backend: SocketAddr, listener_keys: &str) -> String {
    format!(
        r#"
[[listener]]
bind = "127.0.0.1:1"
protocol = "https"
{listener_keys}

[[listener]]
bind = "127.0.0.1:2"
redirect_https = 308

[[certificate]]
cert = "a.pem"
key = "a.key"

[[certificate]]
cert = "apps.pem"
key = "apps.key"

[[certificate]]
cert = "fallback.pem"
key = "fallback.key"
default = true

[[host]]
names = ["a.test", "*.apps.test", "fallback.test"]
[[host.route]]
prefix = "/"
pool = "web"

[[host]]
names = ["secure.apps.test"]
allow_client_subjects = ["CN=client one"]
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["{backend}"]
"#
    )
}

fn certs(pki: &Pki) {
    pki.leaf("a", &["a.test"], false);
    pki.leaf("apps", &["*.apps.test"], false);
    pki.leaf("fallback", &["fallback.test", "127.0.0.1"], false);
}

#[tokio::test]
async fn sni_chooses_the_certificate_and_host_must_agree() {
    let pki = Pki::new("sni");
    certs(&pki);
    let (addr, _shared, _stop) = serve(&pki, &config(backend().await, ""), "127.0.0.1:1");
    let client = pki.client(ALL, None);
    for (sni, cn) in [
        ("a.test", "CN=a.test"),
        ("A.TEST", "CN=a.test"),
        ("x.apps.test", "CN=*.apps.test"),
        // An IP address as the server name: the client sends no SNI, so the default.
        ("127.0.0.1", "CN=fallback.test"),
    ] {
        // The client verifies the chain against the name, so a wrong choice fails here.
        let s = connect(&client, addr, sni).await.unwrap();
        assert_eq!(presented_cn(&s), cn, "{sni}");
    }
    // Unknown SNI gets the default too, which does not name it: the client refuses.
    assert!(connect(&client, addr, "unknown.test").await.is_err());
    // Without SNI there is nothing to compare the Host with (as nginx does).
    let mut s = connect(&client, addr, "127.0.0.1").await.unwrap();
    let mut buf = Vec::new();
    let (status, _, _) = exchange(&mut s, &mut buf, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    assert_eq!(status, 200);

    let mut s = connect(&client, addr, "x.apps.test").await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (status, _, body) = exchange(
        &mut s,
        &mut buf,
        "GET /p?q=1 HTTP/1.1\r\nHost: X.apps.test:443\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, "path=/p?q=1 host=x.apps.test:443 proto=https\n");
    // Host names another certificate's name: 421, and the connection stays usable.
    let (status, head, _) =
        exchange(&mut s, &mut buf, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    assert_eq!(status, 421, "{head}");
    // Keep-alive: pipelined requests and a response of many TLS records, in order.
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: x.apps.test\r\n\r\nGET /big HTTP/1.1\r\nHost: x.apps.test\r\n\r\nGET /3 HTTP/1.1\r\nHost: x.apps.test\r\n\r\n").await.unwrap();
    for want in ["path=/1 ", "path=/big ", "path=/3 "] {
        let (status, _, body) = read_response(&mut s, &mut buf).await;
        assert_eq!(status, 200);
        assert!(
            body.starts_with(want),
            "{want}: {}",
            &body[..40.min(body.len())]
        );
    }
    let (_, _, big) = exchange(
        &mut s,
        &mut buf,
        "GET /big HTTP/1.1\r\nHost: x.apps.test\r\n\r\n",
    )
    .await;
    assert_eq!(
        big.len(),
        "path=/big host=x.apps.test proto=https\n".len() + 100_001
    );
    assert!(big.ends_with("x\n"));
}

#[tokio::test]
async fn refuse_without_a_matching_certificate_and_resume_sessions() {
    let pki = Pki::new("refuse");
    certs(&pki);
    let (addr, _shared, _stop) = serve(
        &pki,
        &config(backend().await, "sni_fallback = \"refuse\""),
        "127.0.0.1:1",
    );
    let before = vipgate::proxy::metrics::counters()
        .tls_failures(vipgate::proxy::metrics::TlsFailure::NoCertificate);
    let client = pki.client(ALL, None);
    assert!(connect(&client, addr, "unknown.test").await.is_err());
    let after = vipgate::proxy::metrics::counters()
        .tls_failures(vipgate::proxy::metrics::TlsFailure::NoCertificate);
    assert!(after > before, "counted as no_certificate");

    // The same client config keeps its session: the second handshake resumes.
    let mut first = connect(&client, addr, "a.test").await.unwrap();
    let mut buf = Vec::new();
    // TLS 1.3 tickets arrive after the handshake: one exchange reads them.
    let (status, _, _) = exchange(
        &mut first,
        &mut buf,
        "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    let second = connect(&client, addr, "a.test").await.unwrap();
    assert_eq!(
        second.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
}

#[tokio::test]
async fn min_version_13_refuses_a_tls12_client() {
    let pki = Pki::new("minver");
    certs(&pki);
    let (addr, _shared, _stop) = serve(
        &pki,
        &config(backend().await, "min_tls_version = \"1.3\""),
        "127.0.0.1:1",
    );
    let tls12 = pki.client(&[&rustls::version::TLS12], None);
    assert!(connect(&tls12, addr, "a.test").await.is_err());
    let s = connect(&pki.client(ALL, None), addr, "a.test")
        .await
        .unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    // Without the minimum, TLS 1.2 is served.
    let (addr12, _s, _stop12) = serve(&pki, &config(backend().await, ""), "127.0.0.1:1");
    let s = connect(&tls12, addr12, "a.test").await.unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

#[tokio::test]
async fn client_certificates_required_and_optional() {
    let pki = Pki::new("mtls");
    certs(&pki);
    let one = pki.leaf("one", &["client one"], true);
    let other = pki.leaf("other", &["client other"], true);
    let backend = backend().await;
    let (required, _r, _stop_r) = serve(
        &pki,
        &config(backend, "client_ca = \"ca.pem\""),
        "127.0.0.1:1",
    );
    let (optional, _o, _stop_o) = serve(
        &pki,
        &config(
            backend,
            "client_ca = \"ca.pem\"\nclient_auth = \"optional\"",
        ),
        "127.0.0.1:1",
    );
    let get = |host: &'static str| format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");

    // Required: without a certificate the server ends the handshake (TLS 1.3 clients learn
    // it at their first read).
    let anonymous = pki.client(ALL, None);
    if let Ok(mut s) = connect(&anonymous, required, "a.test").await {
        let _ = s.write_all(get("a.test").as_bytes()).await;
        let mut b = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .unwrap();
        assert!(
            matches!(r, Ok(0) | Err(_)),
            "served without a client certificate: {r:?}"
        );
    }
    let mut s = connect(
        &pki.client(ALL, Some((one.0.clone(), one.1.clone_key()))),
        required,
        "secure.apps.test",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        exchange(&mut s, &mut buf, &get("secure.apps.test")).await.0,
        200
    );
    let mut s = connect(&pki.client(ALL, Some(other)), required, "secure.apps.test")
        .await
        .unwrap();
    assert_eq!(
        exchange(&mut s, &mut buf, &get("secure.apps.test")).await.0,
        403
    );

    // Optional: anonymous clients reach hosts that do not ask for a subject.
    let mut s = connect(&anonymous, optional, "a.test").await.unwrap();
    assert_eq!(exchange(&mut s, &mut buf, &get("a.test")).await.0, 200);
    let mut s = connect(&anonymous, optional, "secure.apps.test")
        .await
        .unwrap();
    assert_eq!(
        exchange(&mut s, &mut buf, &get("secure.apps.test")).await.0,
        403
    );
    let mut s = connect(&pki.client(ALL, Some(one)), optional, "secure.apps.test")
        .await
        .unwrap();
    assert_eq!(
        exchange(&mut s, &mut buf, &get("secure.apps.test")).await.0,
        200
    );
}

#[tokio::test]
async fn http_listener_redirects_to_https() {
    let pki = Pki::new("redirect");
    certs(&pki);
    let (addr, _shared, _stop) = serve(&pki, &config(backend().await, ""), "127.0.0.1:2");
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    let (status, head, _) = exchange(
        &mut s,
        &mut buf,
        "GET /x/y?z=1 HTTP/1.1\r\nHost: a.test:80\r\n\r\n",
    )
    .await;
    assert_eq!(status, 308);
    assert!(
        head.contains("\r\nLocation: https://a.test/x/y?z=1\r\n"),
        "{head}"
    );
    // Kept alive for the next one.
    let (status, _, _) = exchange(&mut s, &mut buf, "GET / HTTP/1.1\r\nHost: b.test\r\n\r\n").await;
    assert_eq!(status, 308);
}

#[tokio::test]
async fn changed_certificate_files_are_served_to_new_handshakes() {
    let pki = Pki::new("watch");
    certs(&pki);
    let (addr, shared, _stop) = serve(&pki, &config(backend().await, ""), "127.0.0.1:1");
    let watcher = vipgate::proxy::tls::watch::spawn(shared.clone());
    let client = pki.client(ALL, None);
    let mut old = connect(&client, addr, "a.test").await.unwrap();
    let old_cert = old.get_ref().1.peer_certificates().unwrap()[0].clone();

    // A broken key first: refused, the old certificate stays.
    std::fs::write(pki.dir.join("a.key"), "not a key").unwrap();
    tokio::time::sleep(vipgate::proxy::tls::watch::POLL_INTERVAL * 2).await;
    let s = connect(&client, addr, "a.test").await.unwrap();
    assert_eq!(s.get_ref().1.peer_certificates().unwrap()[0], old_cert);

    // Then a renewed pair: new handshakes get it within a few polls.
    pki.leaf("a", &["a.test"], false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = connect(&client, addr, "a.test").await.unwrap();
        if s.get_ref().1.peer_certificates().unwrap()[0] != old_cert {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "new certificate not served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The connection made before keeps its session.
    let mut buf = Vec::new();
    let (status, _, _) =
        exchange(&mut old, &mut buf, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    assert_eq!(status, 200);
    watcher.abort();
}

#[tokio::test]
async fn proxy_protocol_header_before_the_handshake() {
    let pki = Pki::new("proxyproto");
    certs(&pki);
    let text = config(backend().await, "accept_proxy_protocol = true")
        + "\n[proxy]\ntrusted_proxies = [\"127.0.0.1\"]\n";
    let (addr, _shared, _stop) = serve(&pki, &text, "127.0.0.1:1");
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // Corked, the header and the ClientHello leave in one segment (the kernel sends corked
    // data after 200 ms at the latest), so vipgate reads TLS bytes with the header and must
    // hand them to the handshake.
    socket2::SockRef::from(&tcp).set_tcp_cork(true).unwrap();
    tcp.write_all(b"PROXY TCP4 192.0.2.9 127.0.0.1 40000 443\r\n")
        .await
        .unwrap();
    let name = ServerName::try_from("a.test".to_string()).unwrap();
    let mut s = tokio::time::timeout(
        Duration::from_secs(5),
        pki.client(ALL, None).connect(name, tcp),
    )
    .await
    .unwrap()
    .unwrap();
    socket2::SockRef::from(s.get_ref().0)
        .set_tcp_cork(false)
        .unwrap();
    let mut buf = Vec::new();
    let (status, _, body) =
        exchange(&mut s, &mut buf, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    assert_eq!(status, 200);
    assert!(body.contains("proto=https"), "{body}");
}
