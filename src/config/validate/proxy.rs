//! `[proxy]`, `[daemon]`, `[log]` and `[access_log]`: the process-wide settings and their
//! bounds.

use super::*;

/// An hour: longer is a stuck stop, not a drain.
pub(super) const MAX_DRAIN_TIMEOUT_MS: i64 = 3_600_000;

pub(super) fn validate_access_log(raw: &RawAccessLog) -> Result<Option<AccessLogSettings>> {
    let format = match &raw.format {
        None => AccessLogFormat::Json,
        Some(f) => match f.get_ref().as_str() {
            "json" => AccessLogFormat::Json,
            "logfmt" => AccessLogFormat::Logfmt,
            "combined" => AccessLogFormat::Combined,
            other => {
                return Err(Located::new(
                    f.span(),
                    format!(
                        "access_log format {other:?} is not \"json\", \"logfmt\" or \"combined\""
                    ),
                ))
            }
        },
    };
    let sample = match &raw.sample {
        None => 1.0,
        Some(s) => {
            let v = match s.get_ref() {
                RawFraction::Int(i) => *i as f64,
                RawFraction::Float(f) => *f,
            };
            if !(0.0..=1.0).contains(&v) {
                return Err(Located::new(
                    s.span(),
                    format!(
                        "access_log sample {v} is not between 0.0 (none) and 1.0 (every request)"
                    ),
                ));
            }
            v
        }
    };
    if !raw.enabled.unwrap_or(true) {
        return Ok(None);
    }
    Ok(Some(AccessLogSettings { format, sample }))
}

pub(super) fn validate_log_level(level: &Spanned<String>) -> Result<String> {
    let text = level.get_ref().trim();
    if text.is_empty() {
        return Err(Located::new(
            level.span(),
            "log level is empty: use error, warn, info, debug or trace",
        ));
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map_err(|e| {
            Located::new(
                level.span(),
                format!("log level {text:?} is not error, warn, info, debug, trace or a RUST_LOG directive list: {e}"),
            )
        })?;
    Ok(text.to_owned())
}

pub(super) fn validate_daemon(raw: Option<&RawDaemon>) -> Result<Daemon> {
    let Some(raw) = raw else {
        return Ok(Daemon::default());
    };
    let drain_timeout = bounded(
        raw.drain_timeout_ms.as_ref(),
        0,
        MAX_DRAIN_TIMEOUT_MS,
        "drain_timeout_ms",
    )?
    .map_or(DEFAULT_DRAIN_TIMEOUT, |ms| Duration::from_millis(ms as u64));
    Ok(Daemon { drain_timeout })
}

pub(super) fn validate_proxy(raw: &RawProxy) -> Result<ProxySettings> {
    use crate::config::model::defaults::*;
    let escaped_slashes = match raw.escaped_slashes.as_ref() {
        None => EscapedSlashes::default(),
        Some(e) => EscapedSlashes::parse(e.get_ref()).ok_or_else(|| {
            Located::new(
                e.span(),
                format!(
                    "escaped_slashes {:?} is not \"reject\", \"keep\", \"decode\" or \"redirect\"",
                    e.get_ref()
                ),
            )
        })?,
    };
    let path = PathRules {
        merge_slashes: raw.merge_slashes.unwrap_or(true),
        escaped_slashes,
    };
    let trusted_proxies = parse_cidrs(raw.trusted_proxies.as_deref())?;
    let client_ip_header = match raw.client_ip_header.as_ref() {
        None => ClientIpHeader::XForwardedFor,
        Some(h) => match h.get_ref().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => ClientIpHeader::XForwardedFor,
            "cf-connecting-ip" => ClientIpHeader::CfConnectingIp,
            other => {
                return Err(Located::new(
                    h.span(),
                    format!(
                    "client_ip_header {other:?} is not \"x-forwarded-for\" or \"cf-connecting-ip\""
                ),
                ))
            }
        },
    };
    let runtime = match raw.runtime.as_ref() {
        None => RuntimeKind::PerCore,
        Some(r) => match r.get_ref().as_str() {
            "per-core" => RuntimeKind::PerCore,
            "shared" => RuntimeKind::Shared,
            other => {
                return Err(Located::new(
                    r.span(),
                    format!("runtime {other:?} is not \"per-core\" or \"shared\""),
                ))
            }
        },
    };
    Ok(ProxySettings {
        head_timeout: ms(
            raw.head_timeout_ms.as_ref(),
            100,
            "head_timeout_ms",
            HEAD_TIMEOUT,
        )?,
        client_idle_timeout: ms(
            raw.client_idle_timeout_ms.as_ref(),
            100,
            "client_idle_timeout_ms",
            CLIENT_IDLE_TIMEOUT,
        )?,
        connect_timeout: ms(
            raw.connect_timeout_ms.as_ref(),
            10,
            "connect_timeout_ms",
            CONNECT_TIMEOUT,
        )?,
        backend_timeout: ms(
            raw.backend_timeout_ms.as_ref(),
            10,
            "backend_timeout_ms",
            BACKEND_TIMEOUT,
        )?,
        backend_idle_timeout: ms(
            raw.backend_idle_timeout_ms.as_ref(),
            0,
            "backend_idle_timeout_ms",
            BACKEND_IDLE_TIMEOUT,
        )?,
        backend_max_idle: count(
            raw.backend_max_idle.as_ref(),
            0,
            100_000,
            "backend_max_idle",
            BACKEND_MAX_IDLE,
        )?,
        max_request_line: count(
            raw.max_request_line.as_ref(),
            64,
            1 << 20,
            "max_request_line",
            MAX_REQUEST_LINE as u32,
        )? as usize,
        max_head_size: count(
            raw.max_head_size.as_ref(),
            256,
            1 << 20,
            "max_head_size",
            MAX_HEAD_SIZE as u32,
        )? as usize,
        max_headers: count(
            raw.max_headers.as_ref(),
            1,
            MAX_HEADERS as i64,
            "max_headers",
            MAX_HEADERS as u32,
        )? as usize,
        http2_max_concurrent_streams: count(
            raw.http2_max_concurrent_streams.as_ref(),
            1,
            10_000,
            "http2_max_concurrent_streams",
            HTTP2_MAX_CONCURRENT_STREAMS,
        )?,
        trusted_proxies,
        client_ip_header,
        request_id: raw.request_id.unwrap_or(false),
        retry_budget_percent: count(
            raw.retry_budget_percent.as_ref(),
            0,
            100,
            "retry_budget_percent",
            RETRY_BUDGET_PERCENT,
        )?,
        worker_threads: count(raw.worker_threads.as_ref(), 0, 1024, "worker_threads", 0)? as usize,
        runtime,
        path,
    })
}
