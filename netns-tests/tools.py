#!/usr/bin/env python3
"""Clients and a TCP server for vipgate's namespace tests (python stdlib only).

    tools.py load      --target IP:PORT --host H [--path P] --requests N [--conns C] [--seconds S]
                       [--header 'K: V']... [--users U]
    tools.py raw       --target IP:PORT --data 'ESCAPED'... [--responses K] [--show]
    tools.py slowloris --target IP:PORT --host H [--conns N] [--interval S] [--seconds S]
    tools.py ws        --target IP:PORT --host H [--path /ws] [--messages K]
    tools.py tcp-echo  --bind IP --port P [--proxy v2]
    tools.py tcp-xfer  --target IP:PORT --bytes N [--prefix 'ESCAPED'] [--first-line] [--source IP]

Every client is bounded in requests and seconds, prints one result line (`key=value` words, or
JSON for `load`) and exits 0 when it could run at all; judging the result is the test's job.
ESCAPED arguments are Python bytes escapes (`\\r\\n`, `\\x00`), so a test can write exact bytes.
"""

import argparse
import base64
import codecs
import collections
import hashlib
import http.client
import json
import os
import socket
import struct
import sys
import threading
import time

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def unescape(s):
    return codecs.escape_decode(s.encode())[0]


def split_target(t):
    host, port = t.rsplit(":", 1)
    return host, int(port)


# --- load: keep-alive requests from C connections -----------------------------------------


def cmd_load(a):
    host, port = split_target(a.target)
    headers = dict(h.split(":", 1) for h in a.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    headers["Host"] = a.host
    lock = threading.Lock()
    counter = [0]
    status = collections.Counter()
    backends = collections.Counter()
    errors = collections.Counter()
    users = collections.defaultdict(collections.Counter)
    first_errors = []
    deadline = time.monotonic() + a.seconds
    latencies = []

    def next_index():
        with lock:
            if counter[0] >= a.requests or time.monotonic() >= deadline:
                return None
            counter[0] += 1
            return counter[0] - 1

    def worker():
        conn = http.client.HTTPConnection(host, port, timeout=a.timeout)
        while True:
            i = next_index()
            if i is None:
                break
            h = dict(headers)
            user = None
            if a.users:
                user = f"user{i % a.users}"
                h["X-User"] = user
            t0 = time.monotonic()
            try:
                conn.request("GET", a.path, headers=h)
                r = conn.getresponse()
                r.read()
                be = r.getheader("X-Backend") or "-"
                with lock:
                    status[r.status] += 1
                    backends[be] += 1
                    latencies.append(time.monotonic() - t0)
                    if user is not None:
                        users[user][be] += 1
                    if r.status != 200 and len(first_errors) < 5:
                        first_errors.append(f"request {i}: status {r.status}")
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    errors[type(e).__name__] += 1
                    if len(first_errors) < 5:
                        first_errors.append(f"request {i}: {type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=a.timeout)
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(a.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    latencies.sort()
    out = {
        "sent": counter[0],
        "ok": status.get(200, 0),
        "errors": sum(errors.values()),
        "status": {str(k): v for k, v in sorted(status.items())},
        "backends": dict(sorted(backends.items())),
        "error_kinds": dict(errors),
        "first_errors": first_errors,
        "seconds": round(elapsed, 3),
        "max_latency_ms": round(latencies[-1] * 1000, 1) if latencies else None,
    }
    if a.users:
        out["users"] = {u: dict(c) for u, c in sorted(users.items())}
    print(json.dumps(out))


# --- raw: exact bytes in one write, then read the responses -------------------------------


class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def fill(self):
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        except socket.timeout:
            raise
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def line(self):
        while b"\n" not in self.buf:
            if not self.fill():
                raise EOFError("eof in line")
        i = self.buf.index(b"\n") + 1
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def exact(self, n):
        while len(self.buf) < n:
            if not self.fill():
                raise EOFError("eof in body")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def rest(self):
        while self.fill():
            pass
        data, self.buf = self.buf, b""
        return data


def read_response(r, head_request=False):
    """(status, headers dict lower-case, body) of one response; 1xx are returned as they come."""
    status_line = r.line()
    parts = status_line.split()
    code = int(parts[1])
    headers = {}
    while True:
        line = r.line()
        if line in (b"\r\n", b"\n"):
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    if 100 <= code < 200 or code in (204, 304) or head_request:
        return code, headers, b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(r.line().split(b";")[0].strip(), 16)
            if size == 0:
                while r.line() not in (b"\r\n", b"\n"):
                    pass
                return code, headers, body
            body += r.exact(size)
            r.line()
    if "content-length" in headers:
        return code, headers, r.exact(int(headers["content-length"]))
    return code, headers, r.rest()


def raw_one(a, data):
    host, port = split_target(a.target)
    s = socket.create_connection((host, port), timeout=a.timeout)
    s.sendall(unescape(data))
    r = Reader(s)
    codes, bodies = [], []
    try:
        while len([c for c in codes if c >= 200]) < a.responses:
            code, _, body = read_response(r)
            codes.append(code)
            bodies.append(body)
    except (EOFError, ValueError, IndexError, socket.timeout, ConnectionResetError):
        pass
    # A refused request is followed by the server closing; a kept connection stays open.
    s.settimeout(a.linger)
    try:
        closed = r.eof or not r.fill()
    except socket.timeout:
        closed = False
    except OSError:
        closed = True
    print(" ".join(str(c) for c in codes) or "none", "closed" if closed else "open", flush=True)
    if a.show:
        for b in bodies:
            sys.stdout.write(b.decode("latin-1"))
    s.close()


def cmd_raw(a):
    # Several --data: one connection and one result line each, in order.
    for data in a.data:
        raw_one(a, data)


# --- slowloris: partial heads trickled byte by byte ---------------------------------------


def cmd_slowloris(a):
    host, port = split_target(a.target)
    results = [None] * a.conns

    def one(i):
        t0 = time.monotonic()
        s = socket.create_connection((host, port), timeout=a.seconds)
        s.sendall(f"GET /slow/{i} HTTP/1.1\r\nHost: {a.host}\r\nX-Trickle: ".encode())
        s.settimeout(a.interval)
        got = b""
        sent = 0
        while time.monotonic() - t0 < a.seconds:
            try:
                data = s.recv(4096)
                if not data:
                    break
                got += data
            except socket.timeout:
                try:
                    s.sendall(b"a")
                    sent += 1
                except OSError:
                    break
            except OSError:
                break
        else:
            results[i] = ("none", round(time.monotonic() - t0, 2), "open", sent)
            s.close()
            return
        line = got.split(b"\r\n", 1)[0].split()
        code = line[1].decode() if len(line) > 1 else "none"
        results[i] = (code, round(time.monotonic() - t0, 2), "closed", sent)
        s.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(a.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = collections.Counter(r[0] for r in results)
    closed = sum(1 for r in results if r[2] == "closed")
    times = [r[1] for r in results]
    print(
        "statuses=" + ",".join(f"{k}x{v}" for k, v in sorted(codes.items())),
        f"closed={closed}/{a.conns}",
        f"min_s={min(times)} max_s={max(times)}",
        f"trickled_bytes={sum(r[3] for r in results)}",
    )


# --- ws: a WebSocket client (RFC 6455) ----------------------------------------------------


def ws_send(s, opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    s.sendall(head + mask + masked)


def ws_recv(r):
    b0, b1 = r.exact(2)
    if b1 & 0x80:
        raise ValueError("server frame is masked")
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", r.exact(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", r.exact(8))
    return b0 & 0x0F, r.exact(n)


def cmd_ws(a):
    host, port = split_target(a.target)
    s = socket.create_connection((host, port), timeout=a.timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    s.sendall(
        (
            f"GET {a.path} HTTP/1.1\r\nHost: {a.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    r = Reader(s)
    out = []
    try:
        code, headers, _ = read_response(r)
        out.append(f"status={code}")
        out.append("accept=" + ("ok" if headers.get("sec-websocket-accept") == want else "bad"))
        if code != 101:
            print(" ".join(out))
            return
        op, hello = ws_recv(r)
        out.append("hello=" + hello.decode().replace(" ", "_"))
        echoed = 0
        for i in range(a.messages):
            msg = f"message {i} from the client".encode()
            ws_send(s, 0x1, msg)
            op, back = ws_recv(r)
            echoed += op == 0x1 and back == msg
        out.append(f"echoed={echoed}/{a.messages}")
        big = os.urandom(70000)  # a 64-bit length frame
        ws_send(s, 0x2, big)
        op, back = ws_recv(r)
        out.append("big=" + ("ok" if op == 0x2 and back == big else "bad"))
        ws_send(s, 0x8, struct.pack("!H", 1000))
        op, back = ws_recv(r)
        out.append("close=" + ("ok" if op == 0x8 and back[:2] == struct.pack("!H", 1000) else "bad"))
        s.settimeout(2)
        out.append("eof=" + ("yes" if not r.fill() else "no"))
    except (EOFError, OSError, ValueError) as e:
        out.append(f"error={type(e).__name__}")
    print(" ".join(out))


# --- tcp-echo: the layer-4 backend --------------------------------------------------------


def read_proxy_v2(conn):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    head = b""
    while len(head) < 16:
        part = conn.recv(16 - len(head))
        if not part:
            raise EOFError
        head += part
    if head[:12] != sig:
        return "proxy=none"
    n = struct.unpack("!H", head[14:16])[0]
    body = b""
    while len(body) < n:
        part = conn.recv(n - len(body))
        if not part:
            raise EOFError
        body += part
    ver_cmd, fam = head[12], head[13]
    if ver_cmd != 0x21 or fam != 0x11:
        return f"proxy=v2 ver_cmd={ver_cmd:#x} fam={fam:#x}"
    src, dst = socket.inet_ntoa(body[0:4]), socket.inet_ntoa(body[4:8])
    sport, dport = struct.unpack("!HH", body[8:12])
    return f"proxy=v2 src={src}:{sport} dst={dst}:{dport}"


def cmd_tcp_echo(a):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((a.bind, a.port))
    srv.listen(128)
    print(f"tcp-echo listening on {a.bind}:{a.port}", file=sys.stderr, flush=True)

    def serve(conn, peer):
        try:
            if a.proxy == "v2":
                line = read_proxy_v2(conn)
                print(f"conn from {peer[0]}:{peer[1]} {line}", file=sys.stderr, flush=True)
                conn.sendall(line.encode() + b"\n")
            else:
                print(f"conn from {peer[0]}:{peer[1]}", file=sys.stderr, flush=True)
            buf = bytearray(256 * 1024)
            view = memoryview(buf)
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                conn.sendall(view[:n])
            conn.shutdown(socket.SHUT_WR)
        except (OSError, EOFError):
            pass
        finally:
            conn.close()

    while True:
        conn, peer = srv.accept()
        threading.Thread(target=serve, args=(conn, peer), daemon=True).start()


# --- tcp-xfer: N random bytes through an echo, compared -----------------------------------


def cmd_tcp_xfer(a):
    host, port = split_target(a.target)
    data = os.urandom(a.bytes)
    want = hashlib.sha256(data).hexdigest()
    t0 = time.monotonic()
    s = socket.create_connection(
        (host, port), timeout=a.timeout, source_address=(a.source, 0) if a.source else None
    )
    out = [f"local={s.getsockname()[0]}:{s.getsockname()[1]}"]
    prefix = unescape(a.prefix) if a.prefix else b""
    send_error = []

    def sender():
        try:
            if prefix:
                s.sendall(prefix)
            view = memoryview(data)
            for off in range(0, len(data), 1 << 20):
                s.sendall(view[off : off + (1 << 20)])
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            send_error.append(type(e).__name__)

    t = threading.Thread(target=sender)
    t.start()
    got = hashlib.sha256()
    received = 0
    pending = b""
    first = None
    try:
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            if a.first_line and first is None:
                pending += chunk
                if b"\n" not in pending:
                    continue
                first, chunk = pending.split(b"\n", 1)
            received += len(chunk)
            got.update(chunk)
    except OSError as e:
        out.append(f"recv_error={type(e).__name__}")
    t.join()
    secs = time.monotonic() - t0
    s.close()
    if a.first_line:
        out.append("first=[" + (first.decode("latin-1") if first is not None else "") + "]")
    out.append(f"sent={a.bytes} received={received}")
    out.append("match=" + ("yes" if received == a.bytes and got.hexdigest() == want else "no"))
    if send_error:
        out.append(f"send_error={send_error[0]}")
    out.append(f"seconds={secs:.3f} MBps={a.bytes / secs / 1e6:.1f}")
    print(" ".join(out))


def cmd_dns_servfail(a):
    """A name server that answers every UDP query SERVFAIL (RFC 1035 4.1.1: RCODE 2), with the
    query's id and question: the upstream a test gives dnsmasq to make it answer SERVFAIL."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a.bind, a.port))
    print(f"listening on {a.bind}:{a.port}", flush=True)
    while True:
        q, peer = s.recvfrom(4096)
        if len(q) < 12:
            continue
        # QR=1, opcode and RD copied, RA=1, RCODE=2; one question, nothing else.
        flags = 0x8000 | (q[2] << 8 & 0x7900) | 0x0080 | 2
        end = 12
        while end < len(q) and q[end] != 0:
            end += q[end] + 1
        question = q[12 : end + 5]
        s.sendto(q[:2] + flags.to_bytes(2, "big") + b"\x00\x01" + b"\x00" * 6 + question, peer)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    q = sub.add_parser("load")
    q.add_argument("--target", required=True)
    q.add_argument("--host", required=True)
    q.add_argument("--path", default="/")
    q.add_argument("--requests", type=int, required=True)
    q.add_argument("--conns", type=int, default=1)
    q.add_argument("--seconds", type=float, default=30)
    q.add_argument("--timeout", type=float, default=5)
    q.add_argument("--header", action="append", default=[])
    q.add_argument("--users", type=int, default=0, help="set X-User: user(i mod U)")
    q.set_defaults(fn=cmd_load)

    q = sub.add_parser("raw")
    q.add_argument("--target", required=True)
    q.add_argument("--data", required=True, action="append")
    q.add_argument("--responses", type=int, default=1)
    q.add_argument("--timeout", type=float, default=5)
    q.add_argument("--linger", type=float, default=0.5, help="how long to wait for a close")
    q.add_argument("--show", action="store_true")
    q.set_defaults(fn=cmd_raw)

    q = sub.add_parser("slowloris")
    q.add_argument("--target", required=True)
    q.add_argument("--host", required=True)
    q.add_argument("--conns", type=int, default=1)
    q.add_argument("--interval", type=float, default=0.2)
    q.add_argument("--seconds", type=float, default=5)
    q.set_defaults(fn=cmd_slowloris)

    q = sub.add_parser("ws")
    q.add_argument("--target", required=True)
    q.add_argument("--host", required=True)
    q.add_argument("--path", default="/ws")
    q.add_argument("--messages", type=int, default=5)
    q.add_argument("--timeout", type=float, default=5)
    q.set_defaults(fn=cmd_ws)

    q = sub.add_parser("tcp-echo")
    q.add_argument("--bind", required=True)
    q.add_argument("--port", type=int, required=True)
    q.add_argument("--proxy", choices=["none", "v2"], default="none")
    q.set_defaults(fn=cmd_tcp_echo)

    q = sub.add_parser("dns-servfail")
    q.add_argument("--bind", required=True)
    q.add_argument("--port", type=int, required=True)
    q.set_defaults(fn=cmd_dns_servfail)

    q = sub.add_parser("tcp-xfer")
    q.add_argument("--target", required=True)
    q.add_argument("--bytes", type=int, required=True)
    q.add_argument("--prefix", default="")
    q.add_argument("--first-line", action="store_true")
    q.add_argument("--source", default="", help="local address to connect from")
    q.add_argument("--timeout", type=float, default=10)
    q.set_defaults(fn=cmd_tcp_xfer)

    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
