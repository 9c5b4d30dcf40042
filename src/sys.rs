//! Every system call the safe crates (`socket2`, `nix`, tokio) do not wrap: the crate's only
//! `unsafe` code, each block with the argument for its soundness, behind safe functions.
//!
//! A leaf: it knows nothing of VIPs, VRRP or HTTP. The crate denies `unsafe_code` everywhere
//! else (`[lints]` in Cargo.toml), so a new `unsafe` block has to come here and be argued.

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsFd, AsRawFd};

use socket2::Socket;
use tokio::io::unix::AsyncFd;

/// Register a socket with tokio's reactor (tokio made the registration `unsafe` because the
/// descriptor must stay the same while registered).
pub fn async_socket(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: the Socket owns its descriptor, which stays open and the same until the AsyncFd
    // (and with it the Socket) is dropped; nothing else can close or replace it.
    unsafe { AsyncFd::register(socket) }.map_err(Into::into)
}

/// `setsockopt` with a value of plain old data (an integer or a `libc` option struct), for
/// options `socket2` does not offer.
pub fn setsockopt<T: Copy>(socket: &impl AsFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    let fd = socket.as_fd();
    // SAFETY: the descriptor is borrowed open for the call; value is a live `T` of the size
    // passed with it, and the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One IPv6 datagram read by `recv_v6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Datagram {
    pub len: usize,
    pub src: Ipv6Addr,
    pub scope_id: u32,
    /// From IPV6_PKTINFO, if the socket asked for it.
    pub dst: Option<Ipv6Addr>,
    /// From IPV6_HOPLIMIT, if the socket asked for it.
    pub hop_limit: Option<u8>,
}

/// One `recvmsg` on an IPv6 socket: the datagram into `buf`, its sender, and its destination
/// and hop limit from the control messages.
pub fn recv_v6(socket: &impl AsFd, buf: &mut [u8]) -> io::Result<V6Datagram> {
    // u64 elements: the control buffer must be aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: all-zero is a valid sockaddr_in6 and msghdr (plain C structs of integers and
    // null pointers).
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = std::ptr::addr_of_mut!(from).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg points at live buffers of the sizes it states, for the duration of the call.
    let n = unsafe { libc::recvmsg(socket.as_fd().as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut hop_limit = None;
    let mut dst = None;
    // SAFETY: the CMSG_* walk stays inside msg_control as the kernel filled it (msg_controllen
    // was updated by recvmsg); each data read is of the size the cmsg type defines, unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            if c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_HOPLIMIT {
                let v = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                hop_limit = u8::try_from(v).ok();
            } else if c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_PKTINFO {
                // struct in6_pktinfo starts with the destination address.
                let a = std::ptr::read_unaligned(data.cast::<[u8; 16]>());
                dst = Some(Ipv6Addr::from(a));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(V6Datagram {
        len: n as usize,
        src: Ipv6Addr::from(from.sin6_addr.s6_addr),
        scope_id: from.sin6_scope_id,
        dst,
        hop_limit,
    })
}

/// Microseconds of CLOCK_MONOTONIC (what systemd's WATCHDOG and `MONOTONIC_USEC` use); 0 if
/// the clock cannot be read.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

/// Put the calling thread under SCHED_RR at `priority`; `false` if refused (no CAP_SYS_NICE).
pub fn set_thread_realtime(priority: i32) -> bool {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pid 0 is the calling thread (Linux schedules threads, not processes), and param
    // is a valid sched_param for the call.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) == 0 }
}

/// Set the calling thread's nice value alone; `false` if refused.
pub fn set_thread_nice(nice: i32) -> bool {
    // SAFETY: gettid has no preconditions.
    let Ok(tid) = u32::try_from(unsafe { libc::gettid() }) else {
        return false;
    };
    // On Linux PRIO_PROCESS with a thread id sets that thread's nice value alone.
    // SAFETY: a plain syscall on our own thread id.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0 }
}

/// The calling thread's scheduling policy (`libc::SCHED_*`).
pub fn thread_policy() -> i32 {
    // SAFETY: reading our own thread's policy; no pointers involved.
    unsafe { libc::sched_getscheduler(0) }
}

/// `_IOW('T', 202, int)` from `linux/if_tun.h`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// `struct ifreq` with the `ifr_flags` member of its union: 16 bytes of name, the flags, and
/// the union's remaining bytes (the union is 24 bytes on 64-bit Linux).
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _rest: [u8; 22],
}

/// TUNSETIFF on an open `/dev/net/tun`: attach it to the TUN (or TAP) interface `name`,
/// creating it, with `flags` (`IFF_TUN | IFF_NO_PI`…). Not persistent: the interface goes
/// when the last descriptor attached to it closes.
pub fn tun_set_iff(tun: &impl AsFd, name: &str, flags: libc::c_short) -> io::Result<()> {
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags,
        _rest: [0; 22],
    };
    // One byte stays NUL: the kernel reads a C string of at most IFNAMSIZ bytes.
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: the descriptor is borrowed open for the call; TUNSETIFF reads and writes a
    // `struct ifreq`, which `IfReqFlags` lays out with the same size (40 bytes, checked in the
    // tests) and the flags at the union's offset; `req` lives across the call.
    let rc = unsafe {
        libc::ioctl(
            tun.as_fd().as_raw_fd(),
            TUNSETIFF,
            std::ptr::from_mut(&mut req),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tun_tests {
    use super::*;

    #[test]
    fn ifreq_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<IfReqFlags>(), 40);
        assert_eq!(std::mem::offset_of!(IfReqFlags, flags), libc::IFNAMSIZ);
    }

    #[test]
    fn names_the_kernel_cannot_hold_are_refused_before_the_call() {
        let f = std::fs::File::open("/dev/null").unwrap();
        for name in ["sixteen-bytes-xx", "nul\0inside"] {
            let e = tun_set_iff(&f, name, 0).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
    }
}
