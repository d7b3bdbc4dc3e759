"""Several stateless app nodes on one PostgreSQL ("Beyond one machine").

Real parts only: a real PostgreSQL (GUWAH_TEST_DATABASE_URL, or explicitly
postgresql+psycopg://postgres@127.0.0.1:5432/test; unreachable -> the test FAILS), a fresh
schema per test, and a least-privilege role for the nodes (the schema itself is migrated once
by the owner, as docs/multinode.md says). Two data dirs share the database, blob_backend "db"
and the same server key file; two real `guwah serve` processes on two ports.

* the witness fetches the JS-off form from node B and posts it (multipart, with a file) to
  node A — nodes behind one Onionbalance address must accept each other's form tokens;
* the operator exports through node B's data dir, the editor imports with `guwah-editor`
  and every byte decrypts; the editor's outbox is imported through node A; node B then shows
  the submission gone and the reply in the witness's mailbox;
* races: two nodes exporting or importing at the same moment never export a submission twice
  nor apply an outbox twice (PostgreSQL row locks + the unique constraints of the schema);
* deploy/multinode/check-node.sh sees that the nodes agree (and when one does not);
* deploy/multinode/onionbalance-config.sh output passes onionbalance's own loader and
  `tor --verify-config`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.ports import free_port
from tests.roundtrip_helper import Chain, run_guwah, submit

pytestmark = [pytest.mark.database, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
MULTINODE = ROOT / "deploy" / "multinode"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_URL = os.environ.get("GUWAH_TEST_DATABASE_URL") or DEFAULT_PG
GUWAH = str(Path(sys.executable).with_name("guwah"))


# ------------------------------------------------------------------------------ database


def _with_schema(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote('-csearch_path=' + schema, safe='')}"


@dataclass
class Pg:
    """A fresh schema; ``owner_url`` migrates it, ``app_url`` is the nodes' least-privilege role."""

    owner_url: str
    app_url: str
    schema: str
    role: str
    engine: object  # the owner's SQLAlchemy engine on the schema


@pytest.fixture
def pg() -> Iterator[Pg]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if not PG_URL.startswith("postgresql"):
        pytest.fail(f"this test needs PostgreSQL: GUWAH_TEST_DATABASE_URL is {PG_URL!r}", pytrace=False)
    admin = create_engine(PG_URL)
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to connect is the same finding
        admin.dispose()
        pytest.fail(f"PostgreSQL unreachable at {PG_URL}: {str(exc).splitlines()[0]}", pytrace=False)
    schema = "mn_" + secrets.token_hex(6)
    role = "guwah_app_" + secrets.token_hex(6)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE'))
        conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"'))
        # What docs/multinode.md tells the operator: whatever the owner creates later (each
        # migration) is granted to the app role automatically.
        owner = make_url(PG_URL).username or "postgres"
        conn.execute(
            text(
                f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA "{schema}" '
                f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{role}"'
            )
        )
        conn.execute(
            text(
                f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA "{schema}" '
                f'GRANT USAGE, SELECT ON SEQUENCES TO "{role}"'
            )
        )
    app_url = make_url(PG_URL).set(username=role, password=None)
    app = app_url.render_as_string(hide_password=False)
    owner_url = _with_schema(PG_URL, schema)
    engine = create_engine(owner_url)
    try:
        yield Pg(owner_url, _with_schema(app, schema), schema, role, engine)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def sql(pg: Pg, query: str, **params: object) -> list[tuple]:
    from sqlalchemy import text

    with pg.engine.begin() as conn:  # type: ignore[attr-defined]
        result = conn.execute(text(query), params)
        return [tuple(r) for r in result] if result.returns_rows else []


# ------------------------------------------------------------------------------ nodes


def cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``guwah`` with a clean environment (no GUWAH_* from the caller) plus ``env_extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
    env.update(env_extra or {})
    return subprocess.run(
        [GUWAH, *args], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env
    )


def node_config(data_dir: Path, database_url: str) -> None:
    """What every node's guwah.toml says (deploy/multinode/guwah.toml.example)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    template = (MULTINODE / "guwah.toml.example").read_text()
    text = re.sub(r'(?m)^database_url = ".*"$', f'database_url = "{database_url}"', template)
    assert f'database_url = "{database_url}"' in text and 'blob_backend = "db"' in text
    path = data_dir / "guwah.toml"
    path.write_text(text)
    path.chmod(0o600)


@dataclass
class Nodes:
    chain: Chain  # the editor's round trip; chain.data_dir is node B's data dir
    a: Path
    b: Path
    fingerprint: str
    pg: Pg


def two_nodes(tmp_path: Path, pg: Pg) -> Nodes:
    """The documented procedure: node B first (migrations once, by the owner), then node A."""
    chain = Chain(tmp_path / "chain")
    b, a = chain.data_dir, tmp_path / "node-a"
    node_config(b, pg.app_url)
    # migrations run once, with the owner's URL given for that command only
    r = cli("migrate", "--data-dir", str(b), env_extra={"GUWAH_DATABASE_URL": pg.owner_url})
    assert r.returncode == 0, r.stderr
    r = cli("init", "--data-dir", str(b))  # as the app role: schema at head, new server key
    assert r.returncode == 0, r.stderr
    fingerprint = re.search(r"server key: (\S+)", r.stdout).group(1)
    assert "blobs:      db" in r.stdout
    # node A: config first, then the key copied byte for byte, then init (keeps both)
    node_config(a, pg.app_url)
    shutil.copyfile(b / "server-signing-key", a / "server-signing-key")
    (a / "server-signing-key").chmod(0o600)
    r = cli("init", "--data-dir", str(a))
    assert r.returncode == 0, r.stderr
    assert f"server key: {fingerprint}" in r.stdout
    chain.setup(init=False)  # editor keyring, recipients add (through node B), trust-server
    return Nodes(chain, a, b, fingerprint, pg)


@contextmanager
def serve(data_dir: Path, tmp: Path, name: str) -> Iterator[str]:
    """``guwah serve`` on one node: its own TMPDIR (per node), the shared database."""
    tmpdir = tmp / f"{name}-tmp"
    tmpdir.mkdir(mode=0o700)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
    env.update({"TMPDIR": str(tmpdir), "GUWAH_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"})
    log_path = tmp / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [GUWAH, "serve", "--data-dir", str(data_dir), "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()
            with suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            assert time.monotonic() < deadline, "guwah serve did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def csrf_of(page: httpx.Response) -> str:
    assert page.status_code == 200, page.text[:300]
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def check_node(data_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
    return subprocess.run(
        [
            str(MULTINODE / "check-node.sh"),
            "--env-file",
            "none",
            "--python",
            sys.executable,
            "--data-dir",
            str(data_dir),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def bundle_manifest(path: Path) -> dict:
    with tarfile.open(path) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        return json.loads(member.read())


# ------------------------------------------------------------------------------ the story


def test_two_nodes_submit_export_import(tmp_path: Path, pg: Pg) -> None:
    nodes = two_nodes(tmp_path, pg)
    chain = nodes.chain
    canary = secrets.token_hex(12)
    testimony = f"I saw the trucks at night. {canary}-testimony"
    evidence = b"\xff\xd8\xff\xe0JFIF" + f"evidence {canary}".encode() * 3000 + bytes(range(256))
    reply_text = f"Thank you, we are checking it. {canary}-reply"

    # both nodes agree (key, database, schema); check-node says so
    digest = None
    for node in (nodes.b, nodes.a):
        r = check_node(
            node,
            "--expect-fingerprint",
            nodes.fingerprint,
            *(["--expect-key-digest", digest] if digest else []),
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert "FAIL" not in r.stdout
        assert 'blob_backend = "db"' in r.stdout
        digest = re.search(r"key-digest=(\w+)", r.stdout).group(1)
        assert "the database role is not a superuser" in r.stdout

    with serve(nodes.a, tmp_path, "node-a") as url_a, serve(nodes.b, tmp_path, "node-b") as url_b:
        with httpx.Client(timeout=120) as web:
            # the witness's form comes from node B, the post lands on node A (one onion address)
            token = csrf_of(web.get(url_b + "/submit"))
            parts = [
                ("csrf", (None, token)),
                ("desk", (None, "default")),
                ("lang", (None, "en")),
                ("website", (None, "")),
                ("testimony", (None, testimony)),
                ("kept_codename", (None, "yes")),
                ("where", (None, "the depot")),
                ("when", (None, "last week")),
                ("consent", (None, "ask")),
                ("never_name", (None, "my neighbour")),
                ("files", ("evidence.jpg", evidence, "image/jpeg")),
            ]
            r = web.post(url_a + "/submit", files=parts)
            assert r.status_code == 200, r.text[:500]
            codename = re.search(r'id="codename"[^>]*>([^<]+)<', r.text).group(1).strip()
            assert len(codename.split()) == 8
            assert "JavaScript was off" in r.text

            # the operator exports through node B; the editor imports on the laptop
            bundle = chain.export()
            assert bundle is not None
            assert bundle_manifest(bundle)["server_key"]  # signed by the shared key
            chain.editor_import(bundle)  # checks the pinned fingerprint: the shared key
            [sub] = chain.submission_dirs()
            assert testimony in (sub / "testimony.txt").read_text()
            attachment = next(f for f in sub.iterdir() if f.name.endswith("evidence.jpg"))
            assert attachment.read_bytes() == evidence
            assert "SHA-256 verified" in (sub / "testimony.txt").read_text()

            # reply + done, imported through node A
            chain.reply(sub, reply_text)
            chain.done(sub)
            outbox = chain.outbox()
            r = run_guwah("import", str(outbox), "--data-dir", str(nodes.a))
            assert "1 reply(ies) stored, 1 submission(s) deleted" in r.stdout

            # node B sees it: the submission is gone, the reply is in the witness's mailbox
            stats = json.loads(run_guwah("stats", "--json", "--data-dir", str(nodes.b)).stdout)
            assert (stats["submissions"], stats["deleted"], stats["replies"]) == (0, 1, 1)
            with chain.store() as store:
                assert store.list_submissions() == []
            token = csrf_of(web.get(url_b + "/return"))
            page = web.post(url_b + "/return", data={"csrf": token, "codename": codename})
            assert page.status_code == 200
            assert reply_text in page.text
            # the next export (node A) carries only the reply, for the desk's other editors;
            # after it, neither node has anything new
            r = run_guwah("export", "--to", str(chain.usb), "--data-dir", str(nodes.a))
            assert "0 submission(s), 0 file(s), 1 reply(ies) for the desk's editors" in r.stdout
            for node in (nodes.b, nodes.a):
                r = run_guwah("export", "--to", str(chain.usb), "--data-dir", str(node))
                assert "nothing new to export" in r.stdout

    # ciphertext only, and only in the database: nothing in the nodes' data dirs but the
    # config and the key; no plaintext in either data dir, TMPDIR or the database
    for node in (nodes.a, nodes.b):
        files = sorted(p.name for p in node.rglob("*") if p.is_file())
        assert files == ["guwah.toml", "server-signing-key"], files
    needles = [canary.encode(), codename.encode()]
    for path in [*nodes.a.rglob("*"), *nodes.b.rglob("*"), *tmp_path.glob("node-*-tmp/**/*")]:
        if path.is_file():
            data = path.read_bytes()
            assert not any(n in data for n in needles), path
    for needle in needles:
        rows = sql(pg, "SELECT count(*) FROM blob_chunks WHERE position(:n IN data) > 0", n=needle)
        assert rows == [(0,)]
    # the deleted submission's ciphertext left the database; only the reply's blob remains
    refs = sql(pg, "SELECT DISTINCT ref FROM blob_chunks")
    replies = sql(pg, "SELECT blob_ref FROM replies")
    assert sorted(refs) == sorted(replies) and len(replies) == 1
    assert sql(pg, "SELECT count(*) FROM blob_staging") == [(0,)]


def test_the_node_role_cannot_change_the_schema(tmp_path: Path, pg: Pg) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ProgrammingError

    two_nodes(tmp_path, pg)
    engine = create_engine(pg.app_url)
    try:
        with pytest.raises(ProgrammingError, match="permission denied"), engine.begin() as conn:
            conn.execute(text("CREATE TABLE sneaky (i int)"))
        with pytest.raises(ProgrammingError, match="must be owner"), engine.begin() as conn:
            conn.execute(text("DROP TABLE submissions"))
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------ races


def _store_submissions(nodes: Nodes, n: int) -> list[str]:
    from app.crypto.mailbox import new_codename
    from app.settings import load_settings
    from app.store import Store

    with Store(load_settings(nodes.a)) as store:
        return [submit(store, "default", new_codename(), f"testimony {i}") for i in range(n)]


def _wait_for_lock_wait(pg: Pg) -> None:
    """Until a backend waits for the desk row lock of record_export (no timing assertion)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = sql(
            pg,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query ILIKE '%FROM desks%FOR UPDATE%'",
        )
        if rows[0][0] > 0:
            return
        time.sleep(0.05)
    raise AssertionError("no backend ever waited for the desk row")


def test_export_race_second_node_is_refused(tmp_path: Path, pg: Pg) -> None:
    """Node A commits its export bookkeeping while node B's is in flight: B must not export."""
    nodes = two_nodes(tmp_path, pg)
    ids = _store_submissions(nodes, 2)
    [(desk_id,)] = sql(pg, "SELECT id FROM desks WHERE name = 'default'")
    usb = tmp_path / "usb-b"
    usb.mkdir()

    from sqlalchemy import text

    with pg.engine.connect() as conn:  # type: ignore[attr-defined]
        tx = conn.begin()
        # exactly what record_export does on node A, held open at the decisive moment
        conn.execute(text("SELECT id FROM desks WHERE id = :d FOR UPDATE"), {"d": desk_id})
        conn.execute(
            text(
                "INSERT INTO exports (desk_id, sequence, day, submission_ids) "
                "VALUES (:d, 1, CURRENT_DATE, :ids)"
            ),
            {"d": desk_id, "ids": json.dumps(sorted(ids))},
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
        proc = subprocess.Popen(
            [GUWAH, "export", "--to", str(usb), "--data-dir", str(nodes.b)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        try:
            _wait_for_lock_wait(pg)  # B wrote its bundle, now waits for the desk row
        finally:
            tx.commit()
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out + err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "another export of desk default ran at the same time" in err
    assert list(usb.iterdir()) == []  # B's bundle was removed: nothing exported twice
    assert sql(pg, "SELECT sequence FROM exports") == [(1,)]
    # the bookkeeping stayed right: the next export from B has nothing new, --all has both
    assert "nothing new" in run_guwah("export", "--to", str(usb), "--data-dir", str(nodes.b)).stdout
    run_guwah("export", "--to", str(usb), "--all", "--data-dir", str(nodes.b))
    [bundle] = list(usb.iterdir())
    manifest = bundle_manifest(bundle)
    assert manifest["sequence"] == 2
    assert sorted(s["id"] for s in manifest["submissions"]) == sorted(ids)


def test_concurrent_exports_and_imports_from_two_nodes(tmp_path: Path, pg: Pg) -> None:
    """Whatever the interleaving: every submission in exactly one bundle, each outbox once."""
    nodes = two_nodes(tmp_path, pg)
    chain = nodes.chain
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
    seen: list[str] = []
    bundles: list[Path] = []
    for round_ in range(2):
        ids = _store_submissions(nodes, 2)
        outs = {}
        for name, node in (("a", nodes.a), ("b", nodes.b)):
            folder = tmp_path / f"usb-{round_}-{name}"
            folder.mkdir()
            outs[name] = (
                folder,
                subprocess.Popen(
                    [GUWAH, "export", "--to", str(folder), "--data-dir", str(node)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                    cwd=ROOT,
                ),
            )
        written = []
        for _name, (folder, proc) in outs.items():
            _out, err = proc.communicate(timeout=300)
            if proc.returncode == 0:
                written += list(folder.iterdir())
            else:
                assert proc.returncode == 1 and len(err.strip().splitlines()) == 1, err
                assert err.startswith("error: ") and "Traceback" not in err
                assert list(folder.iterdir()) == []
        assert written, "one of the two exports must succeed"
        round_ids = [s["id"] for b in written for s in bundle_manifest(b)["submissions"]]
        assert sorted(round_ids) == sorted(ids)  # each submission exactly once
        seen += round_ids
        bundles += written
    assert len(seen) == len(set(seen)) == 4
    sequences = sorted(bundle_manifest(b)["sequence"] for b in bundles)
    assert sequences == list(range(1, len(bundles) + 1))
    assert sql(pg, "SELECT count(*) FROM exports") == [(len(bundles),)]

    # the editor reads them all, replies to every submission and marks them done
    for bundle in sorted(bundles, key=lambda b: bundle_manifest(b)["sequence"]):
        chain.editor_import(bundle)
    subs = chain.submission_dirs()
    assert len(subs) == 4
    for sub in subs:
        chain.reply(sub, "Received, thank you.")
        chain.done(sub)
    outbox = chain.outbox()
    procs = [
        subprocess.Popen(
            [GUWAH, "import", str(outbox), "--data-dir", str(node)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for node in (nodes.a, nodes.b)
    ]
    results = [(p.wait(300), *p.communicate()) for p in procs]
    assert sorted(rc for rc, _o, _e in results) == [0, 1], results
    for rc, _out, err in results:
        if rc == 1:
            assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    stats = json.loads(run_guwah("stats", "--json", "--data-dir", str(nodes.b)).stdout)
    assert (stats["submissions"], stats["deleted"], stats["replies"]) == (0, 4, 4)
    assert sql(pg, "SELECT count(*) FROM outbox_bundles") == [(1,)]
    assert sql(pg, "SELECT count(*) FROM blob_staging") == [(0,)]
    orphans = sql(
        pg,
        "SELECT count(DISTINCT ref) FROM blob_chunks WHERE ref NOT IN "
        "(SELECT blob_ref FROM replies UNION SELECT blob_ref FROM submission_files)",
    )
    assert orphans == [(0,)]


# ------------------------------------------------------------------------------ check-node


def test_check_node_finds_a_node_that_disagrees(tmp_path: Path, pg: Pg) -> None:
    nodes = two_nodes(tmp_path, pg)
    good = check_node(nodes.b, "--expect-fingerprint", nodes.fingerprint)
    digest = re.search(r"key-digest=(\w+)", good.stdout).group(1)

    # same key, re-encoded (trailing blank line): signs alike, but form tokens would differ
    odd = tmp_path / "node-odd"
    node_config(odd, pg.app_url)
    key = (nodes.b / "server-signing-key").read_bytes()
    (odd / "server-signing-key").write_bytes(key.rstrip(b"\n") + b"\n\n")
    (odd / "server-signing-key").chmod(0o600)
    r = check_node(odd, "--expect-fingerprint", nodes.fingerprint, "--expect-key-digest", digest)
    assert r.returncode == 1
    assert "is the one editors pinned" in r.stdout and "FAIL  key file digest" in r.stdout

    # a node with its own key and filesystem blobs: two failures, one line each
    lone = tmp_path / "node-lone"
    r = cli("init", "--data-dir", str(lone), "--database-url", pg.app_url)
    assert r.returncode == 0, r.stderr
    r = check_node(lone, "--expect-fingerprint", nodes.fingerprint)
    assert r.returncode == 1
    fails = [line for line in r.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 2, r.stdout
    assert "blob_backend" in fails[0] and "is not " + nodes.fingerprint in fails[1]

    # as installed: the URL in an env file systemd reads (a "&" in it is not shell syntax)
    env_file = tmp_path / "guwah.env"
    env_file.write_text(
        "# as deploy/install.sh writes it\n"
        f"GUWAH_DATA_DIR={nodes.a}\nPYTHONDONTWRITEBYTECODE=1\n"
        f"GUWAH_DATABASE_URL={pg.app_url}&application_name=check-node\n"
    )
    r = subprocess.run(
        [
            str(MULTINODE / "check-node.sh"),
            "--env-file",
            str(env_file),
            "--python",
            sys.executable,
            "--expect-fingerprint",
            nodes.fingerprint,
            "--expect-key-digest",
            digest,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "application_name=check-node" in r.stdout

    # bad usage: one line, no traceback
    r = subprocess.run(
        [str(MULTINODE / "check-node.sh"), "--bogus"], capture_output=True, text=True
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unknown option" in r.stderr


# ------------------------------------------------------------------------------ onionbalance


def _onion_address(public: bytes) -> str:
    checksum = hashlib.sha3_256(b".onion checksum" + public + b"\x03").digest()[:2]
    return base64.b32encode(public + checksum + b"\x03").decode().lower()


def _tor_secret_key_file(path: Path) -> str:
    """A tor-format hs_ed25519_secret_key; returns its onion address (without .onion)."""
    from nacl.bindings import crypto_scalarmult_ed25519_base_noclamp

    h = bytearray(hashlib.sha512(secrets.token_bytes(32)).digest())
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    public = crypto_scalarmult_ed25519_base_noclamp(bytes(h[:32]))
    path.write_bytes(b"== ed25519v1-secret: type0 ==\x00\x00\x00" + bytes(h))
    path.chmod(0o600)
    return _onion_address(public)


def _need(tool: str) -> str:
    found = shutil.which(tool) or (
        f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None
    )
    if found is None:
        pytest.fail(f"{tool} is missing: apt-get install -y onionbalance tor")
    return found


def ob_config(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
    return subprocess.run(
        [str(MULTINODE / "onionbalance-config.sh"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_onionbalance_config_generator(tmp_path: Path) -> None:
    _need("onionbalance-config")
    tor = _need("tor")
    frontend_key = tmp_path / "hs_ed25519_secret_key"
    frontend = _tor_secret_key_file(frontend_key)
    instances = [_tor_secret_key_file(tmp_path / f"instance-{i}.key") for i in range(2)]
    out = tmp_path / "ob"
    r = ob_config(
        "--out",
        str(out),
        "--key",
        str(frontend_key),
        "--instance",
        instances[0] + ".onion",
        "--instance",
        instances[1].upper(),
    )
    assert r.returncode == 0, r.stderr
    assert f"frontend address: {frontend}.onion" in r.stdout
    assert (out / "frontend-address").read_text() == f"{frontend}.onion\n"
    assert (out / f"{frontend}.key").read_bytes() == frontend_key.read_bytes()
    assert (out / f"{frontend}.key").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["README", "backends", "config.yaml", "frontend-address", f"{frontend}.key"]
    )

    # onionbalance's own loader accepts config.yaml and the key gives the frontend address
    check = (
        "import sys, logging; logging.disable(logging.CRITICAL)\n"
        "from onionbalance.hs_v3.onionbalance import my_onionbalance\n"
        "from onionbalance.hs_v3.service import OnionbalanceService\n"
        "my_onionbalance.config_path = sys.argv[1]\n"
        "data = my_onionbalance.load_config_file()\n"
        "svc = object.__new__(OnionbalanceService)\n"
        "key, address = svc._load_service_keys(data['services'][0], sys.argv[1])\n"
        "print(address, svc.is_priv_key_in_tor_format)\n"
        "print(' '.join(i['address'] for i in data['services'][0]['instances']))\n"
    )
    res = subprocess.run(
        ["/usr/bin/python3", "-c", check, str(out / "config.yaml")], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    first, second = res.stdout.splitlines()
    assert first == f"{frontend}.onion True"
    assert second.split() == [f"{a}.onion" for a in instances]

    # each backend: ob_config + torrc that tor itself accepts (MasterOnionAddress registered)
    for i, address in enumerate(instances, 1):
        backend = out / "backends" / f"node{i}"
        assert (backend / "ob_config").read_text() == f"MasterOnionAddress {frontend}.onion\n"
        assert (backend / "instance-address").read_text() == f"{address}.onion\n"
        torrc = (backend / "torrc").read_text()
        shipped = (ROOT / "deploy/tor/torrc").read_text()
        assert torrc.count("HiddenServiceOnionbalanceInstance 1") == 1
        added = [x for x in torrc.splitlines() if x not in shipped.splitlines()]
        assert len(added) == 3 and added[-1] == "HiddenServiceOnionbalanceInstance 1", added
        assert [x for x in torrc.splitlines() if x not in added] == shipped.splitlines()
        block = torrc.split("HiddenServiceDir /var/lib/tor/guwah/", 1)[1]
        assert "HiddenServiceOnionbalanceInstance 1" in block  # inside the guwah service
        hs = tmp_path / f"hs{i}"
        (hs / "guwah").mkdir(parents=True, mode=0o700)
        hs.chmod(0o700)
        shutil.copy(backend / "ob_config", hs / "guwah" / "ob_config")
        copy = tmp_path / f"torrc{i}"
        copy.write_text(torrc.replace("/var/lib/tor/", f"{hs}/"))
        data = tmp_path / f"tor-data{i}"
        data.mkdir(mode=0o700)
        cmd = [tor, "--verify-config", "-f", str(copy), "--DataDirectory", str(data)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0 and "Configuration was valid" in res.stdout, res.stdout
        assert f"MasterOnionAddress {frontend}.onion registered" in res.stdout
        # the check has teeth: tor refuses a broken ob_config
        (hs / "guwah" / "ob_config").write_text("MasterOnionAddress nonsense.onion\n")
        assert subprocess.run(cmd, capture_output=True, text=True).returncode != 0


def test_onionbalance_config_new_key_and_errors(tmp_path: Path) -> None:
    _need("onionbalance-config")
    instance = _tor_secret_key_file(tmp_path / "i.key")
    out = tmp_path / "ob"
    r = ob_config("--out", str(out), "--new-key", "--instance", instance)
    assert r.returncode == 0, r.stderr
    frontend = (out / "frontend-address").read_text().strip().removesuffix(".onion")
    key = out / f"{frontend}.key"
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # Onionbalance PEM
    assert key.stat().st_mode & 0o777 == 0o600

    bad_checksum = instance[:-3] + ("a" if instance[-3] != "a" else "b") + instance[-2:]
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"not a key\n")
    cases = [
        ([], "--out DIR is required"),
        (["--out", str(tmp_path / "x")], "give the frontend key"),
        (["--out", str(tmp_path / "x"), "--new-key"], "--instance ADDRESS"),
        (
            ["--out", str(tmp_path / "x"), "--new-key", "--instance", "example.onion"],
            "is not a v3 onion address",
        ),
        (
            [
                "--out",
                str(tmp_path / "x"),
                "--new-key",
                "--instance",
                instance,
                "--instance",
                instance + ".onion",
            ],
            "given twice",
        ),
        (
            ["--out", str(tmp_path / "x"), "--new-key", "--key", str(junk), "--instance", instance],
            "not both",
        ),
        (
            ["--out", str(tmp_path / "x"), "--key", str(junk), "--instance", instance],
            "could not load",
        ),
        (
            ["--out", str(tmp_path / "x"), "--new-key", "--instance", bad_checksum],
            "Cannot load instance",
        ),
        (["--out", str(out), "--new-key", "--instance", instance], "is not empty"),
        (
            [
                "--out",
                str(tmp_path / "x"),
                "--new-key",
                "--instance",
                instance,
                "--torrc",
                str(junk),
            ],
            "no HiddenServiceDir",
        ),
        (["--bogus"], "unknown option"),
    ]
    for args, message in cases:
        r = ob_config(*args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("onionbalance-config.sh: error: "), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, (args, r.stderr)
        assert not (tmp_path / "x").exists(), args  # nothing half-written
    assert ob_config("--help").stdout.startswith("Usage: onionbalance-config.sh")


def test_multinode_scripts_are_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is missing: apt-get install -y shellcheck")
    scripts = sorted(str(p) for p in MULTINODE.glob("*.sh"))
    assert len(scripts) == 2
    res = subprocess.run([shellcheck, *scripts], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
