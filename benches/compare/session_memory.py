"""Server memory across many short sessions: RSS after N × (connect, SELECT 1, close).

Starts the server binary on a scratch tiny world, opens sessions one after another with a
minimal PostgreSQL protocol client (no driver needed), and prints the resident memory
before and after. A session that is not freed when it closes shows as growth per session.

Usage: python3 benches/compare/session_memory.py [sessions]   (FLASHSQL_BINARY overrides
the binary, default target/release/flashsql)
"""

import os
import socket
import struct
import subprocess
import sys
import tempfile

BINARY = os.environ.get("FLASHSQL_BINARY", "target/release/flashsql")


def session(host, port):
    s = socket.create_connection((host, port))
    params = b"user\0flashsql\0database\0flashsql\0\0"
    s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    query = b"SELECT 1\0"
    wait_ready(s)
    s.sendall(b"Q" + struct.pack("!i", 4 + len(query)) + query)
    wait_ready(s)
    s.sendall(b"X" + struct.pack("!i", 4))
    s.close()


def wait_ready(s):
    buf = b""
    while True:
        while len(buf) < 5:
            buf += s.recv(65536)
        kind, length = buf[0:1], struct.unpack("!i", buf[1:5])[0]
        while len(buf) < 1 + length:
            buf += s.recv(65536)
        buf = buf[1 + length:]
        if kind == b"E":
            raise RuntimeError("server error")
        if kind == b"Z":
            return


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [BINARY, "serve", "--data-dir", os.path.join(tmp, "data"), "--scale", "tiny",
             "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            for line in proc.stdout:
                if " is ready on " in line:
                    host, port = line.split(" is ready on ")[1].split()[0].rsplit(":", 1)
                    break
            port = int(port)
            for _ in range(50):
                session(host, port)
            before = rss_mib(proc.pid)
            for _ in range(n):
                session(host, port)
            after = rss_mib(proc.pid)
            print(f"{n} sessions: RSS {before:.1f} MiB -> {after:.1f} MiB "
                  f"({(after - before) * 1024 / n:.1f} KiB per session)")
        finally:
            proc.kill()


if __name__ == "__main__":
    main()
