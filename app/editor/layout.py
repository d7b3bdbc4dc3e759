"""Laying out an export bundle's submissions, each one on its own (review.py has the folder).

Every submission is decrypted into its own ``<day>_<id>`` folder inside the import's staging
folder. Its message (at most 16 MiB) is decrypted and authenticated whole, in memory, and its
testimony document checked against the bundle's manifest before anything of the submission is
written; attachments then stream to their files, and only chunks whose authentication tag
verified are ever written. Whatever fails for one submission — another key, junk, a payload
that does not authenticate, bad padding, bad JSON, a testimony document of the wrong shape, a
file missing or extra — removes that submission's folder (before anything is published) and
records it in the quarantine section (quarantine.py) with one line of why; the import goes on
with the next submission. Problems of the bundle itself (signature, hashes, order) are not a
submission's fault and still refuse the whole bundle (``BundleError``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from app.bundles import MemberStream, OpenedBundle
from app.crypto import AgeError, Decryptor, HeaderError, NoIdentityMatchError, PayloadError, padme
from app.diskio import FileWriter
from app.durable import open_new
from app.protocol.testimony import FILL, Testimony, TestimonyError

from . import deskmail, quarantine
from .handoff import Handoff
from .keyring import Keyring
from .quarantine import Quarantine
from .risk import RiskScanner
from .safe_output import safe_name

MAX_MESSAGE = 16 * 1024 * 1024
CUSTODY = "custody.json"
MAX_REASON = 300


PROTECTION_TEXT = {
    "browser-encrypted": "encrypted in the witness's browser; the server never saw plaintext",
    "server-sealed": "JavaScript was off: the server encrypted each part in memory as it arrived",
}


def write_new(path: Path, data: bytes) -> None:
    """A new 0600 file in the staging folder; not fsynced here: the whole staging folder is
    fsynced once before it is renamed into place (review.py)."""
    with os.fdopen(open_new(path), "wb") as fh:
        fh.write(data)


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def testimony_fields(doc: object) -> dict[str, Any]:
    """The testimony's fields as the layout and the index show them (formats.md §5, parsed by
    app/protocol/testimony.py); a file on disk that is no testimony (edited by hand) shows as
    an empty one."""
    if not isinstance(doc, Testimony):
        try:
            doc = Testimony.parse(doc)
        except TestimonyError:
            doc = Testimony()
    return {
        "text": doc.testimony,
        "answers": dict(doc.answers),
        "files": [f.to_json() for f in doc.files],
        "protection": doc.protection,
        "reply_recipient": doc.reply_recipient,
        "lang": doc.lang,
    }


def _testimony_text(sub: dict[str, Any], fields: dict[str, Any], custody: dict[str, Any]) -> str:
    lines = [
        f"Submission {sub['id']}",
        f"Desk: {custody['desk']}    Day received: {sub['day']}    "
        f"Bundle: {custody['bundle']['sequence']}",
        f"Protection: {fields['protection'] or 'unknown'}"
        + (
            f" ({PROTECTION_TEXT[fields['protection']]})"
            if fields["protection"] in PROTECTION_TEXT
            else ""
        ),
    ]
    if sub.get("parent_id"):
        lines.append(f"Follow-up to submission: {sub['parent_id']}")
    if fields["lang"]:
        lines.append(f"Language of the form: {fields['lang']}")
    labels = {
        "where": "Where",
        "when": "When",
        "consent": "Consent to publish",
        "never_name": "Never name",
    }
    if fields["answers"]:
        lines += ["", "Answers:"]
        for key, value in fields["answers"].items():
            lines.append(f"  {labels.get(key, key)}: {value}")
    lines += ["", "Testimony:", fields["text"] or "(no text)", "", "Attachments:"]
    if not custody["files"]:
        lines.append("  (none)")
    for f in custody["files"]:
        status = "SHA-256 verified" if f["match"] else "SHA-256 MISMATCH"
        risk = f"  RISKY: {'; '.join(f['risks'])}" if f["risks"] else ""
        lines.append(
            f"  {f['role']}: {f['saved_as']}  ({f['size']} bytes, {f['content_type'] or '?'})  "
            f"{status}{risk}"
        )
    for warning in custody["warnings"]:
        lines.append(f"WARNING: {warning}")
    return "\n".join(lines) + "\n"


class PlainSink:
    """Receives decrypted chunks: keeps the first ``size`` bytes, hashes, scans, checks padding.

    Writing (with the risk scan) and hashing each run on a helper thread of their own
    (app/editor/handoff.py; hashlib and file writes release the GIL), so they overlap with
    each other and with reading, the ciphertext hash and decryption. Why two threads and not
    one: on one thread, writing then hashing every MiB kept that thread busy 91 % of an
    import, the slowest stage. The file is written past the page cache where the file
    system allows it (app/diskio.py), so the fsync that follows finds little to do.
    ``finish()`` must be called; it re-raises a write error.
    """

    def __init__(self, fh: BinaryIO, size: int, scanner: RiskScanner) -> None:
        self.limit = size
        self.written = 0
        self.total = 0
        self.hash = hashlib.sha256()
        self.scanner = scanner
        self.padding_ok = True
        self._file = FileWriter(fh.fileno())
        self._writer = Handoff(self._write, "guwah-write")
        self._hasher = Handoff(self.hash.update, "guwah-hash")

    def _write(self, part: memoryview) -> None:
        self._file.write(part)
        self.scanner.feed(part)

    def __call__(self, chunk: bytes) -> None:
        """Take a decrypted chunk (not copied: it must not change afterwards)."""
        self.total += len(chunk)
        keep = max(0, min(len(chunk), self.limit - self.written))
        if keep:
            part = memoryview(chunk)[:keep]
            self._writer(part)
            self._hasher(part)
            self.written += keep
        if keep < len(chunk) and chunk[keep:].count(0) != len(chunk) - keep:
            self.padding_ok = False

    def finish(self) -> None:
        try:
            self._writer.finish()
            self._file.end()  # what the writer kept back, before the file is fsynced
        finally:
            self._hasher.finish()


class Syncer(Protocol):
    def submit(self, path: Path) -> None: ...


@dataclass
class ImportResult:
    folder: Path | None
    submissions: int = 0
    already: bool = False
    retried: int = 0  # quarantined submissions that opened when the bundle was imported again
    replies: int = 0  # the desk's replies (this or another editor's) laid out in replies/
    warnings: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (submission id, reason)
    # replies the witness deleted from their mailbox on the server: (reply id, UTC day)
    withdrawn: list[tuple[str, str]] = field(default_factory=list)


def one_line(reason: str) -> str:
    """A reason as one short line (an error text may quote bytes the sender chose)."""
    text = " ".join("".join(c if c.isprintable() else " " for c in reason).split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def age_reason(role: str, exc: AgeError) -> str:
    if isinstance(exc, NoIdentityMatchError):
        return f"{role}: not encrypted to your key (another key, or junk): {exc}"
    if isinstance(exc, HeaderError):
        return f"{role}: not a valid age file: {exc}"
    if isinstance(exc, PayloadError):
        return f"{role}: the encrypted data does not authenticate (damaged or forged): {exc}"
    return f"{role}: cannot decrypt: {exc}"


@dataclass
class _Open:
    """A submission being laid out: its manifest entry, testimony and folder."""

    sub: dict[str, Any]
    fields: dict[str, Any]
    custody: dict[str, Any]
    dir: Path
    names: set[str] = field(default_factory=set)


class Layout:
    """Decrypts a bundle's submissions into ``staging``, quarantining each that fails."""

    def __init__(self, bundle: OpenedBundle, staging: Path, ring: Keyring,
                 result: ImportResult, progress: Callable[[int], object] | None,
                 bundle_info: dict[str, Any]) -> None:
        self.bundle, self.staging, self.ring = bundle, staging, ring
        self.result, self.progress, self.bundle_info = result, progress, bundle_info
        self.desk: str = bundle.manifest["desk"]
        self.subs = {s["id"]: s for s in bundle.manifest["submissions"]}
        result.withdrawn = [(w["id"], w["day"])
                            for w in bundle.manifest.get("withdrawn_replies", [])]
        self.laid_out: list[str] = []
        self.quarantined: list[str] = []

    def _desk_reply(self, path: str, stream: MemberStream) -> None:
        """A reply another editor (or this one) sent: readable in ``replies/`` when it is for
        us; one that is not is a warning, never a reason to stop."""
        reply_id = path.split("/")[1].removesuffix(".age")
        reply, why = deskmail.read_export_reply(cast(BinaryIO, stream), reply_id, self.ring)
        if reply is None:
            self.result.warnings.append(str(why))
            return
        deskmail.write_reply(self.staging, reply)
        self.result.replies += 1

    def folder_name(self, sid: str) -> str:
        return f"{self.subs[sid]['day']}_{sid}"

    def run(self, syncer: Syncer | None, only: set[str] | None = None) -> None:
        """Every submission (or those in ``only``); the bundle is read once, in order."""
        current: _Open | None = None
        for entry, stream in self.bundle.members():
            if entry.path.startswith(f"{deskmail.REPLIES}/"):  # after every submission
                self._close(current, syncer)
                current = None
                if only is None:  # a retry already has them
                    self._desk_reply(entry.path, stream)
                continue
            sid, role = entry.path.split("/")[1], entry.path.split("/")[2].removesuffix(".age")
            if only is not None and sid not in only:
                continue  # still read and hash-checked by the bundle reader
            if role == "message":
                self._close(current, syncer)
                current = None
                try:
                    current = self._open(sid, entry.size, stream)
                except Quarantine as q:
                    self._reject(None, sid, q.reason)
                except AgeError as exc:
                    self._reject(None, sid, age_reason(role, exc))
                continue
            if current is None or current.sub["id"] != sid:
                continue  # the rest of a quarantined submission: never decrypted
            try:
                self._file(current, role, stream)
            except Quarantine as q:
                self._reject(current, sid, q.reason)
                current = None
            except AgeError as exc:
                self._reject(current, sid, age_reason(role, exc))
                current = None
        self._close(current, syncer)

    def _reject(self, current: _Open | None, sid: str, reason: str) -> None:
        """Drop what was written of ``sid`` and record it in the quarantine section."""
        if current is not None:
            shutil.rmtree(current.dir)
        reason = one_line(reason)
        folder = self.staging / quarantine.FOLDER / self.folder_name(sid)
        folder.parent.mkdir(mode=0o700, exist_ok=True)
        folder.mkdir(mode=0o700)
        rec = quarantine.record(self.subs[sid], self.desk, self.bundle_info, reason)
        write_new(folder / quarantine.RECORD, json_bytes(rec))
        write_new(folder / quarantine.REASON, reason.encode() + b"\n")
        self.quarantined.append(sid)
        self.result.quarantined.append((sid, reason))

    def _open(self, sid: str, size: int, stream: Any) -> _Open:
        """Decrypt and check the message in memory; only then create the folder."""
        sub = self.subs[sid]
        if size > MAX_MESSAGE:
            raise Quarantine(f"message: implausibly large ({size} bytes)")
        padded = Decryptor(stream, [self.ring.identity]).read()
        if self.progress:
            self.progress(size)
        body = padded.rstrip(FILL)
        if padme(len(body)) != len(padded):
            raise Quarantine(
                f"message: bad padding ({len(padded)} bytes for a {len(body)}-byte testimony)"
            )
        try:
            fields = testimony_fields(Testimony.from_bytes(body))
        except TestimonyError as exc:
            raise Quarantine(f"message: {exc}") from None
        described = {f["role"] for f in fields["files"]}
        stored = {f["role"] for f in sub["files"]} - {"message"}
        if described - stored:
            raise Quarantine(f"the testimony lists {', '.join(sorted(described - stored))}, "
                             "which the bundle does not hold")
        if stored - described:
            raise Quarantine(f"the bundle holds {', '.join(sorted(stored - described))}, "
                             "which the testimony does not describe")
        folder = self.staging / self.folder_name(sid)
        folder.mkdir(mode=0o700)
        write_new(folder / "testimony.json", body)
        return _Open(sub, fields, self._custody(sub, fields, body), folder)

    def _custody(self, sub: dict[str, Any], fields: dict[str, Any], body: bytes) -> dict:
        return {
            "format": "guwah-custody-record/1",
            "submission_id": sub["id"],
            "desk": self.desk,
            "day": sub["day"],
            "parent_id": sub["parent_id"],
            "protection": fields["protection"],
            "bundle": self.bundle_info,
            "ciphertexts": [
                {"role": f["role"], "path": f["path"], "size": f["size"], "sha256": f["sha256"]}
                for f in sub["files"]
            ],
            "message": {
                "size": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "testimony_sha256_of": "testimony.json",
            },
            "files": [],
            "warnings": [],
        }

    def _file(self, current: _Open, role: str, stream: Any) -> None:
        """Stream one attachment into the submission's folder, then check and record it."""
        recorded = next(f for f in current.fields["files"] if f["role"] == role)
        name, size = str(recorded.get("name", "")), int(recorded["size"])
        out_name = safe_name(f"{role}_{safe_name(name, 'attachment')}")
        while out_name in current.names:
            out_name = safe_name(f"{role}_{secrets.token_hex(2)}_{name}")
        current.names.add(out_name)
        scanner = RiskScanner(name or out_name)
        out_path = current.dir / out_name
        with os.fdopen(open_new(out_path), "wb", buffering=0) as fh:
            sink = PlainSink(cast(BinaryIO, fh), size, scanner)
            try:
                Decryptor(stream, [self.ring.identity]).read_all_into(sink, self.progress)
            finally:
                sink.finish()
        if sink.total != padme(size):
            raise Quarantine(f"{role}: bad padding ({sink.total} bytes for a {size}-byte file)")
        if not sink.padding_ok:
            raise Quarantine(f"{role}: the padding after the file is not zeros")
        self._record_file(current, role, recorded, out_name, sink, scanner.finish(out_path))

    def _record_file(self, current: _Open, role: str, recorded: dict[str, Any], out_name: str,
                     sink: PlainSink, risks: list[str]) -> None:
        sid = current.sub["id"]
        digest = sink.hash.hexdigest()
        expected = str(recorded["sha256"])
        match = secrets.compare_digest(digest, expected) and sink.written == recorded["size"]
        current.custody["files"].append({
            "role": role,
            "name": str(recorded.get("name", "")),
            "saved_as": out_name,
            "content_type": str(recorded.get("content_type", "")),
            "size": sink.written,
            "size_recorded": recorded["size"],
            "sha256": digest,
            "sha256_recorded": expected,
            "match": match,
            "risks": risks,
        })
        if not match:
            alert = (f"submission {sid} {role} ({out_name}): SHA-256 MISMATCH with what the "
                     "witness's side recorded")
            current.custody["warnings"].append(alert)
            self.result.alerts.append(alert)
        if risks:
            self.result.alerts.append(
                f"submission {sid} {role} ({out_name}) is RISKY: {'; '.join(risks)}"
            )

    def _close(self, current: _Open | None, syncer: Syncer | None) -> None:
        """Write the testimony text and custody record of a laid-out submission."""
        if current is None:
            return
        text = _testimony_text(current.sub, current.fields, current.custody)
        write_new(current.dir / "testimony.txt", text.encode())
        write_new(current.dir / CUSTODY, json_bytes(current.custody))
        if syncer is not None:
            for path in sorted(current.dir.iterdir()):
                syncer.submit(path)
            syncer.submit(current.dir)  # the folder's entries too
        self.laid_out.append(current.sub["id"])
