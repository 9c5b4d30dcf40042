//! Draining: the count of open client connections, and the signal that tells them to finish.
//!
//! Owns the bookkeeping that a graceful stop needs: every accepted connection holds a
//! [`ConnGuard`] for its whole life; [`Drain::start`] tells them all to stop taking requests
//! (an idle keep-alive connection closes at once, a busy one answers its current request with
//! `Connection: close` and then closes); [`Drain::wait`] waits until none is left or a deadline
//! passes. It does not own the stop order (that is `daemon`) nor the listening sockets.
//!
//! The per-request check is one relaxed atomic load. Waking idle connections uses
//! `tokio::sync::Notify`, registered only while a connection waits for its next request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    draining: AtomicBool,
    started: Notify,
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
