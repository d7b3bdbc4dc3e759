"""Benchmark: ``guwah-editor import`` of a big export bundle vs Go ``age -d`` over the same files.

Builds, in a temporary folder on the same disk, an X25519 desk's export bundle of N
submissions (a testimony + one attachment each, attachments totalling --gib GiB), encrypted
with app.crypto and packed with app.bundles (signed like ``guwah export`` does). Then times:

- ours: ``guwah-editor import`` (a real subprocess: verifies the signature and every
  ciphertext SHA-256, decrypts, strips padding, checks each witness-side SHA-256, scans for
  risky types, writes and fsyncs the review folder, renames it into place);
- Go:   ``age -d`` (Debian's age) over the same age files, one process per file, from one
  shell loop (it checks no hash, strips no padding, fsyncs nothing).

Prints seconds, MB/s, peak RSS of each (wait4), and ratio = Go time / our time (above 1.0
means we are faster). A second, 8x smaller bundle shows whether our peak memory grows.

    .venv/bin/python bench/bench_import.py [--gib 2] [--subs 200] [--runs 3] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nacl.signing import SigningKey  # noqa: E402

from app.bundles import EXPORT_FORMAT, write_bundle_file  # noqa: E402
from app.crypto import X25519Identity, encrypt, encrypt_stream, padme  # noqa: E402
from app.editor.keyring import Keyring, create_keyring  # noqa: E402
from app.editor.trust import pin_server  # noqa: E402

AGE = "/usr/bin/age"
PASSPHRASE = "benchmark passphrase, not secret"
BLOCK = os.urandom(1 << 20)


class _Plain:
    """A readable of ``size`` pseudo-random bytes then zero padding up to padme(size)."""

    def __init__(self, seed: int, size: int) -> None:
        self.size, self.padded, self.pos, self.seed = size, padme(size), 0, seed
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        if self.pos >= self.padded:
            return b""
        n = self.padded - self.pos if n is None or n < 0 else min(n, self.padded - self.pos)
        out = bytearray()
        while len(out) < n:
            if self.pos < self.size:
                off = self.pos % len(BLOCK)
                take = min(n - len(out), len(BLOCK) - off, self.size - self.pos)
                chunk = BLOCK[off : off + take]
                if off == 0:
                    chunk = self.seed.to_bytes(8, "big") + chunk[8:]
                self.hash.update(chunk)
            else:
                take = min(n - len(out), self.padded - self.pos)
                chunk = bytes(take)
            out += chunk
            self.pos += take
        return bytes(out)


def build(work: Path, total: int, subs: int) -> tuple[Path, Path, list[Path]]:
    """Keyring (pinned server key), the age files, and the signed bundle."""
    ident = X25519Identity.generate()
    ring = Keyring("bench", ident, SigningKey.generate())
    keyring = work / "keyring"
    create_keyring(keyring, ring, PASSPHRASE, 10)
    (work / "pass.txt").write_text(PASSPHRASE + "\n")
    (work / "key.txt").write_text(str(ident) + "\n")
    server = SigningKey.generate()
    pin_server(keyring, bytes(server.verify_key))
    recipients = [ident.recipient()]
    files: list[Path] = []
    entries = []
    sizes = [total // subs + ((i % 3) - 1) * (total // subs // 2) for i in range(subs)]
    sizes[-1] += total - sum(sizes)
    ages = work / "age"
    ages.mkdir()
    for i, size in enumerate(sizes):
        sid = f"bench-{i:04d}"
        plain = _Plain(i, size)
        att = ages / f"{sid}-file-1.age"
        with open(att, "wb") as fh:
            encrypt_stream(plain, fh, recipients)  # type: ignore[arg-type]
        doc = {"format": "guwah-testimony/1", "protection": "browser-encrypted",
               "desk": "bench", "day": "2026-11-26", "testimony": f"testimony {i}",
               "answers": {}, "files": [{"role": "file-1", "name": f"video-{i}.mp4",
                                          "content_type": "video/mp4", "size": size,
                                          "sha256": plain.hash.hexdigest()}],
               "reply_recipient": str(X25519Identity.generate().recipient()),
               "parent_id": None}  # fmt: skip
        body = json.dumps(doc).encode()
        msg = ages / f"{sid}-message.age"
        msg.write_bytes(encrypt(body + b" " * (padme(len(body)) - len(body)), recipients))
        parts = []
        for role, path in (("message", msg), ("file-1", att)):
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
            parts.append(
                {
                    "role": role,
                    "path": f"submissions/{sid}/{role}.age",
                    "size": path.stat().st_size,
                    "sha256": digest.hexdigest(),
                }
            )
            files.append(path)
        entries.append({"id": sid, "day": "2026-11-26", "parent_id": None, "files": parts})
    manifest = {
        "format": EXPORT_FORMAT,
        "server_key": base64.b64encode(bytes(server.verify_key)).decode(),
        "desk": "bench",
        "sequence": 1,
        "day": "2026-11-26",
        "submissions": entries,
    }
    by_member = {p["path"]: ages / f"{e['id']}-{p['role']}.age"
                 for e in entries for p in e["files"]}  # fmt: skip
    bundle = work / "bundle.tar"
    write_bundle_file(bundle, manifest, server, lambda m: open(by_member[m], "rb"))
    return keyring, bundle, files


def run(cmd: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        sys.exit(f"benchmark command failed: {cmd[:3]}")
    return elapsed, usage.ru_maxrss // 1024


def warm(paths: list[Path]) -> None:
    for p in paths:
        with open(p, "rb") as fh:
            while fh.read(1 << 24):
                pass


def ours(work: Path, keyring: Path, bundle: Path, tag: str) -> tuple[float, int]:
    review = work / f"review-{tag}"
    shutil.rmtree(review, ignore_errors=True)
    (keyring / "imports.json").unlink(missing_ok=True)  # forget the previous run's import
    return run(
        [
            sys.executable,
            "-c",
            "from app.editor.cli import main; main()",
            "import",
            str(bundle),
            "--review",
            str(review),
            "--keyring",
            str(keyring),
            "--passphrase-file",
            str(work / "pass.txt"),
        ]
    )


def go(work: Path, files: list[Path]) -> tuple[float, int]:
    out = work / "go-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    script = work / "go.sh"
    lines = ["set -e"] + [
        f'{AGE} -d -i "{work / "key.txt"}" -o "{out / (f.name + ".out")}" "{f}"' for f in files
    ]
    script.write_text("\n".join(lines) + "\n")
    return run(["bash", str(script)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0, help="attachments in total, GiB")
    parser.add_argument("--subs", type=int, default=200, help="submissions in the bundle")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (same disk)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs; best is kept")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="guwah-bench-import-", dir="/var/tmp"))
    base.mkdir(parents=True, exist_ok=True)
    total = int(args.gib * (1 << 30))
    try:
        t0 = time.perf_counter()
        small = base / "small"
        small.mkdir()
        s_keyring, s_bundle, _ = build(small, total // 8, args.subs)
        big = base / "big"
        big.mkdir()
        keyring, bundle, files = build(big, total, args.subs)
        print(f"built bundles in {time.perf_counter() - t0:.1f} s "
              f"({bundle.stat().st_size / 2**30:.2f} GiB, {args.subs} submissions, "
              f"{len(files)} age files)")  # fmt: skip
        _, small_rss = ours(small, s_keyring, s_bundle, "small")
        results: dict[str, list[tuple[float, int]]] = {"ours": [], "go": []}
        for _ in range(args.runs):  # alternate, keep the best: the machine may be shared
            warm([bundle])
            results["ours"].append(ours(big, keyring, bundle, "1"))
            warm(files)
            results["go"].append(go(big, files))
        our_s = min(r[0] for r in results["ours"])
        our_rss = max(r[1] for r in results["ours"])
        go_s = min(r[0] for r in results["go"])
        go_rss = max(r[1] for r in results["go"])
        load = os.getloadavg()[0]
        print(f"best of {args.runs} alternating runs each; load average now {load:.1f} "
              f"on {os.cpu_count()} cores")  # fmt: skip
        mb = total / 1e6
        print(f"{'':14} {'seconds':>8} {'MB/s':>7} {'peak RSS MiB':>13}")
        print(f"{'guwah-editor':14} {our_s:8.2f} {mb / our_s:7.0f} {our_rss:13}")
        print(f"{'Go age -d':14} {go_s:8.2f} {mb / go_s:7.0f} {go_rss:13}")
        print(f"ratio (Go time / our time; >= 1.0 means we are as fast or faster): "
              f"{go_s / our_s:.2f}x")  # fmt: skip
        print(
            f"our peak RSS: {small_rss} MiB at {args.gib / 8:.2f} GiB, {our_rss} MiB at "
            f"{args.gib:.2f} GiB ({'flat' if our_rss <= small_rss * 1.25 + 8 else 'GROWS'})"
        )
        got = sum(p.stat().st_size for p in (big / "review-1").rglob("file-1_*"))
        if got != total:
            sys.exit(f"our import wrote {got} bytes of attachments, expected {total}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
