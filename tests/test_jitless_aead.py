"""The worker's own ChaCha20-Poly1305 (app/web/js/chacha20poly1305.js, for engines without a JIT).

Checked against independent implementations: ``cryptography``'s ChaCha20-Poly1305 (OpenSSL)
byte for byte through node, and the shipped worker bundle run in Debian's Chromium with
``--js-flags=--jitless`` (Tor Browser "Safer"), every ciphertext opened by the ``age`` CLI.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from playwright.sync_api import Page, sync_playwright

from app.crypto import X25519Identity, padme

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "app" / "web" / "js" / "chacha20poly1305.js"
WORKER = ROOT / "app" / "web" / "static" / "js" / "worker.js"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--js-flags=--jitless",
]
NODE_SCRIPT = """
import { readFileSync } from "node:fs";
import { chacha20poly1305 } from %s;
const hex = (s) => Uint8Array.from(Buffer.from(s, "hex"));
const out = [];
for (const c of JSON.parse(readFileSync(0, "utf8"))) {
  const aead = chacha20poly1305(hex(c.key), hex(c.nonce), hex(c.aad));
  const ct = aead.encrypt(hex(c.pt).subarray(c.skip));
  const result = { ct: Buffer.from(ct).toString("hex"), tampered: "refused" };
  result.opened = Buffer.from(aead.decrypt(ct)).toString("hex");
  ct[c.flip %% ct.length] ^= 1;
  try { aead.decrypt(ct); result.tampered = "accepted"; } catch {}
  out.push(result);
}
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None or not (ROOT / "node_modules" / "@noble" / "ciphers").is_dir():
        pytest.fail("node and node_modules are needed: apt-get install nodejs npm; npm ci")
    return path


def test_matches_cryptography_byte_for_byte(node: str, tmp_path: Path) -> None:
    """Random keys, nonces, AAD and lengths around every block and chunk boundary, plaintext
    at odd offsets; every ciphertext equals OpenSSL's, opens, and refuses a flipped bit."""
    lengths = [0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000, 65535, 65536,
               65537]
    cases = []
    for i, n in enumerate(lengths * 3):
        key = bytes(32 * [0xFF]) if i % 7 == 6 else os.urandom(32)
        pt = bytes(n * [0xFF]) if i % 5 == 4 else os.urandom(n)
        cases.append({"key": key.hex(), "nonce": os.urandom(12).hex(),
                      "aad": os.urandom(i % 40).hex() if i % 3 == 2 else "",
                      "pt": (os.urandom(i % 4) + pt).hex(), "skip": i % 4, "flip": i * 7919})
    script = tmp_path / "probe.mjs"
    script.write_text(NODE_SCRIPT % json.dumps(MODULE.as_uri()))
    proc = subprocess.run([node, str(script)], input=json.dumps(cases).encode(),
                          capture_output=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr.decode()
    results = json.loads(proc.stdout)
    for case, got in zip(cases, results, strict=True):
        pt = bytes.fromhex(case["pt"])[case["skip"]:]
        aad = bytes.fromhex(case["aad"]) or None
        want = ChaCha20Poly1305(bytes.fromhex(case["key"])).encrypt(
            bytes.fromhex(case["nonce"]), pt, aad)
        assert got["ct"] == want.hex(), f"length {len(pt)}"
        assert got["opened"] == pt.hex()
        assert got["tampered"] == "refused"


INDEX = b"""<!doctype html><html><head><meta charset="utf-8"><title>t</title></head>
<body>t</body></html>"""

WORKER_JS = """async ([size, recipient]) => {
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++) bytes[i] = (i * 131 + (i >> 8)) & 255;
    const worker = new Worker("./worker.js");
    const parts = [];
    try {
        const done = await new Promise((resolve, reject) => {
            worker.onmessage = (ev) => {
                const m = ev.data;
                if (m.type === "chunk") {  // the ciphertext is the first m.length bytes
                    parts.push(new Uint8Array(m.data, 0, m.length).slice());
                    worker.postMessage({ type: "ack", id: m.id, seq: m.seq });
                } else if (m.type === "done") resolve(m);
                else if (m.type === "error") reject(new Error(m.message));
            };
            worker.postMessage({ type: "encrypt", id: 1, blob: new Blob([bytes]),
                                 recipients: [recipient], framing: "attachment",
                                 chunkSize: 65536 });
        });
        let all = "";
        for (const p of parts) {
            for (let i = 0; i < p.length; i += 32768) {
                all += String.fromCharCode(...p.subarray(i, i + 32768));
            }
        }
        return { done, b64: btoa(all), jitless: typeof WebAssembly === "undefined" };
    } finally {
        worker.terminate();
    }
}"""


@pytest.fixture(scope="module")
def jitless_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    if not WORKER.is_file():
        pytest.fail(f"{WORKER} is missing: run npm ci && npm run build")
    root = tmp_path_factory.mktemp("site")
    shutil.copy(WORKER, root / "worker.js")
    (root / "index.html").write_bytes(INDEX)
    (root / "favicon.ico").write_bytes(b"")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.set_default_timeout(300_000)
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
                yield page
            finally:
                browser.close()
    finally:
        server.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.browser
@pytest.mark.parametrize("size", [0, 1, 65536, 65537, 3 * 65536 + 11])
def test_jitless_worker_output_opens_with_age(jitless_page: Page, tmp_path: Path,
                                               size: int) -> None:
    age = shutil.which("age") or "/usr/bin/age"
    identity = X25519Identity.generate()
    got = jitless_page.evaluate(WORKER_JS, [size, str(identity.recipient())])
    assert got["jitless"], "Chromium ran with WebAssembly: not the jitless engine"
    key = tmp_path / "key.txt"
    key.write_text(f"{identity}\n")
    proc = subprocess.run([age, "-d", "-i", str(key)], input=base64.b64decode(got["b64"]),
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    plain = bytes((i * 131 + (i >> 8)) & 0xFF for i in range(size))
    assert proc.stdout == plain + bytes(padme(size) - size)
    assert got["done"]["ciphertextSize"] == len(base64.b64decode(got["b64"]))
