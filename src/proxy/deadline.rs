//! One timer per connection for its successive deadlines, re-armed lazily.
//!
//! Owns the cheap way to put a time limit on each wait of a keep-alive connection: a
//! `tokio::time::timeout` per wait inserts into and removes from the runtime's timer wheel
//! every time, twice per proxied request. Here one `Sleep` stays registered for the
//! connection's life; a later deadline (the usual case: each request's limit starts later than
//! the last one's) only moves a number, and when the armed timer fires early the wait re-arms
//! it for the real deadline. It does not own what the limits are (`conn` and the settings).

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{Poll, Waker};

use tokio::time::{sleep_until, Instant, Sleep};

/// The connection's timer.
#[derive(Debug)]
pub struct Deadline {
    sleep: Pin<Box<Sleep>>,
    /// The waker the armed timer holds, once polled. Until the timer fires or is re-armed, a
    /// wait on the same task need not poll it again: polling re-registers the waker and takes
    /// the task's budget each time, twice per request, for nothing.
    registered: Option<Waker>,
}

/// `fut` did not finish before the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl Deadline {
    /// A timer not armed for anything soon.
    pub fn new() -> Deadline {
        Deadline {
            sleep: Box::pin(sleep_until(far_future())),
            registered: None,
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
            self.rearm(deadline);
        }
        let mut fut = pin!(fut);
        poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            loop {
                let armed = self
                    .registered
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()));
                // Firing takes the waker, and leaves the timer elapsed until re-armed.
                if armed && !self.sleep.is_elapsed() {
                    return Poll::Pending;
                }
                if self.sleep.as_mut().poll(cx).is_pending() {
                    self.registered = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                if Instant::now() >= deadline {
                    self.rearm(far_future());
                    return Poll::Ready(Err(Elapsed));
                }
                // Fired for an earlier wait's deadline: wait on for this one's.
                self.rearm(deadline);
            }
        })
        .await
    }

    fn rearm(&mut self, deadline: Instant) {
        self.sleep.as_mut().reset(deadline);
        self.registered = None;
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

    #[tokio::test]
    async fn a_wait_that_skips_polling_the_armed_timer_still_times_out() {
        let ms = Duration::from_millis;
        let mut d = Deadline::new();
        let t0 = Instant::now();
        // Pending at first, so the timer is polled and holds the task's waker; then done.
        let r = d.run(t0 + ms(80), tokio::time::sleep(ms(10))).await;
        assert_eq!(r, Ok(()));
        // Same deadline: the armed timer is not polled again, and must still end the wait.
        let r = d.run(t0 + ms(80), std::future::pending::<()>()).await;
        assert_eq!(r, Err(Elapsed));
        let waited = t0.elapsed();
        assert!(
            waited >= ms(80) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        // And again after it fired and was re-armed.
        let t1 = Instant::now();
        let r = d.run(t1 + ms(30), tokio::time::sleep(ms(5))).await;
        assert_eq!(r, Ok(()));
        let r = d.run(t1 + ms(30), std::future::pending::<()>()).await;
        assert_eq!(r, Err(Elapsed));
        assert!(t1.elapsed() >= ms(30));
    }
}
