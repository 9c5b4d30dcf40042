#!/usr/bin/env bash
# `vipgate import-istio` on the seed's Istio resources (netns-tests/fixtures/istio: Gateway,
# four VirtualServices, DestinationRule, the MetalLB Service, PeerAuthentication) prints a
# configuration that `vipgate check` accepts, warns about what it cannot carry over, and routes
# the seed's four hosts as the Istio gateway did, to real backends on the namespace LAN: with
# --backend addresses, and with none, by the Kubernetes service names that a real dnsmasq serves.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

fixtures=$VG_ROOT/netns-tests/fixtures/istio
lan_up 5 web1 web2 grafana argocd kiali

section "import"
out=$VG_TMP/imported.toml
rc=0
"$VIPGATE_BIN" import-istio --vip "$VIP" --interface eth0 \
  --backend "web-service=${BE_IP[0]}:$BACKEND_PORT,${BE_IP[1]}:$BACKEND_PORT" \
  --backend "grafana.monitoring=${BE_IP[2]}:$BACKEND_PORT" \
  --backend "argocd-server=${BE_IP[3]}:$BACKEND_PORT" \
  --backend "kiali=${BE_IP[4]}:$BACKEND_PORT" \
  "$fixtures"/*.yaml >"$out" 2>"$VG_TMP/import.err" || rc=$?
assert_eq "import-istio exits 0" 0 "$rc"
warnings=$(cat "$VG_TMP/import.err")
note "warnings:"
sed 's/^/   | /' "$VG_TMP/import.err"
assert_contains "it warns that PeerAuthentication is not imported" "$warnings" "warning: $fixtures/peerauthentication.yaml: PeerAuthentication blog-system/default: not imported"
assert_contains "it warns that Istio's /api prefix also matched /apix" "$warnings" 'prefix "/api": Istio also matches'
assert_eq "every stderr line is a warning" "" "$(grep -v '^warning: ' "$VG_TMP/import.err" || true)"
vipgate_cmd check --config "$out"
assert_eq "vipgate check accepts the output" 0 "$CMD_RC"
[[ $CMD_RC == 0 ]] || note "check: $(vg_show "$CMD_ERR")"
for host in blog monitoring argocd kiali; do
  assert_contains "the routing table has $host.jiminhome.shop" "$CMD_OUT" "host $host.jiminhome.shop"
done

section "routing as the seed's Istio gateway did"
start_vipgate "$out" || abort "vipgate runs the imported configuration"
expect_route "blog.jiminhome.shop / -> web-service (stable)" blog.jiminhome.shop / 200 'web1|web2'
expect_route "blog.jiminhome.shop /api/posts -> web-service (stable), as the seed routes /api" blog.jiminhome.shop /api/posts 200 'web1|web2'
expect_route "monitoring.jiminhome.shop / -> grafana" monitoring.jiminhome.shop / 200 grafana
expect_route "argocd.jiminhome.shop / -> argocd-server" argocd.jiminhome.shop / 200 argocd
expect_route "kiali.jiminhome.shop / -> kiali" kiali.jiminhome.shop / 200 kiali
expect_route "a subdomain the Gateway accepts but no VirtualService names -> 404, as Istio" nothing.jiminhome.shop / 404 ''
expect_route "a host outside the Gateway -> 404" blog.example.test / 404 ''
stop_vipgate

section "import with no --backend: the service names, served by a real DNS server"
# The seed's services on the ports its routes name, as dnsmasq's records of the cluster.
for i in 0 1 3; do
  backend_kill "$i"
  BACKEND_PORT=80 backend_spawn "$i"
done
for i in 2 4; do backend_kill "$i"; done
BACKEND_PORT=3000 backend_spawn 2
BACKEND_PORT=20001 backend_spawn 4
for a in "${BE_IP[0]}:80" "${BE_IP[1]}:80" "${BE_IP[2]}:3000" "${BE_IP[3]}:80" "${BE_IP[4]}:20001"; do
  vg_wait_http "$a" || abort "backend on $a answers"
done
dns_up svc.cluster.local || abort "dnsmasq starts"
dns_set web-service.blog-system.svc.cluster.local "${BE_IP[0]}" "${BE_IP[1]}"
dns_set grafana.monitoring.svc.cluster.local "${BE_IP[2]}"
dns_set argocd-server.argocd.svc.cluster.local "${BE_IP[3]}"
dns_set kiali.istio-system.svc.cluster.local "${BE_IP[4]}"
named=$VG_TMP/named.toml
rc=0
"$VIPGATE_BIN" import-istio --vip "$VIP" --interface eth0 "$fixtures"/*.yaml >"$named" 2>"$VG_TMP/import2.err" || rc=$?
assert_eq "import-istio without --backend exits 0" 0 "$rc"
for b in web-service.blog-system.svc.cluster.local:80 grafana.monitoring.svc.cluster.local:3000 \
  argocd-server.argocd.svc.cluster.local:80 kiali.istio-system.svc.cluster.local:20001; do
  assert_contains "the pool of $b is the service by name" "$(cat "$named")" "backends = [\"$b\"]"
done
printf '\n[resolver]\nnameservers = ["%s"]\n' "$DNS_IP" >>"$named"
vipgate_cmd check --config "$named"
assert_eq "vipgate check accepts it with no address typed in" 0 "$CMD_RC"
assert_contains "check shows what web-service resolves to" "$CMD_OUT" "name web-service.blog-system.svc.cluster.local:80 (pool web-service-stable) -> ${BE_IP[0]}:80, ${BE_IP[1]}:80"
assert_eq "check warns of nothing" "" "$CMD_ERR"
start_vipgate "$named" || abort "vipgate runs the imported configuration by name"
expect_route "by name: blog.jiminhome.shop / -> web-service" blog.jiminhome.shop / 200 'web1|web2'
expect_route "by name: monitoring.jiminhome.shop / -> grafana:3000" monitoring.jiminhome.shop / 200 grafana
expect_route "by name: argocd.jiminhome.shop / -> argocd-server:80" argocd.jiminhome.shop / 200 argocd
expect_route "by name: kiali.jiminhome.shop / -> kiali:20001" kiali.jiminhome.shop / 200 kiali
stop_vipgate
"$VIPGATE_BIN" import-istio --vip "$VIP" --interface eth0 --cluster-domain corp.internal \
  "$fixtures"/*.yaml >"$VG_TMP/corp.toml" 2>/dev/null
assert_contains "--cluster-domain names the services in that domain" "$(cat "$VG_TMP/corp.toml")" '"kiali.istio-system.svc.corp.internal:20001"'

section "bad input"
printf 'kind: Gateway\nspec:\n  servers: [\n' >"$VG_TMP/bad.yaml"
rc=0
err=$("$VIPGATE_BIN" import-istio "$VG_TMP/bad.yaml" 2>&1 >/dev/null) || rc=$?
assert_eq "broken YAML: exit 2" 2 "$rc"
assert_match "broken YAML: FILE:LINE:COLUMN: error: reason" "$err" "${VG_TMP//./\\.}/bad\\.yaml:[0-9]+:[0-9]+: error: .+"

summary
