"""``guwah-editor``: the offline tool editors run on an air-gapped laptop.

Imports nothing from the web stack (FastAPI, Starlette, SQLAlchemy, uvicorn): the base
install of the package (no ``[server]`` extra) is all an editor laptop gets. Every failure is
one line on stderr and a non-zero exit.
"""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from app.bundles import BundleError
from app.cli_help import TYPER_STYLE, command_of
from app.crypto import AgeError, Decryptor
from app.crypto.passphrase import DEFAULT_WORK_FACTOR

from . import attachments
from . import backup as backup_mod
from .errors import EditorError
from .handoff import handing_off
from .keyring import Keyring, create_keyring, default_keyring, open_keyring, read_public
from .options import KeyringOpt, PassFileOpt
from .prompts import BACKUP_PROMPT, read_passphrase
from .safe_output import atomic_output, ensure_out_dir, output_name_for

app = typer.Typer(
    name="guwah-editor",
    help="Offline tool for Guwah editors: keys, decryption and review, on an air-gapped laptop.",
    **TYPER_STYLE,  # type: ignore[arg-type]
)
# No markup and no highlighting by default: paths, file and desk names come from the user or a
# bundle, and a "[" in one would make rich raise MarkupError after the work was done. Lines
# that want [bold] say markup=True and hold nothing user-supplied.
err = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
out = Console(soft_wrap=True, markup=False, highlight=False)


def _keyring_dir(keyring: Path | None) -> Path:
    return keyring if keyring is not None else default_keyring()


def _open(keyring: Path | None, passphrase_file: Path | None) -> Keyring:
    directory = _keyring_dir(keyring)
    read_public(directory)  # a clear error before asking for a passphrase
    return open_keyring(directory, read_passphrase(passphrase_file))


@app.command()
def keygen(
    name: Annotated[
        str, typer.Option("--name", help="The desk or editor name the operator will see.")
    ],
    x25519: Annotated[
        bool,
        typer.Option(
            "--x25519",
            help="Classical X25519 key (readable by any age tool) instead of post-quantum hybrid.",
        ),
    ] = False,
    keyring: KeyringOpt = None,
    passphrase_file: PassFileOpt = None,
    work_factor: Annotated[
        int, typer.Option("--work-factor", help="scrypt work factor (log2) for the keyring.")
    ] = DEFAULT_WORK_FACTOR,
) -> None:
    """Create a keyring: an age identity and an Ed25519 signing key under one passphrase."""
    if not 10 <= work_factor <= 22:
        raise EditorError("--work-factor must be between 10 and 22")
    directory = _keyring_dir(keyring)
    passphrase = read_passphrase(passphrase_file, confirm=True)
    ring = Keyring.generate(name, post_quantum=not x25519)
    create_keyring(directory, ring, passphrase, work_factor)
    public = ring.public
    out.print(f"Keyring created in {directory}")
    out.print(f"Key type:    {'X25519' if x25519 else 'post-quantum (mlkem768x25519)'}")
    out.print(f"Public key:  {directory / 'editor.pub'}  (give this file to the operator)")
    out.print(
        f"Fingerprint: [bold]{escape(public.fingerprint)}[/bold]  (read it aloud to the operator)",
        markup=True,
    )
    out.print("Next: make a paper backup with 'guwah-editor backup' and store it offline.")


@app.command()
def fingerprint(keyring: KeyringOpt = None) -> None:
    """Print the public key file and its fingerprint (no passphrase needed)."""
    public = read_public(_keyring_dir(keyring))
    sys.stdout.write(public.to_text())


@app.command()
def decrypt(
    files: Annotated[list[Path], typer.Argument(help="age files to decrypt.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the decrypted files.")],
    keyring: KeyringOpt = None,
    passphrase_file: PassFileOpt = None,
) -> None:
    """Decrypt age files into a folder, like 'age -d'; never overwrites or leaves half a file.

    A Guwah attachment (file-N.age from a bundle) comes out as the witness's exact file, cut
    to the size and checked against the SHA-256 its message.age records (it must sit beside
    it); alone it is refused: use 'guwah-editor import BUNDLE'.
    """
    for path in files:
        if not path.is_file():
            raise EditorError(f"{path} is not a file")
        if attachments.attachment_role(path):
            attachments.message_beside(path)  # refuse before asking for the passphrase
    ring = _open(keyring, passphrase_file)
    target = ensure_out_dir(out_dir)
    plans = []
    for path in files:
        role = attachments.attachment_role(path)
        record = attachments.witness_record(path, role, ring) if role else None
        plans.append((path, record, record.output_name if record else output_name_for(path)))
    names = [name for _, _, name in plans]
    if len(set(names)) != len(names):
        raise EditorError("two input files would decrypt to the same name: decrypt them separately")
    for path, record, name in plans:
        notes = _decrypt_one(path, target, name, ring, record)
        out.print(f"{path} -> {target / name}" + (" (SHA-256 verified)" if record else ""))
        for note in notes:
            err.print(f"note: {note}", markup=False, highlight=False)


def _decrypt_one(
    path: Path, target: Path, name: str, ring: Keyring, record: attachments.WitnessFile | None
) -> list[str]:
    """One file: the witness's exact file for an attachment, else exactly 'age -d'."""
    with path.open("rb") as src, atomic_output(target, name) as dst, _progress(path) as step:
        if record is not None:
            return attachments.decrypt_exact(src, dst, ring, record, step)
        tail = bytearray()
        with handing_off(dst.write) as handoff:  # written on a second thread, as age -d does

            def write(chunk: bytes) -> None:
                handoff(chunk)
                tail[:] = (bytes(tail) + bytes(chunk[-16:]))[-16:]

            size = Decryptor(src, [ring.identity]).read_all_into(write, step)
    if attachments.looks_padded(size, bytes(tail)):
        return [
            f"{name} ends in zero bytes at a Padmé length: if it is a renamed Guwah "
            "attachment, only 'guwah-editor import BUNDLE' gives the witness's exact file"
        ]
    return []


class _progress:
    """A rich progress bar on stderr for one file (silent when stderr is not a terminal)."""

    def __init__(self, path: Path) -> None:
        self._bar = Progress(
            TextColumn("{task.description}", markup=False),  # a file name
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        )
        self._task = self._bar.add_task(path.name, total=path.stat().st_size)

    def __enter__(self):  # type: ignore[no-untyped-def]
        self._bar.start()
        return lambda n: self._bar.advance(self._task, n)

    def __exit__(self, *_: object) -> None:
        self._bar.stop()


@app.command()
def backup(
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the printable backup.")],
    keyring: KeyringOpt = None,
    passphrase_file: PassFileOpt = None,
) -> None:
    """Write a printable paper backup of the keyring (armored, passphrase-protected)."""
    ring = _open(keyring, passphrase_file)
    # a second, different question: the backup gets its own passphrase (asked twice, since a
    # typo here would lock the only offline copy)
    passphrase = read_passphrase(passphrase_file, confirm=True, prompt=BACKUP_PROMPT)
    backup_mod.write_backup(out_file, ring, passphrase)
    out.print(f"Paper backup written to {out_file}: print it, check it, then delete the file.")


@app.command()
def restore(
    backup_file: Annotated[Path, typer.Argument(help="A paper backup typed or scanned back in.")],
    keyring: KeyringOpt = None,
    passphrase_file: PassFileOpt = None,
) -> None:
    """Recreate a keyring from a paper backup."""
    passphrase = read_passphrase(passphrase_file)
    ring = backup_mod.read_backup(backup_file, passphrase)
    directory = _keyring_dir(keyring)
    create_keyring(directory, ring, passphrase, DEFAULT_WORK_FACTOR)
    out.print(f"Keyring restored in {directory}; fingerprint {ring.public.fingerprint}")


from . import commands as _commands  # noqa: E402  (registers the review / reply commands)

_commands.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: turn every expected failure into one line and exit status 1."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        rv = command_of(app).main(
            args=args or ["--help"], prog_name="guwah-editor", standalone_mode=False
        )
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("guwah-editor: aborted")
        sys.exit(1)
    except typer.TyperException as exc:  # usage errors: unknown command, missing option, …
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        err.print(
            f"guwah-editor: error: {' '.join(message.split())} (see guwah-editor --help)",
            markup=False,
            highlight=False,
        )
        sys.exit(2)
    except (EditorError, AgeError, BundleError) as exc:
        err.print(f"guwah-editor: error: {exc}", markup=False, highlight=False)
        sys.exit(1)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        err.print(
            f"guwah-editor: error: {where}{exc.strerror or exc}", markup=False, highlight=False
        )
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("guwah-editor: interrupted")
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
