"""Strict ASCII armor (age spec, "ASCII armor"; RFC 7468 strict PEM).

Armored files are malleable unless the parser is strict, so this accepts exactly one form:
whitespace may surround the PEM block, lines may end in LF or CRLF, every body line is 64
columns but the last (1 to 64), and base64 is padded and canonical.  Anything else is an
:class:`ArmorError`.
"""

import base64
import binascii

from .byteio import Buffer, Sink, Source
from .errors import ArmorError

BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
END = b"-----END AGE ENCRYPTED FILE-----"
_COLUMNS = 64
WHITESPACE = b" \t\r\n"
_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


class ArmorWriter:
    """Wraps a binary sink; bytes written to it come out as armored text."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._buf = bytearray()
        self._sink.write(BEGIN + b"\n")

    def write(self, data: Buffer) -> int:
        self._buf += data
        whole = len(self._buf) // 48 * 48
        if whole:
            encoded = base64.b64encode(bytes(self._buf[:whole]))
            self._sink.write(
                b"".join(encoded[i : i + _COLUMNS] + b"\n" for i in range(0, len(encoded), 64))
            )
            del self._buf[:whole]
        return len(data)

    def close(self) -> None:
        if self._buf:
            self._sink.write(base64.b64encode(bytes(self._buf)) + b"\n")
            self._buf = bytearray()
        self._sink.write(END + b"\n")


class ArmorReader:
    """A readable that strictly decodes armored input from ``src``, line by line."""

    def __init__(self, src: Source, pending: bytes = b"") -> None:
        self._src = src
        self._raw = bytearray(pending)
        self._out = bytearray()
        self._eof = False
        self._state = "start"  # start -> body -> end
        self._eol: bytes | None = None

    def _line(self) -> bytes | None:
        """Next raw line without its LF, or None at EOF (a final line without LF is returned)."""
        while b"\n" not in self._raw:
            if len(self._raw) > 1024:
                raise ArmorError("the armored file has an overlong line")
            more = self._src.read(4096)
            if not more:
                if self._raw:
                    line = bytes(self._raw)
                    self._raw.clear()
                    return line
                return None
            self._raw += more
        idx = self._raw.index(b"\n")
        line = bytes(self._raw[:idx])
        del self._raw[: idx + 1]
        return line

    def _skip_blank_lines(self) -> None:
        """Drop whole whitespace-only lines before BEGIN, in bulk: looking at them one line at
        a time costs seconds for megabytes of them. What is left starts a line."""
        while True:
            blank = len(self._raw) - len(self._raw.lstrip(WHITESPACE))
            cut = self._raw.rfind(b"\n", 0, blank) + 1
            del self._raw[:cut]
            if blank < len(self._raw) + cut or len(self._raw) > 1024:
                return  # text follows (or an overlong line, which _line refuses)
            more = self._src.read(64 * 1024)
            if not more:
                return
            self._raw += more

    def _strip_eol(self, line: bytes) -> bytes:
        eol = b"\r" if line.endswith(b"\r") else b""
        if self._eol is None:
            self._eol = eol
        elif eol != self._eol:
            raise ArmorError("the armored file mixes line endings")
        return line[:-1] if eol else line

    def _advance(self) -> None:
        if self._state == "start":
            self._skip_blank_lines()
            while True:
                line = self._line()
                if line is None:
                    raise ArmorError("the armored file has no BEGIN line")
                if line.strip(WHITESPACE):
                    break
            if self._strip_eol(line) != BEGIN:
                raise ArmorError("the armored file does not start with " + BEGIN.decode())
            self._state = "body"
            return
        if self._state == "body":
            line = self._line()
            if line is None:
                raise ArmorError("the armored file is truncated: no END line")
            line = self._strip_eol(line)
            if line == END:
                self._finish()
                return
            if not line or len(line) > _COLUMNS:
                raise ArmorError("the armored file has a line of the wrong length")
            body = line.rstrip(b"=")
            if any(c not in _B64 for c in body) or len(line) - len(body) > 2:
                raise ArmorError("the armored file has an invalid base64 character")
            try:
                data = base64.b64decode(line, validate=True)
            except (binascii.Error, ValueError):
                raise ArmorError("the armored file has invalid base64 (missing padding?)") from None
            if base64.b64encode(data) != line:
                raise ArmorError("the armored file's base64 is not canonical")
            self._out += data
            if len(line) < _COLUMNS or line.endswith(b"="):
                end = self._line()
                if end is None or self._strip_eol(end) != END:
                    raise ArmorError("the armored file has data after its last short line")
                self._finish()

    def _finish(self) -> None:
        rest = bytes(self._raw)
        self._raw.clear()
        while rest:
            if rest.strip(WHITESPACE):
                raise ArmorError("the armored file has data after the END line")
            rest = self._src.read(4096)
        self._state = "done"
        self._eof = True

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n < 0 or len(self._out) < n):
            self._advance()
        if n < 0:
            n = len(self._out)
        out = bytes(self._out[:n])
        del self._out[:n]
        return out
