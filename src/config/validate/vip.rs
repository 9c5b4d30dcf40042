//! `[[vip]]`, `[vrrp]` (with `[[vrrp.track]]`) and `[bgp]`: the addresses this node may own, and
//! how it decides to (election or announcement), with the limits that keep a typo from
//! flooding the LAN.

use super::*;

/// Upper bounds that keep a typo from turning into a flood or a stall.
pub(super) const MAX_GARP_COUNT: i64 = 100;
pub(super) const MAX_GARP_INTERVAL_MS: i64 = 10_000;
/// The advertisement interval travels in 12 bits of centiseconds.
pub(super) const MAX_ADVERT_INTERVAL_MS: u64 = 4095 * 10;
/// keepalived's limit for the same setting is 1000 s; an hour is surely a typo.
pub(super) const MAX_PREEMPT_DELAY: Duration = Duration::from_secs(3600);
pub(super) const MIN_GARP_REFRESH: Duration = Duration::from_secs(1);
pub(super) const MAX_GARP_REFRESH: Duration = Duration::from_secs(3600);
/// Linux IFNAMSIZ minus the NUL.
pub(super) const MAX_IFNAME_LEN: usize = 15;
/// `[bgp] check_interval`: faster only burns netlink calls, slower than 10 s delays a
/// withdrawal past what anyone would call health-gated.
pub(super) const MIN_BGP_CHECK_INTERVAL: Duration = Duration::from_millis(10);
pub(super) const MAX_BGP_CHECK_INTERVAL: Duration = Duration::from_secs(10);
pub(super) const MAX_BGP_RISE_FALL: i64 = 100;
pub(super) const MAX_BGP_WITHDRAW_WAIT: Duration = Duration::from_secs(300);
/// Kernel tables with a fixed meaning: unspec, default, main, local.
pub(super) const RESERVED_TABLES: [i64; 4] = [0, 253, 254, 255];

/// A VIP with `announce = "bgp"` and the span to point at when `[bgp]` is missing.
pub(super) type BgpVip = (IpAddr, std::ops::Range<usize>);

/// The `[[vip]]`s: those announced with ARP/NDP, and those with `announce = "bgp"` (with the
/// span of their `announce`, for `validate_bgp`'s messages).
pub(super) fn validate_vips(raw: &[Spanned<RawVip>]) -> Result<(Vec<Vip>, Vec<BgpVip>)> {
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
pub(super) fn validate_bgp(raw: Option<&Spanned<RawBgp>>, vips: &[BgpVip]) -> Result<Option<Bgp>> {
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

pub(super) fn validate_vrrp(raw: &Spanned<RawVrrp>, vips: &[Vip]) -> Result<Vrrp> {
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
pub(super) enum Tracker {
    Vrrp(NonZeroU8),
    Bgp,
}

/// `[[vrrp.track]]` and `[[bgp.track]]`: each names one condition that exists in this file,
/// once; for VRRP with a weight the priority can lose, on a node whose priority may be lowered
/// at all; for BGP without a weight (a failed condition withdraws).
pub(super) fn validate_tracks(
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

pub(super) fn parse_vip_address(s: &Spanned<String>) -> Result<IpAddr> {
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

pub(super) fn validate_ifname(s: &Spanned<String>) -> Result<String> {
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
