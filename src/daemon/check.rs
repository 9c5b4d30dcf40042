//! The effective configuration as `vipgate check` prints it: what will be announced, where it
//! listens, each host's routes in the order they are tried, and what the backend names resolve
//! to now (a name that does not is a warning: the daemon starts without its addresses).

use std::fmt::Write as _;

use crate::config::Config;
use crate::proxy::route::RouteTable;

/// Resolve the pools' names once, as `run` does at start-up, and describe the configuration
/// with the addresses they gave. Returns the description and the warnings (names that give
/// nothing now, or whose lookup failed); a resolver that cannot be set up is a warning too.
pub async fn check(config: &Config) -> (String, Vec<String>) {
    use crate::resolve::{self, Answers, Resolver};
    let lookups = config.lookups();
    let mut warnings = Vec::new();
    let answers = match Resolver::start(&config.resolver, lookups.clone(), &Answers::default()) {
        Ok(mut r) => {
            r.first_round(resolve::first_round_limit(&config.resolver))
                .await;
            r.current()
        }
        Err(e) => {
            warnings.push(e.to_string());
            Answers::default()
        }
    };
    let expanded = resolve::expand(config, &answers);
    let mut out = describe(&expanded);
    for l in &lookups {
        let pools: Vec<&str> = config
            .pools
            .iter()
            .filter(|p| p.names.iter().any(|n| &n.lookup == l))
            .map(|p| p.name.as_str())
            .collect();
        let pools = pools.join(", ");
        match answers.sets.get(l) {
            Some(set) if !set.is_empty() => {
                let addrs: Vec<String> = set.iter().map(|e| e.addr.to_string()).collect();
                let _ = writeln!(out, "name {l} (pool {pools}) -> {}", addrs.join(", "));
            }
            Some(_) => warnings.push(format!("pool {pools}: {l} has no address now (NXDOMAIN or no record): the pool starts without it and fills when it resolves")),
            None => warnings.push(format!("pool {pools}: {l} did not resolve (no answer from the name servers): the pool starts without it and fills when it resolves")),
        }
    }
    (out, warnings)
}

pub fn describe(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: configuration is valid", config.source.display());
    for vip in &config.vips {
        let _ = writeln!(
            out,
            "vip {} on {} ({}: {} x every {} ms)",
            vip.address,
            vip.interface,
            if vip.address.is_ipv6() {
                "unsolicited NA"
            } else {
                "gratuitous ARP"
            },
            vip.garp.count,
            vip.garp.interval.as_millis()
        );
    }
    if let Some(b) = &config.bgp {
        for vip in &b.vips {
            let _ = writeln!(
                out,
                "vip {vip} over BGP: in table {} while healthy (rise {}, fall {}, every {} ms){}",
                b.table,
                b.rise,
                b.fall,
                b.check_interval.as_millis(),
                match &b.bird_socket {
                    Some(s) => format!("; BIRD at {} (protocol {})", s.display(), b.bird_protocol),
                    None => String::new(),
                }
            );
        }
        for t in &b.track {
            let _ = writeln!(out, "  bgp track {}: withdraw", t.condition.label());
        }
    }
    if let Some(v) = &config.vrrp {
        // One virtual router per family of the VIPs: its peers, or its multicast group.
        let mut peers: Vec<String> = Vec::new();
        use crate::wire::vrrp::{MULTICAST_V4, MULTICAST_V6};
        for (v6, group) in [
            (false, MULTICAST_V4.to_string()),
            (true, MULTICAST_V6.to_string()),
        ] {
            if !config.vips.iter().any(|vip| vip.address.is_ipv6() == v6) {
                continue;
            }
            let mut listed = v.peers.iter().filter(|p| p.is_ipv6() == v6).peekable();
            if listed.peek().is_none() {
                peers.push(group);
            }
            peers.extend(listed.map(ToString::to_string));
        }
        let _ = writeln!(
            out,
            "vrrp vrid {} priority {} on {} every {} ms to {}, preempt {}{}",
            v.vrid,
            v.priority,
            v.interface,
            v.advert_interval.duration().as_millis(),
            peers.join(", "),
            if v.preempt { "on" } else { "off" },
            if v.preempt_delay.is_zero() {
                String::new()
            } else {
                format!(" after {} ms", v.preempt_delay.as_millis())
            },
        );
        for t in &v.track {
            let action = match t.action {
                crate::config::TrackAction::Lower(w) => format!("priority -{w}"),
                crate::config::TrackAction::Fault => "fault".to_owned(),
            };
            let _ = writeln!(
                out,
                "vrrp track {}: {action} while it fails",
                t.condition.label()
            );
        }
    }
    for l in &config.listeners {
        let _ = write!(out, "listener {} {}", l.bind, l.protocol.as_str());
        if let Some(code) = l.redirect_https {
            let _ = write!(out, " (redirect to https, {code})");
        }
        if let Some(a) = l.tls.as_ref().and_then(|t| t.client_auth.as_ref()) {
            let _ = write!(
                out,
                " (client certificates {} by {})",
                if a.required { "required" } else { "optional" },
                a.ca.display()
            );
        }
        let _ = writeln!(out);
    }
    if let Some(a) = &config.acme {
        let _ = writeln!(
            out,
            "acme {} by {}, storage {}, renew with {}% of the lifetime left",
            a.directory,
            a.challenge.as_str(),
            a.storage.display(),
            a.renew_remaining_percent
        );
    }
    for c in &config.certificates {
        let _ = writeln!(
            out,
            "certificate {} for {}{}{}, {}, valid until {}",
            c.cert.display(),
            c.serves().join(", "),
            if c.default { " (default)" } else { "" },
            if c.acme { " (acme)" } else { "" },
            c.loaded.subject,
            crate::tls::format_unix(c.loaded.not_after)
        );
    }
    let table = RouteTable::build(config);
    for ((label, routes), host) in table.describe().zip(config.hosts.iter()) {
        let aliases: Vec<String> = host.names.iter().skip(1).map(ToString::to_string).collect();
        if aliases.is_empty() {
            let _ = writeln!(out, "host {label}");
        } else {
            let _ = writeln!(out, "host {label} (also {})", aliases.join(", "));
        }
        for route in routes {
            let split = route.pools();
            let targets: Vec<String> = split
                .iter()
                .map(|w| {
                    let pool = config.pool(w.pool);
                    let backends: Vec<String> = pool
                        .backends
                        .iter()
                        .map(|b| match b.weight {
                            1 => b.address.to_string(),
                            w => format!("{} weight {w}", b.address),
                        })
                        .collect();
                    let weight = if split.len() > 1 {
                        format!(
                            " {}%",
                            w.weight * 100 / split.iter().map(|w| w.weight).sum::<u32>().max(1)
                        )
                    } else {
                        String::new()
                    };
                    format!("{:<12} [{}]{weight}", pool.name, backends.join(", "))
                })
                .collect();
            let _ = writeln!(
                out,
                "  {:<16} -> {}",
                route.prefix,
                targets.join("\n                      + ")
            );
        }
    }
    for pool in &config.pools {
        let Some(tls) = &pool.tls else { continue };
        let verify = match &tls.ca {
            Some(ca) => format!("verify with {}", ca.display()),
            None => "NOT verified (insecure_skip_verify)".to_owned(),
        };
        let name = match &tls.server_name {
            Some(n) => format!("as {}", n.to_str()),
            None => "as each backend's IP address".to_owned(),
        };
        let client = match &tls.client_cert {
            Some(c) => format!(
                ", client certificate {} ({}, expires {})",
                c.subject,
                c.cert.display(),
                crate::tls::format_unix(c.not_after)
            ),
            None => String::new(),
        };
        let _ = writeln!(out, "pool {} tls: {verify} {name}{client}", pool.name);
    }
    out
}
