//! `[acme]` and the `acme` key of `[[certificate]]`: the ACME server, account storage and
//! challenge, and which certificates are ordered from it. Nothing is written here (`check`
//! writes no file): a stored certificate is read if it exists, else a placeholder stands in.

use super::*;
use crate::config::schema::{RawAcme, RawAcmeNames};

/// `[acme]`, with the listener its challenge needs.
pub(super) fn validate_acme(a: &Spanned<RawAcme>, listeners: &[Listener]) -> Result<Acme> {
    let table = a.span();
    let a = a.get_ref();
    let directory = match &a.directory {
        None => DEFAULT_ACME_DIRECTORY.to_string(),
        Some(d) => {
            let text = d.get_ref().trim();
            // RFC 8555 section 6.1: all ACME communication is over HTTPS.
            if !text.starts_with("https://") || text.len() <= "https://".len() {
                return Err(Located::new(
                    d.span(),
                    format!("directory {text:?} is not an https:// URL (RFC 8555 requires HTTPS)"),
                ));
            }
            text.to_string()
        }
    };
    let mut contact = Vec::new();
    for c in a.contact.as_deref().unwrap_or_default() {
        let text = c.get_ref().trim();
        let mail = text.strip_prefix("mailto:").unwrap_or(text);
        if !mail.contains('@') || mail.contains(char::is_whitespace) {
            return Err(Located::new(
                c.span(),
                format!("contact {text:?} is not an e-mail address (like \"ops@example.com\")"),
            ));
        }
        contact.push(format!("mailto:{mail}"));
    }
    let storage = match &a.storage {
        None => std::path::PathBuf::from(DEFAULT_ACME_STORAGE),
        Some(s) if s.get_ref().trim().starts_with('/') => s.get_ref().trim().into(),
        Some(s) => {
            return Err(Located::new(
                s.span(),
                "storage must be an absolute directory (it holds the account key)",
            ))
        }
    };
    let challenge = match a.challenge.as_ref() {
        None => AcmeChallenge::Http01,
        Some(c) => match c.get_ref().as_str() {
            "http-01" => AcmeChallenge::Http01,
            "tls-alpn-01" => AcmeChallenge::TlsAlpn01,
            other => {
                return Err(Located::new(
                    c.span(),
                    format!("challenge {other:?} is not \"http-01\" or \"tls-alpn-01\" (dns-01 is not supported)"),
                ))
            }
        },
    };
    let needs = |p: Protocol| listeners.iter().any(|l| l.protocol == p);
    match challenge {
        AcmeChallenge::Http01 if !needs(Protocol::Http) => {
            return Err(Located::new(
                a.challenge.as_ref().map_or(table, Spanned::span),
                "challenge http-01 needs an http listener (on port 80) to answer it",
            ))
        }
        AcmeChallenge::TlsAlpn01 if !needs(Protocol::Https) => {
            return Err(Located::new(
                a.challenge.as_ref().map_or(table, Spanned::span),
                "challenge tls-alpn-01 needs an https listener (on port 443) to answer it",
            ))
        }
        _ => {}
    }
    let server_ca = match &a.server_ca {
        None => None,
        Some(s) => {
            let path = resolve(Path::new("/"), s)?;
            crate::tls::load_roots(&path).map_err(|e| Located::new(s.span(), e.to_string()))?;
            Some(path)
        }
    };
    let renew_remaining_percent = count(
        a.renew_remaining_percent.as_ref(),
        1,
        90,
        "renew_remaining_percent",
        DEFAULT_ACME_RENEW_REMAINING_PERCENT,
    )?;
    let retry_initial = ms(
        a.retry_initial_ms.as_ref(),
        100,
        "retry_initial_ms",
        DEFAULT_ACME_RETRY_INITIAL,
    )?;
    let retry_max = ms(
        a.retry_max_ms.as_ref(),
        100,
        "retry_max_ms",
        DEFAULT_ACME_RETRY_MAX,
    )?;
    if retry_max < retry_initial {
        return Err(Located::new(
            a.retry_max_ms.as_ref().map_or(table, Spanned::span),
            "retry_max_ms is below retry_initial_ms",
        ));
    }
    if let Some(t) = &a.terms_of_service_agreed {
        if !*t.get_ref() {
            return Err(Located::new(
                t.span(),
                "terms_of_service_agreed = false: an ACME account needs the server's terms agreed (leave it out or set true)",
            ));
        }
    }
    Ok(Acme {
        directory,
        contact,
        storage,
        challenge,
        server_ca,
        renew_remaining_percent,
        retry_initial,
        retry_max,
    })
}

/// The names of an `acme` certificate: `acme = [..]` or `acme = true` with `names`. Exact
/// names only: a wildcard needs DNS-01.
pub(super) fn acme_names(
    c: &RawCertificate,
    acme: &Spanned<RawAcmeNames>,
) -> Result<Vec<HostName>> {
    let listed: Vec<Spanned<String>>;
    let list = match (acme.get_ref(), &c.names) {
        (RawAcmeNames::On(false), _) => return Ok(Vec::new()),
        (RawAcmeNames::On(true), Some(names)) => names,
        (RawAcmeNames::On(true), None) => {
            return Err(Located::new(
                acme.span(),
                "acme = true needs names = [...] (or write acme = [\"NAME\", ...])",
            ))
        }
        (RawAcmeNames::Names(_), Some(names)) => {
            let span = names.first().map_or(acme.span(), Spanned::span);
            return Err(Located::new(
                span,
                "names are given twice: in acme = [...] and in names; keep one",
            ));
        }
        (RawAcmeNames::Names(list), None) => {
            listed = list
                .iter()
                .map(|n| Spanned::new(acme.span(), n.clone()))
                .collect();
            &listed
        }
    };
    if list.is_empty() {
        return Err(Located::new(
            acme.span(),
            "acme names are empty: list the names to order",
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for n in list {
        match parse_host_name(n)? {
            HostName::Exact(name) => out.push(HostName::Exact(name)),
            HostName::Wildcard(_) => {
                return Err(Located::new(
                    n.span(),
                    format!("{:?}: a wildcard certificate needs the dns-01 challenge, which vipgate does not answer", n.get_ref()),
                ))
            }
        }
    }
    Ok(out)
}

/// What an `acme` certificate is served with now: the stored certificate when it is there,
/// good and for these names, else a placeholder.
pub(super) fn acme_loaded(path: &Path, names: &[HostName]) -> Result<crate::tls::LoadedCert> {
    let now = std::time::SystemTime::now();
    let wanted: Vec<String> = names.iter().map(ToString::to_string).collect();
    if let Ok(stored) = crate::tls::load_cert_and_key(path, path, now) {
        if wanted.iter().all(|n| stored.dns_names.contains(n)) {
            return Ok(stored);
        }
    }
    crate::tls::placeholder(path, &wanted, now).map_err(|e| Located::new(0..0, e.to_string()))
}
