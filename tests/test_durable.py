"""app/durable.py: new files appear whole or not at all and never replace anything (how their
bytes reach the disk is app/diskio.py, tests/test_diskio.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from app.durable import AlreadyExists, new_file, write_new_file


def test_new_file_appears_whole_0600_and_leaves_no_part(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    data = os.urandom(3 * (1 << 20) + 12345)
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


@pytest.mark.parametrize("buffering", [-1, 0, 1 << 20])
def test_flush_inside_new_file_lands_every_byte(tmp_path: Path, buffering: int) -> None:
    """A caller stamps the file after ``flush()`` (the bundle writer does): nothing may be
    written after that, so flush must not leave bytes kept back for a direct write."""
    data = os.urandom(300_000 + 17)
    with new_file(tmp_path / "out.bin", buffering=buffering) as fh:
        fh.write(data)
        fh.flush()
        assert os.fstat(fh.fileno()).st_size == len(data)
    assert (tmp_path / "out.bin").read_bytes() == data
