"""Desks and their editors' public keys: who a witness can address, and to whom it is sealed."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app.crypto import AgeError, HybridRecipient, X25519Recipient, parse_recipient
from app.protocol.ed25519 import public_key_from_b64
from app.protocol.ids import DESK_NAME, is_a

from .errors import Conflict, Invalid, NotFound
from .models import DeskRow, EditorKeyRow, ExportRow, SubmissionRow


@dataclass(frozen=True)
class EditorKey:
    name: str
    age_recipient: str
    ed25519_public: str  # base64 of the raw 32-byte key
    fingerprint: str
    kind: str  # "X25519" | "mlkem768x25519"


@dataclass(frozen=True)
class Desk:
    id: int
    name: str
    description: str
    kind: str | None  # None while the desk has no editor keys
    recipients: list[EditorKey] = field(default_factory=list)

    def age_recipients(self) -> list[X25519Recipient | HybridRecipient]:
        """Parsed recipients, ready for ``app.crypto.Encryptor``."""
        return [parse_recipient(k.age_recipient) for k in self.recipients]


def _desk(row: DeskRow) -> Desk:
    keys = [
        EditorKey(k.name, k.age_recipient, k.ed25519_public, k.fingerprint, k.kind)
        for k in row.keys
    ]
    return Desk(row.id, row.name, row.description, keys[0].kind if keys else None, keys)


def add_desk(engine: Engine, name: str, description: str = "") -> Desk:
    if not is_a(DESK_NAME, name):
        raise Invalid(
            "a desk name is 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit"
        )
    try:
        with engine.begin() as conn:
            conn.execute(insert(DeskRow).values(name=name, description=description or ""))
    except IntegrityError:
        raise Conflict(f"a desk named {name!r} already exists") from None
    return get_desk(engine, name)


def remove_desk(engine: Engine, name: str) -> None:
    """Remove a desk that never received a submission."""
    desk = get_desk(engine, name)
    with engine.begin() as conn:
        used = conn.execute(
            select(func.count()).select_from(SubmissionRow).where(SubmissionRow.desk_id == desk.id)
        ).scalar_one()
        if used:
            raise Conflict(f"desk {name!r} holds submissions; it cannot be removed")
        conn.execute(delete(ExportRow).where(ExportRow.desk_id == desk.id))
        conn.execute(delete(EditorKeyRow).where(EditorKeyRow.desk_id == desk.id))
        conn.execute(delete(DeskRow).where(DeskRow.id == desk.id))


def list_desks(engine: Engine) -> list[Desk]:
    with Session(engine) as s:
        rows = s.scalars(select(DeskRow).options(selectinload(DeskRow.keys)).order_by(DeskRow.id))
        return [_desk(r) for r in rows]


def get_desk(engine: Engine, name: str) -> Desk:
    with Session(engine) as s:
        row = s.scalars(
            select(DeskRow).options(selectinload(DeskRow.keys)).where(DeskRow.name == name)
        ).first()
        if row is None:
            raise NotFound(f"no desk named {name!r}")
        return _desk(row)


def _checked_key(
    age_recipient: str, ed25519_pub: str, editor_name: str
) -> X25519Recipient | HybridRecipient:
    try:
        recipient = parse_recipient(age_recipient)
    except AgeError as exc:
        raise Invalid(str(exc)) from None
    if public_key_from_b64(ed25519_pub) is None:
        raise Invalid("the Ed25519 public key must be base64 of 32 bytes")
    if not editor_name or len(editor_name) > 200 or "\n" in editor_name:
        raise Invalid("an editor name is 1-200 characters on one line")
    return recipient


def add_recipient(
    engine: Engine,
    desk_name: str,
    editor_name: str,
    age_recipient: str,
    ed25519_pub: str,
    fingerprint: str,
) -> EditorKey:
    """Add an editor's public keys to a desk; refuses a mix of X25519 and hybrid keys."""
    recipient = _checked_key(age_recipient, ed25519_pub, editor_name)
    desk = get_desk(engine, desk_name)
    if desk.kind is not None and desk.kind != recipient.type:
        raise Conflict(
            f"desk {desk_name!r} holds {desk.kind} keys; age never mixes X25519 and "
            f"post-quantum recipients in one file, so a {recipient.type} key cannot join it"
        )
    canonical = str(recipient)
    for key in desk.recipients:
        if key.fingerprint == fingerprint or key.age_recipient == canonical:
            raise Conflict(f"this key is already on desk {desk_name!r}")
    key = EditorKey(editor_name, canonical, ed25519_pub, fingerprint, recipient.type)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(EditorKeyRow).values(
                    desk_id=desk.id,
                    name=key.name,
                    kind=key.kind,
                    age_recipient=key.age_recipient,
                    ed25519_public=key.ed25519_public,
                    fingerprint=key.fingerprint,
                )
            )
    except IntegrityError:
        raise Conflict(f"this key is already on desk {desk_name!r}") from None
    return key


def remove_recipient(engine: Engine, desk_name: str, fingerprint: str) -> None:
    desk = get_desk(engine, desk_name)
    wanted = fingerprint.strip().upper()
    with engine.begin() as conn:
        result = conn.execute(
            delete(EditorKeyRow).where(
                EditorKeyRow.desk_id == desk.id, func.upper(EditorKeyRow.fingerprint) == wanted
            )
        )
    if result.rowcount == 0:
        raise NotFound(f"no key with fingerprint {fingerprint} on desk {desk_name!r}")
