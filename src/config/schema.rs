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
    pub vrrp: Option<Spanned<RawVrrp>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVip {
    pub address: Spanned<String>,
    pub interface: Spanned<String>,
    pub garp_count: Option<Spanned<i64>>,
    pub garp_interval_ms: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub bind: Spanned<String>,
    pub protocol: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub names: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub route: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub prefix: Spanned<String>,
    pub pool: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub backends: Spanned<Vec<Spanned<String>>>,
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
    pub interface: Option<Spanned<String>>,
    pub garp_refresh: Option<Spanned<RawDuration>>,
}

/// A duration as written: `"100ms"`, `"1s"`, `"0.5s"`. A bare number is read too, only so that
/// validation can say which unit to write instead of a generic type error.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawDuration {
    Text(String),
    Number(f64),
}
