//! The one error type of the request path, for every protocol.
//!
//! Owns what a failure means: which side of the proxy it happened on, whether the request may
//! be tried again on another backend, what the client is told, and what the backend's outlier
//! detection learns. The exchange (`proxy::exchange`) reads these answers; nothing else on the
//! request path matches on the kinds. It does not own when a retry is made (the route's
//! `retry_on`, the retry budget and the deadline are weighed in `exchange::retry`).

use std::io;

use crate::config::RetryOn;
use crate::proxy::upstream::backend::Outcome;

/// Where a failure happened (Pingora's ErrorSource): the client's connection, the backend's,
/// or vipgate's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
    Internal,
}

/// What went wrong. Each kind names its side; the answers below are per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Connecting or the TLS handshake failed: nothing reached the backend.
    Connect,
    /// A pooled connection the backend had already closed: says nothing about its health.
    Stale,
    /// The backend connection broke after the request went out on it (reset, closed before or
    /// inside the response).
    UpstreamLost,
    /// No response head within the per-try (or backend) limit.
    UpstreamTimeout,
    /// A response that is not HTTP, or that breaks its own framing.
    BadResponse,
    /// A retryable error status, dropped to try another backend.
    Status(u16),
    /// The route's limit on the whole exchange passed.
    RouteTimeout,
    /// No backend of the pool may be tried.
    NoBackend,
    /// The request body is longer than the route allows.
    BodyTooLarge,
    /// The request body breaks its framing (a bad chunk size, extension or CRLF).
    BadRequestBody,
    /// The client went away, failed or stalled: nobody is left to answer.
    ClientLost,
}

#[derive(Debug, thiserror::Error)]
#[error("{kind:?}{}", source.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
pub struct Error {
    pub kind: Kind,
    /// The I/O error underneath, for the debug log.
    source: Option<io::Error>,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: Kind) -> Error {
        Error { kind, source: None }
    }

    pub fn io(kind: Kind, e: io::Error) -> Error {
        Error {
            kind,
            source: Some(e),
        }
    }

    /// A failure to read from or write to the client.
    pub fn client(e: io::Error) -> Error {
        Error::io(Kind::ClientLost, e)
    }

    pub fn side(&self) -> Side {
        match self.kind {
            Kind::Connect
            | Kind::Stale
            | Kind::UpstreamLost
            | Kind::UpstreamTimeout
            | Kind::BadResponse
            | Kind::Status(_) => Side::Upstream,
            Kind::BodyTooLarge | Kind::BadRequestBody | Kind::ClientLost => Side::Downstream,
            Kind::RouteTimeout | Kind::NoBackend => Side::Internal,
        }
    }

    /// Whether the route's `retry_on` lets this failure go to another backend. `replayable`:
    /// the request is idempotent and has no body, so sending it twice is harmless.
    pub fn retry_allowed(&self, on: &RetryOn, replayable: bool) -> bool {
        match self.kind {
            // Nothing reached the backend: any request may go elsewhere.
            Kind::Connect => on.connect_failure,
            Kind::Stale => replayable,
            Kind::UpstreamLost => on.reset && replayable,
            Kind::UpstreamTimeout => on.timeout && replayable,
            Kind::Status(s) => {
                replayable && (on.server_error || (on.gateway_error && (502..=504).contains(&s)))
            }
            Kind::BadResponse
            | Kind::RouteTimeout
            | Kind::NoBackend
            | Kind::BodyTooLarge
            | Kind::BadRequestBody
            | Kind::ClientLost => false,
        }
    }

    /// The status and body the client gets when this failure ends the exchange before the
    /// response started; `None` when there is nobody to answer.
    pub fn answer(&self) -> Option<(u16, &'static str)> {
        Some(match self.kind {
            Kind::UpstreamTimeout | Kind::RouteTimeout => (504, "backend did not answer in time"),
            Kind::BadResponse => (502, "bad response from backend"),
            // The backend's own status, though its body is gone: it was dropped for a retry
            // that then could not be made.
            Kind::Status(s) => (s, "backend error"),
            Kind::Connect | Kind::Stale | Kind::UpstreamLost => (502, "backend unavailable"),
            Kind::NoBackend => (503, "no healthy backend"),
            Kind::BodyTooLarge => (413, "request body too large"),
            Kind::BadRequestBody => (400, "malformed chunked body"),
            Kind::ClientLost => return None,
        })
    }

    /// What the backend's outlier detection learns from this failure, if anything.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.kind {
            Kind::Connect | Kind::UpstreamLost => Some(Outcome::Unreachable),
            Kind::UpstreamTimeout | Kind::BadResponse | Kind::Status(_) | Kind::RouteTimeout => {
                Some(Outcome::Failure)
            }
            Kind::Stale
            | Kind::NoBackend
            | Kind::BodyTooLarge
            | Kind::BadRequestBody
            | Kind::ClientLost => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(all: bool) -> RetryOn {
        RetryOn {
            connect_failure: true,
            reset: all,
            timeout: all,
            server_error: false,
            gateway_error: all,
        }
    }

    #[test]
    fn each_kind_has_one_side_answer_retry_and_outcome() {
        use Kind::*;
        // kind, side, answer status, retry (everything on, replayable), retry (not replayable)
        type Case = (Kind, Side, Option<u16>, bool, bool, Option<Outcome>);
        let cases: &[Case] = &[
            (
                Connect,
                Side::Upstream,
                Some(502),
                true,
                true,
                Some(Outcome::Unreachable),
            ),
            (Stale, Side::Upstream, Some(502), true, false, None),
            (
                UpstreamLost,
                Side::Upstream,
                Some(502),
                true,
                false,
                Some(Outcome::Unreachable),
            ),
            (
                UpstreamTimeout,
                Side::Upstream,
                Some(504),
                true,
                false,
                Some(Outcome::Failure),
            ),
            (
                BadResponse,
                Side::Upstream,
                Some(502),
                false,
                false,
                Some(Outcome::Failure),
            ),
            (
                Status(503),
                Side::Upstream,
                Some(503),
                true,
                false,
                Some(Outcome::Failure),
            ),
            (
                Status(500),
                Side::Upstream,
                Some(500),
                false,
                false,
                Some(Outcome::Failure),
            ),
            (
                RouteTimeout,
                Side::Internal,
                Some(504),
                false,
                false,
                Some(Outcome::Failure),
            ),
            (NoBackend, Side::Internal, Some(503), false, false, None),
            (
                BodyTooLarge,
                Side::Downstream,
                Some(413),
                false,
                false,
                None,
            ),
            (
                BadRequestBody,
                Side::Downstream,
                Some(400),
                false,
                false,
                None,
            ),
            (ClientLost, Side::Downstream, None, false, false, None),
        ];
        for &(kind, side, status, replay, no_replay, outcome) in cases {
            let e = Error::new(kind);
            assert_eq!(e.side(), side, "{kind:?}");
            assert_eq!(e.answer().map(|a| a.0), status, "{kind:?}");
            assert_eq!(e.retry_allowed(&on(true), true), replay, "{kind:?}");
            assert_eq!(e.retry_allowed(&on(true), false), no_replay, "{kind:?}");
            assert_eq!(e.outcome(), outcome, "{kind:?}");
        }
        // Only connect failures are retried when nothing else is asked for.
        assert!(Error::new(Connect).retry_allowed(&on(false), false));
        assert!(!Error::new(UpstreamLost).retry_allowed(&on(false), true));
    }
}
