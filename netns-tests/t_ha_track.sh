#!/usr/bin/env bash
# netns-tests/run: alone (its timings or load figures need an otherwise idle machine)
# Health tracking ([[vrrp.track]]) between two vipgate nodes (100 ms adverts, preempt on):
# node a (priority 150) routes to backend be1 alone and tracks its pool; node b (100) routes to
# be2. Killing be1 (by PID) makes a's health checks mark the pool down: with `weight = 100` a
# advertises 50 and b takes over; with no weight a gives up at once (priority 0, fault). When
# be1 comes back, a takes the VIP back. A reload that changes only the tracks keeps the
# election running. A listener a cannot bind (the port is taken) keeps it in fault until the
# port is free. The prober on the client shows which node answers; exactly one node answers
# ARP after each change. Bounds are generous: detection takes the health checks' 2 × 200 ms,
# then one advert interval, then b's Master_Down_Interval (361 ms).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

lan_up 2
lb2_up
A=$LB_IP B=$LB2_IP
mac_a=$(ns_mac "$NS_LB") mac_b=$(ns_mac "$NS_LB2")
health=('[pool.web.health]' 'type = "tcp"' 'interval_ms = 200' 'timeout_ms = 100'
  'unhealthy_threshold = 2' 'healthy_threshold = 2')
cfg_a=$VG_TMP/a.toml cfg_a_fault=$VG_TMP/a-fault.toml cfg_a_listen=$VG_TMP/a-listen.toml
cfg_b=$VG_TMP/b.toml
HA_BACKEND=${BE_IP[0]}:$BACKEND_PORT
ha_config "$cfg_a" 150 '[[vrrp.track]]' 'pool = "web"' 'weight = 100' "${health[@]}"
ha_config "$cfg_a_fault" 150 '[[vrrp.track]]' 'pool = "web"' "${health[@]}"
ha_config "$cfg_a_listen" 150 '[[vrrp.track]]' 'listeners = true'
HA_BACKEND=${BE_IP[1]}:$BACKEND_PORT
ha_config "$cfg_b" 100 '[[vrrp.track]]' 'pool = "web"' 'weight = 10' "${health[@]}"
note "node a: $A $mac_a priority 150, pool web = ${BE_NAME[0]}; node b: $B $mac_b priority 100, pool web = ${BE_NAME[1]}"

metric_a() { metric_prefix_of "$(metrics_in "$NS_LB")" "$1"; } # SERIES-PREFIX: node a's value

section "both healthy: a is master"
# Node a tells a real sd_notify socket its status line (systemctl status shows it).
notify_start || abort "the notify socket is bound"
VG_RUN_ENV=(NOTIFY_SOCKET="$NOTIFY_SOCK")
start_a "$cfg_a"
VG_RUN_ENV=()
wait_state "$LOG_A" Master 30 || abort "node a becomes master"
start_vipgate_in "$NS_LB2" "$cfg_b" || abort "node b starts"
PID_B=$VG_PID LOG_B=$VG_LOG
wait_state "$LOG_B" Backup 30 || abort "node b becomes backup"
sleep 1
one_owner "a master" "$mac_a"
assert_eq "a advertises its configured priority" 150 "$(metric_a 'vipgate_vrrp_priority{')"
assert_eq "a's tracked pool is not failed" 0 "$(metric_a 'vipgate_vrrp_track_failed{vrid="51",track="pool:web"}')"

section "a's only backend dies (weight 100): b takes over"
probe_start 8
sleep 1
backend_kill 0
wait_state "$LOG_B" Master 60 || fail "node b becomes master within 6 s of be1's death"
wait_state "$LOG_A" Backup 30 || fail "node a yields to b"
probe_settled_outage "$A" "$B" "be1 killed, a lowered to 50, b took over" 5000
assert_eq "a advertises 150 - 100" 50 "$(metric_a 'vipgate_vrrp_priority{')"
assert_eq "a's tracked pool is failed" 1 "$(metric_a 'vipgate_vrrp_track_failed{vrid="51",track="pool:web"}')"
wait_log "$LOG_A" 'tracked condition failed.*track=pool:web' 1 || fail "a logged the failed condition"
wait_log "$LOG_A" 'VRRP priority changed.*priority=50' 1 || fail "a logged its new priority"
one_owner "b took over" "$mac_b"
if notify_wait 1 'STATUS=.*vrrp backup, priority 50\).*tracking failed: pool:web' 30; then
  pass "a's status line shows it is backup at priority 50 with pool:web failed"
else
  fail "a's status line shows it is backup at priority 50 with pool:web failed: $(tail -n 3 "$NOTIFY_FILE")"
fi
mastered=$(notify_count 'STATUS=.*vrrp master, priority 150\)')

section "be1 comes back: a takes the VIP back (preempt)"
probe_start 8
sleep 0.5
backend_spawn 0
wait_state "$LOG_A" Master 60 || fail "node a becomes master again within 6 s"
wait_state "$LOG_B" Backup 30 || fail "node b yields"
probe_settled_outage "$B" "$A" "be1 back, a preempted b" 3000
assert_eq "a advertises 150 again" 150 "$(metric_a 'vipgate_vrrp_priority{')"
assert_eq "a's tracked pool cleared" 0 "$(metric_a 'vipgate_vrrp_track_failed{vrid="51",track="pool:web"}')"
one_owner "a took back" "$mac_a"
if notify_wait $((mastered + 1)) 'STATUS=.*vrrp master, priority 150\)' 30; then
  pass "a's status line shows it is master at priority 150 again"
else
  fail "a's status line shows it is master at priority 150 again: $(tail -n 3 "$NOTIFY_FILE")"
fi

section "reload to the fault variant (no weight) keeps the election"
cp "$cfg_a_fault" "$cfg_a"
VG_LOG=$LOG_A VG_PID=$PID_A
transitions_before=$(metric_a 'vipgate_vrrp_transitions_total{')
reload_vipgate || fail "node a reloads: $RELOAD_LINE"
wait_log "$LOG_A" 'VRRP tracking reloaded' 20 || fail "a applied the new tracks"
sleep 0.5
assert_eq "the election was not restarted (no new transition)" "$transitions_before" \
  "$(metric_a 'vipgate_vrrp_transitions_total{')"
assert_eq "a is still master" Master "$(vrrp_state "$LOG_A")"

section "a's only backend dies (fault): a gives up mastership at once"
probe_start 8
sleep 1
backend_kill 0
wait_state "$LOG_A" Fault 60 || fail "node a enters Fault within 6 s of be1's death"
wait_state "$LOG_B" Master 30 || fail "node b takes over"
probe_settled_outage "$A" "$B" "be1 killed, a in fault, b took over" 5000
assert_eq "a advertises nothing (priority 0)" 0 "$(metric_a 'vipgate_vrrp_priority{')"
assert_eq "a's state is fault" 1 "$(metric_a 'vipgate_vrrp_state{vrid="51",state="fault",family="ipv4"}')"
sleep 1.5
assert_eq "a stays in fault while be1 is down" Fault "$(vrrp_state "$LOG_A")"
one_owner "b took over from a in fault" "$mac_b"
assert_eq "node a has no local route for the VIP" "" "$(local_route)"

section "be1 comes back: a leaves fault and takes the VIP back"
probe_start 8
sleep 0.5
backend_spawn 0
wait_state "$LOG_A" Master 60 || fail "node a becomes master again within 6 s"
wait_state "$LOG_B" Backup 30 || fail "node b yields"
probe_settled_outage "$B" "$A" "be1 back, a out of fault, preempted b" 3000
one_owner "a took back after the fault" "$mac_a"
stop_vipgate_pid "$PID_A"

section "listeners = true: a listener a cannot bind keeps it in fault until the port is free"
wait_state "$LOG_B" Master 30 || fail "node b is master after a stopped"
# VIP:80 listened on by another process in a's namespace (as vipgate binds it: SO_REUSEADDR,
# which TIME_WAIT left by the earlier runs needs, and IP_FREEBIND): vipgate's bind fails.
# The stopped node's socket can linger a moment on a loaded machine: retry the bind for up to
# 10 s and say when it is held, so the test never starts a before the port is really taken.
held=$VG_TMP/port-held
ip netns exec "$NS_LB" "$VG_PYTHON" -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_IP, 15, 1)
for _ in range(100):
    try:
        s.bind((sys.argv[1], 80)); break
    except OSError:
        time.sleep(0.1)
s.listen(); open(sys.argv[2], "w").close(); time.sleep(60)' "$VIP" "$held" &
holder=$!
vg_track "$holder"
for _ in $(seq 100); do [[ -e $held ]] && break; sleep 0.1; done
[[ -e $held ]] || fail "another process holds VIP:80 in a's namespace"
start_a "$cfg_a_listen"
wait_log "$LOG_A" 'listener failed' 20 || fail "a logged that its listener failed"
wait_state "$LOG_A" Fault 20 || fail "a starts in fault"
sleep 1
assert_eq "a stays in fault while the port is taken" Fault "$(vrrp_state "$LOG_A")"
assert_not_contains "a never became master" "$(vg_log_text)" "to=Master"
assert_eq "listeners condition is failed" 1 "$(metric_a 'vipgate_vrrp_track_failed{vrid="51",track="listeners"}')"
one_owner "b stays the owner" "$mac_b"
kill_pid "$holder"
wait_log "$LOG_A" 'listener no longer failed' 30 || fail "a binds its listener once the port is free"
wait_state "$LOG_A" Master 40 || fail "a leaves fault and takes the VIP back"
wait_state "$LOG_B" Backup 30 || fail "node b yields"
sleep 0.5
one_owner "a took back once its listener served" "$mac_a"
http "$HA_HOST" /
assert_eq "a serves the VIP" "200 $A" "$HTTP_CODE $(sed -n 's/.* peer=\([0-9.]*\).*/\1/p' <<<"$HTTP_BODY")"

stop_vipgate_pid "$PID_A"
stop_vipgate_pid "$PID_B"
summary
