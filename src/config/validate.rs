//! Turning the file as written (`schema`) into a `Config` that cannot be wrong.
//!
//! Owns the rules: addresses parse, names are well formed and unique, every route names a pool
//! that exists. Each refusal points at the offending value's span.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU8;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::load::{Located, Position};
use super::model::*;
use super::schema::{RawConfig, RawDuration, RawHost, RawListener, RawPool, RawVip, RawVrrp};

/// Upper bounds that keep a typo from turning into a flood or a stall.
const MAX_GARP_COUNT: i64 = 100;
const MAX_GARP_INTERVAL_MS: i64 = 10_000;
/// The advertisement interval travels in 12 bits of centiseconds.
const MAX_ADVERT_INTERVAL_MS: u64 = 4095 * 10;
/// keepalived's limit for the same setting is 1000 s; an hour is surely a typo.
const MAX_PREEMPT_DELAY: Duration = Duration::from_secs(3600);
const MIN_GARP_REFRESH: Duration = Duration::from_secs(1);
const MAX_GARP_REFRESH: Duration = Duration::from_secs(3600);
/// Linux IFNAMSIZ minus the NUL.
const MAX_IFNAME_LEN: usize = 15;
/// RFC 1035 limit on a name's text form.
const MAX_HOST_NAME_LEN: usize = 253;

type Result<T> = std::result::Result<T, Located>;

pub(super) fn validate(path: &Path, text: &str, raw: RawConfig) -> Result<Config> {
    if raw.vip.is_empty() && raw.listener.is_empty() {
        return Err(Located::new(
            0..0,
            "nothing to do: the file has no [[vip]] and no [[listener]]",
        ));
    }
    let vips = validate_vips(&raw.vip)?;
    let vrrp = match &raw.vrrp {
        Some(v) => Some(validate_vrrp(v, &vips)?),
        None => None,
    };
    let listeners = validate_listeners(&raw.listener)?;
    let (pools, pool_ids) = validate_pools(&raw.pool)?;
    let hosts = validate_hosts(&raw.host, &pool_ids, text)?;
    if !listeners.is_empty() && hosts.is_empty() {
        return Err(Located::new(
            raw.listener[0].span(),
            "an http listener needs at least one [[host]] to route to",
        ));
    }
    Ok(Config {
        source: path.to_path_buf(),
        vips,
        listeners,
        hosts,
        pools,
        vrrp,
    })
}

fn validate_vips(raw: &[Spanned<RawVip>]) -> Result<Vec<Vip>> {
    let mut vips: Vec<Vip> = Vec::with_capacity(raw.len());
    for v in raw {
        let v = v.get_ref();
        let address = parse_vip_address(&v.address)?;
        if vips.iter().any(|seen| seen.address == address) {
            return Err(Located::new(
                v.address.span(),
                format!("VIP {address} is listed twice"),
            ));
        }
        let interface = validate_ifname(&v.interface)?;
        let count = bounded(v.garp_count.as_ref(), 0, MAX_GARP_COUNT, "garp_count")?
            .map_or(DEFAULT_GARP_COUNT, |n| n as u32);
        let interval = bounded(
            v.garp_interval_ms.as_ref(),
            0,
            MAX_GARP_INTERVAL_MS,
            "garp_interval_ms",
        )?
        .map_or(DEFAULT_GARP_INTERVAL, |ms| Duration::from_millis(ms as u64));
        vips.push(Vip {
            address,
            interface,
            garp: GarpBurst { count, interval },
        });
    }
    Ok(vips)
}

fn validate_vrrp(raw: &Spanned<RawVrrp>, vips: &[Vip]) -> Result<Vrrp> {
    let table = raw.span();
    let raw = raw.get_ref();
    if vips.is_empty() {
        return Err(Located::new(
            table,
            "[vrrp] elects the owner of the [[vip]] addresses, but the file has no [[vip]]",
        ));
    }
    let in_range = |v: &Spanned<i64>, key: &str| -> Result<NonZeroU8> {
        bounded(Some(v), 1, 255, key)?
            .and_then(|n| u8::try_from(n).ok())
            .and_then(NonZeroU8::new)
            .ok_or_else(|| Located::new(v.span(), format!("{key} is out of range (1 to 255)")))
    };
    let vrid = in_range(&raw.vrid, "vrid")?;
    let priority = match &raw.priority {
        Some(p) => in_range(p, "priority")?,
        None => DEFAULT_VRRP_PRIORITY,
    };
    let advert_interval = match &raw.advert_interval {
        None => DEFAULT_ADVERT_INTERVAL,
        Some(d) => {
            let span = d.span();
            let value = parse_duration(d, "advert_interval")?;
            let ms = value.as_millis();
            if value.subsec_nanos() % 10_000_000 != 0
                || ms < 10
                || ms > u128::from(MAX_ADVERT_INTERVAL_MS)
            {
                return Err(Located::new(
                    span,
                    format!("advert_interval {value:?} must be a whole number of centiseconds from 10ms to 40950ms (it is sent in 12 bits of centiseconds)"),
                ));
            }
            AdvertInterval((ms / 10) as u16)
        }
    };
    let preempt_delay = match &raw.preempt_delay {
        None => Duration::ZERO,
        Some(d) => {
            let value = parse_duration(d, "preempt_delay")?;
            if value > MAX_PREEMPT_DELAY {
                return Err(Located::new(
                    d.span(),
                    format!("preempt_delay {value:?} is out of range (0s to 3600s)"),
                ));
            }
            value
        }
    };
    let mut peers: Vec<Ipv4Addr> = Vec::new();
    for p in raw.peers.iter().flat_map(|p| p.get_ref()) {
        let text = p.get_ref().trim();
        let ip: Ipv4Addr = text.parse().map_err(|_| {
            Located::new(
                p.span(),
                format!("VRRP peer {text:?} is not an IPv4 address"),
            )
        })?;
        if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() {
            return Err(Located::new(
                p.span(),
                format!("VRRP peer {ip} must be another node's unicast address"),
            ));
        }
        if vips.iter().any(|v| v.address == ip) {
            return Err(Located::new(
                p.span(),
                format!("VRRP peer {ip} is one of the VIPs; list the other nodes' own addresses"),
            ));
        }
        if peers.contains(&ip) {
            return Err(Located::new(
                p.span(),
                format!("VRRP peer {ip} is listed twice"),
            ));
        }
        peers.push(ip);
    }
    let interface = match &raw.interface {
        Some(i) => validate_ifname(i)?,
        None => {
            let first = &vips[0].interface;
            if let Some(other) = vips.iter().find(|v| v.interface != *first) {
                return Err(Located::new(
                    table,
                    format!(
                        "[vrrp] needs `interface`: the VIPs are on {first} and {}",
                        other.interface
                    ),
                ));
            }
            first.clone()
        }
    };
    let garp_refresh = match &raw.garp_refresh {
        None => Some(DEFAULT_GARP_REFRESH),
        Some(d) => {
            let value = parse_duration(d, "garp_refresh")?;
            if value.is_zero() {
                None
            } else if value < MIN_GARP_REFRESH || value > MAX_GARP_REFRESH {
                return Err(Located::new(
                    d.span(),
                    format!("garp_refresh {value:?} is out of range (\"0s\" to turn it off, or 1s to 3600s)"),
                ));
            } else {
                Some(value)
            }
        }
    };
    Ok(Vrrp {
        garp_refresh,
        vrid,
        priority,
        advert_interval,
        peers,
        preempt: raw.preempt.as_ref().is_none_or(|p| *p.get_ref()),
        preempt_delay,
        interface,
    })
}

/// `"100ms"`, `"2s"`, `"0.5s"`: a non-negative number and a unit, ms or s.
fn parse_duration(d: &Spanned<RawDuration>, key: &str) -> Result<Duration> {
    let bad = |why: String| Located::new(d.span(), why);
    let text = match d.get_ref() {
        RawDuration::Text(t) => t.trim(),
        RawDuration::Number(n) => {
            return Err(bad(format!(
                "{key} = {n} needs a unit: write it as a string such as \"100ms\" or \"1s\""
            )))
        }
    };
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(bad(format!(
            "{key} {text:?} needs a unit, ms or s (such as \"100ms\" or \"1s\")"
        )));
    };
    let value: f64 = number
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0 && *v <= 1e6)
        .ok_or_else(|| {
            bad(format!(
                "{key} {text:?} is not a duration such as \"100ms\" or \"1s\""
            ))
        })?;
    // Rounded to whole microseconds, so "0.1s" is exactly 100 ms and not 99.999… ms.
    Ok(Duration::from_micros((value * scale * 1e6).round() as u64))
}

fn parse_vip_address(s: &Spanned<String>) -> Result<Ipv4Addr> {
    let text = s.get_ref().trim();
    let ip: IpAddr = text.parse().map_err(|_| {
        Located::new(
            s.span(),
            format!("VIP address {text:?} is not an IP address"),
        )
    })?;
    let IpAddr::V4(v4) = ip else {
        return Err(Located::new(
            s.span(),
            format!("VIP address {text}: IPv6 VIPs are not supported yet (IPv4 only)"),
        ));
    };
    if v4.is_unspecified() || v4.is_loopback() || v4.is_multicast() || v4.is_broadcast() {
        return Err(Located::new(
            s.span(),
            format!("VIP address {v4} cannot be announced on a LAN (unspecified, loopback, multicast or broadcast)"),
        ));
    }
    Ok(v4)
}

fn validate_ifname(s: &Spanned<String>) -> Result<String> {
    let name = s.get_ref();
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(name.clone())
    } else {
        Err(Located::new(
            s.span(),
            format!("interface name {name:?} is not a valid Linux interface name (1 to 15 characters, no '/', ':' or spaces)"),
        ))
    }
}

fn bounded(v: Option<&Spanned<i64>>, min: i64, max: i64, key: &str) -> Result<Option<i64>> {
    match v {
        None => Ok(None),
        Some(n) if (min..=max).contains(n.get_ref()) => Ok(Some(*n.get_ref())),
        Some(n) => Err(Located::new(
            n.span(),
            format!("{key} = {} is out of range ({min} to {max})", n.get_ref()),
        )),
    }
}

fn validate_listeners(raw: &[Spanned<RawListener>]) -> Result<Vec<Listener>> {
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
        let protocol = match l.protocol.as_ref() {
            None => Protocol::Http,
            Some(p) => match p.get_ref().as_str() {
                "http" => Protocol::Http,
                other => {
                    return Err(Located::new(
                        p.span(),
                        format!("unknown listener protocol {other:?} (supported: \"http\")"),
                    ))
                }
            },
        };
        listeners.push(Listener { bind, protocol });
    }
    Ok(listeners)
}

fn parse_socket_addr(s: &Spanned<String>, what: &str) -> Result<SocketAddr> {
    let text = s.get_ref().trim();
    text.parse().map_err(|_| {
        Located::new(
            s.span(),
            format!("{what} {text:?} is not an address with a port (like 192.0.2.21:8080 or [2001:db8::1]:80)"),
        )
    })
}

type PoolIds = HashMap<String, PoolId>;

fn validate_pools(
    raw: &BTreeMap<Spanned<String>, Spanned<RawPool>>,
) -> Result<(Vec<Pool>, PoolIds)> {
    let mut pools = Vec::with_capacity(raw.len());
    let mut ids = HashMap::with_capacity(raw.len());
    for (name, pool) in raw {
        let pool: &RawPool = pool.get_ref();
        if !is_pool_name(name.get_ref()) {
            return Err(Located::new(
                name.span(),
                format!(
                    "pool name {:?} may use only letters, digits, '-' and '_'",
                    name.get_ref()
                ),
            ));
        }
        if pool.backends.get_ref().is_empty() {
            return Err(Located::new(
                pool.backends.span(),
                format!("pool {:?} has no backends", name.get_ref()),
            ));
        }
        let mut backends: Vec<SocketAddr> = Vec::with_capacity(pool.backends.get_ref().len());
        for b in pool.backends.get_ref() {
            let addr = parse_socket_addr(b, "backend")?;
            if addr.port() == 0 || addr.ip().is_unspecified() {
                return Err(Located::new(
                    b.span(),
                    format!("backend {addr} needs a concrete address and a port"),
                ));
            }
            if backends.contains(&addr) {
                return Err(Located::new(
                    b.span(),
                    format!(
                        "backend {addr} is listed twice in pool {:?}",
                        name.get_ref()
                    ),
                ));
            }
            backends.push(addr);
        }
        ids.insert(name.get_ref().clone(), PoolId(pools.len()));
        pools.push(Pool {
            name: name.get_ref().clone(),
            backends,
        });
    }
    Ok((pools, ids))
}

fn is_pool_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn validate_hosts(raw: &[Spanned<RawHost>], pool_ids: &PoolIds, text: &str) -> Result<Vec<Host>> {
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
            let r = r.get_ref();
            let prefix = r.prefix.get_ref();
            if !prefix.starts_with('/')
                || prefix
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b == b'?' || b == b'#')
            {
                return Err(Located::new(
                    r.prefix.span(),
                    format!("route prefix {prefix:?} must start with '/' and hold no spaces, '?' or '#'"),
                ));
            }
            if routes.iter().any(|seen| seen.prefix == *prefix) {
                return Err(Located::new(
                    r.prefix.span(),
                    format!(
                        "route prefix {prefix:?} is listed twice for host {}",
                        names[0]
                    ),
                ));
            }
            let pool = *pool_ids.get(r.pool.get_ref().as_str()).ok_or_else(|| {
                let mut known: Vec<&str> = pool_ids.keys().map(String::as_str).collect();
                known.sort_unstable();
                Located::new(
                    r.pool.span(),
                    format!(
                        "route names pool {:?}, which is not defined (pools: {})",
                        r.pool.get_ref(),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                )
            })?;
            routes.push(Route {
                prefix: prefix.clone(),
                pool,
            });
        }
        hosts.push(Host { names, routes });
    }
    Ok(hosts)
}

fn parse_host_name(s: &Spanned<String>) -> Result<HostName> {
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
