#!/usr/bin/env bash
# TLS to backends ([pool.NAME.tls]) through the VIP, with certificates made here by
# examples/testcert: a real nginx backend that requires a client certificate from the test CA
# (ssl_verify_client on) and an OpenSSL s_server that refuses the handshake without one
# (-Verify 1, as Envoy/Istio sidecars do). Mutual TLS works and reuses backend connections
# (nginx's $connection / $connection_requests), HTTP health checks go over TLS, a missing
# client certificate, a wrong CA and a wrong server_name each give 502 with the reason logged
# and counted while the daemon stays up, and `check` / reload refuse bad certificate files
# with the file named.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

TESTCERT=${TESTCERT:-$VG_ROOT/target/debug/examples/testcert}
[[ -x $TESTCERT ]] || abort "no $TESTCERT (cargo build --examples)"
command -v nginx >/dev/null || abort "nginx is missing (scripts/test installs it)"
command -v openssl >/dev/null || abort "openssl is missing (scripts/test installs it)"

NGINX_PORT=8443
STRICT_PORT=9443

lan_up 1
BE=${BE_IP[0]}
pki=$VG_TMP/pki
mkdir -p "$pki"
"$TESTCERT" ca "$pki/ca"
"$TESTCERT" ca "$pki/other-ca"
"$TESTCERT" leaf "$pki/ca" "$pki/server" was.internal "$BE"
"$TESTCERT" leaf "$pki/ca" "$pki/client" vipgate-client --client
"$TESTCERT" leaf "$pki/ca" "$pki/client2" vipgate-client-2 --client
"$TESTCERT" leaf "$pki/ca" "$pki/old-client" old-client --client --expired

# --- the backends: nginx (mTLS) and openssl s_server (strict mTLS) in be1's namespace ----------
ngx=$VG_TMP/nginx
ngx_body=$(
  cat <<EOF
  log_format tls '\$remote_addr conn=\$connection req=\$connection_requests status=\$status ua="\$http_user_agent" client="\$ssl_client_s_dn" verify=\$ssl_client_verify reused=\$ssl_session_reused';
  access_log $ngx/access.log tls;
  keepalive_requests 1000;
  keepalive_timeout 60s;
  server {
    listen $BE:$NGINX_PORT ssl;
    ssl_certificate $pki/server.pem;
    ssl_certificate_key $pki/server.key;
    ssl_client_certificate $pki/ca.pem;
    ssl_verify_client on;
    default_type text/plain;
    location / {
      return 200 "backend=nginx conn=\$connection req=\$connection_requests client=\$ssl_client_s_dn verify=\$ssl_client_verify\n";
    }
  }
EOF
)
nginx_start 0 "$ngx" "$NGINX_PORT" "$ngx_body" || abort "nginx listens on $BE:$NGINX_PORT"
ip netns exec "${BE_NS[0]}" openssl s_server -quiet -www -accept "$BE:$STRICT_PORT" \
  -cert "$pki/server.pem" -key "$pki/server.key" -CAfile "$pki/ca.pem" -Verify 1 \
  >"$VG_TMP/s_server.log" 2>&1 </dev/null &
vg_track "$!"
listening() { ip netns exec "${BE_NS[0]}" ss -Hltn "sport = :$1" | grep -q .; }
for _ in $(seq 50); do
  listening "$STRICT_PORT" && break
  sleep 0.1
done
listening "$STRICT_PORT" || { cat "$VG_TMP/s_server.log"; abort "s_server listens on $BE:$STRICT_PORT"; }

section "the backends themselves (curl from the client, no vipgate)"
out=$(in_client curl -sS --max-time 5 --cacert "$pki/ca.pem" --resolve "was.internal:$NGINX_PORT:$BE" \
  --cert "$pki/client.pem" --key "$pki/client.key" "https://was.internal:$NGINX_PORT/" 2>&1 || true)
assert_contains "nginx answers a request with the client certificate" "$out" "verify=SUCCESS"
out=$(in_client curl -sS --max-time 5 --cacert "$pki/ca.pem" --resolve "was.internal:$NGINX_PORT:$BE" \
  "https://was.internal:$NGINX_PORT/" 2>&1 || true)
assert_contains "nginx answers 400 without one (it does not refuse the handshake)" "$out" "No required SSL certificate was sent"

# --- vipgate ------------------------------------------------------------------------------------
pool() { # NAME PORT TLS-LINES...
  local name=$1 port=$2
  shift 2
  printf '[pool.%s]\nbackends = ["%s:%s"]\n[pool.%s.tls]\n' "$name" "$BE" "$port" "$name"
  printf '%s\n' "$@"
}
host() { # NAME POOL
  printf '[[host]]\nnames = ["%s.example.test"]\n[[host.route]]\nprefix = "/"\npool = "%s"\n' "$1" "$2"
}
cfg=$VG_TMP/vipgate.toml
write_config() { # CERT KEY: the client certificate files of pool mtls
  {
    printf '[[vip]]\naddress = "%s"\ninterface = "eth0"\n[[listener]]\nbind = "%s:80"\n' "$VIP" "$VIP"
    printf '[log]\nlevel = "info"\n'
    # One worker: with runtime = "per-core" each worker thread keeps its own idle backend
    # connections, and the reuse checked below is across client connections of one worker.
    printf '[proxy]\nworker_threads = 1\n'
    for h in mtls ip nocert strict wrongca wrongname; do host "$h" "$h"; done
    pool mtls "$NGINX_PORT" 'ca = "pki/ca.pem"' 'server_name = "was.internal"' \
      "cert = \"$1\"" "key = \"$2\"" 'alpn = ["http/1.1"]'
    printf '[pool.mtls.health]\ntype = "http"\npath = "/healthz"\ninterval_ms = 500\ntimeout_ms = 400\n'
    pool ip "$NGINX_PORT" "ca = \"$pki/ca.pem\"" 'cert = "pki/client.pem"' 'key = "pki/client.key"'
    pool nocert "$NGINX_PORT" 'ca = "pki/ca.pem"' 'server_name = "was.internal"'
    pool strict "$STRICT_PORT" 'ca = "pki/ca.pem"' 'server_name = "was.internal"'
    pool wrongca "$NGINX_PORT" 'ca = "pki/other-ca.pem"' 'server_name = "was.internal"' \
      'cert = "pki/client.pem"' 'key = "pki/client.key"'
    pool wrongname "$NGINX_PORT" 'ca = "pki/ca.pem"' 'server_name = "other.internal"' \
      'cert = "pki/client.pem"' 'key = "pki/client.key"'
  } >"$cfg"
}
write_config pki/client.pem pki/client.key

section "check"
vipgate_cmd check --config "$cfg"
assert_eq "check accepts the TLS pools" 0 "$CMD_RC"
assert_contains "check shows the client certificate" "$CMD_OUT" "pool mtls tls: verify with $pki/ca.pem as was.internal, client certificate CN=vipgate-client"

start_vipgate "$cfg" || abort "vipgate starts"

section "mutual TLS through the VIP, with keep-alive reuse"
conns=() reqs=()
for i in 1 2 3 4 5; do
  http mtls.example.test "/r$i"
  assert_eq "request $i over mTLS: 200" 200 "$HTTP_CODE"
  conns+=("$(sed -n 's/.* conn=\([0-9]*\) .*/\1/p' <<<"$HTTP_BODY")")
  reqs+=("$(sed -n 's/.* req=\([0-9]*\) .*/\1/p' <<<"$HTTP_BODY")")
done
assert_contains "nginx verified the client certificate" "$HTTP_BODY" "client=CN=vipgate-client verify=SUCCESS"
note "nginx connection/request per response: $(paste -d/ <(printf '%s\n' "${conns[@]}") <(printf '%s\n' "${reqs[@]}") | tr '\n' ' ')"
distinct=$(printf '%s\n' "${conns[@]}" | sort -u | wc -l)
assert_eq "five requests from five client connections share one backend connection" 1 "$distinct"
assert_eq "nginx counts requests 1..5 on it" "1 2 3 4 5" "${reqs[*]}"

http ip.example.test /
assert_eq "without server_name the backend's IP address SAN is verified: 200" 200 "$HTTP_CODE"

section "HTTP health checks over TLS"
for _ in $(seq 30); do
  (($(grep -c 'ua="vipgate-health"' "$ngx/access.log" || true) >= 2)) && break
  sleep 0.1
done
hc=$(grep 'ua="vipgate-health"' "$ngx/access.log" | tail -n 1 || true)
assert_contains "nginx logs a health check with the client certificate" "$hc" 'status=200 ua="vipgate-health" client="CN=vipgate-client" verify=SUCCESS'

assert_num "health checks resume TLS sessions (nginx \$ssl_session_reused)" "$(grep -c 'ua="vipgate-health".* reused=r' "$ngx/access.log" || true)" -ge 1

section "failures: 502 with the reason, daemon stays up"
http strict.example.test /
assert_eq "no client certificate, backend refuses the handshake: 502" 502 "$HTTP_CODE"
wait_vg_log "reason=client_certificate_required" 30 || true
assert_num "the log names the missing client certificate" "$(vg_log_count 'TLS handshake with the backend failed: the backend requires a client certificate.* pool=strict .*reason=client_certificate_required')" -ge 1
http nocert.example.test /
assert_eq "no client certificate towards nginx: its own 400 is relayed" 400 "$HTTP_CODE"
assert_num "the log says a backend asked for a client certificate the pool lacks" "$(vg_log_count 'asked for a client certificate, but \[pool.nocert.tls\] has no cert and key: none was sent')" -ge 1
for _ in 1 2 3 4; do http wrongca.example.test /; done
assert_eq "a backend certificate from another CA: 502" 502 "$HTTP_CODE"
assert_num "unknown CA logged once for 8 failed handshakes (once per 10 s per backend)" "$(vg_log_count 'unknown CA.* pool=wrongca .*reason=unknown_ca')" -eq 1
http wrongname.example.test /
assert_eq "a certificate for another name: 502" 502 "$HTTP_CODE"
assert_num "the name mismatch is logged" "$(vg_log_count 'does not name the server_name.* pool=wrongname .*reason=name_mismatch')" -ge 1
metrics=$(in_lb curl -sS --max-time 5 http://127.0.0.1:9901/metrics)
m() { grep -E "^vipgate_upstream_tls_handshake_failures_total\{pool=\"$1\",backend=\"$BE:[0-9]+\",reason=\"$2\"\}" <<<"$metrics" | awk '{print $2}'; }
# Each request tries twice (the default retries = 1 on connect failure; one backend to try).
assert_eq "metric: unknown_ca counted for each of the 8 tries" 8 "$(m wrongca unknown_ca)"
assert_num "metric: name_mismatch counted" "$(m wrongname name_mismatch)" -ge 1
assert_num "metric: client_certificate_required counted" "$(m strict client_certificate_required)" -ge 1
assert_num "metric: handshakes on the mTLS pool" "$(grep -E "^vipgate_upstream_tls_handshakes_total\{pool=\"mtls\"" <<<"$metrics" | awk '{print $2}')" -ge 1
exp=$(sed -n 's/^vipgate_upstream_tls_client_certificate_expiry_timestamp_seconds{pool="mtls"} //p' <<<"$metrics")
assert_num "metric: the client certificate's expiry lies ahead (90 days)" "$exp" -gt "$(($(date +%s) + 80 * 86400))"
assert_eq "vipgate is still running" 0 "$(vg_alive "$VG_PID" && echo 0 || echo 1)"
http mtls.example.test /after
assert_eq "the mTLS pool still answers after the failures" 200 "$HTTP_CODE"

section "bad certificate files: check and reload refuse them, naming the file"
expect_refused() { # DESC CERT KEY WORDS
  write_config "$2" "$3"
  vipgate_cmd check --config "$cfg"
  assert_eq "check refuses $1 (exit 2)" 2 "$CMD_RC"
  local msg
  msg=$(grep -F -- "$cfg:" <<<"$CMD_ERR" | head -n 1 || true)
  assert_match "check gives FILE:LINE:COLUMN and the pool for $1" "$msg" ".*$cfg:[0-9]+:[0-9]+: error: pool \"mtls\": .*"
  assert_contains "check names the file and the reason for $1" "$msg" "$4"
}
expect_refused "a missing client certificate" pki/missing.pem pki/client.key "$pki/missing.pem: cannot read"
expect_refused "an expired client certificate" pki/old-client.pem pki/old-client.key "$pki/old-client.pem: the certificate expired at 2001-01-01T00:00:00Z"
expect_refused "a key of another certificate" pki/client.pem pki/server.key "$pki/server.key: the private key does not belong to the certificate in $pki/client.pem"
# The running daemon is handed the expired certificate: the reload is refused, the old one stays.
write_config pki/old-client.pem pki/old-client.key
if reload_vipgate; then fail "a reload with an expired client certificate is refused"; else pass "a reload with an expired client certificate is refused"; fi
assert_contains "the refusal names the file" "$RELOAD_LINE" "old-client.pem: the certificate expired"
http mtls.example.test /still
assert_eq "the running configuration stays: mTLS still 200" 200 "$HTTP_CODE"
assert_contains "still with the good client certificate" "$HTTP_BODY" "client=CN=vipgate-client"

# A rotated client certificate behind a reload: the pooled connection (made with the old one)
# is dropped and the next request handshakes with the new one.
write_config pki/client2.pem pki/client2.key
if reload_vipgate; then pass "a reload with a new client certificate is taken"; else fail "a reload with a new client certificate is taken: $RELOAD_LINE"; fi
http mtls.example.test /rotated
assert_contains "the next request presents the new client certificate" "$HTTP_BODY" "client=CN=vipgate-client-2 verify=SUCCESS"

stop_vipgate
kill -TERM "$NGINX_PID" 2>/dev/null || true
summary
