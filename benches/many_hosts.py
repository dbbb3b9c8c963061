#!/usr/bin/env python3
"""Scale of many hosts through REST: HOSTS simulated hosts (libvirt's test driver, one
connection and one node file each) and INSTANCES VMs placed on them by LibGo's placement.

    python3 benches/many_hosts.py [HOSTS] [INSTANCES]     (default 50 10000)

Starts a release `libgo-server` (no local engines) on a SQLite file of its own, adds the
hosts, creates the VMs in batches of 100 (each item placed: the batch time over its count is
the placement-and-create time per instance), then reads `GET /api/v1/instances` pages of 100
200 times and reports p50/p99, and the server's resident memory after each phase.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTS = int(sys.argv[1]) if len(sys.argv) > 1 else 50
INSTANCES = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
PASSWORD = "bench-password-for-libgo"
# A simulated host: 8 CPUs, 64 GiB, no domains.
NODE_XML = """<node>
  <cpu><mhz>2000</mhz><model>sim</model><nodes>1</nodes><sockets>1</sockets>
    <cores>8</cores><threads>1</threads><active>8</active></cpu>
  <memory>67108864</memory>
</node>
"""


def call(method, url, token=None, body=None):
    req = urllib.request.Request(url, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, data, timeout=600) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "libgo-http", "--bin", "libgo-server"],
        cwd=ROOT,
        check=True,
    )
    data = tempfile.mkdtemp(prefix="libgo-bench-hosts-")
    port = 19000 + os.getpid() % 1000
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, LIBGO_ADMIN_PASSWORD=PASSWORD, LIBGO_RATE_LIMIT_PER_MINUTE="0",
               RUST_LOG="error")
    server = subprocess.Popen(
        [os.path.join(ROOT, "target/release/libgo-server"), "serve", "--no-docker", "--no-kvm",
         "--listen", f"127.0.0.1:{port}", "--data-dir", data],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                call("GET", f"{base}/health")
                break
            except OSError:
                time.sleep(0.1)
        token = call("POST", f"{base}/login", body={"username": "admin", "password": PASSWORD})[
            "token"
        ]
        print(f"server RSS at start: {rss_mib(server.pid):.1f} MiB")

        # One libvirt test driver per host: each URI names a node file of its own
        # (test:///default is one state shared by every connection of a process).
        t0 = time.monotonic()
        for i in range(HOSTS):
            node = os.path.join(data, f"node{i}.xml")
            with open(node, "w") as f:
                f.write(NODE_XML)
            call("POST", f"{base}/api/v1/hosts", token,
                 {"name": f"sim{i}", "libvirt": f"test://{node}"})
        print(f"{HOSTS} hosts added in {time.monotonic() - t0:.1f} s; "
              f"RSS {rss_mib(server.pid):.1f} MiB")

        per_item = []
        made = 0
        while made < INSTANCES:
            count = min(100, INSTANCES - made)
            task = call("POST", f"{base}/api/v1/instances/batch", token, {
                "spec": {"name": "bench", "kind": "vm", "memoryBytes": 16 << 20, "cpus": 1},
                "count": count, "namePattern": "bench-{n}", "first": made + 1,
            })
            started = time.monotonic()
            while True:
                t = call("GET", f"{base}/api/v1/tasks/{task['id']}?wait=60", token)
                if t["status"] != "running":
                    break
            if t["status"] != "finished" or t["result"]["failed"]:
                sys.exit(f"batch failed: {json.dumps(t)[:2000]}")
            per_item.append((time.monotonic() - started) * 1000 / count)
            made += count
        print(f"{made} VMs placed and created: {statistics.median(per_item):.2f} ms per "
              f"instance (median of {len(per_item)} batches), max {max(per_item):.2f} ms; "
              f"RSS {rss_mib(server.pid):.1f} MiB")

        hosts = call("GET", f"{base}/api/v1/hosts?pageSize=100", token)
        spread = sorted(h["instances"]["stopped"] + h["instances"]["running"]
                        for h in hosts["items"] if h["engines"])
        print(f"instances per host: min {spread[0]}, max {spread[-1]}")

        times = []
        for i in range(200):
            page = 1 + i % (made // 100 or 1)
            t1 = time.monotonic()
            call("GET", f"{base}/api/v1/instances?page={page}&pageSize=100", token)
            times.append((time.monotonic() - t1) * 1000)
        times.sort()
        p50 = times[len(times) // 2]
        p99 = times[int(len(times) * 0.99) - 1]
        print(f"GET /api/v1/instances (page of 100 of {made}): p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms; RSS {rss_mib(server.pid):.1f} MiB")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
