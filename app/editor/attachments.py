"""``guwah-editor decrypt`` of a Guwah attachment: the witness's exact bytes, or a refusal.

An attachment's plaintext is the witness's file followed by zero bytes up to a Padmé length
(docs/formats.md); only the encrypted testimony (``message.age`` of the same submission) knows
the true size and SHA-256. So a file named like a bundle member (``file-N.age``) is decrypted
only with its ``message.age`` beside it (an unpacked bundle's ``submissions/<id>/`` folder):
then the padding is cut off and the SHA-256 checked before the file appears. Alone, it is
refused with one line saying how to get the exact file. Why not trim "trailing zeros": a
witness's file may itself end in zero bytes; only the recorded size is the truth.

Any other age file is decrypted exactly like ``age -d`` does it.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app.crypto import AgeError, Decryptor, padme
from app.protocol.ids import FILE_ROLE

from .errors import EditorError
from .handoff import Handoff, handing_off
from .keyring import Keyring
from .safe_output import safe_name

ATTACHMENT_NAME = re.compile(rf"({FILE_ROLE.pattern})\.age")  # fullmatch
MESSAGE = "message.age"
MAX_MESSAGE = 16 * 1024 * 1024


class AttachmentAloneError(EditorError):
    """A Guwah attachment without its submission's message: its exact size is unknown."""


class AttachmentMismatchError(EditorError):
    """The decrypted attachment is not what the witness's side recorded."""


@dataclass(frozen=True)
class WitnessFile:
    role: str
    name: str
    size: int
    sha256: str

    @property
    def output_name(self) -> str:
        return safe_name(f"{self.role}_{safe_name(self.name, 'attachment')}")


def attachment_role(path: Path) -> str | None:
    """``file-N`` when ``path`` is named like a Guwah attachment, else None."""
    match = ATTACHMENT_NAME.fullmatch(path.name)
    return match.group(1) if match else None


def message_beside(path: Path) -> Path:
    """The submission's ``message.age`` next to attachment ``path``, or one clear refusal."""
    message = path.with_name(MESSAGE)
    if not message.is_file():
        raise AttachmentAloneError(
            f"{path} is a Guwah attachment: decrypted alone it would carry zero padding and "
            f"not be the witness's exact file; run 'guwah-editor import BUNDLE' (or keep "
            f"{MESSAGE} of its submission beside it) to get the exact, SHA-256-checked file"
        )
    return message


def witness_record(path: Path, role: str, ring: Keyring) -> WitnessFile:
    """What the witness's side recorded about ``role``, read from ``message.age`` beside it."""
    message = message_beside(path)
    if message.stat().st_size > MAX_MESSAGE:
        raise EditorError(f"{message} is implausibly large: refused")
    try:
        with message.open("rb") as fh:
            doc = json.loads(Decryptor(fh, [ring.identity]).read().rstrip(b" "))
    except (AgeError, ValueError):
        raise EditorError(f"{message} is not a readable Guwah testimony") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    for f in files if isinstance(files, list) else []:
        if isinstance(f, dict) and f.get("role") == role:
            size, sha = f.get("size"), f.get("sha256")
            if isinstance(size, int) and not isinstance(size, bool) and size >= 0 and (
                isinstance(sha, str) and len(sha) == 64
            ):
                return WitnessFile(role, str(f.get("name", "")), size, sha)
    raise EditorError(f"the testimony in {message} records no size and SHA-256 for {role}")


class _Exact:
    """Keeps the first ``size`` bytes and counts non-zero padding; the kept bytes are hashed
    and written by ``handoff`` on its own thread (handoff.py)."""

    def __init__(self, handoff: Handoff, size: int) -> None:
        self.handoff, self.left = handoff, size
        self.nonzero_padding = False

    def __call__(self, chunk: bytes) -> None:
        keep = memoryview(chunk)[: max(0, self.left)]
        if keep:
            self.handoff(keep)
            self.left -= len(keep)
        if len(keep) < len(chunk) and chunk[len(keep) :].count(0) != len(chunk) - len(keep):
            self.nonzero_padding = True


class _HashWrite:
    """The hand-off's work: write a buffer and hash it (the SHA-256 the witness recorded)."""

    def __init__(self, dst: BinaryIO) -> None:
        self.dst = dst
        self.hash = hashlib.sha256()

    def __call__(self, buf: memoryview) -> None:
        self.dst.write(buf)
        self.hash.update(buf)


def decrypt_exact(
    src: BinaryIO,
    dst: BinaryIO,
    ring: Keyring,
    record: WitnessFile,
    progress: Callable[[int], object] | None = None,
) -> list[str]:
    """Write exactly the witness's file to ``dst`` or raise; returns notes for stderr."""
    written = _HashWrite(dst)
    with handing_off(written) as handoff:
        sink = _Exact(handoff, record.size)
        total = Decryptor(src, [ring.identity]).read_all_into(sink, progress)
    if sink.left or not secrets.compare_digest(written.hash.hexdigest(), record.sha256):
        raise AttachmentMismatchError(
            f"{record.role}: the decrypted file does not match the size and SHA-256 the "
            "witness's side recorded: nothing written (keep the ciphertext as evidence)"
        )
    notes = []
    if sink.nonzero_padding:
        notes.append(f"{record.role}: the padding after the file is not zeros")
    if total != padme(record.size):
        notes.append(f"{record.role}: the padding has an unexpected length ({total} bytes)")
    return notes


def looks_padded(size: int, tail: bytes) -> bool:
    """A plain decryption that might be an unrecognised (renamed) Guwah attachment."""
    return size > 256 and padme(size) == size and tail.endswith(b"\0")
