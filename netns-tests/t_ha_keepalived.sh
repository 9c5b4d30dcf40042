#!/usr/bin/env bash
# netns-tests/run: alone (its timings or load figures need an otherwise idle machine)
# keepalived 2.2.7 (VRRPv3, same VRID, 100 ms adverts) as a peer of vipgate, with unicast
# peers and then over multicast (224.0.0.18, no peers listed on either side): as the backup of
# a vipgate master, and as the master of a vipgate backup; failover works both ways and exactly
# one node answers ARP for the VIP. keepalived's node serves HTTP with a listener-only vipgate,
# so the prober sees which node answered.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

command -v keepalived >/dev/null || abort "keepalived is installed (scripts/test installs it)"
lan_up 1
lb2_up
A=$LB_IP B=$LB2_IP
mac_a=$(ns_mac "$NS_LB") mac_b=$(ns_mac "$NS_LB2")
cfg_a_unicast=$VG_TMP/a-unicast.toml cfg_a_multicast=$VG_TMP/a-multicast.toml
ha_config "$cfg_a_unicast" 150 "peers = [\"$B\"]"
ha_config "$cfg_a_multicast" 150
ka_low_unicast=$VG_TMP/ka-100-unicast.conf ka_high_unicast=$VG_TMP/ka-200-unicast.conf
ka_low_multicast=$VG_TMP/ka-100-multicast.conf ka_high_multicast=$VG_TMP/ka-200-multicast.conf
keepalived_config "$ka_low_unicast" 100 "$B" "$A"
keepalived_config "$ka_high_unicast" 200 "$B" "$A"
keepalived_config "$ka_low_multicast" 100
keepalived_config "$ka_high_multicast" 200
# keepalived's node: the VIP is an interface address while it is master; vipgate only serves.
cfg_b=$VG_TMP/b-serve.toml
ha_serve_config "$cfg_b"
start_vipgate_in "$NS_LB2" "$cfg_b" || abort "node b's listener-only vipgate starts"
note "node a: vipgate $A $mac_a priority 150; node b: keepalived $B $mac_b"


# MODE: unicast or multicast; both directions of the interop.
interop() {
local mode=$1 cfg_a ka_low ka_high
cfg_a=$VG_TMP/a-$mode.toml ka_low=$VG_TMP/ka-100-$mode.conf ka_high=$VG_TMP/ka-200-$mode.conf
if [[ $mode == multicast ]]; then
  # The client sees what is flooded on the LAN: multicast adverts, not the unicast ones.
  capture_start "$NS_CLIENT" 'ip proto 112' || abort "tcpdump listens on the client"
fi

section "$mode: keepalived as the backup of a vipgate master"
start_vipgate_in "$NS_LB" "$cfg_a" || abort "node a starts"
PID_A=$VG_PID LOG_A=$VG_LOG
wait_state "$LOG_A" Master 30 || abort "vipgate becomes master"
keepalived_start "$NS_LB2" "$ka_low"
wait_keepalived_state "$KA_LOG" BACKUP 50 || abort "keepalived enters BACKUP"
sleep 1
assert_eq "keepalived stays backup next to vipgate's higher priority" BACKUP "$(keepalived_state "$KA_LOG")"
assert_eq "vipgate stays master" Master "$(vrrp_state "$LOG_A")"
one_owner "vipgate master, keepalived backup" "$mac_a"

probe_start 4
sleep 1
kill_pid "$PID_A"
probe_wait
probe_outage "$A" "$B"
assert_outage "SIGKILL of the vipgate master, keepalived takes over" 1500
assert_eq "keepalived is master" MASTER "$(keepalived_state "$KA_LOG")"
one_owner "keepalived took over" "$mac_b"

probe_start 4
sleep 0.5
start_vipgate_in "$NS_LB" "$cfg_a" || abort "node a starts again"
PID_A=$VG_PID LOG_A=$VG_LOG
probe_wait
probe_outage "$B" "$A"
assert_outage "vipgate returns and preempts keepalived" 1500
assert_eq "keepalived went back to backup" BACKUP "$(keepalived_state "$KA_LOG")"
one_owner "vipgate preempted keepalived" "$mac_a"
stop_vipgate_pid "$PID_A"
wait_keepalived_state "$KA_LOG" MASTER 30 || fail "keepalived takes over after vipgate's SIGTERM"
keepalived_stop "$KA_PID"

section "$mode: keepalived as the master of a vipgate backup"
keepalived_start "$NS_LB2" "$ka_high"
wait_keepalived_state "$KA_LOG" MASTER 50 || abort "keepalived (priority 200) becomes master"
start_vipgate_in "$NS_LB" "$cfg_a" || abort "node a starts"
PID_A=$VG_PID LOG_A=$VG_LOG
wait_state "$LOG_A" Backup 30 || abort "vipgate becomes backup"
sleep 1
assert_eq "vipgate stays backup next to keepalived's higher priority" Backup "$(vrrp_state "$LOG_A")"
one_owner "keepalived master, vipgate backup" "$mac_b"
assert_eq "vipgate's node has no local route for the VIP" "" "$(local_route)"

probe_start 3
sleep 1
kill -TERM "$KA_PID"
probe_wait
probe_outage "$B" "$A"
assert_outage "SIGTERM of the keepalived master (priority 0), vipgate takes over" 1000
assert_eq "vipgate is master" Master "$(vrrp_state "$LOG_A")"
one_owner "vipgate took over from keepalived" "$mac_a"
keepalived_stop "$KA_PID"
stop_vipgate_pid "$PID_A"
if [[ $mode == multicast ]]; then
  capture_stop
  local src
  for src in "$A" "$B"; do
    assert_num "multicast: adverts from $src to 224.0.0.18 seen on the LAN" \
      "$(grep -c "$src > 224.0.0.18: VRRPv3" "$CAP_FILE" || true)" -gt 10
  done
fi
}

interop unicast
interop multicast
# Neither side complained about the other's adverts (a wrong checksum, TTL, address list, …).
complaints=$(sed 's/\x1b\[[0-9;]*m//g' "${VG_LOGS[@]}" |
  grep -E 'VRRP packet dropped|zero interval|announces other addresses|not in .peers.' || true)
assert_eq "vipgate accepted every advert keepalived sent" "" "$complaints"
complaints=$(grep -hiE 'invalid|bad |not present|mismatch|wrong|checksum' "${VG_LOGS[@]}" || true)
assert_eq "keepalived accepted every advert vipgate sent" "" "$complaints"
summary
