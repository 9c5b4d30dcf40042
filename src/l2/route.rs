//! The kernel side of holding a VIP that is on no interface: a `local VIP/32 dev lo` route
//! (`local VIP/128 dev lo` for IPv6) in table local, and the ARP sysctls that keep the kernel
//! from speaking for an IPv4 VIP.
//!
//! Owns: installing and removing that route over rtnetlink (the equivalent of
//! `ip route add local VIP/32 dev lo table local`), and raising `arp_ignore` / `arp_announce`
//! on the VIP's interface (on `all` for a VIP announced over BGP, which has no interface).
//! Also the announcement routes of BGP VIPs: `VIP/32 dev lo` in a table of their own (`[bgp]
//! table`) that the BGP daemon learns ([`install_table_route`], [`remove_table_route`],
//! [`table_routes`]); no rule looks that table up, so they route nothing here. Does not own: answering ARP (`arp`, `announcer`), nor deciding
//! when to hold the VIP (`ha`).
//!
//! Why a route and not an address: with the VIP as an interface address the kernel answers ARP
//! for it and sends its own gratuitous ARPs, so two nodes configured alike would both claim it.
//! A `local` route (AnyIP) makes the kernel deliver packets for the VIP to local sockets and
//! nothing more; who the LAN sends them to is decided by our ARP answers alone. Without the
//! route, binding with IP_FREEBIND works but incoming SYNs are dropped (IpInAddrErrors).
//!
//! IPv6 needs no sysctl: the kernel answers Neighbor Solicitations only for addresses assigned
//! to the interface, not for a local route (measured: `ndisc6` for an address with only
//! `local ADDR/128 dev lo` went unanswered), and source address selection picks assigned
//! addresses only, so the kernel never speaks for an IPv6 VIP.
//!
//! Our routes carry protocol [`RTPROT_VIPGATE`] so that removal, which the kernel matches on
//! protocol when it is non-zero, can only ever delete a route vipgate installed, never an
//! operator's route or the kernel's route for an interface address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use futures_util::stream::TryStreamExt;
use rtnetlink::packet_route::route::{RouteProtocol, RouteScope, RouteType};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::L2Error;

/// Route protocol marking vipgate's routes (`ip route` prints `proto 86`). Unassigned in the
/// kernel's `rtnetlink.h` and in iproute2's `rt_protos`; an operator can name it with
/// `echo "86 vipgate" > /etc/iproute2/rt_protos.d/vipgate.conf`.
pub const RTPROT_VIPGATE: u8 = 86;

/// The kernel's `local` table, where the routes for addresses the host accepts live.
const RT_TABLE_LOCAL: u32 = 255;

/// The loopback interface's name; the route points at it as `ip route add local … dev lo` does.
const LOOPBACK: &str = "lo";

/// `arp_ignore=1`: reply only if the target IP is configured on the incoming interface. The VIP
/// is on no interface, so the kernel stays silent; with the default 0 the local route alone makes
/// the kernel answer ARP for the VIP on every interface, next to (or instead of) us.
const ARP_IGNORE: u8 = 1;
/// `arp_announce=2`: always use the best local interface address as the sender IP of ARP requests.
/// With 0 the node may put the VIP (a local address now) into its own requests, teaching the
/// LAN the VIP's MAC from a node that may not be the owner.
const ARP_ANNOUNCE: u8 = 2;

/// Sets `arp_ignore` and `arp_announce` on `interface` unless they are already at least as strict.
///
/// The kernel uses the larger of `conf/all` and `conf/<iface>` for both, so raising the interface
/// value is enough, and a larger value an operator chose (e.g. `arp_ignore=2`) is left alone
/// rather than loosened. The values are not restored on stop: they only stop the kernel from
/// speaking for addresses that are not on the interface, which is harmless with no VIP.
pub fn set_arp_sysctls(interface: &str) -> Result<(), L2Error> {
    raise_sysctl(interface, "arp_ignore", ARP_IGNORE)?;
    raise_sysctl(interface, "arp_announce", ARP_ANNOUNCE)?;
    Ok(())
}

fn raise_sysctl(interface: &str, name: &str, want: u8) -> Result<(), L2Error> {
    // The interface name comes from the kernel's interface list (checked by the caller), so it
    // holds no '/' and cannot point this path elsewhere.
    let path = PathBuf::from(format!("/proc/sys/net/ipv4/conf/{interface}/{name}"));
    let current = std::fs::read_to_string(&path).map_err(|source| L2Error::Sysctl {
        path: path.clone(),
        source,
    })?;
    if current.trim().parse::<u8>().is_ok_and(|v| v >= want) {
        return Ok(());
    }
    std::fs::write(&path, format!("{want}\n")).map_err(|source| L2Error::Sysctl {
        path: path.clone(),
        source,
    })?;
    tracing::debug!(path = %path.display(), value = want, "sysctl set");
    Ok(())
}

/// Installs `local VIP/32 dev lo` (`/128` for IPv6) in table local.
///
/// Fails with [`L2Error::VipAlreadyLocal`] if the kernel already has a local route for the VIP
/// that is not ours (the VIP is an interface address here, or another tool holds it): taking it
/// over would hide a misconfiguration that makes two nodes answer for the VIP. Remove a stale
/// route of our own first with [`remove_local_route`].
pub async fn install_local_route(vip: IpAddr) -> Result<(), L2Error> {
    with_netlink(vip, |handle| async move {
        let lo = loopback_index(&handle)
            .await
            .map_err(|source| L2Error::Netlink {
                action: "look up lo for",
                vip,
                source,
            })?;
        match handle.route().add(local_route(vip, lo)).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Err(L2Error::VipAlreadyLocal { vip }),
            Err(e) => Err(L2Error::Netlink {
                action: "add",
                vip,
                source: to_io(e),
            }),
        }
    })
    .await
}

/// Removes our `local VIP/32 dev lo` (or `/128`) route. Returns whether there was one: a missing route is
/// the normal case for a clean start, not an error.
pub async fn remove_local_route(vip: IpAddr) -> Result<bool, L2Error> {
    with_netlink(vip, |handle| async move {
        let lo = loopback_index(&handle)
            .await
            .map_err(|source| L2Error::Netlink {
                action: "look up lo for",
                vip,
                source,
            })?;
        match handle.route().del(local_route(vip, lo)).execute().await {
            Ok(()) => Ok(true),
            // fib_table_delete answers ESRCH when no route matches, protocol included.
            Err(e) if errno(&e) == Some(libc::ESRCH) => Ok(false),
            Err(e) => Err(L2Error::Netlink {
                action: "remove",
                vip,
                source: to_io(e),
            }),
        }
    })
    .await
}

/// Puts `VIP/32 dev DEVICE` (`/128`; the interface of index `device`, or `lo`) into `table`
/// with our protocol: the announcement a BGP daemon learns. It replaces a route already there
/// for the VIP (one of an earlier run, on another device).
pub async fn install_table_route(
    vip: IpAddr,
    table: u32,
    device: Option<u32>,
) -> Result<(), L2Error> {
    with_table(table, "add", |handle| async move {
        let oif = match device {
            Some(i) => i,
            None => loopback_index(&handle).await?,
        };
        handle
            .route()
            .add(table_route(vip, Some(oif), table))
            .replace()
            .execute()
            .await
            .map_err(to_io)
    })
    .await
}

/// Removes our route for `vip` from `table`, whatever its device; returns whether there was
/// one.
pub async fn remove_table_route(vip: IpAddr, table: u32) -> Result<bool, L2Error> {
    with_table(table, "remove", |handle| async move {
        match handle
            .route()
            .del(table_route(vip, None, table))
            .execute()
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::ESRCH) => Ok(false),
            Err(e) => Err(to_io(e)),
        }
    })
    .await
}

/// The destinations of our host routes (/32, /128, protocol [`RTPROT_VIPGATE`]) in `table`,
/// both families.
pub async fn table_routes(table: u32) -> Result<Vec<IpAddr>, L2Error> {
    with_table(table, "list", |handle| async move {
        let mut found = Vec::new();
        let queries = [
            RouteMessageBuilder::<Ipv4Addr>::new()
                .table_id(table)
                .build(),
            RouteMessageBuilder::<Ipv6Addr>::new()
                .table_id(table)
                .build(),
        ];
        for q in queries {
            let mut routes = handle.route().get(q).execute();
            while let Some(r) = routes.try_next().await.map_err(to_io)? {
                if let Some(dst) = ours_in(&r, table) {
                    found.push(dst);
                }
            }
        }
        Ok(found)
    })
    .await
}

/// The destination of `r` if it is one of our host routes in `table` (a dump returns every
/// table's routes).
fn ours_in(r: &rtnetlink::packet_route::route::RouteMessage, table: u32) -> Option<IpAddr> {
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
    let mut in_table = u32::from(r.header.table);
    let mut dst = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Table(t) => in_table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(v4)) => dst = Some(IpAddr::V4(*v4)),
            RouteAttribute::Destination(RouteAddress::Inet6(v6)) => dst = Some(IpAddr::V6(*v6)),
            _ => {}
        }
    }
    let full = match dst {
        Some(IpAddr::V4(_)) => 32,
        Some(IpAddr::V6(_)) => 128,
        None => return None,
    };
    (in_table == table
        && u8::from(r.header.protocol) == RTPROT_VIPGATE
        && r.header.destination_prefix_length == full)
        .then_some(dst)
        .flatten()
}

/// The announcement route: unicast, scope link, our protocol, on `oif`, in `table` (the
/// header's 8-bit field cannot hold a table above 255, so rtnetlink's builder adds
/// RTA_TABLE). Without `oif` (a delete) it matches the route on any device.
fn table_route(
    vip: IpAddr,
    oif: Option<u32>,
    table: u32,
) -> rtnetlink::packet_route::route::RouteMessage {
    let mut msg = match vip {
        IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(v4, 32)
            .table_id(table)
            .kind(RouteType::Unicast)
            .scope(RouteScope::Link)
            .protocol(RouteProtocol::from(RTPROT_VIPGATE))
            .build(),
        IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(v6, 128)
            .table_id(table)
            .kind(RouteType::Unicast)
            .scope(RouteScope::Universe)
            .protocol(RouteProtocol::from(RTPROT_VIPGATE))
            .build(),
    };
    if let Some(oif) = oif {
        msg.attributes
            .push(rtnetlink::packet_route::route::RouteAttribute::Oif(oif));
    }
    msg
}

async fn with_table<T, F, Fut>(table: u32, action: &'static str, f: F) -> Result<T, L2Error>
where
    F: FnOnce(Handle) -> Fut,
    Fut: std::future::Future<Output = io::Result<T>>,
{
    let (connection, handle, _messages) =
        rtnetlink::new_connection().map_err(|source| L2Error::AnnounceTable {
            action,
            table,
            source,
        })?;
    let task = tokio::spawn(connection);
    let result = f(handle).await;
    task.abort();
    result.map_err(|source| L2Error::AnnounceTable {
        action,
        table,
        source,
    })
}

/// The route message for both add and delete, so the delete matches exactly what was added:
/// type local, scope host (what iproute2 picks for `local`), our protocol, dev lo, table local.
fn local_route(vip: IpAddr, lo: u32) -> rtnetlink::packet_route::route::RouteMessage {
    match vip {
        IpAddr::V4(v4) => local_route_fields(
            RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(v4, 32),
            lo,
        ),
        IpAddr::V6(v6) => local_route_fields(
            RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(v6, 128),
            lo,
        ),
    }
}

fn local_route_fields<T>(
    builder: RouteMessageBuilder<T>,
    lo: u32,
) -> rtnetlink::packet_route::route::RouteMessage {
    builder
        .table_id(RT_TABLE_LOCAL)
        .kind(RouteType::Local)
        .scope(RouteScope::Host)
        .protocol(RouteProtocol::from(RTPROT_VIPGATE))
        .output_interface(lo)
        .build()
}

/// Looks up lo's index instead of assuming 1: it is 1 in every namespace today, but that is the
/// kernel's allocation order, not a promise.
async fn loopback_index(handle: &Handle) -> io::Result<u32> {
    let mut links = handle.link().get().match_name(LOOPBACK).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(link.header.index),
        Ok(None) => Err(io::Error::new(io::ErrorKind::NotFound, "no interface lo")),
        Err(e) => Err(to_io(e)),
    }
}

/// Runs `f` with a fresh rtnetlink connection. The connection task is aborted afterwards: it
/// only ends by itself once every handle and the unsolicited-message receiver are gone.
async fn with_netlink<T, F, Fut>(vip: IpAddr, f: F) -> Result<T, L2Error>
where
    F: FnOnce(Handle) -> Fut,
    Fut: std::future::Future<Output = Result<T, L2Error>>,
{
    let (connection, handle, _messages) =
        rtnetlink::new_connection().map_err(|source| L2Error::Netlink {
            action: "open a netlink socket for",
            vip,
            source,
        })?;
    let task = tokio::spawn(connection);
    let result = f(handle).await;
    task.abort();
    result
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => Some(msg.raw_code().abs()),
        _ => None,
    }
}

/// Netlink NACKs carry an errno; turning them into `io::Error` gives "File exists (os error
/// 17)" instead of a debug dump of the message.
fn to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader};
    use rtnetlink::packet_route::AddressFamily;

    #[test]
    fn route_message_is_local_host_scope_in_table_local() {
        let vip = Ipv4Addr::new(192, 0, 2, 200);
        let msg = local_route(IpAddr::V4(vip), 1);
        assert_eq!(msg.header.address_family, AddressFamily::Inet);
        assert_eq!(
            msg.header.table, 255,
            "table local fits the 8-bit header field"
        );
        assert_ne!(msg.header.table, RouteHeader::RT_TABLE_MAIN);
        assert_eq!(msg.header.destination_prefix_length, 32);
        assert_eq!(msg.header.kind, RouteType::Local);
        assert_eq!(msg.header.scope, RouteScope::Host);
        assert_eq!(u8::from(msg.header.protocol), RTPROT_VIPGATE);
        assert!(msg
            .attributes
            .contains(&RouteAttribute::Destination(RouteAddress::Inet(vip))));
        assert!(msg.attributes.contains(&RouteAttribute::Oif(1)));
        assert!(
            !msg.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Table(_))),
            "table 255 goes in the header, not as RTA_TABLE"
        );
    }

    #[test]
    fn ipv6_route_message_is_a_128_in_table_local() {
        let vip: Ipv6Addr = "2001:db8::200".parse().unwrap();
        let msg = local_route(IpAddr::V6(vip), 1);
        assert_eq!(msg.header.address_family, AddressFamily::Inet6);
        assert_eq!(msg.header.table, 255);
        assert_eq!(msg.header.destination_prefix_length, 128);
        assert_eq!(msg.header.kind, RouteType::Local);
        assert_eq!(msg.header.scope, RouteScope::Host);
        assert_eq!(u8::from(msg.header.protocol), RTPROT_VIPGATE);
        assert!(msg
            .attributes
            .contains(&RouteAttribute::Destination(RouteAddress::Inet6(vip))));
    }
}
