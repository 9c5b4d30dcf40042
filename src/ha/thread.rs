//! The OS threads the virtual routers run on: one for the elections (adverts sent and read,
//! the Master_Down timer, state changes) and one for the VIP holders (taking and giving up
//! the VIPs, gratuitous ARPs, the hand-over), each with its own single-threaded Tokio runtime
//! and a raised scheduling priority (`l2::sched`).
//!
//! Owns: starting such a thread and ending it when dropped. Does not own what runs on it
//! (`router`).
//!
//! Why threads of their own: under `runtime = "per-core"` the daemon's runtime is the first
//! proxy worker, so a task spawned there waits behind every connection that worker serves; at
//! 10 ms adverts a saturated worker delayed adverts past the backup's Master_Down_Interval
//! (4 takeovers of a healthy master in 30 s). Here nothing but the elections (or the holders)
//! can hold the thread, and with real-time priority the kernel runs it as soon as it wakes.

use std::io;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A thread running its own current-thread runtime until dropped.
pub(super) struct Loop {
    handle: Handle,
    /// Dropping it ends the thread's `block_on`, which drops the tasks still on it.
    _stop: oneshot::Sender<()>,
}

impl Loop {
    pub fn spawn(name: &'static str) -> io::Result<Loop> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                crate::l2::sched::raise_current(name);
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Loop {
            handle,
            _stop: stop,
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_named_thread_not_the_caller() {
        let l = Loop::spawn("vipgate-test").unwrap();
        let name = l
            .handle()
            .spawn(async { std::thread::current().name().map(str::to_owned) })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("vipgate-test"));
    }

    #[tokio::test]
    async fn dropping_it_ends_its_tasks() {
        let l = Loop::spawn("vipgate-test").unwrap();
        let task = l.handle().spawn(std::future::pending::<()>());
        drop(l);
        assert!(task.await.unwrap_err().is_cancelled());
    }
}
