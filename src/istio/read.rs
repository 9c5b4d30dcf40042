//! Reading Istio and Kubernetes YAML into the few resources `import-istio` understands.
//!
//! Owns which fields are read and the warning for every field that is not: each mapping is
//! walked with [`Obj`], which records the keys consumed; whatever is left over is reported with
//! its path (`spec.http[0].retries`) and, where known, why vipgate cannot carry it over. Does
//! not decide what the resources become (`emit` does).

use std::net::Ipv4Addr;

use serde::Deserialize;
use serde_norway::{Mapping, Value};

use super::ImportError;

/// One input file.
#[derive(Debug, Clone)]
pub struct Source {
    /// As given on the command line, for messages.
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `FILE: Kind namespace/name`, the prefix of this resource's warnings.
    pub origin: String,
}

#[derive(Debug, Clone)]
pub struct Gateway {
    pub meta: Meta,
    pub servers: Vec<Server>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub port: u16,
    pub protocol: String,
    /// As written, `namespace/` prefix removed.
    pub hosts: Vec<String>,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct VirtualService {
    pub meta: Meta,
    pub hosts: Vec<String>,
    /// As written (`name` or `namespace/name`; `mesh`).
    pub gateways: Vec<String>,
    pub http: Vec<HttpRoute>,
}

#[derive(Debug, Clone)]
pub struct HttpRoute {
    pub path: String,
    /// URI prefixes; empty when the route has no `match` (it matches everything).
    pub prefixes: Vec<String>,
    /// True when every match was dropped (the route must not become a catch-all).
    pub all_matches_dropped: bool,
    pub destinations: Vec<Destination>,
    /// `retries`, as vipgate's route keys (already checked): attempts, conditions, per-try ms.
    pub retries: Option<Retries>,
    /// `timeout` in milliseconds.
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retries {
    pub attempts: u32,
    /// vipgate's `retry_on` names.
    pub on: Vec<&'static str>,
    pub per_try_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub host: String,
    pub subset: Option<String>,
    pub port: Option<u16>,
    pub weight: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct DestinationRule {
    pub meta: Meta,
    pub host: String,
    pub tls_mode: Option<String>,
    /// Subset name and whether it selects pods by labels.
    pub subsets: Vec<(String, bool)>,
}

/// A `Service` of type LoadBalancer: where MetalLB put the VIP.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    pub meta: Meta,
    pub ip: Option<Ipv4Addr>,
}

#[derive(Debug, Default)]
pub struct Resources {
    pub gateways: Vec<Gateway>,
    pub virtual_services: Vec<VirtualService>,
    pub destination_rules: Vec<DestinationRule>,
    pub load_balancers: Vec<LoadBalancer>,
}

/// Warnings in the order found.
pub type Warnings = Vec<String>;

/// Parse every YAML document of every source.
pub fn read(sources: &[Source], warnings: &mut Warnings) -> Result<Resources, ImportError> {
    let mut out = Resources::default();
    for src in sources {
        for doc in serde_norway::Deserializer::from_str(&src.text) {
            let value = Value::deserialize(doc).map_err(|e| ImportError::Yaml {
                file: src.name.clone(),
                line: e.location().map_or(1, |l| l.line()),
                column: e.location().map_or(1, |l| l.column()),
                reason: e.to_string(),
            })?;
            if value.is_null() {
                continue;
            }
            read_resource(&src.name, &value, &mut out, warnings);
        }
    }
    Ok(out)
}

fn read_resource(file: &str, v: &Value, out: &mut Resources, w: &mut Warnings) {
    let Some(mut top) = Obj::new(v, "") else {
        w.push(format!(
            "{file}: a YAML document that is not a mapping: skipped"
        ));
        return;
    };
    let kind = top.str("kind").unwrap_or_default();
    let api = top.str("apiVersion").unwrap_or_default();
    let (namespace, name) = match top.obj("metadata") {
        Some(mut m) => {
            let ns = m.str("namespace").unwrap_or_else(|| "default".into());
            let name = m.str("name").unwrap_or_else(|| "(unnamed)".into());
            m.ignore(&[
                "labels",
                "annotations",
                "uid",
                "resourceVersion",
                "generation",
            ]);
            // Annotations matter only on a LoadBalancer Service: read again below.
            (ns, name)
        }
        None => ("default".into(), "(unnamed)".into()),
    };
    let meta = Meta {
        origin: format!("{file}: {kind} {namespace}/{name}"),
        kind: kind.clone(),
        namespace,
        name,
    };
    top.ignore(&["status"]);
    let istio = api.starts_with("networking.istio.io/");
    match kind.as_str() {
        "Gateway" if istio => read_gateway(meta, top, out, w),
        "VirtualService" if istio => read_virtual_service(meta, top, out, w),
        "DestinationRule" if istio => read_destination_rule(meta, top, out, w),
        "Service" if api == "v1" => read_service(meta, v, top, out, w),
        "PeerAuthentication" => w.push(format!(
            "{}: not imported: mesh mTLS between workloads is not a gateway concern; vipgate \
             reaches backends in plain HTTP, as the seed's DestinationRule tls.mode DISABLE does",
            meta.origin
        )),
        _ => w.push(format!(
            "{}: not imported: kind {kind:?} ({api}) has no vipgate equivalent",
            meta.origin
        )),
    }
}

fn read_gateway(meta: Meta, mut top: Obj<'_>, out: &mut Resources, w: &mut Warnings) {
    let mut servers = Vec::new();
    if let Some(mut spec) = top.obj("spec") {
        // vipgate is the gateway: there is no pod to select.
        spec.ignore(&["selector"]);
        for (i, s) in spec.list("servers").into_iter().enumerate() {
            let path = format!("spec.servers[{i}]");
            let Some(mut s) = Obj::new(s, &path) else {
                continue;
            };
            let (port, protocol) = match s.obj("port") {
                Some(mut p) => {
                    let n = p.u16("number", w, &meta.origin);
                    let proto = p.str("protocol").unwrap_or_else(|| "HTTP".into());
                    p.ignore(&["name", "targetPort"]);
                    p.finish(w, &meta.origin);
                    (n, proto)
                }
                None => (None, String::new()),
            };
            let hosts = s
                .strings("hosts")
                .into_iter()
                .map(|h| match h.split_once('/') {
                    Some((_, host)) => host.to_string(),
                    None => h,
                })
                .collect();
            s.finish(w, &meta.origin);
            match port {
                Some(port) => servers.push(Server {
                    port,
                    protocol: protocol.to_ascii_uppercase(),
                    hosts,
                    path,
                }),
                None => w.push(format!(
                    "{}: {path}: no port.number: server skipped",
                    meta.origin
                )),
            }
        }
        spec.finish(w, &meta.origin);
    }
    top.finish(w, &meta.origin);
    out.gateways.push(Gateway { meta, servers });
}

fn read_virtual_service(meta: Meta, mut top: Obj<'_>, out: &mut Resources, w: &mut Warnings) {
    let mut vs = VirtualService {
        meta,
        hosts: Vec::new(),
        gateways: Vec::new(),
        http: Vec::new(),
    };
    let origin = vs.meta.origin.clone();
    if let Some(mut spec) = top.obj("spec") {
        vs.hosts = spec.strings("hosts");
        vs.gateways = spec.strings("gateways");
        for (i, r) in spec.list("http").into_iter().enumerate() {
            let path = format!("spec.http[{i}]");
            if let Some(r) = Obj::new(r, &path) {
                vs.http.push(read_http_route(r, &origin, w));
            }
        }
        spec.finish(w, &origin);
    }
    top.finish(w, &origin);
    out.virtual_services.push(vs);
}

fn read_http_route(mut r: Obj<'_>, origin: &str, w: &mut Warnings) -> HttpRoute {
    let path = r.path.clone();
    r.ignore(&["name"]);
    let matches = r.list("match");
    let mut prefixes = Vec::new();
    for (j, m) in matches.iter().enumerate() {
        let mpath = format!("{path}.match[{j}]");
        let Some(mut m) = Obj::new(m, &mpath) else {
            continue;
        };
        m.ignore(&["name"]);
        let mut usable = true;
        let mut prefix = None;
        if let Some(mut uri) = m.obj("uri") {
            if let Some(p) = uri.str("prefix") {
                prefix = Some(p);
            } else if let Some(p) = uri.str("exact") {
                w.push(format!(
                    "{origin}: {mpath}.uri.exact {p:?}: imported as the prefix {p:?}, which also \
                     matches the paths below it (vipgate matches prefixes only)"
                ));
                prefix = Some(p);
            } else if let Some(p) = uri.str("regex") {
                w.push(format!(
                    "{origin}: {mpath}.uri.regex {p:?}: vipgate has no regex routes: this match \
                     is dropped"
                ));
                usable = false;
            }
            uri.finish(w, origin);
        } else {
            prefix = Some("/".to_string());
        }
        // Any other condition narrows the match; dropping it would widen the route, so the
        // whole match goes instead.
        let others: Vec<String> = m.rest();
        if !others.is_empty() {
            w.push(format!(
                "{origin}: {mpath}: conditions on {} cannot be expressed in vipgate (Host and \
                 path prefix only): this match is dropped",
                others.join(", ")
            ));
            m.consume_all();
            usable = false;
        }
        if usable {
            if let Some(p) = prefix {
                prefixes.push(p);
            }
        }
    }
    let all_matches_dropped = !matches.is_empty() && prefixes.is_empty();
    let mut destinations = Vec::new();
    for (j, d) in r.list("route").into_iter().enumerate() {
        let dpath = format!("{path}.route[{j}]");
        let Some(mut d) = Obj::new(d, &dpath) else {
            continue;
        };
        let weight = d.u32("weight", w, origin);
        if let Some(mut dest) = d.obj("destination") {
            let host = dest.str("host").unwrap_or_default();
            let subset = dest.str("subset");
            let port = dest.obj("port").and_then(|mut p| {
                let n = p.u16("number", w, origin);
                p.finish(w, origin);
                n
            });
            dest.finish(w, origin);
            if host.is_empty() {
                w.push(format!(
                    "{origin}: {dpath}: a destination without host: skipped"
                ));
            } else {
                destinations.push(Destination {
                    host,
                    subset,
                    port,
                    weight,
                });
            }
        }
        d.finish(w, origin);
    }
    let retries = r.obj("retries").map(|mut rt| {
        let rpath = format!("{path}.retries");
        let attempts = rt.u32("attempts", w, origin).unwrap_or(0);
        let per_try_timeout_ms = rt.str("perTryTimeout").and_then(|d| {
            let ms = duration_ms(&d);
            if ms.is_none() {
                w.push(format!("{origin}: {rpath}.perTryTimeout: {d:?} is not a duration: not carried over"));
            }
            ms
        });
        let mut on = Vec::new();
        for cond in rt.str("retryOn").unwrap_or_default().split(',').map(str::trim).filter(|c| !c.is_empty()) {
            // Envoy's names that vipgate has; the others have no equivalent here.
            match cond {
                "connect-failure" | "reset" | "5xx" | "gateway-error" => on.push(match cond {
                    "connect-failure" => "connect-failure",
                    "reset" => "reset",
                    "5xx" => "5xx",
                    _ => "gateway-error",
                }),
                other => w.push(format!(
                    "{origin}: {rpath}.retryOn: {other:?} not carried over (vipgate retries on connect-failure, reset, timeout, gateway-error, 5xx)"
                )),
            }
        }
        if on.is_empty() {
            // Istio's default retryOn.
            on = vec!["connect-failure", "reset", "gateway-error"];
        }
        if attempts > 10 {
            w.push(format!("{origin}: {rpath}.attempts: {attempts} capped at vipgate's 10"));
        }
        rt.finish(w, origin);
        Retries {
            attempts: attempts.min(10),
            on,
            per_try_timeout_ms,
        }
    });
    let timeout_ms = r.str("timeout").and_then(|d| {
        let ms = duration_ms(&d);
        if ms.is_none() {
            w.push(format!(
                "{origin}: {path}.timeout: {d:?} is not a duration: not carried over"
            ));
        }
        ms
    });
    r.finish(w, origin);
    HttpRoute {
        path,
        prefixes,
        all_matches_dropped,
        destinations,
        retries,
        timeout_ms,
    }
}

fn read_destination_rule(meta: Meta, mut top: Obj<'_>, out: &mut Resources, w: &mut Warnings) {
    let origin = meta.origin.clone();
    let mut dr = DestinationRule {
        meta,
        host: String::new(),
        tls_mode: None,
        subsets: Vec::new(),
    };
    if let Some(mut spec) = top.obj("spec") {
        dr.host = spec.str("host").unwrap_or_default();
        if let Some(mut tp) = spec.obj("trafficPolicy") {
            dr.tls_mode = read_traffic_policy(&mut tp, &origin, w);
            tp.finish(w, &origin);
        }
        for (i, s) in spec.list("subsets").into_iter().enumerate() {
            let Some(mut s) = Obj::new(s, &format!("spec.subsets[{i}]")) else {
                continue;
            };
            let name = s.str("name").unwrap_or_default();
            let labelled = s
                .get("labels")
                .and_then(Value::as_mapping)
                .is_some_and(|m| !m.is_empty());
            if let Some(mut tp) = s.obj("trafficPolicy") {
                read_traffic_policy(&mut tp, &origin, w);
                tp.finish(w, &origin);
            }
            s.finish(w, &origin);
            dr.subsets.push((name, labelled));
        }
        spec.ignore(&["exportTo"]);
        spec.finish(w, &origin);
    }
    top.finish(w, &origin);
    out.destination_rules.push(dr);
}

/// Reads `tls.mode` and the round-robin balancer (vipgate's); the rest is left for warnings.
fn read_traffic_policy(tp: &mut Obj<'_>, origin: &str, w: &mut Warnings) -> Option<String> {
    let mut mode = None;
    if let Some(mut tls) = tp.obj("tls") {
        mode = tls.str("mode");
        tls.finish(w, origin);
    }
    if let Some(mut lb) = tp.obj("loadBalancer") {
        if lb.str("simple").as_deref() == Some("ROUND_ROBIN") {
            lb.finish(w, origin);
        } else {
            // Leave it unconsumed in the parent so it is reported there.
            tp.unsee("loadBalancer");
            lb.consume_all();
        }
    }
    mode
}

fn read_service(meta: Meta, raw: &Value, mut top: Obj<'_>, out: &mut Resources, w: &mut Warnings) {
    let Some(mut spec) = top.obj("spec") else {
        return;
    };
    if spec.str("type").as_deref() != Some("LoadBalancer") {
        spec.consume_all();
        w.push(format!(
            "{}: not imported: only Services of type LoadBalancer carry a VIP",
            meta.origin
        ));
        return;
    }
    let annotated = raw
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get("metallb.universe.tf/loadBalancerIPs"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let written = annotated.or_else(|| spec.str("loadBalancerIP"));
    let ip = match written
        .as_deref()
        .map(|s| s.split(',').next().unwrap_or("").trim())
    {
        Some(text) => match text.parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                w.push(format!(
                    "{}: load balancer IP {text:?} is not an IPv4 address: not used",
                    meta.origin
                ));
                None
            }
        },
        None => None,
    };
    // Selector, ports and the rest describe the gateway pods that vipgate replaces; the ports a
    // client uses are the Gateway's servers.
    spec.consume_all();
    out.load_balancers.push(LoadBalancer { meta, ip });
}

/// A YAML mapping being read: remembers which keys were consumed so the rest can be reported.
pub struct Obj<'a> {
    map: &'a Mapping,
    pub path: String,
    seen: Vec<String>,
}

impl<'a> Obj<'a> {
    fn new(v: &'a Value, path: &str) -> Option<Obj<'a>> {
        v.as_mapping().map(|map| Obj {
            map,
            path: path.to_string(),
            seen: Vec::new(),
        })
    }

    fn child_path(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    fn get(&mut self, k: &str) -> Option<&'a Value> {
        self.seen.push(k.to_string());
        self.map.get(k)
    }

    fn unsee(&mut self, k: &str) {
        self.seen.retain(|s| s != k);
    }

    fn ignore(&mut self, keys: &[&str]) {
        self.seen.extend(keys.iter().map(ToString::to_string));
    }

    fn consume_all(&mut self) {
        let keys: Vec<String> = self.rest();
        self.seen.extend(keys);
    }

    fn str(&mut self, k: &str) -> Option<String> {
        match self.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn u16(&mut self, k: &str, w: &mut Warnings, origin: &str) -> Option<u16> {
        let v = self.get(k)?;
        let n = v.as_u64().and_then(|n| u16::try_from(n).ok());
        if n.is_none() {
            w.push(format!(
                "{origin}: {}: {v:?} is not a port number",
                self.child_path(k)
            ));
        }
        n
    }

    fn u32(&mut self, k: &str, w: &mut Warnings, origin: &str) -> Option<u32> {
        let v = self.get(k)?;
        let n = v.as_u64().and_then(|n| u32::try_from(n).ok());
        if n.is_none() {
            w.push(format!(
                "{origin}: {}: {v:?} is not a number",
                self.child_path(k)
            ));
        }
        n
    }

    fn obj(&mut self, k: &str) -> Option<Obj<'a>> {
        let path = self.child_path(k);
        Obj::new(self.get(k)?, &path)
    }

    fn list(&mut self, k: &str) -> Vec<&'a Value> {
        match self.get(k) {
            Some(Value::Sequence(s)) => s.iter().collect(),
            _ => Vec::new(),
        }
    }

    fn strings(&mut self, k: &str) -> Vec<String> {
        self.list(k)
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }

    /// Keys not consumed, in file order.
    fn rest(&self) -> Vec<String> {
        self.map
            .keys()
            .filter_map(Value::as_str)
            .filter(|k| !self.seen.iter().any(|s| s == k))
            .map(str::to_string)
            .collect()
    }

    /// Report every key not consumed.
    fn finish(self, w: &mut Warnings, origin: &str) {
        for k in self.rest() {
            w.push(format!(
                "{origin}: {}: not carried over: {}",
                self.child_path(&k),
                why_not(&k)
            ));
        }
    }
}

/// A protobuf duration as Istio writes it (`"5s"`, `"0.25s"`, `"250ms"`) in milliseconds;
/// `None` for anything else or a value that rounds to 0.
fn duration_ms(d: &str) -> Option<u64> {
    let d = d.trim();
    let (num, scale) = if let Some(n) = d.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = d.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    let v: f64 = num
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)?;
    let ms = (v * scale).round() as u64;
    (ms > 0).then_some(ms)
}

/// Why a field has no vipgate equivalent, for the common ones.
fn why_not(key: &str) -> &'static str {
    match key {
        "rewrite" => "vipgate does not rewrite paths or authorities",
        "redirect" | "directResponse" => "vipgate does not answer with redirects of its own",
        "fault" => "vipgate does not inject faults",
        "mirror" | "mirrorPercentage" | "mirrors" => "vipgate does not mirror traffic",
        "corsPolicy" => "vipgate does not handle CORS",
        "headers" => "vipgate does not add or remove headers per route",
        "tls" | "tcp" => "vipgate routes plain HTTP only",
        "connectionPool" | "outlierDetection" => {
            "set vipgate's [pool.NAME.outlier] and [proxy] limits by hand (docs/configuration.md)"
        }
        "loadBalancer" => "vipgate balances round robin only",
        "portLevelSettings" => "per-port traffic policies are not supported",
        "delegate" => "delegated VirtualServices are not supported",
        _ => "no vipgate equivalent",
    }
}

#[cfg(test)]
mod duration_tests {
    use super::duration_ms;

    #[test]
    fn istio_durations() {
        for (text, want) in [
            ("5s", Some(5000)),
            ("0.25s", Some(250)),
            ("250ms", Some(250)),
            ("1.5s", Some(1500)),
            ("0s", None),
            ("5m", None),
            ("fast", None),
        ] {
            assert_eq!(duration_ms(text), want, "{text}");
        }
    }
}
