"""Shared pytest fixtures. Each owner keeps a clearly marked block; add yours below, not inside."""

from __future__ import annotations

# ============================================================================================
# Store / settings / CLI fixtures — owner: store engineer (app/store, app/server_cli).
# Real SQLite by default; real PostgreSQL when GUWAH_TEST_DATABASE_URL is set, e.g.
#   GUWAH_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test
# Every test then gets its own PostgreSQL schema (search_path in the URL), dropped afterwards,
# so parallel or repeated runs never collide.
# ============================================================================================
import base64
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

TEST_DATABASE_URL = os.environ.get("GUWAH_TEST_DATABASE_URL", "")


# tests/run.sh tells each pytest it starts which share is its own: "system" (the tests marked
# `system` by tests/system/conftest.py), "rest" (all others) or "database" (every test marked
# `database`).
TEST_LANE = os.environ.get("GUWAH_TEST_LANE", "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that gets a database (directly or through a fixture) is marked `database`,
    so tests/run.sh runs it again against PostgreSQL: none can be forgotten. With
    ``GUWAH_TEST_LANE`` set, only that share's tests stay (the others are deselected).

    Why the mark is set here: pytest's own ``-m`` selection runs after the conftests' hooks.
    Why the share is not a ``-m`` of run.sh's: pytest keeps only the last ``-m``, and one
    given to run.sh would replace it."""
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.database)
    if TEST_LANE not in ("system", "rest", "database"):
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        (keep if _in_lane(item, TEST_LANE) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _in_lane(item: pytest.Item, lane: str) -> bool:
    if lane == "database":
        return item.get_closest_marker("database") is not None
    system = item.get_closest_marker("system") is not None
    return system == (lane == "system")


def pg_schema_url(base_url: str, schema: str) -> str:
    """``base_url`` with libpq ``options=-csearch_path=<schema>`` so every table lands there."""
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}options={quote('-csearch_path=' + schema, safe='')}"


@pytest.fixture
def private_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private TMPDIR (0700) set in the environment, as start-up checks demand."""
    path = tmp_path / "tmp"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("TMPDIR", str(path))
    return path


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: SQLite file in tmp, or a new PostgreSQL schema."""
    if not TEST_DATABASE_URL:
        yield f"sqlite:///{tmp_path / 'data' / 'guwah.sqlite3'}"
        return
    from sqlalchemy import create_engine, text

    schema = "t_" + secrets.token_hex(8)
    admin = create_engine(TEST_DATABASE_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield pg_schema_url(TEST_DATABASE_URL, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


@pytest.fixture(params=["fs", "db"])
def blob_backend(request: pytest.FixtureRequest) -> str:
    """Both blob backends; use it in a test to run that test for each."""
    return str(request.param)


@pytest.fixture
def settings(data_dir: Path, database_url: str):  # type: ignore[no-untyped-def]
    from app.settings import load_settings

    return load_settings(data_dir, database_url=database_url)


@pytest.fixture
def store(settings):  # type: ignore[no-untyped-def]
    """An initialised Store (schema migrated, blob dirs created), closed afterwards."""
    from app.store import Store
    from app.store.schema import init_store

    s = Store(settings)
    init_store(s)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def editor_identity():  # type: ignore[no-untyped-def]
    """A fresh X25519 editor identity (decrypts what the ``desk`` fixture's desk receives)."""
    from app.crypto import X25519Identity

    return X25519Identity.generate()


@pytest.fixture
def desk(store, editor_identity):  # type: ignore[no-untyped-def]
    """Desk "default" with one X25519 editor key (``editor_identity``)."""
    from app.crypto import fingerprint

    ed_pub = secrets.token_bytes(32)
    store.add_desk("default", "The newsroom")
    store.add_recipient(
        "default",
        "Test Editor",
        str(editor_identity.recipient()),
        base64.b64encode(ed_pub).decode(),
        fingerprint(ed_pub),
    )
    return store.get_desk("default")


# ============================================================================================
# End of the store engineer's block. Other fixtures go below this line.
# ============================================================================================


# ============================================================================================
# Witness-site fixtures — owner: web engineer (app/web, templates, tests/test_web*,
# tests/test_privacy*, tests/test_browser_jsoff*). A real `guwah serve` subprocess on
# 127.0.0.1 with a private TMPDIR, its stdout/stderr captured to files for log scans.
# ============================================================================================
import contextlib as _contextlib  # noqa: E402 - this block's imports stay inside the block
import shutil as _shutil  # noqa: E402 - this block's imports stay inside the block
import socket as _socket  # noqa: E402 - this block's imports stay inside the block
import subprocess as _subprocess  # noqa: E402 - this block's imports stay inside the block
import sys as _sys  # noqa: E402 - this block's imports stay inside the block
import time as _time  # noqa: E402 - this block's imports stay inside the block
from dataclasses import dataclass as _dataclass  # noqa: E402 - this block's imports stay inside the block
from dataclasses import field as _field  # noqa: E402 - this block's imports stay inside the block

from tests.ports import free_port  # noqa: E402 - this block's imports stay inside the block


@pytest.fixture
def web_app(settings, store, desk, private_tmpdir):  # type: ignore[no-untyped-def]
    """The witness site in-process (FastAPI app) over the real store with one X25519 desk."""
    from app.web.app import create_app

    return create_app(settings, store=store)


@pytest.fixture
def web_client(web_app):  # type: ignore[no-untyped-def]
    """A TestClient whose Host is what a Tor Browser on the onion would send."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    with TestClient(web_app, base_url="http://testserver", raise_server_exceptions=False) as c:
        yield c


@_dataclass
class GuwahServer:
    """A running ``guwah serve``: where it listens and everything it may have written."""

    url: str
    process: _subprocess.Popen
    data_dir: Path
    tmpdir: Path
    stdout: Path
    stderr: Path
    database_url: str
    identity: object
    identity_file: Path
    extra: dict = _field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid


def _serve_command(data_dir: Path, port: int) -> list[str]:
    guwah = _shutil.which("guwah") or str(Path(_sys.executable).with_name("guwah"))
    return [guwah, "serve", "--data-dir", str(data_dir), "--port", str(port)]


@_contextlib.contextmanager
def run_guwah_server(
    tmp_path: Path, database_url: str, *, desks: int = 1, env_extra: dict[str, str] | None = None
) -> Iterator[GuwahServer]:
    """Initialise a data dir with ``desks`` X25519 desks and run ``guwah serve`` on it."""
    from app.crypto import X25519Identity, fingerprint
    from app.settings import load_settings
    from app.store import Store
    from app.store.schema import init_store

    data_dir = tmp_path / "srv-data"
    data_dir.mkdir(mode=0o700)
    tmpdir = tmp_path / "srv-tmp"
    tmpdir.mkdir(mode=0o700)
    if database_url.startswith("sqlite"):  # the database lives in the server's data dir
        database_url = f"sqlite:///{data_dir / 'guwah.sqlite3'}"
    settings = load_settings(data_dir, database_url=database_url)
    identity = X25519Identity.generate()
    identity_file = tmp_path / "editor.key"
    identity_file.write_text(f"# test editor\n{identity}\n")
    identity_file.chmod(0o600)
    with Store(settings) as st:
        init_store(st)
        names = ["default"] if desks == 1 else [f"desk-{i + 1}" for i in range(desks)]
        for name in names:
            st.add_desk(name, f"Editors of {name}")
            ed_pub = secrets.token_bytes(32)
            st.add_recipient(
                name,
                "Test Editor",
                str(identity.recipient()),
                base64.b64encode(ed_pub).decode(),
                fingerprint(ed_pub),
            )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
    env.update(
        {
            "TMPDIR": str(tmpdir),
            "GUWAH_DATABASE_URL": database_url,
            "GUWAH_DATA_DIR": str(data_dir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(env_extra or {})
    stdout, stderr = tmp_path / "server.stdout", tmp_path / "server.stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = _subprocess.Popen(
            _serve_command(data_dir, port), env=env, stdout=out, stderr=err, cwd=tmp_path
        )
    server = GuwahServer(
        f"http://127.0.0.1:{port}",
        proc,
        data_dir,
        tmpdir,
        stdout,
        stderr,
        database_url,
        identity,
        identity_file,
    )
    try:
        deadline = _time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError("guwah serve exited: " + stderr.read_text()[-2000:])
            with _contextlib.suppress(OSError), _socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if _time.monotonic() > deadline:
                raise RuntimeError("guwah serve did not start listening")
            _time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except _subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def guwah_server(tmp_path: Path, database_url: str) -> Iterator[GuwahServer]:
    """``guwah serve`` with one X25519 desk "default"."""
    with run_guwah_server(tmp_path, database_url) as server:
        yield server


@pytest.fixture
def guwah_server_two_desks(tmp_path: Path, database_url: str) -> Iterator[GuwahServer]:
    """``guwah serve`` with two X25519 desks, so the form shows a desk choice."""
    with run_guwah_server(tmp_path, database_url, desks=2) as server:
        yield server


# ============================================================================================
# End of the web engineer's block.
# ============================================================================================


# ============================================================================================
# Returning-witness fixtures — owner: mailbox engineer (app/web/mailbox.py,
# app/web/routers/mailbox.py, tests/test_mailbox*, tests/test_browser_return*). Replies are
# made the real way: a `guwah-reply/1` document encrypted with app.crypto to the witness's
# reply recipient and the desk's editor keys, header checked and stored like
# app/server_cli/importing.py does.
# ============================================================================================
def store_real_reply(store, submission_id: str, text: str) -> str:  # type: ignore[no-untyped-def]
    """Encrypt ``text`` as an editor reply to ``submission_id`` and store it in its mailbox."""
    import datetime as _dt
    import io as _io
    import json as _json

    from app.crypto import encrypt, padme, parse_recipient, read_header

    sub = store.submission(submission_id)
    desk_ = store.get_desk(sub.desk)
    body = _json.dumps(
        {
            "format": "guwah-reply/1",
            "submission_id": sub.id,
            "day": _dt.datetime.now(_dt.UTC).date().isoformat(),
            "text": text,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    body += b" " * (padme(len(body)) - len(body))
    ciphertext = encrypt(body, [parse_recipient(sub.reply_recipient), *desk_.age_recipients()])
    kinds = {s.type for s in read_header(_io.BytesIO(ciphertext)).stanzas}
    assert kinds == {desk_.kind}, kinds  # importing.py refuses anything else
    [reply_id] = apply_outbox(store, [(sub.id, ciphertext)])
    return reply_id


def _outbox_signer(store, desk_name: str):  # type: ignore[no-untyped-def]
    """A new editor of the desk, with a signing key: (signing key, its fingerprint on the
    desk). ``apply_outbox`` removes it again, so the desk's keys are what the test set."""
    from nacl.signing import SigningKey

    from app.crypto import HybridIdentity, X25519Identity, fingerprint

    desk_ = store.get_desk(desk_name)
    signer = SigningKey.generate()
    public = bytes(signer.verify_key)
    identity = HybridIdentity.generate() if desk_.kind == "mlkem768x25519" else X25519Identity.generate()
    key = store.add_recipient(desk_name, "Outbox signer", str(identity.recipient()),
                              base64.b64encode(public).decode(), fingerprint(public))
    return signer, key.fingerprint


def apply_outbox(store, replies=(), done=()):  # type: ignore[no-untyped-def]
    """Store replies ``[(submission_id, age ciphertext)]`` and delete the ``done`` submissions
    the real way: a signed outbox bundle of an editor of their desk, through ``guwah import``'s
    function. Returns the new reply ids."""
    import hashlib as _hashlib

    from app.bundles import OUTBOX_FORMAT, bundle_to_bytes
    from app.server_cli.importing import import_outbox

    named = [sid for sid, _data in replies] + list(done)
    desk_name = store.submission(named[0]).desk
    mailboxes = {store.submission(sid).token_hash for sid, _data in replies}
    before = {r.id for th in mailboxes for r in store.replies(th)}
    signer, signer_fingerprint = _outbox_signer(store, desk_name)
    members = {f"replies/r{i}.age": data for i, (_sid, data) in enumerate(replies)}
    manifest = {
        "format": OUTBOX_FORMAT,
        "editor_key": base64.b64encode(bytes(signer.verify_key)).decode(),
        "desk": desk_name,
        "bundle_id": secrets.token_urlsafe(24),
        "replies": [{"id": f"r{i}", "submission_id": sid, "path": f"replies/r{i}.age",
                     "size": len(data), "sha256": _hashlib.sha256(data).hexdigest()}
                    for i, (sid, data) in enumerate(replies)],
        "done": list(done),
    }
    path = store.settings.data_dir.parent / f"outbox-{secrets.token_hex(8)}.tar"
    path.write_bytes(bundle_to_bytes(manifest, signer, members))
    try:
        import_outbox(store, store.settings, path)
    finally:
        path.unlink()
        store.remove_recipient(desk_name, signer_fingerprint)
    after = [r for th in mailboxes for r in store.replies(th)]
    return [r.id for r in after if r.id not in before]





@pytest.fixture
def make_reply():  # type: ignore[no-untyped-def]
    """``make_reply(store, submission_id, text) -> reply id`` (see store_real_reply)."""
    return store_real_reply


# ============================================================================================
# End of the mailbox engineer's block.
# ============================================================================================


# ============================================================================================
# Browser-encrypted submissions (app/web/uploads.py, commit.py,
# tests/test_uploads*.py, tests/test_browser_json*.py). Reuses run_guwah_server above.
# ============================================================================================
def restart_guwah_server(server: GuwahServer, *, down_seconds: float = 0.0) -> None:
    """Stop ``server`` (SIGTERM, as systemd does) and start it again on the same data dir and
    port, after ``down_seconds``; ``server.process`` is replaced. Waits until it listens."""
    server.process.terminate()
    try:
        server.process.wait(10)
    except _subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    _time.sleep(down_seconds)
    port = int(server.url.rsplit(":", 1)[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
    env.update({"TMPDIR": str(server.tmpdir), "GUWAH_DATABASE_URL": server.database_url,
                "GUWAH_DATA_DIR": str(server.data_dir), "PYTHONUNBUFFERED": "1"})
    with server.stdout.open("ab") as out, server.stderr.open("ab") as err:
        server.process = _subprocess.Popen(_serve_command(server.data_dir, port), env=env,
                                           stdout=out, stderr=err, cwd=server.data_dir.parent)
    deadline = _time.monotonic() + 30
    while True:
        if server.process.poll() is not None:
            raise RuntimeError("guwah serve exited: " + server.stderr.read_text()[-2000:])
        with _contextlib.suppress(OSError), _socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if _time.monotonic() > deadline:
            raise RuntimeError("guwah serve did not start listening again")
        _time.sleep(0.1)


@pytest.fixture
def restartable_server(tmp_path: Path, database_url: str) -> Iterator[GuwahServer]:
    """``guwah serve`` (one X25519 desk) that a test may restart with restart_guwah_server;
    whichever process is running at the end is stopped."""
    with run_guwah_server(tmp_path, database_url) as server:
        # As after `guwah init`: a server key, from which form tokens are derived, so a form
        # issued before a restart is still good after it. Restart once to pick it up.
        from app.settings import load_settings

        key_file = load_settings(server.data_dir, database_url=server.database_url).server_key_file
        key_file.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
        key_file.chmod(0o600)
        restart_guwah_server(server)
        try:
            yield server
        finally:
            if server.process.poll() is None:
                server.process.terminate()
                try:
                    server.process.wait(10)
                except _subprocess.TimeoutExpired:
                    server.process.kill()
                    server.process.wait()


# ============================================================================================
# End of the browser-encrypted submissions block.
# ============================================================================================


# ============================================================================================
# Hostile-network fixtures — owner: resource-control engineer (app/web/budget.py, pacing.py,
# quota.py, protocol.py; tests/hostile/). A real `guwah serve` started with small limits and
# timeouts (GUWAH_* environment) so each attack and its cut-off fit in a few seconds.
# ============================================================================================
HOSTILE_ENV = {  # short enough for tests, far above what loopback witnesses need
    "GUWAH_BODY_IDLE_SECONDS": "2",
    "GUWAH_BODY_MIN_RATE": "1024",
    "GUWAH_BODY_RATE_WINDOW_SECONDS": "3",
    "GUWAH_HEADER_TIMEOUT_SECONDS": "2",
    "GUWAH_UPLOAD_IDLE_SECONDS": "3",
    "GUWAH_BUDGET_WAIT_SECONDS": "5",
    "GUWAH_MIN_FREE_BYTES": "0",
}


@pytest.fixture
def hostile_server(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    """A callable: ``hostile_server(**env)`` starts ``guwah serve`` with HOSTILE_ENV + env
    (keys without the GUWAH_ prefix, e.g. ``BODY_IDLE_SECONDS="30"``); stopped at teardown."""
    stack = _contextlib.ExitStack()
    count = iter(range(100))

    def start(**env: str) -> GuwahServer:
        extra = {**HOSTILE_ENV, **{f"GUWAH_{k}": str(v) for k, v in env.items()}}
        where = tmp_path / f"server-{next(count)}"
        where.mkdir()
        return stack.enter_context(run_guwah_server(where, database_url, env_extra=extra))

    with stack:
        yield start


# ============================================================================================
# End of the resource-control engineer's block.
# ============================================================================================
