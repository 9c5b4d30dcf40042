#!/usr/bin/env bash
# netns-tests/run: alone (its timings or load figures need an otherwise idle machine)
# HTTP/1 features end to end through the VIP with real clients: Expect: 100-continue with curl,
# three pipelined requests in one write answered in order, an HTTP/1.0 client (closed after
# each answer, a chunked response de-chunked for it), chunked bodies both ways, a WebSocket
# exchange tunnelled after the 101, and slowloris clients cut off with 408 by head_timeout_ms
# while another client is served.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

lan_up 2
cfg=$VG_TMP/protocol.toml
cat >"$cfg" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"

[proxy]
head_timeout_ms = 1000

[[host]]
names = ["proto.example.test"]
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["192.0.2.21:8080", "192.0.2.22:8080"]
EOF
start_vipgate "$cfg" || abort "vipgate starts and logs ready"
H=proto.example.test
raw() { client_tool raw --target "$VIP:80" "$@"; } # --data 'ESCAPED' [--responses K] [--show]

section "Expect: 100-continue (curl)"
big=$VG_TMP/big.bin
head -c $((3 * 1024 * 1024)) /dev/urandom >"$big"
rc=0
res=$(in_client curl -sS -v --max-time 20 -H "Host: $H" -H 'Expect: 100-continue' --data-binary @"$big" \
  -o "$VG_TMP/echo.out" -w '%{http_code} %{time_total}' "http://$VIP/up/echo" 2>"$VG_TMP/curl.err") || rc=$?
assert_eq "curl exits 0" 0 "$rc"
assert_contains "curl got the interim 100 Continue" "$(tr -d '\r' <"$VG_TMP/curl.err")" "< HTTP/1.1 100 Continue"
assert_eq "200 for the upload" 200 "${res%% *}"
if cmp -s "$big" "$VG_TMP/echo.out"; then pass "the 3 MiB body came back byte for byte"; else fail "the 3 MiB body came back byte for byte ($(wc -c <"$VG_TMP/echo.out") bytes)"; fi
# curl waits up to 1 s for the 100 before sending anyway: a prompt 100 keeps the total far below.
ms=$(awk '{printf "%d", $2 * 1000}' <<<"$res")
note "100-continue upload of 3 MiB took $ms ms"
assert_num "the 100 came at once (whole exchange < 900 ms)" "$ms" -lt 900
in_client curl -sS --max-time 10 -H "Host: $H" -H 'Expect: 100-continue' --data-binary 'small body' \
  -o "$VG_TMP/hdr.out" "http://$VIP/up/headers" 2>/dev/null || true
assert_not_contains "the backend does not see Expect (vipgate answered it)" "$(tr '[:upper:]' '[:lower:]' <"$VG_TMP/hdr.out")" "expect:"

section "pipelining: three requests in one write"
out=$(raw --responses 3 --show \
  --data 'GET /pipe/1 HTTP/1.1\r\nHost: '$H'\r\n\r\nPOST /pipe/2/echo HTTP/1.1\r\nHost: '$H'\r\nContent-Length: 12\r\n\r\nsecond-body\nGET /pipe/3 HTTP/1.1\r\nHost: '$H'\r\n\r\n')
assert_eq "three 200s, connection kept" "200 200 200 open" "$(head -n 1 <<<"$out")"
assert_match "answers in request order (/pipe/1, the echoed body, /pipe/3)" "$(tail -n +2 <<<"$out" | paste -sd'|' -)" \
  'backend=be[12] method=GET [^|]*path=/pipe/1 [^|]*\|second-body\|backend=be[12] method=GET [^|]*path=/pipe/3 .*'

section "an HTTP/1.0 client"
w='%{num_connects} %{http_version} %{http_code}\n'
out=$(in_client curl -sS -0 --max-time 10 -H "Host: $H" -o "$VG_TMP/ten.1" -w "$w" "http://$VIP/ten/1" \
  --next -0 -H "Host: $H" -o "$VG_TMP/ten.2" -w "$w" "http://$VIP/ten/2" 2>&1 || true)
# The status line may say HTTP/1.1 (RFC 9110 §6.2: the server's own version); what matters is
# that the connection closes, as an HTTP/1.0 client without keep-alive expects.
assert_match "two HTTP/1.0 requests: a new connection each (closed after each answer), both 200" "$(paste -sd'|' - <<<"$out")" '1 1\.[01] 200\|1 1\.[01] 200' 
assert_match "the HTTP/1.0 request reached a backend" "$(head -n 1 "$VG_TMP/ten.2")" 'backend=be[12] method=GET .*path=/ten/2 .*'
out=$(raw --show --data 'GET /ten/chunked HTTP/1.0\r\nHost: '$H'\r\n\r\n')
assert_eq "HTTP/1.0 and a chunked backend response: 200, then closed" "200 closed" "$(head -n 1 <<<"$out")"
assert_eq "the body arrives de-chunked: 5 chunk lines, no chunk framing" "5 0" \
  "$(grep -c '^chunk [1-5]/5 backend=be[12] x\{1000\}$' <<<"$out" || true) $(grep -cE '^[0-9a-f]+\r?$' <<<"$out" || true)"
assert_match "and ends with the last piece" "$(tail -n 1 <<<"$out")" 'done backend=be[12]'
out=$(raw --show --data 'POST /ten/echo HTTP/1.0\r\nHost: '$H'\r\nContent-Length: 5\r\n\r\nhello')
assert_eq "HTTP/1.0 POST with Content-Length: echoed, then closed" "200 closed|hello" "$(paste -sd'|' - <<<"$out")"

section "chunked bodies both ways"
big5=$VG_TMP/big5.bin
head -c $((5 * 1024 * 1024)) /dev/urandom >"$big5"
rc=0
code=$(in_client curl -sS --max-time 20 -H "Host: $H" -H 'Expect:' -H 'Transfer-Encoding: chunked' \
  --data-binary @"$big5" -o "$VG_TMP/echo5.out" -w '%{http_code}' "http://$VIP/c/echo" 2>/dev/null) || rc=$?
if [[ $rc == 0 && $code == 200 ]] && cmp -s "$big5" "$VG_TMP/echo5.out"; then pass "5 MiB chunked upload echoed byte for byte"; else fail "5 MiB chunked upload echoed byte for byte (rc $rc, code $code)"; fi
out=$(raw --show --data 'POST /c/echo HTTP/1.1\r\nHost: '$H'\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: kept\r\n\r\n')
assert_eq "chunked upload with an extension and a trailer: 200, body reassembled" "200 open|hello, world" "$(paste -sd'|' - <<<"$out")"
in_client curl -sS --max-time 10 -H "Host: $H" -H 'Transfer-Encoding: chunked' --data-binary 'x' \
  -o "$VG_TMP/hdr2.out" "http://$VIP/c/headers" 2>/dev/null || true
assert_eq "a chunked request is forwarded chunked, with no Content-Length" "1 0" \
  "$(grep -ci '^transfer-encoding: chunked$' "$VG_TMP/hdr2.out" || true) $(grep -ci '^content-length:' "$VG_TMP/hdr2.out" || true)"
rc=0
in_client curl -sS --max-time 10 -D "$VG_TMP/dl.head" -H "Host: $H" -o "$VG_TMP/dl.out" "http://$VIP/c/chunked" 2>/dev/null || rc=$?
assert_eq "chunked download: curl reads it cleanly" 0 "$rc"
assert_contains "chunked download: sent chunked to an HTTP/1.1 client" "$(tr -d '\r' <"$VG_TMP/dl.head" | tr '[:upper:]' '[:lower:]')" "transfer-encoding: chunked"
assert_eq "chunked download: 5 chunk lines and the last piece" "5 1" \
  "$(grep -c '^chunk [1-5]/5 backend=be[12] x\{1000\}$' "$VG_TMP/dl.out" || true) $(grep -c '^done backend=be[12]$' "$VG_TMP/dl.out" || true)"

section "WebSocket through the VIP"
out=$(client_tool ws --target "$VIP:80" --host "$H" --path /chat/ws --messages 5)
note "$out"
assert_match "handshake, server greeting, 5 echoes, a 70 kB binary frame, close handshake" "$out" \
  'status=101 accept=ok hello=hello_from_be[12] echoed=5/5 big=ok close=ok eof=yes'

section "slowloris: partial heads trickled byte by byte get 408 after head_timeout_ms (1000)"
slow_out=$VG_TMP/slowloris.out
client_tool slowloris --target "$VIP:80" --host "$H" --conns 20 --interval 0.2 --seconds 5 >"$slow_out" &
slow_pid=$!
vg_track "$slow_pid"
established() { ip netns exec "$NS_LB" ss -Htn state established "( sport = :80 )" | wc -l; }
for ((i = 0; i < 30; i++)); do # each stays open 1 s once its head started
  est=$(established)
  ((est >= 20)) && break
  sleep 0.05
done
note "$est connections open after $((i * 50)) ms"
assert_num "the 20 slow connections are open at once (established: $est)" "$est" -ge 20
t0=$(now_ms)
code=$(in_client curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -H "Host: $H" "http://$VIP/meanwhile" || true)
served_ms=$(($(now_ms) - t0))
assert_eq "another client is served meanwhile" 200 "$code"
note "that request took $served_ms ms"
wait "$slow_pid" || true
vg_forget "$slow_pid"
out=$(cat "$slow_out")
note "$out"
assert_match "all 20 got 408 and were closed, after 0.9..2.5 s" "$out" \
  'statuses=408x20 closed=20/20 min_s=(0\.9|1\.|2\.)[0-9]* max_s=(1\.|2\.[0-4])[0-9]* trickled_bytes=[0-9]+'
sleep 0.2
est=$(established)
assert_eq "vipgate holds no connection afterwards (established on :80)" 0 "$est"

stop_vipgate
summary
