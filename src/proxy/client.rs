//! The client side of a connection as every protocol sees it.
//!
//! Owns the stream trait the protocol drivers are generic over (plain TCP, or TLS over it) and
//! what the listener a connection arrived on tells them (`Front`). Does not own accepting
//! (`listener`) or the handshake (`tls`).

use std::future::Future;
use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::tls::TlsInfo;

/// The client side of a connection: plain TCP, or TLS over it (`super::tls`).
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Resolves when a read would make progress (data, EOF or an error), without reading.
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_;
}

impl ClientStream for TcpStream {
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        TcpStream::readable(self)
    }
}

/// What the listener a connection arrived on tells the request loop.
#[derive(Debug, Clone, Default)]
pub struct Front {
    /// Set on https listeners: the handshake's SNI, version, cipher and client subject.
    pub tls: Option<Arc<TlsInfo>>,
    /// `http` listeners with `redirect_https`: every request gets this redirect.
    pub redirect_https: Option<u16>,
    /// `http` listeners with `http2`: a connection that starts with the HTTP/2 preface is
    /// handed to `http2`.
    pub http2: bool,
}
