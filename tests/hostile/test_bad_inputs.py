"""Small hostile inputs, each a 4xx (or a clear error) and never a 500 or a traceback.

Server inputs go to a real ``guwah serve`` over a socket, and an honest witness submitting
right after each still gets 200: a multipart boundary longer than the parser takes, JSON nested
30,000 deep on every JSON route, ids/roles/hashes/desks with a trailing newline (``^…$`` let
them through). Then the offline side: a bundle manifest nested too deep, megabytes of leading
whitespace before an age file (was quadratic), paths with ``[`` in the editor's output (rich
markup), and the threat model's scrypt parameters checked against the code.
"""

from __future__ import annotations

import base64
import io
import os
import re
import secrets
import time
from pathlib import Path

import httpx
import pytest
from roundtrip_helper import PASSPHRASE, make_keyring, recipient_of, run_editor

from app.bundles import BundleError
from app.bundles.bundle import parse_manifest, validate_outbox
from app.crypto import AgeError, X25519Identity, decrypt, encrypt, parse_recipient
from app.crypto.mailbox import KDF_PARAMS
from app.store import NotFound, StoreError
from app.web.errors import MSG

ROOT = Path(__file__).resolve().parents[2]


def _token(url: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', httpx.get(url + "/submit").text).group(1)


def _form(boundary: str, token: str, text: str) -> bytes:
    fields = [("csrf", token), ("desk", "default"), ("website", ""), ("testimony", text),
              ("kept_codename", "yes")]  # the codename box, ticked as a witness does
    return b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n{v}\r\n'.encode()
        for n, v in fields
    ) + f"--{boundary}--\r\n".encode()


def _post_form(url: str, path: str, boundary: str, body: bytes) -> httpx.Response:
    return httpx.post(url + path, content=body, timeout=60,
                      headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def honest_witness(url: str, boundary: str = "----honest" + "x" * 20) -> int:
    return _post_form(url, "/submit", boundary, _form(boundary, _token(url), "I saw it")).status_code


def _clear_refusal(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert "Traceback" not in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'none'")


# ------------------------------------------------------------------------- multipart boundary


@pytest.mark.parametrize("length", [257, 300, 4000])
def test_overlong_multipart_boundary_is_400_not_500(guwah_server, length):
    url = guwah_server.url
    boundary = "b" * length
    for path in ("/submit", "/mailbox/follow-up"):
        r = _post_form(url, path, boundary, _form(boundary, _token(url), "x"))
        _clear_refusal(r, 400)
        assert MSG["bad_form"] in r.text  # one clear sentence, not "something went wrong"
    # the longest boundary the parser takes still works, and honest witnesses are served
    assert honest_witness(url, "c" * 256) == 200
    assert honest_witness(url) == 200


# ------------------------------------------------------------------------- nested JSON


@pytest.mark.parametrize("route, doc", [
    ("/api/submissions", "[" * 30000),
    ("/api/submissions", '{"a":' * 30000),
    ("/api/submissions", "[" * 30000 + "]" * 30000),
    ("/api/mailbox", "[" * 1020),  # this route reads at most 1 KiB
    ("/api/mailbox", "[" * 30000),
])
def test_deeply_nested_json_is_a_4xx(guwah_server, route, doc):
    r = httpx.post(guwah_server.url + route, content=doc.encode(), timeout=60,
                   headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.json()["error"]
    assert honest_witness(guwah_server.url) == 200


def test_deeply_nested_bundle_manifest_is_a_bundle_error():
    for data in (b"[" * 30000, b'{"a":' * 30000):
        with pytest.raises(BundleError, match="not valid JSON"):
            parse_manifest(data)


# ------------------------------------------------------------------------- trailing newlines


def test_trailing_newline_is_refused_by_the_server(guwah_server):
    url = guwah_server.url
    meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}"
                    for k, v in (("desk", "default"), ("role", "message\n")))
    r = httpx.post(url + "/api/uploads", timeout=60, headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": "300", "Upload-Metadata": meta,
        "Guwah-Form-Token": _token(url)})
    assert r.status_code == 400, r.text
    r = httpx.head(url + "/api/uploads/" + secrets.token_urlsafe(16) + "%0A",
                   headers={"Tus-Resumable": "1.0.0"})
    assert r.status_code == 404
    body = {"csrf": _token(url), "desk": "default", "message_upload": secrets.token_urlsafe(16),
            "files": [], "token_hash": secrets.token_hex(32) + "\n",
            "reply_recipient": str(X25519Identity.generate().recipient())}
    r = httpx.post(url + "/api/submissions", json=body, timeout=60)
    assert r.status_code == 400 and r.json()["error"]
    r = httpx.post(url + "/api/mailbox", json={"token": secrets.token_hex(32) + "\n"})
    assert r.status_code == 400 and r.json()["error"]
    assert honest_witness(url) == 200


def test_trailing_newline_is_refused_by_the_store(store, desk):
    th = secrets.token_hex(32)
    reply = str(X25519Identity.generate().recipient())
    with pytest.raises(StoreError):
        store.add_desk("newsroom\n")
    with pytest.raises(StoreError):
        store.begin_submission(desk, th + "\n", reply)
    with store.begin_submission(desk, th, reply) as pending:
        with pytest.raises(StoreError):
            pending.open_blob("message\n")
    with pytest.raises(NotFound):
        store.submission(secrets.token_urlsafe(16) + "\n")
    assert not store.mailbox_exists(th + "\n")


def test_trailing_newline_is_refused_in_a_bundle_manifest():
    good = {"format": "guwah-outbox/1", "editor_key": base64.b64encode(os.urandom(32)).decode(),
            "desk": "default", "bundle_id": secrets.token_urlsafe(16), "replies": [],
            "done": [secrets.token_urlsafe(16)]}
    validate_outbox(good)  # the well-formed one passes
    for key, bad in (("desk", "default\n"), ("bundle_id", good["bundle_id"] + "\n"),
                     ("done", [good["done"][0] + "\n"])):
        with pytest.raises(BundleError):
            validate_outbox({**good, key: bad})


def test_no_anchored_pattern_left_for_match():
    """``^…$`` with re.match accepts a trailing newline: patterns live in app/protocol/ids.py, unanchored,
    and are used with fullmatch. No module may bring a ``$``-anchored pattern back."""
    offenders = []
    for path in (ROOT / "app").rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"""re\.(compile|match|search)\(\s*r?b?["']\^.*\$["']""", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert offenders == []


# ------------------------------------------------------------------------- scrypt in the docs


def test_threat_model_states_the_mailbox_kdf_the_code_uses():
    text = (ROOT / "docs" / "threat-model.md").read_text()
    stated = set(re.findall(r"scrypt N=2\^(\d+)", text))
    assert stated == {str(KDF_PARAMS["log_n"])}, stated
    formats = (ROOT / "docs" / "formats.md").read_text()
    assert f"N = 2^{KDF_PARAMS['log_n']}, r = {KDF_PARAMS['r']}, p = {KDF_PARAMS['p']}" in formats


# ------------------------------------------------------------------------- leading whitespace


def test_megabytes_of_leading_whitespace_take_no_time():
    identity = X25519Identity.generate()
    sink = io.BytesIO()
    armored = encrypt(b"testimony", [identity.recipient()], armor=True)
    cases = [
        (b" " * (8 << 20), None),  # nothing but spaces: not an age file
        (b"\n" * (8 << 20) + armored, b"testimony"),  # blank lines, then an armored file
        ((b" " * 1000 + b"\r\n") * 8000 + armored.replace(b"\n", b"\r\n"), b"testimony"),
    ]
    for data, plain in cases:
        start = time.monotonic()
        if plain is None:
            with pytest.raises(AgeError):
                decrypt(data, [identity])
        else:
            assert decrypt(data, [identity]) == plain
        assert time.monotonic() - start < 5, "leading whitespace is scanned more than once"
    del sink


def test_editor_decrypt_of_8_mib_of_spaces_is_quick(tmp_path):
    passfile = tmp_path / "pass"
    passfile.write_text(PASSPHRASE + "\n")
    keyring = make_keyring(tmp_path / "keyring", passfile)
    spaces = tmp_path / "spaces.age"
    spaces.write_bytes(b" " * (8 << 20))
    start = time.monotonic()
    proc = run_editor("decrypt", str(spaces), "--out", str(tmp_path / "out"), "--keyring",
                      str(keyring), "--passphrase-file", str(passfile), check=False)
    assert time.monotonic() - start < 30  # was 51 s; process start and the KDF included
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "not an age file" in proc.stderr


# ------------------------------------------------------------------------- "[" in paths


def test_brackets_in_paths_print_as_text(tmp_path):
    passfile = tmp_path / "pass"
    passfile.write_text(PASSPHRASE + "\n")
    keyring = tmp_path / "keys [/bold] [red]x"
    proc = run_editor("keygen", "--name", "Desk [/i]", "--keyring", str(keyring),
                      "--passphrase-file", str(passfile), "--work-factor", "10", "--x25519")
    assert "Traceback" not in proc.stderr and str(keyring) in proc.stdout
    recipient = parse_recipient(recipient_of(keyring))
    source = tmp_path / "evidence [" / "link] [bold].age"  # "[/link]" across the slash
    source.parent.mkdir()
    source.write_bytes(encrypt(b"photo", [recipient]))
    out = tmp_path / "out [x]"
    proc = run_editor("decrypt", str(source), "--out", str(out), "--keyring", str(keyring),
                      "--passphrase-file", str(passfile))
    assert "Traceback" not in proc.stderr and proc.stderr == ""
    assert str(source) in proc.stdout  # the path exactly as it is, brackets and all
    assert [p.read_bytes()[:5] for p in out.iterdir()] == [b"photo"]
    missing = tmp_path / "no [" / "such] file.age"
    proc = run_editor("decrypt", str(missing), "--out", str(out), "--keyring", str(keyring),
                      "--passphrase-file", str(passfile), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert str(missing) in proc.stderr
