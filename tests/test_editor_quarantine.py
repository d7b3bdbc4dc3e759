"""guwah-editor import quarantines each bad submission alone, through the real CLI.

Every reason a submission can fail on its own (another key, junk, a damaged payload, bad
padding, bad JSON, a testimony document of the wrong shape, a file missing or extra) is put
next to an honest submission in one signed bundle: the honest one is laid out, the bad one is
listed in the quarantine with one line of why, no plaintext of it is anywhere in the review
folder, and the exit status is 3. The end-to-end case through a real server and the
done -> outbox -> guwah import deletion is tests/hostile/test_junk_import.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
from roundtrip_helper import make_keyring, recipient_of, run_editor, seal
from test_editor_review import Env

from app.crypto import X25519Identity, encrypt, padme, parse_recipient

SECRET = "QUARANTINED-CANARY-7d1f"


def _padded(body: bytes, fill: bytes = b" ") -> bytes:
    return body + fill * (padme(len(body)) - len(body))


def _doc(env: Env, files: list[dict] | None = None, **extra: object) -> dict:
    return {"format": "guwah-testimony/1", "protection": "browser-encrypted", "desk": "default",
            "day": "2026-11-26", "testimony": SECRET, "answers": {}, "files": files or [],
            "reply_recipient": env.mailbox.reply_recipient, "parent_id": None, **extra}


def _message(env: Env, doc: object) -> bytes:
    return encrypt(_padded(json.dumps(doc).encode()), [env.recipient])


def _file_entry(role: str, data: bytes) -> dict:
    return {"role": role, "name": "f.bin", "content_type": "application/octet-stream",
            "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _b64(n: int) -> bytes:
    return base64.b64encode(os.urandom(n)).rstrip(b"=")


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


BIG = (SECRET.encode() * 20000)[:200_000]  # > 3 STREAM chunks: the first ones authenticate


def _cases(env: Env) -> dict[str, tuple[dict[str, bytes], str]]:
    """name -> (the bad submission's parts, a phrase its reason must hold)."""
    stranger = X25519Identity.generate().recipient()
    good_file = encrypt(_padded(BIG, b"\0"), [env.recipient])
    with_file = _message(env, _doc(env, [_file_entry("file-1", BIG)]))
    fake_header = (b"age-encryption.org/v1\n-> X25519 " + _b64(32) + b"\n" + _b64(32)
                   + b"\n--- " + _b64(32) + b"\n") + os.urandom(300)
    return {
        "another key": ({"message": seal([stranger], SECRET, [], "x")["message"]},
                        "not encrypted to your key"),
        "fake header": ({"message": fake_header}, "not encrypted to your key"),
        "not age": ({"message": SECRET.encode() * 20}, "not a valid age file"),
        "damaged message": ({"message": _flip_last(_message(env, _doc(env)))},
                            "does not authenticate"),
        "damaged attachment": ({"message": with_file, "file-1": _flip_last(good_file)},
                               "does not authenticate"),
        "no padding": ({"message": encrypt(json.dumps(_doc(env)).encode() + b"  ",
                                           [env.recipient])}, "bad padding"),
        "bad json": ({"message": encrypt(_padded(b"{" + SECRET.encode()), [env.recipient])},
                     "not UTF-8 JSON"),
        "deep json": ({"message": encrypt(_padded(b"[" * 30000), [env.recipient])},
                      "not UTF-8 JSON"),
        "json list": ({"message": _message(env, [SECRET])}, "not a JSON object"),
        "other format": ({"message": _message(env, _doc(env, format="evil/9"))},
                         "unknown testimony format"),
        "bad file entry": ({"message": _message(env, _doc(env, [{"role": "file-1",
                                                                "size": "big"}]))},
                           "malformed"),
        "missing file": ({"message": with_file}, "does not hold"),
        "extra file": ({"message": _message(env, _doc(env)), "file-1": good_file},
                       "does not describe"),
        "attachment padding": ({"message": with_file,
                                "file-1": encrypt(_padded(BIG, b"\1"), [env.recipient])},
                               "not zeros"),
    }


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_every_bad_submission_is_quarantined_alone(env: Env) -> None:
    cases = _cases(env)
    subs = [("honest-0", "2026-11-26", None, env.parts("honest words 0"))]
    for i, parts in enumerate(p for p, _ in cases.values()):
        subs.append((f"bad-{i}", "2026-11-26", None, parts))
        subs.append((f"honest-{i + 1}", "2026-11-26", None, env.parts(f"honest words {i + 1}")))
    proc = env.import_(env.bundle("b.tar", 1, subs), check=False)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"Imported {len(cases) + 1} submission(s)" in proc.stdout
    assert f"{len(cases)} submission(s) QUARANTINED" in proc.stdout
    for i in range(len(cases) + 1):
        assert f"honest words {i}" in (env.sub_dir(f"honest-{i}") / "testimony.txt").read_text()
    held = env.review / "default" / "bundle-000001" / "quarantine"
    for i, (name, (_parts, phrase)) in enumerate(cases.items()):
        folder = held / f"2026-11-26_bad-{i}"
        reason = (folder / "reason.txt").read_text()
        assert phrase in reason and reason.count("\n") == 1, (name, reason)
        record = json.loads((folder / "quarantine.json").read_text())
        assert record["submission_id"] == f"bad-{i}" and record["desk"] == "default"
        assert f"QUARANTINED: submission bad-{i}: " in proc.stderr
        assert not list(env.review.glob(f"default/bundle-*/*_bad-{i}")), name
    # nothing a quarantined submission held was written anywhere in the review folder
    for path in env.review.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    index = (env.review / "index.html").read_text()
    assert f"{len(cases)} submission(s) in quarantine" in index
    assert all(f"bad-{i}" in index for i in range(len(cases)))


def test_reimport_retries_the_quarantine_and_done_queues_its_deletion(env: Env) -> None:
    """A submission for a second editor key is quarantined under the first keyring; the same
    bundle imported with the right keyring lays it out; another stays, and done takes it."""
    other = make_keyring(env.tmp / "keyring-b", env.passfile)
    run_editor("trust-server", str(env.tmp / "server.txt"), "--keyring", str(other))
    for_b = seal([parse_recipient(recipient_of(other))], "for editor b", [], "x")
    junk = {"message": b"age-encryption.org/v1\n" + os.urandom(200)}
    bundle = env.bundle("b.tar", 1, [("s1", "2026-11-26", None, env.parts("for a")),
                                    ("s2", "2026-11-26", None, for_b),
                                    ("s3", "2026-11-26", None, junk)])
    assert env.import_(bundle, check=False).returncode == 3
    held = env.review / "default" / "bundle-000001" / "quarantine"
    assert sorted(p.name for p in held.iterdir()) == ["2026-11-26_s2", "2026-11-26_s3"]
    proc = run_editor("import", str(bundle), "--review", str(env.review), "--keyring",
                      str(other), "--passphrase-file", str(env.passfile), check=False)
    assert proc.returncode == 3, proc.stderr
    assert "1 quarantined submission(s) opened this time" in proc.stdout
    assert "for editor b" in (env.sub_dir("s2") / "testimony.txt").read_text()
    assert sorted(p.name for p in held.iterdir()) == ["2026-11-26_s3"]
    env.editor("done", str(held / "2026-11-26_s3"))
    queued = json.loads((env.keyring / "outbox" / "done-s3.json").read_text())
    assert queued == {"kind": "done", "submission_id": "s3", "desk": "default"}
    # still junk on the next try: it stays, and the exit status says so again
    again = run_editor("import", str(bundle), "--review", str(env.review), "--keyring",
                       str(other), "--passphrase-file", str(env.passfile), check=False)
    assert again.returncode == 3 and "0 quarantined submission(s) opened" in again.stdout
