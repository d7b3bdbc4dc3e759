"""Fixtures for the system tests (marker ``system``): booted Debian roots and step timings.

Every test here is marked ``system`` and ``slow``; skip them with ``-m "not system"``. They need
root, ``mmdebstrap`` and ``systemd-nspawn`` (tests/run.sh installs both).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .container import Container
from .debian_root import LOCAL_REPO_IN_ROOT, REPO, cached_root, guwah_wheel, root_copy, wheelhouse

HERE = Path(__file__).resolve().parent
_TIMINGS: list[tuple[str, str, float]] = []


@pytest.hookimpl(tryfirst=True)  # before tests/conftest.py sorts tests into run.sh's lanes
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.system)
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if not _TIMINGS:
        return
    terminalreporter.section("system test timings (seconds)")
    for test, step, seconds in _TIMINGS:
        terminalreporter.write_line(f"{seconds:8.1f}  {test}: {step}")


@dataclass
class Steps:
    """Records how long each named step of a test took (printed in the terminal summary)."""

    test: str
    started: float = field(default_factory=time.monotonic)

    def record(self, step: str, seconds: float) -> None:
        _TIMINGS.append((self.test, step, seconds))
        print(f"[{self.test}] {step}: {seconds:.1f} s")

    def timed(self, step: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        t = time.monotonic()
        result = fn(*args, **kwargs)
        self.record(step, time.monotonic() - t)
        return result


@pytest.fixture
def steps(request: pytest.FixtureRequest) -> Iterator[Steps]:
    s = Steps(request.node.name)
    yield s
    s.record("total", time.monotonic() - s.started)


def _need_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("system tests boot containers: run as root (tests/run.sh in CI)")
    for tool in ("mmdebstrap", "systemd-nspawn", "nsenter", "apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            pytest.skip(f"system tests need {tool} (tests/run.sh installs it)")


@pytest.fixture(scope="session")
def machine_parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The cached root, the local apt repository, the wheelhouse and this checkout's wheel."""
    _need_tools()
    t = time.monotonic()
    entry = cached_root()
    _TIMINGS.append(("session", "Debian root (cached or built)", time.monotonic() - t))
    t = time.monotonic()
    wheels = wheelhouse()
    source = guwah_wheel(tmp_path_factory.mktemp("guwah-wheel"))
    _TIMINGS.append(("session", "wheelhouse + guwah wheel", time.monotonic() - t))
    return {"entry": entry, "debs": entry / "debs", "wheels": wheels, "source": source}


@pytest.fixture(scope="session")
def editor_pub(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An editor key made by the real ``guwah-editor keygen`` (X25519)."""
    d = tmp_path_factory.mktemp("editor")
    (d / "pass.txt").write_text("correct horse battery staple orange\n")
    editor = Path(sys.executable).with_name("guwah-editor")
    res = subprocess.run(
        [str(editor), "keygen", "--name", "alice", "--x25519", "--keyring", str(d / "ring"),
         "--passphrase-file", str(d / "pass.txt"), "--work-factor", "10"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    shutil.copy(d / "ring" / "editor.pub", d / "alice.pub")
    return {"pub": d / "alice.pub", "ring": d / "ring", "pass": d / "pass.txt"}


@pytest.fixture
def machine(machine_parts: dict[str, Path], tmp_path: Path, steps: Steps) -> Iterator[Container]:
    """A fresh copy of the root, booted (private network), with the installer, the wheels
    and the local apt repository bound read-only inside. Powered off afterwards."""
    with root_copy(machine_parts["entry"], tmp_path / "machine") as root:
        box = Container(
            root=root,
            log=tmp_path / "nspawn.log",
            binds={
                REPO / "deploy": "/srv/guwah-deploy",
                # install.sh reads the hash-pinned lock beside its own folder
                REPO / "requirements": "/srv/requirements",
                machine_parts["source"]: "/srv/guwah-source",
                machine_parts["wheels"]: "/srv/guwah-wheels",
                machine_parts["debs"]: LOCAL_REPO_IN_ROOT,
            },
        )
        try:
            steps.record("boot to multi-user", box.boot())
            yield box
        finally:
            box.stop()
