//! `vipgate import-istio`: Istio Gateway, VirtualService and DestinationRule YAML (and the
//! MetalLB LoadBalancer Service in front of them) to an equivalent vipgate configuration.
//!
//! Owns the translation only: `read` parses the YAML and reports every field it does not carry
//! over, `emit` writes the TOML. The result is text for an operator to review and `vipgate
//! check`, never applied directly. A destination's backends are its Kubernetes service by DNS
//! name (`web-service.blog-system.svc.cluster.local:80`, the cluster domain from
//! `--cluster-domain`), which `vipgate run` resolves and follows (`resolve`); `--backend
//! NAME=IP:PORT,…` ([`BackendMap`]) overrides that with addresses.

mod emit;
mod read;

use std::net::{IpAddr, Ipv4Addr};

pub use read::Source;

/// Addresses given for a Kubernetes service (`NAME`, `NAME.NAMESPACE`, or either with
/// `/SUBSET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendMap {
    pub name: String,
    pub addrs: Vec<BackendAddr>,
}

/// An address, its port optional (then the route's destination port is used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendAddr {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl std::str::FromStr for BackendMap {
    type Err = String;

    /// `NAME=IP[:PORT][,IP[:PORT]…]`
    fn from_str(s: &str) -> Result<BackendMap, String> {
        let (name, list) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected NAME=IP:PORT[,IP:PORT…]"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("{s:?}: the service name is empty"));
        }
        let addrs = list
            .split(',')
            .map(|a| {
                let a = a.trim();
                if let Ok(sa) = a.parse::<std::net::SocketAddr>() {
                    Ok(BackendAddr {
                        ip: sa.ip(),
                        port: Some(sa.port()),
                    })
                } else if let Ok(ip) = a.parse::<IpAddr>() {
                    Ok(BackendAddr { ip, port: None })
                } else {
                    Err(format!("{s:?}: {a:?} is not an IP address or IP:PORT"))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BackendMap {
            name: name.to_ascii_lowercase(),
            addrs,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The VIP to own; overrides the LoadBalancer Service's address.
    pub vip: Option<Ipv4Addr>,
    /// The VIP's LAN interface.
    pub interface: Option<String>,
    pub backends: Vec<BackendMap>,
    /// The cluster's DNS domain (`--cluster-domain`); `None`: `cluster.local`.
    pub cluster_domain: Option<String>,
}

impl Options {
    pub fn cluster_domain(&self) -> &str {
        self.cluster_domain
            .as_deref()
            .map(|d| d.trim_matches('.'))
            .unwrap_or(emit::DEFAULT_CLUSTER_DOMAIN)
    }
}

/// The TOML and the warnings, in the order found.
#[derive(Debug)]
pub struct Import {
    pub toml: String,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}:{line}:{column}: error: {reason}")]
    Yaml {
        file: String,
        line: usize,
        column: usize,
        reason: String,
    },
}

pub fn import(sources: &[Source], opts: &Options) -> Result<Import, ImportError> {
    let mut warnings = Vec::new();
    let res = read::read(sources, &mut warnings)?;
    let files: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    let toml = emit::emit(&res, opts, &files, &mut warnings);
    Ok(Import { toml, warnings })
}

#[cfg(test)]
mod tests;
