//! Backends by DNS name: looking the pools' names up and again as their TTLs run out.
//!
//! Owns the queries (hickory-resolver on Tokio: A and/or AAAA as `[resolver] family` says, SRV
//! with its targets; EDNS, and TCP when an answer is truncated), one task per distinct name
//! that re-asks when its answer's TTL (clamped to the floor and ceiling) runs out, the
//! current address sets that those tasks publish on a `watch` channel, and [`expand`], which
//! turns a validated configuration and those sets into the configuration the proxy is built
//! from. What an answer does to a set (order, failures, grace) is `answer`'s (pure). It does
//! not own the pools: the daemon rebuilds the snapshot when a set changed, and
//! `proxy::upstream` keeps the live state of the addresses that stay.

pub mod answer;
pub mod metrics;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{Backend, Config, Family, Lookup, ResolverSettings};
use answer::{Endpoint, Outcome, Tracker};
use metrics::DnsStats;

/// The sets of every name that had an authoritative answer, and how many names have had
/// their first query round (answered or not).
#[derive(Debug, Clone, Default)]
pub struct Answers {
    pub sets: BTreeMap<Lookup, Vec<Endpoint>>,
    pub tried: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot set up the DNS resolver: {0}")]
    Setup(String),
}

/// The running lookups; they stop when this is dropped.
#[derive(Debug)]
pub struct Resolver {
    answers: watch::Receiver<Answers>,
    lookups: usize,
    tasks: Vec<JoinHandle<()>>,
    // Kept so `changed` waits for ever when no task runs.
    _tx: watch::Sender<Answers>,
}

impl Drop for Resolver {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Resolver {
    /// Start looking up `lookups`. Sets in `seed` (the answers of a resolver this one
    /// replaces) are in force from the start for the names that stay, so a reload leaves no
    /// gap. Must run inside a Tokio runtime.
    pub fn start(
        settings: &ResolverSettings,
        lookups: Vec<Lookup>,
        seed: &Answers,
    ) -> Result<Resolver, ResolveError> {
        let mut first = Answers::default();
        for l in &lookups {
            if let Some(set) = seed.sets.get(l) {
                first.sets.insert(l.clone(), set.clone());
            }
        }
        let (tx, rx) = watch::channel(first);
        let mut tasks = Vec::new();
        if !lookups.is_empty() {
            let dns = Arc::new(build(settings)?);
            for l in &lookups {
                let tracker = seed
                    .sets
                    .get(l)
                    .map_or_else(Tracker::default, |s| Tracker::seeded(s.clone()));
                tasks.push(tokio::spawn(follow(
                    dns.clone(),
                    settings.clone(),
                    l.clone(),
                    tracker,
                    tx.clone(),
                )));
            }
        }
        Ok(Resolver {
            answers: rx,
            lookups: lookups.len(),
            tasks,
            _tx: tx,
        })
    }

    /// The sets now.
    pub fn current(&self) -> Answers {
        self.answers.borrow().clone()
    }

    /// Wait until every name had its first query round, or `limit` passed: at start-up the
    /// pools then begin with the addresses their names have (a name that does not resolve
    /// yet leaves its pool to fill later).
    pub async fn first_round(&mut self, limit: Duration) {
        let n = self.lookups;
        let _ = tokio::time::timeout(limit, self.answers.wait_for(|a| a.tried >= n)).await;
        self.answers.mark_unchanged();
    }

    /// The next change of a set (never when there is nothing to look up).
    pub async fn changed(&mut self) {
        if self.answers.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// How long start-up waits for the first answers: one query's full retry budget, plus a
/// margin for an SRV record's targets.
pub fn first_round_limit(s: &ResolverSettings) -> Duration {
    s.timeout * s.attempts * 2 + Duration::from_millis(500)
}

fn build(s: &ResolverSettings) -> Result<TokioResolver, ResolveError> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if s.nameservers.is_empty() {
        TokioResolver::builder(provider).map_err(|e| ResolveError::Setup(e.to_string()))?
    } else {
        let servers = s
            .nameservers
            .iter()
            .map(|a| {
                let mut ns = NameServerConfig::udp_and_tcp(a.ip());
                for c in &mut ns.connections {
                    c.port = a.port();
                }
                ns
            })
            .collect();
        let mut b = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            provider,
        );
        // Only the servers named: a test (or an operator) sees every query there.
        b.options_mut().use_hosts_file = ResolveHosts::Never;
        b
    };
    let o = builder.options_mut();
    o.timeout = s.timeout;
    o.attempts = s.attempts as usize;
    o.edns0 = true;
    builder
        .build()
        .map_err(|e| ResolveError::Setup(e.to_string()))
}

/// One name's life: ask, publish a changed set, wait as the answer says, again.
async fn follow(
    dns: Arc<TokioResolver>,
    settings: ResolverSettings,
    lookup: Lookup,
    mut tracker: Tracker,
    tx: watch::Sender<Answers>,
) {
    let label = lookup.to_string();
    let stats = metrics::dns(&label);
    let start = Instant::now();
    let mut first = true;
    let mut failing = false;
    loop {
        let outcome = query(&dns, &lookup, settings.family).await;
        let before = tracker.set().to_vec();
        count_and_log(&outcome, &mut failing, &label, &settings, &stats);
        let step = tracker.step(outcome, start.elapsed(), &settings);
        stats.addresses.store(tracker.set().len() as u64, Relaxed);
        if step.changed {
            log_change(&label, &before, tracker.set(), step.expired);
        }
        let was_first = std::mem::replace(&mut first, false);
        let resolved = tracker.resolved();
        let set = tracker.set().to_vec();
        tx.send_if_modified(|a| {
            if was_first {
                a.tried += 1;
            }
            if step.changed || (resolved && !a.sets.contains_key(&lookup)) {
                a.sets.insert(lookup.clone(), set);
                return true;
            }
            was_first
        });
        tokio::time::sleep(step.next).await;
    }
}

/// Count a round's outcome; log the first failure of a streak and its end.
fn count_and_log(
    outcome: &Outcome,
    failing: &mut bool,
    label: &str,
    settings: &ResolverSettings,
    stats: &DnsStats,
) {
    match outcome {
        Outcome::Failed(why) => {
            if !*failing {
                warn!(name = %label, error = %why, grace_ms = settings.grace.as_millis() as u64,
                    "DNS lookup failed; keeping the last good addresses");
            }
            *failing = true;
            stats.failures.fetch_add(1, Relaxed);
        }
        _ => {
            if *failing {
                info!(name = %label, "DNS lookup answers again");
            }
            *failing = false;
            stats.resolutions.fetch_add(1, Relaxed);
        }
    }
}

fn log_change(label: &str, before: &[Endpoint], now: &[Endpoint], expired: bool) {
    let (added, removed) = answer::diff(before, now);
    let list = |v: &[SocketAddr]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    if expired {
        warn!(name = %label, removed = %list(&removed), "DNS failing for longer than the grace period: the name's backends are dropped");
    } else {
        info!(name = %label, added = %list(&added), removed = %list(&removed),
            now = now.len(), "backend addresses changed");
    }
}

/// One query round for `lookup`.
async fn query(dns: &TokioResolver, lookup: &Lookup, family: Family) -> Outcome {
    match lookup {
        Lookup::Host { name, port } => addresses(dns, name, *port, family).await,
        Lookup::Srv { name } => srv(dns, name, family).await,
    }
}

/// The A and/or AAAA records of `name`, each address with `port`. Both families must answer
/// for the set to change: one failing keeps the last good set.
async fn addresses(dns: &TokioResolver, name: &str, port: u16, family: Family) -> Outcome {
    let types: &[RecordType] = match family {
        Family::Any => &[RecordType::A, RecordType::AAAA],
        Family::Ipv4 => &[RecordType::A],
        Family::Ipv6 => &[RecordType::AAAA],
    };
    // The schedule is ours (TTL, floor, ceiling): every round must reach a server, so the
    // cache's entry goes first. (Capping the cache's TTLs instead would rewrite the answers'
    // TTLs too, and every name would be asked at the floor.)
    let results = futures_util::future::join_all(types.iter().map(|&t| {
        dns.clear_lookup_cache(name, t);
        dns.lookup(name.to_owned(), t)
    }))
    .await;
    let host: Arc<str> = name.trim_end_matches('.').into();
    let mut endpoints = Vec::new();
    let mut ttl = u32::MAX;
    for r in results {
        match r {
            Ok(found) => {
                for rec in found.answers() {
                    let ip = match &rec.data {
                        RData::A(a) => IpAddr::V4(a.0),
                        RData::AAAA(a) => IpAddr::V6(a.0),
                        // CNAMEs on the way: their targets' records are in the answer too.
                        _ => continue,
                    };
                    ttl = ttl.min(rec.ttl);
                    endpoints.push(Endpoint {
                        addr: SocketAddr::new(ip, port),
                        name: host.clone(),
                        weight: 1,
                    });
                }
            }
            Err(e) if authoritative_empty(&e) => {}
            Err(e) => return Outcome::Failed(e.to_string()),
        }
    }
    if endpoints.is_empty() {
        return Outcome::Empty;
    }
    Outcome::Records {
        endpoints,
        ttl: Duration::from_secs(u64::from(ttl)),
    }
}

/// The SRV record `name`: the targets of its lowest priority (RFC 2782: the others are only
/// for when those cannot be reached, which health checks and ejection already handle among
/// the targets), each resolved with its port and the record's weight.
async fn srv(dns: &TokioResolver, name: &str, family: Family) -> Outcome {
    dns.clear_lookup_cache(name, RecordType::SRV);
    let found = match dns.lookup(name.to_owned(), RecordType::SRV).await {
        Ok(f) => f,
        Err(e) if authoritative_empty(&e) => return Outcome::Empty,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let mut ttl = u32::MAX;
    let records: Vec<_> = found
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => {
                ttl = ttl.min(r.ttl);
                Some(s.clone())
            }
            _ => None,
        })
        .collect();
    let Some(best) = records.iter().map(|s| s.priority).min() else {
        return Outcome::Empty;
    };
    let mut endpoints = Vec::new();
    for s in records.iter().filter(|s| s.priority == best) {
        let target = s.target.to_ascii();
        match addresses(dns, &target, s.port, family).await {
            Outcome::Records {
                endpoints: found,
                ttl: t,
            } => {
                ttl = ttl.min(t.as_secs().try_into().unwrap_or(u32::MAX));
                endpoints.extend(found.into_iter().map(|e| Endpoint {
                    weight: u32::from(s.weight).max(1),
                    ..e
                }));
            }
            Outcome::Empty => {}
            failed @ Outcome::Failed(_) => return failed,
        }
    }
    if endpoints.is_empty() {
        return Outcome::Empty;
    }
    Outcome::Records {
        endpoints,
        ttl: Duration::from_secs(u64::from(ttl)),
    }
}

/// NXDOMAIN, or NOERROR with no record of the type: the name has nothing to offer. Any other
/// code (SERVFAIL, REFUSED) is a failure of the server, not an answer about the name.
fn authoritative_empty(e: &NetError) -> bool {
    matches!(
        e,
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code: ResponseCode::NXDomain | ResponseCode::NoError,
            ..
        }))
    )
}

/// The configuration the proxy is built from: `config` with every address its pools' names
/// give in `answers` added to their backends (an address already listed is not added twice),
/// in the sets' order (sorted), so the same answers always make the same pools.
pub fn expand(config: &Config, answers: &Answers) -> Config {
    let mut out = config.clone();
    for pool in &mut out.pools {
        for named in &pool.names {
            let Some(set) = answers.sets.get(&named.lookup) else {
                continue;
            };
            for e in set {
                if pool.backends.iter().any(|b| b.address == e.addr) {
                    continue;
                }
                pool.backends.push(Backend {
                    address: e.addr,
                    weight: (named.weight * e.weight).min(MAX_WEIGHT),
                    name: Some(e.name.clone()),
                });
            }
        }
    }
    out
}

/// The configuration's own bound on a backend's weight.
const MAX_WEIGHT: u32 = 1000;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn expand_adds_each_address_once_with_its_weight() {
        let text = "[[listener]]\nbind = \"0.0.0.0:80\"\n[[host]]\nnames = [\"a.test\"]\n[[host.route]]\nprefix = \"/\"\npool = \"p\"\n[pool.p]\nbackends = [\"192.0.2.1:80\", { address = \"web.test:80\", weight = 3 }]\n";
        let config = crate::config::parse(Path::new("t.toml"), text).unwrap();
        assert_eq!(config.pools[0].backends.len(), 1);
        let lookup = config.lookups().remove(0);
        let ep = |a: &str| Endpoint {
            addr: a.parse().unwrap(),
            name: "web.test".into(),
            weight: 1,
        };
        let mut answers = Answers::default();
        answers.sets.insert(
            lookup,
            answer::normalize(vec![ep("192.0.2.2:80"), ep("192.0.2.1:80")]),
        );
        let out = expand(&config, &answers);
        let b = &out.pools[0].backends;
        assert_eq!(b.len(), 2, "192.0.2.1:80 is listed already: {b:?}");
        assert_eq!(b[1].address.to_string(), "192.0.2.2:80");
        assert_eq!((b[1].weight, b[1].name.as_deref()), (3, Some("web.test")));
        assert_eq!(
            expand(&config, &Answers::default()).pools[0].backends.len(),
            1
        );
    }
}
