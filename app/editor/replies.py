"""Replies and deletion requests queued on the editor laptop, then sent as one signed bundle.

Queue: ``KEYRING/outbox/`` (0700). A reply is ``<id>.age`` (ciphertext only: age, to the
witness's reply recipient, every editor key of the desk that the last export carried, and the
editor's own key, so the desk's other editors read it from their next export) plus
``<id>.json`` naming the submission and desk; a deletion request is
``done-<submission id>.json``. An item counts only once its ``.json`` exists (written last).
``guwah-editor outbox`` writes one bundle signed with the editor's Ed25519 key, fsyncs it,
and only then clears the queue.

Reply plaintext: ``{"format": "guwah-reply/1", "submission_id", "day", "text"}`` as JSON,
followed by spaces up to the Padmé length (like the testimony).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.bundles import OUTBOX_FORMAT, BundleError, write_bundle_file
from app.crypto import AgeError, encrypt, padme, parse_recipient
from app.durable import write_new_file
from app.protocol.testimony import Testimony, TestimonyError
from app.protocol.utcday import today

from .custody import load_submission
from .errors import EditorError
from .keyring import Keyring, read_public
from .quarantine import load_record
from .routine import DONE_MARK, SENT_PREFIX
from .safe_output import safe_name
from .trust import ImportState

OUTBOX = "outbox"
REPLY_FORMAT = "guwah-reply/1"
MAX_REPLY_CHARS = 100_000


def outbox_dir(keyring_dir: Path) -> Path:
    path = keyring_dir / OUTBOX
    if path.is_symlink():
        raise EditorError(f"{path} is a symbolic link: refusing to use it")
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def queue_reply(submission: Path, text: str, keyring_dir: Path) -> tuple[str, Path]:
    """Encrypt a reply to the witness and this editor; queue it. No passphrase needed."""
    record = load_submission(submission)
    if not text.strip():
        raise EditorError("the reply is empty: nothing was queued")
    if len(text) > MAX_REPLY_CHARS:
        raise EditorError(f"the reply is longer than {MAX_REPLY_CHARS} characters")
    try:
        doc = Testimony.from_bytes((submission / "testimony.json").read_bytes())
        witness = parse_recipient(doc.reply_recipient)
    except (OSError, TestimonyError, AgeError):
        raise EditorError(
            "this submission has no usable reply recipient: the witness cannot receive a reply"
        ) from None
    own = parse_recipient(read_public(keyring_dir).age_recipient)
    if witness.type != own.type:
        raise EditorError(
            f"the witness's reply key is {witness.type} but your key is {own.type}: age never "
            "mixes the two in one file, so this keyring cannot reply to this desk"
        )
    desk = desk_recipients(record, keyring_dir)
    if any(r.type != own.type for r in desk):
        raise EditorError(
            "the desk's editor keys mix X25519 and post-quantum keys: age never mixes the two "
            "in one file; ask the operator to check the desk's keys"
        )
    body = json.dumps(
        {
            "format": REPLY_FORMAT,
            "submission_id": record["submission_id"],
            "day": today().isoformat(),
            "text": text,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    body += b" " * (padme(len(body)) - len(body))
    ciphertext = encrypt(body, _unique([witness, *desk, own]))
    rid = secrets.token_urlsafe(16)
    queue = outbox_dir(keyring_dir)
    write_new_file(queue / f"{rid}.age", ciphertext)
    meta = {
        "kind": "reply",
        "id": rid,
        "submission_id": record["submission_id"],
        "desk": record["desk"],
    }
    write_new_file(queue / f"{rid}.json", json.dumps(meta).encode())
    sent = submission / safe_name(f"{SENT_PREFIX}{today().isoformat()}-{rid}.txt")
    write_new_file(sent, text.encode())
    return rid, sent


def desk_recipients(record: dict[str, Any], keyring_dir: Path) -> list[Any]:
    """The desk's editor keys as the newest export from this submission's server listed them."""
    try:
        server = base64.b64decode(record["bundle"]["server_key"], validate=True)
    except (KeyError, TypeError, ValueError):
        return []
    out = []
    for editor in ImportState(keyring_dir).editors(server, record["desk"]):
        try:
            out.append(parse_recipient(editor["age_recipient"]))
        except (AgeError, KeyError, TypeError):
            raise EditorError(
                "imports.json holds a damaged editor key: import the next export again"
            ) from None
    return out


def _unique(recipients: list[Any]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for r in recipients:
        if str(r) not in seen:
            seen.add(str(r))
            out.append(r)
    return out


def queue_done(submission: Path, keyring_dir: Path) -> bool:
    """Queue a deletion request (a laid-out or a quarantined submission); False when it is
    queued already.

    A ``DONE_MARK`` file in the submission folder remembers it after the queue is sent, so
    ``guwah-editor list`` no longer shows the submission as waiting.
    """
    record = load_record(submission)
    path = outbox_dir(keyring_dir) / f"done-{record['submission_id']}.json"
    if path.exists() or (submission / DONE_MARK).exists():
        return False
    meta = {"kind": "done", "submission_id": record["submission_id"], "desk": record["desk"]}
    write_new_file(path, json.dumps(meta).encode())
    write_new_file(submission / DONE_MARK, f"deletion requested {today().isoformat()}\n".encode())
    return True


@dataclass
class QueueItem:
    meta_path: Path
    kind: str
    submission_id: str
    desk: str
    reply_id: str | None = None


def queued(keyring_dir: Path) -> list[QueueItem]:
    queue = keyring_dir / OUTBOX
    if not queue.is_dir():
        return []
    items = []
    for path in sorted(queue.glob("*.json")):
        try:
            meta: dict[str, Any] = json.loads(path.read_text("utf-8"))
            kind = meta["kind"]
            item = QueueItem(path, kind, meta["submission_id"], meta["desk"], meta.get("id"))
        except (OSError, ValueError, KeyError):
            raise EditorError(f"the queued item {path} is damaged: remove it") from None
        if kind == "reply" and not (queue / f"{item.reply_id}.age").is_file():
            raise EditorError(f"the queued reply {path.name} lost its ciphertext: remove it")
        items.append(item)
    return items


def write_outbox(
    to: Path, keyring_dir: Path, unlock: Callable[[], Keyring], desk: str | None = None
) -> tuple[Path, int, int]:
    """One signed bundle of every queued item (of one desk); clears them once it is on disk."""
    items = queued(keyring_dir)
    if not items:
        raise EditorError("the outbox is empty: queue replies or deletions first")
    desks = sorted({i.desk for i in items})
    if desk is None:
        if len(desks) > 1:
            raise EditorError(f"the outbox holds items for several desks ({', '.join(desks)}): "
                              "choose one with --desk")  # fmt: skip
        desk = desks[0]
    items = [i for i in items if i.desk == desk]
    if not items:
        raise EditorError(f"nothing queued for desk {desk}")
    ring = unlock()
    queue = keyring_dir / OUTBOX
    replies = []
    members: dict[str, Path] = {}
    for item in items:
        if item.kind != "reply":
            continue
        path = queue / f"{item.reply_id}.age"
        data = path.read_bytes()
        member = f"replies/{item.reply_id}.age"
        members[member] = path
        replies.append(
            {
                "id": item.reply_id,
                "submission_id": item.submission_id,
                "path": member,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    done = sorted({i.submission_id for i in items if i.kind == "done"})
    bundle_id = secrets.token_urlsafe(24)
    manifest = {
        "format": OUTBOX_FORMAT,
        "editor_key": base64.b64encode(ring.public.ed25519_public).decode(),
        "desk": desk,
        "bundle_id": bundle_id,
        "replies": replies,
        "done": done,
    }
    if to.is_dir():
        to = to / f"guwah-outbox-{safe_name(desk)}-{today().isoformat()}-{bundle_id[:8]}.tar"
    try:
        write_bundle_file(to, manifest, ring.signing_key, lambda m: open(members[m], "rb"))
    except BundleError as exc:
        raise EditorError(str(exc)) from None
    for item in items:  # the bundle is fsynced: only now forget the queue
        item.meta_path.unlink(missing_ok=True)
        if item.reply_id:
            (queue / f"{item.reply_id}.age").unlink(missing_ok=True)
    return to, len(replies), len(done)
