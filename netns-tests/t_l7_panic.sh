#!/usr/bin/env bash
# netns-tests/run: alone (its timings or load figures need an otherwise idle machine)
# No 502 while a live backend exists (issue 22). A rolling restart of a pool of two: be1 is down
# at start and gets ejected, comes back (still ejected), then be2 is SIGKILLed under 3,000
# keep-alive GETs: not one request fails, the ejected be1 takes the traffic and is back in
# rotation at once. The same with active health checks instead of ejection (be1 still marked
# down by its checks when be2 dies). A pool whose backends are all really dead answers 503
# quickly, and its backends see a bounded number of connection attempts (counted as the RSTs
# their namespace's kernel sends for the refused SYNs), not three per request. The rolling
# restart again for a `tcp` listener's pool: its connect retry follows the same rules.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

lan_up 3
backend_kill 2 # be3's namespace has no listener at all: every connect to it is refused
cfg=$VG_TMP/panic.toml
cat >"$cfg" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"

[[listener]]
bind = "$VIP:5000"
protocol = "tcp"
pool = "echo"

[[host]]
names = ["roll.example.test"]
[[host.route]]
prefix = "/"
pool = "roll"
retries = 2
retry_on = ["connect-failure", "reset", "gateway-error"]

[[host]]
names = ["hc.example.test"]
[[host.route]]
prefix = "/"
pool = "hc"
retries = 2
retry_on = ["connect-failure", "reset", "gateway-error"]

[[host]]
names = ["dead.example.test"]
[[host.route]]
prefix = "/"
pool = "dead"
retries = 2
retry_on = ["connect-failure", "reset", "gateway-error"]

[pool.roll]
backends = ["192.0.2.21:8080", "192.0.2.22:8080"]
[pool.roll.outlier]
consecutive_failures = 2
base_ejection_ms = 10000

# Checks only: be1 comes back after 4 good probes (2 s), be2 goes after 6 bad ones (3 s).
[pool.hc]
backends = ["192.0.2.21:8080", "192.0.2.22:8080"]
[pool.hc.health]
type = "http"
path = "/healthz"
interval_ms = 500
timeout_ms = 300
healthy_threshold = 4
unhealthy_threshold = 6
[pool.hc.outlier]
consecutive_failures = 0

[pool.echo]
backends = ["192.0.2.21:7000", "192.0.2.22:7000"]
[pool.echo.outlier]
consecutive_failures = 2
base_ejection_ms = 10000

[pool.dead]
backends = ["192.0.2.23:8080", "192.0.2.23:8081"]
[pool.dead.outlier]
consecutive_failures = 2
base_ejection_ms = 10000
EOF
start_vipgate "$cfg" || abort "vipgate starts and logs ready"

metric() { metric_of "$(metrics_in "$NS_LB")" "$1"; } # NAME{LABELS}: its value now (0 if absent)
retries() { metric "vipgate_http_retries_total{host=\"$1\",route=\"/\",pool=\"$2\"}"; }

# HOST SECONDS_BEFORE_KILL INDEX: 3,000 keep-alive GETs from 3 connections (at most 30 s);
# backend INDEX is SIGKILLed after SECONDS_BEFORE_KILL. Three connections, because the retry
# budget lets at least 3 retries be in flight: the requests on be2 when it dies all get theirs.
# Sets LOAD (the JSON result).
load_with_kill_3k() { load_with_kill "$1" "$2" "$3" 3000 3 30; }
backends_of() { # HOST N: the sorted backends that answered N sequential GETs
  jget "$(client_tool load --target "$VIP:80" --host "$1" --requests "$2" --seconds 20)" '" ".join(sorted(d["backends"]))'
}
# The rolling restart after be2 died, for HOST: nothing failed, be1 took over within one request.
check_takeover() { # HOST POOL RETRIES_BEFORE MAX_RETRIES
  local sent retried
  sent=$(jget "$LOAD" 'd["sent"]')
  assert_eq "all 3,000 requests were sent" "3000" "$sent"
  assert_eq "failed requests: 0 of $sent" "0" "$(jget "$LOAD" 'd["sent"] - d["ok"]')"
  assert_num "be2 answered before it was killed" "$(jget "$LOAD" 'd["backends"].get("be2", 0)')" -ge 1
  assert_num "be1 answered after be2 was killed" "$(jget "$LOAD" 'd["backends"].get("be1", 0)')" -ge 1
  retried=$(($(retries "$1" "$2") - $3))
  note "retries during the load: $retried"
  # The requests in flight on be2 when it died (at most 3), then at most 3 each time be2's
  # suspect mark lapses (1 s) and it is tried again until it is out for good: not one per request.
  assert_num "be1 took over at once: at most $4 retries in all ($retried)" "$retried" -le "$4"
  assert_eq "afterwards every request goes to be1" "be1" "$(backends_of "$1" 30)"
}

section "rolling restart with outlier ejection: be1 down at start, ejected, back"
backend_kill 0
r=$(client_tool load --target "$VIP:80" --host roll.example.test --requests 20 --seconds 10)
assert_eq "while be1 is down, be2 answers every request" "20 be2" "$(jget "$r" 'd["ok"]') $(jget "$r" '" ".join(sorted(d["backends"]))')"
# be1 is tried again each time its suspect mark (1 s) lapses: its second failure ejects it.
for ((i = 0; i < 50; i++)); do # ≤ 10 s
  [[ $(vg_log_count 'backend ejected.*pool=roll.*backend=192\.0\.2\.21:8080') != 0 ]] && break
  client_tool load --target "$VIP:80" --host roll.example.test --requests 5 --seconds 5 >/dev/null
  sleep 0.2
done
if [[ $(vg_log_count 'backend ejected.*pool=roll.*backend=192\.0\.2\.21:8080') != 0 ]]; then pass "be1 is ejected"; else abort "be1 is ejected from pool roll"; fi
backend_restart 0 || abort "be1 restarts"
assert_eq "be1 is back but still ejected: be2 takes everything" "be2" "$(backends_of roll.example.test 20)"

section "rolling restart: be2 killed under 3,000 requests"
before=$(retries roll.example.test roll)
load_with_kill_3k roll.example.test 1 1
check_takeover roll.example.test roll "$before" 12
if wait_vg_log 'ejected backend answered.*192\.0\.2\.21:8080' 5; then pass "the log says be1 is back in rotation"; else fail "the log says be1 is back in rotation"; fi
if wait_vg_log 'pool in panic.*pool=roll' 5; then pass "the panic is logged"; else fail "the panic is logged"; fi
assert_eq "the panic is counted once" "1" "$(metric 'vipgate_pool_panics_total{pool="roll"}')"
assert_eq "the pool is out of panic" "0" "$(metric 'vipgate_pool_panic{pool="roll"}')"

section "rolling restart with health checks: be1 still marked down when be2 dies"
backend_restart 1 || abort "be2 restarts"
down=$(vg_log_count 'backend unhealthy.*pool=hc.*backend=192\.0\.2\.21:8080')
backend_kill 0
for ((i = 0; i < 100; i++)); do # ≤ 10 s
  (($(vg_log_count 'backend unhealthy.*pool=hc.*backend=192\.0\.2\.21:8080') > down)) && break
  sleep 0.1
done
(($(vg_log_count 'backend unhealthy.*pool=hc.*backend=192\.0\.2\.21:8080') > down)) || abort "pool hc's checks mark be1 down"
# Marked down by the checks from the first section's kill of be2 too: wait for be2 to be back.
for ((i = 0; i < 50; i++)); do
  [[ $(backends_of hc.example.test 4) == be2 ]] && break
  sleep 0.2
done
assert_eq "with be1 down by its checks, be2 takes everything" "be2" "$(backends_of hc.example.test 10)"
backend_restart 0 || abort "be1 restarts"
before=$(retries hc.example.test hc)
load_with_kill_3k hc.example.test 0.5 1
check_takeover hc.example.test hc "$before" 20
# Only with be1 still marked down (and be2 a suspect) was nothing available.
if wait_vg_log 'pool in panic.*pool=hc' 5; then pass "be1 was still marked down when be2 died (pool hc in panic)"; else fail "be1 was still marked down when be2 died: pool hc never in panic"; fi

section "a pool whose backends are all dead answers 503 quickly, without a retry storm"
# shellcheck disable=SC2016 # awk's own fields
rsts() { ip netns exec "${BE_NS[2]}" awk '/^Tcp:/ { if (!n) { for (i = 1; i <= NF; i++) if ($i == "OutRsts") c = i; n = 1 } else print $c }' /proc/net/snmp; }
rst0=$(rsts)
r=$(client_tool load --target "$VIP:80" --host dead.example.test --requests 600 --conns 2 --seconds 20)
attempts=$(($(rsts) - rst0))
secs=$(jget "$r" 'int(d["seconds"]) + 1')
note "dead pool: $(jget "$r" 'd["sent"]') GETs in $(jget "$r" 'd["seconds"]') s, statuses $(jget "$r" 'd["status"]'), slowest $(jget "$r" 'd["max_latency_ms"]') ms, $attempts connection attempts"
assert_eq "600 requests, all 503" "600 {'503': 600}" "$(jget "$r" 'd["sent"]') $(jget "$r" 'd["status"]')"
assert_num "the slowest 503 took < 1000 ms" "$(jget "$r" 'int(d["max_latency_ms"])')" -lt 1000
# Each backend is tried again once its 1 s suspect mark lapses, by at most the 2 connections.
limit=$((2 * 2 * (secs + 1)))
assert_num "connection attempts to the dead backends: $attempts (<= $limit, not 3 per request)" "$attempts" -le "$limit"

section "L4: the same rolling restart for a tcp pool's connect retry"
echo_start 1 7000 || abort "echo server on be2:7000" # be1's is down at start
xfer_ok() { client_tool tcp-xfer --target "$VIP:5000" --bytes 10000 --timeout 5 | grep -c 'match=yes' || true; }
ejected='backend ejected.*pool=echo.*backend=192\.0\.2\.21:7000'
for ((i = 0; i < 50; i++)); do # ≤ 10 s: be1 is tried again each time its suspect mark lapses
  [[ $(vg_log_count "$ejected") != 0 ]] && break
  xfer_ok >/dev/null
  sleep 0.2
done
if [[ $(vg_log_count "$ejected") != 0 ]]; then pass "be1:7000 is ejected"; else abort "be1:7000 is ejected"; fi
echo_start 0 7000 || abort "echo server on be1:7000 restarts"
# be1's own suspect mark (from its last refused connect) lapses within 1 s: a backend that
# refused within the last second is not tried even as the last resort (see configuration.md).
sleep 1.1
kill -KILL "${ECHO_PID[0]}" 2>/dev/null || true
wait "${ECHO_PID[0]}" 2>/dev/null || true
vg_forget "${ECHO_PID[0]}"
ok=0
for ((i = 0; i < 20; i++)); do ok=$((ok + $(xfer_ok))); done
assert_eq "be2:7000 killed, be1:7000 ejected but back: 20 of 20 connections echoed" "20" "$ok"
assert_eq "all 20 went to be1:7000" "20" "$(echo_conns be1-7000)"
if wait_vg_log 'ejected backend answered.*pool=echo' 5; then pass "be1:7000 is back in rotation"; else fail "be1:7000 is back in rotation"; fi

stop_vipgate
summary
