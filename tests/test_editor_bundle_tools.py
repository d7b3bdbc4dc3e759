"""make-bundle.sh --with-media-tools: ffmpeg and exiftool for an offline editor laptop.

The bundle is built for real (Debian packages with every dependency, a local apt repository),
install-tools.sh is shellcheck-clean, refuses an altered bundle before apt runs, and — as root,
which CI is — installs ffmpeg and libimage-exiftool-perl through apt seeing only debs/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAKE = ROOT / "deploy/editor-laptop/make-bundle.sh"


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200, **kw)  # type: ignore[call-overload]


@pytest.mark.slow
def test_bundle_carries_media_tools_as_a_local_apt_repository(tmp_path: Path) -> None:
    for tool in ("apt-get", "dpkg-scanpackages", "shellcheck"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (apt-get install apt dpkg-dev shellcheck)")
    bundle = tmp_path / "bundle"
    res = run(["bash", str(MAKE), "--out", str(bundle), "--python", sys.executable,
               "--with-media-tools"])
    assert res.returncode == 0, res.stdout + res.stderr
    debs = bundle / "debs"
    names = {p.name.split("_")[0] for p in debs.glob("*.deb")}
    assert {"ffmpeg", "libimage-exiftool-perl", "perl"} <= names
    index = (debs / "Packages").read_text()
    assert "Package: ffmpeg\n" in index and "Package: libimage-exiftool-perl\n" in index
    sums = (bundle / "SHA256SUMS").read_text()
    assert "install-tools.sh" in sums and "debs/Packages" in sums
    assert all(f"debs/{p.name}" in sums for p in debs.glob("*.deb"))
    sc = run(["shellcheck", str(bundle / "install-tools.sh")])
    assert sc.returncode == 0, sc.stdout

    env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    if os.geteuid() == 0:
        res = run(["sh", str(bundle / "install-tools.sh")], env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "installed ffmpeg libimage-exiftool-perl" in res.stdout
        assert "http" not in res.stdout  # apt read debs/ alone: no network source
        assert "file:" in res.stdout
    else:
        res = run(["sh", str(bundle / "install-tools.sh")], env=env)
        assert res.returncode == 1 and "run it as root" in res.stderr

    # an altered package is refused before apt sees anything
    deb = next(debs.glob("ffmpeg_*.deb"))
    deb.write_bytes(deb.read_bytes() + b"x")
    res = run(["sh", str(bundle / "install-tools.sh")], env=env)
    assert res.returncode == 1
    assert "SHA256SUMS" in res.stderr or "run it as root" in res.stderr
