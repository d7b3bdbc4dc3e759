"""Soak: honest witnesses and hostile clients at once against a real ``guwah serve``.

150 honest witnesses (half JavaScript-off: text + a 1-4 MiB file through ``POST /submit``;
half JavaScript-on: the file and the testimony encrypted here with app.crypto to the desk, sent
as tus uploads and committed with ``POST /api/submissions``) start at random moments of the
run; 50 hostile clients loop for the whole run through the attacks of tests/hostile (idle
socket announcing 20 GB, header-only POSTs, trickled bodies and PATCHes, quota reservation
by Upload-Length, zero-length creates, slow headers, garbage request lines).  Loopback only,
bounded in count and time.  Prints the share of honest submissions acknowledged, the 5xx
count (target 0), honest p50/p99 latency, the server's peak RSS (target <= 200 MB), and how
many stored submissions decrypt with the editor's key (every acknowledged one must).
Not a test: it asserts nothing.

    .venv/bin/python bench/bench_hostile_soak.py [--seconds 60] [--witnesses 150] [--hostile 50]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from guwah_server import CSRF, PeakRss, guwah_serve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.crypto import X25519Identity, decrypt, encrypt, fingerprint, padme  # noqa: E402
from app.crypto.mailbox import derive_mailbox, new_codename  # noqa: E402

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


class Side:
    """HTTP statuses one side (honest or hostile) received."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()

    def status(self, code: int) -> int:
        self.statuses[code] += 1
        return code


class Tally:
    """Everything measured, filled from many tasks on one event loop."""

    def __init__(self) -> None:
        self.honest: Counter[str] = Counter()
        self.latency: list[float] = []
        self.attacks: Counter[str] = Counter()
        self.good, self.bad = Side(), Side()


# ------------------------------------------------------------------ honest witnesses
async def token(client: httpx.AsyncClient, tally: Side) -> str:
    page = await client.get("/submit")
    tally.status(page.status_code)
    match = CSRF.search(page.text)
    if match is None:
        raise RuntimeError(f"no form ({page.status_code})")
    return match.group(1)


async def js_off(client: httpx.AsyncClient, tally: Side, size: int) -> bool:
    csrf = await token(client, tally)
    r = await client.post("/submit", data={"csrf": csrf, "testimony": "What I saw. " * 40,
                                           "website": "", "kept_codename": "yes"},
                          files=[("files", ("photo.jpg", os.urandom(size), "image/jpeg"))])
    return tally.status(r.status_code) == 200


def _meta(role: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}"
                    for k, v in (("desk", "default"), ("role", role)))


async def _tus(client: httpx.AsyncClient, tally: Side, csrf: str, role: str,
               data: bytes) -> str | None:
    r = await client.post("/api/uploads", headers={
        **TUS, "Upload-Length": str(len(data)), "Upload-Metadata": _meta(role),
        "Guwah-Form-Token": csrf})
    if tally.status(r.status_code) != 201:
        return None
    url = r.headers["Location"]
    offset, step = 0, 1 * MiB
    while offset < len(data):
        r = await client.patch(url, content=data[offset:offset + step], headers={
            **TUS, "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream"})
        if tally.status(r.status_code) != 204:
            return None
        offset = int(r.headers["Upload-Offset"])
    return url.rsplit("/", 1)[1]


async def js_on(client: httpx.AsyncClient, tally: Side, size: int, recipient: object) -> bool:
    csrf = await token(client, tally)
    plain = os.urandom(size)
    mailbox = await asyncio.to_thread(derive_mailbox, new_codename(), "X25519")
    sealed = await asyncio.to_thread(encrypt, plain + bytes(padme(size) - size), [recipient])
    file_id = await _tus(client, tally, csrf, "file-1", sealed)
    if file_id is None:
        return False
    doc = json.dumps({"format": "guwah-testimony/1", "protection": "browser-encrypted",
                      "testimony": "What I saw.", "files": [{"role": "file-1", "size": size}],
                      "reply_recipient": mailbox.reply_recipient}).encode()
    message = encrypt(doc + b" " * (padme(len(doc)) - len(doc)), [recipient])
    message_id = await _tus(client, tally, csrf, "message", message)
    if message_id is None:
        return False
    r = await client.post("/api/submissions", json={
        "csrf": csrf, "desk": "default", "message_upload": message_id,
        "files": [{"role": "file-1", "upload": file_id}],
        "token_hash": mailbox.token_hash, "reply_recipient": mailbox.reply_recipient})
    return tally.status(r.status_code) == 201


async def witness(url: str, tally: Tally, index: int, start: float, recipient: object) -> None:
    await asyncio.sleep(start)
    size = random.randint(1 * MiB, 4 * MiB)
    kind = "js-off" if index % 2 == 0 else "js-on"
    began = time.monotonic()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:
            ok = await (js_off(client, tally.good, size) if kind == "js-off"
                        else js_on(client, tally.good, size, recipient))
    except (httpx.HTTPError, RuntimeError):
        ok = False
    tally.latency.append(time.monotonic() - began)
    tally.honest[f"{kind} {'acknowledged' if ok else 'refused'}"] += 1


# ------------------------------------------------------------------ hostile clients
async def _raw(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def _answer(reader: asyncio.StreamReader, tally: Side, wait: float) -> None:
    """Read the status line the server sends (if any) within ``wait`` and count it."""
    try:
        line = await asyncio.wait_for(reader.readline(), wait)
    except (TimeoutError, OSError):
        return
    parts = line.split()
    if len(parts) >= 2 and parts[1].isdigit():
        tally.status(int(parts[1]))


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


def _post(path: str, length: int, ctype: str, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


async def attack(kind: str, url: str, port: int, tally: Tally, deadline: float) -> None:
    tally.attacks[kind] += 1
    hold = max(0.0, min(20.0, deadline - time.monotonic()))
    if kind in ("idle-huge", "header-only", "trickle-post"):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            csrf = await token(client, tally.bad)
        length = 21474836380 if kind == "idle-huge" else 4_000_000
        head = _post("/submit", length, "multipart/form-data; boundary=b0")
        body = b"" if kind == "header-only" else (
            f'--b0\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf}\r\n--b0\r\n'
            'Content-Disposition: form-data; name="files"; filename="a"\r\n\r\n').encode()
        reader, writer = await _raw(port, head + body)
        end = time.monotonic() + hold
        while kind == "trickle-post" and time.monotonic() < end and not writer.is_closing():
            writer.write(b"z")
            await asyncio.sleep(1.0)
        await _answer(reader, tally.bad, hold)
        await _close(writer)
    elif kind in ("zero-creates", "reserve-quota", "trickle-patch"):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            csrf = await token(client, tally.bad)
            length = {"zero-creates": 0, "reserve-quota": 4 * 1024 * MiB}.get(kind, 10_000)
            locations = []
            for _ in range(10 if kind != "trickle-patch" else 1):
                r = await client.post("/api/uploads", headers={
                    **TUS, "Upload-Length": str(length), "Upload-Metadata": _meta("file-1"),
                    "Guwah-Form-Token": csrf})
                if tally.bad.status(r.status_code) == 201:
                    locations.append(r.headers["Location"])
        if kind == "trickle-patch" and locations:
            reader, writer = await _raw(port, (
                f"PATCH {locations[0]} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                "Content-Length: 10000\r\n\r\n").encode())
            end = time.monotonic() + hold
            while time.monotonic() < end and not writer.is_closing():
                writer.write(b"q")
                await asyncio.sleep(1.0)
            await _answer(reader, tally.bad, 1)
            await _close(writer)
    elif kind == "slow-headers":
        reader, writer = await _raw(port, b"GET / HTTP/1.1\r\n")
        end = time.monotonic() + hold
        while time.monotonic() < end and not reader.at_eof():
            writer.write(b"X")
            await asyncio.sleep(1.0)
            if reader.at_eof() or writer.is_closing():
                break
        await _close(writer)
    else:  # garbage request line: uvicorn's own 400
        reader, writer = await _raw(port, b"\x16\x03\x01 garbage\r\n\r\n")
        await _answer(reader, tally.bad, 5)
        await _close(writer)


ATTACKS = ("idle-huge", "header-only", "trickle-post", "zero-creates", "reserve-quota",
           "trickle-patch", "slow-headers", "garbage")


async def hostile(url: str, port: int, tally: Tally, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            await attack(random.choice(ATTACKS), url, port, tally, deadline)
        except (OSError, httpx.HTTPError, RuntimeError):
            await asyncio.sleep(0.5)


# ------------------------------------------------------------------ the run
def setup(data: Path) -> X25519Identity:
    from app.settings import load_settings
    from app.store import Store
    from app.store.schema import init_store

    identity = X25519Identity.generate()
    settings = load_settings(data, database_url=f"sqlite:///{data / 'guwah.sqlite3'}")
    with Store(settings) as st:
        init_store(st)
        st.add_desk("default", "bench")
        pub = secrets.token_bytes(32)
        st.add_recipient("default", "bench", str(identity.recipient()),
                         base64.b64encode(pub).decode(), fingerprint(pub))
    return identity


def decryptable(data: Path, identity: X25519Identity) -> tuple[int, int]:
    """(submissions stored, submissions whose every blob decrypts)."""
    from app.settings import load_settings
    from app.store import Store

    settings = load_settings(data, database_url=f"sqlite:///{data / 'guwah.sqlite3'}")
    good = 0
    with Store(settings) as st:
        subs = st.list_submissions()
        for sub in subs:
            try:
                for f in sub.files:
                    decrypt(st.open_blob_for_read(sub.id, f.role).read(), [identity])
                good += 1
            except Exception as exc:  # counted, and named, below
                print(f"  submission {sub.id} does not decrypt: {type(exc).__name__}")
    return len(subs), good


async def drive(url: str, port: int, args: argparse.Namespace, recipient: object) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + args.seconds
    starts = sorted(random.uniform(0, args.seconds * 0.75) for _ in range(args.witnesses))
    tasks = [asyncio.create_task(witness(url, tally, i, s, recipient))
             for i, s in enumerate(starts)]
    tasks += [asyncio.create_task(hostile(url, port, tally, deadline))
              for _ in range(args.hostile)]
    await asyncio.gather(*tasks)
    return tally


def report(tally: Tally, rss: int, stored: tuple[int, int], args: argparse.Namespace,
           wall: float) -> None:
    acked = sum(v for k, v in tally.honest.items() if k.endswith("acknowledged"))
    lat = sorted(tally.latency)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
    honest_5xx = sum(v for k, v in tally.good.statuses.items() if k >= 500)
    hostile_5xx = Counter({k: v for k, v in tally.bad.statuses.items() if k >= 500})
    print(f"run: {args.witnesses} honest witnesses, {args.hostile} hostile clients, "
          f"{args.seconds:.0f} s of attacks, {wall:.0f} s wall")
    print(f"honest acknowledged: {acked}/{args.witnesses} "
          f"({100 * acked / max(1, args.witnesses):.1f} %)  {dict(tally.honest)}")
    print(f"5xx to honest witnesses: {honest_5xx}   statuses: "
          f"{dict(sorted(tally.good.statuses.items()))}")
    print(f"5xx to hostile clients: {dict(hostile_5xx)} (507 = refused for space, by design; "
          f"any other 5xx is a defect)   statuses: {dict(sorted(tally.bad.statuses.items()))}")
    print(f"honest latency: p50 {statistics.median(lat) if lat else 0:.2f} s, p99 {p99:.2f} s")
    print(f"server peak RSS: {rss / MiB:.0f} MiB (target <= 200 MB)")
    print(f"stored submissions: {stored[0]}, decrypting with the editor key: {stored[1]} "
          f"(acknowledged: {acked})")
    print(f"attacks started: {dict(tally.attacks)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--witnesses", type=int, default=150)
    ap.add_argument("--hostile", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="guwah-soak-") as tmp:
        data, private = Path(tmp) / "data", Path(tmp) / "tmp"
        data.mkdir(mode=0o700)
        private.mkdir(mode=0o700)
        identity = setup(data)
        with guwah_serve(data, private) as (proc, port), PeakRss(proc.pid) as rss:
            began = time.monotonic()
            tally = asyncio.run(drive(f"http://127.0.0.1:{port}", port, args,
                                      identity.recipient()))
            wall = time.monotonic() - began
        report(tally, rss.peak, decryptable(data, identity), args, wall)


if __name__ == "__main__":
    main()
