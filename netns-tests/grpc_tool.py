#!/usr/bin/python3
"""A real gRPC server and client (grpcio, Debian python3-grpcio) for vipgate's namespace tests.

    grpc_tool.py serve --name NAME --bind IP --port PORT
    grpc_tool.py call  --target IP:PORT --authority HOST CASE

The service `test.Echo` carries raw bytes (no protobuf needed):
  Unary         answers `REQUEST from NAME`; a request `fail` is answered with status
                NOT_FOUND and details `no such thing`, in the trailers as gRPC does.
  ServerStream  answers a request `N` with N messages `K/N from NAME`.
  ClientStream  answers the messages it got, joined with `+`, once the client ends.
  Bidi          answers each message as it arrives (`echo MSG from NAME`); the client sends
                the next only after the answer to the last (a real conversation).
  Slow          answers after the number of milliseconds in the request.

`call` CASE prints one line per result:
  unary       `unary=OK value`            fail      `fail=NOT_FOUND details`
  server      `server=N last`             client    `client=joined`
  bidi        `bidi=N last`               deadline  `deadline=CODE` (a 300 ms deadline, Slow 2000)
  many N      `many=OK N` after N unary calls on one channel (one connection, many streams)
"""

import argparse
import sys
import time
from concurrent import futures

import grpc

SERVICE = "test.Echo"


def server(args):
    name = args.name.encode()

    def unary(req, ctx):
        if req == b"fail":
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        return req + b" from " + name

    def server_stream(req, ctx):
        n = int(req)
        for k in range(1, n + 1):
            yield f"{k}/{n} from {args.name}".encode()

    def client_stream(it, ctx):
        return b"+".join(it)

    def bidi(it, ctx):
        for m in it:
            yield b"echo " + m + b" from " + name

    def slow(req, ctx):
        deadline = time.monotonic() + int(req) / 1000
        while time.monotonic() < deadline and ctx.is_active():
            time.sleep(0.01)
        return b"late"

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    }
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    srv.add_insecure_port(f"{args.bind}:{args.port}")
    srv.start()
    print("serving", flush=True)
    srv.wait_for_termination()


def call(args):
    opts = [("grpc.default_authority", args.authority)]
    with grpc.insecure_channel(args.target, options=opts) as ch:
        m = lambda kind, method: getattr(ch, kind)(f"/{SERVICE}/{method}")
        case = args.case[0]
        try:
            if case == "unary":
                print("unary=OK", m("unary_unary", "Unary")(b"hello", timeout=10).decode())
            elif case == "fail":
                try:
                    m("unary_unary", "Unary")(b"fail", timeout=10)
                    print("fail=OK")
                except grpc.RpcError as e:
                    print(f"fail={e.code().name} {e.details()}")
            elif case == "server":
                got = list(m("unary_stream", "ServerStream")(b"50", timeout=10))
                print(f"server={len(got)} {got[-1].decode() if got else '-'}")
            elif case == "client":
                msgs = iter([b"a", b"b", b"c", b"d"])
                print("client=" + m("stream_unary", "ClientStream")(msgs, timeout=10).decode())
            elif case == "bidi":
                import queue

                q = queue.Queue()
                q.put(b"m0")

                def gen():
                    while True:
                        item = q.get()
                        if item is None:
                            return
                        yield item

                answers = []
                for resp in m("stream_stream", "Bidi")(gen(), timeout=10):
                    answers.append(resp.decode())
                    k = len(answers)
                    q.put(f"m{k}".encode() if k < 20 else None)
                print(f"bidi={len(answers)} {answers[-1] if answers else '-'}")
            elif case == "deadline":
                try:
                    m("unary_unary", "Slow")(b"2000", timeout=0.3)
                    print("deadline=OK")
                except grpc.RpcError as e:
                    print(f"deadline={e.code().name}")
            elif case == "many":
                n = int(args.case[1])
                f = m("unary_unary", "Unary")
                ok = 0
                for _ in range(n):
                    if f(b"x", timeout=10).startswith(b"x from "):
                        ok += 1
                print(f"many=OK {ok}")
        except grpc.RpcError as e:
            print(f"{case}={e.code().name} {e.details()}")
            sys.exit(0)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--name", required=True)
    s.add_argument("--bind", required=True)
    s.add_argument("--port", type=int, required=True)
    c = sub.add_parser("call")
    c.add_argument("--target", required=True)
    c.add_argument("--authority", required=True)
    c.add_argument("case", nargs="+")
    args = p.parse_args()
    server(args) if args.cmd == "serve" else call(args)


if __name__ == "__main__":
    main()
