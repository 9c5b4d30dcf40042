#!/usr/bin/env bash
# RFC 9112 defences and limits end to end: each malformed or ambiguous request below is sent in
# one write on a raw socket to the VIP and must get its status from vipgate (400, 501, 413,
# 414, 431) and a closed connection; well-formed controls next to them get 200 and a kept
# connection, and an accepted request reaches the backend with exactly one framing field.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

lan_up 1
cfg=$VG_TMP/defences.toml
cat >"$cfg" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"

[proxy]
max_headers = 30

[[host]]
names = ["d.example.test"]
[[host.route]]
prefix = "/"
pool = "web"
[[host.route]]
prefix = "/limited"
pool = "web"
max_body_bytes = 1000

[pool.web]
backends = ["192.0.2.21:8080"]
EOF
start_vipgate "$cfg" || abort "vipgate starts and logs ready"

H='Host: d.example.test\r\n'
long_target=$(printf '/%09000d' 0)                           # a 9,001-byte target: over 8192
many_fields=$(for i in $(seq 1 31); do printf 'X-F%d: v\\r\\n' "$i"; done) # 31 + Host > 30
big_field="X-Big: $(printf '%070000d' 0)\\r\\n"              # a 70 kB head: over 65536
body2000=$(printf '%02000d' 0)

# description | bytes sent (Python escapes) | expected: STATUS and closed/open
cases=(
  "control: a plain GET|GET / HTTP/1.1\r\n${H}\r\n|200 open"
  "control: POST with Content-Length|POST /echo HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello|200 open"
  "control: a repeated identical Content-Length|POST /echo HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello|200 open"
  "control: absolute-form that agrees with Host|GET http://d.example.test/x HTTP/1.1\r\n${H}\r\n|200 open"
  "Transfer-Encoding with Content-Length|POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n|400 closed"
  "Content-Length with Transfer-Encoding (other order)|POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n|400 closed"
  "a final transfer coding that is not chunked (gzip)|POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\nxxxxx|501 closed"
  "an unknown coding before chunked (gzip, chunked)|POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n|501 closed"
  "chunked not last (chunked, gzip)|POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n|400 closed"
  "Transfer-Encoding in HTTP/1.0|POST / HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n|400 closed"
  "two different Content-Length fields|POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!|400 closed"
  "a Content-Length list that disagrees|POST / HTTP/1.1\r\n${H}Content-Length: 5, 6\r\n\r\nhello!|400 closed"
  "a negative Content-Length|POST / HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n|400 closed"
  "a Content-Length with a sign|POST / HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello|400 closed"
  "an overflowing Content-Length|POST / HTTP/1.1\r\n${H}Content-Length: 99999999999999999999999\r\n\r\n|400 closed"
  "obs-fold (a continuation line)|GET / HTTP/1.1\r\n${H}X-A: a\r\n  folded\r\n\r\n|400 closed"
  "bare CR in a value|GET / HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n|400 closed"
  "bare LF in a value (a line without colon)|GET / HTTP/1.1\r\n${H}X-A: a\nb\r\n\r\n|400 closed"
  "NUL in a value|GET / HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n|400 closed"
  "an invalid header name|GET / HTTP/1.1\r\n${H}Bad[Name]: x\r\n\r\n|400 closed"
  "missing Host in HTTP/1.1|GET / HTTP/1.1\r\n\r\n|400 closed"
  "duplicate Host|GET / HTTP/1.1\r\n${H}${H}\r\n|400 closed"
  "two different Host fields|GET / HTTP/1.1\r\n${H}Host: other.example.test\r\n\r\n|400 closed"
  "absolute-form target disagreeing with Host|GET http://other.example.test/ HTTP/1.1\r\n${H}\r\n|400 closed"
  "whitespace before the colon (Host)|GET / HTTP/1.1\r\nHost : d.example.test\r\n\r\n|400 closed"
  "whitespace before the colon (another field)|GET / HTTP/1.1\r\n${H}X-A : b\r\n\r\n|400 closed"
  "an Expect other than 100-continue|POST / HTTP/1.1\r\n${H}Expect: 200-ok\r\nContent-Length: 1\r\n\r\nx|400 closed"
  "chunk-size overflow (17 hex digits)|POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\nx\r\n0\r\n\r\n|400 closed"
  "a chunk size that is not hex|POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n|400 closed"
  "bad chunk extension (bare LF inside)|POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1;a\nb\r\nx\r\n0\r\n\r\n|400 closed"
  "bad chunk extension (control byte)|POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1;a\x01\r\nx\r\n0\r\n\r\n|400 closed"
  "chunk data not followed by CRLF|POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n|400 closed"
  "request line over max_request_line (9 kB target)|GET ${long_target} HTTP/1.1\r\n${H}\r\n|414 closed"
  "more fields than max_headers (30)|GET / HTTP/1.1\r\n${H}${many_fields}\r\n|431 closed"
  "a head over max_head_size (70 kB field)|GET / HTTP/1.1\r\n${H}${big_field}\r\n|431 closed"
  "control: a body within max_body_bytes (1000)|POST /limited/echo HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello|200 open"
  "Content-Length over the route's max_body_bytes|POST /limited/echo HTTP/1.1\r\n${H}Content-Length: 2000\r\n\r\n${body2000}|413 closed"
  "a chunked body growing over max_body_bytes|POST /limited/echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n7d0\r\n${body2000}\r\n0\r\n\r\n|413 closed"
)
section "one request per connection, sent in one write"
args=()
for c in "${cases[@]}"; do
  IFS='|' read -r _ data _ <<<"$c"
  args+=(--data "$data")
done
# One process sends them all, each on its own connection, one result line each.
mapfile -t got < <(client_tool raw --target "$VIP:80" "${args[@]}" 2>&1 || true)
for i in "${!cases[@]}"; do
  IFS='|' read -r desc _ want <<<"${cases[i]}"
  assert_eq "$desc -> $want" "$want" "${got[i]:-no result}"
done

section "what an accepted request looks like at the backend"
out=$(client_tool raw --target "$VIP:80" --show --data "POST /x/headers HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
assert_eq "a repeated identical Content-Length is forwarded once" "1" "$(grep -ci '^content-length: 5$' <<<"$out" || true)"
out=$(client_tool raw --target "$VIP:80" --show --data "POST /x/headers HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
assert_eq "a chunked request is forwarded with one Transfer-Encoding: chunked and no Content-Length" "1 0" \
  "$(grep -ci '^transfer-encoding: chunked$' <<<"$out" || true) $(grep -ci '^content-length:' <<<"$out" || true)"
assert_contains "the backend read the whole chunked body" "$out" "body_len=5"
assert_eq "hop-by-hop fields (Connection, the field it names, Keep-Alive, TE) are not forwarded" "0" \
  "$(grep -ciE '^(connection|x-hop|keep-alive|te):' <<<"$out" || true)"

section "413 with Expect: 100-continue (curl): no 100, no body sent"
body=$VG_TMP/body.bin
head -c $((2 * 1024 * 1024)) /dev/urandom >"$body"
res=$(in_client curl -sS --max-time 10 -H 'Host: d.example.test' -H 'Expect: 100-continue' \
  --data-binary @"$body" -o /dev/null -w '%{http_code} %{size_upload} %{time_total}' "http://$VIP/limited/echo" 2>/dev/null || true)
note "status, bytes uploaded, seconds: $res"
assert_eq "413 for a 2 MiB body with Expect" 413 "${res%% *}"
up=$(awk '{print $2}' <<<"$res")
assert_num "curl did not have to send the 2 MiB body (uploaded $up bytes)" "${up:-x}" -lt 1048576

stop_vipgate
summary
