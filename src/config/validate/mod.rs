//! Turning the file as written (`schema`) into a `Config` that cannot be wrong.
//!
//! Owns the rules: addresses parse, names are well formed and unique, every route names a pool
//! that exists. Each refusal points at the offending value's span.
//!
//! One file per part of the file: `vip` (VIPs, VRRP, BGP), `listeners` (listeners,
//! certificates, admin), `pools` (pools, resolver), `hosts` (hosts and routes), `proxy` (the
//! process-wide settings); this file runs them in order and holds the helpers they share
//! (bounded numbers, durations, addresses, CIDRs, pool names).

mod acme;
mod hosts;
mod listeners;
mod pools;
mod proxy;
mod vip;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU8;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::error::{Located, Position};
use super::model::*;
use super::schema::RawBgp;
use super::schema::{
    RawAccessLog, RawAdmin, RawBackend, RawConfig, RawDaemon, RawDuration, RawFraction, RawHealth,
    RawHost, RawListener, RawOutlier, RawPool, RawPoolTls, RawProxy, RawResolver, RawRoute,
    RawTrack, RawVip, RawVrrp,
};
use super::schema::{RawAcmeNames, RawCertificate};

use acme::*;
use hosts::*;
use listeners::*;
use pools::*;
use proxy::*;
use vip::*;

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
    let acme = match &raw.acme {
        Some(a) => Some(validate_acme(a, &listeners)?),
        None => None,
    };
    let certificates = validate_certificates(&raw.certificate, base, acme.as_ref())?;
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
        acme,
    })
}

/// A file named in the config: relative paths are relative to the config file's directory.
fn resolve(base: &Path, s: &Spanned<String>) -> Result<std::path::PathBuf> {
    let text = s.get_ref().trim();
    if text.is_empty() {
        return Err(Located::new(s.span(), "file name is empty"));
    }
    Ok(base.join(text))
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

const MAX_TIMEOUT_MS: i64 = 24 * 3600 * 1000;

fn ms(v: Option<&Spanned<i64>>, min: i64, key: &str, default: Duration) -> Result<Duration> {
    Ok(bounded(v, min, MAX_TIMEOUT_MS, key)?.map_or(default, |n| Duration::from_millis(n as u64)))
}

fn count(v: Option<&Spanned<i64>>, min: i64, max: i64, key: &str, default: u32) -> Result<u32> {
    Ok(bounded(v, min, max, key)?.map_or(default, |n| n as u32))
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
