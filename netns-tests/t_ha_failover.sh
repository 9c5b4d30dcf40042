#!/usr/bin/env bash
# netns-tests/run: alone (its timings or load figures need an otherwise idle machine)
# Two vipgate nodes hold the VIP through VRRPv3 (100 ms adverts): exactly one answers ARP; a
# prober on the client (a request every 10 ms) measures the outage when the master is killed,
# stops gracefully, loses its link, and comes back (with and without preemption); a partition
# between the nodes makes two masters, and healing it leaves one. Bounds here are generous;
# scripts/failover-bench prints the real figures.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

lan_up 1
lb2_up
A=$LB_IP B=$LB2_IP
mac_a=$(ns_mac "$NS_LB") mac_b=$(ns_mac "$NS_LB2")
cfg_a=$VG_TMP/a.toml cfg_b=$VG_TMP/b.toml cfg_a_nopreempt=$VG_TMP/a-nopreempt.toml
ha_config "$cfg_a" 150
ha_config "$cfg_b" 100
ha_config "$cfg_a_nopreempt" 150 'preempt = false'
note "node a: $A $mac_a priority 150; node b: $B $mac_b priority 100"

peer_of_request() { # the node that proxied one request to the VIP
  http "$HA_HOST" /
  sed -n 's/.* peer=\([0-9.]*\).*/\1/p' <<<"$HTTP_BODY"
}

section "election"
start_a
wait_state "$LOG_A" Master 30 || abort "node a alone becomes master within 3 s"
pass "node a alone becomes master"
start_vipgate_in "$NS_LB2" "$cfg_b" || abort "node b starts"
PID_B=$VG_PID LOG_B=$VG_LOG
wait_state "$LOG_B" Backup 30 || abort "node b becomes backup"
sleep 1
assert_eq "node b stays backup next to the higher-priority master" Backup "$(vrrp_state "$LOG_B")"
one_owner "a master, b backup" "$mac_a"
assert_eq "requests to the VIP go through node a" "$A" "$(peer_of_request)"
assert_eq "node b has no local route for the VIP" "" \
  "$(ip -n "$NS_LB2" route show table local | grep -F "local $VIP " || true)"

section "SIGKILL of the master"
probe_start 4
sleep 1
kill_pid "$PID_A"
probe_wait
probe_outage "$A" "$B"
assert_outage "SIGKILL of master a, b takes over" 1500
assert_eq "node b is master" Master "$(vrrp_state "$LOG_B")"
one_owner "after the crash" "$mac_b"

section "the master comes back (preempt)"
probe_start 4
sleep 0.5
start_a
probe_wait
probe_outage "$B" "$A"
assert_outage "node a returns and preempts b" 1000
assert_eq "node a is master again" Master "$(vrrp_state "$LOG_A")"
assert_eq "node b is backup again" Backup "$(vrrp_state "$LOG_B")"
one_owner "after preemption" "$mac_a"

section "SIGTERM of the master"
probe_start 3
sleep 1
stop_vipgate_pid "$PID_A"
probe_wait
probe_outage "$A" "$B"
assert_outage "SIGTERM of master a (priority 0 advert), b takes over" 500
if wait_log "$LOG_A" "a backup took over" 1 && wait_log "$LOG_A" "successor announced the VIPs" 1; then
  pass "node a kept the VIP until b advertised and sent its gratuitous ARP"
else
  fail "node a logged that a backup took over and announced the VIP before releasing it"
fi
one_owner "after the graceful stop" "$mac_b"

section "the master comes back without preemption"
probe_start 3
sleep 0.5
start_a "$cfg_a_nopreempt"
probe_wait
probe_outage "$B" "$A"
assert_eq "with preempt = false, node a stays backup" Backup "$(vrrp_state "$LOG_A")"
assert_eq "every probe answered through node b ($PROBE_RESULT)" "outage_ms=none fails=0" \
  "outage_ms=$OUTAGE_MS fails=$PROBE_FAILS"
one_owner "a higher-priority node returned with preempt = false" "$mac_b"
stop_vipgate_pid "$PID_A"
start_a
wait_state "$LOG_A" Master 30 || fail "node a (preempt) takes the VIP back within 3 s"
wait_state "$LOG_B" Backup 30 || fail "node b yields to node a"
sleep 0.5
assert_eq "requests to the VIP go through node a again" "$A" "$(peer_of_request)"

section "link down of the master"
probe_start 4
sleep 1
port_link lb down
wait_state "$LOG_B" Master 30 || fail "node b becomes master when a's link goes down"
probe_wait
probe_outage "$A" "$B"
assert_outage "link of master a down, b takes over" 1500
one_owner "a's link down" "$mac_b"
# Without a link a leaves the election (as keepalived's FAULT) and sends nothing: adverts into
# a dead link would leave the peer's neighbour entry resolving and delay them on return.
wait_state "$LOG_A" Fault 20 || fail "node a, without a link, is in Fault"
probe_start 4
sleep 0.5
port_link lb up
probe_wait
probe_outage "$B" "$A"
assert_outage "a's link back: b yields, clients follow a" 1500
assert_eq "node a came back as backup, then preempted b" "Fault Backup Master" \
  "$(sed 's/\x1b\[[0-9;]*m//g' "$LOG_A" | sed -n 's/.*VRRP state changed.* to=\([A-Za-z]*\).*/\1/p' | tail -n 3 | paste -sd' ' -)"
assert_eq "node b is backup after the link came back" Backup "$(vrrp_state "$LOG_B")"
one_owner "after the link came back" "$mac_a"

section "partition between the nodes, then healed"
bridge -n "$NS_BR" link set dev v-lb isolated on
bridge -n "$NS_BR" link set dev v-lb2 isolated on
wait_state "$LOG_B" Master 30 || fail "node b, cut off from a, becomes master"
assert_eq "while partitioned, both nodes answer ARP (the split VRRP cannot avoid, and this test can see)" \
  "$(printf '%s\n' "$mac_a" "$mac_b" | sort | paste -sd' ' -)" "$(arp_mac "$VIP")"
bridge -n "$NS_BR" link set dev v-lb isolated off
bridge -n "$NS_BR" link set dev v-lb2 isolated off
wait_state "$LOG_B" Backup 30 || fail "node b yields once the partition heals"
sleep 0.5
one_owner "after the partition healed" "$mac_a"
assert_eq "requests to the VIP go through node a after the partition healed" "$A" "$(peer_of_request)"

stop_vipgate_pid "$PID_A"
stop_vipgate_pid "$PID_B"
summary
