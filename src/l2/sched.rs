//! Scheduling priority for the threads that keep a VIP on the LAN: the VRRP election and VIP
//! holder threads (`ha::router`) and the ARP/NDP answer and gratuitous-ARP threads
//! (`announcer`), and the socket priority of the frames they send.
//!
//! Owns: asking the kernel for a real-time policy for the calling thread (SCHED_RR at
//! [`RT_PRIORITY`]), falling back to a high nice value ([`NICE`]) and then to nothing, and
//! logging once per process which one was obtained. Does not own which threads ask (their
//! owners call [`raise_current`] first thing).
//!
//! Why: vipgate is also the proxy. Under load its worker threads keep both cores busy, and a
//! thread at normal priority waits its turn behind them: an advert late by more than the
//! backup's Master_Down_Interval is a takeover of a healthy master, an ARP answer late by
//! seconds a client timing out. Those threads sleep almost always and run for microseconds,
//! so a real-time policy costs the proxy nothing measurable; with SCHED_RR rather than FIFO a
//! thread that ever ran away shares its core with its peers, and the kernel's RT throttling
//! (`sched_rt_runtime_us`, 95 % by default) still leaves the rest to everyone else.
//!
//! Both steps need CAP_SYS_NICE (or an RLIMIT_RTPRIO / RLIMIT_NICE that allows them); without
//! it the threads run at normal priority and still on their own, off the proxy's event loops.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{debug, info};

/// SCHED_RR priority: above every normal thread, below the kernel's own real-time threads
/// (which run at 50 and 99).
pub const RT_PRIORITY: i32 = 10;

/// The nice value asked for when real time is refused (-20 is the highest).
pub const NICE: i32 = -10;

/// `SO_PRIORITY` of adverts and announcements: TC_PRIO_CONTROL, the first band of the
/// default qdiscs (pfifo_fast, fq_codel's priority map); values above 6 need CAP_NET_ADMIN,
/// which vipgate has for its routes.
pub const SOCKET_PRIORITY: u32 = 7;

/// What the calling thread obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// SCHED_RR at this priority.
    Realtime(i32),
    /// SCHED_OTHER at this nice value.
    Nice(i32),
    /// Neither was allowed: normal priority.
    Normal,
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Priority::Realtime(p) => write!(f, "SCHED_RR priority {p}"),
            Priority::Nice(n) => write!(f, "nice {n}"),
            Priority::Normal => f.write_str("normal (no CAP_SYS_NICE)"),
        }
    }
}

static LOGGED: AtomicBool = AtomicBool::new(false);

/// Raises the calling thread's scheduling priority as far as allowed; `role` names the thread
/// in the log line (at info the first time in the process, at debug afterwards).
pub fn raise_current(role: &str) -> Priority {
    let got = if set_realtime() {
        Priority::Realtime(RT_PRIORITY)
    } else if set_nice() {
        Priority::Nice(NICE)
    } else {
        Priority::Normal
    };
    if LOGGED.swap(true, Ordering::Relaxed) {
        debug!(thread = role, priority = %got, "scheduling priority");
    } else {
        info!(thread = role, priority = %got,
            "scheduling priority of the VRRP and ARP threads (the first of them to start)");
    }
    got
}

fn set_realtime() -> bool {
    crate::sys::set_thread_realtime(RT_PRIORITY)
}

fn set_nice() -> bool {
    crate::sys::set_thread_nice(NICE)
}

/// Sets `SO_PRIORITY` on a socket sending adverts or announcements, falling back to the
/// highest value an unprivileged socket may use. Best effort: a refusal leaves the default.
pub fn prioritise_socket(socket: &socket2::Socket) {
    if socket.set_priority(SOCKET_PRIORITY).is_err() {
        let _ = socket.set_priority(6);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_gets_some_priority_and_others_are_untouched() {
        let got = std::thread::spawn(|| {
            let got = raise_current("test");
            let policy = crate::sys::thread_policy();
            (got, policy)
        })
        .join()
        .unwrap();
        match got {
            (Priority::Realtime(_), policy) => assert_eq!(policy, libc::SCHED_RR),
            (_, policy) => assert_eq!(policy, libc::SCHED_OTHER),
        }
        // The test thread itself was not changed.
        assert_eq!(crate::sys::thread_policy(), libc::SCHED_OTHER);
    }

    #[test]
    fn socket_priority_is_set() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        prioritise_socket(&s);
        assert!(s.priority().unwrap() >= 6);
    }
}
