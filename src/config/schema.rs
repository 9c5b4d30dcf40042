//! The TOML file as written: serde structs that mirror the public keys one to one.
//!
//! Owns the key names (the public contract: extend, never rename) and their spans, so that
//! validation can point at the line of a bad value. It does not judge values; `validate` does.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub vip: Vec<Spanned<RawVip>>,
    #[serde(default)]
    pub listener: Vec<Spanned<RawListener>>,
    #[serde(default)]
    pub host: Vec<Spanned<RawHost>>,
    #[serde(default)]
    pub pool: BTreeMap<Spanned<String>, Spanned<RawPool>>,
    pub proxy: Option<Spanned<RawProxy>>,
    pub daemon: Option<Spanned<RawDaemon>>,
    pub vrrp: Option<Spanned<RawVrrp>>,
    pub bgp: Option<Spanned<RawBgp>>,
    pub admin: Option<Spanned<RawAdmin>>,
    pub access_log: Option<Spanned<RawAccessLog>>,
    pub log: Option<Spanned<RawLog>>,
    #[serde(default)]
    pub certificate: Vec<Spanned<RawCertificate>>,
    pub resolver: Option<Spanned<RawResolver>>,
    pub acme: Option<Spanned<RawAcme>>,
}

/// `[resolver]`: how backends given by name are looked up and re-resolved.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResolver {
    pub nameservers: Option<Vec<Spanned<String>>>,
    pub timeout_ms: Option<Spanned<i64>>,
    pub attempts: Option<Spanned<i64>>,
    pub ttl_floor_ms: Option<Spanned<i64>>,
    pub ttl_ceiling_ms: Option<Spanned<i64>>,
    pub grace_ms: Option<Spanned<i64>>,
    pub family: Option<Spanned<String>>,
}

/// `[[certificate]]`: a PEM chain and key served on `https` listeners, from files or
/// obtained by ACME.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertificate {
    /// Required without `acme`, refused with it.
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    /// Without it the names are the certificate's DNS subjectAltNames.
    pub names: Option<Vec<Spanned<String>>>,
    pub default: Option<Spanned<bool>>,
    /// `true` (the names are `names`) or the list of names to order.
    pub acme: Option<Spanned<RawAcmeNames>>,
}

/// `acme = true` and `acme = ["a.example", "b.example"]` (an untagged enum cannot hold spans:
/// errors about a listed name point at the `acme` value).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawAcmeNames {
    On(bool),
    Names(Vec<String>),
}

/// `[acme]`: the ACME server and account that `acme` certificates are ordered from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    pub directory: Option<Spanned<String>>,
    pub contact: Option<Vec<Spanned<String>>>,
    pub storage: Option<Spanned<String>>,
    pub challenge: Option<Spanned<String>>,
    /// CA bundle the ACME server's own HTTPS certificate is checked against (a test CA).
    pub server_ca: Option<Spanned<String>>,
    pub renew_remaining_percent: Option<Spanned<i64>>,
    pub retry_initial_ms: Option<Spanned<i64>>,
    pub retry_max_ms: Option<Spanned<i64>>,
    pub terms_of_service_agreed: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub enabled: Option<bool>,
    pub bind: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccessLog {
    pub enabled: Option<bool>,
    pub format: Option<Spanned<String>>,
    pub sample: Option<Spanned<RawFraction>>,
}

/// `sample = 1` and `sample = 0.5` are both numbers to a reader.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawFraction {
    Int(i64),
    Float(f64),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub level: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    pub head_timeout_ms: Option<Spanned<i64>>,
    pub client_idle_timeout_ms: Option<Spanned<i64>>,
    pub connect_timeout_ms: Option<Spanned<i64>>,
    pub backend_timeout_ms: Option<Spanned<i64>>,
    pub backend_idle_timeout_ms: Option<Spanned<i64>>,
    pub backend_max_idle: Option<Spanned<i64>>,
    pub max_request_line: Option<Spanned<i64>>,
    pub max_head_size: Option<Spanned<i64>>,
    pub max_headers: Option<Spanned<i64>>,
    pub http2_max_concurrent_streams: Option<Spanned<i64>>,
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    pub client_ip_header: Option<Spanned<String>>,
    pub request_id: Option<bool>,
    pub retry_budget_percent: Option<Spanned<i64>>,
    pub worker_threads: Option<Spanned<i64>>,
    pub runtime: Option<Spanned<String>>,
    pub merge_slashes: Option<bool>,
    pub escaped_slashes: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub drain_timeout_ms: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVip {
    pub address: Spanned<String>,
    /// Required for `announce = "arp"` (the default), refused for `"bgp"`.
    pub interface: Option<Spanned<String>>,
    /// `"arp"` (the default: ARP/NDP on `interface`, alone or elected by `[vrrp]`) or
    /// `"bgp"` (announced to the local BIRD through `[bgp] table`).
    pub announce: Option<Spanned<String>>,
    pub garp_count: Option<Spanned<i64>>,
    pub garp_interval_ms: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub bind: Spanned<String>,
    pub protocol: Option<Spanned<String>>,
    /// `tcp` listeners only.
    pub pool: Option<Spanned<String>>,
    pub send_proxy_protocol: Option<Spanned<String>>,
    pub accept_proxy_protocol: Option<bool>,
    /// `https` listeners only.
    pub sni_fallback: Option<Spanned<String>>,
    pub min_tls_version: Option<Spanned<String>>,
    pub client_ca: Option<Spanned<String>>,
    pub client_auth: Option<Spanned<String>>,
    /// `http` listeners only.
    pub redirect_https: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    /// `http` and `https` listeners.
    pub http2: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub names: Spanned<Vec<Spanned<String>>>,
    pub allow: Option<Vec<Spanned<String>>>,
    pub deny: Option<Vec<Spanned<String>>>,
    pub allow_client_subjects: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub route: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub prefix: Spanned<String>,
    /// Exactly one of `pool` and `split`.
    pub pool: Option<Spanned<String>>,
    pub split: Option<Spanned<Vec<Spanned<RawSplit>>>>,
    pub retries: Option<Spanned<i64>>,
    pub retry_on: Option<Vec<Spanned<String>>>,
    pub per_try_timeout_ms: Option<Spanned<i64>>,
    pub timeout_ms: Option<Spanned<i64>>,
    pub max_body_bytes: Option<Spanned<i64>>,
    pub allow: Option<Vec<Spanned<String>>>,
    pub deny: Option<Vec<Spanned<String>>>,
    pub ignore_case: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSplit {
    pub pool: Spanned<String>,
    pub weight: Spanned<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub backends: Option<Spanned<Vec<Spanned<RawBackend>>>>,
    /// An SRV record whose targets and ports are backends (besides `backends`).
    pub srv: Option<Spanned<String>>,
    pub balance: Option<Spanned<String>>,
    pub hash_key: Option<Spanned<String>>,
    pub health: Option<Spanned<RawHealth>>,
    pub outlier: Option<Spanned<RawOutlier>>,
    pub panic_threshold_percent: Option<Spanned<i64>>,
    pub tls: Option<Spanned<RawPoolTls>>,
    /// `"http1"` or `"http2"`: what is spoken to the backends.
    pub protocol: Option<Spanned<String>>,
}

/// `[pool.NAME.tls]`: TLS (and mutual TLS) to the pool's backends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPoolTls {
    pub ca: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub alpn: Option<Vec<Spanned<String>>>,
    pub insecure_skip_verify: Option<Spanned<bool>>,
}

/// `"IP:PORT"`, `"NAME:PORT"` or `{ address = "IP:PORT" or "NAME:PORT", weight = N }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawBackend {
    Address(String),
    Weighted(RawWeightedBackend),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeightedBackend {
    pub address: String,
    pub weight: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub interval_ms: Option<Spanned<i64>>,
    pub timeout_ms: Option<Spanned<i64>>,
    pub healthy_threshold: Option<Spanned<i64>>,
    pub unhealthy_threshold: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutlier {
    pub consecutive_failures: Option<Spanned<i64>>,
    pub base_ejection_ms: Option<Spanned<i64>>,
    pub max_ejection_ms: Option<Spanned<i64>>,
    pub max_ejection_percent: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVrrp {
    pub vrid: Spanned<i64>,
    pub priority: Option<Spanned<i64>>,
    pub advert_interval: Option<Spanned<RawDuration>>,
    pub peers: Option<Spanned<Vec<Spanned<String>>>>,
    pub preempt: Option<Spanned<bool>>,
    pub preempt_delay: Option<Spanned<RawDuration>>,
    pub startup_listen: Option<Spanned<RawDuration>>,
    pub interface: Option<Spanned<String>>,
    pub garp_refresh: Option<Spanned<RawDuration>>,
    /// `[[vrrp.track]]`: conditions that lower the priority or give up mastership.
    pub track: Option<Vec<Spanned<RawTrack>>>,
}

/// `[bgp]`: how the `announce = "bgp"` VIPs reach the local BGP daemon.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBgp {
    pub table: Option<Spanned<i64>>,
    pub check_interval: Option<Spanned<RawDuration>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    pub withdraw_wait: Option<Spanned<RawDuration>>,
    pub bird_socket: Option<Spanned<String>>,
    pub bird_protocol: Option<Spanned<String>>,
    /// `[[bgp.track]]`: conditions that withdraw the VIPs while they hold.
    pub track: Option<Vec<Spanned<RawTrack>>>,
}

/// One `[[vrrp.track]]` or `[[bgp.track]]`: exactly one condition (`pool` or `listeners`) and,
/// for VRRP only, an optional weight.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrack {
    pub pool: Option<Spanned<String>>,
    pub listeners: Option<Spanned<bool>>,
    pub weight: Option<Spanned<i64>>,
}

/// A duration as written: `"100ms"`, `"1s"`, `"0.5s"`. A bare number is read too, only so that
/// validation can say which unit to write instead of a generic type error.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawDuration {
    Text(String),
    Number(f64),
}
