"""What every guwah-editor command shares: the two consoles and the keyring it works on.

A module of its own so that ``cli.py`` (keys, decryption, the entry point) and ``commands.py``
(review and reply) both import it, and neither imports the other.
"""

from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .keyring import Keyring, default_keyring, open_keyring, read_public
from .prompts import read_passphrase

# No markup and no highlighting by default: paths, file and desk names come from the user or a
# bundle, and a "[" in one would make rich raise MarkupError after the work was done. Lines
# that want [bold] say markup=True and hold nothing user-supplied.
err = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
out = Console(soft_wrap=True, markup=False, highlight=False)


def keyring_dir(keyring: Path | None) -> Path:
    return keyring if keyring is not None else default_keyring()


def open_ring(keyring: Path | None, passphrase_file: Path | None) -> Keyring:
    """The unlocked keyring; a missing public key is reported before asking for a passphrase."""
    directory = keyring_dir(keyring)
    read_public(directory)
    return open_keyring(directory, read_passphrase(passphrase_file))


def progress_bar() -> Progress:
    """A byte progress bar on stderr, silent when stderr is not a terminal (scripts, tests)."""
    return Progress(
        TextColumn("{task.description}", markup=False),  # may be a file name
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
