//! Whether a failed try is followed by another: pure, over the failure and the exchange's
//! state, table-tested.
//!
//! Owns the rule: a failure may be retried only if the client has not seen any of the
//! response, the request body was not consumed, the route's deadline has not passed and the
//! route's `retry_on` covers it (`Error::retry_allowed`); a pooled connection the backend had
//! just closed gets one free try on a fresh connection; every other retry spends one of the
//! route's `retries` and, in the caller, room in the pool's retry budget. It does not own
//! picking the next backend or the budget's counter (`upstream`).

use crate::config::RetryOn;
use crate::proxy::error::{Error, Kind};

/// How far the exchange got with the client when a try failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Progress {
    /// Nothing but the request head left the client's buffer.
    Nothing,
    /// Some of the request body was read from the client: it cannot be sent again.
    BodyTaken,
    /// The response head went to the client: the only signal left is to cut the response.
    ResponseStarted,
}

/// What follows a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again on a fresh connection, free (a stale pooled connection was our race).
    Fresh,
    /// Try another backend, if the pool's retry budget has room.
    Another,
    /// Answer the client with the failure (or cut the response if it started).
    Give,
}

/// The retries one exchange has left.
#[derive(Debug)]
pub struct Retries {
    left: u32,
    stale_used: bool,
    /// Retries made, for the access log and metrics.
    pub made: u32,
}

impl Retries {
    pub fn new(retries: u32) -> Retries {
        Retries {
            left: retries,
            stale_used: false,
            made: 0,
        }
    }

    /// Whether a retryable error status may be dropped in favour of a retry (a try asks
    /// before it relays the response).
    pub fn may_drop_status(&self) -> bool {
        self.left > 0
    }

    /// The verdict on `error`. `in_time`: the route's deadline has not passed. A `Fresh`
    /// verdict is taken at once; `Another` only with `spend` once the budget agreed.
    pub fn verdict(
        &mut self,
        error: &Error,
        on: &RetryOn,
        replayable: bool,
        progress: Progress,
        in_time: bool,
    ) -> Verdict {
        let allowed =
            progress == Progress::Nothing && in_time && error.retry_allowed(on, replayable);
        if !allowed {
            return Verdict::Give;
        }
        if error.kind == Kind::Stale && !self.stale_used {
            self.stale_used = true;
            return Verdict::Fresh;
        }
        if self.left > 0 {
            Verdict::Another
        } else {
            Verdict::Give
        }
    }

    pub fn spend(&mut self) {
        self.left = self.left.saturating_sub(1);
        self.made += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let on = RetryOn {
            connect_failure: true,
            reset: true,
            timeout: false,
            gateway_error: true,
            server_error: false,
        };
        use Kind::*;
        use Progress::*;
        use Verdict::*;
        // kind, replayable, progress, in time, retries, verdict
        let cases: &[(Kind, bool, Progress, bool, u32, Verdict)] = &[
            (Connect, false, Nothing, true, 1, Another),
            (Connect, false, Nothing, true, 0, Give),
            (Connect, false, BodyTaken, true, 1, Give),
            (Connect, true, Nothing, false, 1, Give),
            (Stale, true, Nothing, true, 0, Fresh),
            (Stale, false, Nothing, true, 1, Give),
            (UpstreamLost, true, Nothing, true, 1, Another),
            (UpstreamLost, false, Nothing, true, 1, Give),
            (UpstreamTimeout, true, Nothing, true, 1, Give),
            (Status(503), true, Nothing, true, 1, Another),
            (Status(500), true, Nothing, true, 1, Give),
            (Status(503), true, ResponseStarted, true, 1, Give),
            (RouteTimeout, true, Nothing, true, 1, Give),
            (BadResponse, true, Nothing, true, 1, Give),
        ];
        for &(kind, replayable, progress, in_time, left, want) in cases {
            let mut r = Retries::new(left);
            let got = r.verdict(&Error::new(kind), &on, replayable, progress, in_time);
            assert_eq!(
                got, want,
                "{kind:?} {replayable} {progress:?} {in_time} {left}"
            );
        }
    }

    #[test]
    fn one_free_stale_retry_then_the_count() {
        let on = RetryOn {
            connect_failure: true,
            reset: false,
            timeout: false,
            gateway_error: false,
            server_error: false,
        };
        let stale = Error::new(Kind::Stale);
        let mut r = Retries::new(1);
        assert_eq!(
            r.verdict(&stale, &on, true, Progress::Nothing, true),
            Verdict::Fresh
        );
        assert_eq!(
            r.verdict(&stale, &on, true, Progress::Nothing, true),
            Verdict::Another
        );
        r.spend();
        assert_eq!(r.made, 1);
        assert!(!r.may_drop_status());
        assert_eq!(
            r.verdict(&stale, &on, true, Progress::Nothing, true),
            Verdict::Give
        );
    }
}
