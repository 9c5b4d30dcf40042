#!/usr/bin/env python3
"""The receiving end of sd_notify for tests: a real unix datagram socket, as systemd gives one.

    notify_sink.py PATH

Binds PATH (removed first if it exists) and prints each datagram on one line, as
`EPOCH_MS ASSIGNMENT|ASSIGNMENT|...`, flushed at once. Prints `listening` on stderr once bound.
Runs until killed.
"""

import os
import socket
import sys
import time


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    print("listening", file=sys.stderr, flush=True)
    while True:
        data = sock.recv(4096)
        text = data.decode("utf-8", "replace").rstrip("\n").replace("\n", "|")
        print(f"{int(time.time() * 1000)} {text}", flush=True)


if __name__ == "__main__":
    main()
