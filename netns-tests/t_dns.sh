#!/usr/bin/env bash
# netns-tests/run: alone (it times refreshes, counts queries per second and runs a load)
# Backends by DNS name against a real dnsmasq that the test runs and changes: a pool by name is
# served; a name that does not resolve at start-up is not fatal (503, then served once it
# does); an added A record gets traffic within the TTL floor; a removed one is drained under
# load with no failed request; TTL 0 is queried no faster than the floor, a TTL of 3 s as it
# says; a reload keeps the answers; a stopped server and SERVFAIL keep the last good set for
# grace_ms, then it is dropped; NXDOMAIN empties the pool (503); check, /config and /metrics
# show the resolved addresses.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

lan_up 3
# One name with a TTL of its own (3 s), the others at dnsmasq's local-ttl (DNS_TTL, 0).
DNS_EXTRA="host-record=ttl3.svc.test,198.51.100.3,3"
dns_up svc.test || abort "dnsmasq starts on $DNS_IP"
dns_set web.svc.test 192.0.2.21 192.0.2.22 || abort "dnsmasq reads its hosts file on SIGHUP"

cfg=$VG_TMP/dns.toml
cat >"$cfg" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"

[resolver]
nameservers = ["$DNS_IP"]
timeout_ms = 300
attempts = 1
ttl_floor_ms = 1000
ttl_ceiling_ms = 5000
grace_ms = 5000
family = "ipv4"

[[host]]
names = ["web.example.test"]
[[host.route]]
prefix = "/"
pool = "web"

[[host]]
names = ["late.example.test"]
[[host.route]]
prefix = "/"
pool = "late"

[pool.web]
backends = ["web.svc.test:$BACKEND_PORT"]
[pool.late]
backends = ["late.svc.test:$BACKEND_PORT"]
[pool.ttl3]
backends = ["ttl3.svc.test:$BACKEND_PORT"]
EOF
vipgate_cmd check --config "$cfg"
assert_eq "check accepts pools by name" 0 "$CMD_RC"
assert_contains "check shows what a name resolves to" "$CMD_OUT" "name web.svc.test:$BACKEND_PORT (pool web) -> 192.0.2.21:$BACKEND_PORT, 192.0.2.22:$BACKEND_PORT"
assert_contains "check warns of a name that does not resolve" "$CMD_ERR" "warning: pool late: late.svc.test:$BACKEND_PORT has no address now"
start_vipgate "$cfg" || abort "vipgate starts although late.svc.test does not resolve"
assert_eq "NXDOMAIN at start-up is no failure" 0 "$(vg_log_count 'DNS lookup failed')"

# HOST N: N sequential requests; sets SEEN to the sorted distinct backends, CODES to statuses.
sample() {
  local i codes=() seen=()
  for ((i = 0; i < $2; i++)); do
    http "$1" /
    codes+=("$HTTP_CODE")
    if [[ $HTTP_CODE == 200 ]]; then seen+=("$(backend_of)"); fi
  done
  SEEN=$(printf '%s\n' "${seen[@]}" | sort -u | paste -sd' ' -)
  CODES=$(printf '%s\n' "${codes[@]}" | sort -u | paste -sd' ' -)
}
# HOST BACKEND TENTHS: wait until a request reaches BACKEND; sets WAITED_MS.
wait_backend() {
  local start i
  start=$(now_ms)
  for ((i = 0; i < $3; i++)); do
    http "$1" /
    if [[ $HTTP_CODE == 200 && $(backend_of) == "$2" ]]; then
      WAITED_MS=$(($(now_ms) - start))
      return 0
    fi
    sleep 0.1
  done
  WAITED_MS=-1
  return 1
}

section "a pool by name is served; a name that does not resolve yet is not fatal"
sample web.example.test 10
assert_eq "web.svc.test's two addresses take the traffic" "be1 be2" "$SEEN"
http late.example.test /
assert_eq "late.svc.test (NXDOMAIN) answers 503" 503 "$HTTP_CODE"
dns_set late.svc.test 192.0.2.23
wait_backend late.example.test be3 50 || true
note "late.svc.test served ${WAITED_MS} ms after its record appeared"
assert_num "late.svc.test is served within 5 s of its record (floor 1 s)" "$WAITED_MS" -ge 0
assert_num "(delay in ms)" "$WAITED_MS" -le 5000

section "an added A record takes traffic within the floor, without a reload"
dns_set web.svc.test 192.0.2.21 192.0.2.22 192.0.2.23
wait_backend web.example.test be3 50 || true
note "be3 reached ${WAITED_MS} ms after the record was added"
assert_num "the added address gets traffic within 5 s (floor 1 s)" "$WAITED_MS" -ge 0
assert_num "(delay in ms)" "$WAITED_MS" -le 5000
assert_eq "no reload happened" 0 "$(vg_log_count 'configuration reloaded')"
assert_eq "the change is logged" 1 "$(vg_log_count 'backend addresses changed.*web.svc.test.*added=192.0.2.23:8080')"

section "a removed record is drained under load with no failed request"
out=$VG_TMP/drain.json
# Bounded by time: it runs on through the removal (at 1 s) and 3 s past it.
client_tool load --target "$VIP:80" --host web.example.test --requests 200000 --conns 4 \
  --seconds 4 >"$out" &
load_pid=$!
vg_track "$load_pid"
sleep 1
dns_set web.svc.test 192.0.2.22 192.0.2.23
removed_at=$(now_ms) gone_ms=-1
for ((i = 0; i < 30; i++)); do
  if ! in_lb curl -sS --max-time 2 http://127.0.0.1:9901/config | grep -q '"address":"192.0.2.21:8080"'; then
    gone_ms=$(($(now_ms) - removed_at))
    break
  fi
  sleep 0.1
done
note "192.0.2.21 left the pool ${gone_ms} ms after its record was removed"
assert_num "the removed address leaves the pool within 5 s (floor 1 s)" "$gone_ms" -ge 0
assert_num "(delay in ms)" "$gone_ms" -le 5000
wait "$load_pid" || true
vg_forget "$load_pid"
LOAD=$(cat "$out")
note "$(jget "$LOAD" 'd["sent"]') GETs in $(jget "$LOAD" 'd["seconds"]') s, statuses $(jget "$LOAD" 'd["status"]'), errors $(jget "$LOAD" 'd["error_kinds"]'), backends $(jget "$LOAD" 'd["backends"]')"
assert_eq "every request of the load answered 200" "$(jget "$LOAD" 'd["sent"]')" "$(jget "$LOAD" 'd["ok"]')"
assert_num "the load sent requests" "$(jget "$LOAD" 'd["sent"]')" -ge 100
sample web.example.test 12
assert_eq "after the drain be1 gets nothing" "be2 be3" "$SEEN"
assert_eq "the removal is logged" 1 "$(vg_log_count 'backend addresses changed.*removed=192.0.2.21:8080')"

section "TTL 0 is asked no faster than the floor (1 s); a TTL of 3 s every 3 s"
before=$(dns_queries A web.svc.test) before3=$(dns_queries A ttl3.svc.test)
sleep 6
after=$(dns_queries A web.svc.test) after3=$(dns_queries A ttl3.svc.test)
aaaa=$(dns_queries AAAA web.svc.test)
note "A queries in 6 s: web.svc.test (TTL 0) $((after - before)), ttl3.svc.test (TTL 3) $((after3 - before3)); AAAA (family ipv4): $aaaa"
assert_num "TTL 3: at most 3 queries in 6 s" $((after3 - before3)) -le 3
assert_num "TTL 3: at least 1" $((after3 - before3)) -ge 1
assert_num "TTL 0: at most 7 A queries in 6 s (floor 1 s)" $((after - before)) -le 7
assert_num "TTL 0: it does re-query (at least 4 in 6 s)" $((after - before)) -ge 4
assert_eq "family ipv4 asks no AAAA" 0 "$aaaa"

section "/config and /metrics show the resolved addresses"
cfg_json=$(in_lb curl -sS --max-time 5 http://127.0.0.1:9901/config)
assert_contains "/config lists a resolved address" "$cfg_json" '"address":"192.0.2.23:8080"'
assert_contains "/config names the name it came from" "$cfg_json" '"name":"web.svc.test"'
assert_contains "/config lists the name as written" "$cfg_json" '"names":["web.svc.test:8080"]'
metrics=$(in_lb curl -sS --max-time 5 http://127.0.0.1:9901/metrics)
assert_contains "backend count of the pool" "$metrics" 'vipgate_pool_backends{pool="web"} 2'
assert_contains "addresses of the name" "$metrics" 'vipgate_dns_addresses{name="web.svc.test:8080"} 2'
res=$(grep -o 'vipgate_dns_resolutions_total{name="web.svc.test:8080"} [0-9]*' <<<"$metrics" | awk '{print $2}')
assert_num "resolutions are counted" "${res:-0}" -ge 5

section "a reload keeps the names' answers (no gap)"
reload_vipgate || fail "reload: $RELOAD_LINE"
sample web.example.test 6
assert_eq "served by both right after the reload" "be2 be3" "$SEEN"
assert_eq "only 200s after the reload" "200" "$CODES"

section "without nameservers: /etc/resolv.conf's servers and search domains"
ns_etc "$NS_LB" resolv.conf "nameserver $DNS_IP
search blog.svc.test svc.test
options ndots:5 timeout:1 attempts:1"
sed -e '/^nameservers = /d' -e 's/"web.svc.test:/"web:/' "$cfg" >"$VG_TMP/system.toml"
vipgate_cmd check --config "$VG_TMP/system.toml"
assert_contains "the short name web resolves through the search list" "$CMD_OUT" "name web:$BACKEND_PORT (pool web) -> 192.0.2.22:$BACKEND_PORT, 192.0.2.23:$BACKEND_PORT"

section "a stopped name server keeps the last good set"
kill -STOP "$DNS_PID"
sleep 2
sample web.example.test 6
kill -CONT "$DNS_PID"
wait_vg_log 'DNS lookup answers again name=web.svc.test' 50 || fail "web.svc.test answers again within 5 s of SIGCONT"
assert_eq "still served by both while DNS times out" "be2 be3" "$SEEN"
assert_eq "only 200s" "200" "$CODES"
assert_num "the failure is logged once" "$(vg_log_count 'DNS lookup failed.*web.svc.test')" -eq 1
metrics=$(in_lb curl -sS --max-time 5 http://127.0.0.1:9901/metrics)
fails=$(grep -o 'vipgate_dns_failures_total{name="web.svc.test:8080"} [0-9]*' <<<"$metrics" | awk '{print $2}')
note "failures counted: $fails"
assert_num "failures are counted" "${fails:-0}" -ge 1

section "SERVFAIL keeps the last good set"
dns_mode servfail
dns_set web.svc.test
sleep 2
sample web.example.test 6
assert_eq "still served by both on SERVFAIL" "be2 be3" "$SEEN"
assert_eq "only 200s on SERVFAIL" "200" "$CODES"
assert_num "SERVFAIL is logged as a failure" "$(vg_log_count 'DNS lookup failed.*web.svc.test')" -ge 2
assert_contains "the failure says SERVFAIL" "$(vg_log_text | grep 'DNS lookup failed.*web.svc.test' | tail -n 1)" "Server Failure"

section "NXDOMAIN empties the pool: 503"
dns_mode nxdomain
start=$(now_ms)
for ((i = 0; i < 50; i++)); do
  http web.example.test /
  [[ $HTTP_CODE == 503 ]] && break
  sleep 0.1
done
note "503 after $(($(now_ms) - start)) ms"
assert_eq "an authoritative NXDOMAIN empties the pool" 503 "$HTTP_CODE"
dns_set web.svc.test 192.0.2.21
wait_backend web.example.test be1 50 || true
assert_num "the pool fills again when the name is back" "$WAITED_MS" -ge 0

section "past grace_ms (5 s) of failures the name's addresses are dropped"
dns_mode servfail
dns_set web.svc.test
start=$(now_ms) dropped_ms=-1
for ((i = 0; i < 100; i++)); do
  http web.example.test /
  if [[ $HTTP_CODE == 503 ]]; then
    dropped_ms=$(($(now_ms) - start))
    break
  fi
  sleep 0.1
done
note "SERVFAIL from t0: served until ${dropped_ms} ms, then 503"
assert_num "kept for the grace period (>= 4.5 s)" "$dropped_ms" -ge 4500
assert_num "dropped soon after it (<= 9 s)" "$dropped_ms" -le 9000
assert_eq "the drop is logged" 1 "$(vg_log_count 'longer than the grace period.*web.svc.test')"

stop_vipgate
summary
