#!/usr/bin/env bash
# Onionbalance (v3) configuration for several Guwah app nodes behind one onion address
# (docs/multinode.md). Run on the Onionbalance (frontend) host, which has Debian's onionbalance
# package. Given the frontend key (or asking onionbalance-config to make one) and the onion
# addresses of the backend instances (each node's /var/lib/tor/guwah/hostname), it writes:
#
#   OUT/config.yaml              -> /etc/onionbalance/config.yaml
#   OUT/<frontend>.key           -> /etc/onionbalance/<frontend>.key (0600 onionbalance; SECRET)
#   OUT/frontend-address         the one onion address witnesses get
#   OUT/backends/nodeN/ob_config -> the node's HiddenServiceDir (/var/lib/tor/guwah/ob_config)
#   OUT/backends/nodeN/torrc-lines   the line to add to the node's guwah HiddenService block
#   OUT/backends/nodeN/torrc     the node's torrc (deploy/tor/torrc with that line) -> /etc/tor/torrc
#   OUT/README                   what goes where
#
# The result is checked with onionbalance's own config loader and key parser (no network).
set -euo pipefail
umask 077
export LC_ALL=C

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
readonly MAX_INSTANCES=8 # Onionbalance v3: intro points of at most 8 instances fit a descriptor

OUT=""
KEY=""
NEW_KEY=0
INSTANCES=()
TORRC=$SCRIPT_DIR/../tor/torrc
HS_DIR=/var/lib/tor/guwah/
OB_CONFIG_TOOL=onionbalance-config
OB_PYTHON=/usr/bin/python3
CREATED_OUT=0
NORMAL=()
FRONTEND=""

usage() {
	cat <<'EOF'
Usage: onionbalance-config.sh --out DIR (--key FILE | --new-key) --instance ADDRESS...

Writes the Onionbalance v3 configuration for Guwah app nodes behind one onion address, and
for each node (backend instance) the ob_config file and torrc line it needs.

Options:
  --out DIR          new or empty directory for the result (created 0700)
  --key FILE         the frontend's key: tor's hs_ed25519_secret_key (to keep an existing
                     onion address) or an Onionbalance PEM key
  --new-key          let onionbalance-config create a new frontend key (a new address)
  --instance ADDR    a node's v3 onion address (its /var/lib/tor/guwah/hostname), with or
                     without ".onion"; repeat for each node (1 to 8)
  --torrc FILE       the node torrc to extend (default: deploy/tor/torrc of this tree)
  --hs-dir DIR       the node's HiddenServiceDir in that torrc (default: /var/lib/tor/guwah/)
  -h, --help         show this help

Needs Debian's onionbalance package (onionbalance-config and its Python modules).
EOF
}

die() {
	printf 'onionbalance-config.sh: error: %s\n' "$*" >&2
	exit 1
}

need_value() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"; }

parse_args() {
	while [[ $# -gt 0 ]]; do
		case $1 in
		-h | --help)
			usage
			exit 0
			;;
		--out)
			need_value "$@"
			OUT=$2
			shift
			;;
		--key)
			need_value "$@"
			KEY=$2
			shift
			;;
		--new-key)
			NEW_KEY=1
			;;
		--instance)
			need_value "$@"
			INSTANCES+=("$2")
			shift
			;;
		--torrc)
			need_value "$@"
			TORRC=$2
			shift
			;;
		--hs-dir)
			need_value "$@"
			HS_DIR=$2
			shift
			;;
		*)
			die "unknown option $1 (see --help)"
			;;
		esac
		shift
	done
}

# normal_address ADDR: the 56-character v3 address without ".onion", lower case.
normal_address() {
	local a=${1,,}
	a=${a%.onion}
	[[ $a =~ ^[a-z2-7]{55}d$ ]] || die "$1 is not a v3 onion address (56 base32 characters ending in d)"
	printf '%s\n' "$a"
}

validate_args() {
	[[ -n $OUT ]] || die "--out DIR is required (see --help)"
	if [[ -n $KEY && $NEW_KEY -eq 1 ]]; then
		die "give --key FILE or --new-key, not both"
	fi
	[[ -n $KEY || $NEW_KEY -eq 1 ]] || die "give the frontend key with --key FILE, or --new-key"
	if [[ -n $KEY ]]; then
		[[ -f $KEY && -r $KEY ]] || die "cannot read the frontend key $KEY"
	fi
	((${#INSTANCES[@]} > 0)) || die "give each node's onion address with --instance ADDRESS"
	((${#INSTANCES[@]} <= MAX_INSTANCES)) || die "at most $MAX_INSTANCES instances fit one Onionbalance v3 descriptor"
	[[ -f $TORRC && -r $TORRC ]] || die "cannot read the node torrc $TORRC (see --torrc)"
	[[ $HS_DIR == /* ]] || die "--hs-dir must be an absolute path"
	grep -Eq "^HiddenServiceDir[[:space:]]+${HS_DIR%/}/?[[:space:]]*$" -- "$TORRC" ||
		die "$TORRC has no HiddenServiceDir ${HS_DIR} line (see --hs-dir)"
	if grep -Eq '^[[:space:]]*HiddenServiceOnionbalanceInstance' -- "$TORRC"; then
		die "$TORRC already has a HiddenServiceOnionbalanceInstance line: give the plain torrc"
	fi
	command -v "$OB_CONFIG_TOOL" >/dev/null || die "$OB_CONFIG_TOOL not found: apt-get install onionbalance"
	[[ -x $OB_PYTHON ]] || die "$OB_PYTHON not found (onionbalance runs on Debian's python3)"
	if [[ -e $OUT ]]; then
		[[ -d $OUT ]] || die "$OUT exists and is not a directory"
		[[ -z $(ls -A -- "$OUT") ]] || die "$OUT is not empty: give a new or empty directory"
	fi
	local i j a b
	NORMAL=()
	for a in "${INSTANCES[@]}"; do
		NORMAL+=("$(normal_address "$a")")
	done
	for ((i = 0; i < ${#NORMAL[@]}; i++)); do
		for ((j = i + 1; j < ${#NORMAL[@]}; j++)); do
			a=${NORMAL[i]}
			b=${NORMAL[j]}
			[[ $a != "$b" ]] || die "instance $a is given twice"
		done
	done
}

# make_frontend_key: run onionbalance-config (it loads --key or creates a key) in a scratch
# folder and keep its key file, named <frontend address>.key. Sets FRONTEND.
make_frontend_key() {
	local scratch log keyfile
	scratch=$OUT/.onionbalance-config
	log=$OUT/.onionbalance-config.log
	local cmd=("$OB_CONFIG_TOOL" --hs-version v3 --no-interactive -n 1 --output "$scratch" -v warning)
	[[ -z $KEY ]] || cmd+=(--key "$KEY")
	if ! "${cmd[@]}" >"$log" 2>&1; then
		local why
		why=$(grep -v '^[[:space:]]*$' -- "$log" | tail -n 1)
		rm -rf -- "$scratch" "$log"
		if [[ -n $KEY ]]; then
			die "onionbalance-config could not load $KEY: ${why:-no reason given}"
		fi
		die "onionbalance-config could not create a key: ${why:-no reason given}"
	fi
	rm -f -- "$log"
	keyfile=$(find "$scratch" -maxdepth 1 -name '*.key' -type f | head -n 1)
	[[ -n $keyfile ]] || die "onionbalance-config wrote no key file"
	FRONTEND=$(basename -- "$keyfile" .key)
	FRONTEND=$(normal_address "$FRONTEND")
	mv -- "$keyfile" "$OUT/$FRONTEND.key"
	chmod 0600 -- "$OUT/$FRONTEND.key"
	rm -rf -- "$scratch"
	local a
	for a in "${NORMAL[@]}"; do
		[[ $a != "$FRONTEND" ]] || die "instance $a is the frontend address itself"
	done
}

write_config() {
	local i
	{
		printf '# Onionbalance v3 configuration for Guwah, written by deploy/multinode/onionbalance-config.sh.\n'
		printf '# Frontend (the address witnesses get): %s.onion\n' "$FRONTEND"
		printf '# Instances: the Guwah app nodes (their own addresses are never published).\n'
		printf '# Restart onionbalance after any change: systemctl restart onionbalance\n'
		printf 'services:\n'
		printf -- '- key: %s.key\n' "$FRONTEND"
		printf '  instances:\n'
		for ((i = 0; i < ${#NORMAL[@]}; i++)); do
			printf -- '  - address: %s.onion\n' "${NORMAL[i]}"
			printf '    name: node%d\n' $((i + 1))
		done
	} >"$OUT/config.yaml"
	chmod 0644 -- "$OUT/config.yaml"
	printf '%s.onion\n' "$FRONTEND" >"$OUT/frontend-address"
	chmod 0644 -- "$OUT/frontend-address"
}

write_backends() {
	local i dir hs_re
	hs_re="^HiddenServiceDir[[:space:]]+${HS_DIR%/}/?[[:space:]]*$"
	for ((i = 0; i < ${#NORMAL[@]}; i++)); do
		dir=$OUT/backends/node$((i + 1))
		mkdir -p -- "$dir"
		printf 'MasterOnionAddress %s.onion\n' "$FRONTEND" >"$dir/ob_config"
		printf '%s\n' "${NORMAL[i]}.onion" >"$dir/instance-address"
		printf 'HiddenServiceOnionbalanceInstance 1\n' >"$dir/torrc-lines"
		# The line goes inside the guwah onion service block: right after its HiddenServiceDir.
		awk -v re="$hs_re" '
			{ print }
			$0 ~ re && !done {
				print "## Onionbalance backend instance: intro points answer for the frontend address"
				print "## named in ob_config (in this HiddenServiceDir); see docs/multinode.md."
				print "HiddenServiceOnionbalanceInstance 1"
				done = 1
			}' "$TORRC" >"$dir/torrc"
		chmod 0644 -- "$dir/torrc" "$dir/torrc-lines" "$dir/instance-address"
		chmod 0600 -- "$dir/ob_config"
	done
}

# verify: load config.yaml with onionbalance's own loader and check that the key file gives
# the frontend address; nothing here talks to tor.
verify() {
	local out
	if ! out=$("$OB_PYTHON" - "$OUT/config.yaml" "$FRONTEND" 2>&1 <<'PY'
import logging
import os
import sys

logging.disable(logging.CRITICAL)
from onionbalance.hs_v3.onionbalance import my_onionbalance
from onionbalance.hs_v3.service import OnionbalanceService

config_path, frontend = os.path.abspath(sys.argv[1]), sys.argv[2]
my_onionbalance.config_path = config_path
try:
    data = my_onionbalance.load_config_file()
    service = object.__new__(OnionbalanceService)
    service.is_priv_key_in_tor_format = False
    _key, address = service._load_service_keys(data["services"][0], config_path)
except BaseException as exc:  # the loader raises ConfigError or exits on a bad key
    print(f"onionbalance rejects the configuration: {exc or type(exc).__name__}")
    sys.exit(1)
if address.removesuffix(".onion") != frontend:
    print(f"the key gives {address}, not {frontend}.onion")
    sys.exit(1)
PY
	); then
		out=${out##*$'\n'}
		die "${out%%. If you are trying*}"
	fi
}

write_readme() {
	local i
	{
		printf 'Onionbalance for Guwah: frontend %s.onion\n\n' "$FRONTEND"
		printf 'On the Onionbalance host (Debian package onionbalance; tor with its control socket):\n'
		printf '  install -o onionbalance -g onionbalance -m 0600 %s.key /etc/onionbalance/\n' "$FRONTEND"
		printf '  install -o root -g onionbalance -m 0640 config.yaml /etc/onionbalance/config.yaml\n'
		printf '  systemctl restart onionbalance\n\n'
		printf 'The key file is SECRET: whoever has it can publish %s.onion.\n\n' "$FRONTEND"
		for ((i = 0; i < ${#NORMAL[@]}; i++)); do
			printf 'On node%d (%s.onion):\n' $((i + 1)) "${NORMAL[i]}"
			printf '  install -o debian-tor -g debian-tor -m 0600 backends/node%d/ob_config %sob_config\n' \
				$((i + 1)) "${HS_DIR%/}/"
			printf '  install -o root -g root -m 0644 backends/node%d/torrc /etc/tor/torrc\n' $((i + 1))
			printf '  (or add backends/node%d/torrc-lines after the HiddenServiceDir %s line)\n' \
				$((i + 1)) "$HS_DIR"
			printf '  systemctl restart tor@default\n'
			printf '  journalctl -u tor@default | grep "MasterOnionAddress .* registered"\n\n'
		done
	} >"$OUT/README"
	chmod 0644 -- "$OUT/README"
}

# cleanup: on failure leave nothing behind (OUT was new or empty when we started).
cleanup() {
	local rc=$?
	rm -rf -- "$OUT/.onionbalance-config" "$OUT/.onionbalance-config.log"
	if ((rc != 0)); then
		find "$OUT" -mindepth 1 -delete 2>/dev/null || true
		((CREATED_OUT == 0)) || rmdir -- "$OUT" 2>/dev/null || true
	fi
}

main() {
	parse_args "$@"
	validate_args
	[[ -e $OUT ]] || CREATED_OUT=1
	mkdir -p -- "$OUT"
	chmod 0700 -- "$OUT"
	trap cleanup EXIT
	make_frontend_key
	write_config
	write_backends
	verify
	write_readme
	printf 'frontend address: %s.onion (publish only this one)\n' "$FRONTEND"
	printf 'wrote %s: config.yaml, %s.key (secret), backends/node1..node%d, README\n' \
		"$OUT" "$FRONTEND" "${#NORMAL[@]}"
}

main "$@"
