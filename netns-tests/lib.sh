# shellcheck shell=bash
# shellcheck disable=SC2034 # globals set here (HTTP_RC, CMD_OUT, …) are read by the scripts sourcing it
# Shared helpers for vipgate's network-namespace tests and the demo. Source it; don't run it.
#
# `lan_up N [NAME...]` builds a throwaway LAN out of namespaces this run creates; the root
# namespace only runs the `ip` commands and never gets an address or a link of ours:
#
#   NS_CLIENT  eth0 192.0.2.10  ─┐
#   NS_LB      eth0 192.0.2.2   ─┼─ br0 (in NS_BR)
#   backend i  eth0 192.0.2.2i  ─┘   backend.py on :8080, named be1, be2… (or NAME…)
#
# The VIP 192.0.2.200 is on no interface: vipgate in NS_LB owns it. Every namespace and every
# process started here is removed on exit, also on failure or interrupt (trap below).
#
# Check helpers count into one result; `summary` prints the final `N passed, N failed` line.

set -Eeuo pipefail

VG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VIPGATE_BIN=${VIPGATE_BIN:-target/debug/vipgate}
if [[ $VIPGATE_BIN != /* ]]; then
  if [[ -e $PWD/$VIPGATE_BIN ]]; then VIPGATE_BIN=$PWD/$VIPGATE_BIN; else VIPGATE_BIN=$VG_ROOT/$VIPGATE_BIN; fi
fi
VG_PYTHON=${VG_PYTHON:-python3}

VIP=192.0.2.200
CLIENT_IP=192.0.2.10
LB_IP=192.0.2.2
LB2_IP=192.0.2.3 # the second node of HA tests (lb2_up)
BACKEND_PORT=8080
# IPv6 on the same LAN (lan_v6_up), 2001:db8::/64 only.
VIP6=2001:db8::200
CLIENT_IP6=2001:db8::10
LB_IP6=2001:db8::2
LB2_IP6=2001:db8::3

# Unique per run, so parallel or leftover runs never collide; netns-tests/run sets it to know
# what to sweep if a test dies without cleaning up.
VG_PREFIX=${VG_NS_PREFIX:-vg$$-}
NS_BR=${VG_PREFIX}br
NS_CLIENT=${VG_PREFIX}client
NS_LB=${VG_PREFIX}lb
NS_LB2=${VG_PREFIX}lb2
BE_NAME=() BE_IP=() BE_NS=()
BE_NAME=() BE_IP=() BE_NS=() BE_PID=()

VG_PIDS=()       # every background process started here, killed by PID on exit
VG_NAMESPACES=() # every namespace created here, deleted on exit
VG_LOGS=()       # vipgate logs, shown when a check failed
VG_PASSED=0
VG_FAILED=0
VG_SUMMARY_DONE=
VG_AUTO_SUMMARY=${VG_AUTO_SUMMARY:-1} # 0 for scripts that are not tests (the demo)
VG_SEQ=0
VG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/vipgate-netns.XXXXXX")

# --- results ----------------------------------------------------------------------------------

section() { printf '\n== %s ==\n' "$*"; }
note() { printf '   %s\n' "$*"; }
pass() {
  VG_PASSED=$((VG_PASSED + 1))
  printf 'ok   %s\n' "$*"
}
fail() {
  VG_FAILED=$((VG_FAILED + 1))
  printf 'FAIL %s\n' "$*"
}
# Values in failure messages: one line, bounded.
vg_show() { printf '%s' "$1" | head -c 300 | tr '\n' '|'; }

assert_eq() { # DESC EXPECTED ACTUAL
  if [[ $3 == "$2" ]]; then pass "$1"; else fail "$1: expected '$(vg_show "$2")', got '$(vg_show "$3")'"; fi
}
assert_contains() { # DESC HAYSTACK NEEDLE
  if [[ $2 == *"$3"* ]]; then pass "$1"; else fail "$1: expected to contain '$(vg_show "$3")', got '$(vg_show "$2")'"; fi
}
assert_not_contains() { # DESC HAYSTACK NEEDLE
  if [[ $2 != *"$3"* ]]; then pass "$1"; else fail "$1: expected not to contain '$(vg_show "$3")', got '$(vg_show "$2")'"; fi
}
assert_match() { # DESC STRING ERE (whole string)
  if [[ $2 =~ ^($3)$ ]]; then pass "$1"; else fail "$1: expected /$3/, got '$(vg_show "$2")'"; fi
}
assert_num() { # DESC VALUE OP LIMIT   (OP: -lt -le -eq -ge -gt; integers)
  if [[ $2 =~ ^-?[0-9]+$ ]] && test "$2" "$3" "$4"; then pass "$1"; else fail "$1: expected $3 $4, got '$(vg_show "$2")'"; fi
}

# Prints the final line; returns non-zero if any check failed.
summary() {
  VG_SUMMARY_DONE=1
  if ((VG_FAILED > 0)); then vg_show_logs; fi
  printf '%d passed, %d failed\n' "$VG_PASSED" "$VG_FAILED"
  ((VG_FAILED == 0))
}
# A check the rest of the test depends on failed: count it, summarise, exit (cleanup runs).
abort() {
  fail "$*"
  summary || true
  exit 1
}

vg_show_logs() {
  local log
  for log in "${VG_LOGS[@]}"; do
    [[ -s $log ]] || continue
    printf -- '--- last lines of %s\n' "${log##*/}"
    tail -n 25 "$log" | sed 's/^/   | /'
  done
}

# --- processes and cleanup --------------------------------------------------------------------

vg_alive() { # PID: running (a zombie is not)
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z ]]
}
vg_track() { VG_PIDS+=("$1"); }
vg_forget() { # PID
  local kept=() p
  for p in "${VG_PIDS[@]}"; do [[ $p == "$1" ]] || kept+=("$p"); done
  VG_PIDS=("${kept[@]}")
}
vg_wait_gone() { # TENTHS PID...: waits until all are gone, at most TENTHS/10 s
  local tenths=$1 i p alive
  shift
  for ((i = 0; i < tenths; i++)); do
    alive=0
    for p in "$@"; do if vg_alive "$p"; then alive=1; fi; done
    ((alive)) || return 0
    sleep 0.1
  done
  return 1
}

vg_cleanup() {
  set +e
  local p ns i
  if ((${#VG_PIDS[@]})); then
    kill -TERM "${VG_PIDS[@]}" 2>/dev/null
    vg_wait_gone 30 "${VG_PIDS[@]}"
    kill -KILL "${VG_PIDS[@]}" 2>/dev/null
    for p in "${VG_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    VG_PIDS=()
  fi
  for ((i = ${#VG_NAMESPACES[@]} - 1; i >= 0; i--)); do
    ns=${VG_NAMESPACES[i]}
    # Anything still running in a namespace this run created was started by this run.
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
    # `ip netns exec` files of this namespace (resolv.conf, hosts), written by ns_etc.
    [[ -d /etc/netns/$ns ]] && rm -rf "/etc/netns/${ns:?}"
  done
  VG_NAMESPACES=()
  [[ -n ${VG_TMP:-} ]] && rm -rf "$VG_TMP"
}

vg_on_exit() {
  local rc=$?
  set +e
  trap - ERR
  if [[ -z $VG_SUMMARY_DONE && $VG_AUTO_SUMMARY == 1 ]]; then
    fail "test stopped early (exit $rc)${VG_ERR_AT:+ after: $VG_ERR_AT}"
    summary
  fi
  vg_cleanup
  if ((rc == 0 && VG_FAILED > 0 && VG_AUTO_SUMMARY == 1)); then rc=1; fi
  exit "$rc"
}
vg_on_err() { # LINE COMMAND
  [[ -n $VG_SUMMARY_DONE ]] && return 0
  VG_ERR_AT="line $1: $2"
  printf 'error: command failed at %s\n' "$VG_ERR_AT" >&2
}
trap vg_on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'vg_on_err "$LINENO" "$BASH_COMMAND"' ERR

# --- the LAN ----------------------------------------------------------------------------------

in_ns() { # NS CMD...
  local ns=$1
  shift
  ip netns exec "$ns" "$@"
}
in_client() { ip netns exec "$NS_CLIENT" "$@"; }
in_lb() { ip netns exec "$NS_LB" "$@"; }

vg_sysctl() { # NS KEY VALUE   (KEY like net/ipv4/conf/eth0/arp_accept)
  ip netns exec "$1" sh -c "echo $3 > /proc/sys/$2"
}

vg_ns_add() { # NAME
  ip netns add "$1"
  VG_NAMESPACES+=("$1")
  ip -n "$1" link set lo up
}

# NS PORT IP MAC: a namespace whose eth0 (IP/24, MAC) is plugged into br0 as port v-PORT.
vg_attach() {
  local ns=$1 port=$2 ip=$3 mac=$4
  vg_ns_add "$ns"
  ip -n "$NS_BR" link add "v-$port" type veth peer name eth0 netns "$ns"
  ip -n "$NS_BR" link set "v-$port" master br0 up
  ip -n "$ns" link set eth0 address "$mac"
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
}

# N [NAME...]: bridge, client, lb and N backends (backend i: 192.0.2.(20+i), named NAME i or bei).
lan_up() {
  local n=${1:-0} i name ip
  shift || true
  vg_ns_add "$NS_BR"
  ip -n "$NS_BR" link add br0 type bridge forward_delay 0
  ip -n "$NS_BR" link set br0 up
  vg_attach "$NS_CLIENT" client "$CLIENT_IP" 02:00:c0:00:02:0a
  # Let the client's kernel learn the VIP from a gratuitous ARP alone (arp_accept=1), so its
  # neighbour table shows what vipgate announced before any traffic.
  vg_sysctl "$NS_CLIENT" net/ipv4/conf/eth0/arp_accept 1
  vg_attach "$NS_LB" lb "$LB_IP" 02:00:c0:00:02:02
  for ((i = 1; i <= n; i++)); do
    name=${1:-be$i}
    shift || true
    ip=192.0.2.$((20 + i))
    BE_NAME+=("$name")
    BE_IP+=("$ip")
    BE_NS+=("${VG_PREFIX}be$i")
    vg_attach "${VG_PREFIX}be$i" "be$i" "$ip" "$(printf '02:00:c0:00:02:%02x' $((20 + i)))"
    backend_spawn $((i - 1))
  done
  for ((i = 0; i < n; i++)); do
    vg_wait_http "${BE_IP[i]}:$BACKEND_PORT" ||
      { cat "$VG_TMP/backend-${BE_NAME[i]}.log"; abort "backend ${BE_NAME[i]} answers on ${BE_IP[i]}:$BACKEND_PORT"; }
  done
}

# A second lb node for HA tests: NS_LB2, eth0 192.0.2.3, bridge port v-lb2 (NS_LB's is v-lb).
lb2_up() {
  vg_attach "$NS_LB2" lb2 "$LB2_IP" 02:00:c0:00:02:03
}

# IPv6 on the LAN built by lan_up (and lb2_up if called first): CLIENT_IP6, LB_IP6, LB2_IP6 as
# /64 on each eth0 (no DAD: the test owns the LAN). Waits ≤ 5 s until every link-local
# address has finished its DAD, since VRRP over IPv6 sends from it.
lan_v6_up() {
  local ns ip i
  for ns in "$NS_CLIENT" "$NS_LB" "$NS_LB2"; do
    case $ns in
      "$NS_CLIENT") ip=$CLIENT_IP6 ;;
      "$NS_LB") ip=$LB_IP6 ;;
      *) ip=$LB2_IP6 ;;
    esac
    [[ -e /run/netns/$ns ]] || continue
    ip -n "$ns" -6 addr add "$ip/64" dev eth0 nodad
  done
  for ((i = 0; i < 50; i++)); do
    if ! for ns in "$NS_CLIENT" "$NS_LB" "$NS_LB2"; do
      ip -n "$ns" -6 addr show dev eth0 tentative 2>/dev/null
    done | grep -q inet6; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# IP: the MAC(s) answering Neighbor Solicitations for IP on the client's LAN (lower case,
# sorted, space-separated), nothing if none. ndisc6 -m waits for every answer.
ndp_mac() {
  local out
  out=$(in_client ndisc6 -m -n -r 2 -w 700 "$1" eth0 2>&1) || true
  printf '%s\n' "$out" | sed -n 's/.*[Tt]arget link-layer address: \([0-9A-Fa-f:]*\).*/\1/p' |
    tr 'A-F' 'a-f' | sort -u | paste -sd' ' -
}

# NS: that namespace's `local VIP6 dev lo` route line(s), nothing if none.
local_route6() {
  ip -n "$1" -6 route show table local | grep -E "^local $VIP6 dev lo( |$)" || true
}

# The client's IPv6 neighbour entry for VIP6, nothing if none.
client_neigh6() { ip -n "$NS_CLIENT" -6 neigh show "$VIP6" dev eth0; }

# NS up|down: the bridge-side end of a node's link (port v-lb, v-lb2, v-client...), as if its
# cable were pulled: the node itself sees its eth0 lose carrier.
port_link() { ip -n "$NS_BR" link set "v-$1" "$2"; }
# I [backend.py args...]: start backend I (0-based) on its address; sets BE_PID[I].
backend_spawn() {
  local i=$1
  shift
  ip netns exec "${BE_NS[i]}" "$VG_PYTHON" "$VG_ROOT/netns-tests/backend.py" \
    --name "${BE_NAME[i]}" --bind "${BE_IP[i]}" --port "$BACKEND_PORT" "$@" \
    >>"$VG_TMP/backend-${BE_NAME[i]}.log" 2>&1 &
  BE_PID[i]=$!
  vg_track "$!"
}
# I: SIGKILL backend I by its PID (a crash: the kernel resets its connections) and reap it.
backend_kill() {
  kill -KILL "${BE_PID[$1]}" 2>/dev/null || true
  wait "${BE_PID[$1]}" 2>/dev/null || true
  vg_forget "${BE_PID[$1]}"
}
# I [backend.py args...]: (re)start backend I and wait until it answers (≤ 10 s).
backend_restart() {
  local i=$1
  backend_kill "$i"
  backend_spawn "$@"
  vg_wait_http "${BE_IP[i]}:$BACKEND_PORT"
}

# TCP echo servers (tools.py tcp-echo) in backend namespaces; ECHO_PID lists their PIDs in start order.
ECHO_PID=()
# HOST SECONDS_BEFORE_KILL INDEX REQUESTS CONNS SECONDS: keep-alive GETs of /item to HOST
# through the VIP (tools.py load, bounded by REQUESTS and SECONDS); backend INDEX is SIGKILLed
# after SECONDS_BEFORE_KILL. Sets LOAD (the JSON result) and notes what it saw.
load_with_kill() {
  local out=$VG_TMP/load.$VG_SEQ.json pid
  VG_SEQ=$((VG_SEQ + 1))
  client_tool load --target "$VIP:80" --host "$1" --path /item --requests "$4" --conns "$5" \
    --seconds "$6" >"$out" &
  pid=$!
  vg_track "$pid"
  sleep "$2"
  backend_kill "$3"
  wait "$pid" || true
  vg_forget "$pid"
  LOAD=$(cat "$out")
  note "$1: $(jget "$LOAD" 'd["sent"]') GETs in $(jget "$LOAD" 'd["seconds"]') s, statuses $(jget "$LOAD" 'd["status"]'), errors $(jget "$LOAD" 'd["error_kinds"]'), backends $(jget "$LOAD" 'd["backends"]'), slowest $(jget "$LOAD" 'd["max_latency_ms"]') ms"
}

# I DIR PORT HTTP_BODY: a real nginx (one process, no daemon) in backend I's namespace, its
# files under DIR, with HTTP_BODY (access_log, server blocks, …) inside its `http { }`; waits
# (≤ 5 s) until it listens on PORT. Sets NGINX_PID.
nginx_start() {
  local i=$1 dir=$2 port=$3 body=$4 k
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log info;
events { worker_connections 128; }
http {
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
$body
}
EOF
  ip netns exec "${BE_NS[i]}" nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" \
    >"$dir/stdout.log" 2>&1 &
  NGINX_PID=$!
  vg_track "$NGINX_PID"
  for ((k = 0; k < 50; k++)); do
    ip netns exec "${BE_NS[i]}" ss -Hltn "sport = :$port" | grep -q . && return 0
    sleep 0.1
  done
  cat "$dir/error.log" "$dir/stdout.log" 2>/dev/null
  return 1
}

echo_start() { # I PORT [--proxy v2]: tools.py tcp-echo in backend I's namespace
  local i=$1 port=$2 log=$VG_TMP/echo-be$(($1 + 1))-$2.log k
  shift 2
  ip netns exec "${BE_NS[i]}" "$VG_PYTHON" "$VG_ROOT/netns-tests/tools.py" tcp-echo \
    --bind "${BE_IP[i]}" --port "$port" "$@" >"$log" 2>&1 &
  ECHO_PID+=("$!")
  vg_track "$!"
  for ((k = 0; k < 50; k++)); do
    grep -q listening "$log" && return 0
    sleep 0.1
  done
  cat "$log"
  return 1
}
echo_conns() { grep -c '^conn from' "$VG_TMP/echo-$1.log" || true; } # be1-7000: connections seen


# IP: one more address on the client's eth0 (for access lists; curl --interface IP).
client_add_ip() { ip -n "$NS_CLIENT" addr add "$1/24" dev eth0; }

# netns-tests/tools.py SUBCOMMAND ARGS... in the client namespace, at most 60 s.
client_tool() { in_client timeout 60 "$VG_PYTHON" "$VG_ROOT/netns-tests/tools.py" "$@"; }
# JSON PYTHON-EXPR: evaluates EXPR with the parsed JSON as `d` (prints `ERR` if it cannot).
jget() { "$VG_PYTHON" -c 'import json,sys
try:
    d = json.loads(sys.argv[1]); print(eval(sys.argv[2]))
except Exception:
    print("ERR")' "$1" "$2"; }

# ERE [TENTHS]: waits (default 10 s) until the current vipgate log ($VG_LOG) has a line
# matching ERE.
wait_vg_log() { wait_log "$VG_LOG" "$1" "${2:-100}"; }

vg_wait_http() { # IP:PORT: until it answers from the client, at most 10 s
  local i
  for ((i = 0; i < 50; i++)); do
    if in_client curl -s -o /dev/null --max-time 1 "http://$1/"; then return 0; fi
    sleep 0.2
  done
  return 1
}

ns_mac() { ip -n "$1" -o link show eth0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; } # NS: its eth0 MAC
lb_mac() { ns_mac "$NS_LB"; }

# IP: the MAC(s) answering ARP for IP on the client's LAN (lower case), nothing if none.
arp_mac() {
  local out
  out=$(in_client arping -c 2 -w 3 -I eth0 "$1" 2>&1) || true
  printf '%s\n' "$out" | sed -n 's/.*reply from [0-9.]* \[\([0-9A-Fa-f:]*\)\].*/\1/p' |
    tr 'A-F' 'a-f' | sort -u | paste -sd' ' -
}

one_owner() { # DESC MAC: exactly MAC answers ARP for the VIP
  assert_eq "$1: exactly one node answers ARP for the VIP" "$2" "$(arp_mac "$VIP")"
}

# Two-node tests: start node a in $NS_LB with CONFIG (default: the test's $cfg_a).
start_a() { # [CONFIG]: sets PID_A, LOG_A
  # shellcheck disable=SC2154 # cfg_a is the calling test's
  start_vipgate_in "$NS_LB" "${1:-$cfg_a}" || abort "node a starts"
  PID_A=$VG_PID LOG_A=$VG_LOG
}

# /metrics of the vipgate in NS (its admin listener, 127.0.0.1:9901 by default).
metrics_in() { in_ns "$1" curl -s --max-time 5 "http://${2:-127.0.0.1:9901}/metrics" || true; } # NS [ADMIN]
metric_of() { # BODY SERIES: the value of SERIES (NAME{LABELS}, exactly) in a /metrics BODY; 0 if absent
  awk -v k="$2" '$1 == k { v = $2 } END { print v + 0 }' <<<"$1"
}
metric_prefix_of() { # BODY PREFIX: the value of the first series in BODY whose line starts with PREFIX
  awk -v p="$2" 'index($0, p) == 1 { print $2; exit }' <<<"$1"
}

# The lb's `local VIP dev lo` route line(s), nothing if none.
local_route() { ip -n "$NS_LB" route show table local | grep -E "^local ${VIP//./\\.} dev lo( |$)" || true; }

# The client's neighbour entry for the VIP, nothing if none.
client_neigh() { ip -n "$NS_CLIENT" neigh show "$VIP" dev eth0; }

# --- vipgate ----------------------------------------------------------------------------------

# --- a DNS server the test runs and changes (dnsmasq) -----------------------------------------

# dnsmasq in its own namespace NS_DNS on the LAN, at DNS_IP (port 53, UDP and TCP). It answers
# from DNS_HOSTS (which dns_set rewrites) with TTL DNS_TTL, and authoritatively (NXDOMAIN)
# for other names under the domains given to dns_up; it forwards nothing. Every query is
# logged to DNS_LOG (dns_queries counts them). DNS_EXTRA: more dnsmasq.conf lines (srv-host=…).
DNS_IP=192.0.2.53
NS_DNS=${VG_PREFIX}dns
DNS_TTL=${DNS_TTL:-0}
DNS_EXTRA=${DNS_EXTRA:-}
DNS_PID=
DNS_DOMAINS=()
# DOMAIN...: start it (≤ 5 s until it logs that it started); the hosts file starts empty.
dns_up() {
  local d
  DNS_DIR=$VG_TMP/dns
  mkdir -p "$DNS_DIR"
  DNS_HOSTS=$DNS_DIR/hosts DNS_SERVERS=$DNS_DIR/servers DNS_LOG=$DNS_DIR/log
  : >"$DNS_HOSTS"
  : >"$DNS_LOG"
  DNS_DOMAINS=("$@")
  # `server=/D/` with no address is `local=/D/`, the only spelling a servers-file takes.
  for d in "$@"; do printf 'server=/%s/\n' "$d"; done >"$DNS_SERVERS"
  cat >"$DNS_DIR/dnsmasq.conf" <<CONF
listen-address=$DNS_IP
bind-interfaces
port=53
user=root
no-resolv
no-hosts
no-poll
addn-hosts=$DNS_HOSTS
servers-file=$DNS_SERVERS
local-ttl=$DNS_TTL
cache-size=0
edns-packet-max=4096
log-queries
log-facility=$DNS_LOG
pid-file=$DNS_DIR/pid
$DNS_EXTRA
CONF
  [[ -e /run/netns/$NS_DNS ]] || vg_attach "$NS_DNS" dns "$DNS_IP" 02:00:c0:00:02:35
  ip netns exec "$NS_DNS" dnsmasq -k --conf-file="$DNS_DIR/dnsmasq.conf" \
    >>"$DNS_DIR/out" 2>&1 &
  DNS_PID=$!
  vg_track "$DNS_PID"
  wait_log "$DNS_LOG" 'started, version' 50
}
# SIGHUP, then wait (≤ 5 s) until it has read the hosts file again.
dns_reread() {
  local before i
  before=$(grep -c "read $DNS_HOSTS" "$DNS_LOG" || true)
  kill -HUP "$DNS_PID"
  for ((i = 0; i < 50; i++)); do
    (($(grep -c "read $DNS_HOSTS" "$DNS_LOG" || true) > before)) && return 0
    sleep 0.1
  done
  return 1
}
# NAME [IP...]: NAME answers with exactly these addresses from now on (none: NXDOMAIN, as the
# domain is local, or SERVFAIL after `dns_mode servfail`).
dns_set() {
  local name=$1 ip
  shift
  awk -v n="$name" '$2 != n' "$DNS_HOSTS" >"$DNS_HOSTS.new"
  for ip in "$@"; do printf '%s %s\n' "$ip" "$name" >>"$DNS_HOSTS.new"; done
  mv "$DNS_HOSTS.new" "$DNS_HOSTS"
  dns_reread
}
# servfail|nxdomain: names not in the hosts file get SERVFAIL (forwarded to tools.py
# dns-servfail, started here once, in NS_DNS on 127.0.0.1:5353) or NXDOMAIN (the domains are
# local), from now on.
DNS_SERVFAIL_PID=
dns_mode() {
  local d
  if [[ $1 == servfail && -z $DNS_SERVFAIL_PID ]]; then
    ip netns exec "$NS_DNS" timeout 120 "$VG_PYTHON" "$VG_ROOT/netns-tests/tools.py" dns-servfail \
      --bind 127.0.0.1 --port 5353 >"$DNS_DIR/servfail.log" 2>&1 &
    DNS_SERVFAIL_PID=$!
    vg_track "$DNS_SERVFAIL_PID"
    wait_log "$DNS_DIR/servfail.log" listening 50
  fi
  for d in "${DNS_DOMAINS[@]}"; do
    if [[ $1 == servfail ]]; then printf 'server=/%s/127.0.0.1#5353\n' "$d"; else printf 'server=/%s/\n' "$d"; fi
  done >"$DNS_SERVERS"
  dns_reread
}
# NS FILE TEXT: FILE (resolv.conf, hosts) as processes in NS see it: `ip netns exec` mounts
# /etc/netns/NS/FILE over /etc/FILE. Removed with the namespace.
ns_etc() {
  mkdir -p "/etc/netns/$1"
  printf '%s\n' "$3" >"/etc/netns/$1/$2"
}
# TYPE NAME: how many queries of TYPE (A, AAAA, SRV) for NAME it has seen.
dns_queries() { grep -cF "query[$1] $2 from" "$DNS_LOG" || true; }

# --- an ACME server the test runs (pebble) ----------------------------------------------------

# pebble (Debian's, the ACME test server) in its own namespace NS_ACME on the LAN, at ACME_IP,
# named acme.test (give it to vipgate with `ns_etc NS hosts`), directory ACME_DIR. Its HTTPS
# certificate is made here (testcert, CA in ACME_CA); it resolves the names it validates with
# the test's dnsmasq (dns_up first) and checks them on ports 80 (HTTP-01) and 443
# (TLS-ALPN-01). PEBBLE_VA_NOSLEEP=1; it rejects ACME_NONCEREJECT percent of good nonces
# (default 5, pebble's own). ACME_VALIDITY: the lifetime of the certificates it issues, in
# seconds. Logs to ACME_LOG (appended across starts).
ACME_IP=192.0.2.30
ACME_NAME=acme.test
NS_ACME=${VG_PREFIX}acme
ACME_DIR=https://$ACME_NAME:14000/dir
ACME_VALIDITY=${ACME_VALIDITY:-600}
ACME_NONCEREJECT=${ACME_NONCEREJECT:-5}
ACME_PID=
# Start it, ≤ 10 s until the directory answers.
pebble_up() {
  local d=$VG_TMP/pebble i
  mkdir -p "$d"
  ACME_LOG=$d/log ACME_CA=$d/ca.pem
  if [[ ! -e $d/ca.pem ]]; then
    testcert ca "$d/ca"
    testcert leaf "$d/ca" "$d/server" "$ACME_NAME"
  fi
  cat >"$d/config.json" <<JSON
{"pebble": {"listenAddress": "$ACME_IP:14000", "managementListenAddress": "$ACME_IP:15000",
  "certificate": "$d/server.pem", "privateKey": "$d/server.key", "httpPort": 80, "tlsPort": 443,
  "ocspResponderURL": "", "externalAccountBindingRequired": false,
  "certificateValidityPeriod": $ACME_VALIDITY}}
JSON
  [[ -e /run/netns/$NS_ACME ]] || vg_attach "$NS_ACME" acme "$ACME_IP" 02:00:c0:00:02:1e
  ns_etc "$NS_ACME" hosts "$ACME_IP $ACME_NAME"
  env PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT="$ACME_NONCEREJECT" ip netns exec "$NS_ACME" pebble -config "$d/config.json" \
    -dnsserver "$DNS_IP:53" >>"$ACME_LOG" 2>&1 &
  ACME_PID=$!
  vg_track "$ACME_PID"
  for ((i = 0; i < 100; i++)); do
    in_ns "$NS_ACME" curl -s --max-time 2 --cacert "$ACME_CA" -o /dev/null "$ACME_DIR" && return 0
    sleep 0.1
  done
  return 1
}
# Stop it (SIGTERM, by its PID) and reap it. Its CA (the roots it issues under) dies with it.
pebble_down() {
  [[ -n $ACME_PID ]] || return 0
  kill -TERM "$ACME_PID" 2>/dev/null || true
  vg_wait_gone 50 "$ACME_PID" || kill -KILL "$ACME_PID" 2>/dev/null || true
  wait "$ACME_PID" 2>/dev/null || true
  vg_forget "$ACME_PID"
  ACME_PID=
}
# FILE: the root the running pebble issues under (from its management port) into FILE.
pebble_root() {
  in_ns "$NS_ACME" curl -sS --max-time 5 --cacert "$ACME_CA" -o "$1" "https://$ACME_NAME:15000/roots/0"
}

VG_RUN_ENV=() # extra NAME=VALUE for the next start_vipgate (NOTIFY_SOCKET=…, WATCHDOG_USEC=…)

# CONFIG: `vipgate run` in NS_LB in the background; waits (≤ 10 s) for `ready` in its log.
# Sets VG_PID and VG_LOG. Returns non-zero, showing the log, if it exits or never gets ready.
start_vipgate() { start_vipgate_in "$NS_LB" "$1"; }

# NS CONFIG: start_vipgate in another namespace (NS_LB2 for HA tests).
start_vipgate_in() {
  spawn_vipgate_in "$1" "$2"
  wait_vipgate_ready "$VG_PID" "$VG_LOG"
}

# NS CONFIG: `vipgate run` in NS in the background, without waiting for it (nodes started
# together); sets VG_PID and VG_LOG. Follow with wait_vipgate_ready.
spawn_vipgate_in() {
  local ns=$1 cfg=$2
  VG_SEQ=$((VG_SEQ + 1))
  VG_LOG=$VG_TMP/vipgate.$VG_SEQ.log
  VG_LOGS+=("$VG_LOG")
  : >"$VG_LOG"
  env NO_COLOR=1 "${VG_RUN_ENV[@]}" ip netns exec "$ns" "$VIPGATE_BIN" run --config "$cfg" >"$VG_LOG" 2>&1 &
  VG_PID=$!
  vg_track "$VG_PID"
}

# PID LOG: waits (≤ 10 s) for `ready` in LOG. Returns non-zero, showing the log, if the
# process exits or never gets ready.
wait_vipgate_ready() {
  local pid=$1 log=$2 i rc
  for ((i = 0; i < 100; i++)); do
    if sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -qiw ready; then return 0; fi
    if ! vg_alive "$pid"; then
      rc=0
      wait "$pid" || rc=$?
      vg_forget "$pid"
      printf 'vipgate exited with %s before it was ready; its log:\n' "$rc"
      sed 's/^/   | /' "$log"
      return 1
    fi
    sleep 0.1
  done
  printf 'vipgate not ready after 10 s; its log:\n'
  sed 's/^/   | /' "$log"
  return 1
}

# The current vipgate log without colour codes.
vg_log_text() { sed 's/\x1b\[[0-9;]*m//g' "$VG_LOG"; }
# ERE: how many lines of the current log match.
vg_log_count() { vg_log_text | grep -cE -- "$1" || true; }

# SIGHUP, then wait (≤ 10 s) until the log reports this reload's outcome. Returns 0 when it
# reloaded, 1 when it refused (or never answered). Sets RELOAD_LINE to the outcome's log line.
# Waiting for each outcome matters: signals sent before the last one was handled coalesce.
reload_vipgate() {
  local re='configuration reloaded|reload refused' before i
  before=$(vg_log_count "$re")
  kill -HUP "$VG_PID"
  RELOAD_LINE=
  for ((i = 0; i < 100; i++)); do
    if (($(vg_log_count "$re") > before)); then
      RELOAD_LINE=$(vg_log_text | grep -E -- "$re" | tail -n 1)
      [[ $RELOAD_LINE == *"configuration reloaded"* ]]
      return
    fi
    sleep 0.1
  done
  RELOAD_LINE="(no reload outcome logged within 10 s)"
  return 1
}

# A real unix datagram socket for NOTIFY_SOCKET (netns-tests/notify_sink.py), waiting ≤ 5 s
# until it is bound. Sets NOTIFY_SOCK (the path) and NOTIFY_FILE (one line per datagram:
# `EPOCH_MS KEY=VALUE|KEY=VALUE…`).
notify_start() {
  local i pid
  VG_SEQ=$((VG_SEQ + 1))
  NOTIFY_SOCK=$VG_TMP/notify.$VG_SEQ.sock
  NOTIFY_FILE=$VG_TMP/notify.$VG_SEQ.txt
  "$VG_PYTHON" "$VG_ROOT/netns-tests/notify_sink.py" "$NOTIFY_SOCK" >"$NOTIFY_FILE" 2>"$NOTIFY_FILE.err" &
  pid=$!
  vg_track "$pid"
  for ((i = 0; i < 50; i++)); do
    if grep -q listening "$NOTIFY_FILE.err"; then return 0; fi
    sleep 0.1
  done
  cat "$NOTIFY_FILE.err"
  return 1
}
# ERE: how many notifications so far match.
notify_count() { grep -cE -- "$1" "$NOTIFY_FILE" || true; }
# COUNT ERE TENTHS: wait until at least COUNT notifications match (default 50 tenths).
notify_wait() {
  local i
  for ((i = 0; i < ${3:-50}; i++)); do
    (($(notify_count "$2") >= $1)) && return 0
    sleep 0.1
  done
  return 1
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# SIGTERM, wait ≤ 10 s, check the exit code is 0. Sets VG_RC.
stop_vipgate() { stop_vipgate_pid "$VG_PID"; }
stop_vipgate_pid() { # PID
  kill -TERM "$1" 2>/dev/null || true
  if ! vg_wait_gone 100 "$1"; then
    fail "vipgate exits within 10 s of SIGTERM"
    kill -KILL "$1" 2>/dev/null || true
  fi
  VG_RC=0
  wait "$1" || VG_RC=$?
  vg_forget "$1"
  assert_eq "vipgate exits 0 on SIGTERM" 0 "$VG_RC"
}

# SIGKILL: a crash; nothing of vipgate's cleanup runs.
kill_vipgate() { kill_pid "$VG_PID"; }
kill_pid() { # PID: SIGKILL one process this test started, and reap it
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  vg_forget "$1"
}

# `vipgate ARGS...` in NS_LB, in the foreground, at most VG_CMD_TIMEOUT (20) s.
# Sets CMD_RC, CMD_OUT, CMD_ERR.
vipgate_cmd() {
  CMD_RC=0
  NO_COLOR=1 timeout "${VG_CMD_TIMEOUT:-20}" ip netns exec "$NS_LB" "$VIPGATE_BIN" "$@" \
    >"$VG_TMP/cmd.out" 2>"$VG_TMP/cmd.err" </dev/null || CMD_RC=$?
  CMD_OUT=$(cat "$VG_TMP/cmd.out")
  CMD_ERR=$(cat "$VG_TMP/cmd.err")
}

# --- HTTP from the client ---------------------------------------------------------------------

# HOST PATH [curl args...]: one request to the VIP with that Host header.
# Sets HTTP_CODE (000 when no response), HTTP_BODY, HTTP_RC (curl's exit code) and HTTP_FILE.
http() {
  local host=$1 path=$2
  shift 2
  HTTP_FILE=$VG_TMP/http.body
  rm -f "$HTTP_FILE"
  HTTP_RC=0
  HTTP_CODE=$(in_client curl -sS --max-time 15 -H 'Expect:' -H "Host: $host" -o "$HTTP_FILE" \
    -w '%{http_code}' "$@" "http://$VIP$path" 2>"$VG_TMP/http.err") || HTTP_RC=$?
  HTTP_BODY=$(tr -d '\0' <"$HTTP_FILE" 2>/dev/null || true)
}
# HOST PATH [curl args...]: like `http`, over TLS to the VIP's port TLS_PORT (443) with SNI
# HOST (curl --resolve), trusting the CA in TLS_CA. Also sets HTTP_ERR: curl -v's stderr,
# which names the certificate presented (`subject:`, `expire date:`).
https() {
  local host=$1 path=$2
  shift 2
  HTTP_FILE=$VG_TMP/http.body
  HTTP_ERR=$VG_TMP/http.err
  rm -f "$HTTP_FILE"
  HTTP_RC=0
  HTTP_CODE=$(in_client curl -sSv --max-time 15 --cacert "$TLS_CA" \
    --resolve "$host:${TLS_PORT:-443}:$VIP" -o "$HTTP_FILE" -w '%{http_code}' "$@" \
    "https://$host:${TLS_PORT:-443}$path" 2>"$HTTP_ERR") || HTTP_RC=$?
  HTTP_BODY=
  if [[ -f $HTTP_FILE ]]; then HTTP_BODY=$(tr -d '\0' <"$HTTP_FILE"); fi
}
# CA HOST STOP OUT SECONDS: a bounded HTTPS load from the client across a certificate swap: one
# GET of https://HOST/ per new TLS connection (so each is a handshake) to the VIP, trusting CA,
# until the file STOP exists, at most 3000 requests and SECONDS s. Each request writes
# `code=NNN` (`code=curl-failed` without an answer) and the certificate's `*  expire date:` line
# to OUT. Sets LOAD_PID (tracked).
tls_load_start() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  in_client timeout $(($5 + 10)) bash -c 'for ((i = 0; i < 3000 && SECONDS < $5; i++)); do
      [[ -e $4 ]] && break
      curl -sv --max-time 5 --cacert "$1" --resolve "$2:443:$3" -o /dev/null \
        -w "code=%{http_code}\n" "https://$2/" 2>&1 | grep -E "^code=|^\*  expire date:" || echo "code=curl-failed"
    done' _ "$1" "$2" "$VIP" "$3" "$5" >"$4" &
  LOAD_PID=$!
  vg_track "$LOAD_PID"
}
# HOST GO OUT SECONDS: one keep-alive TLS connection from the client to the VIP with SNI HOST: a
# GET at once, a second one (then close) once the file GO exists, at most SECONDS s; the
# responses go to OUT. Sets KA_PID (tracked).
tls_keepalive_start() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  in_client timeout "$4" bash -c '{
      printf "GET / HTTP/1.1\r\nHost: %s\r\n\r\n" "$3"
      while [[ ! -e $2 ]]; do sleep 0.2; done
      printf "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" "$3"
    } | openssl s_client -quiet -connect "$1:443" -servername "$3" 2>/dev/null' _ "$VIP" "$2" "$1" >"$3" &
  KA_PID=$!
  vg_track "$KA_PID"
}
# STOP GO: end both (touch the files), wait ≤ 15 s for them and reap them.
tls_load_stop() {
  touch "$1" "$2"
  vg_wait_gone 150 "$LOAD_PID" "$KA_PID" || true
  wait "$LOAD_PID" || true
  wait "$KA_PID" || true
  vg_forget "$LOAD_PID"
  vg_forget "$KA_PID"
}
# The subject of the certificate the last `https` call was shown.
tls_subject() { sed -n 's/^\*  subject: //p' "$HTTP_ERR" | head -n 1; }

# examples/testcert (`cargo build --examples` builds it): test CAs and certificates.
TESTCERT_BIN=${TESTCERT_BIN:-$VG_ROOT/target/debug/examples/testcert}
testcert() { "$TESTCERT_BIN" "$@"; }
# DIR NAME ARGS...: `testcert leaf DIR/ca DIR/NAME ARGS...` written beside and renamed over
# NAME.pem and NAME.key, as certbot and cert-manager replace files (never half-written).
testcert_replace() {
  local dir=$1 name=$2
  shift 2
  testcert leaf "$dir/ca" "$dir/.$name.new" "$@"
  mv -f "$dir/.$name.new.key" "$dir/$name.key"
  mv -f "$dir/.$name.new.pem" "$dir/$name.pem"
}

# The backend named in the last response body (`backend=NAME ...`), nothing if none.
backend_of() { sed -n '1s/^backend=\([^ ]*\).*/\1/p' <<<"$HTTP_BODY"; }

# DESC HOST PATH CODE BACKEND_ERE [curl args...]: the request gets CODE from a backend matching
# BACKEND_ERE (use '' for a response vipgate made itself).
expect_route() {
  local desc=$1 host=$2 path=$3 code=$4 be=$5
  shift 5
  http "$host" "$path" "$@"
  assert_match "$desc" "$HTTP_CODE $(backend_of)" "$code ($be)"
}

# NS FILTER...: tcpdump on eth0 in NS into a text file (-e -n -t), waiting ≤ 5 s until it
# listens. Sets CAP_PID, CAP_FILE.
capture_start() {
  local ns=$1 i
  shift
  VG_SEQ=$((VG_SEQ + 1))
  CAP_FILE=$VG_TMP/capture.$VG_SEQ.txt
  ip netns exec "$ns" tcpdump -i eth0 -l -n -e -t "$@" >"$CAP_FILE" 2>"$CAP_FILE.err" &
  CAP_PID=$!
  vg_track "$CAP_PID"
  for ((i = 0; i < 50; i++)); do
    if grep -q 'listening on' "$CAP_FILE.err"; then return 0; fi
    sleep 0.1
  done
  cat "$CAP_FILE.err"
  return 1
}
capture_stop() {
  kill -TERM "$CAP_PID" 2>/dev/null || true
  vg_wait_gone 30 "$CAP_PID" || kill -KILL "$CAP_PID" 2>/dev/null || true
  wait "$CAP_PID" 2>/dev/null || true
  vg_forget "$CAP_PID"
}

# Gratuitous ARPs for the VIP in a capture (requests or replies with sender IP = target IP =
# VIP, to broadcast), from MAC.
garps_from() { # FILE MAC
  local v=${VIP//./\\.}
  grep -cE "^$2 > ff:ff:ff:ff:ff:ff, .*(Request who-has $v( \([0-9a-f:]+\))? tell $v,|Reply $v is-at )" "$1" || true
}
# Any ARP with the VIP as sender address in a capture.
arp_from_vip() { # FILE
  local v=${VIP//./\\.}
  grep -E "(tell $v,|Reply $v is-at )" "$1" || true
}

# --- high availability (two vipgate nodes, VRRP) ----------------------------------------------

HA_HOST=ha.example.test
HA_VRID=${HA_VRID:-51}
# The backend (IP:PORT) ha_config and ha_serve_config route to; the first backend.py if unset.
HA_BACKEND=${HA_BACKEND:-}

# FILE PRIORITY [LINE...]: a config holding the VIP through VRRP (vrid HA_VRID, advert
# HA_ADVERT or 100ms) and serving $HA_HOST from HA_BACKEND or the first backend; each LINE is added to
# [vrrp] (like 'preempt = false').
ha_config() {
  local file=$1 prio=$2 line
  shift 2
  cat >"$file" <<EOC
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"

[[host]]
names = ["$HA_HOST"]
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["${HA_BACKEND:-${BE_IP[0]}:$BACKEND_PORT}"]

[vrrp]
vrid = $HA_VRID
priority = $prio
advert_interval = "${HA_ADVERT:-100ms}"
EOC
  for line in "$@"; do printf '%s\n' "$line" >>"$file"; done
}

# LOG ERE TENTHS: waits until the log (colour codes removed) has a line matching ERE.
wait_log() {
  local i
  for ((i = 0; i < $3; i++)); do
    if sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -qE "$2"; then return 0; fi
    sleep 0.1
  done
  return 1
}
# LOG: the VRRP state a vipgate log last reported (Master, Backup, Initialize), or nothing.
vrrp_state() {
  sed 's/\x1b\[[0-9;]*m//g' "$1" | sed -n 's/.*VRRP state changed.* to=\([A-Za-z]*\).*/\1/p' | tail -n 1
}
# LOG STATE TENTHS: waits until vrrp_state is STATE.
wait_state() {
  local i
  for ((i = 0; i < $3; i++)); do
    [[ $(vrrp_state "$1") == "$2" ]] && return 0
    sleep 0.1
  done
  return 1
}

# SECONDS [TARGET]: the prober on the client, one request to TARGET (VIP:80; [VIP6]:80 for
# IPv6) every 10 ms for SECONDS (≤ 60) in the background. Sets PROBE_PID and PROBE_FILE.
probe_start() {
  VG_SEQ=$((VG_SEQ + 1))
  PROBE_FILE=$VG_TMP/probe.$VG_SEQ.txt
  in_client "$VG_PYTHON" "$VG_ROOT/netns-tests/prober.py" probe --target "${2:-$VIP:80}" \
    --host "$HA_HOST" --interval-ms 10 --duration "$1" >"$PROBE_FILE" 2>"$PROBE_FILE.err" &
  PROBE_PID=$!
  vg_track "$PROBE_PID"
}
probe_wait() { # waits for the prober (≤ its duration + 10 s)
  if ! vg_wait_gone 700 "$PROBE_PID"; then kill -KILL "$PROBE_PID" 2>/dev/null || true; fi
  wait "$PROBE_PID" 2>/dev/null || true
  vg_forget "$PROBE_PID"
}
# IP TENTHS [N]: waits (≤ TENTHS/10 s) until the last N (20) probes that ended were all
# answered through IP: the clients have settled on that node.
probe_until() {
  local i n=${3:-20}
  for ((i = 0; i < $2 * 2; i++)); do
    if tail -n "$n" "$PROBE_FILE" 2>/dev/null | awk -v ip="$1" -v n="$n" '$3 != ip { bad = 1 } END { exit (NR < n || bad) }'; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}
# Stops the prober before its duration is over; probes still in flight are not written.
probe_stop() {
  kill -TERM "$PROBE_PID" 2>/dev/null || true
  probe_wait
}
# OLD_IP NEW_IP: the prober's outage line for a move from OLD to NEW (see prober.py); sets
# OUTAGE_MS (a number, or 'none'), OLD_AFTER and PROBE_FAILS too.
probe_outage() {
  PROBE_RESULT=$("$VG_PYTHON" "$VG_ROOT/netns-tests/prober.py" outage "$PROBE_FILE" --old "$1" --new "$2")
  OUTAGE_MS=$(sed -n 's/.*outage_ms=\([^ ]*\).*/\1/p' <<<"$PROBE_RESULT")
  OLD_AFTER=$(sed -n 's/.*old_after=\([^ ]*\).*/\1/p' <<<"$PROBE_RESULT")
  PROBE_FAILS=$(sed -n 's/.*fails=\([^ ]*\).*/\1/p' <<<"$PROBE_RESULT")
}
# DESC MAX_MS: the last probe_outage was measured and at most MAX_MS, with no answer from the
# old node after the new one answered (one owner at a time).
assert_outage() {
  if [[ $OUTAGE_MS =~ ^[0-9]+$ ]] && ((OUTAGE_MS <= $2)) && [[ $OLD_AFTER == 0 ]]; then
    pass "$1: outage ${OUTAGE_MS} ms (bound $2 ms; $PROBE_RESULT)"
  else
    fail "$1: expected an outage ≤ $2 ms and no old answers after the new ones, got: $PROBE_RESULT"
    tail -n 40 "$PROBE_FILE" | sed 's/^/   | /'
  fi
}

# OLD_IP NEW_IP DESC MAX_MS: after a change that moves the VIP from OLD to NEW, waits (≤ 5 s)
# until the running prober's last 50 probes were answered through NEW, stops it, and asserts
# the outage of the move (assert_outage).
probe_settled_outage() {
  probe_until "$2" 50 || fail "$3: the probes settle on $2"
  probe_stop
  probe_outage "$1" "$2"
  assert_outage "$3" "$4"
}

# A config serving $HA_HOST on VIP:80 from HA_BACKEND or the first backend, with no [[vip]] and no [vrrp]:
# the HTTP side of a node whose VIP keepalived holds as an interface address.
ha_serve_config() { # FILE
  cat >"$1" <<EOC
[[listener]]
bind = "$VIP:80"
[[host]]
names = ["$HA_HOST"]
[[host.route]]
prefix = "/"
pool = "web"
[pool.web]
backends = ["${HA_BACKEND:-${BE_IP[0]}:$BACKEND_PORT}"]
EOC
}

# FILE PRIORITY [SRC_IP PEER_IP]: a keepalived VRRPv3 instance (vrid HA_VRID, advert HA_ADVERT
# or 100ms, unicast from SRC_IP to PEER_IP, or multicast to 224.0.0.18 without them,
# preempting) that puts the VIP on eth0 while master.
keepalived_config() {
  local adv=${HA_ADVERT:-100ms} int unicast=
  if (($# >= 4)); then
    unicast="  unicast_src_ip $3
  unicast_peer {
    $4
  }"
  fi
  case $adv in
    *ms) int=$(awk -v ms="${adv%ms}" 'BEGIN { printf "%g", ms / 1000 }') ;;
    *s) int=${adv%s} ;;
    *) int=$adv ;;
  esac
  cat >"$1" <<EOC
global_defs {
  vrrp_version 3
}
vrrp_instance VI {
  state BACKUP
  interface eth0
  virtual_router_id $HA_VRID
  priority $2
  advert_int $int
$unicast
  virtual_ipaddress {
    $VIP/32
  }
}
EOC
}

# FILE PRIORITY: a keepalived VRRPv3 instance for VIP6 (vrid HA_VRID, advert HA_ADVERT or
# 100ms, multicast to ff02::12: keepalived 2.2.7 sends its unicast IPv6 adverts with hop limit
# 64, which RFC 9568 receivers drop) that puts VIP6 on eth0 while master.
keepalived_config6() {
  keepalived_config "$1" "$2" - -
  sed -i -e '/unicast_src_ip/d' -e '/unicast_peer {/,/}/d' -e "s|$VIP/32|$VIP6/128|" "$1"
}

# NS CONFIG: keepalived (VRRP only, in the foreground, logging to a file) in NS. Sets KA_PID,
# KA_LOG and KA_VRRP_PIDFILE (where its VRRP child writes its PID); the process is tracked and
# removed with the rest.
keepalived_start() {
  local ns=$1 cfg=$2
  VG_SEQ=$((VG_SEQ + 1))
  KA_LOG=$VG_TMP/keepalived.$VG_SEQ.log
  KA_VRRP_PIDFILE=$VG_TMP/ka-vrrp.$VG_SEQ.pid
  VG_LOGS+=("$KA_LOG")
  ip netns exec "$ns" keepalived -n -l -D -P -f "$cfg" -p "$VG_TMP/ka.$VG_SEQ.pid" \
    -r "$KA_VRRP_PIDFILE" >"$KA_LOG" 2>&1 &
  KA_PID=$!
  vg_track "$KA_PID"
}
# PID: SIGTERM to a keepalived this run started; waits ≤ 5 s for it to exit (then SIGKILL).
keepalived_stop() {
  kill -TERM "$1" 2>/dev/null || true
  vg_wait_gone 50 "$1" || kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  vg_forget "$1"
}
# LOG: the state keepalived last entered (MASTER, BACKUP, FAULT), or nothing.
keepalived_state() { sed -n 's/.*Entering \([A-Z]*\) STATE.*/\1/p' "$1" 2>/dev/null | tail -n 1; }
wait_keepalived_state() { # LOG STATE TENTHS
  local i
  for ((i = 0; i < $3; i++)); do
    [[ $(keepalived_state "$1") == "$2" ]] && return 0
    sleep 0.1
  done
  return 1
}

# --- BGP (a router running BIRD in front of vipgate nodes that each run BIRD) -----------------
#
#   NS_CLIENT eth1 198.51.100.10 ── eth1 198.51.100.1  NS_RT  eth0 192.0.2.1 ── br0 (the LAN of
#   lan_up: NS_LB 192.0.2.2, NS_LB2 192.0.2.3, the backends)
#
# The BGP VIP 203.0.113.10 is on no LAN: the router reaches it through the nodes' BGP
# announcements (ECMP), so the client's flows spread over the nodes.

NS_RT=${VG_PREFIX}rt
RT_IP=192.0.2.1
RT_CLIENT_IP=198.51.100.1
BGP_CLIENT_IP=198.51.100.10
BGP_VIP=203.0.113.10
BGP_VIP6=2001:db8:ff::10 # put in the nodes' table too (the router's sessions carry IPv4 only)
RT_AS=64500
NODE_AS=64501
declare -A BIRD_PID=()

# After lan_up and lb2_up: the router on the LAN, the client moved behind it (its LAN address
# removed), ECMP hashing on ports (fib_multipath_hash_policy=1), the nodes' default route via
# the router (their way back to the client).
bgp_router_up() {
  local ns
  vg_attach "$NS_RT" rt "$RT_IP" 02:00:c0:00:02:01
  ip -n "$NS_RT" link add eth1 type veth peer name eth1 netns "$NS_CLIENT"
  ip -n "$NS_CLIENT" addr flush dev eth0
  ip -n "$NS_CLIENT" link set eth0 down
  ip -n "$NS_CLIENT" addr add "$BGP_CLIENT_IP/24" dev eth1
  ip -n "$NS_CLIENT" link set eth1 up
  ip -n "$NS_CLIENT" route add default via "$RT_CLIENT_IP"
  ip -n "$NS_RT" addr add "$RT_CLIENT_IP/24" dev eth1
  ip -n "$NS_RT" link set eth1 up
  vg_sysctl "$NS_RT" net/ipv4/ip_forward 1
  vg_sysctl "$NS_RT" net/ipv4/fib_multipath_hash_policy 1
  for ns in "$NS_LB" "$NS_LB2"; do ip -n "$ns" route add default via "$RT_IP"; done
}

# [N_BACKENDS]: the whole BGP set-up: lan_up (2 backends by default), lb2_up, bgp_router_up,
# and three BIRDs with configs under $VG_TMP: rt (the router), n1 (NS_LB), n2 (NS_LB2), each
# node's from scripts/bird-vipgate.conf. vipgate is the caller's to start (bgp_node_config).
bgp_fabric_up() {
  lan_up "${1:-2}"
  lb2_up
  bgp_router_up
  bird_router_config "$VG_TMP/rt.conf" "$LB_IP" "$LB2_IP"
  bird_node_config "$VG_TMP/bird-n1.conf" "$LB_IP"
  bird_node_config "$VG_TMP/bird-n2.conf" "$LB2_IP"
  bird_start "$NS_RT" rt "$VG_TMP/rt.conf" || abort "the router's BIRD starts"
  bird_start "$NS_LB" n1 "$VG_TMP/bird-n1.conf" || abort "node 1's BIRD starts"
  bird_start "$NS_LB2" n2 "$VG_TMP/bird-n2.conf" || abort "node 2's BIRD starts"
}

# FILE NODE_IP...: the router's BIRD config: one eBGP session with BFD (100 ms x 3) per node,
# named n1, n2…, whose routes go into its kernel table merged into one multipath route.
bird_router_config() {
  local file=$1 i=0 ip
  shift
  cat >"$file" <<EOC
router id $RT_IP;
log stderr { info, remote, warning, error, auth, fatal, bug };
timeformat log "%T.%3f";
protocol device {}
protocol kernel { ipv4 { import none; export all; }; merge paths on; }
protocol bfd { interface "eth0" { interval 100 ms; multiplier 3; }; }
template bgp node {
  local $RT_IP as $RT_AS;
  bfd on;
  hold time 9; keepalive time 3;
  connect delay time 1; connect retry time 2; error wait time 1, 10;
  ipv4 { import all; export none; };
}
EOC
  for ip in "$@"; do
    i=$((i + 1))
    printf 'protocol bgp n%d from node { neighbor %s as %s; }\n' "$i" "$ip" "$NODE_AS" >>"$file"
  done
}

# FILE BIRD_NAME [BACKENDS]: a BGP node's vipgate config: BGP_VIP:80 (announce = "bgp"; and
# BGP_VIP6, announced but not listened on) for
# $HA_HOST, Maglev on the client IP over BACKENDS (the TOML list's inside; default the two
# first backends), health checks every 200 ms, the BIRD at $(bird_ctl BIRD_NAME), checks every
# 100 ms with rise 3 / fall 2, withdraw_wait 300 ms, drain 3 s.
bgp_node_config() {
  cat >"$1" <<EOC
[[vip]]
address = "$BGP_VIP"
announce = "bgp"
[[vip]]
address = "$BGP_VIP6"
announce = "bgp"

[[listener]]
bind = "$BGP_VIP:80"

[[host]]
names = ["$HA_HOST"]
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = [${3:-"\"${BE_IP[0]}:$BACKEND_PORT\", \"${BE_IP[1]}:$BACKEND_PORT\""}]
balance = "maglev"
hash_key = "client_ip"
[pool.web.health]
type = "tcp"
interval_ms = 200
timeout_ms = 100
unhealthy_threshold = 2
healthy_threshold = 1

[daemon]
drain_timeout_ms = 3000

[bgp]
check_interval = "100ms"
rise = 3
fall = 2
withdraw_wait = "300ms"
bird_socket = "$(bird_ctl "$2")"
[[bgp.track]]
pool = "web"
EOC
}
# FILE NODE_IP: scripts/bird-vipgate.conf for the node at NODE_IP (its EDIT lines filled in).
bird_node_config() {
  sed -e "s/^router id 192\.0\.2\.2;/router id $2;/" \
    -e "s/local 192\.0\.2\.2 as 64501;/local $2 as $NODE_AS;/" \
    -e "s/neighbor 192\.0\.2\.1 as 64500;/neighbor $RT_IP as $RT_AS;/" \
    "$VG_ROOT/scripts/bird-vipgate.conf" >"$1"
}

# NAME: BIRD's control socket for the instance NAME.
bird_ctl() { printf '%s' "$VG_TMP/bird-$1.ctl"; }

# NS NAME CONF: BIRD in the foreground in NS with its own config and control socket
# ($(bird_ctl NAME)), logging to $VG_TMP/bird-NAME.log; waits (≤ 5 s) until it answers.
# Sets BIRD_PID[NAME]; stopped by PID (bird_stop, or the cleanup). It runs at SCHED_RR 10, as
# docs/operations.md advises for BFD at 100 ms: at normal priority, with both cores busy
# (load 8 from builds), a BFD session went down with nothing wrong.
bird_start() {
  local ns=$1 name=$2 conf=$3 i
  VG_LOGS+=("$VG_TMP/bird-$name.log")
  ip netns exec "$ns" chrt -r 10 bird -f -c "$conf" -s "$(bird_ctl "$name")" -P "$VG_TMP/bird-$name.pid" \
    >>"$VG_TMP/bird-$name.log" 2>&1 &
  BIRD_PID[$name]=$!
  vg_track "$!"
  for ((i = 0; i < 50; i++)); do
    birdc -s "$(bird_ctl "$name")" show status >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$VG_TMP/bird-$name.log"
  return 1
}
# NAME [SIGNAL]: stop BIRD NAME (SIGTERM by default; KILL for a crash) and reap it.
bird_stop() {
  local pid=${BIRD_PID[$1]}
  kill "-${2:-TERM}" "$pid" 2>/dev/null || true
  vg_wait_gone 50 "$pid" || kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  vg_forget "$pid"
}
birdc_in() { birdc -s "$(bird_ctl "$1")" "${@:2}"; } # NAME COMMAND...

# The router's next hops for the BGP VIP (sorted, space-separated), nothing if it has no route.
rt_next_hops() {
  ip -n "$NS_RT" route show "$BGP_VIP/32" | grep -o 'via [0-9.]*' | awk '{ print $2 }' |
    sort | paste -sd' ' -
}
# EXPECTED TENTHS: waits until rt_next_hops is EXPECTED; sets WAITED_MS (the time it took).
wait_next_hops() {
  local i start
  start=$(now_ms)
  for ((i = 0; i < $2 * 10; i++)); do
    if [[ $(rt_next_hops) == "$1" ]]; then
      WAITED_MS=$(($(now_ms) - start))
      return 0
    fi
    sleep 0.01
  done
  WAITED_MS=
  return 1
}
