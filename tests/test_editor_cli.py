"""guwah-editor end to end: real keys, real files, the real age CLI, a real terminal."""

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from app.crypto import X25519Identity, encrypt, parse_recipient

AGE = "/usr/bin/age"
# The server extra. Jinja2 is not in it: the editor renders its review index with it, so it
# is a base dependency (pyproject.toml), installed on every editor laptop.
WEB_STACK = ["fastapi", "starlette", "sqlalchemy", "uvicorn", "alembic", "multipart"]
PASSPHRASE = "correct horse battery staple"


def editor(*args: str, check: bool = True, block_web: bool = True) -> subprocess.CompletedProcess:
    """Run guwah-editor in a fresh interpreter where the web stack cannot be imported."""
    blocker = (
        "import sys; sys.modules.update({m: None for m in %r}); "
        "from app.editor.cli import main; main(sys.argv[1:])" % (WEB_STACK if block_web else [])
    )
    proc = subprocess.run(
        [sys.executable, "-c", blocker, *args], capture_output=True, text=True, timeout=120
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"guwah-editor {args} failed: {proc.stderr}")
    return proc


@pytest.fixture
def passfile(tmp_path: Path) -> Path:
    p = tmp_path / "pass.txt"
    p.write_text(PASSPHRASE + "\n")
    return p


def keygen(tmp_path: Path, passfile: Path, name: str, *extra: str) -> Path:
    ring = tmp_path / name
    editor("keygen", "--name", f"Desk {name}", "--keyring", str(ring), "--passphrase-file",
           str(passfile), "--work-factor", "12", *extra)
    return ring


def recipient_of(ring: Path) -> str:
    for line in (ring / "editor.pub").read_text().splitlines():
        if line.startswith("age-recipient: "):
            return line.split(": ", 1)[1]
    raise AssertionError("no recipient")


def test_keygen_layout_and_permissions(tmp_path: Path, passfile: Path) -> None:
    ring = keygen(tmp_path, passfile, "pq")
    assert oct(ring.stat().st_mode & 0o777) == "0o700"
    assert oct((ring / "identity.age").stat().st_mode & 0o777) == "0o600"
    assert (ring / "identity.age").read_bytes().startswith(b"age-encryption.org/v1\n-> scrypt ")
    pub = (ring / "editor.pub").read_text()
    assert "age-recipient: age1pq1" in pub  # post-quantum by default
    fp = editor("fingerprint", "--keyring", str(ring)).stdout
    assert fp == pub
    classic = keygen(tmp_path, passfile, "classic", "--x25519")
    assert recipient_of(classic).startswith("age1") and not recipient_of(classic).startswith(
        "age1pq1"
    )


def test_keygen_refuses_existing_keyring_and_short_passphrase(tmp_path: Path, passfile: Path):
    ring = keygen(tmp_path, passfile, "one")
    before = (ring / "identity.age").read_bytes()
    proc = editor("keygen", "--name", "x", "--keyring", str(ring), "--passphrase-file",
                  str(passfile), check=False)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert (ring / "identity.age").read_bytes() == before
    short = tmp_path / "short"
    short.write_text("tiny\n")
    proc = editor("keygen", "--name", "x", "--keyring", str(tmp_path / "two"),
                  "--passphrase-file", str(short), check=False)
    assert proc.returncode == 1 and "too short" in proc.stderr
    assert not (tmp_path / "two" / "identity.age").exists()


@pytest.mark.parametrize("kind", ["pq", "x25519"])
def test_decrypt_round_trip_large_file(tmp_path: Path, passfile: Path, kind: str) -> None:
    ring = keygen(tmp_path, passfile, kind, *(["--x25519"] if kind == "x25519" else []))
    data = os.urandom(3 * 65536 + 123)
    src = tmp_path / "evidence.jpg.age"
    src.write_bytes(encrypt(data, [parse_recipient(recipient_of(ring))]))
    out = tmp_path / "out"
    editor("decrypt", str(src), "--out", str(out), "--keyring", str(ring),
           "--passphrase-file", str(passfile))
    assert (out / "evidence.jpg").read_bytes() == data
    assert oct((out / "evidence.jpg").stat().st_mode & 0o777) == "0o600"
    # never overwrite
    proc = editor("decrypt", str(src), "--out", str(out), "--keyring", str(ring),
                  "--passphrase-file", str(passfile), check=False)
    assert proc.returncode == 1 and "refusing to overwrite" in proc.stderr
    assert (out / "evidence.jpg").read_bytes() == data


def test_decrypt_from_debian_age_cli(tmp_path: Path, passfile: Path) -> None:
    ring = keygen(tmp_path, passfile, "x", "--x25519")
    (tmp_path / "t.txt").write_text("testimony from the age command\n")
    subprocess.run([AGE, "-r", recipient_of(ring), "-o", str(tmp_path / "t.txt.age"),
                    str(tmp_path / "t.txt")], check=True)
    editor("decrypt", str(tmp_path / "t.txt.age"), "--out", str(tmp_path / "o"), "--keyring",
           str(ring), "--passphrase-file", str(passfile))
    assert (tmp_path / "o" / "t.txt").read_text() == "testimony from the age command\n"


def test_errors_are_one_line_and_leave_nothing(tmp_path: Path, passfile: Path) -> None:
    ring = keygen(tmp_path, passfile, "r", "--x25519")
    other = X25519Identity.generate().recipient()
    data = os.urandom(200_000)
    (tmp_path / "wrongkey.age").write_bytes(encrypt(data, [other]))
    good = bytearray(encrypt(data, [parse_recipient(recipient_of(ring))]))
    good[-100] ^= 1
    (tmp_path / "tampered.age").write_bytes(bytes(good))
    (tmp_path / "plain.age").write_bytes(b"just some text, not age\n")
    (tmp_path / "truncated.age").write_bytes(bytes(good[: len(good) // 2]))
    wrongpass = tmp_path / "wrong"
    wrongpass.write_text("not the right passphrase\n")
    out = tmp_path / "out"
    cases = {
        "wrongkey.age": ("none of your keys", passfile),
        "tampered.age": ("damaged", passfile),
        "plain.age": ("not an age file", passfile),
        "truncated.age": ("truncated", passfile),
    }
    for name, (needle, pf) in cases.items():
        proc = editor("decrypt", str(tmp_path / name), "--out", str(out), "--keyring", str(ring),
                      "--passphrase-file", str(pf), check=False)
        assert proc.returncode == 1, name
        assert needle in proc.stderr, (name, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr
    proc = editor("decrypt", str(tmp_path / "tampered.age"), "--out", str(out), "--keyring",
                  str(ring), "--passphrase-file", str(wrongpass), check=False)
    assert proc.returncode == 1 and "passphrase is wrong" in proc.stderr
    assert list(out.iterdir()) == []  # no partial plaintext, no temp files
    proc = editor("decrypt", str(tmp_path / "x.age"), "--out", str(out), "--keyring",
                  str(tmp_path / "nokeyring"), "--passphrase-file", str(passfile), check=False)
    assert proc.returncode == 1 and "is not a file" in proc.stderr


def test_decrypt_refuses_symlinked_out_dir(tmp_path: Path, passfile: Path) -> None:
    ring = keygen(tmp_path, passfile, "s", "--x25519")
    (tmp_path / "f.age").write_bytes(encrypt(b"x", [parse_recipient(recipient_of(ring))]))
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    proc = editor("decrypt", str(tmp_path / "f.age"), "--out", str(tmp_path / "link"),
                  "--keyring", str(ring), "--passphrase-file", str(passfile), check=False)
    assert proc.returncode == 1 and "symbolic link" in proc.stderr
    assert list((tmp_path / "real").iterdir()) == []


def test_output_names_cannot_escape(tmp_path: Path) -> None:
    from app.editor.safe_output import output_name_for, safe_name

    assert output_name_for(Path("/x/../../etc/passwd.age")) == "passwd"
    assert safe_name("..") == "file"
    assert safe_name("../../a b.pdf") == "_.._a b.pdf"
    assert "/" not in safe_name("a/b\\c") and not safe_name(".hidden").startswith(".")
    assert safe_name("rm -rf $(x);`y`|z") == "rm -rf _(x)__y__z"


def _age_with_passphrase(args: list[str], passphrase: str) -> int:
    """Run Debian's age in a pseudo-terminal and type the passphrase at its prompt."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(AGE, [AGE, *args])
    typed = False
    output = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 30)
        if not ready:
            os.kill(pid, 9)
            raise AssertionError(f"age hung: {output!r}")
        try:
            data = os.read(fd, 1024)
        except OSError:
            break
        if not data:
            break
        output += data
        if not typed and b"passphrase" in output.lower():
            os.write(fd, passphrase.encode() + b"\n")
            typed = True
    return os.waitpid(pid, 0)[1]


def test_emergency_age_cli_opens_keyring(tmp_path: Path, passfile: Path) -> None:
    """Without Guwah at all: age -d opens identity.age, and the result works with age -d -i."""
    ring = keygen(tmp_path, passfile, "e", "--x25519")
    keyfile = tmp_path / "key.txt"
    status = _age_with_passphrase(["-d", "-o", str(keyfile), str(ring / "identity.age")],
                                  PASSPHRASE)
    assert status == 0 and "AGE-SECRET-KEY-1" in keyfile.read_text()
    (tmp_path / "m.age").write_bytes(encrypt(b"emergency", [parse_recipient(recipient_of(ring))]))
    plain = subprocess.run([AGE, "-d", "-i", str(keyfile), str(tmp_path / "m.age")],
                           capture_output=True, check=True).stdout
    assert plain == b"emergency"


def test_paper_backup_round_trip(tmp_path: Path, passfile: Path) -> None:
    ring = keygen(tmp_path, passfile, "b")
    paper = tmp_path / "paper.txt"
    editor("backup", "--out", str(paper), "--keyring", str(ring), "--passphrase-file",
           str(passfile))
    text = paper.read_text()
    assert "-----BEGIN AGE ENCRYPTED FILE-----" in text and "AGE-SECRET-KEY" not in text
    assert oct(paper.stat().st_mode & 0o777) == "0o600"
    restored = tmp_path / "restored"
    proc = editor("restore", str(paper), "--keyring", str(restored), "--passphrase-file",
                  str(passfile))
    fp = [ln for ln in (ring / "editor.pub").read_text().splitlines() if ln.startswith("fingerprint: ")][0]
    assert fp.split(": ")[1] in proc.stdout
    assert (restored / "editor.pub").read_text() == (ring / "editor.pub").read_text()
    data = os.urandom(1000)
    (tmp_path / "d.age").write_bytes(encrypt(data, [parse_recipient(recipient_of(ring))]))
    editor("decrypt", str(tmp_path / "d.age"), "--out", str(tmp_path / "o"), "--keyring",
           str(restored), "--passphrase-file", str(passfile))
    assert (tmp_path / "o" / "d").read_bytes() == data


def test_editor_package_imports_no_web_stack() -> None:
    code = (
        "import sys; import app.editor.cli, app.crypto, app.crypto.mailbox; "
        "bad = [m for m in %r if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
        % WEB_STACK
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
