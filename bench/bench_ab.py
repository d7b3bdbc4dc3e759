"""Benchmark: JavaScript-off sealing, this checkout against another one, in alternating pairs.

Two ``guwah serve`` run side by side, one on this checkout's code and one on ``--against``'s
(a ``git worktree`` of another commit: its ``app`` package comes first on ``PYTHONPATH``), each
with its own store. The same file is uploaded to each in turn, ``--pairs`` times, the order
flipping every pair. Why this and not two runs of ``bench_sealing.py``: on a shared VM the
machine's speed moves by tens of percent within minutes, more than most changes are worth;
alternating puts the good and bad minutes on both sides. Both stores are made by this
checkout's code, so the two commits must share a store schema. Not a test: nothing is asserted.

    git worktree add /tmp/before HEAD~1
    .venv/bin/python bench/bench_sealing_ab.py --against /tmp/before [--pairs 10] [--mib 256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench_sealing import OK, make_files, setup, upload
from guwah_server import form_token, guwah_serve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", type=Path, required=True, help="the other checkout")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    if not (args.against / "app" / "__init__.py").is_file():
        raise SystemExit(f"{args.against} is not a Guwah checkout (no app/__init__.py)")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as servers:
        work = Path(tmp)
        os.chmod(work, 0o700)
        big, _small = make_files(work, args.mib)
        ports = {}
        for side, pythonpath in (("this", None), ("against", str(args.against.resolve()))):
            home = work / side
            home.mkdir(mode=0o700)
            data, _recipient, _identity = setup(home)
            (home / "tmp").mkdir(mode=0o700)
            env = {"PYTHONPATH": pythonpath} if pythonpath else {}
            _proc, ports[side] = servers.enter_context(guwah_serve(data, home / "tmp", **env))
            url = f"http://127.0.0.1:{ports[side]}"
            upload(ports[side], big, form_token(url), OK)  # warm up
        walls: dict[str, list[float]] = {"this": [], "against": []}
        for pair in range(args.pairs):
            for side in ("this", "against") if pair % 2 == 0 else ("against", "this"):
                token = form_token(f"http://127.0.0.1:{ports[side]}")
                start = time.perf_counter()
                upload(ports[side], big, token, OK)
                walls[side].append(time.perf_counter() - start)
    for side, times in walls.items():
        print(f"{side:8s} best {min(times):.3f} s, median {statistics.median(times):.3f} s "
              f"({', '.join(f'{t:.3f}' for t in times)})")
    ratio = statistics.median(walls["this"]) / statistics.median(walls["against"])
    print(f"median time, this / against: {ratio:.2f}")


if __name__ == "__main__":
    main()
