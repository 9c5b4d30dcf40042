#!/usr/bin/env python3
"""Failover prober for vipgate's HA tests: how long the VIP went unanswered.

    prober.py probe --target IP:PORT|[IPV6]:PORT --host NAME --interval-ms 10 --duration S [--timeout S]
    prober.py outage FILE --old IP --new IP

`probe` starts one HTTP/1.1 request (a new connection each) every interval, whether or not
the earlier ones finished, for DURATION seconds (at most 60), and prints one line per probe,
in start order, as each one ends:

    START_MS END_MS RESULT

RESULT is the `peer=` the test backend reports (the address of the vipgate node that
proxied the request) or `fail:REASON`. Probes that never answer are abandoned after TIMEOUT
seconds (default 3), so a lost SYN shows as one slow probe while the later ones go on.

`outage` reads such a file and prints `outage_ms=N old_after=N new=N old=N fails=N`:
the time from the last answer through the old node to the first answer through the new
one (0 if they overlap), how many answers through the old node came after that first new
one, and the counts. `outage_ms=none` if the new node never answered.
"""

import argparse
import asyncio
import re
import sys
import time

MAX_DURATION = 60.0
PEER = re.compile(rb"peer=([0-9a-fA-F.:]+)")


async def probe_once(ip, port, host, timeout):
    request = (
        f"GET /probe HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    ).encode()

    async def run():
        reader, writer = await asyncio.open_connection(ip, port)
        try:
            writer.write(request)
            await writer.drain()
            data = await reader.read(65536)
            while True:
                more = await reader.read(65536)
                if not more:
                    break
                data += more
        finally:
            writer.close()
        if not data.startswith(b"HTTP/1.1 200"):
            return "fail:" + (data.split(b"\r\n", 1)[0].decode(errors="replace").replace(" ", "_") or "empty")
        m = PEER.search(data)
        return m.group(1).decode() if m else "fail:no-peer"

    try:
        return await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        return "fail:timeout"
    except OSError as e:
        return "fail:" + (e.strerror or type(e).__name__).replace(" ", "_")


async def probe(args):
    ip, _, port = args.target.rpartition(":")
    ip = ip.strip("[]")  # [2001:db8::200]:80
    duration = min(args.duration, MAX_DURATION)
    interval = args.interval_ms / 1000.0
    t0 = time.monotonic()
    count = int(duration / interval)

    async def one(start):
        result = await probe_once(ip, int(port), args.host, args.timeout)
        end = time.monotonic()
        print(f"{(start - t0) * 1000:.1f} {(end - t0) * 1000:.1f} {result}", flush=True)

    tasks = []
    for i in range(count):
        due = t0 + i * interval
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(time.monotonic())))
    await asyncio.gather(*tasks)


def outage(args):
    rows = []
    with open(args.file) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                rows.append((float(parts[0]), float(parts[1]), parts[2]))
    new_ends = [end for _, end, r in rows if r == args.new]
    old_ends = [end for _, end, r in rows if r == args.old]
    fails = sum(1 for _, _, r in rows if r.startswith("fail:"))
    if not new_ends:
        print(f"outage_ms=none old_after=0 new=0 old={len(old_ends)} fails={fails}")
        return
    first_new = min(new_ends)
    before = [e for e in old_ends if e <= first_new]
    after = [e for e in old_ends if e > first_new]
    gap = first_new - max(before) if before else first_new
    print(
        f"outage_ms={max(0, round(gap))} old_after={len(after)} new={len(new_ends)} "
        f"old={len(old_ends)} fails={fails}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--target", required=True)
    p.add_argument("--host", default="ha.example.test")
    p.add_argument("--interval-ms", type=float, default=10.0)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--timeout", type=float, default=3.0)
    o = sub.add_parser("outage")
    o.add_argument("file")
    o.add_argument("--old", required=True)
    o.add_argument("--new", required=True)
    args = parser.parse_args()
    if args.cmd == "probe":
        if args.interval_ms < 1:
            sys.exit("--interval-ms must be at least 1")
        asyncio.run(probe(args))
    else:
        outage(args)


if __name__ == "__main__":
    main()
