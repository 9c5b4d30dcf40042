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
- Connections are kept alive (HTTP/1.1) unless the client asks otherwise.
Nothing is printed per request.
"""

import argparse
import sys
import time
from urllib.parse import parse_qs
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNKS = 5
CHUNK_PAD = 1000


class BadRequest(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vipgate-test-backend"
    name = "backend"

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
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

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

    def handle_any(self):
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
    args = p.parse_args()

    handler = type("NamedHandler", (Handler,), {"name": args.name})
    # socketserver's default backlog of 5 drops SYNs under load tests (then a 1 s or 3 s
    # retransmit looks like a proxy stall, or a connect timeout becomes a 502).
    server_class = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 1024})
    server = server_class((args.bind, args.port), handler)
    server.daemon_threads = True
    print(f"backend {args.name} listening on {args.bind}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
