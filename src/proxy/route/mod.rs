//! The routing table: Host and path to a pool, as pure data with no I/O.
//!
//! Owns the matching rules. Built once per configuration from a validated `Config` and never
//! changed afterwards (a new config builds a new table), so a lookup takes no lock. Host names
//! match case-insensitively without the port; an exact name beats a wildcard, a longer
//! wildcard suffix beats a shorter one, and `*` catches what is left. Within a host the longest
//! matching path prefix wins, matched by whole segments.

use std::collections::HashMap;

use crate::config::{AccessList, Config, HostName, PoolId, RetryPolicy, Route, WeightedPool};
use crate::proxy::upstream::balance::WeightedCycle;

/// Longest host name we normalise (RFC 1035 text form is at most 253).
pub const MAX_HOST: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// The Host is not one we serve.
    UnknownHost,
    /// The host is known but none of its prefixes matches the path.
    NoRoute,
    /// The Host field cannot be a host name at all.
    BadHost,
}

/// Where a request goes: indices into the table, valid for the table that returned them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub host: usize,
    pub route: usize,
}

#[derive(Debug)]
struct HostRoutes {
    /// What the host was configured as (its first name), for logs and `check`.
    label: String,
    access: AccessList,
    /// Client certificate subjects admitted (empty: no client certificate needed).
    client_subjects: Box<[Box<str>]>,
    /// Longest prefix first, so the first match is the best.
    routes: Vec<RouteEntry>,
}

/// One route as the request path uses it.
#[derive(Debug)]
pub struct RouteEntry {
    pub prefix: Box<str>,
    /// One pool, or a weighted split across several.
    pools: Vec<WeightedPool>,
    /// Present for a split: hands out pools in proportion to their weights.
    cycle: Option<WeightedCycle>,
    pub retry: RetryPolicy,
    pub timeout: Option<std::time::Duration>,
    pub max_body_bytes: Option<u64>,
    pub access: AccessList,
    pub ignore_case: bool,
}

impl RouteEntry {
    fn new(r: &Route) -> RouteEntry {
        let cycle = (r.split.len() > 1).then(|| {
            let weights: Vec<u32> = r.split.iter().map(|w| w.weight).collect();
            WeightedCycle::new(&weights)
        });
        RouteEntry {
            prefix: r.prefix.as_str().into(),
            pools: r.split.clone(),
            cycle,
            retry: r.retry,
            timeout: r.timeout,
            max_body_bytes: r.max_body_bytes,
            access: r.access.clone(),
            ignore_case: r.ignore_case,
        }
    }

    /// The pool for this request: the only one, or the next by the split's weights.
    pub fn pool(&self) -> PoolId {
        // Validation guarantees at least one pool.
        match &self.cycle {
            None => self.pools[0].pool,
            Some(c) => self.pools[c.next()].pool,
        }
    }

    /// Every pool with its weight, for `check`.
    pub fn pools(&self) -> &[WeightedPool] {
        &self.pools
    }
}

#[derive(Debug)]
pub struct RouteTable {
    /// Names as bytes: the normalised Host is looked up without a UTF-8 check.
    exact: HashMap<Box<[u8]>, usize>,
    /// Suffixes like `.example.test`; a host tries each of its own dot-suffixes, longest first,
    /// so a lookup costs one hash probe per label rather than a scan of every wildcard.
    wildcard: HashMap<Box<[u8]>, usize>,
    catch_all: Option<usize>,
    hosts: Vec<HostRoutes>,
}

impl RouteTable {
    pub fn build(config: &Config) -> RouteTable {
        let mut table = RouteTable {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            catch_all: None,
            hosts: Vec::with_capacity(config.hosts.len()),
        };
        for (i, host) in config.hosts.iter().enumerate() {
            for name in &host.names {
                // Validation refused duplicate names, so nothing is overwritten here.
                match name {
                    HostName::Exact(n) => {
                        table.exact.insert(n.as_bytes().into(), i);
                    }
                    HostName::Wildcard(s) if s.is_empty() => table.catch_all = Some(i),
                    HostName::Wildcard(s) => {
                        table.wildcard.insert(s.as_bytes().into(), i);
                    }
                }
            }
            let mut routes: Vec<RouteEntry> = host.routes.iter().map(RouteEntry::new).collect();
            // Stable sort keeps file order among equal lengths (which cannot both match).
            routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
            table.hosts.push(HostRoutes {
                label: host.names[0].to_string(),
                access: host.access.clone(),
                client_subjects: host
                    .allow_client_subjects
                    .iter()
                    .map(|s| s.as_str().into())
                    .collect(),
                routes,
            });
        }
        table
    }

    /// Route a request by its raw authority (Host field or absolute-form) and its path in
    /// normal form (`wire::path`), query included.
    pub fn lookup(&self, authority: &[u8], path: &str) -> Result<Target, Miss> {
        let mut buf = [0u8; MAX_HOST];
        let host = normalize_host(authority, &mut buf).ok_or(Miss::BadHost)?;
        let h = self.find_host(host).ok_or(Miss::UnknownHost)?;
        let routes = &self.hosts[h].routes;
        routes
            .iter()
            .position(|r| prefix_matches(&r.prefix, path, r.ignore_case))
            .map(|r| Target { host: h, route: r })
            .ok_or(Miss::NoRoute)
    }

    fn find_host(&self, host: &[u8]) -> Option<usize> {
        if let Some(&i) = self.exact.get(host) {
            return Some(i);
        }
        if !self.wildcard.is_empty() {
            // Each '.' (but a leading one) starts a candidate suffix, longest first; the
            // wildcard needs at least one label in front of it.
            for (i, _) in host
                .iter()
                .enumerate()
                .filter(|&(i, &b)| b == b'.' && i > 0)
            {
                if let Some(&h) = self.wildcard.get(&host[i..]) {
                    return Some(h);
                }
            }
        }
        self.catch_all
    }

    pub fn host_label(&self, host: usize) -> &str {
        &self.hosts[host].label
    }

    pub fn route(&self, t: Target) -> &RouteEntry {
        &self.hosts[t.host].routes[t.route]
    }

    pub fn host_access(&self, t: Target) -> &AccessList {
        &self.hosts[t.host].access
    }

    /// Whether a request whose TLS client presented `subject` (`None`: no verified client
    /// certificate) may use the host of `t`.
    pub fn admits_client(&self, t: Target, subject: Option<&str>) -> bool {
        let allowed = &self.hosts[t.host].client_subjects;
        allowed.is_empty() || subject.is_some_and(|s| allowed.iter().any(|a| **a == *s))
    }

    /// Every host with its routes in the order they are tried, for `check`.
    pub fn describe(&self) -> impl Iterator<Item = (&str, &[RouteEntry])> {
        self.hosts
            .iter()
            .map(|h| (h.label.as_str(), h.routes.as_slice()))
    }
}

/// Segment-wise prefix match: `/api` matches `/api`, `/api/x`, `/api?q` and `/api;v=1` (a
/// segment's parameters belong to it, RFC 3986 §3.3, and some backends strip them), not
/// `/apiary`.
fn prefix_matches(prefix: &str, path: &str, ignore_case: bool) -> bool {
    let (prefix, path) = (prefix.as_bytes(), path.as_bytes());
    let Some(head) = path.get(..prefix.len()) else {
        return false;
    };
    let same = if ignore_case {
        head.eq_ignore_ascii_case(prefix)
    } else {
        head == prefix
    };
    same && (prefix.ends_with(b"/")
        || matches!(path.get(prefix.len()), None | Some(b'/' | b'?' | b';')))
}

/// Each byte a host name or IP literal may hold, lower-cased; 0 for every other byte. One
/// lookup per byte instead of a chain of class tests.
static HOST_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'[' | b']' | b':') {
            t[b] = c.to_ascii_lowercase();
        }
        b += 1;
    }
    t
};

/// Lower-case the host part of an authority into `buf`, dropping the port and a trailing dot.
/// `None` if it holds bytes no host name or IP literal can hold.
pub fn normalize_host<'a>(authority: &[u8], buf: &'a mut [u8; MAX_HOST]) -> Option<&'a [u8]> {
    let authority = crate::proxy::http1::tokens::trim(authority);
    let host = if let Some(rest) = authority.strip_prefix(b"[") {
        // IPv6 literal: keep the brackets so it cannot collide with a name.
        let end = rest.iter().position(|&b| b == b']')?;
        &authority[..end + 2]
    } else {
        match authority.iter().rposition(|&b| b == b':') {
            Some(i) => {
                let port = &authority[i + 1..];
                if !port.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                &authority[..i]
            }
            None => authority,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST {
        return None;
    }
    for (dst, &b) in buf.iter_mut().zip(host) {
        let lower = HOST_BYTE[usize::from(b)];
        if lower == 0 {
            return None;
        }
        *dst = lower;
    }
    Some(&buf[..host.len()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const CONFIG: &str = r#"
[[listener]]
bind = "0.0.0.0:80"

[[host]]
names = ["blog.example.test", "www.example.test"]
[[host.route]]
prefix = "/api"
pool = "was"
[[host.route]]
prefix = "/"
pool = "web"
[[host.route]]
prefix = "/static/"
pool = "cdn"
ignore_case = true

[[host]]
names = ["*.example.test"]
[[host.route]]
prefix = "/"
pool = "apps"

[[host]]
names = ["*.deep.example.test"]
[[host.route]]
prefix = "/only"
pool = "deep"

[[host]]
names = ["*"]
[[host.route]]
prefix = "/"
pool = "fallback"

[pool.web]
backends = ["192.0.2.21:8080"]
[pool.was]
backends = ["192.0.2.23:8080"]
[pool.cdn]
backends = ["192.0.2.24:8080"]
[pool.apps]
backends = ["192.0.2.25:8080"]
[pool.deep]
backends = ["192.0.2.26:8080"]
[pool.fallback]
backends = ["192.0.2.27:8080"]
"#;

    fn route(authority: &str, path: &str) -> Result<String, Miss> {
        let config = crate::config::parse(Path::new("t.toml"), CONFIG).unwrap();
        let table = RouteTable::build(&config);
        table
            .lookup(authority.as_bytes(), path)
            .map(|t| config.pool(table.route(t).pool()).name.clone())
    }

    #[test]
    fn host_and_prefix_table() {
        let cases: &[(&str, &str, Result<&str, Miss>)] = &[
            ("blog.example.test", "/", Ok("web")),
            ("blog.example.test", "/api", Ok("was")),
            ("blog.example.test", "/api/v1/posts", Ok("was")),
            ("blog.example.test", "/api?x=1", Ok("was")),
            ("blog.example.test", "/apiary", Ok("web")),
            ("blog.example.test", "/api;v=1", Ok("was")),
            ("blog.example.test", "/API", Ok("web")),
            ("blog.example.test", "/Static/app.js", Ok("cdn")),
            ("blog.example.test", "/static/app.js", Ok("cdn")),
            ("blog.example.test", "/static", Ok("web")),
            ("BLOG.Example.TEST:8080", "/api", Ok("was")),
            ("blog.example.test.", "/", Ok("web")),
            ("www.example.test", "/api", Ok("was")),
            ("other.example.test", "/api", Ok("apps")),
            ("a.b.example.test", "/", Ok("apps")),
            ("x.deep.example.test", "/only/x", Ok("deep")),
            ("x.deep.example.test", "/", Err(Miss::NoRoute)),
            ("example.test", "/", Ok("fallback")),
            ("unknown.test", "/", Ok("fallback")),
            ("[2001:db8::1]:80", "/", Ok("fallback")),
            ("bad host", "/", Err(Miss::BadHost)),
            ("host:port", "/", Err(Miss::BadHost)),
            ("", "/", Err(Miss::BadHost)),
        ];
        for (host, path, want) in cases {
            assert_eq!(
                route(host, path).as_deref().map_err(|e| *e),
                *want,
                "{host} {path}"
            );
        }
    }

    #[test]
    fn unknown_host_without_catch_all() {
        let config = crate::config::parse(
            Path::new("t.toml"),
            "[[listener]]\nbind = \"0.0.0.0:80\"\n[[host]]\nnames = [\"a.test\"]\n[[host.route]]\nprefix = \"/x\"\npool = \"p\"\n[pool.p]\nbackends = [\"192.0.2.1:80\"]\n",
        )
        .unwrap();
        let table = RouteTable::build(&config);
        assert_eq!(table.lookup(b"b.test", "/x"), Err(Miss::UnknownHost));
        assert_eq!(table.lookup(b"a.test", "/y"), Err(Miss::NoRoute));
        assert!(table.lookup(b"a.test", "/x/y").is_ok());
    }
}
