"""The review-and-reply commands of ``guwah-editor``, registered on the CLI app.

Kept apart from ``cli.py`` (keys and plain decryption) so each file stays readable. Every
failure is an EditorError/BundleError/AgeError that ``cli.main`` turns into one line + exit 1.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from . import custody as custody_mod
from . import metareport
from . import quarantine as quarantine_mod
from . import replies as replies_mod
from . import review as review_mod
from . import routine as routine_mod
from . import scrub as scrub_mod
from . import trust as trust_mod
from .errors import EditorError
from .keyring import Keyring, read_public
from .options import KeyringOpt, PassFileOpt


class _Cli:
    """Late access to app.editor.cli (it imports this module while it is being defined)."""

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        from . import cli

        return getattr(cli, name)


_cli = _Cli()

ReviewOpt = Annotated[
    Path | None,
    typer.Option(
        "--review",
        help="Review folder (default: $GUWAH_REVIEW, then ~/guwah-review).",
        show_default=False,
    ),
]


def default_review() -> Path:
    env = os.environ.get("GUWAH_REVIEW")
    return Path(env) if env else Path.home() / "guwah-review"


def _unlock(keyring: Path | None, passphrase_file: Path | None):  # type: ignore[no-untyped-def]
    return lambda: _cli._open(keyring, passphrase_file)


def trust_server(
    key_file: Annotated[Path, typer.Argument(help="The key file from 'guwah server-key'.")],
    keyring: KeyringOpt = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a different pinned key (key rotation).")
    ] = False,
) -> None:
    """Pin the server's signing key; every export bundle must be signed by it."""
    try:
        text = key_file.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        raise EditorError(f"cannot read the server key file {key_file}") from None
    public = trust_mod.parse_server_key(text)
    fp = trust_mod.pin_server(_cli._keyring_dir(keyring), public, replace=replace)
    _cli.out.print(f"Server key pinned. Fingerprint: [bold]{escape(fp)}[/bold]", markup=True)
    _cli.out.print("Compare it aloud with the operator ('guwah server-key' prints it).")


def import_(
    bundle: Annotated[
        Path,
        typer.Argument(
            help="An export bundle from 'guwah export', or a folder (e.g. the USB stick): "
            "every guwah-export-*.tar in it, oldest first."
        ),
    ],
    review: ReviewOpt = None,
    keyring: KeyringOpt = None,
    passphrase_file: PassFileOpt = None,
    allow_replay: Annotated[
        bool, typer.Option("--allow-replay", help="Import a bundle older than the last one.")
    ] = False,
) -> None:
    """Verify, decrypt and lay out export bundles in the review folder (each one atomic).

    Each submission stands alone: one that does not open or read goes to the quarantine
    section, the others are laid out; the exit status is then 3 (see the summary)."""
    review_dir = review or default_review()
    keyring_dir = _cli._keyring_dir(keyring)
    read_public(keyring_dir)
    folder = bundle.is_dir()
    paths = sorted(bundle.glob("guwah-export-*.tar")) if folder else [bundle]
    if folder and not paths:
        raise EditorError(f"no export bundle (guwah-export-*.tar) in {bundle}")
    unlock = _unlock(keyring, passphrase_file)
    ring = None

    def unlock_once():  # type: ignore[no-untyped-def]
        nonlocal ring
        ring = ring or unlock()
        return ring

    outcomes = [_import_one(path, review_dir, keyring_dir, unlock_once, allow_replay)
                for path in paths]
    if folder:
        new = sum(o.new for o in outcomes)
        _cli.out.print(f"{new} new bundle(s) of {len(paths)} in {bundle}.", markup=False)
    _cli.out.print(f"Open {review_dir / review_mod.INDEX} to review them.", markup=False)
    if any(o.quarantined for o in outcomes):
        raise typer.Exit(quarantine_mod.EXIT_CODE)


@dataclass(frozen=True)
class Imported:
    """What one bundle's import did: was it new, how many submissions were quarantined."""

    new: bool
    quarantined: int


def _import_one(path: Path, review_dir: Path, keyring_dir: Path,
                unlock: Callable[[], Keyring], allow_replay: bool) -> Imported:
    """Import one bundle with a progress bar."""
    total = path.stat().st_size if path.is_file() else 0
    bar = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=_cli.err,
        transient=True,
        disable=not _cli.err.is_terminal,
    )
    task = bar.add_task("decrypting", total=total)

    def unlock_then_show():  # type: ignore[no-untyped-def]
        ring = unlock()
        bar.start()
        return ring

    try:
        result = review_mod.import_bundle(
            path,
            review_dir,
            keyring_dir,
            unlock_then_show,
            allow_replay=allow_replay,
            progress=(lambda n: bar.advance(task, n)) if _cli.err.is_terminal else None,
        )
    finally:
        bar.stop()
    return _report_import(path, result, review_dir)


def _report_import(path: Path, result: review_mod.ImportResult, review_dir: Path) -> Imported:
    """Warnings, alerts and the summary of one bundle."""
    for warning in result.warnings:
        _cli.err.print(f"warning: {warning}", markup=False, highlight=False)
    for alert in result.alerts:
        _cli.err.print(f"ALERT: {alert}", style="bold red", markup=False, highlight=False)
    for sid, reason in result.quarantined:
        _cli.err.print(f"QUARANTINED: submission {sid}: {reason}", style="bold red",
                       markup=False, highlight=False)
    if result.already and not result.retried and not result.quarantined:
        _cli.out.print(
            f"{path.name}: already imported into {result.folder}: nothing changed.", markup=False
        )
        return Imported(new=False, quarantined=0)
    if result.already:
        _cli.out.print(
            f"{path.name}: already imported into {result.folder}: {result.retried} quarantined "
            "submission(s) opened this time and were laid out.", markup=False,
        )
    else:
        _cli.out.print(
            f"Imported {result.submissions} submission(s) into {result.folder}"
            + (f"; {result.replies} reply(ies) from the desk's editors" if result.replies else ""),
            markup=False,
        )
    for reply_id, day in result.withdrawn:
        _cli.out.print(f"Reply {reply_id} was deleted by the witness from their mailbox "
                       f"on {day}.", markup=False)
    if result.quarantined:
        _cli.out.print(
            f"{len(result.quarantined)} submission(s) QUARANTINED: they could not be opened or "
            f"read; see the quarantine section of {review_dir / review_mod.INDEX}. Import the "
            "same bundle again to retry them, or 'guwah-editor done' their folder to delete "
            "them from the server.", markup=False,
        )
    return Imported(new=not result.already, quarantined=len(result.quarantined))


def scrub(
    file: Annotated[Path, typer.Argument(help="An attachment in a submission folder.")],
) -> None:
    """Write a metadata-stripped copy next to the original (which is kept as evidence)."""
    custody_mod.check_attachment(file)
    result = scrub_mod.scrub(file)
    _cli.out.print(f"{result.kind}: metadata-stripped copy written to {result.dest}", markup=False)
    for line in metareport.summary_lines(result):
        _cli.out.print(line, markup=False, highlight=False)
    for note in result.notes:
        _cli.err.print(f"note: {note}", markup=False, highlight=False)
    review = metareport.record_scrub(file, result, review_mod.CUSTODY)
    if review is not None:
        _cli.out.print(f"Updated {review_mod.write_index(review)}", markup=False)


def custody(
    submission: Annotated[Path, typer.Argument(help="A submission folder in the review folder.")],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Where to write the report.", show_default=False)
    ] = None,
    keyring: KeyringOpt = None,
    passphrase_file: PassFileOpt = None,
) -> None:
    """Write, sign (editor's Ed25519 key) and print a chain-of-custody report."""
    custody_mod.load_submission(submission)
    ring = _cli._open(keyring, passphrase_file)
    path, signed = custody_mod.write_report(submission, ring, out_file)
    _cli.out.print(custody_mod.summary(signed), markup=False, highlight=False)
    _cli.out.print(f"Signed report written to {path}", markup=False)


def verify_custody(
    report: Annotated[Path, typer.Argument(help="A custody-report.json.")],
    editor_fingerprint: Annotated[
        str | None,
        typer.Option("--editor-fingerprint", help="Require this editor fingerprint."),
    ] = None,
    no_files: Annotated[
        bool,
        typer.Option(
            "--no-files", help="Check signatures and manifest only, not the attachments on disk."
        ),
    ] = False,
) -> None:
    """Check a custody report: both signatures, the manifest and the attachments next to it.

    Exit 0: verified; 1: a mismatch (altered report or file); 3: some attachment named by the
    report was not next to it, so it could not be hashed (use --no-files to accept that)."""
    check = custody_mod.verify_report(
        report, expected_editor=editor_fingerprint, check_files=not no_files
    )
    for line in check.lines:
        _cli.out.print(f"ok: {line}", markup=False, highlight=False)
    if not check.complete:
        _cli.err.print(
            custody_mod.not_checked_sentence(check, report.parent), markup=False, highlight=False
        )
        raise typer.Exit(custody_mod.EXIT_NOT_CHECKED)
    _cli.out.print(custody_mod.checked_sentence(check), markup=False, highlight=False)


def _text_from_editor() -> str:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not editor:
        raise EditorError("give the reply with --text-file FILE, or set $EDITOR")
    fd, name = tempfile.mkstemp(prefix="guwah-reply-", suffix=".txt")
    os.close(fd)
    try:
        subprocess.run([*shlex.split(editor), name], check=True)
        return Path(name).read_text("utf-8")
    except (OSError, subprocess.CalledProcessError):
        raise EditorError("the editor did not finish: nothing was queued") from None
    finally:
        Path(name).unlink(missing_ok=True)


def reply(
    submission: Annotated[Path, typer.Argument(help="The submission folder to answer.")],
    text_file: Annotated[
        Path | None,
        typer.Option("--text-file", help="The reply text (UTF-8); '-' reads stdin."),
    ] = None,
    keyring: KeyringOpt = None,
) -> None:
    """Encrypt a reply to the witness and to the desk's editors; queue it in the outbox."""
    if text_file is None:
        text = _text_from_editor()
    elif str(text_file) == "-":
        text = sys.stdin.read()
    else:
        try:
            text = text_file.read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            raise EditorError(f"cannot read the reply text {text_file} (UTF-8)") from None
    rid, sent = replies_mod.queue_reply(submission, text, _cli._keyring_dir(keyring))
    _cli.out.print(f"Reply {rid} queued; your copy: {sent}", markup=False)
    _cli.out.print("Send it with 'guwah-editor outbox --to USB-STICK'.")


def done(
    submission: Annotated[Path, typer.Argument(help="The submission folder to delete.")],
    keyring: KeyringOpt = None,
) -> None:
    """Queue a request to delete this submission's ciphertext from the server (a quarantined
    submission's folder too)."""
    queued = replies_mod.queue_done(submission, _cli._keyring_dir(keyring))
    _cli.out.print("Deletion queued." if queued else "Deletion was already queued.", markup=False)


def outbox(
    to: Annotated[Path, typer.Option("--to", help="Bundle file or folder (e.g. a USB stick).")],
    desk: Annotated[
        str | None, typer.Option("--desk", help="Desk, if items of several are queued.")
    ] = None,
    keyring: KeyringOpt = None,
    passphrase_file: PassFileOpt = None,
) -> None:
    """Write queued replies and deletions as one bundle signed by your key; clear the queue."""
    path, n_replies, n_done = replies_mod.write_outbox(
        to, _cli._keyring_dir(keyring), _unlock(keyring, passphrase_file), desk
    )
    _cli.out.print(
        f"Outbox bundle written to {path}: {n_replies} reply(ies), {n_done} deletion(s).",
        markup=False,
    )
    _cli.out.print("Give it to the operator for 'guwah import'.")


def list_(
    review: ReviewOpt = None,
    todo: Annotated[
        bool,
        typer.Option("--todo", help="Only folders still waiting for a reply (one per line)."),
    ] = False,
) -> None:
    """List the submission folders, oldest first, with what was done about each."""
    found = routine_mod.statuses(review or default_review())
    for status in found:
        if todo and status.waiting:
            sys.stdout.write(f"{status.folder}\n")
        elif not todo:
            sys.stdout.write(f"{status.folder}\t{status.label()}\n")
    if not found:
        _cli.err.print("no submissions imported yet: run 'guwah-editor import BUNDLE'")


def index(review: ReviewOpt = None) -> None:
    """Rebuild the review folder's index.html (reading metadata not read yet)."""
    folder = review or default_review()
    scanned = metareport.scan_missing(folder, review_mod.CUSTODY)
    if scanned:
        _cli.out.print(f"Read the metadata of {scanned} submission(s)", markup=False)
    path = review_mod.write_index(folder)
    _cli.out.print(f"Wrote {path}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("trust-server")(trust_server)
    app.command("import")(import_)
    app.command()(scrub)
    app.command()(custody)
    app.command("verify-custody")(verify_custody)
    app.command()(reply)
    app.command()(done)
    app.command()(outbox)
    app.command("list")(list_)
    app.command()(index)


__all__ = ["register"]
