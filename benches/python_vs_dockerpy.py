"""LibGo's Python SDK against docker-py (PyPI `docker`) on the same dockerd.

    python3 benches/python_vs_dockerpy.py [--containers 200] [--cycles 10] [--runs 15]

Measures (1) listing N containers and (2) a create/start/stop/remove cycle, and prints
each side's median, the ratio docker-py / LibGo (above 1: LibGo is faster) and a 95 %
bootstrap interval of the per-round ratio (the contenders alternate within each round).

It benchmarks the release build, as `pip install` gives users: unless it already runs in
that environment, it creates a venv at `$CARGO_TARGET_DIR/bench-venv` (default
`target/bench-venv`), installs `maturin` and `docker` into it, builds and installs
`./bindings/python` with `pip install` (maturin's default, the release profile), and runs
itself again there. `--no-build` skips that and uses the `libgo` importable now.

Both sides stop with timeout 0 (`StopOptions.timeoutSecs = 0`, docker-py's `timeout=0`):
the idle command exits on SIGTERM anyway, so neither side waits for a grace period.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "libgo-test/busybox:latest"
IDLE = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]


def ensure_release_build() -> None:
    """Re-runs this script in a venv holding the release build of the module."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    venv = target / "bench-venv"
    py = venv / "bin" / "python"
    if Path(sys.prefix).resolve() == venv.resolve():
        return
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "maturin>=1.9,<2", "docker"], check=True)
    env = dict(os.environ, CARGO_TARGET_DIR=str(target), PATH=f"{venv / 'bin'}:{os.environ['PATH']}")
    env.pop("MATURIN_PEP517_ARGS", None)  # maturin's default: the release profile
    print(f"building the release module into {venv} …", file=sys.stderr)
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-build-isolation", "--force-reinstall", "--no-deps",
         str(ROOT / "bindings" / "python")],
        check=True,
        env=env,
    )
    os.execv(str(py), [str(py), __file__, *sys.argv[1:]])


def timed_ms(fns: list[Callable[[], object]], runs: int) -> list[list[float]]:
    """Each function's times. The functions take turns within every round, so that load
    from elsewhere on the machine falls on all of them alike."""
    for fn in fns:
        fn()  # warm up
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, s in zip(fns, samples):
            t0 = time.perf_counter()
            fn()
            s.append((time.perf_counter() - t0) * 1000)
    return samples


def ratio_interval(ours: list[float], theirs: list[float], draws: int = 2000) -> tuple[float, float]:
    """A 95 % interval for the median of the per-round ratios theirs/ours (bootstrap over
    rounds): an interval above 1 means LibGo is faster beyond the noise of the machine."""
    ratios = [t / o for o, t in zip(ours, theirs)]
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def report(what: str, ours: list[float], theirs: list[float], their_name: str) -> None:
    o, t = statistics.median(ours), statistics.median(theirs)
    low, high = ratio_interval(ours, theirs)
    print(
        f"{what:<48} libgo {o:8.2f} ms   {their_name} {t:8.2f} ms   "
        f"ratio {t / o:5.2f}x  (per round {low:.2f}–{high:.2f}, 95 %)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--containers", type=int, default=200)
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--no-build", action="store_true", help="use the libgo module importable now")
    opts = ap.parse_args()
    if not opts.no_build:
        ensure_release_build()

    import docker

    import libgo

    run = uuid.uuid4().hex[:8]
    label = f"test.libgo.bench={run}"
    lg = libgo.Client({"docker": "required", "kvm": "off"})
    dc = docker.from_env()
    ids = []
    try:
        for i in range(opts.containers):
            ids.append(dc.api.create_container(IMAGE, IDLE, name=f"bench-{run}-{i}", labels={"test.libgo.bench": run})["Id"])
        flt: libgo.types.InstanceFilter = {"labels": {"test.libgo.bench": run}}

        def lg_list() -> None:
            assert len(lg.list_all(flt)) == opts.containers

        def dp_list() -> None:
            assert len(dc.containers.list(all=True, filters={"label": label})) == opts.containers

        def dp_list_sparse() -> None:
            assert len(dc.containers.list(all=True, sparse=True, filters={"label": label})) == opts.containers

        def dp_list_api() -> None:
            assert len(dc.api.containers(all=True, filters={"label": label})) == opts.containers

        n = opts.containers
        ours, sparse, api = timed_ms([lg_list, dp_list_sparse, dp_list_api], opts.runs)
        ours_few, full = timed_ms([lg_list, dp_list], max(3, opts.runs // 5))  # containers.list inspects each one
        report(f"list {n} containers (vs containers.list)", ours_few, full, "docker-py")
        report(f"list {n} containers (vs sparse=True)", ours, sparse, "docker-py")
        report(f"list {n} containers (vs low-level api)", ours, api, "docker-py")

        k = 0

        def lg_cycle() -> None:
            nonlocal k
            k += 1
            name = f"cyc-{run}-lg-{k}"
            lg.create({"name": name, "kind": "container", "image": IMAGE, "command": IDLE})
            lg.start(name)
            lg.stop(name, timeout_secs=0)
            lg.delete(name)

        def dp_cycle() -> None:
            nonlocal k
            k += 1
            c = dc.containers.create(IMAGE, IDLE, name=f"cyc-{run}-dp-{k}")
            c.start()
            c.stop(timeout=0)
            c.remove()

        def dp_cycle_api() -> None:
            nonlocal k
            k += 1
            cid = dc.api.create_container(IMAGE, IDLE, name=f"cyc-{run}-da-{k}")["Id"]
            dc.api.start(cid)
            dc.api.stop(cid, timeout=0)
            dc.api.remove_container(cid)

        ours, high, low = timed_ms([lg_cycle, dp_cycle, dp_cycle_api], opts.cycles)
        report("create/start/stop/remove (vs containers.*)", ours, high, "docker-py")
        report("create/start/stop/remove (vs low-level api)", ours, low, "docker-py")
    finally:
        for cid in ids:
            dc.api.remove_container(cid, force=True)
        for c in dc.containers.list(all=True, filters={"name": f"cyc-{run}-"}):
            c.remove(force=True)


if __name__ == "__main__":
    main()
