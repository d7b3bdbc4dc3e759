"""Deploy: installer, systemd units, tor, AppArmor, nftables, editor-laptop bundle.

Everything runs against the real tools (tor, systemd-analyze, nft, apparmor_parser,
shellcheck, age). A missing tool is a failure that names the Debian package to install,
never a skip. Nothing here touches the host: the installer runs with --root into a temp dir.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.source_copy import source_copy

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
INSTALL = DEPLOY / "install.sh"
VENV_BIN = Path(sys.executable).parent
UNITS = ("guwah.service", "guwah-cleanup.service", "guwah-cleanup.timer")
SERVICES = ("guwah.service", "guwah-cleanup.service")
MAX_EXPOSURE = 2.0
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# tool -> Debian package that provides it
PACKAGES = {
    "tor": "tor",
    "systemd-analyze": "systemd",
    "nft": "nftables",
    "apparmor_parser": "apparmor",
    "shellcheck": "shellcheck",
    "age": "age",
    "age-keygen": "age",
    "unshare": "util-linux",
    "bash": "bash",
}


def need(tool: str) -> str:
    """Path of a required tool; fail (never skip) with the apt package that installs it."""
    found = shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found is None:
        pytest.fail(f"{tool} is not installed: apt-get install {PACKAGES.get(tool, tool)}")
    return found


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    need("bash")
    return run(["bash", str(INSTALL), "--root", str(root), *args])


def tree_digest(root: Path) -> str:
    """Hash of every path, its mode and (for files) its content under root."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        h.update(f"{p.relative_to(root)}\0{stat.filemode(st.st_mode)}\0".encode())
        if p.is_file():
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


@pytest.fixture(scope="module")
def editor_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An editor.pub made by the real `guwah-editor keygen` (X25519, so `age` can encrypt)."""
    d = tmp_path_factory.mktemp("editor")
    (d / "pass.txt").write_text("correct horse battery staple orange\n")
    res = run([str(VENV_BIN / "guwah-editor"), "keygen", "--name", "alice", "--x25519",
               "--keyring", str(d / "ring"), "--passphrase-file", str(d / "pass.txt"),
               "--work-factor", "10"])  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    pub = d / "alice.pub"
    shutil.copy(d / "ring" / "editor.pub", pub)
    return pub


@pytest.fixture(scope="module")
def ssh_client_auth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import base64

    import nacl.public

    key = nacl.public.PrivateKey.generate().public_key
    line = "descriptor:x25519:" + base64.b32encode(bytes(key)).decode().rstrip("=")
    path = tmp_path_factory.mktemp("sshauth") / "operator.auth"
    path.write_text(line + "\n")
    return path


# Host paths a real install writes: a --root run must leave every one of them as it was.
HOST_PATHS = (
    "/etc/guwah", "/opt/guwah", "/var/lib/guwah", "/usr/local/sbin/guwah",
    "/etc/systemd/system/guwah.service", "/etc/systemd/system/guwah-cleanup.timer",
    "/etc/tmpfiles.d/guwah.conf", "/etc/tor/torrc", "/etc/apparmor.d/local/system_tor",
    "/etc/nftables.d/guwah.nft", "/etc/nftables.conf", "/etc/systemd/journald.conf.d/guwah.conf",
    "/etc/apt/apt.conf.d/20auto-upgrades", "/etc/apt/apt.conf.d/52guwah-keep-config",
)  # fmt: skip


def host_state() -> dict[str, str | None]:
    state: dict[str, str | None] = {}
    for name in HOST_PATHS:
        p = Path(name)
        if p.is_file():
            state[name] = hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
        else:
            state[name] = "dir" if p.is_dir() else None
    return state


@pytest.fixture(scope="module")
def host_before() -> dict[str, str | None]:
    return host_state()


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory, editor_key: Path, host_before: dict) -> Path:
    """A default install (SQLite, SSH over TCP) staged under a temp root."""
    root = tmp_path_factory.mktemp("root")
    res = install(root, "--editor-key", str(editor_key))
    assert res.returncode == 0, res.stdout + res.stderr
    return root


@pytest.fixture(scope="module")
def staged_pg(
    tmp_path_factory: pytest.TempPathFactory,
    editor_key: Path,
    ssh_client_auth: Path,
    host_before: dict,
) -> Path:
    """PostgreSQL over TCP + SSH only as an onion service with client authorization."""
    root = tmp_path_factory.mktemp("rootpg")
    res = install(
        root,
        "--editor-key", str(editor_key),
        "--database-url", PG_URL,
        "--ssh-onion-only",
        "--ssh-client-auth", str(ssh_client_auth),
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    return root


# --------------------------------------------------------------------------------------
# install.sh itself


def test_help_lists_every_option() -> None:
    res = run(["bash", str(INSTALL), "--help"])
    assert res.returncode == 0
    for opt in (
        "--root", "--editor-key", "--database-url", "--ssh-onion", "--ssh-client-auth",
        "--ssh-onion-only", "--uninstall", "--purge-data", "--yes-really", "--source",
    ):  # fmt: skip
        assert opt in res.stdout
    res = run(["bash", str(DEPLOY / "editor-laptop/make-bundle.sh"), "--help"])
    assert res.returncode == 0 and "--python-version" in res.stdout and "--platform" in res.stdout
    assert "--with-media-tools" in res.stdout


def test_shellcheck_clean_for_every_script() -> None:
    shellcheck = need("shellcheck")
    shebang = re.compile(rb"#!\s*(/usr)?/bin/(env\s+)?(ba|da)?sh\b")
    scripts = [
        p
        for p in sorted(DEPLOY.rglob("*"))
        if p.is_file() and (shebang.match(p.read_bytes()[:64]) or p.suffix == ".sh")
    ]
    for expected in (INSTALL, DEPLOY / "editor-laptop/make-bundle.sh", DEPLOY / "bin/guwah"):
        assert expected in scripts
    res = run([shellcheck, "--external-sources", *map(str, scripts)])
    assert res.returncode == 0, res.stdout + res.stderr


def test_second_run_changes_nothing(staged: Path, editor_key: Path) -> None:
    before = tree_digest(staged)
    res = install(staged, "--editor-key", str(editor_key))
    assert res.returncode == 0, res.stderr
    assert "wrote" not in res.stdout and "created" not in res.stdout
    assert tree_digest(staged) == before


def test_second_run_keeps_database_url_and_ssh_choice(
    staged_pg: Path, editor_key: Path, ssh_client_auth: Path
) -> None:
    before = tree_digest(staged_pg)
    # --database-url not repeated: the installed value is kept.
    res = install(
        staged_pg, "--editor-key", str(editor_key), "--ssh-onion-only",
        "--ssh-client-auth", str(ssh_client_auth),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert tree_digest(staged_pg) == before


def test_staging_touches_nothing_on_the_host_and_records_commands(
    staged: Path, staged_pg: Path, host_before: dict
) -> None:
    assert host_state() == host_before
    actions = (staged / "install-actions.txt").read_text()
    for expected in (
        "apt-get install",
        "useradd --system",
        "/usr/local/sbin/guwah init",
        "/usr/local/sbin/guwah recipients add /etc/guwah/editors/alice.pub",
        "systemctl enable --now guwah.service guwah-cleanup.timer",
        "/usr/local/sbin/guwah server-key",
        "chown guwah:guwah /var/lib/guwah",
        "chown root:guwah /etc/guwah/guwah.env",
    ):
        assert expected in actions


def test_file_modes(staged: Path) -> None:
    def mode(rel: str) -> int:
        return stat.S_IMODE((staged / rel).stat().st_mode)

    assert mode("var/lib/guwah") == 0o700
    assert mode("etc/guwah") == 0o750
    assert mode("etc/guwah/guwah.env") == 0o640
    assert mode("etc/guwah/editors/alice.pub") == 0o640
    for unit in UNITS:
        assert mode(f"etc/systemd/system/{unit}") == 0o644
    for rel in (
        "etc/tor/torrc",
        "etc/apparmor.d/local/system_tor",
        "etc/nftables.d/guwah.nft",
        "etc/tmpfiles.d/guwah.conf",
        "etc/systemd/journald.conf.d/guwah.conf",
        "etc/systemd/coredump.conf.d/guwah.conf",
        "etc/apt/apt.conf.d/20auto-upgrades",
        "etc/apt/apt.conf.d/52guwah-keep-config",
    ):
        assert mode(rel) == 0o644, rel
    assert mode("usr/local/sbin/guwah") == 0o755
    # Nothing is group- or world-writable anywhere in the staged tree.
    for p in staged.rglob("*"):
        assert not p.lstat().st_mode & 0o022, p


def test_ssh_onion_files(staged_pg: Path, ssh_client_auth: Path) -> None:
    d = staged_pg / "var/lib/tor/ssh"
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "authorized_clients").stat().st_mode) == 0o700
    auth = d / "authorized_clients/operator.auth"
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert auth.read_text() == ssh_client_auth.read_text()
    assert (
        "chown debian-tor:debian-tor /var/lib/tor/ssh/authorized_clients/operator.auth"
        in (staged_pg / "install-actions.txt").read_text()
    )
    env = (staged_pg / "etc/guwah/guwah.env").read_text()
    assert f"GUWAH_DATABASE_URL={PG_URL}\n" in env


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--editor-key", "/nonexistent.pub"], "cannot read editor key file"),
        (["--editor-key", "{notakey}"], "is not an editor.pub written by guwah-editor keygen"),
        (["--database-url", "mysql://x"], "must start with"),
        (["--database-url", "postgresql://u:pa$$@h/db"], "percent-encode"),
        (["--ssh-onion"], "needs at least one --ssh-client-auth"),
        (["--ssh-onion", "--ssh-client-auth", "{notakey}"], "52-character base32"),
        (["--purge-data"], "only goes with --uninstall"),
        (["--frobnicate"], "unknown option"),
    ],
)
def test_bad_options_fail_with_one_line_and_write_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    junk = tmp_path / "not-a-key.txt"
    junk.write_text("hello\n")
    args = [str(junk) if a == "{notakey}" else a for a in args]
    root = tmp_path / "root"
    res = install(root, *args)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("guwah-install: error:"), res.stderr
    assert message in lines[0]
    assert "Traceback" not in res.stderr
    assert not root.exists() or not any(root.iterdir())


def test_uninstall_keeps_data_and_purge_asks(tmp_path: Path, editor_key: Path) -> None:
    root = tmp_path / "root"
    assert install(root, "--editor-key", str(editor_key)).returncode == 0
    (root / "var/lib/guwah/db.sqlite").write_bytes(b"ciphertext only")
    (root / "var/lib/tor/guwah").mkdir(parents=True)
    (root / "var/lib/tor/guwah/hs_ed25519_secret_key").write_bytes(b"k")

    res = install(root, "--uninstall")
    assert res.returncode == 0, res.stderr
    for unit in UNITS:
        assert not (root / "etc/systemd/system" / unit).exists()
    assert not (root / "etc/nftables.d/guwah.nft").exists()
    assert not (root / "usr/local/sbin/guwah").exists()
    assert (root / "var/lib/guwah/db.sqlite").exists()
    assert (root / "var/lib/tor/guwah/hs_ed25519_secret_key").exists()
    assert (root / "etc/guwah/guwah.env").exists()

    # No terminal and no --yes-really: refuses, deletes nothing.
    res = run(["bash", str(INSTALL), "--root", str(root), "--uninstall", "--purge-data"],
              stdin=subprocess.DEVNULL)  # fmt: skip
    assert res.returncode != 0 and "--yes-really" in res.stderr
    assert (root / "var/lib/guwah/db.sqlite").exists()

    res = install(root, "--uninstall", "--purge-data", "--yes-really")
    assert res.returncode == 0, res.stderr
    assert not (root / "var/lib/guwah").exists()
    assert not (root / "etc/guwah").exists()
    assert not (root / "var/lib/tor/guwah").exists()
    assert "userdel guwah" in (root / "install-actions.txt").read_text()


# --------------------------------------------------------------------------------------
# tor


def _tor_check_copy(staged_root: Path, tmp_path: Path) -> Path:
    """The staged torrc with /var/lib/tor/ moved under tmp_path (the shipped file is unchanged)."""
    hs = tmp_path / "hs"
    hs.mkdir(mode=0o700)
    text = (staged_root / "etc/tor/torrc").read_text().replace("/var/lib/tor/", f"{hs}/")
    copy = tmp_path / "torrc"
    copy.write_text(text)
    return copy


@pytest.mark.parametrize("variant", ["staged", "staged_pg"])
def test_tor_verify_config(variant: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    tor = need("tor")
    staged_root: Path = request.getfixturevalue(variant)
    copy = _tor_check_copy(staged_root, tmp_path)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    cmd = [tor, "--verify-config", "-f", str(copy), "--DataDirectory", str(data)]
    defaults = Path("/usr/share/tor/tor-service-defaults-torrc")
    if defaults.exists():  # as Debian's tor@default.service runs it, minus the switch to
        # user debian-tor, who could not read this test's private temp dir.
        lines = defaults.read_text().splitlines()
        check_defaults = tmp_path / "defaults-torrc"
        check_defaults.write_text("\n".join(x for x in lines if not x.startswith("User ")) + "\n")
        cmd[1:1] = ["--defaults-torrc", str(check_defaults)]
    res = run(cmd)
    assert res.returncode == 0 and "Configuration was valid" in res.stdout, res.stdout + res.stderr

    # The check has teeth: a broken line is refused.
    copy.write_text(copy.read_text() + "HiddenServicePort eighty nowhere\n")
    assert run(cmd).returncode != 0


def _torrc_options(root: Path) -> list[tuple[str, str]]:
    out = []
    for line in (root / "etc/tor/torrc").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out.append((key, value.strip()))
    return out


def test_torrc_contents(staged: Path, staged_pg: Path) -> None:
    opts = _torrc_options(staged)
    keys = [k.lower() for k, _ in opts]
    for forbidden in ("hiddenservicesinglehopmode", "hiddenservicenonanonymousmode"):
        assert forbidden not in keys
    d = dict(opts)
    assert d["SocksPort"] == "0"
    assert d["SafeLogging"] == "1"
    assert d["HiddenServiceDir"] == "/var/lib/tor/guwah/"
    assert d["HiddenServiceVersion"] == "3"
    assert d["HiddenServicePort"] == "80 unix:/run/guwah/guwah.sock"
    assert d["HiddenServicePoWDefensesEnabled"] == "1"
    assert d["HiddenServiceEnableIntroDoSDefense"] == "1"
    logs = [v for k, v in opts if k == "Log"]
    assert logs and all(re.fullmatch(r"notice (syslog|stdout|stderr)", v) for v in logs), logs
    assert "/var/lib/tor/ssh/" not in [v for k, v in opts if k == "HiddenServiceDir"]

    pg = _torrc_options(staged_pg)
    assert ("HiddenServiceDir", "/var/lib/tor/ssh/") in pg
    assert ("HiddenServicePort", "22 127.0.0.1:22") in pg


# --------------------------------------------------------------------------------------
# AppArmor


def test_apparmor_override_parses_inside_debian_tor_profile(staged: Path, tmp_path: Path) -> None:
    parser = need("apparmor_parser")
    profile = Path("/etc/apparmor.d/system_tor")
    if not profile.exists():
        pytest.fail("Debian's tor AppArmor profile is missing: apt-get install tor apparmor")
    tree = tmp_path / "apparmor.d"
    shutil.copytree("/etc/apparmor.d", tree, symlinks=True)
    shutil.copy(staged / "etc/apparmor.d/local/system_tor", tree / "local/system_tor")
    base = [parser, "--base", str(tree), "--Include", str(tree)]
    res = run([*base, "--skip-kernel-load", "--skip-cache", str(tree / "system_tor")])
    assert res.returncode == 0, res.stderr
    pre = run([*base, "--preprocess", str(tree / "system_tor")])
    assert pre.returncode == 0, pre.stderr
    assert "/{,var/}run/guwah/guwah.sock rw," in pre.stdout  # really included

    (tree / "local/system_tor").write_text("this is { not apparmor\n")
    res = run([*base, "--skip-kernel-load", "--skip-cache", str(tree / "system_tor")])
    assert res.returncode != 0  # the check has teeth


# --------------------------------------------------------------------------------------
# nftables


def _nft_in_netns(ruleset: Path) -> dict:
    """Load the ruleset into a fresh network namespace and return the table as JSON."""
    nft = need("nft")
    res = run([nft, "-c", "-f", str(ruleset)])
    assert res.returncode == 0, res.stderr
    res = run([need("unshare"), "--net", "--", "sh", "-c",
               f"{nft} -f {shlex.quote(str(ruleset))} && {nft} -j list table inet guwah"])  # fmt: skip
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _chains(data: dict) -> dict[str, dict]:
    return {e["chain"]["name"]: e["chain"] for e in data["nftables"] if "chain" in e}


def _dports(data: dict) -> list[object]:
    found = []
    for e in data["nftables"]:
        for expr in e.get("rule", {}).get("expr", []):
            m = expr.get("match", {})
            if m.get("left", {}).get("payload", {}).get("field") == "dport":
                found.append(m["right"])
    return found


def test_nftables_ruleset(staged: Path, staged_pg: Path) -> None:
    data = _nft_in_netns(staged / "etc/nftables.d/guwah.nft")
    chains = _chains(data)
    assert chains["input"]["policy"] == "drop" and chains["input"]["hook"] == "input"
    assert chains["forward"]["policy"] == "drop"
    assert chains["output"]["policy"] == "accept"
    assert 22 in _dports(data)

    only = _nft_in_netns(staged_pg / "etc/nftables.d/guwah.nft")
    assert _chains(only)["input"]["policy"] == "drop"
    assert 22 not in _dports(only)  # --ssh-onion-only closes TCP 22


# --------------------------------------------------------------------------------------
# systemd


def _check_copy(root: Path, tmp_path: Path) -> Path:
    """Units (+ drop-ins) with the venv path pointed at this test venv, which exists here."""
    d = tmp_path / "units"
    d.mkdir(parents=True)
    src = root / "etc/systemd/system"
    for p in src.rglob("*"):
        if p.is_file():
            dest = d / p.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(p.read_text().replace("/opt/guwah/venv/bin/", f"{VENV_BIN}/"))
    assert (VENV_BIN / "guwah").exists(), "pip install -e . must have created the guwah script"
    return d


@pytest.mark.parametrize("variant", ["staged", "staged_pg"])
def test_systemd_analyze_verify_is_silent(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    analyze = need("systemd-analyze")
    units = _check_copy(request.getfixturevalue(variant), tmp_path)
    for unit in UNITS:
        res = run([analyze, "verify", str(units / unit)], cwd=units)
        assert res.returncode == 0 and res.stderr == "", f"{unit}: {res.stderr}"
    # The check has teeth: an unknown key is reported.
    bad = units / "guwah.service"
    bad.write_text(bad.read_text().replace("[Service]", "[Service]\nProtectEverything=yes"))
    assert "Unknown key" in run([analyze, "verify", str(bad)], cwd=units).stderr


def exposure(unit: Path) -> float:
    res = run([need("systemd-analyze"), "security", "--offline=yes", str(unit)], cwd=unit.parent)
    assert res.returncode == 0, res.stderr
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout)
    assert m, res.stdout
    return float(m.group(1))


@pytest.mark.parametrize("variant", ["staged", "staged_pg"])
def test_systemd_analyze_security_score(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    root = request.getfixturevalue(variant)
    units = _check_copy(root, tmp_path)
    for svc in SERVICES:
        score = exposure(units / svc)
        print(f"{variant} {svc}: exposure {score}")
        assert score <= MAX_EXPOSURE, f"{svc}: {score}"
    if variant == "staged_pg":  # the drop-in is really applied: network opened to the DB only
        dropin = (units / "guwah.service.d/50-postgresql.conf").read_text()
        assert "IPAddressAllow=127.0.0.1" in dropin and "AF_INET" in dropin
        assert exposure(units / "guwah.service") > exposure(
            _check_copy(request.getfixturevalue("staged"), tmp_path / "plain") / "guwah.service"
        )


def unit_settings(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_unit_hardening_settings(staged: Path) -> None:
    s = unit_settings(staged / "etc/systemd/system/guwah.service")
    expect = {
        "User": "guwah", "UMask": "0077", "ProtectSystem": "strict", "PrivateTmp": "yes",
        "PrivateDevices": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX", "IPAddressDeny": "any",
        "SystemCallArchitectures": "native", "MemoryDenyWriteExecute": "yes", "LimitCORE": "0",
        "ProtectHome": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes", "ProtectClock": "yes", "ProtectHostname": "yes",
        "ProtectProc": "invisible", "ProcSubset": "pid", "RestrictNamespaces": "yes",
        "LockPersonality": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes",
        "PrivateUsers": "yes", "RemoveIPC": "yes", "DevicePolicy": "closed",
        "KeyringMode": "private", "Environment": "TMPDIR=/run/guwah-tmp", "PrivateNetwork": "yes",
    }  # fmt: skip
    for key, value in expect.items():
        assert s.get(key) == [value], (key, s.get(key))
    assert "@system-service" in s["SystemCallFilter"]
    assert s["ReadWritePaths"] == ["/var/lib/guwah /run/guwah"]
    assert s["ExecStart"] == ["/opt/guwah/venv/bin/guwah serve --socket /run/guwah/guwah.sock"]
    tmpfiles = (staged / "etc/tmpfiles.d/guwah.conf").read_text()
    assert "d /run/guwah 2750 guwah debian-tor -" in tmpfiles
    timer = unit_settings(staged / "etc/systemd/system/guwah-cleanup.timer")
    assert timer["OnCalendar"] == ["hourly"] and timer["RandomizedDelaySec"]
    cleanup = unit_settings(staged / "etc/systemd/system/guwah-cleanup.service")
    assert cleanup["ExecStart"] == ["/opt/guwah/venv/bin/guwah cleanup"]


def test_journald_and_updates_config(staged: Path) -> None:
    j = unit_settings(staged / "etc/systemd/journald.conf.d/guwah.conf")
    assert j["Storage"] == ["volatile"] and j["ForwardToSyslog"] == ["no"]
    assert j["ForwardToWall"] == ["no"] and j["ForwardToConsole"] == ["no"]
    assert unit_settings(staged / "etc/systemd/coredump.conf.d/guwah.conf")["Storage"] == ["none"]
    apt = (staged / "etc/apt/apt.conf.d/20auto-upgrades").read_text()
    assert 'APT::Periodic::Unattended-Upgrade "1";' in apt
    keep = (staged / "etc/apt/apt.conf.d/52guwah-keep-config").read_text()
    assert '"--force-confold";' in keep
    for name, expected in (("20auto-upgrades", "Unattended-Upgrade"), ("52guwah-keep-config",
                           "--force-confold")):  # fmt: skip
        res = run(["apt-config", "-c", str(staged / "etc/apt/apt.conf.d" / name), "dump"])
        assert res.returncode == 0 and expected in res.stdout, res.stderr


# --------------------------------------------------------------------------------------
# MemoryDenyWriteExecute=yes: the crypto and server stack must work under W^X.

MDWE_PRELUDE = textwrap.dedent(
    f"""
    import sys
    sys.path.insert(0, {str(REPO / "tests")!r})
    import deploy_wx
    assert not deploy_wx.enforced()
    deploy_wx.apply()
    if not deploy_wx.enforced():
        raise SystemExit("W^X is not enforced")
    """
)


def _set_mdwe() -> None:
    """preexec_fn: MemoryDenyWriteExecute=yes (seccomp rule of systemd 252 + PR_SET_MDWE)."""
    sys.path.insert(0, str(REPO / "tests"))
    import deploy_wx

    deploy_wx.apply()


def test_crypto_works_under_memory_deny_write_execute() -> None:
    code = MDWE_PRELUDE + textwrap.dedent(
        """
        import hashlib, sqlite3, tempfile, os
        from app.crypto import (encrypt, decrypt, X25519Identity, HybridIdentity,
                                ScryptRecipient, ScryptIdentity)
        from nacl.public import PrivateKey, Box
        from cryptography.hazmat.primitives import hpke
        msg = os.urandom(100_000)
        for ident in (X25519Identity.generate(), HybridIdentity.generate()):
            assert decrypt(encrypt(msg, [ident.recipient()]), [ident]) == msg
        assert decrypt(encrypt(msg, [ScryptRecipient("pw", 10)]), [ScryptIdentity("pw")]) == msg
        a, b = PrivateKey.generate(), PrivateKey.generate()
        assert Box(b, a.public_key).decrypt(Box(a, b.public_key).encrypt(b"x")) == b"x"
        hashlib.scrypt(b"pw", salt=b"s" * 16, n=2**14, r=8, p=1)
        suite = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256,
                           hpke.AEAD.CHACHA20_POLY1305)
        # server stack imports and databases
        import fastapi, uvicorn, sqlalchemy, jinja2, psycopg  # noqa
        with tempfile.TemporaryDirectory() as d:
            db = sqlite3.connect(os.path.join(d, "t.sqlite"))
            db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA secure_delete=ON")
            db.execute("create table t(x)"); db.execute("insert into t values (1)"); db.commit()
        with psycopg.connect("host=127.0.0.1 dbname=test user=postgres") as c:
            assert c.execute("select 1").fetchone() == (1,)
        import cffi
        try:
            cffi.FFI().callback("int(int)", lambda x: x)
        except MemoryError:
            pass  # expected: old-style cffi callbacks need W+X memory; nothing of ours uses them
        else:
            raise SystemExit("ffi.callback worked: W^X is not what systemd enforces")
        print("W^X OK")
        """
    )
    res = run([sys.executable, "-c", code], cwd=REPO)
    assert res.returncode == 0 and "W^X OK" in res.stdout, res.stdout + res.stderr


# --------------------------------------------------------------------------------------
# The app as guwah.service runs it.


def _unit_env(root: Path, unit: Path) -> dict[str, str]:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    s = unit_settings(unit)
    for ef in s.get("EnvironmentFile", []):
        path = root / ef.lstrip("-").lstrip("/")
        for line in path.read_text().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.partition("=")
                env[k] = v
    for e in s.get("Environment", []):
        for item in shlex.split(e):
            k, _, v = item.partition("=")
            env[k] = v
    return env


@pytest.fixture(scope="module")
def installed_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with guwah installed from its wheel, as install.sh does in /opt/guwah/venv.

    The wheel (not the source tree) is what runs in production, so templates, migrations and
    static files must be inside it. Third-party packages come from this test venv (a .pth
    line) so that no download is needed.
    """
    d = tmp_path_factory.mktemp("opt")
    with source_copy() as source:
        res = run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                   "--wheel-dir", str(d / "wheels"), str(source)])  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    wheel = next((d / "wheels").glob("guwah-*.whl"))
    venv = d / "venv"
    res = run([str(Path(sys.base_prefix) / "bin" / "python3"), "-m", "venv", str(venv)])
    assert res.returncode == 0, res.stderr
    site_dirs = list(venv.glob("lib/python3*/site-packages"))
    dev_site = [p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)]
    (site_dirs[0] / "guwah-test-deps.pth").write_text("\n".join(dev_site) + "\n")
    res = run([str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--no-deps",
               "--no-index", str(wheel)])  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    where = run([str(venv / "bin/python"), "-c", "import app; print(app.__file__)"], cwd="/")
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    return venv


def test_app_serves_through_the_unit_socket(
    staged: Path, editor_key: Path, installed_app: Path, tmp_path: Path
) -> None:
    """Runs ExecStart of the staged guwah.service as systemd would, as closely as a test can:
    the installed wheel, the unit's environment, cwd /, UMask=0077, LimitCORE=0,
    MemoryDenyWriteExecute (PR_SET_MDWE), PrivateNetwork (own network namespace), and
    ProtectSystem=strict + ReadWritePaths (own mount namespace, / read-only, only the data
    dir, socket dir and private TMPDIR writable). Then fetches a page through the socket.
    """
    import httpx

    unit = staged / "etc/systemd/system/guwah.service"
    settings = unit_settings(unit)
    argv = shlex.split(settings["ExecStart"][0])
    assert argv[0] == "/opt/guwah/venv/bin/guwah"
    sock_index = argv.index("--socket") + 1
    assert argv[sock_index] == "/run/guwah/guwah.sock"

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir(mode=0o700)  # PrivateTmp=yes
    rundir = tmp_path / "run"
    rundir.mkdir(mode=0o2750)
    sock = rundir / "guwah.sock"

    env = _unit_env(staged, unit)
    assert env["GUWAH_DATA_DIR"] == "/var/lib/guwah" and env["TMPDIR"] == "/run/guwah-tmp"
    env["GUWAH_DATA_DIR"] = str(data)
    env["TMPDIR"] = str(private_tmp)
    guwah = str(installed_app / "bin/guwah")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run([guwah, *args], env=env, cwd="/")

    for args in (("init",), ("migrate",), ("recipients", "add", str(editor_key))):
        res = cli(*args)
        assert res.returncode == 0, f"guwah {' '.join(args)}: {res.stdout}{res.stderr}"

    argv[0] = guwah
    argv[sock_index] = str(sock)

    def preexec() -> None:
        os.umask(0o077)  # UMask=0077
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # LimitCORE=0
        _set_mdwe()  # MemoryDenyWriteExecute=yes

    writable = [str(data), str(rundir), str(private_tmp)]  # ReadWritePaths + PrivateTmp
    sandbox = "; ".join(
        ["set -e", "mount --make-rprivate /"]
        + [f"mount --bind {shlex.quote(p)} {shlex.quote(p)}" for p in writable]
        + ["mount -o remount,bind,ro /", 'exec "$@"']
    )
    proc = subprocess.Popen(
        [need("unshare"), "--mount", "--net", "--", "sh", "-c", sandbox, "sh", *argv],
        env=env,
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec,
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out, err = proc.communicate()
                pytest.fail(f"guwah serve did not create its socket: {out}{err}")
            time.sleep(0.1)
        st = sock.stat()
        assert stat.S_ISSOCK(st.st_mode)
        # tor (group debian-tor via the setgid socket dir) must be able to connect.
        assert stat.S_IMODE(st.st_mode) & 0o060 == 0o060, oct(st.st_mode)
        transport = httpx.HTTPTransport(uds=str(sock))
        with httpx.Client(transport=transport, base_url="http://guwahexample.onion") as client:
            for _ in range(100):
                try:
                    r = client.get("/")
                    break
                except httpx.ConnectError:
                    time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    logs = out + err
    assert r.status_code == 200, f"status {r.status_code}; server log:\n{logs}"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers.get("referrer-policy") == "no-referrer"
    assert "uvicorn" not in r.headers.get("server", "").lower()
    assert "<html" in r.text.lower()
    assert "GET /" not in logs, "access log must be off"
    assert "Traceback" not in logs, logs
    assert list(private_tmp.iterdir()) == [], "nothing may be left in TMPDIR"
    for p in data.rglob("*"):
        assert not p.stat().st_mode & 0o077, f"{p} is readable by others"


# --------------------------------------------------------------------------------------
# Editor laptop bundle.


@pytest.mark.slow
def test_editor_bundle_installs_offline_and_decrypts(tmp_path: Path) -> None:
    age = need("age")
    bundle = tmp_path / "bundle"
    res = run(
        ["bash", str(DEPLOY / "editor-laptop/make-bundle.sh"), "--out", str(bundle),
         "--python", sys.executable],
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    reqs = (bundle / "requirements.txt").read_text()
    names = {line.split("==")[0].lower() for line in reqs.splitlines() if "==" in line}
    assert "guwah" in names and "pynacl" in names and "cryptography" in names
    assert "jinja2" in names and "markupsafe" in names  # the review index's template
    assert not names & {"fastapi", "uvicorn", "sqlalchemy", "starlette", "alembic", "psycopg"}
    assert all("--hash=sha256:" in line for line in reqs.splitlines() if "==" in line)
    sc = run([need("shellcheck"), str(bundle / "install.sh")])
    assert sc.returncode == 0, sc.stdout

    # A laptop with no network: no index, no pip config, no find-links but the bundle's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_NO_INDEX="1", PIP_CONFIG_FILE="/dev/null", HOME=str(tmp_path / "home"))
    env["PYTHON"] = str(Path(sys.base_prefix) / "bin" / "python3")
    venv = tmp_path / "laptop-venv"
    res = run(["sh", str(bundle / "install.sh"), str(venv)], env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    editor = str(venv / "bin" / "guwah-editor")
    assert run([editor, "--help"], env=env).returncode == 0
    assert run([str(venv / "bin/python"), "-c", "import fastapi"], env=env).returncode != 0

    # A tampered bundle is refused before anything is installed.
    wheel = next((bundle / "wheels").glob("guwah-*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"x")
    bad = run(["sh", str(bundle / "install.sh"), str(tmp_path / "venv2")], env=env)
    assert bad.returncode != 0 and "SHA256SUMS" in bad.stderr
    assert not (tmp_path / "venv2").exists()

    # keygen, then decrypt a file made by the real age CLI.
    ring = tmp_path / "keyring"
    pw = tmp_path / "pass.txt"
    pw.write_text("correct horse battery staple orange\n")
    res = run([editor, "keygen", "--name", "desk", "--x25519", "--keyring", str(ring),
               "--passphrase-file", str(pw), "--work-factor", "10"], env=env)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    recipient = re.search(r"age1[0-9a-z]+", (ring / "editor.pub").read_text())
    assert recipient, (ring / "editor.pub").read_text()
    plain = tmp_path / "testimony.txt"
    plain.write_bytes("شاھىت — witness — свидетель\n".encode() * 1000)
    sealed = tmp_path / "testimony.txt.age"
    res = run([age, "-r", recipient.group(0), "-o", str(sealed), str(plain)])
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    res = run([editor, "decrypt", str(sealed), "--out", str(out), "--keyring", str(ring),
               "--passphrase-file", str(pw)], env=env)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    produced = [p for p in out.rglob("*") if p.is_file()]
    assert len(produced) == 1 and produced[0].read_bytes() == plain.read_bytes()


# --------------------------------------------------------------------------------------
# Real mode (apt, useradd, venv, guwah init ...) in an overlay of the host.

REAL_INNER = r"""
set -u
snap() {
	find /etc /opt/guwah /var/lib/guwah /usr/local/sbin /var/lib/tor /run/guwah -xdev \
		\( -type f -o -type d \) -printf '%m %u:%g %p\n' | sort
	find /etc /opt/guwah /var/lib/guwah /usr/local/sbin -xdev -type f -print0 | sort -z |
		xargs -0 sha256sum
}
cp /etc/nftables.conf /tmp/nftables.conf.orig
cp /etc/tor/torrc /tmp/torrc.orig
cp /etc/apparmor.d/local/system_tor /tmp/aa.orig
/tmp/src/deploy/install.sh --editor-key /tmp/alice.pub --source /tmp/src >/tmp/run1.log 2>&1
echo "RC1=$?"
snap >/tmp/s1
: >/var/log/guwah-stub.log
/tmp/src/deploy/install.sh --editor-key /tmp/alice.pub --source /tmp/src >/tmp/run2.log 2>&1
echo "RC2=$?"
snap >/tmp/s2
cp /var/log/guwah-stub.log /tmp/stub2.log
grep -c '^include "/etc/nftables.d/guwah.nft"$' /etc/nftables.conf >/tmp/nft-includes.txt
/usr/local/sbin/guwah recipients list >/tmp/recipients.txt 2>&1
/tmp/src/deploy/install.sh --uninstall >/tmp/run3.log 2>&1
echo "RC3=$?"
for pair in /etc/nftables.conf:/tmp/nftables.conf.orig /etc/tor/torrc:/tmp/torrc.orig \
	/etc/apparmor.d/local/system_tor:/tmp/aa.orig; do
	cmp "${pair%%:*}" "${pair#*:}" >/dev/null 2>&1 && echo "restored ${pair%%:*}" ||
		echo "CHANGED ${pair%%:*}"
done >/tmp/nft-restored.txt
for f in run1.log run2.log stub2.log recipients.txt run3.log nft-includes.txt nft-restored.txt; do
	echo "=== $f"; cat "/tmp/$f"
done
echo "=== diff"; diff /tmp/s1 /tmp/s2 && echo "(identical)"
echo "=== snap1"; cat /tmp/s1
echo "=== after-uninstall"
ls -d /etc/systemd/system/guwah.service /opt/guwah /usr/local/sbin/guwah 2>&1
ls -d /var/lib/guwah /etc/guwah/guwah.env /var/lib/guwah/guwah.sqlite3
"""


def _sections(out: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    name = "head"
    for line in out.splitlines(keepends=True):
        if line.startswith("=== "):
            name = line[4:].strip()
            parts[name] = ""
        else:
            parts[name] = parts.get(name, "") + line
    return parts


@pytest.mark.slow
def test_real_mode_install_in_overlay(editor_key: Path, tmp_path: Path) -> None:
    """The real (not --root) path: apt, useradd, venv from the wheel, guwah init/migrate/
    recipients add through /usr/local/sbin/guwah, units, tor, firewall (checked only),
    twice (the second run must change nothing), then --uninstall. The host is untouched:
    everything happens in a chroot over an overlay of / (see tests/deploy_realmode.py)."""
    sys.path.insert(0, str(REPO / "tests"))
    from deploy_realmode import run_in_overlay

    need("unshare")
    res = run_in_overlay(tmp_path, REPO, editor_key, REAL_INNER)
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    s = _sections(out)
    assert "RC1=0" in s["head"], s.get("run1.log", out)
    assert "RC2=0" in s["head"], s.get("run2.log", out)
    assert "RC3=0" in s["head"], s.get("run3.log", out)

    run1 = s["run1.log"]
    assert "onion address: http://" in run1
    assert re.search(r"^fingerprint: \S+", run1, re.M), run1  # guwah server-key
    fingerprint = re.search(r"^fingerprint: (\S+)", editor_key.read_text(), re.M).group(1)  # type: ignore[union-attr]
    assert fingerprint in s["recipients.txt"]

    # Second run: nothing written, nothing installed, the editor key not added again.
    run2 = s["run2.log"]
    assert "wrote " not in run2 and "created " not in run2, run2
    assert "apt-get" not in run2 and "pip" not in run2, run2
    assert "recipients add" not in s["stub2.log"]
    assert "(identical)" in s["diff"], s["diff"]

    snap = s["snap1"]
    expect = {
        "/var/lib/guwah": "700 guwah:guwah",
        "/etc/guwah": "750 root:guwah",
        "/etc/guwah/guwah.env": "640 root:guwah",
        "/etc/guwah/editors/alice.pub": "640 root:guwah",
        "/opt/guwah/venv": "755 root:root",
        "/etc/systemd/system/guwah.service": "644 root:root",
        "/etc/tor/torrc": "644 root:root",
        "/run/guwah": "2750 guwah:debian-tor",
    }
    for path, mode_owner in expect.items():
        assert f"{mode_owner} {path}\n" in snap, (path, mode_owner)
    for line in snap.splitlines():
        # mode lines look like "600 guwah:guwah /var/lib/guwah/x"; hash lines do not
        if re.match(r"^[0-7]{3,4} \S+:\S+ /var/lib/guwah/", line):
            mode = line.split()[0]
            assert mode in ("600", "700"), line  # nothing of the data dir readable by others

    assert s["nft-includes.txt"].strip() == "1"  # appended once, not again on the second run
    # Uninstall puts back exactly what Debian had.
    assert "CHANGED" not in s["nft-restored.txt"] and s["nft-restored.txt"].count("restored") == 3

    after = s["after-uninstall"]
    for gone in ("/etc/systemd/system/guwah.service", "/opt/guwah", "/usr/local/sbin/guwah"):
        assert f"cannot access '{gone}'" in after, after
    for kept in ("/var/lib/guwah", "/etc/guwah/guwah.env", "/var/lib/guwah/guwah.sqlite3"):
        assert f"{kept}\n" in after and f"cannot access '{kept}'" not in after, after
