//! Certificates generated here with rcgen, written to a temporary directory, loaded back.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

/// A temporary directory removed on drop (shared with the config tests).
pub(crate) struct Dir(pub(crate) PathBuf);

impl Dir {
    pub(crate) fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("vipgate-tls-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        Dir(dir)
    }

    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, text).expect("write");
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for `names`; `expired` makes one that ended in 2001.
pub(crate) fn self_signed(names: &[&str], expired: bool) -> (String, String) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).expect("params");
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    (cert.pem(), key.serialize_pem())
}

#[test]
fn loads_a_matching_pair_with_its_names_and_validity() {
    let dir = Dir::new("ok");
    let (cert, key) = self_signed(&["blog.example.test", "*.apps.example.test"], false);
    let loaded = load_cert_and_key(
        &dir.write("c.pem", &cert),
        &dir.write("k.pem", &key),
        SystemTime::now(),
    )
    .expect("loads");
    assert_eq!(
        loaded.dns_names,
        ["blog.example.test", "*.apps.example.test"]
    );
    assert!(loaded.not_before < loaded.not_after);
    assert!(loaded.remaining(SystemTime::now()) > Duration::from_secs(86_400));
    assert_eq!(loaded.key.cert.len(), 1);
}

#[test]
fn refuses_an_expired_certificate_with_its_date() {
    let dir = Dir::new("expired");
    let (cert, key) = self_signed(&["old.example.test"], true);
    let err = load_cert_and_key(
        &dir.write("c.pem", &cert),
        &dir.write("k.pem", &key),
        SystemTime::now(),
    )
    .expect_err("expired");
    let text = err.to_string();
    assert!(matches!(err, TlsError::Expired { .. }), "{text}");
    assert!(text.contains("2001-01-01T00:00:00Z"), "{text}");
    assert!(text.contains("c.pem"), "{text}");
}

#[test]
fn refuses_a_key_of_another_certificate() {
    let dir = Dir::new("mismatch");
    let (cert, _) = self_signed(&["a.example.test"], false);
    let (_, other_key) = self_signed(&["b.example.test"], false);
    let err = load_cert_and_key(
        &dir.write("c.pem", &cert),
        &dir.write("k.pem", &other_key),
        SystemTime::now(),
    )
    .expect_err("mismatch");
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
}

#[test]
fn refuses_files_that_are_not_what_they_should_be() {
    let dir = Dir::new("bad");
    let (cert, key) = self_signed(&["a.example.test"], false);
    let c = dir.write("c.pem", &cert);
    let k = dir.write("k.pem", &key);
    let junk = dir.write("junk.pem", "hello\n");
    let missing = dir.0.join("missing.pem");

    assert!(matches!(load_certs(&junk), Err(TlsError::Invalid { .. })));
    assert!(matches!(load_certs(&k), Err(TlsError::Invalid { .. })));
    assert!(matches!(load_key(&c), Err(TlsError::Invalid { .. })));
    assert!(matches!(load_key(&missing), Err(TlsError::Read { .. })));
    let err = load_cert_and_key(&c, &junk, SystemTime::now()).expect_err("junk key");
    assert!(err.to_string().contains("junk.pem"), "{err}");
}

#[test]
fn loads_a_ca_bundle() {
    let dir = Dir::new("roots");
    let (a, _) = self_signed(&["ca-a.example.test"], false);
    let (b, _) = self_signed(&["ca-b.example.test"], false);
    let roots = load_roots(&dir.write("ca.pem", &format!("{a}{b}"))).expect("roots");
    assert_eq!(roots.len(), 2);
}

#[test]
fn formats_unix_times_as_utc_dates() {
    assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
    assert_eq!(format_unix(978_307_200), "2001-01-01T00:00:00Z");
    assert_eq!(format_unix(1_795_638_612), "2026-11-25T20:30:12Z");
    assert_eq!(format_unix(-1), "1969-12-31T23:59:59Z");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(format_unix(now).starts_with("20"));
}
