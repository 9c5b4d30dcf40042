//! One timer per connection for its successive deadlines, re-armed lazily.
//!
//! Owns the cheap way to put a time limit on each wait of a keep-alive connection: a
//! `tokio::time::timeout` per wait inserts into and removes from the runtime's timer wheel
//! every time, twice per proxied request. Here one `Sleep` stays registered for the
//! connection's life; a later deadline (the usual case: each request's limit starts later than
//! the last one's) only moves a number, and when the armed timer fires early the wait re-arms
//! it for the real deadline. It does not own what the limits are (`conn` and the settings).

use std::future::Future;
use std::pin::Pin;

use tokio::time::{sleep_until, Instant, Sleep};

/// The connection's timer.
#[derive(Debug)]
pub struct Deadline {
    sleep: Pin<Box<Sleep>>,
}

/// `fut` did not finish before the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl Deadline {
    /// A timer not armed for anything soon.
    pub fn new() -> Deadline {
        Deadline {
            sleep: Box::pin(sleep_until(far_future())),
        }
    }

    /// Run `fut` until `deadline`.
    pub async fn run<F: Future>(
        &mut self,
        deadline: Instant,
        fut: F,
    ) -> Result<F::Output, Elapsed> {
        // Armed later than needed: only an earlier deadline costs a timer-wheel update.
        if self.sleep.deadline() > deadline {
            self.sleep.as_mut().reset(deadline);
        }
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return Ok(out),
                () = self.sleep.as_mut() => {
                    if Instant::now() >= deadline {
                        self.sleep.as_mut().reset(far_future());
                        return Err(Elapsed);
                    }
                    // Fired for an earlier wait's deadline: wait on for this one's.
                    self.sleep.as_mut().reset(deadline);
                }
            }
        }
    }
}

impl Default for Deadline {
    fn default() -> Self {
        Deadline::new()
    }
}

/// Far enough to never fire, near enough not to overflow the clock.
fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400 * 365)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn each_wait_ends_at_its_own_deadline_never_before() {
        let ms = Duration::from_millis;
        let mut d = Deadline::new();
        let t0 = Instant::now();
        // Finishes first: no timeout; the timer stays armed for t0 + 50 ms.
        assert_eq!(d.run(t0 + ms(50), async { 5 }).await, Ok(5));
        // A later deadline: the armed timer fires at t0 + 50 ms and is re-armed.
        let r = d.run(t0 + ms(150), std::future::pending::<()>()).await;
        assert_eq!(r, Err(Elapsed));
        assert!(Instant::now() >= t0 + ms(150));
        // An earlier deadline than the armed one (far away after a timeout) is honoured.
        let t1 = Instant::now();
        let r = d.run(t1 + ms(20), std::future::pending::<()>()).await;
        assert_eq!(r, Err(Elapsed));
        let waited = t1.elapsed();
        assert!(
            waited >= ms(20) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        // Work that finishes in time is not cut short by the earlier waits.
        let t2 = Instant::now();
        let r = d
            .run(t2 + Duration::from_secs(5), tokio::time::sleep(ms(30)))
            .await;
        assert_eq!(r, Ok(()));
    }
}
