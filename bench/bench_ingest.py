"""Benchmark: ciphertext ingest through resumable (tus) uploads vs a plain write to the same disk.

One run: a valid age file of ``--mib`` MiB (default 2048) is made once (X25519 desk key,
Padmé-padded zeros), then

(a) "dd": read it and write it to a new file in the data dir's disk, ``--chunk-mib`` at a time,
    fsync at the end (what the disk can do); then again with an fdatasync after every chunk
    (what acknowledging each PATCH durably costs any server);
(b) tus: create an upload on a real ``guwah serve`` and PATCH the same bytes in chunks of
    ``--chunk-mib`` MiB over one keep-alive socket (the client uses sendfile(2), so the CPU
    goes to the server; each PATCH is streamed to disk and fsynced before it is acknowledged),
    then commit the submission (age header check + SHA-256 + one rename).

Prints both throughputs, the ratio (target >= 0.8x), the floor of bench/floors.py (the HTTP
stack alone and the durable writes alone: the best ratio reachable here), the commit time and
the server's peak RSS (target <= 120 MB; sampled with psutil every 50 ms). Not a test: nothing
here asserts a time.

    .venv/bin/python bench/bench_ingest.py [--mib 2048] [--chunk-mib 8] [--dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from floors import (
    cpu_seconds,
    describe,
    durable_write,
    floor_seconds,
    free_port,
    sink_seconds,
    wait_for_port,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MiB = 1024 * 1024


def make_age_file(path: Path, mib: int, recipient: object) -> int:
    """A real age file of a Padmé-padded plaintext of about ``mib`` MiB (zeros)."""
    from app.crypto import Encryptor, padme

    size = padme(mib * MiB)
    block = bytes(8 * MiB)
    with path.open("wb") as out:
        enc = Encryptor([recipient], out)  # type: ignore[list-item]
        left = size
        while left:
            n = min(left, len(block))
            enc.write(block[:n])
            left -= n
        enc.close()
    return path.stat().st_size


def patch_file(port: int, loc: str, path: Path, chunk: int) -> None:
    """PATCH ``path`` in chunks over one keep-alive connection with sendfile(2), so the
    client costs almost no CPU and the figure is the server's."""
    total = path.stat().st_size
    offset = 0
    with path.open("rb") as fin, socket.create_connection(("127.0.0.1", port)) as sk:
        reader = sk.makefile("rb")
        while offset < total:
            n = min(chunk, total - offset)
            sk.sendall(
                f"PATCH {loc} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\n"
                "Content-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {n}\r\n\r\n".encode()
            )
            sk.sendfile(fin, offset, n)
            status = reader.readline()
            assert b" 204 " in status, status
            new_offset = None
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "upload-offset":
                    new_offset = int(value)
            assert new_offset in (None, offset + n), new_offset
            offset += n


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                rss = self.proc.memory_info().rss
                for child in self.proc.children(recursive=True):
                    rss = max(rss, child.memory_info().rss)
            except psutil.Error:
                break
            self.peak = max(self.peak, rss)
            time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=2048)
    ap.add_argument("--chunk-mib", type=int, default=8)
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each; the best counts")
    args = ap.parse_args()

    from app.crypto import X25519Identity, fingerprint
    from app.crypto.mailbox import derive_mailbox, new_codename
    from app.settings import load_settings
    from app.store import Store
    from app.store.schema import init_store

    base = Path(tempfile.mkdtemp(prefix="guwah-bench-ingest-", dir=args.dir))
    base.chmod(0o700)
    proc = None
    try:
        data_dir = base / "data"
        data_dir.mkdir(mode=0o700)
        tmpdir = base / "tmp"
        tmpdir.mkdir(mode=0o700)
        os.environ["TMPDIR"] = str(tmpdir)
        settings = load_settings(data_dir, max_file_bytes=8 * 1024 * MiB)
        identity = X25519Identity.generate()
        with Store(settings) as st:
            init_store(st)
            st.add_desk("default")
            ed = secrets.token_bytes(32)
            st.add_recipient("default", "Bench", str(identity.recipient()),
                             base64.b64encode(ed).decode(), fingerprint(ed))
        src = base / "source.age"
        print(f"making a {args.mib} MiB age file ...", flush=True)
        size = make_age_file(src, args.mib, identity.recipient())
        chunk = args.chunk_mib * MiB

        # (a) the disk alone, twice: one fsync at the end (the yardstick), and an fdatasync
        # after every --chunk-mib (what acknowledging each PATCH durably costs any server)
        target = data_dir / "blobs" / "dd-target"

        def disk(sync_each: bool) -> float:
            os.sync()  # no run pays for an earlier one's dirty pages
            try:
                return durable_write(src, target, chunk, sync_each=sync_each)
            finally:
                target.unlink()

        # (b) tus through guwah serve; each round runs (a) and (b) in turn, so that the disk's
        # good and bad minutes (its speed moves 2x here) fall on both alike
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
        env.update({"TMPDIR": str(tmpdir), "GUWAH_DATA_DIR": str(data_dir),
                    "GUWAH_MAX_FILE_BYTES": str(8 * 1024 * MiB)})
        guwah = shutil.which("guwah") or str(Path(sys.executable).with_name("guwah"))
        proc = subprocess.Popen([guwah, "serve", "--data-dir", str(data_dir), "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        wait_for_port(port)
        sampler = RssSampler(proc.pid)
        sampler.start()
        with httpx.Client(base_url=url, timeout=600) as client:
            page = client.get("/submit").text
            token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]

            def meta(**kv: str) -> str:
                return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}"
                                for k, v in kv.items())

            tus = {"Tus-Resumable": "1.0.0"}

            def create(length: int, role: str) -> str:
                r = client.post("/api/uploads", headers={
                    **tus, "Upload-Length": str(length), "Guwah-Form-Token": token,
                    "Upload-Metadata": meta(desk="default", role=role)})
                r.raise_for_status()
                return r.headers["Location"]

            def put(loc: str, path: Path) -> None:
                patch_file(port, loc, path, chunk)

            tus_runs, tus_cpu, dd_runs, each_runs = [], [], [], []
            server = psutil.Process(proc.pid)
            for _ in range(args.repeat):
                dd_runs.append(disk(sync_each=False))
                each_runs.append(disk(sync_each=True))
                os.sync()
                before = cpu_seconds(server)
                start = time.perf_counter()
                file_loc = create(size, "file-1")
                put(file_loc, src)
                tus_runs.append(time.perf_counter() - start)
                tus_cpu.append(cpu_seconds(server) - before)
                if len(tus_runs) < args.repeat:
                    r = client.delete(file_loc, headers=tus)  # tus termination
                    assert r.status_code == 204
            tus_s, dd_s, each_s = min(tus_runs), min(dd_runs), min(each_runs)

            message = base / "message.age"
            from app.crypto import encrypt

            message.write_bytes(encrypt(b" " * 256, [identity.recipient()]))
            msg_loc = create(message.stat().st_size, "message")
            put(msg_loc, message)
            mailbox = derive_mailbox(new_codename(), "X25519")
            before = cpu_seconds(server)
            start = time.perf_counter()
            r = client.post("/api/submissions", json={
                "csrf": token, "desk": "default", "message_upload": msg_loc.rsplit("/", 1)[1],
                "files": [{"role": "file-1", "upload": file_loc.rsplit("/", 1)[1]}],
                "token_hash": mailbox.token_hash, "reply_recipient": mailbox.reply_recipient})
            commit_s = time.perf_counter() - start
            commit_cpu = cpu_seconds(server) - before
            assert r.status_code == 201, r.text
        sampler.stop.set()
        sampler.join()
        with Store(settings) as st:
            sub = st.list_submissions()[0]
            stored = {f.role: f.size for f in sub.files}
        assert stored["file-1"] == size, "the server must hold exactly the ciphertext"

        sink_s, sink_cpu = sink_seconds(base, lambda port: patch_file(port, "/", src, chunk),
                                        args.repeat)
        walls = {"HTTP (bare ASGI sink)": sink_s, "disk, fdatasync per PATCH": each_s}
        cpus = {"HTTP (bare ASGI sink)": sink_cpu}
        floor = floor_seconds(walls, cpus)
        mb = size / 1e6
        print(f"ciphertext: {size} bytes ({size / MiB:.0f} MiB), PATCH size {args.chunk_mib} MiB")
        runs = ", ".join(f"{t:.2f}" for t in dd_runs)
        print(f"dd-like write + fsync : {dd_s:7.2f} s  {mb / dd_s:8.1f} MB/s   (runs: {runs} s)")
        runs = ", ".join(f"{t:.2f}" for t in tus_runs)
        print(f"tus via guwah serve   : {tus_s:7.2f} s  {mb / tus_s:8.1f} MB/s   (runs: {runs} s)")
        print(f"bare ASGI sink (uvicorn, same client): {mb / sink_s:8.1f} MB/s")
        med = statistics.median
        print(f"ratio tus/dd          : {dd_s / tus_s:.2f}x best vs best, "
              f"{med(dd_runs) / med(tus_runs):.2f}x median vs median  (target >= 0.80x)")
        print(f"ratio tus/ASGI sink   : {sink_s / tus_s:.2f}x  (what Guwah adds to the HTTP stack)")
        runs = ", ".join(f"{t:.2f}" for t in each_runs)
        print(f"write + fdatasync per PATCH: {each_s:.2f} s  (runs: {runs} s)")
        print(f"floor: {floor:.2f} s ({describe(walls, cpus)}): the best ratio any server "
              f"acknowledging each PATCH durably could reach here is {dd_s / floor:.2f}x; "
              f"tus reaches {floor / tus_s:.2f}x of that floor")
        print(f"commit (check+hash+rename): {commit_s:.2f} s")
        gib = size / (1 << 30)
        per_gib = (min(tus_cpu) + commit_cpu) / gib
        print(f"server CPU per GiB ingested: PATCH {min(tus_cpu) / gib:.2f} s + commit "
              f"{commit_cpu / gib:.2f} s = {per_gib:.2f} s (bare ASGI sink: "
              f"{sink_cpu / gib:.2f} s; CPU ratio sink/tus {sink_cpu / min(tus_cpu):.2f}x)")
        print(f"  -> one core keeps up with {(1 << 30) / per_gib / 1e6:.0f} concurrent 1 MB/s "
              f"Tor witnesses uploading (load average now {os.getloadavg()[0]:.1f})")
        print(f"server peak RSS       : {sampler.peak / MiB:.1f} MiB  (target <= 120 MB)")
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
