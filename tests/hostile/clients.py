"""Honest witnesses and hostile clients for tests/hostile and bench/bench_hostile_soak.py.

Honest ones use httpx like a browser would; hostile ones write raw bytes to a socket so they
can stop, trickle or lie exactly where an attacker would.
"""

from __future__ import annotations

import base64
import re
import socket
import time
import urllib.parse

import httpx

TUS = {"Tus-Resumable": "1.0.0"}
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def form_token(client: httpx.Client) -> str:
    page = client.get("/submit")
    assert page.status_code == 200, page.status_code
    match = _CSRF.search(page.text)
    assert match is not None
    return match.group(1)


def submit_js_off(client: httpx.Client, text: str = "What I saw in the camp.",
                  files: list[tuple[str, bytes]] | None = None) -> httpx.Response:
    """A JavaScript-off submission: the form, as a browser posts it."""
    data = {"csrf": form_token(client), "testimony": text, "website": "",
            "kept_codename": "yes"}  # the codename box, ticked
    parts = [("files", (name, content, "application/octet-stream"))
             for name, content in (files or [("", b"")])]  # a browser sends an empty input
    return client.post("/submit", data=data, files=parts)


def metadata(**items: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in items.items())


def tus_create(client: httpx.Client, length: int, role: str = "file-1",
               token: str | None = None) -> httpx.Response:
    return client.post("/api/uploads", headers={
        **TUS, "Upload-Length": str(length), "Upload-Metadata": metadata(desk="default", role=role),
        "Guwah-Form-Token": token or form_token(client)})


def tus_patch(client: httpx.Client, url: str, offset: int, data: bytes) -> httpx.Response:
    return client.patch(url, content=data, headers={
        **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})


def tus_upload(client: httpx.Client, data: bytes, role: str = "file-1",
               token: str | None = None) -> tuple[int, int]:
    """Create and fill one upload; (create status, last PATCH status)."""
    created = tus_create(client, len(data), role, token)
    if created.status_code != 201:
        return created.status_code, 0
    url = created.headers["Location"]
    return 201, tus_patch(client, url, 0, data).status_code


def address(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def raw(url: str, data: bytes = b"", timeout: float = 30.0) -> socket.socket:
    """A connected socket that has sent ``data`` (and nothing more yet)."""
    sock = socket.create_connection(address(url), timeout=timeout)
    if data:
        sock.sendall(data)
    return sock


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """(True, what the server sent) when the server closed ``sock`` within ``seconds``."""
    sock.settimeout(0.2)
    got = bytearray()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return True, bytes(got)
        if not piece:
            return True, bytes(got)
        got += piece
    return False, bytes(got)


def multipart_preamble(token: str, boundary: str = "x0x0x0") -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()


def post_headers(url: str, path: str, length: int, ctype: str, extra: str = "") -> bytes:
    host = "%s:%d" % address(url)
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()
