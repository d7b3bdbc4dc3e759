"""app.store against a real database (SQLite, or PostgreSQL with GUWAH_TEST_DATABASE_URL)."""

from __future__ import annotations

import base64
import datetime as dt
import gc
import hashlib
import os
import secrets
from pathlib import Path

import pytest
from conftest import apply_outbox
from sqlalchemy import Date, DateTime, Interval, Time, inspect, select, text

from app.crypto import (
    Encryptor,
    HybridIdentity,
    X25519Identity,
    decrypt,
    fingerprint,
    padme,
)
from app.settings import SettingsError, load_settings
from app.store import NotFound, StartupError, Store, StoreError, check_tmpdir
from app.store.models import Base, BlobChunkRow, BlobStagingRow
from app.store.schema import current_revision, head_revision, init_store

pytestmark = pytest.mark.database  # tests/run.sh runs these again on PostgreSQL

IS_PG = bool(os.environ.get("GUWAH_TEST_DATABASE_URL"))


def token_hash() -> str:
    return hashlib.sha256(b"guwah.org/v1/token" + secrets.token_bytes(32)).hexdigest()


def seal(writer, desk, plaintext: bytes) -> None:
    """Pad like the web app does, encrypt to the desk, close the blob."""
    enc = Encryptor(desk.age_recipients(), writer)
    enc.write(plaintext + b"\0" * (padme(len(plaintext)) - len(plaintext)))
    enc.close()
    writer.close()


def submit(store, desk, files: dict[str, bytes], **kw) -> str:
    reply = kw.pop("reply", X25519Identity.generate().recipient())
    th = kw.pop("token_hash", None) or token_hash()
    with store.begin_submission(desk, th, str(reply), **kw) as sub:
        for role, data in files.items():
            seal(sub.open_blob(role), desk, data)
        return sub.commit()


def blob_files(store) -> list[Path]:
    root = store.settings.blob_path
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def any_store(settings, blob_backend):
    """A store for each blob backend."""
    s = Store(settings.model_copy(update={"blob_backend": blob_backend}))
    init_store(s)
    yield s
    s.close()


@pytest.fixture
def any_desk(any_store, editor_identity):
    ed = secrets.token_bytes(32)
    any_store.add_desk("default", "")
    any_store.add_recipient(
        "default",
        "Ed",
        str(editor_identity.recipient()),
        base64.b64encode(ed).decode(),
        fingerprint(ed),
    )
    return any_store.get_desk("default")


# ----------------------------------------------------------------------------- schema


def test_schema_stores_no_time_of_day(store):
    """Only Date columns: nothing finer than the day, in the models and in the live database."""
    for table in Base.metadata.tables.values():
        for column in table.columns:
            assert not isinstance(column.type, DateTime | Time | Interval), column
    inspector = inspect(store.engine)
    tables = set(inspector.get_table_names())
    assert {"submissions", "submission_files", "replies", "tombstones", "exports"} <= tables
    for name in tables:
        for column in inspector.get_columns(name):
            kind = str(column["type"]).upper()
            assert "TIME" not in kind and "INTERVAL" not in kind, (name, column)
    day_columns = {
        (t.name, c.name)
        for t in Base.metadata.tables.values()
        for c in t.columns
        if isinstance(c.type, Date)
    }
    assert ("submissions", "day") in day_columns


def test_submission_columns_are_exactly_the_documented_ones(store):
    inspector = inspect(store.engine)
    columns = {c["name"] for c in inspector.get_columns("submissions")}
    assert columns == {"id", "desk_id", "day", "token_hash", "reply_recipient", "parent_id"}
    files = {c["name"] for c in inspector.get_columns("submission_files")}
    assert files == {"submission_id", "role", "blob_ref", "size", "sha256"}


def test_migrations_match_models(store):
    """Alembic head == the models (no forgotten migration)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert current_revision(store) == head_revision()


@pytest.mark.skipif(IS_PG, reason="SQLite pragmas")
def test_sqlite_pragmas_on_every_connection(store):
    assert store.pragmas() == {
        "journal_mode": "wal",
        "secure_delete": 1,
        "foreign_keys": 1,
        "synchronous": 2,
    }
    # a second, independent connection gets them too
    with store.engine.connect() as a, store.engine.connect() as b:
        for conn in (a, b):
            assert conn.execute(text("PRAGMA secure_delete")).scalar() == 1
    db_file = Path(store.engine.url.database)
    assert oct(db_file.stat().st_mode & 0o777) == "0o600"


@pytest.mark.skipif(IS_PG, reason="inspects the SQLite file")
def test_secure_delete_leaves_no_trace_in_the_file(store, desk):
    marker = token_hash()
    sid = submit(store, desk, {"message": b"x"}, token_hash=marker)
    with store.engine.connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    db_file = Path(store.engine.url.database)
    assert marker.encode() in db_file.read_bytes()
    apply_outbox(store, done=[sid])  # an editor's "done": the submission is deleted
    with store.engine.connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    for path in db_file.parent.glob(db_file.name + "*"):
        assert marker.encode() not in path.read_bytes(), path


# ----------------------------------------------------------------------------- submissions


def test_round_trip_decrypts(any_store, any_desk, editor_identity):
    store, desk = any_store, any_desk
    message = b'{"testimony": "what I saw"}'
    big = os.urandom(2 * 1024 * 1024 + 123)  # crosses the 1 MiB chunk boundary of "db"
    th = token_hash()
    reply = X25519Identity.generate()
    sid = submit(
        store,
        desk,
        {"message": message, "file-1": big, "file-2": b""},
        token_hash=th,
        reply=reply.recipient(),
    )
    info = store.submission(sid)
    assert info.desk == "default"
    assert info.day == dt.datetime.now(dt.UTC).date()
    assert info.token_hash == th and info.reply_recipient == str(reply.recipient())
    assert [f.role for f in info.files] == ["file-1", "file-2", "message"]
    for f in info.files:
        with store.open_blob_for_read(sid, f.role) as handle:
            blob = handle.read()
        assert len(blob) == f.size and hashlib.sha256(blob).hexdigest() == f.sha256
        plain = decrypt(blob, [editor_identity])
        assert len(plain) == padme(len(plain))
    with store.open_blob_for_read(sid, "file-1") as handle:
        assert decrypt(handle.read(), [editor_identity])[: len(big)] == big
    assert store.pending_bytes() == 0
    assert store.stats()["submissions"] == 1
    assert store.stats()["by_desk"] == {"default": 1}


def test_abort_leaves_nothing(any_store, any_desk):
    store, desk = any_store, any_desk
    with pytest.raises(RuntimeError):
        with store.begin_submission(
            desk, token_hash(), str(X25519Identity.generate().recipient())
        ) as sub:
            seal(sub.open_blob("message"), desk, b"half")
            w = sub.open_blob("file-1")
            w.write(os.urandom(3 * 1024 * 1024))
            assert store.pending_bytes() > 0
            raise RuntimeError("witness went away")
    assert store.list_submissions() == []
    assert store.pending_bytes() == 0
    if store.blobs.backend == "fs":
        assert blob_files(store) == []
    else:
        with store.engine.connect() as conn:
            assert conn.execute(select(BlobChunkRow.ref)).first() is None
            assert conn.execute(select(BlobStagingRow.ref)).first() is None


def test_commit_needs_a_message(store, desk):
    with store.begin_submission(
        desk, token_hash(), str(X25519Identity.generate().recipient())
    ) as sub:
        seal(sub.open_blob("file-1"), desk, b"only a file")
        with pytest.raises(StoreError, match="message"):
            sub.commit()
    assert store.list_submissions() == [] and blob_files(store) == []


def test_bad_submission_input_is_refused_before_writing(store, desk):
    x = str(X25519Identity.generate().recipient())
    with pytest.raises(StoreError, match="64 lowercase hex"):
        store.begin_submission(desk, "nothex", x)
    with pytest.raises(StoreError, match="X25519"):
        store.begin_submission(desk, token_hash(), str(HybridIdentity.generate().recipient()))
    with pytest.raises(StoreError, match="reply recipient"):
        store.begin_submission(desk, token_hash(), "age1notakey")
    with pytest.raises(NotFound):
        store.begin_submission("nope", token_hash(), x)
    with pytest.raises(NotFound):
        store.begin_submission(desk, token_hash(), x, parent_id="doesnotexist")
    store.add_desk("empty", "")
    with pytest.raises(StoreError, match="no editor keys"):
        store.begin_submission("empty", token_hash(), x)
    with store.begin_submission(desk, token_hash(), x) as sub:
        with pytest.raises(StoreError, match="role"):
            sub.open_blob("../etc/passwd")
        sub.open_blob("message").close()
        with pytest.raises(StoreError, match="already"):
            sub.open_blob("message")
    assert store.list_submissions() == [] and blob_files(store) == []


def test_follow_up_stays_in_its_mailbox(store, desk):
    th = token_hash()
    first = submit(store, desk, {"message": b"1"}, token_hash=th)
    second = submit(store, desk, {"message": b"2"}, token_hash=th, parent_id=first)
    assert store.submission(second).parent_id == first
    assert {s.id for s in store.list_submissions(token_hash=th)} == {first, second}
    assert store.mailbox_exists(th) and not store.mailbox_exists(token_hash())
    with pytest.raises(NotFound):  # another mailbox cannot attach to it
        submit(store, desk, {"message": b"3"}, parent_id=first)


def test_desks_and_recipients(store):
    desk = store.add_desk("news", "The newsroom")
    assert desk.kind is None and desk.recipients == []
    with pytest.raises(StoreError, match="already exists"):
        store.add_desk("news")
    with pytest.raises(StoreError, match="desk name"):
        store.add_desk("bad name!")
    hybrid = HybridIdentity.generate()
    ed = secrets.token_bytes(32)
    store.add_recipient(
        "news", "Pq", str(hybrid.recipient()), base64.b64encode(ed).decode(), fingerprint(ed)
    )
    assert store.get_desk("news").kind == "mlkem768x25519"
    ed2 = secrets.token_bytes(32)
    with pytest.raises(StoreError, match="never mixes"):
        store.add_recipient(
            "news",
            "X",
            str(X25519Identity.generate().recipient()),
            base64.b64encode(ed2).decode(),
            fingerprint(ed2),
        )
    with pytest.raises(StoreError, match="already"):
        store.add_recipient(
            "news", "Pq", str(hybrid.recipient()), base64.b64encode(ed).decode(), fingerprint(ed)
        )
    with pytest.raises(StoreError, match="Ed25519"):
        store.add_recipient("news", "Y", str(HybridIdentity.generate().recipient()), "AAAA", "F")
    store.remove_recipient("news", fingerprint(ed).lower())
    assert store.get_desk("news").recipients == []
    with pytest.raises(NotFound):
        store.remove_recipient("news", fingerprint(ed))
    store.remove_desk("news")
    assert store.list_desks() == []


def test_hybrid_desk_round_trip(store):
    editor = HybridIdentity.generate()
    ed = secrets.token_bytes(32)
    store.add_desk("pq", "")
    store.add_recipient(
        "pq", "Pq", str(editor.recipient()), base64.b64encode(ed).decode(), fingerprint(ed)
    )
    desk = store.get_desk("pq")
    sid = submit(
        store, desk, {"message": b"long-lived secret"}, reply=HybridIdentity.generate().recipient()
    )
    with store.open_blob_for_read(sid, "message") as handle:
        assert decrypt(handle.read(), [editor]).rstrip(b"\0") == b"long-lived secret"


def _refs(store, sid: str) -> list[str]:
    from app.store.models import SubmissionFileRow

    with store.engine.connect() as conn:
        return [
            r
            for (r,) in conn.execute(
                select(SubmissionFileRow.blob_ref).where(SubmissionFileRow.submission_id == sid)
            )
        ]


def test_replies_and_deletion(any_store, any_desk, editor_identity):
    store, desk = any_store, any_desk
    th = token_hash()
    sid = submit(store, desk, {"message": b"m", "file-1": os.urandom(400_000)}, token_hash=th)
    refs = _refs(store, sid)
    assert len(refs) == 2 and all(store.blobs.exists(r) for r in refs)
    witness = X25519Identity.generate()
    from app.crypto import encrypt

    [reply_id] = apply_outbox(store, [(sid, encrypt(b"thank you", [witness.recipient()]))])
    [info] = store.replies(th)
    assert info.id == reply_id and info.day == dt.datetime.now(dt.UTC).date()
    with store.open_reply(reply_id, th) as handle:
        assert decrypt(handle.read(), [witness]) == b"thank you"
    with pytest.raises(NotFound):
        store.open_reply(reply_id, token_hash())
    apply_outbox(store, done=[sid])
    with pytest.raises(NotFound):
        store.submission(sid)
    assert [t[0] for t in store.tombstones()] == [sid]
    assert not any(store.blobs.exists(r) for r in refs)
    assert blob_files(store) == [] or store.blobs.backend == "db"
    assert store.cleanup_staging() == 0  # the reply's blob is still referenced
    with store.open_reply(reply_id, th) as handle:
        assert decrypt(handle.read(), [witness]) == b"thank you"


def test_small_blobs_commit_into_the_database(store, desk, editor_identity):
    """fs backend: <= 256 KiB stays out of the filesystem (one fsync); larger goes to a file."""
    from app.store.blobs import INLINE_MAX

    small, large = os.urandom(1000), os.urandom(INLINE_MAX + 1)
    sid = submit(store, desk, {"message": small, "file-1": large})
    info = store.submission(sid)
    by_role = dict(zip([f.role for f in info.files], _refs(store, sid), strict=True))
    assert store.blobs.is_inline(by_role["message"])
    assert not store.blobs.is_inline(by_role["file-1"])
    assert [p.name for p in blob_files(store)] == [by_role["file-1"]]
    for role, plain in (("message", small), ("file-1", large)):
        with store.open_blob_for_read(sid, role) as handle:
            assert decrypt(handle.read(), [editor_identity])[: len(plain)] == plain
    # an inline chunk that lost its row is debris for cleanup
    from app.store.models import BlobChunkRow

    with store.engine.begin() as conn:
        conn.execute(BlobChunkRow.__table__.insert().values(ref="f" * 32, seq=0, data=b"x"))
    assert store.cleanup_staging() == 1
    with store.open_blob_for_read(sid, "message") as handle:
        assert handle.read()


def test_cleanup_removes_staging_and_orphans(any_store, any_desk):
    store, desk = any_store, any_desk
    kept = submit(store, desk, {"message": b"kept"})
    # an abandoned upload (writer never committed, process "forgot" it)
    pending = store.begin_submission(desk, token_hash(), str(X25519Identity.generate().recipient()))
    w = pending.open_blob("message")
    w.write(os.urandom(1500 * 1024))
    w.close()
    assert store.pending_bytes() >= 1500 * 1024
    if store.blobs.backend == "fs":
        orphan = store.settings.blob_path / "ab" / ("ab" + "0" * 30)
        orphan.parent.mkdir(exist_ok=True)
        orphan.write_bytes(b"renamed but never committed")
    # debris has no age: the renamed orphan goes at once; the live writer holds its blob
    assert store.cleanup_expired() == (1 if store.blobs.backend == "fs" else 0)
    assert store.pending_bytes() >= 1500 * 1024
    del w, pending  # the process forgets its writer, as a crashed one does
    gc.collect()
    removed = store.cleanup_staging()
    assert removed >= 1
    assert store.pending_bytes() == 0
    with store.open_blob_for_read(kept, "message") as handle:
        assert handle.read()
    if store.blobs.backend == "fs":
        assert not orphan.exists()
        referenced = store.referenced_refs()
        assert all(p.name in referenced for p in blob_files(store))


def test_order_of_days_only(store, desk):
    submit(store, desk, {"message": b"a"})
    with store.engine.connect() as conn:
        (day,) = conn.execute(text("SELECT day FROM submissions")).one()
    # SQLite stores dates as text: exactly YYYY-MM-DD, no time part
    assert str(day) == dt.datetime.now(dt.UTC).date().isoformat()


# ----------------------------------------------------------------------------- settings


def test_settings_precedence(tmp_path, monkeypatch):
    data = tmp_path / "d"
    data.mkdir()
    (data / "guwah.toml").write_text('max_files = 7\nblob_backend = "db"\nmax_text_chars = 5\n')
    monkeypatch.setenv("GUWAH_MAX_TEXT_CHARS", "9")
    monkeypatch.delenv("GUWAH_DATABASE_URL", raising=False)
    s = load_settings(data)
    assert (s.max_files, s.blob_backend, s.max_text_chars) == (7, "db", 9)
    assert s.database_url == f"sqlite:///{data}/guwah.sqlite3"
    assert s.blob_dir == data / "blobs" and s.server_key_file == data / "server-signing-key"
    assert load_settings(data, max_files=3).max_files == 3
    monkeypatch.setenv("GUWAH_DATA_DIR", str(data))
    assert load_settings().data_dir == data


def test_settings_errors_are_one_sentence(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "guwah.toml").write_text("max_files = [\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(data)
    (data / "guwah.toml").write_text("max_filez = 3\n")
    with pytest.raises(SettingsError, match="max_filez"):
        load_settings(data)
    (data / "guwah.toml").write_text('blob_backend = "s3"\n')
    with pytest.raises(SettingsError, match="blob_backend"):
        load_settings(data)


# ----------------------------------------------------------------------------- start-up


def test_tmpdir_must_be_private(tmp_path, monkeypatch):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    warnings = check_tmpdir(private)
    assert all("tmpfs" in w for w in warnings)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(StartupError, match="chmod 0700"):
        check_tmpdir(shared)
    with pytest.raises(StartupError, match="does not exist"):
        check_tmpdir(tmp_path / "missing")
    monkeypatch.delenv("TMPDIR", raising=False)
    with pytest.raises(StartupError, match="TMPDIR is not set"):
        check_tmpdir()
    monkeypatch.setenv("TMPDIR", str(private))
    check_tmpdir()
    if os.geteuid() == 0:
        os.chown(private, 65534, 65534)
        with pytest.raises(StartupError, match="another user"):
            check_tmpdir(private)


def test_tmpfs_is_not_warned_about():
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm")
    import tempfile

    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        os.chmod(tmp, 0o700)
        assert check_tmpdir(tmp) == []


def test_failed_commit_keeps_nothing(any_store, any_desk):
    """A commit the database refuses (here: the parent was deleted meanwhile) keeps no blob."""
    store, desk = any_store, any_desk
    th = token_hash()
    parent = submit(store, desk, {"message": b"first"}, token_hash=th)
    reply = str(X25519Identity.generate().recipient())
    with store.begin_submission(desk, th, reply, parent_id=parent) as sub:
        seal(sub.open_blob("message"), desk, b"second")
        seal(sub.open_blob("file-1"), desk, os.urandom(300 * 1024))
        apply_outbox(store, done=[parent])  # an editor's "done" deletes it meanwhile
        with pytest.raises(StoreError, match="nothing was kept"):
            sub.commit()
    assert store.list_submissions() == []
    assert store.pending_bytes() == 0
    assert blob_files(store) == []
    with store.engine.connect() as conn:  # the parent's blobs went with it; ours were discarded
        assert conn.execute(select(BlobChunkRow.ref)).first() is None
        assert conn.execute(select(BlobStagingRow.ref)).first() is None


def test_export_bookkeeping_never_hands_a_submission_out_twice(store, desk) -> None:
    """Two nodes exporting at once: B chose its submissions before A recorded them, but took
    its sequence number after; recording B's bundle must fail (docs/multinode.md)."""
    ids = [submit(store, desk, {"message": b"testimony"}) for _ in range(2)]
    assert store.record_export(desk.name, ids, sequence=1, only_new=True) == 1
    with pytest.raises(StoreError, match="another export"):
        store.record_export(desk.name, ids, sequence=2, only_new=True)
    assert store.exported_ids(desk.name) == set(ids)
    # an explicit --all re-export may repeat them
    assert store.record_export(desk.name, ids, sequence=2) == 2
