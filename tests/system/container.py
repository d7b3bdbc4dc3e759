"""Boot a Debian root with systemd-nspawn and run commands inside the booted system.

Always ``--private-network``: the container gets its own network namespace with only a
loopback interface, so the installer's firewall lands there (never on the host) and nothing in
the container can reach any network. ``--register=no --keep-unit``: no machined, no system bus
needed on the host. Commands run inside with ``nsenter`` into the container's PID 1
namespaces (what ``machinectl shell`` would do, without machined).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REBOOT_EXIT = 133  # systemd-nspawn's exit status when the container asked for a reboot


class ContainerError(RuntimeError):
    """The container did not boot, stop or answer in time."""


def prepare_host() -> None:
    """nspawn keeps state in /run/systemd/nspawn; a host without systemd needs a tmpfs there."""
    if Path("/run/systemd/system").is_dir():
        return
    target = Path("/run/systemd/nspawn")
    target.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mountpoint", "-q", str(target)], check=False).returncode != 0:
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(target)], check=True)


@dataclass
class Container:
    """One booted root. ``binds`` maps host paths to read-only paths inside."""

    root: Path
    log: Path
    binds: dict[Path, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    leader: int = 0

    def boot(self, timeout: float = 120) -> float:
        """Start the machine; returns seconds until systemd reports it is up."""
        prepare_host()
        cmd = ["systemd-nspawn", "--quiet", "-D", str(self.root), "--boot", "--private-network",
               "--register=no", "--keep-unit", "--console=passive",
               f"--machine=guwah-test-{os.getpid()}"]  # fmt: skip
        for host, inside in self.binds.items():
            cmd.append(f"--bind-ro={host}:{inside}")
        start = time.monotonic()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.leader = self._find_leader(start + 30)
        while time.monotonic() < start + timeout:
            state = self.run("systemctl is-system-running --wait", check=False, timeout=timeout)
            if state.stdout.strip() in ("running", "degraded"):
                return time.monotonic() - start
            time.sleep(0.5)
        raise ContainerError(f"not up after {timeout} s; see {self.log}")

    def _find_leader(self, deadline: float) -> int:
        """PID (on the host) of the container's PID 1: the child of nspawn that runs systemd.

        Why not nspawn's first child: before it executes systemd, nspawn's child is still
        nspawn (and a helper child may come and go); entering that one's namespaces fails, and
        a boot then looked as if it never finished."""
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ContainerError(f"systemd-nspawn exited {self.process.returncode}; see {self.log}")
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            for pid in children.read_text().split() if children.exists() else []:
                try:
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return int(pid)
                except OSError:  # gone meanwhile
                    continue
            time.sleep(0.1)
        raise ContainerError("no container PID 1 appeared")

    def run(self, script: str, *, check: bool = True, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Run a shell script as root inside the booted system."""
        if not self.leader:
            raise ContainerError("container is not running")
        inner = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb", **(env or {})}
        cmd = ["nsenter", f"--target={self.leader}", "--mount", "--uts", "--ipc", "--net",
               "--pid", "--root", "--wd", "--", "/usr/bin/env", "-i",
               *[f"{k}={v}" for k, v in inner.items()], "/bin/bash", "-c", script]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if check and res.returncode != 0:
            raise ContainerError(f"inside: {script!r} -> {res.returncode}\n{res.stdout}\n{res.stderr}")
        return res

    def path(self, inside: str) -> Path:
        """A path inside the running system as the host sees it (mounts such as /run included)."""
        return Path(f"/proc/{self.leader}/root") / inside.lstrip("/")

    def _wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise ContainerError(f"container did not stop within {timeout} s") from None

    def stop(self, timeout: float = 90) -> None:
        """Orderly poweroff (nspawn turns SIGTERM into a shutdown of the container)."""
        if self.process is None or self.process.poll() is not None:
            self.leader = 0
            return
        self.process.send_signal(signal.SIGTERM)
        self._wait_exit(timeout)
        self.leader = 0

    def reboot(self, timeout: float = 120) -> float:
        """``systemctl reboot`` inside, then boot the same root again; returns boot seconds."""
        self.run("systemctl reboot", check=False)
        status = self._wait_exit(timeout)
        if status != REBOOT_EXIT:
            raise ContainerError(f"reboot ended systemd-nspawn with {status}, not {REBOOT_EXIT}")
        self.leader = 0
        return self.boot(timeout)
