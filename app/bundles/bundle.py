"""Signed bundles: canonical manifest, Ed25519 signature, strict reading (docs/formats.md §6).

Layout of a bundle (an uncompressed POSIX ustar archive, see ``ustar.py``), in this order:

1. ``manifest.json`` — canonical JSON (keys sorted, no spaces), at most 16 MiB;
2. ``manifest.sig`` — base64 of Ed25519(``"<format>\\n" || manifest.json``);
3. every member the manifest lists, **in the manifest's order**, nothing else.

Reading is one pass: the manifest and signature are checked before any member is handed out;
each member's size is checked from its header and its SHA-256 at its last byte (``read``
raises there), and the archive must end right after the last listed member. So a caller that
stages what it reads and commits only when :meth:`OpenedBundle.members` finishes never keeps
anything from a bad bundle.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import io
import json
import os
import queue
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from app import durable
from app.protocol.ed25519 import public_key_from_b64
from app.protocol.ids import BUNDLE_ID, DAY, DESK_NAME, HEX64, ID, ROLE, is_a
from app.protocol.utcday import stamp

from .errors import BundleError
from .ustar import END, MAX_MEMBER_SIZE, iter_members, member_header, padding

EXPORT_FORMAT = "guwah-export/1"
OUTBOX_FORMAT = "guwah-outbox/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MAX_MANIFEST = 16 * 1024 * 1024
MAX_REPLY = 16 * 1024 * 1024
COPY_CHUNK = 1 << 20


Progress = Callable[[int], object]


# ------------------------------------------------------------------------------ manifest


def canonical_json(obj: Any) -> bytes:
    """The one byte string a manifest may be: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BundleError(f"the manifest has the key {key!r} twice: refused")
        out[key] = value
    return out


def parse_manifest(data: bytes) -> dict[str, Any]:
    """Parse a manifest; refuse duplicate keys and any non-canonical encoding."""
    if len(data) > MAX_MANIFEST:
        raise BundleError("the manifest is larger than 16 MiB: refused")
    try:
        manifest = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # deep nesting: Recursion
        if isinstance(exc, BundleError):
            raise
        raise BundleError("the manifest is not valid JSON: the bundle is damaged") from None
    if not isinstance(manifest, dict):
        raise BundleError("the manifest is not a JSON object: the bundle is damaged")
    if canonical_json(manifest) != data:
        raise BundleError("the manifest is not in canonical form: the bundle was altered")
    return manifest


def signed_message(fmt: str, manifest_bytes: bytes) -> bytes:
    """What the signature covers: the format line (domain separation), then the manifest."""
    return fmt.encode("ascii") + b"\n" + manifest_bytes


def sign_manifest(fmt: str, manifest_bytes: bytes, key: SigningKey) -> bytes:
    return base64.b64encode(key.sign(signed_message(fmt, manifest_bytes)).signature)


def verify_signature(fmt: str, manifest_bytes: bytes, sig_text: bytes, key: VerifyKey) -> bytes:
    """Return the raw signature, or raise one clear sentence."""
    try:
        sig = base64.b64decode(sig_text.strip(b"\n"), validate=True)
    except (binascii.Error, ValueError):
        sig = b""
    if len(sig) != 64:
        raise BundleError("the bundle's signature file is malformed: the bundle was altered")
    try:
        key.verify(signed_message(fmt, manifest_bytes), sig)
    except BadSignatureError:
        raise BundleError(
            "the bundle's signature does not verify: it was altered or not signed by this key"
        ) from None
    return sig


@dataclass(frozen=True)
class Entry:
    """One member the manifest promises."""

    path: str
    size: int
    sha256: str


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise BundleError(f"the manifest is invalid: {what}")


def _keys(obj: Any, required: set[str], where: str) -> None:
    _require(isinstance(obj, dict), f"{where} is not an object")
    missing = required - obj.keys()
    extra = obj.keys() - required
    _require(not missing, f"{where} lacks {sorted(missing)}")
    _require(not extra, f"{where} has unknown fields {sorted(extra)}")


def _int(value: Any, low: int, high: int, what: str) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    _require(ok, f"{what} is not a whole number in range")
    return int(value)


def _day(value: Any, what: str) -> str:
    _require(is_a(DAY, value), f"{what} is not a day")
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise BundleError(f"the manifest is invalid: {what} is not a day") from None
    return str(value)


def _entry(obj: Any, path: str, where: str, limit: int) -> Entry:
    _require(obj.get("path") == path, f"{where} has path {obj.get('path')!r}, expected {path!r}")
    size = _int(obj.get("size"), 0, limit, f"{where}.size")
    sha = obj.get("sha256")
    _require(is_a(HEX64, sha), f"{where}.sha256 is not hex")
    return Entry(path, size, str(sha))


def _b64key(value: Any, what: str) -> bytes:
    raw = public_key_from_b64(value)
    _require(raw is not None, f"{what} is not a base64 Ed25519 key")
    assert raw is not None  # for the type checker: _require raised otherwise
    return raw


EXPORT_OPTIONAL = {"editors", "replies", "withdrawn_replies"}


def validate_export(m: dict[str, Any]) -> list[Entry]:
    """Check an export manifest's shape; return its members in order.

    ``editors`` and ``replies`` are optional so that bundles from before they existed still
    open; a server writes both.
    """
    base = {"format", "server_key", "desk", "sequence", "day", "submissions"}
    _keys(m, base | (EXPORT_OPTIONAL & m.keys() if isinstance(m, dict) else set()), "the manifest")
    _require(m["format"] == EXPORT_FORMAT, "wrong format")
    _b64key(m["server_key"], "server_key")
    _require(is_a(DESK_NAME, m["desk"]), "bad desk name")
    _int(m["sequence"], 1, 2**53, "sequence")
    _day(m["day"], "day")
    subs = m["submissions"]
    _require(isinstance(subs, list), "submissions is not a list")
    entries: list[Entry] = []
    seen: set[str] = set()
    for i, sub in enumerate(subs):
        where = f"submission {i}"
        _keys(sub, {"id", "day", "parent_id", "files"}, where)
        sid = sub["id"]
        _require(is_a(ID, sid), f"{where} has a bad id")
        _require(sid not in seen, f"the submission id {sid} appears twice")
        seen.add(sid)
        _day(sub["day"], f"{where}.day")
        parent = sub["parent_id"]
        _require(
            parent is None or is_a(ID, parent),
            f"{where} has a bad parent_id",
        )
        files = sub["files"]
        _require(isinstance(files, list) and bool(files), f"{where} has no files")
        roles: set[str] = set()
        for j, f in enumerate(files):
            fw = f"{where} file {j}"
            _keys(f, {"role", "path", "size", "sha256"}, fw)
            role = f["role"]
            _require(is_a(ROLE, role), f"{fw} has a bad role")
            _require(role not in roles, f"{where} lists the role {role} twice")
            _require((j == 0) == (role == "message"), f"{where} must list its message first")
            roles.add(role)
            entries.append(_entry(f, f"submissions/{sid}/{role}.age", fw, MAX_MEMBER_SIZE))
    _validate_editors(m.get("editors", []))
    entries += _validate_export_replies(m.get("replies", []))
    _validate_withdrawn(m.get("withdrawn_replies", []))
    return entries


def _validate_withdrawn(withdrawn: Any) -> None:
    """Replies a witness deleted from their mailbox: id and UTC day, nothing else."""
    _require(isinstance(withdrawn, list), "withdrawn_replies is not a list")
    for i, w in enumerate(withdrawn):
        where = f"withdrawn reply {i}"
        _keys(w, {"id", "day"}, where)
        _require(is_a(ID, w["id"]), f"{where} has a bad id")
        _day(w["day"], f"{where}.day")


def _validate_editors(editors: Any) -> None:
    _require(isinstance(editors, list), "editors is not a list")
    for i, e in enumerate(editors):
        where = f"editor {i}"
        _keys(e, {"name", "age_recipient", "ed25519", "fingerprint"}, where)
        _b64key(e["ed25519"], f"{where}.ed25519")
        for name in ("name", "age_recipient", "fingerprint"):
            _require(isinstance(e[name], str) and 0 < len(e[name]) <= 4096, f"{where}.{name}")


def _validate_export_replies(replies: Any) -> list[Entry]:
    _require(isinstance(replies, list), "replies is not a list")
    entries: list[Entry] = []
    seen: set[str] = set()
    for i, r in enumerate(replies):
        where = f"reply {i}"
        _keys(r, {"id", "path", "size", "sha256"}, where)
        rid = r["id"]
        _require(is_a(ID, rid), f"{where} has a bad id")
        _require(rid not in seen, f"the reply id {rid} appears twice")
        seen.add(rid)
        entries.append(_entry(r, f"replies/{rid}.age", where, MAX_REPLY))
    return entries


def validate_outbox(m: dict[str, Any]) -> list[Entry]:
    """Check an outbox manifest's shape; return its members in order."""
    _keys(m, {"format", "editor_key", "desk", "bundle_id", "replies", "done"}, "the manifest")
    _require(m["format"] == OUTBOX_FORMAT, "wrong format")
    _b64key(m["editor_key"], "editor_key")
    _require(is_a(DESK_NAME, m["desk"]), "bad desk name")
    bid = m["bundle_id"]
    _require(is_a(BUNDLE_ID, bid), "bad bundle_id")
    replies, done = m["replies"], m["done"]
    _require(isinstance(replies, list) and isinstance(done, list), "replies/done are not lists")
    _require(bool(replies) or bool(done), "the bundle carries nothing")
    entries: list[Entry] = []
    seen: set[str] = set()
    for i, r in enumerate(replies):
        where = f"reply {i}"
        _keys(r, {"id", "submission_id", "path", "size", "sha256"}, where)
        rid, sid = r["id"], r["submission_id"]
        _require(is_a(ID, rid), f"{where} has a bad id")
        _require(is_a(ID, sid), f"{where} has a bad submission")
        _require(rid not in seen, f"the reply id {rid} appears twice")
        seen.add(rid)
        entries.append(_entry(r, f"replies/{rid}.age", where, MAX_REPLY))
    done_seen: set[str] = set()
    for sid in done:
        _require(is_a(ID, sid), "done lists a bad id")
        _require(sid not in done_seen, f"done lists {sid} twice")
        done_seen.add(sid)
    return entries


VALIDATORS: dict[str, Callable[[dict[str, Any]], list[Entry]]] = {
    EXPORT_FORMAT: validate_export,
    OUTBOX_FORMAT: validate_outbox,
}


# ------------------------------------------------------------------------------ writing


class _HashingReader:
    def __init__(self, src: BinaryIO) -> None:
        self.src = src
        self.hash = hashlib.sha256()

    def read(self, n: int) -> bytes:
        data = self.src.read(n)
        self.hash.update(data)
        return data


class BundleWriter:
    """Write a bundle to ``sink``: manifest and signature first, then each promised member."""

    def __init__(self, sink: BinaryIO, manifest: dict[str, Any], key: SigningKey) -> None:
        fmt = manifest.get("format")
        if fmt not in VALIDATORS:
            raise BundleError(f"unknown bundle format {fmt!r}")
        self.manifest_bytes = canonical_json(manifest)
        if len(self.manifest_bytes) > MAX_MANIFEST:
            raise BundleError("the manifest would be larger than 16 MiB: export fewer items")
        parse_manifest(self.manifest_bytes)
        self.entries = VALIDATORS[fmt](manifest)
        self.signature = sign_manifest(fmt, self.manifest_bytes, key)
        self._sink = sink
        self._next = 0
        self._write_member(MANIFEST, self.manifest_bytes)
        self._write_member(SIGNATURE, self.signature)

    def _write_member(self, name: str, data: bytes) -> None:
        self._sink.write(member_header(name, len(data)))
        self._sink.write(data)
        self._sink.write(padding(len(data)))

    def add(self, path: str, src: BinaryIO, progress: Progress | None = None) -> None:
        """Copy the next promised member from ``src``; its size and SHA-256 must match."""
        if self._next >= len(self.entries) or self.entries[self._next].path != path:
            raise BundleError(f"{path} is not the next member the manifest lists")
        entry = self.entries[self._next]
        self._sink.write(member_header(path, entry.size))
        reader = _HashingReader(src)
        left = entry.size
        while left:
            chunk = reader.read(min(COPY_CHUNK, left))
            if not chunk:
                raise BundleError(f"{path} is shorter than recorded: the stored file is damaged")
            self._sink.write(chunk)
            left -= len(chunk)
            if progress:
                progress(len(chunk))
        if src.read(1) or reader.hash.hexdigest() != entry.sha256:
            raise BundleError(f"{path} does not match its recorded SHA-256: stored file damaged")
        self._sink.write(padding(entry.size))
        self._next += 1

    def close(self) -> None:
        if self._next != len(self.entries):
            raise BundleError("the bundle is incomplete: not every listed member was written")
        self._sink.write(END)


def write_bundle_file(
    dest: Path,
    manifest: dict[str, Any],
    key: SigningKey,
    open_member: Callable[[str], BinaryIO],
    progress: Progress | None = None,
) -> Path:
    """Write a whole bundle to ``dest`` through ``app.durable`` (a new 0600 file, fsynced,
    linked into place, the folder fsynced), stamped with its UTC day only.

    ``dest`` must not exist. On any error nothing is left behind.
    """
    try:
        with durable.new_file(dest, buffering=COPY_CHUNK) as fh:
            writer = BundleWriter(fh, manifest, key)
            for entry in writer.entries:
                with open_member(entry.path) as src:
                    writer.add(entry.path, src, progress)
            writer.close()
            fh.flush()
            stamp(fh.fileno())  # its UTC day, not the second it was written
    except durable.AlreadyExists:
        raise BundleError(f"{dest} already exists: refusing to overwrite it") from None
    return dest


# ------------------------------------------------------------------------------ reading


class MemberStream:
    """A member's bytes; the last ``read`` raises if the SHA-256 differs from the manifest.

    Members of 1 MiB or more are hashed on a helper thread (hashlib releases the GIL), so the
    hash overlaps with whatever the caller does with the bytes (decryption, writing).
    """

    THREADED_FROM = 1 << 20

    def __init__(self, data: Any, entry: Entry) -> None:
        self._data = data
        self.entry = entry
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[list[bytes] | None] | None = None
        self._batch: list[bytes] = []  # handed to the thread per ~1 MiB: fewer queue round trips
        self._batched = 0
        self._thread: threading.Thread | None = None
        if entry.size >= self.THREADED_FROM:
            self._queue = queue.Queue(maxsize=64)
            self._thread = threading.Thread(target=self._run, name="bundle-sha256", daemon=True)
            self._thread.start()
        self.verified = entry.size == 0 and self._check()

    def _run(self) -> None:
        assert self._queue is not None
        while (batch := self._queue.get()) is not None:
            for data in batch:
                self._hash.update(data)

    def _flush(self) -> None:
        if self._batch and self._queue is not None:
            self._queue.put(self._batch)
            self._batch, self._batched = [], 0

    def close(self) -> None:
        """Stop the helper thread after it hashed everything read so far (idempotent)."""
        if self._thread is not None and self._queue is not None:
            self._flush()
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _check(self) -> bool:
        self.close()
        if self._hash.hexdigest() != self.entry.sha256:
            raise BundleError(
                f"{self.entry.path} does not match the manifest's SHA-256: the bundle was altered"
            )
        return True

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._data.read(n)
        if data:
            if self._queue is not None:
                self._batch.append(data)
                self._batched += len(data)
                if self._batched >= COPY_CHUNK:
                    self._flush()
            else:
                self._hash.update(data)
        if self._data.remaining == 0 and not self.verified:
            self.verified = self._check()
        return data

    def readinto(self, b: bytearray | memoryview) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(COPY_CHUNK):
            pass


@dataclass
class OpenedBundle:
    """A bundle whose manifest and signature verified; members are read once, in order."""

    format: str
    manifest: dict[str, Any]
    manifest_bytes: bytes
    signature: bytes  # raw 64 bytes
    signer: bytes  # raw 32-byte Ed25519 public key
    entries: list[Entry]
    _members: Iterator[Any]
    _used: bool = False

    @property
    def manifest_sha256(self) -> str:
        return hashlib.sha256(self.manifest_bytes).hexdigest()

    @property
    def signature_b64(self) -> str:
        return base64.b64encode(self.signature).decode()

    def members(self) -> Iterator[tuple[Entry, MemberStream]]:
        """Each listed member in order. Finishes only if the whole bundle is valid."""
        if self._used:
            raise BundleError("a bundle's members can be read only once")
        self._used = True
        for entry in self.entries:
            try:
                member, data = next(self._members)
            except StopIteration:
                raise BundleError(f"the bundle is truncated: {entry.path} is missing") from None
            if member.name != entry.path:
                if member.name in {e.path for e in self.entries} | {MANIFEST, SIGNATURE}:
                    raise BundleError(
                        f"the bundle's member {member.name} is duplicated or out of order: refused"
                    )
                raise BundleError(
                    f"the bundle holds {member.name}, which its manifest does not list"
                )
            if member.size != entry.size:
                raise BundleError(
                    f"{entry.path} has {member.size} bytes, the manifest says {entry.size}"
                )
            stream = MemberStream(data, entry)
            try:
                yield entry, stream
                stream.drain()
            finally:
                stream.close()
        try:
            extra, _ = next(self._members)
        except StopIteration:
            return
        if extra.name in {e.path for e in self.entries} | {MANIFEST, SIGNATURE}:
            raise BundleError(f"the bundle's member {extra.name} is duplicated: refused")
        raise BundleError(f"the bundle holds {extra.name}, which its manifest does not list")

    def consume(self) -> None:
        """Read and check every member without keeping anything (verification only)."""
        for _entry, _stream in self.members():
            pass


def _small_member(members: Iterator[Any], name: str, limit: int) -> bytes:
    try:
        member, data = next(members)
    except StopIteration:
        raise BundleError(f"the bundle is truncated or empty: it has no {name}") from None
    if member.name != name:
        raise BundleError(f"the bundle's first members must be {MANIFEST} and {SIGNATURE}")
    if member.size > limit:
        if name == MANIFEST:
            raise BundleError("the manifest is larger than 16 MiB: refused")
        raise BundleError(f"the bundle's {name} is too large: refused")
    out = data.read()
    if len(out) != member.size:
        raise BundleError("the bundle is truncated")
    return bytes(out)


def open_bundle(
    src: BinaryIO,
    expected_format: str,
    trusted_key: Callable[[dict[str, Any]], bytes],
) -> OpenedBundle:
    """Read the manifest and signature of ``src`` and verify them.

    ``trusted_key(manifest)`` returns the raw Ed25519 public key that must have signed this
    bundle (or raises :class:`BundleError` naming the unknown key). Members are checked as
    they are read through :meth:`OpenedBundle.members`.
    """
    members = iter_members(src)
    manifest_bytes = _small_member(members, MANIFEST, MAX_MANIFEST)
    sig_text = _small_member(members, SIGNATURE, 256)
    manifest = parse_manifest(manifest_bytes)
    fmt = manifest.get("format")
    if fmt != expected_format:
        kinds = {EXPORT_FORMAT: "an export", OUTBOX_FORMAT: "an outbox"}
        what = kinds.get(fmt, "not a Guwah") if isinstance(fmt, str) else "not a Guwah"
        raise BundleError(f"this is {what} bundle, not {kinds[expected_format]} bundle")
    key = trusted_key(manifest)
    sig = verify_signature(expected_format, manifest_bytes, sig_text, VerifyKey(key))
    entries = VALIDATORS[expected_format](manifest)
    return OpenedBundle(expected_format, manifest, manifest_bytes, sig, key, entries, members)


def extract_bundle(
    src_path: Path,
    target: Path,
    expected_format: str,
    trusted_key: Callable[[dict[str, Any]], bytes],
) -> Path:
    """Extract a verified bundle's members into ``target/<bundle file stem>`` atomically.

    Members go into a hidden staging folder inside ``target`` (created with O_EXCL, never
    following a link) that is renamed into place only after the whole bundle verified; on
    any error the staging folder is removed and ``target`` is as before.
    """
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = target / (src_path.name.removesuffix(".tar") or "bundle")
    if final.exists() or final.is_symlink():
        raise BundleError(f"{final} already exists: nothing extracted")
    staging = target / f".staging-{secrets.token_hex(8)}"
    staging.mkdir(mode=0o700)
    try:
        with open(src_path, "rb") as fh:
            bundle = open_bundle(fh, expected_format, trusted_key)
            _stage(staging / MANIFEST, io.BytesIO(bundle.manifest_bytes))
            _stage(staging / SIGNATURE, io.BytesIO(base64.b64encode(bundle.signature)))
            for entry, stream in bundle.members():
                dest = staging.joinpath(*entry.path.split("/"))
                dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                _stage(dest, stream)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _stage(dest: Path, src: Any) -> None:
    """Copy ``src`` into a new 0600 file of the staging folder (never a link, never an old
    file); the folder as a whole is what gets published."""
    with os.fdopen(durable.open_new(dest), "wb") as out:
        while chunk := src.read(COPY_CHUNK):
            out.write(chunk)


def bundle_to_bytes(manifest: dict[str, Any], key: SigningKey, members: dict[str, bytes]) -> bytes:
    """A whole bundle in memory (small bundles and tests)."""
    sink = io.BytesIO()
    writer = BundleWriter(sink, manifest, key)
    for entry in writer.entries:
        writer.add(entry.path, io.BytesIO(members[entry.path]))
    writer.close()
    return sink.getvalue()
