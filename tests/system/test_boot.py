"""deploy/install.sh for real, on a minimal Debian booted with systemd as PID 1 (nspawn).

What a container cannot show, said plainly:
* AppArmor: this host's kernel decides. Without AppArmor in the kernel (no
  /sys/kernel/security/apparmor) the installer skips ``apparmor_parser`` and tor runs without
  its profile (Debian's unit asks for it with ``AppArmorProfile=-system_tor``: optional); the
  test then checks the skip and says so. With AppArmor available it checks the profile loads.
* nftables: the ruleset is loaded for real, into the container's own network namespace
  (``--private-network``); the host's ruleset is checked to be unchanged. Inbound filtering of
  real traffic is not exercised: the container has only a loopback interface.
* tor runs, writes its onion keys and hostname, but reaches no network (see
  tests/system/test_tor.py for witnesses over a loopback Tor network).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .container import Container
from .debian_root import ADDED_BY_INSTALLER

INSTALL = "bash /srv/guwah-deploy/install.sh"
OFFLINE_PIP = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/srv/guwah-wheels"}
UNITS = ("guwah.service", "tor@default.service", "guwah-cleanup.timer")
AGE_MAGIC = b"age-encryption.org/v1\n"
SECURITY_LIMIT = 2.0


def install(box: Container, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = " ".join([INSTALL, *args])
    res = box.run(cmd, check=False, timeout=900, env=OFFLINE_PIP)
    if check:
        assert res.returncode == 0, f"{cmd} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def first_install(box: Container, editor: dict[str, Path],
                  check: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """install.sh with the editor key copied into the machine and the host-built wheel."""
    (box.root / "root/alice.pub").write_bytes(editor["pub"].read_bytes())
    return install(box, "--editor-key", "/root/alice.pub", "--source", "/srv/guwah-source",
                   check=check)  # fmt: skip


def unit_states(box: Container) -> dict[str, str]:
    out = box.run("systemctl is-active " + " ".join(UNITS), check=False).stdout.split()
    return dict(zip(UNITS, out, strict=True))


def main_pids(box: Container) -> dict[str, str]:
    return {
        unit: box.run(f"systemctl show -p MainPID --value {unit}").stdout.strip()
        for unit in ("guwah.service", "tor@default.service")
    }


def tcp_listeners(box: Container, pid: str = "self") -> list[str]:
    """Listening TCP sockets (state 0A) and bound UDP sockets in ``pid``'s network namespace."""
    script = f"cat /proc/{pid}/net/tcp /proc/{pid}/net/tcp6 /proc/{pid}/net/udp /proc/{pid}/net/udp6"
    lines = box.run(script).stdout.splitlines()
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[0].endswith(":") and fields[3] in ("0A", "07"):
            found.append(fields[1])
    return found


def wait_for_site(box: Container, seconds: float = 60) -> None:
    """Until the app answers on its socket (it starts a second or two after its unit)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with site(box) as client:
                assert client.get("/").status_code == 200
                return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def site(box: Container) -> httpx.Client:
    """An HTTP client for the app's unix socket inside the container (and only that)."""
    transport = httpx.HTTPTransport(uds=str(box.path("/run/guwah/guwah.sock")))
    return httpx.Client(transport=transport, base_url="http://guwah.onion", timeout=60)


def submit_js_off(box: Container, text: str, attachment: bytes) -> str:
    """A JavaScript-off submission (multipart form) through the socket; returns the receipt."""
    with site(box) as client:
        page = client.get("/submit")
        assert page.status_code == 200, page.text[:300]
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        parts = [
            ("csrf", (None, token)), ("desk", (None, "default")), ("lang", (None, "en")),
            ("website", (None, "")), ("testimony", (None, text)), ("where", (None, "")),
            ("when", (None, "")), ("consent", (None, "ask")), ("never_name", (None, "")), ("kept_codename", (None, "yes")),
            ("files", ("photo.jpg", attachment, "image/jpeg")),
        ]  # fmt: skip
        r = client.post("/submit", files=parts)
    assert r.status_code == 200, r.text[:500]
    return r.text


def data_files(box: Container) -> dict[str, str]:
    """SHA-256 of every file in the data directory (what must survive restarts)."""
    out = box.run("cd /var/lib/guwah && find . -type f -print0 | sort -z | xargs -0 -r sha256sum")
    return {line[66:]: line[:64] for line in out.stdout.splitlines()}


def kept_data(box: Container) -> tuple[dict[str, str], str]:
    """What a restart must keep: the blob files, byte for byte, and the database's counts
    (the SQLite files themselves change when the WAL is checkpointed)."""
    blobs = {k: v for k, v in data_files(box).items() if k.startswith("./blobs/")}
    stats = box.run("/usr/local/sbin/guwah stats").stdout.splitlines()[0]
    return blobs, stats


def tree_snapshot(box: Container) -> str:
    """Modes, owners and contents of everything the installer writes."""
    return box.run(
        "find /etc /opt/guwah /usr/local/sbin /var/lib/tor -xdev \\( -type f -o -type d \\) "
        "-printf '%m %u:%g %p\\n' | sort; find /etc /opt/guwah /usr/local/sbin -xdev -type f "
        "-print0 | sort -z | xargs -0 sha256sum"
    ).stdout


def security_score(box: Container, unit: str) -> float:
    out = box.run(f"systemd-analyze security --no-pager {unit}").stdout
    m = re.search(rf"Overall exposure level for {re.escape(unit)}: ([0-9.]+)", out)
    assert m, out[-500:]
    return float(m.group(1))


def check_ciphertext_only(box: Container, marker: str, editor: dict[str, Path], tmp: Path) -> None:
    """The marker text is in no file of the data dir, every blob file is an age file (small
    ones, in the database, too), and the editor's key opens the blob files and finds it."""
    files = data_files(box)
    blobs = [name for name in files if name.startswith("./blobs/") and "/staging/" not in name]
    assert blobs, files  # the attachment is larger than what the database keeps inline
    database = b"".join(
        (box.root / "var/lib/guwah" / name).read_bytes() for name in files if ".sqlite3" in name
    )
    assert AGE_MAGIC in database  # the testimony text, sealed, kept inline
    for name in files:
        raw = (box.root / "var/lib/guwah" / name).read_bytes()
        assert marker.encode() not in raw, name
    opened = ""
    for i, name in enumerate(blobs):
        raw = (box.root / "var/lib/guwah" / name).read_bytes()
        assert raw.startswith(AGE_MAGIC), name
        out = tmp / f"open{i}"
        editor_cli = Path(sys.executable).with_name("guwah-editor")
        res = subprocess.run(
            [str(editor_cli), "decrypt", str(box.root / "var/lib/guwah" / name), "--out", str(out),
             "--keyring", str(editor["ring"]), "--passphrase-file", str(editor["pass"])],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
        opened += "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    assert marker in opened


def apparmor_statement(box: Container, log: str) -> str:
    state = box.run("aa-enabled", check=False)
    if state.returncode == 0:
        loaded = box.run("aa-status --profiled 2>/dev/null; aa-status 2>/dev/null", check=False)
        assert "system_tor" in loaded.stdout, loaded.stdout
        return "AppArmor: available in the container; tor's profile with Guwah's override loaded"
    assert "apparmor_parser" not in log, log
    return (
        f"AppArmor: NOT available in this container ({state.stdout.strip() or state.stderr.strip()}); "
        "the installer skipped apparmor_parser and tor runs unconfined here"
    )


def host_ruleset() -> str:
    res = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=False)
    return res.stdout + res.stderr


def check_running_install(box: Container, log: str, steps) -> str:  # type: ignore[no-untyped-def]
    """Units, live security score, firewall, AppArmor, listeners; returns the onion address."""
    assert unit_states(box) == dict.fromkeys(UNITS, "active")
    score = security_score(box, "guwah.service")
    print(f"live systemd-analyze security guwah.service: {score}")
    steps.record(f"(figure) live systemd-analyze security guwah.service = {score}", 0)
    assert score <= SECURITY_LIMIT
    assert security_score(box, "guwah-cleanup.service") <= SECURITY_LIMIT

    # Firewall: loaded in the container's network namespace (the host's is checked by caller).
    table = box.run("nft list table inet guwah").stdout
    assert "policy drop" in table and "icmpv6 type" in table, table
    print("nftables: loaded into the container's own network namespace")
    print(apparmor_statement(box, log))

    # Only the unix socket: no TCP/UDP listener in the machine, none in the app's namespace.
    assert tcp_listeners(box) == [], "a TCP/UDP listener in the container"
    assert tcp_listeners(box, main_pids(box)["guwah.service"]) == []
    hostname = box.run("cat /var/lib/tor/guwah/hostname").stdout.strip()
    assert re.fullmatch(r"[a-z2-7]{56}\.onion", hostname), hostname
    return hostname


def check_restart_and_reboot(box: Container, stored: tuple[dict[str, str], str], hostname: str,
                             steps) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    box.run("systemctl restart guwah.service")
    wait_for_site(box)
    assert kept_data(box) == stored

    steps.record("reboot to multi-user", box.reboot())
    wait_for_site(box)
    assert unit_states(box) == dict.fromkeys(UNITS, "active")
    assert kept_data(box) == stored
    assert box.run("cat /var/lib/tor/guwah/hostname").stdout.strip() == hostname
    assert "policy drop" in box.run("nft list table inet guwah").stdout  # nftables.service
    with site(box) as client:
        assert client.get("/submit").status_code == 200


def check_second_run_changes_nothing(box: Container, steps) -> None:  # type: ignore[no-untyped-def]
    before, pids = tree_snapshot(box), main_pids(box)
    run2 = steps.timed("install.sh, second run", install, box, "--editor-key", "/root/alice.pub",
                       "--source", "/srv/guwah-source")  # fmt: skip
    for sign in ("wrote ", "created ", "restart", "apt-get", "pip "):
        assert sign not in run2.stdout, run2.stdout
    assert tree_snapshot(box) == before
    assert main_pids(box) == pids


def check_uninstall(box: Container, stored: tuple[dict[str, str], str], steps) -> None:  # type: ignore[no-untyped-def]
    steps.timed("install.sh --uninstall", install, box, "--uninstall")
    assert box.run("systemctl cat guwah.service", check=False).returncode != 0
    after = data_files(box)
    assert {k: v for k, v in after.items() if k.startswith("./blobs/")} == stored[0]
    assert "./guwah.sqlite3" in after and "./server-signing-key" in after
    assert "installed by Guwah" not in box.run("cat /etc/tor/torrc").stdout
    assert box.run("nft list table inet guwah", check=False).returncode != 0
    assert box.run("getent passwd guwah", check=False).returncode == 0

    install(box, "--uninstall", "--purge-data", "--yes-really")
    gone = box.run("ls -d /var/lib/guwah /etc/guwah /var/lib/tor/guwah 2>&1; getent passwd guwah",
                   check=False).stdout  # fmt: skip
    assert gone.count("No such file or directory") == 3 and "guwah:" not in gone, gone


def test_install_on_minimal_debian(machine: Container, editor_pub, steps, tmp_path) -> None:  # type: ignore[no-untyped-def]
    box = machine
    host_rules = host_ruleset()
    missing = box.run("dpkg-query -W -f='${Status}' " + " ".join(ADDED_BY_INSTALLER), check=False)
    assert "install ok installed" not in missing.stdout  # a minimal image without netbase

    run1 = steps.timed("install.sh, first run", first_install, box, editor_pub)
    assert "onion address: http://" in run1.stdout, run1.stdout
    netbase = box.run("dpkg-query -W -f='${Status}' netbase", check=False).stdout
    assert netbase == "install ok installed"
    hostname = check_running_install(box, run1.stdout + run1.stderr, steps)
    assert host_ruleset() == host_rules  # the firewall never landed on the host

    wait_for_site(box)
    marker = "SYSTEM-TEST-MARKER the guards took him at night"
    attachment = b"\xff\xd8" + os.urandom(300_000) + marker.encode() + os.urandom(300_000)
    steps.timed("JS-off submission through the socket", submit_js_off, box, marker, attachment)
    check_ciphertext_only(box, marker, editor_pub, tmp_path)
    stored = kept_data(box)
    assert stored[1].startswith("submissions: 1  files: 2 "), stored  # testimony + photo

    check_restart_and_reboot(box, stored, hostname, steps)
    check_second_run_changes_nothing(box, steps)
    check_uninstall(box, stored, steps)


def test_rerun_after_half_way_failure(machine: Container, editor_pub, steps) -> None:  # type: ignore[no-untyped-def]
    """A first run that dies at the firewall (as on a minimal image without /etc/protocols)
    leaves tor on Debian's default config; the next run must converge on the running state."""
    box = machine
    assert tcp_listeners(box) != []  # tor as Debian starts it: SocksPort 9050
    fake_nft = box.root / "usr/local/sbin/nft"
    fake_nft.write_text("#!/bin/sh\necho 'Error: Could not resolve protocol name' >&2\nexit 1\n")
    fake_nft.chmod(0o755)
    failed = steps.timed("install.sh failing at nft", first_install, box, editor_pub, check=False)
    assert failed.returncode != 0 and "nft -f" in failed.stdout, failed.stdout + failed.stderr
    assert box.run("test -s /var/lib/tor/guwah/hostname", check=False).returncode != 0
    assert tcp_listeners(box) != []  # still Debian's tor config running
    fake_nft.unlink()

    rerun = steps.timed("install.sh re-run", install, box, "--editor-key", "/root/alice.pub",
                        "--source", "/srv/guwah-source")  # fmt: skip
    assert "onion address: http://" in rerun.stdout, rerun.stdout
    assert tcp_listeners(box) == []  # tor now runs the installer's torrc (SocksPort 0)
    assert "policy drop" in box.run("nft list table inet guwah").stdout
    assert unit_states(box) == dict.fromkeys(UNITS, "active")
    wait_for_site(box)

    # Drift without any file change: the ruleset flushed by hand, torrc touched after tor
    # started. A re-run reloads the one and restarts the other, and nothing else.
    box.run("nft delete table inet guwah; sleep 0.1; touch /etc/tor/torrc")
    pids = main_pids(box)
    drift = install(box, "--source", "/srv/guwah-source")
    assert "policy drop" in box.run("nft list table inet guwah").stdout
    new = main_pids(box)
    assert new["tor@default.service"] != pids["tor@default.service"], drift.stdout
    assert new["guwah.service"] == pids["guwah.service"], drift.stdout
    assert "wrote " not in drift.stdout

