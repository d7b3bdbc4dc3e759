"""What an export tells a laptop about the rest of its desk: the editors' keys and their replies.

The server signs, in every export manifest, the desk's editor public keys (``editors``) and the
replies editors sent since the last export (``replies``, age files). ``guwah-editor import``
remembers the keys (``imports.json``, per server and desk) so that ``guwah-editor reply``
encrypts to the witness and to *every* editor of the desk; and it decrypts the replies it can
open into the bundle folder's ``replies/`` (``<id>.txt`` to read, ``<id>.json`` for tools), so
another editor's answer shows up on every laptop of the desk with the next export.

Why the server's list and not keys the editors swap themselves: editors already pinned the
server key and compare fingerprints with the operator; the server knows who the desk's editors
are (it encrypts every submission to them), and a key it lists is one it already trusts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app.crypto import AgeError, Decryptor, NoIdentityMatchError
from app.durable import write_new_file

from .keyring import Keyring
from .safe_output import safe_name

REPLIES = "replies"
REPLY_FORMAT = "guwah-reply/1"


@dataclass(frozen=True)
class DeskReply:
    """One editor reply as read from an export."""

    id: str
    submission_id: str
    day: str
    text: str


def read_export_reply(
    stream: BinaryIO, reply_id: str, ring: Keyring
) -> tuple[DeskReply | None, str | None]:
    """Decrypt one reply member: (reply, None), or (None, why it cannot be shown)."""
    try:
        body = Decryptor(stream, [ring.identity]).read()
    except NoIdentityMatchError:
        return None, (
            f"reply {reply_id} is not encrypted to your key (written before the desk's editor "
            "keys travelled with exports, or by a laptop that had not imported them yet)"
        )
    except AgeError as exc:
        return None, f"reply {reply_id} cannot be decrypted: {exc}"
    try:
        doc = json.loads(body.rstrip(b" ").decode("utf-8"))
        ok = (
            isinstance(doc, dict)
            and doc.get("format") == REPLY_FORMAT
            and all(isinstance(doc.get(k), str) for k in ("submission_id", "day", "text"))
        )
    except ValueError:
        ok = False
    if not ok:
        return None, f"reply {reply_id} is not a guwah-reply/1 document"
    return DeskReply(reply_id, doc["submission_id"], doc["day"], doc["text"]), None


def write_reply(folder: Path, reply: DeskReply) -> None:
    """Lay one reply out in ``folder/replies/`` (a staging folder: fsynced with the bundle)."""
    target = folder / REPLIES
    target.mkdir(mode=0o700, exist_ok=True)
    name = safe_name(reply.id, "reply")
    head = f"Reply to submission {reply.submission_id} (sent {reply.day})\n\n"
    write_new_file(target / f"{name}.txt", (head + reply.text).encode())
    meta = {
        "id": reply.id,
        "submission_id": reply.submission_id,
        "day": reply.day,
        "text_sha256": hashlib.sha256(reply.text.encode()).hexdigest(),
    }
    write_new_file(target / f"{name}.json", json.dumps(meta, sort_keys=True).encode())


def replies_in(review: Path) -> dict[str, list[tuple[Path, DeskReply]]]:
    """Every reply imported into ``review``, by submission id: (its .txt file, the reply)."""
    out: dict[str, list[tuple[Path, DeskReply]]] = {}
    for meta_path in sorted(review.glob(f"*/bundle-*/{REPLIES}/*.json")):
        try:
            meta = json.loads(meta_path.read_text("utf-8"))
            text_path = meta_path.with_suffix(".txt")
            text = text_path.read_text("utf-8").split("\n\n", 1)[1]
            reply = DeskReply(meta["id"], meta["submission_id"], meta["day"], text)
        except (OSError, ValueError, KeyError, IndexError):
            continue
        out.setdefault(reply.submission_id, []).append((text_path, reply))
    return out


def editor_changes(old: list[dict[str, str]], new: list[dict[str, str]] | None) -> list[str]:
    """Warnings when the desk's editor keys differ from the ones this laptop knew: replies
    are encrypted to them, so a key the editors did not expect must be checked aloud."""
    if new is None:
        return []
    known = {e.get("fingerprint") for e in old}
    added = [e for e in new if e.get("fingerprint") not in known]
    gone = known - {e.get("fingerprint") for e in new}
    out = [
        f"replies now also go to the desk's editor key {e.get('name')!r} ({e.get('fingerprint')})"
        ": compare its fingerprint with the operator"
        for e in added
    ]
    out += [f"the editor key {fp} left the desk: new replies are no longer encrypted to it"
            for fp in sorted(str(f) for f in gone)]  # fmt: skip
    return out
