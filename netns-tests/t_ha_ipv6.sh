#!/usr/bin/env bash
# netns-tests/run: alone (its timings or load figures need an otherwise idle machine)
# IPv6 VIPs. One node without [vrrp]: nobody answers Neighbor Solicitations for the VIP before
# vipgate runs (and the kernel stays silent even with the local route); while it runs the lb's
# MAC answers ndisc6, the unsolicited NA burst reaches the client, the solicited-node group
# is joined, curl -6 goes through [VIP]:80; SIGTERM removes the route. Two nodes with [vrrp]
# (VRRPv3 over IPv6, ff02::12): the master answers ndisc6; SIGKILL of the master moves the
# client's neighbour entry to the backup by its unsolicited NA alone, exactly one node answers
# afterwards, requests go through the new master, and its graceful stop releases the route.
# Dual stack with unicast peers (IPv4 and link-local IPv6): a node with an IPv4 and an IPv6
# VIP runs one virtual router per family, and both move on a stop. keepalived 2.2.7 over IPv6 (multicast) as a peer: a vipgate backup of a keepalived master
# takes over on its priority 0 advert, and keepalived backs up a vipgate master.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

GARP_COUNT=3

lan_up 1
lb2_up
lan_v6_up || abort "IPv6 addresses and link-local addresses are ready"
mac_a=$(ns_mac "$NS_LB") mac_b=$(ns_mac "$NS_LB2")
note "node a: $LB_IP6 $mac_a; node b: $LB2_IP6 $mac_b; VIP $VIP6"

# FILE [LINE...]: an IPv6 VIP, HTTP on [VIP6]:80 to the IPv4 backend; each LINE is appended.
v6_config() {
  local file=$1 line
  shift
  cat >"$file" <<EOC
[[vip]]
address = "$VIP6"
interface = "eth0"
garp_count = $GARP_COUNT
garp_interval_ms = 100

[[listener]]
bind = "[$VIP6]:80"

[[host]]
names = ["$HA_HOST"]
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["${BE_IP[0]}:$BACKEND_PORT"]
EOC
  for line in "$@"; do printf '%s\n' "$line" >>"$file"; done
}
# One request to [VIP6]:80; prints "CODE PEER" (PEER: the node that proxied it, per backend.py).
get6() {
  local out
  out=$(in_client curl -6 -sS --max-time 5 -H "Host: $HA_HOST" -w '\n%{http_code}' "http://[$VIP6]/" 2>&1) || true
  printf '%s %s\n' "$(tail -n 1 <<<"$out")" "$(sed -n 's/.* peer=\([0-9a-f.:]*\).*/\1/p' <<<"$out" | head -n 1)"
}
# FILE MAC: unsolicited NAs for VIP6 (to ff02::1, override, not solicited) from MAC in a capture.
unsolicited_from() {
  grep -cE "^$2 > 33:33:00:00:00:01, .* $VIP6 > ff02::1: .*neighbor advertisement, .*tgt is $VIP6, Flags \[override\]" "$1" || true
}

section "one node, no [vrrp]: before vipgate starts"
cfg=$VG_TMP/single.toml
v6_config "$cfg"
assert_eq "nobody answers NS for the VIP" "" "$(ndp_mac "$VIP6")"
ip -n "$NS_LB" -6 route add local "$VIP6/128" dev lo table local
assert_eq "with only a local route in the lb, its kernel does not answer NS for the VIP" "" "$(ndp_mac "$VIP6")"
ip -n "$NS_LB" -6 route del local "$VIP6/128" dev lo table local

section "one node: vipgate running"
capture_start "$NS_CLIENT" -v icmp6 || abort "tcpdump listens in the client namespace"
# An entry for the VIP that is not the lb: the burst must override it (its MAC is nobody's).
ip -n "$NS_CLIENT" -6 neigh replace "$VIP6" lladdr 02:00:00:00:99:99 dev eth0 nud stale
start_vipgate "$cfg" || abort "vipgate starts and logs ready"
for ((i = 0; i < 30; i++)); do
  (($(unsolicited_from "$CAP_FILE" "$mac_a") >= GARP_COUNT)) && break
  sleep 0.1
done
assert_num "client saw the unsolicited NA burst from $mac_a (garp_count = $GARP_COUNT)" \
  "$(unsolicited_from "$CAP_FILE" "$mac_a")" -ge "$GARP_COUNT"
assert_contains "the burst overrode the client's stale entry" "$(client_neigh6)" "lladdr $mac_a"
capture_stop
assert_eq "the lb's local route for the VIP is installed with proto 86" \
  "local $VIP6 dev lo proto 86 metric 1024 pref medium" "$(local_route6 "$NS_LB")"
assert_contains "the lb joined the VIP's solicited-node group MAC" \
  "$(ip -n "$NS_LB" maddr show dev eth0)" "link  33:33:ff:00:02:00"
# Bound to IPv6 (86dd), not to every protocol (0003): the kernel neither clones the frames the
# lb sends for it nor hands it the IPv4 the proxy carries.
# shellcheck disable=SC2016 # awk's fields, literal here
assert_eq "the lb's packet sockets: one, SOCK_RAW, bound to IPv6" "3 86dd" \
  "$(in_lb awk 'NR > 1 { print $3, $4 }' /proc/net/packet)"
capture_start "$NS_CLIENT" -v icmp6 || abort "tcpdump listens in the client namespace"
assert_eq "ndisc6 resolves the VIP to the lb's MAC" "$mac_a" "$(ndp_mac "$VIP6")"
capture_stop
assert_num "the answer is solicited with override, unicast to the client" \
  "$(grep -cE "^$mac_a > 02:00:c0:00:02:0a, .* $VIP6 > fe80::[0-9a-f:]+: .*neighbor advertisement, .*tgt is $VIP6, Flags \[solicited, override\]" "$CAP_FILE" || true)" -ge 1
assert_eq "curl -6 through [VIP]:80 reaches the backend via the lb" "200 $LB_IP" "$(get6)"
ip -n "$NS_CLIENT" -6 neigh flush dev eth0
assert_eq "the client's kernel resolves the VIP itself for a new connection" "200 $LB_IP" "$(get6)"
assert_contains "and its neighbour entry is the lb's MAC" "$(client_neigh6)" "lladdr $mac_a"
stop_vipgate
assert_eq "SIGTERM removes the local route" "" "$(local_route6 "$NS_LB")"
assert_not_contains "and leaves the solicited-node group" \
  "$(ip -n "$NS_LB" maddr show dev eth0)" "33:33:ff:00:02:00"
assert_eq "nobody answers NS for the VIP after the stop" "" "$(ndp_mac "$VIP6")"

section "two nodes, VRRPv3 over IPv6"
cfg_a=$VG_TMP/a.toml cfg_b=$VG_TMP/b.toml
v6_config "$cfg_a" '[vrrp]' "vrid = $HA_VRID" 'priority = 150' 'advert_interval = "100ms"'
v6_config "$cfg_b" '[vrrp]' "vrid = $HA_VRID" 'priority = 100' 'advert_interval = "100ms"'
capture_start "$NS_CLIENT" -v 'ip6 proto 112' || abort "tcpdump listens for VRRP"
start_vipgate_in "$NS_LB" "$cfg_a" || abort "node a starts"
PID_A=$VG_PID LOG_A=$VG_LOG
wait_state "$LOG_A" Master 30 || abort "node a alone becomes master within 3 s"
pass "node a alone becomes master"
start_vipgate_in "$NS_LB2" "$cfg_b" || abort "node b starts"
PID_B=$VG_PID LOG_B=$VG_LOG
wait_state "$LOG_B" Backup 30 || abort "node b becomes backup"
sleep 1
capture_stop
assert_eq "node b stays backup next to the higher-priority master" Backup "$(vrrp_state "$LOG_B")"
ll_a=$(ip -n "$NS_LB" -6 addr show dev eth0 scope link | sed -n 's/.*inet6 \(fe80::[0-9a-f:]*\)\/.*/\1/p' | head -n 1)
assert_num "adverts go from a's link-local address $ll_a to ff02::12 with hop limit 255" \
  "$(grep -cE "^$mac_a > 33:33:00:00:00:12, .*hlim 255, next-header VRRP \(112\).* $ll_a > ff02::12: VRRPv3, Advertisement, vrid $HA_VRID, prio 150, intvl 10cs, length 24, addrs: $VIP6" "$CAP_FILE" || true)" -ge 5
assert_eq "node b sends no adverts as backup" 0 \
  "$(grep -cE "^$mac_b > 33:33:00:00:00:12" "$CAP_FILE" || true)"
assert_eq "exactly one node (a) answers NS for the VIP" "$mac_a" "$(ndp_mac "$VIP6")"
assert_eq "requests to the VIP go through node a" "200 $LB_IP" "$(get6)"
assert_contains "the client's neighbour entry for the VIP is a's MAC" "$(client_neigh6)" "lladdr $mac_a"
assert_eq "node b has no local route for the VIP" "" "$(local_route6 "$NS_LB2")"

section "SIGKILL of the master"
capture_start "$NS_CLIENT" -v icmp6 || abort "tcpdump listens in the client namespace"
t0=$(now_ms)
kill_pid "$PID_A"
wait_state "$LOG_B" Master 30 || abort "node b becomes master within 3 s of the kill"
note "node b master $(($(now_ms) - t0)) ms after the kill (Master_Down_Interval at 100 ms, priority 100: 361 ms)"
for ((i = 0; i < 30; i++)); do
  (($(unsolicited_from "$CAP_FILE" "$mac_b") >= GARP_COUNT)) && break
  sleep 0.1
done
capture_stop
assert_num "node b sent its unsolicited NA burst" "$(unsolicited_from "$CAP_FILE" "$mac_b")" -ge "$GARP_COUNT"
# Checked before the client sends anything: only the unsolicited NA (override) can have moved it.
assert_eq "the client sent no NS for the VIP in between" 0 \
  "$(grep -cE "02:00:c0:00:02:0a > .*neighbor solicitation, .*who has $VIP6" "$CAP_FILE" || true)"
assert_contains "the client's neighbour entry moved to b's MAC by the NA alone" "$(client_neigh6)" "lladdr $mac_b"
assert_eq "exactly one node (b) answers NS for the VIP (a's kernel keeps its stale route silent)" \
  "$mac_b" "$(ndp_mac "$VIP6")"
assert_eq "requests to the VIP go through node b" "200 $LB2_IP" "$(get6)"
assert_eq "node b has the local route" "local $VIP6 dev lo proto 86 metric 1024 pref medium" \
  "$(local_route6 "$NS_LB2")"


section "the master comes back and preempts"
probe_start 5 "[$VIP6]:80"
probe_until "$LB2_IP" 30 5 || fail "the prober gets answers through b before a returns"
start_a "$cfg_a"
wait_state "$LOG_A" Master 30 || abort "node a preempts within 3 s"
wait_state "$LOG_B" Backup 10 || abort "node b yields"
probe_wait
probe_outage "$LB2_IP" "$LB_IP"
assert_outage "node a returns and preempts b (IPv6 prober)" 1500
assert_contains "the client's neighbour entry moved back to a's MAC" "$(client_neigh6)" "lladdr $mac_a"
assert_eq "exactly one node (a) answers NS for the VIP" "$mac_a" "$(ndp_mac "$VIP6")"
assert_eq "node b gave up its local route" "" "$(local_route6 "$NS_LB2")"

section "graceful stop of the master hands over"
probe_start 4 "[$VIP6]:80"
probe_until "$LB_IP" 30 5 || fail "the prober gets answers through a before its stop"
VG_LOG=$LOG_A
stop_vipgate_pid "$PID_A"
probe_wait
probe_outage "$LB_IP" "$LB2_IP"
assert_outage "SIGTERM of master a, b takes over (IPv6 prober)" 1000
assert_eq "node b is master" Master "$(vrrp_state "$LOG_B")"
assert_match "node a released the VIP after seeing b's unsolicited NA" \
  "$(vg_log_count 'the successor announced the VIPs')" "[1-9][0-9]*"
assert_eq "node a's local route is gone" "" "$(local_route6 "$NS_LB")"
assert_eq "exactly one node (b) answers NS for the VIP" "$mac_b" "$(ndp_mac "$VIP6")"

section "SIGKILL of the master under load"
start_a "$cfg_a"
wait_state "$LOG_A" Master 30 || abort "node a preempts again"
sleep 0.5
probe_start 5 "[$VIP6]:80"
probe_until "$LB_IP" 30 5 || fail "the prober gets answers through a before the kill"
kill_pid "$PID_A"
probe_wait
probe_outage "$LB_IP" "$LB2_IP"
assert_outage "SIGKILL of master a, b takes over (IPv6 prober)" 1500
assert_eq "exactly one node (b) answers NS for the VIP" "$mac_b" "$(ndp_mac "$VIP6")"

section "graceful stop of the last node"
VG_PID=$PID_B VG_LOG=$LOG_B
stop_vipgate
assert_eq "SIGTERM of master b removes its local route" "" "$(local_route6 "$NS_LB2")"
assert_eq "nobody answers NS for the VIP" "" "$(ndp_mac "$VIP6")"

section "dual stack with unicast peers: one virtual router per family"
ll_b=$(ip -n "$NS_LB2" -6 addr show dev eth0 scope link | sed -n 's/.*inet6 \(fe80::[0-9a-f:]*\)\/.*/\1/p' | head -n 1)
cfg_a2=$VG_TMP/a-dual.toml cfg_b2=$VG_TMP/b-dual.toml
for f in "$cfg_a2" "$cfg_b2"; do
  v6_config "$f" '[[vip]]' "address = \"$VIP\"" 'interface = "eth0"' \
    '[[listener]]' "bind = \"$VIP:80\""
done
printf '[vrrp]\nvrid = %s\npriority = 150\nadvert_interval = "100ms"\npeers = ["%s", "%s"]\n' \
  "$HA_VRID" "$LB2_IP" "$ll_b" >>"$cfg_a2"
printf '[vrrp]\nvrid = %s\npriority = 100\nadvert_interval = "100ms"\npeers = ["%s", "%s"]\n' \
  "$HA_VRID" "$LB_IP" "$ll_a" >>"$cfg_b2"
capture_start "$NS_LB2" -v 'ip proto 112 or ip6 proto 112' || abort "tcpdump listens for VRRP on node b"
start_vipgate_in "$NS_LB" "$cfg_a2" || abort "node a (dual stack) starts"
PID_A=$VG_PID LOG_A=$VG_LOG
start_vipgate_in "$NS_LB2" "$cfg_b2" || abort "node b (dual stack) starts"
PID_B=$VG_PID LOG_B=$VG_LOG
wait_state "$LOG_A" Master 30 || abort "node a becomes master"
sleep 1
capture_stop
assert_eq "node a runs two virtual routers, IPv4 and IPv6" 'family="IPv4" family="IPv6"' \
  "$(vg_log_text | grep 'VRRP started' | grep -o 'family="IPv[46]"' | paste -sd' ' -)"
assert_num "node a advertises over IPv4 to b's address $LB2_IP, the IPv4 VIP alone" \
  "$(grep -cE "^ +$LB_IP > $LB2_IP: VRRPv3, Advertisement, vrid $HA_VRID, prio 150, .*addrs: $VIP\$" "$CAP_FILE" || true)" -ge 5
assert_num "and over IPv6 to b's link-local $ll_b, hop limit 255, the IPv6 VIP alone" \
  "$(grep -cE "^$mac_a > $mac_b, .*hlim 255, next-header VRRP \(112\).* $ll_a > $ll_b: VRRPv3, Advertisement, vrid $HA_VRID, prio 150, .*addrs: $VIP6\$" "$CAP_FILE" || true)" -ge 5
assert_eq "neither of b's virtual routers became master (it accepts a's unicast adverts)" 0 \
  "$(sed 's/\x1b\[[0-9;]*m//g' "$LOG_B" | grep -c 'VRRP state changed .*to=Master' || true)"
assert_eq "node b logged no dropped advert" 0 \
  "$(sed 's/\x1b\[[0-9;]*m//g' "$LOG_B" | grep -cE 'dropped|invalid VRRP' || true)"
assert_eq "node a answers ARP for the IPv4 VIP" "$mac_a" "$(arp_mac "$VIP")"
assert_eq "and NS for the IPv6 VIP" "$mac_a" "$(ndp_mac "$VIP6")"
vrrp_series() { # NAMESPACE STATE: the families whose router /metrics shows in STATE
  in_ns "$1" curl -s --max-time 5 http://127.0.0.1:9901/metrics |
    sed -n "s/^vipgate_vrrp_state{vrid=\"$HA_VRID\",state=\"$2\",family=\"\(ipv[46]\)\"} 1\$/\1/p" | paste -sd' ' -
}
assert_eq "a's /metrics: both families' routers are master" "ipv4 ipv6" "$(vrrp_series "$NS_LB" master)"
assert_eq "b's /metrics: both families' routers are backup" "ipv4 ipv6" "$(vrrp_series "$NS_LB2" backup)"
VG_LOG=$LOG_A
stop_vipgate_pid "$PID_A"
wait_state "$LOG_B" Master 10 || abort "node b takes over"
assert_eq "both of b's virtual routers became master" 2 \
  "$(sed 's/\x1b\[[0-9;]*m//g' "$LOG_B" | grep -c 'VRRP state changed from=Backup to=Master')"
assert_eq "node b answers ARP for the IPv4 VIP" "$mac_b" "$(arp_mac "$VIP")"
assert_eq "and NS for the IPv6 VIP" "$mac_b" "$(ndp_mac "$VIP6")"
VG_LOG=$LOG_B
stop_vipgate_pid "$PID_B"

section "keepalived over IPv6 as the master of a vipgate backup"
command -v keepalived >/dev/null || abort "keepalived is installed (scripts/test installs it)"
ka_high=$VG_TMP/ka6-200.conf ka_low=$VG_TMP/ka6-100.conf
keepalived_config6 "$ka_high" 200
keepalived_config6 "$ka_low" 100
keepalived_start "$NS_LB2" "$ka_high"
wait_keepalived_state "$KA_LOG" MASTER 50 || abort "keepalived (priority 200) becomes master"
start_a "$cfg_a"
wait_state "$LOG_A" Backup 30 || abort "vipgate becomes backup"
sleep 1
assert_eq "vipgate stays backup next to keepalived's higher priority (it reads its IPv6 adverts)" \
  Backup "$(vrrp_state "$LOG_A")"
assert_eq "exactly one node (keepalived's) answers NS for the VIP" "$mac_b" "$(ndp_mac "$VIP6")"
assert_eq "vipgate's node has no local route for the VIP" "" "$(local_route6 "$NS_LB")"
t0=$(now_ms)
kill -TERM "$KA_PID"
wait_state "$LOG_A" Master 30 || abort "vipgate takes over after keepalived's SIGTERM"
note "vipgate master $(($(now_ms) - t0)) ms after SIGTERM to keepalived (its priority 0 advert)"
keepalived_stop "$KA_PID"
sleep 0.3
assert_contains "the client's neighbour entry moved to vipgate's node" "$(client_neigh6)" "lladdr $mac_a"
assert_eq "exactly one node (vipgate's) answers NS for the VIP" "$mac_a" "$(ndp_mac "$VIP6")"
assert_eq "requests to the VIP go through node a" "200 $LB_IP" "$(get6)"

section "keepalived over IPv6 as the backup of a vipgate master"
keepalived_start "$NS_LB2" "$ka_low"
wait_keepalived_state "$KA_LOG" BACKUP 50 || abort "keepalived enters BACKUP"
sleep 1
assert_eq "keepalived stays backup next to vipgate's higher priority (it reads vipgate's adverts)" \
  BACKUP "$(keepalived_state "$KA_LOG")"
assert_eq "vipgate stays master" Master "$(vrrp_state "$LOG_A")"
VG_LOG=$LOG_A
stop_vipgate_pid "$PID_A"
wait_keepalived_state "$KA_LOG" MASTER 30 || abort "keepalived takes over after vipgate's SIGTERM"
pass "keepalived takes over after vipgate's SIGTERM (priority 0 advert)"
# vipgate keeps the VIP until the successor's unsolicited NA shows, at most 200 ms after its
# advert: keepalived sends its NA burst at once, but on a loaded machine it can come later, and
# then vipgate releases at its bound (vipgate-to-vipgate handovers check the NA path above).
if (($(vg_log_count 'the successor announced the VIPs') > 0)); then
  pass "vipgate released the VIP after seeing keepalived's unsolicited NA"
elif (($(vg_log_count 'no gratuitous ARP from the successor seen; releasing') > 0)); then
  note "keepalived's unsolicited NA came after vipgate's 200 ms wait: $(vg_log_text | grep -E 'a backup took over|no gratuitous ARP' | tail -n 2 | tr '\n' ' ')"
  pass "vipgate released the VIP at its bound after keepalived's advert"
else
  fail "vipgate released the VIP after keepalived's advert: $(vg_log_text | grep -E 'backup took over|successor|releasing' | tail -n 3 | tr '\n' ' ')"
fi
# keepalived adds IPv6 VIPs with nodad, so vipgate's defence of the VIP against duplicate
# address detection (answering a DAD probe while it still holds the VIP) cannot fail it.
ka_addr=$(ip -n "$NS_LB2" -6 -o addr show dev eth0 to "$VIP6/128")
assert_contains "keepalived put the VIP on its interface" "$ka_addr" "inet6 $VIP6/128"
assert_not_contains "and it is usable (not tentative or dadfailed)" "$ka_addr" "tentative"
start_a "$cfg_a"
wait_state "$LOG_A" Master 30 || abort "vipgate returns and preempts keepalived"
wait_keepalived_state "$KA_LOG" BACKUP 30 || abort "keepalived goes back to backup"
pass "vipgate returns and preempts keepalived"
sleep 0.3
assert_eq "exactly one node (vipgate's) answers NS for the VIP" "$mac_a" "$(ndp_mac "$VIP6")"
kill_pid "$PID_A"
wait_keepalived_state "$KA_LOG" MASTER 30 || abort "keepalived takes over after SIGKILL of vipgate"
pass "keepalived takes over after SIGKILL of vipgate"
sleep 0.3
assert_eq "exactly one node (keepalived's) answers NS for the VIP" "$mac_b" "$(ndp_mac "$VIP6")"
assert_contains "the client's neighbour entry moved to keepalived's node" "$(client_neigh6)" "lladdr $mac_b"
keepalived_stop "$KA_PID"
vipgate_cmd release --config "$cfg_a"
assert_eq "vipgate release removes the route the killed node left" "0" "$CMD_RC"
assert_eq "the killed node's route is gone" "" "$(local_route6 "$NS_LB")"

summary
