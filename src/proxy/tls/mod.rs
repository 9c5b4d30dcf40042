//! TLS on the client side: `protocol = "https"` listeners.
//!
//! Owns the rustls server configuration of each https listener (versions, ALPN `h2` and `http/1.1`,
//! client certificate verification, session resumption by tickets and a session cache shared
//! across reloads), the handshake of an accepted connection with its timeout and failure
//! reason, what the rest of the connection learns from it ([`TlsInfo`]: SNI, version, cipher,
//! verified client subject), and the client stream type `conn` serves over TLS. Submodules:
//! `certs` (the certificate set and SNI lookup), `watch` (re-reading certificate files when
//! they change). Does not own loading one PEM file (`crate::tls`), HTTP (`conn`), or upstream
//! TLS to backends.

pub mod certs;
pub mod watch;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Buf, BytesMut};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error};

use self::certs::{CertSet, SniResolver};
use super::client::ClientStream;
use super::metrics::{counters, ClientTlsFailure};
use crate::config::{Config, Listener, TlsVersion};

/// Sessions remembered for resumption by id (TLS 1.2) or stateful ticket; a few hundred
/// bytes each.
const SESSION_CACHE: usize = 4096;

/// The client side of an https connection.
pub type ClientTls = TlsStream<Prefixed>;

pub use crate::tls::TlsInfo;

/// The TLS state of one configuration: the certificate set (shared with the file watcher and
/// kept across reloads as one `ArcSwap`), and each https listener's rustls configuration.
#[derive(Debug, Clone)]
pub struct TlsFront {
    pub certs: Arc<ArcSwap<CertSet>>,
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Option<Arc<dyn ProducesTickets>>,
    listeners: Vec<(SocketAddr, Arc<ServerConfig>)>,
    /// `[acme] challenge = "tls-alpn-01"`: the listeners also offer ALPN `acme-tls/1`.
    acme_tls_alpn: bool,
}

impl TlsFront {
    /// The TLS state for `config`. From a `previous` one it keeps the certificate set's
    /// `ArcSwap` (storing the new certificates in it), the session cache and the ticket keys,
    /// so clients resume their sessions across a reload.
    pub fn build(config: &Config, previous: Option<&TlsFront>) -> TlsFront {
        let set = CertSet::from_config(&config.certificates);
        publish_expiry(&set);
        let (certs, sessions, ticketer) = match previous {
            Some(p) => {
                p.certs.store(Arc::new(set));
                (p.certs.clone(), p.sessions.clone(), p.ticketer.clone())
            }
            None => {
                let sessions: Arc<dyn StoresServerSessions> =
                    ServerSessionMemoryCache::new(SESSION_CACHE);
                let ticketer = match rustls::crypto::ring::Ticketer::new() {
                    Ok(t) => Some(t),
                    Err(e) => {
                        error!(error = %e, "cannot make TLS session ticket keys; resumption by session id only");
                        None
                    }
                };
                (Arc::new(ArcSwap::from_pointee(set)), sessions, ticketer)
            }
        };
        let mut front = TlsFront {
            certs,
            sessions,
            ticketer,
            listeners: Vec::new(),
            acme_tls_alpn: config
                .acme
                .as_ref()
                .is_some_and(|a| a.challenge == crate::config::AcmeChallenge::TlsAlpn01),
        };
        for l in &config.listeners {
            if let Some(cfg) = front.server_config(l) {
                front.listeners.push((l.bind, cfg));
            }
        }
        front
    }

    fn server_config(&self, l: &Listener) -> Option<Arc<ServerConfig>> {
        let tls = l.tls.as_ref()?;
        let provider = crate::tls::provider();
        let versions: &[&'static rustls::SupportedProtocolVersion] = match tls.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let built = (|| -> Result<ServerConfig, String> {
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .map_err(|e| e.to_string())?;
            let builder = match &tls.client_auth {
                None => builder.with_no_client_auth(),
                Some(a) => {
                    let v = WebPkiClientVerifier::builder_with_provider(
                        a.roots.clone(),
                        provider.clone(),
                    );
                    let v = if a.required {
                        v
                    } else {
                        v.allow_unauthenticated()
                    };
                    builder.with_client_cert_verifier(v.build().map_err(|e| e.to_string())?)
                }
            };
            Ok(builder.with_cert_resolver(Arc::new(SniResolver {
                certs: self.certs.clone(),
                fallback: tls.sni_fallback,
            })))
        })();
        let mut cfg = match built {
            Ok(c) => c,
            Err(e) => {
                error!(listener = %l.bind, error = %e, "cannot set up TLS for this listener; its connections are closed");
                return None;
            }
        };
        // h2 first: a client that speaks both gets HTTP/2 (RFC 9113 §3.2).
        cfg.alpn_protocols = if l.http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        if self.acme_tls_alpn {
            cfg.alpn_protocols
                .push(crate::acme::challenge::ACME_TLS_ALPN.to_vec());
        }
        cfg.session_storage = self.sessions.clone();
        if let Some(t) = &self.ticketer {
            cfg.ticketer = t.clone();
        }
        Some(Arc::new(cfg))
    }

    /// The rustls configuration of the https listener bound to `bind`.
    pub fn acceptor(&self, bind: SocketAddr) -> Option<TlsAcceptor> {
        self.listeners
            .iter()
            .find(|(b, _)| *b == bind)
            .map(|(_, c)| TlsAcceptor::from(c.clone()))
    }
}

/// Telemetry hook: the expiry of every certificate served, for
/// `vipgate_tls_certificate_not_after_seconds`.
pub fn publish_expiry(set: &CertSet) {
    counters().tls_certificates(
        set.entries
            .iter()
            .map(|e| (e.label(), e.cert.display().to_string(), e.loaded.not_after))
            .collect(),
    );
}

/// Run the handshake on an accepted connection (`early`: bytes read already, after a PROXY
/// header), within `limit`. Counts it, and on failure its reason.
pub async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    early: BytesMut,
    limit: Duration,
    peer: SocketAddr,
) -> Option<(ClientTls, TlsInfo)> {
    let io = Prefixed {
        early,
        inner: stream,
    };
    let p = counters();
    let result = tokio::time::timeout(limit, acceptor.accept(io)).await;
    let stream = match result {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let reason = failure_reason(&e);
            debug!(%peer, error = %e, reason = reason.as_str(), "TLS handshake failed");
            p.tls_failure(reason);
            return None;
        }
        Err(_) => {
            debug!(%peer, "TLS handshake not done in time");
            p.tls_failure(ClientTlsFailure::Timeout);
            return None;
        }
    };
    p.tls_handshakes.fetch_add(1, Ordering::Relaxed);
    let (_, conn) = stream.get_ref();
    if conn.alpn_protocol() == Some(crate::acme::challenge::ACME_TLS_ALPN) {
        // RFC 8737 section 3: the check is the handshake itself; the client closes next.
        crate::acme::metrics::answered(true);
        debug!(%peer, sni = ?conn.server_name(), "answered an ACME TLS-ALPN-01 check");
        return None;
    }
    let info = TlsInfo {
        sni: conn.server_name().map(|s| s.to_ascii_lowercase().into()),
        version: match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        },
        cipher: conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("unknown"),
        client_subject: conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(crate::tls::subject_of)
            .map(Into::into),
        http2: conn.alpn_protocol() == Some(b"h2"),
    };
    Some((stream, info))
}

/// Why a handshake failed, as the failures metric labels it.
pub fn failure_reason(e: &io::Error) -> ClientTlsFailure {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return match tls {
            rustls::Error::General(s) if s.contains("no server certificate") => {
                ClientTlsFailure::NoCertificate
            }
            rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_) => {
                ClientTlsFailure::ClientCertificate
            }
            rustls::Error::AlertReceived(_) => ClientTlsFailure::AlertReceived,
            rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => {
                ClientTlsFailure::Incompatible
            }
            _ => ClientTlsFailure::Protocol,
        };
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe => ClientTlsFailure::Closed,
        io::ErrorKind::InvalidData => ClientTlsFailure::Protocol,
        _ => ClientTlsFailure::Other,
    }
}

/// A stream with bytes read from it already (after a PROXY protocol header, or the HTTP/2
/// preface an HTTP/1 connection found) put back in front. Without such bytes it costs one
/// length check per read.
#[derive(Debug)]
pub struct Prefixed<S = TcpStream> {
    early: BytesMut,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(early: BytesMut, inner: S) -> Prefixed<S> {
        Prefixed { early, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.early.is_empty() {
            let n = this.early.len().min(buf.remaining());
            buf.put_slice(&this.early[..n]);
            this.early.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl ClientStream for ClientTls {
    /// Ready when rustls holds decrypted bytes not read yet (a read returns them without
    /// touching the socket), else when the socket is readable.
    async fn readable(&mut self) -> io::Result<()> {
        let (io, conn) = self.get_mut();
        let buffered = !matches!(
            conn.reader().into_first_chunk(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        );
        if buffered || !io.early.is_empty() {
            return Ok(());
        }
        io.inner.readable().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_from_rustls_and_io_errors() {
        let tls = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let cases = [
            (
                tls(rustls::Error::General(
                    "no server certificate chain resolved".into(),
                )),
                ClientTlsFailure::NoCertificate,
            ),
            (
                tls(rustls::Error::NoCertificatesPresented),
                ClientTlsFailure::ClientCertificate,
            ),
            (
                tls(rustls::Error::AlertReceived(
                    rustls::AlertDescription::UnknownCA,
                )),
                ClientTlsFailure::AlertReceived,
            ),
            (
                tls(rustls::Error::NoApplicationProtocol),
                ClientTlsFailure::Incompatible,
            ),
            (tls(rustls::Error::DecryptError), ClientTlsFailure::Protocol),
            (
                io::Error::from(io::ErrorKind::UnexpectedEof),
                ClientTlsFailure::Closed,
            ),
            (
                io::Error::from(io::ErrorKind::Other),
                ClientTlsFailure::Other,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(failure_reason(&e), want, "{e}");
        }
    }
}
