"""Benchmark: JavaScript-off sealing through a real ``guwah serve`` vs the ``age`` command.

One run: a 256 MiB file is (a) encrypted by ``/usr/bin/age -e -r`` to a file on the same disk,
and (b) uploaded through the plain form (multipart, streamed over a socket) to ``guwah serve``,
which seals it as it arrives to the desk's X25519 key, pads it and commits it.  Three rounds;
each runs (a), (b), Guwah's sealing alone without the request (``seal_alone``) and the floor's
timed parts (bench/floors.py: the same POST into a bare ASGI app, the durable write alone) in
turn, so that the machine's good and bad minutes fall on all alike; the best of each counts.
Prints the throughput ratio (target >= 0.8x), the floor (with both SHA-256 digests and the
AEAD: the best ratio any server built on these parts could reach here), the server's CPU by
thread (bench/guwah_server.py, ``ThreadCpu``), the bound that CPU sets (the upload's CPU
spread perfectly over the cores: the best ratio it allows) and the server's peak RSS (target
<= 120 MB, flat in file size: a 16 MiB upload is measured too).  Not a test: nothing here
asserts a time.

    .venv/bin/python bench/bench_sealing.py [--mib 256]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import floors
import psutil
from guwah_server import PeakRss, ThreadCpu, form_token, guwah_serve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
AGE = "/usr/bin/age"
MiB = 1024 * 1024
ROUNDS = 3
OK = b"HTTP/1.1 200"
TARGET = 0.8  # the throughput ratio to age -e the upload should reach


def setup(work: Path) -> tuple[Path, str, object]:
    from app.crypto import X25519Identity, fingerprint
    from app.settings import load_settings
    from app.store import Store
    from app.store.schema import init_store

    data = work / "data"
    data.mkdir(mode=0o700)
    identity = X25519Identity.generate()
    with Store(load_settings(data, database_url=f"sqlite:///{data / 'guwah.sqlite3'}")) as st:
        init_store(st)
        st.add_desk("default", "bench")
        pub = secrets.token_bytes(32)
        st.add_recipient("default", "bench", str(identity.recipient()),
                         base64.b64encode(pub).decode(), fingerprint(pub))
    return data, str(identity.recipient()), identity


def upload(port: int, path: Path, token: str, expect: bytes) -> None:
    """POST the plain form with ``path`` as the file; the response must start with
    ``expect`` (a refused form would otherwise time a refusal)."""
    boundary = "----bench" + secrets.token_hex(8)
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"desk\"\r\n\r\ndefault\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"testimony\"\r\n\r\nbench\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"kept_codename\"\r\n\r\nyes\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + path.stat().st_size + len(tail)
    host = "127.0.0.1"
    with socket.create_connection((host, port)) as sock, path.open("rb") as fh:
        sock.sendall((f"POST /submit HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: "
                      f"multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n"
                      "Connection: close\r\n\r\n").encode() + head)
        sock.sendfile(fh)
        sock.sendall(tail)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    if not response.startswith(expect):
        raise RuntimeError(f"expected {expect!r}, got {response[:200]!r}")


def age_encrypt(big: Path, out: Path, recipient: str) -> tuple[float, float]:
    """Wall and CPU seconds of ``age -e`` of ``big`` to a file on the same disk."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([AGE, "-e", "-r", recipient, "-o", str(out), str(big)], check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out.unlink()
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def seal_alone(pieces: list[bytes], blobs: Path, recipient: str) -> tuple[float, float]:
    """Wall and CPU seconds of Guwah's sealing without the request: ``pieces`` (the upload's
    file in memory, 1 MiB each) go through the plaintext digest and the background
    ``Encryptor`` (AEAD thread, writing thread, ciphertext digest) into a staged blob file
    that is fsynced, as a JavaScript-off form's file does. In this process (with the server's
    malloc settings, see main), so only its own threads count. What an upload takes beyond
    this is the request: receiving, multipart parsing, handing the pieces on, and the commit
    (the mailbox key, the message blob, the renames, the database)."""
    from app.crypto import parse_recipient
    from app.crypto.age import Encryptor
    from app.store.fsblobs import FsBlobStore

    writer = FsBlobStore(blobs).stage()
    try:
        start, cpu = time.perf_counter(), time.process_time()
        digest = hashlib.sha256()
        sealing = Encryptor([parse_recipient(recipient)], writer, background=True)
        try:
            for piece in pieces:
                digest.update(piece)
                sealing.write(piece)
            sealing.close()
        except BaseException:
            sealing.abort()
            raise
        writer.close()
        return time.perf_counter() - start, time.process_time() - cpu
    finally:
        writer.abort()  # closed already when all went well: nothing to undo
        writer.path.unlink(missing_ok=True)
        writer.release()


def make_files(work: Path, mib: int) -> tuple[Path, Path]:
    """The big file (``mib`` MiB) and a 16 MiB one, random bytes."""
    big, small = work / "upload.bin", work / "small.bin"
    with big.open("wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(MiB))
    small.write_bytes(os.urandom(16 * MiB))
    return big, small


def rounds(work: Path, big: Path, recipient: str, guwah: tuple[psutil.Process, int],
           sink: tuple[int, psutil.Process],
           ) -> tuple[dict[str, floors.Runs], int, dict[str, float]]:
    """Every timed part, once per round, in turn; the server's peak RSS meanwhile; and its
    CPU by thread during the fastest upload."""
    (server, port), (sink_port, sink_proc) = guwah, sink
    url = f"http://127.0.0.1:{port}"
    runs = {name: floors.Runs() for name in ("age", "guwah", "HTTP", "durable write", "alone")}
    pieces = list(floors.read_pieces(big, MiB))
    splits: list[tuple[float, dict[str, float]]] = []
    peak = 0
    for _ in range(ROUNDS):
        runs["age"].add(*age_encrypt(big, work / "age.out", recipient))
        token = form_token(url)  # one per form: a second post of it is refused
        with PeakRss(server.pid) as rss, ThreadCpu(server.pid) as threads:
            runs["guwah"].add(*floors.timed(server, upload, port, big, token, OK))
        peak = max(peak, rss.peak)
        splits.append((runs["guwah"].walls[-1], threads.split))
        runs["HTTP"].add(*floors.timed(sink_proc, upload, sink_port, big, "-", b"HTTP/1.1 204"))
        runs["alone"].add(*seal_alone(pieces, work / "blobs", recipient))
        runs["durable write"].add(min(  # the disk's best: see floors.durable_write
            floors.durable_write(big.stat().st_size, work / "disk.out", MiB, sync_each=False,
                                 direct=direct) for direct in (False, True)), 0.0)
    return runs, peak, min(splits, key=lambda split: split[0])[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    from app.server_cli.malloc import tune_malloc

    tune_malloc()  # the server's settings, for the sealing timed in this process (seal_alone)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.chmod(work, 0o700)
        data, recipient, _identity = setup(work)
        big, small = make_files(work, args.mib)
        tmpdir = work / "tmp"
        tmpdir.mkdir(mode=0o700)
        with guwah_serve(data, tmpdir) as (proc, port), floors.asgi_sink() as sink:
            server = psutil.Process(proc.pid)
            upload(port, small, form_token(f"http://127.0.0.1:{port}"), OK)  # warm up
            idle = server.memory_info().rss
            with PeakRss(proc.pid) as rss_small:
                upload(port, small, form_token(f"http://127.0.0.1:{port}"), OK)
            runs, peak, split = rounds(work, big, recipient, (server, port), sink)
        sha = min(floors.sha256_cpu(big) for _ in range(ROUNDS))
        aead = min(floors.aead_cpu(big) for _ in range(ROUNDS))
        report(args.mib, big.stat().st_size, runs, sha, aead)
        (alone_s, alone_cpu), (guwah_s, guwah_cpu) = runs["alone"].best(), runs["guwah"].best()
        print(f"sealing alone, from memory (no request): {alone_s:.3f} s, {alone_cpu:.3f} s CPU "
              f"(best of {ROUNDS}: {runs['alone']}): {runs['age'].best()[0] / alone_s:.2f}x of "
              f"age -e; the request and its commit around it: {guwah_s - alone_s:.3f} s, "
              f"{guwah_cpu - alone_cpu:.3f} s of CPU")
        print("server CPU by thread, fastest upload: " + ", ".join(
            f"{name} {seconds:.3f} s" for name, seconds in split.items())
              + f" (the digests and the AEAD alone: {2 * sha + aead:.3f} s)")
        print(f"server RSS: idle {idle / MiB:.0f} MiB; peak 16 MiB upload "
              f"{rss_small.peak / MiB:.0f} MiB; peak {args.mib} MiB upload {peak / MiB:.0f} MiB"
              "   (target <= 120 MB, flat in file size)")


def report(mib: int, size: int, runs: dict[str, floors.Runs], sha: float, aead: float) -> None:
    (age_s, age_cpu), (guwah_s, cpu) = runs["age"].best(), runs["guwah"].best()
    walls = {"HTTP": runs["HTTP"].best()[0], "durable write": runs["durable write"].best()[0]}
    cpus = {"HTTP": runs["HTTP"].best()[1], "SHA-256 of the plaintext": sha,
            "ChaCha20-Poly1305": aead, "SHA-256 of the ciphertext": sha}
    floor_s = floors.floor_seconds(walls, cpus)
    print(f"file: {mib} MiB random bytes; machine: {os.cpu_count()} cores")
    print(f"age -e -r (X25519):        {age_s:6.3f} s  {size / age_s / MiB:7.1f} MiB/s "
          f"(best of {ROUNDS}: {runs['age']})")
    print(f"guwah serve JS-off upload: {guwah_s:6.3f} s  {size / guwah_s / MiB:7.1f} MiB/s "
          f"(best of {ROUNDS}: {runs['guwah']}; HTTP + multipart + SHA-256 + age + Padmé + "
          "fsync + commit)")
    print(f"ratio guwah/age throughput: {age_s / guwah_s:.2f}x   (target >= {TARGET}x)")
    print(f"CPU seconds (user+sys): age {age_cpu:.3f}, guwah server {cpu:.3f} "
          f"-> CPU-cost ratio {age_cpu / cpu:.2f}x (less sensitive to other load; "
          f"load average now {os.getloadavg()[0]:.1f})")
    print(f"floor: {floor_s:.3f} s ({floors.describe(walls, cpus)}): the best ratio any server "
          f"built on these parts could reach here is {age_s / floor_s:.2f}x; guwah reaches "
          f"{floor_s / guwah_s:.2f}x of that floor")
    cores = os.cpu_count() or 1
    print(f"CPU bound: the upload's {cpu:.3f} s of server CPU take at least {cpu / cores:.3f} s "
          f"on {cores} cores, however well spread: at most {age_s * cores / cpu:.2f}x of age -e; "
          f"{TARGET}x allows {age_s / TARGET * cores:.3f} s of CPU")
    per_gib = cpu / (size / (1 << 30))
    print(f"server CPU per GiB sealed: {per_gib:.2f} s -> one core keeps up with "
          f"{(1 << 30) / per_gib / 1e6:.0f} concurrent 1 MB/s Tor witnesses")


if __name__ == "__main__":
    main()
