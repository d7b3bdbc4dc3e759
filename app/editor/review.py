"""``guwah-editor import``: verify an export bundle, decrypt it, lay out a review folder.

Layout of a review folder::

    REVIEW/index.html                          static, no JavaScript; by desk, then by day
    REVIEW/<desk>/bundle-<sequence>/           one folder per imported bundle (atomic unit)
        manifest.json, manifest.sig            exactly as signed by the server (custody)
        <day>_<id>/                            one folder per submission
            testimony.txt, testimony.json      human-readable text + the witness's document
            custody.json                       hashes, signature, checks, risk flags
            file-1_<safe name> …               attachments, padding removed, 0600

Atomicity: everything of a bundle is decrypted into a hidden ``.staging-…`` folder inside
REVIEW and renamed to ``<desk>/bundle-<sequence>`` only when every signature and hash checked
out; any error removes the staging folder. Names come from ``safe_output.safe_name``, never
from a path the witness sent.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import html
import json
import os
import queue
import secrets
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from app.bundles import EXPORT_FORMAT, BundleError, OpenedBundle, open_bundle
from app.crypto import AgeError, Decryptor

from . import deskmail, routine
from .errors import EditorError
from .keyring import Keyring
from .risk import RiskScanner
from .safe_output import safe_name
from .trust import ImportState, pinned_server, server_fingerprint

MAX_MESSAGE = 16 * 1024 * 1024
CUSTODY = "custody.json"
INDEX = "index.html"

PROTECTION_TEXT = {
    "browser-encrypted": "encrypted in the witness's browser; the server never saw plaintext",
    "server-sealed": "JavaScript was off: the server encrypted each part in memory as it arrived",
}


@dataclass
class ImportResult:
    folder: Path | None
    submissions: int = 0
    already: bool = False
    replies: int = 0
    warnings: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)


def _write_new(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Create a new 0600 file (staging files are fsynced together by ``_fsync_tree``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def testimony_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """Normalise the testimony document (formats.md §5, and the server-sealed variant)."""
    answers = doc.get("answers") if isinstance(doc.get("answers"), dict) else {}
    text = doc.get("testimony")
    if not isinstance(text, str):
        text = answers.get("testimony", "") if isinstance(answers.get("testimony"), str) else ""
    files = [f for f in doc.get("files") or [] if isinstance(f, dict)]
    return {
        "text": text,
        "answers": {k: str(v) for k, v in answers.items() if k != "testimony"},
        "files": files,
        "protection": str(doc.get("protection", "")),
        "reply_recipient": str(doc.get("reply_recipient", "")),
        "lang": str(doc.get("lang", "")),
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


class _PlainSink:
    """Receives decrypted chunks: keeps the first ``size`` bytes, hashes, scans, checks padding.

    Hashing, scanning and writing run on a helper thread (hashlib and file writes release the
    GIL), so they overlap with reading, the ciphertext hash and decryption on the main thread
    and the decryption pool. ``finish()`` must be called; it re-raises a write error.
    """

    def __init__(self, fh: Any, size: int, scanner: RiskScanner) -> None:
        self.fh = fh
        self.limit = size
        self.written = 0
        self.total = 0
        self.hash = hashlib.sha256()
        self.scanner = scanner
        self.padding_ok = True
        self._queue: queue.Queue[list[memoryview] | None] = queue.Queue(maxsize=8)
        self._batch: list[memoryview] = []  # ~1 MiB per queue item: fewer thread round trips
        self._batched = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="guwah-write", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is None:
                try:
                    for part in batch:
                        self.fh.write(part)
                        self.hash.update(part)
                        self.scanner.feed(part)
                except BaseException as exc:
                    self._error = exc

    def _flush(self) -> None:
        if self._batch:
            self._queue.put(self._batch)
            self._batch, self._batched = [], 0

    def __call__(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self.total += len(chunk)
        keep = max(0, min(len(chunk), self.limit - self.written))
        if keep:
            self._batch.append(memoryview(chunk)[:keep])
            self._batched += keep
            self.written += keep
            if self._batched >= 1 << 20:
                self._flush()
        if keep < len(chunk) and chunk[keep:].count(0) != len(chunk) - keep:
            self.padding_ok = False

    def finish(self) -> None:
        self._flush()
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _trusted(pinned: bytes) -> Callable[[dict[str, Any]], bytes]:
    def check(manifest: dict[str, Any]) -> bytes:
        try:
            claimed = base64.b64decode(str(manifest.get("server_key", "")), validate=True)
        except ValueError:
            claimed = b""
        if claimed != pinned:
            other = server_fingerprint(claimed) if len(claimed) == 32 else "malformed"
            raise BundleError(
                f"the bundle is signed by an unknown server key ({other}); the pinned server "
                f"key is {server_fingerprint(pinned)}"
            )
        return pinned

    return check


def check_bundle(path: Path, keyring_dir: Path) -> OpenedBundle:
    """Open, verify the signature of, and fully hash-check a bundle without writing anything."""
    pinned = pinned_server(keyring_dir)
    with open(path, "rb") as fh:
        bundle = open_bundle(fh, EXPORT_FORMAT, _trusted(pinned))
        bundle.consume()
    return bundle


def import_bundle(
    path: Path,
    review: Path,
    keyring_dir: Path,
    unlock: Callable[[], Keyring],
    *,
    allow_replay: bool = False,
    progress: Callable[[int], object] | None = None,
) -> ImportResult:
    """Verify and decrypt one export bundle into ``review`` (see the module docstring)."""
    pinned = pinned_server(keyring_dir)
    state = ImportState(keyring_dir)
    if not path.is_file():
        raise EditorError(f"{path} is not a file")
    if review.is_symlink():
        raise EditorError(f"{review} is a symbolic link: choose a real folder for --review")
    with open(path, "rb") as fh:
        bundle = open_bundle(fh, EXPORT_FORMAT, _trusted(pinned))
        m = bundle.manifest
        desk, seq = m["desk"], m["sequence"]
        final = review / safe_name(desk) / f"bundle-{seq:06d}"
        previous = state.imported_as(pinned, desk, seq)
        same_folder = (final / "manifest.json").is_file() and (
            final / "manifest.json"
        ).read_bytes() == bundle.manifest_bytes
        if same_folder:
            return ImportResult(final, already=True)
        if previous and previous["manifest_sha256"] == bundle.manifest_sha256:
            return ImportResult(Path(previous["folder"]), already=True)
        result = ImportResult(None)
        last = state.last(pinned, desk)
        if seq <= last:
            if not allow_replay:
                raise EditorError(
                    f"refused: bundle {seq} of desk {desk} is a replay or older than the last "
                    f"one imported ({last}); use --allow-replay only if you know why"
                )
            result.warnings.append(f"bundle {seq} is not newer than {last}: imported as asked")
            final = final.with_name(f"{final.name}-{bundle.manifest_sha256[:8]}")
        elif seq > last + 1:
            result.warnings.append(
                f"bundle sequence gap: last imported {last}, this is {seq}: "
                f"ask the operator for the missing bundle(s)"
            )
        if final.exists():
            raise EditorError(f"{final} exists with another bundle: refusing to overwrite it")
        ring = unlock()
        created = not review.exists()
        review.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = review / f".staging-{secrets.token_hex(8)}"
        staging.mkdir(mode=0o700)
        try:
            syncer = _Syncer()
            try:
                count = _decrypt_into(bundle, staging, ring, result, progress, syncer)
            finally:
                syncer.finish()
            _fsync_tree(staging, skip=syncer.done)
            final.parent.mkdir(mode=0o700, exist_ok=True)
            os.rename(staging, final)
            _fsync_dir(final.parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if created:
                with contextlib.suppress(OSError):
                    review.rmdir()  # only if still empty: leave no trace of a failed import
            raise
    if seq >= state.last(pinned, desk):  # an older bundle's list is stale: no warning from it
        result.warnings += deskmail.editor_changes(state.editors(pinned, desk), m.get("editors"))
    state.record(pinned, desk, seq, bundle.manifest_sha256, str(final), m.get("editors"))
    result.folder, result.submissions = final, count
    write_index(review)
    return result


def _fsync_path(path: str) -> None:
    """fsync a file or a folder (never following a link)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Syncer:
    """fsyncs finished attachments on a helper thread while later ones are decrypted."""

    def __init__(self) -> None:
        self.done: set[str] = set()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="guwah-fsync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (path := self._queue.get()) is not None:
            if self._error is None:
                try:
                    _fsync_path(path)
                    self.done.add(path)
                except BaseException as exc:
                    self._error = exc

    def submit(self, path: Path) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(str(path))

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _fsync_tree(root: Path, skip: set[str] | frozenset[str] = frozenset()) -> None:
    """Make every staged file and folder durable before the rename publishes them."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if path not in skip:
                _fsync_path(path)
        if folder not in skip:
            _fsync_dir(Path(folder))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _decrypt_into(
    bundle: OpenedBundle,
    staging: Path,
    ring: Keyring,
    result: ImportResult,
    progress: Callable[[int], object] | None,
    syncer: _Syncer | None = None,
) -> int:
    m = bundle.manifest
    _write_new(staging / "manifest.json", bundle.manifest_bytes)
    _write_new(staging / "manifest.sig", bundle.signature_b64.encode())
    subs = {s["id"]: s for s in m["submissions"]}
    bundle_info = {
        "sequence": m["sequence"],
        "day": m["day"],
        "server_key": m["server_key"],
        "server_fingerprint": server_fingerprint(bundle.signer),
        "manifest_sha256": bundle.manifest_sha256,
        "signature": bundle.signature_b64,
    }
    current: dict[str, Any] | None = None

    def finish(c: dict[str, Any]) -> None:
        custody = c["custody"]
        recorded = {f.get("role") for f in c["fields"]["files"]}
        for role in sorted(recorded - {f["role"] for f in custody["files"]} - {None}):
            custody["warnings"].append(
                f"the testimony lists {role}, but the bundle has no such file"
            )
        _write_new(
            c["dir"] / "testimony.txt", _testimony_text(c["sub"], c["fields"], custody).encode()
        )
        _write_new(c["dir"] / CUSTODY, _json_bytes(custody))
        if syncer is not None:
            for name in ("testimony.json", "testimony.txt", CUSTODY):
                syncer.submit(c["dir"] / name)
            syncer.submit(c["dir"])  # the folder's entries too

    for entry, stream in bundle.members():
        if entry.path.startswith(f"{deskmail.REPLIES}/"):  # after every submission
            if current is not None:
                finish(current)
                current = None
            _desk_reply_into(staging, entry.path, stream, ring, result)
            continue
        sid, role = entry.path.split("/")[1], entry.path.split("/")[2].removesuffix(".age")
        sub = subs[sid]
        if role == "message":
            if current is not None:
                finish(current)
            if entry.size > MAX_MESSAGE:
                raise EditorError(f"submission {sid}: its message is implausibly large: refused")
            try:
                padded = Decryptor(stream, [ring.identity]).read()  # type: ignore[arg-type]
            except AgeError as exc:
                raise EditorError(f"submission {sid}: cannot decrypt its message: {exc}") from None
            if progress:
                progress(entry.size)
            body = padded.rstrip(b" ")
            warnings: list[str] = []
            try:
                doc = json.loads(body.decode("utf-8"))
                if not isinstance(doc, dict):
                    raise ValueError
            except ValueError:
                doc = {}
                warnings.append("the testimony is not a JSON document: see testimony.json")
            fields = testimony_fields(doc)
            if doc and doc.get("format") not in ("guwah-testimony/1", None):
                warnings.append(f"unknown testimony format {doc.get('format')!r}")
            folder = staging / f"{sub['day']}_{sid}"
            folder.mkdir(mode=0o700)
            _write_new(folder / "testimony.json", body)
            custody = {
                "format": "guwah-custody-record/1",
                "submission_id": sid,
                "desk": m["desk"],
                "day": sub["day"],
                "parent_id": sub["parent_id"],
                "protection": fields["protection"],
                "bundle": bundle_info,
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
                "warnings": warnings,
            }
            current = {
                "sub": sub,
                "fields": fields,
                "custody": custody,
                "dir": folder,
                "names": set(),
            }
            continue
        assert current is not None and current["sub"]["id"] == sid  # manifest lists message first
        recorded = next((f for f in current["fields"]["files"] if f.get("role") == role), None)
        name = str(recorded.get("name", "")) if recorded else ""
        out_name = safe_name(f"{role}_{safe_name(name, 'attachment')}")
        while out_name in current["names"]:
            out_name = safe_name(f"{role}_{secrets.token_hex(2)}_{name}")
        current["names"].add(out_name)
        size = recorded.get("size") if recorded else None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            size = None
        scanner = RiskScanner(name or out_name)
        out_path = current["dir"] / out_name
        fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb", buffering=0) as fh:
            sink = _PlainSink(fh, size if size is not None else 2**63, scanner)
            try:
                Decryptor(stream, [ring.identity]).read_all_into(sink, progress)  # type: ignore[arg-type]
            except AgeError as exc:
                raise EditorError(f"submission {sid}: cannot decrypt {role}: {exc}") from None
            finally:
                sink.finish()
        if syncer is not None:
            syncer.submit(out_path)
        digest = sink.hash.hexdigest()
        expected = str(recorded.get("sha256", "")) if recorded else ""
        match = (
            bool(expected)
            and secrets.compare_digest(digest, expected)
            and (size is not None and sink.written == size)
        )
        risks = scanner.finish(out_path)
        info = {
            "role": role,
            "name": name,
            "saved_as": out_name,
            "content_type": str(recorded.get("content_type", "")) if recorded else "",
            "size": sink.written,
            "size_recorded": size,
            "sha256": digest,
            "sha256_recorded": expected or None,
            "match": match,
            "risks": risks,
        }
        current["custody"]["files"].append(info)
        if not recorded:
            current["custody"]["warnings"].append(f"{role} is not described in the testimony")
        if not match:
            alert = (
                f"submission {sid} {role} ({out_name}): SHA-256 MISMATCH with what the witness's "
                f"side recorded"
            )
            current["custody"]["warnings"].append(alert)
            result.alerts.append(alert)
        if not sink.padding_ok:
            current["custody"]["warnings"].append(f"{role}: padding after the file is not zeros")
        if risks:
            result.alerts.append(
                f"submission {sid} {role} ({out_name}) is RISKY: {'; '.join(risks)}"
            )
    if current is not None:
        finish(current)
    return len(subs)


def _desk_reply_into(
    staging: Path, path: str, stream: Any, ring: Keyring, result: ImportResult
) -> None:
    """A reply another editor (or this one) sent: readable in ``replies/`` when it is for us."""
    reply_id = path.split("/")[1].removesuffix(".age")
    reply, why = deskmail.read_export_reply(stream, reply_id, ring)
    if reply is None:
        result.warnings.append(str(why))
        return
    deskmail.write_reply(staging, reply)
    result.replies += 1


# ------------------------------------------------------------------------------ index.html


def _records(review: Path) -> list[tuple[Path, dict[str, Any], dict[str, Any]]]:
    out = []
    for custody_path in sorted(review.glob(f"*/bundle-*/*/{CUSTODY}")):
        if any(p.startswith(".") for p in custody_path.relative_to(review).parts):
            continue
        try:
            custody = json.loads(custody_path.read_text("utf-8"))
            doc = json.loads((custody_path.parent / "testimony.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue
        out.append((custody_path.parent, custody, doc if isinstance(doc, dict) else {}))
    return out


CSS = (
    "body{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em;line-height:1.4}"
    ".alert{color:#a00;font-weight:bold}.sub{border-top:1px solid #ccc;padding:.5em 0}"
    "pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}"
)


def render_index(review: Path) -> str:
    """A static page: no script, every witness string escaped, relative links only."""
    records = _records(review)
    answers = routine.Answers(review)
    e = html.escape
    ids = {c["submission_id"]: folder for folder, c, _ in records}
    children: dict[str, list[str]] = {}
    for _, c, _doc in records:
        if c.get("parent_id"):
            children.setdefault(c["parent_id"], []).append(c["submission_id"])

    def href(path: Path) -> str:
        return quote(path.relative_to(review).as_posix())

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src 'none'; form-action 'none'\">",
        '<meta name="referrer" content="no-referrer">',
        f"<title>Guwah review</title><style>{CSS}</style></head><body>",
        "<h1>Guwah review</h1>",
        f"<p>{len(records)} submission(s). Attachments are evidence: risky files are flagged; "
        "open them only on this offline machine, with care.</p>",
        routine.how_to_html(review),
    ]
    by_desk: dict[str, dict[str, list[tuple[Path, dict[str, Any], dict[str, Any]]]]] = {}
    for rec in records:
        by_desk.setdefault(rec[1]["desk"], {}).setdefault(rec[1]["day"], []).append(rec)
    parts.append("<nav><ul>")
    for desk in sorted(by_desk):
        parts.append(f'<li><a href="#desk-{e(quote(desk))}">{e(desk)}</a><ul>')
        for day in sorted(by_desk[desk], reverse=True):
            n = len(by_desk[desk][day])
            parts.append(f'<li><a href="#day-{e(quote(desk))}-{e(day)}">{e(day)}</a> ({n})</li>')
        parts.append("</ul></li>")
    parts.append("</ul></nav>")
    for desk in sorted(by_desk):
        parts.append(f'<h2 id="desk-{e(quote(desk))}">Desk {e(desk)}</h2>')
        for day in sorted(by_desk[desk], reverse=True):
            parts.append(f'<h3 id="day-{e(quote(desk))}-{e(day)}">{e(day)}</h3>')
            for folder, c, doc in by_desk[desk][day]:
                sid = c["submission_id"]
                fields = testimony_fields(doc)
                text = fields["text"]
                excerpt = text[:400] + ("…" if len(text) > 400 else "")
                parts.append(f'<div class="sub" id="s-{e(sid)}">')
                parts.append(
                    f'<h4><a href="{e(href(folder / "testimony.txt"))}">{e(sid)}</a> '
                    f"<small>bundle {e(str(c['bundle']['sequence']))}, "
                    f"{e(c.get('protection') or 'unknown protection')}</small></h4>"
                )
                if c.get("parent_id"):
                    parent = c["parent_id"]
                    if parent in ids:
                        parts.append(
                            f'<p>Follow-up to <a href="#s-{e(parent)}">{e(parent)}</a></p>'
                        )
                    else:
                        parts.append(f"<p>Follow-up to {e(parent)} (not in this folder)</p>")
                if children.get(sid):
                    links = ", ".join(f'<a href="#s-{e(k)}">{e(k)}</a>' for k in children[sid])
                    parts.append(f"<p>Follow-ups: {links}</p>")
                parts.append(f"<pre>{e(excerpt)}</pre>")
                if c["files"]:
                    parts.append("<ul>")
                    for f in c["files"]:
                        flags = []
                        if not f["match"]:
                            flags.append("SHA-256 MISMATCH")
                        flags += [f"RISKY: {r}" for r in f["risks"]]
                        flag = f' <span class="alert">{e("; ".join(flags))}</span>' if flags else ""
                        parts.append(
                            f'<li><a href="{e(href(folder / f["saved_as"]))}" download>'
                            f"{e(f['saved_as'])}</a> ({e(str(f['size']))} bytes, "
                            f"{e(f['content_type'] or '?')}){flag}</li>"
                        )
                    parts.append("</ul>")
                for warning in c.get("warnings", []):
                    parts.append(f'<p class="alert">{e(warning)}</p>')
                parts.append(answers.html(folder, sid))
                parts.append(
                    f'<p><a href="{e(href(folder / CUSTODY))}">custody record</a></p></div>'
                )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_index(review: Path) -> Path:
    path = review / INDEX
    tmp = review / f".{INDEX}.{secrets.token_hex(4)}.tmp"
    _write_new(tmp, render_index(review).encode(), fsync=True)
    os.replace(tmp, path)
    return path


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()
