"""The Python mailbox derivation agrees with the browser's, through shared vectors.

tests/vectors/mailbox.json and codename-normalization.json are written by the JavaScript
implementation (``node tests/js/make-vectors.mjs``, from app/web/js/mailbox-core.js); the
browser test checks the built bundle against the same files. A witness who made a codename
with JavaScript on must reach the same mailbox with JavaScript off, and the other way round.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import ModuleType

import pytest

from app.crypto import HybridIdentity, X25519Identity

ROOT = Path(__file__).resolve().parent.parent
VECTORS = json.loads((ROOT / "tests" / "vectors" / "mailbox.json").read_text("utf-8"))
NORMALIZATION = json.loads(
    (ROOT / "tests" / "vectors" / "codename-normalization.json").read_text("utf-8")
)


def _ids(v: dict) -> str:
    return f"{v['kind']}-{v['token_hash'][:8]}-{len(v['codename'])}"


def mailbox_module() -> ModuleType:
    """app.crypto.mailbox, or a clear failure (never a skip) while it is missing."""
    try:
        from app.crypto import mailbox
    except ImportError as exc:  # pragma: no cover - only before mailbox.py lands
        pytest.fail(f"app.crypto.mailbox is not importable yet: {exc}")
    return mailbox


def test_vector_file_shape() -> None:
    assert len(VECTORS) >= 12
    assert {v["kind"] for v in VECTORS} == {"X25519", "mlkem768x25519"}
    for v in VECTORS:
        assert set(v) >= {"codename", "kind", "token_hash", "reply_recipient"}


@pytest.mark.parametrize("v", VECTORS, ids=_ids)
def test_vectors_match_an_independent_derivation(v: dict) -> None:
    """Recompute each vector from the spec alone (hashlib.scrypt + app.crypto keys).

    This pins the JS implementation to the written spec in CRYPTO_API.md / docs/formats.md,
    independently of app/crypto/mailbox.py.
    """
    kdf = v["kdf"]
    out = hashlib.scrypt(
        v["normalized"].encode("utf-8"),
        salt=kdf["salt"].encode("utf-8"),
        n=kdf["N"],
        r=kdf["r"],
        p=kdf["p"],
        dklen=kdf["dklen"],
        maxmem=1 << 26,
    )
    token, seed = out[:32], out[32:64]
    assert token.hex() == v["token"]
    assert hashlib.sha256(b"guwah.org/v1/token" + token).hexdigest() == v["token_hash"]
    if v["kind"] == "X25519":
        identity = X25519Identity.from_secret(seed)
    else:
        identity = HybridIdentity.from_seed(seed)
    assert str(identity) == v["reply_identity"]
    assert str(identity.recipient()) == v["reply_recipient"]


def test_kdf_params_match_vectors() -> None:
    """If the lead changes N, the vectors must be regenerated (node tests/js/make-vectors.mjs)."""
    params = mailbox_module().KDF_PARAMS
    salt = params["salt"]
    salt = salt.decode() if isinstance(salt, bytes) else salt
    n = params["N"] if "N" in params else 2 ** params["log_n"]
    got = {"N": n, "r": params["r"], "p": params["p"], "dklen": params["dklen"]}
    for v in VECTORS:
        want = {k: v["kdf"][k] for k in ("N", "r", "p", "dklen")}
        assert got == want, "KDF_PARAMS changed: run node tests/js/make-vectors.mjs"
        assert salt == v["kdf"]["salt"]


def test_word_list_is_shared() -> None:
    mailbox = mailbox_module()
    words = (ROOT / "app" / "crypto" / "wordlist.txt").read_text("ascii").split()
    shared = mailbox.WORDS if hasattr(mailbox, "WORDS") else mailbox.words()
    assert tuple(shared) == tuple(words)
    assert len(set(words)) == 7776
    assert mailbox.CODENAME_WORDS == 7


@pytest.mark.parametrize("v", VECTORS, ids=_ids)
def test_derive_mailbox_matches_vectors(v: dict) -> None:
    mailbox = mailbox_module()
    m = mailbox.derive_mailbox(v["codename"], v["kind"])
    assert m.token_hash == v["token_hash"]
    assert bytes(m.token).hex() == v["token"]
    assert str(m.reply_recipient) == v["reply_recipient"]
    assert str(m.reply_identity) == v["reply_identity"]


@pytest.mark.parametrize("case", NORMALIZATION, ids=lambda c: repr(c["input"])[:40])
def test_normalization_matches_vectors(case: dict) -> None:
    mailbox = mailbox_module()
    if case["error"] is None:
        assert mailbox.normalize_codename(case["input"]) == case["normalized"]
    else:
        with pytest.raises(ValueError) as info:
            mailbox.normalize_codename(case["input"])
        assert str(info.value)  # a sentence a person can act on, not an empty error


def test_new_codename_normalizes_to_its_seven_secret_words() -> None:
    """A new codename is written with its check word; the KDF sees the first seven words."""
    mailbox = mailbox_module()
    for _ in range(20):
        code = mailbox.new_codename()
        assert len(code.split(" ")) == 8
        assert mailbox.normalize_codename(code) == " ".join(code.split(" ")[:7])
