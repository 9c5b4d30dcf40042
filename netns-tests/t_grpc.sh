#!/usr/bin/env bash
# HTTP/2 to backends ([pool.NAME] protocol = "http2") through the VIP: a real gRPC service
# (grpcio) reached by a real gRPC client over HTTP/2 with prior knowledge — unary, a status
# in the trailers, server, client and bidirectional streaming, a deadline — balanced over two
# gRPC backends, one of them killed without a failed call; nghttpd as an h2c and as a TLS
# (ALPN h2) backend, reached by HTTP/2 and by HTTP/1.1 clients (their bodies translated both
# ways); vipgate's own errors answered as gRPC statuses; check refuses an HTTP/1.1 ALPN id on an http2 pool; metrics count the calls.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

[[ -x $TESTCERT_BIN ]] || abort "examples/testcert is built ($TESTCERT_BIN; cargo build --examples)"
command -v nghttpd >/dev/null || abort "nghttpd is installed (nghttp2-server)"
PY=/usr/bin/python3
"$PY" -c 'import grpc' 2>/dev/null || abort "python3-grpcio is installed"

lan_up 2
pki=$VG_TMP/pki
mkdir -p "$pki"
testcert ca "$pki/ca"
testcert leaf "$pki/ca" "$pki/h2" h2.internal
GRPC_PORT=50051
H2C_PORT=8082
H2S_PORT=8443

grpc_start() { # I: the gRPC service in backend I's namespace, named after it
  ip netns exec "${BE_NS[$1]}" "$PY" "$VG_ROOT/netns-tests/grpc_tool.py" serve \
    --name "${BE_NAME[$1]}" --bind "${BE_IP[$1]}" --port "$GRPC_PORT" \
    >"$VG_TMP/grpc-$1.log" 2>&1 &
  GRPC_PID[$1]=$!
  vg_track "$!"
  for _ in $(seq 50); do
    grep -q serving "$VG_TMP/grpc-$1.log" 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$VG_TMP/grpc-$1.log"
  return 1
}
GRPC_PID=()
grpc_start 0 || abort "the gRPC service starts on be1"
grpc_start 1 || abort "the gRPC service starts on be2"
www=$VG_TMP/www
mkdir -p "$www"
head -c 300000 /dev/urandom >"$www/big.bin"
echo "hello over h2" >"$www/index.html"
in_ns "${BE_NS[0]}" nghttpd --no-tls -d "$www" --address="${BE_IP[0]}" "$H2C_PORT" >"$VG_TMP/nghttpd-h2c.log" 2>&1 &
vg_track "$!"
in_ns "${BE_NS[1]}" nghttpd -d "$www" --address="${BE_IP[1]}" "$H2S_PORT" "$pki/h2.key" "$pki/h2.pem" \
  >"$VG_TMP/nghttpd-tls.log" 2>&1 &
vg_track "$!"

cfg=$VG_TMP/grpc.toml
cat >"$cfg" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"

[[host]]
names = ["grpc.example.test"]
[[host.route]]
prefix = "/"
pool = "grpc"

[[host]]
names = ["dead.example.test"]
[[host.route]]
prefix = "/"
pool = "dead"

[[host]]
names = ["h2c.example.test"]
[[host.route]]
prefix = "/"
pool = "h2c"

[[host]]
names = ["h2s.example.test"]
[[host.route]]
prefix = "/"
pool = "h2s"

[pool.grpc]
backends = ["${BE_IP[0]}:$GRPC_PORT", "${BE_IP[1]}:$GRPC_PORT"]
balance = "round_robin"
protocol = "http2"

[pool.dead]
# Nobody listens there.
backends = ["${BE_IP[0]}:50099"]
protocol = "http2"

[pool.h2c]
backends = ["${BE_IP[0]}:$H2C_PORT"]
protocol = "http2"

[pool.h2s]
backends = ["${BE_IP[1]}:$H2S_PORT"]
protocol = "http2"
[pool.h2s.tls]
ca = "pki/ca.pem"
server_name = "h2.internal"
EOF

section "check"
vipgate_cmd check --config "$cfg"
assert_eq "check accepts protocol = \"http2\" pools" 0 "$CMD_RC"
sed 's|^server_name = "h2.internal"|&\nalpn = ["http/1.1"]|' "$cfg" >"$VG_TMP/bad-alpn.toml"
vipgate_cmd check --config "$VG_TMP/bad-alpn.toml"
assert_eq "alpn http/1.1 on an http2 pool: check exits 2" 2 "$CMD_RC"
assert_match "... with FILE:LINE and the reason" "$CMD_ERR" \
  '.*bad-alpn\.toml:[0-9]+:[0-9]+: error: alpn "http/1.1": a protocol = "http2" pool offers "h2" only.*'
sed 's|^protocol = "http2"$|protocol = "spdy"|' "$cfg" >"$VG_TMP/bad-proto.toml"
vipgate_cmd check --config "$VG_TMP/bad-proto.toml"
assert_match "an unknown protocol is refused with the choices" "$CMD_ERR" \
  '.*bad-proto\.toml:[0-9]+:[0-9]+: error: protocol "spdy" is not "http1" or "http2".*'

start_vipgate "$cfg" || abort "vipgate starts"
call() { in_client timeout 30 "$PY" "$VG_ROOT/netns-tests/grpc_tool.py" call --target "$VIP:80" \
  --authority grpc.example.test "$@" 2>&1; }

section "gRPC through the VIP"
assert_match "unary call" "$(call unary)" 'unary=OK hello from be[12]'
assert_eq "a status in the trailers reaches the client with its details" "fail=NOT_FOUND no such thing" "$(call fail)"
assert_match "server streaming: 50 messages" "$(call server)" 'server=50 50/50 from be[12]'
assert_eq "client streaming: 4 messages joined" "client=a+b+c+d" "$(call client)"
assert_match "bidirectional: 20 turns, each answered before the next is sent" "$(call bidi)" 'bidi=20 echo m19 from be[12]'
assert_eq "a 300 ms deadline on a 2 s call -> DEADLINE_EXCEEDED" "deadline=DEADLINE_EXCEEDED" "$(call deadline)"
assert_eq "300 calls on one channel (one connection, many streams)" "many=OK 300" "$(call many 300)"
other() { # AUTHORITY CASE: a call to another host
  local a=$1
  shift
  in_client timeout 30 "$PY" "$VG_ROOT/netns-tests/grpc_tool.py" call --target "$VIP:80" --authority "$a" "$@" 2>&1
}
assert_match "vipgate's own 404 (no such host) reaches a gRPC client as NOT_FOUND" \
  "$(other nowhere.example.test unary)" 'unary=NOT_FOUND .*'
assert_match "a pool whose backend refuses connections: UNAVAILABLE, not a protocol error" \
  "$(other dead.example.test unary)" 'unary=UNAVAILABLE .*'
names=""
for _ in 1 2 3 4; do names+="$(call unary | awk '{print $NF}') "; done
assert_match "calls are balanced over both backends" "$names" '.*be1.*' && assert_match "... be2 too" "$names" '.*be2.*'

section "a gRPC backend dies: calls go to the other, none fails"
kill -KILL "${GRPC_PID[0]}"
wait "${GRPC_PID[0]}" 2>/dev/null || true
vg_forget "${GRPC_PID[0]}"
ok=0
for _ in $(seq 10); do
  [[ $(call unary) =~ ^unary=OK\ hello\ from\ be2$ ]] && ok=$((ok + 1))
done
assert_eq "10 of 10 unary calls answered by be2" 10 "$ok"
assert_eq "and a stream that starts now: 300 calls" "many=OK 300" "$(call many 300)"

section "h2c and TLS (ALPN h2) backends, from HTTP/2 and HTTP/1.1 clients"
get() { # HOST PATH [curl args]: "VERSION STATUS" and the body into $VG_TMP/got
  local host=$1 path=$2
  shift 2
  in_client curl -sS --max-time 15 -H "Host: $host" -o "$VG_TMP/got" -w '%{http_version} %{http_code}' \
    "$@" "http://$VIP$path" 2>&1 || true
}
for host in h2c.example.test h2s.example.test; do
  assert_eq "$host: HTTP/2 client -> 200" "2 200" "$(get "$host" /index.html --http2-prior-knowledge)"
  assert_eq "$host: ... its body" "hello over h2" "$(cat "$VG_TMP/got")"
  assert_eq "$host: HTTP/1.1 client -> 200" "1.1 200" "$(get "$host" /big.bin)"
  if cmp -s "$VG_TMP/got" "$www/big.bin"; then pass "$host: 300 kB arrive whole over HTTP/1.1"; else fail "$host: the body differs"; fi
  # An HTTP/1.1 status line to an HTTP/1.0 client, as every proxy sends (RFC 9110 §6.2).
  assert_eq "$host: HTTP/1.0 client -> 200" "1.1 200" "$(get "$host" /big.bin --http1.0)"
  if cmp -s "$VG_TMP/got" "$www/big.bin"; then pass "$host: 300 kB arrive whole over HTTP/1.0 (until close)"; else fail "$host: the HTTP/1.0 body differs"; fi
  assert_eq "$host: a 404 of the backend is relayed" "1.1 404" "$(get "$host" /nothing)"
done
head -c 100000 /dev/zero | tr '\0' 'x' >"$VG_TMP/post.bin"
assert_eq "HTTP/1.1 POST with a chunked body to an h2 backend gets the backend's answer" "1.1 404" \
  "$(get h2c.example.test /nothing -H 'Transfer-Encoding: chunked' --data-binary @"$VG_TMP/post.bin")"
hdrs=$(in_client curl -sS --max-time 15 -H 'Host: h2c.example.test' -D - -o /dev/null "http://$VIP/index.html")
assert_contains "the h2 backend's content-length reaches the HTTP/1.1 client" \
  "$(tr '[:upper:]' '[:lower:]' <<<"$hdrs")" "content-length: 14"

section "metrics"
metrics=$(metrics_in "$NS_LB")
n=$(metric_of "$metrics" 'vipgate_http_requests_total{host="grpc.example.test",route="/",pool="grpc",code_class="2xx"}')
assert_num "gRPC calls are counted as requests of their host and pool" "${n:-0}" -ge 600

summary
