#!/usr/bin/env bash
# Local demo on the embedded default: a virtualenv, a demo editor key, and the Guwah server on
# http://127.0.0.1:8080 with SQLite, in ./demo-data.  NOT for production: the demo passphrase
# is written to a file so that the walkthrough needs no typing.  Production: deploy/install.sh.
# Run it again at any time: it keeps the key, the server data and the review folder.
# GUWAH_DEMO_PORT=8081 bash deploy/demo.sh serves on another port (default 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${GUWAH_DEMO_PORT:-8080}"
die() {
  echo "demo: error: $*" >&2
  exit 1
}
if ! [[ $PORT =~ ^[0-9]{1,5}$ ]] || ((PORT < 1 || PORT > 65535)); then
  die "GUWAH_DEMO_PORT=$PORT is not a port number (1-65535)"
fi
# one clear line instead of the server's start-up failure when the port is taken (with
# SO_REUSEADDR, as the server binds: a closed connection's TIME_WAIT is not "in use")
port_free() {
  python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$PORT"
}
port_free || die "port $PORT on 127.0.0.1 is in use; stop what uses it, or run GUWAH_DEMO_PORT=8081 bash deploy/demo.sh"
DEMO="$PWD/demo-data"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
# the dependencies exactly as pinned by hash (requirements/server.lock), then Guwah itself
.venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes \
  -r requirements/server.lock
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .

mkdir -p "$DEMO"
chmod 700 "$DEMO"
PASS="$DEMO/demo-passphrase.txt"
[ -f "$PASS" ] || echo "demo passphrase - never use in production" > "$PASS"
KEYRING="$DEMO/editor-keyring"
if [ ! -f "$KEYRING/identity.age" ]; then
  # X25519 so that Debian's age 1.1 can open demo submissions too
  .venv/bin/guwah-editor keygen --name "Demo desk" --x25519 --keyring "$KEYRING" \
    --passphrase-file "$PASS" --work-factor 14 >/dev/null
fi

# A first round trip, so a broken install shows here and not in front of a witness.
sample="$DEMO/roundtrip.txt"
echo "Guwah demo round trip $(date -u +%F)" > "$sample"
.venv/bin/python - "$KEYRING/editor.pub" "$sample" <<'PY'
import sys
from app.protocol.editorkey import EditorKey
from app.crypto import encrypt, parse_recipient
pub = EditorKey.from_text(open(sys.argv[1]).read())
data = open(sys.argv[2], "rb").read()
open(sys.argv[2] + ".age", "wb").write(encrypt(data, [parse_recipient(pub.age_recipient)]))
PY
rm -rf "$DEMO/roundtrip-out"
.venv/bin/guwah-editor decrypt "$sample.age" --out "$DEMO/roundtrip-out" --keyring "$KEYRING" \
  --passphrase-file "$PASS" >/dev/null
cmp -s "$sample" "$DEMO/roundtrip-out/roundtrip.txt"
rm -rf "$sample" "$sample.age" "$DEMO/roundtrip-out"
echo "age round trip with the demo editor key: OK"

export GUWAH_DATA_DIR="$DEMO/server"
if [ ! -f "$GUWAH_DATA_DIR/guwah.sqlite3" ]; then
  .venv/bin/guwah init --data-dir "$GUWAH_DATA_DIR" >/dev/null
  .venv/bin/guwah recipients add "$KEYRING/editor.pub" --data-dir "$GUWAH_DATA_DIR" >/dev/null
fi
# TMPDIR must be private (0700); RAM-backed when /dev/shm is there, so nothing reaches disk
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  TMPDIR=$(mktemp -d /dev/shm/guwah-demo.XXXXXX)
else
  mkdir -p "$DEMO/tmp"
  TMPDIR="$DEMO/tmp"
fi
chmod 700 "$TMPDIR"
export TMPDIR

# the editor's side of the demo: the server key pinned (same key on a re-run: no change)
.venv/bin/guwah server-key --data-dir "$GUWAH_DATA_DIR" >"$DEMO/server.key"
.venv/bin/guwah-editor trust-server "$DEMO/server.key" --keyring "$KEYRING" >/dev/null
mkdir -p "$DEMO/usb" "$DEMO/review"

cat <<MSG

Guwah demo
  witness site:      http://127.0.0.1:$PORT/   (works with JavaScript off)
  demo editor key:   $KEYRING   (passphrase in $PASS)
  data (ciphertext): $GUWAH_DATA_DIR

Submit a testimony on the site, then, in another terminal, play operator and editor (the
README's "Editor's week"; on a real desk the two halves run on different machines):

  cd $PWD
  export PATH="$PWD/.venv/bin:\$PATH"     # puts guwah and guwah-editor on your PATH
  export GUWAH_DATA_DIR="$GUWAH_DATA_DIR" USB="$DEMO/usb"
  export GUWAH_KEYRING="$KEYRING" GUWAH_REVIEW="$DEMO/review" GUWAH_PASSPHRASE_FILE="$PASS"

MSG
# the commands themselves, straight from the README, so the two never disagree
fence='```'
sed -n "/^## Editor's week\$/,\$p" README.md | sed -n "/^${fence}sh\$/,/^${fence}\$/p" |
  sed '1d;$d;s/^/  /'
cat <<MSG

  then open $DEMO/review/index.html (no JavaScript) in a browser. Repeat whenever you like.
Stop the server with Ctrl-C.
MSG
# the private TMPDIR goes away with the server (it holds nothing: the server seals in memory)
trap 'rm -rf "$TMPDIR"' EXIT
.venv/bin/guwah serve --port "$PORT" --data-dir "$GUWAH_DATA_DIR"
