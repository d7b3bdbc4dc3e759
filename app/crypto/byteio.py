"""What the age code needs of a byte source or sink: ``read(n)``, or ``write(data)``.

Why Protocols rather than ``BinaryIO``: the armor reader and writer, the editor's bundle
members and the server's hashing upload readers are not files, and need not pretend to be.
"""

from typing import Protocol

Buffer = bytes | bytearray | memoryview


class Source(Protocol):
    """Returns up to ``n`` bytes (all that is left when ``n`` is negative); b"" at the end."""

    def read(self, n: int = -1, /) -> bytes: ...


class Sink(Protocol):
    """Takes all of ``data`` (what it returns is ignored); it may be a ``bytearray`` that no
    one changes afterwards, so a sink may keep it without a copy."""

    def write(self, data: Buffer, /) -> object: ...
