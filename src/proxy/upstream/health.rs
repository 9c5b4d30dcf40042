//! Active health checks: one task per backend probing it on an interval.
//!
//! Owns the probe (TCP connect, or `GET path` expecting a 2xx/3xx) and the thresholds that turn
//! probe results into the backend's healthy flag. Tasks end when their `Pools` is dropped. A TLS
//! pool's probes connect as requests do (`stream::connect`): a TCP check is a completed
//! handshake, an HTTP check asks over TLS.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tracing::{info, warn};

use super::backend::Backend;
use super::stream;
use crate::config::{HealthCheck, HealthKind};

/// `unsettled` is the pool's: bumped after each probe that leaves the backend down, so the
/// pool's picks look at every backend again (see `PoolState::pick`).
pub(super) async fn run(
    pool: String,
    backend: Arc<Backend>,
    check: HealthCheck,
    unsettled: Arc<AtomicU64>,
) {
    // Spread the first probes of many backends over one interval instead of a burst.
    let jitter =
        (backend.address.port() as u64 * 7919) % (check.interval.as_millis() as u64).max(1);
    tokio::time::sleep(Duration::from_millis(jitter / 4)).await;
    let mut successes = 0u32;
    let mut failures = 0u32;
    loop {
        let result = timeout(check.timeout, probe(&backend, &check)).await;
        let ok = matches!(result, Ok(Ok(())));
        if ok {
            successes += 1;
            failures = 0;
            if successes >= check.healthy_threshold && backend.set_healthy(true) {
                info!(%pool, backend = %backend.address, "backend healthy");
            }
        } else {
            failures += 1;
            successes = 0;
            if failures >= check.unhealthy_threshold && backend.set_healthy(false) {
                let why = match result {
                    Ok(Err(e)) => e,
                    _ => format!("no answer within {} ms", check.timeout.as_millis()),
                };
                warn!(%pool, backend = %backend.address, reason = %why, "backend unhealthy");
            }
        }
        if !backend.is_healthy() {
            // Every time, not on the change only: a reload's new pool shares the backend, and
            // the old pool's checker may have been the one to see the change.
            unsettled.fetch_add(1, Ordering::Release);
        }
        tokio::time::sleep(check.interval).await;
    }
}

async fn probe(backend: &Backend, check: &HealthCheck) -> Result<(), String> {
    let mut stream = stream::connect(backend, check.timeout, &[])
        .await
        .map_err(|e| e.to_string())?;
    let HealthKind::Http { path, host } = &check.kind else {
        return Ok(());
    };
    let host = host.clone().unwrap_or_else(|| backend.address.to_string());
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vipgate-health\r\nConnection: close\r\n\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    stream.flush().await.map_err(|e| format!("send: {e}"))?;
    // The status line is all we need; 12 bytes hold "HTTP/1.1 200".
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        let n = stream
            .read(&mut buf[got..])
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before a status line".into());
        }
        got += n;
    }
    let line = &buf[..got];
    if !line.starts_with(b"HTTP/1.") {
        return Err("not an HTTP response".into());
    }
    match line[9] {
        b'2' | b'3' => Ok(()),
        _ => Err(format!("status {}", String::from_utf8_lossy(&line[9..12]))),
    }
}
