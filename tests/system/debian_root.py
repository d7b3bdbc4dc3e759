"""What a booted test machine is made of, built on the host and cached between runs.

* A minimal Debian root (``mmdebstrap --variant=minbase``) with every package the installer
  wants already inside, except ``netbase``: the installer must install that one itself, as it
  would on a fresh minimal image. The suite is the host's own, so that wheels built on the host
  fit the container's Python.
* A local apt repository (``file:`` and ``trusted=yes``) holding only ``netbase``: the
  container has no network, and its apt sources name nothing else.
* A wheelhouse with every Python dependency of ``guwah[server]``, built on the host, and the
  guwah wheel itself (rebuilt every session: it is the code under test).

The root and the wheelhouse are cached under ``GUWAH_SYSTEM_CACHE`` (default
/var/cache/guwah-test, outside the clone, so CI reuses them), keyed by what goes into them.
The tor in the root is pointed at a directory authority on the container's own loopback that
does not exist: it can never reach the public Tor network, even by mistake.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.source_copy import source_copy

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("GUWAH_SYSTEM_CACHE", "/var/cache/guwah-test"))
MIRROR = "http://deb.debian.org/debian"
RECIPE_VERSION = "1"  # bump when the customisation below changes

# What the installer's APT_PACKAGES need on a minimal image, minus netbase (see module doc).
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "python3-pip", "tor",
    "nftables", "unattended-upgrades", "apt-listchanges", "apparmor", "apparmor-utils",
    "ca-certificates",
)  # fmt: skip
ADDED_BY_INSTALLER = ("netbase",)

# Inside the root only: the tor there knows no authority but one that does not exist.
TOR_LOOPBACK_ONLY = """
## Guwah system test root: never the public Tor network. The only directory authority is a
## loopback address where nothing listens (the container has no network anyway).
TestingTorNetwork 1
DirAuthority nowhere orport=9 no-v2 v3ident=0000000000000000000000000000000000000000 \
127.0.0.1:9 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000
"""

LOCAL_REPO_IN_ROOT = "/srv/guwah-debs"


def host_suite() -> str:
    """The host's Debian codename (the root's Python must match the host-built wheels)."""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    raise RuntimeError("no VERSION_CODENAME in /etc/os-release")


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One builder at a time per cache entry (two CI jobs may share the cache)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def _write_local_repo(repo: Path) -> None:
    """A flat apt repository with the .debs the installer must add itself."""
    repo.mkdir(parents=True)
    try:
        _run(["apt-get", "download", *ADDED_BY_INSTALLER], cwd=repo)
    except RuntimeError:  # a host whose package lists were never fetched
        _run(["apt-get", "update", "-qq"])
        _run(["apt-get", "download", *ADDED_BY_INSTALLER], cwd=repo)
    stanzas = []
    for deb in sorted(repo.glob("*.deb")):
        control = _run(["dpkg-deb", "-f", str(deb)]).stdout.rstrip("\n")
        data = deb.read_bytes()
        stanzas.append(
            f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    (repo / "Packages").write_text("\n".join(stanzas))


def _customise(root: Path) -> None:
    """Offline apt sources, a loopback-only tor, no netbase."""
    apt = root / "etc/apt"
    (apt / "sources.list").write_text(f"deb [trusted=yes] file:{LOCAL_REPO_IN_ROOT} ./\n")
    for extra in (apt / "sources.list.d").glob("*"):
        extra.unlink()
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)
    defaults = root / "usr/share/tor/tor-service-defaults-torrc"
    defaults.write_text(defaults.read_text() + TOR_LOOPBACK_ONLY)
    (root / "etc/hostname").write_text("guwah-test\n")
    installed = subprocess.run(
        ["chroot", str(root), "dpkg-query", "-W", "-f=${Status}", *ADDED_BY_INSTALLER],
        capture_output=True, text=True, check=False,
    ).stdout
    if "install ok installed" in installed:  # pulled in by something: take it out again
        _run(["chroot", str(root), "dpkg", "--purge", "--force-depends", *ADDED_BY_INSTALLER])


def cached_root() -> Path:
    """The cached root for this package list (built on first use, ~30-60 s), read-only by
    convention: tests boot copies of it (see ``copy_root``)."""
    suite = host_suite()
    key = _digest(RECIPE_VERSION, suite, MIRROR, *PACKAGES, "|", *ADDED_BY_INSTALLER,
                  TOR_LOOPBACK_ONLY)  # fmt: skip
    entry = CACHE / f"root-{suite}-{key}"
    with _locked(entry.name):
        if (entry / "ready").exists():
            return entry
        shutil.rmtree(entry, ignore_errors=True)
        work = entry.with_name(entry.name + ".building")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        _run(["mmdebstrap", "--quiet", "--variant=minbase", "--include=" + ",".join(PACKAGES),
              suite, str(work / "root"), MIRROR])  # fmt: skip
        _customise(work / "root")
        _write_local_repo(work / "debs")
        (work / "ready").write_text(" ".join(PACKAGES) + "\n")
        work.rename(entry)
    return entry


@contextlib.contextmanager
def root_copy(entry: Path, work: Path) -> Iterator[Path]:
    """A private, writable view of the cached root for one test: an overlay whose upper layer
    is in ``work`` (the cache itself is never written). Why not ``cp -a``: 300 MB take
    10-20 s on a loaded machine; an overlay is instant."""
    merged, upper, scratch = work / "root", work / "upper", work / "overlay-work"
    for d in (merged, upper, scratch):
        d.mkdir(parents=True)
    options = f"lowerdir={entry / 'root'},upperdir={upper},workdir={scratch}"
    _run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)])
    try:
        yield merged
    finally:
        subprocess.run(["umount", "--lazy", str(merged)], check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", str(upper), str(scratch)], check=False)


# Hash-pinned lock files the installer may install from (pip checks their hashes, so the
# wheelhouse must hold exactly the files they name: downloaded, not rebuilt).
LOCK_PATTERNS = ("requirements*.txt", "*.lock", "requirements/*.lock", "deploy/*.lock",
                 "deploy/requirements*.txt")


def _lock_files() -> list[Path]:
    return [path for pattern in LOCK_PATTERNS for path in sorted(REPO.glob(pattern))]


def _dependency_key() -> str:
    """Changes when the Python dependencies may change: pyproject and any lock file."""
    parts: list[bytes] = [sys.version.split()[0].encode(), (REPO / "pyproject.toml").read_bytes()]
    for path in _lock_files():
        parts.append(path.name.encode())
        parts.append(path.read_bytes())
    return _digest(*parts)


def wheelhouse() -> Path:
    """Wheels of every dependency of guwah[server] (not guwah itself), built on the host."""
    entry = CACHE / f"wheels-py{sys.version_info.major}{sys.version_info.minor}-{_dependency_key()}"
    with _locked(entry.name):
        if (entry / "ready").exists():
            return entry
        shutil.rmtree(entry, ignore_errors=True)
        work = entry.with_name(entry.name + ".building")
        shutil.rmtree(work, ignore_errors=True)
        with source_copy() as source:
            _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                  "--wheel-dir", str(work), f"{source}[server]"])  # fmt: skip
        for lock in _lock_files():
            _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                  "--no-deps", "--dest", str(work), "-r", str(lock)])  # fmt: skip
        for own in work.glob("guwah-*.whl"):
            own.unlink()
        (work / "ready").write_text("")
        work.rename(entry)
    return entry


def guwah_wheel(dest: Path) -> Path:
    """The guwah wheel of this checkout, alone in ``dest`` (the installer's --source)."""
    dest.mkdir(parents=True, exist_ok=True)
    with source_copy() as source:
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
              "--no-deps", "--wheel-dir", str(dest), str(source)])  # fmt: skip
    wheels = list(dest.glob("guwah-*.whl"))
    assert len(wheels) == 1, wheels
    return dest
