"""The operator's and newcomer's small promises: a hash-pinned server install that agrees with
pyproject.toml, an installer that says where it wrote and keeps an Onionbalance node's line,
help screens without type tags, and a backup that asks its own passphrase.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from roundtrip_helper import PASSPHRASE, ROOT, make_keyring

LOCK = ROOT / "requirements" / "server.lock"
INSTALL = ROOT / "deploy" / "install.sh"
OB_LINE = "HiddenServiceOnionbalanceInstance 1"


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _lock() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of requirements/server.lock."""
    out = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text()):
        m = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if m:
            out[m.group(1).lower()] = (m.group(2), block.count("--hash=sha256:"))
    return out


def test_lock_pins_every_server_dependency_by_hash_and_agrees_with_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["server"]
    lock = _lock()
    assert lock, "requirements/server.lock pins nothing"
    assert all(n >= 1 for _v, n in lock.values()), "a pin without --hash"
    for line in wanted:
        req = Requirement(line)
        name = _name(req.name)
        assert name in lock, f"{name} is in pyproject.toml but not in the lock: bash requirements/lock.sh"
        assert req.specifier.contains(Version(lock[name][0])), (
            f"{name}=={lock[name][0]} in the lock does not satisfy {req.specifier} in "
            "pyproject.toml: run bash requirements/lock.sh")
    header = LOCK.read_text()
    assert "bash requirements/lock.sh" in header and "--generate-hashes" in (
        ROOT / "requirements" / "lock.sh").read_text()


def test_installer_and_demo_install_with_require_hashes() -> None:
    for script in (INSTALL, ROOT / "deploy" / "demo.sh"):
        text = script.read_text()
        assert "--require-hashes" in text and "requirements/server.lock" in text, script


def _staged(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(INSTALL), "--root", str(root), *args],
                          capture_output=True, text=True, timeout=300)


def test_root_run_says_where_it_wrote_and_onionbalance_line_survives(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = _staged(root, "--onionbalance-instance")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"wrote {root}/install-actions.txt" in first.stdout
    assert "wrote /install-actions.txt" not in first.stdout
    torrc = (root / "etc/tor/torrc").read_text()
    lines = torrc.splitlines()
    at = lines.index("HiddenServicePort 80 unix:/run/guwah/guwah.sock")
    assert lines[at + 1] == OB_LINE and torrc.count(OB_LINE) == 1
    actions = (root / "install-actions.txt").read_text()
    assert "pip install --require-hashes -r " in actions and "pip check" in actions
    again = _staged(root)  # the option not repeated: the installed line is kept
    assert again.returncode == 0, again.stderr
    assert (root / "etc/tor/torrc").read_text() == torrc
    assert "wrote" not in again.stdout
    plain = _staged(tmp_path / "plain")
    assert OB_LINE not in (tmp_path / "plain/etc/tor/torrc").read_text()
    assert plain.returncode == 0


def _all_help(cli: list[str]) -> str:
    top = subprocess.run([*cli, "--help"], capture_output=True, text=True, check=True).stdout
    names = re.findall(r"^  ([a-z][a-z-]+)\s", top.split("Commands:", 1)[1], re.M)
    out = [top]
    for name in names:
        sub = subprocess.run([*cli, name, "--help"], capture_output=True, text=True, check=True)
        out.append(sub.stdout)
        if "Commands:" in sub.stdout:
            out.append(_all_help([*cli, name]))
    return "\n".join(out)


@pytest.mark.parametrize("module", ["app.editor.cli", "app.server_cli.main"])
def test_help_screens_have_no_type_tags(module: str) -> None:
    text = _all_help([sys.executable, "-c", f"from {module} import main; main()"])
    assert "Usage:" in text and "Options:" in text
    assert not re.search(r"<(bool|str|int|path|list\[[^>]*\])>", text), text
    assert "╭" not in text  # one plain layout for both tools


def _tty_run(args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run with a real terminal (getpass reads /dev/tty); answer each prompt in turn."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execv(sys.executable, [sys.executable, "-c",
                                  "from app.editor.cli import main; main()", *args])
    seen = b""
    answered_at = 0  # answer each prompt once: only text after the last answer counts
    pending = list(answers)
    while True:
        ready, _, _ = select.select([fd], [], [], 60)
        if not ready:
            os.kill(pid, 9)  # a prompt we did not expect: fail, never hang
            break
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        seen += data
        if pending and seen[answered_at:].rstrip().endswith(b":"):
            os.write(fd, pending.pop(0).encode() + b"\n")
            answered_at = len(seen)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_backup_asks_two_distinct_questions(tmp_path: Path) -> None:
    passfile = tmp_path / "pass.txt"
    passfile.write_text(PASSPHRASE + "\n")
    ring = make_keyring(tmp_path / "ring", passfile)
    backup_pass = "a different backup passphrase"
    code, transcript = _tty_run(
        ["backup", "--out", str(tmp_path / "paper.txt"), "--keyring", str(ring)],
        [PASSPHRASE, backup_pass, backup_pass])
    assert code == 0, transcript
    prompts = [ln.strip() for ln in transcript.splitlines() if ln.strip().endswith(":")]
    assert prompts[0] == "Keyring passphrase:"
    assert prompts[1].startswith("Passphrase for the paper backup")
    assert prompts[2] == "Repeat the passphrase:"
    code, transcript = _tty_run(
        ["restore", str(tmp_path / "paper.txt"), "--keyring", str(tmp_path / "restored")],
        [backup_pass])
    assert code == 0, transcript
    assert (tmp_path / "restored" / "editor.pub").read_text() == (ring / "editor.pub").read_text()
