"""Beyond one machine, over Tor: two Guwah nodes on one PostgreSQL, each behind its own onion
service (the installer's torrc), and an Onionbalance frontend publishing the one address
witnesses get, all on the private loopback Tor network (tests/system/tornet.py).

The frontend configuration comes from the project's own generator
(deploy/multinode/onionbalance-config.sh): ``config.yaml`` and the frontend key for
Onionbalance, ``ob_config`` and the ``HiddenServiceOnionbalanceInstance`` line for each node.
A witness submits through the frontend address; then node A's onion service is stopped and the
witness's tor restarted (so that no circuit made before helps), and the next witness still
gets through, to node B. Not covered: a stopped node coming back (its new introduction points
reach the frontend descriptor only after Onionbalance's next fetch-and-publish round, about
3 minutes here: too slow for CI). Onionbalance needs at least 8 relays (with fewer it spins).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.ports import free_port
from tests.test_browser_json import CHROMIUM_ARGS
from tests.test_chain import submit
from tests.test_multinode import pg, two_nodes  # noqa: F401 - pg is a fixture used below

from .test_tor import serve_on_socket, service_options
from .tornet import BRING_UP_SECONDS, TorNet, TorNetError, fetch_through

REPO = Path(__file__).resolve().parents[2]
RELAYS_FOR_ONIONBALANCE = 8
ANSWER_SECONDS = 240


def wait_for_answer(net: TorNet, address: str, seconds: float) -> float:
    start = time.monotonic()
    while fetch_through(net.socks_port, f"http://{address}/", 20) != 200:
        if time.monotonic() - start > seconds:
            raise TorNetError(f"{address} did not answer within {seconds} s")
        time.sleep(1)
    return time.monotonic() - start


def start_network(base: Path, nodes: dict[str, tuple[Path, Path]], ctrl: int) -> TorNet:
    """Authority, 8 relays, the witness's client, one onion service per node, the frontend's
    tor (control port for Onionbalance, no SOCKS)."""
    net = TorNet(base, relays=RELAYS_FOR_ONIONBALANCE)
    net.make_authority()
    for i in range(RELAYS_FOR_ONIONBALANCE):
        net.make_relay(i)
    net.make_client()
    for name, (hs_dir, sock) in nodes.items():
        net.make_service(name, service_options(hs_dir, sock))
    net.make_service("frontend", f"SocksPort 0\nControlPort 127.0.0.1:{ctrl}\n")
    deadline = time.monotonic() + BRING_UP_SECONDS
    net.start_routers(deadline)
    for name in ("client", *nodes, "frontend"):
        net.tors[name].start()
    net.wait_bootstrapped("client", deadline)
    net.wait_bootstrapped("frontend", deadline)
    for hs_dir, _ in nodes.values():
        while not (hs_dir / "hostname").exists():
            if time.monotonic() > deadline:
                raise TorNetError("a node's onion service wrote no hostname")
            time.sleep(0.2)
    return net


def configure_onionbalance(out: Path, net: TorNet, nodes: dict[str, tuple[Path, Path]]) -> str:
    """Run the generator; give each node its ob_config and instance line; restart its tor."""
    instances = []
    for hs_dir, _ in nodes.values():
        instances += ["--instance", (hs_dir / "hostname").read_text().strip()]
    res = subprocess.run([str(REPO / "deploy/multinode/onionbalance-config.sh"), "--out", str(out),
                          "--new-key", *instances], capture_output=True, text=True, check=False)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    for i, (name, (hs_dir, _)) in enumerate(nodes.items(), start=1):
        backend = out / "backends" / f"node{i}"
        shutil.copy(backend / "ob_config", hs_dir / "ob_config")
        torrc = net.tors[name].torrc
        torrc.write_text(torrc.read_text() + (backend / "torrc-lines").read_text())
        net.restart(name)
    return (out / "frontend-address").read_text().strip().removesuffix(".onion") + ".onion"


# A private Tor network on loopback still builds circuits, publishes descriptors and
# times out as Tor does: a run can lose a circuit at a bad moment (seen once in nine runs).
# One rerun, printed by pytest as such; a second failure fails the suite.
@pytest.mark.flaky(reruns=1)
def test_onionbalance_two_nodes_fail_over(pg, tmp_path: Path, steps) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    for tool in ("tor", "tor-gencert", "curl", "onionbalance", "onionbalance-config"):
        assert shutil.which(tool), f"{tool} is missing (tests/run.sh installs it)"
    cluster = two_nodes(tmp_path, pg)
    nodes = {
        "nodeA": (tmp_path / "hsA", tmp_path / "a.sock"),
        "nodeB": (tmp_path / "hsB", tmp_path / "b.sock"),
    }
    for hs_dir, _ in nodes.values():
        hs_dir.mkdir(mode=0o700)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(200_000))
    ctrl = free_port()
    ob_log = tmp_path / "onionbalance.log"
    with serve_on_socket(cluster.a, nodes["nodeA"][1], tmp_path), \
            serve_on_socket(cluster.b, nodes["nodeB"][1], tmp_path):  # fmt: skip
        t = time.monotonic()
        net = steps.timed("Tor network (8 relays) + two node onion services", start_network,
                          tmp_path / "tor", nodes, ctrl)  # fmt: skip
        ob = None
        try:
            frontend = configure_onionbalance(tmp_path / "ob", net, nodes)
            with open(ob_log, "wb") as log:
                ob = subprocess.Popen(
                    ["onionbalance", "-c", str(tmp_path / "ob" / "config.yaml"), "-i",
                     "127.0.0.1", "-p", str(ctrl), "--is-testnet", "-v", "info"],
                    stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path / "ob",
                )  # fmt: skip
            steps.record("frontend address answers after Onionbalance started",
                         wait_for_answer(net, frontend, ANSWER_SECONDS))
            url = f"http://{frontend}"
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS,
                    proxy={"server": f"socks5://127.0.0.1:{net.socks_port}"},
                )  # fmt: skip
                try:
                    sent: list[bytes] = []
                    steps.timed("JS-off submission through the frontend, both nodes up", submit,
                                browser, url, False, "first witness", photo, sent)  # fmt: skip
                    # Node A's onion service stopped, and the witness's tor restarted so that
                    # no circuit made before helps: node B alone answers at the same address.
                    net.tors["nodeA"].stop()
                    net.restart_client()
                    steps.record("frontend answers with node A down (client tor restarted)",
                                 wait_for_answer(net, frontend, ANSWER_SECONDS))
                    steps.timed("JS-off submission through the frontend, node A down", submit,
                                browser, url, False, "second witness", photo, sent)  # fmt: skip
                finally:
                    browser.close()
        finally:
            if ob is not None:
                ob.terminate()
                try:
                    ob.wait(20)
                except subprocess.TimeoutExpired:
                    ob.kill()
                    ob.wait()
            net.stop()
        steps.record("whole Onionbalance scenario", time.monotonic() - t)
    stats = json.loads(cluster.chain.guwah("stats", "--json").stdout)
    assert stats["submissions"] == 2, stats
