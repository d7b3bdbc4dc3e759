"""Witnesses reach Guwah through a real Tor onion service, on a private loopback Tor network.

The onion service runs the installer's own torrc (deploy/tor/torrc: SocksPort 0, proof-of-work
and introduction-point DoS defences, stream limits), with only its paths rewritten, in front
of ``guwah serve`` on a unix socket. A separate client tor gives Chromium a SOCKS port; every
page is fetched through the onion address. See tests/system/tornet.py for the network (which
can only ever talk to itself).

Chromium is told to treat the onion origin as a secure context, as Tor Browser does for every
.onion: WebCrypto (X25519) only exists in secure contexts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.roundtrip_helper import Chain
from tests.test_browser_json import CHROMIUM_ARGS, Recorder
from tests.test_chain import read_mailbox, submit

from .tornet import BRING_UP_SECONDS, RELAYS, TorNet, TorNetError, fetch_through, need_tools

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def service_options(hs_dir: Path, sock: Path) -> str:
    """deploy/tor/torrc with the onion service's folder and the app's socket moved here; its
    syslog line dropped (this network logs to files)."""
    text = (REPO / "deploy/tor/torrc").read_text()
    for old, new in (("HiddenServiceDir /var/lib/tor/guwah/", f"HiddenServiceDir {hs_dir}/"),
                     ("unix:/run/guwah/guwah.sock", f"unix:{sock}")):  # fmt: skip
        assert old in text, old
        text = text.replace(old, new)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("Log ")) + "\n"
    for option in ("SocksPort 0", "HiddenServicePoWDefensesEnabled 1",
                   "HiddenServiceEnableIntroDoSDefense 1"):  # fmt: skip
        assert option in text, option
    return text


def bring_up(base: Path, options: str, hs_dir: Path) -> tuple[TorNet, str, float]:
    """Authority, relays, client and onion service; bounded, retried once from scratch."""
    for attempt in (1, 2):
        start = time.monotonic()
        deadline = start + BRING_UP_SECONDS
        net = TorNet(base / f"attempt{attempt}")
        try:
            net.make_authority()
            for i in range(RELAYS):
                net.make_relay(i)
            net.make_client()
            net.make_service("service", options)
            net.start_routers(deadline)
            net.tors["client"].start()
            net.tors["service"].start()
            net.wait_bootstrapped("client", deadline)
            while not (hs_dir / "hostname").exists():
                if time.monotonic() > deadline:
                    raise TorNetError("the onion service wrote no hostname")
                time.sleep(0.2)
            address = (hs_dir / "hostname").read_text().strip()
            while fetch_through(net.socks_port, f"http://{address}/", 20) != 200:
                if time.monotonic() > deadline:
                    raise TorNetError("the onion address did not answer")
                time.sleep(1)
            return net, address, time.monotonic() - start
        except TorNetError:
            net.stop()
            if attempt == 2:
                raise
            for f in hs_dir.iterdir():  # a fresh address for the second attempt
                f.unlink()
    raise AssertionError("unreachable")


@contextmanager
def serve_on_socket(data_dir: Path, sock: Path, tmp: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``guwah serve`` on a unix socket, its own TMPDIR, logs in ``tmp``."""
    tmpdir = tmp / f"{sock.stem}-tmp"
    tmpdir.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
    env.update({"TMPDIR": str(tmpdir), "GUWAH_DATA_DIR": str(data_dir)})
    guwah = str(Path(sys.executable).with_name("guwah"))
    log_path = tmp / f"{sock.stem}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([guwah, "serve", "--data-dir", str(data_dir), "--socket",
                                 str(sock)], env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "guwah serve did not start"
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait(15)


def interrupted_js_on(browser: Browser, url: str, net: TorNet, text: str, attachment: Path,
                      restarts: list[float]) -> tuple[str, Recorder]:  # fmt: skip
    """A JS-on submission during which the client tor is killed mid-PATCH and started again;
    returns the codename and what the page sent."""

    def kill_mid_patch(n: int) -> None:
        if n == 3 and not restarts:
            def later() -> None:
                time.sleep(0.3)  # the PATCH is on its way through the circuit
                t = time.monotonic()
                net.restart_client()
                restarts.append(time.monotonic() - t)
            threading.Thread(target=later).start()

    rec = Recorder(on_patch=kill_mid_patch)
    context = browser.new_context(java_script_enabled=True, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(300_000)
    page.route("**/*", rec.handle)
    try:
        page.goto(url + "/submit")
        page.wait_for_selector("#submit-form[data-enhanced='1']")
        page.fill("#testimony", text)
        page.set_input_files("#files", [str(attachment)])
        page.check("#kept-codename")
        page.click("#submit-form button[type=submit]")
        page.wait_for_function(
            "() => { const c = document.querySelector('#codename');"
            " return (c && c.textContent.trim().split(/\\s+/).length === 8)"
            " || document.querySelector('#js-status .error'); }"
        )
        if page.query_selector("#js-status .error") is not None:
            client_log = "\n".join(net.tors["client"].log().splitlines()[-25:])
            raise AssertionError(f"page: {page.text_content('#js-status')}\nclient tor:\n{client_log}")
        return " ".join(page.text_content("#codename").split()), rec
    finally:
        context.close()


def check_resumed(rec: Recorder) -> None:
    """The upload went on from where the server was, not from the start: for each upload,
    the offsets of its PATCHes never go back, and after the cut the page asked the server
    (HEAD) where it stood before sending more."""
    offsets: dict[str, list[int]] = {}
    methods = []
    for (method, url, _), headers in zip(rec.requests, rec.headers, strict=True):
        methods.append(method)
        if method == "PATCH":
            offsets.setdefault(url, []).append(int(json.loads(headers)["upload-offset"]))
    assert offsets, methods
    for url, seen in offsets.items():
        assert seen == sorted(seen), (url, seen)  # never re-sent from an earlier offset
    big = max(offsets.values(), key=len)
    assert len(big) > 3 and big[-1] > 0, big
    # the page sends HEAD only after a failed PATCH: here, one that failed mid-file
    assert "HEAD" in methods, methods
    first_progress = next(i for i, (m, _, _) in enumerate(rec.requests) if m == "PATCH"
                          and int(json.loads(rec.headers[i])["upload-offset"]) > 0)  # fmt: skip
    assert methods.index("HEAD") > first_progress, methods


@pytest.fixture
def tools() -> None:
    missing = need_tools()
    if missing:
        pytest.skip(f"the Tor test needs {', '.join(missing)} (tests/run.sh installs them)")


def editor_round_trip(chain: Chain, texts: dict[str, str], photo: Path,
                      canary: str) -> dict[str, str]:  # fmt: skip
    """Export, import on the editor's side (every byte checked), a reply to each, outbox,
    import on the server; returns the reply text for each kind of submission."""
    bundle = chain.export()
    assert bundle is not None
    chain.editor_import(bundle)
    found: dict[str, Path] = {}
    for d in chain.submission_dirs():
        testimony = (d / "testimony.txt").read_text()
        kind = next(k for k, v in texts.items() if v in testimony)
        attachment = next(f for f in d.iterdir() if f.name.endswith("photo.jpg"))
        assert attachment.read_bytes() == photo.read_bytes()
        found[kind] = d
    assert sorted(found) == sorted(texts)
    replies = {k: f"Reply {k} {canary}-r-{k}" for k in found}
    for kind, d in found.items():
        chain.reply(d, replies[kind])
    chain.server_import(chain.outbox())
    return replies


def witnesses(browser: Browser, url: str, net: TorNet, chain: Chain, photo: Path, canary: str,
              steps) -> tuple[Recorder, list[bytes]]:  # type: ignore[no-untyped-def]  # fmt: skip
    """Every step a witness and an editor take, through the onion address only."""
    texts = {"off": f"JS-off testimony {canary}-off", "on": f"JS-on testimony {canary}-on",
             "cut": f"JS-on interrupted testimony {canary}-cut"}  # fmt: skip
    sent: list[bytes] = []
    codenames = {
        "off": steps.timed("JS-off submission, text + 20 MiB, through the onion",
                           submit, browser, url, False, texts["off"], photo, sent),
        "on": steps.timed("JS-on submission, text + 20 MiB, through the onion",
                          submit, browser, url, True, texts["on"], photo, sent),
    }  # fmt: skip
    restarts: list[float] = []
    codenames["cut"], rec = steps.timed(
        "JS-on 20 MiB with the client tor killed and restarted mid-upload",
        interrupted_js_on, browser, url, net, texts["cut"], photo, restarts)  # fmt: skip
    assert restarts, "the client tor was never restarted"
    check_resumed(rec)

    replies = steps.timed("editor round trip (export, import, reply, outbox, import)",
                          editor_round_trip, chain, texts, photo, canary)  # fmt: skip
    for kind, js in (("off", False), ("on", True)):
        shown = steps.timed(f"reply read through the onion, JS {kind}",
                            read_mailbox, browser, url, js, codenames[kind], sent)  # fmt: skip
        assert replies[kind] in shown
        assert all(replies[k] not in shown for k in replies if k != kind)
    return rec, sent


# A private Tor network on loopback still builds circuits, publishes descriptors and
# times out as Tor does: a run can lose a circuit at a bad moment (seen once in nine runs).
# One rerun, printed by pytest as such; a second failure fails the suite.
@pytest.mark.flaky(reruns=1)
def test_witnesses_through_the_onion_service(tools, tmp_path: Path, steps) -> None:  # type: ignore[no-untyped-def]
    chain = Chain(tmp_path / "chain")
    chain.setup()
    sock = tmp_path / "guwah.sock"
    hs_dir = tmp_path / "hs"
    hs_dir.mkdir(mode=0o700)
    canary = os.urandom(6).hex()
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(20 * MiB))

    with serve_on_socket(chain.data_dir, sock, tmp_path):
        net, address, seconds = bring_up(tmp_path / "tor", service_options(hs_dir, sock), hs_dir)
        steps.record("Tor network bring-up to the onion home page", seconds)
        url = f"http://{address}"
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path="/usr/bin/chromium",
                    args=[*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={url}"],
                    proxy={"server": f"socks5://127.0.0.1:{net.socks_port}"},
                )
                try:
                    rec, sent = witnesses(browser, url, net, chain, photo, canary, steps)
                finally:
                    browser.close()
        finally:
            net.stop()

    # JS on: nothing readable left the browser, even through the interruption
    for body in sent + [b or b"" for _, _, b in rec.requests]:
        assert f"{canary}-on".encode() not in body and f"{canary}-cut".encode() not in body
    assert re.fullmatch(r"[a-z2-7]{56}\.onion", address)
