"""``guwah``: the operator's command line (init, desks, editor keys, serve, backups, checks).

Every command takes ``--data-dir DIR`` after its name (default: GUWAH_DATA_DIR, then
/var/lib/guwah). Errors are one line on stderr and exit status 1, never a traceback: the
operator may be a journalist, not an administrator.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from app.bundles import BundleError
from app.cli_help import TYPER_STYLE, command_of
from app.crypto import AgeError
from app.durable import write_new_file
from app.settings import (
    Settings,
    SettingsError,
    default_config_text,
    load_settings,
    resolve_data_dir,
)
from app.store import (
    DatabaseUrlError,
    StartupError,
    Store,
    StoreError,
    check_data_dir,
    check_tmpdir,
    sqlite_pragma_check,
    startup_checks,
)
from app.store.backup import backup as run_backup
from app.store.backup import restore as run_restore
from app.store.schema import current_revision, head_revision, init_store
from app.store.schema import migrate as migrate_schema
from app.web.i18n import catalogs_for

from .exporting import export_bundle
from .importing import OutboxReplayError, import_outbox
from .keyfile import KeyFileError, read_editor_key
from .serverkey import (
    ServerKeyError,
    create_server_key,
    load_server_key,
    public_key_bytes,
    server_fingerprint,
)
from .serving import become_server

app = typer.Typer(
    name="guwah",
    help="Operate a Guwah server: data dir, desks, editor keys, serving, backups.",
    **TYPER_STYLE,  # type: ignore[arg-type]
)
desks_app = typer.Typer(help="Desks: teams of editors a witness can address.", no_args_is_help=True)
recipients_app = typer.Typer(help="Editors' public keys on each desk.", no_args_is_help=True)
app.add_typer(desks_app, name="desks")
app.add_typer(recipients_app, name="recipients")


class CliError(Exception):
    """A problem the operator can fix; str() is the one line we print."""


DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Data directory (default: $GUWAH_DATA_DIR, then /var/lib/guwah).",
        show_default=False,
    ),
]
DeskOpt = Annotated[str | None, typer.Option("--desk", help="Desk name.", show_default=False)]


def _say(line: str = "") -> None:
    typer.echo(line)


def _warn(line: str) -> None:
    typer.echo(f"warning: {line}", err=True)


def _settings(data_dir: Path | None) -> Settings:
    return load_settings(data_dir)


def _store(data_dir: Path | None, *, check_revision: bool = True) -> Store:
    """An open Store for an initialised data dir; one clear line if it is not."""
    settings = _settings(data_dir)
    if not settings.data_dir.is_dir():
        raise CliError(
            f"data dir {settings.data_dir} does not exist: run guwah init --data-dir "
            f"{settings.data_dir}"
        )
    if settings.is_sqlite:
        database = make_url(settings.database_url).database or ""
        if not Path(database).is_file():
            raise CliError(f"no database in {settings.data_dir}: run guwah init")
    store = Store(settings)
    if check_revision:
        current, head = current_revision(store), head_revision()
        if current is None:
            store.close()
            raise CliError("the database has no Guwah schema: run guwah init")
        if current != head:
            store.close()
            raise CliError(f"the database schema is at {current}, not {head}: run guwah migrate")
    return store


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


# ---------------------------------------------------------------------------------- init


@app.command()
def init(
    data_dir: DataDir = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="postgresql+psycopg://… (default: SQLite in the data dir). Written to guwah.toml.",
        ),
    ] = None,
    blob_backend: Annotated[
        str | None,
        typer.Option(
            "--blob-backend", help='"fs" (default, one machine) or "db" (several app nodes).'
        ),
    ] = None,
) -> None:
    """Create the data dir (0700), config, database schema and server signing key. Idempotent."""
    if blob_backend not in (None, "fs", "db"):
        raise CliError('--blob-backend must be "fs" or "db"')
    directory = _make_data_dir(resolve_data_dir(data_dir))
    overrides = {
        name: value
        for name, value in (("database_url", database_url), ("blob_backend", blob_backend))
        if value
    }
    _write_config(directory, overrides)
    settings = load_settings(directory)
    with Store(settings) as store:
        init_store(store)
        revision = current_revision(store)
    key_file = settings.server_key_file
    key = load_server_key(key_file) if key_file.exists() else create_server_key(key_file)
    _say(f"data dir:   {settings.data_dir}")
    _say(f"database:   {_safe_url(settings.database_url)} (schema {revision})")
    _say(f"blobs:      {settings.blob_backend}")
    _say(f"server key: {server_fingerprint(key)}  (editors pin this fingerprint)")


def _make_data_dir(directory: Path) -> Path:
    if directory.exists() and not directory.is_dir():
        raise CliError(f"{directory} exists and is not a directory")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    return directory


def _write_config(directory: Path, overrides: dict[str, str]) -> None:
    """A new guwah.toml with ``overrides``; an existing one must already agree with them."""
    config = directory / "guwah.toml"
    if not config.exists():
        text = default_config_text(load_settings(directory, **overrides))
        write_new_file(config, text.encode("utf-8"))
        return
    if overrides:
        existing = load_settings(directory)
        for name, value in overrides.items():
            if str(getattr(existing, name)) != value:
                raise CliError(f"{config} already sets {name} differently: edit the file instead")


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Bring the database schema up to date (Alembic upgrade head)."""
    store = _store(data_dir, check_revision=False)
    with store:
        migrate_schema(store)  # on a fresh PostgreSQL database this creates the schema, like init
        _say(f"database schema at {current_revision(store)}")


@app.command("server-key")
def server_key(data_dir: DataDir = None) -> None:
    """Print the server's Ed25519 public key and the fingerprint editors pin."""
    settings = _settings(data_dir)
    key = load_server_key(settings.server_key_file)
    _say(f"ed25519: {base64.b64encode(public_key_bytes(key)).decode()}")
    _say(f"fingerprint: {server_fingerprint(key)}")


# ---------------------------------------------------------------------------------- desks


@desks_app.command("add")
def desks_add(
    name: str,
    description: Annotated[str, typer.Option("--description", help="One short sentence.")] = "",
    data_dir: DataDir = None,
) -> None:
    """Add a desk."""
    with _store(data_dir) as store:
        desk = store.add_desk(name, description)
    _say(f"desk {desk.name} added; add its editors with: guwah recipients add FILE --desk {name}")


@desks_app.command("list")
def desks_list(data_dir: DataDir = None) -> None:
    """List desks with their key type and number of editor keys."""
    with _store(data_dir) as store:
        desks = store.list_desks()
    if not desks:
        _say("no desks yet: guwah desks add NAME, or guwah recipients add FILE")
    for desk in desks:
        kind = desk.kind or "no keys"
        _say(f"{desk.name}\t{kind}\t{len(desk.recipients)} key(s)\t{desk.description}")


@desks_app.command("remove")
def desks_remove(name: str, data_dir: DataDir = None) -> None:
    """Remove a desk that never received a submission."""
    with _store(data_dir) as store:
        store.remove_desk(name)
    _say(f"desk {name} removed")


# ---------------------------------------------------------------------------------- keys


@recipients_app.command("add")
def recipients_add(
    key_file: Annotated[Path, typer.Argument(help="The editor's editor.pub file.")],
    desk: DeskOpt = None,
    data_dir: DataDir = None,
) -> None:
    """Add an editor's public key file to a desk (the default desk is created if none exists)."""
    key = read_editor_key(key_file)
    with _store(data_dir) as store:
        if desk is None:
            desks = store.list_desks()
            if not desks:
                store.add_desk("default", "")
                desk = "default"
            elif len(desks) == 1:
                desk = desks[0].name
            else:
                names = ", ".join(d.name for d in desks)
                raise CliError(f"there are several desks ({names}): choose one with --desk NAME")
        added = store.add_recipient(
            desk, key.name, key.age_recipient, key.ed25519_public, key.fingerprint
        )
    _say(f"added {added.name} ({added.kind}) to desk {desk}")
    _say(f"fingerprint: {added.fingerprint}  (compare it aloud with the editor)")


@recipients_app.command("list")
def recipients_list(desk: DeskOpt = None, data_dir: DataDir = None) -> None:
    """List editor keys: desk, fingerprint, type, name."""
    with _store(data_dir) as store:
        desks = [store.get_desk(desk)] if desk else store.list_desks()
    lines = 0
    for item in desks:
        for key in item.recipients:
            _say(f"{item.name}\t{key.fingerprint}\t{key.kind}\t{key.name}")
            lines += 1
    if not lines:
        _say("no editor keys yet: guwah recipients add editor.pub")


@recipients_app.command("remove")
def recipients_remove(fingerprint: str, desk: DeskOpt = None, data_dir: DataDir = None) -> None:
    """Remove an editor key by fingerprint (from --desk, or the one desk that has it)."""
    wanted = fingerprint.strip().upper()
    with _store(data_dir) as store:
        if desk is None:
            holders = [
                d.name
                for d in store.list_desks()
                if any(k.fingerprint.upper() == wanted for k in d.recipients)
            ]
            if not holders:
                raise CliError(f"no desk has a key with fingerprint {fingerprint}")
            if len(holders) > 1:
                raise CliError(f"several desks have this key ({', '.join(holders)}): use --desk")
            desk = holders[0]
        store.remove_recipient(desk, wanted)
        remaining = store.get_desk(desk).recipients
    _say(f"removed {fingerprint} from desk {desk}")
    if not remaining:
        _warn(f"desk {desk} has no editor keys left: it cannot receive submissions")


# ---------------------------------------------------------------------------------- serve


@app.command()
def serve(
    port: Annotated[
        int | None, typer.Option("--port", help="TCP port on 127.0.0.1.", show_default=False)
    ] = None,
    socket: Annotated[
        Path | None, typer.Option("--socket", help="Unix socket path.", show_default=False)
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Serve the witness site on 127.0.0.1:PORT or a unix socket (never another address)."""
    if (port is None) == (socket is None):
        raise CliError("give exactly one of --port N or --socket PATH")
    if port is not None and not 0 < port < 65536:
        raise CliError("--port must be between 1 and 65535")
    settings = _prepare_to_serve(data_dir)
    os.environ["GUWAH_DATA_DIR"] = str(settings.data_dir)
    _say(f"serving on unix socket {socket}" if socket is not None
         else f"serving on http://127.0.0.1:{port}")
    become_server(port=port, socket=socket)  # this process, without the CLI (serving.py)


def _prepare_to_serve(data_dir: Path | None) -> Settings:
    """Refuse here with one line (the app logs the warnings itself); clear crash debris."""
    store = _store(data_dir)
    settings = store.settings
    startup_checks(settings)
    with store:
        store.cleanup_staging()
        if not any(d.recipients for d in store.list_desks()):
            _warn("no desk has editor keys yet: witnesses cannot submit until you add one")
    return settings


# ---------------------------------------------------------------------------------- upkeep


@app.command()
def cleanup(data_dir: DataDir = None) -> None:
    """Remove crash debris and expired uploads; set every file's time back to its UTC day."""
    with _store(data_dir) as store:
        report = store.cleanup()
    # counts only: a name or a size could tie a blob to a witness
    _say(
        f"removed {report.removed} item(s): {report.staging} partial blob(s) of stopped "
        f"writers, {report.unreferenced} blob(s) no submission or reply references, "
        f"{report.upload_files} orphan upload file(s), {report.expired_uploads} expired "
        f"upload(s)"
    )
    _say(
        f"left {report.in_progress} blob(s) still being written; "
        f"{report.restamped} file(s) and directories set to their UTC day"
    )


@app.command()
def stats(
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Counts per desk and per day. Nothing that identifies anyone."""
    with _store(data_dir) as store:
        numbers = store.stats()
    if as_json:
        _say(json.dumps(numbers, indent=1, sort_keys=True))
        return
    _say(
        f"submissions: {numbers['submissions']}  files: {numbers['files']}  "
        f"ciphertext: {numbers['ciphertext_bytes']} bytes  replies: {numbers['replies']}  "
        f"deleted: {numbers['deleted']}  pending uploads: {numbers['pending_bytes']} bytes"
    )
    for name, count in numbers["by_desk"].items():
        _say(f"desk {name}: {count}")
    for day, count in numbers["by_day"].items():
        _say(f"{day}: {count}")


@app.command()
def backup(
    to: Annotated[Path, typer.Option("--to", help="New or empty directory for the snapshot.")],
    data_dir: DataDir = None,
) -> None:
    """Consistent snapshot (SQLite online backup + blobs; ciphertext only, 0600) into --to."""
    with _store(data_dir) as store:
        report = run_backup(store, to)
    _say(f"backup written to {to.absolute()}: {report.files} file(s), {report.blobs} blob(s)")
    for note in report.notes:
        _warn(note)


@app.command()
def restore(
    source: Annotated[Path, typer.Argument(help="A directory written by guwah backup.")],
    data_dir: DataDir = None,
) -> None:
    """Restore a backup into a fresh data dir (refuses to overwrite anything)."""
    directory = resolve_data_dir(data_dir)
    notes = run_restore(source, directory)
    settings = _settings(directory)
    if settings.is_sqlite:
        with Store(settings) as store:
            migrate_schema(store)
    _say(f"restored {source} into {directory}")
    for note in notes:
        _warn(note)


@app.command("self-check")
def self_check(data_dir: DataDir = None) -> None:
    """Check TMPDIR, permissions, database, SQLite pragmas and disk space."""
    report = _Checks()
    _check_tmpdir(report)
    settings = _settings(data_dir)
    try:
        check_data_dir(settings.data_dir)
        report.ok(f"data dir {settings.data_dir} is 0700 and ours")
    except StartupError as exc:
        report.fail(str(exc))
        raise typer.Exit(1) from None
    _check_secret_files(report, settings)
    try:
        store = Store(settings)
        current, head = current_revision(store), head_revision()
    except (StoreError, DatabaseUrlError, SQLAlchemyError, OSError) as exc:
        report.fail(f"database {_safe_url(settings.database_url)} unreachable: {_one_line(exc)}")
        raise typer.Exit(1) from None
    with store:
        if current == head:
            report.ok(f"database reachable, schema at {current}")
        else:
            report.fail(f"database schema at {current}, expected {head}: run guwah migrate")
        _check_pragmas(report, store)
        _check_blob_dir(report, settings)
        _check_space(report, store)
    _check_languages(report, settings)
    if report.failures:
        raise typer.Exit(1)


class _Checks:
    """The self-check's lines: ``ok``, ``FAIL`` (counted: exit 1) or ``warn``."""

    def __init__(self) -> None:
        self.failures = 0

    def ok(self, line: str) -> None:
        _say(f"ok    {line}")

    def fail(self, line: str) -> None:
        self.failures += 1
        _say(f"FAIL  {line}")

    def warn(self, line: str) -> None:
        _say(f"warn  {line}")


def _check_languages(report: _Checks, settings: Settings) -> None:
    try:
        for line, is_draft in language_report(settings):
            (report.warn if is_draft else report.ok)(line)
    except SettingsError as exc:
        report.fail(str(exc))


def _check_tmpdir(report: _Checks) -> None:
    try:
        warnings = check_tmpdir()
    except StartupError as exc:
        report.fail(str(exc))
        return
    report.ok(f"TMPDIR {os.environ.get('TMPDIR')} is private (0700, ours)")
    for line in warnings:
        report.warn(line)


def _check_secret_files(report: _Checks, settings: Settings) -> None:
    for path in (settings.config_file, settings.server_key_file):
        if not path.exists():
            (report.fail if path == settings.server_key_file else report.warn)(
                f"{path} is missing"
            )
        elif stat.S_IMODE(path.stat().st_mode) & 0o077:
            report.fail(f"{path} is readable by others: chmod 0600 {path}")
        else:
            report.ok(f"{path.name} is 0600")


def _check_pragmas(report: _Checks, store: Store) -> None:
    """The pragmas app/store/db.py sets on every connection, as a new connection sees them."""
    for name, found, expected in sqlite_pragma_check(store.engine):
        if found == expected:
            report.ok(f"SQLite {name} = {expected}")
        else:
            report.fail(f"SQLite {name} is {found!r}, expected {expected!r}")


def _check_blob_dir(report: _Checks, settings: Settings) -> None:
    if settings.blob_backend != "fs":
        return
    blob_dir = settings.blob_path
    if not blob_dir.is_dir():
        report.fail(f"blob dir {blob_dir} is missing: run guwah init")
    elif stat.S_IMODE(blob_dir.stat().st_mode) & 0o077:
        report.fail(f"blob dir {blob_dir} is open to others: chmod 0700 {blob_dir}")
    else:
        report.ok(f"blob dir {blob_dir} is 0700")


def _check_space(report: _Checks, store: Store) -> None:
    free, minimum = store.free_bytes(), store.settings.min_free_bytes
    if free < minimum:
        report.fail(f"only {free} bytes free (min_free_bytes {minimum})")
    else:
        report.ok(f"{free} bytes free")
    pending = store.pending_bytes()
    (report.ok if pending == 0 else report.warn)(f"{pending} bytes in unfinished uploads")


def language_report(settings: Settings,
                    translations_dir: Path | None = None) -> list[tuple[str, bool]]:
    """One line per language the site offers (enabled in guwah.toml), with its catalog's
    review status; the default language is marked.

    A draft translation is a warning, not a failure: the pages say it is a draft.
    """
    catalogs = catalogs_for(settings, translations_dir)
    return [
        (f"language {lang.code} ({lang.name})"
         f"{' (default)' if lang.code == catalogs.default else ''}: "
         f"{catalogs.review_status(lang.code)}",
         catalogs.is_draft(lang.code))
        for lang in catalogs.available
    ]


# ---------------------------------------------------------------------------------- bundles
# (app/server_cli/exporting.py and importing.py hold the logic)


@app.command("export")
def export_cmd(
    to: Annotated[Path, typer.Option("--to", help="Bundle file, or a folder for a default name.")],
    desk: DeskOpt = None,
    since_last: Annotated[
        bool, typer.Option("--since-last", help="Only submissions not exported yet (default).")
    ] = False,
    all_: Annotated[
        bool, typer.Option("--all", help="Every submission of the desk, exported before or not.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Write a signed bundle of the desk's new submissions (ciphertext only) for the editors."""
    if since_last and all_:
        raise CliError("give --since-last or --all, not both")
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("exporting"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    task = bar.add_task("export", total=None)
    with _store(data_dir) as store, bar:
        result = export_bundle(
            store,
            store.settings,
            to,
            desk,
            "all" if all_ else "since_last",
            progress=lambda n: bar.advance(task, n),
            on_total=lambda n: bar.update(task, total=n),
        )
    if result.path is None:
        _say(f"nothing new to export for desk {result.desk}: no bundle written")
        return
    _say(
        f"bundle {result.sequence} of desk {result.desk} written to {result.path}: "
        f"{result.submissions} submission(s), {result.files} file(s), "
        f"{result.replies} reply(ies) for the desk's editors, {result.bytes} bytes"
    )


@app.command("import")
def import_cmd(
    bundle: Annotated[
        Path,
        typer.Argument(
            help="An outbox bundle from guwah-editor outbox, or a folder (e.g. the USB stick): "
            "every guwah-outbox-*.tar in it not applied yet."
        ),
    ],
    data_dir: DataDir = None,
) -> None:
    """Apply an editor's signed outbox bundle: store replies, delete finished submissions."""
    folder = bundle.is_dir()
    paths = sorted(bundle.glob("guwah-outbox-*.tar")) if folder else [bundle]
    if folder and not paths:
        _say(f"no outbox bundle (guwah-outbox-*.tar) in {bundle}: nothing to apply")
        return
    with _store(data_dir) as store:
        for path in paths:
            try:
                result = import_outbox(store, store.settings, path)
            except OutboxReplayError:
                if not folder:
                    raise
                _say(f"{path.name}: applied before, skipped")
                continue
            for note in result.notes:
                _warn(note)
            _say(
                f"outbox bundle of desk {result.desk} applied: {result.replies} reply(ies) "
                f"stored, {result.deleted} submission(s) deleted"
            )


# ---------------------------------------------------------------------------------- entry


def _one_line(exc: BaseException) -> str:
    """The first meaningful line of an exception, for operators (no traceback)."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()
    return text[0] if text else type(inner).__name__


@dataclass(frozen=True)
class Outcome:
    """How ``main`` ends for one kind of error: a line (stderr unless ``help``), a status."""

    line: str | None
    status: int = 1
    help: bool = False


def _usage(exc: ClickException) -> Outcome:
    return Outcome(" ".join(exc.format_message().split()) + " (see guwah --help)")


def _database(exc: SQLAlchemyError) -> Outcome:
    return Outcome(f"database: {_one_line(exc)}")


def _os_error(exc: OSError) -> Outcome:
    where = f"{exc.filename}: " if exc.filename else ""
    return Outcome(f"{where}{exc.strerror or exc}")


def _sentence(exc: BaseException) -> Outcome:
    return Outcome(" ".join(str(exc).split()))


# Error type -> how the command ends; the first entry the error is an instance of applies.
# The operator-facing families carry one readable sentence each.
ERRORS: tuple[tuple[type[BaseException], Callable[[Any], Outcome]], ...] = (
    (typer.Exit, lambda exc: Outcome(None, exc.exit_code)),
    (typer.Abort, lambda exc: Outcome("aborted")),
    (NoArgsIsHelpError, lambda exc: Outcome(exc.format_message(), 0, help=True)),  # bare guwah
    (ClickException, _usage),  # unknown command, missing argument, …
    (CliError, _sentence),
    (StoreError, _sentence),  # includes BackupError
    (SettingsError, _sentence),
    (StartupError, _sentence),
    (AgeError, _sentence),
    (DatabaseUrlError, _sentence),
    (KeyFileError, _sentence),
    (ServerKeyError, _sentence),
    (BundleError, _sentence),
    (SQLAlchemyError, _database),
    (OSError, _os_error),
    (KeyboardInterrupt, lambda exc: Outcome(None, 130)),
    # the promise: never a traceback for the operator
    (Exception, lambda exc: Outcome(f"unexpected {type(exc).__name__}: {_one_line(exc)}")),
)


def _outcome(exc: BaseException) -> Outcome | None:
    for kind, handle in ERRORS:
        if isinstance(exc, kind):
            return handle(exc)
    return None


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs a command; any error becomes one line and exit status 1."""
    os.umask(0o077)  # nothing we create is readable by others
    # psycopg logs a second copy of a failed pipeline's database error as a warning; the
    # command already reports it as its one line
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    try:
        result = command_of(app).main(args=argv, prog_name="guwah", standalone_mode=False)
    except BaseException as exc:
        outcome = _outcome(exc)
        if outcome is None:
            raise
        if outcome.line is not None and outcome.help:
            typer.echo(outcome.line)
        elif outcome.line is not None:
            _fail_with(outcome)
        sys.exit(outcome.status)
    sys.exit(result if isinstance(result, int) else 0)


def _fail_with(outcome: Outcome) -> NoReturn:
    typer.echo(f"error: {outcome.line}", err=True)
    sys.exit(outcome.status)


if __name__ == "__main__":
    main()
