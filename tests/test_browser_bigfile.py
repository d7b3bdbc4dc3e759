"""A 256 MiB file sent with JavaScript on stays within the browser's memory budget.

Real `guwah serve` (SQLite, one X25519 desk), real Debian Chromium (over its DevTools pipe,
see tests/big_upload.py), real `age` CLI. The page encrypts in its worker, hashes in a second
one and uploads with tus; no Chromium process may grow by more than the budget of
docs/browser-uploads.md (256 MiB) over its size before Send, and what the server stored must
decrypt with `age -d` to the original bytes followed by zero padding.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from big_upload import MiB, make_file, submit_file, verify_stored
from conftest import run_guwah_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BUDGET = 256 * MiB
SIZE = 256 * MiB


def test_256_mib_upload_stays_within_the_memory_budget(tmp_path: Path) -> None:
    src = tmp_path / "video.bin"
    sha = make_file(src, SIZE)
    with run_guwah_server(tmp_path, "sqlite:///unused") as server:
        run = submit_file(server.url, server.pid, src, tmp_path / "profile", timeout_s=600)
        verify_stored(server.data_dir, server.database_url, server.identity_file, SIZE, sha)
    grown = {k: round(v / MiB) for k, v in run.growth.items()}
    print(f"{SIZE // MiB} MiB in {run.seconds:.1f} s; Chromium growth MiB: {grown}; "
          f"server peak {run.server_peak / MiB:.0f} MiB")
    assert run.warning is None, "a JIT browser must not get the slow-encryption prompt"
    assert run.largest_growth <= BUDGET, (
        f"a Chromium process grew by {run.largest_growth / MiB:.0f} MiB (budget "
        f"{BUDGET // MiB} MiB): {grown}"
    )
    assert any(v > 0 for v in run.growth.values())  # the sampler saw the browser at work



@pytest.mark.parametrize("jitless", [False, True], ids=["jit", "jitless"])
def test_slow_prompt_only_for_a_slow_browser(tmp_path: Path, jitless: bool) -> None:
    """With every estimate counting as long (data-slow-seconds 0), the measured speed alone
    decides: a JIT browser is never asked, a JIT-less one is, with the time in minutes."""
    size = 6 * MiB
    src = tmp_path / "clip.bin"
    sha = make_file(src, size)
    with run_guwah_server(tmp_path, "sqlite:///unused") as server:
        run = submit_file(server.url, server.pid, src, tmp_path / "profile", jitless=jitless,
                          timeout_s=300, form_data={"slowSeconds": "0"})
        verify_stored(server.data_dir, server.database_url, server.identity_file, size, sha)
    if not jitless:
        assert run.warning is None, run.warning
        return
    assert run.warning is not None, "a JIT-less browser was not warned"
    # the count is isolated (U+2068 … U+2069) and the noun follows its plural form
    assert re.search(r"about \u2068?[1-9][0-9]*\u2069? minutes?\b", run.warning), run.warning


if shutil.which("age") is None:  # pragma: no cover - the CI image has Debian's age
    pytest.skip("the age CLI is missing", allow_module_level=True)
