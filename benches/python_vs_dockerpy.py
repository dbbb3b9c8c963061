"""LibGo's Python SDK against docker-py (PyPI `docker`) on the same dockerd.

    python benches/python_vs_dockerpy.py [--containers 200] [--cycles 10]

Measures (1) listing N containers and (2) a create/start/stop/remove cycle, and prints
each side's median and the ratio docker-py / LibGo (above 1: LibGo is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Callable

import docker

import libgo

IMAGE = "libgo-test/busybox:latest"
IDLE = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm up
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def report(what: str, ours: float, theirs: float, their_name: str) -> None:
    print(f"{what:<44} libgo {ours:8.2f} ms   {their_name} {theirs:8.2f} ms   ratio {theirs / ours:5.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--containers", type=int, default=200)
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--runs", type=int, default=15)
    opts = ap.parse_args()

    run = uuid.uuid4().hex[:8]
    label = f"io.libgo.bench={run}"
    lg = libgo.Client({"docker": "required", "kvm": "off"})
    dc = docker.from_env()
    ids = []
    try:
        for i in range(opts.containers):
            ids.append(dc.api.create_container(IMAGE, IDLE, name=f"bench-{run}-{i}", labels={"io.libgo.bench": run})["Id"])
        flt = {"labels": {"io.libgo.bench": run}}

        def lg_list() -> None:
            assert len(lg.list_all(flt)) == opts.containers

        def dp_list() -> None:
            assert len(dc.containers.list(all=True, filters={"label": label})) == opts.containers

        def dp_list_sparse() -> None:
            assert len(dc.containers.list(all=True, sparse=True, filters={"label": label})) == opts.containers

        def dp_list_api() -> None:
            assert len(dc.api.containers(all=True, filters={"label": label})) == opts.containers

        ours = median_ms(lg_list, opts.runs)
        report(f"list {opts.containers} containers (containers.list)", ours, median_ms(dp_list, max(3, opts.runs // 5)), "docker-py")
        report(f"list {opts.containers} containers (sparse=True)", ours, median_ms(dp_list_sparse, opts.runs), "docker-py")
        report(f"list {opts.containers} containers (low-level api)", ours, median_ms(dp_list_api, opts.runs), "docker-py")

        n = 0

        def lg_cycle() -> None:
            nonlocal n
            n += 1
            name = f"cyc-{run}-lg-{n}"
            lg.create({"name": name, "kind": "container", "image": IMAGE, "command": IDLE})
            lg.start(name)
            lg.stop(name, timeout_secs=5)
            lg.delete(name)

        def dp_cycle() -> None:
            nonlocal n
            n += 1
            c = dc.containers.create(IMAGE, IDLE, name=f"cyc-{run}-dp-{n}")
            c.start()
            c.stop(timeout=5)
            c.remove()

        report("create/start/stop/remove cycle", median_ms(lg_cycle, opts.cycles), median_ms(dp_cycle, opts.cycles), "docker-py")
    finally:
        for cid in ids:
            dc.api.remove_container(cid, force=True)


if __name__ == "__main__":
    main()
