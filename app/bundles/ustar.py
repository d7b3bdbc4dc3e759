"""A strict POSIX ustar writer and reader for bundles (docs/formats.md section 6).

Why not the standard library's ``tarfile``: it follows links, honours pax headers that rename
or resize members, accepts GNU extensions and absolute names. A bundle reader must accept
exactly what our writer produces and nothing else, and say in one sentence what is wrong.

The writer emits deterministic headers (mode 0644, uid/gid 0, mtime 0, no user names), one
regular file per member, and two zero blocks at the end. The reader accepts only regular-file
members with a valid checksum and a safe relative name; a link, device, directory, FIFO,
pax or GNU header, a bad checksum, a truncated member, or non-zero data after the end marker
is refused before the caller sees that member.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from app.protocol.ids import MEMBER_PATH, is_a

from .errors import BundleError

BLOCK = 512
MAX_MEMBER_SIZE = 8**11 - 1  # what 11 octal digits can hold (8 GiB - 1)
_TYPES = {
    b"1": "a hard link",
    b"2": "a symbolic link",
    b"3": "a character device",
    b"4": "a block device",
    b"5": "a directory",
    b"6": "a FIFO",
    b"7": "a contiguous file",
    b"x": "a pax extended header",
    b"g": "a pax global header",
    b"L": "a GNU long name",
    b"K": "a GNU long link name",
}


def check_member_name(name: str) -> str:
    """Refuse anything but a plain relative path of [A-Za-z0-9_.-] parts (no ``.``/``..``)."""
    if name.startswith("/"):
        raise BundleError(f"the bundle has an absolute path {name!r}: refused")
    if not is_a(MEMBER_PATH, name) or len(name) > 100:
        raise BundleError(f"the bundle has a member with an unsafe name {name!r}: refused")
    if any(part in (".", "..") for part in name.split("/")):
        raise BundleError(f"the bundle has a member named {name!r} that leaves its folder: refused")
    return name


def _octal(value: int, width: int) -> bytes:
    return (b"%0*o" % (width - 1, value)) + b"\0"


def member_header(name: str, size: int) -> bytes:
    """One ustar header block for a regular file (deterministic: no owner, no time)."""
    check_member_name(name)
    if not 0 <= size <= MAX_MEMBER_SIZE:
        raise BundleError(f"{name} is too large for a bundle ({size} bytes)")
    h = bytearray(BLOCK)
    raw = name.encode("ascii")
    h[0 : len(raw)] = raw
    h[100:108] = _octal(0o644, 8)
    h[108:116] = _octal(0, 8)
    h[116:124] = _octal(0, 8)
    h[124:136] = _octal(size, 12)
    h[136:148] = _octal(0, 12)
    h[148:156] = b" " * 8
    h[156:157] = b"0"
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[329:337] = _octal(0, 8)
    h[337:345] = _octal(0, 8)
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


END = b"\0" * (2 * BLOCK)


def _field(block: bytes, start: int, end: int) -> bytes:
    return block[start:end].split(b"\0", 1)[0]


def _number(block: bytes, start: int, end: int, what: str) -> int:
    raw = block[start:end]
    if raw[:1] and raw[0] & 0x80:
        raise BundleError(f"the bundle's tar header has a binary {what}: refused")
    text = raw.replace(b"\0", b" ").strip()
    if not text:
        return 0
    if not re.fullmatch(rb"[0-7]+", text):
        raise BundleError(f"the bundle's tar header has a malformed {what}: refused")
    return int(text, 8)


@dataclass(frozen=True)
class Member:
    name: str
    size: int


def _read_exact(src: BinaryIO, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = src.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def parse_header(block: bytes) -> Member:
    """Validate one header block; refuse anything but a safe regular file."""
    stored = _number(block, 148, 156, "checksum")
    computed = sum(block[:148]) + 8 * 32 + sum(block[156:])
    if stored != computed:
        raise BundleError("the bundle is damaged: a tar header checksum is wrong")
    if block[257:263] != b"ustar\0" or block[263:265] != b"00":
        raise BundleError("the bundle is not a POSIX ustar archive written by Guwah")
    kind = block[156:157]
    try:
        name = (
            _field(block, 345, 500) + b"/" + _field(block, 0, 100)
            if _field(block, 345, 500)
            else _field(block, 0, 100)
        ).decode("ascii")
    except UnicodeDecodeError:
        raise BundleError("the bundle has a member with a non-ASCII name: refused") from None
    if kind not in (b"0", b"\0"):
        what = _TYPES.get(kind, f"an entry of unknown type {kind!r}")
        raise BundleError(f"the bundle's member {name!r} is {what}: only regular files allowed")
    check_member_name(name)
    if _field(block, 157, 257):
        raise BundleError(f"the bundle's member {name!r} names a link target: refused")
    size = _number(block, 124, 136, "size")
    return Member(name, size)


class _Data(io.RawIOBase):
    """Exactly ``size`` bytes of one member; raises if the archive ends early."""

    def __init__(self, src: BinaryIO, member: Member) -> None:
        super().__init__()
        self._src = src
        self.member = member
        self.remaining = member.size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.remaining == 0:
            return b""
        if n is None or n < 0 or n > self.remaining:
            n = self.remaining
        data = self._src.read(n)
        if not data:
            raise BundleError(f"the bundle is truncated inside {self.member.name}")
        self.remaining -= len(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def iter_members(src: BinaryIO) -> Iterator[tuple[Member, _Data]]:
    """Yield each member with a stream of its data; unread data is skipped when resumed.

    Ends only on a proper end marker followed by nothing but zero bytes.
    """
    while True:
        block = _read_exact(src, BLOCK)
        if len(block) < BLOCK:
            raise BundleError("the bundle is truncated (no end-of-archive marker)")
        if block == b"\0" * BLOCK:
            second = _read_exact(src, BLOCK)
            if second != b"\0" * BLOCK:
                raise BundleError("the bundle is truncated or damaged at its end marker")
            while chunk := src.read(1 << 16):
                if chunk.strip(b"\0"):
                    raise BundleError("the bundle has data after its end: refused")
            return
        member = parse_header(block)
        data = _Data(src, member)
        yield member, data
        while data.read(1 << 20):
            pass
        pad = -member.size % BLOCK
        if pad and len(_read_exact(src, pad)) < pad:
            raise BundleError(f"the bundle is truncated after {member.name}")
