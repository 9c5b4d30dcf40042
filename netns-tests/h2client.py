#!/usr/bin/python3
"""An HTTP/2 client for vipgate's namespace tests, over cleartext (prior knowledge) or TLS.

    h2client.py [--tls --ca FILE --sni NAME] HOST PORT COMMAND ARGS...

Built on the `h2` library (Debian python3-h2), with its own checks off where a test must send
what a well-behaved client never would; raw frames come from `hyperframe`, which `h2` uses.
Every command prints one line per result, so the shell test can compare them:

  streams AUTHORITY PATH [AUTHORITY PATH ...]
      Open one stream per pair on ONE connection, all at once; print, in order,
      `status=N backend=NAME proto=... body_len=N` (or `reset=CODE`) per stream.
  post AUTHORITY PATH SIZE [--no-length] [--frames N]
      Send SIZE bytes of body (with content-length unless --no-length, in N DATA frames);
      print `status=N sha=HEX len=N` of the response body (backend.py's echo returns it).
  headers AUTHORITY PATH NAME=VALUE...
      One GET with the extra fields as given (raw: upper case, connection-specific fields and
      whitespace allowed); print `status=N` or `reset=CODE` or `goaway=CODE`.
  length-mismatch AUTHORITY PATH DECLARED SENT
      A POST whose content-length says DECLARED and whose DATA carries SENT bytes.
  rapid-reset AUTHORITY PATH COUNT
      Open and at once reset COUNT streams (CVE-2023-44487); print how the connection ended
      (`goaway=CODE after=N` or `open after=N`), N the streams sent before it ended.
  continuation-flood AUTHORITY COUNT
      One HEADERS frame without END_HEADERS, then COUNT CONTINUATION frames of 1 KiB of
      fields each, never ending; print `goaway=CODE` or `closed` or `open`, and the bytes sent.
  ping-flood COUNT / settings-flood COUNT
      COUNT PING (or SETTINGS) frames without reading; print how the connection ended.
  slow AUTHORITY PATH
      One GET, print `status=N` when the response ends, and `goaway=CODE` if a GOAWAY came
      while it was in flight (a graceful stop).
"""

import argparse
import hashlib
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import hpack
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame, SettingsFrame

TIMEOUT = 10


def connect(args):
    sock = socket.create_connection((args.host, args.port), timeout=TIMEOUT)
    if args.tls:
        ctx = ssl.create_default_context(cafile=args.ca)
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname=args.sni)
        if sock.selected_alpn_protocol() != "h2":
            print(f"alpn={sock.selected_alpn_protocol()}")
            sys.exit(0)
    cfg = h2.config.H2Configuration(
        client_side=True,
        header_encoding="utf-8",
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=cfg)
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def request_headers(args, authority, path, method="GET", extra=()):
    scheme = "https" if args.tls else "http"
    return [(":method", method), (":scheme", scheme), (":authority", authority), (":path", path), *extra]


class Streams:
    """Responses by stream id, filled from the connection's events."""

    def __init__(self, sock, conn):
        self.sock, self.conn = sock, conn
        self.status, self.body, self.reset, self.ended = {}, {}, {}, set()
        self.goaway = None
        self.closed = False

    def pump(self, until, deadline, send=True):
        while not until() and time.monotonic() < deadline and not self.closed:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                break
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                print(f"client-protocol-error={type(e).__name__}")
                self.closed = True
                break
            for ev in events:
                self.handle(ev)
            out = self.conn.data_to_send() if send else b""
            if out:
                try:
                    self.sock.sendall(out)
                except OSError:
                    self.closed = True

    def handle(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            self.status[ev.stream_id] = dict(ev.headers).get(":status", "?")
        elif isinstance(ev, h2.events.DataReceived):
            self.body.setdefault(ev.stream_id, bytearray()).extend(ev.data)
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.ended.add(ev.stream_id)
        elif isinstance(ev, h2.events.StreamReset):
            self.reset[ev.stream_id] = ev.error_code
            self.ended.add(ev.stream_id)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev.error_code

    def line(self, sid):
        if sid in self.reset:
            return f"reset={code_name(self.reset[sid])}"
        if sid not in self.status:
            return "goaway=" + code_name(self.goaway) if self.goaway is not None else "none"
        text = bytes(self.body.get(sid, b"")).decode("utf-8", "replace")
        first = text.split("\n", 1)[0]
        fields = dict(kv.split("=", 1) for kv in first.split() if "=" in kv)
        return f"status={self.status[sid]} backend={fields.get('backend', '-')} body_len={len(self.body.get(sid, b''))}"


def code_name(code):
    try:
        return h2.errors.ErrorCodes(code).name
    except (ValueError, TypeError):
        return str(code)


def cmd_streams(args, sock, conn):
    pairs = list(zip(args.rest[0::2], args.rest[1::2]))
    s = Streams(sock, conn)
    ids = []
    for authority, path in pairs:
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, request_headers(args, authority, path), end_stream=True)
        ids.append(sid)
    sock.sendall(conn.data_to_send())
    s.pump(lambda: all(i in s.ended for i in ids), time.monotonic() + TIMEOUT)
    for i in ids:
        print(s.line(i))


def send_body(sock, conn, s, sid, body, frames):
    step = max(1, -(-len(body) // frames))
    chunks = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
    for n, chunk in enumerate(chunks):
        last = n == len(chunks) - 1
        while True:
            room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
            piece, chunk = chunk[:room], chunk[room:]
            if piece or (last and not chunk):
                conn.send_data(sid, piece, end_stream=last and not chunk)
                sock.sendall(conn.data_to_send())
            if not chunk:
                break
            s.pump(lambda: conn.local_flow_control_window(sid) > 0 or sid in s.ended,
                   time.monotonic() + TIMEOUT)
            if sid in s.ended or s.closed:
                return


def cmd_post(args, sock, conn):
    authority, path, size = args.rest[0], args.rest[1], int(args.rest[2])
    opts = args.rest[3:]
    frames = int(opts[opts.index("--frames") + 1]) if "--frames" in opts else 4
    body = bytes((i * 7 + 3) % 251 for i in range(size))
    extra = [] if "--no-length" in opts else [("content-length", str(size))]
    s = Streams(sock, conn)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_headers(args, authority, path, "POST", extra), end_stream=False)
    sock.sendall(conn.data_to_send())
    send_body(sock, conn, s, sid, body, frames)
    s.pump(lambda: sid in s.ended, time.monotonic() + TIMEOUT)
    got = bytes(s.body.get(sid, b""))
    if sid in s.reset or sid not in s.status:
        print(s.line(sid))
        return
    same = "same" if got == body else "differs"
    print(f"status={s.status[sid]} len={len(got)} body={same} sha={hashlib.sha256(got).hexdigest()[:12]}")


def cmd_headers(args, sock, conn):
    authority, path = args.rest[0], args.rest[1]
    extra = [tuple(kv.split("=", 1)) for kv in args.rest[2:]]
    s = Streams(sock, conn)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_headers(args, authority, path, extra=extra), end_stream=True)
    sock.sendall(conn.data_to_send())
    s.pump(lambda: sid in s.ended or s.goaway is not None, time.monotonic() + TIMEOUT)
    if s.goaway is not None and sid not in s.status:
        print(f"goaway={code_name(s.goaway)}")
    else:
        print(s.line(sid))


def cmd_length_mismatch(args, sock, conn):
    authority, path, declared, sent = args.rest[0], args.rest[1], args.rest[2], int(args.rest[3])
    s = Streams(sock, conn)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_headers(args, authority, path, "POST", [("content-length", declared)]))
    conn.send_data(sid, b"x" * sent, end_stream=True)
    sock.sendall(conn.data_to_send())
    s.pump(lambda: sid in s.ended or s.goaway is not None, time.monotonic() + TIMEOUT)
    print(s.line(sid))


def ended_how(s, sent_label):
    s.pump(lambda: False, time.monotonic() + 2)
    if s.goaway is not None:
        return f"goaway={code_name(s.goaway)} {sent_label}"
    return f"{'closed' if s.closed else 'open'} {sent_label}"


def cmd_rapid_reset(args, sock, conn):
    authority, path, count = args.rest[0], args.rest[1], int(args.rest[2])
    s = Streams(sock, conn)
    sent = 0
    for _ in range(count):
        try:
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, request_headers(args, authority, path), end_stream=True)
            conn.reset_stream(sid)
            sock.sendall(conn.data_to_send())
        except (OSError, h2.exceptions.ProtocolError):
            break
        sent += 1
        if sent % 50 == 0:
            s.pump(lambda: False, time.monotonic() + 0.01)
            if s.goaway is not None or s.closed:
                break
    print(ended_how(s, f"after={sent}"))


def raw_send(sock, frames):
    try:
        sock.sendall(b"".join(f.serialize() for f in frames))
        return True
    except OSError:
        return False


def cmd_continuation_flood(args, sock, conn):
    authority, count = args.rest[0], int(args.rest[1])
    s = Streams(sock, conn)
    enc = hpack.Encoder()
    sid = conn.get_next_available_stream_id()
    first = HeadersFrame(sid)
    first.data = enc.encode(request_headers(args, authority, "/"))
    sent = 0
    if raw_send(sock, [first]):
        for i in range(count):
            c = ContinuationFrame(sid)
            c.data = enc.encode([(f"x-flood-{i}", "v" * 1000)])
            if not raw_send(sock, [c]):
                break
            sent += len(c.data)
            if i % 64 == 0:
                # Reading only: a SETTINGS ACK now would break the header block in two.
                s.pump(lambda: False, time.monotonic() + 0.01, send=False)
                if s.goaway is not None or s.closed:
                    break
    print(ended_how(s, f"bytes={sent}"))


def cmd_flood(args, sock, conn, kind):
    count = int(args.rest[0])
    s = Streams(sock, conn)
    sent = 0
    frame = PingFrame(0) if kind == "ping" else SettingsFrame(0)
    if kind == "ping":
        frame.opaque_data = b"12345678"
    batch = frame.serialize() * 100
    sock.settimeout(2)
    while sent < count:
        try:
            sock.sendall(batch)
        except (OSError, socket.timeout):
            break
        sent += 100
    print(ended_how(s, f"sent={sent}"))


def cmd_slow(args, sock, conn):
    authority, path = args.rest[0], args.rest[1]
    s = Streams(sock, conn)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_headers(args, authority, path), end_stream=True)
    sock.sendall(conn.data_to_send())
    print("sent", flush=True)
    s.pump(lambda: sid in s.ended, time.monotonic() + TIMEOUT)
    goaway = f" goaway={code_name(s.goaway)}" if s.goaway is not None else ""
    print(s.line(sid) + goaway)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca")
    p.add_argument("--sni")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("command")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    args = p.parse_args()
    sock, conn = connect(args)
    commands = {
        "streams": cmd_streams,
        "post": cmd_post,
        "headers": cmd_headers,
        "length-mismatch": cmd_length_mismatch,
        "rapid-reset": cmd_rapid_reset,
        "continuation-flood": cmd_continuation_flood,
        "ping-flood": lambda a, s, c: cmd_flood(a, s, c, "ping"),
        "settings-flood": lambda a, s, c: cmd_flood(a, s, c, "settings"),
        "slow": cmd_slow,
    }
    commands[args.command](args, sock, conn)


if __name__ == "__main__":
    main()
