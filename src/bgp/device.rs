//! The interface the announcement routes point at: a TUN device that exists exactly as long
//! as this process holds it open, so the routes die with vipgate.
//!
//! Owns: creating the device (`/dev/net/tun`, TUNSETIFF in `sys`, not persistent) and
//! bringing it up.
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

use std::fs::{File, OpenOptions};
use std::io;

use rtnetlink::LinkUnspec;

/// The device's name (at most 15 bytes, IFNAMSIZ).
pub const NAME: &str = "vipgate-bgp";

const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

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
    crate::sys::tun_set_iff(&file, NAME, IFF_TUN | IFF_NO_PI)?;
    let index = nix::net::if_::if_nametoindex(NAME).map_err(io::Error::from)?;
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
