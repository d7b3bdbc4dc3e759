"""Benchmark: text-only JS-off submissions per second at 50 concurrent, through ``guwah serve``.

Compared with a minimal FastAPI endpoint (same uvicorn options) that reads the request and
inserts the same row into SQLite (WAL, secure_delete, synchronous=FULL, like the store).
A second yardstick adds to that endpoint the same server-side codename KDF (scrypt, bounded by
the same concurrency), because a JS-off submission must derive the witness's mailbox: that cost
is deliberate (with JavaScript off the server derives the mailbox), so the fair ratio is
against the second one.
Prints rates, ratios (target >= 0.7x) and p50/p99 latencies.  Not a test.

    .venv/bin/python bench/bench_submit_rate.py [--requests 400] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from floors import free_port

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASELINE = r'''
import datetime, os, secrets, sqlite3, sys, threading
import anyio.to_thread
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from app.crypto.mailbox import derive_mailbox, new_codename
db, port, with_kdf, slots = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
for pragma in ("journal_mode=WAL", "secure_delete=ON", "synchronous=FULL"):
    conn.execute("PRAGMA " + pragma)
conn.execute("CREATE TABLE IF NOT EXISTS submissions (id TEXT PRIMARY KEY, desk_id INTEGER,"
             " day DATE, token_hash TEXT, reply_recipient TEXT, parent_id TEXT)")
sem = threading.BoundedSemaphore(slots)
app = FastAPI()

def kdf():
    with sem:
        return derive_mailbox(new_codename(), "X25519")

@app.post("/submit")
async def submit(request: Request):
    body = await request.body()
    if with_kdf:
        mailbox = await anyio.to_thread.run_sync(kdf)
        token_hash, recipient = mailbox.token_hash, mailbox.reply_recipient
    else:
        token_hash, recipient = secrets.token_hex(32), "age1" + "q" * 58
    conn.execute("INSERT INTO submissions VALUES (?, ?, ?, ?, ?, NULL)",
                 (secrets.token_urlsafe(16), 1, datetime.date.today().isoformat(),
                  token_hash, recipient))
    return HTMLResponse("<p>ok %d</p>" % len(body))

uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, server_header=False,
            date_header=False, proxy_headers=False, log_level="warning")
'''


def wait_up(url: str) -> None:
    for _ in range(300):
        try:
            httpx.get(url + "/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


async def load(url: str, tokens: list[str], concurrency: int) -> tuple[float, list[float], int]:
    text = "x" * 4000  # a 4 KiB testimony
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[str] = asyncio.Queue()
    for t in tokens:
        queue.put_nowait(t)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker() -> None:
            nonlocal failures
            while True:
                try:
                    token = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                files = [("csrf", (None, token)), ("desk", (None, "default")),
                         ("testimony", (None, text)), ("kept_codename", (None, "yes"))]
                t = time.perf_counter()
                r = await client.post("/submit", files=files)
                latencies.append(time.perf_counter() - t)
                if r.status_code != 200:
                    failures += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return elapsed, latencies, failures


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    from app.crypto import X25519Identity, fingerprint
    from app.settings import load_settings
    from app.store import Store
    from app.store.schema import init_store

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tmpdir = work / "tmp"
        tmpdir.mkdir(mode=0o700)
        data = work / "data"
        data.mkdir(mode=0o700)
        settings = load_settings(data, database_url=f"sqlite:///{data / 'guwah.sqlite3'}")
        with Store(settings) as st:
            init_store(st)
            st.add_desk("default", "bench")
            pub = secrets.token_bytes(32)
            st.add_recipient("default", "bench", str(X25519Identity.generate().recipient()),
                             base64.b64encode(pub).decode(), fingerprint(pub))
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
        env.update(TMPDIR=str(tmpdir), GUWAH_DATA_DIR=str(data), PYTHONPATH=str(ROOT))

        def run(label: str, cmd: Callable[[int], list[str]], needs_tokens: bool) -> None:
            port = free_port()
            proc = subprocess.Popen(cmd(port), env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            url = f"http://127.0.0.1:{port}"
            try:
                wait_up(url)
                tokens = []
                if needs_tokens:
                    with httpx.Client(base_url=url) as c:
                        for _ in range(args.requests + 20):
                            page = c.get("/submit").text
                            tokens.append(re.search(r'name="csrf" value="([^"]+)"', page)[1])
                else:
                    tokens = ["-"] * (args.requests + 20)
                asyncio.run(load(url, tokens[:20], args.concurrency))  # warm up
                results[label] = asyncio.run(load(url, tokens[20:], args.concurrency))
            finally:
                proc.terminate()
                proc.wait(10)

        guwah = str(Path(sys.executable).with_name("guwah"))
        slots = str(settings.kdf_concurrency)
        run("guwah", lambda port: [guwah, "serve", "--data-dir", str(data), "--port", str(port)],
            True)
        run("baseline", lambda port: [sys.executable, "-c", BASELINE, str(work / "b1.sqlite3"),
                                      str(port), "0", slots], False)
        run("baseline+kdf", lambda port: [sys.executable, "-c", BASELINE,
                                          str(work / "b2.sqlite3"), str(port), "1", slots], False)

    print(f"{args.requests} text-only submissions (4 KiB), {args.concurrency} concurrent, "
          f"{os.cpu_count()} cores, KDF slots {slots}")
    rates = {}
    for label, (elapsed, lat, failures) in results.items():
        rates[label] = len(lat) / elapsed
        print(f"{label:14s} {rates[label]:8.1f} req/s   p50 {p(lat, 50) * 1000:7.1f} ms   "
              f"p99 {p(lat, 99) * 1000:7.1f} ms   non-200: {failures}")
    print(f"ratio guwah / minimal insert:        {rates['guwah'] / rates['baseline']:.3f}x")
    print(f"ratio guwah / minimal insert + KDF:  {rates['guwah'] / rates['baseline+kdf']:.2f}x"
          "   (target >= 0.7x)")


if __name__ == "__main__":
    main()
