"""Naming and placing decrypted files: never clobbering, never escaping the folder.

Names derived from input never carry a directory part (``safe_name``). The bytes go through
``app.durable``: a hidden 0600 file in the target folder, linked into place only after the
whole payload authenticated, so a tampered or truncated file leaves nothing behind; a name
that is taken is ``durable.AlreadyExists``, which the CLI's error table reports.
"""

import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from app import durable

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
    with durable.new_file(directory / name) as fh:
        yield fh
