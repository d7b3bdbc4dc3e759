#!/usr/bin/env bash
# Guwah installer for one Debian 12+ machine: packages, service user, venv, config, systemd
# units, tor onion service, AppArmor override, nftables, journald, unattended upgrades.
#
# Idempotent: every file is written only when its content differs, every command is guarded,
# so a second run with the same options changes nothing. With --root DIR nothing on the host
# is touched: files go under DIR and the commands it would run are listed in
# DIR/install-actions.txt. See docs/operator-guide.md.
set -euo pipefail
# put_file reads content from a pipe; run it in this shell so its bookkeeping survives.
shopt -s lastpipe
umask 022
export LC_ALL=C

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
readonly DEPLOY_DIR=$SCRIPT_DIR
# every dependency of guwah[server], pinned with the SHA-256 of its files (requirements/lock.sh)
LOCK=$(dirname -- "$SCRIPT_DIR")/requirements/server.lock
readonly LOCK

# Where things go on the target machine (fixed: the units name these paths).
readonly PREFIX=/opt/guwah
readonly VENV=$PREFIX/venv
readonly CONF_DIR=/etc/guwah
readonly ENV_FILE=$CONF_DIR/guwah.env
readonly DATA_DIR=/var/lib/guwah
readonly UNIT_DIR=/etc/systemd/system
readonly WRAPPER=/usr/local/sbin/guwah
readonly TORRC=/etc/tor/torrc
readonly TOR_HS_DIR=/var/lib/tor/guwah
readonly TOR_SSH_DIR=/var/lib/tor/ssh
readonly NFT_FILE=/etc/nftables.d/guwah.nft
readonly NFT_CONF=/etc/nftables.conf
readonly MARKER="installed by Guwah's deploy/install.sh"
# Present while changed files are not yet applied to the running system: a run that fails
# half-way leaves it, so that the next run restarts and reloads everything again.
readonly PENDING=$CONF_DIR/activation-pending
# netbase: /etc/protocols, which nft needs to resolve the names in guwah.nft (a minimal
# Debian image does not have it).
readonly APT_PACKAGES=(tor nftables netbase unattended-upgrades apt-listchanges apparmor
	apparmor-utils python3 python3-venv python3-pip ca-certificates)

ROOT=""
SOURCE_DIR=$(dirname -- "$SCRIPT_DIR")
EDITOR_KEY=""
DESK=""
DATABASE_URL=""
SSH_ONION=0
SSH_ONION_ONLY=0
SSH_CLIENT_AUTH=()
OB_INSTANCE=0
UNINSTALL=0
PURGE_DATA=0
YES_REALLY=0
CHANGED=0
PLAN=()

usage() {
	cat <<'EOF'
Usage: install.sh [OPTIONS]

Installs Guwah on this Debian machine (run as root), or with --root stages every file it
would install under a directory without touching the host.

Options:
  --editor-key FILE        the first editor's editor.pub (written by guwah-editor keygen)
  --desk NAME              desk for --editor-key (default: the CLI's default desk)
  --database-url URL       GUWAH_DATABASE_URL (default: SQLite in /var/lib/guwah). For
                           PostgreSQL over TCP the units are opened to that host only.
                           Characters $ " ' \ ` and spaces must be percent-encoded.
  --ssh-onion              also publish SSH as an onion service with client authorization;
                           needs at least one --ssh-client-auth
  --ssh-client-auth FILE   client key for the SSH onion ("descriptor:x25519:BASE32" or the
                           bare BASE32 public key); repeat for several operators
  --ssh-onion-only         as --ssh-onion, and close TCP port 22 in the firewall
  --onionbalance-instance  this node is an Onionbalance backend: put
                           "HiddenServiceOnionbalanceInstance 1" in the witness onion
                           service's torrc block (docs/multinode.md); kept by later runs
  --source DIR             guwah source tree or folder with a guwah-*.whl
                           (default: the repository this script lives in)
  --root DIR               stage: write files under DIR, run nothing, list the commands
                           it would run in DIR/install-actions.txt
  --uninstall              remove units, config files and the venv; keep data, the onion
                           key and the guwah user
  --purge-data             with --uninstall: also delete /var/lib/guwah, /etc/guwah, the onion
                           service keys and the guwah user. Asks twice on a terminal.
  --yes-really             answer both --purge-data questions with yes (for scripts)
  -h, --help               show this help

Re-running with the same options changes nothing. Options not given again keep their
installed values (the database URL is read back from /etc/guwah/guwah.env).
EOF
}

say() { printf 'guwah-install: %s\n' "$*"; }
warn() { printf 'guwah-install: WARNING: %s\n' "$*" >&2; }
die() {
	printf 'guwah-install: error: %s\n' "$*" >&2
	exit 1
}
staging() { [[ -n $ROOT ]]; }

# plan CMD...: remember a command as it would be run (staging) for install-actions.txt.
plan() {
	local q
	q=$(printf '%q ' "$@")
	PLAN+=("${q% }")
}

# run CMD...: run it on the host, or only record it when staging.
run() {
	if staging; then
		plan "$@"
	else
		say "+ $*"
		"$@"
	fi
}

need_value() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"; }

parse_args() {
	while [[ $# -gt 0 ]]; do
		case $1 in
		-h | --help)
			usage
			exit 0
			;;
		--root)
			need_value "$@"
			ROOT=$2
			shift
			;;
		--source)
			need_value "$@"
			SOURCE_DIR=$2
			shift
			;;
		--editor-key)
			need_value "$@"
			EDITOR_KEY=$2
			shift
			;;
		--desk)
			need_value "$@"
			DESK=$2
			shift
			;;
		--database-url)
			need_value "$@"
			DATABASE_URL=$2
			shift
			;;
		--ssh-onion) SSH_ONION=1 ;;
		--ssh-onion-only)
			SSH_ONION=1
			SSH_ONION_ONLY=1
			;;
		--ssh-client-auth)
			need_value "$@"
			SSH_CLIENT_AUTH+=("$2")
			shift
			;;
		--onionbalance-instance) OB_INSTANCE=1 ;;
		--uninstall) UNINSTALL=1 ;;
		--purge-data) PURGE_DATA=1 ;;
		--yes-really) YES_REALLY=1 ;;
		*) die "unknown option: $1 (see --help)" ;;
		esac
		shift
	done
}

validate_args() {
	if staging; then
		[[ $ROOT == /* ]] || ROOT="$(pwd)/$ROOT"
		ROOT=${ROOT%/}
		[[ -n $ROOT ]] || die "--root / is the host itself; run without --root instead"
		mkdir -p -- "$ROOT"
		ROOT=$(cd -- "$ROOT" && pwd -P)
		[[ $ROOT != / ]] || die "--root / is the host itself; run without --root instead"
	fi
	if ((PURGE_DATA)) && ! ((UNINSTALL)); then
		die "--purge-data only goes with --uninstall"
	fi
	((UNINSTALL)) && return 0
	if [[ -n $EDITOR_KEY ]]; then
		[[ -r $EDITOR_KEY ]] || die "cannot read editor key file: $EDITOR_KEY"
		editor_fingerprint >/dev/null
	fi
	if [[ -n $DESK && ! $DESK =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ ]]; then
		die "--desk: use letters, digits, '.', '_' and '-' only"
	fi
	if [[ -n $DATABASE_URL ]]; then
		check_database_url "$DATABASE_URL"
	fi
	if ((SSH_ONION)) && ((${#SSH_CLIENT_AUTH[@]} == 0)); then
		die "--ssh-onion needs at least one --ssh-client-auth FILE (an SSH onion without client authorization is open to anyone who learns its address)"
	fi
	if ((${#SSH_CLIENT_AUTH[@]} > 0)) && ! ((SSH_ONION)); then
		die "--ssh-client-auth only goes with --ssh-onion or --ssh-onion-only"
	fi
	local f
	for f in "${SSH_CLIENT_AUTH[@]}"; do
		[[ -r $f ]] || die "cannot read SSH client key file: $f"
		client_auth_line "$f" >/dev/null
	done
	if [[ -d $SOURCE_DIR ]]; then
		SOURCE_DIR=$(cd -- "$SOURCE_DIR" && pwd -P)
	fi
	source_kind >/dev/null
}

# editor_field NAME: the value of "NAME: value" in --editor-key (the editor.pub file that
# `guwah-editor keygen` writes; the guwah CLI checks it fully when adding it).
editor_field() {
	sed -n "s/^$1:[[:space:]]*//p" -- "$EDITOR_KEY" | head -n 1 | tr -d '[:space:]'
}

# editor_fingerprint: validates --editor-key and prints its fingerprint.
editor_fingerprint() {
	local recipient fingerprint
	recipient=$(editor_field age-recipient)
	fingerprint=$(editor_field fingerprint)
	[[ $recipient =~ ^age1(pq1)?[02-9ac-hj-np-z]{20,}$ && -n $fingerprint ]] ||
		die "$EDITOR_KEY is not an editor.pub written by guwah-editor keygen (it needs 'age-recipient: age1...' and 'fingerprint:' lines)"
	printf '%s\n' "$fingerprint"
}

check_database_url() {
	local url=$1
	[[ $url =~ ^(sqlite|postgresql|postgresql\+psycopg):// ]] ||
		die "--database-url must start with sqlite://, postgresql:// or postgresql+psycopg://"
	[[ $url =~ ^[^[:space:]\$\"\'\\\`]+$ ]] ||
		die "--database-url contains a space or one of \$ \" ' \\ \`; percent-encode it (e.g. \$ as %24)"
}

# db_tcp_hosts URL: the TCP host(s) of a PostgreSQL URL, empty for SQLite or a unix socket.
db_tcp_hosts() {
	local url=$1 rest hostport host
	[[ $url =~ ^postgresql ]] || return 0
	rest=${url#*://}
	rest=${rest%%/*}
	rest=${rest%%\?*}
	hostport=${rest##*@}
	if [[ $url == *host=/* || -z $hostport ]]; then
		return 0 # unix socket: AF_UNIX is already allowed
	fi
	local IFS=,
	for host in $hostport; do
		if [[ $host == \[*\]* ]]; then
			host=${host#[}
			host=${host%%]*}
		else
			host=${host%%:*}
		fi
		printf '%s\n' "$host"
	done
}

# db_addresses URL: IP addresses for IPAddressAllow= (hostnames resolved now; re-run the
# installer if the database moves).
db_addresses() {
	local host out=() ips resolved=()
	while IFS= read -r host; do
		if [[ $host == localhost ]]; then
			out+=(localhost)
		elif [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then
			out+=("$host")
		else
			ips=$(getent ahosts "$host" | awk '{print $1}' | sort -u | tr '\n' ' ') || true
			[[ -n $ips ]] || die "cannot resolve database host $host (needed for IPAddressAllow=)"
			read -r -a resolved <<<"$ips"
			out+=("${resolved[@]}")
		fi
	done < <(db_tcp_hosts "$1")
	printf '%s' "${out[*]}"
}

# client_auth_line FILE: "descriptor:x25519:BASE32" from a .auth file or a bare key.
client_auth_line() {
	local key
	key=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' -- "$1" | head -n 1 | tr -d '[:space:]')
	key=${key#descriptor:x25519:}
	[[ $key =~ ^[A-Z2-7]{52}$ ]] ||
		die "$1: expected 'descriptor:x25519:' and a 52-character base32 x25519 public key"
	printf 'descriptor:x25519:%s\n' "$key"
}

# source_kind: "wheel:PATH" or "tree:PATH" for --source.
source_kind() {
	local wheels=()
	if [[ -f $SOURCE_DIR && $SOURCE_DIR == *.whl ]]; then
		printf 'wheel:%s\n' "$SOURCE_DIR"
		return 0
	fi
	[[ -d $SOURCE_DIR ]] || die "--source $SOURCE_DIR: no such directory"
	if [[ -f $SOURCE_DIR/pyproject.toml && -d $SOURCE_DIR/app ]]; then
		printf 'tree:%s\n' "$SOURCE_DIR"
		return 0
	fi
	mapfile -t wheels < <(find "$SOURCE_DIR" -maxdepth 1 -name 'guwah-*.whl' | sort)
	((${#wheels[@]} == 1)) ||
		die "--source $SOURCE_DIR: neither a guwah source tree nor a folder with exactly one guwah-*.whl"
	printf 'wheel:%s\n' "${wheels[0]}"
}

# source_digest: changes exactly when the code to install changes (venv rebuilt only then).
source_digest() {
	local kind
	kind=$(source_kind)
	case $kind in
	wheel:*) sha256sum -- "${kind#wheel:}" | cut -d' ' -f1 ;;
	tree:*)
		(
			cd -- "${kind#tree:}"
			local parts=() p
			for p in pyproject.toml app migrations templates; do
				[[ -e $p ]] && parts+=("$p")
			done
			find "${parts[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' |
				sort | xargs -r -d '\n' sha256sum | sha256sum | cut -d' ' -f1
		)
		;;
	esac
}

# ---------------------------------------------------------------------------------------
# File helpers. Paths are target paths; under --root they are prefixed with ROOT.

# set_owner OWNER:GROUP PATH: chown on the host; recorded when staging (users may not exist).
set_owner() {
	local owner=$1 path=$2
	if staging; then
		[[ $owner == root:root ]] || plan chown "$owner" "$path"
	else
		chown "$owner" "$path"
	fi
}

# put_dir MODE OWNER:GROUP PATH
put_dir() {
	local mode=$1 owner=$2 path=$3 target
	target=$ROOT$path
	if [[ ! -d $target ]]; then
		mkdir -p -- "$target"
		say "created $path"
		CHANGED=1
	fi
	chmod "$mode" -- "$target"
	set_owner "$owner" "$path"
}

# put_file MODE OWNER:GROUP PATH < CONTENT: write only if the content differs.
put_file() {
	local mode=$1 owner=$2 path=$3 target tmp
	target=$ROOT$path
	mkdir -p -- "$(dirname -- "$target")"
	tmp=$(mktemp "$target.guwah-new.XXXXXX")
	cat >"$tmp"
	if [[ -f $target ]] && cmp -s -- "$tmp" "$target"; then
		rm -f -- "$tmp"
	else
		chmod "$mode" -- "$tmp"
		mv -f -- "$tmp" "$target"
		say "wrote $target"
		CHANGED=1
	fi
	chmod "$mode" -- "$target"
	set_owner "$owner" "$path"
}

# remove_path PATH: delete a file or empty-able tree we installed.
remove_path() {
	local target=$ROOT$1
	if [[ -e $target || -L $target ]]; then
		rm -rf -- "$target"
		say "removed $1"
		CHANGED=1
	fi
}

# ---------------------------------------------------------------------------------------
# Install steps.

check_host() {
	if staging; then
		say "staging under $ROOT (nothing on this host is changed)"
		return 0
	fi
	[[ $EUID -eq 0 ]] || die "run as root (or use --root DIR to stage files)"
	[[ -r /etc/debian_version ]] || die "this installer supports Debian 12 or later only"
	[[ -d /run/systemd/system ]] || die "systemd is not running on this machine"
}

install_packages() {
	local missing=() p
	if staging; then
		plan apt-get update
		plan env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"
		return 0
	fi
	for p in "${APT_PACKAGES[@]}"; do
		[[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
	done
	if ((${#missing[@]})); then
		run apt-get update
		run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
		CHANGED=1
	fi
	local v
	v=$(tor --version | sed -n 's/^Tor version \([0-9.]*\).*/\1/p' | head -n 1)
	if [[ $(printf '%s\n0.4.8\n' "$v" | sort -V | head -n 1) != 0.4.8 ]]; then
		die "tor $v is too old: HiddenServicePoWDefensesEnabled needs tor 0.4.8 or later (Debian 12 ships 0.4.9 through its point releases: run apt-get update && apt-get upgrade)"
	fi
}

create_user() {
	if staging; then
		plan useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin guwah
		return 0
	fi
	if ! getent passwd guwah >/dev/null; then
		run useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
			--shell /usr/sbin/nologin guwah
		CHANGED=1
	fi
}

# install_digest: the code and the pinned dependencies (a new lock rebuilds the venv too).
install_digest() {
	[[ -f $LOCK ]] || die "$LOCK is missing: the installer needs the repository it came with"
	printf '%s %s\n' "$(source_digest)" "$(sha256sum <"$LOCK" | cut -d' ' -f1)" |
		sha256sum | cut -d' ' -f1
}

install_venv() {
	local digest kind wheel
	digest=$(install_digest)
	kind=$(source_kind)
	put_dir 0755 root:root "$PREFIX"
	if [[ -x $ROOT$VENV/bin/guwah && -f $ROOT$PREFIX/source.sha256 ]] &&
		[[ $(cat -- "$ROOT$PREFIX/source.sha256") == "$digest" ]]; then
		return 0
	fi
	if staging; then
		plan python3 -m venv "$VENV"
		plan "$VENV/bin/pip" install --require-hashes -r "$LOCK"
		case $kind in
		tree:*) plan "$VENV/bin/pip" install --no-deps "${kind#tree:}" ;;
		wheel:*) plan "$VENV/bin/pip" install --no-deps "${kind#wheel:}" ;;
		esac
		plan "$VENV/bin/pip" check
		plan python3 -m compileall -q "$VENV"
		return 0
	fi
	say "building the venv in $VENV (root-owned; the service can only read it)"
	[[ -d $VENV ]] || run python3 -m venv "$VENV"
	case $kind in
	tree:*)
		local wdir
		wdir=$(mktemp -d)
		run "$VENV/bin/pip" wheel --no-deps --wheel-dir "$wdir" "${kind#tree:}"
		wheel=$(find "$wdir" -name 'guwah-*.whl' | head -n 1)
		;;
	wheel:*) wheel=${kind#wheel:} ;;
	esac
	# the dependencies exactly as pinned, by hash; then guwah itself; pip check proves the lock
	# covers everything guwah[server] asks for
	run "$VENV/bin/pip" install --require-hashes -r "$LOCK"
	run "$VENV/bin/pip" install --upgrade --force-reinstall --no-deps "$wheel"
	run "$VENV/bin/pip" check
	run "$VENV/bin/python" -m compileall -q "$VENV"
	[[ $kind != tree:* ]] || rm -rf -- "$wdir"
	chown -R root:root "$VENV"
	chmod -R go-w "$VENV"
	printf '%s\n' "$digest" >"$PREFIX/source.sha256"
	CHANGED=1
}

install_config() {
	local url=$DATABASE_URL existing=""
	if [[ -z $url && -f $ROOT$ENV_FILE ]]; then
		existing=$(sed -n 's/^GUWAH_DATABASE_URL=//p' -- "$ROOT$ENV_FILE" | tail -n 1)
		url=$existing
	fi
	DATABASE_URL=$url
	put_dir 0750 root:guwah "$CONF_DIR"
	{
		printf '# %s\n' "$ENV_FILE, $MARKER."
		printf '# Read by guwah.service, guwah-cleanup.service and the guwah command (%s).\n' "$WRAPPER"
		printf '# Change it by re-running install.sh with --database-url; empty = SQLite in the data dir.\n'
		printf 'GUWAH_DATA_DIR=%s\n' "$DATA_DIR"
		printf 'PYTHONDONTWRITEBYTECODE=1\n'
		if [[ -n $url ]]; then
			printf 'GUWAH_DATABASE_URL=%s\n' "$url"
		fi
	} | put_file 0640 root:guwah "$ENV_FILE"
	if [[ -n $EDITOR_KEY ]]; then
		put_dir 0750 root:guwah "$CONF_DIR/editors"
		put_file 0640 root:guwah "$CONF_DIR/editors/$(editor_key_name).pub" <"$EDITOR_KEY"
	fi
	put_file 0755 root:root "$WRAPPER" <"$DEPLOY_DIR/bin/guwah"
	put_dir 0700 guwah:guwah "$DATA_DIR"
}

editor_key_name() {
	local name
	name=$(basename -- "$EDITOR_KEY")
	name=${name%.pub}
	name=${name//[^A-Za-z0-9_.-]/_}
	printf '%s\n' "${name:-editor}"
}

install_units() {
	local unit addresses
	for unit in guwah.service guwah-cleanup.service guwah-cleanup.timer; do
		put_file 0644 root:root "$UNIT_DIR/$unit" <"$DEPLOY_DIR/systemd/$unit"
	done
	put_file 0644 root:root /etc/tmpfiles.d/guwah.conf <"$DEPLOY_DIR/systemd/tmpfiles.conf"
	addresses=""
	if [[ -n $DATABASE_URL ]]; then
		addresses=$(db_addresses "$DATABASE_URL")
	fi
	for unit in guwah.service guwah-cleanup.service; do
		if [[ -n $addresses ]]; then
			put_dir 0755 root:root "$UNIT_DIR/$unit.d"
			sed "s/@DB_ADDRESSES@/$addresses/" "$DEPLOY_DIR/systemd/postgresql.conf.in" |
				put_file 0644 root:root "$UNIT_DIR/$unit.d/50-postgresql.conf"
		else
			remove_path "$UNIT_DIR/$unit.d/50-postgresql.conf"
			if [[ -d $ROOT$UNIT_DIR/$unit.d ]] && [[ -z $(ls -A -- "$ROOT$UNIT_DIR/$unit.d") ]]; then
				rmdir -- "$ROOT$UNIT_DIR/$unit.d"
			fi
		fi
	done
}

# keep_original PATH: before the first overwrite, keep Debian's file as PATH.guwah-orig.
keep_original() {
	local target=$ROOT$1
	if [[ -f $target && ! -f $target.guwah-orig ]] && ! grep -qF "$MARKER" -- "$target"; then
		cp -p -- "$target" "$target.guwah-orig"
		say "kept the original $1 as $1.guwah-orig"
	fi
}

# restore_original PATH: put back what keep_original kept (or remove our file).
restore_original() {
	local target=$ROOT$1
	if [[ -f $target.guwah-orig ]]; then
		mv -f -- "$target.guwah-orig" "$target"
		say "restored the original $1"
		CHANGED=1
	elif [[ -f $target ]] && grep -qF "$MARKER" -- "$target"; then
		remove_path "$1"
	fi
}

# onionbalance_torrc < TEMPLATE: the template, plus the instance line after the witness
# service's port when --onionbalance-instance is given now or the installed torrc has it.
readonly OB_LINE="HiddenServiceOnionbalanceInstance 1"
onionbalance_torrc() {
	if ((OB_INSTANCE)) || { [[ -f $ROOT$TORRC ]] && grep -qxF "$OB_LINE" -- "$ROOT$TORRC"; }; then
		sed "\\|^HiddenServicePort 80 unix:/run/guwah/guwah.sock\$|a $OB_LINE"
	else
		cat
	fi
}

install_tor() {
	local f name
	keep_original "$TORRC"
	{
		printf '## %s\n' "$TORRC, $MARKER (template: deploy/tor/torrc)."
		onionbalance_torrc <"$DEPLOY_DIR/tor/torrc"
		if ((SSH_ONION)); then
			cat -- "$DEPLOY_DIR/tor/torrc-ssh"
		fi
	} | put_file 0644 root:root "$TORRC"
	keep_original /etc/apparmor.d/local/system_tor
	put_file 0644 root:root /etc/apparmor.d/local/system_tor <"$DEPLOY_DIR/tor/apparmor-local-system_tor"
	if ((SSH_ONION)); then
		put_dir 0700 debian-tor:debian-tor "$TOR_SSH_DIR"
		put_dir 0700 debian-tor:debian-tor "$TOR_SSH_DIR/authorized_clients"
		for f in "${SSH_CLIENT_AUTH[@]}"; do
			name=$(basename -- "$f")
			name=${name%.auth}
			name=${name%.pub}
			name=${name//[^A-Za-z0-9_-]/_}
			client_auth_line "$f" |
				put_file 0600 debian-tor:debian-tor "$TOR_SSH_DIR/authorized_clients/$name.auth"
		done
	fi
}

# ssh_ports: the port(s) sshd listens on, so that the firewall cannot lock the operator out.
ssh_ports() {
	local ports=""
	if ! staging && command -v sshd >/dev/null; then
		ports=$(sshd -T 2>/dev/null | awk '$1 == "port" {print $2}' | sort -un | paste -sd, -) || true
	fi
	printf '%s\n' "${ports:-22}"
}

install_firewall() {
	local ports
	ports=$(ssh_ports)
	if ((SSH_ONION_ONLY)); then
		grep -v 'guwah:ssh' -- "$DEPLOY_DIR/nftables/guwah.nft"
	elif [[ $ports == 22 ]]; then
		cat -- "$DEPLOY_DIR/nftables/guwah.nft"
	else
		say "sshd listens on port(s) $ports: the firewall opens those"
		sed "/guwah:ssh/s/tcp dport 22 /tcp dport { $ports } /" -- "$DEPLOY_DIR/nftables/guwah.nft"
	fi | put_file 0644 root:root "$NFT_FILE"
	if staging; then
		PLAN+=("append 'include \"$NFT_FILE\"' to $NFT_CONF unless it is there")
	elif ! grep -qxF "include \"$NFT_FILE\"" "$NFT_CONF" 2>/dev/null; then
		[[ -f $NFT_CONF ]] || printf '#!/usr/sbin/nft -f\n' >"$NFT_CONF"
		printf '# %s\ninclude "%s"\n' "$MARKER" "$NFT_FILE" >>"$NFT_CONF"
		say "added include of $NFT_FILE to $NFT_CONF"
		CHANGED=1
	fi
}

install_system_config() {
	put_file 0644 root:root /etc/systemd/journald.conf.d/guwah.conf <"$DEPLOY_DIR/config/journald-guwah.conf"
	put_file 0644 root:root /etc/systemd/coredump.conf.d/guwah.conf <"$DEPLOY_DIR/config/coredump-guwah.conf"
	put_file 0644 root:root /etc/apt/apt.conf.d/20auto-upgrades <"$DEPLOY_DIR/config/20auto-upgrades"
	put_file 0644 root:root /etc/apt/apt.conf.d/52guwah-keep-config <"$DEPLOY_DIR/config/52guwah-keep-config"
}

# check_swap: plaintext pages of the app may be swapped out; swap must be off or encrypted.
check_swap() {
	local dev kind unsafe=()
	if staging; then
		plan cat /proc/swaps
		return 0
	fi
	[[ -r /proc/swaps ]] || return 0
	while read -r dev kind _; do
		[[ $dev == Filename ]] && continue
		if [[ $dev == /dev/zram* ]]; then
			continue
		fi
		if [[ $kind == partition ]] && lsblk -nso TYPE -- "$dev" 2>/dev/null | grep -x crypt >/dev/null; then
			continue
		fi
		if [[ $kind == file ]]; then
			local src
			src=$(findmnt -nvo SOURCE -T "$dev" 2>/dev/null || true)
			if [[ -n $src ]] && lsblk -nso TYPE -- "$src" 2>/dev/null | grep -x crypt >/dev/null; then
				continue
			fi
		fi
		unsafe+=("$dev")
	done </proc/swaps
	if ((${#unsafe[@]})); then
		warn "swap on ${unsafe[*]} is not encrypted. Memory of the app (which holds plaintext"
		warn "briefly while it seals JavaScript-off submissions) could be written to disk there."
		warn "Turn swap off (swapoff -a, and remove it from /etc/fstab) or put it on dm-crypt"
		warn "with a random key (crypttab: 'swap /dev/XXX /dev/urandom swap,cipher=aes-xts-plain64')."
	fi
}

# tmp_on_tmpfs: PrivateTmp= lives under the host's /tmp, which Debian 12 keeps on disk. Put /tmp
# on tmpfs (Debian's own tmp.mount) so that the app's TMPDIR never reaches the disk.
tmp_on_tmpfs() {
	if staging; then
		plan cp /usr/share/systemd/tmp.mount /etc/systemd/system/tmp.mount
		plan systemctl enable tmp.mount
		return 0
	fi
	[[ $(findmnt -no FSTYPE /tmp 2>/dev/null) == tmpfs ]] && return 0
	if [[ ! -f /etc/systemd/system/tmp.mount && -f /usr/share/systemd/tmp.mount ]]; then
		run cp /usr/share/systemd/tmp.mount /etc/systemd/system/tmp.mount
		run systemctl enable tmp.mount
		CHANGED=1
	fi
	warn "/tmp is not on tmpfs yet; tmp.mount is enabled: reboot so that the service's private"
	warn "/tmp (and any plaintext the app spools while sealing) stays in RAM."
}

# apply_system_config: make the running system use the files just written (journald,
# units, AppArmor, firewall).
apply_system_config() {
	run systemctl restart systemd-journald
	run systemctl daemon-reload
	if command -v aa-enabled >/dev/null && aa-enabled -q 2>/dev/null; then
		run apparmor_parser -r /etc/apparmor.d/system_tor
	fi
	run nft -f "$NFT_FILE"
	run systemctl enable nftables.service
}

firewall_loaded() { nft list table inet guwah >/dev/null 2>&1; }

add_editor_key() {
	local fingerprint
	[[ -n $EDITOR_KEY ]] || return 0
	fingerprint=$(editor_fingerprint)
	if ! "$WRAPPER" recipients list | grep -F -- "$fingerprint" >/dev/null; then
		local add=("$WRAPPER" recipients add "$CONF_DIR/editors/$(editor_key_name).pub")
		[[ -z $DESK ]] || add+=(--desk "$DESK")
		run "${add[@]}"
	fi
}

# started_us UNIT: when UNIT's main process started, in microseconds since the epoch; empty
# when systemd does not say (not running).
started_us() {
	local when
	when=$(systemctl show --timestamp=us+utc -p ExecMainStartTimestamp --value "$1" 2>/dev/null) || return 0
	[[ -n $when && $when != n/a ]] || return 0
	date -u -d "$when" +%s%6N 2>/dev/null || true
}

# restart_if_stale UNIT FILE...: restart UNIT when it runs but started before one of FILEs
# last changed (e.g. tor still running the config it had before an earlier run failed, or
# the unit files changed by hand). Why not restart on every run: a re-run must change nothing.
restart_if_stale() {
	local unit=$1 started f changed
	shift
	systemctl is-active --quiet "$unit" || return 0 # the start below loads the current config
	started=$(started_us "$unit")
	[[ $started =~ ^[0-9]+$ ]] || return 0
	if [[ $(systemctl show -p NeedDaemonReload --value "$unit" 2>/dev/null) == yes ]]; then
		run systemctl daemon-reload
	fi
	for f in "$@"; do
		[[ -e $f ]] || continue
		changed=$(stat -c %.6Y -- "$f")
		if ((${changed/./} > started)); then
			say "$unit started before $f last changed"
			run systemctl restart "$unit"
			return 0
		fi
	done
}

activate() {
	local hostname_file i
	if staging; then
		tmp_on_tmpfs
		plan systemd-tmpfiles --create /etc/tmpfiles.d/guwah.conf
		plan systemctl restart systemd-journald
		plan systemctl daemon-reload
		plan apparmor_parser -r /etc/apparmor.d/system_tor
		plan nft -f "$NFT_FILE"
		plan systemctl enable nftables.service
		plan "$WRAPPER" init
		plan "$WRAPPER" migrate
		if [[ -n $EDITOR_KEY ]]; then
			if [[ -n $DESK ]]; then
				plan "$WRAPPER" recipients add "$CONF_DIR/editors/$(editor_key_name).pub" --desk "$DESK"
			else
				plan "$WRAPPER" recipients add "$CONF_DIR/editors/$(editor_key_name).pub"
			fi
		fi
		plan systemctl enable --now guwah.service guwah-cleanup.timer
		plan systemctl restart tor@default.service
		plan cat "$TOR_HS_DIR/hostname"
		plan "$WRAPPER" server-key
		return 0
	fi
	tmp_on_tmpfs
	run systemd-tmpfiles --create /etc/tmpfiles.d/guwah.conf
	if ((CHANGED)); then
		: >"$PENDING"
	fi
	if [[ -e $PENDING ]]; then
		apply_system_config
	fi
	firewall_loaded || run nft -f "$NFT_FILE" # flushed since, or never loaded
	run "$WRAPPER" init # idempotent: keeps an existing config, database and server key
	run "$WRAPPER" migrate
	add_editor_key
	run systemctl enable guwah.service guwah-cleanup.timer
	if [[ -e $PENDING ]]; then
		run systemctl restart guwah.service tor@default.service
	else
		restart_if_stale guwah.service "$UNIT_DIR/guwah.service" "$ENV_FILE" "$PREFIX/source.sha256"
		restart_if_stale tor@default.service "$TORRC"
	fi
	run systemctl start guwah.service guwah-cleanup.timer tor@default.service
	hostname_file=$TOR_HS_DIR/hostname
	for ((i = 0; i < 60; i++)); do
		[[ -s $hostname_file ]] && break
		sleep 1
	done
	echo
	if [[ -s $hostname_file ]]; then
		say "onion address: http://$(cat -- "$hostname_file")/"
	else
		warn "tor has not written $hostname_file yet; check: journalctl -u tor@default"
	fi
	rm -f -- "$PENDING"
	if ((SSH_ONION)) && [[ -s $TOR_SSH_DIR/hostname ]]; then
		say "SSH onion address: $(cat -- "$TOR_SSH_DIR/hostname") (port 22, client authorization)"
	fi
	say "server signing key fingerprint (give it to the editors to pin):"
	"$WRAPPER" server-key
}

do_install() {
	check_host
	check_swap
	install_packages
	create_user
	install_venv
	install_config
	install_units
	install_tor
	install_firewall
	install_system_config
	if [[ -z $EDITOR_KEY ]]; then
		warn "no --editor-key: unless an editor key was added before, witnesses cannot submit"
		warn "until you run: guwah recipients add FILE.pub"
	fi
	activate
	if ((SSH_ONION_ONLY)); then
		warn "TCP port 22 is closed: reach SSH only through the onion address from now on."
	fi
	say "done."
}

# ---------------------------------------------------------------------------------------
# Uninstall.

ask_twice() {
	local answer
	if ((YES_REALLY)); then
		return 0
	fi
	[[ -t 0 ]] || die "--purge-data deletes every submission; without a terminal it needs --yes-really"
	printf 'This deletes every submission, reply and key in %s, %s and the onion address.\n' "$DATA_DIR" "$CONF_DIR"
	printf 'Editors can no longer receive anything that was not exported. Type DELETE to go on: '
	read -r answer
	[[ $answer == DELETE ]] || die "nothing deleted"
	printf 'Once more: type the onion data directory %s to confirm: ' "$TOR_HS_DIR"
	read -r answer
	[[ $answer == "$TOR_HS_DIR" ]] || die "nothing deleted"
}

do_uninstall() {
	local unit
	check_host
	if ((PURGE_DATA)); then
		ask_twice
	fi
	run systemctl disable --now guwah.service guwah-cleanup.timer ||
		warn "could not disable guwah.service/guwah-cleanup.timer (not installed?)"
	for unit in guwah.service guwah-cleanup.service guwah-cleanup.timer; do
		remove_path "$UNIT_DIR/$unit"
		remove_path "$UNIT_DIR/$unit.d"
	done
	remove_path /etc/tmpfiles.d/guwah.conf
	remove_path "$PENDING"
	remove_path "$WRAPPER"
	remove_path "$PREFIX"
	remove_path "$NFT_FILE"
	remove_path /etc/systemd/journald.conf.d/guwah.conf
	remove_path /etc/systemd/coredump.conf.d/guwah.conf
	remove_path /etc/apt/apt.conf.d/20auto-upgrades
	remove_path /etc/apt/apt.conf.d/52guwah-keep-config
	restore_original /etc/apparmor.d/local/system_tor
	if ! staging && [[ ! -e /etc/apparmor.d/local/system_tor ]]; then
		: >/etc/apparmor.d/local/system_tor # the tor profile includes it unconditionally
	fi
	restore_original "$TORRC"
	if staging; then
		PLAN+=("remove the include of $NFT_FILE from $NFT_CONF; nft delete table inet guwah")
	elif [[ -f $NFT_CONF ]]; then
		# Drop exactly the two lines install_firewall appended; cat keeps mode and owner.
		local kept
		kept=$(grep -v -x -F -e "# $MARKER" -e "include \"$NFT_FILE\"" -- "$NFT_CONF" || true)
		printf '%s\n' "$kept" >"$NFT_CONF"
		nft delete table inet guwah 2>/dev/null || true
	fi
	run systemctl daemon-reload
	if ! staging && command -v aa-enabled >/dev/null && aa-enabled -q 2>/dev/null; then
		run apparmor_parser -r /etc/apparmor.d/system_tor
	fi
	if ((PURGE_DATA)); then
		remove_path "$DATA_DIR"
		remove_path "$CONF_DIR"
		remove_path "$TOR_HS_DIR"
		remove_path "$TOR_SSH_DIR"
		if staging; then
			plan userdel guwah
		elif getent passwd guwah >/dev/null; then
			run userdel guwah
		fi
	else
		say "kept $DATA_DIR, $CONF_DIR, $TOR_HS_DIR (the onion address) and the user guwah."
	fi
	run systemctl restart tor@default.service || warn "could not restart tor@default.service"
	say "uninstalled. Packages (tor, nftables, ...) were left installed."
}

write_plan() {
	staging || return 0
	{
		printf '# Commands deploy/install.sh would run on the host (--root staging run).\n'
		printf '%s\n' "${PLAN[@]}"
	} | put_file 0644 root:root /install-actions.txt
}

main() {
	parse_args "$@"
	validate_args
	if ((UNINSTALL)); then
		do_uninstall
	else
		do_install
	fi
	write_plan
}

main "$@"
