//! The errors of starting the election: each names the interface and what is missing, so an
//! operator can fix the host rather than read a stack of causes.

use std::io;

use crate::l2::L2Error;

#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("VRRP interface {interface} not found")]
    InterfaceNotFound { interface: String },

    #[error("VRRP interface {interface} has no IPv4 address to send adverts from")]
    NoIpv4 { interface: String },

    #[error("VRRP interface {interface} has no IPv6 link-local address to send IPv6 adverts from")]
    NoLinkLocal { interface: String },

    #[error("cannot open the VRRP sockets on {interface} (needs CAP_NET_RAW): {source}")]
    Socket {
        interface: String,
        #[source]
        source: io::Error,
    },

    #[error("cannot start the VRRP threads: {0}")]
    Thread(#[source] io::Error),

    #[error(transparent)]
    L2(#[from] L2Error),
}
