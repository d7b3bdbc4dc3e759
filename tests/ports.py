"""Free TCP ports on 127.0.0.1 for the servers the tests start: the one place that picks them.

Why not bind port 0, close, and hand the number out (what each test file once did on its
own): tests/run.sh runs two pytest lanes at once, and the kernel may give the port one lane
just released to the other lane before the first one's server has bound it; and two calls in
a row (a tor relay's OR and directory ports) could get the same number. Here each lane picks
at random from a range of its own, below the kernel's range for outgoing connections (so no
connection takes one meanwhile), never hands out the same port twice, and hands out only a
port it could bind just now. Without a lane (a plain ``pytest``), the kernel picks.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

# GUWAH_TEST_LANE (tests/run.sh) -> the ports that lane's pytest picks from. "system" and
# "database" run one after the other in the same lane, beside "rest".
LANE_PORTS = {
    "rest": range(20_000, 26_000),
    "system": range(26_000, 29_000),
    "database": range(29_000, 32_000),
}
_given: set[int] = set()
_random = random.Random()  # its own: tests that seed the module's random are not disturbed


class PortsExhausted(RuntimeError):
    """Every port of the lane's range is in use or was handed out already."""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on and this process has not handed out."""
    ports = LANE_PORTS.get(os.environ.get("GUWAH_TEST_LANE", ""))
    if ports is None or _overlaps_outgoing(ports):
        return _kernel_port()
    for port in _random.sample(ports, len(ports)):
        if port not in _given and _bindable(port):
            _given.add(port)
            return port
    raise PortsExhausted(f"no free port left in {ports.start}-{ports.stop - 1}")


def _kernel_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _given:
            _given.add(port)
            return port


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _overlaps_outgoing(ports: range) -> bool:
    """Whether the kernel may use any of ``ports`` for outgoing connections on this machine."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return True
    return ports.start <= high and low < ports.stop
