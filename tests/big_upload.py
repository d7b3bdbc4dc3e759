"""Drive one large JavaScript-on submission through Debian Chromium and measure it.

Shared by bench/bench_big_upload.py (4 GiB, prints figures) and
tests/test_browser_bigfile.py (256 MiB, fails over the memory budget). Chromium is driven
over its DevTools pipe without the Network domain (PipeBrowser says why). What is measured:

- wall time from pressing Send to the receipt, and the page's own performance marks;
- the resident memory (RSS) of every Chromium process, sampled with psutil every 100 ms
  over the process tree this Python process started: the growth of each process over its
  RSS just before Send (a process that appears later counts with its whole RSS);
- the peak RSS of the ``guwah serve`` process;
- then the stored ciphertext is decrypted with Debian's ``age`` CLI (X25519 desk key) and
  streamed through SHA-256: the first ``size`` bytes must hash to the original, the rest
  (Padmé padding) must be zeros and the total must be exactly ``padme(size)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from app.crypto import padme
from app.settings import load_settings
from app.store import Store

MiB = 1 << 20
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def make_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their hex SHA-256."""
    h = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MiB))
            h.update(block)
            out.write(block)
            left -= len(block)
        out.flush()
        os.fsync(out.fileno())  # on disk now: its write-back must not slow the upload measured
    return h.hexdigest()


class MemorySampler(threading.Thread):
    """Peak RSS per Chromium process (growth over a baseline) and of the server process."""

    def __init__(self, server_pid: int, period: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.server = psutil.Process(server_pid)
        self.period = period
        self.baseline: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.server_peak = 0
        self.halt = threading.Event()

    @staticmethod
    def chromium() -> dict[int, tuple[str, int]]:
        """{pid: (type, rss)} for every Chromium process below this Python process."""
        out: dict[int, tuple[str, int]] = {}
        for child in psutil.Process().children(recursive=True):
            try:
                if "chrom" not in child.name():
                    continue
                kind = next((a[7:] for a in child.cmdline() if a.startswith("--type=")), "browser")
                out[child.pid] = (kind, child.memory_info().rss)
            except psutil.Error:
                continue
        return out

    def mark_baseline(self) -> None:
        """Call just before Send: every process's RSS now is what growth is measured from."""
        for pid, (kind, rss) in self.chromium().items():
            self.baseline[pid] = rss
            self.names[pid] = kind

    def run(self) -> None:
        while not self.halt.is_set():
            for pid, (kind, rss) in self.chromium().items():
                self.names.setdefault(pid, kind)
                self.peak[pid] = max(self.peak.get(pid, 0), rss)
            try:
                self.server_peak = max(self.server_peak, self.server.memory_info().rss)
            except psutil.Error:
                pass
            self.halt.wait(self.period)

    def growth(self) -> dict[str, int]:
        """{"<type> <pid>": bytes grown} for every Chromium process seen."""
        return {
            f"{self.names[pid]} {pid}": peak - self.baseline.get(pid, 0)
            for pid, peak in self.peak.items()
        }


class PipeBrowser:
    """Debian Chromium driven over ``--remote-debugging-pipe`` with plain CDP commands.

    Why not Playwright here (the other browser tests use it): Playwright enables the DevTools
    Network domain on every page and worker, and Chromium then keeps copies of request
    bodies for the inspector. Measured with 512 MiB: +343 MiB in the renderer and +93 MiB in
    the browser process under Playwright, +125 MiB and +6 MiB without, and uploads several
    times slower. A witness's browser has no inspector attached, so the memory budget is
    checked without one: only Page, Runtime and DOM are used (DOM.setFileInputFiles picks
    the file, as a witness would).
    """

    def __init__(self, args: list[str], profile: Path) -> None:
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()

        def child_fds() -> None:  # Chromium reads commands on fd 3, answers on fd 4
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            while a < 5 or b < 5:
                a, b = (os.dup(a) if a < 5 else a), (os.dup(b) if b < 5 else b)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            ["/usr/bin/chromium", *args, "--remote-debugging-pipe", f"--user-data-dir={profile}",
             "about:blank"],
            preexec_fn=child_fds, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.out = os.fdopen(to_chrome_w, "wb", buffering=0)
        self.inp = os.fdopen(from_chrome_r, "rb", buffering=0)
        self.buf = b""
        self.next_id = 0
        self.session: str | None = None

    def _message(self) -> dict:
        while b"\0" not in self.buf:
            data = self.inp.read(65536)
            if not data:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self.buf += data
        raw, self.buf = self.buf.split(b"\0", 1)
        return dict(json.loads(raw))

    def send(self, method: str, params: dict | None = None, *, browser: bool = False) -> dict:
        """One command; the page's session unless ``browser``. Events are skipped."""
        self.next_id += 1
        msg: dict = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session and not browser:
            msg["sessionId"] = self.session
        self.out.write(json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._message()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply["result"])

    def attach(self) -> None:
        for _ in range(200):
            pages = [t for t in self.send("Target.getTargets", browser=True)["targetInfos"]
                     if t["type"] == "page"]
            if pages:
                break
            time.sleep(0.05)
        result = self.send("Target.attachToTarget",
                           {"targetId": pages[0]["targetId"], "flatten": True}, browser=True)
        self.session = result["sessionId"]

    def eval(self, expression: str) -> object:
        r = self.send("Runtime.evaluate",
                      {"expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"in the page: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float, period: float = 0.25) -> object:
        deadline = time.monotonic() + timeout_s
        while not (value := self.eval(expression)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true after {timeout_s} s: {expression}")
            time.sleep(period)
        return value

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.send("Browser.close", browser=True)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class UploadRun:
    """What one submission through the browser measured."""

    seconds: float
    growth: dict[str, int]
    server_peak: int
    marks: dict[str, float] = field(default_factory=dict)
    warning: str | None = None  # the slow-encryption question, if the page asked it

    @property
    def largest_growth(self) -> int:
        return max(self.growth.values(), default=0)


RECEIPT_OR_ERROR = (
    "(() => { const c = document.querySelector('#codename');"
    " if (c && c.textContent.trim().split(' ').length === 8) return 'receipt';"
    " if (document.querySelector('#js-status .error')) return 'error';"
    " if (document.querySelector('#js-continue')) return 'slow'; return ''; })()"
)
MEASURES = (
    "JSON.stringify(Object.fromEntries(performance.getEntriesByType('measure')"
    ".filter((m) => m.name.startsWith('guwah:file')).map((m) => [m.name, m.duration])))"
)


def submit_file(url: str, server_pid: int, path: Path, profile: Path, *, jitless: bool = False,
                timeout_s: float = 1800.0, form_data: dict[str, str] | None = None) -> UploadRun:
    """Send ``path`` with JavaScript on from the submit page; fail if the page refuses.
    ``form_data`` sets data-* attributes of the form first (e.g. slowSeconds)."""
    args = CHROMIUM_ARGS + (["--js-flags=--jitless"] if jitless else [])
    sampler = MemorySampler(server_pid)
    browser = PipeBrowser(args, profile)
    try:
        browser.attach()
        browser.send("Page.navigate", {"url": url + "/submit"})
        browser.wait_for("!!document.querySelector(\"#submit-form[data-enhanced='1']\")", 60)
        browser.eval("document.querySelector('#testimony').value = 'A long video of what I saw.';"
                     "document.querySelector('input[name=consent][value=yes]').checked = true")
        root = browser.send("DOM.getDocument")["root"]["nodeId"]
        node = browser.send("DOM.querySelector", {"nodeId": root, "selector": "#files"})["nodeId"]
        browser.send("DOM.setFileInputFiles", {"files": [str(path)], "nodeId": node})
        for key, value in (form_data or {}).items():
            browser.eval(f"document.querySelector('#submit-form').dataset[{json.dumps(key)}]"
                         f" = {json.dumps(value)}")
        time.sleep(1.0)  # let the page settle before the baseline
        sampler.mark_baseline()
        sampler.start()
        start = time.monotonic()
        browser.eval("document.querySelector('#kept-codename').checked = true")
        browser.eval("document.querySelector('#submit-form button[type=submit]').click()")
        warning = None
        while (state := browser.wait_for(RECEIPT_OR_ERROR, timeout_s, 0.5)) == "slow":
            warning = str(browser.eval("document.querySelector('.js-warning').textContent"))
            browser.eval("document.querySelector('#js-continue').click()")
        seconds = time.monotonic() - start
        if state == "error":
            text = browser.eval("document.querySelector('#js-status .error').textContent")
            raise AssertionError(f"the page refused: {text}")
        marks = json.loads(str(browser.eval(MEASURES)))
    finally:
        sampler.halt.set()
        browser.close()
    sampler.join()
    return UploadRun(seconds, sampler.growth(), sampler.server_peak, marks, warning)


def verify_stored(data_dir: Path, database_url: str, identity_file: Path, size: int,
                  sha256: str) -> int:
    """Decrypt the stored file with the age CLI; check hash and zero padding. Returns the
    ciphertext size."""
    settings = load_settings(data_dir, database_url=database_url)
    with Store(settings) as st:
        subs = st.list_submissions()
        assert len(subs) == 1, f"{len(subs)} submissions stored"
        sub = subs[0]
        entry = next(f for f in sub.files if f.role == "file-1")
        with st.open_blob_for_read(sub.id, "file-1") as blob:
            proc = subprocess.Popen(["/usr/bin/age", "-d", "-i", str(identity_file)],
                                    stdin=blob, stdout=subprocess.PIPE)
            assert proc.stdout is not None
            h = hashlib.sha256()
            seen = 0
            nonzero = False
            while block := proc.stdout.read(4 * MiB):
                keep = max(0, min(len(block), size - seen))
                h.update(block[:keep])
                nonzero = nonzero or block[keep:].count(0) != len(block) - keep
                seen += len(block)
            assert proc.wait() == 0, "age -d failed"
    assert seen == padme(size), f"decrypted {seen} bytes, expected padme({size}) = {padme(size)}"
    assert h.hexdigest() == sha256, "the decrypted file differs from the original"
    assert not nonzero, "the padding is not all zeros"
    return int(entry.size)
