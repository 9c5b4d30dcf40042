#!/usr/bin/env bash
# The admin listener of a real daemon that owns the VIP: /readyz, /metrics (the VIP owned, GARPs
# sent, requests counted, reload counters), POST /reload with a good and a broken file (the
# refusal carries FILE:LINE:COLUMN), the JSON access log on stdout, and /readyz answering 503
# while a graceful stop drains a slow request.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

lan_up 2
cfg=$VG_TMP/admin.toml
cat >"$cfg" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"

[[host]]
names = ["blog.example.test"]
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["${BE_IP[0]}:$BACKEND_PORT", "${BE_IP[1]}:$BACKEND_PORT"]

[daemon]
drain_timeout_ms = 10000

[access_log]
format = "json"
EOF
ADMIN=http://127.0.0.1:9901

admin() { # METHOD PATH: sets ADMIN_CODE and ADMIN_BODY
  local out
  out=$(in_lb curl -sS --max-time 10 -X "$1" -w '\n%{http_code}' "$ADMIN$2" 2>&1) || true
  ADMIN_CODE=${out##*$'\n'}
  ADMIN_BODY=${out%$'\n'*}
  ADMIN_BODY=${ADMIN_BODY%$'\n'}
}
metric() { metric_of "$ADMIN_BODY" "$1"; } # NAME{LABELS}: its value in the last /metrics body

section "ready, metrics"
start_vipgate "$cfg" || abort "vipgate starts and logs ready"
admin GET /healthz
assert_eq "/healthz answers 200" 200 "$ADMIN_CODE"
admin GET /readyz
assert_eq "/readyz answers 200 once serving" 200 "$ADMIN_CODE"
for i in 1 2 3; do expect_route "request $i is served" blog.example.test /x 200 'be1|be2'; done
sleep 0.5 # the GARP burst (5 x 100 ms)
admin GET /metrics
assert_eq "/metrics answers 200" 200 "$ADMIN_CODE"
assert_eq "the VIP is owned" 1 "$(metric "vipgate_vip_owned{vip=\"$VIP\"}")"
assert_eq "five GARPs were sent" 5 "$(metric "vipgate_garps_sent_total{vip=\"$VIP\"}")"
assert_eq "the three requests are counted as 2xx" 3 \
  "$(metric 'vipgate_http_requests_total{host="blog.example.test",route="/",pool="web",code_class="2xx"}')"
# The client may have learnt the VIP from a GARP and never asked: the counter is there, not >0.
assert_match "ARP replies are counted" "$(metric "vipgate_arp_replies_sent_total{vip=\"$VIP\"}")" '[0-9]+'

section "access log"
line=$(vg_log_text | grep -F '"host":"blog.example.test"' | tail -n 1)
# shellcheck disable=SC2016 # the python program is literal
parsed=$("$VG_PYTHON" -c '
import json, sys
r = json.loads(sys.argv[1])
print(r["method"], r["path"], r["status"], r["route"], r["pool"], r["client"], r["backend"].rsplit(":", 1)[1])
' "$line" 2>&1) || true
assert_eq "the access log line is JSON with the route, pool, real client and backend" \
  "GET /x 200 / web $CLIENT_IP $BACKEND_PORT" "$parsed"

section "POST /reload"
admin POST /reload
assert_eq "POST /reload with the same file answers 200" 200 "$ADMIN_CODE"
assert_contains "… and says it reloaded" "$ADMIN_BODY" '"status":"reloaded"'
cp "$cfg" "$cfg.good"
printf '[pool.web.outlier]\nbogus = 1\n' >>"$cfg"
admin POST /reload
assert_eq "POST /reload with a broken file answers 422" 422 "$ADMIN_CODE"
assert_match "… with FILE:LINE:COLUMN and the reason" "$ADMIN_BODY" \
  "\\{\"status\":\"refused\",\"error\":\"${cfg//./\\.}:[0-9]+:[0-9]+: error: .*bogus.*\"\\}"
expect_route "traffic still flows after the refusal" blog.example.test / 200 'be1|be2'
admin GET /metrics
assert_eq "one reload succeeded" 1 "$(metric 'vipgate_config_reloads_total{result="success"}')"
assert_eq "one reload failed" 1 "$(metric 'vipgate_config_reloads_total{result="failure"}')"
assert_eq "the last reload is marked failed" 0 "$(metric vipgate_config_last_reload_successful)"
cp "$cfg.good" "$cfg"

section "/readyz while draining"
in_client curl -sS --max-time 20 -H 'Host: blog.example.test' -o /dev/null \
  -w '%{http_code}\n' "http://$VIP/slow?ms=3000" >"$VG_TMP/slow.out" 2>&1 &
slow_pid=$!
vg_track "$slow_pid"
sleep 0.5
kill -TERM "$VG_PID"
for ((i = 0; i < 20; i++)); do (($(vg_log_count 'draining in-flight') > 0)) && break; sleep 0.05; done
admin GET /readyz
assert_eq "/readyz answers 503 while draining" 503 "$ADMIN_CODE"
admin GET /healthz
assert_eq "/healthz still answers 200 while draining" 200 "$ADMIN_CODE"
vg_wait_gone 150 "$slow_pid" || true
wait "$slow_pid" || true
vg_forget "$slow_pid"
assert_eq "the slow request finished with 200" 200 "$(cat "$VG_TMP/slow.out")"
stop_vipgate

summary
