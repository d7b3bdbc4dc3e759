"""The lean h11 receive buffer (app/web/h11_limits.py): the same events as h11's own buffer,
for bodies in any pieces and for pipelined requests, on a real h11 Connection."""

from __future__ import annotations

import os

import h11
from h11._receivebuffer import ReceiveBuffer

from app.web.h11_limits import LeanReceiveBuffer


def _events(data_pieces: list[bytes], lean: bool) -> list[tuple[str, bytes]]:
    conn = h11.Connection(h11.SERVER)
    assert type(conn._receive_buffer) is ReceiveBuffer  # the attribute the protocol replaces
    if lean:
        conn._receive_buffer = LeanReceiveBuffer()
    out: list[tuple[str, bytes]] = []
    for piece in data_pieces:
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                break
            if isinstance(event, h11.Request):
                out.append(("request", event.target))
            elif isinstance(event, h11.Data):
                out.append(("data", bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                out.append(("end", b""))
                conn.send(h11.Response(status_code=204, headers=[]))
                conn.send(h11.EndOfMessage())
                conn.start_next_cycle()
            else:
                raise AssertionError(event)
    return out


def _joined(events: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Adjacent data events merged: how a body is cut into events may differ, not its bytes."""
    out: list[tuple[str, bytes]] = []
    for kind, data in events:
        if kind == "data" and out and out[-1][0] == "data":
            out[-1] = ("data", out[-1][1] + data)
        else:
            out.append((kind, data))
    return out


def test_same_bytes_as_h11_for_pieces_and_pipelined_requests() -> None:
    bodies = [os.urandom(n) for n in (0, 1, 70_000, 1 << 20)]
    stream = b"".join(
        b"PATCH /u/%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (i, len(body)) + body
        for i, body in enumerate(bodies))
    for size in (1, 7, 4096, 65536, 1 << 20, len(stream)):
        pieces = [stream[i:i + size] for i in range(0, len(stream), size)]
        lean = _joined(_events(pieces, lean=True))
        assert lean == _joined(_events(pieces, lean=False))
        assert [d for k, d in lean if k == "data"] == [b for b in bodies if b]
        assert [d for k, d in lean if k == "request"] == [b"/u/%d" % i for i in range(4)]


def test_hands_over_the_buffer_without_copying() -> None:
    buf = LeanReceiveBuffer()
    buf += b"x" * 1000
    held = buf._data
    out = buf.maybe_extract_at_most(5000)
    assert out is held and out == b"x" * 1000
    assert buf.maybe_extract_at_most(10) is None
    buf += b"abcdef"
    assert buf.maybe_extract_at_most(2) == b"ab"  # a part: h11's own path
    assert bytes(buf) == b"cdef"
