//! The ordering task: for each `[[certificate]]` with `acme`, when its stored certificate is
//! missing, does not cover its names, or has less than `renew_remaining_percent` of its
//! lifetime left, order a new one (account first, made once and stored), answer the
//! server's challenge, and write the certificate to the storage, where the watcher swaps it in.
//! A failure is logged with the server's problem document, counted, and retried after a
//! back-off that doubles up to `retry_max_ms`; the task never ends on its own.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls_pki_types::pem::PemObject as _;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::challenge::{challenges, tls_alpn01_certificate};
use super::metrics::orders;
use super::store::{self, StoredAccount};
use crate::config::{Acme, AcmeChallenge, Config};

/// One order from account to certificate, at most: a hung server ends in a failed attempt.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest sleep between looks at the configuration (a reload may add certificates).
const IDLE_LOOK: Duration = Duration::from_secs(60);

/// What one attempt can fail with; the message carries the server's problem document.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME account: {0}")]
    Account(String),
    #[error("ACME order: {0}")]
    Order(String),
    #[error("ACME challenge for {name}: {reason}")]
    Challenge { name: String, reason: String },
    #[error("storing the certificate: {0}")]
    Store(#[from] store::StoreError),
    #[error("the ACME server did not finish the order within {} s", ORDER_TIMEOUT.as_secs())]
    Timeout,
}

/// Start the task; `current` gives the running configuration (it changes on reload).
pub fn spawn(current: impl Fn() -> Arc<Config> + Send + 'static) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut task = Task::default();
        loop {
            let config = current();
            let wait = match &config.acme {
                Some(acme) => task.round(acme, &config).await,
                None => IDLE_LOOK,
            };
            tokio::time::sleep(wait).await;
        }
    })
}

/// A certificate's failures in a row and when it may be tried again.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: SystemTime,
}

#[derive(Default)]
struct Task {
    /// The account and the directory it is on.
    account: Option<(String, Account)>,
    backoff: HashMap<String, Backoff>,
}

impl Task {
    /// Order what is due; how long to sleep before the next look.
    async fn round(&mut self, acme: &Acme, config: &Config) -> Duration {
        let mut wake = SystemTime::now() + IDLE_LOOK;
        for cert in config.certificates.iter().filter(|c| c.acme) {
            let names = cert.serves();
            let Some(first) = names.first().cloned() else {
                continue;
            };
            let now = SystemTime::now();
            let mut at = due(&cert.cert, &names, acme.renew_remaining_percent, now);
            if let Some(b) = self.backoff.get(&first) {
                at = at.max(b.until);
            }
            let stats = orders(&first);
            stats.next_attempt.store(unix(at), Ordering::Relaxed);
            if at > now {
                wake = wake.min(at);
                continue;
            }
            info!(certificate = %first, names = ?names, directory = %acme.directory,
                challenge = acme.challenge.as_str(), "ordering an ACME certificate");
            let attempt =
                tokio::time::timeout(ORDER_TIMEOUT, self.obtain(acme, &names, &cert.cert));
            let result = match attempt.await {
                Ok(r) => r,
                Err(_) => Err(AcmeError::Timeout),
            };
            match result {
                Ok(not_after) => {
                    self.backoff.remove(&first);
                    stats.issued.fetch_add(1, Ordering::Relaxed);
                    info!(certificate = %first, file = %cert.cert.display(),
                        not_after = %crate::tls::format_unix(not_after),
                        "ACME certificate issued and stored; new handshakes get it once the watcher swaps it in");
                    // Look again soon: the next renewal time comes from the new file.
                    wake = wake.min(SystemTime::now() + Duration::from_secs(1));
                }
                Err(e) => {
                    let b = self.failed(&first, acme);
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    stats.next_attempt.store(unix(b.until), Ordering::Relaxed);
                    error!(certificate = %first, failures = b.failures,
                        retry_in_ms = b.until.duration_since(SystemTime::now()).unwrap_or_default().as_millis() as u64,
                        "ACME order failed: {e}");
                    wake = wake.min(b.until);
                }
            }
        }
        wake.duration_since(SystemTime::now())
            .unwrap_or_default()
            .max(Duration::from_millis(100))
    }

    /// Count a failure: the wait doubles from `retry_initial` up to `retry_max`, with up to
    /// a tenth of jitter so that nodes restarted together do not retry together.
    fn failed(&mut self, name: &str, acme: &Acme) -> Backoff {
        let failures = self.backoff.get(name).map_or(0, |b| b.failures) + 1;
        let wait = acme
            .retry_initial
            .saturating_mul(1u32 << (failures - 1).min(20))
            .min(acme.retry_max);
        let jitter = wait.mul_f64(fastrand::f64() * 0.1);
        let b = Backoff {
            failures,
            until: SystemTime::now() + wait + jitter,
        };
        self.backoff.insert(name.to_string(), b);
        b
    }

    /// The account of `acme.directory`: the stored one if it was made there, else a new one
    /// (stored before it is used).
    async fn account(&mut self, acme: &Acme) -> Result<Account, AcmeError> {
        if let Some((dir, a)) = &self.account {
            if *dir == acme.directory {
                return Ok(a.clone());
            }
        }
        let fail = |e: &instant_acme::Error| AcmeError::Account(describe(e));
        store::ensure_dir(&acme.storage)?;
        let builder = || match &acme.server_ca {
            Some(ca) => Account::builder_with_root(ca),
            None => Account::builder(),
        };
        let path = acme.account_path();
        let account = match store::read_account(&path)? {
            Some(stored) if stored.directory == acme.directory => {
                let a = builder()
                    .map_err(|e| fail(&e))?
                    .from_credentials(stored.credentials)
                    .await
                    .map_err(|e| fail(&e))?;
                info!(
                    account = a.id(),
                    "ACME account read from {}",
                    path.display()
                );
                a
            }
            other => {
                if let Some(old) = other {
                    warn!(old = %old.directory, new = %acme.directory,
                        "the stored ACME account is for another directory; making a new one");
                }
                let contact: Vec<&str> = acme.contact.iter().map(String::as_str).collect();
                let (a, credentials) = builder()
                    .map_err(|e| fail(&e))?
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        acme.directory.clone(),
                        None,
                    )
                    .await
                    .map_err(|e| fail(&e))?;
                store::write_account(
                    &path,
                    &StoredAccount {
                        directory: acme.directory.clone(),
                        credentials,
                    },
                )?;
                info!(
                    account = a.id(),
                    "ACME account made and stored in {}",
                    path.display()
                );
                a
            }
        };
        self.account = Some((acme.directory.clone(), account.clone()));
        Ok(account)
    }

    /// One order for `names`, its certificate written to `file`; the new `not_after`.
    async fn obtain(
        &mut self,
        acme: &Acme,
        names: &[String],
        file: &Path,
    ) -> Result<i64, AcmeError> {
        let account = self.account(acme).await?;
        let order_fail = |e: &instant_acme::Error| AcmeError::Order(describe(e));
        let ids: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .map_err(|e| order_fail(&e))?;
        let mut open = Open::default();
        let kind = match acme.challenge {
            AcmeChallenge::Http01 => ChallengeType::Http01,
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| order_fail(&e))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::Order(format!(
                        "authorization for {} is {other:?}",
                        authz.identifier()
                    )))
                }
            }
            let name = authz.identifier().to_string();
            let mut challenge =
                authz
                    .challenge(kind.clone())
                    .ok_or_else(|| AcmeError::Challenge {
                        name: name.clone(),
                        reason: format!(
                            "the server offers no {} challenge",
                            acme.challenge.as_str()
                        ),
                    })?;
            let key_auth = challenge.key_authorization();
            match acme.challenge {
                AcmeChallenge::Http01 => open.http(&challenge.token, key_auth.as_str()),
                AcmeChallenge::TlsAlpn01 => {
                    let cert = tls_alpn01_certificate(&name, key_auth.digest().as_ref()).map_err(
                        |reason| AcmeError::Challenge {
                            name: name.clone(),
                            reason,
                        },
                    )?;
                    open.tls_alpn(&name, Arc::new(cert));
                }
            }
            challenge
                .set_ready()
                .await
                .map_err(|e| AcmeError::Challenge {
                    name: name.clone(),
                    reason: describe(&e),
                })?;
        }
        let status = order
            .poll_ready(&RetryPolicy::default().timeout(Duration::from_secs(120)))
            .await
            .map_err(|e| order_fail(&e))?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::Order(problem_of(&mut order, status).await));
        }
        drop(open);
        let key_pem = order.finalize().await.map_err(|e| order_fail(&e))?;
        let chain_pem = order
            .poll_certificate(&RetryPolicy::default().timeout(Duration::from_secs(120)))
            .await
            .map_err(|e| order_fail(&e))?;
        // Checked as the watcher will check it, before it replaces a good file.
        let pem = format!("{chain_pem}\n{key_pem}");
        let chain = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AcmeError::Order(format!("the issued chain does not parse: {e}")))?;
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| AcmeError::Order(format!("the new key does not parse: {e}")))?;
        let loaded = crate::tls::certified(file, file, chain, key, SystemTime::now())
            .map_err(|e| AcmeError::Order(e.to_string()))?;
        store::write_private(file, pem.as_bytes())?;
        Ok(loaded.not_after)
    }
}

/// Why an order did not become ready: its own problem, else its authorizations' challenges'.
async fn problem_of(order: &mut instant_acme::Order, status: OrderStatus) -> String {
    let mut out = format!("order is {status:?}");
    if let Some(p) = &order.state().error {
        out.push_str(&format!("; {}", problem_text(p)));
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        for c in &authz.challenges {
            if let Some(p) = &c.error {
                out.push_str(&format!(
                    "; {} {:?}: {}",
                    authz.identifier(),
                    c.r#type,
                    problem_text(p)
                ));
            }
        }
    }
    out
}

/// An error of the ACME client; the server's problem document in full when it sent one.
fn describe(e: &instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => format!("problem document {}", problem_text(p)),
        other => other.to_string(),
    }
}

/// The problem document as the server sent it (RFC 7807: type, detail, status).
fn problem_text(p: &instant_acme::Problem) -> String {
    let subproblems: Vec<String> = p.subproblems.iter().map(|s| format!("{s:?}")).collect();
    serde_json::json!({
        "type": p.r#type,
        "detail": p.detail,
        "status": p.status,
        "subproblems": subproblems,
    })
    .to_string()
}

/// The challenge answers of one order, withdrawn when it is dropped (also on failure).
#[derive(Default)]
struct Open {
    tokens: Vec<String>,
    names: Vec<String>,
}

impl Open {
    fn http(&mut self, token: &str, key_authorization: &str) {
        challenges().add_http01(token, key_authorization);
        self.tokens.push(token.to_string());
    }

    fn tls_alpn(&mut self, name: &str, cert: Arc<rustls::sign::CertifiedKey>) {
        challenges().add_tls_alpn01(name, cert);
        self.names.push(name.to_string());
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        for t in &self.tokens {
            challenges().remove_http01(t);
        }
        for n in &self.names {
            challenges().remove_tls_alpn01(n);
        }
    }
}

/// When the certificate stored at `file` should be renewed: now if it is missing, unusable,
/// expired or not for all of `names`; else when `percent` of its lifetime is left.
pub fn due(file: &Path, names: &[String], percent: u32, now: SystemTime) -> SystemTime {
    let Ok(stored) = crate::tls::load_cert_and_key(file, file, now) else {
        return now;
    };
    if !names.iter().all(|n| stored.dns_names.contains(n)) {
        return now;
    }
    renew_at(stored.not_before, stored.not_after, percent)
}

/// `percent` of the lifetime before `not_after` (Unix seconds).
pub fn renew_at(not_before: i64, not_after: i64, percent: u32) -> SystemTime {
    let lifetime = not_after.saturating_sub(not_before).max(0);
    let ahead = lifetime.saturating_mul(i64::from(percent)) / 100;
    let at = not_after.saturating_sub(ahead).max(0) as u64;
    SystemTime::UNIX_EPOCH + Duration::from_secs(at)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_when_the_share_of_lifetime_is_left() {
        let at = |nb, na, p| unix(renew_at(nb, na, p));
        // 90 days from 0, a third left: day 60.
        assert_eq!(at(0, 90 * 86400, 33), 90 * 86400 - 90 * 86400 * 33 / 100);
        assert_eq!(at(1000, 1030, 33), 1030 - 9);
        // A certificate that is not valid for any time is due at once.
        assert_eq!(at(2000, 1000, 33), 1000);
    }

    #[test]
    fn a_missing_or_foreign_stored_certificate_is_due_now() {
        let now = SystemTime::now();
        let missing = Path::new("/nonexistent/vipgate-acme.pem");
        assert_eq!(due(missing, &["a.test".into()], 33, now), now);
    }

    #[test]
    fn back_off_doubles_to_the_ceiling() {
        let acme = Acme {
            directory: "https://acme.test/dir".into(),
            contact: vec![],
            storage: "/tmp/x".into(),
            challenge: AcmeChallenge::Http01,
            server_ca: None,
            renew_remaining_percent: 33,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(5),
        };
        let mut t = Task::default();
        let waits: Vec<u64> = (0..5)
            .map(|_| {
                let b = t.failed("a.test", &acme);
                b.until
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .as_secs()
            })
            .collect();
        // 1, 2, 4, 5, 5 s, each plus under a tenth of jitter (whole seconds, rounded down).
        assert!(waits[0] <= 1 && (1..=2).contains(&waits[1]) && (3..=4).contains(&waits[2]));
        assert!(waits[3] >= 4 && waits[3] <= 5 && waits[4] >= 4 && waits[4] <= 5);
    }
}
