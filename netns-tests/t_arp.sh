#!/usr/bin/env bash
# vipgate owns the VIP on the LAN: nobody answers ARP for it before vipgate runs; while it runs
# the lb's eth0 MAC answers, a gratuitous ARP has told the client, the `local VIP dev lo` route
# is in place and the kernel itself stays silent; SIGTERM undoes it all and exits 0; a restart
# after kill -9 (which leaves the route behind) works.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

GARP_COUNT=3

lan_up 1
cfg=$VG_TMP/arp.toml
cat >"$cfg" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"
garp_count = $GARP_COUNT
garp_interval_ms = 100

[[listener]]
bind = "$VIP:80"
protocol = "http"

[[host]]
names = ["arp.example.test"]
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["${BE_IP[0]}:$BACKEND_PORT"]
EOF
mac=$(lb_mac)
note "lb eth0 MAC: $mac"

section "before vipgate starts"
assert_eq "no ARP reply for the VIP" "" "$(arp_mac "$VIP")"
assert_eq "no local route for the VIP in the lb namespace" "" "$(local_route)"
assert_eq "client has no neighbour entry for the VIP" "" "$(client_neigh)"

section "vipgate running"
capture_start "$NS_CLIENT" arp || abort "tcpdump listens in the client namespace"
start_vipgate "$cfg" || abort "vipgate starts and logs ready"
# The takeover burst: GARP_COUNT at 100 ms; give it up to 3 s.
for ((i = 0; i < 30; i++)); do
  (($(garps_from "$CAP_FILE" "$mac") >= GARP_COUNT)) && break
  sleep 0.1
done
garps=$(garps_from "$CAP_FILE" "$mac")
if ((garps >= GARP_COUNT)); then
  pass "client saw $garps gratuitous ARPs for the VIP from $mac (garp_count = $GARP_COUNT)"
else
  fail "client saw $garps gratuitous ARPs for the VIP from $mac, expected at least $GARP_COUNT; capture:"
  sed 's/^/   | /' "$CAP_FILE"
fi
assert_contains "client's neighbour table learned VIP -> lb MAC from the GARP alone" \
  "$(client_neigh)" "lladdr $mac"
capture_stop
capture_start "$NS_CLIENT" arp || abort "tcpdump listens in the client namespace"
assert_eq "ARP reply for the VIP carries the lb's eth0 MAC (and only it)" "$mac" "$(arp_mac "$VIP")"
sleep 0.2
capture_stop
cmac=$(ns_mac "$NS_CLIENT")
v=${VIP//./\\.}
requests=$(grep -cE "^$cmac > .*Request who-has $v( \\([0-9a-f:]+\\))? tell ${CLIENT_IP//./\\.}," "$CAP_FILE" || true)
replies=$(grep -cE "^$mac > $cmac, .*Reply $v is-at $mac," "$CAP_FILE" || true)
if ((requests > 0 && replies == requests)); then
  pass "one ARP reply per request ($requests requests, $replies replies)"
else
  fail "one ARP reply per request: $requests requests, $replies replies; capture:"
  sed 's/^/   | /' "$CAP_FILE"
fi
assert_match "local route for the VIP on lo in the lb namespace" "$(local_route)" "local ${VIP//./\\.} dev lo.*"
eff() { # KEY: the effective value of net.ipv4.conf.{all,eth0}.KEY (the larger one)
  local a e
  a=$(in_lb cat "/proc/sys/net/ipv4/conf/all/$1")
  e=$(in_lb cat "/proc/sys/net/ipv4/conf/eth0/$1")
  echo $((a > e ? a : e))
}
assert_eq "arp_ignore on the lb's eth0 is 1 (the kernel does not answer for the VIP)" 1 "$(eff arp_ignore)"
assert_eq "arp_announce on the lb's eth0 is 2" 2 "$(eff arp_announce)"
expect_route "HTTP to the VIP reaches the backend" arp.example.test / 200 be1
# The announcer's packet socket is bound to ARP (0806), not to every protocol (0003): bound to
# all, the kernel would clone every frame the proxy sends and hand it every frame it receives.
# shellcheck disable=SC2016 # awk's fields, literal here
assert_eq "the lb's packet sockets: one, SOCK_RAW, bound to ARP" "3 0806" \
  "$(in_lb awk 'NR > 1 { print $3, $4 }' /proc/net/packet)"
assert_contains "client's neighbour entry after traffic is the lb MAC" "$(client_neigh)" "lladdr $mac"

section "after SIGTERM"
stop_vipgate
assert_eq "no ARP reply for the VIP" "" "$(arp_mac "$VIP")"
assert_eq "local route removed" "" "$(local_route)"

section "restart after kill -9"
start_vipgate "$cfg" || abort "vipgate starts again after a clean stop"
kill_vipgate
assert_match "kill -9 leaves the route behind (precondition)" "$(local_route)" "local .*"
assert_eq "nobody answers ARP for the VIP while vipgate is dead (arp_ignore holds the kernel back)" \
  "" "$(arp_mac "$VIP")"
start_vipgate "$cfg" || abort "vipgate starts over the stale route left by kill -9"
pass "vipgate starts over the stale route left by kill -9"
assert_eq "ARP reply for the VIP carries the lb's eth0 MAC" "$mac" "$(arp_mac "$VIP")"
assert_eq "exactly one local route for the VIP" 1 "$(local_route | grep -c . || true)"
expect_route "HTTP to the VIP works after the restart" arp.example.test / 200 be1
stop_vipgate
assert_eq "local route removed after the restarted vipgate stops" "" "$(local_route)"
assert_eq "no ARP reply for the VIP after the restarted vipgate stops" "" "$(arp_mac "$VIP")"

summary
