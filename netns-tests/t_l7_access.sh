#!/usr/bin/env bash
# Access control and the real client address end to end: the client has two addresses
# (192.0.2.10, and 192.0.2.11 playing a CDN/front proxy in trusted_proxies); allow/deny CIDR
# lists per host and per route answer 403 by the real client address, which comes from
# X-Forwarded-For (rightmost untrusted) or CF-Connecting-IP only when the peer is trusted. The
# backend echoes what it got (X-Real-IP, X-Forwarded-For, X-Forwarded-Proto/-Host).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

FRONT_IP=192.0.2.11
lan_up 1
client_add_ip "$FRONT_IP"

config() { # CLIENT_IP_HEADER
  cat <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"

[proxy]
trusted_proxies = ["$FRONT_IP/32", "198.51.100.0/24"]
client_ip_header = "$1"

[[host]]
names = ["open.example.test"]
[[host.route]]
prefix = "/"
pool = "web"
[[host.route]]
prefix = "/admin"
pool = "web"
allow = ["192.0.2.10/32"]
[[host.route]]
prefix = "/lan"
pool = "web"
allow = ["192.0.2.0/24"]
deny = ["$FRONT_IP/32"]

[[host]]
names = ["nofront.example.test"]
deny = ["$FRONT_IP/32"]
[[host.route]]
prefix = "/"
pool = "web"

[[host]]
names = ["customers.example.test"]
allow = ["203.0.113.0/24"]
[[host.route]]
prefix = "/"
pool = "web"
[[host.route]]
prefix = "/blocked"
pool = "web"
deny = ["203.0.113.66/32"]

[pool.web]
backends = ["192.0.2.21:8080"]
EOF
}
cfg=$VG_TMP/access-xff.toml
config x-forwarded-for >"$cfg"
start_vipgate "$cfg" || abort "vipgate starts and logs ready"

from() { # SRC HOST PATH [curl args...]: a request from SRC (an address of the client)
  local src=$1
  shift
  http "$1" "$2" --interface "$src" "${@:3}"
}
hdr() { sed -n "s/^$1: //Ip" <<<"$HTTP_BODY" | head -n 1; } # NAME: a field the backend saw

section "allow/deny per host and per route (x-forwarded-for)"
from "$CLIENT_IP" open.example.test /
assert_eq "192.0.2.10 -> open host: 200" 200 "$HTTP_CODE"
from "$CLIENT_IP" open.example.test /admin
assert_eq "192.0.2.10 -> /admin (allow 192.0.2.10/32): 200" 200 "$HTTP_CODE"
from "$FRONT_IP" open.example.test /admin
assert_eq "192.0.2.11 -> /admin (not in allow): 403" 403 "$HTTP_CODE"
assert_eq "the 403 is vipgate's (no backend answered)" "" "$(backend_of)"
from "$CLIENT_IP" open.example.test /lan/x
assert_eq "192.0.2.10 -> /lan (allow 192.0.2.0/24): 200" 200 "$HTTP_CODE"
from "$FRONT_IP" open.example.test /lan/x
assert_eq "192.0.2.11 -> /lan (allowed, but denied by /32: deny wins): 403" 403 "$HTTP_CODE"
from "$CLIENT_IP" nofront.example.test /
assert_eq "192.0.2.10 -> host with deny 192.0.2.11: 200" 200 "$HTTP_CODE"
from "$FRONT_IP" nofront.example.test /
assert_eq "192.0.2.11 -> host with deny 192.0.2.11: 403" 403 "$HTTP_CODE"
w='%{num_connects} %{http_code}\n'
kv=$(in_client curl -sS --max-time 10 --interface "$FRONT_IP" -o /dev/null -w "$w" -H 'Host: open.example.test' "http://$VIP/admin" \
  --next --interface "$FRONT_IP" -o /dev/null -w "$w" -H 'Host: open.example.test' "http://$VIP/" 2>/dev/null || true)
assert_eq "a 403 keeps the connection (1 connect, then 0)" "1 403|0 200" "$(paste -sd'|' - <<<"$kv")"

section "the real client address from X-Forwarded-For, believed only from trusted peers"
from "$CLIENT_IP" open.example.test /h/headers
assert_eq "direct client: X-Real-IP is the peer" "$CLIENT_IP" "$(hdr X-Real-IP)"
assert_eq "direct client: X-Forwarded-For is the peer" "$CLIENT_IP" "$(hdr X-Forwarded-For)"
assert_eq "X-Forwarded-Host is set" "open.example.test" "$(hdr X-Forwarded-Host)"
assert_eq "X-Forwarded-Proto is set" "http" "$(hdr X-Forwarded-Proto)"
from "$CLIENT_IP" open.example.test /h/headers -H 'X-Forwarded-For: 203.0.113.7' -H 'X-Forwarded-Proto: https' -H 'X-Forwarded-Host: evil.example.test'
assert_eq "untrusted peer's X-Forwarded-For is not believed: X-Real-IP is the peer" "$CLIENT_IP" "$(hdr X-Real-IP)"
assert_eq "untrusted peer: its address is appended to X-Forwarded-For" "203.0.113.7, $CLIENT_IP" "$(hdr X-Forwarded-For)"
assert_eq "untrusted peer: X-Forwarded-Proto is overwritten" "http" "$(hdr X-Forwarded-Proto)"
assert_eq "untrusted peer: X-Forwarded-Host is overwritten" "open.example.test" "$(hdr X-Forwarded-Host)"
from "$FRONT_IP" open.example.test /h/headers -H 'X-Forwarded-For: 198.51.100.9, 203.0.113.7' -H 'X-Forwarded-Proto: https'
assert_eq "trusted front: the rightmost address of X-Forwarded-For is the client" "203.0.113.7" "$(hdr X-Real-IP)"
assert_eq "trusted front: X-Forwarded-For gets the front appended" "198.51.100.9, 203.0.113.7, $FRONT_IP" "$(hdr X-Forwarded-For)"
assert_eq "trusted front: its X-Forwarded-Proto is kept" "https" "$(hdr X-Forwarded-Proto)"
from "$FRONT_IP" open.example.test /h/headers -H 'X-Forwarded-For: 203.0.113.7, 198.51.100.5'
assert_eq "trusted hops in X-Forwarded-For are skipped (198.51.100.5 is trusted)" "203.0.113.7" "$(hdr X-Real-IP)"
from "$FRONT_IP" open.example.test /h/headers
assert_eq "trusted front without X-Forwarded-For: the front itself" "$FRONT_IP" "$(hdr X-Real-IP)"

section "access lists judge the real client address"
from "$FRONT_IP" customers.example.test / -H 'X-Forwarded-For: 203.0.113.7'
assert_eq "trusted front, X-Forwarded-For 203.0.113.7 -> host allowing 203.0.113.0/24: 200" 200 "$HTTP_CODE"
from "$CLIENT_IP" customers.example.test / -H 'X-Forwarded-For: 203.0.113.7'
assert_eq "untrusted client claiming 203.0.113.7 -> 403" 403 "$HTTP_CODE"
from "$FRONT_IP" customers.example.test /
assert_eq "trusted front without X-Forwarded-For -> 403 (the front is not a customer)" 403 "$HTTP_CODE"
from "$FRONT_IP" customers.example.test /blocked -H 'X-Forwarded-For: 203.0.113.66'
assert_eq "route deny on the real address (203.0.113.66) -> 403" 403 "$HTTP_CODE"
from "$FRONT_IP" customers.example.test /blocked -H 'X-Forwarded-For: 203.0.113.67'
assert_eq "route deny: another real address (203.0.113.67) -> 200" 200 "$HTTP_CODE"
from "$FRONT_IP" open.example.test /admin -H 'X-Forwarded-For: 192.0.2.10'
assert_eq "a trusted front forwarding for 192.0.2.10 -> /admin allowed: 200" 200 "$HTTP_CODE"
stop_vipgate

section "the real client address from CF-Connecting-IP (client_ip_header = cf-connecting-ip)"
cfg=$VG_TMP/access-cf.toml
config cf-connecting-ip >"$cfg"
start_vipgate "$cfg" || abort "vipgate starts again with cf-connecting-ip"
from "$FRONT_IP" customers.example.test /h/headers -H 'CF-Connecting-IP: 203.0.113.9' -H 'X-Forwarded-For: 198.51.100.1'
assert_eq "trusted front with CF-Connecting-IP 203.0.113.9 -> allowed: 200" 200 "$HTTP_CODE"
assert_eq "X-Real-IP is CF-Connecting-IP, not X-Forwarded-For" "203.0.113.9" "$(hdr X-Real-IP)"
from "$CLIENT_IP" customers.example.test / -H 'CF-Connecting-IP: 203.0.113.9'
assert_eq "untrusted client sending CF-Connecting-IP -> 403" 403 "$HTTP_CODE"
from "$CLIENT_IP" open.example.test /h/headers -H 'CF-Connecting-IP: 203.0.113.9'
assert_eq "untrusted client: X-Real-IP is the peer" "$CLIENT_IP" "$(hdr X-Real-IP)"
from "$FRONT_IP" customers.example.test / -H 'X-Forwarded-For: 203.0.113.7'
assert_eq "with cf-connecting-ip, X-Forwarded-For alone is not the client: 403" 403 "$HTTP_CODE"

stop_vipgate
summary
