"""guwah-editor trust-server / import / custody / reply / done / outbox, through the real CLI.

Bundles here are built directly with app.bundles and a real server Ed25519 key (the server
side, with the real store, is tests/test_roundtrip.py). Real age keys, real tar files; the
editor runs in an interpreter where the web stack cannot be imported.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from roundtrip_helper import (
    PASSPHRASE,
    assemble_tar,
    build_export,
    craft_tar,
    export_manifest,
    make_keyring,
    recipient_of,
    run_editor,
    seal,
    server_key_file,
    tree_snapshot,
)

from app.bundles import OUTBOX_FORMAT, bundle_to_bytes, canonical_json, open_bundle, sign_manifest
from app.crypto import X25519Identity, decrypt, parse_recipient
from app.crypto.mailbox import derive_mailbox

CODENAME = "abacus abdomen abdominal abide abiding ability ablaze"


class Env:
    def __init__(self, tmp: Path, x25519: bool = True) -> None:
        self.tmp = tmp
        self.passfile = tmp / "pass.txt"
        self.passfile.write_text(PASSPHRASE + "\n")
        self.keyring = make_keyring(tmp / "keyring", self.passfile, x25519=x25519)
        self.recipient = parse_recipient(recipient_of(self.keyring))
        self.server = SigningKey.generate()
        self.review = tmp / "review"
        self.bundles = tmp / "usb"
        self.bundles.mkdir()
        self.mailbox = derive_mailbox(CODENAME, self.recipient.type)
        run_editor("trust-server", str(server_key_file(tmp / "server.txt", self.server)),
                   "--keyring", str(self.keyring))

    def editor(self, *args: str, check: bool = True):
        return run_editor(*args, "--keyring", str(self.keyring), check=check)

    def import_(self, bundle: Path, *extra: str, check: bool = True, passfile: Path | None = None):
        return self.editor("import", str(bundle), "--review", str(self.review),
                           "--passphrase-file", str(passfile or self.passfile), *extra,
                           check=check)

    def parts(self, text: str, files=(), **kw):
        return seal([self.recipient], text, list(files), self.mailbox.reply_recipient, **kw)

    def bundle(self, name: str, seq: int, subs, key: SigningKey | None = None) -> Path:
        return build_export(self.bundles / name, key or self.server, "default", seq, subs)

    def sub_dir(self, sid: str) -> Path:
        return next(self.review.glob(f"default/bundle-*/*_{sid}"))


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40


def test_import_lays_out_a_review_folder(env: Env) -> None:
    parts = env.parts("I saw <script>alert('x')</script> at the market",
                      [("photo.jpg", PHOTO), ("../../../etc/passwd", b"root:x:0:0\n"),
                       (".hidden name.txt", b"notes")])
    follow = env.parts("more, later", parent_id="sub-one")
    bundle = env.bundle("b1.tar", 1, [("sub-one", "2026-11-25", None, parts),
                                     ("sub-two", "2026-11-26", "sub-one", follow)])
    proc = env.import_(bundle)
    assert "Imported 2 submission(s)" in proc.stdout
    folder = env.sub_dir("sub-one")
    assert folder.name == "2026-11-25_sub-one"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["custody.json", "file-1_photo.jpg", "file-2__.._.._etc_passwd",
                     "file-3_hidden name.txt", "metadata.json", "testimony.json", "testimony.txt"]
    assert (folder / "file-1_photo.jpg").read_bytes() == PHOTO  # padding removed
    assert oct((folder / "file-1_photo.jpg").stat().st_mode & 0o777) == "0o600"
    text = (folder / "testimony.txt").read_text()
    assert "I saw <script>" in text and "Ürümqi" in text and "SHA-256 verified" in text
    assert json.loads((folder / "testimony.json").read_text())["reply_recipient"] == \
        env.mailbox.reply_recipient
    custody = json.loads((folder / "custody.json").read_text())
    assert custody["bundle"]["sequence"] == 1
    assert custody["files"][0]["sha256"] == hashlib.sha256(PHOTO).hexdigest()
    assert all(f["match"] for f in custody["files"])
    assert [c["role"] for c in custody["ciphertexts"]] == ["message", "file-1", "file-2", "file-3"]
    index = (env.review / "index.html").read_text()
    assert "<script" not in index and "&lt;script&gt;" in index
    assert 'href="#s-sub-one"' in index  # the follow-up links to its parent
    assert "2026-11-25" in index and "Desk default" in index
    # nothing but the bundle folder and the index; no staging leftovers
    assert sorted(p.name for p in env.review.iterdir()) == ["default", "index.html"]
    before = tree_snapshot(env.tmp)
    again = env.import_(bundle)
    assert "nothing changed" in again.stdout
    assert tree_snapshot(env.tmp) == before


def test_sequence_gap_warns_and_replay_is_refused(env: Env) -> None:
    one = env.bundle("1.tar", 1, [("s1", "2026-11-24", None, env.parts("one"))])
    two = env.bundle("2.tar", 2, [("s2", "2026-11-25", None, env.parts("two"))])
    three = env.bundle("3.tar", 3, [("s3", "2026-11-26", None, env.parts("three"))])
    env.import_(one)
    proc = env.import_(three)
    assert "gap" in proc.stderr
    before = tree_snapshot(env.review)
    proc = env.import_(two, check=False)
    assert proc.returncode == 1 and "replay or older" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert tree_snapshot(env.review) == before
    # a different bundle carrying an already-used sequence number: a replay, refused too
    other_one = env.bundle("1b.tar", 1, [("s9", "2026-11-24", None, env.parts("forged?"))])
    assert env.import_(other_one, check=False).returncode == 1
    env.import_(two, "--allow-replay")
    assert env.sub_dir("s2").is_dir()


def test_wrong_passphrase_leaves_nothing(env: Env) -> None:
    bundle = env.bundle("b.tar", 1, [("s1", "2026-11-26", None, env.parts("x", [("a", b"a")]))])
    wrong = env.tmp / "wrong.txt"
    wrong.write_text("not the right passphrase\n")
    before = tree_snapshot(env.tmp)
    proc = env.import_(bundle, passfile=wrong, check=False)
    assert proc.returncode == 1 and "passphrase is wrong" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert tree_snapshot(env.tmp) == before


def _good(env: Env) -> tuple[dict, dict[str, bytes]]:
    parts = env.parts("testimony", [("photo.jpg", PHOTO)])
    return export_manifest(env.server, "default", 1,
                           [("s1", "2026-11-26", None, parts),
                            ("s2", "2026-11-26", None, env.parts("second"))])


def _flip(data: bytes, offset: int) -> bytes:
    b = bytearray(data)
    b[offset] ^= 1
    return bytes(b)


def _member_offset(data: bytes, name: str) -> int:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmember(name).offset_data


def _link(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def bad_export_bundles(env: Env) -> dict[str, tuple[bytes, str]]:
    """name -> (bundle bytes, a phrase the one-line refusal must contain)."""
    manifest, members = _good(env)
    good = bundle_to_bytes(manifest, env.server, members)
    items = list(members.items())
    first = items[0][0]
    dup_ids = json.loads(json.dumps(manifest))
    dup_ids["submissions"].append(dup_ids["submissions"][1])
    big = json.loads(json.dumps(manifest))
    big["submissions"][0]["x"] = "y" * (16 * 1024 * 1024)
    big_bytes = canonical_json(big)
    from app.bundles.ustar import member_header

    return {
        "truncated": (good[: len(good) // 2], "truncated"),
        "tampered-ciphertext": (_flip(good, _member_offset(good, items[1][0]) + 999), "SHA-256"),
        "tampered-manifest": (_flip(good, _member_offset(good, "manifest.json") + 30), "signature does not verify"),
        "tampered-signature": (_flip(good, _member_offset(good, "manifest.sig") + 5), "signature"),
        "unknown-key": (_other_key_bundle(env), "unknown server key"),
        "dotdot": (assemble_tar(manifest, env.server, [("../x", b"evil")]), "leaves its folder"),
        "absolute": (assemble_tar(manifest, env.server, [("/tmp/guwah-x", b"e")]), "absolute"),
        "symlink": (assemble_tar(manifest, env.server, [_link(first, tarfile.SYMTYPE, "/etc/passwd")]),
                    "symbolic link"),
        "hardlink": (assemble_tar(manifest, env.server, [_link(first, tarfile.LNKTYPE, "x")]),
                     "hard link"),
        "device": (assemble_tar(manifest, env.server, [_link(first, tarfile.CHRTYPE)]),
                   "device"),
        "duplicate-ids": (assemble_tar(dup_ids, env.server, items), "appears twice"),
        "duplicate-member": (assemble_tar(manifest, env.server, [items[0], items[0]]),
                             "duplicated"),
        "oversized-manifest": (member_header("manifest.json", len(big_bytes)) + big_bytes[:4096],
                               "16 MiB"),
        "not-in-manifest": (assemble_tar(manifest, env.server,
                                         [*items, ("submissions/zz/message.age", b"x")]),
                            "does not list"),
    }


def _other_key_bundle(env: Env) -> bytes:
    other = SigningKey.generate()
    manifest, members = export_manifest(other, "default", 1,
                                        [("s1", "2026-11-26", None, env.parts("forged"))])
    return bundle_to_bytes(manifest, other, members)


def test_bad_bundles_are_refused_with_one_line_and_nothing_written(env: Env) -> None:
    cases = bad_export_bundles(env)
    for name, (data, phrase) in cases.items():
        path = env.bundles / f"{name}.tar"
        path.write_bytes(data)
        before = tree_snapshot(env.tmp)
        proc = env.import_(path, check=False)
        assert proc.returncode == 1, (name, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, (name, proc.stderr)
        assert phrase in lines[0], (name, lines[0])
        assert tree_snapshot(env.tmp) == before, name  # review, keyring state, surroundings
        assert not Path("/tmp/guwah-x").exists()


def test_submission_not_encrypted_to_this_editor_is_quarantined_alone(env: Env) -> None:
    """One submission for another key no longer hides the others (tests/test_editor_quarantine.py
    has every other reason)."""
    stranger = X25519Identity.generate().recipient()
    mine = env.parts("fine")
    theirs = seal([stranger], "not for you", [], env.mailbox.reply_recipient)
    bundle = env.bundle("b.tar", 1, [("s1", "2026-11-26", None, mine),
                                    ("s2", "2026-11-26", None, theirs)])
    proc = env.import_(bundle, check=False)
    assert proc.returncode == 3, proc.stderr
    assert "s2" in proc.stderr and "none of your keys" in proc.stderr
    assert "Imported 1 submission(s)" in proc.stdout and "1 submission(s) QUARANTINED" in proc.stdout
    assert "fine" in (env.sub_dir("s1") / "testimony.txt").read_text()
    held = env.review / "default" / "bundle-000001" / "quarantine" / "2026-11-26_s2"
    assert sorted(p.name for p in held.iterdir()) == ["quarantine.json", "reason.txt"]
    assert b"not for you" not in b"".join(p.read_bytes() for p in env.review.rglob("*")
                                          if p.is_file())


def _docm() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
        z.writestr("word/vbaProject.bin", b"\xd0\xcf\x11\xe0macro")
    return buf.getvalue()


RISKY = {
    "report.pdf": (b"%PDF-1.7\n1 0 obj << /Type /Catalog /OpenAction 2 0 R >> endobj\n"
                   b"2 0 obj << /S /JavaScript /JS (app.alert(1)) >> endobj\n%%EOF\n",
                   "JavaScript"),
    "invoice.pdf.exe": (b"MZ\x90\x00" + b"\0" * 200, "PE"),
    "tool": (b"\x7fELF\x02\x01\x01" + b"\0" * 100, "ELF"),
    "app": (b"\xcf\xfa\xed\xfe" + b"\0" * 100, "Mach-O"),
    "run.txt": (b"#!/bin/sh\necho hi\n", "script"),
    "letter.docx": (_docm(), "vbaProject.bin"),
    "launch.pdf": (b"%PDF-1.4\n1 0 obj << /A << /S /Launch /F (cmd.exe) >> >> endobj\n", "Launch"),
}


def test_risky_types_and_hash_mismatch_are_flagged_loudly(env: Env) -> None:
    files = [(name, data) for name, (data, _) in RISKY.items()] + [("photo.jpg", PHOTO)]
    parts = env.parts("evidence", files,
                      sha_override={"photo.jpg": hashlib.sha256(b"something else").hexdigest()})
    proc = env.import_(env.bundle("b.tar", 1, [("s1", "2026-11-26", None, parts)]))
    custody = json.loads((env.sub_dir("s1") / "custody.json").read_text())
    by_name = {f["name"]: f for f in custody["files"]}
    for name, (_data, needle) in RISKY.items():
        assert any(needle in r for r in by_name[name]["risks"]), (name, by_name[name]["risks"])
        assert "RISKY" in proc.stderr and by_name[name]["saved_as"] in proc.stderr
    assert by_name["photo.jpg"]["risks"] == []
    assert by_name["photo.jpg"]["match"] is False
    assert "SHA-256 MISMATCH" in proc.stderr
    assert any("MISMATCH" in w for w in custody["warnings"])
    index = (env.review / "index.html").read_text()
    assert "SHA-256 MISMATCH" in index and "RISKY: Windows executable (PE)" in index
    assert "MISMATCH" in (env.sub_dir("s1") / "testimony.txt").read_text()


def test_custody_report_signs_and_verifies(env: Env) -> None:
    parts = env.parts("custody", [("photo.jpg", PHOTO)])
    env.import_(env.bundle("b.tar", 1, [("s1", "2026-11-26", None, parts)]))
    sub = env.sub_dir("s1")
    proc = env.editor("custody", str(sub), "--passphrase-file", str(env.passfile))
    assert "bundle sequence: 1" in proc.stdout and "matches the witness side" in proc.stdout
    report = sub / "custody-report.json"
    fp = [ln for ln in (env.keyring / "editor.pub").read_text().splitlines()
          if ln.startswith("fingerprint: ")][0].split(": ")[1]
    ok = run_editor("verify-custody", str(report), "--editor-fingerprint", fp)
    assert "custody report verified" in ok.stdout
    signed = json.loads(report.read_text())
    assert signed["report"]["ciphertexts"][1]["sha256"] == hashlib.sha256(parts["file-1"]).hexdigest()
    assert run_editor("verify-custody", str(report), "--editor-fingerprint",
                      "AAAA-AAAA-AAAA-AAAA-AAAA", check=False).returncode == 1
    # any edit to the report breaks it
    tampered = json.loads(report.read_text())
    tampered["report"]["day_received"] = "2020-01-01"
    bad = sub / "tampered.json"
    bad.write_text(json.dumps(tampered))
    proc = run_editor("verify-custody", str(bad), check=False)
    assert proc.returncode == 1 and "MISMATCH" in proc.stderr
    # a changed attachment on disk is caught
    (sub / "file-1_photo.jpg").chmod(0o600)
    (sub / "file-1_photo.jpg").write_bytes(PHOTO + b"!")
    proc = run_editor("verify-custody", str(report), check=False)
    assert proc.returncode == 1 and "differs" in proc.stderr


def test_reply_done_outbox(env: Env) -> None:
    env.import_(env.bundle("b.tar", 1, [("s1", "2026-11-26", None, env.parts("hello")),
                                       ("s2", "2026-11-26", None, env.parts("bye"))]))
    text = env.tmp / "reply.txt"
    text.write_text("Thank you. We are checking — ئۇيغۇرچە.\n")
    env.editor("reply", str(env.sub_dir("s1")), "--text-file", str(text))
    env.editor("done", str(env.sub_dir("s2")))
    assert "already" in env.editor("done", str(env.sub_dir("s2"))).stdout
    queue = env.keyring / "outbox"
    stored = sorted(p.name for p in queue.iterdir())
    assert len(stored) == 3
    for p in queue.glob("*.age"):
        assert b"Thank you" not in p.read_bytes()  # ciphertext only
    out = env.tmp / "out"
    out.mkdir()
    proc = env.editor("outbox", "--to", str(out), "--passphrase-file", str(env.passfile))
    assert "1 reply(ies), 1 deletion(s)" in proc.stdout
    assert list(queue.iterdir()) == []  # cleared only after the bundle is on disk
    bundle_path = next(out.iterdir())
    editor_pub = [ln.split(": ")[1] for ln in (env.keyring / "editor.pub").read_text().splitlines()
                  if ln.startswith("ed25519: ")][0]
    with open(bundle_path, "rb") as fh:
        bundle = open_bundle(fh, OUTBOX_FORMAT, lambda m: base64.b64decode(editor_pub))
        members = {e.path: s.read() for e, s in bundle.members()}
    assert bundle.manifest["done"] == ["s2"]
    (reply,) = members.values()
    plain = json.loads(decrypt(reply, [env.mailbox.reply_identity]).rstrip(b" "))
    assert plain == {"format": "guwah-reply/1", "submission_id": "s1", "day": plain["day"],
                     "text": text.read_text()}
    # the editor can read it too (own key is a recipient)
    (env.tmp / "r.age").write_bytes(reply)
    env.editor("decrypt", str(env.tmp / "r.age"), "--out", str(env.tmp / "plain"),
               "--passphrase-file", str(env.passfile))
    assert b"Thank you" in (env.tmp / "plain" / "r").read_bytes()
    proc = env.editor("outbox", "--to", str(out), "--passphrase-file", str(env.passfile),
                      check=False)
    assert proc.returncode == 1 and "outbox is empty" in proc.stderr


def test_outbox_write_failure_keeps_the_queue(env: Env) -> None:
    env.import_(env.bundle("b.tar", 1, [("s1", "2026-11-26", None, env.parts("hello"))]))
    env.editor("done", str(env.sub_dir("s1")))
    existing = env.tmp / "exists.tar"
    existing.write_bytes(b"x")
    proc = env.editor("outbox", "--to", str(existing), "--passphrase-file", str(env.passfile),
                      check=False)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    assert len(list((env.keyring / "outbox").iterdir())) == 1
    wrong = env.tmp / "wrong.txt"
    wrong.write_text("not the right passphrase\n")
    out = env.tmp / "out"
    out.mkdir()
    proc = env.editor("outbox", "--to", str(out), "--passphrase-file", str(wrong), check=False)
    assert proc.returncode == 1 and "passphrase is wrong" in proc.stderr
    assert list(out.iterdir()) == []
    assert len(list((env.keyring / "outbox").iterdir())) == 1


def test_hybrid_desk_replies_are_hybrid(tmp_path: Path) -> None:
    env = Env(tmp_path, x25519=False)
    assert env.mailbox.reply_recipient.startswith("age1pq1")
    env.import_(env.bundle("b.tar", 1, [("s1", "2026-11-26", None, env.parts("pq"))]))
    text = tmp_path / "r.txt"
    text.write_text("post-quantum reply")
    env.editor("reply", str(env.sub_dir("s1")), "--text-file", str(text))
    (age_file,) = (env.keyring / "outbox").glob("*.age")
    data = age_file.read_bytes()
    assert b"-> mlkem768x25519" in data and b"-> X25519" not in data
    assert b"post-quantum reply" in decrypt(data, [env.mailbox.reply_identity])


def test_trust_server_pins_and_refuses_changes(env: Env) -> None:
    other = SigningKey.generate()
    f = server_key_file(env.tmp / "other.txt", other)
    proc = env.editor("trust-server", str(f), check=False)
    assert proc.returncode == 1 and "--replace" in proc.stderr
    altered = env.tmp / "altered.txt"
    altered.write_text(f.read_text().replace("fingerprint: ", "fingerprint: X"))
    proc = env.editor("trust-server", str(altered), "--replace", check=False)
    assert proc.returncode == 1 and "altered" in proc.stderr
    proc = env.editor("trust-server", str(f), "--replace")
    assert "Fingerprint:" in proc.stdout


def test_signature_over_manifest_with_other_format_line_is_refused(env: Env) -> None:
    manifest, members = _good(env)
    mb = canonical_json(manifest)
    data = craft_tar([("manifest.json", mb), ("manifest.sig", sign_manifest(OUTBOX_FORMAT, mb,
                                                                            env.server)),
                      *members.items()])
    path = env.bundles / "cross.tar"
    path.write_bytes(data)
    proc = env.import_(path, check=False)
    assert proc.returncode == 1 and "signature" in proc.stderr


def test_server_sealed_testimony_shape_is_understood(env: Env) -> None:
    """JavaScript-off submissions (app/web/sealing.py) keep the text inside ``answers``."""
    from app.crypto import encrypt, padme

    photo = b"\x89PNG\r\n\x1a\n" + b"p" * 500
    doc = {"guwah": 1, "protection": "server-sealed", "day": "2026-11-26", "desk": "default",
           "lang": "ug",
           "answers": {"testimony": "يېزىق — the sealed text", "where": "Kashgar", "when": "",
                       "consent": "no", "never_name": ""},
           "files": [{"role": "file-1", "name": "p.png", "size": len(photo),
                      "sha256": hashlib.sha256(photo).hexdigest(), "content_type": "image/png"}],
           "reply_recipient": env.mailbox.reply_recipient}
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    parts = {"message": encrypt(body + b" " * (padme(len(body)) - len(body)), [env.recipient]),
             "file-1": encrypt(photo + b"\0" * (padme(len(photo)) - len(photo)), [env.recipient])}
    env.import_(env.bundle("b.tar", 1, [("sealed", "2026-11-26", None, parts)]))
    text = (env.sub_dir("sealed") / "testimony.txt").read_text()
    assert "يېزىق — the sealed text" in text and "server-sealed" in text
    assert "Where: Kashgar" in text and "Language of the form: ug" in text
    assert "SHA-256 verified" in text
    custody = json.loads((env.sub_dir("sealed") / "custody.json").read_text())
    assert custody["warnings"] == [] and custody["protection"] == "server-sealed"


def test_reply_text_from_dollar_editor(env: Env) -> None:
    env.import_(env.bundle("b.tar", 1, [("s1", "2026-11-26", None, env.parts("hello"))]))
    script = env.tmp / "fake-editor.sh"
    script.write_text('#!/bin/sh\nprintf "written in the editor" > "$1"\n')
    script.chmod(0o700)
    proc = run_editor("reply", str(env.sub_dir("s1")), "--keyring", str(env.keyring),
                      env={"EDITOR": str(script), "VISUAL": ""})
    assert "queued" in proc.stdout
    (age_file,) = (env.keyring / "outbox").glob("*.age")
    assert b"written in the editor" in decrypt(age_file.read_bytes(), [env.mailbox.reply_identity])
    empty = env.tmp / "empty-editor.sh"
    empty.write_text("#!/bin/sh\n: > \"$1\"\n")
    empty.chmod(0o700)
    proc = run_editor("reply", str(env.sub_dir("s1")), "--keyring", str(env.keyring),
                      env={"EDITOR": str(empty), "VISUAL": ""}, check=False)
    assert proc.returncode == 1 and "empty" in proc.stderr
