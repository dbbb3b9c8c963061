#!/usr/bin/env python3
"""Containers with a fixed address: through LibGo's address pools against Docker's own CLI.

    python3 benches/address_pools.py [COUNT] [PARALLEL]     (default 50 10)

The same work in one run: COUNT running busybox containers, PARALLEL at a time, each on a
network with an address of its own —
  1. `docker run -d --network N --ip A` on a network made with `docker network create`, the
     addresses chosen by this script (what a user does by hand);
  2. `POST /api/v1/instances` with `"addresses": [{"pool": P}]` to a release `libgo-server`
     (SQLite, local Docker and libvirt), which allocates each address in its database, makes
     the pool's network and runs the container with a static address.
Reports the wall time and per-container p50/p99 of each, and checks that every container got
a distinct address. Needs scripts/docker.sh and scripts/libvirt.sh; build first:
cargo build --release -p libgo-http.
"""
import concurrent.futures as cf
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 50
PARALLEL = int(sys.argv[2]) if len(sys.argv) > 2 else 10
IMAGE = "libgo-test/busybox:latest"
PASSWORD = "bench-password-for-libgo"
RUN = "%06x" % random.randrange(1 << 24)


def sh(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def timed(jobs):
    started = time.monotonic()
    with cf.ThreadPoolExecutor(PARALLEL) as pool:
        each = list(pool.map(lambda job: job(), jobs))
    return time.monotonic() - started, [t for t, _ in each], [a for _, a in each]


def report(what, wall, times):
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"{what}: {COUNT} in {wall:.2f} s ({COUNT / wall:.1f}/s); "
          f"p50 {statistics.median(times) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")


def docker_cli(subnet):
    net = f"bench-ap-{RUN}"
    sh("docker", "network", "create", "--subnet", f"{subnet}.0/24", "--gateway", f"{subnet}.1", net)

    def job(i):
        def run():
            t = time.monotonic()
            name = f"bench-d-{RUN}-{i}"
            sh("docker", "run", "-d", "--name", name, "--label", f"bench-ap={RUN}",
               "--network", net, "--ip", f"{subnet}.{10 + i}", IMAGE, "sleep", "600")
            return time.monotonic() - t, f"{subnet}.{10 + i}"
        return run

    try:
        wall, times, addresses = timed([job(i) for i in range(COUNT)])
    finally:
        ids = sh("docker", "ps", "-aq", "--filter", f"label=bench-ap={RUN}").split()
        if ids:
            sh("docker", "rm", "-f", *ids)
        sh("docker", "network", "rm", net)
    return wall, times, addresses


def libgo(subnet):
    data = tempfile.mkdtemp()
    port = 19000 + random.randrange(1000)
    env = dict(os.environ, LIBGO_DATA_DIR=data, LIBGO_LISTEN=f"127.0.0.1:{port}",
               LIBGO_ADMIN_PASSWORD=PASSWORD, LIBGO_KVM_ACCELERATOR="tcg",
               LIBGO_STATS_INTERVAL_SECS="0", LIBGO_RATE_LIMIT_PER_MINUTE="0")
    server = subprocess.Popen([os.path.join(ROOT, "target/release/libgo-server"), "serve"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def call(method, path, body=None, token=None):
        req = urllib.request.Request(base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=120) as r:
            text = r.read()
            return json.loads(text) if text else None

    pool = f"bench-{RUN}"
    try:
        for _ in range(300):
            try:
                h = call("GET", "/health")
                if sum(b["up"] for b in h["backends"]) == 2:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        token = call("POST", "/api/v1/login", {"username": "admin", "password": PASSWORD})["token"]
        call("POST", "/api/v1/address-pools", {
            "name": pool, "gateway": f"{subnet}.1",
            "ranges": [{"start": f"{subnet}.10", "end": f"{subnet}.250", "prefix": 24}]}, token)

        def job(i):
            def run():
                t = time.monotonic()
                made = call("POST", "/api/v1/instances", {
                    "name": f"bench-l-{RUN}-{i}", "kind": "container", "image": IMAGE,
                    "command": ["sleep", "600"], "labels": {"bench-ap": RUN},
                    "addresses": [{"pool": pool}], "start": True}, token)
                address = next(a for a in made["ipAddresses"] if a.startswith(subnet + "."))
                return time.monotonic() - t, address
            return run

        try:
            wall, times, addresses = timed([job(i) for i in range(COUNT)])
        finally:
            ids = sh("docker", "ps", "-aq", "--filter", f"label=bench-ap={RUN}").split()
            for i in ids:
                try:
                    call("DELETE", f"/api/v1/instances/{i}?force=true", token=token)
                except OSError:
                    pass
            call("DELETE", f"/api/v1/address-pools/{pool}", token=token)
        rss = sh("grep", "VmRSS", f"/proc/{server.pid}/status").split()[1]
        print(f"server RSS after the run: {int(rss) // 1024} MiB")
        return wall, times, addresses
    finally:
        server.terminate()
        server.wait()


def main():
    a, b = random.randrange(100, 200), random.randrange(250)
    wall, times, addresses = docker_cli(f"10.{a}.{b}")
    assert len(set(addresses)) == COUNT
    report("docker run --ip (addresses chosen by hand)", wall, times)
    wall, times, addresses = libgo(f"10.{a}.{(b + 1) % 250}")
    assert len(set(addresses)) == COUNT, "every container got its own address"
    report("libgo-server, addresses from a pool", wall, times)


if __name__ == "__main__":
    main()
