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

from . import custody as custody_mod
from . import metareport
from . import quarantine as quarantine_mod
from . import replies as replies_mod
from . import review as review_mod
from . import routine as routine_mod
from . import scrub as scrub_mod
from . import trust as trust_mod
from .console import err, keyring_dir, open_ring, out, progress_bar
from .errors import EditorError
from .index_page import INDEX, write_index
from .keyring import Keyring, read_public
from .options import KeyringOpt, PassFileOpt

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


def _unlock(keyring: Path | None, passphrase_file: Path | None) -> Callable[[], Keyring]:
    return lambda: open_ring(keyring, passphrase_file)


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
    fp = trust_mod.pin_server(keyring_dir(keyring), public, replace=replace)
    out.print(f"Server key pinned. Fingerprint: [bold]{escape(fp)}[/bold]", markup=True)
    out.print("Compare it aloud with the operator ('guwah server-key' prints it).")


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
    ring_dir = keyring_dir(keyring)
    read_public(ring_dir)
    folder = bundle.is_dir()
    paths = sorted(bundle.glob("guwah-export-*.tar")) if folder else [bundle]
    if folder and not paths:
        raise EditorError(f"no export bundle (guwah-export-*.tar) in {bundle}")
    unlock = _unlock(keyring, passphrase_file)
    ring: Keyring | None = None

    def unlock_once() -> Keyring:
        nonlocal ring
        ring = ring or unlock()
        return ring

    outcomes = [_import_one(path, review_dir, ring_dir, unlock_once, allow_replay)
                for path in paths]
    if folder:
        new = sum(o.new for o in outcomes)
        out.print(f"{new} new bundle(s) of {len(paths)} in {bundle}.", markup=False)
    out.print(f"Open {review_dir / INDEX} to review them.", markup=False)
    if any(o.quarantined for o in outcomes):
        raise typer.Exit(quarantine_mod.EXIT_CODE)


@dataclass(frozen=True)
class Imported:
    """What one bundle's import did: was it new, how many submissions were quarantined."""

    new: bool
    quarantined: int


def _import_one(path: Path, review_dir: Path, ring_dir: Path,
                unlock: Callable[[], Keyring], allow_replay: bool) -> Imported:
    """Import one bundle with a progress bar."""
    total = path.stat().st_size if path.is_file() else 0
    bar = progress_bar()
    task = bar.add_task("decrypting", total=total)

    def unlock_then_show() -> Keyring:
        ring = unlock()
        bar.start()
        return ring

    try:
        result = review_mod.import_bundle(
            path,
            review_dir,
            ring_dir,
            unlock_then_show,
            allow_replay=allow_replay,
            progress=(lambda n: bar.advance(task, n)) if err.is_terminal else None,
        )
    finally:
        bar.stop()
    return _report_import(path, result, review_dir)


def _report_import(path: Path, result: review_mod.ImportResult, review_dir: Path) -> Imported:
    """Warnings, alerts and the summary of one bundle."""
    for warning in result.warnings:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    for alert in result.alerts:
        err.print(f"ALERT: {alert}", style="bold red", markup=False, highlight=False)
    for sid, reason in result.quarantined:
        err.print(f"QUARANTINED: submission {sid}: {reason}", style="bold red",
                       markup=False, highlight=False)
    if result.already and not result.retried and not result.quarantined:
        out.print(
            f"{path.name}: already imported into {result.folder}: nothing changed.", markup=False
        )
        return Imported(new=False, quarantined=0)
    if result.already:
        out.print(
            f"{path.name}: already imported into {result.folder}: {result.retried} quarantined "
            "submission(s) opened this time and were laid out.", markup=False,
        )
    else:
        out.print(
            f"Imported {result.submissions} submission(s) into {result.folder}"
            + (f"; {result.replies} reply(ies) from the desk's editors" if result.replies else ""),
            markup=False,
        )
    for reply_id, day in result.withdrawn:
        out.print(f"Reply {reply_id} was deleted by the witness from their mailbox "
                       f"on {day}.", markup=False)
    if result.quarantined:
        out.print(
            f"{len(result.quarantined)} submission(s) QUARANTINED: they could not be opened or "
            f"read; see the quarantine section of {review_dir / INDEX}. Import the "
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
    out.print(f"{result.kind}: metadata-stripped copy written to {result.dest}", markup=False)
    for line in metareport.summary_lines(result):
        out.print(line, markup=False, highlight=False)
    for note in result.notes:
        err.print(f"note: {note}", markup=False, highlight=False)
    review = metareport.record_scrub(file, result, review_mod.CUSTODY)
    if review is not None:
        out.print(f"Updated {write_index(review)}", markup=False)


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
    ring = open_ring(keyring, passphrase_file)
    path, signed = custody_mod.write_report(submission, ring, out_file)
    out.print(custody_mod.summary(signed), markup=False, highlight=False)
    out.print(f"Signed report written to {path}", markup=False)


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
        out.print(f"ok: {line}", markup=False, highlight=False)
    if not check.complete:
        err.print(
            custody_mod.not_checked_sentence(check, report.parent), markup=False, highlight=False
        )
        raise typer.Exit(custody_mod.EXIT_NOT_CHECKED)
    out.print(custody_mod.checked_sentence(check), markup=False, highlight=False)


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
    rid, sent = replies_mod.queue_reply(submission, text, keyring_dir(keyring))
    out.print(f"Reply {rid} queued; your copy: {sent}", markup=False)
    out.print("Send it with 'guwah-editor outbox --to USB-STICK'.")


def done(
    submission: Annotated[Path, typer.Argument(help="The submission folder to delete.")],
    keyring: KeyringOpt = None,
) -> None:
    """Queue a request to delete this submission's ciphertext from the server (a quarantined
    submission's folder too)."""
    queued = replies_mod.queue_done(submission, keyring_dir(keyring))
    out.print("Deletion queued." if queued else "Deletion was already queued.", markup=False)


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
        to, keyring_dir(keyring), _unlock(keyring, passphrase_file), desk
    )
    out.print(
        f"Outbox bundle written to {path}: {n_replies} reply(ies), {n_done} deletion(s).",
        markup=False,
    )
    out.print("Give it to the operator for 'guwah import'.")


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
        err.print("no submissions imported yet: run 'guwah-editor import BUNDLE'")


def index(review: ReviewOpt = None) -> None:
    """Rebuild the review folder's index.html (reading metadata not read yet)."""
    folder = review or default_review()
    scanned = metareport.scan_missing(folder, review_mod.CUSTODY)
    if scanned:
        out.print(f"Read the metadata of {scanned} submission(s)", markup=False)
    path = write_index(folder)
    out.print(f"Wrote {path}", markup=False)


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
