//! The answers to the ACME server's checks while an order is open: HTTP-01 key
//! authorizations by token (RFC 8555 section 8.3) and TLS-ALPN-01 certificates by name
//! (RFC 8737). Process-wide, because the listeners that answer are not the task that orders;
//! each table is swapped whole through an `ArcSwap`, so a request or handshake never takes a
//! lock, and a request whose path is not under [`HTTP01_PREFIX`] costs one prefix compare.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;

/// Where HTTP-01 tokens live (RFC 8555 section 8.3).
pub const HTTP01_PREFIX: &[u8] = b"/.well-known/acme-challenge/";
/// The ALPN protocol of TLS-ALPN-01 (RFC 8737 section 6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Debug, Default)]
pub struct Challenges {
    http: ArcSwap<HashMap<Box<str>, Box<str>>>,
    tls_alpn: ArcSwap<HashMap<Box<str>, Arc<CertifiedKey>>>,
}

/// The one table of the process.
pub fn challenges() -> &'static Challenges {
    static TABLE: OnceLock<Challenges> = OnceLock::new();
    TABLE.get_or_init(Challenges::default)
}

impl Challenges {
    /// The key authorization for a request path, if it is an open HTTP-01 token.
    pub fn http01(&self, path: &[u8]) -> Option<Box<str>> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        let token = std::str::from_utf8(token).ok()?;
        self.http.load().get(token).cloned()
    }

    /// The TLS-ALPN-01 certificate for an SNI name, if a check for it is open.
    pub fn tls_alpn01(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let table = self.tls_alpn.load();
        if table.is_empty() {
            return None;
        }
        table.get(sni.to_ascii_lowercase().as_str()).cloned()
    }

    pub fn add_http01(&self, token: &str, key_authorization: &str) {
        self.http.rcu(|t| {
            let mut t = HashMap::clone(t);
            t.insert(token.into(), key_authorization.into());
            t
        });
    }

    pub fn remove_http01(&self, token: &str) {
        self.http.rcu(|t| {
            let mut t = HashMap::clone(t);
            t.remove(token);
            t
        });
    }

    pub fn add_tls_alpn01(&self, name: &str, cert: Arc<CertifiedKey>) {
        self.tls_alpn.rcu(|t| {
            let mut t = HashMap::clone(t);
            t.insert(name.to_ascii_lowercase().into(), cert.clone());
            t
        });
    }

    pub fn remove_tls_alpn01(&self, name: &str) {
        self.tls_alpn.rcu(|t| {
            let mut t = HashMap::clone(t);
            t.remove(name.to_ascii_lowercase().as_str());
            t
        });
    }
}

/// The self-signed certificate of RFC 8737 section 3: the name as its only subjectAltName and
/// the SHA-256 digest of the key authorization in a critical acmeIdentifier extension.
pub fn tls_alpn01_certificate(name: &str, digest: &[u8]) -> Result<CertifiedKey, String> {
    if digest.len() != 32 {
        return Err(format!(
            "key authorization digest of {} bytes, not 32",
            digest.len()
        ));
    }
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let signing = crate::tls::provider()
        .key_provider
        .load_private_key(rustls_pki_types::PrivateKeyDer::Pkcs8(
            key.serialize_der().into(),
        ))
        .map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http01_answers_open_tokens_only() {
        let c = Challenges::default();
        assert_eq!(c.http01(b"/.well-known/acme-challenge/abc"), None);
        c.add_http01("abc", "abc.thumb");
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"/.well-known/acme-challenge/abc", Some("abc.thumb")),
            (b"/.well-known/acme-challenge/abd", None),
            (b"/.well-known/acme-challenge/", None),
            (b"/abc", None),
            (b"/.well-known/acme-challenge/abc/x", None),
        ];
        for (path, want) in cases {
            assert_eq!(
                c.http01(path).as_deref(),
                *want,
                "{:?}",
                String::from_utf8_lossy(path)
            );
        }
        c.remove_http01("abc");
        assert_eq!(c.http01(b"/.well-known/acme-challenge/abc"), None);
    }

    #[test]
    fn tls_alpn01_certificate_carries_the_critical_acme_identifier() {
        let digest = [7u8; 32];
        let key = tls_alpn01_certificate("a.example.test", &digest).expect("made");
        let (_, cert) = x509_parser::parse_x509_certificate(key.cert[0].as_ref()).expect("parses");
        // id-pe-acmeIdentifier, RFC 8737 section 6.1.
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        // An OCTET STRING of the 32-byte digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
        let c = Challenges::default();
        c.add_tls_alpn01("A.example.test", Arc::new(key));
        assert!(c.tls_alpn01("a.EXAMPLE.test").is_some());
        assert!(c.tls_alpn01("b.example.test").is_none());
        c.remove_tls_alpn01("a.example.test");
        assert!(c.tls_alpn01("a.example.test").is_none());
    }
}
