//! The certificates an `https` listener serves, and the choice of one by SNI.
//!
//! Owns [`CertSet`] (every `[[certificate]]` with its names: exact, then wildcard, then the
//! default), the rustls resolver that reads it through an `ArcSwap` (a handshake never takes a
//! lock, and a reload swaps the whole set at once), and re-reading the files of a set
//! ([`CertSet::reloaded`]). Does not own reading or checking one file (`crate::tls`), when
//! files are re-read (`watch` and the daemon's reload), or the handshake (`super`).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{Certificate, SniFallback};
use crate::tls::{LoadedCert, TlsError};

/// What a file looked like when it was read: a change of any of these means a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    mtime_ns: i128,
    size: u64,
    inode: u64,
}

impl Stamp {
    pub fn of(path: &Path) -> Option<Stamp> {
        let m = fs::metadata(path).ok()?;
        Some(Stamp {
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            size: m.size(),
            inode: m.ino(),
        })
    }
}

/// One `[[certificate]]` as served now.
#[derive(Debug, Clone)]
pub struct Entry {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Written in the file; `None`: the certificate's own DNS names.
    pub names: Option<Vec<String>>,
    pub default: bool,
    pub loaded: LoadedCert,
    /// The files as they were when `loaded` was read (or last refused), cert then key.
    pub stamps: [Option<Stamp>; 2],
}

impl Entry {
    pub fn serves(&self) -> Vec<String> {
        self.names
            .clone()
            .unwrap_or_else(|| self.loaded.dns_names.clone())
    }

    /// A label for metrics and logs: the first name the certificate serves.
    pub fn label(&self) -> String {
        self.serves().into_iter().next().unwrap_or_default()
    }

    fn current_stamps(&self) -> [Option<Stamp>; 2] {
        [Stamp::of(&self.cert), Stamp::of(&self.key)]
    }
}

/// Every certificate with its lookup tables.
#[derive(Debug, Default)]
pub struct CertSet {
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// `*.example.test` is stored as `example.test`.
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    pub entries: Vec<Entry>,
}

/// What re-reading the files of a set found.
#[derive(Debug)]
pub struct Reread {
    /// The set to serve from now on, if any file changed and every changed file was good.
    pub set: Option<CertSet>,
    /// Changed files that were refused (the old certificate stays for them).
    pub refused: Vec<TlsError>,
    /// Stamps of refused files, so the same bad file is not reported every poll.
    pub stamps: Vec<(usize, [Option<Stamp>; 2])>,
    /// Entries read anew (indexes into `set`'s entries).
    pub changed: Vec<usize>,
}

impl CertSet {
    pub fn from_config(certs: &[Certificate]) -> CertSet {
        let entries = certs
            .iter()
            .map(|c| Entry {
                cert: c.cert.clone(),
                key: c.key.clone(),
                names: c
                    .names
                    .as_ref()
                    .map(|n| n.iter().map(ToString::to_string).collect()),
                default: c.default,
                loaded: c.loaded.clone(),
                stamps: [Stamp::of(&c.cert), Stamp::of(&c.key)],
            })
            .collect();
        CertSet::new(entries)
    }

    pub fn new(entries: Vec<Entry>) -> CertSet {
        let mut set = CertSet::default();
        for e in &entries {
            for name in e.serves() {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(suffix) => set.wildcard.insert(suffix.into(), e.loaded.key.clone()),
                    None => set.exact.insert(name.into(), e.loaded.key.clone()),
                };
            }
        }
        set.default = entries
            .iter()
            .find(|e| e.default)
            .or(entries.first())
            .map(|e| e.loaded.key.clone());
        set.entries = entries;
        set
    }

    /// The certificate for an SNI name: exact, then a wildcard for its first label (one label
    /// only, as RFC 6125 wildcards match).
    pub fn lookup(&self, sni: &str) -> Option<&Arc<CertifiedKey>> {
        let lower;
        let name = if sni.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = sni.to_ascii_lowercase();
            lower.as_str()
        } else {
            sni
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if let Some(k) = self.exact.get(name) {
            return Some(k);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent)
    }

    /// What a handshake gets: by SNI, else the default if `fallback` allows it.
    pub fn choose(&self, sni: Option<&str>, fallback: SniFallback) -> Option<Arc<CertifiedKey>> {
        if let Some(k) = sni.and_then(|s| self.lookup(s)) {
            return Some(k.clone());
        }
        match fallback {
            SniFallback::Default => self.default.clone(),
            SniFallback::Refuse => None,
        }
    }

    /// Re-read the files that changed since they were read. Changed files that fail their
    /// checks keep the old certificate.
    pub fn reread(&self, now: SystemTime) -> Reread {
        let mut changed = Vec::new();
        let mut refused = Vec::new();
        let mut stamps = Vec::new();
        let mut entries = self.entries.clone();
        for (i, e) in entries.iter_mut().enumerate() {
            let current = e.current_stamps();
            if current == e.stamps {
                continue;
            }
            match crate::tls::load_cert_and_key(&e.cert, &e.key, now) {
                Ok(loaded) if e.names.is_none() && loaded.dns_names.is_empty() => {
                    refused.push(TlsError::Invalid {
                        path: e.cert.clone(),
                        reason: "the new certificate has no DNS subjectAltName".into(),
                    });
                    stamps.push((i, current));
                }
                Ok(loaded) => {
                    e.loaded = loaded;
                    e.stamps = current;
                    changed.push(i);
                }
                Err(err) => {
                    refused.push(err);
                    stamps.push((i, current));
                }
            }
        }
        Reread {
            set: (!changed.is_empty()).then(|| {
                let mut set = CertSet::new(entries);
                for (i, s) in &stamps {
                    set.entries[*i].stamps = *s;
                }
                set
            }),
            refused,
            stamps,
            changed,
        }
    }

    /// A copy of this set with the stamps of refused files recorded.
    pub fn with_stamps(&self, stamps: &[(usize, [Option<Stamp>; 2])]) -> CertSet {
        let mut entries = self.entries.clone();
        for (i, s) in stamps {
            if let Some(e) = entries.get_mut(*i) {
                e.stamps = *s;
            }
        }
        CertSet::new(entries)
    }
}

/// The rustls side: SNI → certificate from the current set, lock-free.
#[derive(Debug)]
pub struct SniResolver {
    pub certs: Arc<ArcSwap<CertSet>>,
    pub fallback: SniFallback,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // RFC 8737 section 3: a client offering `acme-tls/1` is the ACME server checking a
        // name; it gets the challenge certificate or nothing, never a served one.
        if let Some(mut alpn) = hello.alpn() {
            if alpn.any(|p| p == crate::acme::challenge::ACME_TLS_ALPN) {
                let answer = hello
                    .server_name()
                    .and_then(|n| crate::acme::challenge::challenges().tls_alpn01(n));
                if answer.is_none() {
                    tracing::debug!(sni = ?hello.server_name(), "acme-tls/1 handshake for a name with no open check; refusing it");
                }
                return answer;
            }
        }
        let chosen = self.certs.load().choose(hello.server_name(), self.fallback);
        if chosen.is_none() {
            tracing::debug!(sni = ?hello.server_name(), "no certificate for this name; refusing the handshake");
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(dir: &Path, tag: &str, names: &[&str], default: bool) -> Entry {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let (c, k) = (
            dir.join(format!("{tag}.pem")),
            dir.join(format!("{tag}.key")),
        );
        fs::write(&c, cert.pem()).expect("write");
        fs::write(&k, key.serialize_pem()).expect("write");
        let loaded = crate::tls::load_cert_and_key(&c, &k, SystemTime::now()).expect("loads");
        Entry {
            stamps: [Stamp::of(&c), Stamp::of(&k)],
            cert: c,
            key: k,
            names: None,
            default,
            loaded,
        }
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vipgate-certs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("dir");
        d
    }

    fn which(set: &CertSet, k: Option<Arc<CertifiedKey>>) -> Option<String> {
        let k = k?;
        set.entries
            .iter()
            .find(|e| Arc::ptr_eq(&e.loaded.key, &k))
            .map(|e| e.cert.file_stem().unwrap().to_string_lossy().into_owned())
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_fallback() {
        let d = tmp("choose");
        let set = CertSet::new(vec![
            entry(&d, "blog", &["blog.example.test"], false),
            entry(&d, "apps", &["*.apps.example.test"], false),
            entry(&d, "special", &["special.apps.example.test"], true),
        ]);
        let cases: &[(Option<&str>, SniFallback, Option<&str>)] = &[
            (Some("blog.example.test"), SniFallback::Refuse, Some("blog")),
            (Some("BLOG.Example.Test"), SniFallback::Refuse, Some("blog")),
            (
                Some("blog.example.test."),
                SniFallback::Refuse,
                Some("blog"),
            ),
            (
                Some("x.apps.example.test"),
                SniFallback::Refuse,
                Some("apps"),
            ),
            // Exact before wildcard.
            (
                Some("special.apps.example.test"),
                SniFallback::Refuse,
                Some("special"),
            ),
            // A wildcard covers one label only, never the bare suffix.
            (Some("a.b.apps.example.test"), SniFallback::Refuse, None),
            (Some("apps.example.test"), SniFallback::Refuse, None),
            (Some("unknown.test"), SniFallback::Refuse, None),
            (None, SniFallback::Refuse, None),
            (Some("unknown.test"), SniFallback::Default, Some("special")),
            (None, SniFallback::Default, Some("special")),
        ];
        for (sni, fallback, want) in cases {
            let got = which(&set, set.choose(*sni, *fallback));
            assert_eq!(got.as_deref(), *want, "sni {sni:?} {fallback:?}");
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn first_certificate_is_the_default_without_a_marked_one() {
        let d = tmp("first");
        let set = CertSet::new(vec![
            entry(&d, "one", &["one.test"], false),
            entry(&d, "two", &["two.test"], false),
        ]);
        assert_eq!(
            which(&set, set.choose(None, SniFallback::Default)).as_deref(),
            Some("one")
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn reread_swaps_a_good_new_file_and_keeps_the_old_on_a_bad_one() {
        let d = tmp("reread");
        let set = CertSet::new(vec![entry(&d, "site", &["site.test"], false)]);
        let old = set.entries[0].loaded.not_after;
        // Unchanged files: nothing to do.
        let r = set.reread(SystemTime::now());
        assert!(r.set.is_none() && r.refused.is_empty());

        // A renewed certificate (new key and cert, longer validity).
        let mut params = rcgen::CertificateParams::new(vec!["site.test".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2099, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        fs::write(d.join("site.pem"), cert.pem()).unwrap();
        fs::write(d.join("site.key"), key.serialize_pem()).unwrap();
        let r = set.reread(SystemTime::now());
        assert!(r.refused.is_empty(), "{:?}", r.refused);
        let new = r.set.expect("swapped");
        assert_ne!(new.entries[0].loaded.not_after, old);
        assert!(new.lookup("site.test").is_some());

        // Then a key of another certificate: refused, reported once, the renewed one stays.
        let other = rcgen::KeyPair::generate().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        fs::write(d.join("site.key"), other.serialize_pem()).unwrap();
        let r = new.reread(SystemTime::now());
        assert!(r.set.is_none());
        assert_eq!(r.refused.len(), 1);
        assert!(matches!(r.refused[0], TlsError::KeyMismatch { .. }));
        let marked = new.with_stamps(&r.stamps);
        let again = marked.reread(SystemTime::now());
        assert!(again.set.is_none() && again.refused.is_empty());
        assert!(Arc::ptr_eq(
            marked.lookup("site.test").unwrap(),
            new.lookup("site.test").unwrap()
        ));
        let _ = fs::remove_dir_all(&d);
    }
}
