#!/usr/bin/env bash
# The operator's view of two VRRP nodes under a bounded load: the status page loaded by headless
# Chromium from the client (a screenshot; the DOM shows the VIP owned, the VRRP roles, the
# route's request rate, the certificate's days left; no console errors), a backend killed by the
# test turning down on the page within a few seconds, and `vipgate status` (table and --json)
# with its exit codes: 0 while each VIP has one owner and each pool a backend, 1 for a pool
# without one, for a VIP owned by two nodes (a partition) and for a node that sees no owner
# (its link down), 3 for an admin listener it cannot reach. Notes the CPU one /status.json and
# one /metrics cost the daemon (VIPGATE_BIN=target/release/vipgate for figures that mean much).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

CHROMIUM=${CHROMIUM:-chromium}
command -v "$CHROMIUM" >/dev/null || abort "chromium is installed (Debian package chromium)"
[[ -x $TESTCERT_BIN ]] || abort "examples/testcert is built ($TESTCERT_BIN; cargo build --examples)"

lan_up 2
lb2_up
A=$LB_IP B=$LB2_IP
ADMIN_A=$A:9901 ADMIN_B=$B:9901
HOST=$HA_HOST # the prober's
pki=$VG_TMP/pki
mkdir -p "$pki"
testcert ca "$pki/ca"
testcert leaf "$pki/ca" "$pki/app" "$HOST" --days 30

node_config() { # FILE PRIORITY ADMIN_IP
  cat >"$1" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[vrrp]
vrid = 61
priority = $2
advert_interval = "100ms"

[[listener]]
bind = "$VIP:80"

[[listener]]
bind = "$VIP:443"
protocol = "https"

[[certificate]]
cert = "pki/app.pem"
key = "pki/app.key"

[[host]]
names = ["$HOST"]
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["${BE_IP[0]}:$BACKEND_PORT", "${BE_IP[1]}:$BACKEND_PORT"]

[pool.web.health]
type = "http"
path = "/"
interval_ms = 200
timeout_ms = 150
unhealthy_threshold = 2

[admin]
bind = "$3:9901"
EOF
}
cfg_a=$VG_TMP/a.toml cfg_b=$VG_TMP/b.toml
node_config "$cfg_a" 150 "$A"
node_config "$cfg_b" 100 "$B"

# NS ADMIN... [--json]: `vipgate status` run in NS; sets ST_RC, ST_OUT.
status_in() {
  local ns=$1 args=()
  shift
  for a in "$@"; do
    if [[ $a == --json ]]; then args+=(--json); else args+=(--admin "$a"); fi
  done
  ST_RC=0
  ST_OUT=$(NO_COLOR=1 timeout 20 ip netns exec "$ns" "$VIPGATE_BIN" status "${args[@]}" 2>&1) || ST_RC=$?
}

# URL: the page's DOM after its script ran (Chromium's virtual time lets the fetch and the
# rendering finish), from the client; its console messages in $VG_TMP/chrome.err. Sets DOM.
CHROME_N=0
chrome() {
  local out=$VG_TMP/chrome.$CHROME_N
  CHROME_N=$((CHROME_N + 1))
  timeout 40 ip netns exec "$NS_CLIENT" "$CHROMIUM" --headless --no-sandbox --disable-gpu \
    --disable-dev-shm-usage --no-first-run --no-default-browser-check --disable-extensions \
    --user-data-dir="$VG_TMP/chrome-profile" --enable-logging=stderr --v=0 \
    --virtual-time-budget=4000 "$@" >"$out.dom" 2>"$out.err" </dev/null || true
  DOM=$(cat "$out.dom")
  cat "$out.err" >>"$VG_TMP/chrome.err"
}
dom_has() { [[ $DOM == *"$1"* ]]; }

section "two nodes: a master, b backup"
start_vipgate_in "$NS_LB" "$cfg_a" || abort "node a starts"
PID_A=$VG_PID LOG_A=$VG_LOG
wait_state "$LOG_A" Master 30 || abort "node a becomes master"
start_vipgate_in "$NS_LB2" "$cfg_b" || abort "node b starts"
PID_B=$VG_PID LOG_B=$VG_LOG
wait_state "$LOG_B" Backup 30 || abort "node b becomes backup"
expect_route "the VIP serves" "$HOST" / 200 'be1|be2'

# A bounded load for the plots: the prober, a GET every 10 ms for at most 40 s.
probe_start 40
sleep 5 # two samples (every 2 s) with requests in between

section "vipgate status, all well"
status_in "$NS_CLIENT" "$ADMIN_A"
assert_eq "status of node a exits 0" 0 "$ST_RC"
assert_match "node a owns the VIP" "$(grep -E "^$VIP " <<<"$ST_OUT" | tr -s ' ')" "$VIP arp self"
assert_contains "node a's table shows VRRP master" "$ST_OUT" "ipv4 master"
assert_eq "node a's table shows both backends up" 2 "$(grep -cE "^  ${BE_IP[0]//./\\.}:$BACKEND_PORT +up|^  ${BE_IP[1]//./\\.}:$BACKEND_PORT +up" <<<"$ST_OUT")"
assert_contains "node a's table shows the route" "$ST_OUT" "$HOST / -> web"
status_in "$NS_CLIENT" "$ADMIN_B"
assert_eq "status of node b exits 0 (a peer owns the VIP)" 0 "$ST_RC"
assert_match "node b sees a peer owning the VIP" "$(grep -E "^$VIP " <<<"$ST_OUT" | tr -s ' ')" "$VIP arp peer"
status_in "$NS_CLIENT" "$ADMIN_A" "$ADMIN_B" --json
assert_eq "status of both nodes exits 0" 0 "$ST_RC"
assert_eq "--json: no problems" "[]" "$(jget "$ST_OUT" 'json.dumps(d["problems"])' 2>/dev/null || echo "$ST_OUT")"
assert_eq "--json: node a's VRRP role" master "$(jget "$ST_OUT" 'd["nodes"][0]["status"]["vrrp"]["routers"][0]["state"]')"
assert_eq "--json: node b's VRRP role" backup "$(jget "$ST_OUT" 'd["nodes"][1]["status"]["vrrp"]["routers"][0]["state"]')"
assert_num "--json: node a counted requests on the route" \
  "$(jget "$ST_OUT" 'd["nodes"][0]["status"]["routes"][0]["requests_total"]')" -gt 0

section "the page in Chromium"
chrome --window-size=412,1400 --screenshot="$VG_TMP/status.png" "http://$ADMIN_A/"
if [[ -s $VG_TMP/status.png ]]; then pass "a screenshot of the page was taken"; else fail "a screenshot of the page was taken"; fi
if [[ -n ${VG_SCREENSHOT:-} ]]; then cp "$VG_TMP/status.png" "$VG_SCREENSHOT" && note "screenshot: $VG_SCREENSHOT"; fi
chrome --dump-dom "http://$ADMIN_A/"
assert_contains "the page rendered the status (its script ran)" "$DOM" 'data-loaded="'
assert_contains "the page shows the VIP owned by this node" "$DOM" "data-vip=\"$VIP\" data-owner=\"self\""
assert_contains "the page shows the VRRP role" "$DOM" 'data-family="ipv4" data-state="master"'
for i in 0 1; do
  assert_contains "the page shows backend ${BE_NAME[i]} up" "$DOM" \
    "data-backend=\"${BE_IP[i]}:$BACKEND_PORT\" data-up=\"true\""
done
rps=$(grep -oE 'class="rps">[0-9.]+<' <<<"$DOM" | grep -oE '[0-9.]+' | head -n 1)
assert_match "the page shows the route's request rate" "$rps" '[0-9]+\.[0-9]'
if [[ ${rps%%.*} -gt 0 ]]; then pass "the rate is not zero ($rps req/s)"; else fail "the rate is not zero ($rps req/s)"; fi
assert_match "the page shows the certificate's days left" \
  "$(grep -oE "class=\"certificate\"><td>$HOST</td><td class=\"n\"><span class=\"pill ok\">[0-9]+<" <<<"$DOM" | grep -oE '[0-9]+<$')" '(29|30)<'
assert_match "the page shows its phase" "$(sed -n 's/.*id="phase"[^>]*>\([a-z]*\)<.*/\1/p' <<<"$DOM" | head -n 1)" ready
chrome --dump-dom "http://$ADMIN_B/status"
assert_contains "node b's page shows the VIP owned by a peer" "$DOM" "data-vip=\"$VIP\" data-owner=\"peer\""
assert_contains "node b's page shows the VRRP role backup" "$DOM" 'data-state="backup"'

section "a backend killed under load turns down on the page"
backend_kill 1
killed=$(now_ms)
seen=
for _ in $(seq 1 8); do
  chrome --dump-dom "http://$ADMIN_A/"
  if dom_has "data-backend=\"${BE_IP[1]}:$BACKEND_PORT\" data-up=\"false\""; then
    seen=$(($(now_ms) - killed))
    break
  fi
done
if [[ -n $seen ]]; then pass "the page shows be2 down ${seen} ms after the kill"; else fail "the page shows be2 down"; fi
assert_num "within a few seconds" "${seen:-99999}" -le 8000
assert_contains "be1 is still up on the page" "$DOM" "data-backend=\"${BE_IP[0]}:$BACKEND_PORT\" data-up=\"true\""
status_in "$NS_CLIENT" "$ADMIN_A"
assert_eq "status exits 0 with one backend left" 0 "$ST_RC"
assert_match "the table shows be2 down" \
  "$(grep -E "^  ${BE_IP[1]//./\\.}:$BACKEND_PORT " <<<"$ST_OUT" | tr -s ' ' | cut -d' ' -f3,4)" "DOWN unhealthy"

section "a pool without a backend"
backend_kill 0
sleep 1.5 # two failed checks at 200 ms, and slack for a busy machine
status_in "$NS_CLIENT" "$ADMIN_A"
assert_eq "status exits 1 when a pool has no available backend" 1 "$ST_RC"
assert_contains "it says which pool" "$ST_OUT" "pool web has no available backend"
chrome --dump-dom "http://$ADMIN_A/"
assert_contains "the page lists the problem" "$DOM" "<li>pool web has no available backend</li>"
assert_contains "the page shows the pool with none up" "$DOM" 'data-pool="web" data-available="0"'
probe_stop
note "load: $(wc -l <"$PROBE_FILE") GETs by the prober"
backend_restart 0 || abort "be1 restarts"
backend_restart 1 || abort "be2 restarts"
sleep 1.5 # two good checks
status_in "$NS_CLIENT" "$ADMIN_A" "$ADMIN_B"
assert_eq "status exits 0 again once the backends are back" 0 "$ST_RC"

section "a partition: the VIP owned twice"
bridge -n "$NS_BR" link set dev v-lb isolated on
bridge -n "$NS_BR" link set dev v-lb2 isolated on
wait_state "$LOG_B" Master 30 || fail "node b, cut off from a, becomes master"
sleep 0.3
status_in "$NS_CLIENT" "$ADMIN_A" "$ADMIN_B"
assert_eq "status of both nodes exits 1 while both own the VIP" 1 "$ST_RC"
assert_contains "it names both" "$ST_OUT" "VIP $VIP is owned by 2 nodes: $ADMIN_A, $ADMIN_B"
bridge -n "$NS_BR" link set dev v-lb isolated off
bridge -n "$NS_BR" link set dev v-lb2 isolated off
wait_state "$LOG_B" Backup 30 || fail "node b yields once the partition heals"
chrome --dump-dom "http://$ADMIN_B/"
assert_contains "node b's page lists its short mastership among its events" "$DOM" "VRRP ipv4: backup -&gt; "

section "reloads on the page"
cp "$cfg_a" "$cfg_a.good"
printf '[pool.broken\n' >>"$cfg_a"
in_client curl -s -o /dev/null --max-time 30 -X POST "http://$ADMIN_A/reload" || true
cp "$cfg_a.good" "$cfg_a"
in_client curl -s -o /dev/null --max-time 30 -X POST "http://$ADMIN_A/reload" || true
chrome --dump-dom "http://$ADMIN_A/"
assert_contains "the page shows the refused reload with its reason" "$DOM" \
  "<tr class=\"reload\" data-ok=\"false\">"
assert_contains "the refusal names the file and line" "$DOM" "a.toml:"
assert_contains "the page shows the good reload after it" "$DOM" "<tr class=\"reload\" data-ok=\"true\">"
assert_contains "the page counts them" "$DOM" "1 ok, 1 refused"

section "a node that sees no owner; an admin listener that does not answer"
port_link lb2 down
wait_state "$LOG_B" Fault 30 || fail "node b, without a link, is in Fault"
status_in "$NS_LB2" "$ADMIN_B"
assert_eq "node b's status exits 1: no owner it can see" 1 "$ST_RC"
assert_contains "it says so" "$ST_OUT" "VIP $VIP is owned by no node this one sees"
port_link lb2 up
status_in "$NS_CLIENT" "$CLIENT_IP:9"
assert_eq "status exits 3 when the admin listener cannot be reached" 3 "$ST_RC"

section "the page's cost"
ticks() { awk '{print $14 + $15}' "/proc/$PID_A/stat"; } # utime + stime, in clock ticks
hz=$(getconf CLK_TCK)
for path in /status.json /metrics; do
  bytes=$(in_client curl -s --max-time 5 "http://$ADMIN_A$path" | wc -c)
  before=$(ticks) t0=$(now_ms)
  # 1000 GETs, one connection each (the admin listener closes after one answer).
  in_client curl -s -o /dev/null --max-time 120 "http://$ADMIN_A$path?[1-1000]" || true
  after=$(ticks) took=$(($(now_ms) - t0))
  # What the daemon spends meanwhile without them (adverts, health checks, the sampler).
  sleep "$((took / 1000)).$(printf '%03d' $((took % 1000)))"
  idle=$(($(ticks) - after))
  note "1000 x GET $path ($bytes bytes) in $took ms: $(((after - before - idle) * 1000000 / hz / 1000)) µs of vipgate CPU each ($((after - before)) ticks, $idle idle; tick $((1000 / hz)) ms)"
done

section "console"
errors=$(grep -E 'CONSOLE|Uncaught' "$VG_TMP/chrome.err" | grep -viE 'favicon' || true)
assert_eq "no console messages or script errors in any page load" "" "$errors"

stop_vipgate_pid "$PID_A"
stop_vipgate_pid "$PID_B"
summary
