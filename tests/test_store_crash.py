"""Crash safety: a process killed (os._exit) at each step of a submission leaves nothing visible.

The child process runs the real Store against the real database; the crash is injected by
wrapping the step that comes next (no mocks: every step before it really happened, including
fsyncs). After the crash the parent checks that nothing half-stored is visible, then that a
restart's ``cleanup_staging()`` leaves only blobs referenced by committed rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import select

from app.crypto import X25519Identity, decrypt
from app.store import NotFound, Store
from app.store.models import BlobChunkRow, BlobStagingRow
from app.store.schema import init_store

pytestmark = pytest.mark.database  # tests/run.sh runs these again on PostgreSQL

CHILD = textwrap.dedent(
    """
    import json, os, sys
    from app.crypto import Encryptor
    from app.settings import load_settings
    from app.store import Store

    data_dir, url, backend, point, token_hash, reply = sys.argv[1:7]
    store = Store(load_settings(data_dir, database_url=url, blob_backend=backend))
    desk = store.get_desk("default")

    def crash(*_a, **_k):
        os._exit(17)

    if point == "mid-rename":                      # one blob renamed, the other not yet
        real_rename, calls = os.rename, []
        def rename(src, dst):
            calls.append(src)
            if len(calls) == 2:
                crash()
            return real_rename(src, dst)
        os.rename = rename
    if point == "before-db-commit":                # blobs in place (fs) / chunks durable (db)
        real = store.blobs.in_commit
        def in_commit(conn, refs):
            real(conn, refs)
            crash()
        store.blobs.in_commit = in_commit

    sub = store.begin_submission(desk, token_hash, reply)
    print(json.dumps({"id": sub.id}), flush=True)
    # both above the 256 KiB inline limit, so the filesystem backend really renames two files
    for role, size in (("message", 300 * 1024), ("file-1", 2 * 1024 * 1024 + 7)):
        writer = sub.open_blob(role)
        enc = Encryptor(desk.age_recipients(), writer)
        enc.write(bytes([65]) * (size // 2))
        if point == "mid-write" and role == "file-1":
            writer.flush()
            crash()
        enc.write(bytes([65]) * (size - size // 2))
        enc.close()
        writer.close()
    if point == "before-commit":
        crash()
    sid = sub.commit()
    if point == "after-commit":
        crash()
    print("unreachable", flush=True)
    """
)

POINTS = ["mid-write", "before-commit", "mid-rename", "before-db-commit", "after-commit"]


def _run_child(data_dir: Path, url: str, backend: str, point: str, th: str, reply: str) -> str:
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir), url, backend, point, th, reply],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 17, proc.stderr
    assert "unreachable" not in proc.stdout
    return json.loads(proc.stdout.splitlines()[0])["id"]


def _staged_and_unreferenced(store: Store) -> tuple[int, set[str]]:
    referenced = store.referenced_refs()
    if store.blobs.backend == "fs":
        root = store.settings.blob_path
        staged = len(list((root / "staging").iterdir()))
        present = {p.name for p in root.rglob("*") if p.is_file() and p.parent.name != "staging"}
    else:
        with store.engine.connect() as conn:
            staged = len(conn.execute(select(BlobStagingRow.ref)).all())
            present = {r for (r,) in conn.execute(select(BlobChunkRow.ref).distinct())}
    return staged, present - referenced


@pytest.mark.parametrize("point", POINTS)
def test_crash_leaves_nothing_half_visible(settings, blob_backend, point, editor_identity):
    if point == "mid-rename" and blob_backend == "db":
        pytest.skip("the database backend renames nothing")
    settings = settings.model_copy(update={"blob_backend": blob_backend})
    from app.crypto import fingerprint

    store = Store(settings)
    init_store(store)
    ed = os.urandom(32)
    import base64

    store.add_desk("default", "")
    store.add_recipient(
        "default",
        "Ed",
        str(editor_identity.recipient()),
        base64.b64encode(ed).decode(),
        fingerprint(ed),
    )
    th = os.urandom(32).hex()
    reply = str(X25519Identity.generate().recipient())
    sid = _run_child(settings.data_dir, settings.database_url, blob_backend, point, th, reply)

    # "Restart": a new Store on the same data, as the web app does at start-up.
    store.close()
    store = Store(settings)
    try:
        if point == "after-commit":
            info = store.submission(sid)  # acknowledged => durable and complete
            assert [f.role for f in info.files] == ["file-1", "message"]
            with store.open_blob_for_read(sid, "file-1") as handle:
                assert decrypt(handle.read(), [editor_identity]) == b"A" * (2 * 1024 * 1024 + 7)
        else:
            with pytest.raises(NotFound):
                store.submission(sid)
            assert store.list_submissions() == []
            assert not store.mailbox_exists(th)
        staged, orphans = _staged_and_unreferenced(store)
        if point != "after-commit":
            assert staged or orphans  # the crash really left debris behind
        store.cleanup_staging()
        staged, orphans = _staged_and_unreferenced(store)
        assert staged == 0 and orphans == set()
        assert store.pending_bytes() == 0
        expected = 1 if point == "after-commit" else 0
        assert len(store.list_submissions()) == expected
    finally:
        store.close()
