"""The write-behind of a tus PATCH (app/web/write_behind.py), on a real event loop, real
worker threads and a real file: every byte once and in order, bounded memory, no thread held
by a quiet client, and nothing written after a failure or a refusal."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import anyio
import anyio.abc
import pytest

from app.web.write_behind import WRITE_AHEAD_MAX, WRITE_START, WriteAbandoned, WriteBehind

MiB = 1024 * 1024


class SlowFile:
    """Appends to a real file; each write takes at least ``delay`` seconds (a slow disk).
    Records the most bytes the writer ever held: queued, plus the piece being written."""

    def __init__(self, path: Path, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.delay = delay
        self.fail_at = fail_at  # the write that raises, counted from 0
        self.writes = 0
        self.written = 0
        self.lock = threading.Lock()

    def write(self, piece: bytes) -> None:
        assert threading.current_thread() is not threading.main_thread()
        if self.fail_at is not None and self.writes == self.fail_at:
            raise OSError(28, "No space left on device")
        self.writes += 1
        time.sleep(self.delay)
        os.write(self.fd, piece)

    def landed(self, n: int) -> None:
        with self.lock:
            self.written += n

    def close(self) -> None:
        os.close(self.fd)


def writer_for(tg: anyio.abc.TaskGroup, disk: SlowFile, threads: int = 1) -> WriteBehind:
    return WriteBehind(tg, disk.write, disk.landed, anyio.CapacityLimiter(threads))


async def put_all(writer: WriteBehind, pieces: list[bytes]) -> None:
    for piece in pieces:
        await writer.put(piece)


def test_every_byte_once_in_order_and_memory_bounded(tmp_path: Path) -> None:
    """Pieces of many sizes, a disk slower than the sender: the file holds exactly what was
    put, and the writer never held more than WRITE_AHEAD_MAX plus the piece just put."""
    rng = random.Random(11)
    pieces = [rng.randbytes(rng.choice([1, 4095, 65536, 300_000, MiB, 2 * MiB]))
              for _ in range(120)]
    disk = SlowFile(tmp_path / "upload", delay=0.001)
    held: list[int] = []

    async def main() -> None:
        limiter = anyio.CapacityLimiter(2)
        async with anyio.create_task_group() as tg:
            writer = WriteBehind(tg, disk.write, disk.landed, limiter)
            for piece in pieces:
                await writer.put(piece)
                held.append(writer.ahead)
            await writer.drain()
            assert limiter.borrowed_tokens == 0  # no thread is kept after the drain

    anyio.run(main)
    disk.close()
    assert (tmp_path / "upload").read_bytes() == b"".join(pieces)
    assert disk.written == sum(map(len, pieces))
    assert max(held) < WRITE_AHEAD_MAX  # put returns only once there is room again
    assert max(held) > WRITE_AHEAD_MAX // 2  # the disk was slower: the bound was what held


def test_a_quiet_client_holds_no_thread(tmp_path: Path) -> None:
    """Under WRITE_START nothing is taken; past it a thread writes, and once the queue is
    empty it goes back, while the body is still open (the client went quiet)."""
    disk = SlowFile(tmp_path / "upload")

    async def main() -> None:
        limiter = anyio.CapacityLimiter(1)
        async with anyio.create_task_group() as tg:
            writer = WriteBehind(tg, disk.write, disk.landed, limiter)
            await writer.put(b"x" * (WRITE_START - 1))
            await anyio.sleep(0.05)
            assert limiter.borrowed_tokens == 0 and disk.writes == 0
            await writer.put(b"y")  # WRITE_START reached: a thread writes both pieces
            deadline = time.monotonic() + 10
            while disk.written < WRITE_START and time.monotonic() < deadline:
                await anyio.sleep(0.01)
            await anyio.sleep(0.05)
            assert disk.written == WRITE_START
            assert limiter.borrowed_tokens == 0  # quiet now: the thread went back
            await writer.put(b"z")
            await writer.drain()

    anyio.run(main)
    disk.close()
    assert (tmp_path / "upload").read_bytes() == b"x" * (WRITE_START - 1) + b"yz"


def test_a_failed_write_is_raised_and_nothing_after_it_is_written(tmp_path: Path) -> None:
    disk = SlowFile(tmp_path / "upload", fail_at=3)
    pieces = [bytes([i]) * MiB for i in range(12)]

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            writer = writer_for(tg, disk)
            with pytest.raises(OSError, match="No space left"):
                await put_all(writer, pieces)
                await writer.drain()
            with pytest.raises(OSError):  # it stays failed
                await writer.put(b"more")

    anyio.run(main)
    disk.close()
    assert (tmp_path / "upload").read_bytes() == b"".join(pieces[:3])
    assert disk.written == 3 * MiB


def test_abandon_writes_nothing_more(tmp_path: Path) -> None:
    """A refusal while pieces wait: the one being written finishes, the rest never lands."""
    disk = SlowFile(tmp_path / "upload", delay=0.05)
    pieces = [bytes([i]) * MiB for i in range(6)]

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await put_all(writer := writer_for(tg, disk), pieces)
            writer.abandon()
            with pytest.raises(WriteAbandoned):
                await writer.drain()

    anyio.run(main)
    disk.close()
    stored = (tmp_path / "upload").read_bytes()
    assert len(stored) < len(pieces) * MiB
    assert stored == b"".join(pieces)[: len(stored)]


def test_one_thread_follows_a_fast_sender(tmp_path: Path) -> None:
    """While the thread writes, the pieces put meanwhile are taken from the queue by the same
    run: a steady sender is written by one thread hand-off, not one per batch."""
    disk = SlowFile(tmp_path / "upload", delay=0.002)
    runs = 0

    async def main() -> None:
        nonlocal runs
        async with anyio.create_task_group() as tg:
            writer = writer_for(tg, disk)
            start = writer._start

            def counted() -> None:
                nonlocal runs
                runs += 1
                start()

            writer._start = counted  # type: ignore[method-assign]
            for i in range(40):
                await writer.put(bytes([i]) * (256 * 1024))
                await anyio.sleep(0.0005)  # the sender is faster than the disk
            await writer.drain()

    anyio.run(main)
    disk.close()
    assert disk.written == 40 * 256 * 1024
    assert runs <= 2, runs
