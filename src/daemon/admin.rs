//! The admin listener (`[admin]`, 127.0.0.1:9901 by default): a small HTTP/1.1 server for
//! operators and Prometheus, apart from the proxy's listeners.
//!
//! | request | answer |
//! |---|---|
//! | `GET /` or `GET /status` | the status page: one self-contained HTML file drawing `/status.json` live |
//! | `GET /status.json` | the operator's view as JSON (`daemon::status::Status`, stable field names) |
//! | `GET /metrics` | the Prometheus text exposition (`metrics::render`) |
//! | `GET /healthz` | 200 while the process runs its event loop |
//! | `GET /readyz` | 200 once listeners are up and the configuration is loaded; 503 while stopping |
//! | `GET /config` | the running configuration, defaults filled in, as JSON |
//! | `POST /reload` | reload the file as SIGHUP does; 200 with the outcome, 422 with `FILE:LINE:COLUMN: error: …` when refused |
//!
//! Owns parsing these requests (with the proxy's own head parser) and writing the answers; one
//! request per connection. Does not own reloading (it asks the daemon's event loop through a
//! channel and waits for the outcome) nor what the metrics are.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::status::{History, Inputs, Status, PAGE, SAMPLE_EVERY};
use super::track::ListenerFailures;
use crate::config::{Balance, Config, HashKey, HealthKind, Protocol};
use crate::proxy::drain::Drain;
use crate::proxy::http1::request;
use crate::proxy::{Shared, Snapshot};
use crate::telemetry::metrics;

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// How long `POST /reload` waits for the event loop (a reload that starts announcers or a
/// VRRP hand-over can take a few seconds).
const RELOAD_WAIT: Duration = Duration::from_secs(60);

/// The outcome of a reload asked for over HTTP: a summary, or the refusal's message.
pub type ReloadOutcome = Result<String, String>;
/// A reload request: the event loop answers on the oneshot.
pub type ReloadRequest = oneshot::Sender<ReloadOutcome>;

/// What the admin endpoints read; the daemon keeps it current.
pub struct AdminState {
    pub shared: Shared,
    pub drain: Drain,
    /// The running configuration (replaced on every successful reload).
    pub config: ArcSwap<Config>,
    /// Set when listeners are up and VIPs are being announced (or the election joined).
    pub ready: AtomicBool,
    /// Set when a graceful stop begins: `/readyz` answers 503 from then on.
    pub stopping: AtomicBool,
    /// The samples behind the status page's plots, its reloads and events.
    pub history: History,
    /// Set by the daemon: which listeners failed, for the status page.
    listener_failures: std::sync::OnceLock<ListenerFailures>,
    reload: mpsc::Sender<ReloadRequest>,
}

impl AdminState {
    /// The state and the receiving end of `POST /reload` requests, for the event loop.
    pub fn new(
        shared: Shared,
        drain: Drain,
        config: Config,
    ) -> (Arc<AdminState>, mpsc::Receiver<ReloadRequest>) {
        let (tx, rx) = mpsc::channel(4);
        let state = AdminState {
            shared,
            drain,
            config: ArcSwap::from_pointee(config),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            history: History::default(),
            listener_failures: std::sync::OnceLock::new(),
            reload: tx,
        };
        (Arc::new(state), rx)
    }

    pub(super) fn watch_listeners(&self, failures: ListenerFailures) {
        let _ = self.listener_failures.set(failures);
    }

    /// The operator's view now.
    pub fn status(&self) -> Status {
        let snapshot = self.shared.load();
        let config = self.config.load();
        let failed = self
            .listener_failures
            .get()
            .map(ListenerFailures::list)
            .unwrap_or_default();
        let phase = if self.stopping.load(Ordering::Acquire) {
            "stopping"
        } else if self.ready.load(Ordering::Acquire) {
            "ready"
        } else {
            "starting"
        };
        Status::now(&Inputs {
            snapshot: &snapshot,
            config: &config,
            history: &self.history,
            phase,
            failed_listeners: &failed,
        })
    }

    /// With BGP VIPs, ready means announced: a node whose VIPs are withdrawn (not yet risen,
    /// a tracked condition failed) gets no traffic from the router and says so.
    fn is_ready(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::Acquire) {
            Err("stopping: draining connections\n".to_owned())
        } else if !self.ready.load(Ordering::Acquire) {
            Err("starting\n".to_owned())
        } else if self.config.load().bgp.is_some() {
            let phrase = crate::bgp::metrics::bgp_metrics()
                .now()
                .map_or_else(|| "withdrawn (rising)".to_owned(), |s| s.phrase());
            if phrase == "announced" {
                Ok(())
            } else {
                Err(format!("bgp: {phrase}\n"))
            }
        } else {
            Ok(())
        }
    }
}

/// The running admin server. Stop it with [`AdminServer::stop`].
pub struct AdminServer {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    sampler: JoinHandle<()>,
}

impl AdminServer {
    /// Serve on an already bound socket.
    pub fn spawn(l: TcpListener, state: Arc<AdminState>) -> AdminServer {
        let addr = l.local_addr().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
        let (stop, mut stop_rx) = watch::channel(false);
        info!(%addr, "admin listener: /status /status.json /metrics /healthz /readyz /config /reload");
        let sampler = tokio::spawn(sample(state.clone()));
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = async { let _ = stop_rx.wait_for(|s| *s).await; } => return,
                    accepted = l.accept() => match accepted {
                        Ok((s, peer)) => {
                            tokio::spawn(serve(s, peer, state.clone()));
                        }
                        Err(e) => {
                            warn!(error = %e, "admin accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                }
            }
        });
        AdminServer {
            addr,
            stop,
            task,
            sampler,
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.sampler.abort();
        let _ = self.task.await;
    }
}

/// The status page's samples, one per `SAMPLE_EVERY`: a read of the same atomics a scrape
/// reads, off the request path.
async fn sample(state: Arc<AdminState>) {
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + SAMPLE_EVERY, SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state
            .history
            .sample(&state.shared.load(), &state.config.load());
    }
}

struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
    allow: Option<&'static str>,
}

fn text(status: u16, body: impl Into<String>) -> Answer {
    Answer {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
        allow: None,
    }
}

fn json(status: u16, body: String) -> Answer {
    Answer {
        status,
        content_type: "application/json",
        body,
        allow: None,
    }
}

async fn serve(mut s: TcpStream, peer: SocketAddr, state: Arc<AdminState>) {
    let mut buf = Vec::with_capacity(1024);
    let answer = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut s, &mut buf)).await {
        Ok(Ok(Some(()))) => {
            let mut headers = crate::proxy::http1::headers();
            let limits = request::Limits {
                max_request_line: MAX_HEAD,
                max_head_size: MAX_HEAD,
                max_headers: 32,
            };
            match request::parse(&buf, &mut headers, &limits) {
                Ok(Some(req)) => {
                    let (method, path) = (req.method.to_owned(), req.path.to_owned());
                    debug!(%peer, %method, %path, "admin request");
                    answer(&method, &path, &state).await
                }
                Ok(None) => text(400, "bad request\n"),
                Err(e) => text(e.status(), "bad request\n"),
            }
        }
        Ok(Ok(None)) => return,
        Ok(Err(_)) => return,
        Err(_) => text(408, "request head not received in time\n"),
    };
    let mut out = String::with_capacity(answer.body.len() + 160);
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        answer.status,
        reason(answer.status),
        answer.content_type,
        answer.body.len()
    );
    if let Some(allow) = answer.allow {
        let _ = write!(out, "Allow: {allow}\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&answer.body);
    let _ = s.write_all(out.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// Read until a blank line ends the head. `None` if the client closed first.
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<()>> {
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() >= MAX_HEAD {
            return Ok(Some(()));
        }
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(if buf.is_empty() { None } else { Some(()) });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        422 => "Unprocessable Content",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// The whole exposition, in Prometheus text format 0.0.4: each layer renders its own
/// families with `telemetry`'s encoder.
fn exposition(snapshot: &Snapshot, config: &Config, connections_active: usize) -> String {
    let mut out = String::with_capacity(16 * 1024);
    metrics::render_process(&mut out);
    crate::proxy::metrics::render(&mut out, snapshot, config, connections_active);
    crate::l2::metrics::render(&mut out, config);
    crate::ha::metrics::render(&mut out, config);
    crate::resolve::metrics::render(&mut out);
    crate::bgp::metrics::render(&mut out, config);
    crate::acme::metrics::render(&mut out);
    out
}

async fn answer(method: &str, path: &str, state: &AdminState) -> Answer {
    let path = path.split('?').next().unwrap_or(path);
    let get = matches!(method, "GET" | "HEAD");
    let allowed = |allow: &'static str| Answer {
        allow: Some(allow),
        ..text(405, "method not allowed\n")
    };
    match path {
        "/metrics" if get => {
            let snapshot = state.shared.load();
            let config = state.config.load();
            Answer {
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                ..text(200, exposition(&snapshot, &config, state.drain.active()))
            }
        }
        "/" | "/status" if get => Answer {
            content_type: "text/html; charset=utf-8",
            ..text(200, PAGE)
        },
        "/status.json" if get => match serde_json::to_string(&state.status()) {
            Ok(body) => json(200, body + "\n"),
            Err(e) => text(500, format!("cannot encode the status: {e}\n")),
        },
        "/healthz" if get => text(200, "ok\n"),
        "/readyz" if get => match state.is_ready() {
            Ok(()) => text(200, "ready\n"),
            Err(why) => text(503, why),
        },
        "/config" if get => json(200, config_json(&state.config.load())),
        "/reload" if method == "POST" => reload(state).await,
        "/" | "/status" | "/status.json" | "/metrics" | "/healthz" | "/readyz" | "/config" => {
            allowed("GET, HEAD")
        }
        "/reload" => allowed("POST"),
        _ => text(
            404,
            "not found: try /status, /status.json, /metrics, /healthz, /readyz, /config or POST /reload\n",
        ),
    }
}

async fn reload(state: &AdminState) -> Answer {
    if state.stopping.load(Ordering::Acquire) {
        return json(
            503,
            r#"{"status":"refused","error":"stopping"}"#.to_owned() + "\n",
        );
    }
    let (tx, rx) = oneshot::channel();
    if state.reload.send(tx).await.is_err() {
        return json(
            503,
            r#"{"status":"refused","error":"the daemon does not take reloads now"}"#.to_owned()
                + "\n",
        );
    }
    let mut body = String::new();
    match tokio::time::timeout(RELOAD_WAIT, rx).await {
        Ok(Ok(Ok(summary))) => {
            body.push_str(r#"{"status":"reloaded","summary":"#);
            json_str(&summary, &mut body);
            body.push_str("}\n");
            json(200, body)
        }
        Ok(Ok(Err(error))) => {
            body.push_str(r#"{"status":"refused","error":"#);
            json_str(&error, &mut body);
            body.push_str("}\n");
            json(422, body)
        }
        Ok(Err(_)) => json(
            503,
            r#"{"status":"refused","error":"the daemon is stopping"}"#.to_owned() + "\n",
        ),
        Err(_) => json(
            504,
            r#"{"status":"unknown","error":"no outcome within 60 s; see the daemon log"}"#
                .to_owned()
                + "\n",
        ),
    }
}

fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A tiny JSON writer: enough for the configuration view, with commas handled.
struct J {
    out: String,
    first: bool,
}

impl J {
    fn new() -> J {
        J {
            out: String::with_capacity(4096),
            first: true,
        }
    }
    fn sep(&mut self) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
    }
    fn key(&mut self, k: &str) -> &mut J {
        self.sep();
        json_str(k, &mut self.out);
        self.out.push(':');
        self.first = true;
        self
    }
    fn open(&mut self, c: char) -> &mut J {
        if !self.first_value() {
            self.sep();
        }
        self.out.push(c);
        self.first = true;
        self
    }
    /// After `key` the next value needs no comma.
    fn first_value(&self) -> bool {
        self.out.ends_with(':')
    }
    fn close(&mut self, c: char) -> &mut J {
        self.out.push(c);
        self.first = false;
        self
    }
    fn raw(&mut self, v: impl std::fmt::Display) -> &mut J {
        if !self.first_value() {
            self.sep();
        }
        let _ = write!(self.out, "{v}");
        self.first = false;
        self
    }
    fn str(&mut self, v: &str) -> &mut J {
        if !self.first_value() {
            self.sep();
        }
        json_str(v, &mut self.out);
        self.first = false;
        self
    }
    fn ms(&mut self, k: &str, d: Duration) -> &mut J {
        self.key(k).raw(d.as_millis())
    }
}

/// The running configuration with every default filled in, keys named as in the file.
pub fn config_json(c: &Config) -> String {
    let mut j = J::new();
    j.open('{');
    j.key("source").str(&c.source.display().to_string());
    j.key("vip").open('[');
    for v in &c.vips {
        j.open('{');
        j.key("address").str(&v.address.to_string());
        j.key("interface").str(&v.interface);
        j.key("announce").str("arp");
        j.key("garp_count").raw(v.garp.count);
        j.ms("garp_interval_ms", v.garp.interval);
        j.close('}');
    }
    for v in c.bgp.iter().flat_map(|b| &b.vips) {
        j.open('{');
        j.key("address").str(&v.to_string());
        j.key("announce").str("bgp");
        j.close('}');
    }
    j.close(']');
    j.key("bgp");
    match &c.bgp {
        None => {
            j.raw("null");
        }
        Some(b) => {
            j.open('{');
            j.key("table").raw(b.table);
            j.ms("check_interval_ms", b.check_interval);
            j.key("rise").raw(b.rise);
            j.key("fall").raw(b.fall);
            j.ms("withdraw_wait_ms", b.withdraw_wait);
            match &b.bird_socket {
                Some(p) => j.key("bird_socket").str(&p.display().to_string()),
                None => j.key("bird_socket").raw("null"),
            };
            j.key("bird_protocol").str(&b.bird_protocol);
            j.key("track").open('[');
            for t in &b.track {
                j.str(&t.condition.label());
            }
            j.close(']');
            j.close('}');
        }
    }
    j.key("vrrp");
    match &c.vrrp {
        None => {
            j.raw("null");
        }
        Some(v) => {
            j.open('{');
            j.key("vrid").raw(v.vrid);
            j.key("priority").raw(v.priority);
            j.key("interface").str(&v.interface);
            j.ms("advert_interval_ms", v.advert_interval.duration());
            j.key("peers").open('[');
            for p in &v.peers {
                j.str(&p.to_string());
            }
            j.close(']');
            j.key("preempt").raw(v.preempt);
            j.ms("preempt_delay_ms", v.preempt_delay);
            j.ms("startup_listen_ms", v.startup_listen);
            match v.garp_refresh {
                Some(d) => j.ms("garp_refresh_ms", d),
                None => j.key("garp_refresh_ms").raw("null"),
            };
            j.key("track").open('[');
            for t in &v.track {
                j.open('{');
                match &t.condition {
                    crate::config::TrackCondition::PoolDown(name) => j.key("pool").str(name),
                    crate::config::TrackCondition::ListenerFailed => j.key("listeners").raw(true),
                };
                if let crate::config::TrackAction::Lower(w) = t.action {
                    j.key("weight").raw(w);
                }
                j.close('}');
            }
            j.close(']');
            j.close('}');
        }
    }
    j.key("listener").open('[');
    for l in &c.listeners {
        j.open('{');
        j.key("bind").str(&l.bind.to_string());
        j.key("protocol").str(l.protocol.as_str());
        if let Protocol::Tcp {
            pool,
            send_proxy_v2,
        } = l.protocol
        {
            j.key("pool").str(&c.pool(pool).name);
            j.key("send_proxy_protocol")
                .str(if send_proxy_v2 { "v2" } else { "off" });
        }
        j.key("accept_proxy_protocol").raw(l.accept_proxy_protocol);
        if let Some(t) = &l.tls {
            j.key("sni_fallback").str(match t.sni_fallback {
                crate::config::SniFallback::Default => "default",
                crate::config::SniFallback::Refuse => "refuse",
            });
            j.key("min_tls_version").str(t.min_version.as_str());
            match &t.client_auth {
                Some(a) => {
                    j.key("client_ca").str(&a.ca.display().to_string());
                    j.key("client_auth")
                        .str(if a.required { "required" } else { "optional" });
                }
                None => {
                    j.key("client_ca").raw("null");
                }
            }
        }
        if l.protocol == Protocol::Http {
            match l.redirect_https {
                Some(code) => j.key("redirect_https").raw(code),
                None => j.key("redirect_https").raw("null"),
            };
        }
        if l.protocol.is_http() {
            j.key("http2").raw(l.http2);
        }
        j.close('}');
    }
    j.close(']');
    j.key("certificate").open('[');
    for cert in &c.certificates {
        j.open('{');
        j.key("cert").str(&cert.cert.display().to_string());
        j.key("key").str(&cert.key.display().to_string());
        j.key("names").open('[');
        for n in cert.serves() {
            j.str(&n);
        }
        j.close(']');
        j.key("default").raw(cert.default);
        j.key("subject").str(&cert.loaded.subject);
        j.key("not_after")
            .str(&crate::tls::format_unix(cert.loaded.not_after));
        j.close('}');
    }
    j.close(']');
    j.key("host").open('[');
    for h in &c.hosts {
        j.open('{');
        j.key("names").open('[');
        for n in &h.names {
            j.str(&n.to_string());
        }
        j.close(']');
        cidrs(&mut j, "allow", &h.access.allow);
        cidrs(&mut j, "deny", &h.access.deny);
        j.key("allow_client_subjects").open('[');
        for subject in &h.allow_client_subjects {
            j.str(subject);
        }
        j.close(']');
        j.key("route").open('[');
        for r in &h.routes {
            j.open('{');
            j.key("prefix").str(&r.prefix);
            j.key("split").open('[');
            for w in &r.split {
                j.open('{');
                j.key("pool").str(&c.pool(w.pool).name);
                j.key("weight").raw(w.weight);
                j.close('}');
            }
            j.close(']');
            j.key("retries").raw(r.retry.retries);
            let on = r.retry.on;
            j.key("retry_on").open('[');
            for (set, name) in [
                (on.connect_failure, "connect-failure"),
                (on.reset, "reset"),
                (on.timeout, "timeout"),
                (on.gateway_error, "gateway-error"),
                (on.server_error, "5xx"),
            ] {
                if set {
                    j.str(name);
                }
            }
            j.close(']');
            opt_ms(&mut j, "per_try_timeout_ms", r.retry.per_try_timeout);
            opt_ms(&mut j, "timeout_ms", r.timeout);
            match r.max_body_bytes {
                Some(n) => j.key("max_body_bytes").raw(n),
                None => j.key("max_body_bytes").raw("null"),
            };
            cidrs(&mut j, "allow", &r.access.allow);
            cidrs(&mut j, "deny", &r.access.deny);
            j.close('}');
        }
        j.close(']');
        j.close('}');
    }
    j.close(']');
    j.key("pool").open('{');
    for p in &c.pools {
        j.key(&p.name).open('{');
        j.key("backends").open('[');
        for b in &p.backends {
            j.open('{');
            j.key("address").str(&b.address.to_string());
            j.key("weight").raw(b.weight);
            if let Some(name) = &b.name {
                j.key("name").str(name);
            }
            j.close('}');
        }
        j.close(']');
        // As written; `backends` holds what they resolve to now.
        j.key("names").open('[');
        for n in &p.names {
            j.str(&n.lookup.to_string());
        }
        j.close(']');
        let (balance, key) = match &p.balance {
            Balance::RoundRobin => ("round_robin", None),
            Balance::LeastRequest => ("least_request", None),
            Balance::Maglev(k) => (
                "maglev",
                Some(match k {
                    HashKey::ClientIp => "client_ip".to_owned(),
                    HashKey::Header(h) => format!("header:{h}"),
                    HashKey::Cookie(c) => format!("cookie:{c}"),
                }),
            ),
        };
        j.key("balance").str(balance);
        j.key("protocol").str(p.protocol.name());
        if let Some(k) = key {
            j.key("hash_key").str(&k);
        }
        j.key("health");
        match &p.health {
            None => {
                j.raw("null");
            }
            Some(h) => {
                j.open('{');
                match &h.kind {
                    HealthKind::Tcp => {
                        j.key("type").str("tcp");
                    }
                    HealthKind::Http { path, host } => {
                        j.key("type").str("http");
                        j.key("path").str(path);
                        match host {
                            Some(host) => j.key("host").str(host),
                            None => j.key("host").raw("null"),
                        };
                    }
                }
                j.ms("interval_ms", h.interval);
                j.ms("timeout_ms", h.timeout);
                j.key("healthy_threshold").raw(h.healthy_threshold);
                j.key("unhealthy_threshold").raw(h.unhealthy_threshold);
                j.close('}');
            }
        }
        let o = p.outlier;
        j.key("outlier").open('{');
        j.key("consecutive_failures").raw(o.consecutive_failures);
        j.ms("base_ejection_ms", o.base_ejection);
        j.ms("max_ejection_ms", o.max_ejection);
        j.key("max_ejection_percent").raw(o.max_ejection_percent);
        j.close('}');
        j.key("tls");
        match &p.tls {
            None => {
                j.raw("null");
            }
            Some(t) => {
                j.open('{');
                match &t.ca {
                    Some(ca) => j.key("ca").str(&ca.display().to_string()),
                    None => j.key("ca").raw("null"),
                };
                match &t.server_name {
                    Some(n) => j.key("server_name").str(&n.to_str()),
                    None => j.key("server_name").raw("null"),
                };
                match &t.client_cert {
                    Some(c) => {
                        j.key("cert").str(&c.cert.display().to_string());
                        j.key("key").str(&c.key.display().to_string());
                        j.key("cert_subject").str(&c.subject);
                        j.key("cert_not_after_unix").raw(c.not_after);
                    }
                    None => {
                        j.key("cert").raw("null");
                    }
                }
                j.key("alpn").open('[');
                for a in &t.alpn {
                    j.str(a);
                }
                j.close(']');
                j.key("insecure_skip_verify").raw(t.insecure_skip_verify);
                j.close('}');
            }
        }
        j.close('}');
    }
    j.close('}');
    let s = &c.proxy;
    j.key("proxy").open('{');
    j.ms("head_timeout_ms", s.head_timeout);
    j.ms("client_idle_timeout_ms", s.client_idle_timeout);
    j.ms("connect_timeout_ms", s.connect_timeout);
    j.ms("backend_timeout_ms", s.backend_timeout);
    j.ms("backend_idle_timeout_ms", s.backend_idle_timeout);
    j.key("backend_max_idle").raw(s.backend_max_idle);
    j.key("max_request_line").raw(s.max_request_line);
    j.key("max_head_size").raw(s.max_head_size);
    j.key("max_headers").raw(s.max_headers);
    j.key("http2_max_concurrent_streams")
        .raw(s.http2_max_concurrent_streams);
    cidrs(&mut j, "trusted_proxies", &s.trusted_proxies);
    j.key("client_ip_header").str(match s.client_ip_header {
        crate::config::ClientIpHeader::XForwardedFor => "x-forwarded-for",
        crate::config::ClientIpHeader::CfConnectingIp => "cf-connecting-ip",
    });
    j.key("request_id").raw(s.request_id);
    j.key("retry_budget_percent").raw(s.retry_budget_percent);
    j.key("worker_threads").raw(s.worker_threads);
    j.key("runtime").str(s.runtime.name());
    j.close('}');
    j.key("daemon").open('{');
    j.ms("drain_timeout_ms", c.daemon.drain_timeout);
    j.close('}');
    j.key("admin").open('{');
    j.key("enabled").raw(c.admin.is_some());
    match &c.admin {
        Some(a) => j.key("bind").str(&a.bind.to_string()),
        None => j.key("bind").raw("null"),
    };
    j.close('}');
    j.key("access_log").open('{');
    j.key("enabled").raw(c.access_log.is_some());
    if let Some(a) = &c.access_log {
        j.key("format").str(a.format.as_str());
        j.key("sample").raw(a.sample);
    }
    j.close('}');
    j.key("log").open('{');
    j.key("level").str(&c.log.level);
    j.close('}');
    j.close('}');
    j.out.push('\n');
    j.out
}

fn cidrs(j: &mut J, key: &str, list: &[crate::config::Cidr]) {
    j.key(key).open('[');
    for c in list {
        j.str(&c.to_string());
    }
    j.close(']');
}

fn opt_ms(j: &mut J, key: &str, d: Option<Duration>) {
    match d {
        Some(d) => j.ms(key, d),
        None => j.key(key).raw("null"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    const CONFIG: &str = r#"
[[vip]]
address = "192.0.2.200"
interface = "eth0"

[vrrp]
vrid = 51
priority = 150
interface = "eth0"

[[listener]]
bind = "192.0.2.200:80"

[[host]]
names = ["app.test"]
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["198.51.100.21:8080"]
"#;

    /// The exposition's families with the configuration above, sorted: what dashboards and
    /// alerts may name.
    const FAMILIES: [&str; 43] = [
        "process_start_time_seconds",
        "vipgate_access_log_dropped_total",
        "vipgate_access_log_lines_total",
        "vipgate_arp_conflicts_total",
        "vipgate_arp_replies_sent_total",
        "vipgate_arp_requests_seen_total",
        "vipgate_arp_send_errors_total",
        "vipgate_backend_active_requests",
        "vipgate_backend_ejected",
        "vipgate_backend_ejections_total",
        "vipgate_backend_healthy",
        "vipgate_backend_up",
        "vipgate_build_info",
        "vipgate_config_last_reload_success_timestamp_seconds",
        "vipgate_config_last_reload_successful",
        "vipgate_config_reloads_total",
        "vipgate_connections_active",
        "vipgate_connections_total",
        "vipgate_garps_sent_total",
        "vipgate_http_request_bytes_total",
        "vipgate_http_request_duration_seconds",
        "vipgate_http_requests_total",
        "vipgate_http_response_bytes_total",
        "vipgate_http_retries_total",
        "vipgate_http_upstream_duration_seconds",
        "vipgate_listener_connections",
        "vipgate_listener_limit_reached_total",
        "vipgate_listener_max_connections",
        "vipgate_pool_backends",
        "vipgate_pool_backends_available",
        "vipgate_pool_panic",
        "vipgate_pool_panics_total",
        "vipgate_tls_certificate_not_after_seconds",
        "vipgate_tls_certificate_reloads_total",
        "vipgate_tls_handshake_failures_total",
        "vipgate_tls_handshakes_total",
        "vipgate_upstream_tls_client_certificate_expiry_timestamp_seconds",
        "vipgate_upstream_tls_handshake_failures_total",
        "vipgate_upstream_tls_handshakes_total",
        "vipgate_vip_owned",
        "vipgate_vrrp_priority",
        "vipgate_vrrp_state",
        "vipgate_vrrp_transitions_total",
    ];

    /// The exposition's families, pinned: a renamed or dropped metric fails here (dashboards
    /// and alerts query these names), and every sample belongs to a family declared before it
    /// with `# TYPE`, as the text format requires. The encoder is vipgate's own (each layer
    /// renders its families); this is its golden test.
    #[test]
    fn exposition_families_are_pinned_and_well_formed() {
        let config = crate::config::parse(Path::new("t.toml"), CONFIG).unwrap();
        let snapshot = Snapshot::build(&config);
        let text = exposition(&snapshot, &config, 3);
        let mut declared = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let name = parts.next().unwrap();
                let kind = parts.next().unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(declared.insert(name.to_string()), "{name} declared twice");
            } else if !line.starts_with("# HELP ") {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| declared.contains(*f)))
                    .unwrap_or(name);
                assert!(declared.contains(family), "sample before its TYPE: {line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(
                    value == "+Inf" || value.parse::<f64>().is_ok(),
                    "value of {line}"
                );
            }
        }
        let got: Vec<&str> = declared.iter().map(String::as_str).collect();
        assert_eq!(got, FAMILIES, "the exposition's families changed");
        assert!(text.contains("vipgate_connections_active 3\n"));
        assert!(
            text.contains("vipgate_vrrp_state{vrid=\"51\",state=\"backup\",family=\"ipv4\"} 0\n")
        );
    }

    /// Every metric the Grafana dashboard and the alerting rules name (`monitoring/`) is one
    /// of [`FAMILIES`] (a histogram by its `_bucket`, `_sum` or `_count`): a renamed metric
    /// fails here before a dashboard goes blank. The dashboard is JSON Grafana imports as is:
    /// every query on the `datasource` variable.
    #[test]
    fn dashboard_and_alerts_name_only_exported_metrics() {
        let dashboard = include_str!("../../monitoring/grafana-dashboard.json");
        let alerts = include_str!("../../monitoring/alerts.yml");
        let mut named = BTreeSet::new();
        for text in [dashboard, alerts] {
            for (i, _) in text
                .match_indices("vipgate_")
                .chain(text.match_indices("process_"))
            {
                let name: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                named.insert(name);
            }
        }
        assert!(named.len() > 15, "{named:?}");
        for name in &named {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| FAMILIES.contains(f)))
                .unwrap_or(name);
            assert!(
                FAMILIES.contains(&family),
                "{name} is not exported by vipgate"
            );
        }
        let d: serde_json::Value = serde_json::from_str(dashboard).unwrap();
        let panels = d["panels"].as_array().unwrap();
        let mut queries = 0;
        for p in panels.iter().filter(|p| p["type"] != "row") {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            for t in p["targets"].as_array().unwrap() {
                assert!(t["expr"].as_str().is_some_and(|e| e.contains("vipgate_")));
                queries += 1;
            }
        }
        assert!(queries >= 20, "{queries} queries");
        assert_eq!(d["templating"]["list"][0]["type"], "datasource");
    }
}
