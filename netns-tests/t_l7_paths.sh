#!/usr/bin/env bash
# Path normalisation end to end (issue: a route's access list bypassed by another spelling of
# the same path). A real nginx backend serves /admin/secret and /private/doc; vipgate denies
# the routes /admin and /private (the latter with ignore_case) to everyone. Every other
# spelling of those paths (dot segments, percent-encoded letters and dots, doubled slashes,
# encoded slashes, backslashes, path parameters, fragments, control characters) must get 403
# or 400 from vipgate and never the backend's secret, while ordinary paths, queries, %20 and
# UTF-8 reach the backend byte-exact (nginx echoes $request_uri). Then, after a reload, the
# `escaped_slashes` and `merge_slashes` keys change what happens, and a bad value is refused
# with the running configuration kept.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

command -v nginx >/dev/null || abort "nginx is missing (scripts/test installs it)"
lan_up 1
BE=${BE_IP[0]}
NGINX_PORT=8081

# --- nginx: the files to protect and an echo of the request target as it arrived ---------------
ngx=$VG_TMP/nginx
mkdir -p "$ngx/www/admin" "$ngx/www/private" "$ngx/www/public"
echo "SECRET-ADMIN" >"$ngx/www/admin/secret"
echo "SECRET-PRIVATE" >"$ngx/www/private/doc"
echo "public page" >"$ngx/www/public/page"
nginx_start 0 "$ngx" "$NGINX_PORT" "  access_log $ngx/access.log;
  server {
    listen $BE:$NGINX_PORT;
    root $ngx/www;
    default_type text/plain;
    location /echo/ { return 200 \"uri=\$request_uri\n\"; }
  }" || abort "nginx listens on $BE:$NGINX_PORT"

config() { # [proxy] lines
  cat <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"

[proxy]
$1

[access_log]
format = "json"

[[host]]
names = ["p.example.test"]
[[host.route]]
prefix = "/"
pool = "web"
[[host.route]]
prefix = "/admin"
pool = "web"
deny = ["0.0.0.0/0"]
[[host.route]]
prefix = "/private"
pool = "web"
ignore_case = true
deny = ["0.0.0.0/0"]

[pool.web]
backends = ["$BE:$NGINX_PORT"]
EOF
}
cfg=$VG_TMP/paths.toml
config "" >"$cfg"
start_vipgate "$cfg" || abort "vipgate starts and logs ready"

H='Host: p.example.test\r\n'
# TARGET: one raw request (the target exactly as written, escapes as in Python); sets
# RAW_CODE (the status or "none"), RAW_STATE (closed/open) and RAW_BODY.
raw() {
  local out
  out=$(client_tool raw --target "$VIP:80" --linger 0.2 --show --data "GET $1 HTTP/1.1\r\n${H}\r\n" 2>&1 || true)
  read -r RAW_CODE RAW_STATE <<<"$(head -n 1 <<<"$out")"
  RAW_BODY=$(tail -n +2 <<<"$out")
}

section "the nginx backend really serves the secrets (so a bypass would show)"
in_client curl -sS --max-time 5 -o "$VG_TMP/direct" "http://$BE:$NGINX_PORT/admin/secret" || true
assert_eq "nginx serves /admin/secret directly" "SECRET-ADMIN" "$(cat "$VG_TMP/direct" 2>/dev/null)"
in_client curl -sS --max-time 5 -o "$VG_TMP/direct" --path-as-is "http://$BE:$NGINX_PORT/x/../%61dmin//secret" || true
assert_eq "nginx serves /x/../%61dmin//secret directly (it normalises too)" "SECRET-ADMIN" "$(cat "$VG_TMP/direct" 2>/dev/null)"

section "every spelling of a denied path: 403 or 400, never the secret"
# TARGET|STATUS
vectors=(
  "/admin/secret|403"
  "/x/../admin/secret|403"
  "/./admin/secret|403"
  "//admin/secret|403"
  "///admin///secret|403"
  "/%61dmin/secret|403"
  "/%61%64%6d%69%6e/secret|403"
  "/admin%2fsecret|400"
  "/admin%2Fsecret|400"
  "/x/%2e%2e/admin/secret|403"
  "/x/%2E%2e/admin/secret|403"
  "/x/.%2E/admin/secret|403"
  "/admin/.|403"
  "/admin/x/..|403"
  "/%2e/admin/secret|403"
  "/%2E/admin/secret|403"
  "/admin;x|403"
  "/admin;x/secret|403"
  "/admin/secret?x=1|403"
  "/admin\\\\secret|400"
  "/admin%5csecret|400"
  "/x\\\\..\\\\admin/secret|400"
  "/..;/admin/secret|400"
  "/x/..;/admin/secret|400"
  "/../admin/secret|400"
  "/x/../../admin/secret|400"
  "/admin/secret#frag|400"
  "/x#/../admin/secret|400"
  "/admin%00/secret|400"
  "/admin\\x00/secret|400"
  "/admin\\x01/secret|400"
  "/admin\\x7f/secret|400"
  "/admin%zz/secret|400"
  "/admin%4|400"
  "/admin%|400"
  "/private/doc|403"
  "/PRIVATE/doc|403"
  "/Private/doc|403"
  "/%50rivate/doc|403"
  "//private//doc|403"
)
for v in "${vectors[@]}"; do
  target=${v%|*} want=${v##*|}
  raw "$target"
  # A refused target closes the connection (like every 400); a denial keeps it.
  assert_eq "$target -> $want" "$want $([[ $want == 400 ]] && echo closed || echo open)" "$RAW_CODE $RAW_STATE"
  assert_not_contains "$target: no secret in the answer" "$RAW_BODY" "SECRET"
done

section "spellings that name other resources go to / and get nginx's own answer, no secret"
# What a backend decodes once more (%25 is a literal '%') or finds after the query is another
# file: nginx answers 404.
for target in "/%2561dmin/secret" "/x?/../admin/secret" "/adminx/secret" "/Admin/secret"; do
  raw "$target"
  assert_eq "$target -> nginx 404" "404" "$RAW_CODE"
  assert_not_contains "$target: no secret" "$RAW_BODY" "SECRET"
done

section "ordinary paths reach the backend byte-exact"
# TARGET|WHAT NGINX SAW
controls=(
  "/echo/a|/echo/a"
  "/echo/a%20b|/echo/a%20b"
  "/echo/caf%C3%A9|/echo/caf%C3%A9"
  "/echo/x?q=%2e%2e/../a&b=//c|/echo/x?q=%2e%2e/../a&b=//c"
  "/echo/dir/|/echo/dir/"
  "/echo/a.b/.c/..d|/echo/a.b/.c/..d"
  "/echo/a;v=1|/echo/a;v=1"
)
for v in "${controls[@]}"; do
  target=${v%|*} want=${v##*|}
  raw "$target"
  assert_eq "$target -> 200" "200" "$RAW_CODE"
  assert_eq "$target arrives as $want" "uri=$want" "$RAW_BODY"
done
raw '/echo/caf\xc3\xa9/\xed\x95\x9c'
assert_eq "raw UTF-8 -> 200" "200" "$RAW_CODE"
# tools.py shows bodies as Latin-1: compare in that form.
assert_eq "raw UTF-8 arrives byte-exact" \
  "$("$VG_PYTHON" -c 'print("uri=/echo/café/한".encode().decode("latin-1"))')" "$RAW_BODY"
raw "/public/page"
assert_eq "a static page -> 200" "200 public page" "$RAW_CODE $RAW_BODY"

section "what was matched is what is sent: the normal form reaches the backend"
for v in "/echo/x/../y|/echo/y" "//echo//y|/echo/y" "/echo/%7Euser/%61|/echo/~user/a" "/echo/%c3%a9|/echo/%C3%A9" "/x/../echo/z?a=/../b|/echo/z?a=/../b"; do
  target=${v%|*} want=${v##*|}
  raw "$target"
  assert_eq "$target arrives as $want" "200 uri=$want" "$RAW_CODE $RAW_BODY"
done

section "the access log has the path as received and as normalised"
raw "/x/../admin/secret"
line=$(grep -F '"path":"/x/../admin/secret"' "$VG_LOG" | tail -n 1 || true)
assert_contains "logged with its normal form" "$line" '"normalized_path":"/admin/secret"'
assert_contains "and its status" "$line" '"status":403'
line=$(grep -F '"path":"/public/page"' "$VG_LOG" | tail -n 1 || true)
assert_contains "an unchanged path has no normalized_path" "$line" '"normalized_path":null'

section "escaped_slashes = \"redirect\", merge_slashes = false (after a reload)"
config $'escaped_slashes = "redirect"\nmerge_slashes = false' >"$cfg"
reload_vipgate "$cfg" || fail "the reload is applied"
out=$(client_tool raw --target "$VIP:80" --show --data "GET /admin%2Fsecret?x=1 HTTP/1.1\r\n${H}\r\n" 2>&1 || true)
assert_eq "an encoded slash gets 308" "308 open" "$(head -n 1 <<<"$out")"
http p.example.test '/admin%2Fsecret?x=1' --path-as-is -D "$VG_TMP/h"
assert_eq "Location: the decoded path" "/admin/secret?x=1" \
  "$(sed -n 's/^Location: //Ip' "$VG_TMP/h" | tr -d '\r')"
http p.example.test '/admin%2Fsecret' --path-as-is -L
assert_eq "following it meets the denied route" "403" "$HTTP_CODE"
raw "//echo//y"
assert_eq "doubled slashes are kept as sent" "200 uri=//echo//y" "$RAW_CODE $RAW_BODY"
raw "/echo//../y"
assert_eq "a dot segment then removes the empty segment" "200 uri=/echo/y" "$RAW_CODE $RAW_BODY"
raw "/x/../admin/secret"
assert_eq "dot segments are still removed" "403" "$RAW_CODE"

section "escaped_slashes = \"keep\""
config 'escaped_slashes = "keep"' >"$cfg"
reload_vipgate "$cfg" || fail "the reload is applied"
raw "/echo/a%2fb%5Cc"
assert_eq "encoded slashes reach the backend upper-cased" "200 uri=/echo/a%2Fb%5Cc" "$RAW_CODE $RAW_BODY"

section "a bad value is refused with file, line and reason; the running config stays"
config 'escaped_slashes = "drop"' >"$cfg"
vipgate_cmd check --config "$cfg"
assert_eq "check refuses it" 1 "$((CMD_RC != 0))"
assert_contains "check names the file, line and reason" "$CMD_ERR$CMD_OUT" \
  "paths.toml:9:"
assert_contains "check says what is allowed" "$CMD_ERR$CMD_OUT" 'escaped_slashes "drop" is not "reject", "keep", "decode" or "redirect"'
if reload_vipgate "$cfg"; then fail "the reload is refused"; else pass "the reload is refused"; fi
assert_contains "the refusal names the line" "$RELOAD_LINE" "paths.toml:9:"
raw "/echo/a%2fb"
assert_eq "the running config (keep) still applies" "200 uri=/echo/a%2Fb" "$RAW_CODE $RAW_BODY"

summary
