#!/usr/bin/env bash
# Regenerates requirements/server.lock: every package `pip install '.[server]'` needs, pinned to
# one version with the SHA-256 of each of its files on PyPI, so deploy/install.sh and
# deploy/demo.sh install exactly these bytes (`pip install --require-hashes -r ...`).
# Run it after changing dependencies in pyproject.toml; tests/test_lockfile.py fails until you do.
# Needs network access to PyPI; the pip configuration of this machine is ignored on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_CONSTRAINT
python3 -m venv "$tools"
"$tools/bin/pip" install -q 'pip-tools==7.*'
CUSTOM_COMPILE_COMMAND="bash requirements/lock.sh" "$tools/bin/pip-compile" --quiet \
  --generate-hashes --allow-unsafe --strip-extras --extra server --no-emit-index-url --no-emit-find-links \
  --index-url https://pypi.org/simple --output-file requirements/server.lock pyproject.toml
