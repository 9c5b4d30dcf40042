#!/usr/bin/env bash
# HTTPS listeners through the VIP, with certificates made in the test by examples/testcert:
# SNI chooses the certificate (checked with curl -v and openssl s_client) and the Host the
# pool; SNI/Host mismatch gets 421; `check` refuses expired and mismatched files with the file;
# the certificate is swapped under a bounded curl load by SIGHUP and by a file change alone,
# with zero failed requests and a keep-alive connection surviving; a bad file keeps the old
# certificate; client certificates required; http → https redirect; TLS metrics and access log.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

[[ -x $TESTCERT_BIN ]] || abort "examples/testcert is built ($TESTCERT_BIN; cargo build --examples)"

# be1: pool a   be2: pool apps   be3: pool fallback
lan_up 3
pki=$VG_TMP/pki
mkdir -p "$pki"
testcert ca "$pki/ca"
testcert leaf "$pki/ca" "$pki/a" a.example.test
testcert leaf "$pki/ca" "$pki/apps" '*.apps.example.test'
testcert leaf "$pki/ca" "$pki/fallback" fallback.example.test
testcert leaf "$pki/ca" "$pki/old" old.example.test --expired
testcert leaf "$pki/ca" "$pki/one" "client one" --client
testcert leaf "$pki/ca" "$pki/other" "client other" --client
TLS_CA=$pki/ca.pem

cfg=$VG_TMP/tls.toml
write_config() { # [A_KEY]: the key file of a.example.test's certificate (default a.key)
  cat >"$cfg" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:443"
protocol = "https"

[[listener]]
bind = "$VIP:8443"
protocol = "https"
client_ca = "pki/ca.pem"
sni_fallback = "refuse"

[[listener]]
bind = "$VIP:80"
redirect_https = 301

[[certificate]]
cert = "pki/a.pem"
key = "pki/${1:-a.key}"

[[certificate]]
cert = "pki/apps.pem"
key = "pki/apps.key"

[[certificate]]
cert = "pki/fallback.pem"
key = "pki/fallback.key"
default = true

[[host]]
names = ["a.example.test"]
[[host.route]]
prefix = "/"
pool = "a"

[[host]]
names = ["*.apps.example.test"]
[[host.route]]
prefix = "/"
pool = "apps"

[[host]]
names = ["fallback.example.test"]
allow_client_subjects = ["CN=client one"]
[[host.route]]
prefix = "/"
pool = "fallback"

[pool.a]
backends = ["${BE_IP[0]}:8080"]
[pool.apps]
backends = ["${BE_IP[1]}:8080"]
[pool.fallback]
backends = ["${BE_IP[2]}:8080"]

[access_log]
format = "json"
EOF
}

section "check refuses bad certificate files with the file and the reason"
write_config
vipgate_cmd check --config "$cfg"
assert_eq "the good file passes check" 0 "$CMD_RC"
assert_contains "check lists the certificate and its names" "$CMD_OUT" "certificate $pki/apps.pem for *.apps.example.test"
sed 's|pki/a.pem|pki/old.pem|; s|pki/a.key|pki/old.key|' "$cfg" >"$VG_TMP/expired.toml"
vipgate_cmd check --config "$VG_TMP/expired.toml"
assert_eq "expired certificate: check exits 2" 2 "$CMD_RC"
assert_match "expired certificate: FILE:LINE:COL and the file with its expiry" "$CMD_ERR" \
  ".*expired\.toml:20:8: error: .*pki/old\.pem: the certificate expired at 2001-01-01T00:00:00Z.*"
write_config apps.key
cp "$cfg" "$VG_TMP/mismatch.toml"
vipgate_cmd check --config "$VG_TMP/mismatch.toml"
assert_eq "key of another certificate: check exits 2" 2 "$CMD_RC"
assert_match "key of another certificate: the key file and the certificate" "$CMD_ERR" \
  ".*mismatch\.toml:21:7: error: .*pki/apps\.key: the private key does not belong to the certificate in .*pki/a\.pem.*"

write_config
start_vipgate "$cfg" || abort "vipgate starts with https listeners and logs ready"

section "SNI chooses the certificate, Host the pool"
https a.example.test /x
assert_eq "a.example.test -> 200 from pool a (be1)" "200 be1" "$HTTP_CODE $(backend_of)"
assert_eq "a.example.test is served its own certificate" "CN=a.example.test" "$(tls_subject)"
https kiali.apps.example.test /
assert_eq "kiali.apps.example.test -> 200 from pool apps (be2)" "200 be2" "$HTTP_CODE $(backend_of)"
assert_eq "kiali.apps.example.test gets the wildcard certificate" "CN=*.apps.example.test" "$(tls_subject)"
https fallback.example.test / --cert "$pki/one.pem" --key "$pki/one.key"
assert_eq "fallback.example.test gets its certificate" "CN=fallback.example.test" "$(tls_subject)"
assert_contains "the backend is told the request came over https" \
  "$(in_client curl -sS --max-time 10 --cacert "$TLS_CA" --resolve "a.example.test:443:$VIP" https://a.example.test/headers)" \
  "X-Forwarded-Proto: https"
s_client_subject() { # SERVERNAME-ARGS...: the subject openssl s_client was shown
  in_client timeout 10 openssl s_client -connect "$VIP:443" "$@" </dev/null 2>/dev/null |
    openssl x509 -noout -subject 2>/dev/null | sed 's/^subject= *//; s/ = /=/g' || true
}
assert_eq "openssl s_client: SNI kiali.apps.example.test -> wildcard certificate" "CN=*.apps.example.test" \
  "$(s_client_subject -servername kiali.apps.example.test)"
assert_eq "openssl s_client: unknown SNI -> the default certificate" "CN=fallback.example.test" \
  "$(s_client_subject -servername unknown.example.test)"
assert_eq "openssl s_client: no SNI -> the default certificate" "CN=fallback.example.test" \
  "$(s_client_subject -noservername)"

section "SNI and Host must agree"
https a.example.test / -H 'Host: kiali.apps.example.test'
assert_eq "SNI a.example.test with Host kiali.apps.example.test -> 421 from vipgate" "421 " "$HTTP_CODE $(backend_of)"
https a.example.test / -H 'Host: A.Example.Test:443'
assert_eq "Host in other case and with the port agrees -> 200" "200 be1" "$HTTP_CODE $(backend_of)"

section "client certificates (listener 8443: client_ca, required; SNI unknown refused)"
TLS_PORT=8443 https a.example.test /
assert_eq "without a client certificate: no response" 000 "$HTTP_CODE"
TLS_PORT=8443 https a.example.test / --cert "$pki/one.pem" --key "$pki/one.key"
assert_eq "with a client certificate -> 200" "200 be1" "$HTTP_CODE $(backend_of)"
TLS_PORT=8443 https fallback.example.test / --cert "$pki/other.pem" --key "$pki/other.key"
assert_eq "a subject the host does not allow -> 403" 403 "$HTTP_CODE"
TLS_PORT=8443 https fallback.example.test / --cert "$pki/one.pem" --key "$pki/one.key"
assert_eq "the subject the host allows -> 200 from pool fallback (be3)" "200 be3" "$HTTP_CODE $(backend_of)"
https fallback.example.test /
assert_eq "on 443 (no client_ca) that host gets 403: no verified subject" 403 "$HTTP_CODE"
TLS_PORT=8443 https nobody.example.test / --cert "$pki/one.pem" --key "$pki/one.key"
assert_eq "sni_fallback = refuse: unknown SNI gets no certificate" 000 "$HTTP_CODE"

section "http listener redirects to https"
http a.example.test '/some/path?q=1'
assert_eq "http -> 301" 301 "$HTTP_CODE"
loc=$(in_client curl -sS --max-time 10 -o /dev/null -w '%{redirect_url}' -H 'Host: a.example.test:80' "http://$VIP/some/path?q=1")
assert_eq "Location is https://host/path?query" "https://a.example.test/some/path?q=1" "$loc"

section "certificate swapped under load: SIGHUP, then a file change alone"
wait_log_more() { # ERE COUNT-BEFORE: ≤ 10 s until the log has more lines matching ERE
  local i
  for ((i = 0; i < 100; i++)); do
    (($(vg_log_count "$1") > $2)) && return 0
    sleep 0.1
  done
  return 1
}
expiry() { sed -n 's/^\*  expire date: //p' "$HTTP_ERR" | head -n 1; }
https a.example.test /
exp0=$(expiry)
load=$VG_TMP/load.txt
stop_file=$VG_TMP/load.stop
# New connection per request, so every one is a handshake: at most 3000 requests, 60 s.
tls_load_start "$TLS_CA" a.example.test "$stop_file" "$load" 60
# One keep-alive connection across both swaps: its second request is sent after them.
tls_keepalive_start a.example.test "$VG_TMP/ka.go" "$VG_TMP/ka.out" 40
sleep 1
testcert_replace "$pki" a a.example.test --days 30
reload_vipgate || fail "SIGHUP reload with renewed certificate files: $RELOAD_LINE"
https a.example.test /
exp1=$(expiry)
if [[ -n $exp1 && $exp1 != "$exp0" ]]; then pass "after SIGHUP new handshakes get the renewed certificate ($exp1)"; else fail "after SIGHUP new handshakes get the renewed certificate: '$exp0' then '$exp1'"; fi
sleep 1
changed=$(vg_log_count "certificate file changed")
testcert_replace "$pki" a a.example.test --days 60
wait_log_more "certificate file changed" "$changed" || fail "the file change is noticed within 10 s"
https a.example.test /
exp2=$(expiry)
if [[ -n $exp2 && $exp2 != "$exp1" && $exp2 != "$exp0" ]]; then pass "without SIGHUP new handshakes get the changed certificate ($exp2)"; else fail "without SIGHUP new handshakes get the changed certificate: '$exp1' then '$exp2'"; fi
sleep 1
tls_load_stop "$stop_file" "$VG_TMP/ka.go"
total=$(grep -c '^code=' "$load" || true)
ok=$(grep -c '^code=200$' "$load" || true)
note "$total requests (each a new TLS connection) during the swaps"
assert_num "the load ran (requests)" "$total" -ge 20
assert_eq "zero failed requests during both swaps" "$total" "$ok"
seen=$(grep '^\*  expire date:' "$load" | sort -u | wc -l)
assert_num "the load saw the three certificates one after another" "$seen" -eq 3
assert_eq "the keep-alive connection made before the swaps got both answers" 2 \
  "$(grep -c '^HTTP/1.1 200' "$VG_TMP/ka.out" || true)"

section "a bad certificate file keeps the old certificate"
refused_re="certificate file refused, keeping the certificate served now: .*a\.key: the private key does not belong"
refused=$(vg_log_count "$refused_re")
cp "$pki/apps.key" "$pki/a.key.bad"
mv -f "$pki/a.key.bad" "$pki/a.key"
wait_log_more "$refused_re" "$refused" ||
  fail "the mismatched key file is logged as refused"
https a.example.test /
assert_eq "still 200 with the last good certificate" "200 $exp2" "$HTTP_CODE $(expiry)"
if reload_vipgate; then fail "SIGHUP with the mismatched key is refused"; else pass "SIGHUP with the mismatched key is refused"; fi
assert_contains "the refusal names the key file" "$RELOAD_LINE" "a.key: the private key does not belong to the certificate"
https a.example.test /
assert_eq "after the refused reload: still 200 with the last good certificate" "200 $exp2" "$HTTP_CODE $(expiry)"

section "metrics and access log"
metrics=$(in_lb curl -sS --max-time 5 http://127.0.0.1:9901/metrics)
hs=$(sed -n 's/^vipgate_tls_handshakes_total \([0-9]*\)$/\1/p' <<<"$metrics")
assert_num "vipgate_tls_handshakes_total counts the handshakes" "${hs:-0}" -ge "$total"
cc=$(sed -n 's/^vipgate_tls_handshake_failures_total{reason="client_certificate"} \([0-9]*\)$/\1/p' <<<"$metrics")
assert_num "the refused client without a certificate is counted as client_certificate" "${cc:-0}" -ge 1
nc=$(sed -n 's/^vipgate_tls_handshake_failures_total{reason="no_certificate"} \([0-9]*\)$/\1/p' <<<"$metrics")
assert_num "the refused unknown SNI is counted as no_certificate" "${nc:-0}" -ge 1
na=$(sed -n 's/^vipgate_tls_certificate_not_after_seconds{name="a.example.test",file="[^"]*a.pem"} \([0-9]*\)$/\1/p' <<<"$metrics")
want=$(date -d "$exp2" +%s 2>/dev/null || echo none)
assert_eq "vipgate_tls_certificate_not_after_seconds of a.example.test is the served certificate's" "$want" "$na"
line=$(vg_log_text | grep '"path":"/"' | grep '"pool":"fallback"' | grep '"status":200' | tail -n 1)
assert_contains "access log: TLS version" "$line" '"tls_version":"TLSv1.3"'
assert_contains "access log: cipher" "$line" '"tls_cipher":"TLS13_'
assert_contains "access log: verified client subject" "$line" '"client_subject":"CN=client one"'

stop_vipgate
summary
