#!/usr/bin/env bash
# netns-tests/run: alone (its timings or load figures need an otherwise idle machine)
# Balancing through the VIP with a keep-alive python client: a 90/10 canary split over 10,000
# requests, least_request steering away from a slow backend (against round robin on the same
# backends as the control), and Maglev on a header (a user keeps its backend; users spread).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

# be1 be2: stable   be3: canary   be4 (slow, 150 ms) + be1 be2: least_request / round robin
# be1 be2 be3: maglev
lan_up 4
backend_restart 3 --delay-ms 150 || abort "slow backend be4 restarts with --delay-ms"
cfg=$VG_TMP/balance.toml
cat >"$cfg" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"

[[host]]
names = ["shop.example.test"]
[[host.route]]
prefix = "/"
split = [{ pool = "stable", weight = 90 }, { pool = "canary", weight = 10 }]

[[host]]
names = ["lr.example.test"]
[[host.route]]
prefix = "/"
pool = "lr"

[[host]]
names = ["rr.example.test"]
[[host.route]]
prefix = "/"
pool = "rr"

[[host]]
names = ["maglev.example.test"]
[[host.route]]
prefix = "/"
pool = "maglev"

[pool.stable]
backends = ["192.0.2.21:8080", "192.0.2.22:8080"]
[pool.canary]
backends = ["192.0.2.23:8080"]
[pool.lr]
balance = "least_request"
backends = ["192.0.2.24:8080", "192.0.2.21:8080", "192.0.2.22:8080"]
[pool.rr]
backends = ["192.0.2.24:8080", "192.0.2.21:8080", "192.0.2.22:8080"]
[pool.maglev]
balance = "maglev"
hash_key = "header:X-User"
backends = ["192.0.2.21:8080", "192.0.2.22:8080", "192.0.2.23:8080"]
EOF
start_vipgate "$cfg" || abort "vipgate starts and logs ready"

section "canary split 90/10 over 10,000 keep-alive requests"
out=$(client_tool load --target "$VIP:80" --host shop.example.test --path /cart \
  --requests 10000 --conns 4 --seconds 60)
note "split: $(jget "$out" 'd["sent"]') sent in $(jget "$out" 'd["seconds"]') s over 4 connections; statuses $(jget "$out" 'd["status"]'); backends $(jget "$out" 'd["backends"]')"
assert_eq "all 10,000 requests answered 200" 10000 "$(jget "$out" 'd["ok"]')"
stable=$(jget "$out" 'd["backends"].get("be1", 0) + d["backends"].get("be2", 0)')
canary=$(jget "$out" 'd["backends"].get("be3", 0)')
# ±3 % of 10,000 around 9,000 and 1,000.
assert_num "stable (be1+be2) got 90 % ± 3 % (8700..9300)" "$stable" -ge 8700
assert_num "stable got at most 9300" "$stable" -le 9300
assert_num "canary (be3) got 10 % ± 3 % (700..1300)" "$canary" -ge 700
assert_num "canary got at most 1300" "$canary" -le 1300
assert_eq "every request went to stable or canary" 10000 $((stable + canary))

section "least_request avoids a slow backend (round robin as the control)"
# be4 answers after 150 ms, be1 and be2 at once; 8 connections keep requests in flight. Two
# draws (with replacement) pick the slow one only when both land on it: about 1 in 9.
lr=$(client_tool load --target "$VIP:80" --host lr.example.test --requests 400 --conns 8 --seconds 8)
rr=$(client_tool load --target "$VIP:80" --host rr.example.test --requests 200 --conns 8 --seconds 8)
note "least_request: $(jget "$lr" 'd["backends"]') in $(jget "$lr" 'd["seconds"]') s; round robin: $(jget "$rr" 'd["backends"]') in $(jget "$rr" 'd["seconds"]') s"
lr_ok=$(jget "$lr" 'd["ok"]')
lr_slow_pct=$(jget "$lr" 'd["backends"].get("be4", 0) * 100 // max(d["ok"], 1)')
rr_slow_pct=$(jget "$rr" 'd["backends"].get("be4", 0) * 100 // max(d["ok"], 1)')
assert_eq "least_request: no failed request" 0 "$(jget "$lr" 'd["sent"] - d["ok"]')"
assert_num "least_request: some requests answered" "$lr_ok" -ge 100
assert_num "least_request: the slow backend gets <= 20 % (got $lr_slow_pct %)" "$lr_slow_pct" -le 20
assert_num "least_request: the slow backend still gets some (a random draw)" "$(jget "$lr" 'd["backends"].get("be4", 0)')" -ge 1
assert_num "round robin control: the slow backend gets >= 30 % (got $rr_slow_pct %)" "$rr_slow_pct" -ge 30

section "maglev on X-User: a user keeps its backend, users spread"
mg=$(client_tool load --target "$VIP:80" --host maglev.example.test --requests 600 --conns 3 --users 30 --seconds 20)
assert_eq "maglev: all 600 answered 200" 600 "$(jget "$mg" 'd["ok"]')"
assert_eq "maglev: each of the 30 users saw exactly one backend" 30 \
  "$(jget "$mg" 'sum(1 for u in d["users"].values() if len(u) == 1)')"
used=$(jget "$mg" 'len(d["backends"])')
note "maglev: per backend $(jget "$mg" 'd["backends"]'); users per backend $(jget "$mg" '{b: sum(1 for u in d["users"].values() if b in u) for b in d["backends"]}')"
assert_eq "maglev: the 30 users spread over all 3 backends" 3 "$used"
# The same users again, on new connections: the mapping is a function of the key.
mg2=$(client_tool load --target "$VIP:80" --host maglev.example.test --requests 30 --conns 1 --users 30 --seconds 10)
assert_eq "maglev: a second run maps every user to the same backend" 30 \
  "$("$VG_PYTHON" -c 'import json,sys
a = json.loads(sys.argv[1])["users"]; b = json.loads(sys.argv[2])["users"]
print(sum(1 for u in a if a[u].keys() == b.get(u, {}).keys()))' "$mg" "$mg2" 2>/dev/null || echo ERR)"
# Without the header every request hashes as the empty key: one backend.
nk=$(client_tool load --target "$VIP:80" --host maglev.example.test --requests 30 --conns 1 --seconds 10)
assert_eq "maglev: requests without X-User all land on one backend" 1 "$(jget "$nk" 'len(d["backends"])')"

stop_vipgate
summary
