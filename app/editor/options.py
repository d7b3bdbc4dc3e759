"""Options every guwah-editor command shares (one definition, so help texts never drift)."""

from pathlib import Path
from typing import Annotated

import typer

KeyringOpt = Annotated[
    Path | None,
    typer.Option(
        "--keyring",
        help="Keyring folder (default: $GUWAH_KEYRING, then ~/.local/share/guwah-editor).",
        show_default=False,
    ),
]
PassFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="Read the passphrase from the first line of FILE instead of asking "
        "(scripts, tests, the demo).",
        envvar="GUWAH_PASSPHRASE_FILE",
        show_envvar=True,
    ),
]
