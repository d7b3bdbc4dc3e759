"""The built bundles, in real Chromium, under the site's strict CSP.

- static/js/mailbox.js derives exactly the shared vectors (tests/vectors/*.json), which the
  Python side checks too, and opens a reply that Python encrypted to the mailbox;
- static/js/worker.js (driven through submit.js's encryptInWorker) streams a Blob through
  age with Padmé padding and bounded chunks in flight, and Python's app.crypto opens it.

Pages are served from 127.0.0.1 by a thread; nothing else is contacted.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from app.crypto import (
    HybridIdentity,
    X25519Identity,
    codename,
    decrypt,
    encrypt,
    padme,
    parse_recipient,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "app" / "web" / "static" / "js"
VECTORS = json.loads((ROOT / "tests" / "vectors" / "mailbox.json").read_text("utf-8"))
NORMALIZATION = json.loads(
    (ROOT / "tests" / "vectors" / "codename-normalization.json").read_text("utf-8")
)
# written by the Python owner of the format (tests/make_codename_vectors.py)
FORMAT = json.loads((ROOT / "tests" / "vectors" / "codename-format.json").read_text("utf-8"))
WORDS = (ROOT / "app" / "crypto" / "wordlist.txt").read_text("ascii").split()
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The witness site's policy (app/web/security.py) plus connect-src 'self' for chunk uploads.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
INDEX = b"""<!doctype html><html><head><meta charset="utf-8"><title>t</title>
<script type="module" src="mailbox.js"></script></head><body>ok</body></html>
"""


class Handler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for name in ("mailbox.js", "submit.js", "worker.js"):
        if not (STATIC / name).is_file():
            pytest.fail(f"{STATIC / name} is missing: run npm ci && npm run build")
    root = tmp_path_factory.mktemp("site")
    for built in STATIC.glob("*.js"):  # the pages' scripts import shared modules (lib-*.js)
        shutil.copy(built, root / built.name)
    (root / "index.html").write_bytes(INDEX)
    (root / "favicon.ico").write_bytes(b"")  # the browser asks for it; a 404 logs an error
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        thread.join()


@pytest.fixture(scope="module")
def page(site: str) -> Iterator[Page]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page()
            errors: list[str] = []
            pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.set_default_timeout(120_000)
            pg.goto(site + "index.html")
            pg.evaluate("() => import('./mailbox.js')")
            yield pg
            assert errors == [], f"errors in the page (CSP?): {errors}"
        finally:
            browser.close()


def test_vectors_in_browser(page: Page) -> None:
    got = page.evaluate(
        """async (vectors) => {
            const m = await import('./mailbox.js');
            const out = [];
            for (const v of vectors) {
                const r = await m.deriveMailbox(v.codename, v.kind);
                out.push({normalized: r.codename, token_hash: r.tokenHash,
                          reply_recipient: r.replyRecipient, reply_identity: r.replyIdentity});
            }
            return out;
        }""",
        [{"codename": v["codename"], "kind": v["kind"]} for v in VECTORS],
    )
    for v, g in zip(VECTORS, got, strict=True):
        assert g["normalized"] == v["normalized"]
        assert g["token_hash"] == v["token_hash"]
        assert g["reply_recipient"] == v["reply_recipient"]
        assert g["reply_identity"] == v["reply_identity"]


def test_normalization_in_browser(page: Page) -> None:
    got = page.evaluate(
        """async (cases) => {
            const m = await import('./mailbox.js');
            return cases.map((input) => {
                try { return {normalized: m.normalizeCodename(input), error: null}; }
                catch (e) { return {normalized: null, error: e.code, name: e.name,
                                    message: e.message}; }
            });
        }""",
        [c["input"] for c in NORMALIZATION],
    )
    for case, g in zip(NORMALIZATION, got, strict=True):
        assert g["normalized"] == case["normalized"], case["input"]
        assert g["error"] == case["error"], case["input"]
        if g["error"]:
            assert g["name"] == "CodenameError" and g["message"].endswith(".")


def test_codename_format_in_browser(page: Page) -> None:
    """Check word and numeric form: the browser reads every Python vector the same way."""
    got = page.evaluate(
        """async (cases) => {
            const m = await import('./mailbox.js');
            return cases.map((input) => {
                try {
                    return {kdf_input: m.normalizeCodename(input), words: m.codenameWords(input),
                            numbers: m.codenameNumbers(input), error: null};
                } catch (e) {
                    return {kdf_input: null, words: null, numbers: null, error: e.code};
                }
            });
        }""",
        [c["input"] for c in FORMAT],
    )
    for case, g in zip(FORMAT, got, strict=True):
        want = {k: case[k] for k in ("kdf_input", "words", "numbers", "error")}
        assert g == want, case["input"]


def test_new_codenames_in_browser(page: Page) -> None:
    codes = page.evaluate(
        """async () => {
            const m = await import('./mailbox.js');
            return Array.from({length: 200}, () => m.newCodename());
        }"""
    )
    words = set(WORDS)
    for code in codes:
        parts = code.split(" ")
        assert len(parts) == 8 and all(w in words for w in parts)
        assert codename.parse(code).as_words == code  # the check word is right
    assert len(set(codes)) == len(codes)
    # 1400 draws from 7776 words: no word should dominate (a broken sampler repeats a lot).
    drawn = [w for c in codes for w in c.split(" ")[:7]]
    assert max(drawn.count(w) for w in set(drawn)) < 8


@pytest.mark.parametrize("kind", ["X25519", "mlkem768x25519"])
def test_browser_opens_a_python_reply(page: Page, kind: str) -> None:
    """The returning witness's path: the desk replies with Python, the browser reads it."""
    v = next(v for v in VECTORS if v["kind"] == kind)
    desk = X25519Identity.generate() if kind == "X25519" else HybridIdentity.generate()
    reply = "Thank you. We have read it. — the desk".encode()
    ct = encrypt(reply, [parse_recipient(v["reply_recipient"]), desk.recipient()])
    got = page.evaluate(
        """async ([codename, kind, b64]) => {
            const m = await import('./mailbox.js');
            const box = await m.deriveMailbox(codename, kind);
            const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            return new TextDecoder().decode(await m.decryptReply(data, box.replyIdentity));
        }""",
        [v["codename"], kind, base64.b64encode(ct).decode()],
    )
    assert got.encode() == reply
    armored = encrypt(reply, [parse_recipient(v["reply_recipient"])], armor=True).decode()
    got = page.evaluate(
        """async ([codename, kind, text]) => {
            const m = await import('./mailbox.js');
            const box = await m.deriveMailbox(codename, kind);
            return new TextDecoder().decode(await m.decryptReply(text, box.replyIdentity));
        }""",
        [v["codename"], kind, armored],
    )
    assert got.encode() == reply


def expected_plaintext(size: int) -> bytes:
    """Same bytes as the page's generator below: byte i = (i*131 + (i>>8)) mod 256."""
    return bytes((i * 131 + (i >> 8)) & 0xFF for i in range(size))


WORKER_JS = """async ([size, recipients, framing, chunkSize, window, delayMs]) => {
    const { encryptInWorker, WORKER_URL } = await import('./submit.js');
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++) bytes[i] = (i * 131 + (i >> 8)) & 255;
    const worker = new Worker(WORKER_URL);
    const chunks = [];
    let inFlight = 0, maxInFlight = 0;
    try {
        const done = await encryptInWorker(worker, new Blob([bytes]), recipients, {
            framing, chunkSize, window,
            onChunk: async (data, seq) => {
                inFlight++; maxInFlight = Math.max(maxInFlight, inFlight);
                chunks.push({seq, data});
                await new Promise((r) => setTimeout(r, delayMs));  // a slow upload
                inFlight--;
            },
        });
        let all = '';
        const parts = chunks.map((c) => c.data);
        const total = parts.reduce((n, p) => n + p.length, 0);
        const joined = new Uint8Array(total);
        let o = 0;
        for (const p of parts) { joined.set(p, o); o += p.length; }
        for (let i = 0; i < joined.length; i += 32768) {
            all += String.fromCharCode(...joined.subarray(i, i + 32768));
        }
        return { done, b64: btoa(all), seqs: chunks.map((c) => c.seq),
                 sizes: parts.map((p) => p.length), maxInFlight };
    } finally {
        worker.terminate();
    }
}"""


@pytest.mark.parametrize(
    ("kind", "size", "framing"),
    [
        ("X25519", 0, "testimony"),
        ("X25519", 65537, "attachment"),
        ("mlkem768x25519", 300_001, "attachment"),
        ("mlkem768x25519", 1000, "testimony"),
    ],
)
def test_worker_stream_encrypts_for_python(page: Page, kind: str, size: int, framing: str) -> None:
    desk = X25519Identity.generate() if kind == "X25519" else HybridIdentity.generate()
    other = X25519Identity.generate() if kind == "X25519" else HybridIdentity.generate()
    recipients = [str(desk.recipient()), str(other.recipient())]
    r = page.evaluate(WORKER_JS, [size, recipients, framing, 65536, 2, 5])
    ct = base64.b64decode(r["b64"])
    plain = expected_plaintext(size)
    done = r["done"]
    assert done["plaintextSize"] == size
    assert done["paddedSize"] == padme(size)
    assert done["ciphertextSize"] == len(ct)
    assert done["sha256"] == hashlib.sha256(plain).hexdigest()
    assert r["seqs"] == list(range(done["chunks"]))
    assert all(n >= 65536 for n in r["sizes"][:-1])  # chunks are batched to chunkSize
    for identity in (desk, other):
        padded = decrypt(ct, [identity])
        assert len(padded) == padme(size)
        assert padded[:size] == plain
        fill = b" " if framing == "testimony" else b"\0"
        assert padded[size:] == fill * (padme(size) - size)


HASH_JS = """async ([sizes, recipient]) => {
    const { encryptInWorker, WORKER_URL } = await import('./submit.js');
    const worker = new Worker(WORKER_URL);
    const out = [];
    try {
        for (const size of sizes) {
            const bytes = new Uint8Array(size);
            for (let i = 0; i < size; i++) bytes[i] = (i * 131 + (i >> 8)) & 255;
            const done = await encryptInWorker(worker, new Blob([bytes]), [recipient], {
                framing: 'attachment', jsHash: true, onChunk: async () => undefined,
            });
            out.push([done.sha256, done.hashedBy]);
        }
        return out;
    } finally {
        worker.terminate();
    }
}"""


def test_worker_hashes_big_files_on_another_core(page: Page) -> None:
    """Above the WebCrypto limit the SHA-256 comes from hash-worker.js, fed 1 MiB pooled
    pieces: every piece boundary (empty, exact, one over, several) gives the true digest,
    for files one after another in the same worker."""
    mib = 1 << 20
    sizes = [0, 1, mib - 1, mib, mib + 1, 5 * mib + 12345]
    recipient = str(X25519Identity.generate().recipient())
    got = page.evaluate(HASH_JS, [sizes, recipient])
    assert got == [[hashlib.sha256(expected_plaintext(n)).hexdigest(), "hash-worker"] for n in sizes]


def test_worker_respects_the_window(page: Page) -> None:
    """With window 1 the worker never runs ahead of a slow upload."""
    identity = X25519Identity.generate()
    r = page.evaluate(WORKER_JS, [600_000, [str(identity.recipient())], "attachment", 65536, 1, 20])
    assert r["maxInFlight"] == 1
    assert len(r["sizes"]) >= 9
    assert decrypt(base64.b64decode(r["b64"]), [identity])[:600_000] == expected_plaintext(600_000)


def test_worker_reports_bad_recipient(page: Page) -> None:
    message = page.evaluate(
        """async () => {
            const { encryptInWorker, WORKER_URL } = await import('./submit.js');
            const worker = new Worker(WORKER_URL);
            try {
                await encryptInWorker(worker, new Blob(['x']), ['age1notarecipient']);
                return 'no error';
            } catch (e) { return e.message; } finally { worker.terminate(); }
        }"""
    )
    assert message != "no error" and message
