"""The one owner of "write a file so that a crash or an attacker cannot leave it wrong".

Every file Guwah writes that must survive (a key, a blob, a bundle, a backup, a decrypted
testimony) goes through here: created new (``O_EXCL``: never replaces anything, never follows
a link), mode 0600, written through a hidden ``.part`` name in the same folder, fsynced once
when complete, linked to its final name (``link`` fails on an existing name, where ``rename``
would silently replace it), then the folder fsynced so the new name survives a power cut.

Why not ``tempfile.NamedTemporaryFile``: it may live in another folder (``rename`` across file
systems fails or copies) and its ``delete`` semantics differ between Python versions. Why not
``os.replace``: it overwrites, and "never overwrite" is the rule for everything here.
Standard library only: the offline editor tool imports it too.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from app.diskio import FileWriter

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
COPY_CHUNK = 1 << 20


class AlreadyExists(FileExistsError):
    """The target name is taken: nothing was written and nothing was replaced."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} already exists: refusing to overwrite it")
        self.path = path


def open_new(path: str | os.PathLike[str], mode: int = 0o600) -> int:
    """A new file's descriptor: created here and now, 0600, never a link, never an old file."""
    try:
        return os.open(path, NEW_FILE_FLAGS, mode)
    except FileExistsError:
        raise AlreadyExists(Path(path)) from None


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the names just created, renamed or removed in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileWriterIO(io.FileIO):
    """A raw file whose writes go through :class:`app.diskio.FileWriter`; ``flush()`` writes
    what it kept back, so after a flush the file holds every byte (then stamp, fsync)."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd, "wb", closefd=True)
        self.writer = FileWriter(fd)

    def write(self, data: ReadableBuffer, /) -> int:
        view = memoryview(data)
        self.writer.write(view)
        return view.nbytes

    def flush(self) -> None:
        super().flush()
        if not self.closed:
            self.writer.end()


class _BufferedFileWriter(io.BufferedWriter):
    """``io.BufferedWriter`` whose ``flush()`` reaches the raw file's own (it does not)."""

    def flush(self) -> None:
        super().flush()
        self.raw.flush()


def part_name(path: Path) -> Path:
    """The hidden name a file is written under before it is linked into place."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")


@contextmanager
def new_file(path: Path, buffering: int = -1) -> Iterator[BinaryIO]:
    """Yield a writable file; when the block ends without error it is fsynced and appears as
    ``path`` (then the folder is fsynced); on any error nothing is left behind."""
    if path.exists() or path.is_symlink():
        raise AlreadyExists(path)
    tmp = part_name(path)
    raw = _FileWriterIO(open_new(tmp))
    try:
        size = buffering if buffering > 0 else io.DEFAULT_BUFFER_SIZE
        with (raw if buffering == 0 else _BufferedFileWriter(cast(io.RawIOBase, raw), size)) as fh:
            yield cast(BinaryIO, fh)
            fh.flush()
            os.fsync(fh.fileno())  # once, for the finished file
        try:
            os.link(tmp, path)  # never replaces an existing file
        except FileExistsError:
            raise AlreadyExists(path) from None
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)  # then the folder: the new name (and the gone .part) survive a crash


def write_new_file(path: Path, data: bytes | BinaryIO) -> None:
    """Create ``path`` (0600) holding ``data``, fully written and fsynced, or fail without a
    trace. ``data`` may be an open binary file, copied in chunks (a video needs no RAM)."""
    with new_file(path) as fh:
        if isinstance(data, bytes | bytearray | memoryview):
            fh.write(data)
        else:
            shutil.copyfileobj(data, fh, COPY_CHUNK)


def replace_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Put ``data`` at ``path`` in one step, replacing whatever is there: a reader sees the old
    file or the new one, never half of it. Only for a file regenerated whole from other files
    (an index page) or one the user asked to replace (a pinned key); everything else is
    ``write_new_file``."""
    tmp = part_name(path)
    fd = open_new(tmp, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
