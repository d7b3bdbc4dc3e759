"""Benchmark: one 4 GiB file sent with JavaScript on through Debian Chromium to `guwah serve`.

A file of random bytes (``--gib``, default 4) is written to a temp dir, a real ``guwah serve``
(SQLite, one X25519 desk) listens on 127.0.0.1, and headless Chromium submits it from the
witness page: encryption in the Web Worker, tus upload, commit. Prints the wall time from
Send to the receipt, MB/s (10**6 bytes/s of plaintext), the page's performance marks, the
largest RSS growth of any Chromium process (budget: 256 MiB, docs/browser-uploads.md) and
the server's peak RSS. Then the stored ciphertext is decrypted with the ``age`` CLI and must
give the original SHA-256 followed by zero padding up to the Padmé length.

    .venv/bin/python bench/bench_big_upload.py [--gib 4] [--mib N] [--jitless] [--dir DIR]

Loopback only. Bounded time: ``--timeout`` seconds for the upload (default 1800). Needs about
twice the file size free on the work dir's disk. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from big_upload import make_file, submit_file, verify_stored  # noqa: E402
from conftest import run_guwah_server  # noqa: E402

MiB = 1 << 20
BUDGET = 256 * MiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gib", type=float, default=4.0, help="file size in GiB (default 4)")
    ap.add_argument("--mib", type=int, default=0, help="file size in MiB (overrides --gib)")
    ap.add_argument("--jitless", action="store_true", help="Chromium with --js-flags=--jitless")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed for the upload")
    args = ap.parse_args()
    size = args.mib * MiB if args.mib else int(args.gib * 1024) * MiB

    base = Path(tempfile.mkdtemp(prefix="guwah-bench-big-", dir=args.dir))
    base.chmod(0o700)
    try:
        src = base / "video.bin"
        t0 = time.monotonic()
        sha = make_file(src, size)
        print(f"file: {size} bytes ({size / MiB:.0f} MiB), sha256 {sha[:16]}… "
              f"written in {time.monotonic() - t0:.1f} s", flush=True)
        with run_guwah_server(base, "sqlite:///unused") as server:
            run = submit_file(server.url, server.pid, src, base / "profile",
                              jitless=args.jitless, timeout_s=args.timeout)
            t0 = time.monotonic()
            stored = verify_stored(server.data_dir, server.database_url, server.identity_file,
                                   size, sha)
            verify_s = time.monotonic() - t0
        mode = "jitless" if args.jitless else "JIT"
        print(f"mode: Chromium with {mode}")
        print(f"send -> receipt: {run.seconds:8.1f} s  {size / 1e6 / run.seconds:7.1f} MB/s"
              f"  (slow prompt: {run.warning or 'none'})")
        for name, ms in sorted(run.marks.items()):
            print(f"  {name:<28} {ms / 1000:8.1f} s")
        print("Chromium RSS growth per process (peak - before Send):")
        for name, grown in sorted(run.growth.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<28} {grown / MiB:8.1f} MiB")
        verdict = "within" if run.largest_growth <= BUDGET else "OVER"
        print(f"largest Chromium growth: {run.largest_growth / MiB:.1f} MiB "
              f"({verdict} the {BUDGET // MiB} MiB budget)")
        print(f"server peak RSS: {run.server_peak / MiB:.1f} MiB")
        print(f"stored ciphertext: {stored} bytes; age -d gives the original SHA-256 and zero "
              f"padding (checked in {verify_s:.1f} s)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
