"""``bash deploy/demo.sh`` as a newcomer runs it: again and again, on another port, and with
the port taken. Runs in a copy of the repository (its own .venv, installed from the lock)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from roundtrip_helper import ROOT

from tests.ports import free_port

pytestmark = pytest.mark.slow


def _copy_repo(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for name in files:
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
        elif src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(src), dest / name)
    return dest


def _run_demo(repo: Path, port: int) -> str:
    """Start the demo, wait until it serves, stop it (SIGINT, as Ctrl-C); its output."""
    proc = subprocess.Popen(["bash", "deploy/demo.sh"], cwd=repo, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "GUWAH_DEMO_PORT": str(port)},
                            start_new_session=True)
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(1)
        else:
            raise AssertionError("the demo did not serve in time")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    return out


def test_demo_runs_again_and_again_and_refuses_a_busy_port(tmp_path: Path) -> None:
    repo = _copy_repo(tmp_path / "guwah")
    port = free_port()
    first = _run_demo(repo, port)
    assert f"http://127.0.0.1:{port}/" in first
    assert f'export PATH="{repo}/.venv/bin:$PATH"' in first
    assert 'guwah export --to "$USB"' in first and "guwah-editor import" in first
    second = _run_demo(repo, port)  # the same demo, run again: keeps its key and its data
    assert "round trip with the demo editor key: OK" in second
    assert (repo / "demo-data" / "server" / "guwah.sqlite3").is_file()
    with socket.socket() as busy:  # listening: "in use" even for a bind with SO_REUSEADDR
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the demo's TIME_WAIT
        busy.bind(("127.0.0.1", port))
        busy.listen()
        proc = subprocess.run(["bash", "deploy/demo.sh"], cwd=repo, capture_output=True,
                              text=True, timeout=120, env={**os.environ,
                                                           "GUWAH_DEMO_PORT": str(port)})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"demo: error: port {port} on 127.0.0.1 is in use; stop what uses it, or run "
        "GUWAH_DEMO_PORT=8081 bash deploy/demo.sh"]
    bad = subprocess.run(["bash", "deploy/demo.sh"], cwd=repo, capture_output=True, text=True,
                         env={**os.environ, "GUWAH_DEMO_PORT": "http"})
    assert bad.returncode == 1 and "not a port number" in bad.stderr
