"""Clients that try to hold the site with nothing: each attack against a real ``guwah serve``,
with honest witnesses submitting at the same time.

Limits and timeouts are made small through the environment (tests/conftest.py HOSTILE_ENV),
so a cut-off takes seconds; time bounds are generous because the machine may be loaded.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.settings import load_settings
from app.store import Store
from app.web.security import SECURITY_HEADERS

from .clients import (
    closed_within,
    form_token,
    multipart_preamble,
    post_headers,
    raw,
    submit_js_off,
    tus_create,
    tus_patch,
    tus_upload,
)

MiB = 1024 * 1024


def honest_round(url: str, *, js_on: bool = True, file_bytes: int = 200_000) -> list[int]:
    """One JS-off witness (text + a file) and, if ``js_on``, one tus upload; their statuses."""
    with httpx.Client(base_url=url, timeout=60) as client:
        statuses = [submit_js_off(client, files=[("p.jpg", os.urandom(file_bytes))]).status_code]
        if js_on:
            statuses.extend(tus_upload(client, os.urandom(file_bytes)))
    return statuses


def assert_honest_ok(statuses: list[int]) -> None:
    assert all(s in (200, 201, 204) for s in statuses), statuses


def submissions(server) -> int:  # type: ignore[no-untyped-def]
    settings = load_settings(server.data_dir, database_url=server.database_url)
    with Store(settings) as store:
        return len(store.list_submissions())


# ------------------------------------------------------------------ JS-off body attacks
def test_idle_socket_with_huge_content_length_holds_nothing(hostile_server):
    server = hostile_server(BODY_IDLE_SECONDS="6")
    with httpx.Client(base_url=server.url) as client:
        token = form_token(client)
    sock = raw(server.url, post_headers(server.url, "/submit", 21474836380,
                                        "multipart/form-data; boundary=x0x0x0")
               + multipart_preamble(token))
    try:
        started = time.monotonic()
        assert_honest_ok(honest_round(server.url))
        assert time.monotonic() - started < 5.5  # served while the idle socket is open
        closed, answer = closed_within(sock, 20)
        assert closed and answer.startswith(b"HTTP/1.1 408"), answer[:200]
    finally:
        sock.close()
    assert submissions(server) == 1


def test_header_only_posts_hold_no_sealing_thread(hostile_server):
    server = hostile_server(BODY_IDLE_SECONDS="60", BODY_RATE_WINDOW_SECONDS="60")
    head = post_headers(server.url, "/submit", 100_000, "multipart/form-data; boundary=x0x0x0")
    socks = [raw(server.url, head) for _ in range(40)]
    try:
        time.sleep(0.5)
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            rounds = list(pool.map(lambda _: honest_round(server.url, js_on=False), range(4)))
        for statuses in rounds:
            assert_honest_ok(statuses)
        assert time.monotonic() - started < 30  # not "as long as the 40 sockets stay"
    finally:
        for sock in socks:
            sock.close()


def test_trickling_body_is_cut_and_discarded(hostile_server):
    server = hostile_server()
    with httpx.Client(base_url=server.url) as client:
        token = form_token(client)
    sock = raw(server.url, post_headers(server.url, "/submit", 10_000_000,
                                        "multipart/form-data; boundary=x0x0x0")
               + multipart_preamble(token))
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            try:
                sock.sendall(b"z")
            except OSError:
                return
            time.sleep(0.3)

    feeder = threading.Thread(target=trickle)
    feeder.start()
    try:
        assert_honest_ok(honest_round(server.url, js_on=False))
        closed, answer = closed_within(sock, 20)  # window 3 s at 3 B/s < 1 KiB/s
        assert closed and answer.startswith(b"HTTP/1.1 408"), answer[:200]
    finally:
        stop.set()
        feeder.join()
        sock.close()
    assert _staging_bytes(server.data_dir) == 0
    assert submissions(server) == 1


@pytest.mark.parametrize(("file_bytes", "token_ok", "status"),
                         [(300_000, True, 408), (3 * MiB, True, 408), (300_000, False, 408),
                          (3 * MiB, False, 403)])
def test_stalled_form_is_answered_at_once_with_the_words(hostile_server, file_bytes,
                                                         token_ok, status):
    """A witness whose connection goes quiet half-way through a file: the answer comes within
    the idle limit (2 s here), not after a further wait on the quiet socket; it gives the
    typed words back, and nothing of the submission stays.

    Below 1 MiB the received pieces still wait for a sealing thread when the body stalls;
    they are then only read for their text, so a form that sealing would refuse (a token no
    longer valid) is still answered 408. Above, a sealing thread has already refused it
    (403), and the rest of the body is not waited for past the idle limit either."""
    server = hostile_server()
    words = "Stalled words \u0628\u0627\u0631 must come back."
    boundary = "x0x0x0"
    with httpx.Client(base_url=server.url) as client:
        token = form_token(client) if token_ok else "not-a-token"
    text = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"testimony\"\r\n\r\n"
            f"{words}\r\n").encode()
    sent = text + multipart_preamble(token, boundary) + os.urandom(file_bytes)
    sock = raw(server.url, post_headers(server.url, "/submit", len(sent) + 10 * MiB,
                                        f"multipart/form-data; boundary={boundary}") + sent)
    started = time.monotonic()
    try:
        closed, answer = closed_within(sock, 30)  # idle 2 s; then the answer
    finally:
        sock.close()
    assert closed and answer.startswith(f"HTTP/1.1 {status}".encode()), answer[:200]
    assert time.monotonic() - started < 15  # not after another wait on the quiet socket
    page = answer.split(b"\r\n\r\n", 1)[1].decode("utf-8", "replace")
    assert 'id="text-kept"' in page and words in page
    assert _staging_bytes(server.data_dir) == 0
    assert submissions(server) == 0
    assert_honest_ok(honest_round(server.url, js_on=False))


# ------------------------------------------------------------------ tus attacks
def _trickling_patch(url: str, path: str, stop: threading.Event) -> socket.socket:
    sock = raw(url, (f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                     "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                     "Content-Length: 1000\r\n\r\nq").encode())

    def trickle() -> None:
        while not stop.wait(0.5):
            try:
                sock.sendall(b"q")
            except OSError:
                return

    threading.Thread(target=trickle, daemon=True).start()
    return sock


def test_trickling_patches_do_not_lock_out_the_next_upload(hostile_server):
    server = hostile_server(BODY_IDLE_SECONDS="60", BODY_RATE_WINDOW_SECONDS="60")
    stop = threading.Event()
    socks = []
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for _ in range(20):
            created = tus_create(client, 1000)
            assert created.status_code == 201
            socks.append(_trickling_patch(server.url, created.headers["Location"], stop))
        time.sleep(1)
        try:
            for _ in range(3):
                assert_honest_ok(list(tus_upload(client, os.urandom(300_000))))
            assert_honest_ok(honest_round(server.url))
        finally:
            stop.set()
            for sock in socks:
                sock.close()


def test_one_token_cannot_reserve_the_quota(hostile_server):
    server = hostile_server(TOKEN_MAX_UPLOADS="5", TOKEN_MAX_RESERVED_BYTES=str(64 * MiB),
                            MAX_PENDING_BYTES=str(256 * MiB))
    with httpx.Client(base_url=server.url, timeout=60) as client:
        token = form_token(client)
        answers = [tus_create(client, 60 * MiB, token=token).status_code for _ in range(25)]
        assert answers.count(201) == 1 and set(answers) == {201, 429}, answers
        small = [tus_create(client, 1000, token=token).status_code for _ in range(10)]
        assert small.count(201) == 4 and set(small) == {201, 429}, small
        # what was announced reserved nothing: honest witnesses upload as usual
        assert_honest_ok(honest_round(server.url))
        assert_honest_ok(list(tus_upload(client, os.urandom(1 * MiB))))


def test_zero_length_creates_cost_a_slot_and_idle_rows_go(hostile_server):
    server = hostile_server(MAX_OPEN_UPLOADS="40", TOKEN_MAX_UPLOADS="4")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        token = form_token(client)
        same = [tus_create(client, 0, token=token).status_code for _ in range(50)]
        assert same.count(201) == 4 and set(same) == {201, 429}, same
        many = [tus_create(client, 0).status_code for _ in range(60)]  # a new token each
        assert many.count(201) <= 36 and set(many) <= {201, 507}, many
        uploads_dir = server.data_dir / "blobs" / "uploads"
        if uploads_dir.is_dir():
            assert len(list(uploads_dir.iterdir())) <= 40
        assert_honest_ok(honest_round(server.url, js_on=False))  # JS-off is unaffected
        deadline = time.monotonic() + 20  # idle rows (no byte in 3 s) are removed
        while time.monotonic() < deadline:
            created = tus_create(client, 1000)
            if created.status_code == 201:
                break
            time.sleep(0.5)
        assert created.status_code == 201
        assert tus_patch(client, created.headers["Location"], 0, b"a" * 1000).status_code == 204


# ------------------------------------------------------------------ connections
def test_slow_and_silent_headers_are_closed(hostile_server):
    server = hostile_server()
    silent = raw(server.url)
    slow = raw(server.url, b"GET / HTTP/1.1\r\nHost: x\r\n")
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(0.3):
            try:
                slow.sendall(b"X")
            except OSError:
                return

    threading.Thread(target=drip, daemon=True).start()
    try:
        assert_honest_ok(honest_round(server.url))
        assert closed_within(silent, 15)[0]
        assert closed_within(slow, 15)[0]
        # keep-alive: complete requests on one socket are not cut
        with httpx.Client(base_url=server.url) as client:
            for _ in range(3):
                assert client.get("/").status_code == 200
                time.sleep(0.5)
    finally:
        stop.set()
        silent.close()
        slow.close()


def test_silent_body_on_any_route_is_closed(hostile_server):
    """Routes that read a small body (commit, mailbox) get the protocol's backstop."""
    server = hostile_server()
    socks = [raw(server.url, post_headers(server.url, path, 1000, ctype))
             for path, ctype in (("/api/submissions", "application/json"),
                                 ("/api/mailbox", "application/json"),
                                 ("/return", "application/x-www-form-urlencoded"))]
    try:
        assert_honest_ok(honest_round(server.url))
        for sock in socks:  # body idle 2 s in the app, 4 s in the protocol
            assert closed_within(sock, 20)[0]
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("request_bytes", [
    b"\x16\x03\x01garbage\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
])
def test_uvicorn_400s_carry_the_security_headers(hostile_server, request_bytes):
    server = hostile_server()
    sock = raw(server.url, request_bytes)
    try:
        closed, answer = closed_within(sock, 10)
    finally:
        sock.close()
    assert closed and answer.startswith(b"HTTP/1.1 400"), answer[:200]
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    for name, value in SECURITY_HEADERS.items():
        assert f"{name}: {value}".lower() in head, name
    assert_honest_ok(honest_round(server.url, js_on=False))


# ------------------------------------------------------------------ the budget
def _staging_bytes(data_dir: Path) -> int:
    """Bytes of JS-off submissions being written (fs blobs: blob_dir/staging/*.part)."""
    total = 0
    for path in (data_dir / "blobs" / "staging").glob("*.part"):
        try:
            total += path.stat().st_size
        except OSError:
            pass
    return total


def test_concurrent_posts_never_pass_the_cap_and_never_500(hostile_server):
    cap = 10 * MiB
    server = hostile_server(MAX_PENDING_BYTES=str(cap), BUDGET_WAIT_SECONDS="20")
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _staging_bytes(server.data_dir))
            time.sleep(0.01)

    def big(_: int) -> int:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            return submit_js_off(client, files=[("v.mp4", os.urandom(4 * MiB))]).status_code

    def honest(_: int) -> int:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            return submit_js_off(client, text="Only words, sent at the same time.").status_code

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            bigs = pool.map(big, range(12))
            texts = pool.map(honest, range(4))
            bigs, texts = list(bigs), list(texts)
    finally:
        stop.set()
        watcher.join()
    assert set(bigs) <= {200, 429}, bigs
    assert bigs.count(200) >= 1, bigs
    assert texts == [200] * 4, texts
    assert peak <= cap * 1.2, peak  # ciphertext + padding of what the cap admitted
    assert submissions(server) == bigs.count(200) + 4
