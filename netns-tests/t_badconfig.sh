#!/usr/bin/env bash
# Bad configs are refused, by `vipgate check` and `vipgate run` alike: exit 2 and
# `FILE:LINE:COLUMN: error: REASON` on stderr, pointing at the offending line; a refused `run`
# announces nothing. A good config passes `check`, which prints the routing table.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

lan_up 0

good=$VG_TMP/good.toml
cat >"$good" <<EOF
# vipgate: the seed's hosts
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
names = ["*.apps.example.test"]
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["192.0.2.21:8080", "192.0.2.22:8080"]
[pool.was]
backends = ["192.0.2.23:8080"]
[pool.grafana]
backends = ["192.0.2.24:8080"]
EOF

# NAME SED-SCRIPT: a copy of the good config changed by SED-SCRIPT; prints its path.
variant() {
  sed "$2" "$good" >"$VG_TMP/$1.toml"
  printf '%s\n' "$VG_TMP/$1.toml"
}
# FILE TEXT [NTH]: the line number of the NTH (1st) line containing TEXT.
line_of() { grep -nF -- "$2" "$1" | sed -n "${3:-1}s/:.*//p"; }

# FILE LINE TOKEN: the column where TOKEN starts on LINE of FILE.
column_of() { awk -v n="$2" -v t="$3" 'NR == n { print index($0, t) }' "$1"; }

# NAME FILE LINE COLUMN REASON-ERE: the last vipgate_cmd refused FILE the way the contract
# says. Sets MSG to the error line.
check_refused() {
  local name=$1 file=$2 line=$3 col=$4 reason=$5
  assert_eq "$name: exit code 2" 2 "$CMD_RC"
  MSG=$(grep -F -- "$file:" <<<"$CMD_ERR" | head -n 1 || true)
  assert_match "$name: stderr says $file:$line:$col: error: REASON" \
    "${MSG#"$file":}" "$line:$col: error: .*[^ ].*"
  assert_match "$name: the reason names the problem" "${MSG#*error: }" ".*($reason).*"
  [[ -n $MSG ]] || note "stderr was: $(vg_show "$CMD_ERR")"
}

section "the command line"
vipgate_cmd --help
assert_eq "vipgate --help exits 0" 0 "$CMD_RC"
assert_contains "--help mentions run" "$CMD_OUT" run
assert_contains "--help mentions check" "$CMD_OUT" check

section "a good config"
vipgate_cmd check --config "$good"
assert_eq "check accepts it: exit 0" 0 "$CMD_RC"
[[ $CMD_RC == 0 ]] || note "stderr: $(vg_show "$CMD_ERR")"
for want in blog.example.test monitoring.example.test '*.apps.example.test' /api web was grafana \
  192.0.2.21:8080 192.0.2.22:8080 192.0.2.23:8080 192.0.2.24:8080; do
  assert_contains "the routing table shows $want" "$CMD_OUT" "$want"
done
note "check printed:"
printf '%s\n' "$CMD_OUT" | sed 's/^/   | /'

# name | sed script | text on the line the error must point at | nth such line |
# the token on it the column must point at | reason ERE
cases=(
  "missing-pool|s/pool = \"was\"/pool = \"nope\"/|pool = \"nope\"|1|\"nope\"|nope"
  "duplicate-host|s/\"monitoring.example.test\"/\"blog.example.test\"/|names = [\"blog.example.test\"]|2|\"blog|blog\\.example\\.test"
  "bad-vip|s/^address = .*/address = \"192.0.2.300\"/|address = \"192.0.2.300\"|1|\"192|192\\.0\\.2\\.300|[Aa]ddress|IP"
  "bad-backend|s/\"192.0.2.23:8080\"/\"not-an-address\"/|\"not-an-address\"|1|\"not-an-address\"|not-an-address|[Bb]ackend|[Aa]ddress"
  "toml-syntax|s/pool = \"grafana\"/pool = grafana/|pool = grafana|1|grafana|.+"
  "unknown-key|s/^protocol = \"http\"/&\\ntimeout_ms = 5/|timeout_ms = 5|1|timeout_ms|timeout_ms"
)

section "bad configs refused by check"
declare -A check_msg
for c in "${cases[@]}"; do
  IFS='|' read -r name script text nth token reason <<<"$c"
  file=$(variant "$name" "$script")
  line=$(line_of "$file" "$text" "$nth")
  [[ -n $line ]] || abort "test setup: '$text' is in $name.toml"
  col=$(column_of "$file" "$line" "$token")
  vipgate_cmd check --config "$file"
  check_refused "check $name" "$file" "$line" "$col" "$reason"
  check_msg[$name]=$MSG
  note "$MSG"
done
missing=$VG_TMP/does-not-exist.toml
vipgate_cmd check --config "$missing"
assert_eq "check of a missing file: exit code 2" 2 "$CMD_RC"
assert_contains "check of a missing file: stderr names the file" "$CMD_ERR" "$missing"

section "bad configs refused by run, which announces nothing"
capture_start "$NS_CLIENT" arp || abort "tcpdump listens in the client namespace"
for c in "${cases[@]}"; do
  IFS='|' read -r name _ text nth token reason <<<"$c"
  file=$VG_TMP/$name.toml
  line=$(line_of "$file" "$text" "$nth")
  VG_CMD_TIMEOUT=10 vipgate_cmd run --config "$file"
  check_refused "run $name" "$file" "$line" "$(column_of "$file" "$line" "$token")" "$reason"
  assert_eq "run $name: the same message as check" "${check_msg[$name]}" "$MSG"
  assert_eq "run $name: no local route left for the VIP" "" "$(local_route)"
done
assert_eq "no ARP reply for the VIP after the refused runs" "" "$(arp_mac "$VIP")"
capture_stop
assert_eq "no ARP with the VIP as sender (no GARP) seen by the client" "" "$(arp_from_vip "$CAP_FILE")"
assert_eq "no local route for the VIP in the lb namespace" "" "$(local_route)"

summary
