"""uvicorn's h11 protocol with two additions ``guwah serve`` needs (``http=`` option).

Why a subclass: uvicorn has no timeout for reading request headers (its keep-alive timer only
runs between two requests, and any byte cancels it), so a client that connects and sends
nothing, or one header byte at a time, holds a connection for ever (slowloris); and the
``400 Bad Request`` uvicorn writes itself for a garbage request line, a bad header or a
negative ``Content-Length`` never passes through the ASGI app, so it lacked the security
headers every other answer carries (app/web/security.py owns that list).

* A connection must deliver complete request headers within ``header_timeout`` seconds of
  being opened (and of the previous response, for keep-alive); else it is closed.
* uvicorn's own 400 carries :data:`app.web.security.SECURITY_HEADERS`.
* A connection answered before its request body ended is closed (uvicorn would otherwise
  keep reading and dropping a trickled body on a kept-alive socket).

* While a request body is read, the socket is read in pieces of up to :data:`BODY_READ_BYTES`
  (asyncio's default is 256 KiB): a big upload then costs a quarter of the Python round trips
  through h11 and the app. Headers are still read in the default pieces, so a client that
  never completes its headers cannot make the server hold more per connection than before.

* h11's receive buffer is replaced by :class:`LeanReceiveBuffer`, and uvicorn's body buffer
  by :class:`BodyPieces`: a body piece reaches the app as the ``bytes`` asyncio read, with no
  copy on the event loop (h11 0.16 and uvicorn copied every body byte five times on its way
  to the app; those copies were a third of the time the event loop held the GIL during a big
  upload, bench/README.md). Only with the h11 and uvicorn versions they were written for.

* A request body from which nothing arrives for ``body_idle`` seconds, while uvicorn is
  reading (not paused because the app is busy), closes the connection. This is a backstop for
  routes that read a small body without app/web/pacing.py; the routes that stream large bodies
  pace them themselves (shorter, and answer 408 after discarding what they built), so the
  backstop is set to twice the app's idle time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from h11._receivebuffer import ReceiveBuffer
from uvicorn.protocols.http.h11_impl import H11Protocol

from .security import SECURITY_HEADERS

_SECURITY = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]
BODY_READ_BYTES = 1 << 20
# The lean buffers below replace private parts of h11 and uvicorn, read in these versions (the
# ones requirements/server.lock installs); with any other, their own buffers are used.
LEAN = h11.__version__.startswith("0.16.")
PIECES = uvicorn.__version__.startswith("0.54.")


class LeanReceiveBuffer(ReceiveBuffer):
    """h11's ReceiveBuffer, minus three copies of every request body byte.

    h11 appends each socket read to a ``bytearray`` (a copy); its ``maybe_extract_at_most``
    slices the bytes it returns (a second copy), then ``_extract`` slices them again (a third)
    and deletes them from the buffer. Here a read that arrives while the buffer is empty is
    held as it is (asyncio gives ``bytes``, which no one can change), and a body is read with
    ``count`` = what remains of it, which is nearly always at least what the buffer holds:
    then what is held is handed over and a new buffer started, with no copy at all. Anything
    else (a second read before the first was taken, a header line, part of the buffer) turns
    what is held into h11's ``bytearray`` first and runs h11's own code.
    """

    def __iadd__(self, byteslike: bytes | bytearray) -> LeanReceiveBuffer:
        if not self._data and type(byteslike) is bytes:
            self._data = byteslike  # type: ignore[assignment]  # turned back by _mutable
            return self
        self._mutable()
        self._data += byteslike
        return self

    def _mutable(self) -> None:
        if type(self._data) is bytes:
            self._data = bytearray(self._data)

    def _extract(self, count: int) -> bytearray:
        self._mutable()
        return super()._extract(count)

    def maybe_extract_at_most(self, count: int) -> bytearray | None:
        """What is held, whole when it all belongs to the body: ``bytes`` then (h11 takes
        any bytes-like for a Data event), whatever the annotation h11 declares."""
        if not self._data:
            return None
        if count < len(self._data):
            return self._extract(count)
        out, self._data = self._data, bytearray()
        self._next_line_search = 0
        self._multiple_lines_search = 0
        return out


class BodyPieces:
    """uvicorn's per-request body buffer, as the pieces received: ``bytes()`` hands over the
    one ``bytes`` piece (the usual case) with no copy, or joins them. uvicorn appends each body
    event to a ``bytearray`` and copies that into ``bytes`` for the app: two copies of every
    body byte on the event loop, a fifth of the time it held the GIL during a big upload
    (bench/README.md).

    Only a ``bytes`` piece of at least ``KEEP_BYTES`` is kept as it is. Smaller ones (a body
    of tiny chunks, one event each, or a trickle of small reads) are copied together into one
    ``bytearray`` of this object's own, as uvicorn did: kept one by one, each would cost an
    object and a list slot, tens of times its byte, before uvicorn's flow control pauses.
    """

    KEEP_BYTES = 64 * 1024

    def __init__(self, start: bytearray | None = None) -> None:
        """``start``: what uvicorn had gathered, taken over (no one else refers to it)."""
        self._tail = start or None  # small pieces, copied together; changed only here
        self._pieces: list[bytes | bytearray] = [start] if start else []
        self._size = len(start) if start else 0

    def __iadd__(self, data: bytes | bytearray) -> BodyPieces:
        if not data:
            return self
        self._size += len(data)
        if type(data) is bytes and len(data) >= self.KEEP_BYTES:
            self._pieces.append(data)
            self._tail = None
        elif self._tail is None:
            self._tail = bytearray(data)
            self._pieces.append(self._tail)
        else:
            self._tail += data
        return self

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        if len(self._pieces) == 1 and type(self._pieces[0]) is bytes:
            return self._pieces[0]
        return b"".join(self._pieces)


class GuardedH11Protocol(H11Protocol):
    """H11Protocol + a header-read deadline + security headers on its own 400s."""

    header_timeout: float = 20.0
    body_idle: float = 120.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if LEAN:
            self.conn._receive_buffer = LeanReceiveBuffer()  # h11 0.16's attribute
        self._header_deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        self._disarm_body_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        if PIECES and cycle is not None and type(cycle.body) is bytearray:  # a fresh one
            cycle.body = BodyPieces(cycle.body)  # type: ignore[assignment]
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the headers are complete
            self._disarm_header_deadline()
        if self.conn.their_state is h11.SEND_BODY:
            self._arm_body_deadline()
            self._read_size(BODY_READ_BYTES)
        else:
            self._disarm_body_deadline()
            self._read_size(None)

    def _read_size(self, size: int | None) -> None:
        """Read pieces of ``size`` bytes (None: the transport's default) from the socket."""
        transport: Any = self.transport
        default = getattr(type(transport), "max_size", None)  # asyncio's socket transports
        if default is not None:
            transport.max_size = size or default

    def on_response_complete(self) -> None:
        self._disarm_body_deadline()
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            # answered before the body ended (a refusal, a stall cut-off): uvicorn would keep
            # reading and dropping the rest for as long as the client trickles it
            self.transport.close()
            return
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_deadline()  # the next request's headers, on a kept-alive socket

    def send_400_response(self, msg: str) -> None:
        self._disarm_header_deadline()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"connection", b"close"),
            *_SECURITY,
        ]
        output = self.conn.send(h11.Response(status_code=400, headers=headers,
                                             reason=b"Bad Request"))
        output += self.conn.send(h11.Data(data=b"Bad request.\n"))
        output += self.conn.send(h11.EndOfMessage())
        self.transport.write(output)
        self.transport.close()

    # ------------------------------------------------------------------ header deadline
    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


    # ------------------------------------------------------------------ body backstop
    def _arm_body_deadline(self) -> None:
        self._disarm_body_deadline()
        self._body_deadline = self.loop.call_later(self.body_idle, self._body_late)

    def _disarm_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _body_late(self) -> None:
        self._body_deadline = None
        if self.conn.their_state is not h11.SEND_BODY or self.transport.is_closing():
            return
        if self.flow.read_paused:  # the app is not reading yet: not the client's silence
            self._arm_body_deadline()
            return
        self.transport.close()


def guarded_protocol(header_timeout: float, body_idle: float) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn's ``http=`` option: this header deadline, and a body
    backstop of twice the app's ``body_idle_seconds``."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"header_timeout": float(header_timeout), "body_idle": 2.0 * float(body_idle)})
