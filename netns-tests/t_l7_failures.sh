#!/usr/bin/env bash
# netns-tests/run: alone (its timings or load figures need an otherwise idle machine)
# Backend failures through the VIP: a backend killed (SIGKILL, by PID) under keep-alive load
# costs no idempotent request when retries are on, and is passed over at once (a suspect after
# its first refused connection; few requests are retried); once restarted, active HTTP
# health checks bring it back into rotation within a bounded time. The same kill with retries
# off does cost requests (the control showing the load can see failures). A pool with no
# healthy backend answers 503 at once.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

lan_up 3
cfg=$VG_TMP/failures.toml
cat >"$cfg" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"

[[host]]
names = ["app.example.test"]
[[host.route]]
prefix = "/"
pool = "app"
retries = 2
retry_on = ["connect-failure", "reset"]

[[host]]
names = ["noretry.example.test"]
[[host.route]]
prefix = "/"
pool = "app"
retries = 0

[[host]]
names = ["gone.example.test"]
[[host.route]]
prefix = "/"
pool = "gone"

[pool.app]
backends = ["192.0.2.21:8080", "192.0.2.22:8080", "192.0.2.23:8080"]
[pool.app.health]
type = "http"
path = "/healthz"
interval_ms = 500
timeout_ms = 300
healthy_threshold = 2
unhealthy_threshold = 3
[pool.app.outlier]
consecutive_failures = 3
base_ejection_ms = 500
max_ejection_ms = 2000

# Nobody listens on port 9 of be1, and nobody has 192.0.2.99.
[pool.gone]
backends = ["192.0.2.21:9", "192.0.2.99:8080"]
[pool.gone.health]
type = "tcp"
interval_ms = 200
timeout_ms = 100
unhealthy_threshold = 1
EOF
start_vipgate "$cfg" || abort "vipgate starts and logs ready"

# SECONDS_BEFORE_KILL INDEX HOST: 4 s of keep-alive GETs from 4 connections (at most 20,000);
# backend INDEX is SIGKILLed after SECONDS_BEFORE_KILL. Sets LOAD (the JSON result).
load_with_kill_4s() { load_with_kill "$3" "$1" "$2" 20000 4 4; }

section "be2 killed under load, retries on connect-failure and reset"
# What is retried is a try that failed before any response byte reached the client (refused
# connect, reset before the head); backend.py writes each response in one write, so the kill
# cannot fall inside a response that has started (which no proxy can retry).
load_with_kill_4s 1.5 1 app.example.test
sent=$(jget "$LOAD" 'd["sent"]')
assert_num "a real load ran (>= 500 requests)" "$sent" -ge 500
assert_eq "failed requests: 0 of $sent" "0" "$(jget "$LOAD" 'd["sent"] - d["ok"]')"
assert_num "be2 answered before it was killed" "$(jget "$LOAD" 'd["backends"].get("be2", 0)')" -ge 1
# After its first refused connect or reset be2 is a suspect, passed over for 1 s at a time: the
# requests in flight on it (at most 4) are retried, then about 4 each time the mark lapses
# until the checks mark it down (1.5 s). Its failures come too slowly to reach
# consecutive_failures before the checks do: no ejection is expected here (t_l7_panic has one).
retried=$(in_lb curl -sS --max-time 5 http://127.0.0.1:9901/metrics |
  awk '$1 == "vipgate_http_retries_total{host=\"app.example.test\",route=\"/\",pool=\"app\"}" { print $2 }')
note "retries during the load: $retried"
assert_num "be2 is passed over at once: at most 16 retries ($retried)" "$retried" -le 16
if wait_vg_log 'backend unhealthy.*backend=192\.0\.2\.22:8080' 40; then pass "be2 is marked unhealthy by the HTTP checks"; else fail "be2 is marked unhealthy by the HTTP checks"; fi
assert_eq "while be2 is down, requests go to be1 and be3 only" "be1 be3" \
  "$(jget "$(client_tool load --target "$VIP:80" --host app.example.test --requests 30 --seconds 10)" '" ".join(sorted(d["backends"]))')"

section "be2 restarted: health checks bring it back"
t0=$(now_ms)
backend_restart 1 || fail "be2 restarts"
back=
for ((i = 0; i < 50; i++)); do # ≤ 10 s
  r=$(client_tool load --target "$VIP:80" --host app.example.test --requests 6 --seconds 5)
  if [[ $(jget "$r" 'd["backends"].get("be2", 0)') != 0 ]]; then
    back=$(($(now_ms) - t0))
    break
  fi
  sleep 0.2
done
if [[ -n $back ]]; then pass "be2 gets traffic again after its restart"; else fail "be2 gets traffic again within 10 s of its restart"; fi
note "be2 back in rotation ${back:-never} ms after its restart (interval 500 ms, healthy_threshold 2)"
if wait_vg_log 'backend healthy.*backend=192\.0\.2\.22:8080' 10; then pass "the log says be2 is healthy again"; else fail "the log says be2 is healthy again"; fi
r=$(client_tool load --target "$VIP:80" --host app.example.test --requests 30 --seconds 10)
assert_eq "after recovery all three backends share the load" "be1 be2 be3" "$(jget "$r" '" ".join(sorted(d["backends"]))')"

section "control: be3 killed under load with retries = 0 costs requests"
load_with_kill_4s 1.5 2 noretry.example.test
failed=$(jget "$LOAD" 'd["sent"] - d["ok"]')
assert_num "without retries some requests fail ($failed of $(jget "$LOAD" 'd["sent"]'))" "$failed" -ge 1
assert_eq "those failures are 502s from vipgate, not broken connections" "0" "$(jget "$LOAD" 'd["errors"]')"

section "a pool with no healthy backend answers 503 quickly"
wait_vg_log 'backend unhealthy.*backend=192\.0\.2\.21:9' 30 || fail "the closed port is marked unhealthy"
wait_vg_log 'backend unhealthy.*backend=192\.0\.2\.99:8080' 30 || fail "the absent host is marked unhealthy"
# shellcheck disable=SC2016 # expanded by curl
times=$(for p in a b c d e; do
  in_client curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{time_total}\n' \
    -H 'Host: gone.example.test' "http://$VIP/$p" || true
done)
assert_eq "5 requests to the dead pool: all 503" "503 503 503 503 503" "$(awk '{print $1}' <<<"$times" | paste -sd' ' -)"
worst_ms=$(awk '{ms = $2 * 1000; if (ms > m) m = ms} END {printf "%d", m}' <<<"$times")
note "503 latencies (s): $(awk '{print $2}' <<<"$times" | paste -sd' ' -)"
assert_num "the slowest 503 took < 1000 ms (got $worst_ms ms)" "$worst_ms" -lt 1000
w='%{num_connects} %{http_code}\n'
kv=$(in_client curl -sS --max-time 10 -o /dev/null -w "$w" -H 'Host: gone.example.test' "http://$VIP/x" \
  --next -o /dev/null -w "$w" -H 'Host: app.example.test' "http://$VIP/y" || true)
assert_eq "a 503 keeps the connection (1 connect, then 0)" "1 503|0 200" "$(paste -sd'|' - <<<"$kv")"

stop_vipgate
summary
