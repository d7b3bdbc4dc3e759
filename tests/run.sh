#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12/13 machine: installs what it needs (Debian
# packages, a virtualenv, the pinned npm packages), then runs every test against SQLite and
# again, the database-backed ones, against a real PostgreSQL.  Exit status is pytest's.
#
#   bash tests/run.sh            # everything
#   bash tests/run.sh -k cctv    # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages: the real tools the tests drive (age CLI, Chromium, tor, nft, shellcheck,
# ffmpeg and exiftool for scrubbing phone media …).
PKGS=(python3 python3-venv python3-dev gcc age tor chromium shellcheck nftables apparmor
      systemd postgresql nodejs npm onionbalance ffmpeg libimage-exiftool-perl
      mmdebstrap systemd-container util-linux curl)
missing=()
for pkg in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# nodejs from another repository may bundle npm; don't ask apt for a conflicting one
if command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/npm}")
fi
if command -v node >/dev/null 2>&1; then
  missing=("${missing[@]/nodejs}")
fi
read -r -a missing <<< "${missing[*]}"
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== Python virtualenv (.venv)"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[server,test]'

echo "== npm packages (pinned by package-lock.json)"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null

# PostgreSQL: the one on 127.0.0.1:5432 (trust auth, database "test") when there is one;
# otherwise start the local cluster and give the tests a role and database of their own.
pg_url=""
if command -v pg_ctlcluster >/dev/null 2>&1; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  if psql -h 127.0.0.1 -U postgres -d test -tAc 'select 1' >/dev/null 2>&1; then
    pg_url="postgresql+psycopg://postgres@127.0.0.1:5432/test"
  elif pg_isready -q -h 127.0.0.1 -p 5432; then
    $SUDO runuser -u postgres -- psql -q -c \
      "DO \$\$BEGIN CREATE ROLE guwah_test LOGIN PASSWORD 'guwah_test'; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$;" >/dev/null
    $SUDO runuser -u postgres -- createdb -O guwah_test guwah_test 2>/dev/null || true
    pg_url="postgresql+psycopg://guwah_test:guwah_test@127.0.0.1:5432/guwah_test"
  fi
fi
if [ -z "$pg_url" ]; then
  echo "PostgreSQL is not reachable on 127.0.0.1:5432: the suite needs it" >&2
  exit 1
fi

echo "== ruff"
.venv/bin/ruff check .

echo "== pytest (SQLite)"
.venv/bin/python -m pytest "$@"

echo "== pytest (PostgreSQL: every test that touches a database)"
GUWAH_TEST_DATABASE_URL="$pg_url" .venv/bin/python -m pytest -m database "$@"
