"""A private Tor network on 127.0.0.1 for the system tests: never the public one.

Every torrc written here has ``TestingTorNetwork 1`` and names only this network's own
directory authority (made with ``tor-gencert``), so no tor started here can even learn a public
relay's address. Layout: one authority, four relays (all ``AssumeReachable 1``: on loopback
the reachability self-test sometimes never succeeds), then a client (SOCKS port) and an onion
service. Voting intervals are shortened so a consensus exists within seconds.

Bring-up is bounded (``BRING_UP_SECONDS``) and polls files and sockets rather than sleeping.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.ports import free_port

BRING_UP_SECONDS = 240
RELAYS = 4

# What every tor here shares: the test network, fast voting, logs in its own folder.
COMMON = """TestingTorNetwork 1
DataDirectory {data}
PidFile {data}/pid
Log notice file {data}/notice.log
RunAsDaemon 0
ShutdownWaitLength 0
Sandbox 0
{authorities}
"""

ROUTER = """Nickname {nick}
Address 127.0.0.1
ORPort 127.0.0.1:{orport}
SocksPort 0
AssumeReachable 1
ContactInfo guwah-system-test
ExitPolicy reject *:*
"""

AUTHORITY = """DirPort 127.0.0.1:{dirport}
AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
TestingV3AuthInitialVotingInterval 20
TestingV3AuthInitialVoteDelay 4
TestingV3AuthInitialDistDelay 4
V3AuthVotingInterval 20
V3AuthVoteDelay 4
V3AuthDistDelay 4
TestingDirAuthVoteGuard *
TestingDirAuthVoteHSDir *
TestingDirAuthVoteExit *
"""


class TorNetError(RuntimeError):
    """The private network did not come up in time."""


@dataclass
class Tor:
    """One tor process of the private network."""

    name: str
    data: Path
    torrc: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.data / "stdout.log", "ab")
        self.process = subprocess.Popen(
            ["tor", "--defaults-torrc", "/dev/null", "-f", str(self.torrc)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """An abrupt end (SIGKILL): circuits and streams through it break at once."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        path = self.data / "notice.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class TorNet:
    """The network's processes, their folders and the one DirAuthority line they share."""

    base: Path
    relays: int = RELAYS
    authority_line: str = ""
    tors: dict[str, Tor] = field(default_factory=dict)
    socks_port: int = 0

    def _folder(self, name: str) -> Path:
        d = self.base / name
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        return d

    def _common(self, data: Path) -> str:
        return COMMON.format(data=data, authorities=self.authority_line)

    def make_authority(self) -> None:
        """Keys with tor-gencert; the relay fingerprint with tor --list-fingerprint."""
        data = self._folder("auth0")
        keys = data / "keys"
        keys.mkdir(mode=0o700, exist_ok=True)
        orport, dirport = free_port(), free_port()
        subprocess.run(
            ["tor-gencert", "--create-identity-key", "-m", "12", "-a", f"127.0.0.1:{dirport}",
             "-i", str(keys / "authority_identity_key"), "-s", str(keys / "authority_signing_key"),
             "-c", str(keys / "authority_certificate"), "--passphrase-fd", "0"],
            input=b"\n", capture_output=True, check=True,
        )  # fmt: skip
        cert = (keys / "authority_certificate").read_text()
        v3ident = re.search(r"^fingerprint ([0-9A-F]{40})$", cert, re.M).group(1)  # type: ignore[union-attr]
        listed = subprocess.run(
            ["tor", "--defaults-torrc", "/dev/null", "--list-fingerprint", "--DataDirectory",
             str(data), "--ORPort", f"127.0.0.1:{orport}", "--Nickname", "auth0"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        fpr = re.search(r"auth0 ((?:[0-9A-F]{4} ?){10})", listed.stdout).group(1)  # type: ignore[union-attr]
        self.authority_line = (
            f"DirAuthority auth0 orport={orport} no-v2 v3ident={v3ident} 127.0.0.1:{dirport} {fpr}"
        )
        torrc = data / "torrc"
        torrc.write_text(self._common(data) + ROUTER.format(nick="auth0", orport=orport)
                         + AUTHORITY.format(dirport=dirport))  # fmt: skip
        self.tors["auth0"] = Tor("auth0", data, torrc)

    def make_relay(self, i: int) -> None:
        data = self._folder(f"relay{i}")
        torrc = data / "torrc"
        torrc.write_text(self._common(data) + ROUTER.format(nick=f"relay{i}", orport=free_port()))
        self.tors[f"relay{i}"] = Tor(f"relay{i}", data, torrc)

    def make_client(self) -> None:
        data = self._folder("client")
        self.socks_port = free_port()
        torrc = data / "torrc"
        torrc.write_text(self._common(data) + f"SocksPort 127.0.0.1:{self.socks_port}\n")
        self.tors["client"] = Tor("client", data, torrc)

    def make_service(self, name: str, service_options: str) -> Tor:
        """A tor with ``service_options`` (e.g. the production torrc's lines with rewritten
        paths) on top of this network's common lines."""
        data = self._folder(name)
        torrc = data / "torrc"
        torrc.write_text(self._common(data) + service_options)
        self.tors[name] = Tor(name, data, torrc)
        return self.tors[name]

    def consensus_routers(self) -> int:
        path = self.tors["auth0"].data / "cached-consensus"
        if not path.exists():
            return 0
        return len(re.findall(r"^r ", path.read_text(errors="replace"), re.M))

    def start_routers(self, deadline: float) -> None:
        """Authority and relays, then wait until the consensus lists them all."""
        for name, tor in self.tors.items():
            if name == "auth0" or name.startswith("relay"):
                tor.start()
        while self.consensus_routers() < self.relays + 1:
            for tor in self.tors.values():
                if tor.process is not None and not tor.alive():
                    raise TorNetError(f"{tor.name} exited:\n{tor.log()[-2000:]}")
            if time.monotonic() > deadline:
                raise TorNetError(f"consensus lists {self.consensus_routers()} routers")
            time.sleep(0.5)

    def wait_bootstrapped(self, name: str, deadline: float) -> None:
        tor = self.tors[name]
        while "Bootstrapped 100%" not in tor.log():
            if not tor.alive():
                raise TorNetError(f"{name} exited:\n{tor.log()[-2000:]}")
            if time.monotonic() > deadline:
                raise TorNetError(f"{name} did not bootstrap:\n{tor.log()[-2000:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        for tor in reversed(list(self.tors.values())):
            tor.stop()

    def restart_client(self) -> None:
        """Kill the client tor and start it again on the same SOCKS port and folder."""
        self.restart("client")

    def restart(self, name: str) -> None:
        """Kill one tor and start it again with its (possibly edited) torrc and folder.
        Why not SIGHUP: an onion-service tor may die on a reload that changes its services."""
        tor = self.tors[name]
        tor.kill()
        tor.start()


def fetch_through(socks_port: int, url: str, timeout: float = 30) -> int:
    """HTTP status of ``url`` fetched through the SOCKS port (curl; hostname resolved by tor)."""
    res = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(timeout),
         "--socks5-hostname", f"127.0.0.1:{socks_port}", url],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    with contextlib.suppress(ValueError):
        return int(res.stdout.strip() or "0")
    return 0


def need_tools() -> list[str]:
    return [tool for tool in ("tor", "tor-gencert", "curl") if shutil.which(tool) is None]
