//! sd_notify: telling the service manager how the daemon is doing.
//!
//! Owns the protocol of sd_notify(3): newline-separated `KEY=VALUE` assignments in one datagram
//! to the unix socket named by `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket), and
//! the watchdog period from `WATCHDOG_USEC`/`WATCHDOG_PID`. Written by hand over
//! `UnixDatagram`: it is a few lines and needs no dependency. Does not own *when* a state is
//! reported; `daemon` decides that (READY=1 once listeners are bound and VIPs announced, and so
//! on). Without `NOTIFY_SOCKET` every call is a no-op, so `vipgate run` behaves the same from a
//! shell.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use tracing::{debug, warn};

/// A state change to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State<'a> {
    /// Start-up or a reload finished; `status` is the one-line summary.
    Ready { status: &'a str },
    /// A reload began (systemd shows `reloading` until the next `Ready`).
    Reloading,
    /// Shutdown began.
    Stopping { status: &'a str },
    /// Only the status line changes.
    Status { status: &'a str },
    /// The event loop is alive.
    Watchdog,
}

/// The datagram for `state`. `monotonic_usec` goes with RELOADING=1: systemd 253+ uses it to
/// tell this reload's READY=1 from an older one.
pub fn message(state: State<'_>, monotonic_usec: u64) -> String {
    match state {
        State::Ready { status } => format!("READY=1\nSTATUS={}\n", one_line(status)),
        State::Reloading => {
            format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\nSTATUS=reloading\n")
        }
        State::Stopping { status } => format!("STOPPING=1\nSTATUS={}\n", one_line(status)),
        State::Status { status } => format!("STATUS={}\n", one_line(status)),
        State::Watchdog => "WATCHDOG=1\n".to_string(),
    }
}

/// A newline would start a new assignment; the status is one line by contract.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// How often to send WATCHDOG=1: half the period systemd enforces, as sd_watchdog_enabled(3)
/// recommends. `None` when the watchdog is off or meant for another process.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != our_pid {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

/// Where notifications go; built once from the environment.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`. A socket that cannot be used is
    /// logged once and notifications are off (the daemon itself does not depend on them).
    pub fn from_env() -> Notifier {
        let env = |k: &str| std::env::var(k).ok();
        let watchdog = watchdog_interval(
            env("WATCHDOG_USEC").as_deref(),
            env("WATCHDOG_PID").as_deref(),
            std::process::id(),
        );
        let target = env("NOTIFY_SOCKET").and_then(|path| match connect(&path) {
            Ok(t) => Some(t),
            Err(e) => {
                warn!(socket = %path, error = %e, "NOTIFY_SOCKET is set but unusable; not notifying");
                None
            }
        });
        Notifier {
            watchdog: target.as_ref().and(watchdog),
            target,
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Half the watchdog period, if systemd asked for keep-alives.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    pub fn notify(&self, state: State<'_>) {
        let Some((sock, addr)) = &self.target else {
            return;
        };
        let msg = message(state, monotonic_usec());
        match sock.send_to_addr(msg.as_bytes(), addr) {
            Ok(_) => debug!(message = %msg.trim_end().replace('\n', " "), "sd_notify"),
            Err(e) => warn!(error = %e, "sd_notify failed"),
        }
    }
}

fn connect(path: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None if path.starts_with('/') => SocketAddr::from_pathname(path)?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an absolute path or @abstract name",
            ))
        }
    };
    let sock = UnixDatagram::unbound()?;
    // A notification must never stall the event loop, even if the receiver stops reading.
    sock.set_nonblocking(true)?;
    Ok((sock, addr))
}

fn monotonic_usec() -> u64 {
    crate::sys::monotonic_usec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_newline_separated_assignments() {
        let cases: &[(State<'_>, &str)] = &[
            (
                State::Ready { status: "serving" },
                "READY=1\nSTATUS=serving\n",
            ),
            (
                State::Reloading,
                "RELOADING=1\nMONOTONIC_USEC=42\nSTATUS=reloading\n",
            ),
            (
                State::Stopping {
                    status: "draining\n2",
                },
                "STOPPING=1\nSTATUS=draining 2\n",
            ),
            (State::Status { status: "x" }, "STATUS=x\n"),
            (State::Watchdog, "WATCHDOG=1\n"),
        ];
        for (state, want) in cases {
            assert_eq!(message(*state, 42), *want, "{state:?}");
        }
    }

    #[test]
    fn watchdog_interval_is_half_the_period_for_us_only() {
        let cases: &[(Option<&str>, Option<&str>, Option<Duration>)] = &[
            (None, None, None),
            (Some("2000000"), None, Some(Duration::from_secs(1))),
            (Some("2000000"), Some("7"), Some(Duration::from_secs(1))),
            (Some("2000000"), Some("8"), None),
            (Some("0"), None, None),
            (Some("soon"), None, None),
            (Some("2000000"), Some("x"), None),
        ];
        for (usec, pid, want) in cases {
            assert_eq!(watchdog_interval(*usec, *pid, 7), *want, "{usec:?} {pid:?}");
        }
    }

    fn receive(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_real_path_socket() {
        let dir = std::env::temp_dir().join(format!("vipgate-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (sock, addr) = connect(path.to_str().unwrap()).unwrap();
        let n = Notifier {
            target: Some((sock, addr)),
            watchdog: None,
        };
        n.notify(State::Ready { status: "ok" });
        n.notify(State::Watchdog);
        assert_eq!(receive(&rx), "READY=1\nSTATUS=ok\n");
        assert_eq!(receive(&rx), "WATCHDOG=1\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sends_to_a_real_abstract_socket() {
        let name = format!("vipgate-notify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (sock, addr) = connect(&format!("@{name}")).unwrap();
        let n = Notifier {
            target: Some((sock, addr)),
            watchdog: None,
        };
        n.notify(State::Reloading);
        assert!(receive(&rx).starts_with("RELOADING=1\nMONOTONIC_USEC="));
    }

    #[test]
    fn a_relative_path_is_refused_and_disabled_sends_nothing() {
        assert!(connect("notify.sock").is_err());
        let n = Notifier::disabled();
        assert!(!n.is_enabled());
        n.notify(State::Watchdog);
    }
}
