//! Draining: the count of open client connections, and the signal that tells them to finish.
//!
//! Owns the bookkeeping that a graceful stop needs: every accepted connection holds a
//! [`ConnGuard`] for its whole life; [`Drain::start`] tells them all to stop taking requests
//! (an idle keep-alive connection closes at once, a busy one answers its current request with
//! `Connection: close` and then closes); [`Drain::wait`] waits until none is left or a deadline
//! passes. It does not own the stop order (that is `daemon`) nor the listening sockets.
//!
//! The per-request check is one relaxed atomic load. Waking idle connections uses
//! `tokio::sync::Notify`: a connection registers with it once, at its first wait for a
//! request, and keeps that registration (a [`DrainWatch`]) for its life, so each later wait
//! costs an atomic load rather than a trip through the `Notify`'s lock to register and another
//! to unregister.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    draining: AtomicBool,
    started: Arc<Notify>,
    active: AtomicUsize,
    all_closed: Notify,
}

/// The daemon's handle; cheap to clone (listeners keep one to hand out guards).
#[derive(Debug, Clone, Default)]
pub struct Drain {
    state: Arc<State>,
}

/// Held by one client connection; dropping it counts the connection as closed.
#[derive(Debug)]
pub struct ConnGuard {
    state: Arc<State>,
}

impl Drain {
    pub fn new() -> Drain {
        Drain::default()
    }

    /// Count a new connection.
    pub fn guard(&self) -> ConnGuard {
        self.state.active.fetch_add(1, Ordering::AcqRel);
        ConnGuard {
            state: self.state.clone(),
        }
    }

    /// Open client connections right now.
    pub fn active(&self) -> usize {
        self.state.active.load(Ordering::Acquire)
    }

    /// Tell every connection, present and future, to finish.
    pub fn start(&self) {
        self.state.draining.store(true, Ordering::Release);
        self.state.started.notify_waiters();
    }

    /// Wait until every connection has closed or `deadline` passed; returns how many are left.
    pub async fn wait(&self, deadline: Duration) -> usize {
        let all_closed = async {
            loop {
                let notified = self.state.all_closed.notified();
                tokio::pin!(notified);
                // Register before checking, so a close between the check and the await wakes us.
                notified.as_mut().enable();
                if self.active() == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(deadline, all_closed).await;
        self.active()
    }
}

impl ConnGuard {
    /// Whether the connection should stop after its current request.
    pub fn is_draining(&self) -> bool {
        self.state.draining.load(Ordering::Relaxed)
    }

    /// Resolves once draining has started (at once if it already has).
    pub async fn draining(&self) {
        let notified = self.state.started.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.state.draining.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

impl ConnGuard {
    /// The registration a [`DrainWatch`] keeps: pin it beside the connection and hand it to
    /// [`ConnGuard::watch`].
    pub fn signal(&self) -> OwnedNotified {
        self.state.started.clone().notified_owned()
    }

    /// The connection's standing wait for draining, over its pinned `signal`.
    pub fn watch<'a>(&self, signal: Pin<&'a mut OwnedNotified>) -> DrainWatch<'a> {
        DrainWatch {
            signal,
            state: self.state.clone(),
            waker: None,
            done: false,
        }
    }
}

/// One connection's wait for draining, registered with the drain signal at its first wait and
/// kept for the connection's life.
pub struct DrainWatch<'a> {
    signal: Pin<&'a mut OwnedNotified>,
    state: Arc<State>,
    /// The waker the registration holds. A task keeps its waker, so the signal is polled (and
    /// its lock taken) once per connection, not once per wait.
    waker: Option<Waker>,
    done: bool,
}

impl<'a> DrainWatch<'a> {
    /// Resolves once draining has started (at once if it already has).
    pub fn draining(&mut self) -> impl Future<Output = ()> + use<'_, 'a> {
        std::future::poll_fn(|cx| self.poll_draining(cx))
    }

    fn poll_draining(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            // Registers (or moves the registration to) this waker. A drain that started since
            // the signal was made completes it here; one that starts later wakes the waker.
            if self.signal.as_mut().poll(cx).is_ready() {
                self.done = true;
                return Poll::Ready(());
            }
            self.waker = Some(cx.waker().clone());
        }
        // `start` sets the flag before it wakes the registered wakers.
        if self.state.draining.load(Ordering::Acquire) {
            self.done = true;
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.state.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.state.all_closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_returns_when_the_last_connection_closes() {
        let d = Drain::new();
        let a = d.guard();
        let b = d.guard();
        assert_eq!(d.active(), 2);
        assert!(!a.is_draining());
        d.start();
        assert!(a.is_draining() && b.is_draining());
        a.draining().await; // already started: resolves at once
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.wait(Duration::from_secs(10)).await }
        });
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(b);
        assert_eq!(waiter.await.unwrap(), 0);
    }

    #[tokio::test]
    async fn wait_gives_up_at_the_deadline_and_reports_what_is_left() {
        let d = Drain::new();
        let _g = d.guard();
        d.start();
        assert_eq!(d.wait(Duration::from_millis(30)).await, 1);
    }

    #[tokio::test]
    async fn a_watch_is_woken_by_a_drain_that_starts_while_it_waits_again() {
        let d = Drain::new();
        let g = d.guard();
        let t = tokio::spawn(async move {
            let signal = std::pin::pin!(g.signal());
            let mut watch = g.watch(signal);
            // Waits that end otherwise first, as between requests: the registration stays.
            for _ in 0..3 {
                tokio::select! {
                    biased;
                    () = tokio::time::sleep(Duration::from_millis(5)) => {}
                    () = watch.draining() => panic!("not draining yet"),
                }
            }
            watch.draining().await;
            // Stays resolved.
            watch.draining().await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!t.is_finished());
        d.start();
        tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .expect("woken")
            .unwrap();
    }

    #[tokio::test]
    async fn a_watch_made_before_a_drain_and_first_polled_after_it_resolves() {
        let d = Drain::new();
        let g = d.guard();
        let signal = std::pin::pin!(g.signal());
        let mut watch = g.watch(signal);
        d.start();
        tokio::time::timeout(Duration::from_secs(5), watch.draining())
            .await
            .expect("resolved at once");
        let g2 = d.guard();
        let signal = std::pin::pin!(g2.signal());
        let mut late = g2.watch(signal);
        tokio::time::timeout(Duration::from_secs(5), late.draining())
            .await
            .expect("made after the drain began: resolved at once");
    }

    #[tokio::test]
    async fn draining_wakes_a_waiting_connection() {
        let d = Drain::new();
        let g = d.guard();
        let t = tokio::spawn(async move { g.draining().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!t.is_finished());
        d.start();
        tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .expect("woken")
            .unwrap();
    }
}
