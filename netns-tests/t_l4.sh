#!/usr/bin/env bash
# Layer 4 through the VIP: `protocol = "tcp"` listeners forwarding whole connections to python
# TCP echo servers. 64 MiB go through byte for byte both ways; connections spread over the
# pool and survive a dead backend; `send_proxy_protocol = "v2"` tells the backend the client's
# address; `accept_proxy_protocol` takes the client address from a v1 or v2 header sent by a
# trusted peer and closes connections without one or from untrusted peers. The throughput
# through vipgate and direct to a backend is printed, not judged (speed lives in benchmarks).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

lan_up 2
client_add_ip 192.0.2.11

echo_start 0 7000 || abort "echo server on be1:7000"
echo_start 1 7000 || abort "echo server on be2:7000"
echo_start 0 7001 --proxy v2 || abort "PROXY v2 echo server on be1:7001"

cfg=$VG_TMP/l4.toml
cat >"$cfg" <<EOF
[[vip]]
address = "$VIP"
interface = "eth0"

[[listener]]
bind = "$VIP:5000"
protocol = "tcp"
pool = "echo"

[[listener]]
bind = "$VIP:5001"
protocol = "tcp"
pool = "echo_pp"
send_proxy_protocol = "v2"

[[listener]]
bind = "$VIP:5002"
protocol = "tcp"
pool = "echo_pp"
send_proxy_protocol = "v2"
accept_proxy_protocol = true

[proxy]
trusted_proxies = ["$CLIENT_IP/32"]
head_timeout_ms = 1000

[pool.echo]
backends = ["192.0.2.21:7000", "192.0.2.22:7000"]
[pool.echo_pp]
backends = ["192.0.2.21:7001"]
EOF
start_vipgate "$cfg" || abort "vipgate starts and logs ready"
xfer() { client_tool tcp-xfer "$@"; } # --target IP:PORT --bytes N [...]

section "64 MiB through the VIP, byte for byte both ways"
out=$(xfer --target "$VIP:5000" --bytes $((64 * 1024 * 1024)) --timeout 30)
note "via vipgate: $out"
assert_match "64 MiB up and the same 64 MiB back" "$out" 'local=192\.0\.2\.10:[0-9]+ sent=67108864 received=67108864 match=yes seconds=.*'
# Throughput is measured by scripts/bench (iperf3, beside HAProxy), not here.

section "connections spread over the pool, and survive a dead backend"
b1=$(echo_conns be1-7000) b2=$(echo_conns be2-7000)
ok=0
for ((k = 0; k < 6; k++)); do
  [[ $(xfer --target "$VIP:5000" --bytes 100000) == *" match=yes "* ]] && ok=$((ok + 1))
done
assert_eq "6 more connections, all echoed exactly" 6 "$ok"
assert_eq "round robin: 3 new connections on each echo server" "3 3" "$(($(echo_conns be1-7000) - b1)) $(($(echo_conns be2-7000) - b2))"
assert_contains "the backend sees connections from the lb" "$(cat "$VG_TMP/echo-be1-7000.log")" "conn from $LB_IP:"
kill -KILL "${ECHO_PID[1]}" 2>/dev/null || true
wait "${ECHO_PID[1]}" 2>/dev/null || true
vg_forget "${ECHO_PID[1]}"
ok=0
for ((k = 0; k < 6; k++)); do
  [[ $(xfer --target "$VIP:5000" --bytes 100000) == *" match=yes "* ]] && ok=$((ok + 1))
done
assert_eq "be2's echo killed: 6 connections still all echoed (connect failure tried on be1)" 6 "$ok"

section "send_proxy_protocol = v2: the backend learns the client's address"
out=$(xfer --target "$VIP:5001" --bytes 1000000 --first-line)
note "$out"
port=$(sed -n 's/^local=192\.0\.2\.10:\([0-9]*\) .*/\1/p' <<<"$out")
assert_match "the v2 header names the client (its port too) and the VIP:5001; the stream follows intact" "$out" \
  "local=192\\.0\\.2\\.10:${port:-x} first=\\[proxy=v2 src=192\\.0\\.2\\.10:${port:-x} dst=192\\.0\\.2\\.200:5001\\] sent=1000000 received=1000000 match=yes .*"

section "accept_proxy_protocol: a header from a trusted peer is believed, nothing else passes"
out=$(xfer --target "$VIP:5002" --bytes 1000000 --first-line --prefix 'PROXY TCP4 203.0.113.7 192.0.2.200 40000 5002\r\n')
assert_match "v1 header from the trusted client: the backend sees 203.0.113.7:40000" "$out" \
  '.* first=\[proxy=v2 src=203\.0\.113\.7:40000 dst=192\.0\.2\.200:5002\] sent=1000000 received=1000000 match=yes .*'
# v2: signature, version 2 PROXY, TCP over IPv4, 12 address bytes: 203.0.113.8:40001 -> VIP:5002.
v2='\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x08\xc0\x00\x02\xc8\x9c\x41\x13\x8a'
out=$(xfer --target "$VIP:5002" --bytes 1000000 --first-line --prefix "$v2")
assert_match "v2 header from the trusted client: the backend sees 203.0.113.8:40001" "$out" \
  '.* first=\[proxy=v2 src=203\.0\.113\.8:40001 dst=192\.0\.2\.200:5002\] sent=1000000 received=1000000 match=yes .*'
before=$(echo_conns be1-7001)
out=$(xfer --target "$VIP:5002" --bytes 1000)
note "without a header: $out"
assert_match "no PROXY header: closed, nothing echoed" "$out" '.* received=0 match=no.*'
out=$(xfer --target "$VIP:5002" --bytes 1000 --source 192.0.2.11 --prefix 'PROXY TCP4 203.0.113.7 192.0.2.200 40000 5002\r\n')
note "from an untrusted peer: $out"
assert_match "a valid v1 header from an untrusted peer (192.0.2.11): closed, nothing echoed" "$out" 'local=192\.0\.2\.11:.* received=0 match=no.*'
t0=$(now_ms)
out=$(client_tool raw --target "$VIP:5002" --data '' --timeout 5 --linger 3)
assert_eq "a trusted peer that sends nothing is closed after head_timeout_ms" "none closed" "$out"
note "silent connection closed after $(($(now_ms) - t0)) ms (head_timeout_ms 1000, tool start included)"
assert_eq "none of the refused connections reached the backend" "$before" "$(echo_conns be1-7001)"

stop_vipgate
summary
