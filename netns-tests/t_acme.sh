#!/usr/bin/env bash
# Certificates by ACME against a real ACME server (Debian's pebble, in a namespace of its own,
# resolving the test names to the VIP with the test's dnsmasq): an HTTP-01 order answered by
# vipgate's http listener, the certificate stored (0600, directory 0700) and served by the
# https listener to a client that trusts only pebble's root (a placeholder before); renewal at
# a third of a short lifetime swapped in under a bounded load with no failed request and a
# keep-alive connection surviving; a restart reuses the stored account and certificate (no
# new order at pebble); pebble down at start-up: vipgate serves HTTP, logs the failure and
# retries with back-off, and once pebble is back (rejecting 20% of good nonces) a TLS-ALPN-01
# order on the https listener succeeds.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

command -v pebble >/dev/null || abort "pebble is installed (Debian package pebble)"
[[ -x $TESTCERT_BIN ]] || abort "examples/testcert is built ($TESTCERT_BIN; cargo build --examples)"

# Issued certificates live 60 s: renewal (a third left) comes 40 s after issuance.
ACME_VALIDITY=60
lan_up 1 a
dns_up example.test || abort "dnsmasq starts on $DNS_IP"
dns_set a.example.test "$VIP" || abort "dnsmasq answers a.example.test"
dns_set b.example.test "$VIP" || abort "dnsmasq answers b.example.test"
pebble_up || { cat "$ACME_LOG"; abort "pebble answers at $ACME_DIR"; }
ns_etc "$NS_LB" hosts "$ACME_IP $ACME_NAME"
root=$VG_TMP/pebble-root.pem
pebble_root "$root" || abort "pebble's root CA is fetched"
TLS_CA=$root

store=$VG_TMP/acme-store
cfg=$VG_TMP/acme.toml
write_config() { # CHALLENGE NAME STORAGE
  cat >"$cfg" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"
protocol = "http"

[[listener]]
bind = "$VIP:443"
protocol = "https"

[acme]
directory = "$ACME_DIR"
contact = ["ops@example.test"]
storage = "$3"
server_ca = "$ACME_CA"
challenge = "$1"
retry_initial_ms = 500
retry_max_ms = 4000

[[certificate]]
acme = ["$2"]

[[host]]
names = ["a.example.test", "b.example.test"]
[[host.route]]
prefix = "/"
pool = "a"

[pool.a]
backends = ["${BE_IP[0]}:$BACKEND_PORT"]
EOF
}
orders_at_pebble() { grep -c 'POST /order-plz' "$ACME_LOG" || true; }
wait_vg_more() { # ERE COUNT-BEFORE TENTHS: until the log has more lines matching ERE
  local i
  for ((i = 0; i < $3; i++)); do
    (($(vg_log_count "$1") > $2)) && return 0
    sleep 0.1
  done
  return 1
}
expiry() { sed -n 's/^\*  expire date: //p' "$HTTP_ERR" | head -n 1; }
mode_of() { stat -c %a "$1" 2>/dev/null || echo missing; }

section "HTTP-01: issued through the http listener, served on https"
write_config http-01 a.example.test "$store"
in_lb "$VIPGATE_BIN" check --config "$cfg" >"$VG_TMP/check.out" 2>&1 || { cat "$VG_TMP/check.out"; fail "check accepts the [acme] config"; }
start_vipgate "$cfg" || abort "vipgate starts with an [acme] table and no certificate yet"
wait_vg_more "ACME certificate issued" 0 300 || fail "the certificate is issued within 30 s"
wait_vg_more "certificate file changed" 0 50 || fail "the watcher swaps the issued certificate in within 5 s"
https a.example.test /
assert_eq "a client trusting only pebble's root gets 200" 200 "$HTTP_CODE"
assert_contains "the routed backend answers" "$HTTP_BODY" "a"
exp0=$(expiry)
note "issued certificate expires $exp0"
metrics=$(metrics_in "$NS_LB")
assert_eq "one order issued (metrics)" 1 "$(metric_of "$metrics" 'vipgate_acme_orders_total{certificate="a.example.test",result="issued"}')"
assert_num "HTTP-01 answered by vipgate (metrics)" "$(metric_of "$metrics" 'vipgate_acme_challenges_answered_total{type="http-01"}')" -ge 1
assert_num "the expiry metric covers the ACME certificate" "$(metric_prefix_of "$metrics" 'vipgate_tls_certificate_not_after_seconds{name="a.example.test"')" -gt 1700000000
assert_eq "storage directory is 0700" 700 "$(mode_of "$store")"
assert_eq "account file is 0600" 600 "$(mode_of "$store/account.json")"
assert_eq "certificate file (chain and key) is 0600" 600 "$(mode_of "$store/certs/a.example.test.pem")"

section "renewal at a third of the lifetime, swapped under load"
load=$VG_TMP/load.txt
stop_file=$VG_TMP/load.stop
# A new TLS connection per request: at most 2000 requests, 60 s.
# shellcheck disable=SC2016 # expanded by the inner bash
in_client timeout 70 bash -c 'for ((i = 0; i < 2000 && SECONDS < 60; i++)); do
    [[ -e $3 ]] && break
    curl -sv --max-time 5 --cacert "$1" --resolve "a.example.test:443:$2" -o /dev/null \
      -w "code=%{http_code}\n" https://a.example.test/ 2>&1 | grep -E "^code=|^\*  expire date:" || echo "code=curl-failed"
    sleep 0.05
  done' _ "$root" "$VIP" "$stop_file" >"$load" &
load_pid=$!
vg_track "$load_pid"
# One keep-alive connection across the renewal: its second request is sent after it.
# shellcheck disable=SC2016 # expanded by the inner bash
in_client timeout 70 bash -c '{
    printf "GET / HTTP/1.1\r\nHost: a.example.test\r\n\r\n"
    while [[ ! -e $2 ]]; do sleep 0.2; done
    printf "GET / HTTP/1.1\r\nHost: a.example.test\r\nConnection: close\r\n\r\n"
  } | openssl s_client -quiet -CAfile "$3" -connect "$1:443" -servername a.example.test 2>/dev/null' _ "$VIP" "$VG_TMP/ka.go" "$root" >"$VG_TMP/ka.out" &
ka_pid=$!
vg_track "$ka_pid"
wait_vg_more "ACME certificate issued" 1 550 || fail "the certificate is renewed within 55 s"
wait_vg_more "certificate file changed" 1 50 || fail "the renewed certificate is swapped in within 5 s"
sleep 1
touch "$stop_file" "$VG_TMP/ka.go"
vg_wait_gone 150 "$load_pid" "$ka_pid" || true
wait "$load_pid" || true
wait "$ka_pid" || true
vg_forget "$load_pid"
vg_forget "$ka_pid"
total=$(grep -c '^code=' "$load" || true)
ok=$(grep -c '^code=200$' "$load" || true)
seen=$(grep '^\*  expire date:' "$load" | sort -u | wc -l)
note "$total requests (each a new TLS connection) across the renewal, $ok answered 200"
assert_num "the load ran" "$total" -ge 20
assert_eq "no request failed across the renewal" "$total" "$ok"
assert_num "the load saw the first and the renewed certificate" "$seen" -ge 2
assert_eq "the keep-alive connection got both answers" 2 "$(grep -c '^HTTP/1.1 200' "$VG_TMP/ka.out" || true)"

section "restart: the stored account and certificate are reused"
before=$(orders_at_pebble)
issued=$(vg_log_count "ACME certificate issued")
stop_vipgate
start_vipgate "$cfg" || abort "vipgate restarts"
https a.example.test /
assert_eq "right after the restart the stored certificate is served (200)" 200 "$HTTP_CODE"
sleep 3
assert_eq "no new order at pebble after the restart" "$before" "$(orders_at_pebble)"
assert_eq "no order in the new log" 0 "$(vg_log_count 'ordering an ACME certificate')"
note "orders at pebble so far: $before; issued before restart: $issued"
stop_vipgate

section "pebble down at start-up: HTTP served, back-off, then TLS-ALPN-01 once it is back"
pebble_down
write_config tls-alpn-01 b.example.test "$VG_TMP/acme-store-2"
start_vipgate "$cfg" || abort "vipgate starts while the ACME server is down"
http a.example.test /
assert_eq "plain HTTP is served while the ACME server is down" 200 "$HTTP_CODE"
wait_vg_more "ACME order failed" 2 100 || fail "failures are logged and retried (3 within 10 s)"
delays=$(vg_log_text | sed -n 's/.*ACME order failed.*retry_in_ms=\([0-9]*\).*/\1/p; s/.*retry_in_ms=\([0-9]*\).*ACME order failed.*/\1/p' | head -n 3 | paste -sd' ')
note "back-off after the first failures (ms): $delays"
read -r d1 d2 d3 <<<"$delays"
assert_num "the back-off grows (first < second)" "${d1:-0}" -lt "${d2:-0}"
assert_num "the back-off grows (second < third)" "${d2:-0}" -lt "${d3:-0}"
metrics=$(metrics_in "$NS_LB")
assert_num "failed orders are counted" "$(metric_of "$metrics" 'vipgate_acme_orders_total{certificate="b.example.test",result="failed"}')" -ge 2
TLS_CA=$VG_TMP/pebble-root-2.pem
https b.example.test / -k
assert_contains "meanwhile https serves the documented placeholder" "$(tls_subject)" "placeholder"
# Back with a fifth of the good nonces rejected: the client's badNonce retries carry the order.
ACME_NONCEREJECT=20
pebble_up || { cat "$ACME_LOG"; abort "pebble comes back"; }
pebble_root "$TLS_CA" || abort "the new pebble's root is fetched"
wait_vg_more "ACME certificate issued" 0 300 || fail "issued by TLS-ALPN-01 within 30 s of pebble's return (20% of nonces rejected)"
wait_vg_more "certificate file changed" 0 50 || fail "the watcher swaps it in"
https b.example.test /
assert_eq "a client trusting only the new pebble root gets 200 for b.example.test" 200 "$HTTP_CODE"
metrics=$(metrics_in "$NS_LB")
assert_num "TLS-ALPN-01 answered by vipgate (metrics)" "$(metric_of "$metrics" 'vipgate_acme_challenges_answered_total{type="tls-alpn-01"}')" -ge 1

summary
