"""How tests/run.sh splits the suite: what each pytest run it starts would select.

Why a test of the test suite: a selection that quietly shrinks passes green. The PostgreSQL
pass picks its tests by a mark that tests/conftest.py sets during collection; set too late, it
would pick only the tests marked by hand and nobody would notice. The two lanes must together
hold every test, once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import ports

ROOT = Path(__file__).resolve().parents[1]


def collected(*args: str, lane: str = "") -> set[str]:
    """The test ids ``pytest --collect-only`` selects with ``args`` in ``lane``."""
    env = {k: v for k, v in os.environ.items() if k != "GUWAH_TEST_LANE"}
    if lane:
        env["GUWAH_TEST_LANE"] = lane
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert out.returncode in (0, 5), out.stdout + out.stderr
    return {line for line in out.stdout.splitlines() if "::" in line}


def test_postgres_pass_takes_tests_that_get_a_database_only_through_a_fixture() -> None:
    # tests/test_web.py has no database mark of its own: this test gets one through web_app
    by_fixture = "tests/test_web.py::test_security_headers_on_every_route_and_status"
    assert by_fixture in collected("tests/test_web.py")
    ids = collected("tests/test_web.py", lane="database")
    assert by_fixture in ids, "the PostgreSQL pass would skip tests that use a database"
    assert "tests/test_web.py::test_css_uses_logical_properties" not in ids
    assert ids == collected("-m", "database", "tests/test_web.py")


def test_a_marker_given_to_run_sh_narrows_the_postgres_pass_instead_of_replacing_it() -> None:
    assert collected("-m", "not system", "tests/test_web.py", lane="database") == collected(
        "tests/test_web.py", lane="database")


def test_the_two_lanes_hold_every_test_once() -> None:
    everything = collected()
    system = collected(lane="system")
    rest = collected(lane="rest")
    assert system and all(i.startswith("tests/system/") for i in system)
    assert not any(i.startswith("tests/system/") for i in rest)
    assert system | rest == everything
    assert not system & rest


def test_a_lane_picks_ports_of_its_own_and_skips_ports_in_use(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/ports.py: in a lane, free ports come from that lane's range, never twice, and
    never one something listens on (checked on real sockets). A range of this test's own, so
    that the lanes running beside it are not disturbed."""
    probe = range(32_000, 32_400)
    monkeypatch.setenv("GUWAH_TEST_LANE", "probe")
    monkeypatch.setattr(ports, "LANE_PORTS", {"probe": probe})
    monkeypatch.setattr(ports, "_overlaps_outgoing", lambda _ports: False)
    monkeypatch.setattr(ports, "_given", set())
    picked = [ports.free_port() for _ in range(50)]
    assert len(set(picked)) == 50 and all(port in probe for port in picked)
    spare = next(port for port in probe if port not in picked and ports._bindable(port))
    monkeypatch.setattr(ports, "LANE_PORTS", {"probe": range(spare, spare + 1)})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", spare))
        busy.listen()
        with pytest.raises(ports.PortsExhausted):
            ports.free_port()
    assert ports.free_port() == spare  # free again once nothing listens on it
    with pytest.raises(ports.PortsExhausted):
        ports.free_port()  # and never handed out twice
