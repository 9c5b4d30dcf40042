#!/usr/bin/env bash
# netns-tests/run: alone (failover times, spread and a SIGTERM under load need an idle machine)
# BGP mode: two vipgate nodes announce the VIP 203.0.113.10 (announce = "bgp") through their
# own BIRD 2 (scripts/bird-vipgate.conf) to a router running BIRD with `merge paths` (one
# multipath kernel route) and BFD at 100 ms x 3; the client is behind the router, hashing on
# ports (fib_multipath_hash_policy=1). Checks: one next hop per healthy node, no ARP for the
# VIP, flows from many source ports spread over both nodes, the same client IP reaching the
# same backend (Maglev on client_ip) through either node, a node whose pool goes unhealthy
# withdrawing and getting no new flows, BIRD restarted (and its protocol disabled by hand)
# re-learning the announcement, SIGTERM of a node under a bounded load with no failed request,
# `vipgate status` announced and withdrawn, and the router dropping a node whose link went down
# (BFD, well before the 9 s hold time; the
# time against the 1 s goal is scripts/bgp-bench's). Each BIRD has its own
# config and control socket under the test's temp dir and is stopped by PID.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
command -v bird >/dev/null || abort "bird is installed (Debian bird2; scripts/test installs it)"

bgp_fabric_up 2
VIP=$BGP_VIP
N1=$LB_IP N2=$LB2_IP
slow_pids=()
BOTH="$N1 $N2"

bgp_node_config "$VG_TMP/n1.toml" n1
bgp_node_config "$VG_TMP/n2.toml" n2
# Node 1's pool on a port nobody listens on: unhealthy.
bgp_node_config "$VG_TMP/n1-down.toml" n1 "\"${BE_IP[0]}:8099\""

notify_start || abort "the notify socket for node 1"
VG_RUN_ENV=("NOTIFY_SOCKET=$NOTIFY_SOCK")
start_vipgate_in "$NS_LB" "$VG_TMP/n1.toml" || abort "vipgate starts on node 1"
VG_RUN_ENV=()
LOG1=$VG_LOG PID1=$VG_PID
start_vipgate_in "$NS_LB2" "$VG_TMP/n2.toml" || abort "vipgate starts on node 2"
PID2=$VG_PID

# EXPECTED TENTHS DESC: the router's next hops become EXPECTED within TENTHS/10 s; the time
# since T0 (set before the change) is in the message.
hops_ok() {
  if wait_next_hops "$1" "$2"; then
    pass "$3: after $(($(now_ms) - t0)) ms"
  else
    fail "$3 (next hops '$(rt_next_hops)')"
  fi
}
metrics_of() { in_ns "$1" curl -s --max-time 5 http://127.0.0.1:9901/metrics || true; }
readyz_of() { in_ns "$1" curl -s --max-time 5 -w ' %{http_code}' http://127.0.0.1:9901/readyz || true; }

section "announced from both nodes"
if wait_next_hops "$BOTH" 150; then
  pass "the router has one next hop per node: $(rt_next_hops)"
else
  ip -n "$NS_RT" route show
  birdc_in rt show protocols
  abort "the router has both nodes as next hops for $VIP (got '$(rt_next_hops)')"
fi
assert_contains "the router's route is one multipath route" "$(ip -n "$NS_RT" route show "$VIP/32")" "nexthop via"
assert_eq "node 1 has the announcement in table 86, on its own device" "$VIP dev vipgate-bgp proto 86 scope link" \
  "$(ip -n "$NS_LB" route show table 86 | sed 's/ *$//')"
assert_contains "node 1 delivers the VIP locally" "$(local_route)" "local $VIP dev lo"
assert_eq "node 1 has the IPv6 VIP's /128 in table 86" "$BGP_VIP6 dev vipgate-bgp proto 86 metric 1024 pref medium" \
  "$(ip -n "$NS_LB" -6 route show table 86 | sed 's/ *$//')"
if notify_wait 1 "STATUS=.*$VIP \\(bgp announced\\)" 30; then
  pass "node 1's status line says announced"
else
  fail "node 1's status line says announced: $(tail -n 3 "$NOTIFY_FILE")"
fi
assert_contains "node 1's BIRD learned it" "$(birdc_in n1 show route "$VIP/32")" "[vipgate"
arp=$(in_ns "$NS_RT" arping -c 2 -w 2 -I eth0 "$VIP" 2>&1 || true)
assert_not_contains "nobody answers ARP for a BGP VIP" "$arp" "reply from"
assert_eq "node 1's /readyz" "ready 200" "$(readyz_of "$NS_LB" | tr -d '\n')"
m=$(metrics_of "$NS_LB")
assert_contains "node 1's metrics: announced" "$m" "vipgate_bgp_announced{vip=\"$VIP\"} 1"
assert_contains "node 1's metrics: state healthy" "$m" 'vipgate_bgp_state{state="healthy"} 1'
cfg=$(in_ns "$NS_LB" curl -s --max-time 5 http://127.0.0.1:9901/config || true)
assert_eq "node 1's /config shows the BGP VIPs and [bgp]" "bgp bgp 86 3 2" \
  "$(jget "$cfg" '" ".join([v["announce"] for v in d["vip"]] + [str(d["bgp"][k]) for k in ("table", "rise", "fall")])')"
sleep 1.2 # one look at BIRD (once a second)
m=$(metrics_of "$NS_LB")
assert_contains "node 1's metrics: its BIRD session" "$m" 'vipgate_bird_bgp_session_established{session="upstream"} 1'
vipgate_cmd status --json
assert_eq "vipgate status on node 1 exits 0 while announced" 0 "$CMD_RC"
assert_eq "its JSON: announced, both VIPs owned, the BIRD session up" "announced self self True" \
  "$(jget "$CMD_OUT" 'd["nodes"][0]["status"]["bgp"]["phrase"] + " " + " ".join(v["owner"] for v in d["nodes"][0]["status"]["vips"]) + " " + str(d["nodes"][0]["status"]["bgp"]["sessions"][0]["established"])')"

section "flows spread over the nodes"
probe_start 4
probe_wait
total=$(grep -c . "$PROBE_FILE" || true)
c1=$(awk -v ip="$N1" '$3 == ip' "$PROBE_FILE" | wc -l)
c2=$(awk -v ip="$N2" '$3 == ip' "$PROBE_FILE" | wc -l)
fails=$(grep -c 'fail:' "$PROBE_FILE" || true)
note "$total new connections: node 1 $c1, node 2 $c2, failed $fails"
assert_num "no probe failed" "$fails" -eq 0
assert_num "node 1 gets at least 30% of the flows" $((c1 * 100 / (total > 0 ? total : 1))) -ge 30
assert_num "node 2 gets at least 30% of the flows" $((c2 * 100 / (total > 0 ? total : 1))) -ge 30

section "one client IP, one backend, through either node"
same=0 both_nodes=0
for k in 1 2 3 4 5 6; do
  ip -n "$NS_CLIENT" addr add "198.51.100.$((20 + k))/24" dev eth1
done
for k in 1 2 3 4 5 6; do
  src=198.51.100.$((20 + k))
  seen=$(for _ in $(seq 16); do
    { in_client curl -s --max-time 3 --interface "$src" -H "Host: $HA_HOST" "http://$VIP/who" || true; } |
      sed -n 's/^backend=\([^ ]*\).* peer=\([0-9.]*\).*/\1 \2/p'
  done)
  backends=$(awk '{ print $1 }' <<<"$seen" | sort -u | paste -sd' ' -)
  nodes=$(awk '{ print $2 }' <<<"$seen" | sort -u | paste -sd' ' -)
  note "client $src: backends [$backends] through nodes [$nodes]"
  [[ $backends != *" "* && -n $backends ]] && same=$((same + 1))
  [[ $nodes == "$BOTH" ]] && both_nodes=$((both_nodes + 1))
done
assert_eq "each client IP reaches one backend, whichever node it went through" 6 "$same"
assert_num "some client IPs went through both nodes" "$both_nodes" -ge 2

section "a node whose pool goes unhealthy withdraws"
probe_start 6
p0=$(now_ms) # about when the prober started: its times are from its own start
sleep 0.5
cp "$VG_TMP/n1-down.toml" "$VG_TMP/n1.toml"
VG_LOG=$LOG1 VG_PID=$PID1
t0=$(now_ms)
reload_vipgate || fail "node 1 reloads: $RELOAD_LINE"
if wait_next_hops "$N2" 50; then
  pass "the router drops node 1 $(($(now_ms) - t0)) ms after its pool's backends went away (health 2 x 200 ms, fall 2 x 100 ms)"
else
  fail "the router drops node 1 (next hops '$(rt_next_hops)')"
fi
withdrawn_at=$(now_ms)
assert_eq "node 1's /readyz says why" "bgp: withdrawn (tracking: pool:web) 503" "$(readyz_of "$NS_LB" | tr -d '\n')"
assert_eq "node 1's table is empty" "" "$(ip -n "$NS_LB" route show table 86)"
vipgate_cmd status
assert_eq "vipgate status on node 1 exits 1 while withdrawn" 1 "$CMD_RC"
assert_contains "it says the BGP VIPs are withdrawn and why" "$CMD_OUT" "BGP: withdrawn (tracking: pool:web)"
assert_contains "it names the VIP nobody announces from here" "$CMD_OUT" "VIP $VIP is owned by no node this one sees"
if notify_wait 1 "STATUS=.*$VIP \\(bgp withdrawn \\(tracking: pool:web\\)\\)" 30; then
  pass "node 1's status line says withdrawn and why"
else
  fail "node 1's status line says withdrawn: $(tail -n 3 "$NOTIFY_FILE")"
fi
sleep 1.5
probe_stop
late=$(awk -v ip="$N1" -v t="$((withdrawn_at + 100 - p0))" '$1 > t && $3 == ip' "$PROBE_FILE" | wc -l)
after=$(awk -v t="$((withdrawn_at + 100 - p0))" '$1 > t' "$PROBE_FILE" | wc -l)
assert_num "no new flow reaches node 1 once withdrawn ($after probes after)" "$late" -eq 0
assert_num "the probes after it were answered" "$after" -gt 50
bgp_node_config "$VG_TMP/n1.toml" n1
t0=$(now_ms)
reload_vipgate || fail "node 1 reloads: $RELOAD_LINE"
hops_ok "$BOTH" 50 "node 1 announces again once its pool is back (rise 3 x 100 ms)"

section "BIRD restarted, or its protocol disabled, re-learns the announcement"
t0=$(now_ms)
bird_stop n1
hops_ok "$N2" 50 "BIRD on node 1 stopped: the router drops node 1"
bird_start "$NS_LB" n1 "$VG_TMP/bird-n1.conf" || abort "node 1's BIRD starts again"
t0=$(now_ms)
hops_ok "$BOTH" 150 "BIRD on node 1 restarted: node 1 announced again"
birdc_in n1 disable vipgate >/dev/null
t0=$(now_ms)
wait_next_hops "$N2" 50 || fail "birdc disable vipgate withdraws node 1"
hops_ok "$BOTH" 50 "vipgate enabled the protocol disabled by hand again: node 1 announced"
assert_num "vipgate logged it" "$(VG_LOG=$LOG1 vg_log_count 'kernel protocol for vipgate.s table was not up; enabled it')" -ge 1

section "a VIP removed by a reload: withdrawn at once, delivered for the drain time"
sed '1,3d' "$VG_TMP/n1.toml" >"$VG_TMP/n1-novip.toml"
cp "$VG_TMP/n1.toml" "$VG_TMP/n1-full.toml"
cp "$VG_TMP/n1-novip.toml" "$VG_TMP/n1.toml"
t0=$(now_ms)
reload_vipgate || fail "node 1 reloads without the VIP: $RELOAD_LINE"
hops_ok "$N2" 50 "the VIP left node 1's file: the router drops node 1"
assert_contains "node 1 still delivers it meanwhile" "$(local_route)" "local $VIP dev lo"
sleep 3.5 # drain_timeout_ms = 3000
assert_eq "and not after the drain time" "" "$(local_route)"
cp "$VG_TMP/n1-full.toml" "$VG_TMP/n1.toml"
t0=$(now_ms)
reload_vipgate || fail "node 1 reloads with the VIP: $RELOAD_LINE"
hops_ok "$BOTH" 50 "the VIP back in node 1's file: announced again"
assert_contains "and delivered again" "$(local_route)" "local $VIP dev lo"

section "SIGTERM of a node under load: withdraw, then drain"
# Ten 1.5 s requests in flight (about half of them through node 2), and the prober's new
# connection every 10 ms, across node 2's SIGTERM and its restart.
probe_start 6
for k in $(seq 10); do
  in_client curl -s --max-time 10 -o "$VG_TMP/slow.$k" -w '%{http_code}' -H "Host: $HA_HOST" \
    "http://$VIP/slow?ms=1500" >"$VG_TMP/slow.$k.code" 2>/dev/null &
  slow_pids+=("$!")
  vg_track "$!"
done
sleep 1
t0=$(now_ms)
kill -TERM "$PID2"
hops_ok "$N1" 50 "SIGTERM of node 2: the router drops it"
for p in "${slow_pids[@]}"; do
  wait "$p" || true
  vg_forget "$p"
done
ok=0 on2=0
for k in $(seq 10); do
  [[ $(cat "$VG_TMP/slow.$k.code") == 200 ]] && ok=$((ok + 1))
  grep -q "peer=$N2" "$VG_TMP/slow.$k" && on2=$((on2 + 1))
done
note "in-flight 1.5 s requests: $ok of 10 answered, $on2 of them by node 2 after its SIGTERM"
assert_eq "every request in flight at the SIGTERM is answered (drained)" 10 "$ok"
assert_num "some of them were on node 2" "$on2" -ge 1
vg_wait_gone 100 "$PID2" || fail "node 2 exits"
rc=0
wait "$PID2" || rc=$?
vg_forget "$PID2"
assert_eq "node 2 exits 0" 0 "$rc"
assert_eq "node 2's local route is gone after the drain" "" "$(ip -n "$NS_LB2" route show table local | grep "$VIP" || true)"
# Rolling restart: node 2 comes back while the prober runs.
start_vipgate_in "$NS_LB2" "$VG_TMP/n2.toml" || abort "vipgate starts again on node 2"
PID2=$VG_PID
hops_ok "$BOTH" 50 "node 2 restarted: announced again (time from its SIGTERM)"
probe_wait
fails=$(grep -c 'fail:' "$PROBE_FILE" || true)
total=$(grep -c . "$PROBE_FILE" || true)
note "prober: $fails failed of $total new connections across the withdrawal and the re-announcement"
grep 'fail:' "$PROBE_FILE" | head -n 5 | sed 's/^/   | /' || true
# Stateless ECMP: a connection whose first packets went to node 2 and whose next ones cross
# the router's change (withdrawal, or the re-announcement moving flows back) is reset by the
# other node. At one new connection per 10 ms that is at most one per change.
assert_num "at most one failed new connection per route change (two changes)" "$fails" -le 2

section "a node whose link goes down: BFD"
m=$(birdc_in rt show bfd sessions)
assert_contains "the router has BFD sessions" "$m" "Up"
probe_start 5
p0=$(now_ms)
sleep 1
t0=$(now_ms)
port_link lb2 down
if wait_next_hops "$N1" 50; then
  ms=$WAITED_MS
  note "link down of node 2: the router dropped it after $ms ms"
  if ((ms > 1000)); then
    note "over the 1 s goal; the router's BIRD said:"
    grep -iE 'bfd|n2' "$VG_TMP/bird-rt.log" | tail -n 6 | sed 's/^/   | /' || true
  fi
  # BFD, not the BGP hold time (9 s): the figure against the goal (< 1 s) is scripts/bgp-bench's.
  assert_num "BFD (100 ms x 3) drops node 2 long before the 9 s hold time" "$ms" -le 3000
else
  fail "the router drops node 2 after its link went down (next hops '$(rt_next_hops)')"
  grep -i bfd "$VG_TMP/bird-rt.log" | tail -n 5 | sed 's/^/   | /' || true
fi
probe_wait
out=$(awk -v ip="$N1" -v t="$((t0 + 1000 - p0))" '$1 > t && $3 == ip' "$PROBE_FILE" | wc -l)
assert_num "requests go on through node 1 after it" "$out" -gt 100
port_link lb2 up
hops_ok "$BOTH" 150 "node 2's link back: announced again (time from the link-down)"

section "vipgate killed (SIGKILL), its BIRD running"
t0=$(now_ms)
kill_pid "$PID2"
if wait_next_hops "$N1" 50; then
  note "SIGKILL of node 2's vipgate: the router dropped it after $WAITED_MS ms"
  assert_num "the announcement dies with vipgate (BIRD would keep it): dropped within 3 s" "$WAITED_MS" -le 3000
else
  fail "the router drops node 2 when its vipgate is killed (next hops '$(rt_next_hops)')"
fi
assert_eq "node 2's table is empty (its device went with the process)" "" "$(ip -n "$NS_LB2" route show table 86)"
start_vipgate_in "$NS_LB2" "$VG_TMP/n2.toml" || abort "vipgate starts again on node 2"
PID2=$VG_PID
hops_ok "$BOTH" 50 "node 2's vipgate restarted after its crash: announced again (time from the kill)"

section "a node killed (vipgate and BIRD: a crash)"
t0=$(now_ms)
kill_pid "$PID2"
bird_stop n2 KILL
if wait_next_hops "$N1" 50; then
  note "SIGKILL of node 2's vipgate and BIRD: the router dropped it after $WAITED_MS ms"
  assert_num "the router drops a killed node within 3 s" "$WAITED_MS" -le 3000
else
  fail "the router drops a killed node (next hops '$(rt_next_hops)')"
fi

VG_LOG=$LOG1 VG_PID=$PID1
stop_vipgate
assert_eq "node 1's table is empty after its stop" "" "$(ip -n "$NS_LB" route show table 86)"
summary
