//! The rustls client side: the one `ClientConfig` a TLS backend pool dials with.
//!
//! Owns how the backend's certificate is judged (a CA bundle, or explicitly nothing), the
//! client certificate offered for mutual TLS, ALPN and session resumption. Does not own the
//! connections, the server name sent per backend, or what a failed handshake means for the
//! backend (`proxy::upstream::stream`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tracing::warn;

use super::provider;

/// Sessions remembered per pool for resumption: one per backend of a large pool, with room.
const RESUMPTION_CACHE: usize = 256;
/// A backend that asks for a client certificate the pool does not have is reported at most
/// this often (seconds): once is news, every handshake is noise.
const NO_CERT_REPORT_EVERY: u64 = 60;

/// How a backend's certificate is judged.
#[derive(Debug, Clone)]
pub enum ServerVerify {
    /// Chain to one of these roots, valid now, and naming the server name (or IP) dialled.
    Roots(Arc<RootCertStore>),
    /// Accept any certificate (the handshake's signatures are still checked). Only by an
    /// explicit `insecure_skip_verify = true`.
    Insecure,
}

/// The rustls client configuration of the pool `pool`. Resumption (tickets and session ids) is
/// on; `alpn` is offered in order when non-empty.
pub fn backend_config(
    pool: &str,
    verify: ServerVerify,
    client_cert: Option<Arc<CertifiedKey>>,
    alpn: &[String],
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match verify {
        ServerVerify::Roots(roots) => builder.with_root_certificates(roots),
        ServerVerify::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert)),
    };
    let mut config = builder.with_client_cert_resolver(Arc::new(ClientCert {
        key: client_cert,
        pool: pool.to_owned(),
        reported_at: AtomicU64::new(0),
    }));
    config.resumption = Resumption::in_memory_sessions(RESUMPTION_CACHE);
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}

/// Offers the pool's client certificate when a backend asks for one. Without one, it says so
/// in the log: a backend that requires a certificate refuses the handshake (or, like nginx's
/// `ssl_verify_client on`, answers 400), and this line names the cause.
#[derive(Debug)]
struct ClientCert {
    key: Option<Arc<CertifiedKey>>,
    pool: String,
    /// Unix seconds of the last "no client certificate" report.
    reported_at: AtomicU64,
}

impl ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        if self.key.is_none() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let last = self.reported_at.load(Ordering::Relaxed);
            if now >= last + NO_CERT_REPORT_EVERY
                && self
                    .reported_at
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                warn!(pool = %self.pool, "a backend asked for a client certificate, but [pool.{}.tls] has no cert and key: none was sent", self.pool);
            }
        }
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// `insecure_skip_verify`: any certificate is taken for the backend's, but the handshake
/// signatures must still verify against it, so the connection is at least not trivially
/// broken.
#[derive(Debug)]
struct AcceptAnyServerCert;

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
