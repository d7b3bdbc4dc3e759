"""The README's "Editor's week", run literally (parsed from README.md) twice in a row, and the
promises behind it: replies reach every editor of the desk, evidence is never silently altered.

Real command lines (``guwah``, ``guwah-editor`` without the web stack), real store on SQLite
and PostgreSQL, real age keys, real bundles.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest
from roundtrip_helper import (
    PASSPHRASE,
    ROOT,
    WEB_STACK,
    Chain,
    make_keyring,
    read_replies,
    run_editor,
    submit,
)

from app.crypto import padme

pytestmark = pytest.mark.database

CODENAMES = [
    "abacus abdomen abdominal abide abiding ability ablaze",
    "zombie zone zoning zookeeper zoologist zoology zoom",
]
# sizes that are not Padmé lengths, so a padded output can never pass for the witness's file
SIZES = [1, 300, 4_097, 70_001, 3_000_001]


def _chain(tmp_path: Path, database_url: str, **kw) -> Chain:
    chain = Chain(tmp_path, database_url if database_url.startswith("postgresql") else None, **kw)
    chain.setup()
    return chain


def readme_week() -> str:
    """The shell block of the README's "Editor's week" section, exactly as written there."""
    text = (ROOT / "README.md").read_text("utf-8")
    section = text.split("\n## Editor's week\n", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the README's Editor's week has no ```sh block"
    return match.group(1)


def _bin_dir(tmp: Path) -> Path:
    """``guwah`` and ``guwah-editor`` on PATH; the editor's one cannot import the web stack."""
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    editor = (
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        f"sys.modules.update({{m: None for m in {WEB_STACK!r}}})\n"
        "from app.editor.cli import main\nmain(sys.argv[1:])\n"
    )
    server = (
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        "from app.server_cli.main import main\nmain(sys.argv[1:])\n"
    )
    for name, code in (("guwah-editor", editor), ("guwah", server)):
        (bindir / name).write_text(code)
        (bindir / name).chmod(0o755)
    return bindir


def run_week(chain: Chain, bindir: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "USB": str(chain.usb),
        "GUWAH_DATA_DIR": str(chain.data_dir),
        "GUWAH_KEYRING": str(chain.keyring),
        "GUWAH_REVIEW": str(chain.review),
        "GUWAH_PASSPHRASE_FILE": str(chain.passfile),
        "HOME": str(chain.work),
    }
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_week()], env=env,
                          capture_output=True, text=True, timeout=600, cwd=chain.work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_readme_editors_week_runs_twice(tmp_path: Path, database_url: str) -> None:
    block = readme_week()
    for needed in ("guwah export", "guwah-editor import", "guwah-editor reply",
                   "guwah-editor done", "guwah-editor outbox", "guwah import"):
        assert needed in block
    chain = _chain(tmp_path, database_url)
    bindir = _bin_dir(tmp_path)
    for week, codename in enumerate(CODENAMES, start=1):
        photo = os.urandom(SIZES[2 + week])
        with chain.store() as store:
            sid = submit(store, "default", codename, f"week {week}", [("photo.jpg", photo)])
        proc = run_week(chain, bindir)
        out = proc.stdout
        assert f"bundle {week} of desk default" in out
        assert "Imported 1 submission(s)" in out  # only what is new
        assert f"1 new bundle(s) of {week}" in out
        if week == 2:
            assert "already imported" in out  # last week's bundle, still on the stick
            assert "applied before, skipped" in out
        assert f"week {week}" in out  # cat testimony.txt read the new one
        assert "1 reply(ies), 1 deletion(s)" in out
        assert "1 reply(ies) stored, 1 submission(s) deleted" in out
        folder = chain.submission_dir(sid)
        saved = next(folder.glob("file-1_*"))
        assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(photo).digest()
        with chain.store() as store:
            assert [r["text"] for r in read_replies(store, codename, "X25519")] == [
                "Thank you. We read your testimony.\n"]
            assert all(s.id != sid for s in store.list_submissions())
    # week 2's export carried week 1's reply back to the desk: the laptop shows it
    listing = run_editor("list", "--review", str(chain.review)).stdout
    assert listing.count("done (deletion requested)") == 2
    assert run_editor("list", "--todo", "--review", str(chain.review)).stdout == ""
    index = (chain.review / "index.html").read_text()
    assert "How to reply and how to mark done" in index and "guwah-editor reply" in index
    assert "Thank you. We read your testimony." in index


def test_replies_reach_every_editor_of_the_desk(tmp_path: Path, database_url: str) -> None:
    chain = _chain(tmp_path, database_url)
    second = tmp_path / "editor-b"
    make_keyring(second, chain.passfile, x25519=True)
    chain.guwah("recipients", "add", str(second / "editor.pub"))
    key = tmp_path / "server-key.txt"
    run_editor("trust-server", str(key), "--keyring", str(second))

    def editor_b(*args: str):
        return run_editor(*args, "--keyring", str(second), "--review", str(tmp_path / "rb"),
                          "--passphrase-file", str(chain.passfile))

    with chain.store() as store:
        sid = submit(store, "default", CODENAMES[0], "testimony for the desk")
    first = chain.editor_import(chain.export())  # A learns the desk's two keys from the export
    assert first.stderr.count("replies now also go to the desk's editor key") == 2
    chain.reply(chain.submission_dir(sid), "Reply from editor A, readable by B")
    chain.server_import(chain.outbox())
    with chain.store() as store:
        assert read_replies(store, CODENAMES[0], "X25519")[0]["text"].startswith("Reply from A"[:5])
        (reply,) = store.desk_replies("default")
        with store.open_reply_by_id(reply.id) as fh:
            head = fh.read(2000)
    assert head.count(b"\n-> X25519 ") == 3  # the witness and both editors
    bundle = chain.export()  # the next export: no new submission, one new reply
    assert bundle is not None
    proc = editor_b("import", str(chain.usb))
    assert "1 reply(ies) from the desk's editors" in proc.stdout
    assert "2 new bundle(s) of 2" in proc.stdout
    text = next((tmp_path / "rb").glob("default/bundle-*/replies/*.txt")).read_text()
    assert "Reply from editor A, readable by B" in text and sid in text
    index_b = (tmp_path / "rb" / "index.html").read_text()
    assert "Reply from editor A, readable by B" in index_b and "answered (1 reply(ies))" in index_b
    chain.editor_import(bundle)
    index = (chain.review / "index.html").read_text()
    assert "Reply from editor A, readable by B" in index
    assert "answered (1 reply(ies))" in index  # A's own copy and the desk's copy: one reply
    assert chain.export() is None  # nothing new: nothing written
    # a key joins the desk: the next import says so, with its fingerprint
    third = tmp_path / "editor-c"
    make_keyring(third, chain.passfile, x25519=True)
    chain.guwah("recipients", "add", str(third / "editor.pub"))
    with chain.store() as store:
        submit(store, "default", CODENAMES[1], "another")
    proc = chain.editor_import(chain.export())
    fp = re.search(r"^fingerprint: (\S+)", (third / "editor.pub").read_text(), re.M).group(1)
    assert proc.stderr.count("replies now also go to") == 1 and fp in proc.stderr


def _png() -> bytes:
    """A real PNG with a tEXt chunk (what scrub removes), of a size that is no Padmé length."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    body = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"tEXt", b"Comment\0GPS 43.8N")
            + chunk(b"IDAT", zlib.compress(b"\0\0")))
    filler = chunk(b"tEXt", b"Pad\0" + b"p" * 40)
    while padme(len(body) + len(filler) + 12) == len(body) + len(filler) + 12:
        filler = chunk(b"tEXt", b"Pad\0" + b"p" * 41)
    return body + filler + chunk(b"IEND", b"")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_output_path_writes_exactly_the_witness_bytes(
    tmp_path: Path, database_url: str
) -> None:
    chain = _chain(tmp_path, database_url)
    files = [(f"f{n}.bin", os.urandom(n)) for n in SIZES] + [("photo.png", _png())]
    assert all(padme(n) != n for n in SIZES if n > 256)
    witness = {name: hashlib.sha256(data).hexdigest() for name, data in files}
    with chain.store() as store:
        sid = submit(store, "default", CODENAMES[0], "sizes", files)
    bundle = chain.export()
    # import
    chain.editor_import(bundle)
    folder = chain.submission_dir(sid)
    for i, (name, _data) in enumerate(files, start=1):
        assert _sha(folder / f"file-{i}_{name}") == witness[name]
    # decrypt of an unpacked bundle's attachment, with its message.age beside it
    unpacked = tmp_path / "unpacked"
    with tarfile.open(bundle) as tar:
        tar.extractall(unpacked, filter="data")
    sub_dir = unpacked / "submissions" / sid
    out = tmp_path / "decrypted"
    attachments = [str(sub_dir / f"file-{i}.age") for i in range(1, len(files) + 1)]
    proc = chain.editor("decrypt", *attachments, "--out", str(out),
                        "--passphrase-file", str(chain.passfile))
    assert proc.stdout.count("SHA-256 verified") == len(files)
    for i, (name, _data) in enumerate(files, start=1):
        assert _sha(out / f"file-{i}_{name}") == witness[name]
    # an attachment alone: refused with one line, before any passphrase, nothing written
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "file-4.age").write_bytes((sub_dir / "file-4.age").read_bytes())
    proc = chain.editor("decrypt", str(alone / "file-4.age"), "--out", str(tmp_path / "x"),
                        check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "padding" in proc.stderr and "guwah-editor import" in proc.stderr
    assert not (tmp_path / "x").exists()
    # a plain age file (not a Guwah attachment): exactly what age -d gives
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.age").write_bytes((sub_dir / "file-4.age").read_bytes())
    chain.editor("decrypt", str(plain / "notes.age"), "--out", str(tmp_path / "p"),
                 "--passphrase-file", str(chain.passfile))
    identity = tmp_path / "id.txt"
    from app.editor.keyring import open_keyring
    identity.write_text(str(open_keyring(chain.keyring, PASSPHRASE).identity) + "\n")
    age_d = subprocess.run(["age", "-d", "-i", str(identity), str(plain / "notes.age")],
                           capture_output=True, check=True).stdout
    assert (tmp_path / "p" / "notes").read_bytes() == age_d
    assert len(age_d) == padme(SIZES[3])  # padded: that is why decrypt refuses file-N alone
    # scrub: a separate copy; the evidence keeps the witness's bytes, custody still verifies
    png = folder / f"file-{len(files)}_photo.png"
    proc = run_editor("scrub", str(png))
    assert "metadata-stripped copy" in proc.stdout
    assert b"GPS 43.8N" not in next(folder.glob("*photo.scrubbed*")).read_bytes()
    for i, (name, _data) in enumerate(files, start=1):
        assert _sha(folder / f"file-{i}_{name}") == witness[name]
    # scrub refuses an attachment that no longer matches what the witness sent
    other = folder / "file-1_f1.bin"
    other.chmod(0o600)
    other.write_bytes(b"x")
    proc = run_editor("scrub", str(other), check=False)
    assert proc.returncode == 1 and "SHA-256" in proc.stderr
    other.write_bytes(files[0][1])
    chain.editor("custody", str(folder), "--passphrase-file", str(chain.passfile))
    report = next(folder.glob("custody-report*.json"))
    run_editor("verify-custody", str(report))
    custody = json.loads((folder / "custody.json").read_text())
    assert {f["sha256"] for f in custody["files"]} == set(witness.values())


def test_replies_the_witness_deleted_are_listed_on_the_next_import(
        tmp_path: Path, database_url: str) -> None:
    """Server store → witness deletes the replies → export bundle → ``guwah-editor import``
    lists each deleted reply by id and day."""
    from app.crypto.mailbox import derive_mailbox
    from app.protocol.utcday import today

    chain = _chain(tmp_path, database_url)
    with chain.store() as store:
        sid = submit(store, "default", CODENAMES[0], "testimony")
    chain.editor_import(chain.export())
    chain.reply(chain.submission_dir(sid), "Please tell us more.")
    chain.server_import(chain.outbox())
    proc = chain.editor_import(chain.export())  # the reply comes back to the desk: its id
    assert "deleted by the witness" not in proc.stdout
    with chain.store() as store:
        (reply,) = store.desk_replies("default")
        mailbox = derive_mailbox(CODENAMES[0], "X25519").token_hash
        assert store.withdraw_replies(mailbox) == [reply.id]
        assert store.desk_replies("default") == []
        submit(store, "default", CODENAMES[1], "another witness")
    proc = chain.editor_import(chain.export())
    day = today().isoformat()
    assert f"Reply {reply.id} was deleted by the witness from their mailbox on {day}." \
        in proc.stdout
