"""No precise time on disk: what a seized data dir's inodes say after real submissions.

A real ``guwah serve`` receives JavaScript-off posts (text only, and with a file) and
JavaScript-on uploads (one committed, one left in progress). Files are stamped with their UTC
day as they are written; ``guwah cleanup`` then sets every file and directory of the data dir
back to its day in one batch. The test reads ``os.stat`` of everything under the data dir (and
of a backup and an export bundle), listing directories with O_NOATIME so that looking does not
change what it looks at, and checks: atime and mtime at 00:00 UTC, ctime inside the batch.
Both blob backends, on SQLite and (GUWAH_TEST_DATABASE_URL) PostgreSQL.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import GuwahServer
from witness_traffic import (
    FILE_BYTES,
    form_token,
    jsoff_body,
    json_witness,
    run_guwah,
    serve_with_backend,
    upload,
)

pytestmark = [pytest.mark.database, pytest.mark.slow]

DAY_NS = 86400 * 10**9


@pytest.fixture(params=["fs", "db"])
def server(request, tmp_path: Path, database_url: str) -> Iterator[GuwahServer]:
    yield from serve_with_backend(tmp_path, database_url, request.param)


def walk_quietly(top: Path) -> list[tuple[str, os.stat_result]]:
    """(path, lstat) of ``top`` and everything under it, reading directories with O_NOATIME."""
    out = [(str(top), os.lstat(top))]
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOATIME)
    try:
        with os.scandir(fd) as entries:
            names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
    finally:
        os.close(fd)
    for name, is_dir in names:
        path = top / name
        out.extend(walk_quietly(path) if is_dir else [(str(path), os.lstat(path))])
    return out


def guwah(server: GuwahServer, *args: str) -> str:
    proc = run_guwah(server, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def witnesses(server: GuwahServer) -> None:
    """Real submissions: JS-off text, JS-off with a file, JS-on committed, JS-on in progress."""
    for size in (0, FILE_BYTES):  # an empty file part is what a browser sends for no file
        first, rest, boundary = jsoff_body(form_token(server), f"witness-{secrets.token_hex(6)}", size)
        r = httpx.post(server.url + "/submit", content=first + rest, timeout=120, headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 200, r.text
    acks: list[str] = []
    json_witness(server, f"witness-{secrets.token_hex(6)}", acks)
    assert len(acks) == 1
    with httpx.Client(base_url=server.url, timeout=120) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/submit").text).group(1)
        upload(client, token, os.urandom(FILE_BYTES), "file-1", 300 * 1024)


def midnight(ns: int) -> bool:
    return ns % DAY_NS == 0


def test_files_carry_only_their_day(server: GuwahServer, tmp_path: Path) -> None:
    witnesses(server)
    # stamped at write already: every blob and upload file, before any cleanup
    blob_dir = server.data_dir / "blobs"
    written = [(p, st) for p, st in walk_quietly(blob_dir) if os.path.isfile(p)]
    if server.extra["backend"] == "fs":
        assert len(written) >= 3  # the JS-off file, the JS-on attachment, the live upload
    for path, st in written:
        assert midnight(st.st_mtime_ns), path

    start = time.time_ns()
    output = guwah(server, "cleanup")
    end = time.time_ns()
    assert re.search(r"(\d+) file\(s\) and directories set", output)
    tree = walk_quietly(server.data_dir)
    names = {os.path.basename(p) for p, _ in tree}
    if server.database_url.startswith("sqlite"):  # the database, its WAL and SHM are here too
        assert {"guwah.sqlite3", "guwah.sqlite3-wal", "guwah.sqlite3-shm"} <= names
    assert len(tree) >= 2
    slack = 50 * 10**6  # the kernel's ctime clock is coarser than time_ns()
    for path, st in tree:
        assert midnight(st.st_mtime_ns), (path, st.st_mtime_ns)
        assert midnight(st.st_atime_ns), (path, st.st_atime_ns)
        assert st.st_mtime_ns // DAY_NS == start // DAY_NS or st.st_mtime_ns < start
        # ctime cannot be set from user space: it shows the batch, and only the batch
        assert start - slack <= st.st_ctime_ns <= end + slack, path
    # files of one day share the same times
    assert len({(st.st_mtime_ns, st.st_atime_ns) for _, st in tree}) == 1

    # a backup and an export bundle (written outside the data dir) carry days too
    backup = tmp_path / "backup"
    guwah(server, "backup", "--to", str(backup))
    exports = tmp_path / "exports"
    exports.mkdir()
    key_file = server.data_dir / "server-signing-key"  # as guwah init makes it
    key_file.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    key_file.chmod(0o600)
    guwah(server, "export", "--to", str(exports))
    produced = walk_quietly(backup)[1:] + walk_quietly(exports)[1:]
    assert any(p.endswith(".tar") for p, _ in produced)
    for path, st in produced:
        assert midnight(st.st_mtime_ns) and midnight(st.st_atime_ns), path
