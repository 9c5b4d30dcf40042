//! The proxy's worker threads, as `[proxy] runtime` and `worker_threads` ask for them.
//!
//! Owns starting one single-threaded Tokio runtime per extra worker thread under
//! `runtime = "per-core"` (the daemon's own thread, itself on a single-threaded runtime, is
//! worker 0), knowing which worker the current thread is (for per-worker state such as the
//! backends' idle connections), and ending the threads when dropped. Under `runtime =
//! "shared"` there is one "worker" here: the daemon's multi-thread runtime does the rest. It
//! does not own the listening sockets (`listener`) nor what runs on the workers (`daemon`).

use std::cell::Cell;
use std::io;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::config::{ProxySettings, RuntimeKind};

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The worker the calling thread is: 0 for the daemon's thread and for every thread of a
/// shared runtime.
pub fn current() -> usize {
    WORKER.with(Cell::get)
}

/// How many workers `settings` asks for, each with its own accepting socket per listener and
/// its own idle backend connections: the threads under `per-core`, one under `shared`.
pub fn count(settings: &ProxySettings) -> usize {
    match settings.runtime {
        RuntimeKind::Shared => 1,
        RuntimeKind::PerCore => match settings.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        },
    }
}

/// The running workers; dropping it ends the extra threads (and every task on them).
#[derive(Debug)]
pub struct Workers {
    /// Index = worker; `[0]` is the runtime that called [`Workers::start`].
    handles: Vec<Handle>,
    /// Dropping a sender ends its thread's `block_on`, which drops that runtime's tasks.
    stops: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// Start the workers `settings` asks for; must run inside the daemon's runtime, which
    /// becomes worker 0.
    pub fn start(settings: &ProxySettings) -> io::Result<Workers> {
        let n = count(settings);
        let mut handles = vec![Handle::current()];
        let mut stops = Vec::with_capacity(n.saturating_sub(1));
        for i in 1..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("vipgate-w{i}"))
                .spawn(move || {
                    WORKER.with(|w| w.set(i));
                    rt.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
        }
        Ok(Workers { handles, stops })
    }

    /// One runtime handle per worker, worker 0 first.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stops.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_follows_the_runtime_kind() {
        let mut s = ProxySettings::default();
        for (runtime, threads, want) in [
            (RuntimeKind::Shared, 4, 1),
            (RuntimeKind::Shared, 0, 1),
            (RuntimeKind::PerCore, 1, 1),
            (RuntimeKind::PerCore, 3, 3),
        ] {
            s.runtime = runtime;
            s.worker_threads = threads;
            assert_eq!(count(&s), want, "{runtime:?} {threads}");
        }
        s.runtime = RuntimeKind::PerCore;
        s.worker_threads = 0;
        assert!(count(&s) >= 1);
    }

    #[tokio::test]
    async fn extra_workers_run_tasks_on_their_own_threads() {
        let s = ProxySettings {
            runtime: RuntimeKind::PerCore,
            worker_threads: 2,
            ..ProxySettings::default()
        };
        let w = Workers::start(&s).unwrap();
        assert_eq!(w.handles().len(), 2);
        assert_eq!(current(), 0);
        let seen = w.handles()[1].spawn(async { current() }).await.unwrap();
        assert_eq!(seen, 1);
    }
}
