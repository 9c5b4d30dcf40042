//! Telemetry on loopback, without root: the proxy and the admin listener on real sockets with a
//! small real backend; /metrics scraped and parsed while requests flow, access log lines parsed
//! as JSON, /healthz, /readyz and /config.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure here is the report

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use vipgate::daemon::admin::{AdminServer, AdminState};
use vipgate::proxy::drain::Drain;
use vipgate::proxy::{listener, Snapshot};
use vipgate::telemetry::access_log::{self, AccessLog};

/// Answers every request with 200 and a 2-byte body, `/status/NNN` with that status; keeps
/// connections alive.
async fn backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                        let status = path
                            .rsplit_once("/status/")
                            .map_or("200", |(_, c)| c)
                            .to_string();
                        let resp = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok");
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Setup {
    proxy: SocketAddr,
    admin: SocketAddr,
    state: Arc<AdminState>,
    lines: Lines,
    _stop: watch::Sender<bool>,
    _server: AdminServer,
}

/// `fake`: the listener address the config names (accept counters are process-wide by that
/// address, so each test uses its own).
async fn setup(fake: &str) -> Setup {
    let be = backend().await;
    let text = format!(
        r#"
[admin]
enabled = false
[access_log]
format = "json"
[[listener]]
bind = "{fake}"
[[host]]
names = ["a.test"]
[[host.route]]
prefix = "/"
pool = "web"
[[host.route]]
prefix = "/api"
pool = "api"
[pool.web]
backends = ["{be}"]
[pool.api]
backends = ["{be}"]
"#
    );
    let config = vipgate::config::parse(Path::new("t.toml"), &text).unwrap();
    let mut snap = Snapshot::build(&config);
    let lines = Lines::default();
    snap.access_log = Some(AccessLog::new(
        config.access_log.as_ref().unwrap(),
        access_log::writer(Box::new(lines.clone()), 1024),
    ));
    let shared = Arc::new(ArcSwap::from_pointee(snap));
    let drain = Drain::new();
    let l = listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let proxy = l.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    tokio::spawn(listener::serve(
        l,
        fake.parse().unwrap(),
        shared.clone(),
        rx,
        drain.clone(),
    ));
    let (state, _reloads) = AdminState::new(shared, drain, config);
    let al = listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let admin = al.local_addr().unwrap();
    let server = AdminServer::spawn(al, state.clone());
    state.ready.store(true, Ordering::Release);
    Setup {
        proxy,
        admin,
        state,
        lines,
        _stop: stop,
        _server: server,
    }
}

/// One request on a fresh connection; returns (status, body).
async fn http(addr: SocketAddr, method: &str, host: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: t/1\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The exposition parsed into `name{labels}` → value, checking every sample line's shape.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("sample line");
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        assert!(
            key.starts_with("vipgate_") || key.starts_with("process_"),
            "{line}"
        );
        assert_eq!(key.matches('{').count(), key.matches('}').count(), "{line}");
        assert!(out.insert(key.to_string(), v).is_none(), "duplicate {key}");
    }
    out
}

async fn scrape(admin: SocketAddr) -> HashMap<String, f64> {
    let (status, body) = http(admin, "GET", "x", "/metrics").await;
    assert_eq!(status, 200);
    parse(&body)
}

const ROOT: &str = r#"host="a.test",route="/",pool="web""#;
const API: &str = r#"host="a.test",route="/api",pool="api""#;
const UNROUTED: &str = r#"host="",route="",pool="""#;

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| panic!("no {key}"))
}

#[tokio::test]
async fn counters_move_as_requests_flow_and_histograms_are_cumulative() {
    let t = setup("127.0.0.1:1").await;
    let before = scrape(t.admin).await;
    assert_eq!(
        get(
            &before,
            &format!("vipgate_http_requests_total{{{ROOT},code_class=\"2xx\"}}")
        ),
        0.0
    );
    for _ in 0..5 {
        assert_eq!(
            http(t.proxy, "GET", "a.test", "/x").await,
            (200, "ok".into())
        );
    }
    for _ in 0..3 {
        assert_eq!(
            http(t.proxy, "GET", "a.test", "/api/status/503").await.0,
            503
        );
    }
    for _ in 0..2 {
        assert_eq!(http(t.proxy, "GET", "nope.test", "/").await.0, 404);
    }
    let after = scrape(t.admin).await;
    let req = |labels: &str, class: &str| {
        get(
            &after,
            &format!("vipgate_http_requests_total{{{labels},code_class=\"{class}\"}}"),
        )
    };
    assert_eq!(req(ROOT, "2xx"), 5.0);
    assert_eq!(req(API, "5xx"), 3.0);
    assert_eq!(req(API, "2xx"), 0.0);
    assert_eq!(req(UNROUTED, "4xx"), 2.0);
    for (labels, n) in [(ROOT, 5.0), (API, 3.0), (UNROUTED, 2.0)] {
        for h in [
            "vipgate_http_request_duration_seconds",
            "vipgate_http_upstream_duration_seconds",
        ] {
            let mut buckets: Vec<(f64, f64)> = after
                .iter()
                .filter_map(|(k, v)| {
                    let rest = k.strip_prefix(&format!("{h}_bucket{{{labels},le=\""))?;
                    let le = rest.strip_suffix("\"}")?;
                    Some((
                        if le == "+Inf" {
                            f64::INFINITY
                        } else {
                            le.parse().unwrap()
                        },
                        *v,
                    ))
                })
                .collect();
            buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
            assert_eq!(buckets.len(), 15, "{h} {labels}");
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "cumulative: {buckets:?}"
            );
            let count = get(&after, &format!("{h}_count{{{labels}}}"));
            assert_eq!(buckets.last().unwrap().1, count);
            // Local answers never reach a backend.
            let expected = if labels == UNROUTED && h.contains("upstream") {
                0.0
            } else {
                n
            };
            assert_eq!(count, expected, "{h} {labels}");
            assert!(get(&after, &format!("{h}_sum{{{labels}}}")) >= 0.0);
        }
    }
    let bytes_in = get(
        &after,
        &format!("vipgate_http_request_bytes_total{{{ROOT}}}"),
    );
    let bytes_out = get(
        &after,
        &format!("vipgate_http_response_bytes_total{{{ROOT}}}"),
    );
    let one_request =
        "GET /x HTTP/1.1\r\nHost: a.test\r\nUser-Agent: t/1\r\nConnection: close\r\n\r\n".len();
    assert_eq!(bytes_in, 5.0 * one_request as f64);
    assert!(bytes_out > 5.0 * 40.0, "{bytes_out}");
    assert_eq!(
        get(
            &after,
            "vipgate_connections_total{listener=\"127.0.0.1:1\"}"
        ) - before
            .get("vipgate_connections_total{listener=\"127.0.0.1:1\"}")
            .copied()
            .unwrap_or(0.0),
        10.0
    );
    let up: Vec<f64> = after
        .iter()
        .filter(|(k, _)| k.starts_with("vipgate_backend_up{pool=\"web\",backend=\"127.0.0.1:"))
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(up, vec![1.0]);
    assert_eq!(get(&after, "vipgate_pool_backends{pool=\"api\"}"), 1.0);
    assert_eq!(get(&after, "vipgate_build_info{version=\"0.1.0\"}"), 1.0);
}

#[tokio::test]
async fn access_log_lines_are_json_with_the_route_and_timings() {
    let t = setup("127.0.0.1:2").await;
    assert_eq!(http(t.proxy, "GET", "a.test", "/api/q?x=1").await.0, 200);
    assert_eq!(http(t.proxy, "GET", "nope.test", "/n").await.0, 404);
    let mut lines = Vec::new();
    for _ in 0..100 {
        let text = String::from_utf8(t.lines.0.lock().unwrap().clone()).unwrap();
        lines = text.lines().map(str::to_owned).collect::<Vec<_>>();
        if lines.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lines.len(), 2, "{lines:?}");
    let a: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(a["method"], "GET");
    assert_eq!(a["host"], "a.test");
    assert_eq!(a["path"], "/api/q?x=1");
    assert_eq!(a["status"], 200);
    assert_eq!(a["route"], "/api");
    assert_eq!(a["pool"], "api");
    assert_eq!(a["client"], "127.0.0.1");
    assert_eq!(a["user_agent"], "t/1");
    assert!(a["backend"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(a["bytes_in"].as_u64().unwrap() > 40);
    assert!(a["bytes_out"].as_u64().unwrap() > 20);
    let d = a["duration"].as_f64().unwrap();
    let u = a["upstream_duration"].as_f64().unwrap();
    assert!(d > 0.0 && u > 0.0 && u <= d, "{d} {u}");
    assert!(a["time"].as_str().unwrap().ends_with('Z'));
    let b: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(b["status"], 404);
    assert!(b["route"].is_null() && b["backend"].is_null() && b["upstream_duration"].is_null());
}

#[tokio::test]
async fn health_readiness_and_the_config_view() {
    let t = setup("127.0.0.1:3").await;
    assert_eq!(
        http(t.admin, "GET", "x", "/healthz").await,
        (200, "ok\n".into())
    );
    assert_eq!(http(t.admin, "GET", "x", "/readyz").await.0, 200);
    assert_eq!(http(t.admin, "POST", "x", "/metrics").await.0, 405);
    assert_eq!(http(t.admin, "GET", "x", "/reload").await.0, 405);
    assert_eq!(http(t.admin, "GET", "x", "/nothing").await.0, 404);
    let (status, body) = http(t.admin, "GET", "x", "/config").await;
    assert_eq!(status, 200);
    let c: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(c["host"][0]["names"][0], "a.test");
    assert_eq!(c["host"][0]["route"][1]["prefix"], "/api");
    assert_eq!(c["pool"]["web"]["balance"], "round_robin");
    assert_eq!(c["proxy"]["connect_timeout_ms"], 3000);
    assert_eq!(c["admin"]["enabled"], false);
    assert_eq!(c["access_log"]["format"], "json");
    assert_eq!(c["log"]["level"], "info");
    t.state.stopping.store(true, Ordering::Release);
    assert_eq!(http(t.admin, "GET", "x", "/readyz").await.0, 503);
    assert_eq!(http(t.admin, "GET", "x", "/healthz").await.0, 200);
}

/// The status page's JSON: the routes' plots from the sampler's points (rate, 5xx share,
/// quantiles), each backend's state, the pools; `vipgate status`'s fetch reads the same; the page
/// itself is one HTML file that loads nothing from elsewhere.
#[tokio::test]
async fn status_json_shows_rates_backends_and_the_page_is_self_contained() {
    use vipgate::daemon::status::{self, Status};
    let t = setup("127.0.0.1:4").await;
    let config = t.state.config.load_full();
    t.state.history.sample(&t.state.shared.load(), &config);
    for _ in 0..9 {
        assert_eq!(http(t.proxy, "GET", "a.test", "/x").await.0, 200);
    }
    assert_eq!(http(t.proxy, "GET", "a.test", "/x/status/503").await.0, 503);
    t.state.history.sample(&t.state.shared.load(), &config);

    let (code, body) = http(t.admin, "GET", "x", "/status.json").await;
    assert_eq!(code, 200);
    let raw: serde_json::Value = serde_json::from_str(&body).unwrap();
    for key in [
        "version",
        "time_unix",
        "phase",
        "problems",
        "vips",
        "vrrp",
        "bgp",
        "listeners",
        "routes",
        "pools",
        "certificates",
        "reloads",
        "events",
    ] {
        assert!(raw.get(key).is_some(), "no {key} in {body}");
    }
    let s: Status = serde_json::from_str(&body).unwrap();
    assert_eq!(s.phase, "ready");
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    let root = s.routes.iter().find(|r| r.route == "/").unwrap();
    assert_eq!((root.requests_total, root.errors_total), (10, 1));
    let h = &root.history;
    assert_eq!(h.time_unix.len(), 1);
    assert!(h.requests_per_second[0] > 0.0);
    assert!((h.error_ratio[0] - 0.1).abs() < 1e-9, "{:?}", h.error_ratio);
    let (p50, p99) = (h.p50_ms[0].unwrap(), h.p99_ms[0].unwrap());
    assert!(p50 > 0.0 && p50 <= p99, "p50 {p50} p99 {p99}");
    let web = s.pools.iter().find(|p| p.name == "web").unwrap();
    assert_eq!(web.backends_available, 1);
    assert!(web.backends[0].up && web.backends[0].healthy && !web.backends[0].ejected);
    // The backend keeps connections alive: the proxy holds one idle.
    assert_eq!(web.backends[0].idle_connections, 1);
    assert_eq!(s.listeners[0].bind.to_string(), "127.0.0.1:4");

    // What `vipgate status` does, on a thread of its own (it is blocking).
    let admin = t.admin;
    let fetched = tokio::task::spawn_blocking(move || status::fetch(admin))
        .await
        .unwrap()
        .unwrap();
    let (text, problems) = status::report(&[(admin.to_string(), fetched)], false);
    assert!(problems.is_empty());
    assert!(text.contains("a.test / -> web"), "{text}");
    assert!(text.contains("OK: every VIP has an owner"), "{text}");

    for path in ["/", "/status"] {
        let (code, page) = http(t.admin, "GET", "x", path).await;
        assert_eq!(code, 200);
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("fetch(\"status.json\""));
        for external in ["http://", "https://", " src=", "@import"] {
            assert!(!page.contains(external), "the page loads {external}");
        }
    }
    assert_eq!(http(t.admin, "POST", "x", "/status.json").await.0, 405);
}
