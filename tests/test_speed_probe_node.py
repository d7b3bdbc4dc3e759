"""The rule that decides whether a witness is told their browser is slow (speed-probe.js).

Run under node through tests/js/speed-probe-check.mjs, with a probe that answers given rates:
a browser with a JIT (WebAssembly present) is measured up to five times before it is called
slow, so that one busy moment does not earn it a warning; one without is measured twice, so
that a Tor Browser at "Safer" is not kept waiting; measuring stops at the first fast rate.
The real engines are checked in the browser tests: Chromium ``--jitless`` has no WebAssembly
(tests/test_jitless_aead.py) and is warned, Chromium with its JIT is not
(tests/test_browser_bigfile.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "tests" / "js" / "speed-probe-check.mjs"
SLOW = 8e6  # the page's threshold (SLOW_RATE), passed explicitly as data-slow-rate can


def run_rule(cases: list[dict[str, Any]]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (Debian: apt-get install nodejs npm)")
    done = subprocess.run([node, str(CHECK)], input=json.dumps(cases), capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.mark.parametrize(("wasm", "rates", "calls", "speed"), [
    # a JIT engine caught in busy moments: measured again until it shows its speed
    (True, [1e6, 3e6, 2e6, 50e6], 4, 50e6),
    # a JIT engine slow every time: called slow after five tries
    (True, [2e6, 3e6, 1e6, 2e6, 2e6, 90e6], 5, 3e6),
    # no JIT (Tor Browser "Safer"): two tries, then called slow; the best of them counts
    (False, [1e6, 2e6, 50e6], 2, 2e6),
    # no JIT but a busy first moment: the second try decides
    (False, [1e6, 9e6, 1e6], 2, 9e6),
    # exactly at the threshold counts as fast
    (True, [1e6, 8e6, 90e6], 2, 8e6),
    (False, [8e6, 1e6], 1, 8e6),
    # fast at once: measured once, whatever the engine
    (True, [60e6, 1e6], 1, 60e6),
    (False, [9e6, 1e6], 1, 9e6),
])
def test_slow_rates_are_measured_again_before_a_browser_is_called_slow(
        wasm: bool, rates: list[float], calls: int, speed: float) -> None:
    got = run_rule([{"rates": rates, "slowRate": SLOW, "wasm": wasm}])
    case = got["cases"][0]
    assert case["jit"] is wasm
    assert (case["calls"], case["speed"]) == (calls, speed)


def test_each_engine_gets_its_number_of_tries() -> None:
    """Slow every time: a JIT engine is measured five times, one without a JIT twice."""
    got = run_rule([{"rates": [1e6], "slowRate": SLOW, "wasm": wasm} for wasm in (True, False)])
    assert [case["calls"] for case in got["cases"]] == [5, 2]


def test_node_counts_as_an_engine_with_a_jit() -> None:
    """The default scope is the engine's own: node has WebAssembly, so it has a JIT."""
    assert run_rule([])["node"] is True
