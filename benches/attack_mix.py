#!/usr/bin/env python3
"""The trust-boundaries attack mix against a release libgo-server, measuring what it costs
the server: peak RSS (VmHWM) and database growth. A benchmark, not a test: it reports.

    cargo build --release -p libgo-http --bin libgo-server
    python3 benches/attack_mix.py [--server target/release/libgo-server]

The mix: 1,000 unauthenticated logins with 200 kB user names, 40 parallel wrong passwords
for one user, an exec printing 400 MB, and 100 idle WebSockets. Needs dockerd with the
test image (scripts/docker.sh). Only loopback is used.
"""

import argparse
import base64
import concurrent.futures as cf
import http.client
import json
import os
import socket
import subprocess
import tempfile
import time

PASSWORD = "attack-mix-admin-pw"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, token=None, timeout=600):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def status_of(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024


def db_bytes(data_dir):
    return sum(
        os.path.getsize(os.path.join(data_dir, f))
        for f in ("libgo.db", "libgo.db-wal")
        if os.path.exists(os.path.join(data_dir, f))
    )


def websocket(port, token):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET /api/v1/events?access_token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = s.recv(4096).decode(errors="replace")
    return s, head.split(" ")[1] if " " in head else "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="target/release/libgo-server")
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="libgo-attack-")
    port = free_port()
    env = dict(os.environ, LIBGO_DATA_DIR=data, LIBGO_LISTEN=f"127.0.0.1:{port}",
               LIBGO_ADMIN_PASSWORD=PASSWORD, LIBGO_KVM="false")
    server = subprocess.Popen([args.server, "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if request(port, "GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        _, body = request(port, "POST", "/login", {"username": "admin", "password": PASSWORD})
        admin = json.loads(body)["token"]
        request(port, "POST", "/api/v1/users",
                {"username": "mix-op", "password": "mix-op-password", "role": "operator"}, admin)
        _, body = request(port, "POST", "/login", {"username": "mix-op", "password": "mix-op-password"})
        operator = json.loads(body)["token"]
        time.sleep(1)
        rss0, _ = status_of(server.pid)
        db0 = db_bytes(data)
        print(f"idle after start: RSS {rss0} MiB, database {db0 / 1024:.0f} KiB")

        long = "a" * 200_000
        codes = {}
        with cf.ThreadPoolExecutor(8) as pool:
            for code, _ in pool.map(
                lambda i: request(port, "POST", "/login", {"username": f"{long}{i}", "password": "x"}),
                range(1000),
            ):
                codes[code] = codes.get(code, 0) + 1
        print(f"1,000 logins with 200 kB names: {codes}")

        codes = {}
        with cf.ThreadPoolExecutor(40) as pool:
            for code, _ in pool.map(
                lambda _: request(port, "POST", "/login", {"username": "mix-op", "password": "wrong"}),
                range(40),
            ):
                codes[code] = codes.get(code, 0) + 1
        print(f"40 parallel wrong passwords: {codes}")

        name = f"mix-{os.getpid()}"
        request(port, "POST", "/api/v1/instances",
                {"name": name, "kind": "container", "image": "libgo-test/busybox:latest",
                 "command": ["sleep", "600"], "start": True}, admin)
        t = time.time()
        code, body = request(port, "POST", f"/api/v1/instances/{name}/exec",
                             {"command": ["head", "-c", "400000000", "/dev/zero"]}, admin)
        out = json.loads(body)
        print(f"exec of 400 MB: {code}, {len(out.get('stdout', ''))} bytes back, "
              f"truncated={out.get('truncated')}, {time.time() - t:.1f} s")
        request(port, "DELETE", f"/api/v1/instances/{name}?force=true", None, admin)

        sockets, answers = [], {}
        for i in range(100):
            s, code = websocket(port, admin if i % 2 else operator)
            sockets.append(s)
            answers[code] = answers.get(code, 0) + 1
        time.sleep(2)
        print(f"100 idle WebSockets: {answers}")
        rss, hwm = status_of(server.pid)
        grown = db_bytes(data) - db0
        print(f"after the mix: RSS {rss} MiB, peak RSS {hwm} MiB, database grew {grown / 1024:.0f} KiB")
        for s in sockets:
            s.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
