"""app/durable.py: new files appear whole or not at all, never replace anything, and start
their write-back while they are written (without that changing what is durable)."""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path

import pytest

from app import durable
from app.durable import AlreadyExists, Writeback, new_file, start_writeback, write_new_file


def test_new_file_appears_whole_0600_and_leaves_no_part(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    data = os.urandom(3 * durable.WRITEBACK_STEP + 12345)
    for buffering in (-1, 0, 1 << 20):
        with new_file(target, buffering=buffering) as fh:
            for i in range(0, len(data), 100_000):
                fh.write(data[i:i + 100_000])
        assert target.read_bytes() == data
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
        target.unlink()


def test_new_file_error_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), new_file(target) as fh:
        fh.write(b"half a testimony")
        raise RuntimeError("the writer failed")
    assert list(tmp_path.iterdir()) == []


def test_never_replaces(tmp_path: Path) -> None:
    target = tmp_path / "kept.txt"
    target.write_bytes(b"first")
    with pytest.raises(AlreadyExists):
        write_new_file(target, b"second")
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.txt"]


def test_writeback_covers_every_byte_once_in_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ranges handed to the kernel are contiguous, start where the file did, and each
    covers at least a step (the arithmetic only; the call itself is the next test)."""
    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(durable, "start_writeback",
                        lambda fd, offset, length: seen.append((offset, length)))
    wb = Writeback(fd=-1, start=5000)
    sizes = [1, 65536, durable.WRITEBACK_STEP, 3, 2 * durable.WRITEBACK_STEP + 7, 100]
    for n in sizes:
        wb.wrote(n)
    assert seen[0][0] == 5000
    for (off, length), (nxt, _) in itertools.pairwise(seen):
        assert off + length == nxt
        assert length >= durable.WRITEBACK_STEP
    covered = seen[-1][0] + seen[-1][1] - 5000
    assert 0 < sum(sizes) - covered < durable.WRITEBACK_STEP


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
