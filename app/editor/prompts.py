"""Getting the keyring passphrase: from --passphrase-file, else a no-echo terminal prompt."""

import getpass
import os
import sys
from pathlib import Path

from .errors import EditorError

KEYRING_PROMPT = "Keyring passphrase: "
BACKUP_PROMPT = "Passphrase for the paper backup (type it twice; may differ from the keyring's): "


def read_passphrase(
    passphrase_file: Path | None, *, confirm: bool = False, prompt: str = KEYRING_PROMPT
) -> str:
    """The passphrase from the file's first line, else asked on the terminal with ``prompt``."""
    if passphrase_file is not None:
        try:
            text = passphrase_file.read_text("utf-8")
        except OSError as exc:
            raise EditorError(
                f"cannot read the passphrase file {passphrase_file}: {exc.strerror}"
            ) from None
        passphrase = text.splitlines()[0] if text.splitlines() else ""
        if not passphrase:
            raise EditorError(f"the passphrase file {passphrase_file} is empty")
        return passphrase
    if not sys.stdin.isatty() and not os.path.exists("/dev/tty"):
        raise EditorError("no terminal to ask for the passphrase: use --passphrase-file FILE")
    try:
        passphrase = getpass.getpass(prompt)
        if confirm and getpass.getpass("Repeat the passphrase: ") != passphrase:
            raise EditorError("the two passphrases differ: nothing was written")
    except (EOFError, OSError):
        raise EditorError("could not read a passphrase: use --passphrase-file FILE") from None
    return passphrase
