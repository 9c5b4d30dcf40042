#!/usr/bin/env bash
# netns-tests/run: alone (its timings or load figures need an otherwise idle machine)
# Hot reload on SIGHUP: a broken file is refused with FILE:LINE:COLUMN while traffic keeps
# flowing; a request in flight finishes on the configuration it started with; listeners and VIPs
# are added and removed while a VIP that stays keeps being announced without a restart or a new
# GARP; and 100 reloads (each adding or removing a VIP and a listener) during a bounded wrk run
# give zero failed or reset requests.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

RELOADS=${VG_RELOADS:-100}
# Long enough for 100 reloads on a loaded 2-core machine (measured ~150 ms each alone, ~300 ms
# with builds running beside); the loop stops early if time would run out.
WRK_SECONDS=${VG_WRK_SECONDS:-50}
VIP2=192.0.2.201

lan_up 4
cfg=$VG_TMP/reload.toml
a=$VG_TMP/a.toml
b=$VG_TMP/b.toml
# A: blog / -> web (be1, be2), /api -> was (be3).
cat >"$a" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"

[[host]]
names = ["blog.example.test"]
[[host.route]]
prefix = "/api"
pool = "was"
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["${BE_IP[0]}:$BACKEND_PORT", "${BE_IP[1]}:$BACKEND_PORT"]
[pool.was]
backends = ["${BE_IP[2]}:$BACKEND_PORT"]
EOF
# B: A plus a second VIP with its own listener, /api moved to was2 (be4), / to be2 only.
cat >"$b" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[vip]]
address = "$VIP2"
interface = "eth0"
garp_count = 1

[[listener]]
bind = "$VIP:80"

[[listener]]
bind = "$VIP2:8081"

[[host]]
names = ["blog.example.test"]
[[host.route]]
prefix = "/api"
pool = "was2"
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["${BE_IP[1]}:$BACKEND_PORT"]
[pool.was2]
backends = ["${BE_IP[3]}:$BACKEND_PORT"]
EOF
cp "$a" "$cfg"
capture_start "$NS_CLIENT" arp || abort "tcpdump listens in the client namespace"
start_vipgate "$cfg" || abort "vipgate starts and logs ready"
mac=$(lb_mac)
announced() { vg_log_count "announcing VIP vip=${1//./\\.} "; }

section "a broken file is refused and traffic keeps flowing"
expect_route "before: blog /api -> was (be3)" blog.example.test /api 200 be3
sed 's|^prefix = "/api"|prefix = "api"|' "$a" >"$cfg"
bad_line=$(grep -n '^prefix = "api"' "$cfg" | cut -d: -f1)
if reload_vipgate; then fail "the broken file is refused"; else pass "the broken file is refused"; fi
assert_match "the refusal is logged as FILE:LINE:COLUMN: error: reason" "$RELOAD_LINE" \
  ".*reload refused, keeping the running configuration: ${cfg//./\\.}:$bad_line:[0-9]+: error: route prefix \"api\" must start with '/'.*"
if vg_alive "$VG_PID"; then pass "vipgate keeps running"; else abort "vipgate keeps running"; fi
expect_route "after the refusal: blog /api -> was (be3), the running config" blog.example.test /api 200 be3
expect_route "after the refusal: blog / -> web" blog.example.test / 200 'be1|be2'

section "an in-flight request finishes on the config it started with"
cp "$a" "$cfg"
in_client curl -sS --max-time 20 -H 'Host: blog.example.test' -o "$VG_TMP/slow.body" \
  -w '%{http_code}\n' "http://$VIP/api/slow?ms=1500" >"$VG_TMP/slow.out" 2>&1 &
slow_pid=$!
vg_track "$slow_pid"
sleep 0.5
cp "$b" "$cfg"
reload_vipgate || fail "reload to B: $RELOAD_LINE"
expect_route "a new request after the reload: blog /api -> was2 (be4)" blog.example.test /api 200 be4
vg_wait_gone 100 "$slow_pid" || true
wait "$slow_pid" || true
vg_forget "$slow_pid"
assert_eq "the request started before the reload got 200" 200 "$(cat "$VG_TMP/slow.out")"
assert_match "… from was (be3), the pool of the config it started with" "$(cat "$VG_TMP/slow.body")" 'backend=be3 .*path=/api/slow.*'

section "VIPs and listeners added and removed; the VIP that stays is untouched"
assert_eq "the added VIP answers ARP with the lb's MAC" "$mac" "$(arp_mac "$VIP2")"
assert_match "the added VIP has its local route" "$(ip -n "$NS_LB" route show table local | grep -E "^local ${VIP2//./\\.} dev lo" || true)" "local .*"
http_on() { # URL: status and backend of one request with Host blog.example.test
  local body
  body=$(in_client curl -sS --max-time 5 -H 'Host: blog.example.test' -w '\n%{http_code}' "$1" 2>/dev/null) || true
  printf '%s %s' "$(tail -n 1 <<<"$body")" "$(sed -n '1s/^backend=\([^ ]*\).*/\1/p' <<<"$body")"
}
assert_eq "the added listener $VIP2:8081 routes blog / -> web (be2)" "200 be2" "$(http_on "http://$VIP2:8081/")"
assert_eq "the VIP that stays was announced once (no restart)" 1 "$(announced "$VIP")"
cp "$a" "$cfg"
reload_vipgate || fail "reload back to A: $RELOAD_LINE"
assert_eq "the removed VIP no longer answers ARP" "" "$(arp_mac "$VIP2")"
assert_eq "the removed VIP's local route is gone" "" "$(ip -n "$NS_LB" route show table local | grep -E "^local ${VIP2//./\\.} " || true)"
rc=0
in_client curl -sS --max-time 3 -o /dev/null "http://$LB_IP:8081/" 2>/dev/null || rc=$?
assert_eq "the removed listener is closed (connection refused)" 7 "$rc"
expect_route "the VIP that stays: blog /api -> was (be3)" blog.example.test /api 200 be3
assert_eq "the VIP that stays was still announced only once" 1 "$(announced "$VIP")"
capture_stop
garps=$(garps_from "$CAP_FILE" "$mac")
assert_eq "gratuitous ARPs for the VIP that stays: only the start-up burst (5)" 5 "$garps"

section "$RELOADS reloads during a bounded wrk run"
wrk_out=$VG_TMP/wrk.out
# wrk ignores SIGINT when started in the background, so it runs for a fixed time that covers
# the reloads (about 15 s here) with room to spare; the loop stops early if it would not.
in_client wrk -t1 -c16 -d"${WRK_SECONDS}s" --timeout 5s -H 'Host: blog.example.test' "http://$VIP/api/x" >"$wrk_out" 2>&1 &
wrk_pid=$!
vg_track "$wrk_pid"
sleep 1
ok=0 refused=0
t0=$(now_ms)
for ((i = 1; i <= RELOADS; i++)); do
  if ((i % 2)); then cp "$b" "$cfg"; else cp "$a" "$cfg"; fi
  if reload_vipgate; then ok=$((ok + 1)); else
    refused=$((refused + 1))
    note "reload $i: $RELOAD_LINE"
  fi
  (($(now_ms) - t0 < (WRK_SECONDS - 3) * 1000)) || break
done
reload_ms=$(($(now_ms) - t0))
vg_wait_gone $(((WRK_SECONDS + 10) * 10)) "$wrk_pid" || true
wait "$wrk_pid" || true
vg_forget "$wrk_pid"
note "$ok reloads in $reload_ms ms; wrk said:"
sed 's/^/   | /' "$wrk_out"
assert_eq "$RELOADS reloads, all applied" "$RELOADS 0" "$ok $refused"
requests=$(sed -n 's/^ *\([0-9]\+\) requests in .*/\1/p' "$wrk_out")
if [[ $requests =~ ^[0-9]+$ ]] && ((requests > 1000)); then pass "wrk completed $requests requests"; else fail "wrk completed ${requests:-no} requests"; fi
assert_eq "no socket errors (connect, read, write, timeout)" "" "$(grep -i 'socket errors' "$wrk_out" || true)"
assert_eq "no non-2xx responses" "" "$(grep -i 'non-2xx' "$wrk_out" || true)"
assert_eq "the VIP that stays was announced once through all reloads" 1 "$(announced "$VIP")"
expect_route "after the last reload (A): blog /api -> was (be3)" blog.example.test /api 200 be3

stop_vipgate
summary
