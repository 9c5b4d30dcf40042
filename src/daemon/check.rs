//! The effective configuration as `vipgate check` prints it: what will be announced, where it
//! listens, and each host's routes in the order they are tried.

use std::fmt::Write as _;

use crate::config::Config;
use crate::proxy::route::RouteTable;

pub fn describe(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: configuration is valid", config.source.display());
    for vip in &config.vips {
        let _ = writeln!(
            out,
            "vip {} on {} (gratuitous ARP: {} x every {} ms)",
            vip.address,
            vip.interface,
            vip.garp.count,
            vip.garp.interval.as_millis()
        );
    }
    if let Some(v) = &config.vrrp {
        let peers: Vec<String> = v.peers.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "vrrp vrid {} priority {} on {} every {} ms to {}, preempt {}{}",
            v.vrid,
            v.priority,
            v.interface,
            v.advert_interval.duration().as_millis(),
            if peers.is_empty() {
                "224.0.0.18".to_string()
            } else {
                peers.join(", ")
            },
            if v.preempt { "on" } else { "off" },
            if v.preempt_delay.is_zero() {
                String::new()
            } else {
                format!(" after {} ms", v.preempt_delay.as_millis())
            },
        );
    }
    for l in &config.listeners {
        let _ = writeln!(out, "listener {} {}", l.bind, l.protocol.as_str());
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
