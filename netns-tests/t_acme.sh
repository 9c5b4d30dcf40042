#!/usr/bin/env bash
# Certificates by ACME against a real ACME server (Debian's pebble, in a namespace of its own,
# resolving the test names to the VIP with the test's dnsmasq): an HTTP-01 order answered by
# vipgate's http listener (which redirects everything else to https), the certificate stored
# (0600, directory 0700) and served by the https listener to a client that trusts only
# pebble's root; renewal at a third of a short lifetime swapped in under a bounded load with no
# failed request and a keep-alive connection surviving; a restart reuses the stored
# certificate (no new order at pebble), and with the certificate file gone orders with the
# stored account (no new account); pebble down at start-up: vipgate serves HTTP and the
# placeholder, logs the failures and retries with back-off, and once pebble is back (rejecting
# 20% of good nonces) a TLS-ALPN-01 order on the https listener succeeds, while a name in no
# DNS fails with pebble's problem document logged.
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
write_config() { # CHALLENGE STORAGE PORT80_LINE NAME...: one acme certificate per NAME
  local n
  cat >"$cfg" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"
$3

[[listener]]
bind = "$VIP:443"
protocol = "https"

[acme]
directory = "$ACME_DIR"
contact = ["ops@example.test"]
storage = "$2"
server_ca = "$ACME_CA"
challenge = "$1"
retry_initial_ms = 500
retry_max_ms = 4000

[[host]]
names = ["a.example.test", "b.example.test"]
[[host.route]]
prefix = "/"
pool = "a"

[pool.a]
backends = ["${BE_IP[0]}:$BACKEND_PORT"]
EOF
  for n in "${@:4}"; do printf '\n[[certificate]]\nacme = ["%s"]\n' "$n" >>"$cfg"; done
}
# What pebble holds (its own count, logged on each new one): a POST it rejected for a bad nonce
# and that the client sent again is not a second order.
orders_at_pebble() { sed -n 's/.*There are now \([0-9]*\) orders in the db.*/\1/p' "$ACME_LOG" | tail -n 1 | grep . || echo 0; }
accounts_at_pebble() { sed -n 's/.*There are now \([0-9]*\) accounts in memory.*/\1/p' "$ACME_LOG" | tail -n 1 | grep . || echo 0; }
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

section "HTTP-01: issued through the http listener (redirect_https), served on https"
# The http listener redirects everything to https: the token is answered before the redirect.
write_config http-01 "$store" 'redirect_https = 301' a.example.test
vipgate_cmd check --config "$cfg"
assert_eq "check accepts the [acme] config" 0 "$CMD_RC"
assert_contains "check names the ACME table" "$CMD_OUT" "acme $ACME_DIR by http-01"
assert_contains "check shows the placeholder before the first order" "$CMD_OUT" "(acme), CN=vipgate placeholder"
sed 's/^challenge = "http-01"$/challenge = "dns-01"/' "$cfg" >"$VG_TMP/bad.toml"
vipgate_cmd check --config "$VG_TMP/bad.toml"
assert_eq "check refuses challenge = \"dns-01\" (exit 2)" 2 "$CMD_RC"
assert_match "with file, line and reason" "$CMD_ERR" "$VG_TMP/bad.toml:[0-9]+:[0-9]+: error: challenge \"dns-01\" is not .*"
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
http a.example.test /
assert_eq "other requests on the http listener are still redirected" 301 "$HTTP_CODE"

section "renewal at a third of the lifetime, swapped under load"
load=$VG_TMP/load.txt
stop_file=$VG_TMP/load.stop
# A new TLS connection per request (at most 3000, 60 s), and one keep-alive connection whose
# second request is sent after the renewal.
tls_load_start "$root" a.example.test "$stop_file" "$load" 60
tls_keepalive_start a.example.test "$VG_TMP/ka.go" "$VG_TMP/ka.out" 70
wait_vg_more "ACME certificate issued" 1 550 || fail "the certificate is renewed within 55 s"
wait_vg_more "certificate file changed" 1 50 || fail "the renewed certificate is swapped in within 5 s"
sleep 1
tls_load_stop "$stop_file" "$VG_TMP/ka.go"
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
accounts=$(accounts_at_pebble)
rm "$store/certs/a.example.test.pem"
start_vipgate "$cfg" || abort "vipgate restarts without its certificate file"
wait_vg_more "ACME certificate issued" 0 300 || fail "the missing certificate is ordered again within 30 s"
assert_eq "with the stored account: one more order at pebble" $((before + 1)) "$(orders_at_pebble)"
assert_eq "no new account at pebble" "$accounts" "$(accounts_at_pebble)"
assert_eq "the stored account is read, not made" 1 "$(vg_log_count 'ACME account read from')"
stop_vipgate

section "pebble down at start-up: HTTP served, back-off, then TLS-ALPN-01 once it is back"
pebble_down
# nodns.example.test is in no DNS: pebble refuses its orders with a problem document.
write_config tls-alpn-01 "$VG_TMP/acme-store-2" 'protocol = "http"' b.example.test nodns.example.test
start_vipgate "$cfg" || abort "vipgate starts while the ACME server is down"
http a.example.test /
assert_eq "plain HTTP is served while the ACME server is down" 200 "$HTTP_CODE"
wait_vg_more "ACME order failed.*certificate=b.example.test" 2 100 || fail "failures are logged and retried (3 within 10 s)"
delays=$(vg_log_text | grep 'ACME order failed.*certificate=b.example.test' |
  sed -n 's/.*retry_in_ms=\([0-9]*\).*/\1/p' | head -n 3 | paste -sd' ')
note "b.example.test's back-off after its first failures (ms): $delays"
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
wait_vg_more 'ACME order failed.*"type":"urn:ietf:params:acme:error:' 0 150 || fail "a refused order is logged with the server's problem document"
note "$(vg_log_text | grep -m1 -o 'ACME order failed.*"type":"urn:ietf:params:acme:error:[a-zA-Z]*"' | cut -c1-200)"
metrics=$(metrics_in "$NS_LB")
assert_num "the name in no DNS: failed orders counted" "$(metric_of "$metrics" 'vipgate_acme_orders_total{certificate="nodns.example.test",result="failed"}')" -ge 1
assert_num "TLS-ALPN-01 answered by vipgate (metrics)" "$(metric_of "$metrics" 'vipgate_acme_challenges_answered_total{type="tls-alpn-01"}')" -ge 1

summary
