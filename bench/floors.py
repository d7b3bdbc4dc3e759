"""What this machine can do for the work a request must do, measured in the benchmark's own run.

A ratio against a yardstick (``age -e``, a plain write + fsync) says how far Guwah is from a
tool that does less: no HTTP, one digest instead of two, no durability per acknowledged piece.
The floors here measure, on the same machine and in the same run, only the parts that Guwah's
documented properties require, each alone and without any hand-off between them:

- the HTTP stack: the same client against a bare ASGI app that drops the body, served as
  ``guwah serve`` serves Guwah (bench/asgi_sink.py);
- the per-byte primitives: SHA-256 (hashlib) and ChaCha20-Poly1305 (the ``cryptography`` AEAD
  app/crypto/stream.py uses), as CPU seconds of this process;
- the disk: as many bytes written from memory and made durable as often as the protocol
  requires (for a sealed blob, the faster of the page cache and ``O_DIRECT``: a floor the
  server could beat by writing the other way would be none).

A server built on these parts cannot take less wall time than the slowest of them alone, nor
less than their CPU seconds spread perfectly over every core; that bound, divided into the
yardstick's time, is the best ratio the target could be met with here, on this stack (another
HTTP stack or hash library would have its own floor).  Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mmap
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

from app.diskio import DirectFlag  # the one owner of turning O_DIRECT on and off

SINK = Path(__file__).with_name("asgi_sink.py")
MiB = 1024 * 1024
AEAD_CHUNK = 64 * 1024  # the age STREAM chunk
TAG = 16


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
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
    """User + system CPU seconds ``proc`` has used so far (all its threads)."""
    times = proc.cpu_times()
    return float(times.user + times.system)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server this benchmark started; kill it if it does not go."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def asgi_sink() -> Iterator[tuple[int, psutil.Process]]:
    """bench/asgi_sink.py running: (port, server process)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SINK), str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port, psutil.Process(proc.pid)
    finally:
        stop(proc)


def timed(server: psutil.Process, run: Callable[..., object], *args: object) -> tuple[float, float]:
    """Wall seconds of ``run(*args)`` and the CPU seconds ``server`` spent meanwhile."""
    before = cpu_seconds(server)
    start = time.perf_counter()
    run(*args)
    return time.perf_counter() - start, cpu_seconds(server) - before


def sha256_cpu(path: Path) -> float:
    """CPU seconds of one SHA-256 over ``path``, fed 1 MiB at a time (the file is read first,
    so the figure is the digest's alone)."""
    pieces = list(read_pieces(path, MiB))
    start = time.process_time()
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)
    return time.process_time() - start


def aead_cpu(path: Path) -> float:
    """CPU seconds of ChaCha20-Poly1305 over ``path`` in age's 64 KiB chunks, sealed into one
    reused buffer (the stream allocates one per batch: this is the AEAD's cost alone)."""
    aead = ChaCha20Poly1305(os.urandom(32))
    nonce = bytes(12)
    out = bytearray(AEAD_CHUNK + TAG)
    total = 0.0
    for piece in read_pieces(path, 16 * AEAD_CHUNK):
        view = memoryview(piece)
        start = time.process_time()
        for at in range(0, len(view), AEAD_CHUNK):
            chunk = view[at : at + AEAD_CHUNK]
            aead.encrypt_into(nonce, chunk, None, memoryview(out)[: len(chunk) + TAG])
        total += time.process_time() - start
    return total


def durable_write(size: int, dst: Path, chunk: int, *, sync_each: bool,
                  direct: bool = False) -> float:
    """Wall seconds to write ``size`` bytes to the new file ``dst``, ``chunk`` bytes at a time
    from one buffer filled beforehand: one fsync at the end, or (``sync_each``) an fdatasync
    after every chunk, as a server must before it acknowledges each piece of a resumable
    upload.  Through the page cache, or (``direct``) past it with ``O_DIRECT`` from a
    page-aligned buffer, as Guwah writes a sealed blob where the file system allows
    (app/diskio.py): whole 4 KiB blocks go direct, a shorter tail through the cache, and a
    file system that refuses ``O_DIRECT`` gets every byte through the cache.  ``os.sync()``
    first, so that no run pays for an earlier one's dirty pages; ``dst`` is removed
    afterwards."""
    block = mmap.mmap(-1, chunk)  # page-aligned, as O_DIRECT needs
    block[:] = os.urandom(chunk)
    os.sync()
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    flag = DirectFlag(fd)
    try:
        start = time.perf_counter()
        _write_all(fd, block, size, sync_each=sync_each,
                   flag=flag if direct and _direct_on(flag) else None)
        if not sync_each:
            os.fsync(fd)
        return time.perf_counter() - start
    finally:
        os.close(fd)
        dst.unlink()
        with contextlib.suppress(BufferError):  # a failed write's traceback holds a view
            block.close()


def _direct_on(flag: DirectFlag) -> bool:
    """Turn ``O_DIRECT`` on; False where there is none or the file system refuses it."""
    if not getattr(os, "O_DIRECT", 0):
        return False
    try:
        flag.set(True)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        return False
    return True


def _write_all(fd: int, block: mmap.mmap, size: int, *, sync_each: bool,
               flag: DirectFlag | None) -> None:
    """``size`` bytes of ``block`` to ``fd``; with ``flag``, direct until a tail shorter than a
    4 KiB block, which O_DIRECT refuses and the cache takes."""
    left = size
    while left:
        view = memoryview(block)[: min(len(block), left)]
        left -= len(view)
        if flag is not None and len(view) % 4096:
            flag.set(False)
        while view:
            view = view[os.write(fd, view):]
        if sync_each:
            os.fdatasync(fd)


def floor_seconds(walls: dict[str, float], cpus: dict[str, float]) -> float:
    """The least wall time any server built on these parts could take: the slowest part
    alone, or every part's CPU seconds spread over all cores with nothing lost between them."""
    return max(max(walls.values()), sum(cpus.values()) / (os.cpu_count() or 1))


def describe(walls: dict[str, float], cpus: dict[str, float]) -> str:
    """The floor's parts, for the benchmark's printout."""
    parts = [f"{name} {cpus[name]:.3f} s CPU" for name in cpus]
    parts += [f"{name} {walls[name]:.3f} s wall" for name in walls]
    return "; ".join(parts)


def read_pieces(path: Path, size: int) -> Iterator[bytes]:
    """The file at ``path``, ``size`` bytes at a time."""
    with path.open("rb", buffering=0) as fh:
        while piece := fh.read(size):
            yield piece


class Runs:
    """The wall and CPU seconds of each run of one timed part; the best of each counts."""

    def __init__(self) -> None:
        self.walls: list[float] = []
        self.cpus: list[float] = []

    def add(self, wall: float, cpu: float) -> None:
        self.walls.append(wall)
        self.cpus.append(cpu)

    def best(self) -> tuple[float, float]:
        return min(self.walls), min(self.cpus)

    def __str__(self) -> str:
        return ", ".join(f"{t:.3f}" for t in self.walls)
