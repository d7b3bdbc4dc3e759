"""The editor round trip through both real command lines and the real store.

guwah export -> guwah-editor import -> reply + done -> guwah-editor outbox -> guwah import,
then what the returning witness reads, and what is left on the server. Runs on SQLite, and on
PostgreSQL when GUWAH_TEST_DATABASE_URL is set (tests/run.sh).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from roundtrip_helper import (
    PASSPHRASE,
    Chain,
    assemble_tar,
    craft_tar,
    read_replies,
    submit,
)

from app.bundles import OUTBOX_FORMAT, bundle_to_bytes, canonical_json
from app.bundles.ustar import member_header
from app.crypto import X25519Identity, encrypt, parse_recipient
from app.crypto.mailbox import derive_mailbox
from app.editor.keyring import open_keyring

pytestmark = pytest.mark.database

CODENAME = "abacus abdomen abdominal abide abiding ability ablaze"
OTHER_CODENAME = "zombie zone zoning zookeeper zoologist zoology zoom"
CANARY = "CANARY-reply-text-7f3a9c never on the server"


def _chain(tmp_path: Path, database_url: str, **kw) -> Chain:
    pg = database_url if database_url.startswith("postgresql") else None
    chain = Chain(tmp_path, pg, **kw)
    chain.setup()
    return chain


def _blob_files(chain: Chain) -> set[str]:
    root = chain.data_dir / "blobs"
    return {p.name for p in root.rglob("*") if p.is_file()}


def _blob_refs(store, submission_id: str) -> set[str]:
    from sqlalchemy import select

    from app.store.models import SubmissionFileRow

    with store.engine.connect() as conn:
        return {r for (r,) in conn.execute(select(SubmissionFileRow.blob_ref).where(
            SubmissionFileRow.submission_id == submission_id))}


def _server_state(chain: Chain) -> tuple:
    with chain.store() as store:
        subs = [(s.id, tuple(f.sha256 for f in s.files)) for s in store.list_submissions()]
        stats = store.stats()
        tombs = sorted(store.tombstones())
        replies = {t: [r.sha256 for r in store.replies(t)] for t in
                   {s.token_hash for s in store.list_submissions()}}
    return subs, stats, tombs, replies, _blob_files(chain)


@pytest.mark.parametrize("x25519", [True, False], ids=["x25519", "hybrid"])
def test_full_round_trip(tmp_path: Path, database_url: str, x25519: bool) -> None:
    chain = _chain(tmp_path, database_url, x25519=x25519)
    photo = os.urandom(300_000)
    with chain.store() as store:
        first = submit(store, "default", CODENAME, "What I saw", [("photo.jpg", photo)])
        follow = submit(store, "default", CODENAME, "And later", parent_id=first)
        other = submit(store, "default", OTHER_CODENAME, "Someone else")
        first_refs = _blob_refs(store, first)
        assert len(first_refs) == 2 and all(store.blobs.exists(r) for r in first_refs)
    bundle = chain.export()
    assert bundle is not None and bundle.name == "guwah-export-default-000001.tar"
    out = chain.editor_import(bundle)
    assert "Imported 3 submission(s)" in out.stdout
    sub = chain.submission_dir(first)
    assert (sub / "file-1_photo.jpg").read_bytes() == photo
    index = (chain.review / "index.html").read_text()
    assert f'href="#s-{first}"' in index  # the follow-up links to its parent
    # idempotent export: nothing new
    nothing = chain.guwah("export", "--to", str(chain.usb))
    assert "nothing new" in nothing.stdout

    chain.reply(sub, CANARY)
    chain.done(sub)
    outbox = chain.outbox()
    applied = chain.server_import(outbox)
    assert "1 reply(ies) stored, 1 submission(s) deleted" in applied.stdout

    with chain.store() as store:
        kind = store.get_desk("default").kind
        replies = read_replies(store, CODENAME, kind)
        assert [r["text"] for r in replies] == [CANARY]
        assert replies[0]["submission_id"] == first
        assert read_replies(store, OTHER_CODENAME, kind) == []
        ids = {s.id for s in store.list_submissions()}
        assert ids == {follow, other}
        assert store.submission(follow).parent_id is None  # its parent is gone
        assert [t[0] for t in store.tombstones()] == [first]
        # the follow-up keeps the mailbox: the witness still reaches the reply
        assert store.mailbox_exists(derive_mailbox(CODENAME, kind).token_hash)
        # the deleted submission's ciphertext is gone (files and database chunks alike)
        assert not any(store.blobs.exists(r) for r in first_refs)
        assert not (first_refs & _blob_files(chain))
    # canary: the reply text is nowhere in the server's data dir (DB, WAL, blobs, config)
    for path in chain.data_dir.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    # the same outbox again: refused, nothing changes
    before = _server_state(chain)
    again = chain.server_import(outbox, check=False)
    assert again.returncode == 1 and "replay refused" in again.stderr
    assert _server_state(chain) == before

    # a new submission goes out in bundle 2, alone; the deleted one never comes back
    with chain.store() as store:
        newer = submit(store, "default", CODENAME, "A third thing", parent_id=follow)
    second = chain.export()
    assert second is not None and second.name.endswith("000002.tar")
    with tarfile.open(second) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert [s["id"] for s in manifest["submissions"]] == [newer]
    chain.editor_import(second)
    assert chain.submission_dir(newer).is_dir()
    # --all re-exports everything still on the server (not the tombstoned one)
    third = chain.export("--all")
    with tarfile.open(third) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert {s["id"] for s in manifest["submissions"]} == {follow, other, newer}
    assert manifest["sequence"] == 3


def _editor_key(chain: Chain) -> SigningKey:
    return open_keyring(chain.keyring, PASSPHRASE).signing_key


def _outbox_manifest(key: SigningKey, replies: list[tuple[str, str, bytes]], done: list[str],
                     desk: str = "default", bundle_id: str | None = None) -> tuple[dict, dict]:
    members = {f"replies/{rid}.age": data for rid, _sid, data in replies}
    manifest = {
        "format": OUTBOX_FORMAT,
        "editor_key": base64.b64encode(bytes(key.verify_key)).decode(),
        "desk": desk,
        "bundle_id": bundle_id or base64.urlsafe_b64encode(os.urandom(24)).decode(),
        "replies": [{"id": rid, "submission_id": sid, "path": f"replies/{rid}.age",
                     "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                    for rid, sid, data in replies],
        "done": done,
    }
    return manifest, members


def _flip(data: bytes, name: str, delta: int) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        offset = tar.getmember(name).offset_data + delta
    b = bytearray(data)
    b[offset] ^= 1
    return bytes(b)


def _info(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def test_bad_outbox_bundles_are_refused_and_change_nothing(tmp_path: Path,
                                                          database_url: str) -> None:
    chain = _chain(tmp_path, database_url)
    with chain.store() as store:
        sid = submit(store, "default", CODENAME, "keep me")
        token = derive_mailbox(CODENAME, "X25519")
        store.add_desk("elsewhere")
        stranger = X25519Identity.generate()
        store.add_recipient("elsewhere", "E", str(stranger.recipient()),
                            base64.b64encode(bytes(SigningKey.generate().verify_key)).decode(),
                            "AAAA-BBBB-CCCC-DDDD-EEEE")
        foreign = submit(store, "elsewhere", OTHER_CODENAME, "not yours")
    key = _editor_key(chain)
    editor_recipient = parse_recipient(
        next(ln.split(": ")[1] for ln in (chain.keyring / "editor.pub").read_text().splitlines()
             if ln.startswith("age-recipient: ")))
    reply = encrypt(b'{"text":"hi"}' + b" " * 243,
                    [parse_recipient(token.reply_recipient), editor_recipient])
    manifest, members = _outbox_manifest(key, [("r1", sid, reply)], [sid])
    good = bundle_to_bytes(manifest, key, members)
    items = list(members.items())
    unknown = SigningKey.generate()
    m_unknown, mem_unknown = _outbox_manifest(unknown, [("r1", sid, reply)], [sid])
    dup = json.loads(json.dumps(manifest))
    dup["replies"].append(dict(dup["replies"][0]))
    big = json.loads(json.dumps(manifest))
    big["x"] = "y" * (16 * 1024 * 1024)
    big_bytes = canonical_json(big)
    hybrid_reply = encrypt(b"x" * 256, [_hybrid_recipient()])
    m_kind, mem_kind = _outbox_manifest(key, [("r2", sid, hybrid_reply)], [])
    m_foreign, mem_foreign = _outbox_manifest(key, [], [foreign])
    m_missing, _ = _outbox_manifest(key, [], ["no-such-submission"])
    cases = {
        "truncated": (good[: len(good) - 700], "truncated"),
        "tampered-ciphertext": (_flip(good, "replies/r1.age", 100), "SHA-256"),
        "tampered-manifest": (_flip(good, "manifest.json", 20), "signature"),
        "tampered-signature": (_flip(good, "manifest.sig", 3), "signature"),
        "unknown-key": (bundle_to_bytes(m_unknown, unknown, mem_unknown), "not an editor"),
        "dotdot": (assemble_tar(manifest, key, [("../x", b"e")], OUTBOX_FORMAT), "leaves"),
        "absolute": (assemble_tar(manifest, key, [("/tmp/guwah-y", b"e")], OUTBOX_FORMAT),
                     "absolute"),
        "symlink": (assemble_tar(manifest, key, [_info("replies/r1.age", tarfile.SYMTYPE,
                                                       "/etc/passwd")], OUTBOX_FORMAT),
                    "symbolic link"),
        "hardlink": (assemble_tar(manifest, key, [_info("replies/r1.age", tarfile.LNKTYPE,
                                                        "manifest.json")], OUTBOX_FORMAT),
                     "hard link"),
        "device": (assemble_tar(manifest, key, [_info("replies/r1.age", tarfile.BLKTYPE)],
                                OUTBOX_FORMAT), "device"),
        "duplicate-ids": (assemble_tar(dup, key, items, OUTBOX_FORMAT), "appears twice"),
        "duplicate-member": (assemble_tar(manifest, key, [items[0], items[0]], OUTBOX_FORMAT),
                             "duplicated"),
        "oversized-manifest": (member_header("manifest.json", len(big_bytes)) + big_bytes[:9000],
                               "16 MiB"),
        "not-in-manifest": (assemble_tar(manifest, key, [*items, ("replies/zz.age", b"x")],
                                         OUTBOX_FORMAT), "does not list"),
        "export-bundle": (chain.export().read_bytes(), "an export bundle, not an outbox"),
        "no-signature": (craft_tar([("manifest.json", canonical_json(manifest))]),
                         "no manifest.sig"),
        "wrong-kind-reply": (bundle_to_bytes(m_kind, key, mem_kind), "X25519"),
        "other-desk-submission": (bundle_to_bytes(m_foreign, key, mem_foreign), "not on desk"),
        "unknown-submission": (bundle_to_bytes(m_missing, key, {}), "unknown submission"),
    }
    outside = tmp_path / "outside-snapshot"
    for name, (data, phrase) in cases.items():
        path = chain.usb / f"{name}.tar"
        path.write_bytes(data)
        before = _server_state(chain)
        proc = chain.server_import(path, check=False)
        assert proc.returncode == 1, (name, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, (name, proc.stderr)
        assert phrase in lines[0], (name, lines[0])
        assert _server_state(chain) == before, name
        staging = chain.data_dir / "blobs" / "staging"
        assert not staging.exists() or not list(staging.iterdir()), name
        assert not Path("/tmp/guwah-y").exists() and not outside.exists()
    # and the good one still applies afterwards (nothing above consumed its bundle id)
    path = chain.usb / "good.tar"
    path.write_bytes(good)
    assert "1 reply(ies) stored" in chain.server_import(path).stdout


def _hybrid_recipient():
    from app.crypto import HybridIdentity

    return HybridIdentity.generate().recipient()


def test_import_outbox_function_is_atomic_for_both_blob_backends(
    tmp_path: Path, database_url: str, blob_backend: str
) -> None:
    """Pure function level: a bundle failing at its last member keeps nothing (fs and db blobs)."""
    from app.server_cli.importing import import_outbox
    from app.settings import load_settings
    from app.store import Store
    from app.store.schema import init_store

    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700, exist_ok=True)
    settings = load_settings(data_dir, database_url=database_url, blob_backend=blob_backend)
    store = Store(settings)
    init_store(store)
    try:
        key = SigningKey.generate()
        ident = X25519Identity.generate()
        store.add_desk("default")
        store.add_recipient("default", "Ed", str(ident.recipient()),
                            base64.b64encode(bytes(key.verify_key)).decode(),
                            "AAAA-AAAA-AAAA-AAAA-AAAA")
        sid = submit(store, "default", CODENAME, "hello")
        token = derive_mailbox(CODENAME, "X25519")
        replies = [(f"r{i}", sid, encrypt(b"reply %d" % i + b" " * 250,
                                          [parse_recipient(token.reply_recipient),
                                           ident.recipient()])) for i in range(3)]
        manifest, members = _outbox_manifest(key, replies, [sid])
        good = bundle_to_bytes(manifest, key, members)
        bad = _flip(good, "replies/r2.age", 50)
        path = tmp_path / "bad.tar"
        path.write_bytes(bad)
        with pytest.raises(Exception, match="SHA-256"):
            import_outbox(store, settings, path)
        assert store.replies(token.token_hash) == []
        assert [s.id for s in store.list_submissions()] == [sid]
        assert store.pending_bytes() == 0
        assert store.cleanup_staging() == 0  # no orphan blob was left behind
        path.write_bytes(good)
        result = import_outbox(store, settings, path)
        assert (result.replies, result.deleted) == (3, 1)
        assert len(store.replies(token.token_hash)) == 3
        assert store.list_submissions() == []
        assert store.cleanup_staging() == 0
    finally:
        store.close()


def test_export_refuses_a_damaged_blob_and_records_nothing(tmp_path: Path,
                                                          database_url: str) -> None:
    chain = _chain(tmp_path, database_url)
    with chain.store() as store:
        sid = submit(store, "default", CODENAME, "x", [("big.bin", os.urandom(600_000))])
        refs = _blob_refs(store, sid)
        files = [p for p in (chain.data_dir / "blobs").rglob("*") if p.name in refs]
    if not files:
        pytest.skip("blobs live in the database with this backend")
    data = bytearray(files[0].read_bytes())
    data[-10] ^= 1
    files[0].write_bytes(bytes(data))
    proc = chain.guwah("export", "--to", str(chain.usb), check=False)
    assert proc.returncode == 1 and "SHA-256" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert list(chain.usb.iterdir()) == []  # no bundle, no temp file
    with chain.store() as store:
        assert store.exported_ids("default") == set()  # the next export tries again
    files[0].write_bytes(bytes(data[:-10] + bytes([data[-10] ^ 1]) + data[-9:]))
    assert chain.export() is not None
