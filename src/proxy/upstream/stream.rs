//! The backend side of a proxied connection: a plain or TLS stream to one backend, and dialling
//! it.
//!
//! Owns connecting (TCP, then for a TLS pool the handshake, both within the connect timeout),
//! the stream type the request path, the health checks and the idle pool share, whether an idle
//! stream can still carry a request, and naming why a handshake failed. Does not own what is
//! sent on the stream (`conn`, `health`) or the pool's TLS settings (`config`, `tls::client`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::{AlertDescription, CertificateError};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::backend::Backend;
use crate::config::PoolTls;

/// A connection to a backend, plain or TLS. Both halves are `Unpin`, so the relay helpers take
/// it like a `TcpStream`.
#[derive(Debug)]
pub enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl UpstreamStream {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            UpstreamStream::Plain(s) => s,
            UpstreamStream::Tls(s) => s.get_ref().0,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, UpstreamStream::Tls(_))
    }

    /// Whether an idle keep-alive connection can carry the next request: nothing to read.
    /// EOF means the backend closed it, and bytes mean it sent something unsolicited (a 408, or
    /// for TLS a close_notify alert) that would be mistaken for the next response. The TLS
    /// check peeks at the socket, so no record is taken from under rustls, and refuses a
    /// connection whose rustls buffers still hold plaintext.
    pub fn is_idle_and_open(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match self {
            UpstreamStream::Plain(s) => {
                matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            UpstreamStream::Tls(s) => {
                let (tcp, conn) = s.get_mut();
                let peeked = tcp.try_io(Interest::READABLE, || {
                    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1];
                    socket2::SockRef::from(&*tcp).peek(&mut buf)
                });
                let quiet = matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock);
                quiet
                    && conn.process_new_packets().is_ok_and(|state| {
                        state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed()
                    })
            }
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(s) => s.is_write_vectored(),
            UpstreamStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How the backends of one TLS pool are dialled: shared by them, replaced on reload.
#[derive(Debug)]
pub struct TlsOrigin {
    /// For the log lines about this pool's handshakes.
    pub pool: String,
    settings: PoolTls,
}

impl TlsOrigin {
    pub fn new(pool: &str, settings: &PoolTls) -> TlsOrigin {
        TlsOrigin {
            pool: pool.to_owned(),
            settings: settings.clone(),
        }
    }

    /// Whether a connection made under `self` is as good as one made under `other`.
    pub fn same_as(&self, other: &TlsOrigin) -> bool {
        self.settings.same_as(&other.settings)
    }
}

/// Why a new connection to a backend could not be made.
#[derive(Debug)]
pub enum ConnectError {
    Tcp(io::Error),
    /// The TCP connect did not finish within the limit.
    Timeout,
    /// TCP worked, TLS did not (already counted and reported on the backend).
    Tls(TlsFailure),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Tcp(e) => write!(f, "connect: {e}"),
            ConnectError::Timeout => f.write_str("connect: timed out"),
            ConnectError::Tls(r) => write!(f, "TLS handshake: {}", r.explain()),
        }
    }
}

/// Open a new connection to `backend` within `limit`: TCP, `preamble` (a PROXY protocol
/// header, which belongs to the TCP connection and so goes before any TLS), then the TLS
/// handshake when the backend's pool has `[pool.NAME.tls]`. A failed handshake is counted and
/// reported (at most once per period) on the backend.
pub async fn connect(
    backend: &Backend,
    limit: Duration,
    preamble: &[u8],
) -> Result<UpstreamStream, ConnectError> {
    let deadline = Instant::now() + limit;
    let mut tcp = match timeout_at(deadline, TcpStream::connect(backend.address)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ConnectError::Tcp(e)),
        Err(_) => return Err(ConnectError::Timeout),
    };
    // Small heads should leave at once rather than wait for Nagle.
    let _ = tcp.set_nodelay(true);
    if !preamble.is_empty() {
        match timeout_at(deadline, tcp.write_all(preamble)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ConnectError::Tcp(e)),
            Err(_) => return Err(ConnectError::Timeout),
        }
    }
    let Some(origin) = backend.tls() else {
        return Ok(UpstreamStream::Plain(tcp));
    };
    let name = origin
        .settings
        .server_name
        .as_ref()
        .or(backend.server_name())
        .cloned()
        .unwrap_or_else(|| ServerName::IpAddress(backend.address.ip().into()));
    let connector = TlsConnector::from(origin.settings.client_config.clone());
    match timeout_at(deadline, connector.connect(name, tcp)).await {
        Ok(Ok(s)) => {
            backend.tls_handshake_done();
            Ok(UpstreamStream::Tls(Box::new(s)))
        }
        Ok(Err(e)) => {
            let reason = TlsFailure::of(&e);
            backend.tls_failed(&origin.pool, reason, &e);
            Err(ConnectError::Tls(reason))
        }
        Err(_) => {
            let e = io::Error::new(io::ErrorKind::TimedOut, "no handshake within the limit");
            backend.tls_failed(&origin.pool, TlsFailure::Timeout, &e);
            Err(ConnectError::Tls(TlsFailure::Timeout))
        }
    }
}

/// Why a TLS handshake with a backend failed: the `reason` label of
/// `vipgate_upstream_tls_handshake_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The certificate does not name `server_name` (or the backend's IP address).
    NameMismatch,
    /// The certificate does not chain to the pool's `ca` (no issuer of that name, or one of
    /// that name that did not sign it).
    UnknownCa,
    /// The certificate expired or is not valid yet.
    Expired,
    /// Any other fault of the backend's certificate.
    BadCertificate,
    /// The backend requires a client certificate and got none.
    ClientCertRequired,
    /// The backend refused the client certificate offered.
    ClientCertRejected,
    /// The backend ended the handshake with another alert.
    PeerAlert,
    /// Not TLS, or TLS vipgate cannot speak (no common version or cipher suite).
    Protocol,
    /// The backend closed or reset the connection during the handshake.
    Closed,
    Timeout,
}

impl TlsFailure {
    pub const ALL: [TlsFailure; 10] = [
        TlsFailure::NameMismatch,
        TlsFailure::UnknownCa,
        TlsFailure::Expired,
        TlsFailure::BadCertificate,
        TlsFailure::ClientCertRequired,
        TlsFailure::ClientCertRejected,
        TlsFailure::PeerAlert,
        TlsFailure::Protocol,
        TlsFailure::Closed,
        TlsFailure::Timeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TlsFailure::NameMismatch => "name_mismatch",
            TlsFailure::UnknownCa => "unknown_ca",
            TlsFailure::Expired => "expired",
            TlsFailure::BadCertificate => "bad_certificate",
            TlsFailure::ClientCertRequired => "client_certificate_required",
            TlsFailure::ClientCertRejected => "client_certificate_rejected",
            TlsFailure::PeerAlert => "peer_alert",
            TlsFailure::Protocol => "protocol",
            TlsFailure::Closed => "closed",
            TlsFailure::Timeout => "timeout",
        }
    }

    /// What an operator reads in the log.
    pub fn explain(self) -> &'static str {
        match self {
            TlsFailure::NameMismatch => "the backend's certificate does not name the server_name (or, without one, the backend's IP address)",
            TlsFailure::UnknownCa => "the backend's certificate is not signed by the pool's ca (unknown CA)",
            TlsFailure::Expired => "the backend's certificate has expired or is not valid yet",
            TlsFailure::BadCertificate => "the backend's certificate is not acceptable",
            TlsFailure::ClientCertRequired => "the backend requires a client certificate (set cert and key in the pool's tls table)",
            TlsFailure::ClientCertRejected => "the backend refused our client certificate",
            TlsFailure::PeerAlert => "the backend refused the handshake",
            TlsFailure::Protocol => "the backend does not speak TLS we can use (a plain port?)",
            TlsFailure::Closed => "the backend closed the connection during the handshake",
            TlsFailure::Timeout => "no handshake within the connect timeout",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The reason of a failed handshake (an error from tokio-rustls' connect).
    pub fn of(e: &io::Error) -> TlsFailure {
        match tls_error(e) {
            Some(e) => Self::of_tls(e).unwrap_or(TlsFailure::Protocol),
            None if e.kind() == io::ErrorKind::TimedOut => TlsFailure::Timeout,
            None => TlsFailure::Closed,
        }
    }

    /// The reason behind an error read from a fresh TLS connection, if it is a TLS refusal:
    /// with TLS 1.3 the client's handshake is complete before the backend has judged the
    /// client certificate, so its refusal arrives as an alert on the first read.
    pub fn of_first_read(e: &io::Error) -> Option<TlsFailure> {
        match tls_error(e)? {
            e @ rustls::Error::AlertReceived(_) => Self::of_tls(e),
            _ => None,
        }
    }

    fn of_tls(e: &rustls::Error) -> Option<TlsFailure> {
        use rustls::Error as E;
        Some(match e {
            E::InvalidCertificate(c) => match c {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => TlsFailure::NameMismatch,
                // A CA of the same name that did not sign it is as unknown as any other.
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    TlsFailure::UnknownCa
                }
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired,
                _ => TlsFailure::BadCertificate,
            },
            E::AlertReceived(a) => match a {
                AlertDescription::CertificateRequired => TlsFailure::ClientCertRequired,
                AlertDescription::BadCertificate
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnknownCA
                | AlertDescription::AccessDenied => TlsFailure::ClientCertRejected,
                AlertDescription::ProtocolVersion | AlertDescription::InsufficientSecurity => {
                    TlsFailure::Protocol
                }
                _ => TlsFailure::PeerAlert,
            },
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerIncompatible(_)
            | E::PeerMisbehaved(_)
            | E::NoApplicationProtocol => TlsFailure::Protocol,
            _ => return None,
        })
    }
}

/// The rustls error inside an I/O error from tokio-rustls, if that is what it carries.
fn tls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn handshake_errors_have_reasons() {
        use rustls::Error as E;
        let table = [
            (
                E::InvalidCertificate(CertificateError::NotValidForName),
                TlsFailure::NameMismatch,
            ),
            (
                E::InvalidCertificate(CertificateError::UnknownIssuer),
                TlsFailure::UnknownCa,
            ),
            (
                E::InvalidCertificate(CertificateError::Expired),
                TlsFailure::Expired,
            ),
            (
                E::InvalidCertificate(CertificateError::BadSignature),
                TlsFailure::UnknownCa,
            ),
            (
                E::InvalidCertificate(CertificateError::BadEncoding),
                TlsFailure::BadCertificate,
            ),
            (
                E::AlertReceived(AlertDescription::CertificateRequired),
                TlsFailure::ClientCertRequired,
            ),
            (
                E::AlertReceived(AlertDescription::UnknownCA),
                TlsFailure::ClientCertRejected,
            ),
            (
                E::AlertReceived(AlertDescription::HandshakeFailure),
                TlsFailure::PeerAlert,
            ),
            (
                E::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                TlsFailure::Protocol,
            ),
        ];
        for (err, want) in table {
            assert_eq!(TlsFailure::of(&wrap(err.clone())), want, "{err:?}");
        }
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(TlsFailure::of(&eof), TlsFailure::Closed);
    }

    #[test]
    fn only_alerts_on_the_first_read_are_handshake_failures() {
        let alert = wrap(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        ));
        assert_eq!(
            TlsFailure::of_first_read(&alert),
            Some(TlsFailure::ClientCertRequired)
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(TlsFailure::of_first_read(&reset), None);
    }

    #[test]
    fn labels_are_distinct_and_indexed_in_order() {
        for (i, r) in TlsFailure::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let labels: std::collections::HashSet<_> =
            TlsFailure::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), TlsFailure::ALL.len());
    }
}
