#!/usr/bin/env bash
# HTTP/2 from clients through the VIP: prior knowledge on the http listener, ALPN h2 on the
# https listener (and http2 = false keeping a listener on HTTP/1.1), streams of one connection
# routed each on its own, the same access lists, limits, forwarding headers, retries, metrics
# and access log as HTTP/1.1, bodies both ways with and without content-length, RFC 9113 §8
# violations answered with the stream or connection error and never forwarded, the attack
# vectors (rapid reset, CONTINUATION flood, PING and SETTINGS floods) survived with the daemon
# serving on, GOAWAY on a graceful stop with the stream in flight finished, and an h2load run
# without a failed request.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

[[ -x $TESTCERT_BIN ]] || abort "examples/testcert is built ($TESTCERT_BIN; cargo build --examples)"
command -v h2load >/dev/null || abort "h2load is installed (nghttp2-client)"
H2PY=/usr/bin/python3
"$H2PY" -c 'import h2' 2>/dev/null || abort "python3-h2 is installed"

lan_up 2
pki=$VG_TMP/pki
mkdir -p "$pki"
testcert ca "$pki/ca"
testcert leaf "$pki/ca" "$pki/a" a.example.test
TLS_CA=$pki/ca.pem

cfg=$VG_TMP/h2.toml
cat >"$cfg" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"

[[listener]]
bind = "$VIP:443"
protocol = "https"

[[listener]]
bind = "$VIP:8443"
protocol = "https"
http2 = false

[[certificate]]
cert = "pki/a.pem"
key = "pki/a.key"
default = true

[proxy]
request_id = true

[[host]]
names = ["a.example.test"]
[[host.route]]
prefix = "/"
pool = "web"
[[host.route]]
prefix = "/admin"
pool = "web"
allow = ["203.0.113.0/24"]
[[host.route]]
prefix = "/upload"
pool = "web"
max_body_bytes = 100000

[[host]]
names = ["b.example.test"]
[[host.route]]
prefix = "/"
pool = "other"

[[host]]
names = ["retry.example.test"]
[[host.route]]
prefix = "/"
pool = "half-dead"

[pool.web]
backends = ["${BE_IP[0]}:8080"]
[pool.other]
backends = ["${BE_IP[1]}:8080"]
[pool.half-dead]
# The first is a port nobody listens on: connect fails and the try goes to the second.
backends = ["${BE_IP[0]}:8099", "${BE_IP[1]}:8080"]
balance = "round_robin"

[access_log]
format = "json"
EOF

vipgate_cmd check --config "$cfg"
assert_eq "check accepts http2 keys" 0 "$CMD_RC"
bad=$VG_TMP/bad.toml
printf '[[listener]]\nbind = "%s:81"\nprotocol = "tcp"\npool = "web"\nhttp2 = true\n[pool.web]\nbackends = ["%s:8080"]\n' "$VIP" "${BE_IP[0]}" >"$bad"
vipgate_cmd check --config "$bad"
assert_eq "http2 on a tcp listener: check exits 2" 2 "$CMD_RC"
assert_match "http2 on a tcp listener: FILE:LINE and the reason" "$CMD_ERR" \
  '.*bad\.toml:5:9: error: http2 applies only to protocol = "http" or "https".*'

start_vipgate "$cfg" || abort "vipgate starts"
h2c() { in_client timeout 30 "$H2PY" "$VG_ROOT/netns-tests/h2client.py" "$VIP" 80 "$@" 2>&1; }
h2tls() {
  in_client timeout 30 "$H2PY" "$VG_ROOT/netns-tests/h2client.py" --tls --ca "$TLS_CA" \
    --sni "${SNI:-a.example.test}" "$VIP" 443 "$@" 2>&1
}
curl_v() { # ARGS...: curl's "HTTP-VERSION STATUS"
  in_client curl -sS --max-time 15 -o /dev/null -w '%{http_version} %{http_code}' "$@" 2>&1 || true
}

section "prior knowledge on the http listener; HTTP/1.1 unchanged beside it"
assert_eq "curl --http2-prior-knowledge -> HTTP/2 200" "2 200" \
  "$(curl_v --http2-prior-knowledge -H 'Host: a.example.test' "http://$VIP/x")"
assert_eq "curl HTTP/1.1 on the same listener -> 1.1 200" "1.1 200" \
  "$(curl_v -H 'Host: a.example.test' "http://$VIP/x")"
hdrs=$(in_client curl -sS --max-time 15 --http2-prior-knowledge "http://a.example.test/headers" \
  --resolve "a.example.test:80:$VIP")
assert_contains "the backend is reached over HTTP/1.1 with the Host from :authority" "$hdrs" "host=a.example.test"
assert_contains "X-Forwarded-For is the client" "$hdrs" "X-Forwarded-For: $CLIENT_IP"
assert_contains "X-Real-IP is the client" "$hdrs" "X-Real-IP: $CLIENT_IP"
assert_contains "X-Forwarded-Proto is http" "$hdrs" "X-Forwarded-Proto: http"
assert_match "X-Request-Id is added" "$hdrs" '.*X-Request-Id: [0-9a-f]{32}.*'
assert_not_contains "no HTTP/2 pseudo-header reaches the backend" "$hdrs" ":authority"

hdrs=$(in_client curl -sS --max-time 15 --http2 -H 'Host: a.example.test' "http://$VIP/headers" -w '\nversion=%{http_version}')
assert_contains "Upgrade: h2c (curl --http2 on http://) is not taken: the answer is HTTP/1.1" "$hdrs" "version=1.1"
assert_not_contains "... and the backend never sees the Upgrade (no h2c smuggling)" "$(tr '[:upper:]' '[:lower:]' <<<"$hdrs")" "upgrade"

section "every stream of one connection is routed on its own"
out=$(h2c streams a.example.test /one b.example.test /two a.example.test /admin/x nowhere.example.test / a.example.test /three)
mapfile -t lines <<<"$out"
assert_match "stream 1: a.example.test -> be1" "${lines[0]:-}" 'status=200 backend=be1 .*'
assert_match "stream 2: b.example.test -> be2, same connection" "${lines[1]:-}" 'status=200 backend=be2 .*'
assert_match "stream 3: /admin from outside its allow list -> 403" "${lines[2]:-}" 'status=403 .*'
assert_match "stream 4: unknown host -> 404" "${lines[3]:-}" 'status=404 .*'
assert_match "stream 5: a.example.test again -> be1" "${lines[4]:-}" 'status=200 backend=be1 .*'
out=$(h2c streams a.example.test '/x/../admin/y' a.example.test '/%61dmin/y')
assert_eq "/x/../admin and /%61dmin are normalised before the access list: both 403" \
  "status=403 backend=- body_len=10|status=403 backend=- body_len=10" "$(tr '\n' '|' <<<"$out" | sed 's/|$//')"

section "bodies both ways"
assert_match "POST 300 kB with content-length echoed whole" "$(h2c post a.example.test /echo 300000)" \
  'status=200 len=300000 body=same .*'
assert_match "POST 300 kB without content-length (chunked to the backend) echoed whole" \
  "$(h2c post a.example.test /echo 300000 --no-length --frames 40)" 'status=200 len=300000 body=same .*'
assert_match "POST of 200 kB declared to a 100 kB route -> 413" "$(h2c post a.example.test /upload/echo 200000)" \
  'status=413 .*'
assert_match "POST of 200 kB streamed to a 100 kB route -> 413" \
  "$(h2c post a.example.test /upload/echo 200000 --no-length --frames 20)" 'status=413 .*'
body=$(in_client curl -sS --max-time 15 --http2-prior-knowledge -H 'Host: a.example.test' "http://$VIP/big/chunked")
assert_eq "a chunked response's 5 chunks arrive as DATA, without the chunk framing" "5" \
  "$(grep -cE '^chunk [0-9]/5 backend=be1 x+$' <<<"$body")"
assert_contains "... to its last line" "$body" "done backend=be1"

section "retries and failures through the same pipeline"
ok=0
for _ in 1 2 3 4; do
  [[ $(curl_v --http2-prior-knowledge -H 'Host: retry.example.test' "http://$VIP/") == "2 200" ]] && ok=$((ok + 1))
done
assert_eq "a backend that refuses connections is tried past: 4 of 4 answered 200" 4 "$ok"
backend_kill 1
assert_eq "a pool whose only backend is dead -> 502 on the stream" "2 502" \
  "$(curl_v --http2-prior-knowledge -H 'Host: b.example.test' "http://$VIP/")"
backend_restart 1

section "RFC 9113 §8: malformed requests are refused, never forwarded"
answered() { # the requests of host a.example.test counted by vipgate, all routes and classes
  metrics_in "$NS_LB" | awk '/^vipgate_http_requests_total\{host="a.example.test"/ {n += $2} END {print n + 0}'
}
before=$(answered)
assert_eq "connection: close -> stream reset PROTOCOL_ERROR" "reset=PROTOCOL_ERROR" \
  "$(h2c headers a.example.test /headers connection=close)"
assert_eq "transfer-encoding -> stream reset PROTOCOL_ERROR" "reset=PROTOCOL_ERROR" \
  "$(h2c headers a.example.test /headers transfer-encoding=chunked)"
assert_eq "te: gzip -> stream reset PROTOCOL_ERROR" "reset=PROTOCOL_ERROR" \
  "$(h2c headers a.example.test /headers te=gzip)"
assert_eq "a field value with leading whitespace -> stream reset PROTOCOL_ERROR" "reset=PROTOCOL_ERROR" \
  "$(h2c headers a.example.test /headers 'x-a= padded')"
assert_eq "Host naming another authority than :authority -> stream reset PROTOCOL_ERROR" \
  "reset=PROTOCOL_ERROR" "$(h2c headers a.example.test /headers host=b.example.test)"
assert_eq "an upper-case field name -> connection error PROTOCOL_ERROR (HPACK refuses it)" \
  "goaway=PROTOCOL_ERROR" "$(h2c headers a.example.test /headers X-Upper=1)"
assert_match "a :path that is not absolute -> stream reset PROTOCOL_ERROR" \
  "$(h2c streams a.example.test 'relative')" 'reset=PROTOCOL_ERROR'
assert_eq "none of them was routed (vipgate_http_requests_total of the host unchanged)" "$before" "$(answered)"
# The head is routed before the body shows it lies; the backend's connection is then closed
# inside the body it was promised, so it never sees a whole request.
assert_eq "content-length 10 with 5 bytes of DATA -> stream reset PROTOCOL_ERROR" "reset=PROTOCOL_ERROR" \
  "$(h2c length-mismatch a.example.test /echo 10 5)"

section "attack vectors: the connection is closed, the daemon serves on"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$VG_PID/status"; }
rss0=$(rss)
assert_match "rapid reset of 1000 streams -> GOAWAY ENHANCE_YOUR_CALM" \
  "$(h2c rapid-reset a.example.test /slow 1000)" 'goaway=ENHANCE_YOUR_CALM after=[0-9]+'
assert_match "CONTINUATION flood -> GOAWAY ENHANCE_YOUR_CALM, bounded bytes read" \
  "$(h2c continuation-flood a.example.test 20000)" 'goaway=ENHANCE_YOUR_CALM bytes=[0-9]+'
h2c ping-flood 100000 >"$VG_TMP/ping.out"
h2c settings-flood 100000 >"$VG_TMP/settings.out"
note "PING flood: $(cat "$VG_TMP/ping.out"); SETTINGS flood: $(cat "$VG_TMP/settings.out")"
rss1=$(rss)
assert_num "the floods left the daemon's memory within 32 MiB of before (${rss0} -> ${rss1} KiB)" \
  "$((rss1 - rss0))" -lt 32768
if vg_alive "$VG_PID"; then pass "the daemon is still running"; else fail "the daemon died"; fi
assert_eq "and serves HTTP/2 afterwards" "2 200" \
  "$(curl_v --http2-prior-knowledge -H 'Host: a.example.test' "http://$VIP/x")"

section "ALPN on https listeners"
assert_eq "curl --http2 over TLS negotiates h2 -> HTTP/2 200" "2 200" \
  "$(curl_v --http2 --cacert "$TLS_CA" --resolve "a.example.test:443:$VIP" https://a.example.test/x)"
assert_eq "an HTTP/1.1-only client on the same listener -> 1.1 200" "1.1 200" \
  "$(curl_v --http1.1 --cacert "$TLS_CA" --resolve "a.example.test:443:$VIP" https://a.example.test/x)"
assert_eq "http2 = false: curl --http2 gets HTTP/1.1" "1.1 200" \
  "$(curl_v --http2 --cacert "$TLS_CA" --resolve "a.example.test:8443:$VIP" https://a.example.test:8443/x)"
hdrs=$(in_client curl -sS --max-time 15 --http2 --cacert "$TLS_CA" --resolve "a.example.test:443:$VIP" \
  https://a.example.test/headers)
assert_contains "X-Forwarded-Proto is https over h2" "$hdrs" "X-Forwarded-Proto: https"
assert_match ":authority naming another host than the SNI -> 421" \
  "$(h2tls streams b.example.test /x)" 'status=421 .*'
assert_match "streams over TLS are routed as in cleartext" "$(h2tls streams a.example.test /y)" \
  'status=200 backend=be1 .*'

section "metrics and access log"
metrics=$(metrics_in "$NS_LB")
ok2=$(metric_of "$metrics" 'vipgate_http_requests_total{host="a.example.test",route="/",pool="web",code_class="2xx"}')
assert_num "HTTP/2 requests are counted in vipgate_requests_total" "${ok2:-0}" -ge 10
line=$(vg_log_text | grep '"protocol":"HTTP/2"' | grep '"path":"/one"' | tail -n 1)
assert_contains "access log: protocol HTTP/2" "$line" '"protocol":"HTTP/2"'
assert_contains "access log: host and pool" "$line" '"host":"a.example.test"'
assert_contains "access log: status" "$line" '"status":200'
line=$(vg_log_text | grep '"protocol":"HTTP/2"' | grep '"path":"/x/../admin/y"' | tail -n 1)
assert_contains "access log: the received and the normalised path" "$line" '"normalized_path":"/admin/y"'

section "h2load: multiplexed load without a failed request"
out=$(in_client timeout 60 h2load -n 3000 -c 6 -m 10 -H ':authority: a.example.test' "http://$VIP/x" 2>&1 || true)
assert_match "h2load: 3000 requests, 3000 succeeded" "$(grep '^requests:' <<<"$out")" \
  'requests: 3000 total, 3000 started, 3000 done, 3000 succeeded, 0 failed, 0 errored, 0 timeout'
ns_etc "$NS_CLIENT" hosts "$VIP a.example.test"
out=$(in_client timeout 60 h2load -n 600 -c 3 -m 5 "https://a.example.test/x" 2>&1 || true)
assert_match "h2load over TLS: 600 succeeded" "$(grep '^requests:' <<<"$out")" \
  'requests: 600 total, 600 started, 600 done, 600 succeeded, 0 failed, 0 errored, 0 timeout'

section "graceful stop: GOAWAY, the stream in flight finishes"
# nghttp (python-h2 treats a GOAWAY as the end of everything): -v prints each frame.
in_client timeout 30 nghttp -nv -H ':authority: a.example.test' "http://$VIP/slow?ms=1500" \
  >"$VG_TMP/slow.out" 2>&1 &
slow=$!
for _ in $(seq 50); do grep -q 'send HEADERS' "$VG_TMP/slow.out" && break; sleep 0.1; done
sleep 0.3
kill -TERM "$VG_PID"
wait "$slow" || true
assert_contains "a GOAWAY NO_ERROR came while the stream was in flight" "$(cat "$VG_TMP/slow.out")" \
  "recv GOAWAY frame"
assert_contains "... with NO_ERROR" "$(grep -A1 'recv GOAWAY' "$VG_TMP/slow.out")" "error_code=NO_ERROR"
assert_contains "the stream in flight still got its 200" "$(cat "$VG_TMP/slow.out")" ":status: 200"
assert_contains "... and its whole body (the last DATA frame has END_STREAM, flags=0x01)" \
  "$(grep 'recv DATA' "$VG_TMP/slow.out" | tail -n 1)" "flags=0x01"
if vg_wait_gone 100 "$VG_PID"; then pass "the daemon stopped"; else fail "the daemon did not stop"; fi

summary
