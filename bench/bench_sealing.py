"""Benchmark: JavaScript-off sealing through a real ``guwah serve`` vs the ``age`` command.

One run: a 256 MiB file is (a) encrypted by ``/usr/bin/age -e -r`` to a file on the same disk,
and (b) uploaded through the plain form (multipart, streamed over a socket) to ``guwah serve``,
which seals it as it arrives to the desk's X25519 key, pads it and commits it; (a) and (b) run
in turn, three rounds.  Prints the throughput ratio (target >= 0.8x), the floor of
bench/floors.py (the same POST into a bare ASGI app, both SHA-256 digests and the AEAD alone,
the durable write alone: the best ratio any server with these parts could reach here), and the
server's peak RSS (target <= 120 MB, flat in file size: a 16 MiB upload is measured too).
Not a test: nothing here asserts a time.

    .venv/bin/python bench/bench_sealing.py [--mib 256]
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import floors
import httpx
import psutil
from floors import free_port

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
AGE = "/usr/bin/age"
MiB = 1024 * 1024


def setup(work: Path) -> tuple[Path, str, object]:
    from app.crypto import X25519Identity, fingerprint
    from app.settings import load_settings
    from app.store import Store
    from app.store.schema import init_store

    data = work / "data"
    data.mkdir(mode=0o700)
    identity = X25519Identity.generate()
    with Store(load_settings(data, database_url=f"sqlite:///{data / 'guwah.sqlite3'}")) as st:
        init_store(st)
        st.add_desk("default", "bench")
        pub = secrets.token_bytes(32)
        st.add_recipient("default", "bench", str(identity.recipient()),
                         base64.b64encode(pub).decode(), fingerprint(pub))
    return data, str(identity.recipient()), identity


class PeakRss:
    """Poll a process's RSS every 5 ms in a thread; ``peak`` in bytes."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def form_token(url: str) -> str:
    page = httpx.get(url + "/submit").text
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, "no form token on /submit"
    return found.group(1)


def upload(port: int, path: Path, token: str) -> tuple[float, bytes]:
    """POST the plain form with ``path`` as the file; returns (seconds, response head)."""
    boundary = "----bench" + secrets.token_hex(8)
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"desk\"\r\n\r\ndefault\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"testimony\"\r\n\r\nbench\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"kept_codename\"\r\n\r\nyes\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + path.stat().st_size + len(tail)
    host = "127.0.0.1"
    start = time.perf_counter()
    with socket.create_connection((host, port)) as sock, path.open("rb") as fh:
        sock.sendall((f"POST /submit HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: "
                      f"multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n"
                      "Connection: close\r\n\r\n").encode() + head)
        sock.sendfile(fh)
        sock.sendall(tail)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return time.perf_counter() - start, response[:200]


def age_encrypt(big: Path, out: Path, recipient: str) -> tuple[float, float]:
    """Wall and CPU seconds of ``age -e`` of ``big`` to a file on the same disk."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([AGE, "-e", "-r", recipient, "-o", str(out), str(big)], check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out.unlink()
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def start_server(work: Path, data: Path) -> tuple[subprocess.Popen[bytes], int]:
    tmpdir = work / "tmp"
    tmpdir.mkdir(mode=0o700)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
    env.update(TMPDIR=str(tmpdir), GUWAH_DATA_DIR=str(data))
    guwah = str(Path(sys.executable).with_name("guwah"))
    server = subprocess.Popen([guwah, "serve", "--data-dir", str(data), "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    floors.wait_for_port(port)
    return server, port


def floor(work: Path, big: Path, token: str) -> tuple[float, str]:
    """The least time any server sealing ``big`` with Guwah's properties could take here
    (bench/floors.py): receive it over the same HTTP stack, hash the plaintext, seal it, hash
    the ciphertext, write it durably."""
    http_s, http_cpu = floors.sink_seconds(work, lambda port: upload(port, big, token), 3)
    target = work / "floor.out"

    def disk() -> float:
        try:
            return floors.durable_write(big, target, MiB, sync_each=False)
        finally:
            target.unlink()

    disk_s, _ = floors.best_of(3, disk)
    sha = min(floors.sha256_cpu(big) for _ in range(3))
    aead = min(floors.aead_cpu(big) for _ in range(3))
    walls = {"HTTP": http_s, "durable write": disk_s}
    cpus = {"HTTP": http_cpu, "SHA-256 of the plaintext": sha, "ChaCha20-Poly1305": aead,
            "SHA-256 of the ciphertext": sha}
    return floors.floor_seconds(walls, cpus), floors.describe(walls, cpus)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.chmod(work, 0o700)
        data, recipient, _identity = setup(work)
        big = data.parent / "upload.bin"
        small = data.parent / "small.bin"
        with big.open("wb") as fh:
            for _ in range(args.mib):
                fh.write(os.urandom(MiB))
        small.write_bytes(os.urandom(16 * MiB))

        server, port = start_server(work, data)
        try:
            url = f"http://127.0.0.1:{port}"
            upload(port, small, form_token(url))  # warm up
            idle = psutil.Process(server.pid).memory_info().rss
            with PeakRss(server.pid) as rss_small:
                upload(port, small, form_token(url))
            # three rounds of (a) the age command and (b) guwah serve in turn, so that the
            # machine's good and bad minutes fall on both alike; the best of each counts
            age_times, age_cpu, times, cpu = [], [], [], []
            peak = 0
            proc = psutil.Process(server.pid)
            for _ in range(3):
                wall, used = age_encrypt(big, work / "age.out", recipient)
                age_times.append(wall)
                age_cpu.append(used)
                token = form_token(url)  # one per form: a second post of it is refused
                before_cpu = sum(proc.cpu_times()[:2])
                with PeakRss(server.pid) as rss_big:
                    seconds, head = upload(port, big, token)
                cpu.append(sum(proc.cpu_times()[:2]) - before_cpu)
                assert head.startswith(b"HTTP/1.1 200"), head
                times.append(seconds)
                peak = max(peak, rss_big.peak)
        finally:
            server.terminate()
            server.wait(10)
        floor_s, parts = floor(work, big, token)
        report(args.mib, big.stat().st_size, (age_times, age_cpu), (times, cpu), floor_s, parts)
        print(f"server RSS: idle {idle / MiB:.0f} MiB; peak 16 MiB upload "
              f"{rss_small.peak / MiB:.0f} MiB; peak {args.mib} MiB upload {peak / MiB:.0f} MiB"
              "   (target <= 120 MB, flat in file size)")
        shutil.rmtree(work, ignore_errors=True)


def report(mib: int, size: int, age: tuple[list[float], list[float]],
           guwah: tuple[list[float], list[float]], floor_s: float, parts: str) -> None:
    (age_times, age_cpu), (times, cpu) = age, guwah
    age_s, guwah_s = min(age_times), min(times)
    print(f"file: {mib} MiB random bytes; machine: {os.cpu_count()} cores")
    print(f"age -e -r (X25519):        {age_s:6.3f} s  {size / age_s / MiB:7.1f} MiB/s "
          f"(best of 3: {', '.join(f'{t:.3f}' for t in age_times)})")
    print(f"guwah serve JS-off upload: {guwah_s:6.3f} s  {size / guwah_s / MiB:7.1f} MiB/s "
          f"(best of 3: {', '.join(f'{t:.3f}' for t in times)}; HTTP + multipart + "
          "SHA-256 + age + Padmé + fsync + commit)")
    print(f"ratio guwah/age throughput: {age_s / guwah_s:.2f}x   (target >= 0.8x)")
    print(f"CPU seconds (user+sys): age {min(age_cpu):.3f}, guwah server {min(cpu):.3f} "
          f"-> CPU-cost ratio {min(age_cpu) / min(cpu):.2f}x (less sensitive to other load; "
          f"load average now {os.getloadavg()[0]:.1f})")
    print(f"floor: {floor_s:.3f} s ({parts}): the best ratio any server with these parts could "
          f"reach here is {age_s / floor_s:.2f}x; guwah reaches {floor_s / guwah_s:.2f}x of "
          "that floor")
    per_gib = min(cpu) / (size / (1 << 30))
    print(f"server CPU per GiB sealed: {per_gib:.2f} s -> one core keeps up with "
          f"{(1 << 30) / per_gib / 1e6:.0f} concurrent 1 MB/s Tor witnesses")


if __name__ == "__main__":
    main()
