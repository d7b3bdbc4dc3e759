"""Benchmark: this checkout against another one, in alternating pairs (sealing or ingest).

Two ``guwah serve`` run side by side, one on this checkout's code and one on ``--against``'s
(a ``git worktree`` of another commit: its ``app`` package comes first on ``PYTHONPATH``), each
with its own store. The same job runs on each in turn, ``--pairs`` times, the order flipping
every pair:

* ``sealing``: a JavaScript-off ``POST /submit`` of a ``--mib`` file (``bench_sealing.py``);
* ``ingest``: a tus upload of an age file of ``--mib`` MiB in 8 MiB ``PATCH``\\ es, then its
  termination (``bench_ingest.py``); only the ``PATCH``\\ es are timed.

Each side's time and its server's CPU time for the whole job (all its threads) are printed,
and the ratio of each pair's two times (the steadier figure: a pair's two runs are seconds
apart).
Why this and not two runs of the single benchmark: on a shared VM the machine's speed moves by
tens of percent within minutes, more than most changes are worth; alternating puts the good
and bad minutes on both sides. Both stores are made by this checkout's code, so the two commits
must share a store schema. Not a test: nothing is asserted.

    git worktree add /tmp/before HEAD~1
    .venv/bin/python bench/bench_ab.py --against /tmp/before [--job ingest] [--pairs 10] [--mib N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
import psutil
from bench_ingest import (
    MAX_FILE_BYTES,
    PATCH_MIB,
    TusClient,
    make_age_file,
    make_store,
    patch_file,
)
from bench_sealing import OK, make_files, setup, upload
from floors import cpu_seconds
from guwah_server import form_token, guwah_serve

MiB = 1024 * 1024

Run = Callable[[int], float]  # one job against the server on this port: its timed seconds
Job = tuple[Callable[[Path], Path], Run, dict[str, str]]  # store maker, job, server settings


def sealing(work: Path, mib: int) -> Job:
    """A store maker, and one JavaScript-off upload of the same ``mib`` MiB file."""
    big, _small = make_files(work, mib)

    def make(home: Path) -> Path:
        return setup(home)[0]

    def run(port: int) -> float:
        token = form_token(f"http://127.0.0.1:{port}")
        start = time.perf_counter()
        upload(port, big, token, OK)
        return time.perf_counter() - start

    return make, run, {}


def ingest(work: Path, mib: int) -> Job:
    """A store maker, and one tus upload of the same age file, terminated afterwards."""
    source = work / "source.age"

    def make(home: Path) -> Path:
        data = home / "data"
        data.mkdir(mode=0o700)
        identity = make_store(data)
        if not source.exists():  # the commit is not timed: one desk's key will do for both
            make_age_file(source, mib, identity.recipient())
        return data

    def run(port: int) -> float:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=600) as client:
            tus = TusClient(client, port, form_token(url), PATCH_MIB * MiB)
            location = tus.create(source.stat().st_size, "file-1")
            start = time.perf_counter()
            patch_file(port, location, source, PATCH_MIB * MiB)
            took = time.perf_counter() - start
            tus.delete(location)
        return took

    return make, run, {"GUWAH_MAX_FILE_BYTES": str(MAX_FILE_BYTES)}


JOBS = {"sealing": sealing, "ingest": ingest}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", type=Path, required=True, help="the other checkout")
    parser.add_argument("--job", choices=sorted(JOBS), default="sealing")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    if not (args.against / "app" / "__init__.py").is_file():
        raise SystemExit(f"{args.against} is not a Guwah checkout (no app/__init__.py)")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as servers:
        work = Path(tmp)
        os.chmod(work, 0o700)
        make, run, settings = JOBS[args.job](work, args.mib)
        ports, procs = {}, {}
        for side, pythonpath in (("this", None), ("against", str(args.against.resolve()))):
            home = work / side
            home.mkdir(mode=0o700)
            data = make(home)
            (home / "tmp").mkdir(mode=0o700)
            env = dict(settings)
            if pythonpath:
                env["PYTHONPATH"] = pythonpath
            proc, ports[side] = servers.enter_context(guwah_serve(data, home / "tmp", **env))
            procs[side] = psutil.Process(proc.pid)
            run(ports[side])  # warm up
        walls: dict[str, list[float]] = {"this": [], "against": []}
        cpus: dict[str, list[float]] = {"this": [], "against": []}
        for pair in range(args.pairs):
            for side in ("this", "against") if pair % 2 == 0 else ("against", "this"):
                cpu = cpu_seconds(procs[side])
                walls[side].append(run(ports[side]))
                cpus[side].append(cpu_seconds(procs[side]) - cpu)
    for side, times in walls.items():
        print(f"{side:8s} best {min(times):.3f} s, median {statistics.median(times):.3f} s "
              f"({', '.join(f'{t:.3f}' for t in times)}); server CPU median "
              f"{statistics.median(cpus[side]):.3f} s")
    ratio = statistics.median(walls["this"]) / statistics.median(walls["against"])
    print(f"median time, this / against: {ratio:.2f}; server CPU: "
          f"{statistics.median(cpus['this']) / statistics.median(cpus['against']):.2f}")
    # each pair ran back to back, so its ratio is free of the machine's slower minutes
    pairs = [t / a for t, a in zip(walls["this"], walls["against"], strict=True)]
    print(f"pair by pair, this / against: median {statistics.median(pairs):.2f}, "
          f"{sum(r < 1 for r in pairs)} of {len(pairs)} pairs faster")


if __name__ == "__main__":
    main()
