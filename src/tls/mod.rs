//! Certificate material for TLS, on both sides of the proxy: loading PEM files into the rustls
//! types, checking them the way an operator expects `check` to (the key matches the
//! certificate, the certificate is not expired), and the crypto provider everything uses.
//!
//! Owns: reading and checking certificate, key and CA files, and the names and validity a
//! certificate carries. Does not own: when files are read (config validation and reload), the
//! choice of a certificate by SNI or the handshakes (the proxy's listeners and upstream pools).
//!
//! The crypto provider is *ring*: it builds with the C compiler this machine has (gcc) and
//! needs no cmake, Go or clang, which aws-lc-rs, rustls' default, does.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub mod client;

/// What went wrong with a certificate, key or CA file. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },

    #[error(
        "{}: the certificate expired at {} (unix time {}), refusing to serve it",
        path.display(),
        format_unix(*not_after),
        not_after
    )]
    Expired { path: PathBuf, not_after: i64 },

    #[error("{}: the private key does not belong to the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
}

/// The crypto provider of every TLS config vipgate builds (see the module comment for why
/// *ring*). Built once; cheap to clone.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A certificate chain with its private key, checked and ready for a rustls resolver, plus
/// what an operator and the SNI lookup need to know about it.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// DNS names of the leaf's subjectAltName extension, lower-case, as written (wildcards
    /// keep their `*.`). Empty if the certificate has none.
    pub dns_names: Vec<String>,
    /// The leaf's subject, RFC 4514 style (`CN=example.test`).
    pub subject: String,
    /// Validity of the leaf, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

impl LoadedCert {
    /// Time left until the leaf expires (zero if it already has).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        let now = unix_seconds(now);
        Duration::from_secs(self.not_after.saturating_sub(now).max(0) as u64)
    }
}

/// Reads a PEM certificate chain (leaf first) and its PEM private key (PKCS#8, PKCS#1 or SEC1),
/// and checks that the key belongs to the leaf and that the leaf has not expired at `now`.
pub fn load_cert_and_key(
    cert_path: &Path,
    key_path: &Path,
    now: SystemTime,
) -> Result<LoadedCert, TlsError> {
    let chain = load_certs(cert_path)?;
    let key_der = load_key(key_path)?;
    certified(cert_path, key_path, chain, key_der, now)
}

/// The checks of [`load_cert_and_key`] over a chain and key already read (the paths name them
/// in errors).
pub fn certified(
    cert_path: &Path,
    key_path: &Path,
    chain: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
    now: SystemTime,
) -> Result<LoadedCert, TlsError> {
    let signing_key = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| invalid(key_path, format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            })
        }
        // Keys whose public half cannot be compared are accepted: the handshake will fail
        // loudly if they do not match, and refusing them would refuse valid files.
        Err(_) => {}
    }
    let leaf = describe_leaf(cert_path, &certified.cert[0])?;
    if leaf.not_after < unix_seconds(now) {
        return Err(TlsError::Expired {
            path: cert_path.to_path_buf(),
            not_after: leaf.not_after,
        });
    }
    Ok(LoadedCert {
        key: Arc::new(certified),
        dns_names: leaf.dns_names,
        subject: leaf.subject,
        not_before: leaf.not_before,
        not_after: leaf.not_after,
    })
}

/// A self-signed certificate for `names` with a fresh key: what an ACME certificate's names are
/// served with until the first certificate is issued (clients see an untrusted certificate,
/// and the handshake does not fail for want of one). `path` names it in errors.
pub fn placeholder(path: &Path, names: &[String], now: SystemTime) -> Result<LoadedCert, TlsError> {
    let fail =
        |e: rcgen::Error| invalid(path, format!("cannot make a placeholder certificate: {e}"));
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(fail)?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "vipgate placeholder: ACME certificate not issued yet",
    );
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    certified(path, path, vec![cert.der().clone()], key_der, now)
}

/// Reads every certificate of a PEM file, in order. A file with none is an error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "no CERTIFICATE block in the file".into()));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => invalid(
            path,
            "no PRIVATE KEY block (PKCS#8, RSA or EC) in the file".into(),
        ),
        e => invalid(path, format!("not a PEM private key file: {e}")),
    })
}

/// Reads a PEM bundle of CA certificates into a trust store. A file with none, or with a
/// certificate rustls cannot use as a trust anchor, is an error.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| invalid(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The facts of a leaf certificate that vipgate reports and matches on.
struct Leaf {
    dns_names: Vec<String>,
    subject: String,
    not_before: i64,
    not_after: i64,
}

/// The subject of a DER certificate, RFC 4514 style (`CN=client.example.test`), as access
/// lists and the access log name a verified TLS client. `None` if it does not parse.
pub fn subject_of(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(cert.subject().to_string())
}

fn describe_leaf(path: &Path, der: &CertificateDer<'_>) -> Result<Leaf, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| invalid(path, format!("cannot parse the first certificate: {e}")))?;
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                dns_names.push(n.to_ascii_lowercase());
            }
        }
    }
    let validity = cert.validity();
    Ok(Leaf {
        dns_names,
        subject: cert.subject().to_string(),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(path: &Path, reason: String) -> TlsError {
    TlsError::Invalid {
        path: path.to_path_buf(),
        reason,
    }
}

/// What the handshake settled, for routing (SNI vs Host), access control and the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The SNI name the client sent, lower-case; `None` without SNI.
    pub sni: Option<Box<str>>,
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    /// The IANA name of the cipher suite, such as `TLS13_AES_128_GCM_SHA256`.
    pub cipher: &'static str,
    /// The subject of the verified client certificate (listeners with `client_ca`).
    pub client_subject: Option<Box<str>>,
    /// The client chose `h2` by ALPN: the connection speaks HTTP/2.
    pub http2: bool,
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// `2026-11-25T20:50:12Z` for a Unix time, so an expiry reads as a date in errors.
pub fn format_unix(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        // Outside years -9999..9999: no certificate says that, but say something.
        Err(_) => format!("{secs} s after 1970"),
    }
}

#[cfg(test)]
pub(crate) mod tests;
