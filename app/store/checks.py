"""Start-up checks the web app and ``guwah serve``/``self-check`` run before serving anyone.

Why TMPDIR matters: libraries may spool to it (Starlette does, for large multipart parts). We
never write plaintext there, but if something ever did, a private tmpfs keeps it off the disk
and away from other users. So: refuse a TMPDIR that is not ours and 0700; warn if not tmpfs.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from app.settings import Settings


class StartupError(RuntimeError):
    """The server must not start; the message is one line that says what to fix."""


def _mount_fstype(path: Path) -> str | None:
    """The filesystem type of the mount holding ``path`` (Linux /proc/self/mounts)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best, fstype = "", None
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = parts[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, fstype = mount_point, parts[2]
    return fstype


def check_tmpdir(path: str | Path | None = None) -> list[str]:
    """Raise StartupError unless TMPDIR is a directory we own with mode 0700; return warnings."""
    if path is None:
        env = os.environ.get("TMPDIR")
        if not env:
            raise StartupError(
                "TMPDIR is not set, so temporary files would go to the shared /tmp: "
                "set TMPDIR to a private directory (mode 0700, ideally tmpfs)"
            )
        path = env
    tmp = Path(path)
    try:
        info = tmp.stat()
    except OSError:
        raise StartupError(f"TMPDIR {tmp} does not exist: create it with mode 0700") from None
    if not stat.S_ISDIR(info.st_mode):
        raise StartupError(f"TMPDIR {tmp} is not a directory")
    if info.st_uid != os.geteuid():
        raise StartupError(f"TMPDIR {tmp} belongs to another user: use a private directory")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise StartupError(
            f"TMPDIR {tmp} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}): "
            f"chmod 0700 {tmp}"
        )
    warnings = []
    fstype = _mount_fstype(tmp)
    if fstype not in ("tmpfs", "ramfs"):
        warnings.append(
            f"TMPDIR {tmp} is not on tmpfs ({fstype or 'unknown'}): prefer a RAM-backed "
            "directory (systemd PrivateTmp, or mount -t tmpfs)"
        )
    return warnings


def check_data_dir(data_dir: Path) -> list[str]:
    """Raise StartupError if the data dir is missing or open to others; return warnings."""
    try:
        info = data_dir.stat()
    except OSError:
        raise StartupError(
            f"data dir {data_dir} does not exist: run guwah init --data-dir {data_dir}"
        ) from None
    if info.st_uid != os.geteuid():
        raise StartupError(f"data dir {data_dir} belongs to another user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise StartupError(
            f"data dir {data_dir} is open to others (mode {stat.S_IMODE(info.st_mode):04o}): "
            f"chmod 0700 {data_dir}"
        )
    return []


def startup_checks(settings: Settings, tmpdir: str | Path | None = None) -> list[str]:
    """What the web app calls at start: TMPDIR and data dir; returns warnings to log."""
    warnings = check_tmpdir(tmpdir)
    warnings += check_data_dir(settings.data_dir)
    return warnings
