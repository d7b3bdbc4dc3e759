"""Junk and chosen plaintext committed through POST /api/submissions, against a real server.

An anonymous client uploads bytes behind an age header and commits them; `guwah serve` runs on
127.0.0.1 and everything goes over a socket. What the server can check without any key is
refused with one translated sentence and nothing is kept (no submission, no upload), while
honest browser-style commits running at the same time get 201. What it cannot check (a
well-formed file for another key of the desk's kind) is the editors' quarantine:
tests/hostile/test_junk_import.py. SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from nacl.bindings import crypto_scalarmult_base

from app.crypto import HybridIdentity, X25519Identity, encrypt, padme
from app.crypto.mailbox import derive_mailbox, new_codename
from app.settings import load_settings
from app.store import Store
from app.web.commit import CMSG
from app.web.errors import MSG
from tests.test_uploads import commit, upload

pytestmark = [pytest.mark.database, pytest.mark.slow]

PLAIN = 4096  # plaintext bytes of every forged file (a Padmé length: passes the size check)


def _b64(raw: bytes) -> bytes:
    return base64.b64encode(raw).rstrip(b"=")


def _header(share: bytes, body: bytes | None = None) -> bytes:
    """An age header with one X25519 stanza: the shape of the test desk's files."""
    return (b"age-encryption.org/v1\n-> X25519 " + _b64(share) + b"\n"
            + _b64(body or os.urandom(32)) + b"\n--- " + _b64(os.urandom(32)) + b"\n")


def _payload(fill: bytes | None = None) -> bytes:
    """A payload of the right STREAM size for PLAIN bytes: random, or ``fill`` repeated."""
    size = 16 + PLAIN + 16
    return os.urandom(size) if fill is None else (fill * size)[:size]


def _real_header(recipient: Any) -> bytes:
    data = encrypt(b"\0" * PLAIN, [recipient])
    return data[: data.index(b"\n---") + 49]  # "\n--- " + 43 characters of MAC + "\n"


def _attacks(recipient: Any) -> dict[str, tuple[bytes, str]]:
    """name -> (the bytes uploaded as ``message``, the sentence of the refusal)."""
    high_bit = bytearray(crypto_scalarmult_base(os.urandom(32)))
    high_bit[31] |= 0x80  # a share no X25519 key generation outputs
    text = b"Chosen plaintext stored on the witness site, readable by anyone who seizes it. "
    real = _real_header(recipient)
    junk = CMSG["not_ciphertext"]
    return {
        "fake header, random share, random bytes": (_header(bytes(high_bit)) + _payload(), junk),
        "fake header, low-order share": (_header(bytes(32)) + _payload(), junk),
        "real header, chosen plaintext": (real + _payload(text), junk),
        "real header, zeros": (real + _payload(b"\0"), junk),
        "generated share, chosen plaintext": (
            _header(crypto_scalarmult_base(os.urandom(32))) + _payload(text), junk),
        "unrelated post-quantum key": (
            encrypt(b"\0" * PLAIN, [HybridIdentity.generate().recipient()]), CMSG["wrong_desk"]),
        "unrelated key and the desk's": (
            encrypt(b"\0" * PLAIN, [recipient, X25519Identity.generate().recipient()]),
            CMSG["wrong_desk"]),
        "not age at all": (text * 60, CMSG["not_age"]),
        "generated share, cut short": (
            _header(crypto_scalarmult_base(os.urandom(32))) + _payload()[:-5],
            CMSG["truncated"]),
    }


def _honest(url: str, recipient: Any) -> int:
    with httpx.Client(base_url=url, timeout=120) as client:
        body = b'{"format":"guwah-testimony/1","testimony":"honest"}'
        message = upload(client, encrypt(body + b" " * (padme(len(body)) - len(body)),
                                         [recipient]))
        attachment = os.urandom(300_000)
        f = upload(client, encrypt(attachment + bytes(padme(len(attachment)) - len(attachment)),
                                   [recipient]), role="file-1")
        return commit(client, derive_mailbox(new_codename(), "X25519"), message, [f]).status_code


def _attack(url: str, data: bytes) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=120) as client:
        return commit(client, derive_mailbox(new_codename(), "X25519"), upload(client, data), [])


def test_junk_and_chosen_plaintext_are_refused_while_honest_commits_succeed(guwah_server):
    recipient = guwah_server.identity.recipient()
    attacks = _attacks(recipient)
    with ThreadPoolExecutor(8) as pool:
        honest = [pool.submit(_honest, guwah_server.url, recipient) for _ in range(4)]
        refused = {name: pool.submit(_attack, guwah_server.url, data)
                   for name, (data, _sentence) in attacks.items()}
        assert [h.result() for h in honest] == [201] * 4
        for name, future in refused.items():
            r = future.result()
            assert r.status_code == 422, (name, r.text)
            assert r.json()["error"] == attacks[name][1], name
    assert MSG["not_ciphertext"] == CMSG["not_ciphertext"]
    with Store(load_settings(guwah_server.data_dir,
                             database_url=guwah_server.database_url)) as store:
        assert len(store.list_submissions()) == 4  # the honest ones, nothing else
        assert store.pending_bytes() == 0  # every refused upload was removed


@pytest.mark.browser
def test_a_browser_commit_succeeds_while_junk_is_refused(guwah_server, tmp_path):
    """The honest witness here is Chromium with JavaScript on (the real submit.js and its
    npm age-encryption), sending while the junk and chosen plaintext arrive."""
    from tests.test_browser_json import Recorder, submit_in_browser

    attacks = _attacks(guwah_server.identity.recipient())
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(os.urandom(300_000))
    with ThreadPoolExecutor(4) as pool:
        refused = [pool.submit(_attack, guwah_server.url, data)
                   for data, _sentence in attacks.values() for _ in range(2)]
        out = submit_in_browser(guwah_server, [(photo, photo.read_bytes())], "hostile-junk",
                                Recorder())
        assert [f.result().status_code for f in refused] == [422] * len(refused)
    assert len(out["codename"].split()) == 8
    with Store(load_settings(guwah_server.data_dir,
                             database_url=guwah_server.database_url)) as store:
        assert len(store.list_submissions()) == 1
        assert store.pending_bytes() == 0
