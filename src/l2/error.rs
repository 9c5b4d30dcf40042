//! The one error type of the l2 layer: each variant says what failed and on which interface or
//! address, so the daemon can log it as it is and decide whether to give up the VIP.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum L2Error {
    #[error("interface {interface} not found")]
    InterfaceNotFound { interface: String },

    #[error("interface {interface} has no Ethernet MAC address, cannot answer ARP or NDP on it")]
    NoMac { interface: String },

    #[error("cannot open a packet socket on {interface} (needs CAP_NET_RAW): {source}")]
    Socket {
        interface: String,
        #[source]
        source: io::Error,
    },

    #[error("cannot start the ARP/NDP thread for {vip} on {interface}: {source}")]
    Thread {
        interface: String,
        vip: IpAddr,
        #[source]
        source: io::Error,
    },

    #[error("the ARP/NDP thread for {vip} on {interface} panicked")]
    ThreadPanicked { interface: String, vip: IpAddr },

    #[error("netlink: cannot {action} the local route for {vip} (needs CAP_NET_ADMIN): {source}")]
    Netlink {
        action: &'static str,
        vip: IpAddr,
        #[source]
        source: io::Error,
    },

    #[error("netlink: cannot {action} routes in table {table}, where the BGP daemon learns the announced VIPs (needs CAP_NET_ADMIN): {source}")]
    AnnounceTable {
        action: &'static str,
        table: u32,
        #[source]
        source: io::Error,
    },

    #[error(
        "{vip} is already local on this node (an interface address, or a local route vipgate did \
         not install); refusing to announce it"
    )]
    VipAlreadyLocal { vip: IpAddr },

    #[error(
        "cannot set sysctl {path} (needs CAP_NET_ADMIN, and /proc/sys/net/ipv4/conf writable: \
         ReadWritePaths= under systemd's ProtectKernelTunables=): {source}",
        path = path.display()
    )]
    Sysctl {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
