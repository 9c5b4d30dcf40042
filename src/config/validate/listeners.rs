//! `[[listener]]`, `[[certificate]]` and `[admin]`: the sockets and what they need (TLS
//! settings, certificate files read and checked here), and that no two binds overlap.

use super::*;

/// `[[certificate]]`: each file read and checked now, so `check` refuses a bad one with its
/// reason; names unique across certificates; at most one `default`.
pub(super) fn validate_certificates(
    raw: &[Spanned<RawCertificate>],
    base: &Path,
    acme: Option<&Acme>,
) -> Result<Vec<Certificate>> {
    let mut out: Vec<Certificate> = Vec::with_capacity(raw.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, c) in raw.iter().enumerate() {
        let table = c.span();
        let c = c.get_ref();
        let certificate = match &c.acme {
            Some(a) if !matches!(a.get_ref(), RawAcmeNames::On(false)) => {
                acme_certificate(c, a, acme)?
            }
            _ => file_certificate(c, table.clone(), base)?,
        };
        let serves = certificate.serves();
        if serves.is_empty() {
            return Err(Located::new(
                c.cert.as_ref().map_or(table.clone(), Spanned::span),
                format!(
                    "{}: the certificate has no DNS subjectAltName: set names = [...]",
                    certificate.cert.display()
                ),
            ));
        }
        for name in serves {
            if let Some(first) = seen.insert(name.clone(), i) {
                return Err(Located::new(
                    table,
                    format!(
                        "name {name} is served by two certificates ({} and {})",
                        out[first].cert.display(),
                        certificate.cert.display()
                    ),
                ));
            }
        }
        if certificate.default && out.iter().any(|o| o.default) {
            let span = c.default.as_ref().map_or(table.clone(), Spanned::span);
            return Err(Located::new(
                span,
                "only one [[certificate]] may be the default",
            ));
        }
        out.push(certificate);
    }
    Ok(out)
}

/// A `[[certificate]]` with `acme`: its file is in the `[acme]` storage.
fn acme_certificate(
    c: &RawCertificate,
    a: &Spanned<RawAcmeNames>,
    acme: Option<&Acme>,
) -> Result<Certificate> {
    let Some(acme) = acme else {
        return Err(Located::new(
            a.span(),
            "acme needs an [acme] table (the ACME server and where to store the certificate)",
        ));
    };
    if let Some(f) = c.cert.as_ref().or(c.key.as_ref()) {
        return Err(Located::new(
            f.span(),
            "cert and key are not given with acme: the certificate is obtained and stored by vipgate",
        ));
    }
    let names = acme_names(c, a)?;
    let path = acme.cert_path(&names[0].to_string());
    let loaded = acme_loaded(&path, &names)?;
    Ok(Certificate {
        cert: path.clone(),
        key: path,
        names: Some(names),
        default: c.default.as_ref().is_some_and(|d| *d.get_ref()),
        loaded,
        acme: true,
    })
}

/// A `[[certificate]]` from `cert` and `key` files, read and checked now.
fn file_certificate(
    c: &RawCertificate,
    table: std::ops::Range<usize>,
    base: &Path,
) -> Result<Certificate> {
    let now = std::time::SystemTime::now();
    let (Some(cert_key), Some(key_key)) = (&c.cert, &c.key) else {
        return Err(Located::new(
            c.cert
                .as_ref()
                .or(c.key.as_ref())
                .map_or(table, Spanned::span),
            "a [[certificate]] needs cert and key files (or acme = true with [acme])",
        ));
    };
    let cert = resolve(base, cert_key)?;
    let key = resolve(base, key_key)?;
    let loaded = crate::tls::load_cert_and_key(&cert, &key, now).map_err(|e| {
        // The certificate file is read first: an error about it points at `cert`.
        let span = match e {
            crate::tls::TlsError::KeyMismatch { .. } => key_key.span(),
            crate::tls::TlsError::Invalid { ref path, .. }
            | crate::tls::TlsError::Read { ref path, .. }
                if *path == key && *path != cert =>
            {
                key_key.span()
            }
            _ => cert_key.span(),
        };
        Located::new(span, e.to_string())
    })?;
    let names = match &c.names {
        None => None,
        Some(list) => {
            if list.is_empty() {
                return Err(Located::new(
                    table,
                    "names is empty: list the names, or leave it out to use the certificate's",
                ));
            }
            let mut names = Vec::with_capacity(list.len());
            for n in list {
                let name = parse_host_name(n)?;
                if name == HostName::Wildcard(String::new()) {
                    return Err(Located::new(
                        n.span(),
                        "a certificate cannot be chosen for \"*\": mark it default = true instead",
                    ));
                }
                names.push(name);
            }
            Some(names)
        }
    };
    Ok(Certificate {
        cert,
        key,
        names,
        default: c.default.as_ref().is_some_and(|d| *d.get_ref()),
        loaded,
        acme: false,
    })
}

pub(super) fn validate_listener_tls(l: &RawListener, base: &Path) -> Result<ListenerTls> {
    let sni_fallback = match l.sni_fallback.as_ref() {
        None => SniFallback::Default,
        Some(v) => match v.get_ref().as_str() {
            "default" => SniFallback::Default,
            "refuse" => SniFallback::Refuse,
            other => {
                return Err(Located::new(
                    v.span(),
                    format!("sni_fallback {other:?} is not \"default\" or \"refuse\""),
                ))
            }
        },
    };
    let min_version = match l.min_tls_version.as_ref() {
        None => TlsVersion::Tls12,
        Some(v) => match v.get_ref().as_str() {
            "1.2" => TlsVersion::Tls12,
            "1.3" => TlsVersion::Tls13,
            other => {
                return Err(Located::new(
                    v.span(),
                    format!("min_tls_version {other:?} is not \"1.2\" or \"1.3\""),
                ))
            }
        },
    };
    let required = match l.client_auth.as_ref() {
        None => true,
        Some(v) => match v.get_ref().as_str() {
            "required" => true,
            "optional" => false,
            other => {
                return Err(Located::new(
                    v.span(),
                    format!("client_auth {other:?} is not \"required\" or \"optional\""),
                ))
            }
        },
    };
    let client_auth = match l.client_ca.as_ref() {
        None => {
            if let Some(v) = l.client_auth.as_ref() {
                return Err(Located::new(
                    v.span(),
                    "client_auth needs client_ca = \"CA.pem\" (the CAs client certificates are checked against)",
                ));
            }
            None
        }
        Some(ca) => {
            let path = resolve(base, ca)?;
            let roots = crate::tls::load_roots(&path)
                .map_err(|e| Located::new(ca.span(), e.to_string()))?;
            Some(ClientAuth {
                ca: path,
                roots: std::sync::Arc::new(roots),
                required,
            })
        }
    };
    Ok(ListenerTls {
        sni_fallback,
        min_version,
        client_auth,
    })
}

/// Whether two listening addresses would take the same port (equal, or one is the wildcard
/// address of the same family and port).
pub(super) fn binds_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

pub(super) fn validate_admin(
    raw: &Spanned<RawAdmin>,
    listeners: &[Listener],
) -> Result<Option<Admin>> {
    let a = raw.get_ref();
    let bind = match &a.bind {
        Some(b) => parse_socket_addr(b, "admin bind")?,
        None => DEFAULT_ADMIN_BIND,
    };
    if !a.enabled.unwrap_or(true) {
        return Ok(None);
    }
    if let Some(l) = listeners.iter().find(|l| binds_overlap(l.bind, bind)) {
        let span = a.bind.as_ref().map_or(raw.span(), Spanned::span);
        return Err(Located::new(
            span,
            format!(
                "the admin listener {bind} takes the port of [[listener]] {}",
                l.bind
            ),
        ));
    }
    Ok(Some(Admin { bind }))
}

pub(super) fn validate_listeners(
    raw: &[Spanned<RawListener>],
    pool_ids: &PoolIds,
    base: &Path,
) -> Result<Vec<Listener>> {
    let mut listeners: Vec<Listener> = Vec::with_capacity(raw.len());
    for l in raw {
        let l = l.get_ref();
        let bind = parse_socket_addr(&l.bind, "listener bind")?;
        if bind.port() == 0 {
            return Err(Located::new(
                l.bind.span(),
                format!("listener bind {bind} needs a port"),
            ));
        }
        if listeners.iter().any(|seen| seen.bind == bind) {
            return Err(Located::new(
                l.bind.span(),
                format!("listener {bind} is listed twice"),
            ));
        }
        let protocol = match l.protocol.as_ref().map(|p| (p, p.get_ref().as_str())) {
            None | Some((_, "http" | "https")) => {
                if let Some(p) = l.pool.as_ref().or(l.send_proxy_protocol.as_ref()) {
                    return Err(Located::new(
                        p.span(),
                        "pool and send_proxy_protocol apply only to protocol = \"tcp\" (http and https listeners route by [[host]])",
                    ));
                }
                if p_is(&l.protocol, "https") {
                    Protocol::Https
                } else {
                    Protocol::Http
                }
            }
            Some((p, "tcp")) => {
                let pool = l.pool.as_ref().ok_or_else(|| {
                    Located::new(p.span(), "a tcp listener needs pool = \"NAME\"")
                })?;
                let send_proxy_v2 = match l.send_proxy_protocol.as_ref() {
                    None => false,
                    Some(v) if v.get_ref() == "v2" => true,
                    Some(v) => {
                        return Err(Located::new(
                            v.span(),
                            format!(
                                "send_proxy_protocol {:?} is not supported (supported: \"v2\")",
                                v.get_ref()
                            ),
                        ))
                    }
                };
                Protocol::Tcp {
                    pool: lookup_pool(pool, pool_ids, "listener")?,
                    send_proxy_v2,
                }
            }
            Some((p, other)) => {
                return Err(Located::new(
                    p.span(),
                    format!(
                    "unknown listener protocol {other:?} (supported: \"http\", \"https\", \"tcp\")"
                ),
                ))
            }
        };
        let tls_keys = [
            &l.sni_fallback,
            &l.min_tls_version,
            &l.client_ca,
            &l.client_auth,
        ];
        let tls = if protocol == Protocol::Https {
            Some(validate_listener_tls(l, base)?)
        } else {
            if let Some(k) = tls_keys.iter().find_map(|k| k.as_ref()) {
                return Err(Located::new(
                    k.span(),
                    "sni_fallback, min_tls_version, client_ca and client_auth apply only to protocol = \"https\"",
                ));
            }
            None
        };
        let redirect_https = match &l.redirect_https {
            None => None,
            Some(v) if protocol != Protocol::Http => {
                return Err(Located::new(
                    v.span(),
                    "redirect_https applies only to protocol = \"http\"",
                ))
            }
            Some(v) => match *v.get_ref() {
                301 => Some(301),
                308 => Some(308),
                n => {
                    return Err(Located::new(
                        v.span(),
                        format!("redirect_https = {n}: use 301 (Moved Permanently) or 308 (Permanent Redirect, keeps the method)"),
                    ))
                }
            },
        };
        let http2 = match &l.http2 {
            Some(v) if !protocol.is_http() => {
                return Err(Located::new(
                    v.span(),
                    "http2 applies only to protocol = \"http\" or \"https\"",
                ))
            }
            Some(v) => *v.get_ref(),
            None => protocol.is_http(),
        };
        listeners.push(Listener {
            bind,
            http2,
            protocol,
            accept_proxy_protocol: l.accept_proxy_protocol.unwrap_or(false),
            tls,
            redirect_https,
            max_connections: bounded(
                l.max_connections.as_ref(),
                1,
                defaults::MAX_CONNECTIONS_LIMIT,
                "max_connections",
            )?
            .map_or(defaults::MAX_CONNECTIONS, |n| n as usize),
        });
    }
    Ok(listeners)
}
