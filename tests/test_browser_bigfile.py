"""A 256 MiB file sent with JavaScript on stays within the browser's memory budget.

Real `guwah serve` (SQLite, one X25519 desk), real Debian Chromium (over its DevTools pipe,
see tests/big_upload.py), real `age` CLI. The page encrypts in its worker, hashes in a second
one and uploads with tus; no Chromium process may grow by more than the budget of
docs/browser-uploads.md (256 MiB) over its size before Send, and what the server stored must
decrypt with `age -d` to the original bytes followed by zero padding.
"""

from __future__ import annotations

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
    assert not run.warned, "a JIT browser must not get the slow-encryption prompt"
    assert run.largest_growth <= BUDGET, (
        f"a Chromium process grew by {run.largest_growth / MiB:.0f} MiB (budget "
        f"{BUDGET // MiB} MiB): {grown}"
    )
    assert any(v > 0 for v in run.growth.values())  # the sampler saw the browser at work


if shutil.which("age") is None:  # pragma: no cover - the CI image has Debian's age
    pytest.skip("the age CLI is missing", allow_module_level=True)
