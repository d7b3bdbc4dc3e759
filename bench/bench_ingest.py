"""Benchmark: ciphertext ingest through resumable (tus) uploads vs a plain write to the same disk.

One run: a valid age file of ``--mib`` MiB (default 2048) is made once (X25519 desk key,
Padmé-padded zeros), then ``--repeat`` rounds, each of which runs in turn (so that the disk's
good and bad minutes, its speed moves 2x here, fall on all alike; the best of each counts):

(a) "dd": as many bytes written from memory to a new file on the data dir's disk,
    ``--chunk-mib`` at a time, one fsync at the end (what the disk can do); then again with an
    fdatasync after every chunk (what acknowledging each PATCH durably costs any server);
(b) tus: create an upload on a real ``guwah serve`` and PATCH the same bytes in chunks of
    ``--chunk-mib`` MiB over one keep-alive socket (the client uses sendfile(2), so the CPU
    goes to the server; each PATCH is streamed to disk and fsynced before it is acknowledged);
(c) the same PATCHes into the bare ASGI app of bench/asgi_sink.py (the HTTP stack alone).

Then the last upload is committed (age header check + SHA-256 + one rename).  Prints both
throughputs, the ratio (target >= 0.8x), the floor of bench/floors.py (the HTTP stack alone,
the durable writes alone: the best ratio any server built on them could reach here), the
commit time, server CPU per GiB and the server's peak RSS (target <= 120 MB; the kernel's
high-water mark, bench/guwah_server.py ``PeakRss``).  Not a test: nothing here asserts a time.

    .venv/bin/python bench/bench_ingest.py [--mib 2048] [--chunk-mib 8] [--repeat 2] [--dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import floors
import httpx
import psutil
from guwah_server import PeakRss, form_token, guwah_serve

if TYPE_CHECKING:
    from app.crypto import X25519Identity

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
PATCH_MIB = 8  # what the browser sends per PATCH (app/web/js/upload-client.js)
MAX_FILE_BYTES = 8 * 1024 * MiB  # the store's and the server's limit (--mib up to 8192)


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


def make_store(data_dir: Path) -> X25519Identity:
    """A store with one desk and one editor; the editor's X25519 identity."""
    from app.crypto import X25519Identity, fingerprint
    from app.settings import load_settings
    from app.store import Store
    from app.store.schema import init_store

    identity = X25519Identity.generate()
    with Store(load_settings(data_dir, max_file_bytes=MAX_FILE_BYTES)) as st:
        init_store(st)
        st.add_desk("default")
        ed = secrets.token_bytes(32)
        st.add_recipient("default", "Bench", str(identity.recipient()),
                         base64.b64encode(ed).decode(), fingerprint(ed))
    return identity


@dataclass
class TusClient:
    """The browser's side of a JavaScript-on submission, over ``client``."""

    client: httpx.Client
    port: int
    token: str
    chunk: int

    def create(self, length: int, role: str) -> str:
        meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}"
                        for k, v in (("desk", "default"), ("role", role)))
        r = self.client.post("/api/uploads", headers={
            **TUS, "Upload-Length": str(length), "Guwah-Form-Token": self.token,
            "Upload-Metadata": meta})
        r.raise_for_status()
        return str(r.headers["Location"])

    def upload(self, path: Path, role: str) -> str:
        loc = self.create(path.stat().st_size, role)
        patch_file(self.port, loc, path, self.chunk)
        return loc

    def delete(self, loc: str) -> None:
        r = self.client.delete(loc, headers=TUS)  # tus termination
        assert r.status_code == 204, r.text

    def commit(self, message: str, file: str) -> None:
        from app.crypto.mailbox import derive_mailbox, new_codename

        mailbox = derive_mailbox(new_codename(), "X25519")
        r = self.client.post("/api/submissions", json={
            "csrf": self.token, "desk": "default", "message_upload": message.rsplit("/", 1)[1],
            "files": [{"role": "file-1", "upload": file.rsplit("/", 1)[1]}],
            "token_hash": mailbox.token_hash, "reply_recipient": mailbox.reply_recipient})
        assert r.status_code == 201, r.text


def rounds(args: argparse.Namespace, src: Path, data_dir: Path, tus: TusClient,
           server: psutil.Process, sink: tuple[int, psutil.Process]
           ) -> tuple[dict[str, floors.Runs], str]:
    """(a), (b) and (c) of the docstring, once per round, in turn: the runs, and the last
    upload's location (kept for the commit)."""
    size, chunk = src.stat().st_size, args.chunk_mib * MiB
    target = data_dir / "blobs" / "dd-target"
    runs = {name: floors.Runs() for name in ("dd", "each", "tus", "sink")}
    loc = ""
    for _ in range(args.repeat):
        runs["dd"].add(floors.durable_write(size, target, chunk, sync_each=False), 0.0)
        runs["each"].add(floors.durable_write(size, target, chunk, sync_each=True), 0.0)
        if loc:
            tus.delete(loc)
        os.sync()
        before, start = floors.cpu_seconds(server), time.perf_counter()
        loc = tus.upload(src, "file-1")
        runs["tus"].add(time.perf_counter() - start, floors.cpu_seconds(server) - before)
        runs["sink"].add(*floors.timed(sink[1], patch_file, sink[0], "/", src, chunk))
    return runs, loc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=2048)
    ap.add_argument("--chunk-mib", type=int, default=PATCH_MIB)
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=2, help="rounds; the best of each part counts")
    args = ap.parse_args()
    from app.crypto import encrypt

    base = Path(tempfile.mkdtemp(prefix="guwah-bench-ingest-", dir=args.dir))
    base.chmod(0o700)
    try:
        data_dir, tmpdir = base / "data", base / "tmp"
        data_dir.mkdir(mode=0o700)
        tmpdir.mkdir(mode=0o700)
        identity = make_store(data_dir)
        src, message = base / "source.age", base / "message.age"
        print(f"making a {args.mib} MiB age file ...", flush=True)
        make_age_file(src, args.mib, identity.recipient())
        message.write_bytes(encrypt(b" " * 256, [identity.recipient()]))
        limit = str(MAX_FILE_BYTES)
        with guwah_serve(data_dir, tmpdir, GUWAH_MAX_FILE_BYTES=limit) as (proc, port), \
                floors.asgi_sink() as sink, \
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            server = psutil.Process(proc.pid)
            tus = TusClient(client, port, form_token(f"http://127.0.0.1:{port}"),
                            args.chunk_mib * MiB)
            with PeakRss(proc.pid) as rss:
                runs, file_loc = rounds(args, src, data_dir, tus, server, sink)
                msg_loc = tus.upload(message, "message")
                commit = floors.timed(server, tus.commit, msg_loc, file_loc)
        check_stored(data_dir, src.stat().st_size)
        report(args, src.stat().st_size, runs, commit, rss.peak)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def check_stored(data_dir: Path, size: int) -> None:
    """The committed submission holds exactly the ciphertext that was sent."""
    from app.settings import load_settings
    from app.store import Store

    with Store(load_settings(data_dir)) as st:
        stored = {f.role: f.size for f in st.list_submissions()[0].files}
    assert stored["file-1"] == size, "the server must hold exactly the ciphertext"


def report(args: argparse.Namespace, size: int, runs: dict[str, floors.Runs],
           commit: tuple[float, float], peak: int) -> None:
    (dd_s, _), (each_s, _) = runs["dd"].best(), runs["each"].best()
    (tus_s, tus_cpu), (sink_s, sink_cpu) = runs["tus"].best(), runs["sink"].best()
    walls = {"HTTP (bare ASGI sink)": sink_s, "disk, fdatasync per PATCH": each_s}
    cpus = {"HTTP (bare ASGI sink)": sink_cpu}
    floor = floors.floor_seconds(walls, cpus)
    mb, med = size / 1e6, statistics.median
    print(f"ciphertext: {size} bytes ({size / MiB:.0f} MiB), PATCH size {args.chunk_mib} MiB")
    print(f"dd-like write + fsync : {dd_s:7.2f} s  {mb / dd_s:8.1f} MB/s   (runs: {runs['dd']} s)")
    print(f"tus via guwah serve   : {tus_s:7.2f} s  {mb / tus_s:8.1f} MB/s   "
          f"(runs: {runs['tus']} s)")
    print(f"bare ASGI sink (uvicorn, same client): {mb / sink_s:8.1f} MB/s")
    print(f"ratio tus/dd          : {dd_s / tus_s:.2f}x best vs best, "
          f"{med(runs['dd'].walls) / med(runs['tus'].walls):.2f}x median vs median  "
          "(target >= 0.80x)")
    print(f"ratio tus/ASGI sink   : {sink_s / tus_s:.2f}x  (what Guwah adds to the HTTP stack)")
    print(f"write + fdatasync per PATCH: {each_s:.2f} s  (runs: {runs['each']} s)")
    print(f"floor: {floor:.2f} s ({floors.describe(walls, cpus)}): the best ratio any server "
          f"built on these parts, acknowledging each PATCH durably, could reach here is "
          f"{dd_s / floor:.2f}x; tus reaches {floor / tus_s:.2f}x of that floor")
    commit_s, commit_cpu = commit
    print(f"commit (check+hash+rename): {commit_s:.2f} s")
    gib = size / (1 << 30)
    per_gib = (tus_cpu + commit_cpu) / gib
    print(f"server CPU per GiB ingested: PATCH {tus_cpu / gib:.2f} s + commit "
          f"{commit_cpu / gib:.2f} s = {per_gib:.2f} s (bare ASGI sink: "
          f"{sink_cpu / gib:.2f} s; CPU ratio sink/tus {sink_cpu / tus_cpu:.2f}x)")
    print(f"  -> one core keeps up with {(1 << 30) / per_gib / 1e6:.0f} concurrent 1 MB/s "
          f"Tor witnesses uploading (load average now {os.getloadavg()[0]:.1f})")
    print(f"server peak RSS       : {peak / MiB:.1f} MiB  (target <= 120 MB)")


if __name__ == "__main__":
    main()
