//! One request's way through the proxy once its head is parsed, the same for every protocol.
//!
//! Owns the phases between the protocol's head parser and its writers: `decide` (pure: path,
//! route, access, limits, redirects), then `run`: choose a backend, try it, judge a failure
//! (`retry`, pure), feed the backend's outlier detection, and end with what the client gets;
//! `track` counts the request and writes its access-log line. It works on a small request
//! description (`Head`) that each protocol builds from its own head, and calls the protocol
//! back (`Attempts`) for what only the protocol can do: send the request to one backend and
//! relay the response. It does not read or write any bytes itself.
//!
//! The phases, for a request of an HTTP/1.1 connection (`http1::conn`):
//! 1. parse the head (`http1::request`), 2. `decide::normal_path` + `decide::decide`,
//! 3. write the upstream head (`http1::request::write_upstream_head`), 4. `run`, which calls
//!    `Attempts::attempt` once per try, 5. answer a `Finish` that is not `Relayed`,
//! 6. `Track::finish`.

pub mod decide;
pub mod retry;
pub mod track;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{timeout_at, Instant};
use tracing::debug;

pub use decide::{Decision, Routed};
pub use retry::Progress;
use retry::{Retries, Verdict};
pub use track::Track;

use super::error::{Error, Kind, Result, Side};
use super::upstream::backend::{Backend, Outcome};
use super::Snapshot;
use crate::config::RetryOn;

/// A request as the protocol-independent phases see it: borrowed from the protocol's head.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub method: &'a str,
    /// As the access log names it (`HTTP/1.1`, `HTTP/2`).
    pub protocol: &'static str,
    /// `Host` or `:authority` (or the absolute-form target's), not yet normalised.
    pub authority: Option<&'a [u8]>,
    /// In normal form (`decide::normal_path`), query included.
    pub path: &'a str,
    /// Every field of the head, for the forwarding rules and header hashing.
    pub fields: &'a [httparse::Header<'a>],
    pub body: Body,
}

/// What the head says of the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// Of a length known only at its end (chunked; an HTTP/2 stream without content-length).
    Streamed,
}

/// What one try needs to know beyond the request.
#[derive(Debug)]
pub struct Try<'a> {
    /// The limit for the response head (the route's `per_try_timeout`, else the backend's).
    pub per_try_timeout: Option<Duration>,
    /// The route's `max_body_bytes`, checked while a streamed body is relayed.
    pub max_body: Option<u64>,
    /// Set when a retryable error status may be dropped for a retry rather than relayed:
    /// the route's `retry_on` and whether the request is replayable.
    pub drop_status: Option<(&'a RetryOn, bool)>,
    /// When this try began.
    pub started: Instant,
}

impl Try<'_> {
    /// The error to retry with instead of relaying a final response of `status`, when the
    /// route drops it for a retry: such a response never reaches the client.
    #[inline]
    pub fn dropped(&self, status: u16) -> Option<Error> {
        if status < 500 {
            return None;
        }
        let dropped = Error::new(Kind::Status(status));
        self.drop_status
            .is_some_and(|(on, replayable)| dropped.retry_allowed(on, replayable))
            .then_some(dropped)
    }
}

/// A response that reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    pub status: u16,
    /// The protocol's own verdict: the client connection can carry the next request.
    pub keep: bool,
}

/// How an exchange ended.
#[derive(Debug)]
pub enum Finish {
    Relayed(Relayed),
    /// Nothing reached the client: answer it with `Error::answer`.
    Failed(Error),
    /// The response had started when this failed: cut it (close, or reset the stream).
    Cut(Error),
}

/// The protocol's part of an exchange.
pub trait Attempts {
    /// Send the request to `backend` and relay its response to the client, on a pooled
    /// connection or a new one.
    fn attempt<'a>(
        &'a mut self,
        backend: &'a Backend,
        t: &'a Try<'a>,
    ) -> impl Future<Output = Result<Relayed>> + Send + 'a;

    /// How far the exchange got with the client.
    fn progress(&self) -> Progress;

    fn track(&mut self) -> &mut Track;
}

/// Run the exchange of `routed` to its end. `Err` only when the client is gone: nobody is left
/// to answer.
pub async fn run<A: Attempts>(a: &mut A, snap: &Snapshot, routed: &Routed) -> Result<Finish> {
    let route = snap.routes.route(routed.target);
    let pool = snap.pools.get(routed.pool);
    let _counted = pool.begin();
    let deadline = route.timeout.map(|t| Instant::now() + t);
    let mut retries = Retries::new(route.retry.retries);
    let mut avoid = None;
    let mut _retry_budget = None;
    loop {
        let Some(backend) = pool.pick(routed.hash, avoid) else {
            return Ok(Finish::Failed(Error::new(Kind::NoBackend)));
        };
        let backend: Arc<Backend> = backend.clone();
        a.track().backend = Some(backend.address);
        let _active = backend.begin();
        let t = Try {
            per_try_timeout: route.retry.per_try_timeout,
            max_body: route.max_body_bytes,
            drop_status: retries
                .may_drop_status()
                .then_some((&route.retry.on, routed.replayable)),
            started: Instant::now(),
        };
        let tried = match deadline {
            Some(d) => timeout_at(d, a.attempt(&backend, &t))
                .await
                .unwrap_or_else(|_| Err(Error::new(Kind::RouteTimeout))),
            None => a.attempt(&backend, &t).await,
        };
        let error = match tried {
            Ok(r) => {
                let outcome = if r.status >= 500 {
                    Outcome::Failure
                } else {
                    Outcome::Success
                };
                pool.report(&backend, outcome);
                return Ok(Finish::Relayed(r));
            }
            Err(e) => e,
        };
        debug!(backend = %backend.address, %error, "try failed");
        match error.kind {
            Kind::ClientLost => return Err(error),
            _ if error.side() == Side::Downstream => return Ok(Finish::Failed(error)),
            _ => {}
        }
        let progress = a.progress();
        if progress == Progress::ResponseStarted {
            // The client saw a status already; the backend broke it.
            if error.side() == Side::Upstream {
                pool.report(&backend, Outcome::Failure);
            }
            return Ok(Finish::Cut(error));
        }
        if let Some(outcome) = error.outcome() {
            pool.report(&backend, outcome);
        }
        let in_time = deadline.is_none_or(|d| Instant::now() < d);
        match retries.verdict(
            &error,
            &route.retry.on,
            routed.replayable,
            progress,
            in_time,
        ) {
            Verdict::Fresh => continue,
            Verdict::Another => {
                if let Some(g) = snap.pools.try_begin_retry(pool) {
                    _retry_budget = Some(g);
                    retries.spend();
                    a.track().retries = retries.made;
                    avoid = Some(backend.address);
                    continue;
                }
            }
            Verdict::Give => {}
        }
        return Ok(Finish::Failed(error));
    }
}
