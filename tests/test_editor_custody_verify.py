"""guwah-editor verify-custody says exactly what it checked, and never over-claims.

A real import (real age keys, a real server-signed bundle), a real signed custody report, then
the report: in its folder (0: all attachments hashed), copied away from its files (3: nothing
hashed, and it says so; 0 with --no-files, saying the files were not checked), next to only
one of its files (3), with a flipped bit in an attachment (1) and edited (1).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from roundtrip_helper import run_editor
from test_editor_review import PHOTO, Env, env  # noqa: F401  (fixture)

NOTE = b"voice note \x00\x01\x02" * 50


def _report(env: Env) -> tuple[Path, Path]:  # noqa: F811
    files = [("photo.jpg", PHOTO), ("note.amr", NOTE)]
    env.import_(env.bundle("b.tar", 1, [("s1", "2026-11-26", None, env.parts("x", files))]))
    sub = env.sub_dir("s1")
    env.editor("custody", str(sub), "--passphrase-file", str(env.passfile))
    return sub, sub / "custody-report.json"


def test_in_place_every_attachment_is_hashed(env: Env) -> None:  # noqa: F811
    _sub, report = _report(env)
    proc = run_editor("verify-custody", str(report))
    out = proc.stdout
    assert "ok: editor signature valid" in out
    assert "ok: server signature on the manifest valid" in out
    assert "ok: ciphertext hashes (3), day and bundle sequence match the signed manifest" in out
    assert "ok: file-1_photo.jpg found next to the report: its SHA-256 matches" in out
    assert "ok: file-2_note.amr found next to the report: its SHA-256 matches" in out
    assert ("custody report verified: editor and server signatures, the manifest, "
            "2 of 2 attachment(s) found and hashed") in out


def test_away_from_its_files_says_nothing_was_hashed(env: Env, tmp_path: Path) -> None:  # noqa: F811
    _sub, report = _report(env)
    away = tmp_path / "elsewhere"
    away.mkdir()
    shutil.copy(report, away / report.name)
    proc = run_editor("verify-custody", str(away / report.name), check=False)
    assert proc.returncode == 3
    assert "custody report verified" not in proc.stdout
    assert "ok: editor signature valid" in proc.stdout  # what *was* checked is still stated
    assert ("NOT VERIFIED: only 0 of the report's 2 attachment(s) are next to it" in proc.stderr)
    assert "missing: file-1_photo.jpg, file-2_note.amr" in proc.stderr
    assert "--no-files" in proc.stderr
    ok = run_editor("verify-custody", str(away / report.name), "--no-files")
    assert ("custody report verified: editor and server signatures, the manifest, "
            "attachments on disk NOT checked (--no-files)") in ok.stdout
    assert "found next to the report" not in ok.stdout


def test_next_to_one_of_two_files_is_incomplete(env: Env, tmp_path: Path) -> None:  # noqa: F811
    sub, report = _report(env)
    away = tmp_path / "partial"
    away.mkdir()
    shutil.copy(report, away / report.name)
    shutil.copy(sub / "file-1_photo.jpg", away / "file-1_photo.jpg")
    proc = run_editor("verify-custody", str(away / report.name), check=False)
    assert proc.returncode == 3
    assert "ok: file-1_photo.jpg found next to the report" in proc.stdout
    assert "only 1 of the report's 2 attachment(s)" in proc.stderr
    assert "missing: file-2_note.amr" in proc.stderr


def test_a_flipped_bit_in_an_attachment_is_a_mismatch(env: Env) -> None:  # noqa: F811
    sub, report = _report(env)
    photo = sub / "file-1_photo.jpg"
    data = bytearray(photo.read_bytes())
    data[100] ^= 0x01
    photo.chmod(0o600)
    photo.write_bytes(bytes(data))
    proc = run_editor("verify-custody", str(report), check=False)
    assert proc.returncode == 1
    assert "MISMATCH: file-1_photo.jpg on disk differs from the report" in proc.stderr
    assert "custody report verified" not in proc.stdout


def test_an_edited_report_is_a_mismatch(env: Env) -> None:  # noqa: F811
    sub, report = _report(env)
    signed = json.loads(report.read_text())
    signed["report"]["plaintexts"][0]["sha256"] = "0" * 64
    edited = sub / "edited.json"
    edited.write_text(json.dumps(signed))
    proc = run_editor("verify-custody", str(edited), check=False)
    assert proc.returncode == 1
    assert ("MISMATCH: the editor's signature does not verify: the report was altered"
            in proc.stderr)
    assert proc.stdout == ""
