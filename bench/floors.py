"""What this machine can do for the work a request must do, measured in the benchmark's own run.

A ratio against a yardstick (``age -e``, a plain write + fsync) says how far Guwah is from a
tool that does less: no HTTP, one digest instead of two, no durability per acknowledged piece.
The floors here measure, on the same machine and in the same run, only the parts that Guwah's
documented properties require, each alone and without any hand-off between them:

- the HTTP stack: the same client against a bare ASGI app that drops the body, under uvicorn
  with the options and the protocol class ``guwah serve`` uses (app/web/h11_limits.py);
- the per-byte primitives: SHA-256 (hashlib) and ChaCha20-Poly1305 (the AEAD app/crypto/stream.py
  uses), as CPU seconds of this process;
- the disk: the same bytes written and made durable as often as the protocol requires.

A server cannot take less wall time than the slowest of these alone, nor less than their CPU
seconds spread perfectly over every core; that bound, divided into the yardstick's time, is the
best ratio the target could be met with here.  Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
AEAD_CHUNK = 64 * 1024  # the age STREAM chunk

SINK = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, seconds: float = 30.0) -> None:
    """Return once something accepts connections on 127.0.0.1:``port`` (a server starting)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


@contextmanager
def asgi_sink(work: Path) -> Iterator[tuple[int, psutil.Process]]:
    """A bare ASGI app that drops every body, served like ``guwah serve`` serves Guwah:
    (port, server process).  Why the same protocol class: it reads bodies in 1 MiB pieces,
    where plain uvicorn reads 256 KiB and was 4.6x slower here."""
    (work / "guwah_bench_sink.py").write_text(SINK)
    port = free_port()
    code = (f"import sys; sys.path.insert(0, {str(work)!r}); sys.path.insert(0, {str(ROOT)!r}); "
            "import uvicorn; from app.web.h11_limits import guarded_protocol; "
            "from app.web.security import UVICORN_OPTIONS; "
            f"uvicorn.run('guwah_bench_sink:app', host='127.0.0.1', port={port}, "
            "http=guarded_protocol(20, 60), **UVICORN_OPTIONS)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def sink_seconds(work: Path, send: Callable[[int], object], repeat: int) -> tuple[float, float]:
    """Best wall seconds and best server CPU seconds of ``send(port)`` against the sink."""
    walls, cpus = [], []
    with asgi_sink(work) as (port, server):
        for _ in range(repeat):
            before = cpu_seconds(server)
            start = time.perf_counter()
            send(port)
            walls.append(time.perf_counter() - start)
            cpus.append(cpu_seconds(server) - before)
    return min(walls), min(cpus)


def _pieces(path: Path, size: int) -> Iterator[bytes]:
    with path.open("rb", buffering=0) as fh:
        while piece := fh.read(size):
            yield piece


def sha256_cpu(path: Path) -> float:
    """CPU seconds of one SHA-256 over ``path``, fed 1 MiB at a time (the file is read first,
    so the figure is the digest's alone)."""
    pieces = list(_pieces(path, MiB))
    start = time.process_time()
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)
    return time.process_time() - start


def aead_cpu(path: Path) -> float:
    """CPU seconds of ChaCha20-Poly1305 over ``path`` in age's 64 KiB chunks."""
    aead = ChaCha20Poly1305(os.urandom(32))
    nonce = bytes(12)
    out = bytearray(AEAD_CHUNK + 16)  # sealed into one reused buffer, as the stream does
    total = 0.0
    for piece in _pieces(path, 16 * AEAD_CHUNK):
        view = memoryview(piece)
        start = time.process_time()
        for at in range(0, len(view), AEAD_CHUNK):
            chunk = view[at : at + AEAD_CHUNK]
            aead.encrypt_into(nonce, chunk, None, memoryview(out)[: len(chunk) + 16])
        total += time.process_time() - start
    return total


def durable_write(src: Path, dst: Path, chunk: int, *, sync_each: bool) -> float:
    """Wall seconds to copy ``src`` to the new file ``dst`` ``chunk`` bytes at a time through
    the page cache, with one fsync at the end, or (``sync_each``) an fdatasync after every
    chunk, as a server must before it acknowledges each piece of a resumable upload."""
    start = time.perf_counter()
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for piece in _pieces(src, chunk):
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view):]
            if sync_each:
                os.fdatasync(fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def best_of(repeat: int, run: Callable[[], float]) -> tuple[float, list[float]]:
    """Best and all of ``repeat`` runs; ``os.sync()`` before each so that no run pays for an
    earlier one's dirty pages."""
    runs = []
    for _ in range(repeat):
        os.sync()
        runs.append(run())
    return min(runs), runs


def floor_seconds(walls: dict[str, float], cpus: dict[str, float]) -> float:
    """The least wall time any server could take: the slowest part alone, or every part's CPU
    seconds spread over all cores with nothing lost between them."""
    return max(max(walls.values()), sum(cpus.values()) / (os.cpu_count() or 1))


def describe(walls: dict[str, float], cpus: dict[str, float]) -> str:
    parts = [f"{name} {cpus[name]:.3f} s CPU" for name in cpus]
    parts += [f"{name} {walls[name]:.3f} s wall" for name in walls]
    return "; ".join(parts)
