#!/usr/bin/env bash
# netns-tests/run: alone (its timings or load figures need an otherwise idle machine)
# Running under a service manager: sd_notify over a real unix datagram socket given as
# NOTIFY_SOCKET (READY=1 once serving, WATCHDOG=1 at half WATCHDOG_USEC, RELOADING=1/READY=1
# around a reload, STOPPING=1), a graceful stop that stops announcing first, closes idle
# keep-alive connections, lets a slow in-flight request finish and exits 0, the drain deadline,
# and `vipgate release` after a kill -9.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

lan_up 2
cfg=$VG_TMP/life.toml
write_cfg() { # DRAIN_TIMEOUT_MS
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
backends = ["${BE_IP[0]}:$BACKEND_PORT", "${BE_IP[1]}:$BACKEND_PORT"]

[daemon]
drain_timeout_ms = $1
EOF
}
write_cfg 10000

section "sd_notify"
notify_start || abort "the notify socket is bound"
VG_RUN_ENV=(NOTIFY_SOCKET="$NOTIFY_SOCK" WATCHDOG_USEC=400000)
start_vipgate "$cfg" || abort "vipgate starts and logs ready"
VG_RUN_ENV=()
notify_wait 1 'READY=1' || fail "READY=1 arrives within 5 s"
first=$(head -n 1 "$NOTIFY_FILE" | cut -d' ' -f2-)
assert_match "the first notification is READY=1 with a status line" "$first" 'READY=1\|STATUS=serving: 1 VIP\(s\) \[192\.0\.2\.200\], 1 listener\(s\), 1 host\(s\), 1 pool\(s\).*'
# READY=1 means serving: the route is in place and a request is answered right away.
assert_match "at READY=1 the VIP's local route is in place" "$(local_route)" "local ${VIP//./\\.} dev lo.*"
expect_route "at READY=1 a request is served" blog.example.test / 200 'be1|be2'

sleep 1.5
wd=$(notify_count '^[0-9]+ WATCHDOG=1$')
if ((wd >= 5)); then pass "WATCHDOG=1 every ~200 ms with WATCHDOG_USEC=400000 ($wd in ~1.5 s)"; else fail "WATCHDOG=1 every ~200 ms: only $wd in ~1.5 s"; fi
gaps=$(grep -E 'WATCHDOG=1$' "$NOTIFY_FILE" | awk 'NR > 1 { print $1 - prev } { prev = $1 }' | sort -n | tail -n 1)
assert_match "no watchdog gap above 350 ms (largest: ${gaps:-none} ms)" "${gaps:-0}" '([0-9]{1,2}|[0-2][0-9]{2}|3[0-4][0-9])'

reload_vipgate || fail "SIGHUP with the same file reloads: $RELOAD_LINE"
notify_wait 2 'READY=1' || true
seq_after=$(grep -vE 'WATCHDOG=1$' "$NOTIFY_FILE" | tail -n 2 | cut -d' ' -f2- | cut -d'|' -f1 | paste -sd' ' -)
assert_eq "a reload is RELOADING=1 then READY=1" "RELOADING=1 READY=1" "$seq_after"
assert_match "RELOADING=1 carries MONOTONIC_USEC" "$(grep RELOADING=1 "$NOTIFY_FILE" | tail -n 1 | cut -d' ' -f2-)" 'RELOADING=1\|MONOTONIC_USEC=[0-9]+\|STATUS=reloading'
cp "$cfg" "$cfg.good"
printf '[[listener]]\nbind = "%s:80"\nbogus = 1\n' "$VIP" >>"$cfg"
if reload_vipgate; then fail "a broken file is refused on reload"; else pass "a broken file is refused on reload"; fi
notify_wait 3 'READY=1' || true
assert_match "after a refused reload READY=1 says why, with FILE:LINE:COLUMN" \
  "$(grep READY=1 "$NOTIFY_FILE" | tail -n 1 | cut -d' ' -f2-)" \
  "READY=1\\|STATUS=serving: .*reloads: 1 ok, 1 failed; last reload refused: ${cfg//./\\.}:[0-9]+:[0-9]+: error: .*bogus.*"
cp "$cfg.good" "$cfg"

section "graceful stop: stop announcing, close idle keep-alive, finish the slow request"
# An idle keep-alive connection: one request answered, then it waits for the server to close.
# shellcheck disable=SC2016 # the python program is literal
in_client "$VG_PYTHON" -c '
import socket, sys, time
s = socket.create_connection((sys.argv[1], 80), timeout=30)
s.sendall(b"GET /idle HTTP/1.1\r\nHost: blog.example.test\r\n\r\n")
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
head, body = buf.split(b"\r\n\r\n", 1)
n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
while len(body) < n:
    body += s.recv(4096)
print("answered", head.split(b"\r\n")[0].decode(), flush=True)
try:
    rest = s.recv(1)
    print("closed" if rest == b"" else "data", int(time.time() * 1000), flush=True)
except OSError as e:
    print("error", e, int(time.time() * 1000), flush=True)
' "$VIP" >"$VG_TMP/idle.out" 2>&1 &
idle_pid=$!
vg_track "$idle_pid"
slow_out=$VG_TMP/slow.out
in_client curl -sS --max-time 20 -H 'Host: blog.example.test' -o "$VG_TMP/slow.body" -D "$VG_TMP/slow.head" \
  -w '%{http_code} %{time_total}\n' "http://$VIP/slow?ms=4000" >"$slow_out" 2>&1 &
slow_pid=$!
vg_track "$slow_pid"
for ((i = 0; i < 50; i++)); do grep -q answered "$VG_TMP/idle.out" && break; sleep 0.1; done
assert_match "the idle keep-alive connection got its answer" "$(head -n 1 "$VG_TMP/idle.out")" 'answered HTTP/1.1 200 OK'
sleep 0.5
term_ms=$(now_ms)
kill -TERM "$VG_PID"
notify_wait 1 'STOPPING=1' 20 || true
assert_match "STOPPING=1 with a status" "$(grep STOPPING=1 "$NOTIFY_FILE" | head -n 1 | cut -d' ' -f2-)" 'STOPPING=1\|STATUS=stopping: draining [0-9]+ connection\(s\)'
for ((i = 0; i < 20; i++)); do (($(vg_log_count 'draining in-flight') > 0)) && break; sleep 0.05; done
if vg_alive "$VG_PID"; then pass "vipgate is still running, draining"; else fail "vipgate is still running, draining"; fi
assert_match "while draining the local route stays (in-flight connections need it)" "$(local_route)" "local ${VIP//./\\.} dev lo.*"
rc=0
in_client curl -sS --max-time 3 -o /dev/null -H 'Host: blog.example.test' "http://$VIP/" 2>/dev/null || rc=$?
assert_eq "while draining a new connection is refused at once (curl exit 7)" 7 "$rc"
assert_eq "while draining nobody answers ARP for the VIP (stopped announcing first)" "" "$(arp_mac "$VIP")"
vg_wait_gone 50 "$idle_pid" || true
read -r idle_state idle_ms <<<"$(sed -n 2p "$VG_TMP/idle.out")"
assert_eq "the idle keep-alive connection was closed by vipgate" closed "$idle_state"
if [[ $idle_ms =~ ^[0-9]+$ ]] && ((idle_ms - term_ms < 1000)); then
  pass "… within 1 s of SIGTERM ($((idle_ms - term_ms)) ms)"
else
  fail "… within 1 s of SIGTERM (closed at ${idle_ms:-never}, SIGTERM at $term_ms)"
fi
vg_wait_gone 150 "$slow_pid" || true
wait "$slow_pid" || true
vg_forget "$slow_pid"
read -r slow_code slow_time <<<"$(cat "$slow_out")"
slow_end_ms=$(now_ms)
assert_eq "the slow in-flight request finished with 200" 200 "$slow_code"
assert_match "… from a web backend, whole" "$(cat "$VG_TMP/slow.body")" 'backend=be[12] method=GET host=blog\.example\.test path=/slow\?ms=4000 body_len=0 peer=192\.0\.2\.2'
note "slow request took ${slow_time}s"
assert_match "… and its response, written while draining, says Connection: close" "$(tr -d '\r' <"$VG_TMP/slow.head" | grep -i '^connection:' || true)" '[Cc]onnection: close'
vg_wait_gone 50 "$VG_PID" || true
exit_ms=$(now_ms)
stop_vipgate
if ((exit_ms >= slow_end_ms - 200)); then pass "vipgate exited after the slow request finished"; else fail "vipgate exited after the slow request finished (exit $exit_ms, request end $slow_end_ms)"; fi
assert_contains "the log says it stopped" "$(vg_log_text)" stopped
assert_eq "after the drain the local route is gone" "" "$(local_route)"

section "the drain deadline"
write_cfg 300
start_vipgate "$cfg" || abort "vipgate starts again"
in_client curl -sS --max-time 20 -H 'Host: blog.example.test' -o /dev/null \
  -w '%{http_code}\n' "http://$VIP/slow?ms=4000" >"$slow_out" 2>&1 &
slow_pid=$!
vg_track "$slow_pid"
sleep 0.5
t0=$(now_ms)
kill -TERM "$VG_PID"
vg_wait_gone 40 "$VG_PID" || true
took=$(($(now_ms) - t0))
stop_vipgate
if ((took < 2000)); then pass "with drain_timeout_ms = 300 a 4 s request does not hold the stop ($took ms)"; else fail "with drain_timeout_ms = 300 vipgate took $took ms to exit"; fi
assert_contains "the log reports the connection cut at the deadline" "$(vg_log_text)" "drain deadline passed"
wait "$slow_pid" || true
vg_forget "$slow_pid"

section "vipgate release after kill -9"
write_cfg 10000
start_vipgate "$cfg" || abort "vipgate starts again"
kill_vipgate
assert_match "kill -9 leaves the local route behind" "$(local_route)" "local ${VIP//./\\.} dev lo.*"
vipgate_cmd release --config "$cfg"
assert_eq "release exits 0" 0 "$CMD_RC"
assert_eq "release says what it removed" "$VIP: removed the local route a previous run left" "$CMD_OUT"
assert_eq "the route is gone" "" "$(local_route)"
vipgate_cmd release --config "$cfg"
assert_eq "a second release has nothing to do" "0 $VIP: nothing to release" "$CMD_RC $CMD_OUT"

summary
