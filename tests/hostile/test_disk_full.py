"""A disk that really fills: blob writes and the SQLite commit fail with "no space".

The server's data dir is put on a small tmpfs (needs root to mount; skipped otherwise, see
tests/run.sh which runs as root in CI). Every answer is 200 or 507, never 500, and every
acknowledged submission is complete and decrypts with the editor's key afterwards.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import HOSTILE_ENV, run_guwah_server

from app.crypto import decrypt
from app.settings import load_settings
from app.store import Store

from .clients import submit_js_off

MiB = 1024 * 1024


@contextlib.contextmanager
def tiny_disk(where: Path, size_mib: int) -> Iterator[Path]:
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs",
                    str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _read_all(server) -> list[list[bytes]]:  # type: ignore[no-untyped-def]
    """The decrypted blobs of every stored submission (fails if one does not decrypt)."""
    settings = load_settings(server.data_dir, database_url=server.database_url)
    out = []
    with Store(settings) as store:
        for sub in store.list_submissions():
            out.append([decrypt(store.open_blob_for_read(sub.id, f.role).read(),
                                [server.identity]) for f in sub.files])
    return out


@pytest.mark.parametrize("min_free", [4 * MiB, 0])
def test_full_disk_gives_507_never_500_and_loses_nothing(tmp_path, database_url, min_free):
    env = {**HOSTILE_ENV, "GUWAH_MIN_FREE_BYTES": str(min_free),
           "GUWAH_MAX_PENDING_BYTES": str(1024 * MiB)}
    with tiny_disk(tmp_path / "tiny", 40) as disk, \
            run_guwah_server(disk, database_url, env_extra=env) as server:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            assert submit_js_off(client).status_code == 200  # before the flood: honest

        def post(i: int) -> int:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                body = os.urandom(4 * MiB)
                return submit_js_off(client, files=[(f"{i}.bin", body)]).status_code

        with concurrent.futures.ThreadPoolExecutor(14) as pool:
            answers = list(pool.map(post, range(14)))
        assert set(answers) <= {200, 507}, answers
        assert 507 in answers, answers
        with httpx.Client(base_url=server.url, timeout=120) as client:
            later = submit_js_off(client, text="x" * 20_000).status_code
        assert later in (200, 507)
        plain = _read_all(server)  # every acknowledged submission is whole and decrypts
        assert len(plain) == 1 + answers.count(200) + (later == 200)
        with_file = [blobs for blobs in plain if len(blobs) == 2]
        assert len(with_file) == answers.count(200)
        assert all(len(blobs[0]) == 4 * MiB for blobs in with_file)
