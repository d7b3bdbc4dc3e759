"""A real ``guwah serve`` for a benchmark: started on a free port, stopped afterwards.

The benchmarks measure the server as an operator runs it (the same command, its own process,
its own malloc settings), never the app called in-process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
from floors import free_port, stop, wait_for_port

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@contextmanager
def guwah_serve(data: Path, tmpdir: Path,
                **env: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``guwah serve`` on ``data`` with TMPDIR ``tmpdir`` and the variables in ``env``
    (``GUWAH_*`` settings, ``PYTHONPATH``; no ``GUWAH_*`` of this process's): (process, port)."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
    environ.update(env, TMPDIR=str(tmpdir), GUWAH_DATA_DIR=str(data))
    guwah = shutil.which("guwah") or str(Path(sys.executable).with_name("guwah"))
    proc = subprocess.Popen([guwah, "serve", "--data-dir", str(data), "--port", str(port)],
                            env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield proc, port
    finally:
        stop(proc)


def form_token(url: str) -> str:
    """A fresh form token from the submit page (each is spent by the form posted with it)."""
    found = CSRF.search(httpx.get(url + "/submit").text)
    if found is None:
        raise RuntimeError(f"no form token on {url}/submit: is guwah serve running there?")
    return found.group(1)


class PeakRss:
    """The largest resident set of a process while the ``with`` block runs; ``peak`` in bytes.

    The kernel keeps the figure itself (``VmHWM`` in ``/proc/<pid>/status``), and writing ``5``
    to ``/proc/<pid>/clear_refs`` restarts it from the present size. Why not poll
    ``memory_info()`` on a thread, as this did before: a poll every 5 ms took CPU from the 2
    cores the measured server runs on (a 256 MiB plain-form upload took a fifth longer while it
    ran: 0.604 s against 0.505 s unwatched, medians of 8, and 0.510 s under the high-water mark,
    which saw the same peaks), and a poll sees only the moments it looks. Linux only, as the
    benchmarks are; a server with child processes would need their marks too (``guwah serve``
    has none)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0

    def _status_kib(self, field: str) -> int | None:
        """``field`` of the process's status in KiB; None once it has exited (gone, or a
        zombie, whose status has no memory lines)."""
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
        return None

    def __enter__(self) -> PeakRss:
        with open(f"/proc/{self.pid}/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")  # the high-water mark starts again from the present size
        self.peak = (self._status_kib("VmRSS") or 0) * 1024
        return self

    def __exit__(self, *_: object) -> None:
        # a server that died meanwhile: what was seen at the start stands, and the caller's
        # own error (if any) is not hidden by this one
        self.peak = max(self.peak, (self._status_kib("VmHWM") or 0) * 1024)


class ThreadCpu:
    """The CPU seconds a server spent while the ``with`` block ran, split by thread: its main
    thread (the event loop), the threads alive throughout (the worker pool: the multipart
    parser and the plaintext digest), and the threads that came and went (each upload's
    sealing and writing threads: the AEAD, the ciphertext digest, the writes). Why split:
    whether one thread is the bottleneck, or the CPU as a whole, decides what can help."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.split: dict[str, float] = {}

    def _sample(self) -> tuple[float, dict[int, float]]:
        times = self.proc.cpu_times()
        threads = {t.id: t.user_time + t.system_time for t in self.proc.threads()}
        return times.user + times.system, threads

    def __enter__(self) -> ThreadCpu:
        self._before = self._sample()
        return self

    def __exit__(self, *_: object) -> None:
        (total0, threads0), (total1, threads1) = self._before, self._sample()
        main = threads1.get(self.proc.pid, 0.0) - threads0.get(self.proc.pid, 0.0)
        kept = sum(max(0.0, threads1[t] - threads0[t]) for t in threads1  # an id reused: 0
                   if t in threads0 and t != self.proc.pid)
        self.split = {"event loop": main, "worker pool": kept,
                      "threads of the upload": total1 - total0 - main - kept}
