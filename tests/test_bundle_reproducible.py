"""The committed browser bundles are exactly what the pinned sources build.

A compromised server could serve altered JavaScript; what we can offer against that is
JavaScript anyone can rebuild bit for bit from package-lock.json and app/web/js, with
SHA-384 integrity hashes the templates pin. This test does the rebuild in a fresh
directory (fresh ``npm ci`` from the lockfile) and compares byte for byte.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "app" / "web" / "static" / "js"
PAGES = ["landing.js", "mailbox.js", "return.js", "submit.js"]
BUNDLES = sorted([*PAGES, "worker.js", "hash-worker.js", *(p.name for p in STATIC.glob("lib-*.js"))])
BUILT = sorted(p.name for p in STATIC.iterdir() if p.suffix in (".js", ".gz", ".json"))
SOURCES = [
    "package.json",
    "package-lock.json",
    "app/web/js",
    "app/crypto/wordlist.txt",
    "tests/js/build.mjs",
]


def _require_node() -> tuple[str, str]:
    """Fail (never skip) without node/npm or node_modules."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed (Debian: apt-get install nodejs npm), then run npm ci")
    if not (ROOT / "node_modules" / "esbuild" / "package.json").is_file():
        pytest.fail("node_modules is missing: run npm ci in the repository root")
    return node, npm


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Copy only the inputs into a fresh tree, `npm ci` there and build; return its out dir."""
    node, npm = _require_node()
    tree = tmp_path_factory.mktemp("rebuild")
    for rel in SOURCES:
        src, dst = ROOT / rel, tree / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    env = {**os.environ, "npm_config_update_notifier": "false"}
    ci = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert ci.returncode == 0, f"npm ci failed in a fresh tree: {ci.stderr[-2000:]}"
    build = subprocess.run(
        [node, "tests/js/build.mjs"], cwd=tree, capture_output=True, text=True, timeout=300
    )
    assert build.returncode == 0, build.stderr
    return tree / "app" / "web" / "static" / "js"


@pytest.mark.slow
def test_rebuild_makes_exactly_the_committed_files(rebuilt: Path) -> None:
    made = sorted(p.name for p in rebuilt.iterdir())
    assert made == BUILT, "the committed bundles are stale: run `npm ci && npm run build`"


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILT)
def test_rebuild_is_byte_identical(rebuilt: Path, name: str) -> None:
    committed = STATIC / name
    assert committed.is_file(), f"{committed} is missing: run npm run build"
    assert (rebuilt / name).read_bytes() == committed.read_bytes(), (
        f"{name} differs from a clean rebuild: run `npm ci && npm run build` and commit"
    )


def test_sri_json_matches_committed_files() -> None:
    """Print the integrity hashes (for templates) and check SRI.json states them."""
    recorded = json.loads((STATIC / "SRI.json").read_text())
    assert sorted(recorded) == sorted(BUNDLES)
    for name in BUNDLES:
        digest = sri((STATIC / name).read_bytes())
        print(f"{name}: {digest}")
        assert recorded[name] == digest


def test_gzip_twins_decode_to_the_pinned_bytes() -> None:
    """Each .gz the server may send decodes to exactly the file SRI.json pins."""
    for name in BUNDLES:
        plain = (STATIC / name).read_bytes()
        twin = (STATIC / f"{name}.gz").read_bytes()
        assert gzip.decompress(twin) == plain, name
        assert twin[4:8] == b"\0\0\0\0", f"{name}.gz records a time"


def test_every_page_module_is_pinned() -> None:
    """modules.json names, for each page, shared modules that exist and SRI.json pins."""
    modules = json.loads((STATIC / "modules.json").read_text())
    recorded = json.loads((STATIC / "SRI.json").read_text())
    assert sorted(modules) == PAGES
    for page, deps in modules.items():
        for dep in deps:
            assert dep in recorded and (STATIC / dep).is_file(), (page, dep)
        # what the page imports is what modules.json lists (static imports only)
        text = (STATIC / page).read_text("utf-8")
        imported = set(re.findall(r'from"\./(lib-[A-Z0-9]+\.js)"', text))
        assert imported <= set(deps), (page, imported)


@pytest.mark.parametrize("name", BUNDLES)
def test_bundles_say_they_are_generated(name: str) -> None:
    first = (STATIC / name).read_text("utf-8").split("\n", 1)[0]
    assert first.startswith("/* GENERATED by `npm run build` (tests/js/build.mjs) from ")
    assert "Do not edit" in first


def test_one_version_of_each_noble_library() -> None:
    """package.json overrides pin one @noble/curves and one @noble/hashes for every user."""
    lock = json.loads((ROOT / "package-lock.json").read_text())
    for lib in ("@noble/curves", "@noble/hashes"):
        versions = {entry["version"] for path, entry in lock["packages"].items()
                    if path.endswith(f"node_modules/{lib}")}
        assert len(versions) == 1, f"{lib}: {sorted(versions)}"


@pytest.mark.parametrize("name", BUNDLES)
def test_bundles_leak_no_build_machine_detail(name: str) -> None:
    text = (STATIC / name).read_text("utf-8")
    assert "sourceMappingURL" not in text
    for marker in (str(ROOT), "/tmp/", "/home/", "/root/", "/work/"):
        assert marker not in text, f"{name} contains the path {marker!r}"


def test_dependencies_are_exactly_pinned() -> None:
    """Exact versions in package.json; every locked package has an integrity hash."""
    pkg = json.loads((ROOT / "package.json").read_text())
    assert pkg["private"] is True
    assert pkg["dependencies"]["age-encryption"] == "0.3.1"
    for section in ("dependencies", "devDependencies"):
        for name, version in pkg[section].items():
            assert version[0].isdigit() and all(c.isdigit() or c == "." for c in version), (
                f"{name}@{version} is not an exact version"
            )
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["lockfileVersion"] >= 3
    for path, entry in lock["packages"].items():
        if path == "":
            continue
        assert entry.get("integrity", "").startswith("sha512-"), f"{path} has no integrity hash"
    for script in pkg.get("scripts", {}).values():
        assert "http" not in script and "curl" not in script and "wget" not in script
