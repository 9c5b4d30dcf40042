//! Telemetry hook of one request, for every protocol: what it did, counted in the metrics
//! and written to the access log when it ends.
//!
//! Owns which series a request counts in, the 499 of a request abandoned before any status,
//! and filling the access-log record (built only for a sampled request, so an unsampled one
//! costs no allocation). Does not own the counters or the line formats (`telemetry`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::decide::Decision;
use super::Head;
use crate::config::PoolId;
use crate::proxy::client::Front;
use crate::proxy::forwarded;
use crate::proxy::route::Target;
use crate::proxy::Snapshot;
use crate::telemetry::access_log::{Record, RequestInfo};
use crate::telemetry::metrics::Finished;

/// The current request as telemetry sees it. Reset per request without allocating.
#[derive(Default)]
pub struct Track {
    /// When the first byte of the request was at hand.
    pub start: Option<Instant>,
    pub routed: Option<(Target, PoolId)>,
    pub backend: Option<SocketAddr>,
    /// 0 until a status is decided.
    pub status: u16,
    /// From the try that answered: connecting (or reusing) to its response head.
    pub upstream: Option<Duration>,
    pub retries: u32,
    pub log: Option<Record>,
}

/// Requests in a bad head cannot be logged with their method and path.
const EMPTY_INFO: RequestInfo<'static> = RequestInfo {
    client: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    method: "",
    protocol: "-",
    host: b"",
    path: "",
    normalized_path: "",
    user_agent: b"",
    referer: b"",
    request_id: b"",
};

impl Track {
    /// The access-log record of a sampled request, with what only the head knows. `received`
    /// is the path as the client sent it; `head.path` is in normal form.
    pub fn log_head(
        &mut self,
        snap: &Snapshot,
        front: &Front,
        peer: SocketAddr,
        head: &Head<'_>,
        received: &str,
        decision: &Decision,
    ) {
        let Some(log) = snap.access_log.as_ref().filter(|l| l.sampled()) else {
            return;
        };
        let header = |name: &str| {
            head.fields
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map_or(&[][..], |h| h.value)
        };
        let id = match decision {
            Decision::Forward(r) => match &r.request_id {
                Some(id) => &id[..],
                None => header("x-request-id"),
            },
            _ => header("x-request-id"),
        };
        let mut record = Record::new(
            log.format,
            &RequestInfo {
                client: forwarded::client_ip(&snap.settings, peer.ip(), head.fields),
                method: head.method,
                protocol: head.protocol,
                host: head.authority.unwrap_or_default(),
                path: received,
                normalized_path: if head.path == received { "" } else { head.path },
                user_agent: header("user-agent"),
                referer: header("referer"),
                request_id: id,
            },
        );
        record.tls = front.tls.clone();
        self.log = Some(record);
    }

    /// The access-log record of a request whose head could not be parsed.
    pub fn log_refused(&mut self, snap: &Snapshot, front: &Front, peer: SocketAddr) {
        if let Some(log) = snap.access_log.as_ref().filter(|l| l.sampled()) {
            let mut record = Record::new(
                log.format,
                &RequestInfo {
                    client: peer.ip(),
                    ..EMPTY_INFO
                },
            );
            record.tls = front.tls.clone();
            self.log = Some(record);
        }
    }

    /// Count the request that just ended and hand its access-log line over; `now` is the
    /// clock reading at its end. A request abandoned before any status counts as 499.
    pub fn finish(&mut self, snap: &Snapshot, now: Instant, bytes_in: u64, bytes_out: u64) {
        let Some(start) = self.start else { return };
        let stats = match self.routed {
            Some((target, pool)) => snap.metrics.series(target, pool),
            None => snap.metrics.unrouted(),
        };
        let f = Finished {
            status: if self.status == 0 { 499 } else { self.status },
            duration: now.saturating_duration_since(start),
            upstream: self.upstream,
            bytes_in,
            bytes_out,
            retries: self.retries,
        };
        stats.record(&f);
        if let (Some(mut r), Some(log)) = (self.log.take(), &snap.access_log) {
            r.time = std::time::SystemTime::now();
            r.series = self.routed.map(|_| stats.clone());
            r.backend = self.backend;
            r.status = f.status;
            r.bytes_in = f.bytes_in;
            r.bytes_out = f.bytes_out;
            r.duration = f.duration;
            r.upstream = f.upstream;
            r.retries = f.retries;
            log.send(r);
        }
    }
}
