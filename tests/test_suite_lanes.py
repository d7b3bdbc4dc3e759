"""How tests/run.sh splits the suite: what each pytest run it starts would select.

Why a test of the test suite: a selection that quietly shrinks passes green. The PostgreSQL
pass picks its tests by a mark that tests/conftest.py sets during collection; set too late, it
would pick only the tests marked by hand and nobody would notice. The two lanes must together
hold every test, once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
