//! `[pool.NAME]` (backends by address or name, balancing, TLS to backends, health checks,
//! outlier detection) and `[resolver]`.

use super::*;

/// A day: a longer TTL ceiling or grace is surely a typo.
pub(super) const MAX_RESOLVER_MS: i64 = 86_400_000;

/// `[resolver]`: name servers as `IP` (port 53) or `IP:PORT`; the floor at most the ceiling.
pub(super) fn validate_resolver(raw: &Spanned<RawResolver>) -> Result<ResolverSettings> {
    use crate::config::model::defaults::*;
    let r = raw.get_ref();
    let mut nameservers = Vec::new();
    for n in r.nameservers.iter().flatten() {
        let text = n.get_ref().trim();
        let addr = text
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| text.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
            .filter(|a| a.port() != 0 && !a.ip().is_unspecified())
            .ok_or_else(|| {
                Located::new(
                    n.span(),
                    format!("name server {text:?} is not an IP address, with or without a port (like 192.0.2.53 or 192.0.2.53:5353)"),
                )
            })?;
        nameservers.push(addr);
    }
    let ms = |v: Option<&Spanned<i64>>, min: i64, key: &str, default: Duration| {
        Ok::<_, Located>(
            bounded(v, min, MAX_RESOLVER_MS, key)?
                .map_or(default, |n| Duration::from_millis(n as u64)),
        )
    };
    let ttl_floor = ms(
        r.ttl_floor_ms.as_ref(),
        100,
        "ttl_floor_ms",
        RESOLVER_TTL_FLOOR,
    )?;
    let ttl_ceiling = ms(
        r.ttl_ceiling_ms.as_ref(),
        100,
        "ttl_ceiling_ms",
        RESOLVER_TTL_CEILING.max(ttl_floor),
    )?;
    if ttl_ceiling < ttl_floor {
        return Err(Located::new(
            r.ttl_ceiling_ms.as_ref().map_or(raw.span(), Spanned::span),
            format!(
                "ttl_ceiling_ms = {} is below ttl_floor_ms = {}",
                ttl_ceiling.as_millis(),
                ttl_floor.as_millis()
            ),
        ));
    }
    let family = match r.family.as_ref().map(|f| (f, f.get_ref().as_str())) {
        None | Some((_, "any")) => Family::Any,
        Some((_, "ipv4")) => Family::Ipv4,
        Some((_, "ipv6")) => Family::Ipv6,
        Some((f, other)) => {
            return Err(Located::new(
                f.span(),
                format!("family {other:?} is not \"any\", \"ipv4\" or \"ipv6\""),
            ))
        }
    };
    Ok(ResolverSettings {
        nameservers,
        timeout: ms(r.timeout_ms.as_ref(), 10, "timeout_ms", RESOLVER_TIMEOUT)?,
        attempts: count(r.attempts.as_ref(), 1, 10, "attempts", RESOLVER_ATTEMPTS)?,
        ttl_floor,
        ttl_ceiling,
        grace: ms(r.grace_ms.as_ref(), 0, "grace_ms", RESOLVER_GRACE)?,
        family,
    })
}

pub(super) fn validate_pools(
    raw: &BTreeMap<Spanned<String>, Spanned<RawPool>>,
    base: &Path,
) -> Result<(Vec<Pool>, PoolIds)> {
    let mut pools = Vec::with_capacity(raw.len());
    let mut ids = HashMap::with_capacity(raw.len());
    for (name, pool) in raw {
        let pool: &RawPool = pool.get_ref();
        let pool_name = name.get_ref();
        if !is_pool_name(pool_name) {
            return Err(Located::new(
                name.span(),
                format!("pool name {pool_name:?} may use only letters, digits, '-' and '_'"),
            ));
        }
        let (backends, names) = parse_backends(pool, pool_name, name.span())?;
        let balance = parse_balance(pool)?;
        let health = pool.health.as_ref().map(parse_health).transpose()?;
        let outlier = parse_outlier(pool.outlier.as_ref().map(Spanned::get_ref))?;
        let panic_threshold_percent = count(
            pool.panic_threshold_percent.as_ref(),
            0,
            100,
            "panic_threshold_percent",
            u32::from(crate::config::model::defaults::PANIC_THRESHOLD_PERCENT),
        )? as u8;
        let protocol = match pool.protocol.as_ref().map(|p| (p, p.get_ref().as_str())) {
            None | Some((_, "http1")) => BackendProtocol::Http1,
            Some((_, "http2")) => BackendProtocol::Http2,
            Some((p, other)) => {
                return Err(Located::new(
                    p.span(),
                    format!("protocol {other:?} is not \"http1\" or \"http2\""),
                ))
            }
        };
        let tls = pool
            .tls
            .as_ref()
            .map(|t| parse_pool_tls(t, pool_name, base, protocol))
            .transpose()?;
        ids.insert(pool_name.clone(), PoolId(pools.len()));
        pools.push(Pool {
            name: pool_name.clone(),
            backends,
            names,
            balance,
            health,
            outlier,
            panic_threshold_percent,
            tls,
            protocol,
        });
    }
    Ok((pools, ids))
}

pub(super) const MAX_WEIGHT: i64 = 1000;

/// ALPN ids vipgate cannot speak to a backend of an `http1` pool.
pub(super) const UNSPOKEN_ALPN: [&str; 3] = ["h2", "h2c", "h3"];

/// `[pool.NAME.tls]`: reads and checks every file (a bad one refuses the whole file, at `check`
/// and on reload alike) and builds the pool's rustls client configuration. Relative paths are
/// taken from the directory of the configuration file.
pub(super) fn parse_pool_tls(
    t: &Spanned<RawPoolTls>,
    pool: &str,
    base: &Path,
    protocol: BackendProtocol,
) -> Result<PoolTls> {
    use crate::tls::{self, client, TlsError};
    let raw = t.get_ref();
    let file = |s: &Spanned<String>, key: &str| -> Result<std::path::PathBuf> {
        let text = s.get_ref().trim();
        if text.is_empty() {
            return Err(Located::new(
                s.span(),
                format!("{key} is empty: name a PEM file"),
            ));
        }
        Ok(base.join(text))
    };
    let refused = |span: std::ops::Range<usize>, e: TlsError| {
        Located::new(span, format!("pool {pool:?}: {e}"))
    };
    let insecure = raw
        .insecure_skip_verify
        .as_ref()
        .is_some_and(|v| *v.get_ref());
    let (ca, roots) = match (&raw.ca, insecure) {
        (Some(ca), false) => {
            let path = file(ca, "ca")?;
            let roots = tls::load_roots(&path).map_err(|e| refused(ca.span(), e))?;
            (Some(path), Some(std::sync::Arc::new(roots)))
        }
        (None, true) => (None, None),
        (Some(ca), true) => {
            return Err(Located::new(
                ca.span(),
                format!("pool {pool:?}: ca and insecure_skip_verify = true exclude each other (drop one)"),
            ))
        }
        (None, false) => {
            return Err(Located::new(
                t.span(),
                format!("[pool.{pool}.tls] needs ca = \"FILE\" (the CA bundle that signed the backends' certificates), or insecure_skip_verify = true to verify nothing"),
            ))
        }
    };
    let server_name = match &raw.server_name {
        None => None,
        Some(n) => {
            let text = n.get_ref().trim().to_ascii_lowercase();
            let name = rustls_pki_types::ServerName::try_from(text.clone())
                .ok()
                .filter(|_| !text.is_empty() && !text.starts_with("*."));
            Some(name.ok_or_else(|| {
                Located::new(
                    n.span(),
                    format!(
                        "server_name {:?} is not a DNS name or an IP address",
                        n.get_ref()
                    ),
                )
            })?)
        }
    };
    let client_cert = match (&raw.cert, &raw.key) {
        (None, None) => None,
        (Some(c), Some(k)) => {
            let (cert_path, key_path) = (file(c, "cert")?, file(k, "key")?);
            let loaded =
                tls::load_cert_and_key(&cert_path, &key_path, std::time::SystemTime::now())
                    .map_err(|e| {
                        let span = match &e {
                            TlsError::Read { path, .. } | TlsError::Invalid { path, .. }
                                if *path == key_path =>
                            {
                                k.span()
                            }
                            TlsError::KeyMismatch { .. } => k.span(),
                            _ => c.span(),
                        };
                        refused(span, e)
                    })?;
            Some((
                ClientCertFiles {
                    cert: cert_path,
                    key: key_path,
                    subject: loaded.subject,
                    not_after: loaded.not_after,
                },
                loaded.key,
            ))
        }
        (Some(c), None) => {
            return Err(Located::new(
                c.span(),
                format!("pool {pool:?}: cert needs key = \"FILE\" (its private key)"),
            ))
        }
        (None, Some(k)) => {
            return Err(Located::new(
                k.span(),
                format!("pool {pool:?}: key needs cert = \"FILE\" (the client certificate)"),
            ))
        }
    };
    let mut alpn = Vec::new();
    for a in raw.alpn.iter().flatten() {
        let id = a.get_ref();
        if id.is_empty() || id.len() > 255 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Located::new(
                a.span(),
                format!("alpn {id:?} is not a protocol id (1 to 255 visible characters, such as \"http/1.1\")"),
            ));
        }
        match protocol {
            BackendProtocol::Http1 if UNSPOKEN_ALPN.contains(&id.as_str()) => {
                return Err(Located::new(
                    a.span(),
                    format!("alpn {id:?}: this pool speaks HTTP/1.1 to its backends (offer \"http/1.1\", or set protocol = \"http2\")"),
                ));
            }
            BackendProtocol::Http2 if id != "h2" => {
                return Err(Located::new(
                    a.span(),
                    format!("alpn {id:?}: a protocol = \"http2\" pool offers \"h2\" only"),
                ));
            }
            _ => {}
        }
        alpn.push(id.clone());
    }
    if protocol == BackendProtocol::Http2 && alpn.is_empty() {
        // The backend must know before the first byte which protocol follows.
        alpn.push("h2".to_owned());
    }
    let verify = match &roots {
        Some(r) => client::ServerVerify::Roots(r.clone()),
        None => client::ServerVerify::Insecure,
    };
    let client_key = client_cert.as_ref().map(|(_, k)| k.clone());
    let client_config =
        client::backend_config(pool, verify, client_key.clone(), &alpn).map_err(|e| {
            Located::new(
                t.span(),
                format!("pool {pool:?}: TLS settings refused: {e}"),
            )
        })?;
    Ok(PoolTls {
        ca,
        server_name,
        client_cert: client_cert.map(|(files, _)| files),
        alpn,
        insecure_skip_verify: insecure,
        client_config,
        roots,
        client_key,
    })
}

/// A pool's `backends` and `srv`: addresses as they are, names to be resolved. Refuses a pool
/// with neither, and one listing an address or a name twice.
pub(super) fn parse_backends(
    pool: &RawPool,
    pool_name: &str,
    name_span: std::ops::Range<usize>,
) -> Result<(Vec<Backend>, Vec<NamedBackend>)> {
    let mut backends: Vec<Backend> = Vec::new();
    let mut names: Vec<NamedBackend> = Vec::new();
    for b in pool.backends.iter().flat_map(|l| l.get_ref()) {
        let twice = |what: String| {
            Located::new(
                b.span(),
                format!("backend {what} is listed twice in pool {pool_name:?}"),
            )
        };
        match parse_backend(b, pool_name)? {
            Parsed::Address(backend) => {
                if backends.iter().any(|seen| seen.address == backend.address) {
                    return Err(twice(backend.address.to_string()));
                }
                backends.push(backend);
            }
            Parsed::Name(named) => {
                if names.iter().any(|seen| seen.lookup == named.lookup) {
                    return Err(twice(named.lookup.to_string()));
                }
                names.push(named);
            }
        }
    }
    if let Some(srv) = &pool.srv {
        let text = srv.get_ref().trim().to_ascii_lowercase();
        if !is_dns_name(&text) {
            return Err(Located::new(
                srv.span(),
                format!("srv {text:?} is not a DNS name (like _http._tcp.web.default.svc.cluster.local)"),
            ));
        }
        names.push(NamedBackend {
            lookup: Lookup::Srv { name: text },
            weight: 1,
        });
    }
    if backends.is_empty() && names.is_empty() {
        let span = pool.backends.as_ref().map_or(name_span, Spanned::span);
        return Err(Located::new(
            span,
            format!("pool {pool_name:?} has no backends (list \"IP:PORT\" or \"NAME:PORT\" in backends, or name an srv record)"),
        ));
    }
    Ok((backends, names))
}

pub(super) enum Parsed {
    Address(Backend),
    Name(NamedBackend),
}

/// A DNS name as a backend may give it: dot-separated labels of letters, digits, '-' and '_'
/// (SRV owner names start with '_'), at most 63 bytes each and 253 in all, an optional final
/// dot; at least one letter, so that no malformed IP address passes for a name.
pub(super) fn is_dns_name(text: &str) -> bool {
    let text = text.strip_suffix('.').unwrap_or(text);
    !text.is_empty()
        && text.len() <= 253
        && text.bytes().any(|b| b.is_ascii_alphabetic())
        && text.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

pub(super) fn parse_backend(b: &Spanned<RawBackend>, pool: &str) -> Result<Parsed> {
    let (text, weight) = match b.get_ref() {
        RawBackend::Address(a) => (a.as_str(), 1),
        RawBackend::Weighted(w) => (w.address.as_str(), w.weight.unwrap_or(1)),
    };
    let text = text.trim();
    if !(1..=MAX_WEIGHT).contains(&weight) {
        return Err(Located::new(
            b.span(),
            format!("backend {text} in pool {pool:?}: weight {weight} is out of range (1 to {MAX_WEIGHT})"),
        ));
    }
    let weight = weight as u32;
    if let Ok(address) = text.parse::<SocketAddr>() {
        if address.port() == 0 || address.ip().is_unspecified() {
            return Err(Located::new(
                b.span(),
                format!("backend {address} needs a concrete address and a port"),
            ));
        }
        return Ok(Parsed::Address(Backend {
            address,
            weight,
            name: None,
        }));
    }
    let named = text.rsplit_once(':').and_then(|(host, port)| {
        let host = host.to_ascii_lowercase();
        let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
        is_dns_name(&host).then_some((host, port))
    });
    match named {
        Some((name, port)) => Ok(Parsed::Name(NamedBackend {
            lookup: Lookup::Host { name, port },
            weight,
        })),
        None => Err(Located::new(
            b.span(),
            format!("backend {text:?} is not an address or a DNS name with a port (like 192.0.2.21:8080, [2001:db8::1]:80 or web.default.svc.cluster.local:80)"),
        )),
    }
}

pub(super) fn parse_balance(pool: &RawPool) -> Result<Balance> {
    let algo = pool.balance.as_ref();
    let balance = match algo.map(|a| a.get_ref().as_str()) {
        None | Some("round_robin") => Balance::RoundRobin,
        Some("least_request") => Balance::LeastRequest,
        Some("maglev") => {
            let key = pool.hash_key.as_ref().ok_or_else(|| {
                Located::new(
                    algo.map_or(0..0, Spanned::span),
                    "balance = \"maglev\" needs a hash_key (\"client_ip\", \"header:NAME\" or \"cookie:NAME\")",
                )
            })?;
            Balance::Maglev(parse_hash_key(key)?)
        }
        Some(other) => {
            return Err(Located::new(
                algo.map_or(0..0, Spanned::span),
                format!("unknown balance {other:?} (supported: \"round_robin\", \"least_request\", \"maglev\")"),
            ))
        }
    };
    if let (Some(key), false) = (&pool.hash_key, matches!(balance, Balance::Maglev(_))) {
        return Err(Located::new(
            key.span(),
            "hash_key applies only to balance = \"maglev\"",
        ));
    }
    Ok(balance)
}

pub(super) fn parse_hash_key(key: &Spanned<String>) -> Result<HashKey> {
    let text = key.get_ref().trim();
    let token_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && b != b':' && b != b';' && b != b'=')
    };
    if text == "client_ip" {
        return Ok(HashKey::ClientIp);
    }
    if let Some(h) = text.strip_prefix("header:").filter(|h| token_ok(h)) {
        return Ok(HashKey::Header(h.to_ascii_lowercase()));
    }
    if let Some(c) = text.strip_prefix("cookie:").filter(|c| token_ok(c)) {
        return Ok(HashKey::Cookie(c.to_string()));
    }
    Err(Located::new(
        key.span(),
        format!("hash_key {text:?} is not \"client_ip\", \"header:NAME\" or \"cookie:NAME\""),
    ))
}

pub(super) fn parse_health(h: &Spanned<RawHealth>) -> Result<HealthCheck> {
    use crate::config::model::defaults::*;
    let raw = h.get_ref();
    let kind = match raw.kind.get_ref().as_str() {
        "tcp" => {
            if let Some(p) = raw.path.as_ref().or(raw.host.as_ref()) {
                return Err(Located::new(
                    p.span(),
                    "path and host apply only to type = \"http\"",
                ));
            }
            HealthKind::Tcp
        }
        "http" => {
            let path = raw.path.as_ref().map_or("/", |p| p.get_ref().as_str());
            if !path.starts_with('/')
                || path
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return Err(Located::new(
                    raw.path.as_ref().map_or(h.span(), Spanned::span),
                    format!("health check path {path:?} must start with '/' and hold no spaces"),
                ));
            }
            let host = match &raw.host {
                Some(host) => Some(match parse_host_name(host)? {
                    HostName::Exact(n) => n,
                    HostName::Wildcard(_) => {
                        return Err(Located::new(
                            host.span(),
                            "health check host must be an exact name",
                        ))
                    }
                }),
                None => None,
            };
            HealthKind::Http {
                path: path.to_string(),
                host,
            }
        }
        other => {
            return Err(Located::new(
                raw.kind.span(),
                format!("unknown health check type {other:?} (supported: \"http\", \"tcp\")"),
            ))
        }
    };
    let interval = ms(
        raw.interval_ms.as_ref(),
        100,
        "interval_ms",
        HEALTH_INTERVAL,
    )?;
    let timeout = ms(raw.timeout_ms.as_ref(), 10, "timeout_ms", HEALTH_TIMEOUT)?;
    if timeout > interval {
        return Err(Located::new(
            raw.timeout_ms.as_ref().map_or(h.span(), Spanned::span),
            format!(
                "health check timeout ({} ms) exceeds its interval ({} ms)",
                timeout.as_millis(),
                interval.as_millis()
            ),
        ));
    }
    Ok(HealthCheck {
        kind,
        interval,
        timeout,
        healthy_threshold: count(
            raw.healthy_threshold.as_ref(),
            1,
            100,
            "healthy_threshold",
            HEALTHY_THRESHOLD,
        )?,
        unhealthy_threshold: count(
            raw.unhealthy_threshold.as_ref(),
            1,
            100,
            "unhealthy_threshold",
            UNHEALTHY_THRESHOLD,
        )?,
    })
}

pub(super) fn parse_outlier(raw: Option<&RawOutlier>) -> Result<Outlier> {
    use crate::config::model::defaults::*;
    let get = |f: fn(&RawOutlier) -> Option<&Spanned<i64>>| raw.and_then(f);
    let base_ejection = ms(
        get(|o| o.base_ejection_ms.as_ref()),
        100,
        "base_ejection_ms",
        OUTLIER_BASE_EJECTION,
    )?;
    let max_ejection = ms(
        get(|o| o.max_ejection_ms.as_ref()),
        100,
        "max_ejection_ms",
        OUTLIER_MAX_EJECTION,
    )?;
    if max_ejection < base_ejection {
        return Err(Located::new(
            get(|o| o.max_ejection_ms.as_ref()).map_or(0..0, Spanned::span),
            "max_ejection_ms is shorter than base_ejection_ms",
        ));
    }
    Ok(Outlier {
        consecutive_failures: count(
            get(|o| o.consecutive_failures.as_ref()),
            0,
            1000,
            "consecutive_failures",
            OUTLIER_CONSECUTIVE_FAILURES,
        )?,
        base_ejection,
        max_ejection,
        max_ejection_percent: count(
            get(|o| o.max_ejection_percent.as_ref()),
            0,
            100,
            "max_ejection_percent",
            u32::from(OUTLIER_MAX_EJECTION_PERCENT),
        )? as u8,
    })
}
