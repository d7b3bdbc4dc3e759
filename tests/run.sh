#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12/13 machine: installs what it needs (Debian
# packages, a virtualenv, the pinned npm packages), then runs every test against SQLite and
# again, the database-backed ones, against a real PostgreSQL, in two lanes at once (below).
# Exit status is the first failing pytest's (5 only when no lane selected any test).
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

# Two lanes at once. Much of the suite waits rather than computes (a loopback Tor network
# bootstrapping, a container booting, deadlines running out), so one lane leaves a core idle.
# Lane A: every test but the system ones, on SQLite; its output streams here.
# Lane B: the system tests, then every test that touches a database again on PostgreSQL; its
# output is kept in a file and shown when lane A is done. Each pytest is told its share by
# GUWAH_TEST_LANE (tests/conftest.py), so arguments given here (-k, -m, paths) narrow all three.
# A pytest whose arguments select nothing (exit 5, e.g. `-k cctv` for the system tests) has
# nothing to fail; the run exits 5 only when no pytest selected anything.
combine() {  # the statuses of several pytest runs -> the run's status
  local status all_empty=1
  for status in "$@"; do
    if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then echo "$status"; return; fi
    [ "$status" -eq 5 ] || all_empty=0
  done
  if [ "$all_empty" -eq 1 ]; then echo 5; else echo 0; fi
}

lane_b_log=$(mktemp)
lane_b=""
# Stopped early (^C reaches lane A only, or an error): lane B gets one SIGINT, as a ^C, so its
# pytest tears down the servers and containers its fixtures started and no pass follows; the
# run waits for that, then shows lane B's output.
# shellcheck disable=SC2317  # called by the trap below
stop_lane_b() {
  if [ -n "$lane_b" ] && jobs -pr | grep -qx "$lane_b"; then
    echo "== stopping the system tests and the PostgreSQL pass (their output follows)"
    kill -INT -- "-$lane_b" 2>/dev/null || true
    wait "$lane_b" || true
    cat "$lane_b_log"
  fi
  rm -f "$lane_b_log"
}
trap stop_lane_b EXIT
trap 'exit 130' INT TERM

set -m  # lane B in a process group of its own: a ^C at the terminal does not reach it
(
  stopped=0
  trap 'stopped=1' INT
  system=0 postgres=0
  echo "== pytest (system tests, SQLite)"
  GUWAH_TEST_LANE=system .venv/bin/python -m pytest -o cache_dir=.pytest_cache/lane-b "$@" \
    || system=$?
  if [ "$stopped" -eq 1 ]; then exit 130; fi
  echo "== pytest (PostgreSQL: every test that touches a database)"
  GUWAH_TEST_LANE=database GUWAH_TEST_DATABASE_URL="$pg_url" \
    .venv/bin/python -m pytest -o cache_dir=.pytest_cache/lane-b "$@" || postgres=$?
  exit "$(combine "$system" "$postgres")"
) >"$lane_b_log" 2>&1 </dev/null &
lane_b=$!
set +m

echo "== pytest (SQLite: every test but the system ones; the system tests and the PostgreSQL"
echo "   pass run at the same time, their output follows)"
lane_a=0
GUWAH_TEST_LANE=rest .venv/bin/python -m pytest "$@" || lane_a=$?
echo "== waiting for the system tests and the PostgreSQL pass"
lane_b_status=0
wait "$lane_b" || lane_b_status=$?
lane_b=""
cat "$lane_b_log"
exit "$(combine "$lane_a" "$lane_b_status")"
