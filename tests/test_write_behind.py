"""The write-behind of a tus PATCH and of a JavaScript-off form (app/web/write_behind.py), on
a real event loop, real worker threads and a real file: every byte once and in order, bounded
memory, no thread held by a quiet client, turns between requests, and nothing written after a
failure, a refusal or a cancellation. Every test fails (rather than hangs) after 30 s."""

from __future__ import annotations

import errno
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.abc
import pytest

from app.web.sealing_request import SEAL_AHEAD_MAX
from app.web.write_behind import (
    TURN_BYTES,
    WRITE_AHEAD_MAX,
    WRITE_START,
    WriteAbandoned,
    WriteBehind,
)

MiB = 1024 * 1024
LIMIT = 30  # seconds a test may take


class SlowFile:
    """Appends to a real file; each write takes at least ``delay`` seconds (a slow disk).

    Records, on the writing thread, the most bytes its writer ever held (queued plus the piece
    being written), when each write ended, and fails the write numbered ``fail_at``."""

    def __init__(self, path: Path, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.delay = delay
        self.fail_at = fail_at
        self.writes = 0  # writes started
        self.written = 0  # bytes reported by the writer as written
        self.ended: list[float] = []
        self.peak = 0
        self.writer: WriteBehind | None = None
        self.lock = threading.Lock()

    def write(self, piece: bytes) -> None:
        assert threading.current_thread() is not threading.main_thread()
        if self.writer is not None:
            self.peak = max(self.peak, self.writer.ahead)
        if self.fail_at is not None and self.writes == self.fail_at:
            raise OSError(28, "No space left on device")
        self.writes += 1
        time.sleep(self.delay)
        os.write(self.fd, piece)
        self.ended.append(time.monotonic())

    def landed(self, n: int) -> None:
        with self.lock:
            self.written += n

    def stored(self) -> bytes:
        os.close(self.fd)
        return self.path.read_bytes()


def writer_for(tg: anyio.abc.TaskGroup, disk: SlowFile,
               limiter: anyio.CapacityLimiter | None = None,
               ahead_max: int = WRITE_AHEAD_MAX) -> WriteBehind:
    disk.writer = WriteBehind(tg, disk.write, disk.landed, limiter or anyio.CapacityLimiter(1),
                              ahead_max=ahead_max)
    return disk.writer


async def put_all(writer: WriteBehind, pieces: list[bytes], pause: float = 0.0) -> None:
    for piece in pieces:
        await writer.put(piece)
        if pause:
            await anyio.sleep(pause)


async def until(check: Callable[[], bool]) -> None:
    """Wait for ``check()`` (polled), at most LIMIT seconds."""
    with anyio.fail_after(LIMIT):
        while not check():
            await anyio.sleep(0.005)


def run(main: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        with anyio.fail_after(LIMIT):
            await main()

    anyio.run(bounded)


@pytest.mark.parametrize("ahead_max", [WRITE_AHEAD_MAX, SEAL_AHEAD_MAX])  # a PATCH's; a form's
def test_every_byte_once_in_order_and_memory_bounded(tmp_path: Path, ahead_max: int) -> None:
    """Pieces of many sizes, a disk slower than the sender: the file holds exactly what was
    put, and the writer never held more than its bound."""
    rng = random.Random(11)
    pieces = [rng.randbytes(rng.choice([1, 4095, 65536, 300_000, MiB, 2 * MiB]))
              for _ in range(120)]
    disk = SlowFile(tmp_path / "upload", delay=0.001)

    async def main() -> None:
        limiter = anyio.CapacityLimiter(2)
        async with anyio.create_task_group() as tg:
            writer = writer_for(tg, disk, limiter, ahead_max)
            await put_all(writer, pieces)
            await writer.drain()
            assert limiter.borrowed_tokens == 0  # no thread is kept after the drain

    run(main)
    assert disk.stored() == b"".join(pieces)
    assert disk.written == sum(map(len, pieces))
    assert ahead_max // 2 < disk.peak <= ahead_max  # the bound held, and was reached


def test_a_quiet_client_holds_no_thread(tmp_path: Path) -> None:
    """Under WRITE_START nothing is taken; past it a thread writes, and once the queue is
    empty it goes back, while the body is still open (the client went quiet)."""
    disk = SlowFile(tmp_path / "upload")

    async def main() -> None:
        limiter = anyio.CapacityLimiter(1)
        async with anyio.create_task_group() as tg:
            writer = writer_for(tg, disk, limiter)
            await writer.put(b"x" * (WRITE_START - 1))
            await anyio.sleep(0.05)
            assert limiter.borrowed_tokens == 0 and disk.writes == 0
            await writer.put(b"y")  # WRITE_START reached: a thread writes both pieces
            await until(lambda: disk.written == WRITE_START and limiter.borrowed_tokens == 0)
            await writer.put(b"z")  # quiet meanwhile: the thread went back, none is taken
            assert limiter.borrowed_tokens == 0
            await writer.drain()

    run(main)
    assert disk.stored() == b"x" * (WRITE_START - 1) + b"yz"


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

    run(main)
    assert disk.stored() == b"".join(pieces[:3])
    assert disk.written == 3 * MiB


SIX_PIECES = [bytes([i]) * MiB for i in range(6)]


async def first_write_under_way(tg: anyio.abc.TaskGroup, disk: SlowFile) -> WriteBehind:
    """A writer with SIX_PIECES queued, once its first write has started."""
    writer = writer_for(tg, disk)
    await put_all(writer, SIX_PIECES)
    await until(lambda: disk.writes == 1)
    return writer


def test_abandon_stops_after_the_write_in_progress(tmp_path: Path) -> None:
    """A refusal while a write runs and pieces wait: that write finishes before the task
    group ends (the caller rolls back only then), nothing queued is written after it, and
    the caller gets back exactly the pieces that were not written, in order."""
    disk = SlowFile(tmp_path / "upload", delay=0.1)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            writer = await first_write_under_way(tg, disk)
            assert writer.abandon() == SIX_PIECES[1:]
            assert writer.abandon() == []  # given back once
            with pytest.raises(WriteAbandoned):
                await writer.drain()
        assert disk.writes == 1 and disk.written == MiB  # ended with the group, not after
        await anyio.sleep(0.3)
        assert disk.writes == 1

    run(main)
    assert disk.stored() == SIX_PIECES[0]


def test_a_write_that_fails_after_abandon_is_still_raised(tmp_path: Path) -> None:
    """The piece in hand fails after the caller abandoned the body: ``drain`` raises that
    failure, not WriteAbandoned (a refusal found while sealing, or a bug, must not vanish)."""
    started, abandoned = threading.Event(), threading.Event()

    def write(_piece: bytes) -> None:
        started.set()
        abandoned.wait(LIMIT)
        raise OSError(errno.EIO, "I/O error")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            writer = WriteBehind(tg, write, lambda _n: None, anyio.CapacityLimiter(1))
            await writer.put(b"x" * WRITE_START)  # a thread is taken
            await until(started.is_set)
            assert writer.abandon() == []
            abandoned.set()
            with pytest.raises(OSError) as raised:
                await writer.drain()
            assert raised.value.errno == errno.EIO

    run(main)


def test_a_cancelled_request_writes_nothing_more(tmp_path: Path) -> None:
    """The request's task is cancelled (the server stops) while a write runs and pieces wait:
    the thread stops between two pieces, and the task group ends only once it has."""
    disk = SlowFile(tmp_path / "upload", delay=0.1)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await first_write_under_way(tg, disk)
            tg.cancel_scope.cancel()
        writes = disk.writes
        assert writes <= 2 and disk.written == writes * MiB
        await anyio.sleep(0.3)
        assert disk.writes == writes

    run(main)
    assert disk.stored() == b"".join(SIX_PIECES)[: disk.written]


def test_one_thread_follows_a_fast_sender(tmp_path: Path) -> None:
    """While the thread writes, the pieces put meanwhile are taken from the queue by the same
    run: a steady sender is written by one or two thread hand-offs, not one per batch."""
    disk = SlowFile(tmp_path / "upload", delay=0.004)
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
            await put_all(writer, [bytes([i]) * (256 * 1024) for i in range(24)], pause=0.0005)
            await writer.drain()

    run(main)
    assert disk.written == 24 * 256 * 1024
    assert runs <= 3, runs


def test_a_turn_is_longer_than_the_queue(tmp_path: Path) -> None:
    """A form's writer holds at most SEAL_AHEAD_MAX (2 MiB), yet its thread writes TURN_BYTES
    before it goes back to the pool (turns bound fairness, not memory): 12 MiB from a sender
    that keeps the queue full take two or three turns, not one per 2 MiB."""
    disk = SlowFile(tmp_path / "upload", delay=0.01)
    turns = 0

    async def main() -> None:
        nonlocal turns
        async with anyio.create_task_group() as tg:
            writer = writer_for(tg, disk, ahead_max=SEAL_AHEAD_MAX)
            write_turn = writer._write_turn

            def counted() -> bool:
                nonlocal turns
                turns += 1
                return write_turn()

            writer._write_turn = counted  # type: ignore[method-assign]
            await put_all(writer, [bytes([i]) * MiB for i in range(12)])
            await writer.drain()

    run(main)
    assert disk.written == 12 * MiB and TURN_BYTES == 8 * MiB and SEAL_AHEAD_MAX == 2 * MiB
    assert 2 <= turns <= 4, turns


def test_a_fast_sender_takes_turns_with_others(tmp_path: Path) -> None:
    """One thread for two requests: one whose sender keeps 8 MiB waiting for 40 MiB, and one
    of 2 MiB that arrives after it. The small one is written before the big one ends: the big
    one's thread goes back after each TURN_BYTES and waits in line."""
    big = SlowFile(tmp_path / "big", delay=0.004)
    small = SlowFile(tmp_path / "small", delay=0.004)

    async def main() -> None:
        limiter = anyio.CapacityLimiter(1)
        async with anyio.create_task_group() as tg:
            big_writer = writer_for(tg, big, limiter)
            small_writer = writer_for(tg, small, limiter)

            async def big_body() -> None:
                await put_all(big_writer, [b"B" * MiB for _ in range(40)])
                await big_writer.drain()

            tg.start_soon(big_body)
            await until(lambda: big.writes >= 2)
            await put_all(small_writer, [b"s" * MiB, b"s" * MiB])
            await small_writer.drain()

    run(main)
    assert big.stored() == b"B" * 40 * MiB and small.stored() == b"s" * 2 * MiB
    assert small.ended[-1] < big.ended[-1] - 0.05  # not after all of the big one


def test_a_refusal_does_not_wait_for_a_thread(tmp_path: Path) -> None:
    """All threads busy with another request: a refused request's turn stops waiting in line
    at once, so its answer does not wait for the other request's writes."""
    busy = SlowFile(tmp_path / "busy", delay=0.2)
    refused = SlowFile(tmp_path / "refused")

    async def main() -> None:
        limiter = anyio.CapacityLimiter(1)
        async with anyio.create_task_group() as tg:
            busy_writer = writer_for(tg, busy, limiter)
            await put_all(busy_writer, [b"b" * MiB for _ in range(5)])
            await until(lambda: busy.writes == 1)
            refused_writer = writer_for(tg, refused, limiter)
            await refused_writer.put(b"r" * WRITE_START)
            await anyio.sleep(0.05)  # its turn now waits in line for the thread
            assert refused.writes == 0
            started = time.monotonic()
            refused_writer.abandon()
            with pytest.raises(WriteAbandoned):
                await refused_writer.drain()
            assert time.monotonic() - started < 0.15  # not after busy's 1 s of writes
            await busy_writer.drain()

    run(main)
    assert refused.stored() == b"" and busy.stored() == b"b" * 5 * MiB
