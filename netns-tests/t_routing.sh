#!/usr/bin/env bash
# HTTP routing through the VIP for the seed's hosts (blog with /api to a WAS, monitoring,
# argocd, and a wildcard), from the client namespace over the bridge: host and prefix matching,
# vipgate's own 404/502/400, round robin, request and response bodies, keep-alive.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

# be1 be2: web   be3: was   be4: grafana   be5: argocd   be6: apps (the wildcard)
lan_up 6
cfg=$VG_TMP/routing.toml
cat >"$cfg" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"
protocol = "http"

[[host]]
names = ["blog.example.test"]
[[host.route]]
prefix = "/api"
pool = "was"
[[host.route]]
prefix = "/"
pool = "web"

[[host]]
names = ["monitoring.example.test"]
[[host.route]]
prefix = "/"
pool = "grafana"

[[host]]
names = ["argocd.example.test"]
[[host.route]]
prefix = "/"
pool = "argocd"

[[host]]
names = ["*.apps.example.test"]
[[host.route]]
prefix = "/"
pool = "apps"

# An exact name under the wildcard's suffix, sent elsewhere: exact beats wildcard.
[[host]]
names = ["special.apps.example.test"]
[[host.route]]
prefix = "/"
pool = "argocd"

# A host with no route for "/".
[[host]]
names = ["only.example.test"]
[[host.route]]
prefix = "/only"
pool = "web"

# Pools nobody answers for: an address on the LAN no one has, and a closed port.
[[host]]
names = ["down.example.test"]
[[host.route]]
prefix = "/"
pool = "down"

[[host]]
names = ["closed.example.test"]
[[host.route]]
prefix = "/"
pool = "closed"

[pool.web]
backends = ["192.0.2.21:8080", "192.0.2.22:8080"]
[pool.was]
backends = ["192.0.2.23:8080"]
[pool.grafana]
backends = ["192.0.2.24:8080"]
[pool.argocd]
backends = ["192.0.2.25:8080"]
[pool.apps]
backends = ["192.0.2.26:8080"]
[pool.down]
backends = ["192.0.2.99:8080"]
[pool.closed]
backends = ["192.0.2.21:9"]
EOF
start_vipgate "$cfg" || abort "vipgate starts and logs ready"
WEB='be1|be2'

section "hosts and prefixes"
expect_route "blog / -> web" blog.example.test / 200 "$WEB"
assert_contains "the backend sees the client's Host header" "$HTTP_BODY" "host=blog.example.test "
expect_route "blog /static/app.js -> web" blog.example.test /static/app.js 200 "$WEB"
expect_route "blog /api -> was" blog.example.test /api 200 be3
expect_route "blog /api/ -> was" blog.example.test /api/ 200 be3
expect_route "blog /api/posts/1 -> was" blog.example.test /api/posts/1 200 be3
assert_contains "the backend gets the full path" "$HTTP_BODY" "path=/api/posts/1 "
expect_route "blog /api?q=1 -> was" blog.example.test '/api?q=1' 200 be3
expect_route "blog /apiary -> web (prefixes match whole segments)" blog.example.test /apiary 200 "$WEB"
expect_route "monitoring / -> grafana" monitoring.example.test / 200 be4
expect_route "monitoring /d/abc -> grafana" monitoring.example.test /d/abc 200 be4
expect_route "argocd /applications -> argocd" argocd.example.test /applications 200 be5
expect_route "wildcard: kiali.apps.example.test -> apps" kiali.apps.example.test / 200 be6
expect_route "wildcard: a.b.apps.example.test -> apps" a.b.apps.example.test /x 200 be6
expect_route "exact beats wildcard: special.apps.example.test -> argocd" special.apps.example.test / 200 be5
expect_route "wildcard does not match its bare suffix apps.example.test -> 404" apps.example.test / 404 ''
expect_route "Host with upper case and port: BLOG.Example.TEST:80 -> web" BLOG.Example.TEST:80 / 200 "$WEB"
expect_route "Host with port: blog.example.test:8080 /api -> was" blog.example.test:8080 /api 200 be3
expect_route "backend status is passed through: /status/503 -> 503 from web" blog.example.test /status/503 503 "$WEB"

section "vipgate's own answers"
expect_route "unknown host -> 404" unknown.example.test / 404 ''
assert_match "404 has a short body" "${#HTTP_BODY}" '[1-9][0-9]{0,3}'
expect_route "host without a matching route (/ on only.example.test) -> 404" only.example.test / 404 ''
expect_route "only.example.test /only -> web" only.example.test /only 200 "$WEB"
expect_route "only.example.test /only/deeper -> web" only.example.test /only/deeper 200 "$WEB"
expect_route "only.example.test /onlyx -> 404" only.example.test /onlyx 404 ''
expect_route "pool with a closed port -> 502" closed.example.test / 502 ''
assert_match "502 has a short body" "${#HTTP_BODY}" '[1-9][0-9]{0,3}'
t0=$(date +%s%N)
expect_route "pool whose address nobody has (192.0.2.99) -> 502" down.example.test / 502 ''
note "the 502 for 192.0.2.99 took $((($(date +%s%N) - t0) / 1000000)) ms"
expect_route "after the 502s the next request still works" blog.example.test /api 200 be3

raw() { # TEXT (printf %b escapes): sent raw on a new connection; prints the response's first line
  # shellcheck disable=SC2016 # expanded by the inner bash
  in_client timeout 10 bash -c 'exec 3<>"/dev/tcp/$0/80" || exit 1
    printf "%b" "$1" >&3
    IFS= read -r line <&3
    printf "%s\n" "$line"' "$VIP" "$1" | tr -d '\r' || true
}
assert_match "malformed request line (GARBAGE) -> 400" "$(raw 'GARBAGE\r\n\r\n')" 'HTTP/1\.[01] 400.*'
assert_match "malformed header line (no colon) -> 400" \
  "$(raw 'GET / HTTP/1.1\r\nHost blog.example.test\r\n\r\n')" 'HTTP/1\.[01] 400.*'
assert_match "a well-formed raw request -> 200" \
  "$(raw 'GET / HTTP/1.1\r\nHost: blog.example.test\r\nConnection: close\r\n\r\n')" 'HTTP/1\.[01] 200.*'
expect_route "after the 400s the next request still works" blog.example.test / 200 "$WEB"

section "round robin"
declare -A hits=([be1]=0 [be2]=0)
for ((i = 0; i < 10; i++)); do
  http blog.example.test /rr
  b=$(backend_of)
  b=${b:-none}
  hits[$b]=$((${hits[$b]:-0} + 1))
done
note "10 requests to web: be1=${hits[be1]} be2=${hits[be2]}"
assert_eq "all 10 answered by web's backends" 10 $((hits[be1] + hits[be2]))
if ((hits[be1] > 0 && hits[be2] > 0)); then pass "both web backends get requests"; else fail "both web backends get requests (be1=${hits[be1]} be2=${hits[be2]})"; fi
assert_eq "strict round robin: 5 and 5" "5 5" "${hits[be1]} ${hits[be2]}"

section "bodies"
big=$VG_TMP/big.bin
head -c 100000 /dev/urandom >"$big"
expect_route "POST with Content-Length -> was" blog.example.test /api/upload 200 be3 --data-binary @"$big"
assert_contains "backend got the whole Content-Length body" "$HTTP_BODY" "method=POST host=blog.example.test path=/api/upload body_len=100000"
expect_route "POST chunked -> was" blog.example.test /api/upload 200 be3 -H 'Transfer-Encoding: chunked' --data-binary @"$big"
assert_contains "backend got the whole chunked body" "$HTTP_BODY" "body_len=100000"
http blog.example.test /api/echo --data-binary @"$big"
if [[ $HTTP_CODE == 200 ]] && cmp -s "$big" "$HTTP_FILE"; then pass "Content-Length body comes back byte for byte (/echo)"; else fail "Content-Length body comes back byte for byte (/echo): code $HTTP_CODE, $(wc -c <"$HTTP_FILE" 2>/dev/null || echo 0) bytes"; fi
http blog.example.test /api/echo -H 'Transfer-Encoding: chunked' --data-binary @"$big"
if [[ $HTTP_CODE == 200 ]] && cmp -s "$big" "$HTTP_FILE"; then pass "chunked body comes back byte for byte (/echo)"; else fail "chunked body comes back byte for byte (/echo): code $HTTP_CODE, $(wc -c <"$HTTP_FILE" 2>/dev/null || echo 0) bytes"; fi
expect_route "PUT with an empty body" argocd.example.test /api/x 200 be5 -X PUT --data-binary ''
assert_contains "backend saw PUT with body_len=0" "$HTTP_BODY" "method=PUT host=argocd.example.test path=/api/x body_len=0"
expect_route "chunked response -> 200 from argocd" argocd.example.test /chunked 200 be5
assert_eq "chunked response: curl read it cleanly" 0 "$HTTP_RC"
assert_eq "chunked response: all 5 chunk lines" 5 "$(grep -c '^chunk [1-5]/5 backend=be5 x\{1000\}$' "$HTTP_FILE" || true)"
assert_eq "chunked response: ends with the last piece" "done backend=be5" "$(tail -n 1 "$HTTP_FILE")"

section "keep-alive: one connection, routed anew per request"
small=$VG_TMP/small.txt
printf 'hello over keep-alive\n' >"$small"
ka=$VG_TMP/ka
mkdir -p "$ka"
w='%{num_connects} %{http_code}\n'
kv=0
kout=$(in_client curl -sS --max-time 20 \
  -H 'Host: blog.example.test' -o "$ka/1" -w "$w" "http://$VIP/" --next \
  -H 'Host: blog.example.test' -o "$ka/2" -w "$w" "http://$VIP/api/x" --next \
  -H 'Host: blog.example.test' -H 'Expect:' --data-binary @"$small" -o "$ka/3" -w "$w" "http://$VIP/api/echo" --next \
  -H 'Host: monitoring.example.test' -o "$ka/4" -w "$w" "http://$VIP/" --next \
  -H 'Host: argocd.example.test' -o "$ka/5" -w "$w" "http://$VIP/" 2>"$VG_TMP/ka.err") || kv=$?
assert_eq "5 requests in one curl: exit 0" 0 "$kv"
assert_eq "one connection: num_connects 1 then 0 0 0 0, all 200" "1 200|0 200|0 200|0 200|0 200" "$(paste -sd'|' - <<<"$kout")"
ka_backend() { sed -n '1s/^backend=\([^ ]*\).*/\1/p' "$ka/$1" 2>/dev/null || true; }
assert_match "keep-alive request 1: blog / -> web" "$(ka_backend 1)" "$WEB"
assert_eq "keep-alive request 2: blog /api/x -> was" be3 "$(ka_backend 2)"
assert_eq "keep-alive request 3: POST body echoed" "hello over keep-alive" "$(cat "$ka/3" 2>/dev/null || true)"
assert_eq "keep-alive request 4: monitoring -> grafana" be4 "$(ka_backend 4)"
assert_eq "keep-alive request 5: argocd -> argocd" be5 "$(ka_backend 5)"

section "keep-alive across vipgate's own 404, and pipelining"
kout=$(in_client curl -sS --max-time 20 \
  -H 'Host: unknown.example.test' -o /dev/null -w "$w" "http://$VIP/" --next \
  -H 'Host: blog.example.test' -o "$ka/6" -w "$w" "http://$VIP/api/after-404" 2>"$VG_TMP/ka.err") || true
assert_eq "a 404 keeps the connection: num_connects 1 then 0" "1 404|0 200" "$(paste -sd'|' - <<<"$kout")"
assert_eq "the request after the 404 on that connection -> was" be3 "$(ka_backend 6)"
# Two requests in one write; the answers must come back in order.
# shellcheck disable=SC2016 # expanded by the inner bash
piped=$(in_client timeout 10 bash -c 'exec 3<>"/dev/tcp/$0/80" || exit 1
  printf "GET /api/p1 HTTP/1.1\r\nHost: blog.example.test\r\n\r\nGET /p2 HTTP/1.1\r\nHost: monitoring.example.test\r\nConnection: close\r\n\r\n" >&3
  cat <&3' "$VIP" | tr -d '\r' | grep -E '^(HTTP/|backend=)' | paste -sd'|' - || true)
assert_match "pipelined requests are answered in order" "$piped" \
  'HTTP/1\.1 200[^|]*\|backend=be3 [^|]*path=/api/p1 [^|]*\|HTTP/1\.1 200[^|]*\|backend=be4 [^|]*path=/p2 [^|]*'

stop_vipgate
summary
