"""The age v1 header: version line, recipient stanzas, MAC (age spec, "Header").

Parsing reads from a binary stream one line at a time and stops exactly at the end of the MAC
line, so the payload can then be streamed from the same file object.  Every limit here exists
so that a hostile upload cannot make the server buffer an unbounded header.
"""

import hashlib
import hmac
from dataclasses import dataclass, field

from .byteio import Source
from .encoding import b64decode, b64encode, hkdf_sha256
from .errors import HeaderError, MacMismatchError, NotAgeFileError

VERSION_LINE = b"age-encryption.org/v1\n"
_VERSION_PREFIX = b"age-encryption.org/"
_COLUMNS = 64
MAX_HEADER_BYTES = 1 << 20
MAX_STANZAS = 256


@dataclass
class Stanza:
    type: str
    args: list[str]
    body: bytes

    def encode(self) -> bytes:
        out = ("-> " + " ".join([self.type, *self.args]) + "\n").encode("ascii")
        text = b64encode(self.body)
        for i in range(0, len(text), _COLUMNS):
            out += text[i : i + _COLUMNS].encode("ascii") + b"\n"
        if len(text) % _COLUMNS == 0:
            out += b"\n"  # the body must end with a line shorter than 64 columns
        return out


@dataclass
class Header:
    stanzas: list[Stanza]
    mac: bytes = b""
    #: the exact header bytes up to and including "---", as the MAC covers them
    mac_input: bytes = field(default=b"", repr=False)

    def verify_mac(self, file_key: bytes) -> None:
        expected = header_mac(file_key, self.mac_input)
        if not hmac.compare_digest(expected, self.mac):
            raise MacMismatchError(
                "the age header MAC does not match: the file was altered after it was encrypted"
            )


def header_mac(file_key: bytes, mac_input: bytes) -> bytes:
    key = hkdf_sha256(file_key, b"", b"header")
    return hmac.new(key, mac_input, hashlib.sha256).digest()


def encode_header(stanzas: list[Stanza], file_key: bytes) -> bytes:
    """Serialise stanzas and append the MAC line."""
    mac_input = VERSION_LINE + b"".join(s.encode() for s in stanzas) + b"---"
    return mac_input + b" " + b64encode(header_mac(file_key, mac_input)).encode() + b"\n"


def _valid_arg(arg: str) -> bool:
    return bool(arg) and all(0x21 <= ord(c) <= 0x7E for c in arg)


class _LineReader:
    def __init__(self, src: Source, first: bytes = b"") -> None:
        self.src = src
        self.pending = first
        self.consumed = bytearray()
        # read1 returns what is available without waiting for a full block (sockets, pipes)
        self._read = getattr(src, "read1", src.read)

    def line(self) -> bytes:
        """Return one line including its LF; raise HeaderError at EOF or on an overlong header."""
        while b"\n" not in self.pending:
            more = self._read(4096)
            if not more:
                raise HeaderError("the age header ends too early: the file is truncated")
            self.pending += more
            if len(self.consumed) + len(self.pending) > MAX_HEADER_BYTES:
                raise HeaderError("the age header is too large")
        idx = self.pending.index(b"\n") + 1
        line, self.pending = self.pending[:idx], self.pending[idx:]
        self.consumed += line
        if len(self.consumed) > MAX_HEADER_BYTES:
            raise HeaderError("the age header is too large")
        return line


def parse_header(src: Source, first: bytes = b"") -> tuple[Header, bytes]:
    """Parse a header from ``src`` (after ``first``, bytes already read from it).

    Returns the header and any bytes read past its end (the start of the payload).
    """
    reader = _LineReader(src, first)
    not_age = NotAgeFileError(
        "this is not an age file (it does not start with age-encryption.org/v1)"
    )
    try:
        version = reader.line()
    except HeaderError:
        head = bytes(reader.pending[: len(_VERSION_PREFIX)])
        if not head or (
            not _VERSION_PREFIX.startswith(head) and not head.startswith(_VERSION_PREFIX)
        ):
            raise not_age from None
        raise
    if version != VERSION_LINE:
        if version.startswith(_VERSION_PREFIX):
            raise HeaderError(
                "this age file uses an unsupported version: "
                + version[len(_VERSION_PREFIX) :].decode("ascii", "replace").strip()
            )
        raise not_age
    stanzas: list[Stanza] = []
    while True:
        line = reader.line()
        if line.startswith(b"---"):
            mac_input = bytes(reader.consumed[: len(reader.consumed) - len(line) + 3])
            rest = line[3:]
            if not rest.startswith(b" ") or not rest.endswith(b"\n"):
                raise HeaderError("the age header's MAC line is malformed")
            mac = b64decode(_ascii(rest[1:-1]), "MAC")
            if len(mac) != 32:
                raise HeaderError("the age header's MAC has the wrong length")
            if not stanzas:
                raise HeaderError("the age header has no recipient stanzas")
            return Header(stanzas, mac, mac_input), reader.pending
        if not line.startswith(b"-> "):
            raise HeaderError("the age header has a malformed line (expected a stanza or the MAC)")
        args = _ascii(line[3:-1]).split(" ")
        if not all(_valid_arg(a) for a in args):
            raise HeaderError("an age header stanza has an empty or invalid argument")
        body = b""
        while True:
            bline = reader.line()
            text = _ascii(bline[:-1])
            if len(text) > _COLUMNS:
                raise HeaderError("an age header stanza body line is longer than 64 columns")
            body += b64decode(text, "stanza body")
            if len(text) < _COLUMNS:
                break
        stanzas.append(Stanza(args[0], args[1:], body))
        if len(stanzas) > MAX_STANZAS:
            raise HeaderError("the age header has too many recipient stanzas")


def _ascii(raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise HeaderError("the age header contains a non-ASCII byte") from None
