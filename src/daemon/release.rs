//! `vipgate release`: undo what a `run` that died without stopping left on the host.
//!
//! After SIGKILL or a crash the ARP answers stop with the process, but the `local VIP/32 dev lo`
//! route stays, and with it this node keeps accepting the VIP's packets. systemd runs this as
//! `ExecStopPost=` so the node is clean whatever way the daemon ended. Owns nothing else: the
//! route itself is `l2`'s. For BGP VIPs it removes the announcement too (`bgp::release`): a
//! route left in the table would keep BIRD announcing a node that serves nothing.

use std::net::IpAddr;

use crate::config::Config;
use crate::l2::{self, L2Error};

/// For each VIP of `config`: whether a stale route was removed. Stops at the first failure.
pub async fn release(config: &Config) -> Result<Vec<(IpAddr, bool)>, L2Error> {
    let mut out = Vec::with_capacity(config.vips.len());
    for vip in &config.vips {
        out.push((vip.address, l2::release(vip).await?));
    }
    if let Some(b) = &config.bgp {
        out.extend(crate::bgp::release(b).await?);
    }
    Ok(out)
}
