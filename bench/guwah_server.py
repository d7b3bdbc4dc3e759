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
import threading
import time
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
    """The largest resident set of a process and its children while the ``with`` block runs,
    polled every ``interval`` seconds on a thread of its own; ``peak`` in bytes."""

    def __init__(self, pid: int, interval: float) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        rss = self.proc.memory_info().rss
        for child in self.proc.children(recursive=True):
            rss = max(rss, child.memory_info().rss)
        return int(rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._rss())
            except psutil.Error:  # the server is gone: what was seen stands
                return
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


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
