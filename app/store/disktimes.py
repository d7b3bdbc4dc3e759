"""Set every file and directory of the data back to its UTC day, in one batch.

The kernel stamps each write, rename and read with a nanosecond time: a blob's mtime is the
second it arrived, a directory's mtime the second of its last arrival or deletion, the SQLite
files' mtime the last commit. Writers stamp what they write (app/protocol/utcday.py ``stamp``); this
pass, run by ``guwah cleanup``, catches everything else (the database files, directories,
files whose time a read or an unlink moved). atime and mtime become the start of the UTC day
of the old mtime: the day stays (the database keeps it anyway), the time of day goes.

What user space cannot set, and docs/threat-model.md section 6 says so: ctime (it becomes the
time of this batch, the same for every file) and the birth time some filesystems record.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, NamedTuple

from app.diskio import open_direct
from app.protocol.utcday import floor_to_day

_NOATIME = getattr(os, "O_NOATIME", 0)


def _open_noatime(path: str | Path, flags: int) -> int:
    """``os.open`` without updating atime. With relatime, the first read after a restamp
    would write the exact time of that read; O_NOATIME is allowed to the owner only."""
    try:
        return os.open(path, flags | os.O_CLOEXEC | _NOATIME)
    except PermissionError:
        return os.open(path, flags | os.O_CLOEXEC)


def open_quietly(path: str | Path) -> BinaryIO:
    """A file opened for reading that leaves its atime alone; its large reads skip the page
    cache (app/diskio.py: a blob is read once more, by the commit's check or an export)."""
    return open_direct(_open_noatime(path, os.O_RDONLY))


class Entry(NamedTuple):
    name: str
    path: str
    is_dir: bool
    is_file: bool


def list_quietly(path: str | Path) -> list[Entry]:
    """The entries of a directory (none if it is missing), read without moving its atime.
    Links are neither files nor directories here."""
    try:
        fd = _open_noatime(path, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return []
    try:
        with os.scandir(fd) as entries:
            return [
                Entry(
                    e.name,
                    os.path.join(path, e.name),
                    e.is_dir(follow_symlinks=False),
                    e.is_file(follow_symlinks=False),
                )
                for e in entries
            ]
    finally:
        os.close(fd)


def _restamp(path: str) -> bool:
    try:
        day = floor_to_day(os.lstat(path).st_mtime)
        # always, even when already right: the utime is what sets ctime to this batch's time,
        # hiding the second a writer stamped its file
        os.utime(path, (day, day), follow_symlinks=False)
    except (FileNotFoundError, PermissionError):
        return False  # removed meanwhile, or not ours (check_data_dir reports that)
    return True


def restamp_tree(roots: Iterable[Path]) -> int:
    """Restamp ``roots`` and everything under them (links not followed); returns the count."""
    seen: set[str] = set()
    count = 0
    for root in roots:
        top = os.path.realpath(root)
        if top in seen or not os.path.isdir(top):
            continue
        seen.add(top)
        for dirpath, dirnames, filenames in os.walk(top):
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            for name in filenames + links:
                count += _restamp(os.path.join(dirpath, name))
            subdirs = [os.path.join(dirpath, d) for d in dirnames if d not in links]
            dirnames[:] = [os.path.basename(d) for d in subdirs if d not in seen]
            seen.update(subdirs)
            count += _restamp(dirpath)
    return count
