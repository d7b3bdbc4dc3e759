"""Benchmark: ``guwah-editor decrypt`` of one big file vs Go ``age -d`` of the same file.

Runs, alternating, best of --runs each (real subprocesses, page cache warm):

- ``guwah-editor decrypt BIG`` end to end (Python start, the deliberate scrypt keyring unlock
  at the default work factor, read → decrypt → write pipeline, one fsync of the file and one
  of the folder);
- ``guwah-editor decrypt TINY`` (a 1-byte file): the fixed cost of start + unlock, measured in
  the same run and subtracted to give the data path;
- ``age -d -o OUT BIG``.

Prints wall seconds and CPU seconds (user+sys of the child, from wait4: less sensitive to other
load on the machine), ratio = age time / our time (>= 1.0: we are as fast or faster), for the
data path and end to end.

    .venv/bin/python bench/bench_decrypt.py [--mib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nacl.signing import SigningKey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.crypto import X25519Identity  # noqa: E402
from app.crypto.passphrase import DEFAULT_WORK_FACTOR  # noqa: E402
from app.editor.keyring import Keyring, create_keyring  # noqa: E402

AGE = "/usr/bin/age"
PASSPHRASE = "benchmark passphrase, not secret"


def run(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        sys.exit(f"benchmark command failed: {cmd[:4]}")
    return wall, usage.ru_utime + usage.ru_stime


def ours(work: Path, src: Path) -> tuple[float, float]:
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    return run([sys.executable, "-c", "from app.editor.cli import main; main()", "decrypt",
                str(src), "--out", str(out), "--keyring", str(work / "keyring"),
                "--passphrase-file", str(work / "pass.txt")])


def go(work: Path, src: Path) -> tuple[float, float]:
    out = work / "go.out"
    out.unlink(missing_ok=True)
    return run([AGE, "-d", "-i", str(work / "key.txt"), "-o", str(out), str(src)])


def setup(work: Path, mib: int) -> tuple[Path, Path]:
    ident = X25519Identity.generate()
    create_keyring(work / "keyring", Keyring("bench", ident, SigningKey.generate()),
                   PASSPHRASE, DEFAULT_WORK_FACTOR)
    (work / "pass.txt").write_text(PASSPHRASE + "\n")
    (work / "key.txt").write_text(str(ident) + "\n")
    plain = work / "plain.bin"
    with plain.open("wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(1 << 20))
    big, tiny = work / "big.bin.age", work / "tiny.bin.age"
    recipient = str(ident.recipient())
    subprocess.run([AGE, "-r", recipient, "-o", str(big), str(plain)], check=True)
    subprocess.run([AGE, "-r", recipient, "-o", str(tiny)], input=b"x", check=True)
    plain.unlink()
    return big, tiny


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not os.path.exists(AGE):
        sys.exit("Go age is not installed: apt-get install age")
    work = Path(tempfile.mkdtemp(prefix="guwah-bench-decrypt-", dir="/var/tmp"))
    try:
        big, tiny = setup(work, args.mib)
        rows: dict[str, list[tuple[float, float]]] = {"big": [], "tiny": [], "age": []}
        for _ in range(args.runs):  # alternate: the machine may be shared
            rows["tiny"].append(ours(work, tiny))
            rows["big"].append(ours(work, big))
            rows["age"].append(go(work, big))
        best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in rows.items()}
        (big_w, big_c), (tiny_w, tiny_c), (age_w, age_c) = best["big"], best["tiny"], best["age"]
        data_w, data_c = big_w - tiny_w, big_c - tiny_c
        mb = args.mib * 1.048576
        print(f"file: {args.mib} MiB; best of {args.runs} alternating runs; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'':34} {'wall s':>7} {'MB/s':>6} {'CPU s':>6}")
        print(f"{'guwah-editor decrypt, end to end':34} {big_w:7.2f} {mb / big_w:6.0f} "
              f"{big_c:6.2f}")
        print(f"{'  fixed: start + scrypt unlock':34} {tiny_w:7.2f} {'':6} {tiny_c:6.2f}")
        print(f"{'  data path (difference)':34} {data_w:7.2f} {mb / data_w:6.0f} {data_c:6.2f}")
        print(f"{'age -d':34} {age_w:7.2f} {mb / age_w:6.0f} {age_c:6.2f}")
        print(f"ratio age/ours, data path: wall {age_w / data_w:.2f}x, CPU {age_c / data_c:.2f}x"
              "   (target >= 1.0x)")
        print(f"ratio age/ours, end to end: wall {age_w / big_w:.2f}x, CPU {age_c / big_c:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
