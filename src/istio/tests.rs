//! The seed's resources (netns-tests/fixtures/istio) convert to a configuration that validates
//! and routes as the seed does; each field that cannot be carried over gets its warning.

use std::path::Path;

use super::*;
use crate::config;

macro_rules! fixture {
    ($name:literal) => {
        Source {
            name: $name.to_string(),
            text: include_str!(concat!("../../netns-tests/fixtures/istio/", $name)).to_string(),
        }
    };
}

fn seed() -> Vec<Source> {
    vec![
        fixture!("istio-gateway.yaml"),
        fixture!("blog-routes.yaml"),
        fixture!("monitoring-routes.yaml"),
        fixture!("argocd-routes.yaml"),
        fixture!("kiali-routes.yaml"),
        fixture!("web-destinationrule.yaml"),
        fixture!("istio-ingressgateway-svc.yaml"),
        fixture!("peerauthentication.yaml"),
    ]
}

fn seed_backends() -> Vec<BackendMap> {
    [
        "web-service=192.0.2.21:8080",
        "grafana.monitoring=192.0.2.22:8080",
        "argocd-server=192.0.2.23:8080",
        "kiali=192.0.2.24",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

fn routes(c: &config::Config) -> Vec<String> {
    let mut out = Vec::new();
    for h in &c.hosts {
        for r in &h.routes {
            let pool = c.pool(r.split[0].pool);
            let backends: Vec<String> = pool
                .backends
                .iter()
                .map(|b| b.address.to_string())
                .collect();
            out.push(format!(
                "{} {} -> {} [{}]",
                h.names[0],
                r.prefix,
                pool.name,
                backends.join(" ")
            ));
        }
    }
    out
}

#[test]
fn the_seed_converts_to_a_valid_config_with_its_four_hosts() {
    let opts = Options {
        interface: Some("eth0".into()),
        backends: seed_backends(),
        ..Options::default()
    };
    let out = import(&seed(), &opts).unwrap();
    let c = config::parse(Path::new("imported.toml"), &out.toml)
        .unwrap_or_else(|e| panic!("{e}\n{}", out.toml));
    assert_eq!(c.vips.len(), 1);
    assert_eq!(c.vips[0].address.to_string(), "192.168.1.200");
    assert_eq!(c.vips[0].interface, "eth0");
    let binds: Vec<String> = c.listeners.iter().map(|l| l.bind.to_string()).collect();
    assert_eq!(binds, ["192.168.1.200:80"]);
    assert_eq!(
        routes(&c),
        [
            "blog.jiminhome.shop /api -> web-service-stable [192.0.2.21:8080]",
            "blog.jiminhome.shop / -> web-service-stable [192.0.2.21:8080]",
            "monitoring.jiminhome.shop / -> grafana [192.0.2.22:8080]",
            "argocd.jiminhome.shop / -> argocd-server [192.0.2.23:8080]",
            "kiali.jiminhome.shop / -> kiali [192.0.2.24:20001]",
        ]
    );
    let w = out.warnings.join("\n");
    assert!(
        w.contains("PeerAuthentication blog-system/default: not imported"),
        "{w}"
    );
    assert!(w.contains("prefix \"/api\": Istio also matches"), "{w}");
    assert!(
        !w.contains("DestinationRule blog-system/web-destinationrule"),
        "DISABLE and the subsets are carried over: {w}"
    );
    assert!(!w.contains("interface"), "{w}");
    assert!(out
        .toml
        .contains("plain HTTP, as DestinationRule blog-system/web-destinationrule says"));
    // Each warning is one line.
    assert!(out.warnings.iter().all(|w| !w.contains('\n')));
}

#[test]
fn options_override_and_missing_pieces_are_warned() {
    let opts = Options {
        vip: Some("192.0.2.200".parse().unwrap()),
        ..Options::default()
    };
    let out = import(&seed(), &opts).unwrap();
    assert!(out.toml.contains("address = \"192.0.2.200\""));
    assert!(out.toml.contains("bind = \"192.0.2.200:80\""));
    let w = out.warnings.join("\n");
    assert!(w.contains("interface is not known"), "{w}");
    // Without --backend every pool is its service by DNS name, and the file is valid as is.
    for want in [
        "backends = [\"web-service.blog-system.svc.cluster.local:80\"]",
        "backends = [\"grafana.monitoring.svc.cluster.local:3000\"]",
        "backends = [\"argocd-server.argocd.svc.cluster.local:80\"]",
        "backends = [\"kiali.istio-system.svc.cluster.local:20001\"]",
    ] {
        assert!(out.toml.contains(want), "{want} in {}", out.toml);
    }
    let c = config::parse(Path::new("i.toml"), &out.toml).expect("valid without --backend");
    assert_eq!(c.lookups().len(), 4);
    assert!(c.pools.iter().all(|p| p.backends.is_empty()));
    // Another cluster domain.
    let opts = Options {
        cluster_domain: Some("corp.internal".into()),
        ..opts
    };
    let out = import(&seed(), &opts).unwrap();
    assert!(
        out.toml
            .contains("\"web-service.blog-system.svc.corp.internal:80\""),
        "{}",
        out.toml
    );
}

/// (YAML, words the warnings must hold, words the TOML must hold)
const CASES: &[(&str, &[&str], &[&str])] = &[
    (
        "kind: Gateway
apiVersion: networking.istio.io/v1
metadata: {name: gw, namespace: ns}
spec:
  servers: [{port: {number: 80, protocol: HTTP}, hosts: ['*']}]
---
kind: VirtualService
apiVersion: networking.istio.io/v1
metadata: {name: v, namespace: ns}
spec:
  hosts: [a.example.test]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /x}}]
    route: [{destination: {host: svc}}]
    retries: {attempts: 3}
    timeout: 5s
  - match: [{uri: {regex: '/r.*'}}]
    route: [{destination: {host: svc}}]
  - match: [{uri: {prefix: /h}, headers: {x-canary: {exact: '1'}}}]
    route: [{destination: {host: svc}}]
  - match: [{uri: {exact: /e}}]
    route: [{destination: {host: svc}}]
  - route:
    - {destination: {host: svc, subset: a}, weight: 90}
    - {destination: {host: svc, subset: b}, weight: 10}
",
        &[
            "uri.regex \"/r.*\": vipgate has no regex routes",
            "spec.http[2].match[0]: conditions on headers cannot be expressed",
            "uri.exact \"/e\": imported as the prefix",
            "destination subset \"a\" of svc.ns.svc.cluster.local: no DestinationRule",
        ],
        &[
            "prefix = \"/x\"\npool = \"svc\"\nretries = 3\nretry_on = [\"connect-failure\", \"reset\", \"gateway-error\"]\ntimeout_ms = 5000",
            "prefix = \"/e\"",
            "split = [{ pool = \"svc-a\", weight = 90 }, { pool = \"svc-b\", weight = 10 }]",
        ],
    ),
    (
        "kind: Gateway
apiVersion: networking.istio.io/v1
metadata: {name: gw, namespace: ns}
spec:
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ['*']
    tls: {mode: SIMPLE}
",
        &[
            "protocol HTTPS on port 443: not imported",
            "servers[0].tls: not carried over: vipgate routes plain HTTP only",
        ],
        &[],
    ),
    (
        "kind: DestinationRule
apiVersion: networking.istio.io/v1
metadata: {name: d, namespace: ns}
spec:
  host: svc
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
    loadBalancer: {simple: LEAST_REQUEST}
    outlierDetection: {consecutive5xxErrors: 5}
",
        &[
            "trafficPolicy.loadBalancer: not carried over: vipgate balances round robin only",
            "trafficPolicy.outlierDetection: not carried over",
        ],
        &[],
    ),
    (
        "kind: Deployment
apiVersion: apps/v1
metadata: {name: web, namespace: ns}
---
kind: VirtualService
apiVersion: networking.istio.io/v1
metadata: {name: m, namespace: ns}
spec:
  hosts: [svc]
  http: [{route: [{destination: {host: svc}}]}]
",
        &[
            "Deployment ns/web: not imported",
            "VirtualService ns/m: bound to no imported HTTP Gateway",
        ],
        &[],
    ),
    (
        "kind: Gateway
apiVersion: networking.istio.io/v1
metadata: {name: gw, namespace: ns}
spec:
  servers: [{port: {number: 8080, protocol: HTTP}, hosts: ['ns/*.good.test']}]
---
kind: VirtualService
apiVersion: networking.istio.io/v1
metadata: {name: v, namespace: ns}
spec:
  hosts: [a.good.test, other.test]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /}}]
    route: [{destination: {host: svc}}]
  - match: [{uri: {prefix: /late}}]
    route: [{destination: {host: svc}}]
",
        &[
            "host \"other.test\" is not served by its Gateway",
            "prefix \"/late\" is shadowed by the earlier prefix \"/\"",
            "no LoadBalancer Service",
        ],
        &["bind = \"0.0.0.0:8080\"", "names = [\"a.good.test\"]"],
    ),
];

#[test]
fn what_cannot_be_carried_over_is_warned() {
    for (i, (yaml, warn, toml)) in CASES.iter().enumerate() {
        let src = Source {
            name: "case.yaml".into(),
            text: yaml.to_string(),
        };
        let out = import(&[src, fixture!("istio-gateway.yaml")], &Options::default()).unwrap();
        let w = out.warnings.join("\n");
        for want in *warn {
            assert!(w.contains(want), "case {i}: no warning {want:?} in:\n{w}");
        }
        for want in *toml {
            assert!(
                out.toml.contains(want),
                "case {i}: no {want:?} in:\n{}",
                out.toml
            );
        }
    }
}

#[test]
fn bad_yaml_is_refused_with_file_line_column() {
    let src = Source {
        name: "bad.yaml".into(),
        text: "kind: Gateway\nspec:\n  servers: [\n".into(),
    };
    let err = import(&[src], &Options::default()).unwrap_err().to_string();
    assert!(err.starts_with("bad.yaml:"), "{err}");
    assert!(err.contains(": error: "), "{err}");
}

#[test]
fn backend_maps_parse() {
    let ok: BackendMap = "Web-Service/stable=192.0.2.21:8080, 192.0.2.22"
        .parse()
        .unwrap();
    assert_eq!(ok.name, "web-service/stable");
    assert_eq!(ok.addrs.len(), 2);
    assert_eq!(ok.addrs[1].port, None);
    for bad in ["web", "=192.0.2.1", "web=nope", "web=192.0.2.1:99999"] {
        assert!(bad.parse::<BackendMap>().is_err(), "{bad}");
    }
}
