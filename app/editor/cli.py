"""``guwah-editor``: the offline tool editors run on an air-gapped laptop.

Imports nothing from the web stack (FastAPI, Starlette, SQLAlchemy, uvicorn): the base
install of the package (no ``[server]`` extra) is all an editor laptop gets. Every failure is
one line on stderr and a non-zero exit.
"""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from app.bundles import BundleError
from app.cli_help import TYPER_STYLE, command_of
from app.crypto import AgeError, Decryptor
from app.crypto.passphrase import DEFAULT_WORK_FACTOR
from app.durable import AlreadyExists

from . import attachments, commands
from . import backup as backup_mod
from .console import err, keyring_dir, open_ring, out, progress_bar
from .errors import EditorError
from .handoff import handing_off
from .keyring import Keyring, create_keyring, read_public
from .options import KeyringOpt, PassFileOpt
from .prompts import BACKUP_PROMPT, read_passphrase
from .safe_output import atomic_output, ensure_out_dir, output_name_for

app = typer.Typer(
    name="guwah-editor",
    help="Offline tool for Guwah editors: keys, decryption and review, on an air-gapped laptop.",
    **TYPER_STYLE,  # type: ignore[arg-type]
)

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
    directory = keyring_dir(keyring)
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
    public = read_public(keyring_dir(keyring))
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
    ring = open_ring(keyring, passphrase_file)
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
    """A progress bar for one file, as a context giving the "advance by n bytes" callback."""

    def __init__(self, path: Path) -> None:
        self._bar = progress_bar()
        self._task = self._bar.add_task(path.name, total=path.stat().st_size)

    def __enter__(self) -> Callable[[int], None]:
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
    ring = open_ring(keyring, passphrase_file)
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
    directory = keyring_dir(keyring)
    create_keyring(directory, ring, passphrase, DEFAULT_WORK_FACTOR)
    out.print(f"Keyring restored in {directory}; fingerprint {ring.public.fingerprint}")


commands.register(app)


def _usage(exc: BaseException) -> str:
    """Unknown command, missing option, …: click's sentence on one line, and where to look."""
    assert isinstance(exc, typer.TyperException)
    message = exc.format_message()
    return f"error: {' '.join(message.split())} (see guwah-editor --help)"


def _os_error(exc: BaseException) -> str:
    assert isinstance(exc, OSError)
    where = f"{exc.filename}: " if exc.filename else ""
    return f"error: {where}{exc.strerror or exc}"


def _said(exc: BaseException) -> str:
    return f"error: {exc}"


# The one table of expected failures: the exception's type picks the line and the exit status;
# the most specific entry wins (AlreadyExists before OSError). Anything else is a bug and
# keeps its traceback.
FAILURES: dict[type[BaseException], tuple[int, Callable[[BaseException], str]]] = {
    typer.Abort: (1, lambda _: "aborted"),
    typer.TyperException: (2, _usage),
    EditorError: (1, _said),
    AgeError: (1, _said),
    BundleError: (1, _said),
    AlreadyExists: (1, _said),
    OSError: (1, _os_error),
    KeyboardInterrupt: (130, lambda _: "interrupted"),
}


def failure(exc: BaseException) -> tuple[int, str] | None:
    """Exit status and one line for an expected failure, None for anything else."""
    for kind in type(exc).__mro__:
        if kind in FAILURES:
            status, line = FAILURES[kind]
            return status, f"guwah-editor: {line(exc)}"
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point: turn every expected failure into one line and its exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        rv = command_of(app).main(
            args=args or ["--help"], prog_name="guwah-editor", standalone_mode=False
        )
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (Exception, KeyboardInterrupt) as exc:
        known = failure(exc)
        if known is None:
            raise
        err.print(known[1], markup=False, highlight=False)
        sys.exit(known[0])
    sys.exit(rv if isinstance(rv, int) else 0)
