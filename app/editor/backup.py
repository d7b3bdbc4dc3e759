"""Paper backups of a keyring: instructions plus an armored, passphrase-protected age file.

The armored block is standard age (scrypt recipient), so ``age -d`` opens it too once the
instruction text around it is removed.
"""

from pathlib import Path

from app.crypto import ScryptIdentity, ScryptRecipient, decrypt, encrypt
from app.crypto.armor import BEGIN, END
from app.crypto.passphrase import DEFAULT_WORK_FACTOR
from app.durable import write_new_file

from .errors import EditorError
from .keyring import Keyring


def write_backup(path: Path, ring: Keyring, passphrase: str) -> None:
    armored = encrypt(
        ring.identity_text().encode(),
        [ScryptRecipient(passphrase, DEFAULT_WORK_FACTOR)],
        armor=True,
    ).decode("ascii")
    text = (
        "GUWAH EDITOR KEY - PAPER BACKUP\n"
        f"Name: {ring.name}\n"
        f"Fingerprint: {ring.public.fingerprint}\n\n"
        "Keep this page offline, in a safe place. It is encrypted with the keyring passphrase:\n"
        "whoever has this page AND the passphrase can read every submission.\n\n"
        "To restore: type the block below into a file (exactly, including the BEGIN and END\n"
        "lines), then run:  guwah-editor restore FILE --keyring NEW-FOLDER\n"
        "and check that the fingerprint printed matches the one above.\n"
        "Without Guwah: keep only the block, then 'age -d FILE > key.txt'.\n\n"
        f"{armored}"
    )
    write_new_file(path, text.encode("ascii"))


def read_backup(path: Path, passphrase: str) -> Keyring:
    text = path.read_text("utf-8", errors="replace")
    start, end = text.find(BEGIN.decode()), text.find(END.decode())
    if start < 0 or end < start:
        raise EditorError(f"{path} holds no '{BEGIN.decode()}' block")
    block = text[start : end + len(END)] + "\n"
    plain = decrypt(block.encode("ascii", errors="replace"), [ScryptIdentity(passphrase)])
    return Keyring.from_identity_text(plain.decode("utf-8"))
