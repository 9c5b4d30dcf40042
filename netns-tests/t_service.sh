#!/usr/bin/env bash
# The systemd unit and what it relies on: `systemd-analyze verify` accepts scripts/vipgate.service
# without a warning; scripts/install lays out binary, unit and config; and the daemon does its
# whole job as an unprivileged user holding only the unit's three ambient capabilities
# (CAP_NET_RAW, CAP_NET_ADMIN, CAP_NET_BIND_SERVICE, via setpriv, as systemd would give them):
# port 80, ARP, the local route, the ARP sysctls, reload, stop, and `vipgate release` as
# ExecStopPost. Without CAP_NET_ADMIN or CAP_NET_RAW it refuses to start with a clear error and
# leaves nothing behind. (PID 1 here is not systemd, so the unit itself is not started.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

unit=$VG_ROOT/scripts/vipgate.service
CAPS=net_raw,net_admin,net_bind_service

section "the unit file"
mkdir -p "$VG_TMP/unit"
sed "s|/usr/local/bin/vipgate|$VIPGATE_BIN|g" "$unit" >"$VG_TMP/unit/vipgate.service"
rc=0
out=$(systemd-analyze verify "$VG_TMP/unit/vipgate.service" 2>&1) || rc=$?
assert_eq "systemd-analyze verify: exit 0, no warning" "0 " "$rc $out"
key() { sed -n "s/^$1=//p" "$unit" | paste -sd'|' -; }
assert_eq "Type=notify" notify "$(key Type)"
assert_eq "NotifyAccess=main" main "$(key NotifyAccess)"
assert_match "WatchdogSec set" "$(key WatchdogSec)" '[0-9]+s'
# shellcheck disable=SC2016 # $MAINPID is systemd's, literal here
assert_eq "ExecReload sends SIGHUP" '/bin/kill -HUP $MAINPID' "$(key ExecReload)"
assert_match "ExecStartPre runs vipgate check" "$(key ExecStartPre)" '/usr/local/bin/vipgate check --config .*'
assert_match "ExecStopPost runs vipgate release" "$(key ExecStopPost)" '-?/usr/local/bin/vipgate release --config .*'
assert_eq "User=vipgate" vipgate "$(key User)"
assert_eq "ambient capabilities: exactly the three" "CAP_NET_RAW CAP_NET_ADMIN CAP_NET_BIND_SERVICE" "$(key AmbientCapabilities)"
assert_eq "bounding set: the same three" "CAP_NET_RAW CAP_NET_ADMIN CAP_NET_BIND_SERVICE" "$(key CapabilityBoundingSet)"
assert_eq "ProtectSystem=strict" strict "$(key ProtectSystem)"
assert_eq "PrivateTmp=yes" yes "$(key PrivateTmp)"
assert_eq "the ARP sysctls stay writable" /proc/sys/net/ipv4/conf "$(key ReadWritePaths)"
stop_s=$(key TimeoutStopSec)
if ((${stop_s%s} > 30)); then pass "TimeoutStopSec ($stop_s) is above the default drain_timeout_ms (30 s)"; else fail "TimeoutStopSec ($stop_s) is above the default drain (30 s)"; fi
exposure=$(systemd-analyze security --offline=yes "$VG_TMP/unit/vipgate.service" 2>/dev/null | sed -n 's/.*Overall exposure level for vipgate.service: \([0-9.]*\).*/\1/p')
note "systemd-analyze security: overall exposure $exposure"

section "scripts/install into a staging root"
stage=$VG_TMP/stage
rc=0
"$VG_ROOT/scripts/install" --bin "$VIPGATE_BIN" --destdir "$stage" >"$VG_TMP/install.out" 2>&1 || rc=$?
assert_eq "install exits 0" 0 "$rc"
assert_eq "binary 0755" 755 "$(stat -c %a "$stage/usr/local/bin/vipgate" 2>/dev/null || true)"
assert_eq "unit 0644, as in scripts/" "644 same" "$(stat -c %a "$stage/etc/systemd/system/vipgate.service" 2>/dev/null || true) $(cmp -s "$unit" "$stage/etc/systemd/system/vipgate.service" && echo same)"
assert_eq "config 0640" 640 "$(stat -c %a "$stage/etc/vipgate/vipgate.toml" 2>/dev/null || true)"
rc=0
"$VIPGATE_BIN" check --config "$stage/etc/vipgate/vipgate.toml" >/dev/null 2>&1 || rc=$?
assert_eq "the installed default config passes vipgate check" 0 "$rc"
echo "# edited" >>"$stage/etc/vipgate/vipgate.toml"
"$VG_ROOT/scripts/install" --bin "$VIPGATE_BIN" --destdir "$stage" >"$VG_TMP/install.out" 2>&1 || true
assert_eq "a second install keeps an edited config" "# edited" "$(tail -n 1 "$stage/etc/vipgate/vipgate.toml")"

section "unprivileged with the unit's three capabilities"
lan_up 1
# The daemon runs as nobody: it must be able to read its config.
chmod 0755 "$VG_TMP"
cfg=$VG_TMP/caps.toml
cat >"$cfg" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:80"

[[host]]
names = ["blog.example.test"]
[[host.route]]
prefix = "/"
pool = "web"

[pool.web]
backends = ["${BE_IP[0]}:$BACKEND_PORT"]
EOF
chmod 0644 "$cfg"
vg_sysctl "$NS_LB" net/ipv4/conf/eth0/arp_ignore 0
vg_sysctl "$NS_LB" net/ipv4/conf/eth0/arp_announce 0
# CAPS-LIST: setpriv as nobody keeping only those capabilities (ambient, inheritable, bounding).
as_nobody() {
  local caps=$1
  shift
  setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs \
    --inh-caps="-all,+${caps//,/,+}" --ambient-caps="-all,+${caps//,/,+}" \
    --bounding-set="-all,+${caps//,/,+}" "$@"
}
real_bin=$VIPGATE_BIN
cat >"$VG_TMP/vipgate-as-nobody" <<EOF
#!/bin/sh
exec setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs \\
  --inh-caps=-all,+net_raw,+net_admin,+net_bind_service \\
  --ambient-caps=-all,+net_raw,+net_admin,+net_bind_service \\
  --bounding-set=-all,+net_raw,+net_admin,+net_bind_service "$real_bin" "\$@"
EOF
chmod 0755 "$VG_TMP/vipgate-as-nobody"
VIPGATE_BIN=$VG_TMP/vipgate-as-nobody
notify_start || abort "the notify socket is bound"
chmod 0777 "$NOTIFY_SOCK"
VG_RUN_ENV=(NOTIFY_SOCKET="$NOTIFY_SOCK" WATCHDOG_USEC=1000000)
start_vipgate "$cfg" || abort "vipgate starts as nobody with CAP_NET_RAW, CAP_NET_ADMIN, CAP_NET_BIND_SERVICE"
VG_RUN_ENV=()
# env, ip netns exec, the wrapper and setpriv all exec: VG_PID is vipgate itself.
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$VG_PID/status" 2>/dev/null || true)
cap_eff=$(awk '/^CapEff:/ { print $2 }' "/proc/$VG_PID/status" 2>/dev/null || true)
assert_eq "it runs as uid 65534" 65534 "$uid"
assert_eq "its effective capabilities are exactly NET_BIND_SERVICE|NET_ADMIN|NET_RAW" 0000000000003400 "$cap_eff"
notify_wait 1 'READY=1' || fail "READY=1 reaches the notify socket"
assert_eq "it answers ARP for the VIP" "$(lb_mac)" "$(arp_mac "$VIP")"
assert_match "it installed the local route" "$(local_route)" "local ${VIP//./\\.} dev lo.*"
assert_eq "it raised arp_ignore and arp_announce (1 2)" "1 2" "$(in_lb cat /proc/sys/net/ipv4/conf/eth0/arp_ignore) $(in_lb cat /proc/sys/net/ipv4/conf/eth0/arp_announce)"
expect_route "it serves port 80" blog.example.test / 200 be1
if reload_vipgate; then pass "it reloads on SIGHUP"; else fail "it reloads on SIGHUP: $RELOAD_LINE"; fi
stop_vipgate
assert_eq "SIGTERM removed the route" "" "$(local_route)"
start_vipgate "$cfg" || abort "vipgate starts again as nobody"
kill_vipgate
vipgate_cmd release --config "$cfg"
assert_eq "vipgate release (ExecStopPost) works with the same capabilities" "0 $VIP: removed the local route a previous run left" "$CMD_RC $CMD_OUT"
assert_eq "… and the route is gone" "" "$(local_route)"

section "missing capabilities are refused cleanly"
VIPGATE_BIN=$real_bin
for missing in net_admin net_raw; do
  # As on a fresh node: the sysctls still need raising.
  vg_sysctl "$NS_LB" net/ipv4/conf/eth0/arp_ignore 0
  vg_sysctl "$NS_LB" net/ipv4/conf/eth0/arp_announce 0
  keep=${CAPS//$missing/}
  keep=${keep//,,/,}
  keep=${keep#,}
  keep=${keep%,}
  rc=0
  err=$(timeout 20 ip netns exec "$NS_LB" env NO_COLOR=1 bash -c "$(declare -f as_nobody); as_nobody '$keep' '$VIPGATE_BIN' run --config '$cfg'" 2>&1) || rc=$?
  assert_eq "without ${missing^^}: exit 1" 1 "$rc"
  assert_contains "without ${missing^^}: the error names CAP_${missing^^}" "$err" "CAP_${missing^^}"
  assert_eq "without ${missing^^}: no local route left" "" "$(local_route)"
done

summary
