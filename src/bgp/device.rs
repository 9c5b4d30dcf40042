//! The interface the announcement routes point at: a TUN device that exists exactly as long
//! as this process holds it open, so the routes die with vipgate.
//!
//! Owns: creating the device (`/dev/net/tun`, TUNSETIFF, not persistent) and bringing it up.
//! Does not own the routes (`l2::route`) nor when they exist (`speaker`).
//!
//! Why: the BGP daemon announces what the table holds, whether or not vipgate still runs. With
//! the routes on `lo`, a vipgate that crashed (SIGKILL, a panic, the OOM killer) left them
//! there and BIRD went on drawing the node's share of flows to a node that refused them, until
//! systemd ran `vipgate release`. A route's device going away removes the route (the kernel
//! flushes it and BIRD hears of it over netlink, ~10 ms), and the kernel removes a TUN device
//! that is not persistent when its last file descriptor closes, which it does for a dead
//! process too. Nothing is ever read from or written to the device: no rule routes into table
//! `[bgp] table`, so no packet is sent to it.
//!
//! Without `/dev/net/tun` (systemd's `PrivateDevices=yes`) the routes go on `lo` and a crash
//! leaves them until `vipgate release` (docs/operations.md says how to allow the device).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;

use rtnetlink::LinkUnspec;

/// The device's name (at most 15 bytes, IFNAMSIZ).
pub const NAME: &str = "vipgate-bgp";

/// `_IOW('T', 202, int)` from `linux/if_tun.h`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` with the `ifr_flags` member of its union: 16 bytes of name, the flags, and
/// the union's remaining bytes (the union is 24 bytes on 64-bit Linux).
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _rest: [u8; 22],
}

/// The open device; dropping it (or the process ending) removes the interface and its routes.
#[derive(Debug)]
pub struct Device {
    _file: File,
    pub index: u32,
}

/// Creates and brings up [`NAME`]. Fails when `/dev/net/tun` is missing or not allowed, or
/// when another process holds a device of that name (another vipgate).
pub async fn open() -> io::Result<Device> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TUN | IFF_NO_PI,
        _rest: [0; 22],
    };
    req.name[..NAME.len()].copy_from_slice(NAME.as_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `IfReqFlags` lays out with
    // the same size (40 bytes) and the flags at the union's offset; the fd is open.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReqFlags) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let name = CString::new(NAME).map_err(io::Error::other)?;
    // SAFETY: a NUL-terminated string that lives across the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    up(index).await?;
    Ok(Device { _file: file, index })
}

async fn up(index: u32) -> io::Result<()> {
    let (connection, handle, _messages) = rtnetlink::new_connection()?;
    let task = tokio::spawn(connection);
    let result = handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| io::Error::other(e.to_string()));
    task.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_the_kernel_layout() {
        // struct ifreq is 40 bytes on 64-bit Linux, the flags right after the 16-byte name.
        assert_eq!(std::mem::size_of::<IfReqFlags>(), 40);
        assert_eq!(std::mem::offset_of!(IfReqFlags, flags), libc::IFNAMSIZ);
        assert!(NAME.len() < libc::IFNAMSIZ);
    }
}
