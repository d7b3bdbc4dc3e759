"""Helpers for the editor round trip, reusable by the end-to-end chain test.

``Chain`` drives the real command lines: ``guwah`` (server) and ``guwah-editor`` (air-gapped
laptop, run in an interpreter where the web stack cannot be imported) through
export -> import -> reply -> done -> outbox -> import. Submissions can come from the real site
(the lead's browser test) or from :func:`submit`, which writes exactly what a browser would:
the testimony document of docs/formats.md §5 padded with spaces and attachments padded with
zeros, encrypted to the desk, through the real Store.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from app.bundles import EXPORT_FORMAT, bundle_to_bytes
from app.crypto import decrypt, encrypt, padme

PASSPHRASE = "correct horse battery staple"
# The server extra. Jinja2 is not in it: the editor renders its review index with it, so it
# is a base dependency (pyproject.toml), installed on every editor laptop.
WEB_STACK = ["fastapi", "starlette", "sqlalchemy", "uvicorn", "alembic", "multipart"]
ROOT = Path(__file__).resolve().parent.parent


def run_editor(
    *args: str, check: bool = True, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess:
    """guwah-editor in a fresh interpreter where the web stack cannot be imported."""
    code = (
        "import sys; sys.modules.update({m: None for m in %r}); "
        "from app.editor.cli import main; main(sys.argv[1:])" % WEB_STACK
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        input=stdin,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"guwah-editor {args} failed ({proc.returncode}): {proc.stderr}")
    return proc


def run_guwah(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "app.server_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"guwah {args} failed ({proc.returncode}): {proc.stderr}")
    return proc


def make_keyring(
    directory: Path, passfile: Path, name: str = "Desk editor", x25519: bool = True
) -> Path:
    extra = ["--x25519"] if x25519 else []
    run_editor(
        "keygen",
        "--name",
        name,
        "--keyring",
        str(directory),
        "--passphrase-file",
        str(passfile),
        "--work-factor",
        "10",
        *extra,
    )
    return directory


def recipient_of(keyring: Path) -> str:
    for line in (keyring / "editor.pub").read_text().splitlines():
        if line.startswith("age-recipient: "):
            return line.split(": ", 1)[1]
    raise AssertionError("no recipient")


# ---------------------------------------------------------------------------- submissions


def seal(
    recipients: list[Any],
    text: str,
    files: list[tuple[str, bytes]],
    reply_recipient: str,
    *,
    desk: str = "default",
    day: str = "2026-11-26",
    protection: str = "browser-encrypted",
    parent_id: str | None = None,
    sha_override: dict[str, str] | None = None,
    content_types: dict[str, str] | None = None,
) -> dict[str, bytes]:
    """role -> age ciphertext, exactly as the witness's browser would produce them."""
    doc = {
        "format": "guwah-testimony/1",
        "protection": protection,
        "desk": desk,
        "day": day,
        "testimony": text,
        "answers": {
            "where": "Ürümqi, <b>market</b>",
            "when": "last spring",
            "consent": "ask-me",
            "never_name": "my cousin",
        },
        "files": [
            {
                "role": f"file-{i}",
                "name": name,
                "content_type": (content_types or {}).get(name, "application/octet-stream"),
                "size": len(data),
                "sha256": (sha_override or {}).get(name, hashlib.sha256(data).hexdigest()),
            }
            for i, (name, data) in enumerate(files, 1)
        ],
        "reply_recipient": reply_recipient,
        "parent_id": parent_id,
    }
    body = json.dumps(doc, ensure_ascii=False).encode()
    out = {"message": encrypt(body + b" " * (padme(len(body)) - len(body)), recipients)}
    for i, (_name, data) in enumerate(files, 1):
        out[f"file-{i}"] = encrypt(data + b"\0" * (padme(len(data)) - len(data)), recipients)
    return out


def submit(
    store: Any,
    desk: str,
    codename: str,
    text: str,
    files: list[tuple[str, bytes]] = (),
    parent_id: str | None = None,
    **kw: Any,
) -> str:
    """Store a browser-style submission through the real Store; returns its id."""
    from app.crypto.mailbox import derive_mailbox

    d = store.get_desk(desk)
    mailbox = derive_mailbox(codename, d.kind)
    parts = seal(
        d.age_recipients(),
        text,
        list(files),
        mailbox.reply_recipient,
        desk=desk,
        parent_id=parent_id,
        **kw,
    )
    with store.begin_submission(
        d, mailbox.token_hash, mailbox.reply_recipient, parent_id=parent_id
    ) as sub:
        for role, data in parts.items():
            w = sub.open_blob(role)
            w.write(data)
            w.close()
        return sub.commit()


def read_replies(store: Any, codename: str, kind: str) -> list[dict[str, Any]]:
    """What a returning witness reads: every reply of the mailbox, decrypted."""
    from app.crypto.mailbox import derive_mailbox

    mailbox = derive_mailbox(codename, kind)
    out = []
    for info in store.replies(mailbox.token_hash):
        with store.open_reply(info.id, mailbox.token_hash) as fh:
            plain = decrypt(fh.read(), [mailbox.reply_identity])
        out.append(json.loads(plain.rstrip(b" ")))
    return out


# ---------------------------------------------------------------------------- raw bundles


def export_manifest(
    server_key: SigningKey,
    desk: str,
    sequence: int,
    subs: list[tuple[str, str, str | None, dict[str, bytes]]],
    day: str = "2026-11-26",
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A manifest and its members for ``subs`` = [(id, day, parent_id, {role: ciphertext})]."""
    members: dict[str, bytes] = {}
    entries = []
    for sid, sday, parent, parts in subs:
        files = []
        for role in sorted(parts, key=lambda r: (r != "message", r)):
            path = f"submissions/{sid}/{role}.age"
            members[path] = parts[role]
            files.append(
                {
                    "role": role,
                    "path": path,
                    "size": len(parts[role]),
                    "sha256": hashlib.sha256(parts[role]).hexdigest(),
                }
            )
        entries.append({"id": sid, "day": sday, "parent_id": parent, "files": files})
    manifest = {
        "format": EXPORT_FORMAT,
        "server_key": base64.b64encode(bytes(server_key.verify_key)).decode(),
        "desk": desk,
        "sequence": sequence,
        "day": day,
        "submissions": entries,
    }
    return manifest, members


def build_export(
    path: Path,
    server_key: SigningKey,
    desk: str,
    sequence: int,
    subs: list[tuple[str, str, str | None, dict[str, bytes]]],
) -> Path:
    manifest, members = export_manifest(server_key, desk, sequence, subs)
    path.write_bytes(bundle_to_bytes(manifest, server_key, members))
    return path


def server_key_file(path: Path, key: SigningKey) -> Path:
    from app.crypto import fingerprint

    pub = bytes(key.verify_key)
    path.write_text(f"ed25519: {base64.b64encode(pub).decode()}\nfingerprint: {fingerprint(pub)}\n")
    return path


def craft_tar(entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    """A tar written by the standard library (for hostile variants our writer never makes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for item in entries:
            if isinstance(item, tarfile.TarInfo):
                tar.addfile(item)
            else:
                info = tarfile.TarInfo(item[0])
                info.size = len(item[1])
                tar.addfile(info, io.BytesIO(item[1]))
    return buf.getvalue()


def assemble_tar(manifest: dict[str, Any], key: SigningKey, members: list[Any],
                 fmt: str = EXPORT_FORMAT) -> bytes:
    """A bundle with a valid signature over ``manifest`` but arbitrary (hostile) members."""
    from app.bundles import canonical_json, sign_manifest

    mb = canonical_json(manifest)
    return craft_tar([("manifest.json", mb), ("manifest.sig", sign_manifest(fmt, mb, key)),
                      *members])


def tree_snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its bytes (None for folders): to prove nothing changed."""
    out: dict[str, bytes | None] = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return out


# ---------------------------------------------------------------------------- the chain


@dataclass
class Chain:
    """The whole editor round trip through the real command lines, in ``work``.

    Usage (a submission already stored on the server)::

        chain = Chain(tmp_path, database_url)   # guwah init + an X25519 editor keyring
        chain.setup()                            # desk, recipients add, trust-server
        bundle = chain.export()
        chain.editor_import(bundle)
        sub = chain.submission_dirs()[0]
        chain.reply(sub, "Thank you")
        chain.done(sub)
        chain.server_import(chain.outbox())
    """

    work: Path
    database_url: str | None = None
    desk: str = "default"
    x25519: bool = True
    data_dir: Path = field(init=False)
    keyring: Path = field(init=False)
    review: Path = field(init=False)
    passfile: Path = field(init=False)
    usb: Path = field(init=False)

    def __post_init__(self) -> None:
        self.data_dir = self.work / "server-data"
        self.keyring = self.work / "editor-keyring"
        self.review = self.work / "review"
        self.usb = self.work / "usb"
        self.usb.mkdir(parents=True, exist_ok=True)
        self.passfile = self.work / "editor-pass.txt"
        self.passfile.write_text(PASSPHRASE + "\n")

    def guwah(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run_guwah(*args, "--data-dir", str(self.data_dir), check=check)

    def editor(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run_editor(*args, "--keyring", str(self.keyring), check=check)

    def setup(self, init: bool = True) -> None:
        if init:
            extra = ["--database-url", self.database_url] if self.database_url else []
            self.guwah("init", *extra)
        make_keyring(self.keyring, self.passfile, x25519=self.x25519)
        if self.desk == "default":
            self.guwah("recipients", "add", str(self.keyring / "editor.pub"))
        else:
            self.guwah("desks", "add", self.desk)
            self.guwah("recipients", "add", str(self.keyring / "editor.pub"), "--desk", self.desk)
        key = self.work / "server-key.txt"
        key.write_text(self.guwah("server-key").stdout)
        self.editor("trust-server", str(key))

    def export(self, *extra: str) -> Path | None:
        before = set(self.usb.iterdir())
        self.guwah("export", "--to", str(self.usb), "--desk", self.desk, *extra)
        new = set(self.usb.iterdir()) - before
        return new.pop() if new else None

    def editor_import(
        self, bundle: Path, *extra: str, check: bool = True
    ) -> subprocess.CompletedProcess:
        return self.editor(
            "import",
            str(bundle),
            "--review",
            str(self.review),
            "--passphrase-file",
            str(self.passfile),
            *extra,
            check=check,
        )

    def submission_dirs(self) -> list[Path]:
        return sorted(p.parent for p in self.review.glob("*/bundle-*/*/custody.json"))

    def submission_dir(self, submission_id: str) -> Path:
        return next(p for p in self.submission_dirs() if p.name.endswith("_" + submission_id))

    def reply(self, submission: Path, text: str) -> None:
        f = self.work / "reply.txt"
        f.write_text(text)
        self.editor("reply", str(submission), "--text-file", str(f))

    def done(self, submission: Path) -> None:
        self.editor("done", str(submission))

    def outbox(self) -> Path:
        before = set(self.usb.iterdir())
        self.editor("outbox", "--to", str(self.usb), "--passphrase-file", str(self.passfile))
        return (set(self.usb.iterdir()) - before).pop()

    def server_import(self, bundle: Path, check: bool = True) -> subprocess.CompletedProcess:
        return self.guwah("import", str(bundle), check=check)

    def store(self) -> Any:
        from app.settings import load_settings
        from app.store import Store

        return Store(load_settings(self.data_dir))
