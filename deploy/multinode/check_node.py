"""Check one app node of a multi-node Guwah install (docs/multinode.md, "Check every node").

Run it on every node, in the Guwah venv, with the node's environment (deploy/multinode/
check-node.sh does both). It answers the questions `guwah self-check` does not ask because
they only matter when several nodes share one PostgreSQL database:

* is this node really configured for sharing (PostgreSQL, ``blob_backend = "db"``)?
* does it hold *the* server signing key: the fingerprint editors pinned, and byte for byte the
  same file as the other nodes (the web app derives its form-token and mailbox-ticket keys
  from the file's bytes, so a re-encoded copy would sign bundles correctly but make a form
  fetched from one node fail on another)?
* is the database at the schema this code expects (migrations run once, from one node)?
* is the link to PostgreSQL encrypted, and is the role less than a superuser?

Nothing secret is printed: the fingerprint is public and the key-file digest is a SHA-256
commitment under its own label (the file holds a random 256-bit seed; the digest cannot be
inverted and is not the form-token key). Exit status 1 if any check fails, one line each.
"""

from __future__ import annotations

import argparse
import hashlib
import stat
import sys
from pathlib import Path

KEY_DIGEST_LABEL = b"guwah.org/multinode/key-file-digest\x00"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def key_file_digest(data: bytes) -> str:
    """A public commitment to the exact bytes of the key file (first 16 bytes, hex)."""
    return hashlib.sha256(KEY_DIGEST_LABEL + data).hexdigest()[:32]


def _normal(fp: str) -> str:
    return "".join(fp.split()).replace("-", "").upper()


def _db_host(url: str) -> str | None:
    """The TCP host of a database URL; None for a unix socket (no network link)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    host = parsed.host or parsed.query.get("host")
    if isinstance(host, tuple):
        host = host[0] if host else None
    if not host or str(host).startswith("/"):
        return None
    return str(host)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="check-node",
        description="Check that this Guwah app node is ready to share one PostgreSQL database "
        "with other nodes (see docs/multinode.md).",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="default: $GUWAH_DATA_DIR")
    parser.add_argument(
        "--expect-fingerprint", help="the server key fingerprint the editors pinned"
    )
    parser.add_argument("--expect-key-digest", help="the key-file digest printed by the first node")
    parser.add_argument(
        "--allow-unencrypted-link",
        action="store_true",
        help="accept a PostgreSQL connection without TLS (only over a private link you trust)",
    )
    args = parser.parse_args(argv)

    failures = 0

    def ok(line: str) -> None:
        print(f"ok    {line}")

    def fail(line: str) -> None:
        nonlocal failures
        failures += 1
        print(f"FAIL  {line}")

    def warn(line: str) -> None:
        print(f"warn  {line}")

    try:
        from app.settings import SettingsError, load_settings
    except ImportError:
        print("FAIL  cannot import Guwah: run this with the Guwah venv's python")
        return 1
    try:
        settings = load_settings(args.data_dir)
    except SettingsError as exc:
        fail(str(exc))
        return 1

    from sqlalchemy.engine import make_url

    safe_url = make_url(settings.database_url).render_as_string(hide_password=True)
    if settings.is_sqlite:
        fail("the database is SQLite: nodes must share one PostgreSQL database_url")
    elif not settings.database_url.startswith("postgresql"):
        fail(f"database {safe_url} is not PostgreSQL")
    else:
        ok(f"database is PostgreSQL: {safe_url}")
    if settings.blob_backend == "db":
        ok('blob_backend = "db": ciphertext lives in the shared database')
    else:
        fail('blob_backend is "fs": set blob_backend = "db" in guwah.toml on every node')
    leftovers = (
        [p for p in settings.blob_path.rglob("*") if p.is_file()]
        if settings.blob_path.is_dir()
        else []
    )
    if leftovers:
        warn(f"{len(leftovers)} file(s) under {settings.blob_path}: no other node can read them")

    key_path = settings.server_key_file
    fingerprint = digest = "-"
    try:
        raw = key_path.read_bytes()
    except FileNotFoundError:
        fail(f"no server signing key at {key_path}: copy it from the first node")
        raw = None
    except OSError as exc:
        fail(f"cannot read {key_path}: {exc.strerror or exc}")
        raw = None
    if raw is not None:
        from app.server_cli.serverkey import ServerKeyError, load_server_key, server_fingerprint

        if stat.S_IMODE(key_path.stat().st_mode) & 0o077:
            fail(f"{key_path} is readable by others: chmod 0600 {key_path}")
        try:
            fingerprint = server_fingerprint(load_server_key(key_path))
        except ServerKeyError as exc:
            fail(str(exc))
        digest = key_file_digest(raw)
        if args.expect_fingerprint is None:
            warn(f"server key {fingerprint}: compare it with the fingerprint editors pinned")
        elif _normal(args.expect_fingerprint) == _normal(fingerprint):
            ok(f"server key {fingerprint} is the one editors pinned")
        else:
            fail(f"server key {fingerprint} is not {args.expect_fingerprint}: copy the key again")
        if args.expect_key_digest is None:
            ok(f"key file digest {digest} (compare it on every node)")
        elif args.expect_key_digest.strip().lower() == digest:
            ok(f"key file digest {digest} matches")
        else:
            fail(
                f"key file digest {digest} is not {args.expect_key_digest.strip()}: the file "
                "differs from the first node's (copy it byte for byte, e.g. with scp or install)"
            )

    schema = "-"
    if not settings.is_sqlite:
        from sqlalchemy import text

        from app.store import Store
        from app.store.schema import current_revision, head_revision

        try:
            store = Store(settings)
            with store:
                current, head = current_revision(store), head_revision()
                schema = str(current)
                with store.engine.connect() as conn:
                    ssl = conn.execute(
                        text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                    ).scalar()
                    role = conn.execute(
                        text(
                            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                            "WHERE rolname = current_user"
                        )
                    ).first()
        except Exception as exc:  # one line for the operator, never a traceback
            inner = getattr(exc, "orig", None) or exc
            lines = str(inner).strip().splitlines()
            fail(f"database {safe_url} unreachable: {lines[0] if lines else type(inner).__name__}")
        else:
            if current == head:
                ok(f"schema at {current}")
            elif current is None:
                fail("the database has no Guwah schema: run guwah migrate on ONE node")
            else:
                fail(
                    f"schema at {current}, this code expects {head}: run guwah migrate on ONE node"
                )
            host = _db_host(settings.database_url)
            if ssl:
                ok("the link to PostgreSQL is encrypted (TLS)")
            elif host is None or host in LOCAL_HOSTS:
                ok("PostgreSQL is on this machine (no network link)")
            elif args.allow_unencrypted_link:
                warn(f"no TLS to {host}: accepted (--allow-unencrypted-link, private link)")
            else:
                fail(
                    f"the link to {host} is not encrypted: add sslmode=verify-full to "
                    "database_url, or --allow-unencrypted-link for a private link"
                )
            if role is not None and any(role):
                warn(
                    "the database role may create roles/databases or is a superuser: "
                    "give the nodes a least-privilege role (docs/multinode.md)"
                )
            elif role is not None:
                ok("the database role is not a superuser and cannot create roles or databases")

    print(
        f"node: fingerprint={fingerprint} key-digest={digest} database={safe_url} schema={schema}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
