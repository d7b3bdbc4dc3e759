"""The lean h11 receive buffer and body pieces (app/web/h11_limits.py): the same events as
h11's own buffer, for bodies in any pieces and for pipelined requests, on a real h11
Connection; and the same body bytes through a real uvicorn server."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import threading
import time
from typing import Any

import h11
import uvicorn
from h11._receivebuffer import ReceiveBuffer

from app.web.h11_limits import BodyPieces, LeanReceiveBuffer, guarded_protocol


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
    requests = [
        b"PATCH /u/%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (i, len(body)) + body
        for i, body in enumerate(bodies)]
    stream = b"".join(requests)
    # byte by byte only without the big body: h11 itself takes a minute over all of it that way
    small = b"".join(requests[:3])
    for source, size in ((small, 1), (small, 7), (stream, 4096), (stream, 65536),
                         (stream, 1 << 20), (stream, len(stream))):
        pieces = [source[i:i + size] for i in range(0, len(source), size)]
        sent = 4 if source is stream else 3
        lean = _joined(_events(pieces, lean=True))
        assert lean == _joined(_events(pieces, lean=False))
        assert [d for k, d in lean if k == "data"] == [b for b in bodies[:sent] if b]
        assert [d for k, d in lean if k == "request"] == [b"/u/%d" % i for i in range(sent)]


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


def test_holds_a_bytes_read_and_hands_it_over_as_it_is() -> None:
    """A read asyncio gives (``bytes``) is neither copied in nor out; a ``bytearray`` (which
    its owner may change) is copied; a second read before the first was taken is appended."""
    buf = LeanReceiveBuffer()
    piece = os.urandom(1 << 20)
    buf += piece
    assert buf.maybe_extract_at_most(2 << 20) is piece
    mutable = bytearray(b"abc")
    buf += mutable
    mutable[:] = b"xyz"
    buf += b"def"
    assert buf.maybe_extract_at_most(100) == b"abcdef"
    buf += b"GET / HTTP/1.1\r\n"  # a header line: h11's own code, on a bytearray
    assert buf.maybe_extract_next_line() == b"GET / HTTP/1.1\r\n"
    assert buf.maybe_extract_at_most(1) is None


def test_body_pieces_keep_big_reads_and_copy_small_ones_together() -> None:
    big = os.urandom(BodyPieces.KEEP_BYTES)
    pieces = BodyPieces()
    pieces += big
    pieces += b""
    assert len(pieces) == len(big) and bytes(pieces) is big  # the one piece: no copy
    small = [os.urandom(10) for _ in range(1000)]
    for piece in small:
        pieces += piece
    pieces += bytearray(b"tail")
    assert bytes(pieces) == big + b"".join(small) + b"tail"
    assert len(pieces) == len(big) + 10_004
    assert len(pieces._pieces) == 2  # the big read, and one buffer for all the small ones
    start = bytearray(b"start")
    assert bytes(BodyPieces(start)) == b"start"


def test_a_body_of_tiny_chunks_is_held_in_one_buffer() -> None:
    """A chunked body of one-byte chunks is one h11 event per byte: each kept on its own, a
    client could make the server hold tens of times more memory than the bytes it sent."""
    chunks = os.urandom(50_000)
    wire = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"1\r\n" + chunks[i:i + 1] + b"\r\n" for i in range(len(chunks)))
            + b"0\r\n\r\n")
    conn = h11.Connection(h11.SERVER)
    conn._receive_buffer = LeanReceiveBuffer()
    conn.receive_data(wire)
    body = BodyPieces()
    events = 0
    while not isinstance(event := conn.next_event(), h11.EndOfMessage):
        if isinstance(event, h11.Data):
            body += event.data
            events += 1
    assert events == len(chunks)
    assert bytes(body) == chunks and len(body._pieces) == 1


def test_a_real_server_gives_the_app_every_body_byte_in_order() -> None:
    """``guarded_protocol`` on a real socket: a body sent in uneven pieces, read by an app that
    lags (so pieces pile up and are joined), arrives whole; uvicorn's body buffer is the
    protocol's ``BodyPieces`` while pieces wait."""
    body = os.urandom(6 * (1 << 20) + 123)
    got: list[bytes] = []
    buffers: set[type] = set()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(None, http=guarded_protocol(10, 10), lifespan="off",
                            log_level="warning")
    server = uvicorn.Server(config)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        more = True
        while more:
            await asyncio.sleep(0.01)  # the app lags: pieces pile up meanwhile
            for protocol in server.server_state.connections:
                buffers.add(type(protocol.cycle.body))
                buffers.add(type(protocol.conn._receive_buffer))
            message = await receive()
            got.append(message["body"])
            more = message["more_body"]
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config.app = app
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
            rng = random.Random(3)
            pos = 0
            while pos < len(body):
                step = rng.choice([1, 999, 65536, 300_001, 1 << 20])
                client.sendall(body[pos:pos + step])
                pos += step
            assert client.recv(100).startswith(b"HTTP/1.1 204")
    finally:
        server.should_exit = True
        thread.join(10)
    assert b"".join(got) == body
    assert all(type(piece) is bytes for piece in got)
    assert BodyPieces in buffers and LeanReceiveBuffer in buffers  # the locked versions
