#!/usr/bin/env bash
# Backends by DNS name, the kinds of answer and of pool, against a real dnsmasq: an SRV record
# with two targets on two ports; answers of 50 and 120 A records (EDNS, then TCP when the
# answer does not fit); an IPv6-only name; a `tcp` listener's pool by name; a TLS pool by name,
# whose backend's certificate names only that name (verified and sent as SNI).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

TESTCERT=${TESTCERT:-$VG_ROOT/target/debug/examples/testcert}
[[ -x $TESTCERT ]] || abort "no $TESTCERT (cargo build --examples)"

lan_up 3
# be2 answers on 8081 (the SRV record's second port); be3 also on IPv6 only for v6.svc.test.
backend_kill 1
BACKEND_PORT=8081 backend_spawn 1
vg_wait_http "${BE_IP[1]}:8081" || abort "be2 answers on 8081"
ip -n "$NS_LB" -6 addr add 2001:db8::2/64 dev eth0 nodad
ip -n "${BE_NS[2]}" -6 addr add 2001:db8::23/64 dev eth0 nodad
backend_spawn 2 --bind 2001:db8::23
echo_start 0 7000 || abort "tcp echo on be1:7000"

pki=$VG_TMP/pki
mkdir -p "$pki"
"$TESTCERT" ca "$pki/ca"
"$TESTCERT" leaf "$pki/ca" "$pki/server" tls.svc.test
nginx_start 0 "$VG_TMP/nginx" 8443 "  server {
    listen ${BE_IP[0]}:8443 ssl;
    ssl_certificate $pki/server.pem;
    ssl_certificate_key $pki/server.key;
    location / { return 200 \"backend=nginx-tls sni=\$ssl_server_name\n\"; }
  }" || abort "nginx listens on ${BE_IP[0]}:8443"

DNS_EXTRA="srv-host=_http._tcp.web.svc.test,be1.svc.test,8080,0,10
srv-host=_http._tcp.web.svc.test,be2.svc.test,8081,0,30
srv-host=_http._tcp.web.svc.test,be3.svc.test,8080,1,10"
dns_up svc.test || abort "dnsmasq starts on $DNS_IP"
hosts=()
for ((i = 0; i < 3; i++)); do hosts+=("${BE_IP[i]} be$((i + 1)).svc.test"); done
hosts+=("2001:db8::23 v6.svc.test" "${BE_IP[0]} echo.svc.test" "${BE_IP[0]} tls.svc.test")
for ((i = 1; i <= 50; i++)); do hosts+=("198.51.100.$i big.svc.test"); done
for ((i = 1; i <= 120; i++)); do hosts+=("203.0.113.$i huge.svc.test"); done
printf '%s\n' "${hosts[@]}" >"$DNS_HOSTS"
dns_reread || abort "dnsmasq reads its hosts file"

cfg=$VG_TMP/records.toml
route() { printf '[[host]]\nnames = ["%s.example.test"]\n[[host.route]]\nprefix = "/"\npool = "%s"\n' "$1" "$1"; }
{
  cat <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"
[[listener]]
bind = "$VIP:7000"
protocol = "tcp"
pool = "echo"

[resolver]
nameservers = ["$DNS_IP"]
timeout_ms = 500
ttl_floor_ms = 1000

EOF
  for p in srv big huge v6 tlsname tlsip; do route "$p"; done
  cat <<EOF
[pool.srv]
srv = "_http._tcp.web.svc.test"
[pool.big]
backends = ["big.svc.test:8080"]
[pool.huge]
backends = ["huge.svc.test:8080"]
[pool.v6]
backends = ["v6.svc.test:8080"]
[pool.echo]
backends = ["echo.svc.test:7000"]
[pool.tlsname]
backends = ["tls.svc.test:8443"]
[pool.tlsname.tls]
ca = "$pki/ca.pem"
[pool.tlsip]
backends = ["${BE_IP[0]}:8443"]
[pool.tlsip.tls]
ca = "$pki/ca.pem"
EOF
} >"$cfg"
vipgate_cmd check --config "$cfg"
assert_eq "check accepts the file" 0 "$CMD_RC"
assert_contains "check shows the SRV targets of the lowest priority with their ports" "$CMD_OUT" "name srv _http._tcp.web.svc.test (pool srv) -> ${BE_IP[0]}:8080, ${BE_IP[1]}:8081"
assert_contains "check shows the IPv6-only name" "$CMD_OUT" "name v6.svc.test:8080 (pool v6) -> [2001:db8::23]:8080"
# DNS over TCP: hickory offers 1232-byte EDNS answers, which 120 A records do not fit.
capture_start "$NS_DNS" tcp port 53 and 'tcp[tcpflags] & tcp-syn != 0' || abort "tcpdump starts"
start_vipgate "$cfg" || abort "vipgate starts"

section "SRV: two targets, two ports, the record's weights"
out=$(client_tool load --target "$VIP:80" --host srv.example.test --requests 400 --conns 2 --seconds 20)
note "$(jget "$out" 'd["sent"]') GETs, statuses $(jget "$out" 'd["status"]'), backends $(jget "$out" 'd["backends"]')"
assert_eq "all answered 200" 400 "$(jget "$out" 'd["ok"]')"
assert_eq "weights 10:30 over 400 requests: be1 100" 100 "$(jget "$out" 'd["backends"].get("be1", 0)')"
assert_eq "weights 10:30 over 400 requests: be2 (port 8081) 300" 300 "$(jget "$out" 'd["backends"].get("be2", 0)')"
assert_eq "the priority-1 target gets nothing" 0 "$(jget "$out" 'd["backends"].get("be3", 0)')"

section "50 and 120 A records (EDNS; TCP when truncated)"
metrics=$(in_lb curl -sS --max-time 5 http://127.0.0.1:9901/metrics)
assert_contains "50 addresses for big.svc.test" "$metrics" 'vipgate_dns_addresses{name="big.svc.test:8080"} 50'
assert_contains "the pool has 50 backends" "$metrics" 'vipgate_pool_backends{pool="big"} 50'
assert_contains "120 addresses for huge.svc.test (past a UDP answer's size)" "$metrics" 'vipgate_dns_addresses{name="huge.svc.test:8080"} 120'
assert_contains "the pool has 120 backends" "$metrics" 'vipgate_pool_backends{pool="huge"} 120'
cfg_json=$(in_lb curl -sS --max-time 5 http://127.0.0.1:9901/config)
assert_contains "/config lists the 50th" "$cfg_json" '"address":"198.51.100.50:8080"'
capture_stop
assert_num "the 120-record answer came over TCP (SYNs to port 53)" "$(grep -c '\.53: Flags \[S\]' "$CAP_FILE" || true)" -ge 1

section "an IPv6-only name"
http v6.example.test /
assert_eq "v6.svc.test (AAAA only) is served" "200 be3" "$HTTP_CODE $(backend_of)"

section "a tcp listener's pool by name"
out=$(client_tool tcp-xfer --target "$VIP:7000" --bytes 100000)
assert_contains "bytes round-trip through echo.svc.test" "$out" "match=yes"
assert_num "the echo server saw the connection" "$(echo_conns be1-7000)" -ge 1

section "a TLS pool by name: verified against the name, sent as SNI"
http tlsname.example.test /
assert_eq "tls.svc.test:8443 answers over TLS" 200 "$HTTP_CODE"
assert_contains "the backend saw SNI tls.svc.test" "$HTTP_BODY" "sni=tls.svc.test"
http tlsip.example.test /
assert_eq "the same backend by IP fails verification (its certificate names no IP)" 502 "$HTTP_CODE"

stop_vipgate
summary
