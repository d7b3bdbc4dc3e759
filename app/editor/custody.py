"""Chain-of-custody reports an editor can sign and anyone can check.

A report ties together, for one submission: the ciphertext hashes from the server-signed
manifest (with the manifest itself and its signature, so the server's part can be checked
without trusting the editor), the plaintext hashes the witness's browser (or the sealing
server) recorded inside the encrypted testimony, the hashes of the decrypted files, the day
received and the bundle sequence — all signed by the editor's Ed25519 key.

File: ``{"report": {...}, "signature": base64}``; the signature covers
``"guwah-custody/1\\n" || canonical_json(report)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from app.bundles import (
    EXPORT_FORMAT,
    BundleError,
    canonical_json,
    parse_manifest,
    verify_signature,
)
from app.durable import replace_file
from app.protocol.editorkey import key_fingerprint
from app.protocol.utcday import today

from .errors import EditorError
from .keyring import Keyring
from .review import CUSTODY
from .trust import server_fingerprint

FORMAT = "guwah-custody/1"
REPORT_FILE = "custody-report.json"
EXIT_NOT_CHECKED = 3  # verify-custody: attachments named by the report were not there


def load_submission(folder: Path) -> dict[str, Any]:
    """The custody record written at import (refuses a folder that is not a submission)."""
    path = folder / CUSTODY
    if not folder.is_dir() or not path.is_file():
        raise EditorError(f"{folder} is not a submission folder (no {CUSTODY}): give its path")
    try:
        record = json.loads(path.read_text("utf-8"))
    except ValueError:
        raise EditorError(f"{path} is damaged") from None
    if record.get("format") != "guwah-custody-record/1":
        raise EditorError(f"{path} is not a Guwah custody record")
    return record


def check_attachment(path: Path) -> None:
    """Refuse to work from an attachment that is not what the witness sent (SHA-256 of the
    custody record); a file outside a submission folder is the editor's own business."""
    if not (path.parent / CUSTODY).is_file():
        return
    record = load_submission(path.parent)
    entry = next((f for f in record.get("files", []) if f.get("saved_as") == path.name), None)
    if entry is None:
        return
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != entry.get("sha256"):  # what import wrote and checked
        raise EditorError(
            f"{path} is not the witness's file any more (its SHA-256 differs from the custody "
            "record): refused; import the bundle again to get it back"
        )


def build_report(folder: Path, ring: Keyring) -> dict[str, Any]:
    record = load_submission(folder)
    bundle_dir = folder.parent
    try:
        manifest_bytes = (bundle_dir / "manifest.json").read_bytes()
        signature = (bundle_dir / "manifest.sig").read_text("ascii").strip()
    except OSError:
        raise EditorError(
            f"{bundle_dir} lacks the signed manifest: was the folder moved?"
        ) from None
    public = ring.public
    report = {
        "format": FORMAT,
        "submission_id": record["submission_id"],
        "desk": record["desk"],
        "day_received": record["day"],
        "parent_id": record.get("parent_id"),
        "protection": record.get("protection", ""),
        "bundle_sequence": record["bundle"]["sequence"],
        "server_key": record["bundle"]["server_key"],
        "server_fingerprint": record["bundle"]["server_fingerprint"],
        "manifest": base64.b64encode(manifest_bytes).decode(),
        "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "manifest_signature": signature,
        "ciphertexts": record["ciphertexts"],
        "testimony": record["message"],
        "plaintexts": [
            {
                "role": f["role"],
                "file": f["saved_as"],
                "size": f["size"],
                "sha256": f["sha256"],
                "sha256_recorded_by_witness_side": f["sha256_recorded"],
                "match": f["match"],
            }
            for f in record["files"]
        ],
        "editor_name": public.name,
        "editor_key": base64.b64encode(public.ed25519_public).decode(),
        "editor_age_recipient": public.age_recipient,
        "editor_fingerprint": public.fingerprint,
        "signed_day": today().isoformat(),
    }
    return report


def sign_report(report: dict[str, Any], ring: Keyring) -> dict[str, Any]:
    message = FORMAT.encode() + b"\n" + canonical_json(report)
    signature = ring.signing_key.sign(message).signature
    return {"report": report, "signature": base64.b64encode(signature).decode()}


def write_report(folder: Path, ring: Keyring, out: Path | None = None) -> tuple[Path, dict]:
    signed = sign_report(build_report(folder, ring), ring)
    path = out or folder / REPORT_FILE
    replace_file(path, (json.dumps(signed, indent=1, sort_keys=True) + "\n").encode())
    return path, signed


def summary(signed: dict[str, Any]) -> str:
    r = signed["report"]
    lines = [
        f"Custody report for submission {r['submission_id']} (desk {r['desk']})",
        f"  received: {r['day_received']}   bundle sequence: {r['bundle_sequence']}",
        f"  server key fingerprint: {r['server_fingerprint']}",
        f"  manifest SHA-256: {r['manifest_sha256']}",
    ]
    for c in r["ciphertexts"]:
        lines.append(f"  ciphertext {c['role']}: {c['size']} bytes, SHA-256 {c['sha256']}")
    for p in r["plaintexts"]:
        ok = "matches the witness side" if p["match"] else "DOES NOT MATCH the witness side"
        lines.append(f"  plaintext {p['role']} {p['file']}: SHA-256 {p['sha256']} ({ok})")
    lines.append(f"  signed by editor {r['editor_name']}, fingerprint {r['editor_fingerprint']}")
    return "\n".join(lines)


def _b64(value: Any, length: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != length:
        raise EditorError(f"the custody report's {what} is malformed")
    return raw


@dataclass
class CustodyCheck:
    """What ``verify_report`` established: each line in ``lines`` was checked and holds."""

    lines: list[str] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)  # named by the report
    hashed: list[str] = field(default_factory=list)  # found next to it, hashed, equal
    files_checked: bool = True  # False with --no-files

    @property
    def missing(self) -> list[str]:
        return [a for a in self.attachments if a not in self.hashed]

    @property
    def complete(self) -> bool:
        """True when nothing the report names went unchecked (or files were not asked for)."""
        return not self.files_checked or not self.missing


def verify_report(
    path: Path, *, expected_editor: str | None = None, check_files: bool = True
) -> CustodyCheck:
    """Check a report and the attachments next to it. Any mismatch raises EditorError; a
    missing attachment does not (it is listed in the result: the caller says so)."""
    try:
        signed = json.loads(path.read_text("utf-8"))
        report, sig = signed["report"], signed["signature"]
        assert isinstance(report, dict) and report.get("format") == FORMAT
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise EditorError(f"{path} is not a Guwah custody report") from None
    check = CustodyCheck(files_checked=check_files)
    check.lines.append(_check_editor(report, sig, expected_editor))
    check.lines += _check_manifest(report)
    _check_plaintexts(report, path.parent, check)
    return check


def _check_editor(report: dict[str, Any], sig: Any, expected_editor: str | None) -> str:
    try:
        editor = _b64(report["editor_key"], 32, "editor key")
        VerifyKey(editor).verify(
            FORMAT.encode() + b"\n" + canonical_json(report), _b64(sig, 64, "signature")
        )
    except BadSignatureError:
        raise EditorError(
            "MISMATCH: the editor's signature does not verify: the report was altered"
        ) from None
    except KeyError:
        raise EditorError("the custody report lacks the editor key") from None
    fp = key_fingerprint(str(report.get("editor_age_recipient", "")), editor)
    if fp != report.get("editor_fingerprint"):
        raise EditorError("MISMATCH: the editor fingerprint does not match the editor's keys")
    if expected_editor and fp.upper() != expected_editor.strip().upper():
        raise EditorError(f"MISMATCH: signed by editor {fp}, not {expected_editor}")
    return f"editor signature valid (editor fingerprint {fp})"


def _check_manifest(report: dict[str, Any]) -> list[str]:
    manifest_bytes = _b64_any(report.get("manifest"), "manifest")
    server = _b64(report.get("server_key"), 32, "server key")
    try:
        verify_signature(
            EXPORT_FORMAT,
            manifest_bytes,
            str(report.get("manifest_signature", "")).encode(),
            VerifyKey(server),
        )
        manifest = parse_manifest(manifest_bytes)
    except BundleError as exc:
        raise EditorError(f"MISMATCH: {exc}") from None
    if server_fingerprint(server) != report.get("server_fingerprint"):
        raise EditorError("MISMATCH: the server fingerprint does not match the server key")
    if manifest.get("server_key") != report.get("server_key"):
        raise EditorError("MISMATCH: the manifest names another server key")
    sub = next(
        (s for s in manifest.get("submissions", []) if s.get("id") == report["submission_id"]),
        None,
    )
    if sub is None:
        raise EditorError("MISMATCH: the submission is not in the signed manifest")
    if sub["files"] != report.get("ciphertexts"):
        raise EditorError("MISMATCH: the ciphertext hashes differ from the signed manifest")
    if sub["day"] != report.get("day_received") or manifest["sequence"] != report.get(
        "bundle_sequence"
    ):
        raise EditorError("MISMATCH: the day or bundle sequence differs from the signed manifest")
    return [
        f"server signature on the manifest valid (server {server_fingerprint(server)})",
        f"ciphertext hashes ({len(sub['files'])}), day and bundle sequence match the signed "
        "manifest",
    ]


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_plaintexts(report: dict[str, Any], folder: Path, check: CustodyCheck) -> None:
    plaintexts = report.get("plaintexts", [])
    for p in plaintexts:
        name = str(p.get("file", ""))
        if not name or Path(name).name != name or name in (".", ".."):
            raise EditorError(f"the custody report names a malformed file {name!r}")
        if not p.get("match") or p.get("sha256") != p.get("sha256_recorded_by_witness_side"):
            raise EditorError(
                f"MISMATCH: {p.get('role')} does not match the hash the witness side recorded"
            )
        check.attachments.append(name)
    if plaintexts:
        check.lines.append(
            f"the report's {len(plaintexts)} attachment hash(es) equal the ones the witness "
            "side recorded"
        )
    else:
        check.lines.append("the report lists no attachments")
    if not check.files_checked:
        return
    for p in plaintexts:
        local = folder / str(p["file"])
        if local.is_symlink() or not local.is_file():
            continue
        if _sha256_file(local) != p.get("sha256"):
            raise EditorError(f"MISMATCH: {local.name} on disk differs from the report")
        check.hashed.append(local.name)
        check.lines.append(f"{local.name} found next to the report: its SHA-256 matches")


def not_checked_sentence(check: CustodyCheck, folder: Path) -> str:
    """Why a report is not fully verified: which attachments were not there to hash."""
    total, found = len(check.attachments), len(check.hashed)
    missing = ", ".join(check.missing)
    return (
        f"NOT VERIFIED: only {found} of the report's {total} attachment(s) are next to it in "
        f"{folder} (missing: {missing}), so their hashes on disk were not checked. Run it on "
        "the report inside its submission folder, or pass --no-files to check only the "
        "signatures and the manifest."
    )


def checked_sentence(check: CustodyCheck) -> str:
    """One line saying exactly what a passed verification covered."""
    if not check.files_checked:
        files = "attachments on disk NOT checked (--no-files)"
    else:
        files = f"{len(check.hashed)} of {len(check.attachments)} attachment(s) found and hashed"
    return f"custody report verified: editor and server signatures, the manifest, {files}"


def _b64_any(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise EditorError(f"the custody report's {what} is malformed") from None
