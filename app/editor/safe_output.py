"""Writing decrypted files without ever clobbering, escaping the folder, or leaving half a file.

Names derived from input never carry a directory part; output goes to a hidden temporary file
in the target folder (0600) and is linked into place only after the whole payload
authenticated, so a tampered or truncated file leaves nothing behind.
"""

import os
import re
import secrets
import shutil
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import EditorError

_UNSAFE = re.compile(r"[^\w.@()+=,\- ]", re.UNICODE)
MAX_NAME = 120


def safe_name(name: str, fallback: str = "file") -> str:
    """A file name with no path, no control or shell-special characters, not hidden."""
    name = unicodedata.normalize("NFC", name).replace("/", "_").replace("\\", "_")
    name = _UNSAFE.sub("_", name).strip(" .")
    if not name or name in {".", ".."}:
        name = fallback
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        name = (
            (stem[: MAX_NAME - len(ext) - 1] + dot + ext)
            if dot and len(ext) < 16
            else name[:MAX_NAME]
        )
    return name


def output_name_for(source: Path) -> str:
    base = source.name
    for suffix in (".age", ".asc"):
        if base.endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
            break
    else:
        base = base + ".decrypted"
    return safe_name(base)


def ensure_out_dir(directory: Path) -> Path:
    if directory.is_symlink():
        raise EditorError(f"{directory} is a symbolic link: choose a real folder for --out")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not directory.is_dir():
        raise EditorError(f"{directory} is not a folder")
    return directory


@contextmanager
def atomic_output(directory: Path, name: str) -> Iterator[BinaryIO]:
    """Yield a writable; on success it appears as directory/name, on error nothing does."""
    if name != safe_name(name):
        raise EditorError(f"refusing the unsafe output name {name!r}")
    target = directory / name
    if target.exists() or target.is_symlink():
        raise EditorError(f"{target} already exists: refusing to overwrite it")
    tmp = directory / f".{name}.{os.getpid()}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())  # once, for the finished file
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise EditorError(f"{target} already exists: refusing to overwrite it") from None
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(directory)  # then the folder: the new name (and the gone .part) survive a crash


def fsync_dir(path: Path) -> None:
    """Make the names just created or removed in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(path: Path, data: bytes | BinaryIO) -> None:
    """Create ``path`` (0600) holding ``data``, fully written and fsynced, or fail: a key, a
    queued reply or a scrubbed copy is never half-written and never replaces an existing file.
    ``data`` may be an open binary file, copied in chunks (a scrubbed video needs no RAM)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, bytes):
                fh.write(data)
            else:
                shutil.copyfileobj(data, fh, 1 << 20)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # fails if path exists
    except FileExistsError:
        raise EditorError(f"{path} already exists: refusing to overwrite it") from None
    finally:
        tmp.unlink(missing_ok=True)


def copy_limited(write: Callable[[bytes], object], chunks: "Iterator[bytes]", limit: int) -> int:
    """Write at most ``limit`` bytes from ``chunks`` (used to drop Padmé padding)."""
    written = 0
    for chunk in chunks:
        if written + len(chunk) > limit:
            chunk = chunk[: limit - written]
        write(chunk)
        written += len(chunk)
    return written
