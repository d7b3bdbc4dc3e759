"""app/diskio.py: every byte lands once, at its place, whichever way it goes to the disk.

The writer and the reader are exercised on the real file system of the test folder (ext4 on
the CI machine, where O_DIRECT is taken) and, for the cached path that a file system refusing
O_DIRECT falls back to, with ``direct=False``; the offsets include starts inside a block (a
tus PATCH starts wherever the last one ended) and piece sizes of one byte to several MiB."""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import random
import threading
from pathlib import Path

import pytest

from app import diskio
from app.diskio import DIRECT_MIN, FileWriter, open_direct, read_ahead, start_writeback

PIECES = [1, 100, 4095, 4096, 65_552, 1_048_832, 3 * (1 << 20) + 5]


def _o_direct(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)


@pytest.mark.parametrize("start", [0, 4096, 5000])
@pytest.mark.parametrize("direct", [True, False])
def test_writer_appends_every_byte_once(tmp_path: Path, start: int, direct: bool) -> None:
    path = tmp_path / "blob"
    before = os.urandom(start)
    path.write_bytes(before)
    rng = random.Random(start)
    data = os.urandom(12 * (1 << 20))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        writer = FileWriter(fd, start, direct=direct)
        pos = 0
        while pos < len(data):
            n = rng.choice(PIECES)
            writer.write(memoryview(data)[pos:pos + n])
            pos += n
        writer.end()
        os.fsync(fd)
        assert writer.offset == start + len(data)
        assert writer.direct is direct  # ext4 takes O_DIRECT; never used when not asked
        assert not _o_direct(fd)  # end() hands the descriptor back as it came
    finally:
        os.close(fd)
    assert path.read_bytes() == before + data


@pytest.mark.parametrize("refuse_after", [0, 1, 3])
def test_writer_falls_back_when_direct_writes_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refuse_after: int) -> None:
    """A file system that refuses O_DIRECT (EINVAL), at once or after some direct writes:
    the writer goes on through the cache, and every byte still lands once, in order."""
    real_write = os.write
    direct_writes = 0

    def refusing_write(fd: int, data: bytes) -> int:
        nonlocal direct_writes
        if _o_direct(fd):
            if direct_writes >= refuse_after:
                raise OSError(errno.EINVAL, "Invalid argument")
            direct_writes += 1
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", refusing_write)
    path = tmp_path / "blob"
    data = os.urandom(9 * (1 << 20) + 5)
    rng = random.Random(refuse_after)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        writer = FileWriter(fd)
        pos = 0
        sizes = itertools.chain([1000], itertools.repeat(1_048_832, 4))  # kept-back tails
        while pos < len(data):
            n = next(sizes, None) or rng.choice(PIECES)
            writer.write(data[pos:pos + n])
            pos += n
        writer.end()
        assert not writer.direct and direct_writes == refuse_after
    finally:
        os.close(fd)
    monkeypatch.undo()
    assert path.read_bytes() == data


def test_a_failed_direct_write_raises_its_own_error_and_ends_the_writer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk during a direct write is an OSError with its errno (what the routes turn
    into 507), never a BufferError from the pool, however full the pool is; the writer then
    refuses more, end() adds nothing, and the pool still serves the next writer."""
    pool = [diskio._POOL.take() for _ in range(diskio.IDLE_BUFFERS)]
    for buf in pool:
        diskio._POOL.give(buf)  # the pool is full: a returned buffer would be unmapped
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        if _o_direct(fd):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    path = tmp_path / "blob"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        writer = FileWriter(fd)
        with pytest.raises(OSError) as caught:
            writer.write(os.urandom(2 << 20))
        assert caught.value.errno == errno.ENOSPC
        with pytest.raises(OSError) as again:
            writer.write(b"more")
        assert again.value.errno == errno.ENOSPC
        writer.end()
        assert os.fstat(fd).st_size == 0
    finally:
        os.close(fd)
    monkeypatch.undo()
    other = tmp_path / "next"
    fd = os.open(other, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        data = os.urandom(3 << 20)
        writer = FileWriter(fd)
        writer.write(data)
        writer.end()
    finally:
        os.close(fd)
    assert other.read_bytes() == data


def test_writer_keeps_back_small_writes_until_end(tmp_path: Path) -> None:
    """Small pieces wait (so a direct write is never a tiny one); end() writes them."""
    path = tmp_path / "blob"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        writer = FileWriter(fd)
        writer.write(b"x" * 1000)
        assert os.fstat(fd).st_size == 0
        writer.write(b"y" * DIRECT_MIN)  # now a whole run of blocks goes, the rest waits
        size = os.fstat(fd).st_size
        assert size % diskio.ALIGN == 0 and 0 < size <= 1000 + DIRECT_MIN
        writer.end()
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 1000 + b"y" * DIRECT_MIN


def test_writer_without_end_loses_only_the_unwritten_tail(tmp_path: Path) -> None:
    """What end() would have written is all that is missing: no byte lands twice or out of
    place (a crash between the two leaves a prefix, which the fsync protocol then decides on)."""
    path = tmp_path / "blob"
    data = os.urandom(2 * (1 << 20) + 777)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        FileWriter(fd).write(data)
    finally:
        os.close(fd)
    got = path.read_bytes()
    assert data.startswith(got) and len(data) - len(got) < diskio.ALIGN


def test_pool_keeps_at_most_two_idle_buffers(tmp_path: Path) -> None:
    taken = [diskio._POOL.take() for _ in range(4)]
    for buf in taken:
        diskio._POOL.give(buf)
    assert len(diskio._POOL._idle) == diskio.IDLE_BUFFERS
    assert sum(buf.closed for buf in taken) == len(taken) - diskio.IDLE_BUFFERS


@pytest.mark.parametrize("size", [0, 1, 4096, 5_000_003])
def test_reader_reads_any_range(tmp_path: Path, size: int) -> None:
    path = tmp_path / "blob"
    data = os.urandom(size)
    path.write_bytes(data)
    rng = random.Random(size)
    for n, _ in itertools.product([1, 100, DIRECT_MIN, 1 << 20, 3 << 20, -1], range(6)):
        with open_direct(os.open(path, os.O_RDONLY)) as fh:
            pos = rng.randrange(size + 1)
            fh.seek(pos)
            assert fh.read(n) == (data[pos:pos + n] if n > 0 else data[pos:])
    with open_direct(os.open(path, os.O_RDONLY)) as fh:
        pieces = []
        while piece := fh.read(1 << 20):
            pieces.append(piece)
        assert b"".join(pieces) == data
        assert fh.seek(0, os.SEEK_END) == size


def test_reader_sees_what_a_cached_write_just_left(tmp_path: Path) -> None:
    """A direct read after a cached (not yet fsynced) write returns the new bytes."""
    path = tmp_path / "blob"
    path.write_bytes(b"\0" * (2 << 20))
    with open(path, "r+b") as out:
        out.seek(12345)
        out.write(b"fresh" * 100_000)
        out.flush()
        with open_direct(os.open(path, os.O_RDONLY)) as fh:
            fh.seek(12345)
            assert fh.read(500_000) == b"fresh" * 100_000


def test_read_ahead_yields_the_rest_in_order_and_leaves_no_thread(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = os.urandom(5 * (1 << 20) + 3)
    path.write_bytes(data)
    with open_direct(os.open(path, os.O_RDONLY)) as fh:
        fh.read(1000)
        assert b"".join(read_ahead(fh, 1 << 20)) == data[1000:]
    with open_direct(os.open(path, os.O_RDONLY)) as fh:
        pieces = read_ahead(fh, 1 << 20)
        assert next(pieces) == data[:1 << 20]
        pieces.close()  # the caller stopped early (a refused upload): the reader ends too
    assert not [t for t in threading.enumerate() if t.name.startswith("guwah-read")]


def test_start_writeback_is_harmless_on_real_and_bad_descriptors(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"x" * 100_000)
        start_writeback(fd, 0, 100_000)  # a real range: starts I/O, returns at once
        start_writeback(fd, 50_000, 0)  # nothing to do
    finally:
        os.close(fd)
    start_writeback(fd, 0, 4096)  # closed descriptor: ignored, never raised
    assert path.read_bytes() == b"x" * 100_000
