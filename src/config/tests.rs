//! Table-driven tests: each bad file is refused at the right line with the right reason, and
//! the contract example from the first issue is accepted as written.

use std::path::Path;
use std::time::Duration;

use super::*;

const GOOD: &str = r#"[[vip]]
address = "192.0.2.200"
interface = "eth0"

[[listener]]
bind = "192.0.2.200:80"
protocol = "http"

[[host]]
names = ["blog.example.test"]
[[host.route]]
prefix = "/api"
pool = "was"
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["192.0.2.21:8080", "192.0.2.22:8080"]
[pool.was]
backends = ["192.0.2.23:8080"]
"#;

#[test]
fn the_contract_example_is_accepted() {
    let c = parse(Path::new("vipgate.toml"), GOOD).expect("valid");
    assert_eq!(c.vips.len(), 1);
    assert_eq!(c.vips[0].address.to_string(), "192.0.2.200");
    assert_eq!(c.vips[0].garp.count, DEFAULT_GARP_COUNT);
    assert_eq!(c.listeners[0].bind.to_string(), "192.0.2.200:80");
    let routes: Vec<(&str, &str)> = c.hosts[0]
        .routes
        .iter()
        .map(|r| (r.prefix.as_str(), c.pool(r.split[0].pool).name.as_str()))
        .collect();
    assert_eq!(routes, vec![("/api", "was"), ("/", "web")]);
}

#[test]
fn optional_keys_are_read() {
    let text = GOOD.replace(
        "interface = \"eth0\"",
        "interface = \"eth0\"\ngarp_count = 3\ngarp_interval_ms = 250",
    );
    let c = parse(Path::new("v.toml"), &text).unwrap();
    assert_eq!(
        c.vips[0].garp,
        GarpBurst {
            count: 3,
            interval: Duration::from_millis(250)
        }
    );
}

/// (what to replace in GOOD, with what, expected line, expected words in the reason)
const BAD: &[(&str, &str, usize, &str)] = &[
    (
        "pool = \"was\"",
        "pool = \"nope\"",
        13,
        "pool \"nope\", which is not defined (pools: was, web)",
    ),
    (
        "address = \"192.0.2.200\"",
        "address = \"192.0.2.300\"",
        2,
        "is not an IP address",
    ),
    (
        "address = \"192.0.2.200\"",
        "address = \"fe80::200\"",
        2,
        "cannot be announced on a LAN (link-local (fe80::/10)",
    ),
    (
        "address = \"192.0.2.200\"",
        "address = \"ff02::1\"",
        2,
        "(unspecified, loopback or multicast)",
    ),
    (
        "address = \"192.0.2.200\"",
        "address = \"::1\"",
        2,
        "(unspecified, loopback or multicast)",
    ),
    (
        "address = \"192.0.2.200\"",
        "address = \"::\"",
        2,
        "(unspecified, loopback or multicast)",
    ),
    (
        "address = \"192.0.2.200\"",
        "address = \"::ffff:192.0.2.200\"",
        2,
        "IPv4-mapped (::ffff:0:0/96): write the IPv4 address itself",
    ),
    (
        "address = \"192.0.2.200\"",
        "address = \"127.0.0.1\"",
        2,
        "cannot be announced",
    ),
    (
        "interface = \"eth0\"",
        "interface = \"\"",
        3,
        "not a valid Linux interface name",
    ),
    (
        "bind = \"192.0.2.200:80\"",
        "bind = \"192.0.2.200\"",
        6,
        "is not an address with a port",
    ),
    (
        "protocol = \"http\"",
        "protocol = \"gopher\"",
        7,
        "unknown listener protocol",
    ),
    (
        "names = [\"blog.example.test\"]",
        "names = [\"blog.example.test\", \"BLOG.example.test\"]",
        10,
        "defined twice (first at line 10)",
    ),
    (
        "names = [\"blog.example.test\"]",
        "names = [\"a.*.test\"]",
        10,
        "may hold '*' only",
    ),
    (
        "names = [\"blog.example.test\"]",
        "names = [\"a.test:80\"]",
        10,
        "must not carry a port",
    ),
    (
        "names = [\"blog.example.test\"]",
        "names = []",
        10,
        "at least one name",
    ),
    (
        "prefix = \"/api\"",
        "prefix = \"api\"",
        12,
        "must start with '/'",
    ),
    ("prefix = \"/api\"", "prefix = \"/\"", 15, "listed twice"),
    (
        "prefix = \"/api\"",
        "prefix = \"/x/../api\"",
        12,
        "is not in normal form and would never match: write \"/api\"",
    ),
    (
        "prefix = \"/api\"",
        "prefix = \"/%61pi//v1\"",
        12,
        "write \"/api/v1\"",
    ),
    (
        "prefix = \"/api\"",
        "prefix = \"/a%2Fb\"",
        12,
        "would never match: an encoded slash",
    ),
    (
        "prefix = \"/api\"",
        "prefix = \"/api\"\nignore_case = 1",
        13,
        "invalid type",
    ),
    (
        "[[vip]]",
        "[proxy]\nescaped_slashes = \"drop\"\n[[vip]]",
        2,
        "escaped_slashes \"drop\" is not \"reject\", \"keep\", \"decode\" or \"redirect\"",
    ),
    (
        "\"192.0.2.23:8080\"",
        "\"was.example.test\"",
        21,
        "is not an address or a DNS name with a port",
    ),
    (
        "\"192.0.2.23:8080\"",
        "\"was..example.test:8080\"",
        21,
        "is not an address or a DNS name with a port",
    ),
    (
        "\"192.0.2.23:8080\"",
        "\"192.0.2.300:8080\"",
        21,
        "is not an address or a DNS name with a port",
    ),
    (
        "\"192.0.2.23:8080\"",
        "\"was.test:80\", \"WAS.test:80\"",
        21,
        "backend was.test:80 is listed twice",
    ),
    (
        "backends = [\"192.0.2.23:8080\"]",
        "srv = \"_http._tcp..x\"",
        21,
        "is not a DNS name",
    ),
    (
        "[pool.web]",
        "[resolver]\nnameservers = [\"dns.test\"]\n[pool.web]",
        19,
        "is not an IP address, with or without a port",
    ),
    (
        "[pool.web]",
        "[resolver]\nttl_floor_ms = 5000\nttl_ceiling_ms = 1000\n[pool.web]",
        20,
        "ttl_ceiling_ms = 1000 is below ttl_floor_ms = 5000",
    ),
    (
        "[pool.web]",
        "[resolver]\nttl_floor_ms = 0\n[pool.web]",
        19,
        "ttl_floor_ms = 0 is out of range",
    ),
    (
        "[pool.web]",
        "[resolver]\nfamily = \"ipv5\"\n[pool.web]",
        19,
        "family \"ipv5\" is not \"any\", \"ipv4\" or \"ipv6\"",
    ),
    (
        "\"192.0.2.23:8080\"",
        "\"192.0.2.23:0\"",
        21,
        "needs a concrete address and a port",
    ),
    (
        "\"192.0.2.22:8080\"",
        "\"192.0.2.21:8080\"",
        19,
        "listed twice in pool \"web\"",
    ),
    (
        "backends = [\"192.0.2.23:8080\"]",
        "backends = []",
        21,
        "has no backends",
    ),
    (
        "interface = \"eth0\"",
        "interface = \"eth0\"\ngarp_count = 1000",
        4,
        "out of range",
    ),
    (
        "interface = \"eth0\"",
        "interface = \"eth0\"\ninterfce = \"x\"",
        4,
        "unknown field `interfce`",
    ),
    ("[pool.web]", "[pool.web\n", 18, ""),
    (
        "backends = [\"192.0.2.23:8080\"]",
        "backends = [\"192.0.2.23:8080\"]\npanic_threshold_percent = 101",
        22,
        "panic_threshold_percent",
    ),
    ("bind = \"192.0.2.200:80\"", "bind = 80", 6, "invalid type"),
    (
        "bind = \"192.0.2.200:80\"",
        "bind = \"192.0.2.200:80\"\nmax_connections = 0",
        7,
        "max_connections = 0 is out of range (1 to 1000000)",
    ),
    (
        "bind = \"192.0.2.200:80\"",
        "bind = \"192.0.2.200:80\"\nhttp2 = \"yes\"",
        7,
        "invalid type",
    ),
    (
        "[pool.web]",
        "[proxy]\nhttp2_max_concurrent_streams = 0\n[pool.web]",
        19,
        "http2_max_concurrent_streams = 0 is out of range (1 to 10000)",
    ),
    (
        "[pool.web]",
        "[daemon]\ndrain_timeout_ms = -1\n[pool.web]",
        19,
        "drain_timeout_ms = -1 is out of range",
    ),
    (
        "[pool.web]",
        "[daemon]\ndrain_timeot_ms = 5\n[pool.web]",
        19,
        "unknown field `drain_timeot_ms`",
    ),
    (
        "[pool.web]",
        "[proxy]\nruntime = \"per-thread\"\n[pool.web]",
        19,
        "runtime \"per-thread\" is not \"per-core\" or \"shared\"",
    ),
];

#[test]
fn backends_by_name_and_the_resolver_table_are_read() {
    let c = parse(Path::new("v.toml"), GOOD).unwrap();
    assert_eq!(c.resolver, ResolverSettings::default());
    assert!(c.lookups().is_empty());
    let text = GOOD
        .replace(
            "backends = [\"192.0.2.23:8080\"]",
            "backends = [\"192.0.2.23:8080\", { address = \"Was.Blog.svc.cluster.local.:8080\", weight = 2 }]\nsrv = \"_http._tcp.was.blog.svc.cluster.local\"",
        )
        .replace(
            "[pool.web]",
            "[resolver]\nnameservers = [\"192.0.2.53\", \"[2001:db8::53]:5353\"]\ntimeout_ms = 500\nattempts = 3\nttl_floor_ms = 2000\nttl_ceiling_ms = 60000\ngrace_ms = 0\nfamily = \"ipv6\"\n[pool.web]",
        );
    let c = parse(Path::new("v.toml"), &text).unwrap();
    let was = c.pools.iter().find(|p| p.name == "was").unwrap();
    assert_eq!(was.backends.len(), 1);
    assert_eq!(
        was.names,
        vec![
            NamedBackend {
                lookup: Lookup::Host {
                    name: "was.blog.svc.cluster.local.".into(),
                    port: 8080
                },
                weight: 2
            },
            NamedBackend {
                lookup: Lookup::Srv {
                    name: "_http._tcp.was.blog.svc.cluster.local".into()
                },
                weight: 1
            },
        ]
    );
    assert_eq!(
        c.resolver,
        ResolverSettings {
            nameservers: vec![
                "192.0.2.53:53".parse().unwrap(),
                "[2001:db8::53]:5353".parse().unwrap()
            ],
            timeout: Duration::from_millis(500),
            attempts: 3,
            ttl_floor: Duration::from_secs(2),
            ttl_ceiling: Duration::from_secs(60),
            grace: Duration::ZERO,
            family: Family::Ipv6,
        }
    );
    assert_eq!(c.lookups().len(), 2);
    // A pool by name alone is valid: it starts empty and fills when the name resolves.
    let only = GOOD.replace("\"192.0.2.23:8080\"", "\"was:8080\"");
    let c = parse(Path::new("v.toml"), &only).unwrap();
    assert!(c
        .pools
        .iter()
        .find(|p| p.name == "was")
        .unwrap()
        .backends
        .is_empty());
}

#[test]
fn runtime_defaults_to_per_core_and_is_read() {
    let c = parse(Path::new("v.toml"), GOOD).unwrap();
    assert_eq!(c.proxy.runtime, RuntimeKind::PerCore);
    for (value, want) in [
        ("per-core", RuntimeKind::PerCore),
        ("shared", RuntimeKind::Shared),
    ] {
        let text = format!("[proxy]\nruntime = \"{value}\"\nworker_threads = 2\n{GOOD}");
        let c = parse(Path::new("v.toml"), &text).unwrap();
        assert_eq!(
            (c.proxy.runtime, c.proxy.worker_threads),
            (want, 2),
            "{value}"
        );
    }
}

#[test]
fn path_rules_default_and_are_read() {
    let c = parse(Path::new("v.toml"), GOOD).unwrap();
    assert_eq!(c.proxy.path, PathRules::default());
    assert!(c.proxy.path.merge_slashes);
    assert_eq!(c.proxy.path.escaped_slashes, EscapedSlashes::Reject);
    assert!(!c.hosts[0].routes[0].ignore_case);
    for (value, want) in [
        ("keep", EscapedSlashes::Keep),
        ("decode", EscapedSlashes::Decode),
        ("redirect", EscapedSlashes::Redirect),
    ] {
        let text = format!(
            "[proxy]\nmerge_slashes = false\nescaped_slashes = \"{value}\"\n{}",
            GOOD.replace("prefix = \"/api\"", "prefix = \"/api\"\nignore_case = true")
        );
        let c = parse(Path::new("v.toml"), &text).unwrap();
        assert_eq!(
            c.proxy.path,
            PathRules {
                merge_slashes: false,
                escaped_slashes: want
            }
        );
        assert!(c.hosts[0].routes[0].ignore_case);
    }
    // With slashes kept as they are, a prefix may hold an encoded one.
    let text = format!(
        "[proxy]\nescaped_slashes = \"keep\"\n{}",
        GOOD.replace("prefix = \"/api\"", "prefix = \"/a%2Fb\"")
    );
    assert!(parse(Path::new("v.toml"), &text).is_ok());
}

#[test]
fn bad_files_are_refused_with_line_and_reason() {
    for (from, to, line, words) in BAD {
        assert!(GOOD.contains(from), "fixture {from:?} not in GOOD");
        let text = GOOD.replacen(from, to, 1);
        let err = parse(Path::new("/etc/vipgate/vipgate.toml"), &text).expect_err(to);
        let msg = err.to_string();
        let want_prefix = format!("/etc/vipgate/vipgate.toml:{line}:");
        assert!(msg.starts_with(&want_prefix), "{to:?}: {msg}");
        assert!(msg.contains(": error: "), "{msg}");
        assert!(msg.contains(words), "{to:?}: {msg} lacks {words:?}");
        assert_eq!(msg.lines().count(), 1, "one line: {msg}");
    }
}

#[test]
fn empty_file_and_listener_without_hosts_are_refused() {
    let err = parse(Path::new("e.toml"), "").unwrap_err().to_string();
    assert!(err.contains("e.toml:1:1: error: nothing to do"), "{err}");
    let err = parse(
        Path::new("e.toml"),
        "\n[[listener]]\nbind = \"0.0.0.0:80\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("e.toml:2:"), "{err}");
    assert!(err.contains("at least one [[host]]"), "{err}");
}

#[test]
fn a_vip_alone_is_a_valid_announcer_only_config() {
    let c = parse(
        Path::new("v.toml"),
        "[[vip]]\naddress = \"192.0.2.200\"\ninterface = \"eth0\"\n",
    )
    .unwrap();
    assert!(c.listeners.is_empty());
}

#[test]
fn ipv6_vips_and_link_local_peers_are_accepted() {
    let text = "[[vip]]\naddress = \"2001:db8::200\"\ninterface = \"eth0\"\n\
                [[vip]]\naddress = \"192.0.2.200\"\ninterface = \"eth0\"\n\
                [[listener]]\nbind = \"[2001:db8::200]:80\"\n\
                [[host]]\nnames = [\"*\"]\n[[host.route]]\nprefix = \"/\"\npool = \"web\"\n\
                [pool.web]\nbackends = [\"[2001:db8::21]:8080\"]\n\
                [vrrp]\nvrid = 51\npeers = [\"192.0.2.3\", \"fe80::ff:fe00:3\"]\n";
    let c = parse(Path::new("6.toml"), text).unwrap();
    let addresses: Vec<String> = c.vips.iter().map(|v| v.address.to_string()).collect();
    assert_eq!(addresses, ["2001:db8::200", "192.0.2.200"]);
    let peers: Vec<String> = c
        .vrrp
        .map(|v| v.peers.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    assert_eq!(peers, ["192.0.2.3", "fe80::ff:fe00:3"]);
    // Unique-local addresses are fine too.
    let ula = "[[vip]]\naddress = \"fd00::200\"\ninterface = \"eth0\"\n";
    assert!(parse(Path::new("6.toml"), ula).is_ok());
}

#[test]
fn drain_timeout_defaults_and_is_read() {
    let c = parse(Path::new("d.toml"), GOOD).unwrap();
    assert_eq!(c.daemon.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
    let text = GOOD.replace(
        "[pool.web]",
        "[daemon]\ndrain_timeout_ms = 1500\n[pool.web]",
    );
    let c = parse(Path::new("d.toml"), &text).unwrap();
    assert_eq!(c.daemon.drain_timeout, Duration::from_millis(1500));
}

const VRRP: &str = r#"[[vip]]
address = "192.0.2.200"
interface = "eth0"

[vrrp]
vrid = 51
priority = 150
advert_interval = "100ms"
peers = ["192.0.2.3"]
preempt = false
preempt_delay = "2.5s"
startup_listen = "250ms"
"#;

#[test]
fn vrrp_table_is_read_with_defaults() {
    let c = parse(Path::new("v.toml"), VRRP).unwrap();
    let v = c.vrrp.expect("vrrp");
    assert_eq!(v.vrid.get(), 51);
    assert_eq!(v.priority.get(), 150);
    assert_eq!(v.advert_interval.centiseconds(), 10);
    assert_eq!(v.advert_interval.duration(), Duration::from_millis(100));
    assert_eq!(
        v.peers,
        vec!["192.0.2.3".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert!(!v.preempt);
    assert_eq!(v.preempt_delay, Duration::from_millis(2500));
    assert_eq!(v.startup_listen, Duration::from_millis(250));
    assert_eq!(v.interface, "eth0", "defaults to the VIPs' interface");

    let c = parse(Path::new("v.toml"), &format!("{GOOD}\n[vrrp]\nvrid = 1\n")).unwrap();
    let v = c.vrrp.expect("vrrp");
    assert_eq!(v.priority, DEFAULT_VRRP_PRIORITY);
    assert_eq!(v.advert_interval, DEFAULT_ADVERT_INTERVAL);
    assert_eq!(v.advert_interval.duration(), Duration::from_secs(1));
    assert!(v.peers.is_empty());
    assert!(v.preempt);
    assert_eq!(v.preempt_delay, Duration::ZERO);
    assert_eq!(v.startup_listen, DEFAULT_STARTUP_LISTEN);
    assert_eq!(v.garp_refresh, Some(DEFAULT_GARP_REFRESH));
    let off = parse(
        Path::new("v.toml"),
        &format!("{VRRP}garp_refresh = \"0s\"\n"),
    )
    .unwrap();
    assert_eq!(off.vrrp.unwrap().garp_refresh, None);

    assert!(parse(Path::new("v.toml"), GOOD).unwrap().vrrp.is_none());
    for (text, cs) in [
        ("\"10ms\"", 10 / 10),
        ("\"0.1s\"", 10),
        ("\"40.95s\"", 4095),
    ] {
        let t = VRRP.replace("\"100ms\"", text);
        let v = parse(Path::new("v.toml"), &t).unwrap().vrrp.unwrap();
        assert_eq!(v.advert_interval.centiseconds(), cs, "{text}");
    }
}

/// (what to replace in VRRP, with what, expected line, expected words in the reason)
const BAD_VRRP: &[(&str, &str, usize, &str)] = &[
    (
        "vrid = 51",
        "vrid = 0",
        6,
        "vrid = 0 is out of range (1 to 255)",
    ),
    ("vrid = 51", "vrid = 256", 6, "out of range"),
    ("vrid = 51\n", "", 5, "missing field `vrid`"),
    (
        "priority = 150",
        "priority = 0",
        7,
        "priority = 0 is out of range",
    ),
    (
        "\"100ms\"",
        "\"5ms\"",
        8,
        "whole number of centiseconds from 10ms",
    ),
    ("\"100ms\"", "\"15ms\"", 8, "whole number of centiseconds"),
    ("\"100ms\"", "\"41s\"", 8, "40950ms"),
    ("\"100ms\"", "1", 8, "needs a unit"),
    ("\"100ms\"", "\"100\"", 8, "needs a unit, ms or s"),
    ("\"100ms\"", "\"fast ms\"", 8, "is not a duration"),
    (
        "\"192.0.2.3\"",
        "\"192.0.2.3\", \"192.0.2.3\"",
        9,
        "listed twice",
    ),
    ("\"192.0.2.3\"", "\"192.0.2.200\"", 9, "is one of the VIPs"),
    ("\"192.0.2.3\"", "\"224.0.0.18\"", 9, "unicast address"),
    ("\"192.0.2.3\"", "\"192.0.2.x\"", 9, "is not an IP address"),
    (
        "\"192.0.2.3\"",
        "\"2001:db8::3\"",
        9,
        "must be another node's link-local address (fe80::/10)",
    ),
    (
        "\"192.0.2.3\"",
        "\"fe80::3\"",
        9,
        "VRRP peer fe80::3 is IPv6, but no [[vip]] is",
    ),
    ("preempt = false", "preempt = \"no\"", 10, "invalid type"),
    ("\"2.5s\"", "\"2h\"", 11, "needs a unit"),
    ("\"2.5s\"", "\"3601s\"", 11, "out of range (0s to 3600s)"),
    ("\"2.5s\"", "\"-1s\"", 11, "is not a duration"),
    (
        "\"250ms\"",
        "\"3601s\"",
        12,
        "startup_listen 3601s is out of range (0s to 3600s)",
    ),
    ("\"250ms\"", "250", 12, "needs a unit"),
    (
        "preempt_delay",
        "garp_refresh = \"10ms\"\npreempt_delay",
        11,
        "garp_refresh 10ms is out of range",
    ),
    (
        "preempt_delay",
        "priorty = 1\npreempt_delay",
        11,
        "unknown field `priorty`",
    ),
    (
        "[vrrp]",
        "[[vip]]\naddress = \"192.0.2.201\"\ninterface = \"eth1\"\n[vrrp]",
        8,
        "[vrrp] needs `interface`: the VIPs are on eth0 and eth1",
    ),
];

#[test]
fn bad_vrrp_tables_are_refused_with_line_and_reason() {
    for (from, to, line, words) in BAD_VRRP {
        assert!(VRRP.contains(from), "fixture {from:?} not in VRRP");
        let text = VRRP.replacen(from, to, 1);
        let err = parse(Path::new("v.toml"), &text).expect_err(to);
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("v.toml:{line}:")), "{to:?}: {msg}");
        assert!(msg.contains(words), "{to:?}: {msg} lacks {words:?}");
        assert_eq!(msg.lines().count(), 1, "one line: {msg}");
    }
    // An election needs something to elect an owner for.
    let err = parse(
        Path::new("v.toml"),
        &GOOD
            .replace(
                "[[vip]]\naddress = \"192.0.2.200\"\ninterface = \"eth0\"\n",
                "",
            )
            .replace("[[listener]]", "[vrrp]\nvrid = 1\n\n[[listener]]"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("v.toml:2:1:"), "{err}");
    assert!(err.contains("has no [[vip]]"), "{err}");
}

/// GOOD with health checks on `web` and a `[vrrp]` tracking it and the listeners; the
/// `[vrrp]` table starts on line 25.
fn tracked() -> String {
    format!(
        "{GOOD}[pool.web.health]\ntype = \"tcp\"\n\n[vrrp]\nvrid = 51\npriority = 150\n[[vrrp.track]]\npool = \"web\"\nweight = 50\n[[vrrp.track]]\nlisteners = true\n"
    )
}

#[test]
fn vrrp_tracks_are_read() {
    let c = parse(Path::new("t.toml"), &tracked()).unwrap();
    let v = c.vrrp.unwrap();
    assert_eq!(
        v.track,
        vec![
            Track {
                condition: TrackCondition::PoolDown("web".into()),
                action: TrackAction::Lower(std::num::NonZeroU8::new(50).unwrap()),
            },
            Track {
                condition: TrackCondition::ListenerFailed,
                action: TrackAction::Fault,
            },
        ]
    );
    assert_eq!(v.track[0].condition.label(), "pool:web");
    // Only the tracks differ: the same election.
    let mut other = v.clone();
    other.track.clear();
    assert!(v.same_election(&other));
    other.priority = std::num::NonZeroU8::new(151).unwrap();
    assert!(!v.same_election(&other));
}

/// Each case `(from, to, line, words)`: `base` with the first `from` replaced by `to` is
/// refused in one line at `t.toml:LINE:` with a reason containing `words`.
fn assert_refused(base: &str, cases: &[(&str, &str, usize, &str)]) {
    for (from, to, line, words) in cases {
        assert!(base.contains(from), "fixture {from:?}");
        let text = base.replacen(from, to, 1);
        let msg = parse(Path::new("t.toml"), &text).expect_err(to).to_string();
        assert!(msg.starts_with(&format!("t.toml:{line}:")), "{to:?}: {msg}");
        assert!(msg.contains(words), "{to:?}: {msg} lacks {words:?}");
        assert_eq!(msg.lines().count(), 1, "one line: {msg}");
    }
}

#[test]
fn bad_vrrp_tracks_are_refused_with_line_and_reason() {
    // (replace in tracked(), with, line, words)
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "weight = 50",
            "weight = 0",
            30,
            "weight = 0 is out of range (1 to 254",
        ),
        ("weight = 50", "weight = 255", 30, "out of range (1 to 254"),
        ("weight = 50", "weight = -1", 30, "out of range"),
        (
            "pool = \"web\"\nweight",
            "pool = \"nope\"\nweight",
            29,
            "pool \"nope\" is not defined",
        ),
        (
            "pool = \"web\"\nweight",
            "pool = \"was\"\nweight",
            29,
            "needs [pool.was.health]",
        ),
        (
            "listeners = true",
            "listeners = false",
            32,
            "listeners = false tracks nothing",
        ),
        (
            "listeners = true",
            "pool = \"web\"",
            31,
            "pool:web is tracked twice",
        ),
        ("listeners = true", "weight = 5", 31, "needs a condition"),
        (
            "pool = \"web\"\nweight",
            "pool = \"web\"\nlisteners = true\nweight",
            28,
            "has one condition",
        ),
        ("priority = 150", "priority = 255", 28, "address owner"),
        ("weight = 50", "wieght = 50", 30, "unknown field `wieght`"),
    ];
    assert_refused(&tracked(), cases);
    // Listeners tracked in a file without listeners.
    let text = "[[vip]]\naddress = \"192.0.2.200\"\ninterface = \"eth0\"\n[vrrp]\nvrid = 1\n[[vrrp.track]]\nlisteners = true\n";
    let msg = parse(Path::new("t.toml"), text).unwrap_err().to_string();
    assert!(msg.starts_with("t.toml:7:"), "{msg}");
    assert!(msg.contains("has no [[listener]]"), "{msg}");
}

#[test]
fn admin_access_log_and_log_defaults() {
    let c = parse(Path::new("vipgate.toml"), GOOD).expect("valid");
    assert_eq!(
        c.admin,
        Some(Admin {
            bind: DEFAULT_ADMIN_BIND
        })
    );
    assert_eq!(c.admin.unwrap().bind.to_string(), "127.0.0.1:9901");
    assert_eq!(c.access_log, None);
    assert_eq!(c.log.level, "info");
    let text = format!(
        "{GOOD}[admin]\nbind = \"127.0.0.1:9100\"\n[access_log]\nformat = \"logfmt\"\nsample = 0.25\n[log]\nlevel = \"debug\"\n"
    );
    let c = parse(Path::new("vipgate.toml"), &text).expect("valid");
    assert_eq!(c.admin.unwrap().bind.to_string(), "127.0.0.1:9100");
    assert_eq!(
        c.access_log,
        Some(AccessLogSettings {
            format: AccessLogFormat::Logfmt,
            sample: 0.25
        })
    );
    assert_eq!(c.log.level, "debug");
    let text = format!("{GOOD}[admin]\nenabled = false\n[access_log]\nsample = 1\n");
    let c = parse(Path::new("vipgate.toml"), &text).expect("valid");
    assert_eq!(c.admin, None);
    assert_eq!(
        c.access_log,
        Some(AccessLogSettings {
            format: AccessLogFormat::Json,
            sample: 1.0
        })
    );
    let text =
        format!("{GOOD}[access_log]\nenabled = false\n[log]\nlevel = \"warn,vipgate=debug\"\n");
    let c = parse(Path::new("vipgate.toml"), &text).expect("valid");
    assert_eq!(c.access_log, None);
    assert_eq!(c.log.level, "warn,vipgate=debug");
}

#[test]
fn bad_admin_access_log_and_log_tables_are_refused_with_line_and_reason() {
    // Appended to GOOD after a blank line: the bad value is on line 24.
    let cases: &[(&str, usize, &str)] = &[
        (
            "[admin]\nbind = \"localhost\"\n",
            24,
            "not an address with a port",
        ),
        (
            "[admin]\nbind = \"0.0.0.0:80\"\n",
            24,
            "takes the port of [[listener]] 192.0.2.200:80",
        ),
        ("[admin]\nport = 1\n", 24, "unknown field"),
        (
            "[access_log]\nformat = \"xml\"\n",
            24,
            "is not \"json\", \"logfmt\" or \"combined\"",
        ),
        ("[access_log]\nsample = 1.5\n", 24, "not between 0.0"),
        ("[access_log]\nsample = -1\n", 24, "not between 0.0"),
        (
            "[log]\nlevel = \"vipgate=loud\"\n",
            24,
            "RUST_LOG directive",
        ),
        ("[log]\nlevel = \"\"\n", 24, "log level is empty"),
    ];
    assert_eq!(GOOD.lines().count(), 21);
    for (extra, line, words) in cases {
        let text = format!("{GOOD}\n{extra}");
        let err = parse(Path::new("v.toml"), &text).expect_err(extra);
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("v.toml:{line}:")),
            "{extra:?}: {msg}"
        );
        assert!(msg.contains(words), "{extra:?}: {msg} lacks {words:?}");
        assert_eq!(msg.lines().count(), 1, "one line: {msg}");
    }
    // The default admin address taken by a listener is pointed out at the listener.
    let text = GOOD.replace("192.0.2.200:80", "127.0.0.1:9901");
    let msg = parse(Path::new("v.toml"), &text).unwrap_err().to_string();
    assert!(msg.starts_with("v.toml:5:1:"), "{msg}");
    assert!(msg.contains("admin listener's default address"), "{msg}");
}

/// `[pool.NAME.tls]` with real files made by rcgen in a temporary directory.
mod pool_tls {
    use super::*;
    use crate::tls::tests::{self_signed, Dir};

    /// GOOD with a tls table on pool "was", the files in `dir`, the config file beside them.
    fn with_tls(dir: &Dir, table: &str) -> Result<Config, ConfigError> {
        let text = GOOD.replace(
            "[pool.was]\nbackends = [\"192.0.2.23:8080\"]\n",
            &format!("[pool.was]\nbackends = [\"192.0.2.23:8080\"]\n[pool.was.tls]\n{table}"),
        );
        parse(&dir.0.join("vipgate.toml"), &text)
    }

    fn files(tag: &str) -> Dir {
        let dir = Dir::new(tag);
        let (ca, _) = self_signed(&["ca.example.test"], false);
        dir.write("ca.pem", &ca);
        let (cert, key) = self_signed(&["vipgate-client"], false);
        dir.write("client.pem", &cert);
        dir.write("client.key", &key);
        let (old, old_key) = self_signed(&["old-client"], true);
        dir.write("old.pem", &old);
        dir.write("old.key", &old_key);
        dir.write("junk.pem", "not a certificate\n");
        dir
    }

    #[test]
    fn a_full_table_is_read_with_paths_beside_the_config() {
        let dir = files("cfg-ok");
        let c = with_tls(
            &dir,
            "ca = \"ca.pem\"\nserver_name = \"WAS.internal\"\ncert = \"client.pem\"\nkey = \"client.key\"\nalpn = [\"http/1.1\"]\n",
        )
        .expect("valid");
        let was = c.pools.iter().find(|p| p.name == "was").unwrap();
        let tls = was.tls.as_ref().expect("tls");
        assert_eq!(tls.ca.as_deref(), Some(dir.0.join("ca.pem").as_path()));
        assert_eq!(
            tls.server_name.as_ref().map(|n| n.to_str().into_owned()),
            Some("was.internal".to_owned())
        );
        let client = tls.client_cert.as_ref().expect("client cert");
        assert_eq!(client.cert, dir.0.join("client.pem"));
        assert!(client.subject.starts_with("CN="), "{}", client.subject);
        assert!(client.not_after > 1_700_000_000);
        assert_eq!(tls.alpn, ["http/1.1"]);
        assert!(!tls.insecure_skip_verify);
        assert_eq!(tls.client_config.alpn_protocols, [b"http/1.1".to_vec()]);
        assert!(c
            .pools
            .iter()
            .find(|p| p.name == "web")
            .unwrap()
            .tls
            .is_none());

        let insecure = with_tls(&dir, "insecure_skip_verify = true\n").expect("valid");
        let t = insecure.pools.iter().find_map(|p| p.tls.as_ref()).unwrap();
        assert!(t.insecure_skip_verify && t.ca.is_none() && t.server_name.is_none());
    }

    #[test]
    fn bad_tables_and_files_are_refused_with_line_file_and_reason() {
        let dir = files("cfg-bad");
        // The [pool.was.tls] header is line 22; its first key line 23.
        let table: &[(&str, usize, &str)] = &[
            ("server_name = \"was\"\n", 22, "needs ca = \"FILE\""),
            ("insecure_skip_verify = false\n", 22, "needs ca = \"FILE\""),
            (
                "ca = \"ca.pem\"\ninsecure_skip_verify = true\n",
                23,
                "exclude each other",
            ),
            ("ca = \"missing.pem\"\n", 23, "missing.pem: cannot read"),
            ("ca = \"junk.pem\"\n", 23, "junk.pem"),
            ("ca = \"\"\n", 23, "ca is empty"),
            (
                "ca = \"ca.pem\"\ncert = \"old.pem\"\nkey = \"old.key\"\n",
                24,
                "old.pem: the certificate expired at 2001-01-01",
            ),
            (
                "ca = \"ca.pem\"\ncert = \"client.pem\"\nkey = \"old.key\"\n",
                25,
                "old.key: the private key does not belong to the certificate in",
            ),
            (
                "ca = \"ca.pem\"\ncert = \"client.pem\"\nkey = \"nokey.key\"\n",
                25,
                "nokey.key: cannot read",
            ),
            (
                "ca = \"ca.pem\"\ncert = \"client.pem\"\n",
                24,
                "cert needs key",
            ),
            (
                "ca = \"ca.pem\"\nkey = \"client.key\"\n",
                24,
                "key needs cert",
            ),
            (
                "ca = \"ca.pem\"\nserver_name = \"not a name\"\n",
                24,
                "is not a DNS name or an IP address",
            ),
            (
                "ca = \"ca.pem\"\nserver_name = \"*.internal\"\n",
                24,
                "is not a DNS name",
            ),
            (
                "ca = \"ca.pem\"\nalpn = [\"h2\", \"http/1.1\"]\n",
                24,
                "speaks HTTP/1.1",
            ),
            (
                "ca = \"ca.pem\"\nalpn = [\"\"]\n",
                24,
                "is not a protocol id",
            ),
            (
                "ca = \"ca.pem\"\nverify = true\n",
                24,
                "unknown field `verify`",
            ),
        ];
        for (tls, line, words) in table {
            let err = with_tls(&dir, tls).expect_err(tls);
            let msg = err.to_string();
            let want = format!("{}:{line}:", dir.0.join("vipgate.toml").display());
            assert!(msg.starts_with(&want), "{tls:?}: {msg}");
            assert!(msg.contains(words), "{tls:?}: {msg} lacks {words:?}");
            assert_eq!(msg.lines().count(), 1, "one line: {msg}");
        }
    }

    #[test]
    fn same_as_sees_changed_certificates_behind_the_same_paths() {
        let dir = files("cfg-same");
        let table = "ca = \"ca.pem\"\ncert = \"client.pem\"\nkey = \"client.key\"\n";
        let tls = |c: &Config| c.pools.iter().find_map(|p| p.tls.clone()).unwrap();
        let a = tls(&with_tls(&dir, table).unwrap());
        let b = tls(&with_tls(&dir, table).unwrap());
        assert!(a.same_as(&b), "same files, same settings");
        let (other_ca, _) = self_signed(&["other-ca.example.test"], false);
        dir.write("ca.pem", &other_ca);
        let c = tls(&with_tls(&dir, table).unwrap());
        assert!(!a.same_as(&c), "a new CA behind the same path");
        let d = tls(&with_tls(&dir, "ca = \"ca.pem\"\ncert = \"client.pem\"\nkey = \"client.key\"\nserver_name = \"x.test\"\n").unwrap());
        assert!(!c.same_as(&d), "another server name");
    }
}

/// `https` listeners and `[[certificate]]`: files made here with rcgen, next to the config.
mod tls {
    use super::*;
    use crate::tls::tests::{self_signed, Dir};

    /// A directory with `a.pem`/`a.key` (a.test, *.apps.test), `b.pem`/`b.key` (b.test),
    /// `old.pem`/`old.key` (expired), `ca.pem`.
    fn files(tag: &str) -> Dir {
        let d = Dir::new(&format!("cfg-https-{tag}"));
        let sets: [(&str, &[&str], bool); 3] = [
            ("a", &["a.test", "*.apps.test"], false),
            ("b", &["b.test"], false),
            ("old", &["old.test"], true),
        ];
        for (name, names, expired) in sets {
            let (cert, key) = self_signed(names, expired);
            d.write(&format!("{name}.pem"), &cert);
            d.write(&format!("{name}.key"), &key);
        }
        std::fs::copy(d.0.join("a.pem"), d.0.join("ca.pem")).unwrap();
        d
    }

    const HTTPS: &str = r#"[[listener]]
bind = "192.0.2.200:443"
protocol = "https"

[[listener]]
bind = "192.0.2.200:80"
redirect_https = 308

[[certificate]]
cert = "a.pem"
key = "a.key"

[[certificate]]
cert = "b.pem"
key = "b.key"
default = true

[[host]]
names = ["a.test"]
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["192.0.2.21:8080"]
"#;

    fn parse_in(d: &Dir, text: &str) -> Result<Config, ConfigError> {
        parse(&d.0.join("vipgate.toml"), text)
    }

    #[test]
    fn https_listener_with_certificates_is_accepted() {
        let d = files("ok");
        let c = parse_in(&d, HTTPS).expect("valid");
        assert_eq!(c.listeners[0].protocol, Protocol::Https);
        let tls = c.listeners[0].tls.as_ref().expect("tls settings");
        assert_eq!(tls.sni_fallback, SniFallback::Default);
        assert_eq!(tls.min_version, TlsVersion::Tls12);
        assert!(tls.client_auth.is_none());
        assert_eq!(c.listeners[1].redirect_https, Some(308));
        assert_eq!(c.certificates.len(), 2);
        assert_eq!(c.certificates[0].serves(), ["a.test", "*.apps.test"]);
        assert_eq!(c.certificates[0].cert, d.0.join("a.pem"));
        assert!(c.certificates[1].default && !c.certificates[0].default);
    }

    #[test]
    fn listener_tls_keys_are_read() {
        let d = files("keys");
        let text = HTTPS.replace(
            "protocol = \"https\"",
            "protocol = \"https\"\nsni_fallback = \"refuse\"\nmin_tls_version = \"1.3\"\nclient_ca = \"ca.pem\"\nclient_auth = \"optional\"",
        )
        .replace("cert = \"b.pem\"\nkey = \"b.key\"", "cert = \"b.pem\"\nkey = \"b.key\"\nnames = [\"B.test\", \"*.b.test\"]")
        .replace("names = [\"a.test\"]", "names = [\"a.test\"]\nallow_client_subjects = [\"CN=client one\"]");
        let c = parse_in(&d, &text).expect("valid");
        let tls = c.listeners[0].tls.as_ref().unwrap();
        assert_eq!(tls.sni_fallback, SniFallback::Refuse);
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        let auth = tls.client_auth.as_ref().unwrap();
        assert!(!auth.required);
        assert_eq!(auth.ca, d.0.join("ca.pem"));
        assert_eq!(c.certificates[1].serves(), ["b.test", "*.b.test"]);
        assert_eq!(c.hosts[0].allow_client_subjects, ["CN=client one"]);
    }

    #[test]
    fn bad_tls_settings_are_refused_at_their_line() {
        let d = files("bad");
        let cases: &[(&str, &str, usize, &str)] = &[
            // Bad files: the cert (or key) line and the file name with the reason.
            (
                "cert = \"a.pem\"\nkey = \"a.key\"",
                "cert = \"old.pem\"\nkey = \"old.key\"",
                10,
                "old.pem: the certificate expired at 2001-01-01T00:00:00Z",
            ),
            (
                "key = \"a.key\"",
                "key = \"b.key\"",
                11,
                "b.key: the private key does not belong to the certificate in",
            ),
            (
                "cert = \"a.pem\"",
                "cert = \"missing.pem\"",
                10,
                "missing.pem: cannot read",
            ),
            (
                "cert = \"a.pem\"",
                "cert = \"a.key\"",
                10,
                "a.key: no CERTIFICATE block",
            ),
            (
                "key = \"a.key\"",
                "key = \"ca.pem\"",
                11,
                "ca.pem: no PRIVATE KEY block",
            ),
            // Listener keys.
            (
                "protocol = \"https\"",
                "protocol = \"https\"\nsni_fallback = \"first\"",
                4,
                "sni_fallback \"first\" is not",
            ),
            (
                "protocol = \"https\"",
                "protocol = \"https\"\nmin_tls_version = \"1.1\"",
                4,
                "min_tls_version \"1.1\" is not",
            ),
            (
                "protocol = \"https\"",
                "protocol = \"https\"\nclient_auth = \"required\"",
                4,
                "client_auth needs client_ca",
            ),
            (
                "protocol = \"https\"",
                "protocol = \"https\"\nclient_ca = \"old.key\"",
                4,
                "old.key: no CERTIFICATE block",
            ),
            (
                "redirect_https = 308",
                "redirect_https = 302",
                7,
                "redirect_https = 302: use 301",
            ),
            (
                "protocol = \"https\"",
                "protocol = \"https\"\nredirect_https = 301",
                4,
                "redirect_https applies only to protocol = \"http\"",
            ),
            (
                "redirect_https = 308",
                "sni_fallback = \"refuse\"",
                7,
                "apply only to protocol = \"https\"",
            ),
            // Certificates among themselves.
            (
                "default = true",
                "default = true\nnames = [\"a.test\"]",
                13,
                "name a.test is served by two certificates",
            ),
            (
                "cert = \"a.pem\"",
                "cert = \"a.pem\"\ndefault = true",
                17,
                "only one [[certificate]] may be the default",
            ),
            (
                "default = true",
                "names = [\"*\"]",
                16,
                "mark it default = true instead",
            ),
            (
                "names = [\"a.test\"]",
                "names = [\"a.test\"]\nallow_client_subjects = [\"client\"]",
                20,
                "is not a distinguished name",
            ),
        ];
        for (from, to, line, reason) in cases {
            assert!(HTTPS.contains(from), "{from}");
            let text = HTTPS.replacen(from, to, 1);
            let e = parse_in(&d, &text).expect_err(to).to_string();
            assert!(e.contains(reason), "{to}: {e}");
            assert!(e.contains(&format!("vipgate.toml:{line}:")), "{to}: {e}");
        }
        // No certificate at all.
        let start = HTTPS.find("[[certificate]]").unwrap();
        let end = HTTPS.find("[[host]]").unwrap();
        let text = format!("{}{}", &HTTPS[..start], &HTTPS[end..]);
        let e = parse_in(&d, &text).unwrap_err().to_string();
        assert!(
            e.contains(
                "vipgate.toml:1:1: error: an https listener needs at least one [[certificate]]"
            ),
            "{e}"
        );
    }
}

/// A BGP node: one ARP VIP, one BGP VIP, `[bgp]` with every key.
fn bgp_file() -> String {
    r#"[[vip]]
address = "192.0.2.200"
interface = "eth0"
[[vip]]
address = "203.0.113.10"
announce = "bgp"

[[listener]]
bind = "0.0.0.0:80"

[[host]]
names = ["*"]
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["192.0.2.21:8080"]
[pool.web.health]
type = "tcp"

[bgp]
table = 100
check_interval = "100ms"
rise = 4
fall = 1
withdraw_wait = "500ms"
bird_socket = "/run/bird/bird.ctl"
bird_protocol = "vg_table"
[[bgp.track]]
pool = "web"
"#
    .to_owned()
}

#[test]
fn bgp_vips_and_settings_are_read() {
    let c = parse(Path::new("b.toml"), &bgp_file()).expect("valid");
    assert_eq!(c.vips.len(), 1, "only the ARP VIP is in vips");
    let b = c.bgp.expect("bgp");
    assert_eq!(
        b.vips,
        ["203.0.113.10".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(b.table, 100);
    assert_eq!(b.check_interval, Duration::from_millis(100));
    assert_eq!((b.rise, b.fall), (4, 1));
    assert_eq!(b.withdraw_wait, Duration::from_millis(500));
    assert_eq!(
        b.bird_socket.as_deref(),
        Some(Path::new("/run/bird/bird.ctl"))
    );
    assert_eq!(b.bird_protocol, "vg_table");
    let labels: Vec<String> = b.track.iter().map(|t| t.condition.label()).collect();
    assert_eq!(
        labels,
        ["pool:web", "listeners"],
        "listeners tracked implicitly"
    );
    assert!(b.track.iter().all(|t| t.action == TrackAction::Fault));

    // Defaults.
    let text = "[[vip]]\naddress = \"203.0.113.10\"\nannounce = \"bgp\"\n[bgp]\n";
    let b = parse(Path::new("b.toml"), text).unwrap().bgp.unwrap();
    assert_eq!(b.table, DEFAULT_BGP_TABLE);
    assert_eq!(b.check_interval, DEFAULT_BGP_CHECK_INTERVAL);
    assert_eq!((b.rise, b.fall), (DEFAULT_BGP_RISE, DEFAULT_BGP_FALL));
    assert_eq!(b.withdraw_wait, DEFAULT_BGP_WITHDRAW_WAIT);
    assert_eq!(b.bird_socket, None);
    assert_eq!(b.bird_protocol, DEFAULT_BIRD_PROTOCOL);
    assert!(b.track.is_empty(), "no listeners, nothing to track");
}

#[test]
fn bad_bgp_files_are_refused_with_line_and_reason() {
    // (replace in bgp_file(), with, line, words)
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "announce = \"bgp\"",
            "announce = \"ospf\"",
            6,
            "announce = \"ospf\" is not one of",
        ),
        (
            "announce = \"bgp\"",
            "announce = \"bgp\"\ninterface = \"eth0\"",
            7,
            "remove `interface`",
        ),
        (
            "announce = \"bgp\"",
            "announce = \"bgp\"\ngarp_count = 3",
            7,
            "garp_count has no effect",
        ),
        (
            "address = \"192.0.2.200\"\ninterface = \"eth0\"",
            "address = \"192.0.2.200\"",
            1,
            "needs `interface`",
        ),
        (
            "address = \"203.0.113.10\"",
            "address = \"192.0.2.200\"",
            5,
            "listed twice",
        ),
        ("table = 100", "table = 254", 23, "kernel's own tables"),
        ("table = 100", "table = 0", 23, "out of range"),
        ("table = 100", "table = 4294967296", 23, "out of range"),
        (
            "check_interval = \"100ms\"",
            "check_interval = \"1ms\"",
            24,
            "out of range (10ms to 10s)",
        ),
        (
            "check_interval = \"100ms\"",
            "check_interval = 100",
            24,
            "needs a unit",
        ),
        (
            "rise = 4",
            "rise = 0",
            25,
            "rise = 0 is out of range (1 to 100)",
        ),
        ("fall = 1", "fall = 101", 26, "out of range"),
        (
            "withdraw_wait = \"500ms\"",
            "withdraw_wait = \"301s\"",
            27,
            "out of range",
        ),
        (
            "bird_socket = \"/run",
            "bird_socket = \"run",
            28,
            "absolute path",
        ),
        (
            "bird_protocol = \"vg_table\"",
            "bird_protocol = \"vg-table\"",
            29,
            "not a BIRD protocol name",
        ),
        (
            "track]]\npool = \"web\"\n",
            "track]]\npool = \"web\"\nweight = 10\n",
            32,
            "has no weight",
        ),
        (
            "track]]\npool = \"web\"\n",
            "track]]\npool = \"nope\"\n",
            31,
            "[[bgp.track]] pool \"nope\" is not defined",
        ),
        (
            "[pool.web.health]\ntype = \"tcp\"\n",
            "",
            29,
            "needs [pool.web.health]",
        ),
        ("rise = 4", "rice = 4", 25, "unknown field `rice`"),
    ];
    assert_refused(&bgp_file(), cases);
    // A BGP VIP without [bgp], and [bgp] without a BGP VIP.
    let text = "[[vip]]\naddress = \"203.0.113.10\"\nannounce = \"bgp\"\n";
    let msg = parse(Path::new("t.toml"), text).unwrap_err().to_string();
    assert!(
        msg.starts_with("t.toml:3:") && msg.contains("no [bgp] table"),
        "{msg}"
    );
    let text = "[[vip]]\naddress = \"192.0.2.200\"\ninterface = \"eth0\"\n[bgp]\ntable = 90\n";
    let msg = parse(Path::new("t.toml"), text).unwrap_err().to_string();
    assert!(
        msg.starts_with("t.toml:4:") && msg.contains("but the file has none"),
        "{msg}"
    );
}

/// `[acme]` and `acme` certificates: a placeholder until a certificate is stored; every bad
/// key refused at its line.
mod acme {
    use super::*;

    const ACME: &str = r#"[[listener]]
bind = "192.0.2.200:80"
protocol = "http"

[[listener]]
bind = "192.0.2.200:443"
protocol = "https"

[acme]
contact = ["ops@example.test"]
storage = "/nonexistent/vipgate-acme-test"

[[certificate]]
acme = ["a.example.test", "www.a.example.test"]

[[certificate]]
acme = true
names = ["b.example.test"]

[[host]]
names = ["a.example.test"]
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["192.0.2.21:8080"]
"#;

    #[test]
    fn an_acme_table_with_defaults_and_placeholders_is_accepted() {
        let c = parse(Path::new("t.toml"), ACME).expect("valid");
        let a = c.acme.as_ref().expect("acme");
        assert_eq!(a.directory, DEFAULT_ACME_DIRECTORY);
        assert_eq!(a.contact, ["mailto:ops@example.test"]);
        assert_eq!(a.challenge, AcmeChallenge::Http01);
        assert_eq!(a.renew_remaining_percent, 33);
        assert_eq!(a.retry_initial, DEFAULT_ACME_RETRY_INITIAL);
        assert_eq!(a.retry_max, DEFAULT_ACME_RETRY_MAX);
        assert!(c.certificates.iter().all(|c| c.acme));
        assert_eq!(
            c.certificates[0].serves(),
            ["a.example.test", "www.a.example.test"]
        );
        assert_eq!(
            c.certificates[0].cert,
            Path::new("/nonexistent/vipgate-acme-test/certs/a.example.test.pem")
        );
        assert_eq!(c.certificates[0].cert, c.certificates[0].key);
        // Nothing stored yet: a self-signed placeholder for the names.
        assert!(c.certificates[0].loaded.subject.contains("placeholder"));
        assert_eq!(
            c.certificates[0].loaded.dns_names,
            ["a.example.test", "www.a.example.test"]
        );
        assert_eq!(c.certificates[1].serves(), ["b.example.test"]);
    }

    #[test]
    fn bad_acme_keys_are_refused_with_line_and_reason() {
        assert_refused(
            ACME,
            &[
                (
                    "contact = [\"ops@example.test\"]",
                    "directory = \"http://acme.test/dir\"",
                    10,
                    "is not an https:// URL",
                ),
                (
                    "contact = [\"ops@example.test\"]",
                    "contact = [\"ops\"]",
                    10,
                    "is not an e-mail address",
                ),
                (
                    "storage = \"/nonexistent/vipgate-acme-test\"",
                    "storage = \"acme\"",
                    11,
                    "must be an absolute directory",
                ),
                (
                    "contact = [\"ops@example.test\"]",
                    "challenge = \"dns-01\"",
                    10,
                    "is not \"http-01\" or \"tls-alpn-01\"",
                ),
                (
                    "contact = [\"ops@example.test\"]",
                    "renew_remaining_percent = 95",
                    10,
                    "out of range (1 to 90)",
                ),
                (
                    "contact = [\"ops@example.test\"]",
                    "retry_initial_ms = 5000\nretry_max_ms = 1000",
                    11,
                    "retry_max_ms is below retry_initial_ms",
                ),
                (
                    "contact = [\"ops@example.test\"]",
                    "terms_of_service_agreed = false",
                    10,
                    "terms_of_service_agreed = false",
                ),
                (
                    "contact = [\"ops@example.test\"]",
                    "server_ca = \"/nonexistent/ca.pem\"",
                    10,
                    "cannot read",
                ),
                (
                    "acme = [\"a.example.test\", \"www.a.example.test\"]",
                    "acme = [\"*.a.example.test\"]",
                    14,
                    "needs the dns-01 challenge",
                ),
                (
                    "acme = [\"a.example.test\", \"www.a.example.test\"]",
                    "acme = []",
                    14,
                    "acme names are empty",
                ),
                (
                    "acme = [\"a.example.test\", \"www.a.example.test\"]",
                    "acme = [\"a.example.test\"]\ncert = \"a.pem\"",
                    15,
                    "cert and key are not given with acme",
                ),
                (
                    "acme = true\nnames = [\"b.example.test\"]",
                    "acme = true",
                    17,
                    "acme = true needs names",
                ),
                (
                    "acme = true\nnames = [\"b.example.test\"]",
                    "acme = [\"c.example.test\"]\nnames = [\"b.example.test\"]",
                    18,
                    "names are given twice",
                ),
                (
                    "acme = true\nnames = [\"b.example.test\"]",
                    "acme = [\"a.example.test\"]",
                    16,
                    "served by two certificates",
                ),
                (
                    "acme = true\nnames = [\"b.example.test\"]",
                    "names = [\"b.example.test\"]",
                    16,
                    "needs cert and key files",
                ),
            ],
        );
    }

    #[test]
    fn acme_needs_its_table_and_the_listener_of_its_challenge() {
        let refused = |text: String| parse(Path::new("t.toml"), &text).unwrap_err().to_string();
        let table = "[acme]\ncontact = [\"ops@example.test\"]\nstorage = \"/nonexistent/vipgate-acme-test\"\n";
        let http = "[[listener]]\nbind = \"192.0.2.200:80\"\nprotocol = \"http\"\n";
        let https = "[[listener]]\nbind = \"192.0.2.200:443\"\nprotocol = \"https\"\n";
        let cases = [
            (
                ACME.replace(table, ""),
                "t.toml:11:",
                "acme needs an [acme] table",
            ),
            (
                ACME.replace(http, ""),
                "t.toml:6:",
                "http-01 needs an http listener",
            ),
            (
                ACME.replace(https, "")
                    .replace("storage =", "challenge = \"tls-alpn-01\"\nstorage ="),
                "t.toml:8:",
                "tls-alpn-01 needs an https listener",
            ),
        ];
        for (text, at, words) in cases {
            let msg = refused(text);
            assert!(msg.starts_with(at) && msg.contains(words), "{msg}");
        }
    }
}
