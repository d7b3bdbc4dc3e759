"""The workers' incremental SHA-256 (app/web/js/sha256.js and its generated rounds).

Checked against Python's hashlib under node, with the JIT and without it (``--jitless``, what
Tor Browser "Safer" leaves), for lengths around every block boundary fed in pieces of awkward
sizes; and the generated rounds file must be what its generator writes today.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "tests" / "js" / "gen-sha256.mjs"
ROUNDS = ROOT / "app" / "web" / "js" / "sha256-rounds.js"
MODULE = json.dumps((ROOT / "app" / "web" / "js" / "sha256.js").as_uri())
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="needs node")

SCRIPT = """
import { readFileSync } from "node:fs";
import { Sha256 } from %s;
const out = [];
for (const c of JSON.parse(readFileSync(0, "utf8"))) {
  const data = Uint8Array.from(Buffer.from(c.data, "hex"));
  const h = new Sha256();
  for (let i = 0; i < data.length; i += c.piece) h.update(data.subarray(i, i + c.piece));
  out.push(h.hex());
}
process.stdout.write(JSON.stringify(out));
"""


def _cases() -> list[dict[str, object]]:
    lengths = [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4096, 65537]
    pieces = [1, 7, 63, 64, 65, 1000, 1 << 20]
    return [{"data": os.urandom(n).hex(), "piece": pieces[i % len(pieces)]}
            for i, n in enumerate(lengths * 2)]


@pytest.mark.parametrize("flags", [[], ["--jitless"]], ids=["jit", "jitless"])
def test_matches_hashlib(flags: list[str]) -> None:
    cases = _cases()
    proc = subprocess.run([str(NODE), *flags, "--input-type=module", "-e", SCRIPT % MODULE],
                          input=json.dumps(cases), capture_output=True, text=True, timeout=120,
                          check=True)
    got = json.loads(proc.stdout)
    for case, digest in zip(cases, got, strict=True):
        data = bytes.fromhex(str(case["data"]))
        assert digest == hashlib.sha256(data).hexdigest(), f"length {len(data)}"


def test_no_update_after_digest() -> None:
    script = (f"import {{ Sha256 }} from {MODULE}; const h = new Sha256(); h.hex();"
              "try { h.update(new Uint8Array(1)); console.log('accepted'); }"
              "catch (e) { console.log('refused'); }")
    proc = subprocess.run([str(NODE), "--input-type=module", "-e", script],
                          capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "refused"


def test_generated_rounds_are_current() -> None:
    proc = subprocess.run([str(NODE), str(GENERATOR), "--stdout"], capture_output=True,
                          text=True, timeout=60, check=True)
    assert proc.stdout == ROUNDS.read_text(), "run: node tests/js/gen-sha256.mjs"
