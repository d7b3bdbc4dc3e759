#!/usr/bin/env bash
# Check one Guwah app node of a multi-node install (docs/multinode.md, "Check every node"):
# PostgreSQL + blob_backend "db", the shared server key (fingerprint and exact bytes), schema
# at head, TLS to the database, a least-privilege role. Runs check_node.py with the node's
# environment file and the Guwah venv. Prints nothing secret.
set -euo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
ENV_FILE=/etc/guwah/guwah.env
PYTHON=/opt/guwah/venv/bin/python
PASS=()

usage() {
	cat <<'EOF'
Usage: check-node.sh [OPTIONS]

Checks that this Guwah app node can share one PostgreSQL database with the other nodes.
Run it as root on every node; exit status 1 if a check fails.

Options:
  --expect-fingerprint FP    the server key fingerprint the editors pinned
  --expect-key-digest HEX    the key-file digest the first node printed
  --allow-unencrypted-link   accept a database link without TLS (private link only)
  --data-dir DIR             the node's data dir (default: GUWAH_DATA_DIR from the env file)
  --env-file FILE            environment file to read (default: /etc/guwah/guwah.env;
                             "none" to use the current environment)
  --python PATH              the Guwah venv's python (default: /opt/guwah/venv/bin/python)
  -h, --help                 show this help
EOF
}

die() {
	printf 'check-node: error: %s\n' "$*" >&2
	exit 2
}

need_value() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"; }

while [[ $# -gt 0 ]]; do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--expect-fingerprint | --expect-key-digest | --data-dir)
		need_value "$@"
		PASS+=("$1" "$2")
		shift
		;;
	--allow-unencrypted-link)
		PASS+=("$1")
		;;
	--env-file)
		need_value "$@"
		ENV_FILE=$2
		shift
		;;
	--python)
		need_value "$@"
		PYTHON=$2
		shift
		;;
	*)
		die "unknown option $1 (see --help)"
		;;
	esac
	shift
done

[[ -x $PYTHON ]] || die "$PYTHON is not executable: give the Guwah venv's python with --python"
if [[ $ENV_FILE != none ]]; then
	[[ -r $ENV_FILE ]] || die "cannot read $ENV_FILE (use --env-file FILE or --env-file none)"
	# KEY=VALUE lines as systemd reads them; never sourced (a URL's "&" is not shell).
	while IFS= read -r line || [[ -n $line ]]; do
		line=${line%$'\r'}
		[[ $line =~ ^[[:space:]]*(#|$) ]] && continue
		[[ $line =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] ||
			die "$ENV_FILE: not a KEY=VALUE line: ${line%%=*}"
		key=${BASH_REMATCH[1]}
		value=${BASH_REMATCH[2]}
		if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then
			value=${BASH_REMATCH[1]}
		fi
		export "$key=$value"
	done <"$ENV_FILE"
fi
exec "$PYTHON" "$SCRIPT_DIR/check_node.py" "${PASS[@]}"
