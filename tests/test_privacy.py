"""Privacy properties that can fail: against a real ``guwah serve`` subprocess.

- a spoofed X-Forwarded-For (and the user agent) leaves no trace in logs, files or tables;
- start-up refuses a TMPDIR that is not private;
- the canary: text and a >= 3 MiB file with a unique canary go through the plain form; during
  the upload the server's open files, and after it the data dir, database (+ WAL), TMPDIR and
  logs hold no trace of it (plain, UTF-16, base64, hex); what is stored decrypts with
  app.crypto and with /usr/bin/age back to exactly what was sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.crypto import decrypt

AGE = "/usr/bin/age"


# ----------------------------------------------------------------------------- helpers
def encodings(marker: bytes) -> list[bytes]:
    """Ways a leaked marker could look on disk: plain, UTF-16, hex and base64 (3 offsets)."""
    text = marker.decode()
    forms = [
        marker,
        text.encode("utf-16-le"),
        text.encode("utf-16-be"),
        marker.hex().encode(),
        marker.hex().upper().encode(),
    ]
    for shift in range(3):
        enc = base64.b64encode(b"\x00" * shift + marker)
        # keep only the characters that do not depend on neighbouring bytes
        start = (shift * 4 + 2) // 3 + 1
        forms.append(enc[start : start + (len(marker) * 4) // 3 - 4])
        forms.append(
            base64.urlsafe_b64encode(b"\x00" * shift + marker)[
                start : start + (len(marker) * 4) // 3 - 4
            ]
        )
    return [f for f in forms if len(f) >= 12]


def scan_bytes(data: bytes, needles: list[bytes]) -> list[bytes]:
    return [n for n in needles if n in data]


def scan_tree(root: Path, needles: list[bytes]) -> list[tuple[str, bytes]]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [(str(path), n) for n in scan_bytes(data, needles)]
    return hits


def database_text(database_url: str) -> bytes:
    """Every row of every table, as text (PostgreSQL); SQLite files are scanned as files."""
    if database_url.startswith("sqlite"):
        return b""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(database_url)
    out = []
    try:
        with engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                    for value in row:
                        if isinstance(value, bytes | memoryview):
                            out.append(bytes(value))
                        else:
                            out.append(str(value).encode())
    finally:
        engine.dispose()
    return b"\n".join(out)


def form_token(server) -> str:
    page = httpx.get(server.url + "/submit")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def multipart(boundary: str, fields: list[tuple[str, str]], files: list[tuple[str, bytes]]):
    head = b""
    for name, value in fields:
        head += (
            (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n').encode()
            + value.encode()
            + b"\r\n"
        )
    parts = []
    for filename, content in files:
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream'
                "\r\n\r\n"
            ).encode()
            + content
            + b"\r\n"
        )
    return head, parts, f"--{boundary}--\r\n".encode()


def staged_fds(pid: int) -> list[tuple[str, str]]:
    """(fd path, target) for every open descriptor of ``pid``."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        path = f"/proc/{pid}/fd/{fd}"
        try:
            out.append((path, os.readlink(path)))
        except OSError:
            continue
    return out


# ----------------------------------------------------------------------------- tests
def test_spoofed_forwarded_for_leaves_no_address(guwah_server):
    spoofed = "203.0.113.77"
    agent = "Mozilla/5.0 UNIQUE-AGENT-" + secrets.token_hex(6)
    headers = {
        "X-Forwarded-For": spoofed,
        "X-Real-IP": spoofed,
        "User-Agent": agent,
        "Forwarded": f"for={spoofed};proto=https",
        "Referer": "http://ref.example/x",
    }
    with httpx.Client(base_url=guwah_server.url, headers=headers) as client:
        home = client.get("/")
        assert home.status_code == 200
        # no software version and no clock in the response headers
        assert "server" not in home.headers and "date" not in home.headers
        assert client.get("/no-such-page").status_code == 404
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/submit").text).group(1)
        r = client.post(
            "/submit",
            files=[
                ("csrf", (None, token)),
                ("desk", (None, "default")),
                ("testimony", (None, "hello")),
                ("kept_codename", (None, "yes")),
            ],
        )
        assert r.status_code == 200
        assert client.post("/submit", content=b"x").status_code == 415
    guwah_server.process.terminate()
    guwah_server.process.wait(10)
    needles = [spoofed.encode(), agent.encode(), b"ref.example"]
    logs = guwah_server.stdout.read_bytes() + guwah_server.stderr.read_bytes()
    assert scan_bytes(logs, needles) == []
    # no client address/port pair (uvicorn's access log format) in the logs
    assert not re.search(rb"127\.0\.0\.1:\d+ - ", logs)
    assert scan_tree(guwah_server.data_dir, needles) == []
    assert scan_tree(guwah_server.tmpdir, needles) == []
    assert scan_bytes(database_text(guwah_server.database_url), needles) == []


def test_startup_refuses_a_tmpdir_that_is_not_private(tmp_path, settings, store, desk, monkeypatch):
    from app.store import StartupError
    from app.web.app import create_app

    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("TMPDIR", str(shared))
    with pytest.raises(StartupError, match="TMPDIR"):
        create_app(settings, store=store)
    monkeypatch.setenv("TMPDIR", "/tmp")
    with pytest.raises(StartupError, match="TMPDIR"):
        create_app(settings, store=store)
    # the real command refuses too, with one line and a non-zero exit
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
    env.update(TMPDIR=str(shared), GUWAH_DATABASE_URL=settings.database_url)
    guwah = str(Path(sys.executable).with_name("guwah"))
    proc = subprocess.run(
        [guwah, "serve", "--data-dir", str(settings.data_dir), "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "TMPDIR" in proc.stderr + proc.stdout and "Traceback" not in proc.stderr


def test_canary_never_at_rest_and_stored_data_decrypts(guwah_server):
    canary = ("GUWAH-CANARY-" + secrets.token_hex(10)).encode()
    text_canary = ("TEXT-CANARY-" + secrets.token_hex(10)).encode()
    needles = encodings(canary) + encodings(text_canary)
    # a >= 3 MiB file with the canary all through it, and a second small one
    block = os.urandom(65536 - len(canary)) + canary
    big = (block * 56)[: 3 * 1024 * 1024 + 12345]
    small = b"small file " + canary + b" end"
    testimony = "I saw this: " + text_canary.decode() + " — ئۇيغۇرچە"
    token = form_token(guwah_server)
    boundary = "----guwahtest" + secrets.token_hex(8)
    head, parts, tail = multipart(
        boundary,
        [
            ("csrf", token),
            ("desk", "default"),
            ("website", ""),
            ("testimony", testimony),
            ("where", "near " + text_canary.decode()),
            ("consent", "yes"),
            ("kept_codename", "yes"),
        ],
        [("evidence.bin", big), ("note.txt", small)],
    )
    body_first = head + parts[0][: len(parts[0]) // 2]
    body_rest = parts[0][len(parts[0]) // 2 :] + parts[1] + tail
    port = int(guwah_server.url.rsplit(":", 1)[1])

    fd_hits: list = []
    fd_targets: list = []
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        request = (
            f"POST /submit HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body_first) + len(body_rest)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        sock.sendall(request + body_first)
        # wait until the server has a staging blob open: the upload is being sealed now
        deadline = time.monotonic() + 30
        while True:
            targets = staged_fds(guwah_server.pid)
            if any("staging" in t for _, t in targets):
                break
            assert time.monotonic() < deadline, (targets, guwah_server.stderr.read_text()[-2000:])
            time.sleep(0.05)
        time.sleep(0.3)  # let it seal everything it has received
        for fd_path, target in staged_fds(guwah_server.pid):
            fd_targets.append(target)
            try:
                if not Path(fd_path).is_file():
                    continue
                with open(fd_path, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            fd_hits += [(target, n) for n in scan_bytes(data, needles)]
        assert any("staging" in t for t in fd_targets), fd_targets
        sock.sendall(body_rest)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    finally:
        sock.close()
    assert fd_hits == []
    assert response.startswith(b"HTTP/1.1 200"), (
        response[:2000], guwah_server.stderr.read_text()[-2000:])
    page = response.decode("utf-8", "replace")
    codename = re.search(r'id="codename"[^>]*>([^<]+)<', page).group(1)

    guwah_server.process.terminate()
    guwah_server.process.wait(10)
    needles += [codename.encode()]
    assert scan_tree(guwah_server.data_dir, needles) == []
    assert scan_tree(guwah_server.tmpdir, needles) == []
    logs = guwah_server.stdout.read_bytes() + guwah_server.stderr.read_bytes()
    assert scan_bytes(logs, needles) == []
    assert scan_bytes(database_text(guwah_server.database_url), needles) == []

    # what is stored decrypts, with app.crypto and with the age command, to what was sent
    from app.settings import load_settings
    from app.store import Store

    with Store(
        load_settings(guwah_server.data_dir, database_url=guwah_server.database_url)
    ) as store:
        [sub] = store.list_submissions()
        blobs = {f.role: store.open_blob_for_read(sub.id, f.role).read() for f in sub.files}
    assert sorted(blobs) == ["file-1", "file-2", "message"]
    doc = json.loads(decrypt(blobs["message"], [guwah_server.identity]))
    assert doc["testimony"] == testimony
    assert doc["protection"] == "server-sealed"
    sent = {"file-1": big, "file-2": small}
    for meta in doc["files"]:
        ciphertext = blobs[meta["role"]]
        ours = decrypt(ciphertext, [guwah_server.identity])
        theirs = subprocess.run(
            [AGE, "-d", "-i", str(guwah_server.identity_file)],
            input=ciphertext,
            capture_output=True,
            check=True,
        ).stdout
        assert ours == theirs
        assert ours[: meta["size"]] == sent[meta["role"]]
        assert meta["sha256"] == hashlib.sha256(sent[meta["role"]]).hexdigest()
    message = subprocess.run(
        [AGE, "-d", "-i", str(guwah_server.identity_file)],
        input=blobs["message"],
        capture_output=True,
        check=True,
    ).stdout
    assert json.loads(message) == doc


def test_canary_scanner_finds_what_it_should(tmp_path):
    """The scanner itself is not blind: each encoding it looks for is found when present."""
    canary = b"GUWAH-CANARY-0123456789abcdef"
    for i, form in enumerate(encodings(canary)):
        (tmp_path / f"f{i}").write_bytes(b"xx" + form + b"yy")
    raw = {
        "plain": canary,
        "u16": canary.decode().encode("utf-16-le"),
        "b64-0": base64.b64encode(canary),
        "b64-1": base64.b64encode(b"a" + canary),
        "b64-2": base64.b64encode(b"ab" + canary),
        "hex": canary.hex().encode(),
    }
    for label, blob in raw.items():
        assert scan_bytes(b"..." + blob + b"...", encodings(canary)), label


def test_concurrent_uploads_are_independent(guwah_server):
    """Two JS-off submissions at once each get their own codename and files."""
    results: list = []

    def one(i: int) -> None:
        token = form_token(guwah_server)
        r = httpx.post(
            guwah_server.url + "/submit",
            files=[
                ("csrf", (None, token)),
                ("desk", (None, "default")),
                ("testimony", (None, f"t{i}")),
                ("kept_codename", (None, "yes")),
                ("files", (f"f{i}.bin", os.urandom(300_000), "application/octet-stream")),
            ],
            timeout=60,
        )
        results.append(r.status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 4


def test_upload_cut_midway_leaves_nothing(guwah_server):
    """A witness whose Tor circuit drops mid-upload leaves no row and no staged blob."""
    token = form_token(guwah_server)
    boundary = "----cut" + secrets.token_hex(6)
    head, parts, _tail = multipart(boundary, [("csrf", token), ("desk", "default"),
                                              ("testimony", "cut short"),
                                              ("kept_codename", "yes")],
                                   [("big.bin", os.urandom(4 * 1024 * 1024))])
    port = int(guwah_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall((f"POST /submit HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                      f"Content-Length: {len(head) + len(parts[0]) + 100}\r\n\r\n").encode()
                     + head + parts[0][: 2 * 1024 * 1024])
        deadline = time.monotonic() + 30
        while not any("staging" in t for _, t in staged_fds(guwah_server.pid)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    # the server notices the disconnect, aborts, and deletes what it staged
    deadline = time.monotonic() + 30
    while any("staging" in t for _, t in staged_fds(guwah_server.pid)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert httpx.get(guwah_server.url + "/").status_code == 200  # still serving
    blobs = [p for p in (guwah_server.data_dir / "blobs").rglob("*") if p.is_file()]
    assert blobs == []
    from app.settings import load_settings
    from app.store import Store

    with Store(load_settings(guwah_server.data_dir,
                             database_url=guwah_server.database_url)) as store:
        assert store.list_submissions() == []
