#!/usr/bin/env python3
"""A stand-in backend for vipgate's namespace tests: a small, real HTTP/1.1 server.

    backend.py --name NAME --bind IP --port PORT

Every response says which backend answered it, so a test can tell where vipgate routed a
request:

    backend=NAME method=GET host=HOSTHEADER path=/x body_len=N peer=IP

(`peer` is the address the request came from: which vipgate node proxied it.)

- Request bodies are read with Content-Length or `Transfer-Encoding: chunked`.
- A path whose last segment is `echo` answers with the request body itself.
- A path whose last segment is `chunked` answers with a chunked response of CHUNKS chunks
  (`chunk K/CHUNKS backend=NAME xxxx…` lines, then `done backend=NAME`), flushed one by one.
- A path `…/status/NNN` answers with status NNN (and the usual line as body).
- A path whose last segment is `slow` answers after a pause of `ms` milliseconds (query
  `?ms=N`, default 1000, at most 60000): an in-flight request for drain and reload tests.
- A path whose last segment is `headers` answers with the usual line, then every request
  header field as received (`Name: value` lines), so a test can see what vipgate forwarded
  (X-Real-IP, X-Forwarded-For, the framing fields…).
- A path whose last segment is `ws`, asked to upgrade to `websocket`, completes the RFC 6455
  handshake, sends a text frame `hello from NAME`, then echoes every text or binary frame
  until the client's close frame, which it answers with a close frame.
- `--delay-ms MS` makes every answer wait MS milliseconds first (a slow backend).
- Connections are kept alive (HTTP/1.1) unless the client asks otherwise.
Nothing is printed per request.
"""

import argparse
import base64
import hashlib
import struct
import socket
import sys
import time
from urllib.parse import parse_qs
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNKS = 5
CHUNK_PAD = 1000
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class BadRequest(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vipgate-test-backend"
    name = "backend"
    delay = 0.0
    # Head and body leave in separate writes; with Nagle the body would wait for the proxy's
    # delayed ACK (40 ms a response), which makes request loops crawl.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    # --- request body -------------------------------------------------------------------

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if te:
            if te.strip().lower() != "chunked":
                raise BadRequest("unsupported transfer-encoding " + te)
            return self.read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
        except ValueError:
            raise BadRequest("bad content-length") from None
        if n < 0:
            raise BadRequest("bad content-length")
        return self.read_exact(n)

    def read_exact(self, n):
        data = b""
        while len(data) < n:
            part = self.rfile.read(n - len(data))
            if not part:
                raise BadRequest("body ended early")
            data += part
        return data

    def read_line(self):
        line = self.rfile.readline(65537)
        if not line.endswith(b"\n"):
            raise BadRequest("chunked body ended early")
        return line

    def read_chunked(self):
        parts = []
        while True:
            size_line = self.read_line().split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise BadRequest("bad chunk size") from None
            if size == 0:
                break
            parts.append(self.read_exact(size))
            if self.read_line().strip():
                raise BadRequest("chunk not followed by CRLF")
        while self.read_line().strip():  # trailers, up to the empty line
            pass
        return b"".join(parts)

    # --- responses ----------------------------------------------------------------------

    def send_body(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", self.name)
        # Head and body in one write (as servers using writev do): a backend killed mid-way then
        # either sent nothing, which a proxy may retry, or the whole response; with two writes a
        # kill between them leaves a started response that nobody can retry.
        if self.command != "HEAD":
            self._headers_buffer.append(b"\r\n" + body)
            self.flush_headers()
        else:
            self.end_headers()

    def send_chunked(self, first_line):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Backend", self.name)
        self.end_headers()
        if self.command == "HEAD":
            return
        pieces = [first_line]
        for k in range(1, CHUNKS + 1):
            pieces.append(f"chunk {k}/{CHUNKS} backend={self.name} {'x' * CHUNK_PAD}\n".encode())
        pieces.append(f"done backend={self.name}\n".encode())
        for piece in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
            time.sleep(0.02)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # --- WebSocket (RFC 6455) --------------------------------------------------------------

    def ws_read_frame(self):
        """(opcode, payload) of the next client frame; None at EOF. Client frames must be masked."""
        head = self.rfile.read(2)
        if len(head) < 2:
            return None
        opcode = head[0] & 0x0F
        if not head[1] & 0x80:
            raise BadRequest("unmasked client frame")
        n = head[1] & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self.read_exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self.read_exact(8))
        mask = self.read_exact(4)
        data = self.read_exact(n)
        return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    def ws_send_frame(self, opcode, payload):
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        self.wfile.write(head + payload)
        self.wfile.flush()

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        if not key or self.headers.get("Upgrade", "").lower() != "websocket":
            self.send_body(400, f"backend={self.name} error=not a websocket handshake\n".encode())
            return
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.close_connection = True
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.ws_send_frame(0x1, f"hello from {self.name}".encode())
        try:
            while True:
                frame = self.ws_read_frame()
                if frame is None:
                    return
                opcode, payload = frame
                if opcode == 0x8:
                    self.ws_send_frame(0x8, payload[:2])
                    return
                if opcode in (0x1, 0x2):
                    self.ws_send_frame(opcode, payload)
                elif opcode == 0x9:
                    self.ws_send_frame(0xA, payload)
        except (BadRequest, OSError):
            return

    def handle_any(self):
        if self.delay:
            time.sleep(self.delay)
        if self.path.split("?", 1)[0].rstrip("/").endswith("/ws"):
            self.websocket()
            return
        try:
            body = self.read_body()
        except BadRequest as e:
            self.close_connection = True
            self.send_body(400, f"backend={self.name} error={e}\n".encode())
            return
        path = self.path
        segments = path.split("?", 1)[0].rstrip("/").split("/")
        line = "backend={} method={} host={} path={} body_len={} peer={}\n".format(
            self.name,
            self.command,
            self.headers.get("Host", "-"),
            path,
            len(body),
            self.client_address[0],
        ).encode()
        last = segments[-1] if segments else ""
        if last == "echo":
            self.send_body(200, body, "application/octet-stream")
        elif last == "chunked":
            self.send_chunked(line)
        elif last == "slow":
            query = parse_qs(path.split("?", 1)[1]) if "?" in path else {}
            try:
                ms = min(int(query.get("ms", ["1000"])[0]), 60000)
            except ValueError:
                ms = 1000
            time.sleep(ms / 1000)
            self.send_body(200, line)
        elif last == "headers":
            fields = "".join(f"{k}: {v}\n" for k, v in self.headers.items())
            self.send_body(200, line + fields.encode())
        elif len(segments) >= 2 and segments[-2] == "status" and last.isdigit():
            self.send_body(int(last), line)
        else:
            self.send_body(200, line)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = handle_any


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--name", required=True)
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--delay-ms", type=int, default=0, help="wait this long before every answer")
    args = p.parse_args()

    handler = type("NamedHandler", (Handler,), {"name": args.name, "delay": args.delay_ms / 1000})
    # socketserver's default backlog of 5 drops SYNs under load tests (then a 1 s or 3 s
    # retransmit looks like a proxy stall, or a connect timeout becomes a 502).
    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
    server_class = type(
        "Server", (ThreadingHTTPServer,), {"request_queue_size": 1024, "address_family": family}
    )
    server = server_class((args.bind, args.port), handler)
    server.daemon_threads = True
    print(f"backend {args.name} listening on {args.bind}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
