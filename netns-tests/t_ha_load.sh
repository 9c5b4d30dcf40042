#!/usr/bin/env bash
# netns-tests/run: alone (its timings or load figures need an otherwise idle machine)
# VRRP never flaps under vipgate's own load (issue 19). Two nodes at LOAD_ADVERT (10 ms)
# adverts; wrk saturates the master's proxy through the VIP for LOAD_SECONDS (15 s: both
# cores busy with wrk, the master's workers and the backend) to a backend that is itself a
# vipgate answering every request at once (a redirect_https listener: fast enough that the
# proxy, not the backend, is the bottleneck; backend.py is not). Neither node may
# change state (vipgate_vrrp_transitions_total from each admin listener), and ARP for the
# VIP is answered throughout. Then STARTS simultaneous starts, the lower-priority node always
# spawned first (by 0 to 100 ms): it must never become master, not even for a moment.
# Before the elections ran on their own threads (with the proxy's first worker) the load
# section failed at 10 ms adverts; without start-up listening the starts did.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

LOAD_ADVERT=${LOAD_ADVERT:-10ms}
LOAD_SECONDS=${LOAD_SECONDS:-15}
LEADS=${LEADS:-0 0 0.02 0.05 0.1} # how long before node a node b is spawned, per start

lan_up 1
lb2_up
mac_a=$(ns_mac "$NS_LB") mac_b=$(ns_mac "$NS_LB2")
HA_ADVERT=$LOAD_ADVERT
HA_BACKEND=${BE_IP[0]}:8081
cat >"$VG_TMP/backend.toml" <<EOC
[[listener]]
bind = "$HA_BACKEND"
redirect_https = 301
[admin]
enabled = false
EOC
start_vipgate_in "${BE_NS[0]}" "$VG_TMP/backend.toml" || abort "the backend vipgate starts"
cfg_a=$VG_TMP/a.toml cfg_b=$VG_TMP/b.toml
ha_config "$cfg_a" 150
ha_config "$cfg_b" 100
note "node a priority 150, node b priority 100, adverts every $LOAD_ADVERT"

transitions() { # NS: the node's VRRP transitions since it started (every family), or nothing
  in_ns "$1" curl -s --max-time 10 http://127.0.0.1:9901/metrics |
    awk '/^vipgate_vrrp_transitions_total\{/ { n += $2; seen = 1 } END { if (seen) print n }' || true
}
state_changes() { sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -c "VRRP state changed" || true; }

section "the master's proxy saturated through the VIP for $LOAD_SECONDS s"
start_vipgate_in "$NS_LB" "$cfg_a" || abort "node a starts"
PID_A=$VG_PID LOG_A=$VG_LOG
wait_state "$LOG_A" Master 30 || abort "node a alone becomes master"
start_vipgate_in "$NS_LB2" "$cfg_b" || abort "node b starts"
PID_B=$VG_PID LOG_B=$VG_LOG
wait_state "$LOG_B" Backup 30 || abort "node b becomes backup"
sleep 1
assert_match "the VRRP threads' scheduling is logged" \
  "$(sed 's/\x1b\[[0-9;]*m//g' "$LOG_A" | grep -m1 'scheduling priority' || true)" '.*priority=.*'
ta0=$(transitions "$NS_LB") tb0=$(transitions "$NS_LB2")
la0=$(state_changes "$LOG_A") lb0=$(state_changes "$LOG_B")
assert_match "node a's /metrics has its transitions" "$ta0" '[0-9]+'
assert_match "node b's /metrics has its transitions" "$tb0" '[0-9]+'

wrk_out=$VG_TMP/wrk.out
# A fixed duration: wrk ignores SIGINT in the background (see t_reload.sh).
in_client wrk -t2 -c200 -d"${LOAD_SECONDS}s" --timeout 5s -H "Host: $HA_HOST" "http://$VIP/" >"$wrk_out" 2>&1 &
wrk_pid=$!
vg_track "$wrk_pid"
sleep 2
# ARP for the VIP while the master is saturated: every request answered, by node a alone.
arp_out=$(in_client arping -c 5 -w 8 -I eth0 "$VIP" 2>&1 || true)
vg_wait_gone $(((LOAD_SECONDS + 10) * 10)) "$wrk_pid" || true
wait "$wrk_pid" || true
vg_forget "$wrk_pid"
sed 's/^/   | /' "$wrk_out"
requests=$(sed -n 's/^ *\([0-9]\+\) requests in .*/\1/p' "$wrk_out")
if [[ $requests =~ ^[0-9]+$ ]] && ((requests > 10000)); then
  pass "wrk loaded the master: $requests requests in $LOAD_SECONDS s"
else
  fail "wrk loaded the master: ${requests:-no} requests"
fi
assert_eq "no socket errors (connect, read, write, timeout)" "" "$(grep -i 'socket errors' "$wrk_out" || true)"
replies=$(grep -c 'reply from' <<<"$arp_out" || true)
assert_eq "5 ARP requests for the VIP answered under load ($(grep -m1 -o 'Received.*' <<<"$arp_out" || true))" 5 "$replies"
assert_eq "ARP under load answered by node a alone" "$mac_a" \
  "$(sed -n 's/.*reply from [0-9.]* \[\([0-9A-Fa-f:]*\)\].*/\1/p' <<<"$arp_out" | tr 'A-F' 'a-f' | sort -u | paste -sd' ' -)"
ta1=$(transitions "$NS_LB") tb1=$(transitions "$NS_LB2")
assert_eq "node a made no VRRP transition under its own load (vipgate_vrrp_transitions_total $ta0 -> $ta1)" "$ta0" "$ta1"
assert_eq "node b made no VRRP transition while a was loaded (vipgate_vrrp_transitions_total $tb0 -> $tb1)" "$tb0" "$tb1"
assert_eq "node a logged no change of state under load" "$la0" "$(state_changes "$LOG_A")"
assert_eq "node b logged no change of state under load" "$lb0" "$(state_changes "$LOG_B")"
assert_eq "node a is still master" Master "$(vrrp_state "$LOG_A")"
stop_vipgate_pid "$PID_A"
stop_vipgate_pid "$PID_B"

section "simultaneous starts: the lower-priority node is never master"
n=0 wrong=0
for lead in $LEADS; do
  n=$((n + 1))
  spawn_vipgate_in "$NS_LB2" "$cfg_b"
  PID_B=$VG_PID LOG_B=$VG_LOG
  sleep "$lead"
  spawn_vipgate_in "$NS_LB" "$cfg_a"
  PID_A=$VG_PID LOG_A=$VG_LOG
  wait_vipgate_ready "$PID_B" "$LOG_B" || abort "node b starts ($n)"
  wait_vipgate_ready "$PID_A" "$LOG_A" || abort "node a starts ($n)"
  wait_state "$LOG_A" Master 50 || fail "start $n: node a becomes master"
  wait_state "$LOG_B" Backup 50 || fail "start $n: node b is backup"
  sleep 0.3
  if sed 's/\x1b\[[0-9;]*m//g' "$LOG_B" | grep -q 'VRRP state changed.* to=Master'; then
    wrong=$((wrong + 1))
    note "start $n (b ${lead}s ahead): node b was master first:"
    sed 's/\x1b\[[0-9;]*m//g' "$LOG_B" | grep 'VRRP state changed' | sed 's/^/   | /'
  fi
  stop_vipgate_pid "$PID_A"
  stop_vipgate_pid "$PID_B"
done
assert_eq "of $n starts with node b spawned first ($LEADS s ahead), node b was master in none" 0 "$wrong"
one_owner_after=$(arp_mac "$VIP")
assert_eq "nobody answers ARP for the VIP once both stopped" "" "$one_owner_after"
note "node b: $mac_b"
summary
