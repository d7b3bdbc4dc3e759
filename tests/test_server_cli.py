"""The ``guwah`` operator CLI, run as a real subprocess against a real database."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import apply_outbox
from nacl.signing import SigningKey

from app.crypto import (
    Encryptor,
    HybridIdentity,
    X25519Identity,
    decrypt,
    encrypt,
    fingerprint,
)
from app.settings import load_settings
from app.store import Store
from app.store.schema import head_revision

pytestmark = pytest.mark.database  # tests/run.sh runs these again on PostgreSQL

ROOT = Path(__file__).resolve().parent.parent
IS_PG = bool(os.environ.get("GUWAH_TEST_DATABASE_URL"))


def write_editor_pub(path: Path, identity, name: str = "Editor") -> str:
    """An editor.pub as guwah-editor writes it (docs/formats.md); returns its fingerprint."""
    recipient = str(identity.recipient())
    ed = bytes(SigningKey.generate().verify_key)
    fp = fingerprint(recipient.encode("ascii") + b"\n" + ed)
    path.write_text(
        "# Guwah editor public key\n"
        f"name: {name}\nage-recipient: {recipient}\n"
        f"ed25519: {base64.b64encode(ed).decode()}\nfingerprint: {fp}\n"
    )
    return fp


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    tmp = tmp_path / "tmp"
    tmp.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUWAH_")}
    env["TMPDIR"] = str(tmp)
    return env


@pytest.fixture
def guwah(cli_env):
    def run(*args: str, env: dict[str, str] | None = None, ok: bool = True):
        proc = subprocess.run(
            [sys.executable, "-m", "app.server_cli.main", *map(str, args)],
            capture_output=True,
            text=True,
            env=env or cli_env,
            cwd=ROOT,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc

    return run


@pytest.fixture
def initialised(tmp_path, database_url, guwah) -> Path:
    data = tmp_path / "srv"
    extra = ["--database-url", database_url] if IS_PG else []
    guwah("init", "--data-dir", data, *extra)
    return data


def run_main(argv: list, capfd, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``app.server_cli.main.main`` in this process; same result shape as a subprocess."""
    from app.server_cli.main import main

    saved_env, saved_umask = dict(os.environ), os.umask(0o077)
    os.environ.clear()
    os.environ.update(env)
    capfd.readouterr()
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.umask(saved_umask)
    out, err = capfd.readouterr()
    assert "Traceback" not in err
    return subprocess.CompletedProcess(argv, code, out, err)


def assert_one_line_error(proc, match: str = "") -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert match.lower() in lines[0].lower(), lines[0]


# ----------------------------------------------------------------------------- init & keys


def test_init_is_private_and_idempotent(initialised, guwah):
    data = initialised
    assert data.stat().st_mode & 0o777 == 0o700
    key_file = data / "server-signing-key"
    for path in (key_file, data / "guwah.toml"):
        assert path.stat().st_mode & 0o777 == 0o600
    if not IS_PG:
        assert (data / "guwah.sqlite3").stat().st_mode & 0o777 == 0o600
    seed = base64.b64decode(key_file.read_text().strip())
    public = bytes(SigningKey(seed).verify_key)
    out = guwah("server-key", "--data-dir", data).stdout
    assert f"ed25519: {base64.b64encode(public).decode()}" in out
    assert f"fingerprint: {fingerprint(public)}" in out
    again = guwah("init", "--data-dir", data).stdout
    assert fingerprint(public) in again  # same key, nothing overwritten
    head = head_revision()
    assert f"database schema at {head}" in guwah("migrate", "--data-dir", data).stdout


def test_recipients_and_desks(initialised, guwah, tmp_path):
    data = initialised
    alice = tmp_path / "alice.pub"
    fp = write_editor_pub(alice, X25519Identity.generate(), "Alice")
    out = guwah("recipients", "add", alice, "--data-dir", data).stdout
    assert "desk default" in out and fp in out
    assert f"default\t{fp}\tX25519\tAlice" in guwah("recipients", "list", "--data-dir", data).stdout
    guwah("desks", "add", "pq", "--description", "Post-quantum desk", "--data-dir", data)
    listing = guwah("desks", "list", "--data-dir", data).stdout
    assert "default\tX25519\t1 key(s)" in listing and "pq\tno keys\t0 key(s)" in listing

    bob = tmp_path / "bob.pub"
    fp_bob = write_editor_pub(bob, HybridIdentity.generate(), "Bob")
    assert_one_line_error(guwah("recipients", "add", bob, "--data-dir", data, ok=False), "--desk")
    assert_one_line_error(
        guwah("recipients", "add", bob, "--desk", "default", "--data-dir", data, ok=False), "mix"
    )
    guwah("recipients", "add", bob, "--desk", "pq", "--data-dir", data)
    assert_one_line_error(
        guwah("recipients", "add", bob, "--desk", "pq", "--data-dir", data, ok=False), "already"
    )
    guwah("recipients", "remove", fp_bob, "--data-dir", data)
    proc = guwah("recipients", "remove", fp, "--data-dir", data)
    assert "no editor keys left" in proc.stderr
    assert "no editor keys" in guwah("recipients", "list", "--data-dir", data).stdout
    guwah("desks", "remove", "pq", "--data-dir", data)


# ----------------------------------------------------------------------------- errors


def test_error_paths_are_one_line(initialised, guwah, tmp_path, cli_env, capfd, monkeypatch):
    data = initialised
    missing = tmp_path / "nothing-here"
    altered = tmp_path / "altered.pub"
    write_editor_pub(altered, X25519Identity.generate())
    other = str(X25519Identity.generate().recipient())
    altered.write_text(
        "".join(
            f"age-recipient: {other}\n" if line.startswith("age-recipient:") else line
            for line in altered.read_text().splitlines(True)
        )
    )
    bad_key = tmp_path / "bad.pub"
    zeros = base64.b64encode(bytes(32)).decode()
    bad_key.write_text(f"name: x\nage-recipient: age1nope\ned25519: {zeros}\nfingerprint: X\n")
    no_fp = tmp_path / "nofp.pub"
    write_editor_pub(no_fp, X25519Identity.generate())
    no_fp.write_text(
        "".join(x for x in no_fp.read_text().splitlines(True) if "fingerprint" not in x)
    )
    cases = [
        (["stats", "--data-dir", missing], "does not exist"),
        (["desks", "add"], "missing argument"),
        (["no-such-command"], "no such command"),
        (["recipients", "add", tmp_path / "absent.pub", "--data-dir", data], "cannot read"),
        (["recipients", "add", altered, "--data-dir", data], "altered"),
        (["recipients", "add", bad_key, "--data-dir", data], "age-recipient"),
        (["recipients", "add", no_fp, "--data-dir", data], "fingerprint"),
        (["recipients", "remove", "AAAA-BBBB", "--data-dir", data], "no desk has"),
        (["desks", "add", "bad name", "--data-dir", data], "desk name"),
        (["recipients", "list", "--desk", "nope", "--data-dir", data], "no desk named"),
        (["serve", "--data-dir", data], "exactly one"),
        (["serve", "--port", "0", "--data-dir", data], "between"),
        (["init", "--data-dir", data, "--blob-backend", "s3"], "blob-backend"),
        (["restore", tmp_path, "--data-dir", tmp_path / "r"], "not a guwah backup"),
        (["backup", "--to", data / "inside", "--data-dir", data], "outside"),
    ]
    # In-process through the same entry point (fast); the subprocess cases below prove the
    # real console script prints no traceback either.
    for argv, match in cases:
        assert_one_line_error(run_main(argv, capfd, cli_env), match)
    assert_one_line_error(guwah(*cases[0][0], ok=False), cases[0][1])
    assert_one_line_error(guwah(*cases[4][0], ok=False), cases[4][1])
    guwah("desks", "add", "dup", "--data-dir", data)
    assert_one_line_error(guwah("desks", "add", "dup", "--data-dir", data, ok=False), "exists")

    env = dict(cli_env, GUWAH_DATABASE_URL="mysql://nobody@nowhere/x")
    assert_one_line_error(guwah("stats", "--data-dir", data, env=env, ok=False), "unsupported")
    env = dict(cli_env, GUWAH_MAX_FILES="many")
    assert_one_line_error(guwah("stats", "--data-dir", data, env=env, ok=False), "max_files")

    public_tmp = tmp_path / "public-tmp"
    public_tmp.mkdir()
    public_tmp.chmod(0o755)
    env = dict(cli_env, TMPDIR=str(public_tmp))
    assert_one_line_error(
        guwah("serve", "--port", "8", "--data-dir", data, env=env, ok=False), "chmod 0700"
    )


def test_uninitialised_and_schema_checks(tmp_path, guwah):
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    assert_one_line_error(guwah("desks", "list", "--data-dir", empty, ok=False), "guwah init")


# ----------------------------------------------------------------------------- self-check


def test_self_check(initialised, guwah):
    data = initialised
    out = guwah("self-check", "--data-dir", data).stdout
    assert "ok    database reachable" in out
    if not IS_PG:
        assert "ok    SQLite secure_delete = 1" in out
    data.chmod(0o755)
    proc = guwah("self-check", "--data-dir", data, ok=False)
    assert proc.returncode == 1 and "FAIL  data dir" in proc.stdout
    data.chmod(0o700)


# ----------------------------------------------------------------------------- backup


def _submit(data: Path, files: dict[str, bytes], token_hash: str) -> str:
    with Store(load_settings(data)) as store:
        desk = store.get_desk("default")
        with store.begin_submission(
            desk, token_hash, str(X25519Identity.generate().recipient())
        ) as sub:
            for role, plain in files.items():
                writer = sub.open_blob(role)
                enc = Encryptor(desk.age_recipients(), writer)
                enc.write(plain)
                enc.close()
            return sub.commit()


def test_backup_restore_into_fresh_dir_decrypts(initialised, guwah, tmp_path, cli_env):
    data = initialised
    editor = X25519Identity.generate()
    write_editor_pub(tmp_path / "ed.pub", editor)
    guwah("recipients", "add", tmp_path / "ed.pub", "--data-dir", data)
    th = hashlib.sha256(b"mailbox").hexdigest()
    files = {"message": b'{"testimony": "I saw it"}', "file-1": os.urandom(1_500_000)}
    sid = _submit(data, files, th)
    witness = X25519Identity.generate()
    with Store(load_settings(data)) as store:
        apply_outbox(store, [(sid, encrypt(b"we read it", [witness.recipient()]))])

    backup_dir = tmp_path / "backup"
    out = guwah("backup", "--to", backup_dir, "--data-dir", data)
    assert "backup written" in out.stdout
    assert backup_dir.stat().st_mode & 0o777 == 0o700
    for path in backup_dir.rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path
    manifest = json.loads((backup_dir / "MANIFEST.json").read_text())
    assert manifest["format"] == "guwah-backup/1"
    assert_one_line_error(
        guwah("backup", "--to", backup_dir, "--data-dir", data, ok=False), "not empty"
    )
    if IS_PG:
        assert "pg_dump" in out.stderr

    restored = tmp_path / "restored"
    guwah("restore", backup_dir, "--data-dir", restored)
    assert restored.stat().st_mode & 0o777 == 0o700
    assert (restored / "server-signing-key").read_bytes() == (
        data / "server-signing-key"
    ).read_bytes()
    assert_one_line_error(
        guwah("restore", backup_dir, "--data-dir", restored, ok=False), "not empty"
    )

    if not IS_PG:  # the original is gone: everything must come from the backup
        shutil.rmtree(data)
    with Store(load_settings(restored)) as store:
        info = store.submission(sid)
        for f in info.files:
            with store.open_blob_for_read(sid, f.role) as handle:
                blob = handle.read()
            assert decrypt(blob, [editor]) == files[f.role]
        [reply] = store.replies(th)
        with store.open_reply(reply.id, th) as handle:
            assert decrypt(handle.read(), [witness]) == b"we read it"
    # the standard age tool opens the restored ciphertext too
    if Path("/usr/bin/age").exists():
        ident = tmp_path / "editor.key"
        ident.write_text(str(editor) + "\n")
        with Store(load_settings(restored)) as store:
            with store.open_blob_for_read(sid, "message") as handle:
                blob = handle.read()
        proc = subprocess.run(
            ["/usr/bin/age", "-d", "-i", str(ident)], input=blob, capture_output=True
        )
        assert proc.returncode == 0 and proc.stdout == files["message"]

    # a damaged backup is refused before anything is written
    blob_copy = next(p for p in (backup_dir / "blobs").rglob("*") if p.is_file())
    blob_copy.write_bytes(b"tampered")
    target = tmp_path / "again"
    assert_one_line_error(guwah("restore", backup_dir, "--data-dir", target, ok=False), "damaged")
    assert not target.exists() or not any(target.iterdir())


# ----------------------------------------------------------------------------- serve


def _get_over_unix_socket(path: Path, target: str) -> tuple[int, bytes]:
    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(str(path))

    conn = UnixConnection("localhost")
    conn.request(
        "GET", target, headers={"X-Forwarded-For": "203.0.113.77", "User-Agent": "canary-agent/9"}
    )
    response = conn.getresponse()
    return response.status, response.read()


def test_serve_on_unix_socket_logs_no_address(initialised, tmp_path, cli_env):
    data = initialised
    write_editor_pub(tmp_path / "ed.pub", X25519Identity.generate())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "app.server_cli.main",
            "recipients",
            "add",
            str(tmp_path / "ed.pub"),
            "--data-dir",
            str(data),
        ],
        env=cli_env,
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    sock = tmp_path / "guwah.sock"
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.server_cli.main",
                "serve",
                "--socket",
                str(sock),
                "--data-dir",
                str(data),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=cli_env,
            cwd=ROOT,
        )
        try:
            for _ in range(1200):  # wait until it accepts (no timing assertion)
                if proc.poll() is not None:
                    break
                try:
                    with socket.socket(socket.AF_UNIX) as probe:
                        probe.connect(str(sock))
                    break
                except OSError:
                    time.sleep(0.05)
            assert proc.poll() is None, log.read_text()
            # the process guwah serve started now runs the serving image (serving.py)
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
            assert b"app.server_cli.serving" in cmdline and b"-P" in cmdline, cmdline
            status, body = _get_over_unix_socket(sock, "/")
            assert status == 200 and body
            status, _ = _get_over_unix_socket(sock, "/no-such-page")
            assert status == 404
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    text = log.read_text()
    assert "203.0.113.77" not in text and "canary-agent" not in text
    assert "GET /" not in text  # no access log


def test_serving_image_loads_neither_the_cli_nor_alembic(initialised, cli_env):
    """What serving.py's docstring promises: its ``main()`` run as ``-P -m``, up to the point
    where uvicorn would serve (the app built by the same factory string), holds no module of
    the command line, of Alembic or of its templates; and glibc malloc is tuned by then."""
    code = (
        "import sys, importlib, uvicorn\n"
        "def run(target, factory, **options):\n"
        "    module, name = target.split(':')\n"
        "    getattr(importlib.import_module(module), name)()\n"
        "    assert options['host'] == '127.0.0.1' and options['port'] == 8\n"
        "    print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "        {'alembic', 'mako', 'typer', 'rich'} or m in\n"
        "        {'app.server_cli.main', 'app.store.schema', 'app.store.backup'})))\n"
        "uvicorn.run = run\n"
        "from app.server_cli import serving\n"
        "serving.main(['--port', '8'])\n"
    )
    env = dict(cli_env, GUWAH_DATA_DIR=str(initialised))
    proc = subprocess.run([sys.executable, "-P", "-c", code], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"the serving image loaded: {proc.stdout}"


# ----------------------------------------------------------------------------- small parts


def test_log_redaction_removes_addresses():
    from app.server_cli.logconfig import redact

    line = redact('203.0.113.77:5123 - "GET /" 200; peer 2001:db8::1 and ::1 and fe80::1%eth0')
    for address in ("203.0.113.77", "2001:db8::1", "::1", "fe80::1"):
        assert address not in line
    assert "GET /" in line


def test_key_file_written_by_the_editor_tool_is_accepted(initialised, capfd, cli_env, tmp_path):
    """The file guwah-editor keygen writes (its own writer, not a copy of the format)."""
    from app.editor.keyring import Keyring

    public = Keyring.generate("Dilnur").public
    path = tmp_path / "editor.pub"
    path.write_text(public.to_text())
    proc = run_main(["recipients", "add", path, "--data-dir", initialised], capfd, cli_env)
    assert proc.returncode == 0, proc.stderr
    assert public.fingerprint in proc.stdout and "mlkem768x25519" in proc.stdout


def test_serve_tunes_glibc_malloc() -> None:
    """mallopt takes every setting (glibc here), and threads still allocate afterwards."""
    code = ("import threading, ctypes; from app.server_cli.malloc import tune_malloc; "
            "assert tune_malloc(); t = threading.Thread(target=lambda: bytearray(1 << 20)); "
            "t.start(); t.join(); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
