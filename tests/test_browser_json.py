"""JavaScript on: the witness's browser encrypts everything, uploads with tus, commits.

Real `guwah serve`, real Debian Chromium (Playwright), real age CLI, real guwah-editor.
Every request body the page sends is recorded (route interception) and searched for the
plaintext canary, plain and as hex and base64. Then what the server stored is decrypted with
app.crypto and `/usr/bin/age -d -i` (X25519 desk) or `guwah-editor decrypt` (hybrid desk)
and compared byte for byte (after removing the Padmé padding). Resume: PATCH requests are
cut mid-upload; the submission completes and the server holds exactly the ciphertext (no
chunk stored twice). Runs on SQLite, and on PostgreSQL when GUWAH_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import GuwahServer, restart_guwah_server, run_guwah_server
from playwright.sync_api import Route, sync_playwright

from app.crypto import decrypt, padme
from app.settings import load_settings
from app.store import Store
from tests.screenshots import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.database, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CANARY = b"CANARY-7f3a9c1e-the-soldiers-came-at-dawn"
MiB = 1024 * 1024


def canary_forms() -> list[bytes]:
    """The canary as it could leak: raw, hex (both cases), base64 at every alignment."""
    forms = [CANARY, CANARY.hex().encode(), CANARY.hex().upper().encode()]
    for shift in range(3):
        b64 = base64.b64encode(b"\x00" * shift + CANARY)
        forms.append(b64[4 * ((shift + 2) // 3) + 4 : -4])  # the stable middle part
        b64u = base64.urlsafe_b64encode(b"\x00" * shift + CANARY)
        forms.append(b64u[4 * ((shift + 2) // 3) + 4 : -4])
    forms.append(json.dumps(CANARY.decode())[1:-1].encode())
    return forms


def make_files(folder: Path, big: int) -> list[tuple[Path, bytes]]:
    folder.mkdir(exist_ok=True)
    rnd = os.urandom(big)
    big_data = rnd[: big // 2] + CANARY + rnd[big // 2 :]
    files = [
        ("notes.txt", b"Names I will not forget.\n" + CANARY + b"\n"),
        ("photo.jpg", b"\xff\xd8\xff\xe0" + os.urandom(300_000) + CANARY + b"\xff\xd9"),
        ("video.bin", big_data),
    ]
    out = []
    for name, data in files:
        path = folder / name
        path.write_bytes(data)
        out.append((path, data))
    return out


class Recorder:
    """Records every request the page sends (method, url, body) and can cut PATCHes, or
    call ``on_patch(n)`` before the n-th PATCH goes out (e.g. to restart the server)."""

    def __init__(self, cut_every: int = 0, cuts: int = 0, on_patch: Any = None) -> None:
        self.on_patch = on_patch
        self.requests: list[tuple[str, str, bytes | None]] = []
        self.headers: list[str] = []
        self.cut_every = cut_every
        self.cuts_left = cuts
        self.patches = 0
        self.cut = 0
        self.patched_bytes = 0

    def handle(self, route: Route) -> None:
        req = route.request
        body = req.post_data_buffer
        self.requests.append((req.method, req.url, body))
        self.headers.append(json.dumps(req.headers))
        if req.method == "PATCH":
            self.patches += 1
            if self.on_patch is not None:
                self.on_patch(self.patches)
            if self.cut_every and self.cuts_left and self.patches % self.cut_every == 0:
                self.cuts_left -= 1
                self.cut += 1
                route.abort("connectionreset")
                return
            self.patched_bytes += len(body or b"")
        route.continue_()


def submit_in_browser(server: GuwahServer, files: list[tuple[Path, bytes]], name: str,
                      recorder: Recorder, *, jitless: bool = False,
                      desk: str | None = None,
                      allow_network_errors: bool = False,
                      expect_slow_warning: bool = False) -> dict[str, Any]:
    args = CHROMIUM_ARGS + (["--js-flags=--jitless"] if jitless else [])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.set_default_timeout(600_000)
            page.route("**/*", recorder.handle)
            page.goto(server.url + "/submit")
            page.wait_for_selector("#submit-form[data-enhanced='1']")
            if desk is not None:
                page.check(f"input[name=desk][value='{desk}']")
            page.fill("#testimony", "What I saw: " + CANARY.decode())
            page.fill("#where", "near the " + CANARY.decode())
            page.check("input[name=consent][value=yes]")
            page.set_input_files("#files", [str(f) for f, _ in files])
            screenshot(page, SHOTS / f"{name}-form.png")
            if expect_slow_warning:  # any speed counts as slow: the warning must appear
                page.eval_on_selector(
                    "#submit-form", "f => { f.dataset.slowSeconds = '0'; f.dataset.slowRate = '1e12'; }")
            page.check("#kept-codename")
            page.click("#submit-form button[type=submit]")
            if expect_slow_warning:
                page.wait_for_selector("#js-continue")
                warning = page.text_content(".js-warning")
                # "about 1 minute" / "about 3 minutes": the plural form of the page's catalog
                assert re.search(r"about \u2068?[1-9][0-9]*\u2069? minutes?\b", warning), warning
                screenshot(page, SHOTS / f"{name}-slow-warning.png")
                page.click("#js-continue")
            page.wait_for_function(
                "() => { const c = document.querySelector('#codename');"
                " return (c && c.textContent.trim().split(' ').length === 8)"
                " || document.querySelector('#js-status .error'); }"
            )
            screenshot(page, SHOTS / f"{name}-receipt.png")
            error = page.text_content("#js-status .error") if page.query_selector(
                "#js-status .error") else None
            assert error is None, error
            out = {
                "codename": page.text_content("#codename").strip(),
                "protection": page.text_content("#protection-used"),
                "fingerprints": page.eval_on_selector_all("ul.keys code",
                                                          "els => els.map(e => e.textContent)"),
                "storage": page.evaluate(
                    "async () => ({local: localStorage.length, session: sessionStorage.length,"
                    " cookie: document.cookie,"
                    " idb: indexedDB.databases ? (await indexedDB.databases()).length : 0})"
                ),
            }
            # "Leave quickly" clears what the page holds and shows the blank page
            page.click("a.leave")
            page.wait_for_url("**/leave")
            # the cut requests themselves are logged by the browser; nothing else may be
            cut = recorder.cut or allow_network_errors
            errors = [e for e in errors if not (cut and "net::ERR_CONNECTION" in e)]
            assert errors == [], errors
            return out
        finally:
            browser.close()


def check_no_plaintext(recorder: Recorder) -> None:
    forms = canary_forms()
    sent = 0
    for method, url, body in recorder.requests:
        assert CANARY.decode() not in url
        if method == "POST" and "/api/uploads" in url:
            assert not body  # tus creation: headers only (desk and role, nothing else)
        elif method in ("POST", "PATCH", "PUT"):
            assert body is not None, f"{method} {url}: body not recorded"
            sent += len(body)
            for form in forms:
                assert form not in body, f"plaintext canary in a {method} body ({url})"
    assert sent > 0
    for headers in recorder.headers:
        for form in forms:
            assert form.decode() not in headers


def stored(server: GuwahServer) -> tuple[Store, Any]:
    settings = load_settings(server.data_dir, database_url=server.database_url)
    st = Store(settings)
    subs = st.list_submissions()
    assert len(subs) == 1
    return st, subs[0]


def check_stored(server: GuwahServer, files: list[tuple[Path, bytes]], tmp: Path,
                 identity_files: list[Path] | None = None, editor: Any = None) -> None:
    st, sub = stored(server)
    try:
        assert sub.reply_recipient.startswith("age1")
        blobs: dict[str, bytes] = {}
        for f in sub.files:
            with st.open_blob_for_read(sub.id, f.role) as fh:
                data = fh.read()
            assert len(data) == f.size and hashlib.sha256(data).hexdigest() == f.sha256
            blobs[f.role] = data
        assert st.pending_bytes() == 0  # every upload adopted, nothing left behind
    finally:
        st.close()
    assert set(blobs) == {"message"} | {f"file-{i}" for i in range(1, len(files) + 1)}
    plain = decrypt_all(blobs, tmp, identity_files, editor, server)
    doc_bytes = plain["message"]
    assert len(doc_bytes) == padme(len(doc_bytes.rstrip(b" ")))  # padded with spaces
    doc = json.loads(doc_bytes)
    assert doc["format"] == "guwah-testimony/1"
    assert doc["protection"] == "browser-encrypted"
    assert CANARY.decode() in doc["testimony"]
    assert doc["answers"]["consent"] == "yes"
    assert doc["reply_recipient"] == sub.reply_recipient
    assert doc["parent_id"] is None
    for entry, (path, data) in zip(doc["files"], files, strict=True):
        assert entry["name"] == path.name
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        got = plain[entry["role"]]
        if editor is not None:  # guwah-editor, message.age beside: the witness's exact file
            assert got == data
            continue
        assert len(got) == padme(len(data))
        assert got[: len(data)] == data  # byte for byte
        assert got[len(data) :] == bytes(len(got) - len(data))  # zero padding


def decrypt_all(blobs: dict[str, bytes], tmp: Path, identity_files: list[Path] | None,
                editor: Any, server: GuwahServer) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    folder = tmp / "ct"
    folder.mkdir(exist_ok=True)
    for role, data in blobs.items():
        (folder / f"{role}.age").write_bytes(data)
    if editor is None:
        for role, data in blobs.items():
            via_python = decrypt(data, [server.identity])
            via_cli = subprocess.run(
                ["/usr/bin/age", "-d", "-i", str(server.identity_file), str(folder / f"{role}.age")],
                check=True, capture_output=True,
            ).stdout
            assert via_cli == via_python
            out[role] = via_cli
        return out
    ring, passfile = editor
    dest = tmp / "plain"
    subprocess.run(
        [str(Path(sys.executable).with_name("guwah-editor")), "decrypt", "--out", str(dest),
         "--keyring", str(ring), "--passphrase-file", str(passfile),
         *[str(folder / f"{r}.age") for r in blobs]],
        check=True, capture_output=True,
    )
    for role in blobs:
        candidates = [p for p in dest.iterdir() if p.name.startswith(role)]
        assert len(candidates) == 1, list(dest.iterdir())
        out[role] = candidates[0].read_bytes()
    return out


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[GuwahServer]:
    with run_guwah_server(tmp_path, database_url) as srv:
        yield srv


def test_js_on_text_and_three_files_no_plaintext_leaves(server, tmp_path):
    files = make_files(tmp_path / "in", 21 * MiB)
    rec = Recorder()
    out = submit_in_browser(server, files, "js-on", rec)
    assert out["storage"] == {"local": 0, "session": 0, "cookie": "", "idb": 0}
    assert "Your browser encrypted everything before it left this device" in out["protection"]
    assert len(out["fingerprints"]) == 1
    check_no_plaintext(rec)
    check_stored(server, files, tmp_path)
    st, sub = stored(server)
    st.close()
    # no resend: the bytes PATCHed are exactly the ciphertext stored
    assert rec.patched_bytes == sum(f.size for f in sub.files)
    logs = server.stdout.read_text() + server.stderr.read_text()
    assert CANARY.decode() not in logs
    assert list(server.tmpdir.iterdir()) == []  # nothing spooled to TMPDIR
    for path in server.data_dir.rglob("*"):  # nothing readable at rest (ciphertext only)
        if path.is_file() and path.stat().st_size < 64 * MiB:
            assert CANARY not in path.read_bytes(), path


def test_resume_after_cut_connections(server, tmp_path):
    files = make_files(tmp_path / "in", 21 * MiB)
    # six PATCHes when nothing is cut (8 MiB each: three for the video, one per other file
    # and the testimony); cutting every second attempt cuts four and retries them all
    rec = Recorder(cut_every=2, cuts=4)
    submit_in_browser(server, files, "js-on-resume", rec)
    assert rec.cut == 4
    check_no_plaintext(rec)
    check_stored(server, files, tmp_path)
    st, sub = stored(server)
    st.close()
    # the cut requests never reached the server; what did is exactly the ciphertext
    assert rec.patched_bytes == sum(f.size for f in sub.files)


def test_resume_across_a_server_restart(restartable_server, tmp_path):
    """The server goes down mid-upload (the PATCH in hand meets a closed port) and comes back
    a few seconds later: the page re-syncs with HEAD and finishes; acknowledged bytes
    survived the restart (start-up cleanup keeps live uploads)."""
    server = restartable_server
    files = make_files(tmp_path / "in", 21 * MiB)
    restarted: list[int] = []

    def restart(n: int) -> None:
        if n == 5 and not restarted:
            restarted.append(n)
            threading.Thread(target=restart_guwah_server, args=(server,),
                             kwargs={"down_seconds": 2.0}).start()
            time.sleep(1.0)  # the request goes out while the server is down

    rec = Recorder(on_patch=restart)
    submit_in_browser(server, files, "js-on-restart", rec, allow_network_errors=True)
    assert restarted == [5]
    check_no_plaintext(rec)
    check_stored(server, files, tmp_path)


def test_jitless_small_file_with_resume(server, tmp_path):
    files = make_files(tmp_path / "in", 2 * MiB)
    rec = Recorder(cut_every=2, cuts=1)
    submit_in_browser(server, files, "jitless", rec, jitless=True)
    check_no_plaintext(rec)
    check_stored(server, files, tmp_path)


def test_hybrid_desk_decrypts_with_guwah_editor(server, tmp_path):
    """A post-quantum desk: stanzas mlkem768x25519; the editor tool opens everything."""
    passfile = tmp_path / "pass"
    passfile.write_text("correct horse battery staple for tests\n")
    ring = tmp_path / "ring"
    editor = str(Path(sys.executable).with_name("guwah-editor"))
    subprocess.run([editor, "keygen", "--name", "PQ desk", "--keyring", str(ring),
                    "--passphrase-file", str(passfile), "--work-factor", "10"],
                   check=True, capture_output=True)
    pub = dict(
        line.split(": ", 1) for line in (ring / "editor.pub").read_text().splitlines()
        if ": " in line and not line.startswith("#")
    )
    settings = load_settings(server.data_dir, database_url=server.database_url)
    with Store(settings) as st:
        st.add_desk("pq", "Post-quantum desk")
        st.add_recipient("pq", "PQ editor", pub["age-recipient"], pub["ed25519"],
                         pub["fingerprint"])
    files = make_files(tmp_path / "in", 3 * MiB)
    rec = Recorder()
    out = submit_in_browser(server, files, "hybrid", rec, desk="pq")
    assert out["fingerprints"] == [pub["fingerprint"]]
    check_no_plaintext(rec)
    check_stored(server, files, tmp_path, editor=(ring, passfile))
    st, sub = stored(server)
    st.close()
    assert sub.desk == "pq" and sub.reply_recipient.startswith("age1pq1")


def test_slow_browser_is_warned_before_a_large_upload(server, tmp_path):
    """The page measures a small encryption first and, when the estimate is long, asks
    before it starts (threshold lowered through the form's data-slow-seconds)."""
    files = make_files(tmp_path / "in", 5 * MiB)
    rec = Recorder()
    submit_in_browser(server, files, "slow-warning", rec, expect_slow_warning=True)
    check_no_plaintext(rec)
    check_stored(server, files, tmp_path)


def test_js_off_form_still_posts_plainly(server):
    """The script only enhances: with JavaScript disabled the page is the plain form."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(java_script_enabled=False)
            page = ctx.new_page()
            page.goto(server.url + "/submit")
            assert page.get_attribute("#submit-form", "data-enhanced") is None
            assert page.get_attribute("#submit-form", "action").endswith("/submit")
        finally:
            browser.close()


if shutil.which("age") is None:  # pragma: no cover - the CI image has Debian's age
    pytest.skip("the age CLI is missing", allow_module_level=True)
