"""Benchmark: ChaCha20-Poly1305 in ``cryptography`` vs PyNaCl (libsodium) on 64 KiB chunks.

Decides which library app/crypto/stream.py uses for the age payload.  Each round measures both
libraries back to back (process CPU time, so other load on the machine matters less) and the
ratio is taken per round; the median round is printed with all rounds.  SHA-256 (hashlib,
OpenSSL) is printed alongside as the cost of the other per-byte job on the request path.

    .venv/bin/python bench/bench_aead.py [--mib 256] [--rounds 5]
"""

import argparse
import hashlib
import os
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt,
    crypto_aead_chacha20poly1305_ietf_encrypt,
)

CHUNK = 64 * 1024


def gib_per_cpu_second(job: Callable[[], object], n: int, mib: int) -> float:
    """Run ``job`` n times, dropping each result (as a stream does once it is written)."""
    start = time.process_time()
    for _ in range(n):
        job()
    return mib / 1024 / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="bytes per measurement, MiB")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    key, nonce, chunk = os.urandom(32), bytes(12), os.urandom(CHUNK)
    n = args.mib * 1024 * 1024 // CHUNK
    aead = ChaCha20Poly1305(key)
    sealed = aead.encrypt(nonce, chunk, None)
    jobs: dict[str, Callable[[], object]] = {
        "cryptography encrypt": lambda: aead.encrypt(nonce, chunk, None),
        "pynacl encrypt": lambda: crypto_aead_chacha20poly1305_ietf_encrypt(
            chunk, None, nonce, key),
        "cryptography decrypt": lambda: aead.decrypt(nonce, sealed, None),
        "pynacl decrypt": lambda: crypto_aead_chacha20poly1305_ietf_decrypt(
            sealed, None, nonce, key),
        "sha256 (hashlib)": lambda: hashlib.sha256(chunk).digest(),
    }
    rounds: list[dict[str, float]] = []
    for _ in range(args.rounds):
        rounds.append({name: gib_per_cpu_second(job, n, args.mib) for name, job in jobs.items()})
    print(f"{args.mib} MiB per measurement, {args.rounds} rounds, GiB per CPU second")
    for name in jobs:
        speeds = [r[name] for r in rounds]
        print(f"  {name:22} median {statistics.median(speeds):5.2f}  "
              f"rounds {' '.join(f'{s:.2f}' for s in speeds)}")
    for op in ("encrypt", "decrypt"):
        ratios = [r[f"cryptography {op}"] / r[f"pynacl {op}"] for r in rounds]
        print(f"ratio cryptography/pynacl {op}: median {statistics.median(ratios):.2f}x "
              f"(rounds {' '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
