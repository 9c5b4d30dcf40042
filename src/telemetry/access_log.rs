//! The access log: one line per request (JSON, logfmt or Apache combined) on stdout, apart from
//! the daemon's own logs on stderr.
//!
//! Owns the line formats (pure functions of a [`Record`]) and getting lines out without ever
//! making a request wait: the request path hands a [`Record`] to a bounded channel with
//! `try_send`; a dedicated thread formats and writes them through a buffer, flushing whenever
//! the channel runs empty. When the writer falls behind (a stalled journald, a full pipe) lines
//! are dropped and counted (`vipgate_access_log_dropped_total`). Sampling is decided before a
//! record is built, so an unsampled request costs one random number.
//!
//! Does not own what a request's status or timings are (`proxy::exchange::track` fills the record).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::metrics::{process, RequestStats};
use crate::config::{AccessLogFormat, AccessLogSettings};
use crate::tls::TlsInfo;

/// Records the writer may be behind by before lines are dropped.
pub const QUEUE: usize = 16 * 1024;

/// One request as logged. Strings from the request are copied into `text` at routing time
/// (one allocation), since the head they live in is reused for the next request.
#[derive(Debug, Clone)]
pub struct Record {
    pub format: AccessLogFormat,
    pub time: SystemTime,
    /// The real client (after PROXY protocol and trusted forwarding headers).
    pub client: IpAddr,
    /// `host`, `path`, `user_agent`, `referer`, `request_id`, `normalized_path` back to back;
    /// `ends` marks where each ends.
    text: String,
    ends: [u32; 6],
    method: [u8; 16],
    method_len: u8,
    /// `HTTP/1.1` and so on; `-` when the head was refused before its version was known.
    pub protocol: &'static str,
    /// The route's series: host label, route prefix and pool (`None`: not routed).
    pub series: Option<Arc<RequestStats>>,
    pub backend: Option<SocketAddr>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    pub upstream: Option<Duration>,
    pub retries: u32,
    /// The TLS session of an https connection (version, cipher, client subject).
    pub tls: Option<Arc<TlsInfo>>,
}

/// What is known of a request when it is routed (or refused before).
pub struct RequestInfo<'a> {
    pub client: IpAddr,
    pub method: &'a str,
    /// `HTTP/1.1` and so on; `-` when the head was refused before its version was known.
    pub protocol: &'static str,
    pub host: &'a [u8],
    /// As received.
    pub path: &'a str,
    /// What was routed and forwarded, when normalisation changed the path; else empty.
    pub normalized_path: &'a str,
    pub user_agent: &'a [u8],
    pub referer: &'a [u8],
    /// The id vipgate generated, else the client's `X-Request-Id`.
    pub request_id: &'a [u8],
}

impl Record {
    pub fn new(format: AccessLogFormat, info: &RequestInfo<'_>) -> Record {
        let parts = [
            info.host,
            info.path.as_bytes(),
            info.user_agent,
            info.referer,
            info.request_id,
            info.normalized_path.as_bytes(),
        ];
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u32; 6];
        for (i, part) in parts.into_iter().enumerate() {
            text.push_str(&String::from_utf8_lossy(part));
            ends[i] = u32::try_from(text.len()).unwrap_or(u32::MAX);
        }
        let mut method = [0u8; 16];
        let m = info.method.as_bytes();
        let method_len = m.len().min(method.len());
        method[..method_len].copy_from_slice(&m[..method_len]);
        Record {
            format,
            time: UNIX_EPOCH,
            client: info.client,
            text,
            ends,
            method,
            method_len: method_len as u8,
            protocol: info.protocol,
            series: None,
            backend: None,
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            duration: Duration::ZERO,
            upstream: None,
            retries: 0,
            tls: None,
        }
    }

    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text.get(start..self.ends[i] as usize).unwrap_or("")
    }
    pub fn host(&self) -> &str {
        self.part(0)
    }
    pub fn path(&self) -> &str {
        self.part(1)
    }
    pub fn user_agent(&self) -> &str {
        self.part(2)
    }
    pub fn referer(&self) -> &str {
        self.part(3)
    }
    pub fn method(&self) -> &str {
        std::str::from_utf8(&self.method[..usize::from(self.method_len)]).unwrap_or("-")
    }
    pub fn request_id(&self) -> Option<&str> {
        Some(self.part(4)).filter(|s| !s.is_empty())
    }
    /// The path routed and forwarded, when it differs from the one received.
    pub fn normalized_path(&self) -> Option<&str> {
        Some(self.part(5)).filter(|s| !s.is_empty())
    }
}

/// The access log as one configuration has it: format, sampling and the writer's queue.
#[derive(Debug, Clone)]
pub struct AccessLog {
    pub format: AccessLogFormat,
    /// A request is logged when a random u64 is below this (`u64::MAX`: always).
    threshold: u64,
    sink: SyncSender<Record>,
}

impl AccessLog {
    /// Lines to stdout, through the process's one writer thread.
    pub fn stdout(settings: &AccessLogSettings) -> AccessLog {
        static STDOUT: OnceLock<SyncSender<Record>> = OnceLock::new();
        let sink = STDOUT
            .get_or_init(|| writer(Box::new(std::io::stdout()), QUEUE))
            .clone();
        AccessLog::new(settings, sink)
    }

    pub fn new(settings: &AccessLogSettings, sink: SyncSender<Record>) -> AccessLog {
        let threshold = if settings.sample >= 1.0 {
            u64::MAX
        } else {
            (settings.sample * u64::MAX as f64) as u64
        };
        AccessLog {
            format: settings.format,
            threshold,
            sink,
        }
    }

    /// Whether this request is to be logged.
    pub fn sampled(&self) -> bool {
        self.threshold == u64::MAX || (self.threshold > 0 && fastrand::u64(..) < self.threshold)
    }

    /// Queue a finished record; never waits.
    pub fn send(&self, r: Record) {
        match self.sink.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                process().access_log_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Start a writer thread for `out`; the returned sender feeds it.
pub fn writer(out: Box<dyn Write + Send>, capacity: usize) -> SyncSender<Record> {
    let (tx, rx) = mpsc::sync_channel(capacity);
    let spawned = std::thread::Builder::new()
        .name("vipgate-access".into())
        .spawn(move || write_loop(rx, out));
    if let Err(e) = spawned {
        // The receiver is gone with the closure: every send counts as dropped.
        tracing::error!(error = %e, "cannot start the access log writer; lines are dropped");
    }
    tx
}

fn write_loop(rx: Receiver<Record>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut line = String::with_capacity(512);
    let p = process();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(r) = next {
            line.clear();
            format_line(&r, &mut line);
            line.push('\n');
            if out.write_all(line.as_bytes()).is_ok() {
                p.access_log_lines.fetch_add(1, Ordering::Relaxed);
            } else {
                p.access_log_dropped.fetch_add(1, Ordering::Relaxed);
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
}

/// The line for `r` in its format, without the newline.
pub fn format_line(r: &Record, out: &mut String) {
    match r.format {
        AccessLogFormat::Json => json(r, out),
        AccessLogFormat::Logfmt => logfmt(r, out),
        AccessLogFormat::Combined => combined(r, out),
    }
}

fn seconds(d: Duration) -> f64 {
    d.as_micros() as f64 / 1e6
}

/// Fields in the order every format writes them.
fn fields(r: &Record) -> [(&'static str, Value<'_>); 22] {
    let (route, pool) = match &r.series {
        Some(s) => (&*s.route, &*s.pool),
        None => ("", ""),
    };
    [
        ("time", Value::Time(r.time)),
        ("client", Value::Ip(r.client)),
        ("method", Value::Str(r.method())),
        ("host", Value::Str(r.host())),
        ("path", Value::Str(r.path())),
        ("normalized_path", Value::OptStr(r.normalized_path())),
        ("protocol", Value::Str(r.protocol)),
        ("status", Value::Int(u64::from(r.status))),
        ("route", Value::OptStr((!route.is_empty()).then_some(route))),
        ("pool", Value::OptStr((!pool.is_empty()).then_some(pool))),
        ("backend", Value::Addr(r.backend)),
        ("bytes_in", Value::Int(r.bytes_in)),
        ("bytes_out", Value::Int(r.bytes_out)),
        ("duration", Value::Secs(Some(seconds(r.duration)))),
        ("upstream_duration", Value::Secs(r.upstream.map(seconds))),
        ("retries", Value::Int(u64::from(r.retries))),
        (
            "user_agent",
            Value::OptStr(Some(r.user_agent()).filter(|s| !s.is_empty())),
        ),
        (
            "referer",
            Value::OptStr(Some(r.referer()).filter(|s| !s.is_empty())),
        ),
        ("request_id", Value::OptStr(r.request_id())),
        (
            "tls_version",
            Value::OptStr(r.tls.as_ref().map(|t| t.version)),
        ),
        (
            "tls_cipher",
            Value::OptStr(r.tls.as_ref().map(|t| t.cipher)),
        ),
        (
            "client_subject",
            Value::OptStr(r.tls.as_ref().and_then(|t| t.client_subject.as_deref())),
        ),
    ]
}

enum Value<'a> {
    Str(&'a str),
    OptStr(Option<&'a str>),
    Int(u64),
    Secs(Option<f64>),
    Ip(IpAddr),
    Addr(Option<SocketAddr>),
    Time(SystemTime),
}

fn json(r: &Record, out: &mut String) {
    use std::fmt::Write as _;
    out.push('{');
    for (i, (k, v)) in fields(r).into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{k}\":");
        match v {
            Value::Str(s) | Value::OptStr(Some(s)) => json_str(s, out),
            Value::OptStr(None) | Value::Secs(None) | Value::Addr(None) => out.push_str("null"),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Secs(Some(s)) => {
                let _ = write!(out, "{s:.6}");
            }
            Value::Ip(ip) => {
                let _ = write!(out, "\"{ip}\"");
            }
            Value::Addr(Some(a)) => {
                let _ = write!(out, "\"{a}\"");
            }
            Value::Time(t) => {
                out.push('"');
                rfc3339(t, out);
                out.push('"');
            }
        }
    }
    out.push('}');
}

fn json_str(s: &str, out: &mut String) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn logfmt(r: &Record, out: &mut String) {
    use std::fmt::Write as _;
    for (i, (k, v)) in fields(r).into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{k}=");
        match v {
            Value::Str(s) | Value::OptStr(Some(s)) => logfmt_str(s, out),
            // logfmt has no null: an empty value says "none".
            Value::OptStr(None) | Value::Secs(None) | Value::Addr(None) => {}
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Secs(Some(s)) => {
                let _ = write!(out, "{s:.6}");
            }
            Value::Ip(ip) => {
                let _ = write!(out, "{ip}");
            }
            Value::Addr(Some(a)) => {
                let _ = write!(out, "{a}");
            }
            Value::Time(t) => rfc3339(t, out),
        }
    }
}

fn logfmt_str(s: &str, out: &mut String) {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c > ' ' && c != '"' && c != '=' && c != '\\' && c != '\u{7f}');
    if plain {
        out.push_str(s);
        return;
    }
    // The same escapes as a JSON string, which logfmt readers accept.
    json_str(s, out);
}

/// Apache/nginx "combined", then vipgate's fields as `key=value` (nginx-style extension).
fn combined(r: &Record, out: &mut String) {
    use std::fmt::Write as _;
    let quoted = |s: &str, out: &mut String| {
        out.push('"');
        if s.is_empty() {
            out.push('-');
        }
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c < ' ' || c == '\u{7f}' => {
                    let _ = write!(out, "\\x{:02X}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    };
    let _ = write!(out, "{} - - [", r.client);
    clf_time(r.time, out);
    out.push_str("] ");
    quoted(&format!("{} {} {}", r.method(), r.path(), r.protocol), out);
    let _ = write!(out, " {} {} ", r.status, r.bytes_out);
    quoted(r.referer(), out);
    out.push(' ');
    quoted(r.user_agent(), out);
    out.push_str(" host=");
    logfmt_str(r.host(), out);
    if let Some(p) = r.normalized_path() {
        out.push_str(" normalized_path=");
        logfmt_str(p, out);
    }
    let (route, pool) = r
        .series
        .as_ref()
        .map_or(("", ""), |s| (&*s.route, &*s.pool));
    out.push_str(" route=");
    logfmt_str(route, out);
    out.push_str(" pool=");
    logfmt_str(pool, out);
    match r.backend {
        Some(b) => {
            let _ = write!(out, " backend={b}");
        }
        None => out.push_str(" backend="),
    }
    let _ = write!(
        out,
        " bytes_in={} duration={:.6} upstream_duration=",
        r.bytes_in,
        seconds(r.duration)
    );
    if let Some(u) = r.upstream {
        let _ = write!(out, "{:.6}", seconds(u));
    }
    let _ = write!(out, " retries={}", r.retries);
    if let Some(id) = r.request_id() {
        let _ = write!(out, " request_id={id}");
    }
}

struct Parts {
    y: i32,
    mo: u8,
    d: u8,
    h: u8,
    mi: u8,
    s: u8,
    ms: u16,
}

/// The calendar date and time (UTC) of `t` (the `time` crate: no calendar arithmetic here).
fn parts(t: SystemTime) -> Parts {
    let t = time::OffsetDateTime::from(t.max(UNIX_EPOCH));
    Parts {
        y: t.year(),
        mo: u8::from(t.month()),
        d: t.day(),
        h: t.hour(),
        mi: t.minute(),
        s: t.second(),
        ms: t.millisecond(),
    }
}

/// `2026-11-25T10:00:00.123Z`.
fn rfc3339(t: SystemTime, out: &mut String) {
    use std::fmt::Write as _;
    let p = parts(t);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        p.y, p.mo, p.d, p.h, p.mi, p.s, p.ms
    );
}

/// `25/Nov/2026:10:00:00 +0000`, as Apache's %t.
fn clf_time(t: SystemTime, out: &mut String) {
    use std::fmt::Write as _;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let p = parts(t);
    let _ = write!(
        out,
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        p.d,
        MONTHS[usize::from(p.mo).clamp(1, 12) - 1],
        p.y,
        p.h,
        p.mi,
        p.s
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(format: AccessLogFormat) -> Record {
        let mut r = Record::new(
            format,
            &RequestInfo {
                client: "192.0.2.10".parse().unwrap(),
                method: "GET",
                protocol: "HTTP/1.1",
                host: b"blog.example.test",
                path: "/api/x?q=\"1\"",
                normalized_path: "",
                user_agent: b"curl/7.88.1",
                referer: b"",
                request_id: b"0123456789abcdef0123456789abcdef",
            },
        );
        // 2026-11-25T10:00:00.123Z
        r.time = UNIX_EPOCH + Duration::from_millis(1_795_600_800_123);
        r.series = Some(Arc::new(RequestStats::labelled(
            "blog.example.test",
            "/api",
            "was",
        )));
        r.backend = Some("192.0.2.23:8080".parse().unwrap());
        r.status = 200;
        r.bytes_in = 78;
        r.bytes_out = 1234;
        r.duration = Duration::from_micros(1_500);
        r.upstream = Some(Duration::from_micros(1_200));
        r.retries = 1;
        r
    }

    #[test]
    fn dates_before_and_after_leap_days() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (1_795_600_800, "2026-11-25T10:00:00.000Z"),
        ] {
            let mut s = String::new();
            rfc3339(UNIX_EPOCH + Duration::from_secs(secs), &mut s);
            assert_eq!(s, want, "{secs}");
        }
    }

    #[test]
    fn json_line() {
        let mut s = String::new();
        format_line(&record(AccessLogFormat::Json), &mut s);
        assert_eq!(
            s,
            concat!(
                r#"{"time":"2026-11-25T10:00:00.123Z","client":"192.0.2.10","method":"GET","#,
                r#""host":"blog.example.test","path":"/api/x?q=\"1\"","normalized_path":null,"protocol":"HTTP/1.1","#,
                r#""status":200,"route":"/api","pool":"was","backend":"192.0.2.23:8080","#,
                r#""bytes_in":78,"bytes_out":1234,"duration":0.001500,"#,
                r#""upstream_duration":0.001200,"retries":1,"user_agent":"curl/7.88.1","#,
                r#""referer":null,"request_id":"0123456789abcdef0123456789abcdef","#,
                r#""tls_version":null,"tls_cipher":null,"client_subject":null}"#
            )
        );
    }

    #[test]
    fn json_escapes_control_characters() {
        let mut s = String::new();
        json_str("a\u{1}b\n\"\\", &mut s);
        assert_eq!(s, r#""a\u0001b\n\"\\""#);
    }

    #[test]
    fn logfmt_line() {
        let mut r = record(AccessLogFormat::Logfmt);
        r.upstream = None;
        r.backend = None;
        r.tls = Some(Arc::new(TlsInfo {
            sni: Some("blog.example.test".into()),
            version: "TLSv1.3",
            cipher: "TLS13_AES_128_GCM_SHA256",
            http2: false,
            client_subject: Some("CN=client one".into()),
        }));
        let mut s = String::new();
        format_line(&r, &mut s);
        assert_eq!(
            s,
            concat!(
                "time=2026-11-25T10:00:00.123Z client=192.0.2.10 method=GET host=blog.example.test ",
                r#"path="/api/x?q=\"1\"" normalized_path= protocol=HTTP/1.1 status=200 route=/api pool=was backend= "#,
                "bytes_in=78 bytes_out=1234 duration=0.001500 upstream_duration= retries=1 ",
                "user_agent=curl/7.88.1 referer= request_id=0123456789abcdef0123456789abcdef ",
                r#"tls_version=TLSv1.3 tls_cipher=TLS13_AES_128_GCM_SHA256 client_subject="CN=client one""#
            )
        );
    }

    #[test]
    fn combined_line() {
        let mut s = String::new();
        format_line(&record(AccessLogFormat::Combined), &mut s);
        assert_eq!(
            s,
            concat!(
                r#"192.0.2.10 - - [25/Nov/2026:10:00:00 +0000] "GET /api/x?q=\"1\" HTTP/1.1" 200 1234 "-" "curl/7.88.1""#,
                " host=blog.example.test route=/api pool=was backend=192.0.2.23:8080 bytes_in=78",
                " duration=0.001500 upstream_duration=0.001200 retries=1",
                " request_id=0123456789abcdef0123456789abcdef"
            )
        );
    }

    #[test]
    fn an_unrouted_refusal_has_empty_route_fields() {
        let mut r = Record::new(
            AccessLogFormat::Json,
            &RequestInfo {
                client: "::1".parse().unwrap(),
                method: "",
                protocol: "-",
                host: b"",
                path: "",
                normalized_path: "",
                user_agent: b"",
                referer: b"",
                request_id: b"",
            },
        );
        r.status = 400;
        let mut s = String::new();
        format_line(&r, &mut s);
        assert!(s.contains(r#""method":"","host":"","path":"","normalized_path":null,"protocol":"-","status":400,"route":null,"pool":null,"backend":null"#), "{s}");
    }

    #[test]
    fn sampling_edges() {
        let (tx, _rx) = mpsc::sync_channel(1);
        let all = AccessLog::new(
            &AccessLogSettings {
                format: AccessLogFormat::Json,
                sample: 1.0,
            },
            tx.clone(),
        );
        let none = AccessLog::new(
            &AccessLogSettings {
                format: AccessLogFormat::Json,
                sample: 0.0,
            },
            tx.clone(),
        );
        let half = AccessLog::new(
            &AccessLogSettings {
                format: AccessLogFormat::Json,
                sample: 0.5,
            },
            tx,
        );
        assert!((0..1000).all(|_| all.sampled()));
        assert!((0..1000).all(|_| !none.sampled()));
        let n = (0..10_000).filter(|_| half.sampled()).count();
        assert!((4_000..6_000).contains(&n), "{n}");
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, rx) = mpsc::sync_channel(1);
        let log = AccessLog::new(
            &AccessLogSettings {
                format: AccessLogFormat::Json,
                sample: 1.0,
            },
            tx,
        );
        let before = process().access_log_dropped.load(Ordering::Relaxed);
        log.send(record(AccessLogFormat::Json));
        log.send(record(AccessLogFormat::Json));
        assert!(process().access_log_dropped.load(Ordering::Relaxed) > before);
        assert_eq!(rx.try_iter().count(), 1);
    }
}
