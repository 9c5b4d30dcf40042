//! Turning the file as written (`schema`) into a `Config` that cannot be wrong.
//!
//! Owns the rules: addresses parse, names are well formed and unique, every route names a pool
//! that exists. Each refusal points at the offending value's span.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU8;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::error::{Located, Position};
use super::model::*;
use super::schema::RawBgp;
use super::schema::RawCertificate;
use super::schema::{
    RawAccessLog, RawAdmin, RawBackend, RawConfig, RawDaemon, RawDuration, RawFraction, RawHealth,
    RawHost, RawListener, RawOutlier, RawPool, RawPoolTls, RawProxy, RawResolver, RawRoute,
    RawTrack, RawVip, RawVrrp,
};

/// Upper bounds that keep a typo from turning into a flood or a stall.
const MAX_GARP_COUNT: i64 = 100;
const MAX_GARP_INTERVAL_MS: i64 = 10_000;
/// An hour: longer is a stuck stop, not a drain.
const MAX_DRAIN_TIMEOUT_MS: i64 = 3_600_000;
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
/// `[bgp] check_interval`: faster only burns netlink calls, slower than 10 s delays a
/// withdrawal past what anyone would call health-gated.
const MIN_BGP_CHECK_INTERVAL: Duration = Duration::from_millis(10);
const MAX_BGP_CHECK_INTERVAL: Duration = Duration::from_secs(10);
const MAX_BGP_RISE_FALL: i64 = 100;
const MAX_BGP_WITHDRAW_WAIT: Duration = Duration::from_secs(300);
/// Kernel tables with a fixed meaning: unspec, default, main, local.
const RESERVED_TABLES: [i64; 4] = [0, 253, 254, 255];

type Result<T> = std::result::Result<T, Located>;

pub(super) fn validate(path: &Path, text: &str, raw: RawConfig) -> Result<Config> {
    if raw.vip.is_empty() && raw.listener.is_empty() {
        return Err(Located::new(
            0..0,
            "nothing to do: the file has no [[vip]] and no [[listener]]",
        ));
    }
    let (vips, bgp_vips) = validate_vips(&raw.vip)?;
    let mut vrrp = match &raw.vrrp {
        Some(v) => Some(validate_vrrp(v, &vips)?),
        None => None,
    };
    let mut bgp = validate_bgp(raw.bgp.as_ref(), &bgp_vips)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let (pools, pool_ids) = validate_pools(&raw.pool, base)?;
    let listeners = validate_listeners(&raw.listener, &pool_ids, base)?;
    let certificates = validate_certificates(&raw.certificate, base)?;
    if certificates.is_empty() {
        if let Some(i) = listeners.iter().position(|l| l.tls.is_some()) {
            return Err(Located::new(
                raw.listener[i].span(),
                "an https listener needs at least one [[certificate]]",
            ));
        }
    }
    if let (Some(v), Some(raw_v)) = (vrrp.as_mut(), &raw.vrrp) {
        v.track = validate_tracks(
            raw_v.get_ref().track.as_deref().unwrap_or_default(),
            Tracker::Vrrp(v.priority),
            &pools,
            &listeners,
        )?;
    }
    if let (Some(b), Some(raw_b)) = (bgp.as_mut(), &raw.bgp) {
        b.track = validate_tracks(
            raw_b.get_ref().track.as_deref().unwrap_or_default(),
            Tracker::Bgp,
            &pools,
            &listeners,
        )?;
        // A node that cannot accept on its listeners cannot serve the VIPs it announces.
        if !listeners.is_empty()
            && !b
                .track
                .iter()
                .any(|t| t.condition == TrackCondition::ListenerFailed)
        {
            b.track.push(Track {
                condition: TrackCondition::ListenerFailed,
                action: TrackAction::Fault,
            });
        }
    }
    let proxy = match &raw.proxy {
        Some(p) => validate_proxy(p.get_ref())?,
        None => ProxySettings::default(),
    };
    let hosts = validate_hosts(&raw.host, &pool_ids, proxy.path, text)?;
    if let Some(i) = listeners
        .iter()
        .position(|l| l.protocol.is_http() && l.redirect_https.is_none())
    {
        if hosts.is_empty() {
            return Err(Located::new(
                raw.listener[i].span(),
                "an http or https listener needs at least one [[host]] to route to",
            ));
        }
    }
    if proxy.trusted_proxies.is_empty() {
        if let Some(i) = listeners.iter().position(|l| l.accept_proxy_protocol) {
            return Err(Located::new(
                raw.listener[i].span(),
                "accept_proxy_protocol needs [proxy] trusted_proxies: a PROXY header is believed only from them",
            ));
        }
    }
    let daemon = validate_daemon(raw.daemon.as_ref().map(Spanned::get_ref))?;
    let admin = match &raw.admin {
        Some(a) => validate_admin(a, &listeners)?,
        None => Some(Admin {
            bind: DEFAULT_ADMIN_BIND,
        }),
    };
    if let Some(a) = &admin {
        if raw.admin.is_none() {
            // The default address clashing with a listener: point at the listener.
            if let Some(i) = listeners.iter().position(|l| binds_overlap(l.bind, a.bind)) {
                return Err(Located::new(
                    raw.listener[i].span(),
                    format!("this listener takes the admin listener's default address {}: set [admin] bind to another address (or enabled = false)", a.bind),
                ));
            }
        }
    }
    let access_log = match &raw.access_log {
        Some(a) => validate_access_log(a.get_ref())?,
        None => None,
    };
    let log = match raw.log.as_ref().and_then(|l| l.get_ref().level.as_ref()) {
        Some(level) => LogSettings {
            level: validate_log_level(level)?,
        },
        None => LogSettings::default(),
    };
    let resolver = match &raw.resolver {
        Some(r) => validate_resolver(r)?,
        None => ResolverSettings::default(),
    };
    Ok(Config {
        source: path.to_path_buf(),
        vips,
        listeners,
        hosts,
        pools,
        proxy,
        daemon,
        vrrp,
        bgp,
        admin,
        access_log,
        log,
        certificates,
        resolver,
    })
}

/// A day: a longer TTL ceiling or grace is surely a typo.
const MAX_RESOLVER_MS: i64 = 86_400_000;

/// `[resolver]`: name servers as `IP` (port 53) or `IP:PORT`; the floor at most the ceiling.
fn validate_resolver(raw: &Spanned<RawResolver>) -> Result<ResolverSettings> {
    use super::model::defaults::*;
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

/// `[[certificate]]`: each file read and checked now, so `check` refuses a bad one with its
/// reason; names unique across certificates; at most one `default`.
fn validate_certificates(raw: &[Spanned<RawCertificate>], base: &Path) -> Result<Vec<Certificate>> {
    let now = std::time::SystemTime::now();
    let mut out: Vec<Certificate> = Vec::with_capacity(raw.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, c) in raw.iter().enumerate() {
        let table = c.span();
        let c = c.get_ref();
        let cert = resolve(base, &c.cert)?;
        let key = resolve(base, &c.key)?;
        let loaded = crate::tls::load_cert_and_key(&cert, &key, now).map_err(|e| {
            // The certificate file is read first: an error about it points at `cert`.
            let span = match e {
                crate::tls::TlsError::KeyMismatch { .. } => c.key.span(),
                crate::tls::TlsError::Invalid { ref path, .. }
                | crate::tls::TlsError::Read { ref path, .. }
                    if *path == key && *path != cert =>
                {
                    c.key.span()
                }
                _ => c.cert.span(),
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
        let default = c.default.as_ref().is_some_and(|d| *d.get_ref());
        if default && out.iter().any(|o| o.default) {
            let span = c.default.as_ref().map_or(table.clone(), Spanned::span);
            return Err(Located::new(
                span,
                "only one [[certificate]] may be the default",
            ));
        }
        let certificate = Certificate {
            cert,
            key,
            names,
            default,
            loaded,
        };
        let serves = certificate.serves();
        if serves.is_empty() {
            return Err(Located::new(
                c.cert.span(),
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
        out.push(certificate);
    }
    Ok(out)
}

/// A file named in the config: relative paths are relative to the config file's directory.
fn resolve(base: &Path, s: &Spanned<String>) -> Result<std::path::PathBuf> {
    let text = s.get_ref().trim();
    if text.is_empty() {
        return Err(Located::new(s.span(), "file name is empty"));
    }
    Ok(base.join(text))
}

fn validate_listener_tls(l: &RawListener, base: &Path) -> Result<ListenerTls> {
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
fn binds_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn validate_admin(raw: &Spanned<RawAdmin>, listeners: &[Listener]) -> Result<Option<Admin>> {
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

fn validate_access_log(raw: &RawAccessLog) -> Result<Option<AccessLogSettings>> {
    let format = match &raw.format {
        None => AccessLogFormat::Json,
        Some(f) => match f.get_ref().as_str() {
            "json" => AccessLogFormat::Json,
            "logfmt" => AccessLogFormat::Logfmt,
            "combined" => AccessLogFormat::Combined,
            other => {
                return Err(Located::new(
                    f.span(),
                    format!(
                        "access_log format {other:?} is not \"json\", \"logfmt\" or \"combined\""
                    ),
                ))
            }
        },
    };
    let sample = match &raw.sample {
        None => 1.0,
        Some(s) => {
            let v = match s.get_ref() {
                RawFraction::Int(i) => *i as f64,
                RawFraction::Float(f) => *f,
            };
            if !(0.0..=1.0).contains(&v) {
                return Err(Located::new(
                    s.span(),
                    format!(
                        "access_log sample {v} is not between 0.0 (none) and 1.0 (every request)"
                    ),
                ));
            }
            v
        }
    };
    if !raw.enabled.unwrap_or(true) {
        return Ok(None);
    }
    Ok(Some(AccessLogSettings { format, sample }))
}

fn validate_log_level(level: &Spanned<String>) -> Result<String> {
    let text = level.get_ref().trim();
    if text.is_empty() {
        return Err(Located::new(
            level.span(),
            "log level is empty: use error, warn, info, debug or trace",
        ));
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map_err(|e| {
            Located::new(
                level.span(),
                format!("log level {text:?} is not error, warn, info, debug, trace or a RUST_LOG directive list: {e}"),
            )
        })?;
    Ok(text.to_owned())
}

fn validate_daemon(raw: Option<&RawDaemon>) -> Result<Daemon> {
    let Some(raw) = raw else {
        return Ok(Daemon::default());
    };
    let drain_timeout = bounded(
        raw.drain_timeout_ms.as_ref(),
        0,
        MAX_DRAIN_TIMEOUT_MS,
        "drain_timeout_ms",
    )?
    .map_or(DEFAULT_DRAIN_TIMEOUT, |ms| Duration::from_millis(ms as u64));
    Ok(Daemon { drain_timeout })
}

/// A VIP with `announce = "bgp"` and the span to point at when `[bgp]` is missing.
type BgpVip = (IpAddr, std::ops::Range<usize>);

/// The `[[vip]]`s: those announced with ARP/NDP, and those with `announce = "bgp"` (with the
/// span of their `announce`, for `validate_bgp`'s messages).
fn validate_vips(raw: &[Spanned<RawVip>]) -> Result<(Vec<Vip>, Vec<BgpVip>)> {
    let mut vips: Vec<Vip> = Vec::with_capacity(raw.len());
    let mut bgp: Vec<BgpVip> = Vec::new();
    for span_v in raw {
        let v = span_v.get_ref();
        let address = parse_vip_address(&v.address)?;
        if vips.iter().any(|seen| seen.address == address)
            || bgp.iter().any(|(seen, _)| *seen == address)
        {
            return Err(Located::new(
                v.address.span(),
                format!("VIP {address} is listed twice"),
            ));
        }
        let by_bgp = match &v.announce {
            None => false,
            Some(a) => match a.get_ref().trim() {
                "arp" => false,
                "bgp" => true,
                other => {
                    return Err(Located::new(
                        a.span(),
                        format!("announce = {other:?} is not one of \"arp\", \"bgp\""),
                    ))
                }
            },
        };
        if by_bgp {
            if let Some(i) = &v.interface {
                return Err(Located::new(
                    i.span(),
                    "a VIP with announce = \"bgp\" is on no LAN (it is routed to this node): remove `interface`",
                ));
            }
            for (key, set) in [
                ("garp_count", v.garp_count.as_ref().map(Spanned::span)),
                (
                    "garp_interval_ms",
                    v.garp_interval_ms.as_ref().map(Spanned::span),
                ),
            ] {
                if let Some(span) = set {
                    return Err(Located::new(
                        span,
                        format!("{key} has no effect with announce = \"bgp\" (no ARP is sent for it): remove it"),
                    ));
                }
            }
            let span = v.announce.as_ref().map_or(span_v.span(), Spanned::span);
            bgp.push((address, span));
            continue;
        }
        let Some(interface) = &v.interface else {
            return Err(Located::new(
                span_v.span(),
                "a [[vip]] needs `interface` (the LAN it is answered on), or announce = \"bgp\"",
            ));
        };
        let interface = validate_ifname(interface)?;
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
    Ok((vips, bgp))
}

/// `[bgp]`, which the VIPs with `announce = "bgp"` need and which needs them.
fn validate_bgp(raw: Option<&Spanned<RawBgp>>, vips: &[BgpVip]) -> Result<Option<Bgp>> {
    let raw = match (raw, vips.first()) {
        (None, None) => return Ok(None),
        (None, Some((vip, span))) => {
            return Err(Located::new(
                span.clone(),
                format!("VIP {vip} has announce = \"bgp\", but the file has no [bgp] table"),
            ))
        }
        (Some(b), None) => {
            return Err(Located::new(
                b.span(),
                "[bgp] announces the [[vip]]s with announce = \"bgp\", but the file has none",
            ))
        }
        (Some(b), Some(_)) => b.get_ref(),
    };
    let table = match &raw.table {
        None => DEFAULT_BGP_TABLE,
        Some(t) => {
            let n = bounded(Some(t), 1, i64::from(u32::MAX), "table")?.unwrap_or_default();
            if RESERVED_TABLES.contains(&n) {
                return Err(Located::new(
                    t.span(),
                    format!("table = {n} is one of the kernel's own tables (253 default, 254 main, 255 local): pick a table of its own for the announced VIPs, such as 86"),
                ));
            }
            n as u32
        }
    };
    let check_interval = match &raw.check_interval {
        None => DEFAULT_BGP_CHECK_INTERVAL,
        Some(d) => {
            let value = parse_duration(d, "check_interval")?;
            if !(MIN_BGP_CHECK_INTERVAL..=MAX_BGP_CHECK_INTERVAL).contains(&value) {
                return Err(Located::new(
                    d.span(),
                    format!("check_interval {value:?} is out of range (10ms to 10s)"),
                ));
            }
            value
        }
    };
    let rise = bounded(raw.rise.as_ref(), 1, MAX_BGP_RISE_FALL, "rise")?
        .map_or(DEFAULT_BGP_RISE, |n| n as u32);
    let fall = bounded(raw.fall.as_ref(), 1, MAX_BGP_RISE_FALL, "fall")?
        .map_or(DEFAULT_BGP_FALL, |n| n as u32);
    let withdraw_wait = match &raw.withdraw_wait {
        None => DEFAULT_BGP_WITHDRAW_WAIT,
        Some(d) => {
            let value = parse_duration(d, "withdraw_wait")?;
            if value > MAX_BGP_WITHDRAW_WAIT {
                return Err(Located::new(
                    d.span(),
                    format!("withdraw_wait {value:?} is out of range (0s to 300s)"),
                ));
            }
            value
        }
    };
    let bird_socket = match &raw.bird_socket {
        None => None,
        Some(p) => {
            let text = p.get_ref().trim();
            if !text.starts_with('/') {
                return Err(Located::new(
                    p.span(),
                    format!("bird_socket {text:?} must be an absolute path (such as /run/bird/bird.ctl)"),
                ));
            }
            Some(std::path::PathBuf::from(text))
        }
    };
    let bird_protocol = match &raw.bird_protocol {
        None => DEFAULT_BIRD_PROTOCOL.to_owned(),
        Some(p) => {
            let text = p.get_ref().trim();
            // BIRD's symbol syntax: a letter or '_' first, then letters, digits, '_'.
            let ok = text
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && text.len() <= 64;
            if !ok {
                return Err(Located::new(
                    p.span(),
                    format!("bird_protocol {text:?} is not a BIRD protocol name (letters, digits and '_', a letter first)"),
                ));
            }
            text.to_owned()
        }
    };
    Ok(Some(Bgp {
        vips: vips.iter().map(|(v, _)| *v).collect(),
        table,
        check_interval,
        rise,
        fall,
        withdraw_wait,
        bird_socket,
        bird_protocol,
        // Checked once the pools and listeners are known (`validate_tracks`).
        track: Vec::new(),
    }))
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
    let startup_listen = match &raw.startup_listen {
        None => DEFAULT_STARTUP_LISTEN,
        Some(d) => {
            let value = parse_duration(d, "startup_listen")?;
            if value > MAX_PREEMPT_DELAY {
                return Err(Located::new(
                    d.span(),
                    format!("startup_listen {value:?} is out of range (0s to 3600s)"),
                ));
            }
            value
        }
    };
    let mut peers: Vec<IpAddr> = Vec::new();
    for p in raw.peers.iter().flat_map(|p| p.get_ref()) {
        let text = p.get_ref().trim();
        let ip: IpAddr = text.parse().map_err(|_| {
            Located::new(p.span(), format!("VRRP peer {text:?} is not an IP address"))
        })?;
        match ip {
            IpAddr::V4(v4) => {
                if v4.is_unspecified() || v4.is_loopback() || v4.is_multicast() || v4.is_broadcast()
                {
                    return Err(Located::new(
                        p.span(),
                        format!("VRRP peer {ip} must be another node's unicast address"),
                    ));
                }
            }
            // IPv6 adverts come from the sender's link-local address (RFC 9568 section 5.1.2.1),
            // so that is the address a peer is recognised by.
            IpAddr::V6(v6) => {
                if !v6.is_unicast_link_local() {
                    return Err(Located::new(
                        p.span(),
                        format!("VRRP peer {ip} must be another node's link-local address (fe80::/10): IPv6 adverts are sent from and accepted by link-local addresses"),
                    ));
                }
            }
        }
        if !vips.iter().any(|v| v.address.is_ipv4() == ip.is_ipv4()) {
            let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
            return Err(Located::new(
                p.span(),
                format!("VRRP peer {ip} is {family}, but no [[vip]] is: peers of a family serve the virtual router of that family's VIPs"),
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
        // Checked once the pools and listeners are known (`validate_tracks`).
        track: Vec::new(),
        vrid,
        priority,
        advert_interval,
        peers,
        preempt: raw.preempt.as_ref().is_none_or(|p| *p.get_ref()),
        preempt_delay,
        startup_listen,
        interface,
    })
}

/// Whose conditions a list of tracks is: the election's (with its configured priority) or the
/// BGP announcements'.
#[derive(Clone, Copy)]
enum Tracker {
    Vrrp(NonZeroU8),
    Bgp,
}

/// `[[vrrp.track]]` and `[[bgp.track]]`: each names one condition that exists in this file,
/// once; for VRRP with a weight the priority can lose, on a node whose priority may be lowered
/// at all; for BGP without a weight (a failed condition withdraws).
fn validate_tracks(
    raw: &[Spanned<RawTrack>],
    tracker: Tracker,
    pools: &[Pool],
    listeners: &[Listener],
) -> Result<Vec<Track>> {
    let table = match tracker {
        Tracker::Vrrp(_) => "[[vrrp.track]]",
        Tracker::Bgp => "[[bgp.track]]",
    };
    let mut tracks: Vec<Track> = Vec::new();
    for t in raw {
        let span = t.span();
        let t = t.get_ref();
        if matches!(tracker, Tracker::Vrrp(p) if p.get() == u8::MAX) {
            return Err(Located::new(
                span,
                "[[vrrp.track]] with priority 255: the address owner's priority cannot be lowered; use a priority of 254 or less",
            ));
        }
        let condition = match (&t.pool, &t.listeners) {
            (Some(_), Some(_)) => {
                return Err(Located::new(
                    span,
                    format!("a {table} has one condition: write `pool` and `listeners` in two {table} tables"),
                ))
            }
            (None, None) => {
                return Err(Located::new(
                    span,
                    format!("a {table} needs a condition: `pool = \"NAME\"` or `listeners = true`"),
                ))
            }
            (Some(name), None) => {
                let text = name.get_ref().trim();
                let Some(pool) = pools.iter().find(|p| p.name == text) else {
                    return Err(Located::new(
                        name.span(),
                        format!("{table} pool {text:?} is not defined (no [pool.{text}])"),
                    ));
                };
                if pool.health.is_none() {
                    return Err(Located::new(
                        name.span(),
                        format!("{table} pool {text:?} needs [pool.{text}.health]: without active checks its backends are never marked down"),
                    ));
                }
                TrackCondition::PoolDown(pool.name.clone())
            }
            (None, Some(on)) => {
                if !*on.get_ref() {
                    return Err(Located::new(
                        on.span(),
                        format!("listeners = false tracks nothing: remove this {table} or set listeners = true"),
                    ));
                }
                if listeners.is_empty() {
                    return Err(Located::new(
                        on.span(),
                        format!("{table} listeners = true, but the file has no [[listener]]"),
                    ));
                }
                TrackCondition::ListenerFailed
            }
        };
        if tracks.iter().any(|k| k.condition == condition) {
            return Err(Located::new(
                span,
                format!("{table} {} is tracked twice", condition.label()),
            ));
        }
        let action = match &t.weight {
            None => TrackAction::Fault,
            Some(w) if matches!(tracker, Tracker::Bgp) => return Err(Located::new(
                w.span(),
                "a [[bgp.track]] has no weight: while its condition holds the VIPs are withdrawn",
            )),
            Some(w) => {
                let n = *w.get_ref();
                match u8::try_from(n).ok().filter(|n| *n <= 254).and_then(NonZeroU8::new) {
                    Some(n) => TrackAction::Lower(n),
                    None => {
                        return Err(Located::new(
                            w.span(),
                            format!("weight = {n} is out of range (1 to 254; leave it out to give up mastership instead)"),
                        ))
                    }
                }
            }
        };
        tracks.push(Track { condition, action });
    }
    Ok(tracks)
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

fn parse_vip_address(s: &Spanned<String>) -> Result<IpAddr> {
    let text = s.get_ref().trim();
    let ip: IpAddr = text.parse().map_err(|_| {
        Located::new(
            s.span(),
            format!("VIP address {text:?} is not an IP address"),
        )
    })?;
    let refused = match ip {
        IpAddr::V4(v4) => {
            (v4.is_unspecified() || v4.is_loopback() || v4.is_multicast() || v4.is_broadcast())
                .then_some("unspecified, loopback, multicast or broadcast")
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() || v6.is_loopback() || v6.is_multicast() {
                Some("unspecified, loopback or multicast")
            } else if v6.is_unicast_link_local() {
                // A link-local address is per link and every node has its own; a VIP is routed
                // to, which a link-local address never is.
                Some("link-local (fe80::/10): use a global or unique-local address")
            } else if v6.to_ipv4_mapped().is_some() {
                Some("IPv4-mapped (::ffff:0:0/96): write the IPv4 address itself")
            } else {
                None
            }
        }
    };
    if let Some(why) = refused {
        return Err(Located::new(
            s.span(),
            format!("VIP address {ip} cannot be announced on a LAN ({why})"),
        ));
    }
    Ok(ip)
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

fn validate_listeners(
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
        listeners.push(Listener {
            bind,
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

fn p_is(p: &Option<Spanned<String>>, value: &str) -> bool {
    p.as_ref().is_some_and(|p| p.get_ref() == value)
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
            u32::from(super::model::defaults::PANIC_THRESHOLD_PERCENT),
        )? as u8;
        let tls = pool
            .tls
            .as_ref()
            .map(|t| parse_pool_tls(t, pool_name, base))
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
        });
    }
    Ok((pools, ids))
}

const MAX_WEIGHT: i64 = 1000;

/// ALPN ids vipgate cannot speak to a backend: it relays HTTP/1.1.
const UNSPOKEN_ALPN: [&str; 3] = ["h2", "h2c", "h3"];

/// `[pool.NAME.tls]`: reads and checks every file (a bad one refuses the whole file, at `check`
/// and on reload alike) and builds the pool's rustls client configuration. Relative paths are
/// taken from the directory of the configuration file.
fn parse_pool_tls(t: &Spanned<RawPoolTls>, pool: &str, base: &Path) -> Result<PoolTls> {
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
        if UNSPOKEN_ALPN.contains(&id.as_str()) {
            return Err(Located::new(
                a.span(),
                format!("alpn {id:?}: vipgate speaks HTTP/1.1 to backends (offer \"http/1.1\")"),
            ));
        }
        alpn.push(id.clone());
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
fn parse_backends(
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

enum Parsed {
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

fn parse_backend(b: &Spanned<RawBackend>, pool: &str) -> Result<Parsed> {
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

fn parse_balance(pool: &RawPool) -> Result<Balance> {
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

fn parse_hash_key(key: &Spanned<String>) -> Result<HashKey> {
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

const MAX_TIMEOUT_MS: i64 = 24 * 3600 * 1000;

fn ms(v: Option<&Spanned<i64>>, min: i64, key: &str, default: Duration) -> Result<Duration> {
    Ok(bounded(v, min, MAX_TIMEOUT_MS, key)?.map_or(default, |n| Duration::from_millis(n as u64)))
}

fn count(v: Option<&Spanned<i64>>, min: i64, max: i64, key: &str, default: u32) -> Result<u32> {
    Ok(bounded(v, min, max, key)?.map_or(default, |n| n as u32))
}

fn parse_health(h: &Spanned<RawHealth>) -> Result<HealthCheck> {
    use super::model::defaults::*;
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

fn parse_outlier(raw: Option<&RawOutlier>) -> Result<Outlier> {
    use super::model::defaults::*;
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

fn validate_proxy(raw: &RawProxy) -> Result<ProxySettings> {
    use super::model::defaults::*;
    let escaped_slashes = match raw.escaped_slashes.as_ref() {
        None => EscapedSlashes::default(),
        Some(e) => EscapedSlashes::parse(e.get_ref()).ok_or_else(|| {
            Located::new(
                e.span(),
                format!(
                    "escaped_slashes {:?} is not \"reject\", \"keep\", \"decode\" or \"redirect\"",
                    e.get_ref()
                ),
            )
        })?,
    };
    let path = PathRules {
        merge_slashes: raw.merge_slashes.unwrap_or(true),
        escaped_slashes,
    };
    let trusted_proxies = parse_cidrs(raw.trusted_proxies.as_deref())?;
    let client_ip_header = match raw.client_ip_header.as_ref() {
        None => ClientIpHeader::XForwardedFor,
        Some(h) => match h.get_ref().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => ClientIpHeader::XForwardedFor,
            "cf-connecting-ip" => ClientIpHeader::CfConnectingIp,
            other => {
                return Err(Located::new(
                    h.span(),
                    format!(
                    "client_ip_header {other:?} is not \"x-forwarded-for\" or \"cf-connecting-ip\""
                ),
                ))
            }
        },
    };
    let runtime = match raw.runtime.as_ref() {
        None => RuntimeKind::PerCore,
        Some(r) => match r.get_ref().as_str() {
            "per-core" => RuntimeKind::PerCore,
            "shared" => RuntimeKind::Shared,
            other => {
                return Err(Located::new(
                    r.span(),
                    format!("runtime {other:?} is not \"per-core\" or \"shared\""),
                ))
            }
        },
    };
    Ok(ProxySettings {
        head_timeout: ms(
            raw.head_timeout_ms.as_ref(),
            100,
            "head_timeout_ms",
            HEAD_TIMEOUT,
        )?,
        client_idle_timeout: ms(
            raw.client_idle_timeout_ms.as_ref(),
            100,
            "client_idle_timeout_ms",
            CLIENT_IDLE_TIMEOUT,
        )?,
        connect_timeout: ms(
            raw.connect_timeout_ms.as_ref(),
            10,
            "connect_timeout_ms",
            CONNECT_TIMEOUT,
        )?,
        backend_timeout: ms(
            raw.backend_timeout_ms.as_ref(),
            10,
            "backend_timeout_ms",
            BACKEND_TIMEOUT,
        )?,
        backend_idle_timeout: ms(
            raw.backend_idle_timeout_ms.as_ref(),
            0,
            "backend_idle_timeout_ms",
            BACKEND_IDLE_TIMEOUT,
        )?,
        backend_max_idle: count(
            raw.backend_max_idle.as_ref(),
            0,
            100_000,
            "backend_max_idle",
            BACKEND_MAX_IDLE,
        )?,
        max_request_line: count(
            raw.max_request_line.as_ref(),
            64,
            1 << 20,
            "max_request_line",
            MAX_REQUEST_LINE as u32,
        )? as usize,
        max_head_size: count(
            raw.max_head_size.as_ref(),
            256,
            1 << 20,
            "max_head_size",
            MAX_HEAD_SIZE as u32,
        )? as usize,
        max_headers: count(
            raw.max_headers.as_ref(),
            1,
            MAX_HEADERS as i64,
            "max_headers",
            MAX_HEADERS as u32,
        )? as usize,
        trusted_proxies,
        client_ip_header,
        request_id: raw.request_id.unwrap_or(false),
        retry_budget_percent: count(
            raw.retry_budget_percent.as_ref(),
            0,
            100,
            "retry_budget_percent",
            RETRY_BUDGET_PERCENT,
        )?,
        worker_threads: count(raw.worker_threads.as_ref(), 0, 1024, "worker_threads", 0)? as usize,
        runtime,
        path,
    })
}

fn parse_cidrs(raw: Option<&[Spanned<String>]>) -> Result<Vec<Cidr>> {
    raw.unwrap_or_default().iter().map(parse_cidr).collect()
}

/// `192.0.2.0/24`, `2001:db8::/32`, or a single address (a /32 or /128).
fn parse_cidr(s: &Spanned<String>) -> Result<Cidr> {
    let text = s.get_ref().trim();
    let bad = |why: &str| {
        Located::new(
            s.span(),
            format!("{text:?} is not a valid address block: {why}"),
        )
    };
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|&l| l <= max)
            .ok_or_else(|| bad("bad prefix length"))?,
        None => max,
    };
    Cidr::new(addr, len).ok_or_else(|| bad("host bits are set (write the network address)"))
}

fn parse_access(
    allow: Option<&[Spanned<String>]>,
    deny: Option<&[Spanned<String>]>,
) -> Result<AccessList> {
    Ok(AccessList {
        allow: parse_cidrs(allow)?,
        deny: parse_cidrs(deny)?,
    })
}

fn is_pool_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn validate_hosts(
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

fn parse_route(
    r: &Spanned<RawRoute>,
    pool_ids: &PoolIds,
    host: &HostName,
    path_rules: PathRules,
) -> Result<Route> {
    use super::model::defaults::RETRIES;
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

const MAX_SPLIT_WEIGHT: i64 = 1_000_000;

fn lookup_pool(name: &Spanned<String>, pool_ids: &PoolIds, who: &str) -> Result<PoolId> {
    pool_ids
        .get(name.get_ref().as_str())
        .copied()
        .ok_or_else(|| {
            let mut known: Vec<&str> = pool_ids.keys().map(String::as_str).collect();
            known.sort_unstable();
            Located::new(
                name.span(),
                format!(
                    "{who} names pool {:?}, which is not defined (pools: {})",
                    name.get_ref(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })
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
