"""Benchmark: ciphertext ingest through resumable (tus) uploads vs a plain write to the same disk.

One run: a valid age file of ``--mib`` MiB (default 2048) is made once (X25519 desk key,
Padmé-padded zeros), then

(a) "dd": read it and write it to a new file in the data dir's disk, ``--chunk-mib`` at a time,
    fsync at the end (what the disk can do);
(b) tus: create an upload on a real ``guwah serve`` and PATCH the same bytes in chunks of
    ``--chunk-mib`` MiB over one keep-alive socket (the client uses sendfile(2), so the CPU
    goes to the server; each PATCH is streamed to disk and fsynced before it is acknowledged),
    then commit the submission (age header check + SHA-256 + one rename).

Prints both throughputs, the ratio (target >= 0.8x), the commit time and the server's peak RSS
(target <= 120 MB; sampled with psutil every 50 ms). Not a test: nothing here asserts a time.

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def dd(src: Path, dst: Path, chunk: int) -> float:
    start = time.perf_counter()
    with src.open("rb", buffering=0) as fin:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            while data := fin.read(chunk):
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.perf_counter() - start


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


SINK = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
"""


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def sink_seconds(base: Path, src: Path, chunk: int, repeat: int) -> tuple[float, float]:
    """The same client against a bare ASGI app that drops the body, under uvicorn with the
    options and the HTTP protocol class guwah serve uses (app/web/h11_limits.py: it reads
    bodies in 1 MiB pieces, where plain uvicorn reads 256 KiB and was 4.6x slower here):
    the ceiling of the HTTP stack on this machine.
    Returns (best wall seconds, best server CPU seconds)."""
    from app.web.security import UVICORN_OPTIONS

    (base / "guwah_bench_sink.py").write_text(SINK)
    port = free_port()
    code = (f"import sys; sys.path.insert(0, {str(base)!r}); sys.path.insert(0, {str(ROOT)!r}); "
            "import uvicorn; from app.web.h11_limits import guarded_protocol; "
            f"uvicorn.run('guwah_bench_sink:app', host='127.0.0.1', port={port}, "
            f"http=guarded_protocol(20, 60), **{dict(UVICORN_OPTIONS)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        runs, cpu = [], []
        server = psutil.Process(proc.pid)
        for _ in range(repeat):
            before = cpu_seconds(server)
            start = time.perf_counter()
            patch_file(port, "/", src, chunk)
            runs.append(time.perf_counter() - start)
            cpu.append(cpu_seconds(server) - before)
        return min(runs), min(cpu)
    finally:
        proc.terminate()
        proc.wait(10)


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

        # (a) the disk alone (page cache dropped for neither: both read the same warm source)
        # Best of --repeat runs each; os.sync() first so that neither pays for the other's
        # dirty pages.
        dd_target = data_dir / "blobs" / "dd-target"
        dd_runs = []
        for _ in range(args.repeat):
            os.sync()
            dd_runs.append(dd(src, dd_target, chunk))
            dd_target.unlink()
        dd_s = min(dd_runs)

        # (b) tus through guwah serve
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
        env.update({"TMPDIR": str(tmpdir), "GUWAH_DATA_DIR": str(data_dir),
                    "GUWAH_MAX_FILE_BYTES": str(8 * 1024 * MiB)})
        guwah = shutil.which("guwah") or str(Path(sys.executable).with_name("guwah"))
        proc = subprocess.Popen([guwah, "serve", "--data-dir", str(data_dir), "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
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

            tus_runs, tus_cpu = [], []
            server = psutil.Process(proc.pid)
            for _ in range(args.repeat):
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
            tus_s = min(tus_runs)

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

        sink_s, sink_cpu = sink_seconds(base, src, chunk, args.repeat)
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
