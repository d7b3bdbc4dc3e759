"""One junk submission among twenty honest ones: the editors read the twenty, then delete it.

The junk has exactly the shape the server accepts without keys (it passes the same check as
``POST /api/submissions``) and is written straight through the store, as a compromised or
buggy path would: a well-formed age file for another key of the desk's kind, or a file for
the desk whose payload was damaged. Then the real command lines: `guwah export` ->
`guwah-editor import` (exit 3: 20 laid out, 1 quarantined) -> `guwah-editor done` on the
quarantined folder -> `guwah-editor outbox` -> `guwah import` deletes it on the server and
leaves a tombstone. `--since-last` and `--all` keep working around it. SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from app.crypto import X25519Identity
from app.crypto.mailbox import derive_mailbox, new_codename
from app.web.commit import check_age_file
from tests.roundtrip_helper import seal, submit
from tests.test_roundtrip import _chain

pytestmark = [pytest.mark.database, pytest.mark.slow]


def _junk(store, kind: str) -> str:  # type: ignore[no-untyped-def]
    """Store a well-shaped junk submission directly; returns its id."""
    desk = store.get_desk("default")
    mailbox = derive_mailbox(new_codename(), desk.kind)
    if kind == "another key":
        parts = seal([X25519Identity.generate().recipient()], "JUNK-CANARY", [],
                     str(mailbox.reply_recipient))
    else:
        parts = seal(desk.age_recipients(), "JUNK-CANARY", [], str(mailbox.reply_recipient))
        parts["message"] = parts["message"][:-1] + bytes([parts["message"][-1] ^ 1])
    for data in parts.values():  # the server cannot tell it from an honest file
        check_age_file(io.BytesIO(data), len(data), desk)
    with store.begin_submission(desk, mailbox.token_hash, mailbox.reply_recipient) as sub:
        for role, data in parts.items():
            writer = sub.open_blob(role)
            writer.write(data)
            writer.close()
        return sub.commit()


def _ids(bundle: Path) -> set[str]:
    with tarfile.open(bundle) as tar:
        return {s["id"] for s in json.loads(tar.extractfile("manifest.json").read())["submissions"]}


@pytest.mark.parametrize("kind", ["another key", "damaged payload"])
def test_junk_among_twenty_is_quarantined_then_deleted(tmp_path: Path, database_url: str,
                                                       kind: str) -> None:
    chain = _chain(tmp_path, database_url)
    with chain.store() as store:
        honest = [submit(store, "default", new_codename(), f"honest testimony {i}",
                         [("note.txt", f"evidence {i}".encode())] if i % 5 == 0 else [])
                  for i in range(10)]
        junk = _junk(store, kind)
        honest += [submit(store, "default", new_codename(), f"honest testimony {i}")
                   for i in range(10, 20)]
    bundle = chain.export()
    assert bundle is not None and _ids(bundle) == {*honest, junk}
    proc = chain.editor_import(bundle, check=False)
    assert proc.returncode == 3, proc.stderr
    assert "Imported 20 submission(s)" in proc.stdout
    assert "1 submission(s) QUARANTINED" in proc.stdout and junk in proc.stderr
    for i, sid in enumerate(honest):
        assert f"honest testimony {i}" in (chain.submission_dir(sid) / "testimony.txt").read_text()
    [held] = list(chain.review.glob(f"default/bundle-000001/quarantine/*_{junk}"))
    assert "QUARANTINE" in (chain.review / "index.html").read_text().upper()
    assert not any(b"JUNK-CANARY" in p.read_bytes()
                   for p in chain.review.rglob("*") if p.is_file())

    # --since-last: the next bundle holds only what is new, and imports cleanly
    with chain.store() as store:
        newer = submit(store, "default", new_codename(), "a later honest testimony")
    second = chain.export()
    assert second is not None and _ids(second) == {newer}
    assert chain.editor_import(second).returncode == 0

    chain.done(held)
    applied = chain.server_import(chain.outbox())
    assert "1 submission(s) deleted" in applied.stdout
    with chain.store() as store:
        assert {s.id for s in store.list_submissions()} == {*honest, newer}
        assert [t[0] for t in store.tombstones()] == [junk]
    third = chain.export("--all")
    assert third is not None and _ids(third) == {*honest, newer}
