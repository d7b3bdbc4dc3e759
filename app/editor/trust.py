"""The pinned server signing key and what this laptop has imported from it.

``guwah-editor trust-server KEYFILE`` pins the server's Ed25519 key in the keyring folder
(``server.pub``); every export bundle must be signed by exactly that key. ``imports.json``
remembers, per desk, the last bundle sequence imported and each imported manifest's SHA-256,
so that a replayed or older bundle is refused and the same bundle imported twice changes
nothing. Both files hold only public data.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from app.crypto import fingerprint
from app.durable import replace_file
from app.protocol.ed25519 import public_key_from_b64
from app.protocol.utcday import today

from .errors import EditorError

SERVER_FILE = "server.pub"
STATE_FILE = "imports.json"


def server_fingerprint(public: bytes) -> str:
    return fingerprint(public)


def parse_server_key(text: str) -> bytes:
    """Read what ``guwah server-key`` prints (``ed25519:`` and ``fingerprint:`` lines).

    A bare line of base64 is accepted too. A ``fingerprint:`` line must match the key.
    """
    key_b64 = None
    expected_fp = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        field, sep, value = line.partition(":")
        if sep and field.strip() == "ed25519":
            key_b64 = value.strip()
        elif sep and field.strip() == "fingerprint":
            expected_fp = value.strip().upper()
        elif not sep and key_b64 is None:
            key_b64 = line
    if key_b64 is None:
        raise EditorError("the server key file has no 'ed25519:' line")
    public = public_key_from_b64(key_b64)
    if public is None:
        raise EditorError("the server key file's ed25519 key is not base64 of 32 bytes")
    if expected_fp is not None and expected_fp != server_fingerprint(public):
        raise EditorError(
            "the server key file's fingerprint does not match its key: it was altered"
        )
    return public


def pin_server(directory: Path, public: bytes, *, replace: bool = False) -> str:
    """Pin ``public`` for this keyring; refuses to change an existing pin without ``replace``."""
    if not (directory / "editor.pub").exists():
        raise EditorError(f"no keyring in {directory}: run 'guwah-editor keygen' or pass --keyring")
    path = directory / SERVER_FILE
    fp = server_fingerprint(public)
    if path.exists():
        current = parse_server_key(path.read_text("utf-8"))
        if current == public:
            return fp
        if not replace:
            raise EditorError(
                f"another server key ({server_fingerprint(current)}) is pinned already: "
                "pass --replace only if the operator told you the key changed"
            )
    text = (
        "# Guwah server signing key pinned by guwah-editor trust-server\n"
        f"# pinned: {today().isoformat()}\n"
        f"ed25519: {base64.b64encode(public).decode()}\n"
        f"fingerprint: {fp}\n"
    )
    replace_file(path, text.encode(), 0o644)
    return fp


def pinned_server(directory: Path) -> bytes:
    path = directory / SERVER_FILE
    if not path.exists():
        raise EditorError(
            "no server key is pinned: run 'guwah-editor trust-server KEYFILE' with the key "
            "file the operator gave you (compare its fingerprint aloud)"
        )
    return parse_server_key(path.read_text("utf-8"))


class ImportState:
    """Per desk: the last sequence imported and the manifest hash of each imported bundle."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / STATE_FILE
        self.data: dict[str, Any] = {"desks": {}}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text("utf-8"))
                assert isinstance(self.data.get("desks"), dict)
            except (ValueError, AssertionError):
                raise EditorError(f"{self.path} is damaged: restore it from a backup") from None

    def _desk(self, server: bytes, desk: str) -> dict[str, Any]:
        key = f"{base64.b64encode(server).decode()} {desk}"
        return self.data["desks"].setdefault(key, {"last": 0, "bundles": {}})

    def last(self, server: bytes, desk: str) -> int:
        return int(self._desk(server, desk)["last"])

    def editors(self, server: bytes, desk: str) -> list[dict[str, str]]:
        """The desk's editor keys from the newest export that carried them ([] if none did)."""
        return list(self._desk(server, desk).get("editors", []))

    def imported_as(self, server: bytes, desk: str, sequence: int) -> dict[str, str] | None:
        return self._desk(server, desk)["bundles"].get(str(sequence))

    def record(
        self,
        server: bytes,
        desk: str,
        sequence: int,
        manifest_sha: str,
        where: str,
        editors: list[dict[str, str]] | None = None,
    ) -> None:
        """Remember an imported bundle, and the desk's editor keys it carried (newest wins)."""
        entry = self._desk(server, desk)
        entry["bundles"][str(sequence)] = {"manifest_sha256": manifest_sha, "folder": where}
        if editors is not None and sequence >= int(entry.get("editors_sequence", 0)):
            entry["editors"] = editors
            entry["editors_sequence"] = sequence
        entry["last"] = max(int(entry["last"]), sequence)
        replace_file(self.path, json.dumps(self.data, indent=1, sort_keys=True).encode())
