//! `[[host]]` and `[[host.route]]`: names, prefixes in normal form, splits, retry policies and
//! access lists; every route names a pool that exists.

use super::*;

/// RFC 1035 limit on a name's text form.
pub(super) const MAX_HOST_NAME_LEN: usize = 253;

pub(super) fn validate_hosts(
    raw: &[Spanned<RawHost>],
    pool_ids: &PoolIds,
    path_rules: PathRules,
    text: &str,
) -> Result<Vec<Host>> {
    // Where each name was first defined, to point a duplicate back at it.
    let mut seen: HashMap<HostName, usize> = HashMap::new();
    let mut hosts = Vec::with_capacity(raw.len());
    for h in raw {
        let host: &RawHost = h.get_ref();
        if host.names.get_ref().is_empty() {
            return Err(Located::new(
                host.names.span(),
                "a [[host]] needs at least one name",
            ));
        }
        let mut names = Vec::with_capacity(host.names.get_ref().len());
        for n in host.names.get_ref() {
            let name = parse_host_name(n)?;
            if let Some(&first) = seen.get(&name) {
                return Err(Located::new(
                    n.span(),
                    format!(
                        "host name {name} is defined twice (first at line {})",
                        Position::of(text, first).line
                    ),
                ));
            }
            seen.insert(name.clone(), n.span().start);
            names.push(name);
        }
        if host.route.is_empty() {
            return Err(Located::new(
                h.span(),
                format!("host {} has no [[host.route]]", names[0]),
            ));
        }
        let mut routes: Vec<Route> = Vec::with_capacity(host.route.len());
        for r in &host.route {
            let route = parse_route(r, pool_ids, &names[0], path_rules)?;
            if routes.iter().any(|seen| seen.prefix == route.prefix) {
                return Err(Located::new(
                    r.get_ref().prefix.span(),
                    format!(
                        "route prefix {:?} is listed twice for host {}",
                        route.prefix, names[0]
                    ),
                ));
            }
            routes.push(route);
        }
        let access = parse_access(host.allow.as_deref(), host.deny.as_deref())?;
        let mut allow_client_subjects = Vec::new();
        for s in host.allow_client_subjects.iter().flatten() {
            let subject = s.get_ref().trim();
            if subject.is_empty() || !subject.contains('=') {
                return Err(Located::new(
                    s.span(),
                    format!("client subject {subject:?} is not a distinguished name such as \"CN=client.example.test\""),
                ));
            }
            allow_client_subjects.push(subject.to_owned());
        }
        hosts.push(Host {
            names,
            access,
            routes,
            allow_client_subjects,
        });
    }
    Ok(hosts)
}

pub(super) fn parse_route(
    r: &Spanned<RawRoute>,
    pool_ids: &PoolIds,
    host: &HostName,
    path_rules: PathRules,
) -> Result<Route> {
    use crate::config::model::defaults::RETRIES;
    let raw = r.get_ref();
    let prefix = raw.prefix.get_ref();
    if !prefix.starts_with('/')
        || prefix
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'?' || b == b'#')
    {
        return Err(Located::new(
            raw.prefix.span(),
            format!("route prefix {prefix:?} must start with '/' and hold no spaces, '?' or '#'"),
        ));
    }
    // Requests are matched in normal form, so a prefix in any other form would never match.
    let mut normal = String::new();
    match crate::wire::path::normalize(prefix, path_rules, &mut normal) {
        Ok(crate::wire::path::Normal::Unchanged) => {}
        Ok(_) => {
            return Err(Located::new(
                raw.prefix.span(),
                format!(
                    "route prefix {prefix:?} is not in normal form and would never match: write {normal:?}"
                ),
            ))
        }
        Err(e) => {
            return Err(Located::new(
                raw.prefix.span(),
                format!("route prefix {prefix:?} would never match: {e}"),
            ))
        }
    }
    let split = match (&raw.pool, &raw.split) {
        (Some(pool), None) => vec![WeightedPool {
            pool: lookup_pool(pool, pool_ids, "route")?,
            weight: 1,
        }],
        (None, Some(split)) => {
            if split.get_ref().is_empty() {
                return Err(Located::new(
                    split.span(),
                    "split needs at least one { pool, weight }",
                ));
            }
            let mut out: Vec<WeightedPool> = Vec::with_capacity(split.get_ref().len());
            for s in split.get_ref() {
                let s = s.get_ref();
                let pool = lookup_pool(&s.pool, pool_ids, "split")?;
                if out.iter().any(|w| w.pool == pool) {
                    return Err(Located::new(
                        s.pool.span(),
                        format!("pool {:?} is in this split twice", s.pool.get_ref()),
                    ));
                }
                let weight = *s.weight.get_ref();
                if !(0..=MAX_SPLIT_WEIGHT).contains(&weight) {
                    return Err(Located::new(
                        s.weight.span(),
                        format!("split weight {weight} is out of range (0 to {MAX_SPLIT_WEIGHT})"),
                    ));
                }
                // Weight 0 keeps a pool in the file (as Argo Rollouts leaves canary at 0) but
                // sends it nothing.
                if weight > 0 {
                    out.push(WeightedPool {
                        pool,
                        weight: weight as u32,
                    });
                }
            }
            if out.is_empty() {
                return Err(Located::new(
                    split.span(),
                    "every weight in this split is 0",
                ));
            }
            out
        }
        (Some(_), Some(split)) => {
            return Err(Located::new(
                split.span(),
                "a route has either pool or split, not both",
            ));
        }
        (None, None) => {
            return Err(Located::new(
                r.span(),
                format!("route {prefix:?} of host {host} needs pool = \"NAME\" or split = [...]"),
            ));
        }
    };
    let retries = count(raw.retries.as_ref(), 0, 10, "retries", RETRIES)?;
    let mut on = RetryOn::default();
    match &raw.retry_on {
        None => on.connect_failure = true,
        Some(list) => {
            for c in list {
                match c.get_ref().as_str() {
                    "connect-failure" => on.connect_failure = true,
                    "reset" => on.reset = true,
                    "timeout" => on.timeout = true,
                    "gateway-error" => on.gateway_error = true,
                    "5xx" => on.server_error = true,
                    other => {
                        return Err(Located::new(
                            c.span(),
                            format!("unknown retry_on condition {other:?} (supported: \"connect-failure\", \"reset\", \"timeout\", \"gateway-error\", \"5xx\")"),
                        ))
                    }
                }
            }
        }
    }
    let per_try_timeout = raw
        .per_try_timeout_ms
        .as_ref()
        .map(|v| ms(Some(v), 10, "per_try_timeout_ms", Duration::ZERO))
        .transpose()?;
    let timeout = raw
        .timeout_ms
        .as_ref()
        .map(|v| ms(Some(v), 10, "timeout_ms", Duration::ZERO))
        .transpose()?;
    let max_body_bytes =
        bounded(raw.max_body_bytes.as_ref(), 0, i64::MAX, "max_body_bytes")?.map(|n| n as u64);
    Ok(Route {
        prefix: prefix.clone(),
        split,
        retry: RetryPolicy {
            retries,
            on,
            per_try_timeout,
        },
        timeout,
        max_body_bytes,
        access: parse_access(raw.allow.as_deref(), raw.deny.as_deref())?,
        ignore_case: raw.ignore_case.unwrap_or(false),
    })
}

pub(super) const MAX_SPLIT_WEIGHT: i64 = 1_000_000;

pub(super) fn parse_host_name(s: &Spanned<String>) -> Result<HostName> {
    let text = s.get_ref().trim().to_ascii_lowercase();
    let bad = |why: &str| Located::new(s.span(), format!("host name {:?} {why}", s.get_ref()));
    if text == "*" {
        return Ok(HostName::Wildcard(String::new()));
    }
    let (wild, rest) = match text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    if rest.is_empty() || rest.len() > MAX_HOST_NAME_LEN {
        return Err(bad("is empty or too long"));
    }
    if rest.contains('*') {
        return Err(bad(
            "may hold '*' only as a whole first label, as in \"*.example.test\"",
        ));
    }
    if rest.contains(':') {
        return Err(bad(
            "must not carry a port (the port is stripped from Host before matching)",
        ));
    }
    let labels_ok = rest.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !labels_ok {
        return Err(bad(
            "is not a valid DNS name (letters, digits, '-', labels of 1 to 63)",
        ));
    }
    Ok(if wild {
        HostName::Wildcard(format!(".{rest}"))
    } else {
        HostName::Exact(rest.to_string())
    })
}
