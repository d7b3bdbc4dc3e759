"""JavaScript-off submissions: parse the multipart stream and seal each part as it arrives.

Why not Starlette's ``request.form()``/``UploadFile``: they spool parts over 1 MiB to TMPDIR
*as plaintext*.  Here python-multipart's low-level ``MultipartParser`` (callbacks only; it
never opens a file — only its ``File``/``FormParser`` classes do, and they are not used) is fed
from ``request.stream()``.  Every file byte goes straight into an age ``Encryptor`` whose sink is
a store staging blob; text fields stay in bounded memory until the testimony is sealed.

The parse runs in one worker thread per request (the store's transaction and the encryptors
stay on one thread); the event loop hands it the body in chunks of about 1 MiB through a small
bounded channel, so memory stays flat whatever the file size.

Stored testimony (the ``message`` blob, age-encrypted to every editor of the desk) is the
testimony document of app/protocol/testimony.py (docs/formats.md, section 5), padded with
spaces.

Each attachment blob ``file-N`` is the plaintext followed by zero bytes up to ``padme(size)``;
the ``size`` and ``sha256`` the testimony records are of the unpadded plaintext.

Follow-ups (``follow_up=``, used by app/web/routers/mailbox.py): the form carries a sealed
``mailbox`` field instead of a desk; the codename inside it is re-derived here, and the new
submission is linked to the mailbox: same token hash, same reply recipient, ``parent_id`` =
the mailbox's first submission, on that submission's desk.  No new codename is made.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.crypto import (
    Encryptor,
    HybridIdentity,
    Recipient,
    X25519Identity,
    padme,
    parse_recipient,
)
from app.crypto.mailbox import derive_mailbox, kdf, new_codename, token_hash
from app.crypto.padding import write_padding
from app.protocol.followup import first_submission
from app.protocol.testimony import CONSENT, SERVER_SEALED, DescribedFile, Testimony
from app.protocol.utcday import today
from app.store import BlobWriter, Desk, PendingSubmission, Store, StoreError, is_disk_full

from .codename_ahead import AMSG, CONFIRM_FIELD, confirmed
from .errors import MSG, AlreadySent, Refusal
from .forms import FormTokens
from .i18n import KNOWN

if TYPE_CHECKING:
    from _hashlib import HASH

# The parser would log a byte of the body in some warnings: keep the body out of logs.
logging.getLogger("python_multipart").setLevel(logging.CRITICAL + 1)
logging.getLogger("python_multipart.multipart").setLevel(logging.CRITICAL + 1)

ANSWERS = ("where", "when", "consent", "never_name")  # in the order of the form
SHORT_FIELD_CHARS = 2_000
NEVER_NAME_CHARS = 10_000
UNKNOWN_FIELDS_BYTES = 64 * 1024
DISK_CHECK_EVERY = 64 * 1024 * 1024
KDF_WAIT_SECONDS = 10.0
# Text fields are all read before the gate (token, desk or mailbox) is checked: the gate is
# checked at the first file, or at the end. Why not at the first text field: a refused form
# (an expired token, a full server) is shown again with the witness's words, which must
# therefore have been read; they are bounded by the caps below and held in memory only.
# The fields a refused form is refilled with (never the token, the trap field or files):
REFILLED = ("desk", "mailbox", "testimony", "where", "when", "consent", "never_name")

# name -> max characters (bytes accepted: 4 per char, the UTF-8 worst case)
def _text_caps(max_text_chars: int) -> dict[str, int]:
    return {
        "csrf": 200,
        "desk": 200,
        "lang": 16,
        "website": 1_000,
        "testimony": max_text_chars,
        "where": SHORT_FIELD_CHARS,
        "when": SHORT_FIELD_CHARS,
        "consent": 16,
        "never_name": NEVER_NAME_CHARS,
    }


@dataclass
class Limits:
    max_file_bytes: int
    max_files: int
    max_text_chars: int
    min_free_bytes: int
    disk_path: Path


@dataclass
class FileRecord:
    role: str
    name: str
    content_type: str
    size: int = 0
    sha256: str = ""


@dataclass
class Receipt:
    """What the receipt page shows; the codename lives only here, then is dropped."""

    codename: str
    desk: Desk
    submission_id: str
    files: int
    text: bool = field(default=False)


# RFC 2046 allows 1-70 characters; python-multipart >= 0.0.21 raises on more than 256, and an
# exception there would be a 500. Longer is refused up front as a malformed form (400).
MAX_BOUNDARY_BYTES = 256


class Sealer:
    """One JS-off submission: a state machine driven by the multipart parser's callbacks."""

    def __init__(
        self,
        *,
        boundary: bytes,
        store: Store,
        desks: list[Desk],
        limits: Limits,
        tokens: FormTokens,
        kdf_slots: threading.BoundedSemaphore,
        follow_up: Callable[[str], str] | None = None,
        oversize: bool = False,
        ahead: Callable[[bytes], str] | None = None,
    ) -> None:
        self.store = store
        # the codename this form's token stands for, shown before Send (codename_ahead.py)
        self.ahead = ahead
        # the body announced more than any acceptable form: read its text, refuse its files
        self.oversize = oversize
        self._salvaging = False  # reading the text of a body already refused: files ignored
        self._past_text = False  # a file part began: every text field has arrived
        # follow-up mode: opens the form's sealed ``mailbox`` field into a normalized
        # codename (raising Refusal when it is not genuine or has expired)
        self.follow_up = follow_up
        self._link: tuple[str, str, str | None] | None = None  # token hash, recipient, parent
        self.desks = {d.name: d for d in desks}
        self.limits = limits
        self.tokens = tokens  # check / is_spent / spend
        self.kdf_slots = kdf_slots
        self.caps = _text_caps(limits.max_text_chars)
        if follow_up is not None:
            self.caps["mailbox"] = 1_000
        if ahead is not None:
            self.caps[CONFIRM_FIELD] = 16
        self.parser = self._new_parser(boundary)
        self.fields: dict[str, str] = {}
        self.files: list[FileRecord] = []
        self._ended = False
        self._gate_open = False
        self._desk: Desk | None = None
        self._nonce: bytes | None = None
        self._unknown_bytes = 0
        self._reset_part_state()
        # store transaction
        self._cm: PendingSubmission | None = None  # entered: the same object as _sub
        self._sub: PendingSubmission | None = None
        self._codename: str | None = None
        self._reply_recipient = ""
        self._recipients: list[Recipient] = []

    def _new_parser(self, boundary: bytes) -> MultipartParser:
        """The multipart parser, calling back into this state machine; tight header limits."""
        return MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
            max_header_count=8,
            max_header_size=2048,
        )

    def _reset_part_state(self) -> None:
        """The state of the part being parsed, before its first header."""
        self._hfield = bytearray()
        self._hvalue = bytearray()
        self._headers: dict[str, bytes] = {}
        self._kind = ""  # "text" | "file" | "skip"
        self._name = ""
        self._buf = bytearray()
        self._file: FileRecord | None = None
        self._hash: HASH | None = None
        self._enc: Encryptor | None = None
        self._blob: BlobWriter | None = None
        self._pending_name = ""
        self._pending_type = ""
        self._since_disk_check = 0

    # ---------------------------------------------------------------- driving
    def run(self, next_chunk: Callable[[], bytes]) -> Receipt:
        """Consume the body (``next_chunk`` returns b"" at the end) and commit, or abort."""
        try:
            while True:
                chunk = next_chunk()
                if not chunk:
                    break
                self.feed(chunk)
            return self.finish()
        except BaseException as exc:
            self.abort(exc)
            raise

    def feed(self, chunk: bytes) -> None:
        """Parse and seal one piece of the body (any worker thread; one call at a time).

        Why pieces instead of one thread that reads a channel: a thread is then held only
        while there are bytes to seal, never while the witness's connection is quiet.
        """
        self._write(chunk)

    def finish(self) -> Receipt:
        """The body ended: check it was complete, seal the testimony and commit."""
        self.parser.finalize()
        if not self._ended:
            raise Refusal(400, MSG["bad_form"])
        try:
            return self._finish()
        except StoreError as exc:
            if is_disk_full(exc):
                raise Refusal(507, MSG["disk"]) from None
            raise
        except OSError as exc:
            if is_disk_full(exc):
                raise Refusal(507, MSG["disk"]) from None
            raise

    def abort(self, exc: BaseException) -> None:
        """Leave nothing behind after ``feed``/``finish`` failed or the body was cut off."""
        self._abort(exc)

    def salvage(self, chunk: bytes) -> bool:
        """Parse only the text fields of a body that was refused from outside (a full budget,
        a stalled connection); False once no more text can come (a file began, or the form
        is damaged or over a cap: what arrived whole is kept)."""
        self._salvaging = True
        if self._past_text or self._ended:
            return False
        try:
            self.parser.write(chunk)
        except (MultipartParseError, Refusal):
            return False
        return not (self._past_text or self._ended)

    def kept_form(self) -> dict[str, str]:
        """The witness's text fields that arrived whole, to refill the form after a refusal
        (memory only: the caller renders them into the answer and drops them)."""
        kept = {k: v for k, v in self.fields.items() if k in REFILLED}
        if self.ahead is not None and "csrf" in self.fields:
            kept["csrf"] = self.fields["csrf"]  # the same token: the same codename again
        return kept

    def _write(self, chunk: bytes) -> None:
        if self._ended:
            return  # epilogue after the closing boundary: ignored
        try:
            self.parser.write(chunk)
        except MultipartParseError:
            raise Refusal(400, MSG["bad_form"]) from None
        except OSError as exc:  # a staging blob could not be written: the disk is full
            if is_disk_full(exc):
                raise Refusal(507, MSG["disk"]) from None
            raise

    # ---------------------------------------------------------------- callbacks
    def _part_begin(self) -> None:
        self._headers = {}
        self._hfield.clear()
        self._hvalue.clear()
        self._kind = "skip"
        self._name = ""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._hfield += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._hfield).decode("latin-1").strip().lower()] = bytes(self._hvalue)
        self._hfield.clear()
        self._hvalue.clear()

    def _headers_finished(self) -> None:
        disposition = self._headers.get("content-disposition")
        if disposition is None:
            raise Refusal(400, MSG["bad_form"])
        kind, params = parse_options_header(disposition)
        if kind != b"form-data" or b"name" not in params:
            raise Refusal(400, MSG["bad_form"])
        name = params[b"name"].decode("utf-8", "replace")
        self._name = name
        self._buf = bytearray()
        if name == "files" and b"filename" in params:
            self._past_text = True
            if self._salvaging:
                self._kind = "ignore"
                return
            if self.oversize:
                raise Refusal(413, MSG["file_big"])
            if not self._gate_open:
                self._open_gate(for_file=True)
            self._kind = "file"
            self._file = None
            self._pending_name = _safe_filename(params[b"filename"])
            self._pending_type = _safe_type(self._headers.get("content-type", b""))
        elif name in self.caps:
            if name in self.fields:
                raise Refusal(400, MSG["bad_form"])
            self._kind = "text"
        else:
            self._kind = "skip"

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._kind == "file":
            self._file_data(memoryview(data)[start:end])  # no copy: hashed, then encrypted
        elif self._kind == "ignore":
            return
        elif self._kind == "text":
            self._buf += data[start:end]
            if len(self._buf) > 4 * self.caps[self._name] + 4:
                raise Refusal(413, MSG["text_long"] if self._name == "testimony"
                              else MSG["field_long"])
        else:
            self._unknown_bytes += end - start
            if self._unknown_bytes > UNKNOWN_FIELDS_BYTES:
                raise Refusal(400, MSG["bad_form"])

    def _part_end(self) -> None:
        if self._kind == "file":
            self._file_end()
        elif self._kind == "text":
            self._text_end()
        self._kind = "skip"

    def _end(self) -> None:
        self._ended = True

    # ---------------------------------------------------------------- text fields
    def _text_end(self) -> None:
        try:
            text = bytes(self._buf).decode("utf-8")
        except UnicodeDecodeError:
            raise Refusal(400, MSG["bad_text"]) from None
        self._buf = bytearray()
        text = unicodedata.normalize("NFC", text.replace("\r\n", "\n"))
        if len(text) > self.caps[self._name]:
            raise Refusal(413, MSG["text_long"] if self._name == "testimony" else MSG["field_long"])
        if self._name == "website" and text.strip():
            raise Refusal(400, MSG["honeypot"], keeps_form=False)
        if self._name == "consent" and text not in CONSENT:
            raise Refusal(422, MSG["bad_choice"])
        self.fields[self._name] = text

    def _open_gate(self, *, for_file: bool) -> None:
        """Check the form token and the desk before anything else of the form is used."""
        if for_file and self.follow_up is not None:
            if "csrf" not in self.fields or "mailbox" not in self.fields:
                raise Refusal(400, MSG["order"])
        elif for_file and ("csrf" not in self.fields or
                           ("desk" not in self.fields and len(self.desks) != 1)):
            raise Refusal(400, MSG["order"])
        self._check_gate()

    def _check_gate(self) -> None:
        nonce = self.tokens.check(self.fields.get("csrf", ""))
        if nonce is None:
            raise Refusal(403, MSG["csrf"])
        self._nonce = nonce
        if not self.desks:
            raise Refusal(503, MSG["no_desks"])
        if self.follow_up is not None:
            self._link_mailbox()
            return
        name = self.fields.get("desk", "")
        if not name:
            if len(self.desks) != 1:
                raise Refusal(422, MSG["no_desk"])
            name = next(iter(self.desks))
        desk = self.desks.get(name)
        if desk is None or not desk.recipients:
            raise Refusal(422, MSG["unknown_desk"])
        self._desk = desk
        self._recipients = [parse_recipient(k.age_recipient) for k in desk.recipients]
        self._gate_open = True

    def _link_mailbox(self) -> None:
        """Follow-up mode: re-derive the mailbox and find the submission to link to.

        A mailbox nobody has used yet (a codename typed slightly wrong looks exactly like
        one) gets this as its first submission, on the first desk: the witness saw the same
        page either way, and nothing they wrote is thrown away.
        """
        assert self.follow_up is not None
        codename = self.follow_up(self.fields.get("mailbox", ""))
        if not self.kdf_slots.acquire(timeout=KDF_WAIT_SECONDS):
            raise Refusal(503, MSG["busy"])
        try:
            out = kdf(codename)
        finally:
            self.kdf_slots.release()
        del codename
        hashed = token_hash(out[:32])
        first = first_submission(self.store.list_submissions(token_hash=hashed))
        parent: str | None = None
        desk = next(iter(self.desks.values()))
        if first is not None:
            # the mailbox's desk; if it lost its editor keys, the first desk, as for a mailbox
            # nobody used (never a refusal: it would tell that this mailbox exists)
            desk = self.desks.get(first.desk) or desk
            parent = first.id
        identity: HybridIdentity | X25519Identity = (
            HybridIdentity.from_seed(out[32:64]) if desk.kind == "mlkem768x25519"
            else X25519Identity.from_secret(out[32:64]))
        del out
        self._desk = desk
        self._recipients = [parse_recipient(k.age_recipient) for k in desk.recipients]
        self._link = (hashed, str(identity.recipient()), parent)
        del identity
        self._gate_open = True

    # ---------------------------------------------------------------- files
    def _file_data(self, data: bytes | memoryview) -> None:
        if self._file is None:
            if not data:
                return
            if len(self.files) >= self.limits.max_files:
                raise Refusal(413, MSG["too_many_files"])
            self._ensure_submission()
            record = FileRecord(f"file-{len(self.files) + 1}", self._pending_name,
                                self._pending_type)
            self.files.append(record)
            self._file = record
            self._hash = hashlib.sha256()
            self._blob = self._opened().open_blob(record.role)
            # background: seal + write on a second core while this thread parses and hashes
            self._enc = Encryptor(self._recipients, self._blob, background=True)
        record = self._file
        record.size += len(data)
        if record.size > self.limits.max_file_bytes:
            raise Refusal(413, MSG["file_big"])
        assert self._hash is not None and self._enc is not None  # set with self._file
        self._hash.update(data)
        self._enc.write(data)
        self._since_disk_check += len(data)
        if self._since_disk_check >= DISK_CHECK_EVERY:
            self._since_disk_check = 0
            self._check_disk()

    def _file_end(self) -> None:
        record = self._file
        if record is None:
            return  # an empty file input: browsers send a part with no bytes
        assert self._enc is not None and self._blob is not None and self._hash is not None
        write_padding(self._enc.write, padme(record.size) - record.size)
        self._enc.close()
        self._blob.close()
        record.sha256 = self._hash.hexdigest()
        self._file, self._enc, self._blob, self._hash = None, None, None, None

    def _check_disk(self) -> None:
        try:
            free = shutil.disk_usage(self.limits.disk_path).free
        except OSError:
            return
        if free < self.limits.min_free_bytes:
            raise Refusal(507, MSG["disk"])

    # ---------------------------------------------------------------- submission
    def _ensure_submission(self) -> None:
        if self._sub is not None:
            return
        if self._nonce is not None and self.tokens.is_spent(self._nonce):
            raise self._sent_before()
        self._check_disk()
        if self._link is not None:
            hashed, recipient, parent = self._link
            self._codename = ""  # the witness already has it; nothing new to show
            self._reply_recipient = recipient
            self._cm = self.store.begin_submission(
                self._gate_desk(), token_hash=hashed, reply_recipient=recipient,
                parent_id=parent,
            )
            self._sub = self._cm.__enter__()
            return
        codename = (self.ahead(self._nonce) if self.ahead is not None and self._nonce
                    else new_codename())
        if not self.kdf_slots.acquire(timeout=KDF_WAIT_SECONDS):
            raise Refusal(503, MSG["busy"])
        try:
            kind = self._gate_desk().kind
            assert kind is not None  # the gate admits only desks that have editor keys
            mailbox = derive_mailbox(codename, kind)
        finally:
            self.kdf_slots.release()
        if self.ahead is not None and self.store.mailbox_exists(mailbox.token_hash):
            raise self._sent_before()  # this token's form was stored (here or by another node)
        self._codename = codename
        self._reply_recipient = mailbox.reply_recipient
        self._cm = self.store.begin_submission(
            self._gate_desk(), token_hash=mailbox.token_hash,
            reply_recipient=mailbox.reply_recipient,
        )
        del mailbox  # the reply identity is never needed again on the server
        self._sub = self._cm.__enter__()

    def _finish(self) -> Receipt:
        if not self._gate_open:
            self._check_gate()
        testimony = self.fields.get("testimony", "")
        if not testimony.strip() and not self.files:
            raise Refusal(422, MSG["empty"])
        if self.ahead is not None and not confirmed(self.fields) and not self._spent():
            # checked once the whole form is here (why not at the first file: a damaged form
            # must still be told it is damaged); a browser asks for the tick before sending
            raise Refusal(422, AMSG["confirm"])
        self._ensure_submission()
        document = Testimony(
            protection=SERVER_SEALED,
            day=today().isoformat(),
            desk=self._gate_desk().name,
            lang=lang if (lang := self.fields.get("lang", "")) in KNOWN else "",
            testimony=testimony,
            answers={key: self.fields.get(key, "") for key in ANSWERS},
            files=tuple(DescribedFile(f.role, f.name, f.content_type, f.size, f.sha256)
                        for f in self.files),
            reply_recipient=self._reply_recipient,
            parent_id=self._link[2] if self._link is not None else None,
        )
        body = document.padded()
        blob = self._opened().open_blob("message")
        enc = Encryptor(self._recipients, blob)
        enc.write(body)
        enc.close()
        blob.close()
        del body, document
        if self._nonce is not None and not self.tokens.spend(self._nonce):
            raise self._sent_before()
        try:
            submission_id = self._opened().commit()
        except BaseException:
            if self._nonce is not None:
                self.tokens.release(self._nonce)  # nothing stored: the form may be sent again
            raise
        cm, self._cm, self._sub = self._opened(), None, None
        cm.__exit__(None, None, None)
        codename, self._codename = self._codename, None
        assert codename is not None
        return Receipt(codename, self._gate_desk(), str(submission_id), len(self.files),
                       bool(testimony.strip()))

    def _gate_desk(self) -> Desk:
        """The desk the gate chose (a programming error to ask before it did)."""
        if self._desk is None:
            raise RuntimeError("the form's gate has not chosen a desk yet")
        return self._desk

    def _opened(self) -> PendingSubmission:
        """The submission being written (open once the gate passed)."""
        if self._sub is None:
            raise RuntimeError("no submission is open: the form's gate has not passed")
        return self._sub

    def _spent(self) -> bool:
        return self._nonce is not None and self.tokens.is_spent(self._nonce)

    def _sent_before(self) -> Refusal:
        """A form already stored: the same receipt (codename ahead) or, for a follow-up, 409."""
        if self.ahead is not None and self._nonce is not None:
            return AlreadySent(self._nonce)
        return Refusal(409, MSG["used"], keeps_form=False)

    def _abort(self, exc: BaseException) -> None:
        """Leave nothing behind: close the open encryptor quietly and roll the store back."""
        self._codename = None
        self.fields.clear()
        self._buf = bytearray()
        if self._enc is not None:
            self._enc.abort()  # stop its sealing thread; the output is discarded below
        self._enc = self._blob = None  # the store aborts (and deletes) every staged writer
        if self._cm is not None:
            cm, self._cm, self._sub = self._cm, None, None
            try:
                cm.__exit__(type(exc), exc, exc.__traceback__)
            except Exception:  # noqa: S110 - already failing with ``exc``
                pass


def _safe_filename(raw: bytes) -> str:
    """A display name for editors: no path, no control characters, bounded length."""
    name = raw.decode("utf-8", "replace")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", name)
                   if unicodedata.category(ch)[0] != "C")
    name = name.strip().lstrip(".")
    return name[:200] or "file"


def _safe_type(raw: bytes) -> str:
    text = raw.decode("latin-1", "replace").split(";", 1)[0].strip().lower()
    if len(text) > 100 or not all(c.isalnum() or c in "/.+-_" for c in text):
        return "application/octet-stream"
    return text or "application/octet-stream"
